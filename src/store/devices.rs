//! Devices and their tokens in SQLite. A token's secret is never stored: only
//! its SHA-256 and its last four characters, to show it by.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A `{"key","value"}` pair, TagoIO's shape for tags.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Tag {
    pub key: String,
    pub value: String,
}

/// A device configuration parameter, TagoIO's shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Param {
    #[serde(default)]
    pub id: String,
    pub key: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub sent: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Device {
    pub id: String,
    pub name: String,
    pub tags: Vec<Tag>,
    pub params: Vec<Param>,
    pub parser: Option<String>,
    pub created_at: i64,
    pub last_input: Option<i64>,
    pub last_output: Option<i64>,
    /// How long its bucket keeps data, ms: `None` for the server's
    /// `[data] retention`, `Some(0)` for ever.
    pub retention_ms: Option<i64>,
    /// The most rows its bucket keeps (the newest); `None`: no cap.
    pub max_rows: Option<i64>,
}

/// What a token may do over HTTP: `full` reads and writes, `write` only
/// sends data, `read` only reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Read and write.
    Full,
    /// Write only (send data).
    Write,
    /// Read only.
    Read,
}

impl Permission {
    /// The permission's name in the API and the CLI (`full`, `write`, `read`).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Full => "full",
            Permission::Write => "write",
            Permission::Read => "read",
        }
    }
    /// The permission a name stands for.
    pub fn parse(s: &str) -> Option<Permission> {
        match s {
            "full" => Some(Permission::Full),
            "write" => Some(Permission::Write),
            "read" => Some(Permission::Read),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub id: String,
    pub device_id: String,
    pub name: String,
    pub permission: Permission,
    pub hash: String,
    pub last4: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// A fresh id in TagoIO's form: 24 lowercase hex characters.
pub(crate) use super::item::new_id;

/// A fresh token secret: 32 random bytes as hex, like TagoIO's UUID-ish tokens
/// but longer.
pub(crate) fn new_secret() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The stored form of a secret.
pub(crate) fn hash_secret(secret: &[u8]) -> String {
    hex::encode(Sha256::digest(secret))
}

/// Whether two secrets are equal, in time that depends on neither their
/// contents nor their lengths: their digests are compared in full.
pub(crate) fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn device_from_row(row: &Row) -> rusqlite::Result<Device> {
    let tags: String = row.get("tags")?;
    let params: String = row.get("params")?;
    Ok(Device {
        id: row.get("id")?,
        name: row.get("name")?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        params: serde_json::from_str(&params).unwrap_or_default(),
        parser: row.get("parser")?,
        created_at: row.get("created_at")?,
        last_input: row.get("last_input")?,
        last_output: row.get("last_output")?,
        retention_ms: row.get("retention_ms")?,
        max_rows: row.get("max_rows")?,
    })
}

fn token_from_row(row: &Row) -> rusqlite::Result<Token> {
    let permission: String = row.get("permission")?;
    Ok(Token {
        id: row.get("id")?,
        device_id: row.get("device_id")?,
        name: row.get("name")?,
        // The CHECK constraint on the column admits only these three words.
        permission: Permission::parse(&permission).unwrap_or(Permission::Read),
        hash: row.get("hash")?,
        last4: row.get("last4")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
    })
}

pub(crate) fn insert_device(conn: &Connection, d: &Device) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO devices (id, name, tags, params, parser, created_at, retention_ms, max_rows)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        d.id,
        d.name,
        to_json(&d.tags),
        to_json(&d.params),
        d.parser,
        d.created_at,
        d.retention_ms,
        d.max_rows
    ])?;
    Ok(())
}

pub(crate) fn update_device(conn: &Connection, d: &Device) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE devices SET name = ?2, tags = ?3, params = ?4, parser = ?5,
            retention_ms = ?6, max_rows = ?7 WHERE id = ?1",
    )?
    .execute(params![
        d.id,
        d.name,
        to_json(&d.tags),
        to_json(&d.params),
        d.parser,
        d.retention_ms,
        d.max_rows
    ])?;
    Ok(())
}

pub(crate) fn set_last_input(conn: &Connection, device_id: &str, at: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE devices SET last_input = ?2 WHERE id = ?1")?
        .execute(params![device_id, at])?;
    Ok(())
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn delete_device(conn: &Connection, id: &str) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM devices WHERE id = ?1", params![id])
}

pub(crate) fn all_devices(conn: &Connection) -> rusqlite::Result<Vec<Device>> {
    let mut stmt = conn.prepare_cached("SELECT * FROM devices ORDER BY name")?;
    let rows = stmt.query_map([], device_from_row)?;
    rows.collect()
}

pub(crate) fn device_by_name(conn: &Connection, name: &str) -> rusqlite::Result<Option<Device>> {
    conn.prepare_cached("SELECT * FROM devices WHERE name = ?1")?
        .query_row(params![name], device_from_row)
        .optional()
}

pub(crate) fn device_by_id(conn: &Connection, id: &str) -> rusqlite::Result<Option<Device>> {
    conn.prepare_cached("SELECT * FROM devices WHERE id = ?1")?
        .query_row(params![id], device_from_row)
        .optional()
}

pub(crate) fn insert_token(conn: &Connection, t: &Token) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO tokens (id, device_id, name, permission, hash, last4, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        t.id,
        t.device_id,
        t.name,
        t.permission.as_str(),
        t.hash,
        t.last4,
        t.created_at,
        t.expires_at
    ])?;
    Ok(())
}

pub(crate) fn delete_token(conn: &Connection, id: &str) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM tokens WHERE id = ?1", params![id])
}

pub(crate) fn tokens_of(conn: &Connection, device_id: &str) -> rusqlite::Result<Vec<Token>> {
    let mut stmt =
        conn.prepare_cached("SELECT * FROM tokens WHERE device_id = ?1 ORDER BY created_at")?;
    let rows = stmt.query_map(params![device_id], token_from_row)?;
    rows.collect()
}

pub(crate) fn all_tokens(conn: &Connection) -> rusqlite::Result<Vec<Token>> {
    let mut stmt = conn.prepare_cached("SELECT * FROM tokens")?;
    let rows = stmt.query_map([], token_from_row)?;
    rows.collect()
}

pub(crate) fn token_by_id(conn: &Connection, id: &str) -> rusqlite::Result<Option<Token>> {
    conn.prepare_cached("SELECT * FROM tokens WHERE id = ?1")?
        .query_row(params![id], token_from_row)
        .optional()
}
