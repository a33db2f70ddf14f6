"""Averages the readings of one variable in a message and raises an alert.

Written with TagoIO's Python SDK (`tagoio-sdk`, see requirements.txt) and
run by brook exactly as TagoIO runs it: `Analysis.use` finds the context in
the T_ANALYSIS_* environment variables and calls `average_alert` at once;
`Device` and `Services` find brook's API in TAGOIO_API, which brook sets.

The action's `env` (T_ANALYSIS_ENV, `context.environment`):
  VARIABLE     the variable to average (default "temperature")
  LIMIT        publish an alert when the average is above it (default 30)
  ALERT_TOPIC  where to publish it (default "alerts/<device id>")

It stores `<VARIABLE>_avg` in the device's bucket with the run's token (which
may store data for the device whose message started the run) and, when the
average is above LIMIT, publishes a JSON alert with `Services.MQTT.publish`.
"""

import json

from tagoio_sdk import Analysis, Device, Services


def average_alert(context, scope):
    env = {e["key"]: e["value"] for e in context.environment}
    variable = env.get("VARIABLE", "temperature")
    limit = float(env.get("LIMIT", "30"))

    readings = [
        item for item in scope
        if item.get("variable") == variable
        and isinstance(item.get("value"), (int, float))
        and not isinstance(item.get("value"), bool)
    ]
    if not readings:
        context.log(f"no {variable} reading in this message")
        return
    average = round(sum(item["value"] for item in readings) / len(readings), 2)
    device_id = readings[0]["device"]

    stored = Device({"token": context.token}).sendData({
        "variable": f"{variable}_avg",
        "value": average,
        "metadata": {"readings": len(readings), "limit": limit},
    })
    context.log(f"{variable} average of {len(readings)} readings: {average} ({stored})")

    if average > limit:
        topic = env.get("ALERT_TOPIC", f"alerts/{device_id}")
        message = {"variable": variable, "average": average, "limit": limit, "device": device_id}
        sent = Services({"token": context.token}).MQTT.publish({
            "topic": topic,
            "message": json.dumps(message),
            "bucket": device_id,
            "options": {"qos": 1, "retain": False},
        })
        context.log(f"ALERT on {topic}: {average} > {limit} ({sent})")


Analysis.use(average_alert)
