//! Who may call each operation — the API's authorization in one table. The OpenAPI document
//! carries it (each operation's `security` scopes and an `x-leadtime-access` extension), and the
//! end-to-end authorization matrix checks every operation of the document against the behaviour,
//! so a route added without a policy fails the tests.
//!
//! The handlers enforce the same rules through their extractors (`Reader`, `Writer`, `Admin`) and
//! checks (`require_person`, the session's own bot); this table states them for readers and tests.

use serde_json::json;
use utoipa::openapi::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::SecurityRequirement;

use crate::domain::tokens::Scope;

/// Which callers an operation admits (given the scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callers {
    /// No token needed.
    Public,
    /// People and bots of the workspace.
    Anyone,
    /// People only; bot tokens are refused.
    People,
    /// Workspace admins (people with an `admin`-scoped token).
    Admins,
    /// Only the bot the agent session belongs to.
    SessionBot,
}

impl Callers {
    fn as_str(self) -> &'static str {
        match self {
            Callers::Public => "public",
            Callers::Anyone => "anyone",
            Callers::People => "people",
            Callers::Admins => "admins",
            Callers::SessionBot => "session-bot",
        }
    }
}

/// One operation's policy.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub operation_id: &'static str,
    pub callers: Callers,
    /// The token scope needed (`None` for public operations).
    pub scope: Option<Scope>,
    /// Whether a successful call changes state (and so leaves one audit record).
    pub mutates: bool,
}

const fn policy(operation_id: &'static str, callers: Callers, scope: Option<Scope>, mutates: bool) -> Policy {
    Policy {
        operation_id,
        callers,
        scope,
        mutates,
    }
}

use Callers::{Admins, Anyone, People, Public, SessionBot};
const READ: Option<Scope> = Some(Scope::Read);
const WRITE: Option<Scope> = Some(Scope::Write);
const ADMIN: Option<Scope> = Some(Scope::Admin);

/// Every operation of the public API.
pub const POLICIES: &[Policy] = &[
    policy("createTask", Anyone, WRITE, true),
    policy("listTaskStatuses", Anyone, READ, false),
    policy("listTasks", Anyone, READ, false),
    policy("getTask", Anyone, READ, false),
    policy("updateTask", Anyone, WRITE, true),
    policy("addTaskComment", Anyone, WRITE, true),
    policy("listTaskComments", Anyone, READ, false),
    policy("getTaskHistory", Anyone, READ, false),
    policy("getAgentSession", Anyone, READ, false),
    policy("streamAgentSession", Anyone, READ, false),
    policy("cancelAgentSession", People, WRITE, true),
    policy("getAgentSessionContext", SessionBot, READ, false),
    policy("postAgentSessionActivity", SessionBot, WRITE, true),
    policy("setAgentSessionStatus", SessionBot, WRITE, true),
    policy("createBot", Admins, ADMIN, true),
    policy("listBots", Anyone, READ, false),
    policy("getBot", Anyone, READ, false),
    policy("updateBot", Admins, ADMIN, true),
    policy("deleteBot", Admins, ADMIN, true),
    policy("disableBot", Admins, ADMIN, true),
    policy("enableBot", Admins, ADMIN, true),
    policy("validateBotConnection", Admins, ADMIN, false),
    policy("createBotSetupCode", Admins, ADMIN, true),
    policy("rotateBotWebhookSecret", Admins, ADMIN, true),
    policy("listBotSecrets", Admins, ADMIN, false),
    policy("setBotSecret", Admins, ADMIN, true),
    policy("deleteBotSecret", Admins, ADMIN, true),
    policy("listConnectionTypes", Anyone, READ, false),
    policy("updateConnectionType", Admins, ADMIN, true),
    policy("getAccountInfo", Anyone, READ, false),
    policy("getWorkspaceDetails", Anyone, READ, false),
    policy("listUsers", Anyone, READ, false),
    policy("addPerson", Admins, ADMIN, true),
    policy("listTokens", People, READ, false),
    policy("createToken", People, WRITE, true),
    policy("revokeToken", People, WRITE, true),
    policy("rotateToken", People, WRITE, true),
    policy("listAuditRecords", Admins, ADMIN, false),
    policy("listBotDeliveries", Admins, ADMIN, false),
    policy("listSessionDeliveries", Admins, ADMIN, false),
    policy("redeliverDelivery", Admins, ADMIN, true),
    policy("redeliverFailedDeliveries", Admins, ADMIN, true),
    policy("getWebhookEndpoint", Admins, ADMIN, false),
    policy("enableWebhookEndpoint", Admins, ADMIN, true),
    policy("getProviderWebhooks", Admins, ADMIN, false),
    policy("claimConnectorSetup", Public, None, true),
    policy("getOpenApiDocument", Public, None, false),
    policy("getApiDocsPage", Public, None, false),
];

/// The policy of `operation_id`.
pub fn policy_of(operation_id: &str) -> Option<&'static Policy> {
    POLICIES.iter().find(|p| p.operation_id == operation_id)
}

/// Writes each operation's policy into the document: `security` (bearer with the scope, or none)
/// and `x-leadtime-access`. Operations without a policy are left unmarked (the tests catch them).
pub fn annotate(document: &mut OpenApi) {
    for item in document.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            annotate_operation(operation);
        }
    }
}

fn annotate_operation(operation: &mut Operation) {
    let Some(policy) = operation.operation_id.as_deref().and_then(policy_of) else {
        return;
    };
    operation.security = Some(match policy.scope {
        Some(scope) => vec![SecurityRequirement::new("bearer", [scope.as_str()])],
        None => Vec::new(),
    });
    let access = json!({
        "callers": policy.callers.as_str(),
        "scope": policy.scope.map(Scope::as_str),
        "mutates": policy.mutates,
    });
    operation
        .extensions
        .get_or_insert_with(Default::default)
        .insert("x-leadtime-access".into(), access);
    declare_errors(operation, policy);
}

/// Declares the error answers every operation of its kind can give, in the JSON error shape, so a
/// client generated from the document expects them: 401/403/429 for token-protected operations,
/// 400/408/413/415 for those with a body, 404 for those naming a resource in their path.
fn declare_errors(operation: &mut Operation, policy: &Policy) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let has_body = operation.request_body.is_some();
    let has_path_params = operation
        .parameters
        .iter()
        .flatten()
        .any(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Path));
    let has_params = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let mut errors: Vec<(&str, &str)> = Vec::new();
    if policy.scope.is_some() {
        errors.push((
            "401",
            "No usable token: missing, malformed, unknown, revoked or expired",
        ));
        errors.push(("403", "The token may not do this (scope, or who the caller is)"));
        errors.push((
            "429",
            "Too many requests with this token, or too many failed authentications from this address; see `Retry-After`",
        ));
    }
    if has_body || has_params {
        errors.push(("400", "The input is invalid; the message (and `field`) say what to fix"));
    }
    if has_body {
        errors.push(("408", "The request body stopped arriving"));
        errors.push(("413", "The request body is too large"));
        errors.push(("415", "The body is not `application/json`"));
    }
    if has_path_params {
        errors.push(("404", "Nothing with that id in the caller's workspace"));
    }
    for (status, description) in errors {
        if operation.responses.responses.contains_key(status) {
            continue;
        }
        let response = ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        operation.responses.responses.insert(status.to_owned(), response.into());
    }
}
