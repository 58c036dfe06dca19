//! Who is using the console: a person signed in with their API token (or a one-time link that
//! mints one). The token travels sealed in an `HttpOnly`, `SameSite=Strict` cookie and is checked
//! on every request exactly as an API call checks it (revoked, expired, disabled: signed out), so
//! every page has the API's authorization. Forms carry a CSRF value derived from the cookie.

use axum::extract::{ConnectInfo, Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use maud::html;
use serde::Deserialize;
use sha2::Sha256;
use std::net::SocketAddr;

use super::layout::{Page, page};
use crate::app::{App, SharedApp};
use crate::domain::users::UserKind;
use crate::secrets::{Sealed, SecretValue};
use crate::use_cases::caller::{self, Caller, RequestMeta};
use crate::use_cases::{self, Error};

/// The console's cookie.
const COOKIE: &str = "lt_console";
/// How long a sign-in lasts in the browser (the token's own expiry ends it sooner).
const COOKIE_SECONDS: i64 = 12 * 3_600;
/// Names the sealed value, so a cookie cannot be swapped for another sealed secret.
const SEAL_OWNER: &str = "console";
const SEAL_NAME: &str = "session";

/// A signed-in person.
pub struct ConsoleUser {
    pub caller: Caller,
    /// The form value POSTs must echo.
    pub csrf: String,
}

impl ConsoleUser {
    /// The refusal of a form whose CSRF value is not this sign-in's (`None`: it is).
    pub fn csrf_refusal(&self, sent: &str) -> Option<Response> {
        let (a, b) = (self.csrf.as_bytes(), sent.as_bytes());
        if a.len() == b.len() && subtle::ConstantTimeEq::ct_eq(a, b).into() {
            None
        } else {
            Some(super::problem(
                axum::http::StatusCode::FORBIDDEN,
                "This form is out of date (or came from another site). Go back, reload the page and try again.",
            ))
        }
    }
}

impl FromRequestParts<SharedApp> for ConsoleUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, Response> {
        let back = || {
            let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/console");
            sign_in_redirect(next)
        };
        let Some(cookie) = cookie_value(&parts.headers) else {
            return Err(back());
        };
        let Some(token) = open_cookie(app, &cookie) else {
            return Err(back());
        };
        let meta = request_meta(parts);
        let caller = match caller::authenticate(app, token.expose(), meta).await {
            Ok(caller) if caller.user.kind == UserKind::Person => caller,
            _ => return Err(back()),
        };
        if app.rate_limits.check(&caller.token.id).is_err() {
            return Err(super::problem(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "Too many requests with this sign-in; wait a minute and reload.",
            ));
        }
        Ok(ConsoleUser {
            csrf: csrf_for(app, &cookie),
            caller,
        })
    }
}

/// The client's address, when the server knows it.
pub(super) struct ClientAddress(Option<std::net::IpAddr>);

impl FromRequestParts<SharedApp> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &SharedApp) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()),
        ))
    }
}

fn request_meta(parts: &Parts) -> RequestMeta {
    let text = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(512).collect())
    };
    RequestMeta {
        request_id: text("x-request-id"),
        ip: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
        user_agent: text("user-agent"),
    }
}

fn sign_in_redirect(next: &str) -> Response {
    let next = url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>();
    Redirect::to(&format!("/console/sign-in?next={next}")).into_response()
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

fn seal_cookie(app: &App, token: &str) -> String {
    let sealed = app
        .secrets
        .seal(SEAL_OWNER, SEAL_NAME, &SecretValue::new(token.to_owned()));
    let mut bytes = sealed.nonce;
    bytes.extend_from_slice(&sealed.ciphertext);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn open_cookie(app: &App, value: &str) -> Option<SecretValue> {
    let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
    if bytes.len() <= 12 {
        return None;
    }
    let (nonce, ciphertext) = bytes.split_at(12);
    let sealed = Sealed {
        nonce: nonce.to_vec(),
        ciphertext: ciphertext.to_vec(),
    };
    app.secrets.open(SEAL_OWNER, SEAL_NAME, &sealed).ok()
}

fn csrf_for(app: &App, cookie: &str) -> String {
    let key = app.secrets.derive_key("console-csrf");
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return String::new();
    };
    mac.update(cookie.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

fn set_cookie(app: &App, value: &str, max_age: i64) -> HeaderValue {
    let secure = if app.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("lt_console=; Path=/console; Max-Age=0"))
}

/// A path inside the console to go to after signing in (anything else goes to the task list).
fn safe_next(next: Option<&str>) -> String {
    next.filter(|n| n.starts_with("/console") && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or("/console/tasks")
        .to_owned()
}

#[derive(Debug, Deserialize)]
pub(super) struct Next {
    next: Option<String>,
}

/// `GET /console/sign-in`
pub(super) async fn sign_in_page(Query(next): Query<Next>) -> Response {
    sign_in_form(next.next.as_deref(), None).into_response()
}

fn sign_in_form(next: Option<&str>, problem: Option<&str>) -> maud::Markup {
    let next = safe_next(next);
    page(Page {
        title: "Sign in",
        user: None,
        body: html! {
            section.narrow {
                h1 { "Sign in" }
                @if let Some(problem) = problem {
                    p.problem role="alert" { (problem) }
                }
                form method="post" action="/console/sign-in" {
                    input type="hidden" name="next" value=(next);
                    label for="token" { "Your personal API token" }
                    input #token type="password" name="token" autocomplete="current-password" required
                        placeholder="lt_…" aria-describedby="token-help";
                    p #token-help .help {
                        "The token you were given (" code { "./dev host bootstrap" } " prints the first admin's), or run "
                        code { "./dev host console-link" } " on the host for a one-time link. Bot tokens cannot sign in."
                    }
                    button type="submit" { "Sign in" }
                }
            }
        },
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct SignIn {
    token: String,
    next: Option<String>,
}

/// `POST /console/sign-in`: checks the token as the API would, and that it is a person's.
pub(super) async fn sign_in(
    State(app): State<SharedApp>,
    headers: HeaderMap,
    ClientAddress(address): ClientAddress,
    Form(form): Form<SignIn>,
) -> Response {
    if !same_origin(&headers) {
        return super::problem(
            axum::http::StatusCode::FORBIDDEN,
            "Sign in from the console's own page.",
        );
    }
    if app.failed_auth.check(address).is_err() {
        return super::problem(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-ins from this address; wait a minute.",
        );
    }
    let token = form.token.trim();
    let meta = RequestMeta {
        request_id: None,
        ip: address.map(|a| a.to_string()),
        user_agent: None,
    };
    let problem = match caller::authenticate(&app, token, meta).await {
        Ok(caller) if caller.user.kind == UserKind::Person => {
            return signed_in(&app, token, &safe_next(form.next.as_deref()));
        }
        Ok(_) => "A bot's token cannot sign in to the console; use a person's token.",
        Err(Error::Unauthenticated(_)) => {
            let _ = app.failed_auth.failed(address);
            "That token is not valid (unknown, revoked or expired)."
        }
        Err(_) => "The host could not check the token just now; try again.",
    };
    let mut response = sign_in_form(form.next.as_deref(), Some(problem)).into_response();
    *response.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
    response
}

fn signed_in(app: &App, token: &str, next: &str) -> Response {
    let mut response = Redirect::to(next).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(app, &seal_cookie(app, token), COOKIE_SECONDS),
    );
    response
}

/// Whether a form post came from this site (browsers send `Origin` or `Sec-Fetch-Site`; a client
/// that sends neither is not a browser and cannot be tricked by another site).
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    match (text("origin"), text("host")) {
        (Some(origin), Some(host)) => origin.split("://").nth(1) == Some(host),
        _ => true,
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct CsrfOnly {
    csrf: String,
}

/// `POST /console/sign-out`: forgets the cookie (the token itself stays valid for the API).
pub(super) async fn sign_out(State(app): State<SharedApp>, user: ConsoleUser, Form(form): Form<CsrfOnly>) -> Response {
    if let Some(refused) = user.csrf_refusal(&form.csrf) {
        return refused;
    }
    let mut response = Redirect::to("/console/sign-in").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&app, "", 0));
    response
}

/// `GET /console/link/{code}`: a button (so a link preview that fetches the URL does not use it).
pub(super) async fn link_page(Path(code): Path<String>) -> Response {
    page(Page {
        title: "Sign in",
        user: None,
        body: html! {
            section.narrow {
                h1 { "Sign in with a one-time link" }
                p { "This link signs you in once and stops working after " (use_cases::console::LINK_MINUTES) " minutes." }
                form method="post" action={ "/console/link/" (code) } {
                    button type="submit" { "Sign in" }
                }
            }
        },
    })
    .into_response()
}

/// `POST /console/link/{code}`: redeems the link and signs in with the token it mints.
pub(super) async fn redeem_link(
    State(app): State<SharedApp>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Response {
    if !same_origin(&headers) {
        return super::problem(
            axum::http::StatusCode::FORBIDDEN,
            "Open the link in your browser and press its button.",
        );
    }
    match use_cases::console::redeem_link(&app, &code).await {
        Ok(token) => signed_in(&app, &token, "/console/tasks"),
        Err(Error::Gone(message)) => super::problem(axum::http::StatusCode::GONE, &message),
        Err(error) => super::problem(axum::http::StatusCode::CONFLICT, &error.to_string()),
    }
}
