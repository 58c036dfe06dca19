//! A small blocking HTTP client over `wasi:http/outgoing-handler`, for calling a provider's API.
//!
//! The host sends a request only to hosts the plugin's manifest lists in `outbound_hosts` (and
//! never to private or internal addresses), only when the manifest declares the `http`
//! capability. Put `{{secret:NAME}}` in a header value to have the host insert the connection's
//! secret `NAME` at send time; the plugin never sees the value.
//!
//! ```no_run
//! use leadtime_plugin_sdk::http::Request;
//!
//! let response = Request::post("https://api.example.com/v1/agents")
//!     .header("Authorization", "Bearer {{secret:api-key}}")
//!     .json(&serde_json::json!({"prompt": "Fix the bug"}))
//!     .send()?;
//! let agent: serde_json::Value = response.json()?;
//! # Ok::<(), leadtime_plugin_sdk::http::HttpError>(())
//! ```
//!
//! Since 0.1.2 references in a request body are replaced too, so **text the plugin did not write**
//! (a task's description, a comment, a provider's answer) must go through [`defuse`] before it goes
//! into a request: otherwise a person could write `{{secret:api-key}}` in a task and have the host
//! send the key to the provider's agent.

use std::fmt;

/// `text` with every secret reference (`{{secret:`) broken up (`{{ secret:`), so the host sends it
/// as written. Apply it to any text the plugin did not write before putting it in a request.
pub fn defuse(text: &str) -> String {
    text.replace("{{secret:", "{{ secret:")
}

/// A request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A response, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The URL or a header could not be used.
    Invalid(String),
    /// The host refused to send it: the host is not in the manifest's `outbound_hosts`, a secret
    /// it refers to is unknown or unset, or the call's request budget is used up.
    Denied,
    /// The address is private or internal, which the host never connects to.
    Prohibited,
    /// The response was larger than the host's cap.
    TooLarge,
    /// Anything else the transport reported (connection refused, timeout).
    Transport(String),
    /// The response body was not the JSON expected.
    Json(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Invalid(m) => write!(f, "invalid request: {m}"),
            HttpError::Denied => f.write_str(
                "the host denied the request (host not in the manifest's outbound hosts, unknown or unset secret, or too many requests)",
            ),
            HttpError::Prohibited => f.write_str("the host refused to connect to a private or internal address"),
            HttpError::TooLarge => f.write_str("the response is larger than the host allows"),
            HttpError::Transport(m) => write!(f, "request failed: {m}"),
            HttpError::Json(m) => write!(f, "unexpected response body: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for crate::PluginError {
    fn from(error: HttpError) -> Self {
        match error {
            HttpError::Transport(_) => crate::PluginError::Transient(error.to_string()),
            _ => crate::PluginError::Failed(error.to_string()),
        }
    }
}

impl Request {
    /// A request with `method` to `url`.
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }

    /// Adds a header; `{{secret:NAME}}` in the value is replaced by the host.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets a JSON body and its `Content-Type`.
    pub fn json(mut self, value: &serde_json::Value) -> Self {
        self.body = value.to_string().into_bytes();
        self.header("Content-Type", "application/json")
    }

    /// Sets a raw body.
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// Sends the request and waits for the whole response.
    pub fn send(&self) -> Result<Response, HttpError> {
        #[cfg(target_arch = "wasm32")]
        {
            wasi_client::send(self)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Err(HttpError::Transport(
                "HTTP is only available inside the host (wasm32-wasip2)".into(),
            ))
        }
    }
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| HttpError::Json(e.to_string()))
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(target_arch = "wasm32")]
mod wasi_client {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
    use wasip2::io::streams::StreamError;

    use super::{HttpError, Request, Response};

    pub fn send(request: &Request) -> Result<Response, HttpError> {
        let (scheme, authority, path) = split_url(&request.url)?;
        let headers = Fields::new();
        for (name, value) in &request.headers {
            headers
                .append(name, value.as_bytes())
                .map_err(|e| HttpError::Invalid(format!("header `{name}`: {e:?}")))?;
        }
        let outgoing = OutgoingRequest::new(headers);
        let method = match request.method.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        };
        let invalid = |what: &str| HttpError::Invalid(format!("unusable {what} in `{}`", request.url));
        outgoing.set_method(&method).map_err(|()| invalid("method"))?;
        outgoing.set_scheme(Some(&scheme)).map_err(|()| invalid("scheme"))?;
        outgoing.set_authority(Some(&authority)).map_err(|()| invalid("host"))?;
        outgoing
            .set_path_with_query(Some(&path))
            .map_err(|()| invalid("path"))?;

        let body = outgoing
            .body()
            .map_err(|()| HttpError::Invalid("body taken twice".into()))?;
        let pending = outgoing_handler::handle(outgoing, None).map_err(error_code)?;
        let sent = (|| {
            {
                let stream = body
                    .write()
                    .map_err(|()| HttpError::Invalid("body stream unavailable".into()))?;
                for chunk in request.body.chunks(4096) {
                    stream
                        .blocking_write_and_flush(chunk)
                        .map_err(|e| HttpError::Transport(format!("sending the body: {e:?}")))?;
                }
            }
            OutgoingBody::finish(body, None).map_err(error_code)
        })();
        pending.subscribe().block();
        if let Err(error) = sent {
            // The host may have refused the request before reading its body: its answer says why.
            return Err(match pending.get() {
                Some(Ok(Err(code))) => error_code(code),
                _ => error,
            });
        }
        let response = pending
            .get()
            .ok_or_else(|| HttpError::Transport("no response".into()))?
            .map_err(|()| HttpError::Transport("response taken twice".into()))?
            .map_err(error_code)?;
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
            .collect();
        let incoming = response
            .consume()
            .map_err(|()| HttpError::Transport("response body taken twice".into()))?;
        let mut body = Vec::new();
        {
            let stream = incoming
                .stream()
                .map_err(|()| HttpError::Transport("response body unavailable".into()))?;
            loop {
                match stream.blocking_read(64 << 10) {
                    Ok(chunk) => body.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        return Err(HttpError::Transport(format!(
                            "reading the body: {}",
                            e.to_debug_string()
                        )));
                    }
                }
            }
        }
        Ok(Response { status, headers, body })
    }

    fn split_url(url: &str) -> Result<(Scheme, String, String), HttpError> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else {
            return Err(HttpError::Invalid(format!("`{url}` is not an http(s) URL")));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        if authority.is_empty() {
            return Err(HttpError::Invalid(format!("`{url}` has no host")));
        }
        Ok((scheme, authority.to_owned(), path))
    }

    fn error_code(code: ErrorCode) -> HttpError {
        match code {
            ErrorCode::HttpRequestDenied => HttpError::Denied,
            ErrorCode::DestinationIpProhibited => HttpError::Prohibited,
            ErrorCode::HttpResponseBodySize(_) => HttpError::TooLarge,
            other => HttpError::Transport(format!("{other:?}")),
        }
    }
}
