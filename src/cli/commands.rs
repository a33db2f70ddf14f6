//! What each management command does, through the admin API.

use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{Config, ADMIN_TOKEN_ENV};

use super::args::*;
use super::client::{segment, Admin};
use super::table::*;

/// How long a management command waits for the server to accept the connection.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a management command waits for a whole answer.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

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
pub(super) fn run_with(
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
            DeviceCommand::Add {
                name,
                tags,
                retention,
                max_rows,
                ..
            } => device_add(
                &api,
                name,
                tags,
                parser_source,
                retention.as_deref(),
                *max_rows,
            ),
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
    retention: Option<&str>,
    max_rows: Option<i64>,
) -> Result<String, String> {
    let tags: Vec<Value> = tags
        .iter()
        .map(|tag| json!({"key": tag.key, "value": tag.value}))
        .collect();
    let mut body = json!({"name": name, "tags": tags, "parser": parser});
    if let Some(retention) = retention {
        body["retention"] = json!(retention);
    }
    if let Some(max_rows) = max_rows {
        body["max_rows"] = json!(max_rows);
    }
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
        (
            "retention",
            text_or(&device, "retention", "default ([data] retention)"),
        ),
        (
            "max rows",
            device["max_rows"]
                .as_i64()
                .map_or_else(|| "no cap".to_string(), |n| n.to_string()),
        ),
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
