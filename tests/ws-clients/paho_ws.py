"""paho-mqtt over transport="websockets" against brook, for tests/websocket.rs:

    python paho_ws.py HOST PORT TOKEN [CA_FILE]

Connects to ws://HOST:PORT/mqtt (wss:// with CA_FILE) with the device token,
subscribes to a topic of its own at QoS 1, publishes to it at QoS 1 and
prints one JSON line: what came back, or the error that ended it.
"""

import json
import sys
import time

import paho.mqtt.client as mqtt

host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ca = sys.argv[4] if len(sys.argv) > 4 else None
topic = "ws/paho"
payload = "hello from paho over websockets"
result = {}

client = mqtt.Client(
    mqtt.CallbackAPIVersion.VERSION2,
    client_id="paho-ws",
    transport="websockets",
    protocol=mqtt.MQTTv311,
)
client.ws_set_options(path="/mqtt")
client.username_pw_set("Token", token)
if ca:
    client.tls_set(ca_certs=ca)


def on_connect(c, userdata, flags, reason_code, properties):
    if reason_code != 0:
        result["error"] = f"CONNACK {reason_code}"
        c.disconnect()
        return
    c.subscribe(topic, qos=1)


def on_subscribe(c, userdata, mid, reason_codes, properties):
    c.publish(topic, payload, qos=1)


def on_message(c, userdata, message):
    result.update(topic=message.topic, payload=message.payload.decode(), qos=message.qos)
    c.disconnect()


client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
try:
    client.connect(host, port, keepalive=30)
except Exception as e:  # a refused upgrade, a TLS failure
    print(json.dumps({"error": f"connect: {e}"}))
    sys.exit(1)
deadline = time.monotonic() + 20
while not result and time.monotonic() < deadline:
    client.loop(timeout=0.2)
print(json.dumps(result or {"error": "no answer within 20 s"}))
sys.exit(0 if "payload" in result else 1)
