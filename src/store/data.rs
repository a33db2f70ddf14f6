//! Device buckets in SQLite: data items in TagoIO's format (validated before
//! they get here, by `actions::data::validate`).

use rusqlite::{params, Connection, Row};
use serde_json::Value;

use super::item::DataItem;

/// Stores items; the caller commits (through `Store::write`, so that a QoS 1
/// publish is acknowledged only once they are in).
pub(crate) fn insert(conn: &Connection, items: &[DataItem]) -> rusqlite::Result<()> {
    insert_rows(conn, items)?;
    crate::metrics::METRICS.data_stored.add(items.len() as u64);
    Ok(())
}

/// [`insert`] without counting them in the metrics (`Store::ingest` counts
/// what committed).
pub(crate) fn insert_rows(conn: &Connection, items: &[DataItem]) -> rusqlite::Result<()> {
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
pub(crate) const COLUMNS: &str =
    "id, device_id, variable, value, unit, time, grp, location, metadata, created_at";

/// A row selected with [`COLUMNS`] back into an item.
pub(crate) fn item_from_row(r: &Row) -> rusqlite::Result<DataItem> {
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

// ---------------------------------------------------------------------------
// Queries of the data API (GET, DELETE and PUT /data): TagoIO's filters and
// `query` modes, as SQL over the indexes of migrations/0002_data.sql.

/// Which items a request is about: every filter of `GET /data` but the mode.
/// Empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Filter {
    /// Variable names, already lower-cased (they are stored lower-case).
    pub variables: Vec<String>,
    pub groups: Vec<String>,
    pub ids: Vec<String>,
    /// Values to match, as the JSON text they are stored as (`21.5`, `"on"`, `true`).
    pub values: Vec<String>,
    /// `time >= start`, unix ms.
    pub start: Option<i64>,
    /// `time <= end`, unix ms.
    pub end: Option<i64>,
}

/// TagoIO's `query` modes, plus the default listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `qty` items from `skip` on, by time in the asked order.
    List,
    LastValue,
    LastItem,
    LastInsert,
    LastLocation,
    FirstValue,
    FirstItem,
    FirstInsert,
    FirstLocation,
    Min,
    Max,
    Count,
    Avg,
    Sum,
}

impl Mode {
    /// Every `query=` word, for parsing and for the error message.
    pub(crate) const NAMES: &'static [(&'static str, Mode)] = &[
        ("last_value", Mode::LastValue),
        ("last_item", Mode::LastItem),
        ("last_insert", Mode::LastInsert),
        ("last_location", Mode::LastLocation),
        ("first_value", Mode::FirstValue),
        ("first_item", Mode::FirstItem),
        ("first_insert", Mode::FirstInsert),
        ("first_location", Mode::FirstLocation),
        ("min", Mode::Min),
        ("max", Mode::Max),
        ("count", Mode::Count),
        ("avg", Mode::Avg),
        ("sum", Mode::Sum),
        ("defaultQ", Mode::List),
    ];

    pub(crate) fn parse(s: &str) -> Option<Mode> {
        Mode::NAMES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, mode)| *mode)
    }

    /// Whether the answer is a number rather than items.
    pub(crate) fn is_number(self) -> bool {
        matches!(self, Mode::Count | Mode::Avg | Mode::Sum)
    }

    /// For the modes that pick one item (per variable): the extra condition
    /// and the order that puts that item first.
    fn pick(self) -> Option<(&'static str, &'static str)> {
        Some(match self {
            Mode::LastValue => ("value IS NOT NULL", "time DESC, seq DESC"),
            Mode::LastItem => ("1", "time DESC, seq DESC"),
            Mode::LastInsert => ("1", "seq DESC"),
            Mode::LastLocation => ("location IS NOT NULL", "time DESC, seq DESC"),
            Mode::FirstValue => ("value IS NOT NULL", "time ASC, seq ASC"),
            Mode::FirstItem => ("1", "time ASC, seq ASC"),
            Mode::FirstInsert => ("1", "seq ASC"),
            Mode::FirstLocation => ("location IS NOT NULL", "time ASC, seq ASC"),
            Mode::Min => (
                "value_num IS NOT NULL",
                "value_num ASC, time DESC, seq DESC",
            ),
            Mode::Max => (
                "value_num IS NOT NULL",
                "value_num DESC, time DESC, seq DESC",
            ),
            Mode::List | Mode::Count | Mode::Avg | Mode::Sum => return None,
        })
    }
}

/// A whole `GET /data` request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DataQuery {
    pub filter: Filter,
    pub mode: Mode,
    /// Most items of a [`Mode::List`] (TagoIO's default 15).
    pub qty: u32,
    /// Items of a [`Mode::List`] to pass over first.
    pub skip: u32,
    /// Oldest first instead of newest first ([`Mode::List`] only).
    pub ascending: bool,
}

impl Default for DataQuery {
    fn default() -> Self {
        DataQuery {
            filter: Filter::default(),
            mode: Mode::List,
            qty: 15,
            skip: 0,
            ascending: false,
        }
    }
}

/// What a query gives: items, or a number for `count`, `avg` and `sum`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    Items(Vec<DataItem>),
    Number(f64),
}

/// A SQL text and its parameters, built up clause by clause.
#[derive(Debug, Default)]
struct Sql {
    text: String,
    params: Vec<rusqlite::types::Value>,
}

impl Sql {
    fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    fn bind(&mut self, text: &str, value: impl Into<rusqlite::types::Value>) {
        self.text.push_str(text);
        self.params.push(value.into());
    }

    /// ` AND column IN (?, ?, …)` for a non-empty list; `=` for one value,
    /// so that the planner sees an equality it can seek on.
    fn any_of(&mut self, column: &str, values: &[String]) {
        match values {
            [] => {}
            [one] => self.bind(&format!(" AND {column} = ?"), one.clone()),
            many => {
                let marks = vec!["?"; many.len()].join(", ");
                self.push(&format!(" AND {column} IN ({marks})"));
                self.params
                    .extend(many.iter().cloned().map(rusqlite::types::Value::from));
            }
        }
    }
}

/// `FROM data WHERE …` for a device and a filter; `variable` overrides the
/// filter's variables (the per-variable picks).
fn from_where(device_id: &str, filter: &Filter, variable: Option<&str>) -> Sql {
    let mut sql = Sql::default();
    sql.bind("FROM data WHERE device_id = ?", device_id.to_string());
    match variable {
        Some(v) => sql.bind(" AND variable = ?", v.to_string()),
        None => sql.any_of("variable", &filter.variables),
    }
    sql.any_of("grp", &filter.groups);
    sql.any_of("id", &filter.ids);
    sql.any_of("value", &filter.values);
    if let Some(start) = filter.start {
        sql.bind(" AND time >= ?", start);
    }
    if let Some(end) = filter.end {
        sql.bind(" AND time <= ?", end);
    }
    sql
}

/// The SQL statements a query runs, in order (one per variable for the
/// per-variable picks). Separate from [`query`] so that tests can EXPLAIN them.
fn statements(device_id: &str, q: &DataQuery) -> Vec<Sql> {
    let f = &q.filter;
    if let Some((condition, order)) = q.mode.pick() {
        let one = |variable: Option<&str>| {
            let mut sql = Sql::default();
            sql.push(&format!("SELECT {COLUMNS} "));
            let rest = from_where(device_id, f, variable);
            sql.text.push_str(&rest.text);
            sql.params.extend(rest.params);
            sql.push(&format!(" AND {condition} ORDER BY {order} LIMIT 1"));
            sql
        };
        if f.variables.is_empty() {
            return vec![one(None)];
        }
        return f.variables.iter().map(|v| one(Some(v))).collect();
    }
    let mut sql = Sql::default();
    match q.mode {
        Mode::Count => sql.push("SELECT COUNT(*) "),
        Mode::Avg => sql.push("SELECT AVG(value_num) "),
        Mode::Sum => sql.push("SELECT TOTAL(value_num) "),
        _ => sql.push(&format!("SELECT {COLUMNS} ")),
    }
    let rest = from_where(device_id, f, None);
    sql.text.push_str(&rest.text);
    sql.params.extend(rest.params);
    match q.mode {
        Mode::Count => {}
        Mode::Avg | Mode::Sum => sql.push(" AND value_num IS NOT NULL"),
        _ => {
            let dir = if q.ascending { "ASC" } else { "DESC" };
            sql.push(&format!(" ORDER BY time {dir}, seq {dir}"));
            sql.bind(" LIMIT ?", i64::from(q.qty));
            sql.bind(" OFFSET ?", i64::from(q.skip));
        }
    }
    vec![sql]
}

/// Runs a `GET /data` query on a device's bucket.
///
/// The picks (`last_value`, `first_item`, `min`, …) give one item per asked
/// variable, or one item over the whole bucket when no variable is given,
/// newest first. `count` counts items; `avg` and `sum` take the numeric
/// values only (0 when there are none, as TagoCore answers).
pub(crate) fn query(conn: &Connection, device_id: &str, q: &DataQuery) -> rusqlite::Result<Answer> {
    let mut items = Vec::new();
    for sql in statements(device_id, q) {
        let mut stmt = conn.prepare_cached(&sql.text)?;
        let params = rusqlite::params_from_iter(sql.params.iter());
        if q.mode.is_number() {
            let n: Option<f64> = stmt.query_row(params, |r| r.get(0))?;
            return Ok(Answer::Number(n.unwrap_or(0.0)));
        }
        let rows = stmt.query_map(params, item_from_row)?;
        for row in rows {
            items.push(row?);
        }
    }
    if q.mode.pick().is_some() && q.filter.variables.len() > 1 {
        items.sort_by_key(|i| std::cmp::Reverse(i.time));
    }
    Ok(Answer::Items(items))
}

/// Deletes what the same query would list (so `qty` applies, as in
/// TagoIO); returns how many items went. Number modes delete nothing: the
/// caller refuses them.
pub(crate) fn delete(conn: &Connection, device_id: &str, q: &DataQuery) -> rusqlite::Result<usize> {
    let Answer::Items(items) = query(conn, device_id, q)? else {
        return Ok(0);
    };
    let mut stmt = conn.prepare_cached("DELETE FROM data WHERE id = ?1 AND device_id = ?2")?;
    let mut removed = 0;
    for item in &items {
        removed += stmt.execute(params![item.id, device_id])?;
    }
    Ok(removed)
}

/// A change to one stored item (`PUT /data`): the fields given, already
/// validated; `Some(None)` clears a field.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Edit {
    pub id: String,
    pub value: Option<Option<Value>>,
    pub unit: Option<Option<String>>,
    pub time: Option<i64>,
    pub group: Option<Option<String>>,
    pub location: Option<Option<Value>>,
    pub metadata: Option<Option<serde_json::Map<String, Value>>>,
}

/// Applies edits to a device's items; returns how many of them exist (an
/// edit that changes nothing still counts when its item exists). Ids of
/// other devices' items are unknown here.
pub(crate) fn update(
    conn: &Connection,
    device_id: &str,
    edits: &[Edit],
) -> rusqlite::Result<usize> {
    let mut found = 0;
    for e in edits {
        let mut sql = Sql::default();
        sql.push("UPDATE data SET seq = seq");
        if let Some(value) = &e.value {
            sql.bind(", value = ?", value.as_ref().map(|v| v.to_string()));
            sql.bind(", value_num = ?", value.as_ref().and_then(Value::as_f64));
        }
        if let Some(unit) = &e.unit {
            sql.bind(", unit = ?", unit.clone());
        }
        if let Some(time) = e.time {
            sql.bind(", time = ?", time);
        }
        if let Some(group) = &e.group {
            sql.bind(", grp = ?", group.clone());
        }
        if let Some(location) = &e.location {
            sql.bind(", location = ?", location.as_ref().map(|v| v.to_string()));
        }
        if let Some(metadata) = &e.metadata {
            sql.bind(
                ", metadata = ?",
                metadata
                    .as_ref()
                    .map(|m| Value::Object(m.clone()).to_string()),
            );
        }
        sql.bind(" WHERE id = ?", e.id.clone());
        sql.bind(" AND device_id = ?", device_id.to_string());
        found += conn
            .prepare_cached(&sql.text)?
            .execute(rusqlite::params_from_iter(sql.params.iter()))?;
    }
    Ok(found)
}

// ---------------------------------------------------------------------------
// Charts: numeric values per time bucket (`resolution=` / `interval=`), and
// the variables a bucket holds. brook's own additions to the data API.

/// Most buckets one variable's answer may have, whatever the range.
pub(crate) const MAX_BUCKETS: i64 = 1000;

/// Bucket widths that `resolution` picks from, in seconds: round numbers a
/// time axis can be read by, so that the buckets stay the same as the range
/// moves on. Past the last one, whole days.
const NICE_WIDTHS_S: &[i64] = &[
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    172_800, 604_800,
];

/// The bucket width for about `resolution` buckets over `span_ms`: the
/// smallest round width (1 s, 2 s, 5 s, …, 1 h, …, 7 d, then whole days)
/// of at least `span_ms / resolution`. Buckets are aligned to multiples of
/// their width, so a range has at most `resolution + 1` of them.
pub(crate) fn bucket_width(span_ms: i64, resolution: i64) -> i64 {
    let wanted = span_ms.max(0) / resolution.max(1) + i64::from(span_ms % resolution.max(1) != 0);
    NICE_WIDTHS_S
        .iter()
        .map(|s| s * 1000)
        .find(|w| *w >= wanted)
        .unwrap_or_else(|| (wanted + 86_399_999) / 86_400_000 * 86_400_000)
}

/// How many buckets of `width_ms` (aligned to multiples of it) cover
/// `start..=end`.
pub(crate) fn bucket_count(start: i64, end: i64, width_ms: i64) -> i64 {
    let w = width_ms.max(1);
    (end.div_euclid(w) - start.div_euclid(w) + 1).max(0)
}

/// A chart's query: each variable's numeric values in `[start, end]`,
/// grouped into buckets of `width_ms` aligned to multiples of the width
/// (from the Unix epoch, so that the same instant always falls in the same
/// bucket and a later request can ask for the last bucket again).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BucketQuery {
    /// The variables (one answer per variable, in this order) and the other
    /// filters of `GET /data`; `start` and `end` are required.
    pub filter: Filter,
    pub width_ms: i64,
}

/// One bucket of one variable: its numeric values summed up.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bucket {
    pub variable: String,
    /// Unix ms where the bucket begins (a multiple of the width).
    pub start: i64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    /// Numeric values in the bucket.
    pub count: i64,
}

/// The statements of [`buckets`], one per variable. Separate so that tests
/// can EXPLAIN them.
fn bucket_statements(device_id: &str, q: &BucketQuery) -> Vec<(String, Sql)> {
    q.filter
        .variables
        .iter()
        .map(|v| {
            let mut sql = Sql::default();
            // time - (time mod w), with a modulo that stays positive before 1970.
            sql.bind(
                "SELECT time - ((time % ?1) + ?1) % ?1 AS bucket, AVG(value_num), \
                 MIN(value_num), MAX(value_num), COUNT(*) ",
                q.width_ms,
            );
            let rest = from_where(device_id, &q.filter, Some(v));
            // from_where numbers nothing: its `?`s follow ?1 in order.
            sql.text.push_str(&rest.text);
            sql.params.extend(rest.params);
            sql.push(" AND value_num IS NOT NULL GROUP BY bucket ORDER BY bucket");
            (v.clone(), sql)
        })
        .collect()
}

/// Runs a [`BucketQuery`]: for each variable, its non-empty buckets oldest
/// first. Items without a numeric value are left out. One index range scan
/// per variable; the answer has at most `variables × buckets` rows however
/// many items the range holds.
pub(crate) fn buckets(
    conn: &Connection,
    device_id: &str,
    q: &BucketQuery,
) -> rusqlite::Result<Vec<Bucket>> {
    let mut out = Vec::new();
    for (variable, sql) in bucket_statements(device_id, q) {
        let mut stmt = conn.prepare_cached(&sql.text)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(sql.params.iter()), |r| {
            Ok(Bucket {
                variable: variable.clone(),
                start: r.get(0)?,
                avg: r.get(1)?,
                min: r.get(2)?,
                max: r.get(3)?,
                count: r.get(4)?,
            })
        })?;
        for row in rows {
            out.push(row?);
        }
    }
    Ok(out)
}

/// The variables of a device's bucket, by name, at most `limit`, each with
/// its newest item that has a value (or its newest item, when none has).
/// Finds the names by seeking the `(device_id, variable, time)` index from
/// one name to the next, so the cost grows with the number of variables,
/// not of items.
pub(crate) fn variables(
    conn: &Connection,
    device_id: &str,
    limit: usize,
) -> rusqlite::Result<Vec<DataItem>> {
    let names: Vec<String> = conn
        .prepare_cached(
            "WITH RECURSIVE names(name) AS (
                SELECT (SELECT MIN(variable) FROM data WHERE device_id = ?1)
                UNION ALL
                SELECT (SELECT MIN(variable) FROM data WHERE device_id = ?1 AND variable > names.name)
                FROM names WHERE names.name IS NOT NULL
             )
             SELECT name FROM names WHERE name IS NOT NULL LIMIT ?2",
        )?
        .query_map(params![device_id, limit as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut items = Vec::with_capacity(names.len());
    for name in names {
        let filter = Filter {
            variables: vec![name],
            ..Filter::default()
        };
        let mut q = DataQuery {
            filter,
            mode: Mode::LastValue,
            ..DataQuery::default()
        };
        let mut found = match query(conn, device_id, &q)? {
            Answer::Items(items) => items,
            Answer::Number(_) => Vec::new(),
        };
        if found.is_empty() {
            q.mode = Mode::LastItem;
            if let Answer::Items(last) = query(conn, device_id, &q)? {
                found = last;
            }
        }
        items.extend(found.into_iter().take(1));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Synchronous;
    use crate::store::Store;
    use serde_json::json;

    const DEV: &str = "d0000000000000000000000a";
    const OTHER: &str = "d0000000000000000000000b";

    /// A store in a temporary directory with two devices, and `items`
    /// (variable, value, time) stored in the first.
    fn store_with(items: &[(&str, Value, i64)]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Synchronous::Normal).unwrap();
        let items: Vec<DataItem> = items
            .iter()
            .enumerate()
            .map(|(i, (variable, value, time))| DataItem {
                id: format!("{i:024}"),
                device: DEV.into(),
                variable: variable.to_string(),
                value: (!value.is_null()).then(|| value.clone()),
                unit: None,
                time: *time,
                group: Some(format!("g{}", i % 2)),
                location: None,
                metadata: None,
                created_at: 1000 + i as i64,
            })
            .collect();
        futures::executor::block_on(store.write(move |c| {
            for id in [DEV, OTHER] {
                c.execute(
                    "INSERT INTO devices (id, name, created_at) VALUES (?1, ?1, 0)",
                    [id],
                )?;
            }
            insert(c, &items)
        }))
        .unwrap();
        (dir, store)
    }

    fn run(store: &Store, q: DataQuery) -> Answer {
        store.read_blocking(move |c| query(c, DEV, &q)).unwrap()
    }

    fn values(a: Answer) -> Vec<Value> {
        match a {
            Answer::Items(items) => items
                .into_iter()
                .map(|i| i.value.unwrap_or(Value::Null))
                .collect(),
            Answer::Number(n) => panic!("a number: {n}"),
        }
    }

    fn q(mode: Mode, variables: &[&str]) -> DataQuery {
        DataQuery {
            mode,
            filter: Filter {
                variables: variables.iter().map(|v| v.to_string()).collect(),
                ..Filter::default()
            },
            ..DataQuery::default()
        }
    }

    fn sample() -> (tempfile::TempDir, Store) {
        // Inserted out of time order, so that insertion and time orders differ.
        store_with(&[
            ("t", json!(20), 2000),
            ("t", json!(25), 4000),
            ("t", json!(15), 1000),
            ("t", Value::Null, 5000),
            ("h", json!(60), 3000),
            ("h", json!("n/a"), 3500),
        ])
    }

    #[test]
    fn list_is_newest_first_with_qty_skip_and_order() {
        let (_d, s) = sample();
        assert_eq!(
            values(run(&s, q(Mode::List, &["t"]))),
            vec![Value::Null, json!(25), json!(20), json!(15)]
        );
        let mut asc = q(Mode::List, &[]);
        asc.ascending = true;
        asc.qty = 2;
        asc.skip = 1;
        assert_eq!(values(run(&s, asc)), vec![json!(20), json!(60)]);
    }

    #[test]
    fn picks_are_one_per_variable() {
        let (_d, s) = sample();
        assert_eq!(values(run(&s, q(Mode::LastValue, &["t"]))), vec![json!(25)]);
        assert_eq!(
            values(run(&s, q(Mode::LastItem, &["t"]))),
            vec![Value::Null]
        );
        assert_eq!(
            values(run(&s, q(Mode::FirstValue, &["t"]))),
            vec![json!(15)]
        );
        assert_eq!(
            values(run(&s, q(Mode::LastInsert, &["t"]))),
            vec![Value::Null]
        );
        assert_eq!(
            values(run(&s, q(Mode::FirstInsert, &["t"]))),
            vec![json!(20)]
        );
        assert_eq!(values(run(&s, q(Mode::Max, &["t"]))), vec![json!(25)]);
        assert_eq!(values(run(&s, q(Mode::Min, &["t"]))), vec![json!(15)]);
        // Two variables: one each, newest first.
        assert_eq!(
            values(run(&s, q(Mode::LastValue, &["h", "t"]))),
            vec![json!(25), json!("n/a")]
        );
        // No variable: one over the whole bucket.
        assert_eq!(
            values(run(&s, q(Mode::LastInsert, &[]))),
            vec![json!("n/a")]
        );
        assert_eq!(values(run(&s, q(Mode::Max, &[]))), vec![json!(60)]);
    }

    #[test]
    fn numbers() {
        let (_d, s) = sample();
        assert_eq!(run(&s, q(Mode::Count, &["t"])), Answer::Number(4.0));
        assert_eq!(run(&s, q(Mode::Count, &[])), Answer::Number(6.0));
        assert_eq!(run(&s, q(Mode::Sum, &["t"])), Answer::Number(60.0));
        assert_eq!(run(&s, q(Mode::Avg, &["t"])), Answer::Number(20.0));
        assert_eq!(run(&s, q(Mode::Avg, &["nothing"])), Answer::Number(0.0));
    }

    #[test]
    fn filters() {
        let (_d, s) = sample();
        let mut range = q(Mode::List, &["t"]);
        range.filter.start = Some(2000);
        range.filter.end = Some(4000);
        assert_eq!(values(run(&s, range)), vec![json!(25), json!(20)]);
        let mut by_value = q(Mode::List, &[]);
        by_value.filter.values = vec!["\"n/a\"".into(), "15".into()];
        assert_eq!(values(run(&s, by_value)), vec![json!("n/a"), json!(15)]);
        let mut by_group = q(Mode::Count, &[]);
        by_group.filter.groups = vec!["g0".into()];
        assert_eq!(run(&s, by_group), Answer::Number(3.0));
        let mut by_id = q(Mode::List, &[]);
        by_id.filter.ids = vec![format!("{:024}", 1)];
        assert_eq!(values(run(&s, by_id)), vec![json!(25)]);
        // Another device's bucket is another bucket.
        let other = s
            .read_blocking(|c| query(c, OTHER, &q(Mode::Count, &[])))
            .unwrap();
        assert_eq!(other, Answer::Number(0.0));
    }

    #[test]
    fn delete_takes_what_the_query_lists() {
        let (_d, s) = sample();
        let mut oldest_two = q(Mode::List, &["t"]);
        oldest_two.ascending = true;
        oldest_two.qty = 2;
        let removed = futures::executor::block_on(s.write(move |c| delete(c, DEV, &oldest_two)));
        assert_eq!(removed.unwrap(), 2);
        assert_eq!(
            values(run(&s, q(Mode::List, &["t"]))),
            vec![Value::Null, json!(25)]
        );
    }

    #[test]
    fn update_changes_given_fields_only() {
        let (_d, s) = sample();
        let edits = vec![
            Edit {
                id: format!("{:024}", 0),
                value: Some(Some(json!(99))),
                unit: Some(Some("C".into())),
                ..Edit::default()
            },
            Edit {
                id: "unknown".into(),
                value: Some(None),
                ..Edit::default()
            },
        ];
        let found = futures::executor::block_on(s.write(move |c| update(c, DEV, &edits)));
        assert_eq!(found.unwrap(), 1);
        let Answer::Items(items) = run(&s, q(Mode::Max, &["t"])) else {
            panic!("items expected")
        };
        assert_eq!(items[0].value, Some(json!(99)));
        assert_eq!(items[0].unit.as_deref(), Some("C"));
        assert_eq!(items[0].time, 2000, "time was not given, so it stays");
        // Another device cannot edit this one's items.
        let edit = vec![Edit {
            id: format!("{:024}", 1),
            value: Some(Some(json!(0))),
            ..Edit::default()
        }];
        let found = futures::executor::block_on(s.write(move |c| update(c, OTHER, &edit)));
        assert_eq!(found.unwrap(), 0);
    }

    /// The plan SQLite picks for each statement of a query, one line per step.
    fn plan(store: &Store, q: DataQuery) -> String {
        store
            .read_blocking(move |c| {
                let mut out = Vec::new();
                for sql in statements(DEV, &q) {
                    let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {}", sql.text))?;
                    let rows = stmt
                        .query_map(rusqlite::params_from_iter(sql.params.iter()), |r| {
                            r.get::<_, String>(3)
                        })?;
                    for row in rows {
                        out.push(row?);
                    }
                }
                Ok(out.join("\n"))
            })
            .unwrap()
    }

    #[test]
    fn last_value_of_a_variable_is_an_index_seek() {
        let (_d, s) = sample();
        let plan = plan(&s, q(Mode::LastValue, &["temperature"]));
        assert!(
            plan.contains("USING INDEX data_device_variable_time (device_id=? AND variable=?)"),
            "{plan}"
        );
        assert!(!plan.contains("SCAN"), "no full scan: {plan}");
        assert!(
            !plan.contains("TEMP B-TREE"),
            "no sort, the index gives the order: {plan}"
        );
    }

    #[test]
    fn time_range_of_a_variable_is_an_index_range() {
        let (_d, s) = sample();
        let mut range = q(Mode::List, &["temperature"]);
        range.filter.start = Some(1);
        range.filter.end = Some(2);
        let plan = plan(&s, range);
        assert!(
            plan.contains(
                "USING INDEX data_device_variable_time (device_id=? AND variable=? AND time>? AND time<?)"
            ),
            "{plan}"
        );
        assert!(!plan.contains("SCAN"), "no full scan: {plan}");
        assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
    }

    #[test]
    fn bucket_widths_are_round_and_cover_the_range() {
        const MIN: i64 = 60_000;
        const HOUR: i64 = 60 * MIN;
        const DAY: i64 = 24 * HOUR;
        assert_eq!(bucket_width(HOUR, 300), 15_000);
        assert_eq!(bucket_width(DAY, 300), 5 * MIN);
        assert_eq!(bucket_width(7 * DAY, 300), HOUR);
        assert_eq!(bucket_width(30 * DAY, 300), 3 * HOUR);
        assert_eq!(bucket_width(10, 1000), 1000, "never under a second");
        assert_eq!(
            bucket_width(100 * 365 * DAY, 1000),
            37 * DAY,
            "whole days past a week"
        );
        for (span, resolution) in [(HOUR, 300), (DAY, 7), (13 * DAY + 5, 1000), (1, 1)] {
            let w = bucket_width(span, resolution);
            assert!(
                bucket_count(1_000_003, 1_000_003 + span, w) <= resolution + 1,
                "{span} / {resolution}"
            );
        }
        assert_eq!(bucket_count(0, 9_999, 5_000), 2);
        assert_eq!(bucket_count(-1, 0, 5_000), 2, "aligned before 1970 too");
    }

    fn bq(variables: &[&str], start: i64, end: i64, width_ms: i64) -> BucketQuery {
        BucketQuery {
            filter: Filter {
                variables: variables.iter().map(|v| v.to_string()).collect(),
                start: Some(start),
                end: Some(end),
                ..Filter::default()
            },
            width_ms,
        }
    }

    #[test]
    fn buckets_average_numbers_per_aligned_interval() {
        let (_d, s) = store_with(&[
            ("t", json!(10), 1_000),
            ("t", json!(20), 1_999),
            ("t", json!("text"), 1_500),
            ("t", json!(5), 2_000),
            ("t", json!(7), 4_100),
            ("h", json!(50), 1_000),
            ("t", json!(99), 9_000),
        ]);
        let got = s
            .read_blocking(|c| buckets(c, DEV, &bq(&["t", "h"], 0, 5_000, 1_000)))
            .unwrap();
        let rows: Vec<(&str, i64, f64, f64, f64, i64)> = got
            .iter()
            .map(|b| (b.variable.as_str(), b.start, b.avg, b.min, b.max, b.count))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("t", 1_000, 15.0, 10.0, 20.0, 2),
                ("t", 2_000, 5.0, 5.0, 5.0, 1),
                ("t", 4_000, 7.0, 7.0, 7.0, 1),
                ("h", 1_000, 50.0, 50.0, 50.0, 1),
            ],
            "strings left out, empty buckets absent, the range's end respected"
        );
        let other = s
            .read_blocking(|c| buckets(c, OTHER, &bq(&["t"], 0, 5_000, 1_000)))
            .unwrap();
        assert!(
            other.is_empty(),
            "another device's bucket is another bucket"
        );
    }

    #[test]
    fn buckets_of_a_variable_are_an_index_range() {
        let (_d, s) = sample();
        let plan = s
            .read_blocking(|c| {
                let mut out = Vec::new();
                for (_, sql) in bucket_statements(DEV, &bq(&["temperature"], 1, 2, 1000)) {
                    let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {}", sql.text))?;
                    let rows = stmt
                        .query_map(rusqlite::params_from_iter(sql.params.iter()), |r| {
                            r.get::<_, String>(3)
                        })?;
                    for row in rows {
                        out.push(row?);
                    }
                }
                Ok(out.join("\n"))
            })
            .unwrap();
        assert!(
            plan.contains(
                "USING INDEX data_device_variable_time (device_id=? AND variable=? AND time>? AND time<?)"
            ),
            "{plan}"
        );
        assert!(!plan.contains("SCAN"), "no full scan: {plan}");
    }

    #[test]
    fn variables_are_listed_with_their_newest_value() {
        let (_d, s) = sample();
        let got = s.read_blocking(|c| variables(c, DEV, 100)).unwrap();
        let seen: Vec<(&str, Option<Value>)> = got
            .iter()
            .map(|i| (i.variable.as_str(), i.value.clone()))
            .collect();
        assert_eq!(
            seen,
            vec![("h", Some(json!("n/a"))), ("t", Some(json!(25)))],
            "by name; t's newest item has no value, so its newest value"
        );
        let one = s.read_blocking(|c| variables(c, DEV, 1)).unwrap();
        assert_eq!(one.len(), 1);
        let none = s.read_blocking(|c| variables(c, OTHER, 100)).unwrap();
        assert!(none.is_empty());
    }
}
