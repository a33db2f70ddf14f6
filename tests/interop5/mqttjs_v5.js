// MQTT.js (the version pinned in package-lock.json) against an MQTT 5 broker.
//
// Run by tests/interop5.rs with NODE_PATH at the installed node_modules.
// Reads MQTT_HOST, MQTT_PORT, MQTT_USERNAME and MQTT_PASSWORD (brook's device
// token) from the environment; every client connects with protocolVersion 5.
// Prints one JSON line with what the clients saw, the same fields as
// paho_v5.py prints (see there); the Rust test asserts it field by field.

'use strict'

const mqtt = require('mqtt')
const { version } = require('mqtt/package.json')

const HOST = process.env.MQTT_HOST || '127.0.0.1'
const PORT = Number(process.env.MQTT_PORT || '1883')
const USERNAME = process.env.MQTT_USERNAME || 'Token'
const PASSWORD = process.env.MQTT_PASSWORD || ''

// How long one awaited packet may take, in milliseconds.
const WAIT = 10000

const DATA_TOPIC = 'interop5/data'
const REQUEST_TOPIC = 'interop5/request'
const REPLY_TOPIC = 'interop5/reply'
const AWAY_TOPIC = 'interop5/away'

class Failed extends Error {}

// Resolves with `promise`, or fails naming `what` after WAIT.
function bounded (promise, what) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Failed(`no ${what} within ${WAIT / 1000} s`)), WAIT)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

// One MQTT 5 client. Received messages wait in a queue, in arrival order;
// the reason code of every PUBACK and PUBCOMP is kept by message id.
class Peer {
  constructor (clientId) {
    this.clientId = clientId
    this.messages = []
    this.waiting = null
    this.acks = new Map()
    this.closed = null
  }

  async connect (clean, sessionExpiry) {
    const options = {
      protocolVersion: 5,
      clientId: this.clientId,
      username: USERNAME,
      password: PASSWORD,
      clean,
      keepalive: 30,
      reconnectPeriod: 0,
      connectTimeout: WAIT
    }
    if (sessionExpiry !== undefined) {
      options.properties = { sessionExpiryInterval: sessionExpiry }
    }
    this.c = mqtt.connect(`mqtt://${HOST}:${PORT}`, options)
    this.c.on('message', (topic, payload, packet) => {
      this.messages.push(packet)
      if (this.waiting) this.waiting()
    })
    this.c.on('packetreceive', (packet) => {
      if (packet.cmd === 'puback' || packet.cmd === 'pubcomp') {
        this.acks.set(packet.messageId, packet.reasonCode || 0)
      }
    })
    this.c.on('close', () => {
      this.closed = this.closed || 'the connection closed'
      if (this.waiting) this.waiting()
    })
    const connack = await bounded(new Promise((resolve, reject) => {
      this.c.once('connect', resolve)
      this.c.once('error', (e) => reject(new Failed(`${this.clientId}: ${e.message}`)))
    }), `CONNACK for ${this.clientId}`)
    this.c.on('error', (e) => { this.closed = e.message })
    return {
      reason_code: connack.reasonCode || 0,
      session_present: Boolean(connack.sessionPresent),
      ...connackProperties(connack.properties || {})
    }
  }

  async subscribe (topic, qos, subId, noLocal = false) {
    const granted = await bounded(new Promise((resolve, reject) => {
      this.c.subscribe(topic, { qos, nl: noLocal, properties: { subscriptionIdentifier: subId } },
        (err, granted) => err && !granted ? reject(new Failed(`${this.clientId}: ${err.message}`)) : resolve(granted))
    }), `SUBACK for ${topic}`)
    return granted.map((g) => g.qos)
  }

  // Publishes and waits for the end of its flow; the reason code of the
  // PUBACK or PUBCOMP (null for QoS 0).
  async publish (topic, payload, qos, properties) {
    return bounded(new Promise((resolve, reject) => {
      this.c.publish(topic, payload, { qos, properties }, (err, packet) => {
        if (qos === 0) return resolve(null)
        if (err && err.code !== undefined) return resolve(err.code)
        if (err) return reject(new Failed(`${this.clientId}: ${err.message}`))
        resolve(this.acks.get(packet.messageId) ?? 0)
      })
    }), `the acknowledgement of a QoS ${qos} publish`)
  }

  // The next received message; fails at the connection's end or after WAIT.
  message (what) {
    return bounded(new Promise((resolve, reject) => {
      const check = () => {
        if (this.messages.length > 0) {
          this.waiting = null
          resolve(this.messages.shift())
        } else if (this.closed) {
          this.waiting = null
          reject(new Failed(`${this.clientId}: ${this.closed} waiting for ${what}`))
        }
      }
      this.waiting = check
      check()
    }), `${what} at ${this.clientId}`)
  }

  async disconnect (sessionExpiry) {
    const packet = sessionExpiry === undefined
      ? {}
      : { reasonCode: 0, properties: { sessionExpiryInterval: sessionExpiry } }
    await bounded(new Promise((resolve) => this.c.end(false, packet, resolve)),
      `the end of ${this.clientId}'s connection`)
  }
}

function orNull (v) {
  return v === undefined ? null : v
}

function connackProperties (p) {
  return {
    receive_maximum: orNull(p.receiveMaximum),
    topic_alias_maximum: orNull(p.topicAliasMaximum),
    maximum_qos: orNull(p.maximumQoS),
    // MQTT.js decodes these byte properties as booleans; paho as 0/1.
    retain_available: p.retainAvailable === undefined ? null : Number(p.retainAvailable),
    maximum_packet_size: orNull(p.maximumPacketSize),
    wildcard_subscription_available: p.wildcardSubscriptionAvailable === undefined ? null : Number(p.wildcardSubscriptionAvailable),
    subscription_identifier_available: p.subscriptionIdentifiersAvailable === undefined ? null : Number(p.subscriptionIdentifiersAvailable),
    shared_subscription_available: p.sharedSubscriptionAvailable === undefined ? null : Number(p.sharedSubscriptionAvailable),
    server_keep_alive: orNull(p.serverKeepAlive),
    assigned_client_identifier: orNull(p.assignedClientIdentifier),
    session_expiry_interval: orNull(p.sessionExpiryInterval)
  }
}

// A received PUBLISH as the JSON the Rust test reads: correlation data in hex
// (it is binary), user properties as [key, value] pairs in order (MQTT.js
// gives an object whose repeated keys hold arrays).
function messageRecord (packet) {
  const p = packet.properties || {}
  const pairs = []
  for (const [key, value] of Object.entries(p.userProperties || {})) {
    for (const v of Array.isArray(value) ? value : [value]) pairs.push([key, v])
  }
  const ids = p.subscriptionIdentifier
  return {
    topic: packet.topic,
    payload: packet.payload.toString('utf8'),
    qos: packet.qos,
    retain: Boolean(packet.retain),
    user_properties: pairs,
    content_type: orNull(p.contentType),
    response_topic: orNull(p.responseTopic),
    correlation_data: p.correlationData === undefined ? null : Buffer.from(p.correlationData).toString('hex'),
    message_expiry_interval: orNull(p.messageExpiryInterval),
    payload_format_indicator: p.payloadFormatIndicator === undefined ? null : Number(p.payloadFormatIndicator),
    subscription_identifiers: ids === undefined ? [] : (Array.isArray(ids) ? ids : [ids])
  }
}

// The properties of data message `n` (0, 1, 2: also its QoS).
function dataProperties (n) {
  return {
    userProperties: { n: String(n), unit: ['°C', 'K'] },
    contentType: 'application/json',
    responseTopic: 'interop5/data/replies',
    correlationData: Buffer.from([0x00, 0xff, n]),
    messageExpiryInterval: 3600,
    payloadFormatIndicator: true
  }
}

async function run () {
  const result = { client: `mqtt ${version}` }

  // The listener: the data with identifier 7 and no local, the requests with 8.
  const listener = new Peer('interop5-listener')
  result.connack = await listener.connect(true)
  result.suback = {
    data: await listener.subscribe(DATA_TOPIC, 2, 7, true),
    request: await listener.subscribe(REQUEST_TOPIC, 1, 8)
  }
  // Its own publish on the data topic must not come back to it (no local).
  await listener.publish(DATA_TOPIC, 'own', 1)

  const talker = new Peer('interop5-talker')
  await talker.connect(true)
  const acks = {}
  for (const n of [0, 1, 2]) {
    const rc = await talker.publish(DATA_TOPIC, JSON.stringify({ n }), n, dataProperties(n))
    if (n > 0) acks[String(n)] = rc
  }
  result.acks = acks
  // A last QoS 1 publish marks the end of the data.
  await talker.publish(DATA_TOPIC, 'end', 1)

  // Until the end marker and all three are in (as paho_v5.py does).
  const received = []
  let echoes = 0
  let ended = false
  while (!ended || received.length < 3) {
    let packet
    try {
      packet = await listener.message('the data messages')
    } catch (e) {
      if (!ended) throw e
      break // The Rust test reports what is missing.
    }
    const text = packet.payload.toString('utf8')
    if (text === 'end') ended = true
    else if (text === 'own') echoes += 1
    else received.push(messageRecord(packet))
  }
  result.received = received
  result.no_local_echoes = echoes

  // Request/response: the talker asks, the listener answers on the response
  // topic with the request's correlation data.
  await talker.subscribe(REPLY_TOPIC, 1, 10)
  await talker.publish(REQUEST_TOPIC, 'ping', 1, {
    responseTopic: REPLY_TOPIC,
    correlationData: Buffer.from('req-\x01\x02', 'latin1')
  })
  const request = await listener.message('the request')
  await listener.publish(request.properties.responseTopic,
    'pong:' + request.payload.toString('utf8'), 1,
    { correlationData: request.properties.correlationData })
  const reply = await talker.message('the reply')
  result.request_response = {
    request: messageRecord(request),
    reply: messageRecord(reply)
  }

  // A session kept by its expiry interval across a disconnect.
  const away = new Peer('interop5-away')
  const first = await away.connect(true, 300)
  const awaySuback = await away.subscribe(AWAY_TOPIC, 1, 9)
  await away.disconnect()
  await talker.publish(AWAY_TOPIC, 'while away', 1, {
    userProperties: { queued: 'yes' },
    messageExpiryInterval: 600
  })
  const back = new Peer('interop5-away')
  const resumed = await back.connect(false, 300)
  const missed = await back.message('the message queued while away')
  // Ends the session: from 300 s to 0 at disconnect.
  await back.disconnect(0)
  result.suback.away = awaySuback
  result.session = {
    first_session_present: first.session_present,
    resumed_reason_code: resumed.reason_code,
    resumed_session_present: resumed.session_present,
    queued: messageRecord(missed)
  }

  await listener.disconnect()
  await talker.disconnect()
  return result
}

run().then((result) => {
  console.log(JSON.stringify(result))
  process.exit(0)
}, (e) => {
  console.error(`interop5 mqttjs: ${e instanceof Failed ? e.message : e.stack}`)
  process.exit(1)
})
