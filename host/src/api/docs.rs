//! `/docs/json` and `/docs`: the OpenAPI document of the public API (connectors in "full" mode read
//! it to list and call operations) and a page people can read.

use std::sync::Arc;

use axum::Extension;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, html};
use utoipa::openapi::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::access::policy_of;
use crate::app::SharedApp;

/// The rendered documents, made once at start and shared with the handlers.
#[derive(Debug, Clone)]
pub struct RenderedDocs {
    pub json: Arc<String>,
    pub html: Arc<String>,
    /// The document as served, for the input rules.
    pub value: Arc<serde_json::Value>,
}

impl RenderedDocs {
    /// Renders `document` as JSON (with the storable-text pattern declared) and as a page.
    pub fn new(document: &OpenApi) -> Self {
        let mut value = serde_json::to_value(document).unwrap_or_default();
        super::input::declare_storable_text(&mut value);
        Self {
            json: Arc::new(value.to_string()),
            html: Arc::new(render_page(document)),
            value: Arc::new(value),
        }
    }
}

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new()
        .routes(routes!(openapi_document))
        .routes(routes!(docs_page))
}

/// Get the OpenAPI document
///
/// The OpenAPI 3.1 description of this API: every operation with its `operationId`, summary,
/// parameters, bodies, errors and access policy. No token needed.
#[utoipa::path(get, path = "/docs/json", tag = "docs", operation_id = "getOpenApiDocument",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
async fn openapi_document(Extension(docs): Extension<RenderedDocs>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        docs.json.as_str().to_owned(),
    )
        .into_response()
}

/// Read the API documentation
///
/// This API's operations as a page for people: what each does, who may call it, and its errors.
/// No token needed.
#[utoipa::path(get, path = "/docs", tag = "docs", operation_id = "getApiDocsPage",
    responses((status = 200, description = "The documentation page", content_type = "text/html")))]
async fn docs_page(Extension(docs): Extension<RenderedDocs>) -> Html<String> {
    Html(docs.html.as_str().to_owned())
}

fn operations(document: &OpenApi) -> Vec<(String, &'static str, &Operation)> {
    let mut all = Vec::new();
    for (path, item) in &document.paths.paths {
        for (method, operation) in [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ] {
            if let Some(operation) = operation {
                all.push((path.clone(), method, operation));
            }
        }
    }
    all
}

fn render_page(document: &OpenApi) -> String {
    let tags: Vec<(String, String)> = document
        .tags
        .iter()
        .flatten()
        .map(|t| (t.name.clone(), t.description.clone().unwrap_or_default()))
        .collect();
    let operations = operations(document);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (document.info.title) }
                style { "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}\
                         code{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}\
                         section{border-top:1px solid #ddd;padding:.5rem 0}.m{font-weight:bold;margin-right:.5rem}\
                         .access{color:#555;font-size:13px}" }
            }
            body {
                h1 { (document.info.title) " " small { (document.info.version) } }
                @if let Some(description) = &document.info.description { p { (description) } }
                p { "Machine-readable: " a href="/api/public/docs/json" { code { "/api/public/docs/json" } }
                    ". Every path below is relative to " code { (super::PUBLIC_BASE) } "." }
                @for (tag, about) in &tags {
                    h2 { (tag) }
                    p { (about) }
                    @for (path, method, operation) in operations.iter().filter(|(_, _, o)| o.tags.iter().flatten().any(|t| t == tag)) {
                        section id=(operation.operation_id.clone().unwrap_or_default()) {
                            h3 { span.m { (method) } code { (super::PUBLIC_BASE) (path) } }
                            @if let Some(summary) = &operation.summary { p { strong { (summary) } } }
                            @if let Some(description) = &operation.description { p { (description) } }
                            p.access {
                                "operationId " code { (operation.operation_id.clone().unwrap_or_default()) }
                                @if let Some(policy) = operation.operation_id.as_deref().and_then(policy_of) {
                                    " · callers: " (format!("{:?}", policy.callers).to_lowercase())
                                    @if let Some(scope) = policy.scope { " · scope: " code { (scope.as_str()) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    .into_string()
}
