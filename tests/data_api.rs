//! The TagoIO-compatible device API (the README's data format and HTTP API), spoken
//! over real HTTP to a real server: sending, reading, editing and deleting
//! data with a device token, the token's permission, the payload parser, the
//! per-device limit, `/info` and the device's parameters.

mod common;

use std::time::Duration;

use common::{Config, Server};
use serde_json::{json, Value};

/// A device's view of the API: requests carry its token in a header.
struct DeviceApi<'a> {
    server: &'a Server,
    /// `(header name, header value)` that carries the token.
    auth: (String, String),
    agent: ureq::Agent,
}

/// What came back: HTTP status, body as JSON, and `Retry-After` if any.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: Value,
    retry_after: Option<String>,
}

impl Reply {
    /// Asserts a 200 with `"status": true` and returns `result`.
    fn ok(self) -> Value {
        assert!(
            self.status == 200 && self.body["status"] == json!(true),
            "expected success, got HTTP {}: {}",
            self.status,
            self.body
        );
        self.body["result"].clone()
    }

    /// Asserts a refusal with `status` and returns its message.
    fn refused(self, status: u16) -> String {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.body["status"], json!(false), "body: {}", self.body);
        self.body["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message in {}", self.body))
            .to_string()
    }
}

impl<'a> DeviceApi<'a> {
    /// Sends the token the way TagoIO's SDKs do: a `token` header.
    fn new(server: &'a Server, token: &str) -> DeviceApi<'a> {
        DeviceApi::with_header(server, "token", token)
    }

    fn with_header(server: &'a Server, name: &str, value: &str) -> DeviceApi<'a> {
        DeviceApi {
            server,
            auth: (name.to_string(), value.to_string()),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into(),
        }
    }

    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        let url = self.server.http_url(path);
        let (name, value) = (&self.auth.0, &self.auth.1);
        let result = match method {
            "GET" => self.agent.get(&url).header(name, value).call(),
            "DELETE" => self.agent.delete(&url).header(name, value).call(),
            "POST" => self
                .agent
                .post(&url)
                .header(name, value)
                .header("content-type", "application/json")
                .send(body.unwrap_or("")),
            "PUT" => self
                .agent
                .put(&url)
                .header(name, value)
                .header("content-type", "application/json")
                .send(body.unwrap_or("")),
            other => panic!("unsupported method {other}"),
        };
        let mut resp = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        Reply {
            status: resp.status().as_u16(),
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
            retry_after,
        }
    }

    fn get(&self, path_and_query: &str) -> Reply {
        self.request("GET", path_and_query, None)
    }

    fn post(&self, body: &Value) -> Reply {
        self.request("POST", "/data", Some(&body.to_string()))
    }

    fn put(&self, body: &Value) -> Reply {
        self.request("PUT", "/data", Some(&body.to_string()))
    }

    fn delete(&self, query: &str) -> Reply {
        self.request("DELETE", &format!("/data?{query}"), None)
    }

    /// `GET /data?query` as items.
    fn items(&self, query: &str) -> Vec<Value> {
        let result = self.get(&format!("/data?{query}")).ok();
        result
            .as_array()
            .unwrap_or_else(|| panic!("GET /data?{query}: not a list: {result}"))
            .clone()
    }

    /// The `value` of each item of `GET /data?query`.
    fn values(&self, query: &str) -> Vec<Value> {
        self.items(query)
            .iter()
            .map(|i| i["value"].clone())
            .collect()
    }

    fn count(&self, query: &str) -> Value {
        self.get(&format!("/data?query=count&{query}")).ok()
    }
}

/// `value` percent-encoded for a query string (dates have spaces, `:` and `+`).
fn enc(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn post_then_get_round_trips_every_field() {
    let s = Server::start();
    let dev = s.create_device("sensor");
    let api = DeviceApi::new(&s, &dev.token);

    let added = api
        .post(&json!([
            {
                "variable": "Temperature",
                "value": 21.5,
                "unit": "°C",
                "time": "2026-11-24T10:00:00.000Z",
                "group": "batch-1",
                "location": {"lat": -23.5, "lng": -46.6},
                "metadata": {"color": "red", "nested": {"a": [1, 2]}}
            },
            {"variable": "label", "value": "hello world"},
            {"variable": "on", "value": true}
        ]))
        .ok();
    assert_eq!(added, json!("3 Data Added"));

    let items = api.items("variable=temperature");
    assert_eq!(items.len(), 1, "{items:?}");
    let t = &items[0];
    assert_eq!(t["variable"], "temperature", "stored lower-case");
    assert_eq!(t["value"], 21.5);
    assert_eq!(t["unit"], "°C");
    assert_eq!(t["time"], "2026-11-24T10:00:00.000Z");
    assert_eq!(t["group"], "batch-1");
    assert_eq!(
        t["location"],
        json!({"type": "Point", "coordinates": [-46.6, -23.5]}),
        "lat/lng comes back as GeoJSON"
    );
    assert_eq!(
        t["metadata"],
        json!({"color": "red", "nested": {"a": [1, 2]}})
    );
    assert_eq!(t["device"], json!(dev.id));
    assert_eq!(t["id"].as_str().map(str::len), Some(24));
    assert!(t["created_at"].as_str().is_some_and(|c| c.ends_with('Z')));

    assert_eq!(api.values("variable=label"), vec![json!("hello world")]);
    assert_eq!(api.values("variable[]=on"), vec![json!(true)]);
    // Items sent together without a group share one.
    let label = &api.items("variable=label")[0];
    let on = &api.items("variable=on")[0];
    assert_eq!(label["group"], on["group"]);
    // No variable: every item, newest first (the two without time are "now").
    let all = api.items("");
    assert_eq!(all.len(), 3);
    assert_eq!(all[2]["variable"], "temperature");
}

#[test]
fn each_query_mode_on_known_data() {
    let s = Server::start();
    let dev = s.create_device("modes");
    let api = DeviceApi::new(&s, &dev.token);
    // Posted out of time order, so that insertion order and time order differ.
    for (value, time) in [(30, "2026-01-02"), (10, "2026-01-01"), (20, "2026-01-03")] {
        api.post(&json!({"variable": "t", "value": value, "time": time}))
            .ok();
    }
    api.post(&json!([
        {"variable": "h", "value": "n/a", "time": "2026-01-02T12:00:00Z"},
        {"variable": "h", "time": "2026-01-04", "location": {"lat": 1, "lng": 2}}
    ]))
    .ok();

    let q = |query: &str| api.values(&format!("variable=t&query={query}"));
    assert_eq!(q("last_value"), vec![json!(20)], "newest by time");
    assert_eq!(q("last_item"), vec![json!(20)]);
    assert_eq!(q("first_value"), vec![json!(10)], "oldest by time");
    assert_eq!(q("last_insert"), vec![json!(20)], "posted last");
    assert_eq!(q("min"), vec![json!(10)]);
    assert_eq!(q("max"), vec![json!(30)]);
    assert_eq!(api.count("variable=t"), json!(3));
    assert_eq!(api.count(""), json!(5));
    let number = |query: &str| api.get(&format!("/data?variable=t&query={query}")).ok();
    assert_eq!(number("sum"), json!(60));
    assert_eq!(number("avg"), json!(20));

    // last_value skips the item without a value; last_item does not.
    assert_eq!(
        api.values("variable=h&query=last_value"),
        vec![json!("n/a")]
    );
    let last = api.items("variable=h&query=last_item");
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["time"], "2026-01-04T00:00:00.000Z");
    assert!(last[0].get("value").is_none());
    // One item per variable, newest first.
    let both = api.items("variable=t&variable=h&query=last_value");
    let names: Vec<&Value> = both.iter().map(|i| &i["variable"]).collect();
    assert_eq!(names, [&json!("t"), &json!("h")]);
    // last_insert across the bucket is the very last item posted.
    assert_eq!(
        api.items("query=last_insert")[0]["time"],
        "2026-01-04T00:00:00.000Z"
    );

    // The default listing: qty, skip, ordination.
    assert_eq!(
        api.values("variable=t"),
        vec![json!(20), json!(30), json!(10)]
    );
    assert_eq!(
        api.values("variable=t&qty=2&ordination=ascending"),
        vec![json!(10), json!(30)]
    );
    assert_eq!(api.values("variable=t&qty=1&skip=1"), vec![json!(30)]);

    let m = api.get("/data?query=median").refused(400);
    assert!(m.contains("query") && m.contains("last_value"), "{m}");
}

#[test]
fn date_filters_accept_iso_and_relative_dates() {
    let s = Server::start();
    let dev = s.create_device("dated");
    let api = DeviceApi::new(&s, &dev.token);
    let now = chrono::Utc::now();
    let ago = |hours: i64| (now - chrono::Duration::hours(hours)).to_rfc3339();
    api.post(&json!([
        {"variable": "v", "value": 72, "time": ago(72)},
        {"variable": "v", "value": 1, "time": ago(1)},
        {"variable": "v", "value": 0}
    ]))
    .ok();

    assert_eq!(
        api.values(&format!("variable=v&start_date={}", enc("2 days"))),
        vec![json!(0), json!(1)]
    );
    assert_eq!(
        api.values(&format!("variable=v&end_date={}", enc("1 day"))),
        vec![json!(72)]
    );
    assert_eq!(
        api.values(&format!(
            "variable=v&start_date={}&end_date={}",
            enc("3 hours"),
            enc("30 minutes")
        )),
        vec![json!(1)]
    );
    // ISO 8601 and "YYYY-MM-DD HH:mm:ss" (UTC).
    let iso =
        (now - chrono::Duration::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(
        api.values(&format!("variable=v&start_date={}", enc(&iso))),
        vec![json!(0), json!(1)]
    );
    let plain = (now - chrono::Duration::hours(48))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    assert_eq!(
        api.values(&format!("variable=v&end_date={}", enc(&plain))),
        vec![json!(72)]
    );
    assert_eq!(
        api.count(&format!("variable=v&start_date={}", enc("2 days"))),
        json!(2)
    );
    let m = api.get("/data?start_date=someday").refused(400);
    assert!(m.starts_with("start_date:"), "{m}");
}

#[test]
fn read_token_cannot_post_and_write_token_cannot_get() {
    let s = Server::start();
    let dev = s.create_device("guarded");
    let (_, read) = s.add_token("guarded", json!({"name": "r", "permission": "read"}));
    let (_, write) = s.add_token("guarded", json!({"name": "w", "permission": "write"}));
    let reader = DeviceApi::new(&s, &read);
    let writer = DeviceApi::new(&s, &write);

    let m = reader
        .post(&json!({"variable": "x", "value": 1}))
        .refused(401);
    assert!(m.contains("write"), "names the permission needed: {m}");
    let m = writer.get("/data").refused(401);
    assert!(m.contains("read"), "names the permission needed: {m}");
    let m = reader.delete("variable=x").refused(401);
    assert!(m.contains("write"), "{m}");

    writer.post(&json!({"variable": "x", "value": 1})).ok();
    assert_eq!(reader.values("variable=x"), vec![json!(1)]);

    // The other headers carry the token too.
    let by_device_token = DeviceApi::with_header(&s, "Device-Token", &dev.token);
    assert_eq!(by_device_token.values("variable=x"), vec![json!(1)]);
    let by_authorization = DeviceApi::with_header(&s, "Authorization", &dev.token);
    assert_eq!(by_authorization.values("variable=x"), vec![json!(1)]);
    let by_bearer = DeviceApi::with_header(&s, "Authorization", &format!("Bearer {}", dev.token));
    assert_eq!(by_bearer.values("variable=x"), vec![json!(1)]);

    let stranger = DeviceApi::new(&s, "0123456789abcdef0123456789abcdef");
    assert_eq!(stranger.get("/data").refused(401), "Invalid token");
    let nobody = DeviceApi::with_header(&s, "x-nothing", "");
    let m = nobody.get("/info").refused(401);
    assert!(m.contains("token"), "{m}");
}

#[test]
fn malformed_body_stores_nothing_and_names_item_and_field() {
    let s = Server::start();
    let dev = s.create_device("strict");
    let api = DeviceApi::new(&s, &dev.token);

    let m = api
        .post(&json!([
            {"variable": "good", "value": 1},
            {"variable": "also_good", "value": 2},
            {"variable": "bad", "unit": 5}
        ]))
        .refused(400);
    assert_eq!(m, "item 2: unit: must be a string, not a number");
    let m = api
        .post(&json!({"variable": "has space", "value": 1}))
        .refused(400);
    assert!(m.starts_with("item 0: variable:"), "{m}");
    let m = api
        .request("POST", "/data", Some("{\"variable\": "))
        .refused(400);
    assert!(m.contains("JSON"), "{m}");
    let big = json!({"variable": "big", "metadata": {"k": "x".repeat(210 * 1024)}});
    let m = api.post(&big).refused(400);
    assert!(m.contains("200 kB"), "{m}");

    assert_eq!(
        api.count(""),
        json!(0),
        "nothing of a refused body is stored"
    );
    assert_eq!(api.post(&json!([])).ok(), json!("0 Data Added"));
}

#[test]
fn parser_turns_a_hex_payload_into_two_variables() {
    let s = Server::start();
    let dev = s.create_device("parsed");
    let parser = r#"
        const raw = payload.find((x) => x.variable === "payload");
        if (raw) {
          const buffer = Buffer.from(raw.value, "hex");
          if (buffer.length !== 3) throw new Error("expected 3 bytes, got " + buffer.length);
          payload = [
            { variable: "temperature", value: buffer.readInt16BE(0) / 100, unit: "°C" },
            { variable: "humidity", value: buffer.readUInt8(2), unit: "%" },
          ];
        }
    "#;
    s.admin_ok("PATCH", "/devices/parsed", Some(json!({"parser": parser})));
    let api = DeviceApi::new(&s, &dev.token);

    // 0x0866 = 2150 → 21.5 °C; 0x3c = 60 %.
    assert_eq!(
        api.post(&json!({"variable": "payload", "value": "08663c"}))
            .ok(),
        json!("2 Data Added")
    );
    let t = &api.items("variable=temperature")[0];
    assert_eq!((&t["value"], &t["unit"]), (&json!(21.5), &json!("°C")));
    assert_eq!(api.values("variable=humidity"), vec![json!(60)]);
    assert_eq!(api.count("variable=payload"), json!(0));

    let m = api
        .post(&json!({"variable": "payload", "value": "08"}))
        .refused(400);
    assert!(m.contains("expected 3 bytes, got 1"), "{m}");
    assert_eq!(api.count(""), json!(2), "a failed parse stores nothing");
}

#[test]
fn requests_past_the_limit_get_429_with_retry_after() {
    let s = Server::start_with(Config::new().raw("[limits]\npublish_per_minute = 3"));
    let dev = s.create_device("chatty");
    let other = s.create_device("quiet");
    let api = DeviceApi::new(&s, &dev.token);
    for i in 0..3 {
        api.post(&json!({"variable": "n", "value": i})).ok();
    }
    let over = api.post(&json!({"variable": "n", "value": 3}));
    let retry: u64 = over
        .retry_after
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("a numeric Retry-After: {over:?}"));
    assert!(
        (1..=20).contains(&retry),
        "3 per minute refills in 20 s: {retry}"
    );
    let m = over.refused(429);
    assert!(m.contains("limit"), "{m}");
    // Reads count too, and the limit is per device.
    api.get("/data").refused(429);
    DeviceApi::new(&s, &other.token).get("/data").ok();
    assert_eq!(
        s.admin_ok("GET", "/devices/chatty/data?query=count", None),
        json!(3),
        "the refused POST stored nothing"
    );
}

#[test]
fn delete_and_put_edit_stored_items() {
    let s = Server::start();
    let dev = s.create_device("editable");
    let api = DeviceApi::new(&s, &dev.token);
    for (i, day) in ["01", "02", "03", "04", "05"].iter().enumerate() {
        api.post(&json!({"variable": "t", "value": i, "time": format!("2026-01-{day}")}))
            .ok();
    }
    api.post(&json!({"variable": "keep", "value": "me"})).ok();

    // DELETE takes what GET would list: qty applies, newest first by default.
    assert_eq!(api.delete("variable=t&qty=2").ok(), json!("2 Data Removed"));
    assert_eq!(api.values("variable=t"), vec![json!(2), json!(1), json!(0)]);
    assert_eq!(
        api.delete("variable=t&query=first_value").ok(),
        json!("1 Data Removed")
    );
    assert_eq!(api.values("variable=t"), vec![json!(2), json!(1)]);
    api.delete("query=count").refused(400);

    let id = api.items("variable=t&query=last_value")[0]["id"].clone();
    let edited = api
        .put(&json!([{"id": id, "value": 42, "unit": "K", "metadata": {"fixed": true}}]))
        .ok();
    assert_eq!(edited, json!("1 item(s) updated"));
    let t = &api.items("variable=t&query=last_value")[0];
    assert_eq!(
        (&t["id"], &t["value"], &t["unit"]),
        (&id, &json!(42), &json!("K"))
    );
    assert_eq!(t["metadata"], json!({"fixed": true}));
    assert_eq!(t["time"], "2026-01-03T00:00:00.000Z", "time was not given");
    assert_eq!(api.get("/data?variable=t&query=max").ok()[0]["value"], 42);

    let m = api
        .put(&json!({"id": "000000000000000000000000", "value": 1}))
        .refused(404);
    assert!(m.contains("id"), "{m}");
    let m = api.put(&json!([{"id": id, "unit": 1}])).refused(400);
    assert_eq!(m, "item 0: unit: must be a string, not a number");
    let m = api.put(&json!([{"value": 1}])).refused(400);
    assert_eq!(m, "item 0: id: is required");

    // Another device cannot touch these items.
    let intruder = s.create_device("intruder");
    DeviceApi::new(&s, &intruder.token)
        .put(&json!({"id": id, "value": 0}))
        .refused(404);
    assert_eq!(api.values("variable=t&query=last_value"), vec![json!(42)]);
    assert_eq!(api.values("variable=keep"), vec![json!("me")]);
}

#[test]
fn info_describes_the_tokens_device() {
    let s = Server::start();
    let dev = s.create_device_with_tags("described", &[("room", "lab")]);
    let api = DeviceApi::new(&s, &dev.token);
    let before = api.get("/info").ok();
    assert_eq!(before["id"], json!(dev.id));
    assert_eq!(before["name"], "described");
    assert_eq!(before["tags"], json!([{"key": "room", "value": "lab"}]));
    assert_eq!(before["type"], "mutable");
    assert_eq!(before["bucket"]["id"], json!(dev.id));
    assert_eq!(before["active"], true);
    assert!(before["created_at"].as_str().is_some());
    assert!(before["last_input"].is_null(), "{before}");

    api.post(&json!({"variable": "x", "value": 1})).ok();
    let after = api.get("/info").ok();
    let last_input = after["last_input"]
        .as_str()
        .expect("last_input after a POST");
    let at = chrono::DateTime::parse_from_rfc3339(last_input).expect("ISO 8601");
    let age = chrono::Utc::now().signed_duration_since(at);
    assert!(age.num_seconds().abs() < 30, "last_input {last_input}");
    // The admin API sees it too (written within a second, not per request).
    common::wait_until("the admin API shows last_input", common::WAIT, || {
        !s.admin_ok("GET", "/devices/described", None)["last_input"].is_null()
    });
}

#[test]
fn params_are_listed_and_marked_sent() {
    let s = Server::start();
    let dev = s.create_device("configured");
    s.admin_ok(
        "PATCH",
        "/devices/configured",
        Some(json!({"params": [
            {"key": "interval", "value": "60"},
            {"key": "mode", "value": "eco", "sent": true}
        ]})),
    );
    let api = DeviceApi::new(&s, &dev.token);
    let all = api.get("/device/params").ok();
    assert_eq!(all.as_array().map(Vec::len), Some(2), "{all}");
    let unsent = api.get("/device/params?sent_status=false").ok();
    assert_eq!(unsent.as_array().map(Vec::len), Some(1), "{unsent}");
    assert_eq!(unsent[0]["key"], "interval");
    assert_eq!(unsent[0]["value"], "60");
    assert_eq!(unsent[0]["sent"], false);
    let id = unsent[0]["id"].as_str().expect("param id").to_string();

    api.request("PUT", &format!("/device/params/{id}"), None)
        .ok();
    assert_eq!(api.get("/device/params?sent_status=false").ok(), json!([]));
    assert_eq!(
        api.get("/device/params?sent_status=true")
            .ok()
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    api.request("PUT", "/device/params/nope", None).refused(404);
}

#[test]
fn brook_data_reads_the_bucket_through_the_admin_api() {
    let s = Server::start();
    let dev = s.create_device("cli-read");
    DeviceApi::new(&s, &dev.token)
        .post(&json!([
            {"variable": "temperature", "value": 21.5, "unit": "C"},
            {"variable": "humidity", "value": 40}
        ]))
        .ok();
    let out = s.cli(
        &["data", "cli-read", "--variable", "temperature", "--json"],
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out:?}");
    let items: Value = serde_json::from_str(&out.stdout).expect("JSON output");
    assert_eq!(items.as_array().map(Vec::len), Some(1), "{items}");
    assert_eq!(items[0]["value"], 21.5);
    let (status, body) = s.http_request("GET", "/devices/cli-read/data", None, None);
    assert_eq!(status, 401, "admin token required: {body}");
    let (status, _) = s.admin("GET", "/devices/nobody/data", None);
    assert_eq!(status, 404);
}

#[test]
fn buckets_sum_up_thousands_of_points_for_a_chart() {
    let s = Server::start();
    let dev = s.create_device("chart");
    let api = DeviceApi::new(&s, &dev.token);
    // 3000 readings, one every 20 s over the last 1000 minutes (~16.7 h),
    // values 0..=9 repeating; plus a string that buckets leave out.
    let now = chrono::Utc::now().timestamp_millis();
    let first = now - 3000 * 20_000;
    for chunk in (0..3000).collect::<Vec<i64>>().chunks(1000) {
        let items: Vec<Value> = chunk
            .iter()
            .map(|i| {
                let t = chrono::DateTime::from_timestamp_millis(first + i * 20_000)
                    .expect("a time in range")
                    .to_rfc3339();
                json!({"variable": "temperature", "value": i % 10, "unit": "°C", "time": t})
            })
            .collect();
        api.post(&json!(items)).ok();
    }
    api.post(&json!({"variable": "temperature", "value": "sensor warming up"}))
        .ok();

    let buckets = s.admin_ok(
        "GET",
        "/devices/chart/data?variable=temperature&start_date=24%20hours&resolution=300",
        None,
    );
    let buckets = buckets.as_array().expect("a list of buckets");
    // 24 h / 300 = 288 s, rounded up to 5 min: 1000 minutes of data fill 200
    // or 201 of them (the first and last may be partial).
    assert!(
        (200..=201).contains(&buckets.len()),
        "{} buckets",
        buckets.len()
    );
    let counted: i64 = buckets
        .iter()
        .map(|b| b["count"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(counted, 3000, "every numeric reading is in one bucket");
    let full = &buckets[buckets.len() / 2];
    assert_eq!(full["variable"], "temperature");
    assert_eq!(full["count"], 15, "5 min of readings every 20 s");
    assert_eq!((&full["min"], &full["max"]), (&json!(0), &json!(9)));
    let times: Vec<i64> = buckets
        .iter()
        .map(|b| {
            chrono::DateTime::parse_from_rfc3339(b["time"].as_str().expect("time"))
                .expect("ISO time")
                .timestamp_millis()
        })
        .collect();
    assert!(
        times.windows(2).all(|w| w[1] - w[0] == 300_000),
        "oldest first, 5 min apart"
    );
    assert!(
        times.iter().all(|t| t % 300_000 == 0),
        "aligned to the width"
    );

    // The same from the device API, with an explicit width from the last bucket on.
    let last = times[times.len() - 1];
    let since = chrono::DateTime::from_timestamp_millis(last)
        .expect("a time in range")
        .to_rfc3339();
    let tail = api
        .get(&format!(
            "/data?variable=temperature&start_date={}&interval=5m",
            enc(&since)
        ))
        .ok();
    assert_eq!(tail.as_array().map(Vec::len), Some(1), "{tail}");
    assert_eq!(tail[0], buckets[buckets.len() - 1]);

    // Bounded and named refusals.
    let (status, body) = s.admin(
        "GET",
        "/devices/chart/data?variable=temperature&start_date=30%20days&interval=1s",
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("interval: "),
        "{body}"
    );
    let message = api
        .get("/data?variable=temperature&resolution=10")
        .refused(400);
    assert!(message.starts_with("start_date: "), "{message}");
    let message = api
        .delete("variable=temperature&start_date=1%20day&resolution=10")
        .refused(400);
    assert!(message.starts_with("resolution: "), "{message}");
    assert_eq!(
        api.count("variable=temperature"),
        json!(3001),
        "a refused DELETE removes nothing"
    );
}

#[test]
fn variables_are_listed_with_their_newest_value() {
    let s = Server::start();
    let dev = s.create_device("vars");
    let api = DeviceApi::new(&s, &dev.token);
    api.post(&json!([
        {"variable": "temperature", "value": 20, "unit": "°C", "time": "2026-01-01T00:00:00Z"},
        {"variable": "temperature", "value": 21.5, "unit": "°C", "time": "2026-01-01T00:01:00Z"},
        {"variable": "door", "value": "open"}
    ]))
    .ok();
    let list = s.admin_ok("GET", "/devices/vars/variables", None);
    let seen: Vec<(Value, Value, Value)> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| (i["variable"].clone(), i["value"].clone(), i["unit"].clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (json!("door"), json!("open"), Value::Null),
            (json!("temperature"), json!(21.5), json!("°C")),
        ]
    );
    let (status, _) = s.admin("GET", "/devices/nobody/variables", None);
    assert_eq!(status, 404);
    let (status, _) = s.http_request("GET", "/devices/vars/variables", None, None);
    assert_eq!(status, 401);
}
