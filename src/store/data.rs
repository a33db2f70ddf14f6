//! Device buckets in SQLite: data items in TagoIO's format (validated before
//! they get here, by `actions::data::validate`).

use rusqlite::{params, Connection, Row};
use serde_json::Value;

use crate::actions::data::DataItem;

/// Stores items; the caller commits (through `Store::write`, so that a QoS 1
/// publish is acknowledged only once they are in).
pub fn insert(conn: &Connection, items: &[DataItem]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO data (id, device_id, variable, value, value_num, unit, time, grp, location, metadata, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for d in items {
        let value = d.value.as_ref().map(|v| v.to_string());
        let value_num = d.value.as_ref().and_then(Value::as_f64);
        let location = d.location.as_ref().map(|v| v.to_string());
        let metadata = d
            .metadata
            .as_ref()
            .map(|m| Value::Object(m.clone()).to_string());
        stmt.execute(params![
            d.id,
            d.device,
            d.variable,
            value,
            value_num,
            d.unit,
            d.time,
            d.group,
            location,
            metadata,
            d.created_at
        ])?;
    }
    Ok(())
}

/// The columns [`item_from_row`] reads, in order, for SELECTs.
pub const COLUMNS: &str =
    "id, device_id, variable, value, unit, time, grp, location, metadata, created_at";

/// A row selected with [`COLUMNS`] back into an item.
pub fn item_from_row(r: &Row) -> rusqlite::Result<DataItem> {
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str::<Value>(&s).ok());
    Ok(DataItem {
        id: r.get(0)?,
        device: r.get(1)?,
        variable: r.get(2)?,
        value: json(r.get(3)?),
        unit: r.get(4)?,
        time: r.get(5)?,
        group: r.get(6)?,
        location: json(r.get(7)?),
        metadata: json(r.get(8)?).and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        }),
        created_at: r.get(9)?,
    })
}

/// The newest items of a device, optionally of one variable.
pub fn latest(
    conn: &Connection,
    device_id: &str,
    variable: Option<&str>,
    qty: usize,
) -> rusqlite::Result<Vec<DataItem>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM data WHERE device_id = ?1 AND (?2 IS NULL OR variable = ?2)
         ORDER BY time DESC, seq DESC LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![device_id, variable, qty as i64], item_from_row)?;
    rows.collect()
}
