//! brook's command line: the clap definitions of every command, and the
//! client side of the management commands (`device`, `token`, `data`).
//!
//! Management commands do not open the database: they call the running
//! server's admin API over HTTP (`Authorization: Bearer ADMIN_TOKEN`), so that
//! a revoked token or a deleted device takes effect at once on live
//! connections. Results go to stdout, errors to stderr as one `brook: ...`
//! line, and the exit code is 0 on success and 1 on any failure.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use crate::config::{parse_duration, Config, ADMIN_TOKEN_ENV};

/// How long a management command waits for the server to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a management command waits for a whole answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A self-hosted MQTT broker for sensor data, with a TagoIO-compatible API
#[derive(Parser, Debug, Clone)]
#[command(name = "brook", version, about)]
pub struct Cli {
    /// The command; none means `serve`.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The config file; without it `./config.toml` when present, else defaults.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The server's HTTP base URL for management commands, instead of the one
    /// derived from `[http] listen` (e.g. `http://10.0.0.5:8080`).
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
}

impl Cli {
    /// The command to run: the one given, or `serve` when none is.
    pub fn command_or_serve(&self) -> Command {
        self.command.clone().unwrap_or(Command::Serve)
    }
}

/// brook's commands.
#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum Command {
    /// Run the broker (the default when no command is given).
    Serve,
    /// Manage devices on the running server.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Manage device tokens on the running server.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Show a device's latest data.
    Data {
        /// The device's name.
        device: String,
        /// Only this variable.
        #[arg(long)]
        variable: Option<String>,
        /// How many items (the server's default is 15).
        #[arg(long)]
        qty: Option<u32>,
        /// Print the items as a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Work with action files without a server.
    #[command(subcommand)]
    Actions(ActionsCommand),
    /// See the bridges of the running server.
    #[command(subcommand)]
    Bridge(BridgeCommand),
}

/// `brook device ...`.
#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum DeviceCommand {
    /// Create a device and its first token; the token is printed alone on the
    /// last line.
    Add {
        /// The device's name (unique).
        name: String,
        /// A tag, KEY=VALUE; repeat for several.
        #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
        tags: Vec<Tag>,
        /// A JavaScript payload parser for the device.
        #[arg(long, value_name = "FILE.js")]
        parser: Option<PathBuf>,
    },
    /// List the devices.
    List,
    /// Show a device: status, last input, tags, params, tokens.
    Show {
        /// The device's name.
        name: String,
    },
    /// Show or change a device's configuration parameters (what
    /// `GET /device/params` gives the device). A changed value is marked
    /// unsent.
    Param {
        /// The device's name.
        name: String,
        /// Set a parameter, KEY=VALUE; repeat for several.
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_tag)]
        set: Vec<Tag>,
        /// Remove a parameter by key; repeat for several.
        #[arg(long = "unset", value_name = "KEY")]
        unset: Vec<String>,
    },
    /// Delete a device and all its data.
    Rm {
        /// The device's name.
        name: String,
        /// Confirms the deletion.
        #[arg(long)]
        yes: bool,
    },
}

/// `brook token ...`.
#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum TokenCommand {
    /// Create a token for a device; it is printed alone on the last line.
    Add {
        /// The device's name.
        device: String,
        /// A name for the token, to recognise it in lists.
        #[arg(long)]
        name: Option<String>,
        /// What the token may do.
        #[arg(long, value_enum, default_value_t = Permission::Full)]
        permission: Permission,
        /// When it expires: a duration from now (`30d`, `12h`) or a date
        /// (`2027-01-01`); never when left out.
        #[arg(long, value_name = "30d|DATE", value_parser = parse_expires)]
        expires: Option<String>,
    },
    /// List a device's tokens (by id and last 4 characters, never in full).
    List {
        /// The device's name.
        device: String,
    },
    /// Revoke a token; connections that use it are closed.
    Revoke {
        /// The token's id (from `brook token list`).
        token_id: String,
    },
}

/// `brook bridge ...`.
#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum BridgeCommand {
    /// Each bridge: connected, queued, sent, received, dropped, last error.
    List,
}

/// `brook actions ...`.
#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum ActionsCommand {
    /// Validate action files; prints FILE:LINE: message for each problem.
    Check {
        /// The directory to check; `[actions] dir` when left out.
        dir: Option<PathBuf>,
    },
}

impl ActionsCommand {
    /// The directory the command is about: the one given, else `[actions] dir`.
    pub fn dir(&self, config: &Config) -> PathBuf {
        match self {
            ActionsCommand::Check { dir } => {
                dir.clone().unwrap_or_else(|| config.actions.dir.clone())
            }
        }
    }
}

/// A token's permission (the store's type, which clap reads too).
pub use crate::store::devices::Permission;

/// A device tag given as `--tag KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The tag's key (not empty).
    pub key: String,
    /// The tag's value (may be empty).
    pub value: String,
}

/// Parses `KEY=VALUE` for `--tag`.
pub fn parse_tag(s: &str) -> Result<Tag, String> {
    match s.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok(Tag {
            key: key.trim().to_string(),
            value: value.to_string(),
        }),
        Some(_) => Err(format!("tag {s:?} has an empty key; write KEY=VALUE")),
        None => Err(format!("tag {s:?} has no `=`; write KEY=VALUE")),
    }
}

/// Checks `--expires`: a duration (`30d`) or a date (`2027-01-01`, possibly
/// with a time); the server interprets it.
pub fn parse_expires(s: &str) -> Result<String, String> {
    let s = s.trim();
    if parse_duration(s).is_ok_and(|d| !d.is_zero()) {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let date_like = bytes.len() >= 10
        && bytes[..10].iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    if date_like {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is neither a duration (like 30d, 12h) nor a date (like 2027-01-01)"
        ))
    }
}

/// Runs a management command (`device`, `token`, `data`) against the admin
/// API and returns the process exit code. The result goes to stdout; errors go
/// to stderr as one `brook: ...` line (also when no server answers).
pub fn run_management(command: &Command, cli: &Cli, config: &Config) -> i32 {
    let base = cli.url.clone().unwrap_or_else(|| config.admin_url());
    let token = std::env::var(ADMIN_TOKEN_ENV)
        .ok()
        .filter(|token| !token.is_empty())
        .unwrap_or_else(|| config.http.admin_token.clone());
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    run_with(
        command,
        &base,
        &token,
        &mut stdout.lock(),
        &mut stderr.lock(),
    )
}

/// [`run_management`] with the URL and token decided and the output streams
/// given, for tests.
fn run_with(
    command: &Command,
    base: &str,
    token: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    match execute(command, base, token) {
        Ok(text) => {
            // A closed stdout (`brook device list | head -1`) is not an error worth reporting.
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            0
        }
        Err(message) => {
            let _ = writeln!(err, "brook: {message}");
            1
        }
    }
}

/// Runs `command` and returns what it prints on stdout, or the error line
/// (without the `brook: ` prefix).
fn execute(command: &Command, base: &str, token: &str) -> Result<String, String> {
    // Checks that need no server come first.
    let parser_source = match command {
        Command::Device(DeviceCommand::Rm { name, yes: false }) => {
            return Err(format!(
                "this deletes device {name} and all its data; run again with --yes"
            ));
        }
        Command::Device(DeviceCommand::Add {
            parser: Some(file), ..
        }) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read parser {}: {e}", file.display()))?,
        ),
        Command::Serve | Command::Actions(_) => {
            return Err("not a management command".to_string());
        }
        _ => None,
    };
    if token.is_empty() {
        return Err(format!(
            "no admin token: set [http] admin_token in config.toml or {ADMIN_TOKEN_ENV}"
        ));
    }
    let api = Admin::new(base, token);
    match command {
        Command::Device(device) => match device {
            DeviceCommand::Add { name, tags, .. } => device_add(&api, name, tags, parser_source),
            DeviceCommand::List => device_list(&api),
            DeviceCommand::Show { name } => device_show(&api, name),
            DeviceCommand::Param { name, set, unset } => device_param(&api, name, set, unset),
            DeviceCommand::Rm { name, .. } => {
                api.call("DELETE", &format!("/devices/{}", segment(name)), &[], None)?;
                Ok(format!("device {name} deleted\n"))
            }
        },
        Command::Token(token) => match token {
            TokenCommand::Add {
                device,
                name,
                permission,
                expires,
            } => token_add(
                &api,
                device,
                name.as_deref(),
                *permission,
                expires.as_deref(),
            ),
            TokenCommand::List { device } => token_list(&api, device),
            TokenCommand::Revoke { token_id } => {
                api.call(
                    "DELETE",
                    &format!("/tokens/{}", segment(token_id)),
                    &[],
                    None,
                )?;
                Ok(format!("token {token_id} revoked\n"))
            }
        },
        Command::Data {
            device,
            variable,
            qty,
            json,
        } => data(&api, device, variable.as_deref(), *qty, *json),
        Command::Bridge(BridgeCommand::List) => bridge_list(&api),
        Command::Serve | Command::Actions(_) => Err("not a management command".to_string()),
    }
}

/// `brook bridge list`.
fn bridge_list(api: &Admin) -> Result<String, String> {
    let result = api.call("GET", "/bridges", &[], None)?;
    let bridges = as_array(&result);
    if bridges.is_empty() {
        return Ok("no bridges configured\n".to_string());
    }
    let number = |b: &Value, key: &str| b[key].as_i64().unwrap_or(0).to_string();
    let rows = bridges
        .iter()
        .map(|b| {
            vec![
                str_field(b, "name"),
                str_field(b, "url"),
                yes_no(b["connected"].as_bool().unwrap_or(false)),
                number(b, "queued"),
                number(b, "sent"),
                number(b, "received"),
                number(b, "dropped"),
                text_or(b, "last_error", "-"),
            ]
        })
        .collect();
    Ok(table(
        &[
            "NAME",
            "URL",
            "CONNECTED",
            "QUEUED",
            "SENT",
            "RECEIVED",
            "DROPPED",
            "LAST ERROR",
        ],
        rows,
    ))
}

/// `brook device add`.
fn device_add(
    api: &Admin,
    name: &str,
    tags: &[Tag],
    parser: Option<String>,
) -> Result<String, String> {
    let tags: Vec<Value> = tags
        .iter()
        .map(|tag| json!({"key": tag.key, "value": tag.value}))
        .collect();
    let body = json!({"name": name, "tags": tags, "parser": parser});
    let result = api.call("POST", "/devices", &[], Some(&body))?;
    let token = str_field(&result, "token");
    if token.is_empty() {
        return Err(format!(
            "the server created device {name} but returned no token"
        ));
    }
    let device = &result["device"];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "device {} created (id {})",
        text_or(device, "name", name),
        str_field(device, "id")
    );
    let token_id = str_field(&result, "token_id");
    if !token_id.is_empty() {
        let _ = writeln!(out, "token id {token_id}");
    }
    let _ = writeln!(out, "{token}");
    Ok(out)
}

/// `brook device list`.
fn device_list(api: &Admin) -> Result<String, String> {
    let result = api.call("GET", "/devices", &[], None)?;
    let rows = as_array(&result)
        .iter()
        .map(|device| {
            vec![
                str_field(device, "name"),
                str_field(device, "id"),
                yes_no(device["connected"].as_bool().unwrap_or(false)),
                text_or(device, "last_input", "never"),
                tags_text(device),
            ]
        })
        .collect();
    Ok(table(
        &["NAME", "ID", "CONNECTED", "LAST INPUT", "TAGS"],
        rows,
    ))
}

/// `brook device param`: reads the device's params, applies `--set` and
/// `--unset`, writes them back with PATCH (when anything changed) and prints
/// them.
fn device_param(api: &Admin, name: &str, set: &[Tag], unset: &[String]) -> Result<String, String> {
    let path = format!("/devices/{}", segment(name));
    let device = api.call("GET", &path, &[], None)?;
    let mut params: Vec<Value> = device["params"].as_array().cloned().unwrap_or_default();
    let before = params.clone();
    params.retain(|p| !unset.iter().any(|k| p["key"] == k.as_str()));
    for tag in set {
        match params.iter_mut().find(|p| p["key"] == tag.key.as_str()) {
            Some(p) if p["value"] == tag.value.as_str() => {}
            Some(p) => {
                p["value"] = Value::String(tag.value.clone());
                p["sent"] = Value::Bool(false);
            }
            None => {
                params.push(serde_json::json!({"key": tag.key, "value": tag.value, "sent": false}))
            }
        }
    }
    if params != before {
        let patched = api.call(
            "PATCH",
            &path,
            &[],
            Some(&serde_json::json!({ "params": params })),
        )?;
        params = patched["params"].as_array().cloned().unwrap_or(params);
    }
    let rows = params
        .iter()
        .map(|p| {
            vec![
                p["key"].as_str().unwrap_or("").to_string(),
                p["value"].as_str().unwrap_or("").to_string(),
                if p["sent"].as_bool().unwrap_or(false) {
                    "yes"
                } else {
                    "no"
                }
                .to_string(),
            ]
        })
        .collect();
    Ok(table(&["KEY", "VALUE", "SENT"], rows))
}

/// `brook device show`.
fn device_show(api: &Admin, name: &str) -> Result<String, String> {
    let device = api.call("GET", &format!("/devices/{}", segment(name)), &[], None)?;
    let mut out = String::new();
    let connected = if device["connected"].as_bool().unwrap_or(false) {
        "connected"
    } else {
        "disconnected"
    };
    let tags = tags_text(&device);
    let fields = [
        ("device", text_or(&device, "name", name)),
        ("id", str_field(&device, "id")),
        ("status", connected.to_string()),
        ("last input", text_or(&device, "last_input", "never")),
        ("created", str_field(&device, "created_at")),
        (
            "parser",
            yes_no(device["parser"].as_bool().unwrap_or(false)),
        ),
        ("tags", if tags.is_empty() { "none".into() } else { tags }),
    ];
    for (label, value) in fields {
        let _ = writeln!(out, "{:<12}{value}", format!("{label}:"));
    }

    let params = as_array(&device["params"]);
    if params.is_empty() {
        let _ = writeln!(out, "{:<12}none", "params:");
    } else {
        let _ = writeln!(out, "params:");
        let rows = params
            .iter()
            .map(|param| {
                vec![
                    str_field(param, "key"),
                    str_field(param, "value"),
                    if param["sent"].as_bool().unwrap_or(false) {
                        "sent".to_string()
                    } else {
                        "not sent".to_string()
                    },
                    str_field(param, "id"),
                ]
            })
            .collect();
        out.push_str(&indent(&table(&["KEY", "VALUE", "SENT", "ID"], rows)));
    }

    let tokens = as_array(&device["tokens"]);
    if tokens.is_empty() {
        let _ = writeln!(out, "{:<12}none", "tokens:");
    } else {
        let _ = writeln!(out, "tokens:");
        out.push_str(&indent(&token_table(tokens)));
    }
    Ok(out)
}

/// `brook token add`.
fn token_add(
    api: &Admin,
    device: &str,
    name: Option<&str>,
    permission: Permission,
    expires: Option<&str>,
) -> Result<String, String> {
    let body = json!({"name": name, "permission": permission.as_str(), "expires": expires});
    let path = format!("/devices/{}/tokens", segment(device));
    let result = api.call("POST", &path, &[], Some(&body))?;
    let token = str_field(&result, "token");
    if token.is_empty() {
        return Err("the server created a token but did not return it".to_string());
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "token {} created for device {device} (name {}, permission {}, expires {})",
        str_field(&result, "id"),
        text_or(&result, "name", "-"),
        text_or(&result, "permission", permission.as_str()),
        text_or(&result, "expires_at", "never"),
    );
    let _ = writeln!(out, "{token}");
    Ok(out)
}

/// `brook token list`.
fn token_list(api: &Admin, device: &str) -> Result<String, String> {
    let path = format!("/devices/{}/tokens", segment(device));
    let result = api.call("GET", &path, &[], None)?;
    Ok(token_table(as_array(&result)))
}

/// The table of tokens shared by `token list` and `device show`; a token's
/// secret is never shown, only its last 4 characters.
fn token_table(tokens: &[Value]) -> String {
    let rows = tokens
        .iter()
        .map(|token| {
            vec![
                str_field(token, "id"),
                text_or(token, "name", "-"),
                str_field(token, "permission"),
                format!("...{}", str_field(token, "last4")),
                text_or(token, "expires_at", "never"),
            ]
        })
        .collect();
    table(&["ID", "NAME", "PERMISSION", "LAST4", "EXPIRES"], rows)
}

/// `brook data`.
fn data(
    api: &Admin,
    device: &str,
    variable: Option<&str>,
    qty: Option<u32>,
    as_json: bool,
) -> Result<String, String> {
    let mut query = Vec::new();
    if let Some(variable) = variable {
        query.push(("variable", variable.to_string()));
    }
    if let Some(qty) = qty {
        query.push(("qty", qty.to_string()));
    }
    let path = format!("/devices/{}/data", segment(device));
    let result = api.call("GET", &path, &query, None)?;
    if as_json {
        let mut text = serde_json::to_string_pretty(&result)
            .map_err(|e| format!("cannot format the answer as JSON: {e}"))?;
        text.push('\n');
        return Ok(text);
    }
    let mut items: Vec<&Value> = as_array(&result).iter().collect();
    // Newest first; ISO 8601 times from one server sort as text. The sort is
    // stable, so the server's order stays for equal times.
    items.sort_by_key(|item| std::cmp::Reverse(str_field(item, "time")));
    let rows = items
        .iter()
        .map(|item| {
            vec![
                str_field(item, "time"),
                str_field(item, "variable"),
                value_text(&item["value"]),
                str_field(item, "unit"),
            ]
        })
        .collect();
    Ok(table(&["TIME", "VARIABLE", "VALUE", "UNIT"], rows))
}

// ---------------------------------------------------------------------------
// The HTTP side.

/// A client of one server's admin API.
struct Admin {
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
    fn new(base: &str, token: &str) -> Admin {
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
    fn call(
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
    fn transport_error(&self, error: &ureq::Error) -> String {
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
fn segment(text: &str) -> String {
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

// ---------------------------------------------------------------------------
// Formatting.

/// A left-aligned table with a header row, columns two spaces apart.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Indents every line by two spaces.
fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

/// A field as text: strings as they are, numbers and booleans written out,
/// missing or null as "".
fn str_field(value: &Value, key: &str) -> String {
    match &value[key] {
        Value::Null => String::new(),
        other => value_text(other),
    }
}

/// A field as text, or `default` when it is missing, null or empty.
fn text_or(value: &Value, key: &str, default: &str) -> String {
    let text = str_field(value, key);
    if text.is_empty() {
        default.to_string()
    } else {
        text
    }
}

/// A JSON value as a table cell: strings without quotes, the rest as JSON.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// An array's items, or none for anything else.
fn as_array(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// A device's tags as `k=v,k2=v2`.
fn tags_text(device: &Value) -> String {
    as_array(&device["tags"])
        .iter()
        .map(|tag| format!("{}={}", str_field(tag, "key"), str_field(tag, "value")))
        .collect::<Vec<_>>()
        .join(",")
}

/// `yes` or `no`.
fn yes_no(flag: bool) -> String {
    if flag { "yes" } else { "no" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Read};
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;

    /// One request as the fake server saw it.
    #[derive(Debug)]
    struct Seen {
        /// `GET`, `POST`, ...
        method: String,
        /// The path with its query string, as sent.
        target: String,
        /// Header names lower-cased.
        headers: HashMap<String, String>,
        /// The body, as text.
        body: String,
    }

    /// A fake admin API: answers each connection with the next canned
    /// `(status, body)` and reports what it was asked.
    struct Fake {
        /// `http://127.0.0.1:PORT`.
        url: String,
        /// The requests, in order.
        seen: mpsc::Receiver<Seen>,
    }

    impl Fake {
        fn start(answers: Vec<(u16, &str)>) -> Fake {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test port");
            let url = format!("http://{}", listener.local_addr().expect("local addr"));
            let answers: Vec<(u16, String)> = answers
                .into_iter()
                .map(|(status, body)| (status, body.to_string()))
                .collect();
            let (tx, seen) = mpsc::channel();
            thread::spawn(move || {
                for (status, body) in answers {
                    let Ok((stream, _)) = listener.accept() else {
                        return;
                    };
                    let mut reader = BufReader::new(stream);
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).is_err() {
                        return;
                    }
                    let mut parts = request_line.split_whitespace();
                    let method = parts.next().unwrap_or_default().to_string();
                    let target = parts.next().unwrap_or_default().to_string();
                    let mut headers = HashMap::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            headers.insert(name.trim().to_lowercase(), value.trim().to_string());
                        }
                    }
                    let length: usize = headers
                        .get("content-length")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    let mut raw = vec![0; length];
                    if reader.read_exact(&mut raw).is_err() {
                        return;
                    }
                    let _ = tx.send(Seen {
                        method,
                        target,
                        headers,
                        body: String::from_utf8_lossy(&raw).into_owned(),
                    });
                    let mut stream = reader.into_inner();
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(reply.as_bytes());
                }
            });
            Fake { url, seen }
        }

        /// The next request the fake server saw.
        fn next(&self) -> Seen {
            self.seen
                .recv_timeout(Duration::from_secs(5))
                .expect("a request reached the fake server")
        }
    }

    /// Runs `args` (after `brook`) against `url` with admin token "admin";
    /// returns (exit code, stdout, stderr).
    fn run(args: &[&str], url: &str, token: &str) -> (i32, String, String) {
        let cli = Cli::try_parse_from(std::iter::once("brook").chain(args.iter().copied()))
            .expect("valid command line");
        let command = cli.command_or_serve();
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = run_with(&command, url, token, &mut out, &mut err);
        (
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    /// A URL where nothing listens.
    fn closed_port_url() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test port");
        let addr = listener.local_addr().expect("local addr");
        drop(listener);
        format!("http://{addr}")
    }

    const DEVICE: &str = r#"{"id":"d1","name":"my sensor","tags":[{"key":"site","value":"north"},{"key":"kind","value":"t"}],
        "params":[{"id":"p1","key":"interval","value":"60","sent":false}],"parser":true,"connected":true,
        "last_input":"2026-11-24T10:00:00.000Z","created_at":"2026-11-01T00:00:00.000Z",
        "tokens":[{"id":"t1","name":"default","permission":"full","last4":"wxyz","created_at":"2026-11-01T00:00:00.000Z","expires_at":null}]}"#;

    #[test]
    fn no_subcommand_is_serve() {
        let cli = Cli::try_parse_from(["brook"]).expect("valid");
        assert_eq!(cli.command, None);
        assert_eq!(cli.command_or_serve(), Command::Serve);
        let cli = Cli::try_parse_from(["brook", "--config", "x.toml"]).expect("valid");
        assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
        assert_eq!(cli.command_or_serve(), Command::Serve);
    }

    #[test]
    fn serve_with_config() {
        let cli =
            Cli::try_parse_from(["brook", "serve", "--config", "/etc/brook.toml"]).expect("valid");
        assert_eq!(cli.command, Some(Command::Serve));
        assert_eq!(cli.config, Some(PathBuf::from("/etc/brook.toml")));
    }

    #[test]
    fn device_add_parses_tags_and_parser() {
        let cli = Cli::try_parse_from([
            "brook",
            "device",
            "add",
            "my sensor",
            "--tag",
            "site=north",
            "--tag",
            "k=a=b",
            "--parser",
            "p.js",
            "--url",
            "http://h:1",
        ])
        .expect("valid");
        assert_eq!(cli.url.as_deref(), Some("http://h:1"));
        assert_eq!(
            cli.command,
            Some(Command::Device(DeviceCommand::Add {
                name: "my sensor".into(),
                tags: vec![
                    Tag {
                        key: "site".into(),
                        value: "north".into()
                    },
                    Tag {
                        key: "k".into(),
                        value: "a=b".into()
                    },
                ],
                parser: Some(PathBuf::from("p.js")),
            }))
        );
    }

    #[test]
    fn tag_without_equals_is_a_usage_error() {
        let err = Cli::try_parse_from(["brook", "device", "add", "d", "--tag", "nokey"])
            .expect_err("usage error");
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(err.to_string().contains("nokey"), "{err}");
        assert!(Cli::try_parse_from(["brook", "device", "add", "d", "--tag", "=v"]).is_err());
    }

    #[test]
    fn device_list_show_rm() {
        let cli = Cli::try_parse_from(["brook", "device", "list"]).expect("valid");
        assert_eq!(cli.command, Some(Command::Device(DeviceCommand::List)));
        let cli = Cli::try_parse_from(["brook", "device", "show", "d"]).expect("valid");
        assert_eq!(
            cli.command,
            Some(Command::Device(DeviceCommand::Show { name: "d".into() }))
        );
        let cli = Cli::try_parse_from(["brook", "device", "rm", "d", "--yes"]).expect("valid");
        assert_eq!(
            cli.command,
            Some(Command::Device(DeviceCommand::Rm {
                name: "d".into(),
                yes: true
            }))
        );
        assert!(Cli::try_parse_from(["brook", "device", "show"]).is_err());
    }

    #[test]
    fn token_commands_parse() {
        let cli = Cli::try_parse_from([
            "brook",
            "token",
            "add",
            "d",
            "--name",
            "ci",
            "--permission",
            "read",
            "--expires",
            "30d",
        ])
        .expect("valid");
        assert_eq!(
            cli.command,
            Some(Command::Token(TokenCommand::Add {
                device: "d".into(),
                name: Some("ci".into()),
                permission: Permission::Read,
                expires: Some("30d".into()),
            }))
        );
        let cli = Cli::try_parse_from(["brook", "token", "add", "d", "--expires", "2027-01-01"])
            .expect("valid");
        assert!(matches!(
            cli.command,
            Some(Command::Token(TokenCommand::Add {
                permission: Permission::Full,
                ..
            }))
        ));
        assert!(
            Cli::try_parse_from(["brook", "token", "add", "d", "--permission", "admin"]).is_err()
        );
        assert!(Cli::try_parse_from(["brook", "token", "add", "d", "--expires", "soon"]).is_err());
        let cli = Cli::try_parse_from(["brook", "token", "list", "d"]).expect("valid");
        assert_eq!(
            cli.command,
            Some(Command::Token(TokenCommand::List { device: "d".into() }))
        );
        let cli = Cli::try_parse_from(["brook", "token", "revoke", "t1"]).expect("valid");
        assert_eq!(
            cli.command,
            Some(Command::Token(TokenCommand::Revoke {
                token_id: "t1".into()
            }))
        );
    }

    #[test]
    fn data_and_actions_parse() {
        let cli = Cli::try_parse_from([
            "brook",
            "data",
            "d",
            "--variable",
            "temperature",
            "--qty",
            "5",
            "--json",
        ])
        .expect("valid");
        assert_eq!(
            cli.command,
            Some(Command::Data {
                device: "d".into(),
                variable: Some("temperature".into()),
                qty: Some(5),
                json: true,
            })
        );
        assert!(Cli::try_parse_from(["brook", "data", "d", "--qty", "-1"]).is_err());
        let cli = Cli::try_parse_from(["brook", "actions", "check"]).expect("valid");
        let Some(Command::Actions(check)) = cli.command else {
            panic!("expected actions check");
        };
        assert_eq!(check.dir(&Config::default()), PathBuf::from("actions"));
        let cli = Cli::try_parse_from(["brook", "actions", "check", "other"]).expect("valid");
        let Some(Command::Actions(check)) = cli.command else {
            panic!("expected actions check");
        };
        assert_eq!(check.dir(&Config::default()), PathBuf::from("other"));
    }

    #[test]
    fn expires_values() {
        assert_eq!(parse_expires("30d"), Ok("30d".into()));
        assert_eq!(parse_expires("12h"), Ok("12h".into()));
        assert_eq!(parse_expires("2027-01-01"), Ok("2027-01-01".into()));
        assert_eq!(
            parse_expires("2027-01-01T00:00:00Z"),
            Ok("2027-01-01T00:00:00Z".into())
        );
        assert!(parse_expires("0d").is_err());
        assert!(parse_expires("tomorrow").is_err());
        assert!(parse_expires("27-01-01").is_err());
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(segment("my sensor"), "my%20sensor");
        assert_eq!(segment("a/b?c#d%é"), "a%2Fb%3Fc%23d%25%C3%A9");
        assert_eq!(segment("Az09-._~"), "Az09-._~");
    }

    #[test]
    fn no_server_answering() {
        let url = closed_port_url();
        let (code, out, err) = run(&["device", "list"], &url, "admin");
        assert_eq!(code, 1);
        assert_eq!(out, "");
        assert_eq!(
            err,
            format!("brook: no server answering at {url} (is `brook serve` running?)\n")
        );
    }

    #[test]
    fn empty_admin_token() {
        let (code, out, err) = run(&["device", "list"], &closed_port_url(), "");
        assert_eq!(code, 1);
        assert_eq!(out, "");
        assert_eq!(
            err,
            "brook: no admin token: set [http] admin_token in config.toml or BROOK_ADMIN_TOKEN\n"
        );
    }

    #[test]
    fn device_rm_needs_yes() {
        // Nothing listens: the command must not try to connect.
        let (code, out, err) = run(&["device", "rm", "my sensor"], &closed_port_url(), "admin");
        assert_eq!(code, 1);
        assert_eq!(out, "");
        assert_eq!(
            err,
            "brook: this deletes device my sensor and all its data; run again with --yes\n"
        );
    }

    #[test]
    fn device_rm_with_yes() {
        let fake = Fake::start(vec![(200, r#"{"status":true,"result":"Device deleted"}"#)]);
        let (code, out, err) = run(&["device", "rm", "my sensor", "--yes"], &fake.url, "admin");
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(out, "device my sensor deleted\n");
        let seen = fake.next();
        assert_eq!(seen.method, "DELETE");
        assert_eq!(seen.target, "/devices/my%20sensor");
    }

    #[test]
    fn device_add_prints_the_token_last() {
        let dir = tempfile::tempdir().expect("temp dir");
        let parser = dir.path().join("parser.js");
        std::fs::write(&parser, "payload = payload;").expect("write");
        let fake = Fake::start(vec![(
            200,
            r#"{"status":true,"result":{"device":{"id":"d1","name":"my sensor"},"token":"SECRET-TOKEN","token_id":"t1"}}"#,
        )]);
        let parser_arg = parser.display().to_string();
        let (code, out, err) = run(
            &[
                "device",
                "add",
                "my sensor",
                "--tag",
                "site=north",
                "--parser",
                &parser_arg,
            ],
            &fake.url,
            "admin",
        );
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "device my sensor created (id d1)\ntoken id t1\nSECRET-TOKEN\n"
        );
        assert_eq!(out.lines().last(), Some("SECRET-TOKEN"));
        let seen = fake.next();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.target, "/devices");
        assert_eq!(
            seen.headers.get("authorization").map(String::as_str),
            Some("Bearer admin")
        );
        let body: Value = serde_json::from_str(&seen.body).expect("JSON body");
        assert_eq!(
            body,
            json!({"name":"my sensor","tags":[{"key":"site","value":"north"}],"parser":"payload = payload;"})
        );
    }

    #[test]
    fn device_add_without_parser_sends_null() {
        let fake = Fake::start(vec![(
            200,
            r#"{"status":true,"result":{"device":{"id":"d2","name":"x"},"token":"T","token_id":"t2"}}"#,
        )]);
        let (code, out, _) = run(&["device", "add", "x"], &fake.url, "admin");
        assert_eq!(code, 0);
        assert_eq!(out.lines().last(), Some("T"));
        let body: Value = serde_json::from_str(&fake.next().body).expect("JSON body");
        assert_eq!(body, json!({"name":"x","tags":[],"parser":null}));
    }

    #[test]
    fn device_add_unreadable_parser_names_the_file() {
        let (code, out, err) = run(
            &["device", "add", "x", "--parser", "/nonexistent/p.js"],
            &closed_port_url(),
            "admin",
        );
        assert_eq!(code, 1);
        assert_eq!(out, "");
        assert!(
            err.starts_with("brook: cannot read parser /nonexistent/p.js: "),
            "{err}"
        );
    }

    #[test]
    fn server_message_is_shown() {
        let fake = Fake::start(vec![(
            409,
            r#"{"status":false,"message":"device x already exists"}"#,
        )]);
        let (code, out, err) = run(&["device", "add", "x"], &fake.url, "admin");
        assert_eq!(code, 1);
        assert_eq!(out, "");
        assert_eq!(err, "brook: device x already exists\n");
    }

    #[test]
    fn unauthorized_message_is_shown() {
        let fake = Fake::start(vec![(
            401,
            r#"{"status":false,"message":"invalid admin token"}"#,
        )]);
        let (code, _, err) = run(&["token", "list", "x"], &fake.url, "wrong");
        assert_eq!(code, 1);
        assert_eq!(err, "brook: invalid admin token\n");
        assert_eq!(
            fake.next().headers.get("authorization").map(String::as_str),
            Some("Bearer wrong")
        );
    }

    #[test]
    fn non_json_answer_is_one_line() {
        let fake = Fake::start(vec![(404, "")]);
        let (code, _, err) = run(&["device", "list"], &fake.url, "admin");
        assert_eq!(code, 1);
        assert_eq!(
            err,
            format!(
                "brook: unexpected answer from {} (HTTP 404): empty body\n",
                fake.url
            )
        );
    }

    #[test]
    fn device_list_table() {
        let answer = format!(
            r#"{{"status":true,"result":[{DEVICE},{{"id":"d2","name":"b","tags":[],"params":[],"parser":false,"connected":false,"last_input":null,"created_at":"x"}}]}}"#
        );
        let fake = Fake::start(vec![(200, answer.as_str())]);
        let (code, out, err) = run(&["device", "list"], &fake.url, "admin");
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "NAME       ID  CONNECTED  LAST INPUT                TAGS\n\
             my sensor  d1  yes        2026-11-24T10:00:00.000Z  site=north,kind=t\n\
             b          d2  no         never\n"
        );
        let seen = fake.next();
        assert_eq!(
            (seen.method.as_str(), seen.target.as_str()),
            ("GET", "/devices")
        );
    }

    #[test]
    fn bridge_list_table() {
        let answer = r#"{"status":true,"result":[{"name":"cloud","url":"mqtts://b:8883","connected":false,"queued":12,"sent":3,"received":1,"dropped":0,"last_error":"b:8883: not authorized (CONNACK 0x05)"},{"name":"nats","url":"mqtt://n:1883","connected":true,"queued":0,"sent":9,"received":0,"dropped":2,"last_error":null}]}"#;
        let fake = Fake::start(vec![(200, answer)]);
        let (code, out, err) = run(&["bridge", "list"], &fake.url, "admin");
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "NAME   URL             CONNECTED  QUEUED  SENT  RECEIVED  DROPPED  LAST ERROR\n\
             cloud  mqtts://b:8883  no         12      3     1         0        b:8883: not authorized (CONNACK 0x05)\n\
             nats   mqtt://n:1883   yes        0       9     0         2        -\n"
        );
        let seen = fake.next();
        assert_eq!(
            (seen.method.as_str(), seen.target.as_str()),
            ("GET", "/bridges")
        );
        let fake = Fake::start(vec![(200, r#"{"status":true,"result":[]}"#)]);
        let (_, out, _) = run(&["bridge", "list"], &fake.url, "admin");
        assert_eq!(out, "no bridges configured\n");
    }

    #[test]
    fn device_show_never_prints_a_full_token() {
        let answer = format!(r#"{{"status":true,"result":{DEVICE}}}"#);
        let fake = Fake::start(vec![(200, answer.as_str())]);
        let (code, out, err) = run(&["device", "show", "my sensor"], &fake.url, "admin");
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(fake.next().target, "/devices/my%20sensor");
        let expected = "\
device:     my sensor
id:         d1
status:     connected
last input: 2026-11-24T10:00:00.000Z
created:    2026-11-01T00:00:00.000Z
parser:     yes
tags:       site=north,kind=t
params:
  KEY       VALUE  SENT      ID
  interval  60     not sent  p1
tokens:
  ID  NAME     PERMISSION  LAST4    EXPIRES
  t1  default  full        ...wxyz  never
";
        assert_eq!(out, expected);
    }

    #[test]
    fn token_add_prints_the_token_last() {
        let fake = Fake::start(vec![(
            200,
            r#"{"status":true,"result":{"id":"t9","token":"NEW-SECRET","name":"ci","permission":"read","last4":"CRET","expires_at":"2027-01-01T00:00:00.000Z"}}"#,
        )]);
        let (code, out, err) = run(
            &[
                "token",
                "add",
                "my sensor",
                "--name",
                "ci",
                "--permission",
                "read",
                "--expires",
                "2027-01-01",
            ],
            &fake.url,
            "admin",
        );
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "token t9 created for device my sensor (name ci, permission read, expires 2027-01-01T00:00:00.000Z)\nNEW-SECRET\n"
        );
        let seen = fake.next();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.target, "/devices/my%20sensor/tokens");
        let body: Value = serde_json::from_str(&seen.body).expect("JSON body");
        assert_eq!(
            body,
            json!({"name":"ci","permission":"read","expires":"2027-01-01"})
        );
    }

    #[test]
    fn token_add_defaults() {
        let fake = Fake::start(vec![(
            200,
            r#"{"status":true,"result":{"id":"t9","token":"S","name":null,"permission":"full","last4":"S","expires_at":null}}"#,
        )]);
        let (code, out, _) = run(&["token", "add", "d"], &fake.url, "admin");
        assert_eq!(code, 0);
        assert_eq!(out.lines().last(), Some("S"));
        let body: Value = serde_json::from_str(&fake.next().body).expect("JSON body");
        assert_eq!(
            body,
            json!({"name":null,"permission":"full","expires":null})
        );
    }

    #[test]
    fn token_list_table() {
        let fake = Fake::start(vec![(
            200,
            r#"{"status":true,"result":[{"id":"t1","name":"default","permission":"full","last4":"wxyz","created_at":"c","expires_at":null},{"id":"t2","name":"ci","permission":"write","last4":"abcd","created_at":"c","expires_at":"2027-01-01T00:00:00.000Z"}]}"#,
        )]);
        let (code, out, err) = run(&["token", "list", "d"], &fake.url, "admin");
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "ID  NAME     PERMISSION  LAST4    EXPIRES\n\
             t1  default  full        ...wxyz  never\n\
             t2  ci       write       ...abcd  2027-01-01T00:00:00.000Z\n"
        );
        assert_eq!(fake.next().target, "/devices/d/tokens");
    }

    #[test]
    fn token_revoke() {
        let fake = Fake::start(vec![(200, r#"{"status":true,"result":"revoked"}"#)]);
        let (code, out, err) = run(&["token", "revoke", "t1"], &fake.url, "admin");
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(out, "token t1 revoked\n");
        let seen = fake.next();
        assert_eq!(
            (seen.method.as_str(), seen.target.as_str()),
            ("DELETE", "/tokens/t1")
        );
    }

    const DATA: &str = r#"{"status":true,"result":[
        {"id":"1","variable":"temperature","value":21.5,"unit":"°C","time":"2026-11-24T10:00:00.000Z"},
        {"id":"2","variable":"label","value":"hello world","time":"2026-11-24T11:00:00.000Z"},
        {"id":"3","variable":"on","value":true,"time":"2026-11-24T09:00:00.000Z"}]}"#;

    #[test]
    fn data_table_newest_first() {
        let fake = Fake::start(vec![(200, DATA)]);
        let (code, out, err) = run(
            &[
                "data",
                "my sensor",
                "--variable",
                "temp erature",
                "--qty",
                "3",
            ],
            &fake.url,
            "admin",
        );
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "TIME                      VARIABLE     VALUE        UNIT\n\
             2026-11-24T11:00:00.000Z  label        hello world\n\
             2026-11-24T10:00:00.000Z  temperature  21.5         °C\n\
             2026-11-24T09:00:00.000Z  on           true\n"
        );
        let seen = fake.next();
        assert_eq!(seen.method, "GET");
        assert_eq!(
            seen.target,
            "/devices/my%20sensor/data?variable=temp%20erature&qty=3"
        );
    }

    #[test]
    fn data_json() {
        let fake = Fake::start(vec![(200, DATA)]);
        let (code, out, _) = run(&["data", "d", "--json"], &fake.url, "admin");
        assert_eq!(code, 0);
        let items: Value = serde_json::from_str(&out).expect("JSON output");
        assert_eq!(items.as_array().map(Vec::len), Some(3));
        assert_eq!(items[0]["variable"], "temperature");
        assert_eq!(fake.next().target, "/devices/d/data");
    }

    #[test]
    fn trailing_slash_in_url() {
        let fake = Fake::start(vec![(200, r#"{"status":true,"result":[]}"#)]);
        let url = format!("{}/", fake.url);
        let (code, out, _) = run(&["device", "list"], &url, "admin");
        assert_eq!(code, 0);
        assert_eq!(out, "NAME  ID  CONNECTED  LAST INPUT  TAGS\n");
        assert_eq!(fake.next().target, "/devices");
    }

    #[test]
    fn serve_is_not_management() {
        let (code, _, err) = run(&["serve"], &closed_port_url(), "admin");
        assert_eq!(code, 1);
        assert_eq!(err, "brook: not a management command\n");
    }
}
