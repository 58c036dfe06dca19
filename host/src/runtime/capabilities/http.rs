//! `wasi:http/outgoing-handler`: a plugin's calls to its provider, on the host's terms.
//!
//! wasmtime-wasi-http parses the guest's request; [`OutboundHooks::send_request`] decides and
//! sends it. A request goes out only when
//! - the plugin declared the `http` capability, the call is about a session, and the call's
//!   request budget is not used up;
//! - its host matches one of the manifest's `outbound-hosts` (exact, or `*.example.com`), which a
//!   workspace admin saw and accepted when enabling the connection type;
//! - every address it connects to passes the same SSRF guard as webhook delivery
//!   ([`crate::outbound`]: checked after DNS resolution, no redirects, no proxy).
//!
//! Header values and (since 0.1.2) bodies may hold `{{secret:NAME}}`; the host replaces each with
//! the connection's secret `NAME` (declared in the manifest and set by an admin, or the generated
//! `inbound-webhook` secret) after the host check — JSON-escaped in a JSON body — so a secret only
//! ever travels to hosts the plugin is allowed to call. Its value never enters plugin memory: a
//! response that echoes a secret sent in this call gets the reference back in its place.
//! References in the URL (and, for plugins built against 0.1.0/0.1.1, in the body) are sent as
//! written.
//!
//! Responses are read whole, up to the response-size cap, within the call's timeouts. Every
//! refusal and failure is remembered with a reason, so a plugin call that fails because of one says
//! why on the session.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::domain::ids::{ConnectionId, SessionId};
use crate::domain::session_tokens;
use crate::outbound::{OutboundPolicy, forbidden_in};
use crate::secrets::SecretValue;

use crate::runtime::call::HttpProblems;
use crate::runtime::limits::HttpLimits;
use crate::runtime::services::{CallServices, CapabilityError};

/// Problems kept (and logged) per call; past it they are only counted, so a plugin looping on
/// refused requests cannot grow the host's memory or logs.
const KEPT_PROBLEMS: usize = 8;
/// Secret references one request may hold.
const MAX_SECRET_REFERENCES: usize = 8;
/// Longest URL shown in a problem.
const SHOWN_URL_CHARS: usize = 200;

/// The prefix of a secret reference in a header value: `{{secret:NAME}}`.
const SECRET_OPEN: &str = "{{secret:";
const SECRET_CLOSE: &str = "}}";

/// What a call's outbound requests may reach, and the reasons its refused or failed requests give.
pub(crate) struct OutboundHooks {
    shared: Arc<Outbound>,
    remaining: u32,
}

/// The parts of [`OutboundHooks`] a request's future needs after the hook returned.
struct Outbound {
    plugin_id: String,
    /// `Err(reason)` when the call may not use HTTP at all.
    grant: Result<Grant, String>,
    client: reqwest::Client,
    policy: OutboundPolicy,
    limits: HttpLimits,
    services: Arc<dyn CallServices>,
    problems: Mutex<Problems>,
    /// Response bytes received so far in this call.
    received: std::sync::atomic::AtomicUsize,
    /// Secret values already opened in this call, by name (one database read each).
    opened: tokio::sync::Mutex<std::collections::HashMap<String, SecretValue>>,
}

/// The first few problems of a call, and how many there were.
#[derive(Default)]
struct Problems {
    kept: Vec<String>,
    total: usize,
}

/// What the manifest, the workspace and the call allow.
pub(crate) struct Grant {
    /// The manifest's `outbound-hosts`.
    pub hosts: Vec<String>,
    /// The workspace's narrowing of them, if any.
    pub workspace_hosts: Option<Vec<String>>,
    /// Secret names the manifest declares.
    pub secrets: Vec<String>,
    /// Whether references in the body are replaced too (contract 0.1.2 on).
    pub secrets_in_bodies: bool,
    pub connection: ConnectionId,
    /// The session the call is about: a `{{secret:session-token}}` reference is its token.
    pub session: Option<SessionId>,
}

/// The shared pieces every call's hooks are made from.
#[derive(Clone)]
pub(crate) struct OutboundSetup {
    pub client: reqwest::Client,
    pub policy: OutboundPolicy,
    pub limits: HttpLimits,
}

impl OutboundHooks {
    /// Hooks for a call by `plugin_id`. `grant` is `Err(reason)` when the call may not use HTTP.
    pub(crate) fn new(
        setup: &OutboundSetup,
        plugin_id: &str,
        grant: Result<Grant, String>,
        services: Arc<dyn CallServices>,
    ) -> Self {
        Self {
            remaining: setup.limits.requests,
            shared: Arc::new(Outbound {
                plugin_id: plugin_id.to_owned(),
                grant,
                client: setup.client.clone(),
                policy: setup.policy,
                limits: setup.limits.clone(),
                services,
                problems: Mutex::new(Problems::default()),
                received: std::sync::atomic::AtomicUsize::new(0),
                opened: tokio::sync::Mutex::new(std::collections::HashMap::new()),
            }),
        }
    }

    /// Why requests of this call were refused or failed: the first few, in order, and how many
    /// there were in all.
    pub(crate) fn problems(&self) -> HttpProblems {
        let problems = self.shared.problems.lock().unwrap_or_else(|p| p.into_inner());
        HttpProblems {
            first: problems.kept.clone(),
            total: problems.total,
        }
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    // reqwest sets `Host` from the URL it was asked to reach.
    fn set_host_header(&mut self) -> bool {
        false
    }

    // An outgoing body holds at most two chunks in host memory; further writes wait for the
    // request to be sent (the SDK writes the body after handing the request over).
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        1
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        self.shared.limits.body_chunk_bytes
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_done: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        let shared = self.shared.clone();
        let budget = if self.remaining == 0 {
            Err(Refusal::denied(format!(
                "a plugin call may send at most {} HTTP requests",
                shared.limits.requests
            )))
        } else {
            self.remaining -= 1;
            Ok(())
        };
        Box::new(async move {
            let target = format!("{} {}", request.method(), shown_url(request.uri()));
            let outcome = match budget {
                Ok(()) => shared.send(request, options).await,
                Err(refusal) => Err(refusal),
            };
            match outcome {
                Ok(response) => Ok((
                    response,
                    Box::new(async { Ok(()) }) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                )),
                Err(refusal) => {
                    let mut problems = shared.problems.lock().unwrap_or_else(|p| p.into_inner());
                    problems.total += 1;
                    if problems.kept.len() < KEPT_PROBLEMS {
                        let message = format!("{target}: {}", refusal.reason);
                        tracing::warn!(target: "plugin", plugin = %shared.plugin_id, "outbound request refused or failed: {message}");
                        problems.kept.push(message);
                    }
                    Err(refusal.code)
                }
            }
        })
    }
}

/// Why a request did not get a response: the code the guest sees and the reason people see.
struct Refusal {
    code: HttpError,
    reason: String,
}

impl Refusal {
    fn new(code: HttpError, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    fn denied(reason: impl Into<String>) -> Self {
        Self::new(HttpError::HttpRequestDenied, reason)
    }
}

/// A test harness's answer to a request that passed every check (see [`CallServices::answer_http`]).
async fn scripted(
    services: &dyn CallServices,
    method: &str,
    url: &url::Url,
    headers: &reqwest::header::HeaderMap,
    body: Bytes,
) -> Result<http::Response<WasiBody>, Refusal> {
    let request = crate::runtime::ScriptedRequest {
        method: method.to_owned(),
        url: url.to_string(),
        headers: headers
            .iter()
            .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect(),
        body: body.to_vec(),
    };
    let answer = services.answer_http(request).await;
    let mut builder = http::Response::builder().status(answer.status);
    for (name, value) in &answer.headers {
        builder = builder.header(name, value);
    }
    let body = Full::new(Bytes::from(answer.body))
        .map_err(|never| match never {})
        .boxed_unsync();
    builder
        .body(body)
        .map_err(|e| Refusal::new(HttpError::HttpProtocolError, format!("unusable scripted response: {e}")))
}

impl Outbound {
    async fn send(
        &self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, Refusal> {
        let grant = self.grant.as_ref().map_err(|reason| Refusal::denied(reason.clone()))?;
        let (parts, body) = request.into_parts();
        let url = url::Url::parse(&parts.uri.to_string())
            .map_err(|e| Refusal::new(HttpError::HttpRequestUriInvalid, format!("not a usable URL: {e}")))?;
        let host = url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase())
            .ok_or_else(|| Refusal::new(HttpError::HttpRequestUriInvalid, "the URL has no host"))?;
        if !host_allowed(&grant.hosts, &host) {
            let declared = if grant.hosts.is_empty() {
                "it declares none".to_owned()
            } else {
                format!("it declares: {}", grant.hosts.join(", "))
            };
            return Err(Refusal::denied(format!(
                "host `{host}` is not in the plugin's manifest outbound-hosts ({declared})"
            )));
        }
        if let Some(narrowed) = &grant.workspace_hosts
            && !host_allowed(narrowed, &host)
        {
            let listed = if narrowed.is_empty() {
                "none".to_owned()
            } else {
                narrowed.join(", ")
            };
            return Err(Refusal::denied(format!(
                "host `{host}` is not among the hosts this workspace lets connection type `{id}` call ({listed}); \
                 an admin changes them with PATCH /api/public/connection-types/{id}",
                id = self.plugin_id
            )));
        }
        if let Err(forbidden) = self.policy.check_url(&url) {
            return Err(Refusal::new(HttpError::DestinationIpProhibited, forbidden.to_string()));
        }

        let mut headers = reqwest::header::HeaderMap::new();
        let mut references = 0;
        for (name, value) in &parts.headers {
            let value = match value.to_str() {
                Ok(text) if text.contains(SECRET_OPEN) => {
                    self.may_carry_secrets(&url, &format!("header `{name}`"), text, &mut references)?;
                    self.with_secrets(grant, name.as_str(), text).await?
                }
                _ => value.clone(),
            };
            headers.append(name.clone(), value);
        }

        let body = Limited::new(body, self.limits.request_body_bytes)
            .collect()
            .await
            .map_err(|_| {
                Refusal::new(
                    HttpError::HttpRequestBodySize(None),
                    format!(
                        "the request body is larger than the {} KiB limit (or could not be read)",
                        self.limits.request_body_bytes >> 10
                    ),
                )
            })?
            .to_bytes();
        let body = if grant.secrets_in_bodies && body.windows(SECRET_OPEN.len()).any(|w| w == SECRET_OPEN.as_bytes()) {
            match std::str::from_utf8(&body) {
                Ok(text) if secret_references(text).iter().any(|p| matches!(p, Piece::Secret(_))) => {
                    self.may_carry_secrets(&url, "the request body", text, &mut references)?;
                    let json = headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(is_json_media_type);
                    Bytes::from(self.substitute(grant, "the request body", text, json).await?)
                }
                _ => body,
            }
        } else {
            body
        };

        if self.services.scripts_http() {
            return scripted(self.services.as_ref(), parts.method.as_str(), &url, &headers, body).await;
        }
        let first_byte = options
            .and_then(|o| o.first_byte_timeout)
            .map_or(self.limits.first_byte_timeout, |t| {
                t.min(self.limits.first_byte_timeout)
            });
        let send = self
            .client
            .request(parts.method, url)
            .headers(headers)
            .body(body)
            .timeout(self.limits.total_timeout)
            .send();
        let mut response = tokio::time::timeout(first_byte, send)
            .await
            .map_err(|_| {
                Refusal::new(
                    HttpError::ConnectionReadTimeout,
                    format!("no response within {} s", first_byte.as_secs_f32()),
                )
            })?
            .map_err(send_error)?;

        let echoes = self.sent_secrets().await;
        let mut builder = http::Response::builder().status(response.status().as_u16());
        for (name, value) in response.headers() {
            match value.to_str() {
                Ok(text) if echoes.iter().any(|(_, secret)| text.contains(secret.as_str())) => {
                    let redacted = redact(text.as_bytes(), &echoes);
                    builder = builder.header(name, redacted);
                }
                _ => builder = builder.header(name, value),
            }
        }
        let mut received = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(send_error)? {
            if received.len() + chunk.len() > self.limits.response_body_bytes {
                return Err(Refusal::new(
                    HttpError::HttpResponseBodySize(None),
                    format!(
                        "the response body is larger than the {} MiB limit",
                        self.limits.response_body_bytes >> 20
                    ),
                ));
            }
            let call_total = self
                .received
                .fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed)
                + chunk.len();
            if call_total > self.limits.call_response_bytes {
                return Err(Refusal::new(
                    HttpError::HttpResponseBodySize(None),
                    format!(
                        "the call's responses add up to more than the {} MiB limit",
                        self.limits.call_response_bytes >> 20
                    ),
                ));
            }
            received.extend_from_slice(&chunk);
        }
        if !echoes.is_empty() {
            received = redact(&received, &echoes);
        }
        let body = Full::new(Bytes::from(received))
            .map_err(|never| match never {})
            .boxed_unsync();
        builder
            .body(body)
            .map_err(|e| Refusal::new(HttpError::HttpProtocolError, format!("unusable response: {e}")))
    }

    /// Refuses secret references in `what` (`text`) unless the request goes over https (or, with
    /// private targets allowed for development, plain http to this machine), and counts them
    /// against the request's cap.
    fn may_carry_secrets(&self, url: &url::Url, what: &str, text: &str, references: &mut usize) -> Result<(), Refusal> {
        let loopback_allowed = self.policy.allow_private_targets && is_loopback_host(url);
        if url.scheme() != "https" && !loopback_allowed {
            return Err(Refusal::denied(format!(
                "{what} refers to a secret, which is only sent over https (or, in development with \
                 private targets allowed, over http to this machine)"
            )));
        }
        *references += secret_references(text)
            .iter()
            .filter(|p| matches!(p, Piece::Secret(_)))
            .count();
        if *references > MAX_SECRET_REFERENCES {
            return Err(Refusal::denied(format!(
                "a request may refer to at most {MAX_SECRET_REFERENCES} secrets"
            )));
        }
        Ok(())
    }

    /// `text` with every `{{secret:NAME}}` replaced by the connection's secret, as a sensitive
    /// header value (never printed).
    async fn with_secrets(
        &self,
        grant: &Grant,
        header: &str,
        text: &str,
    ) -> Result<reqwest::header::HeaderValue, Refusal> {
        let out = self
            .substitute(grant, &format!("header `{header}`"), text, false)
            .await?;
        let mut value = reqwest::header::HeaderValue::from_str(&out)
            .map_err(|_| Refusal::denied(format!("header `{header}` is not a valid header value")))?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// The secrets sent so far in this call that are long enough to look for in a response, each
    /// with its reference text.
    async fn sent_secrets(&self) -> Vec<(String, String)> {
        self.opened
            .lock()
            .await
            .iter()
            .filter(|(_, value)| value.expose().len() >= MIN_REDACTED_SECRET_BYTES)
            .map(|(name, value)| (format!("{SECRET_OPEN}{name}{SECRET_CLOSE}"), value.expose().to_owned()))
            .collect()
    }

    /// `text` (in `what`) with every `{{secret:NAME}}` replaced by the connection's secret
    /// (JSON-escaped when `json`).
    async fn substitute(&self, grant: &Grant, what: &str, text: &str, json: bool) -> Result<String, Refusal> {
        let mut out = String::new();
        for piece in secret_references(text) {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Secret(name) => {
                    if !grant.secrets.iter().any(|s| s == name) {
                        return Err(Refusal::denied(format!(
                            "{what} refers to secret `{name}`, which the plugin's manifest does not declare"
                        )));
                    }
                    let mut opened = self.opened.lock().await;
                    if !opened.contains_key(name) {
                        let value = match (name, &grant.session) {
                            (session_tokens::SECRET_NAME, Some(session)) => {
                                self.services.session_token(session).await.map(Some)
                            }
                            _ => self.services.connection_secret(&grant.connection, name).await,
                        }
                        .map_err(|e| Refusal::new(HttpError::InternalError(None), e.to_string()))?
                        .ok_or_else(|| {
                            Refusal::denied(format!(
                                "{what} refers to secret `{name}`, which is not set on this connection; \
                                     a workspace admin sets it with PUT /api/public/bots/{{id}}/secrets/{name}"
                            ))
                        })?;
                        opened.insert(name.to_owned(), value);
                    }
                    if let Some(value) = opened.get(name) {
                        if json {
                            // The value as the inside of a JSON string.
                            let quoted = serde_json::to_string(value.expose()).unwrap_or_default();
                            out.push_str(&quoted[1..quoted.len().saturating_sub(1).max(1)]);
                        } else {
                            out.push_str(value.expose());
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Secrets shorter than this are not looked for in responses (a short value would also match
/// ordinary text).
const MIN_REDACTED_SECRET_BYTES: usize = 8;

/// `bytes` with every occurrence of each secret value replaced by its reference text.
fn redact(bytes: &[u8], secrets: &[(String, String)]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for (reference, value) in secrets {
        let value = value.as_bytes();
        if value.is_empty() || !out.windows(value.len()).any(|w| w == value) {
            continue;
        }
        let mut replaced = Vec::with_capacity(out.len());
        let mut i = 0;
        while i < out.len() {
            if out[i..].starts_with(value) {
                replaced.extend_from_slice(reference.as_bytes());
                i += value.len();
            } else {
                replaced.push(out[i]);
                i += 1;
            }
        }
        out = replaced;
    }
    out
}

/// Whether a `content-type` value is JSON (`application/json`, `…+json`).
fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// A part of a header value: literal text or a secret reference.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Secret(&'a str),
}

/// Splits `text` at `{{secret:NAME}}` references (NAME: `a-z0-9-_.`, 1–64 characters); anything
/// that only looks like one stays text.
fn secret_references(text: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(SECRET_OPEN) {
        let after = &rest[start + SECRET_OPEN.len()..];
        let name_end = after.find(SECRET_CLOSE);
        match name_end.map(|end| &after[..end]) {
            Some(name) if is_secret_name(name) => {
                if start > 0 {
                    pieces.push(Piece::Text(&rest[..start]));
                }
                pieces.push(Piece::Secret(name));
                rest = &after[name.len() + SECRET_CLOSE.len()..];
            }
            _ => {
                pieces.push(Piece::Text(&rest[..start + SECRET_OPEN.len()]));
                rest = after;
            }
        }
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    pieces
}

fn is_secret_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `host` (lowercase, no brackets) matches a manifest pattern: the exact name, or
/// `*.example.com` for any name below `example.com` (not `example.com` itself).
pub(crate) fn host_allowed(patterns: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.');
    patterns.iter().any(|pattern| {
        let pattern = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
            None => host == pattern.trim_start_matches('[').trim_end_matches(']'),
        }
    })
}

/// Whether `pattern` (an exact host or `*.example.com`) allows nothing `patterns` does not.
pub fn within(patterns: &[String], pattern: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => patterns.iter().any(|p| {
            let p = p.trim().to_ascii_lowercase();
            p == pattern || p.strip_prefix("*.").is_some_and(|s| suffix.ends_with(&format!(".{s}")))
        }),
        None => host_allowed(patterns, pattern),
    }
}

/// The URI as messages and logs show it: no user info or query (either may carry credentials),
/// and not too long.
fn shown_url(uri: &http::Uri) -> String {
    let mut text = String::new();
    if let Some(scheme) = uri.scheme_str() {
        text.push_str(scheme);
        text.push_str("://");
    }
    if let Some(authority) = uri.authority() {
        let host_and_port = authority.as_str().rsplit('@').next().unwrap_or_default();
        text.push_str(host_and_port);
    }
    text.push_str(uri.path());
    if text.chars().count() > SHOWN_URL_CHARS {
        text = text.chars().take(SHOWN_URL_CHARS).collect::<String>() + "…";
    }
    text
}

fn send_error(error: reqwest::Error) -> Refusal {
    if let Some(forbidden) = forbidden_in(&error) {
        return Refusal::new(HttpError::DestinationIpProhibited, forbidden.to_string());
    }
    let error = error.without_url();
    if error.is_timeout() {
        Refusal::new(HttpError::ConnectionReadTimeout, "timed out")
    } else if error.is_connect() {
        Refusal::new(HttpError::ConnectionRefused, format!("could not connect: {error}"))
    } else {
        Refusal::new(HttpError::HttpProtocolError, format!("failed: {error}"))
    }
}

impl From<CapabilityError> for Refusal {
    fn from(error: CapabilityError) -> Self {
        Refusal::new(HttpError::InternalError(None), error.to_string())
    }
}

/// Whether `url` names this machine literally (`localhost`, `127.0.0.0/8`, `::1`).
pub(crate) fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machine_counts_as_loopback() {
        for (url, loopback) in [
            ("http://127.0.0.1:9/x", true),
            ("http://127.8.9.10/x", true),
            ("http://[::1]:80/", true),
            ("http://LOCALHOST:1/", true),
            ("http://10.0.0.5/", false),
            ("http://api.example.com/", false),
            ("http://localhost.example.com/", false),
        ] {
            assert_eq!(is_loopback_host(&url::Url::parse(url).unwrap()), loopback, "{url}");
        }
    }

    fn hosts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hosts_match_exactly_or_below_a_wildcard() {
        let allowed = hosts(&["api.cursor.com", "*.anthropic.com", "127.0.0.1"]);
        assert!(host_allowed(&allowed, "api.cursor.com"));
        assert!(host_allowed(&allowed, "api.cursor.com."));
        assert!(host_allowed(&allowed, "api.anthropic.com"));
        assert!(host_allowed(&allowed, "a.b.anthropic.com"));
        assert!(host_allowed(&allowed, "127.0.0.1"));
        assert!(!host_allowed(&allowed, "anthropic.com"));
        assert!(!host_allowed(&allowed, "evilanthropic.com"));
        assert!(!host_allowed(&allowed, "cursor.com"));
        assert!(!host_allowed(&allowed, "api.cursor.com.evil.net"));
        assert!(!host_allowed(&[], "api.cursor.com"));
    }

    #[test]
    fn a_narrowing_stays_within_the_manifest() {
        let manifest = hosts(&["api.cursor.com", "*.anthropic.com"]);
        assert!(within(&manifest, "api.cursor.com"));
        assert!(within(&manifest, "api.anthropic.com"));
        assert!(within(&manifest, "*.anthropic.com"));
        assert!(within(&manifest, "*.eu.anthropic.com"));
        assert!(!within(&manifest, "*.cursor.com"));
        assert!(!within(&manifest, "anthropic.com"));
        assert!(!within(&manifest, "example.org"));
        assert!(!within(&manifest, "*.com"));
    }

    #[test]
    fn echoed_secrets_are_replaced_by_their_reference() {
        let secrets = vec![("{{secret:api-key}}".to_owned(), "sk-12345678".to_owned())];
        assert_eq!(
            redact(br#"{"key":"sk-12345678","again":"xsk-12345678y"}"#, &secrets),
            br#"{"key":"{{secret:api-key}}","again":"x{{secret:api-key}}y"}"#.to_vec()
        );
        assert_eq!(redact(b"nothing here", &secrets), b"nothing here".to_vec());
        assert!(is_json_media_type("application/json; charset=utf-8"));
        assert!(is_json_media_type("application/vnd.api+json"));
        assert!(!is_json_media_type("text/plain"));
    }

    #[test]
    fn secret_references_are_found_and_lookalikes_left_alone() {
        assert_eq!(
            secret_references("Bearer {{secret:api-key}}"),
            vec![Piece::Text("Bearer "), Piece::Secret("api-key")]
        );
        assert_eq!(
            secret_references("{{secret:a}}:{{secret:b}}"),
            vec![Piece::Secret("a"), Piece::Text(":"), Piece::Secret("b")]
        );
        assert_eq!(
            secret_references("{{secret:not valid}} x"),
            vec![Piece::Text("{{secret:"), Piece::Text("not valid}} x")]
        );
        assert_eq!(secret_references("plain"), vec![Piece::Text("plain")]);
        assert_eq!(
            secret_references("{{secret:unclosed"),
            vec![Piece::Text("{{secret:"), Piece::Text("unclosed")]
        );
    }
}
