"""paho-mqtt over transport="websockets" against brook, for tests/websocket.rs:

    python paho_ws.py HOST PORT TOKEN PROTOCOL [CA_FILE]

Connects to ws://HOST:PORT/mqtt (wss:// with CA_FILE) with the device token,
as MQTT 3.1.1 (PROTOCOL 4) or MQTT 5 (PROTOCOL 5), subscribes to a topic of
its own at QoS 1, publishes to it at QoS 1 (with a user property on MQTT 5)
and prints one JSON line: what came back, or the error that ended it.
"""

import json
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
v5 = sys.argv[4] == "5"
ca = sys.argv[5] if len(sys.argv) > 5 else None
topic = f"ws/paho/v{sys.argv[4]}"
payload = "hello from paho over websockets"
result = {}

client = mqtt.Client(
    mqtt.CallbackAPIVersion.VERSION2,
    client_id=f"paho-ws-v{sys.argv[4]}",
    transport="websockets",
    protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
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
    if any(rc.is_failure for rc in reason_codes):
        result["error"] = f"SUBACK {[str(rc) for rc in reason_codes]}"
        c.disconnect()
        return
    props = None
    if v5:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("origin", "paho")]
    c.publish(topic, payload, qos=1, properties=props)


def on_message(c, userdata, message):
    result.update(topic=message.topic, payload=message.payload.decode(), qos=message.qos)
    user = getattr(message.properties, "UserProperty", None) if v5 else None
    result["user_properties"] = [list(kv) for kv in user] if user else None
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
