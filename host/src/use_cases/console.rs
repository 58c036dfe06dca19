//! Signing in to the web console: a person's API token (checked as every API call checks it), or a
//! one-time link the operator prints with `leadtime-host console-link`, which mints the person a
//! token that lasts a day.

use serde_json::json;

use crate::app::App;
use crate::audit::{self, Actor, Entry};
use crate::domain::audit::ActorKind;
use crate::domain::time::Timestamp;
use crate::domain::tokens::{self as token_rules, Scope, Scopes};
use crate::domain::users::{Role, UserKind};
use crate::store::{self, StoreError};
use crate::use_cases::accounts::tokens;
use crate::use_cases::error::Error;

/// How long a printed link works.
pub const LINK_MINUTES: i64 = 15;
/// How long the token a link mints lasts.
const LINK_TOKEN_HOURS: i64 = 24;
/// The prefix of link codes (a checksum-bearing random secret, like API tokens).
const LINK_PREFIX: &str = "lt_link_";

/// A one-time sign-in link's code for the person with `handle` (in `workspace`, by name, when
/// several workspaces have that handle).
pub async fn create_link(app: &App, handle: &str, workspace: Option<&str>) -> Result<String, Error> {
    let handle = handle.trim().trim_start_matches('@');
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let people = store::users::people_by_handle(&mut tx, handle).await?;
    let mut matching = Vec::new();
    for person in people {
        let name = store::workspaces::get(&mut tx, &person.workspace_id)
            .await?
            .map(|w| w.name)
            .unwrap_or_default();
        if workspace.is_none_or(|wanted| wanted == name) {
            matching.push((person, name));
        }
    }
    let person = match matching.len() {
        0 => {
            return Err(Error::NotFound(format!(
                "no person @{handle}{}; `leadtime-host bootstrap` creates the first admin",
                workspace.map(|w| format!(" in workspace `{w}`")).unwrap_or_default()
            )));
        }
        1 => matching.remove(0).0,
        _ => {
            let names: Vec<String> = matching.iter().map(|(_, name)| format!("`{name}`")).collect();
            return Err(Error::invalid(
                "workspace",
                format!(
                    "@{handle} exists in several workspaces ({}): name one with --workspace",
                    names.join(", ")
                ),
            ));
        }
    };
    if !person.is_enabled() {
        return Err(Error::Conflict(format!("@{handle} is disabled")));
    }
    let code = token_rules::generate_with_prefix(LINK_PREFIX);
    let expires = now.plus_millis(LINK_MINUTES * 60_000);
    store::console_links::insert(&mut tx, &token_rules::token_digest(&code), &person.id, expires, now).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(code)
}

/// Redeems a link's `code` (once, before it expires): a new token for its person, lasting a day,
/// with the scopes their role gives; the plaintext (it goes into the console's cookie only).
pub async fn redeem_link(app: &App, code: &str) -> Result<String, Error> {
    let gone = || {
        Error::Gone(
            "this sign-in link was used already or has expired; print a new one with `leadtime-host console-link`"
                .into(),
        )
    };
    if token_rules::check_token_format(code, LINK_PREFIX).is_err() {
        return Err(gone());
    }
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let user = store::console_links::redeem(&mut tx, &token_rules::token_digest(code), now)
        .await?
        .ok_or_else(gone)?;
    let person = store::users::get_any(&mut tx, &user).await?.ok_or_else(gone)?;
    if person.kind != UserKind::Person || !person.is_enabled() || person.deleted_at.is_some() {
        return Err(gone());
    }
    tokens::ensure_room_for_token(&mut tx, &person, now).await?;
    let scopes = match person.role {
        Role::Admin => Scopes::new(Scope::ALL),
        Role::Member => Scopes::new([Scope::Read, Scope::Write]),
    };
    let expires = Timestamp::from_millis(now.millis() + LINK_TOKEN_HOURS * 3_600_000);
    let (token, plaintext) = tokens::mint(&mut tx, &person, "console sign-in link", scopes, Some(expires), now).await?;
    let actor = Actor {
        kind: Some(ActorKind::Person),
        id: Some(person.id.clone()),
        workspace_id: Some(person.workspace_id.clone()),
        token_id: Some(token.id.clone()),
        ..Actor::default()
    };
    let details = json!({"tokenId": token.id, "via": "console-link"});
    audit::record(
        &mut tx,
        &app.audit_keys,
        &actor,
        Entry::new("console.sign_in", "user", &person.id, details),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(plaintext)
}
