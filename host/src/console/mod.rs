//! The web console under `/console`: server-rendered pages over the same use cases and
//! authorization as the public API — the tasks, each task's history with its agent sessions as
//! live cards, and sign-in. HTML from maud, one small script for the live cards (the pages work
//! without it), nothing loaded from elsewhere.

mod admin;
mod assets;
mod auth;
mod layout;
mod tasks;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;

use crate::app::SharedApp;
use layout::{Page, page};

/// The console's routes.
pub fn router() -> Router<SharedApp> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/tasks") }))
        .route("/console", get(|| async { Redirect::to("/console/tasks") }))
        .route("/console/assets/console.css", get(assets::stylesheet))
        .route("/console/assets/live.js", get(assets::script))
        .route("/console/sign-in", get(auth::sign_in_page).post(auth::sign_in))
        .route("/console/sign-out", post(auth::sign_out))
        .route("/console/link/{code}", get(auth::link_page).post(auth::redeem_link))
        .route("/console/tasks", get(tasks::list).post(tasks::create))
        .route("/console/tasks/{number}", get(tasks::show))
        .route("/console/tasks/{number}/assign", post(tasks::assign))
        .route("/console/tasks/{number}/comments", post(tasks::comment))
        .route("/console/sessions/{id}/cancel", post(tasks::cancel))
        .route("/console/sessions/{id}/stream", get(tasks::stream))
        .route("/console/admin", get(admin::connection_types_page))
        .route(
            "/console/admin/connection-types/{id}",
            post(admin::update_connection_type),
        )
        .route("/console/admin/bots", get(admin::bots_page).post(admin::create_bot))
        .route("/console/admin/bots/new", get(admin::new_bot_page))
        .route("/console/admin/bots/{id}", get(admin::bot_page))
        .route("/console/admin/bots/{id}/edit", post(admin::edit_bot))
        .route("/console/admin/bots/{id}/{action}", post(admin::bot_action))
        .route("/console/admin/tokens/{id}/revoke", post(admin::revoke_token))
        .route("/console/admin/deliveries/{id}/redeliver", post(admin::redeliver))
        .route("/console/admin/audit", get(admin::audit_page))
}

/// A page saying what went wrong and what to do, with `status`.
pub(crate) fn problem(status: StatusCode, message: &str) -> Response {
    let markup = page(Page {
        title: "Something needs attention",
        user: None,
        body: html! {
            section.narrow {
                h1 { "Something needs attention" }
                p.problem role="alert" { (message) }
                p { a href="/console/tasks" { "Back to the tasks" } }
            }
        },
    });
    (status, markup).into_response()
}

/// A use case's refusal as a page (the API's words and status).
pub(crate) fn refused(error: crate::use_cases::Error) -> Response {
    let error = crate::api::error::AppError::from(error);
    let status = error.status();
    let message = match &error {
        crate::api::error::AppError::Internal(cause) => {
            tracing::error!(error = format!("{cause:#}"), "internal error in the console");
            "Something went wrong on our side; it has been logged.".to_owned()
        }
        other => other.to_string(),
    };
    problem(status, &message)
}
