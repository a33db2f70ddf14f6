//! The command line as clap reads it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{parse_duration, Config};

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
        /// How long its bucket keeps data (`30d`; `0s` for ever); the
        /// server's `[data] retention` when left out.
        #[arg(long, value_name = "30d", value_parser = parse_retention)]
        retention: Option<String>,
        /// The most rows its bucket keeps: the newest stay.
        #[arg(long = "max-rows", value_name = "N", value_parser = clap::value_parser!(i64).range(1..=1_000_000_000))]
        max_rows: Option<i64>,
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
/// Checks `--retention`: a duration (`30d`, `12h`, `0s`).
pub fn parse_retention(s: &str) -> Result<String, String> {
    parse_duration(s.trim()).map(|_| s.trim().to_string())
}

/// Checks `--expires`: a duration from now or a date.
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
