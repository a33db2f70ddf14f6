//! The admin API as the management commands call it.

use std::fmt::Write as _;

use serde_json::Value;

use super::commands::{CONNECT_TIMEOUT, REQUEST_TIMEOUT};

/// A client of one server's admin API.
pub(super) struct Admin {
    /// The base URL without a trailing slash, `http://127.0.0.1:8080`.
    base: String,
    /// The admin token, sent as `Authorization: Bearer TOKEN`.
    token: String,
    /// The HTTP client; 4xx answers are read, not turned into errors, since
    /// they carry the server's message.
    agent: ureq::Agent,
}

impl Admin {
    /// A client for the server at `base`.
    pub(super) fn new(base: &str, token: &str) -> Admin {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .into();
        Admin {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            agent,
        }
    }

    /// Calls `METHOD base+path?query` and returns the answer's `result`, or
    /// the error line: the server's `message`, or that no server answers.
    pub(super) fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let mut url = format!("{}{path}", self.base);
        for (i, (key, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&segment(key));
            url.push('=');
            url.push_str(&segment(value));
        }
        let auth = format!("Bearer {}", self.token);
        let response = match (method, body) {
            ("GET", _) => self
                .agent
                .get(&url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .call(),
            ("PATCH", body) => self
                .agent
                .patch(&url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .send_json(body.unwrap_or(&Value::Null)),
            (_, body) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .send_json(body.unwrap_or(&Value::Null)),
        };
        let mut response = response.map_err(|e| self.transport_error(&e))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("reading the answer from {}: {e}", self.base))?;
        let answer: Value = match serde_json::from_str(&text) {
            Ok(answer) => answer,
            Err(_) => {
                let excerpt: String = text.trim().chars().take(200).collect();
                return Err(format!(
                    "unexpected answer from {} (HTTP {status}): {}",
                    self.base,
                    if excerpt.is_empty() {
                        "empty body".to_string()
                    } else {
                        excerpt
                    }
                ));
            }
        };
        if answer["status"].as_bool() == Some(true) && status < 400 {
            return Ok(answer.get("result").cloned().unwrap_or(Value::Null));
        }
        match answer["message"].as_str() {
            Some(message) => Err(message.to_string()),
            None => Err(format!(
                "the server refused the request (HTTP {status}) without a message"
            )),
        }
    }

    /// The error line for a request that got no HTTP answer.
    pub(super) fn transport_error(&self, error: &ureq::Error) -> String {
        use std::io::ErrorKind;
        let no_server = match error {
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => true,
            ureq::Error::Timeout(timeout) => {
                matches!(timeout, ureq::Timeout::Connect | ureq::Timeout::Resolve)
            }
            ureq::Error::Io(io) => matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::AddrNotAvailable
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::TimedOut
                    | ErrorKind::NotFound
            ),
            _ => false,
        };
        if no_server {
            format!(
                "no server answering at {} (is `brook serve` running?)",
                self.base
            )
        } else {
            format!("request to {} failed: {error}", self.base)
        }
    }
}

/// Percent-encodes a path segment or query part: everything but RFC 3986's
/// unreserved characters.
pub(super) fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}
