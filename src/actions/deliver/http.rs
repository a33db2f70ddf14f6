//! One `http_post` attempt: the items as a TagoIO data array, POSTed with
//! `ureq` (TLS through rustls), on the blocking pool.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use super::Failure;

/// How much of a refusal's body the run record keeps.
const BODY_PREVIEW: usize = 200;

/// POSTs `body` (JSON) to `url` with `headers`; `retries` is how many
/// attempts came before this one (sent as `TagoIO-Retries` when not 0).
/// Redirects are not followed: like any answer but 2xx, they fail.
pub(super) fn post(
    url: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    retries: u32,
    timeout: Duration,
) -> Result<String, Failure> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent(concat!("brook/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut request = agent.post(url).header("Content-Type", "application/json");
    for (name, value) in headers {
        request = request.header(name, value);
    }
    if retries > 0 {
        request = request.header("TagoIO-Retries", retries.to_string());
    }
    let mut response = request.send(body).map_err(|e| Failure {
        status: None,
        error: e.to_string(),
        permanent: false,
    })?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(format!("HTTP {status}"));
    }
    let mut preview = Vec::new();
    let _ = response
        .body_mut()
        .as_reader()
        .take(BODY_PREVIEW as u64)
        .read_to_end(&mut preview);
    let text = String::from_utf8_lossy(&preview).trim().to_string();
    Err(Failure {
        status: Some(status),
        error: if text.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {text}")
        },
        permanent: false,
    })
}
