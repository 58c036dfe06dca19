//! `/docs/json`: the OpenAPI document of the public API (connectors in "full" mode read it to
//! list and call operations).

use std::sync::Arc;

use axum::Extension;
use axum::response::{IntoResponse, Response};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::app::SharedApp;

/// The rendered OpenAPI document, shared with the handler.
#[derive(Debug, Clone)]
pub struct OpenApiJson(pub Arc<String>);

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new().routes(routes!(openapi_document))
}

/// Get the OpenAPI document
///
/// The OpenAPI 3.1 description of this API: every operation with its `operationId`, summary,
/// parameters, bodies and errors. No token needed.
#[utoipa::path(get, path = "/docs/json", tag = "docs", operation_id = "getOpenApiDocument", security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
async fn openapi_document(Extension(document): Extension<OpenApiJson>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document.0.as_str().to_owned(),
    )
        .into_response()
}
