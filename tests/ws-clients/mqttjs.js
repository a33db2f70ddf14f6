// MQTT.js against brook, for tests/websocket.rs:
//   node mqttjs.js URL TOKEN PROTOCOL_VERSION [CA_FILE]
// Connects (ws://, wss:// or mqtt://) with the device token, subscribes to a
// topic of its own at QoS 1, publishes to it at QoS 1 (with a user property
// when the protocol is 5) and prints one JSON line: what came back (and the
// CONNACK's code), or the error that ended it.
"use strict";
const fs = require("fs");
const mqtt = require("mqtt");

const [url, token, version, ca] = process.argv.slice(2);
const v5 = Number(version) === 5;
const topic = `ws/mqttjs/v${version}`;
const payload = `hello from MQTT.js over ${url.split(":")[0]}`;
const options = {
  username: "Token",
  password: token,
  protocolVersion: Number(version),
  clientId: `mqttjs-v${version}-${process.pid}`,
  reconnectPeriod: 0,
  connectTimeout: 10000,
};
if (ca) options.ca = fs.readFileSync(ca);
const publishOptions = { qos: 1 };
if (v5) publishOptions.properties = { userProperties: { origin: "mqttjs" } };

const done = (result, code) => {
  console.log(JSON.stringify(result));
  process.exit(code);
};
setTimeout(() => done({ error: "no answer within 20 s" }, 2), 20000);

let connack = null;
const client = mqtt.connect(url, options);
client.on("error", (e) => done({ error: String(e && e.message ? e.message : e), code: e && e.code }, 1));
client.on("close", () => done({ error: "closed" }, 1));
client.on("connect", (ack) => {
  // MQTT 5 says reasonCode, 3.1.1 returnCode.
  connack = v5 ? ack.reasonCode : ack.returnCode;
  if (connack === undefined) connack = null;
  client.subscribe(topic, { qos: 1 }, (err, granted) => {
    if (err) return done({ error: `subscribe: ${err.message}` }, 1);
    client.publish(topic, payload, publishOptions, (err) => {
      if (err) done({ error: `publish: ${err.message}` }, 1);
    });
  });
});
client.on("message", (t, p, packet) => {
  client.removeAllListeners("close");
  const props = packet.properties || {};
  client.end(false, () =>
    done(
      {
        topic: t,
        payload: p.toString(),
        qos: packet.qos,
        sent: payload,
        connack,
        user_properties: props.userProperties || null,
      },
      0,
    ),
  );
});
