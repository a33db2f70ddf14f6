"""paho-mqtt (the version pinned in requirements.txt) against an MQTT 5 broker.

Run by tests/interop5.rs. Reads MQTT_HOST, MQTT_PORT, MQTT_USERNAME and
MQTT_PASSWORD (brook's device token) from the environment; every client
connects with protocol 5. Prints one JSON line with what the clients saw; the
Rust test asserts it field by field (the same fields as mqttjs_v5.js prints):

- connack: the first CONNACK's reason code, session present and properties;
- suback: the reason codes of the listener's SUBSCRIBE (subscription
  identifier 7, no local) and of the away client's (identifier 9);
- acks: the reason codes of the PUBACK (QoS 1) and PUBCOMP (QoS 2);
- received: the three publishes (QoS 0, 1, 2) as the listener got them, with
  their properties;
- no_local_echoes: how many of the listener's own publishes came back to it;
- request_response: the reply to a request sent with response topic and
  correlation data, answered by the listener;
- session: a session kept by its expiry interval across a disconnect, the
  QoS 1 message queued meanwhile.
"""

import collections
import json
import os
import queue
import sys
import time

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("MQTT_PORT", "1883"))
USERNAME = os.environ.get("MQTT_USERNAME", "Token")
PASSWORD = os.environ.get("MQTT_PASSWORD", "")

# How long one awaited packet may take.
WAIT = 10.0

DATA_TOPIC = "interop5/data"
REQUEST_TOPIC = "interop5/request"
REPLY_TOPIC = "interop5/reply"
AWAY_TOPIC = "interop5/away"


class Failed(Exception):
    pass


class Peer:
    """One MQTT 5 client on its own network thread; every callback becomes an
    event on the queue of its kind, awaited by the script."""

    def __init__(self, client_id):
        self.client_id = client_id
        self.events = collections.defaultdict(queue.Queue)
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        self.c.username_pw_set(USERNAME, PASSWORD)
        self.c.on_connect = lambda c, u, flags, rc, props: self.events["connack"].put(
            (flags, rc, props)
        )
        self.c.on_subscribe = lambda c, u, mid, rcs, props: self.events["suback"].put((mid, rcs))
        self.c.on_publish = lambda c, u, mid, rc, props: self.events["puback"].put((mid, rc))
        self.c.on_message = lambda c, u, msg: self.events["message"].put(msg)
        self.c.on_disconnect = lambda c, u, flags, rc, props: self.events["disconnect"].put(rc)

    def next(self, kind, what):
        """The next event of `kind` (each kind has its own queue, so the
        order of messages is kept); fails at a disconnect or after WAIT."""
        deadline = time.monotonic() + WAIT
        while True:
            try:
                return self.events[kind].get(timeout=0.05)
            except queue.Empty:
                pass
            if kind != "disconnect" and not self.events["disconnect"].empty():
                rc = self.events["disconnect"].get()
                raise Failed(f"{self.client_id}: disconnected ({rc_value(rc)}) waiting for {what}")
            if time.monotonic() >= deadline:
                raise Failed(f"{self.client_id}: no {what} within {WAIT} s")

    def connect(self, clean_start, session_expiry=None):
        props = Properties(PacketTypes.CONNECT)
        if session_expiry is not None:
            props.SessionExpiryInterval = session_expiry
        self.c.connect(HOST, PORT, keepalive=30, clean_start=clean_start, properties=props)
        self.c.loop_start()
        flags, rc, props = self.next("connack", "CONNACK")
        if rc_value(rc) != 0:
            reason = getattr(props, "ReasonString", None)
            raise Failed(f"{self.client_id}: CONNACK {rc_value(rc)} ({rc}; reason string {reason!r})")
        return {
            "reason_code": rc_value(rc),
            "session_present": bool(flags.session_present),
            **connack_properties(props),
        }

    def subscribe(self, topic, qos, sub_id, no_local=False):
        props = Properties(PacketTypes.SUBSCRIBE)
        props.SubscriptionIdentifier = sub_id
        _, mid = self.c.subscribe(
            (topic, SubscribeOptions(qos=qos, noLocal=no_local)), properties=props
        )
        got, rcs = self.next("suback", f"SUBACK for {topic}")
        if got != mid:
            raise Failed(f"{self.client_id}: SUBACK for message id {got}, not {mid}")
        return [rc_value(rc) for rc in rcs]

    def publish(self, topic, payload, qos, props=None):
        """Publishes and waits for the end of its flow; returns the reason
        code of the PUBACK or PUBCOMP (None for QoS 0)."""
        info = self.c.publish(topic, payload, qos=qos, properties=props)
        mid, rc = self.next("puback", f"the acknowledgement of a QoS {qos} publish")
        if mid != info.mid:
            raise Failed(f"{self.client_id}: acknowledgement for message id {mid}, not {info.mid}")
        return None if qos == 0 else rc_value(rc)

    def message(self, what):
        return self.next("message", what)

    def disconnect(self, session_expiry=None):
        props = None
        if session_expiry is not None:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = session_expiry
        self.c.disconnect(properties=props)
        self.next("disconnect", "the end of the connection")
        self.c.loop_stop()


def rc_value(rc):
    return rc.value if hasattr(rc, "value") else int(rc)


def connack_properties(props):
    names = {
        "receive_maximum": "ReceiveMaximum",
        "topic_alias_maximum": "TopicAliasMaximum",
        "maximum_qos": "MaximumQoS",
        "retain_available": "RetainAvailable",
        "maximum_packet_size": "MaximumPacketSize",
        "wildcard_subscription_available": "WildcardSubscriptionAvailable",
        "subscription_identifier_available": "SubscriptionIdentifierAvailable",
        "shared_subscription_available": "SharedSubscriptionAvailable",
        "server_keep_alive": "ServerKeepAlive",
        "assigned_client_identifier": "AssignedClientIdentifier",
        "session_expiry_interval": "SessionExpiryInterval",
    }
    return {key: getattr(props, attr, None) for key, attr in names.items()}


def message_record(msg):
    """A received PUBLISH as the JSON the Rust test reads: correlation data
    in hex (it is binary), user properties as [key, value] pairs in order."""
    p = getattr(msg, "properties", None)

    def prop(name):
        return getattr(p, name, None) if p is not None else None

    correlation = prop("CorrelationData")
    sub_ids = prop("SubscriptionIdentifier")
    return {
        "topic": msg.topic,
        "payload": msg.payload.decode("utf-8", "replace"),
        "qos": msg.qos,
        "retain": bool(msg.retain),
        "user_properties": [list(kv) for kv in (prop("UserProperty") or [])],
        "content_type": prop("ContentType"),
        "response_topic": prop("ResponseTopic"),
        "correlation_data": correlation.hex() if correlation is not None else None,
        "message_expiry_interval": prop("MessageExpiryInterval"),
        "payload_format_indicator": prop("PayloadFormatIndicator"),
        "subscription_identifiers": sub_ids if isinstance(sub_ids, list) else ([sub_ids] if sub_ids is not None else []),
    }


def data_properties(n):
    """The properties of data message `n` (0, 1, 2: also its QoS)."""
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("n", str(n)), ("unit", "°C"), ("unit", "K")]
    props.ContentType = "application/json"
    props.ResponseTopic = "interop5/data/replies"
    props.CorrelationData = bytes([0x00, 0xFF, n])
    props.MessageExpiryInterval = 3600
    props.PayloadFormatIndicator = 1
    return props


def run():
    result = {"client": f"paho-mqtt {paho.mqtt.__version__}"}

    # The listener: the data with identifier 7 and no local, the requests with 8.
    listener = Peer("interop5-listener")
    result["connack"] = listener.connect(clean_start=True)
    result["suback"] = {
        "data": listener.subscribe(DATA_TOPIC, 2, 7, no_local=True),
        "request": listener.subscribe(REQUEST_TOPIC, 1, 8),
    }
    # Its own publish on the data topic must not come back to it (no local).
    listener.publish(DATA_TOPIC, "own", 1)

    talker = Peer("interop5-talker")
    talker.connect(clean_start=True)
    acks = {}
    for n in range(3):
        rc = talker.publish(DATA_TOPIC, json.dumps({"n": n}, separators=(",", ":")), n, data_properties(n))
        if n > 0:
            acks[str(n)] = rc
    result["acks"] = acks
    # A last QoS 1 publish marks the end of the data.
    talker.publish(DATA_TOPIC, "end", 1)

    # Until the end marker and all three are in: paho hands a QoS 2 message
    # over at its PUBREL, so the QoS 1 marker may overtake it.
    received = []
    echoes = 0
    ended = False
    while not ended or len(received) < 3:
        try:
            msg = listener.message("the data messages")
        except Failed:
            if not ended:
                raise
            break  # The Rust test reports what is missing.
        text = msg.payload.decode("utf-8", "replace")
        if text == "end":
            ended = True
        elif text == "own":
            echoes += 1
        else:
            received.append(message_record(msg))
    result["received"] = received
    result["no_local_echoes"] = echoes

    # Request/response: the talker asks, the listener answers on the response
    # topic with the request's correlation data.
    talker.subscribe(REPLY_TOPIC, 1, 10)
    ask = Properties(PacketTypes.PUBLISH)
    ask.ResponseTopic = REPLY_TOPIC
    ask.CorrelationData = b"req-\x01\x02"
    talker.publish(REQUEST_TOPIC, "ping", 1, ask)
    request = listener.message("the request")
    answer = Properties(PacketTypes.PUBLISH)
    answer.CorrelationData = request.properties.CorrelationData
    listener.publish(
        request.properties.ResponseTopic,
        "pong:" + request.payload.decode("utf-8", "replace"),
        1,
        answer,
    )
    reply = talker.message("the reply")
    result["request_response"] = {
        "request": message_record(request),
        "reply": message_record(reply),
    }

    # A session kept by its expiry interval across a disconnect.
    away = Peer("interop5-away")
    first = away.connect(clean_start=True, session_expiry=300)
    away_suback = away.subscribe(AWAY_TOPIC, 1, 9)
    away.disconnect()
    queued = Properties(PacketTypes.PUBLISH)
    queued.UserProperty = [("queued", "yes")]
    queued.MessageExpiryInterval = 600
    talker.publish(AWAY_TOPIC, "while away", 1, queued)
    back = Peer("interop5-away")
    resumed = back.connect(clean_start=False, session_expiry=300)
    missed = back.message("the message queued while away")
    # Ends the session: from 300 s to 0 at disconnect.
    back.disconnect(session_expiry=0)
    result["suback"]["away"] = away_suback
    result["session"] = {
        "first_session_present": first["session_present"],
        "resumed_reason_code": resumed["reason_code"],
        "resumed_session_present": resumed["session_present"],
        "queued": message_record(missed),
    }

    listener.disconnect()
    talker.disconnect()
    return result


def main():
    try:
        result = run()
    except Failed as e:
        print(f"interop5 paho: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
