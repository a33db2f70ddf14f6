//! One `email` attempt through `[smtp]`, with `lettre` (TLS through
//! rustls and the system's roots), on the blocking pool.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport};

use super::Failure;
use crate::config::{Config, SmtpTls};

/// `[smtp]` with its password read from the environment.
#[derive(Debug)]
pub(crate) struct SmtpSettings {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    from: Mailbox,
    tls: SmtpTls,
}

impl SmtpSettings {
    /// From the configuration, reading `password_env` now; `None` without
    /// `[smtp]`. A `password_env` that is not set stops the server (as a
    /// bridge's does), with `FILE:LINE: smtp.password_env: …`.
    pub(crate) fn from_config(config: &Config) -> anyhow::Result<Option<Arc<SmtpSettings>>> {
        let Some(smtp) = &config.smtp else {
            return Ok(None);
        };
        let file = config
            .source
            .clone()
            .unwrap_or_else(|| "config.toml".into());
        let password = match &smtp.password_env {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(p) => Some(p),
                Err(_) => anyhow::bail!(
                    "{}:{}: smtp.password_env: the environment variable {var} is not set",
                    file.display(),
                    smtp.line
                ),
            },
        };
        let from = smtp.from.parse::<Mailbox>().map_err(|e| {
            anyhow::anyhow!(
                "{}:{}: smtp.from: {:?} is not an address: {e}",
                file.display(),
                smtp.line,
                smtp.from
            )
        })?;
        Ok(Some(Arc::new(SmtpSettings {
            host: smtp.host.clone(),
            port: smtp.port,
            username: smtp.username.clone(),
            password,
            from,
            tls: smtp.tls,
        })))
    }
}

/// Sends one message to `to`; the server's answer, or why not. A refusal
/// the server calls permanent (5xx) is not retried.
pub(super) fn send(
    smtp: &SmtpSettings,
    to: &[String],
    subject: &str,
    body: &str,
    timeout: Duration,
) -> Result<String, Failure> {
    let failed = |error: String, permanent: bool| Failure {
        status: None,
        error,
        permanent,
    };
    let mut message = Message::builder().from(smtp.from.clone()).subject(subject);
    for address in to {
        let mailbox = address
            .parse::<Mailbox>()
            .map_err(|e| failed(format!("recipient {address:?}: {e}"), true))?;
        message = message.to(mailbox);
    }
    let message = message
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_string())
        .map_err(|e| failed(format!("cannot build the message: {e}"), true))?;
    let builder = match smtp.tls {
        SmtpTls::None => SmtpTransport::builder_dangerous(&smtp.host),
        SmtpTls::StartTls => SmtpTransport::starttls_relay(&smtp.host)
            .map_err(|e| failed(format!("TLS for {}: {e}", smtp.host), true))?,
        SmtpTls::Tls => SmtpTransport::relay(&smtp.host)
            .map_err(|e| failed(format!("TLS for {}: {e}", smtp.host), true))?,
    };
    let mut builder = builder.port(smtp.port).timeout(Some(timeout));
    if let Some(user) = &smtp.username {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            smtp.password.clone().unwrap_or_default(),
        ));
    }
    let transport = builder.build();
    match transport.send(&message) {
        Ok(response) => Ok(format!(
            "accepted by {}:{} ({})",
            smtp.host,
            smtp.port,
            response.code()
        )),
        Err(e) => Err(failed(
            format!("{}:{}: {e}", smtp.host, smtp.port),
            e.is_permanent(),
        )),
    }
}
