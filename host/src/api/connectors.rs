//! `/agent-connectors/setup/claim`: a wrapper claims a setup code (wire contract §4). No token:
//! the one-time code is the credential.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Json;
use crate::api::error::{AppError, ErrorBody};
use crate::app::SharedApp;
use crate::use_cases::accounts::RequestMeta;
use crate::use_cases::accounts::setup::{self, Claim};

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new().routes(routes!(claim_setup))
}

/// A wrapper's claim.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ClaimRequest {
    /// The `lt_conn_…` code an admin created. One that was never issued is answered 404, a used
    /// one 409, an expired one 410.
    #[schema(pattern = r"^lt_conn_[0-9A-Za-z]{38}$")]
    setup_token: String,
    /// The wrapper's public base URL (http or https, a host name or IPv4 address, no user info or
    /// `#fragment`); webhooks go to it + `/leadtime/webhook`.
    #[schema(
        pattern = r#"^https?://(?:(?:[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\.)*[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*|(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(?:/[!"$-~]*)?$"#
    )]
    gateway_public_url: String,
    /// At most 200 bytes (UTF-8).
    #[schema(max_length = 200)]
    agent_id: Option<String>,
    /// At most 200 bytes (UTF-8).
    #[schema(max_length = 200)]
    runtime_version: Option<String>,
}

/// Standing instructions for the agent.
#[derive(Debug, Serialize, ToSchema)]
struct Guidance {
    instructions: String,
}

/// The bot's credentials, shown only in this response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ClaimResponse {
    bot_user_id: String,
    /// The bot's new API token.
    bot_pat: String,
    /// The connection's new webhook signing secret.
    webhook_secret: String,
    bot_name: String,
    agent_id: Option<String>,
    /// `basic` or `full`.
    mode: String,
    guidance: Guidance,
    webhook_path: &'static str,
    /// Whether the wrapper may hand the bot token itself to its agent (the connection's
    /// `exposeRawApiCredentialToAgent` setting, off unless an admin turned it on).
    expose_raw_api_credential_to_agent: bool,
}

/// Claim a connector setup code
///
/// Stores the wrapper's webhook URL on the bot's self-hosted connection and returns a fresh bot
/// token and webhook secret — once. An unknown code gets a 404, a used one a 409 and an expired
/// one a 410, each with a `message`.
#[utoipa::path(post, path = "/agent-connectors/setup/claim", tag = "connectors", operation_id = "claimConnectorSetup",
    request_body = ClaimRequest, security(()),
    responses((status = 200, body = ClaimResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
async fn claim_setup(
    State(app): State<SharedApp>,
    meta: RequestMeta,
    Json(body): Json<ClaimRequest>,
) -> Result<Json<ClaimResponse>, AppError> {
    let claim = Claim {
        setup_token: body.setup_token,
        gateway_public_url: body.gateway_public_url,
        agent_id: body.agent_id,
        runtime_version: body.runtime_version,
    };
    let claimed = setup::claim(&app, claim, meta).await?;
    Ok(Json(ClaimResponse {
        bot_user_id: claimed.bot_user_id,
        bot_pat: claimed.bot_pat,
        webhook_secret: claimed.webhook_secret,
        bot_name: claimed.bot_name,
        agent_id: claimed.agent_id,
        mode: claimed.mode,
        guidance: Guidance {
            instructions: claimed.instructions,
        },
        webhook_path: claimed.webhook_path,
        expose_raw_api_credential_to_agent: claimed.expose_raw_api_credential_to_agent,
    }))
}
