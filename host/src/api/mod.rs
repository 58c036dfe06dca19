//! The public API under `/api/public`, as the wire contract and Leadtime's connectors expect it:
//! one router per resource, bearer-token extractors, one JSON error shape, and an OpenAPI document
//! generated from the same routes (so no route can be missing from it).

pub mod access;
pub mod account;
pub mod agent_sessions;
pub mod audit;
pub mod bots;
pub mod connectors;
pub mod deliveries;
pub mod docs;
pub mod error;
pub mod extract;
pub mod inbound;
pub mod input;
pub mod mcp;
pub mod mcp_tools;
pub mod schema;
pub mod session_stream;
pub mod tasks;
pub mod tokens;
pub mod views;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, Request, Uri};
use axum::{Extension, Router};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::api::error::AppError;
use crate::app::SharedApp;
use crate::domain::ids::new_id;

/// Largest request body accepted, in bytes (activity bodies may be tens of KB).
pub const MAX_BODY_BYTES: usize = 2 << 20;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Leadtime agent host — public API",
        description = "Tasks, bots and agent sessions. Authenticate with `Authorization: Bearer <token>` (a person's or a bot's API token). Errors are `{\"error\": code, \"message\": …}`.",
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "tasks", description = "Tasks, statuses, comments and history"),
        (name = "agent-sessions", description = "The session API agent wrappers report through"),
        (name = "bots", description = "Bots and connection types"),
        (name = "account", description = "The caller, the workspace and its people"),
        (name = "tokens", description = "API tokens of people and bots"),
        (name = "connectors", description = "Self-hosted connector setup"),
        (name = "deliveries", description = "Webhook deliveries, their attempts and endpoints"),
        (name = "audit", description = "The tamper-evident audit trail"),
        (name = "docs", description = "This documentation"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The public API's routes with their OpenAPI description, before state is attached.
pub fn public_api() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest(
        PUBLIC_BASE,
        OpenApiRouter::new()
            .merge(tasks::router())
            .merge(agent_sessions::router())
            .merge(bots::router())
            .merge(account::router())
            .merge(tokens::router())
            .merge(connectors::router())
            .merge(deliveries::router())
            .merge(audit::router())
            .merge(docs::router()),
    )
}

/// Where the public API lives; the OpenAPI document's paths are relative to it.
pub const PUBLIC_BASE: &str = "/api/public";

/// The OpenAPI document, as served at `/api/public/docs/json`.
///
/// Its paths are relative to [`PUBLIC_BASE`] (`/tasks/{identifier}/comments`), and `servers` says
/// so: connectors in "full" mode and Leadtime's API skill append a listed path to their
/// `…/api/public` base as it is (wire contract §3).
pub fn openapi(public_url: &str) -> utoipa::openapi::OpenApi {
    let (_, mut document) = public_api().split_for_parts();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let paths = std::mem::take(&mut document.paths.paths);
    document.paths.paths = paths
        .into_iter()
        .map(|(path, item)| match path.strip_prefix(PUBLIC_BASE) {
            Some(relative) => (relative.to_owned(), item),
            None => (path, item),
        })
        .collect();
    let mut absolute = utoipa::openapi::Server::new(format!("{}{PUBLIC_BASE}", public_url.trim_end_matches('/')));
    absolute.description = Some("This host's public URL".into());
    let mut relative = utoipa::openapi::Server::new(PUBLIC_BASE);
    relative.description = Some("Relative to the host serving this document; paths below are relative to it".into());
    document.servers = Some(vec![relative, absolute]);
    access::annotate(&mut document);
    document
}

/// The whole HTTP application.
pub fn router(app: SharedApp) -> Router {
    let (routes, _) = public_api().split_for_parts();
    let docs = docs::RenderedDocs::new(&openapi(&app.config.public_url));
    routes
        .route(
            "/healthz",
            axum::routing::get(|| async { super::api::extract::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route_layer(axum::middleware::from_fn(input::check_input))
        // Provider webhooks: raw bodies checked by signature, not the public API's input rules.
        .merge(inbound::router())
        // MCP for agents: JSON-RPC bodies, authorised by a bot token.
        .merge(mcp::router())
        // The web console: HTML forms, a person's sign-in cookie.
        .merge(crate::console::router())
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(input::InputRules::new(docs.value.clone())))
        .layer(Extension(docs))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // A body that stalls is answered 408 (the server turns the empty answer into JSON).
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            app.config.server.body_read_timeout,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUlid))
        .with_state(app)
}

async fn unknown_route(method: Method, uri: Uri) -> AppError {
    AppError::NotFound(format!(
        "no route {method} {}; the API is under /api/public (see /api/public/docs/json)",
        uri.path()
    ))
}

async fn method_not_allowed(
    method: Method,
    uri: Uri,
) -> (axum::http::StatusCode, extract::Json<crate::api::error::ErrorBody>) {
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        extract::Json(crate::api::error::ErrorBody {
            error: "method_not_allowed",
            message: format!("{method} is not allowed on {}; see /api/public/docs/json", uri.path()),
            field: None,
            field_errors: None,
        }),
    )
}

/// Request ids `req_<ulid>`, echoed in `x-request-id` and on every log line of the request.
#[derive(Debug, Clone, Copy)]
struct MakeRequestUlid;

impl MakeRequestId for MakeRequestUlid {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&new_id("req")).ok().map(RequestId::new)
    }
}
