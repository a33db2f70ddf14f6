"""A device script written with TagoIO's Python SDK (`tagoio-sdk`), run by
tests/sdk.rs against a running brook.

It makes every `Device` call a device script makes and prints one JSON object
on stdout: for each step, what the SDK returned (dates as ISO text, with
their Python type), or {"error": message} when the SDK raised. The Rust test
asserts the answers, so a failure shows the whole transcript.

Environment: BROOK_TOKEN (a full device token), TAGOIO_API (brook's HTTP base
URL). The main device is given brook through `region`; the bad-token one
through TAGOIO_API, the other way the SDK finds its API.
"""

import datetime
import json
import os
import sys

from tagoio_sdk import Device

API = os.environ["TAGOIO_API"]
results = {}


def plain(value):
    """The SDK's answer as JSON: datetimes become {"date": iso, "type": ...}."""
    if isinstance(value, datetime.datetime):
        return {"date": value.isoformat(), "type": "datetime"}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def step(name, call):
    try:
        results[name] = plain(call())
    except Exception as e:  # the SDK raises TagoIORequestError with brook's message
        results[name] = {"error": str(e), "type": type(e).__name__}
    return results[name]


device = Device({"token": os.environ["BROOK_TOKEN"], "region": {"api": API, "sse": ""}})

step("send_one", lambda: device.sendData({"variable": "temperature", "value": 21.5, "unit": "C",
                                          "time": "2026-01-01T00:00:01Z"}))
step("send_list", lambda: device.sendData([
    {"variable": "temperature", "value": 22.5, "time": "2026-01-01T00:00:02Z"},
    {"variable": "temperature", "value": 23.5, "time": "2026-01-01T00:00:03Z"},
    {"variable": "humidity", "value": 40, "time": "2026-01-01T00:00:04Z"},
]))
step("get_qty", lambda: device.getData({"variable": "temperature", "qty": 2}))
step("get_variables", lambda: device.getData({"variables": ["temperature", "humidity"], "qty": 10}))
step("get_dates", lambda: device.getData({"variable": "temperature",
                                          "start_date": "2026-01-01T00:00:02Z",
                                          "end_date": datetime.datetime(2026, 1, 1, 0, 0, 2, 500000),
                                          "ordination": "ascending"}))
step("last_value", lambda: device.getData({"variable": "temperature", "query": "last_value"}))
step("count", lambda: device.getData({"variable": "temperature", "query": "count"}))

newest = results["get_qty"][0]["id"] if isinstance(results["get_qty"], list) and results["get_qty"] else "none"
step("edit", lambda: device.editData({"id": newest, "value": 30}))
step("after_edit", lambda: device.getData({"variable": "temperature", "query": "last_value"}))
step("delete", lambda: device.deleteData({"variable": "humidity", "qty": 10}))
step("count_after_delete", lambda: device.getData({"variable": "humidity", "query": "count"}))

step("info", device.info)
params = step("params", device.getParameters)
param_id = params[0]["id"] if isinstance(params, list) and params else "none"
step("set_read", lambda: device.setParameterAsRead(param_id))
step("params_after", device.getParameters)

# No region: the SDK takes TAGOIO_API from the environment.
step("bad_token", lambda: Device({"token": "not-a-token"}).info())

json.dump(results, sys.stdout)
print()
