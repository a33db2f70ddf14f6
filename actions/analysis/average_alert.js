// Averages the readings of one variable in a message and raises an alert.
//
// Written with TagoIO's JavaScript SDK (`@tago-io/sdk`, see package.json) and
// run by brook exactly as TagoIO runs it: `Analysis.use` finds the context in
// the T_ANALYSIS_* environment variables and calls `averageAlert` at once;
// `Device` and `Services` find brook's API in TAGOIO_API, which brook sets.
//
// The action's `env` (T_ANALYSIS_ENV, `context.environment`):
//   VARIABLE     the variable to average (default "temperature")
//   LIMIT        publish an alert when the average is above it (default 30)
//   ALERT_TOPIC  where to publish it (default "alerts/<device id>")
//
// It stores `<VARIABLE>_avg` in the device's bucket with the run's token
// (which may store data for the device whose message started the run) and,
// when the average is above LIMIT, publishes a JSON alert with
// `Services.MQTT.publish`.
"use strict";

const { Analysis, Device, Services } = require("@tago-io/sdk");

async function averageAlert(context, scope) {
  const env = Object.fromEntries(context.environment.map((e) => [e.key, e.value]));
  const variable = env.VARIABLE || "temperature";
  const limit = Number(env.LIMIT || 30);

  const readings = scope.filter((item) => item.variable === variable && typeof item.value === "number");
  if (readings.length === 0) {
    context.log(`no ${variable} reading in this message`);
    return;
  }
  const sum = readings.reduce((total, item) => total + item.value, 0);
  const average = Math.round((sum / readings.length) * 100) / 100;
  const deviceId = readings[0].device;

  const stored = await new Device({ token: context.token }).sendData({
    variable: `${variable}_avg`,
    value: average,
    metadata: { readings: readings.length, limit },
  });
  context.log(`${variable} average of ${readings.length} readings: ${average} (${stored})`);

  if (average > limit) {
    const topic = env.ALERT_TOPIC || `alerts/${deviceId}`;
    const message = { variable, average, limit, device: deviceId };
    const sent = await new Services({ token: context.token }).MQTT.publish({
      topic,
      message: JSON.stringify(message),
      device: deviceId,
      options: { qos: 1, retain: false },
    });
    context.log(`ALERT on ${topic}: ${average} > ${limit} (${sent})`);
  }
}

Analysis.use(averageAlert);
