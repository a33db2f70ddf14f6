// A device script written with TagoIO's JavaScript SDK (`@tago-io/sdk`), run
// by tests/sdk.rs against a running brook.
//
// It makes every `Device` call a device script makes and prints one JSON
// object on stdout: for each step, what the SDK returned (Dates as
// {"date": iso, "type": "Date"}), or {"error": message} when the SDK threw.
// The Rust test asserts the answers, so a failure shows the whole transcript.
//
// Environment: BROOK_TOKEN (a full device token), TAGOIO_API (brook's HTTP
// base URL). The main device finds brook through TAGOIO_API, as an analysis
// would; the bad-token one through `region`, the other way.
"use strict";

const { Device } = require("@tago-io/sdk");

const results = {};

function plain(value) {
  if (value instanceof Date) {
    return { date: value.toISOString(), type: "Date" };
  }
  if (Array.isArray(value)) {
    return value.map(plain);
  }
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

async function step(name, call) {
  try {
    results[name] = plain(await call());
  } catch (e) {
    // The SDK throws brook's message itself (a string) for a 4xx answer.
    results[name] = { error: typeof e === "string" ? e : String(e?.message ?? JSON.stringify(e)) };
  }
  return results[name];
}

async function main() {
  const device = new Device({ token: process.env.BROOK_TOKEN });

  await step("send_one", () =>
    device.sendData({ variable: "temperature", value: 21.5, unit: "C", time: "2026-01-01T00:00:01Z" }),
  );
  await step("send_list", () =>
    device.sendData([
      { variable: "temperature", value: 22.5, time: "2026-01-01T00:00:02Z" },
      { variable: "temperature", value: 23.5, time: "2026-01-01T00:00:03Z" },
      { variable: "humidity", value: 40, time: "2026-01-01T00:00:04Z" },
    ]),
  );
  const latest = await step("get_qty", () => device.getData({ variable: "temperature", qty: 2 }));
  await step("get_variables", () => device.getData({ variables: ["temperature", "humidity"], qty: 10 }));
  await step("get_dates", () =>
    device.getData({
      variable: "temperature",
      start_date: new Date("2026-01-01T00:00:02Z"),
      end_date: "2026-01-01T00:00:02.500Z",
      ordination: "ascending",
    }),
  );
  await step("last_value", () => device.getData({ variable: "temperature", query: "last_value" }));
  await step("count", () => device.getData({ variable: "temperature", query: "count" }));

  const newest = Array.isArray(latest) && latest.length ? latest[0].id : "none";
  await step("edit", () => device.editData({ id: newest, value: 30 }));
  await step("after_edit", () => device.getData({ variable: "temperature", query: "last_value" }));
  await step("delete", () => device.deleteData({ variable: "humidity", qty: 10 }));
  await step("count_after_delete", () => device.getData({ variable: "humidity", query: "count" }));

  await step("info", () => device.info());
  const params = await step("params", () => device.getParameters("all"));
  const paramId = Array.isArray(params) && params.length ? params[0].id : "none";
  await step("set_read", () => device.setParameterAsRead(paramId));
  await step("params_unread", () => device.getParameters("onlyUnRead"));
  await step("params_read", () => device.getParameters("onlyRead"));

  await step("bad_token", () =>
    new Device({ token: "not-a-token", region: { api: process.env.TAGOIO_API, sse: "" } }).info(),
  );

  console.log(JSON.stringify(results));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
