//! Admin pages of the console: connection types (enable, narrow hosts, plugin problems), bots
//! (created from a form generated from their plugin's config schema; secrets, tokens, setup
//! code, webhook secret rotation, deliveries with their attempts and redelivery), and the audit
//! trail with its verification. Workspace admins only — the same use cases as the admin API.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::auth::ConsoleUser;
use super::layout::{Page, page};
use super::{problem, refused};
use crate::app::SharedApp;
use crate::domain::users::UserKind;
use crate::store;
use crate::use_cases::accounts::{bots, connection_secrets, setup, tokens};
use crate::use_cases::{self, connection_types, deliveries};

/// The refusal a person who is not an admin gets.
fn admins_only(user: &ConsoleUser) -> Option<Response> {
    (!user.caller.is_admin()).then(|| {
        problem(
            StatusCode::FORBIDDEN,
            "Only workspace admins (signed in with an admin-scoped token) may open the admin pages.",
        )
    })
}

fn frame(user: &ConsoleUser, title: &str, body: Markup) -> Response {
    page(Page {
        title,
        user: Some((&user.caller, &user.csrf)),
        body: html! {
            nav.sub aria-label="Admin" {
                a href="/console/admin" { "Connection types" } " · "
                a href="/console/admin/bots" { "Bots" } " · "
                a href="/console/admin/audit" { "Audit trail" }
            }
            (body)
        },
    })
    .into_response()
}

fn csrf_field(user: &ConsoleUser) -> Markup {
    html! { input type="hidden" name="csrf" value=(user.csrf); }
}

/// `GET /console/admin`: connection types and plugin problems.
pub(super) async fn connection_types_page(State(app): State<SharedApp>, user: ConsoleUser) -> Response {
    if let Some(refusal) = admins_only(&user) {
        return refusal;
    }
    let choices = match app.db.read().await {
        Ok(mut conn) => connection_types::choices(&mut conn, user.caller.workspace_id()).await,
        Err(error) => Err(error),
    };
    let choices = match choices {
        Ok(choices) => choices,
        Err(error) => return refused(error.into()),
    };
    let problems = app.plugin_directory.as_ref().map(|d| d.problems()).unwrap_or_default();
    let plugins = app.runtime.plugins();
    frame(
        &user,
        "Connection types",
        html! {
            h1 { "Connection types" }
            p.help { "Which kinds of bot connection this workspace may use, and the hosts each plugin may call here." }
            table {
                thead { tr { th scope="col" { "Type" } th scope="col" { "State" } th scope="col" { "Hosts it may call" } } }
                tbody {
                    @for plugin in &plugins {
                        @let setting = connection_types::setting(plugin, &choices);
                        @let id = &plugin.manifest.id;
                        tr #{ "type-" (id) } {
                            td {
                                strong { (plugin.manifest.name) }
                                br; code { (id) } " " span.meta { "v" (plugin.manifest.version) @if plugin.is_builtin() { " · built in" } }
                            }
                            td {
                                (if setting.enabled { "enabled" } else { "disabled" })
                                form method="post" action={ "/console/admin/connection-types/" (id) } {
                                    (csrf_field(&user))
                                    input type="hidden" name="enabled" value=(if setting.enabled { "false" } else { "true" });
                                    button.secondary type="submit" aria-label={ (if setting.enabled { "Disable " } else { "Enable " }) (id) } {
                                        (if setting.enabled { "Disable" } else { "Enable" })
                                    }
                                }
                            }
                            td {
                                form method="post" action={ "/console/admin/connection-types/" (id) } {
                                    (csrf_field(&user))
                                    label for={ "hosts-" (id) } { "Hosts (one per line; empty: all the manifest lists)" }
                                    textarea id={ "hosts-" (id) } name="hosts" rows="2" {
                                        (setting.outbound_hosts.as_ref().map(|h| h.join("\n")).unwrap_or_default())
                                    }
                                    p.meta { "Manifest: " (if plugin.manifest.outbound_hosts.is_empty() { "none".to_owned() } else { plugin.manifest.outbound_hosts.join(", ") }) }
                                    button.secondary type="submit" { "Save hosts" }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Plugin problems" }
            @if problems.is_empty() {
                p { "None: every file in the plugins directory loaded." }
            } @else {
                ul { @for p in &problems { li { code { (p.file) } ": " (p.message) } } }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct ConnectionTypeForm {
    csrf: String,
    enabled: Option<String>,
    hosts: Option<String>,
}

/// `POST /console/admin/connection-types/{id}`
pub(super) async fn update_connection_type(
    State(app): State<SharedApp>,
    user: ConsoleUser,
    Path(id): Path<String>,
    Form(form): Form<ConnectionTypeForm>,
) -> Response {
    if let Some(refusal) = admins_only(&user).or_else(|| user.csrf_refusal(&form.csrf)) {
        return refusal;
    }
    let change = connection_types::SettingChange {
        enabled: form.enabled.as_deref().map(|e| e == "true"),
        outbound_hosts: form.hosts.map(|text| {
            let hosts: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .collect();
            (!hosts.is_empty()).then_some(hosts)
        }),
    };
    match connection_types::update(&app, &user.caller, &id, change).await {
        Ok(_) => Redirect::to(&format!("/console/admin#type-{id}")).into_response(),
        Err(error) => refused(error),
    }
}

/// `GET /console/admin/bots`: the bots, and a form to start a new one.
pub(super) async fn bots_page(State(app): State<SharedApp>, user: ConsoleUser) -> Response {
    if let Some(refusal) = admins_only(&user) {
        return refusal;
    }
    let loaded = async {
        let mut conn = app.db.read().await?;
        let workspace = user.caller.workspace_id();
        let bots = store::users::list(&mut conn, workspace, Some(UserKind::Bot)).await?;
        let types: HashMap<String, String> = store::connections::types_of_bots(&mut conn, workspace)
            .await?
            .into_iter()
            .collect();
        let choices = connection_types::choices(&mut conn, workspace).await?;
        Ok::<_, store::StoreError>((bots, types, choices))
    };
    let (bots, types, choices) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return refused(error.into()),
    };
    let enabled: Vec<_> = app
        .runtime
        .plugins()
        .into_iter()
        .filter(|p| connection_types::setting(p, &choices).enabled)
        .collect();
    frame(
        &user,
        "Bots",
        html! {
            h1 { "Bots" }
            @if bots.is_empty() {
                p { "No bots yet." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Bot" } th scope="col" { "Connection type" } th scope="col" { "State" } } }
                    tbody {
                        @for bot in &bots {
                            tr {
                                td { a href={ "/console/admin/bots/" (bot.id) } { (bot.name) } " " span.meta { "@" (bot.handle) } }
                                td { (types.get(bot.id.as_str()).map_or("—", String::as_str)) }
                                td { (if bot.is_enabled() { "enabled" } else { "disabled" }) }
                            }
                        }
                    }
                }
            }
            h2 { "New bot" }
            form method="get" action="/console/admin/bots/new" {
                label for="new-type" { "Connection type" }
                select #new-type name="type" required {
                    @for plugin in &enabled {
                        option value=(plugin.manifest.id) { (plugin.manifest.name) " (" (plugin.manifest.id) ")" }
                    }
                }
                button type="submit" { "Next" }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct NewBotQuery {
    #[serde(rename = "type")]
    connection_type: String,
}

/// `GET /console/admin/bots/new?type=…`: the form its plugin's config schema describes.
pub(super) async fn new_bot_page(
    State(app): State<SharedApp>,
    user: ConsoleUser,
    Query(query): Query<NewBotQuery>,
) -> Response {
    if let Some(refusal) = admins_only(&user) {
        return refusal;
    }
    let Some(plugin) = app.runtime.plugin(&query.connection_type) else {
        return problem(
            StatusCode::NOT_FOUND,
            &format!(
                "No connection type `{}` is installed on this host.",
                query.connection_type
            ),
        );
    };
    new_bot_form(
        &user,
        &plugin.manifest.id,
        &plugin.manifest.name,
        &plugin.manifest.config_schema,
        None,
    )
}

fn new_bot_form(user: &ConsoleUser, type_id: &str, type_name: &str, schema: &Value, trouble: Option<&str>) -> Response {
    frame(
        user,
        "New bot",
        html! {
            h1 { "New " (type_name) " bot" }
            @if let Some(trouble) = trouble { p.problem role="alert" { (trouble) } }
            form.narrow method="post" action="/console/admin/bots" {
                (csrf_field(user))
                input type="hidden" name="type" value=(type_id);
                label for="bot-name" { "Name" }
                input #bot-name type="text" name="name" required maxlength="100";
                label for="bot-handle" { "Handle (people @mention it with this)" }
                input #bot-handle type="text" name="handle" required maxlength="40" pattern="[a-z0-9][a-z0-9_-]*";
                fieldset {
                    legend { "Connection settings" }
                    (schema_fields(schema, &Value::Null))
                }
                button type="submit" { "Create bot" }
            }
        },
    )
}

/// Inputs for the top-level properties of a JSON Schema object (`config.<name>` fields), filled
/// from `current` (the bot's config when it is edited): strings (a textarea for long ones, a
/// select for enums), integers, numbers and booleans. The plugin's `validate-config` has the last
/// word, as for the API.
fn schema_fields(schema: &Value, current: &Value) -> Markup {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let empty = serde_json::Map::new();
    let properties = schema["properties"].as_object().unwrap_or(&empty);
    html! {
        @if properties.is_empty() { p.meta { "This connection type takes no settings." } }
        @for (name, spec) in properties {
            @let id = format!("config-{name}");
            @let field = format!("config.{name}");
            @let help = spec["description"].as_str().unwrap_or("");
            @let is_required = required.contains(&name.as_str());
            @let kind = spec["type"].as_str().unwrap_or("string");
            @let now = &current[name.as_str()];
            @let text = match now {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
            @if kind == "boolean" {
                label for=(id) {
                    input id=(id) type="checkbox" name=(field) value="true"
                        checked[now.as_bool().unwrap_or(spec["default"] == Value::Bool(true))];
                    " " (name)
                }
            } @else {
                label for=(id) { (name) @if is_required { " (required)" } }
                @if let Some(options) = spec["enum"].as_array() {
                    @let chosen = now.as_str().or(spec["default"].as_str());
                    select id=(id) name=(field) required[is_required] {
                        @if !is_required { option value="" { "(default)" } }
                        @for option in options.iter().filter_map(Value::as_str) {
                            option value=(option) selected[chosen == Some(option)] { (option) }
                        }
                    }
                } @else if kind == "integer" || kind == "number" {
                    input id=(id) type="number" name=(field) required[is_required] value=[text]
                        min=[spec["minimum"].as_f64()] max=[spec["maximum"].as_f64()]
                        placeholder=[spec["default"].as_f64()];
                } @else if spec["maxLength"].as_u64().is_some_and(|m| m > 1_000) {
                    textarea id=(id) name=(field) required[is_required] { (text.unwrap_or_default()) }
                } @else if kind == "string" {
                    input id=(id) type="text" name=(field) required[is_required] value=[text]
                        maxlength=[spec["maxLength"].as_u64()] placeholder=[spec["default"].as_str()];
                } @else {
                    p.meta { "Set " code { (name) } " (" (kind) ") through the API." }
                }
            }
            @if !help.is_empty() { p.help { (help) } }
        }
    }
}

/// The config a generated form posted: `config.<name>` fields, typed by the schema (empty
/// fields are left out, so the plugin's defaults apply). Settings the form cannot show (objects,
/// arrays) are kept from `current`.
fn config_from_form(schema: &Value, current: &Value, form: &HashMap<String, String>) -> Value {
    let mut config = serde_json::Map::new();
    let empty = serde_json::Map::new();
    for (name, spec) in schema["properties"].as_object().unwrap_or(&empty) {
        let raw = form.get(&format!("config.{name}")).map(|v| v.trim());
        let value = match (spec["type"].as_str().unwrap_or("string"), raw) {
            ("boolean", raw) => Some(Value::Bool(raw == Some("true"))),
            ("object" | "array", _) => current.get(name).cloned(),
            (_, None | Some("")) => None,
            ("integer", Some(text)) => Some(text.parse::<i64>().map_or(Value::String(text.to_owned()), Value::from)),
            ("number", Some(text)) => Some(text.parse::<f64>().map_or(Value::String(text.to_owned()), Value::from)),
            (_, Some(text)) => Some(Value::String(text.to_owned())),
        };
        if let Some(value) = value {
            config.insert(name.clone(), value);
        }
    }
    Value::Object(config)
}

/// `POST /console/admin/bots`: creates the bot; its token (and webhook secret) shown once.
pub(super) async fn create_bot(
    State(app): State<SharedApp>,
    user: ConsoleUser,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let csrf = form.get("csrf").cloned().unwrap_or_default();
    if let Some(refusal) = admins_only(&user).or_else(|| user.csrf_refusal(&csrf)) {
        return refusal;
    }
    let type_id = form.get("type").cloned().unwrap_or_default();
    let Some(plugin) = app.runtime.plugin(&type_id) else {
        return problem(
            StatusCode::NOT_FOUND,
            &format!("No connection type `{type_id}` is installed."),
        );
    };
    let schema = &plugin.manifest.config_schema;
    let request = bots::NewBot {
        name: form.get("name").cloned().unwrap_or_default(),
        handle: form.get("handle").cloned().unwrap_or_default(),
        avatar_url: None,
        connection_type: type_id.clone(),
        config: config_from_form(schema, &Value::Null, &form),
        follow_ups: None,
        budgets: None,
    };
    match bots::create(&app, &user.caller, request).await {
        Ok(created) => frame(
            &user,
            "Bot created",
            html! {
                h1 { "Bot " (created.bot.name) " created" }
                p.notice role="status" { "Copy these now: they are shown once." }
                dl {
                    dt { "Bot token (its wrapper or agent authenticates with it)" }
                    dd { code #bot-token { (created.token) } }
                    @if let Some(secret) = &created.webhook_secret {
                        dt { "Webhook signing secret" }
                        dd { code #webhook-secret { (secret) } }
                    }
                }
                p { a href={ "/console/admin/bots/" (created.bot.id) } { "Go to the bot's page" } }
            },
        ),
        Err(use_cases::Error::InvalidConfig { message, field_errors }) => {
            let mut response = new_bot_form(
                &user,
                &type_id,
                &plugin.manifest.name,
                schema,
                Some(&config_trouble(&message, &field_errors)),
            );
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
        }
        Err(error) => refused(error),
    }
}

/// `GET /console/admin/bots/{id}`: the bot's connection, secrets, tokens and deliveries.
pub(super) async fn bot_page(State(app): State<SharedApp>, user: ConsoleUser, Path(id): Path<String>) -> Response {
    if let Some(refusal) = admins_only(&user) {
        return refusal;
    }
    render_bot_page(&app, &user, &id, None).await
}

/// The bot page, with `trouble` (why the last edit was refused) above its settings.
async fn render_bot_page(app: &SharedApp, user: &ConsoleUser, id: &str, trouble: Option<&str>) -> Response {
    let loaded = async {
        let mut conn = app.db.read().await?;
        let bot = bots::find_bot(&mut conn, &user.caller, id).await?;
        let connection = bots::connection_of(&mut conn, &bot).await?;
        drop(conn);
        let secrets = connection_secrets::list(app, &user.caller, id).await?;
        let tokens = tokens::list(app, &user.caller, Some(id)).await?;
        let filter = store::deliveries::Filter::default();
        let deliveries = deliveries::for_bot(app, &user.caller, id, &filter, 20).await?;
        Ok::<_, use_cases::Error>((bot, connection, secrets, tokens, deliveries))
    };
    let (bot, connection, secrets, bot_tokens, logs) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return refused(error),
    };
    let config: Value = serde_json::from_str(&connection.config).unwrap_or(Value::Null);
    let schema = app
        .runtime
        .plugin(&connection.connection_type)
        .map_or(Value::Null, |p| p.manifest.config_schema.clone());
    let takes_setup_codes = setup::takes_setup_codes(app, &connection.connection_type);
    let title = format!("Bot {}", bot.name);
    frame(
        user,
        &title,
        html! {
            h1 { (bot.name) " " span.meta { "@" (bot.handle) } }
            p { "Connection type " code { (connection.connection_type) } " · " (if bot.is_enabled() { "enabled" } else { "disabled" }) }
            div.layout {
                div {
                    section aria-labelledby="config" {
                        h2 #config { "Connection settings" }
                        @if let Some(trouble) = trouble { p.problem role="alert" { (trouble) } }
                        form.narrow method="post" action={ "/console/admin/bots/" (bot.id) "/edit" } {
                            (csrf_field(user))
                            label for="bot-name" { "Name" }
                            input #bot-name type="text" name="name" required maxlength="100" value=(bot.name);
                            label for="bot-handle" { "Handle" }
                            input #bot-handle type="text" name="handle" required maxlength="40" value=(bot.handle);
                            fieldset {
                                legend { (connection.connection_type) " settings" }
                                (schema_fields(&schema, &config))
                            }
                            button type="submit" { "Save changes" }
                        }
                        form method="post" action={ "/console/admin/bots/" (bot.id) "/enabled" } {
                            (csrf_field(user))
                            input type="hidden" name="value" value=(if bot.is_enabled() { "false" } else { "true" });
                            button.secondary type="submit" { (if bot.is_enabled() { "Disable the bot" } else { "Enable the bot" }) }
                        }
                        form method="post" action={ "/console/admin/bots/" (bot.id) "/validate" } {
                            (csrf_field(user))
                            button.secondary type="submit" { "Validate connection" }
                        }
                    }
                    section aria-labelledby="deliveries" {
                        h2 #deliveries { "Recent deliveries" }
                        @if logs.is_empty() { p.meta { "No webhooks sent yet." } }
                        @for log in &logs {
                            @let d = &log.delivery;
                            article.session id={ "delivery-" (d.id) } {
                                header {
                                    strong { (d.status) }
                                    span.meta { (d.created_at.to_iso()) " · " (d.attempts) (if d.attempts == 1 { " attempt" } else { " attempts" }) }
                                }
                                @if let Some(error) = &d.last_error { p.meta { (error) } }
                                ol.feed aria-label="Attempts" {
                                    @for attempt in &log.attempts {
                                        li {
                                            span.kind { "attempt " (attempt.attempt) }
                                            (attempt.status_code.map_or("no answer".to_owned(), |c| format!("HTTP {c}")))
                                            " · " (attempt.latency_ms) " ms"
                                            @if let Some(error) = attempt.error.as_ref().filter(|e| attempt.status_code.is_none_or(|c| **e != format!("HTTP {c}"))) { " · " (error) }
                                        }
                                    }
                                }
                                @if d.status == "failed" {
                                    form method="post" action={ "/console/admin/deliveries/" (d.id) "/redeliver" } {
                                        (csrf_field(user))
                                        input type="hidden" name="bot" value=(bot.id);
                                        button type="submit" { "Redeliver" }
                                    }
                                }
                            }
                        }
                    }
                }
                aside {
                    section aria-labelledby="secrets" {
                        h2 #secrets { "Secrets" }
                        @if secrets.is_empty() { p.meta { "This connection type declares none." } }
                        @for secret in &secrets {
                            form method="post" action={ "/console/admin/bots/" (bot.id) "/secrets" } {
                                (csrf_field(user))
                                input type="hidden" name="name" value=(secret.spec.name);
                                label for={ "secret-" (secret.spec.name) } {
                                    (secret.spec.name) " — " (if secret.updated_at.is_some() { "set" } else { "not set" })
                                }
                                input id={ "secret-" (secret.spec.name) } type="password" name="value" autocomplete="off";
                                p.help { (secret.spec.description) }
                                button.secondary type="submit" name="action" value="set" { "Set" }
                                @if secret.updated_at.is_some() {
                                    " " button.secondary type="submit" name="action" value="remove" { "Remove" }
                                }
                            }
                        }
                    }
                    section aria-labelledby="tokens" {
                        h2 #tokens { "Tokens" }
                        ul {
                            @for token in &bot_tokens {
                                li {
                                    (token.name) " "
                                    @if token.revoked_at.is_some() { span.meta { "revoked" } } @else {
                                        form method="post" action={ "/console/admin/tokens/" (token.id) "/revoke" } {
                                            (csrf_field(user))
                                            input type="hidden" name="bot" value=(bot.id);
                                            button.link type="submit" aria-label={ "Revoke " (token.name) } { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                        form method="post" action={ "/console/admin/bots/" (bot.id) "/tokens" } {
                            (csrf_field(user))
                            label for="token-name" { "New token's name" }
                            input #token-name type="text" name="name" required maxlength="100";
                            button.secondary type="submit" { "Create token" }
                        }
                    }
                    @if takes_setup_codes {
                        section aria-labelledby="wrapper" {
                            h2 #wrapper { "Wrapper" }
                            form method="post" action={ "/console/admin/bots/" (bot.id) "/setup-code" } {
                                (csrf_field(user))
                                button.secondary type="submit" { "Create a setup code" }
                            }
                            form method="post" action={ "/console/admin/bots/" (bot.id) "/rotate" } {
                                (csrf_field(user))
                                button.secondary type="submit" { "Rotate the webhook secret" }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// `POST /console/admin/bots/{id}/edit`: name, handle and connection settings; the plugin
/// validates the new config as for the API. A refusal shows the page again with the reason.
pub(super) async fn edit_bot(
    State(app): State<SharedApp>,
    user: ConsoleUser,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let csrf = form.get("csrf").cloned().unwrap_or_default();
    if let Some(refusal) = admins_only(&user).or_else(|| user.csrf_refusal(&csrf)) {
        return refusal;
    }
    let current = async {
        let mut conn = app.db.read().await?;
        let bot = bots::find_bot(&mut conn, &user.caller, &id).await?;
        bots::connection_of(&mut conn, &bot).await
    };
    let connection = match current.await {
        Ok(connection) => connection,
        Err(error) => return refused(error),
    };
    let Some(plugin) = app.runtime.plugin(&connection.connection_type) else {
        return problem(
            StatusCode::CONFLICT,
            &format!(
                "The connection type `{}` is not installed on this host.",
                connection.connection_type
            ),
        );
    };
    let current: Value = serde_json::from_str(&connection.config).unwrap_or(Value::Null);
    let patch = bots::BotPatch {
        name: form.get("name").cloned(),
        handle: form.get("handle").cloned(),
        config: Some(config_from_form(&plugin.manifest.config_schema, &current, &form)),
        ..bots::BotPatch::default()
    };
    match bots::update(&app, &user.caller, &id, patch).await {
        Ok(_) => Redirect::to(&format!("/console/admin/bots/{id}")).into_response(),
        Err(use_cases::Error::InvalidConfig { message, field_errors }) => {
            let mut response = render_bot_page(&app, &user, &id, Some(&config_trouble(&message, &field_errors))).await;
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
        }
        Err(use_cases::Error::Invalid { message, .. } | use_cases::Error::Conflict(message)) => {
            let mut response = render_bot_page(&app, &user, &id, Some(&message)).await;
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
        }
        Err(error) => refused(error),
    }
}

/// A config refusal in one sentence: the plugin's message and each field's problem.
fn config_trouble(message: &str, field_errors: &[crate::runtime::ConfigFieldError]) -> String {
    let detail: Vec<String> = field_errors
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                if e.field.is_empty() { "config" } else { &e.field },
                e.message
            )
        })
        .collect();
    format!("{message} {}", detail.join("; "))
}

/// A one-time value's page ("shown once").
fn shown_once(user: &ConsoleUser, bot: &str, what: &str, value: &str, note: &str) -> Response {
    frame(
        user,
        what,
        html! {
            h1 { (what) }
            p.notice role="status" { "Copy it now: it is shown once. " (note) }
            p { code #shown-once { (value) } }
            p { a href={ "/console/admin/bots/" (bot) } { "Back to the bot" } }
        },
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct BotAction {
    csrf: String,
    name: Option<String>,
    value: Option<String>,
    action: Option<String>,
    bot: Option<String>,
}

/// `POST /console/admin/bots/{id}/{action}`: validate, secrets, tokens, setup-code, rotate.
pub(super) async fn bot_action(
    State(app): State<SharedApp>,
    user: ConsoleUser,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<BotAction>,
) -> Response {
    if let Some(refusal) = admins_only(&user).or_else(|| user.csrf_refusal(&form.csrf)) {
        return refusal;
    }
    let back = Redirect::to(&format!("/console/admin/bots/{id}")).into_response();
    let caller = &user.caller;
    match action.as_str() {
        "validate" => match bots::validate_connection(&app, caller, &id).await {
            Ok(problems) if problems.is_empty() => frame(
                &user,
                "Connection valid",
                html! { h1 { "The connection works" } p.notice role="status" { "The plugin checked its settings and secrets: no problems." } p { a href={ "/console/admin/bots/" (id) } { "Back to the bot" } } },
            ),
            Ok(problems) => frame(
                &user,
                "Connection problems",
                html! {
                    h1 { "The connection has problems" }
                    ul.problem role="alert" { @for p in &problems { li { (if p.field.is_empty() { "config" } else { &p.field }) ": " (p.message) } } }
                    p { a href={ "/console/admin/bots/" (id) } { "Back to the bot" } }
                },
            ),
            Err(error) => refused(error),
        },
        "enabled" => match bots::set_disabled(&app, caller, &id, form.value.as_deref() != Some("true")).await {
            Ok(_) => back,
            Err(error) => refused(error),
        },
        "secrets" => {
            let name = form.name.unwrap_or_default();
            let outcome = if form.action.as_deref() == Some("remove") {
                connection_secrets::remove(&app, caller, &id, &name).await
            } else {
                connection_secrets::set(&app, caller, &id, &name, form.value.unwrap_or_default()).await
            };
            match outcome {
                Ok(()) => back,
                Err(error) => refused(error),
            }
        }
        "tokens" => {
            let request = tokens::NewToken {
                name: form.name.unwrap_or_default(),
                scopes: vec!["read".into(), "write".into()],
                expires_in_days: None,
                user_id: Some(id.clone()),
            };
            match tokens::create(&app, caller, request).await {
                Ok((_, secret)) => shown_once(&user, &id, "New bot token", &secret, "It reads and writes as the bot."),
                Err(error) => refused(error),
            }
        }
        "setup-code" => match setup::create_code(&app, caller, &id, None).await {
            Ok((code, expires)) => shown_once(
                &user,
                &id,
                "Setup code",
                &code,
                &format!("The wrapper claims it once, before {}.", expires.to_iso()),
            ),
            Err(error) => refused(error),
        },
        "rotate" => match bots::rotate_webhook_secret(&app, caller, &id, Duration::from_secs(24 * 3_600)).await {
            Ok((secret, retire)) => shown_once(
                &user,
                &id,
                "New webhook secret",
                &secret,
                &format!("The old one keeps signing until {}.", retire.to_iso()),
            ),
            Err(error) => refused(error),
        },
        _ => problem(StatusCode::NOT_FOUND, "No such action."),
    }
}

/// `POST /console/admin/tokens/{id}/revoke`
pub(super) async fn revoke_token(
    State(app): State<SharedApp>,
    user: ConsoleUser,
    Path(id): Path<String>,
    Form(form): Form<BotAction>,
) -> Response {
    if let Some(refusal) = admins_only(&user).or_else(|| user.csrf_refusal(&form.csrf)) {
        return refusal;
    }
    match tokens::revoke(&app, &user.caller, &id).await {
        Ok(_) => Redirect::to(&format!("/console/admin/bots/{}#tokens", form.bot.unwrap_or_default())).into_response(),
        Err(error) => refused(error),
    }
}

/// `POST /console/admin/deliveries/{id}/redeliver`
pub(super) async fn redeliver(
    State(app): State<SharedApp>,
    user: ConsoleUser,
    Path(id): Path<String>,
    Form(form): Form<BotAction>,
) -> Response {
    if let Some(refusal) = admins_only(&user).or_else(|| user.csrf_refusal(&form.csrf)) {
        return refusal;
    }
    match deliveries::redeliver(&app, &user.caller, &id).await {
        Ok(_) => Redirect::to(&format!(
            "/console/admin/bots/{}#delivery-{id}",
            form.bot.unwrap_or_default()
        ))
        .into_response(),
        Err(error) => refused(error),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct AuditQuery {
    action: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    verify: Option<String>,
}

/// `GET /console/admin/audit`: the newest records (filtered), and the chain's verification.
pub(super) async fn audit_page(
    State(app): State<SharedApp>,
    user: ConsoleUser,
    Query(query): Query<AuditQuery>,
) -> Response {
    if let Some(refusal) = admins_only(&user) {
        return refusal;
    }
    let blank = |v: &Option<String>| v.as_ref().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let filter = store::audit::Filter {
        workspace_id: user.caller.workspace_id().to_string(),
        actor_id: blank(&query.actor),
        action: blank(&query.action),
        target_id: blank(&query.target),
        ..store::audit::Filter::default()
    };
    let records = match app.db.read().await {
        Ok(mut conn) => store::audit::page(&mut conn, &filter, 100).await,
        Err(error) => Err(error),
    };
    let records = match records {
        Ok(records) => records,
        Err(error) => return refused(error.into()),
    };
    let verified = if query.verify.is_some() {
        Some(crate::audit::verify(&app.db, &app.audit_keys, Some(&app.config.audit_checkpoint_dir)).await)
    } else {
        None
    };
    frame(
        &user,
        "Audit trail",
        html! {
            h1 { "Audit trail" }
            form method="get" action="/console/admin/audit" {
                label for="f-action" { "Action (e.g. bot.create)" }
                input #f-action type="text" name="action" value=[blank(&query.action)];
                label for="f-actor" { "Actor id" }
                input #f-actor type="text" name="actor" value=[blank(&query.actor)];
                label for="f-target" { "Target id" }
                input #f-target type="text" name="target" value=[blank(&query.target)];
                button.secondary type="submit" { "Filter" }
                " "
                button.secondary type="submit" name="verify" value="1" { "Verify the chain" }
            }
            @match &verified {
                Some(Ok(Ok(v))) => p.notice role="status" #verified { "The chain is intact: " (v.records) " records checked, " (v.checkpoints) " signed checkpoints." },
                Some(Ok(Err(broken))) => p.problem role="alert" #verified { "The chain is broken: " (broken.to_string()) },
                Some(Err(error)) => p.problem role="alert" { "Could not verify: " (error.to_string()) },
                None => {},
            }
            table {
                thead { tr { th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Action" } th.optional scope="col" { "Actor" } th.optional scope="col" { "Target" } } }
                tbody {
                    @for r in &records {
                        tr {
                            td { (r.seq) }
                            td { (crate::domain::time::Timestamp::from_millis(r.at).to_iso()) }
                            td { code { (r.action) } }
                            td.optional { (r.actor_kind) " " (r.actor_id.as_deref().unwrap_or("")) }
                            td.optional { (r.target_kind) " " (r.target_id.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        },
    )
}
