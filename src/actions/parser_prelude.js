// The payload parser's prelude (see parser.rs): `console`, `Buffer` and
// `raw_payload_buffer` for TagoIO's parser scripts. It evaluates to a
// function called with the native log function and the raw bytes, so
// neither is left reachable as a global.
(function (nativeLog, rawBytes) {
"use strict";
const stringify = JSON.stringify;
const fromCodePoint = String.fromCodePoint;
const HEX = "0123456789abcdef";
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

function utf8Encode(str) {
  const out = [];
  for (let i = 0; i < str.length; i++) {
    let c = str.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < str.length) {
      const d = str.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) { c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); i++; }
      else c = 0xfffd;
    } else if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return out;
}
function cont(b, i, end) { return i < end && (b[i] & 0xc0) === 0x80; }
function utf8Decode(b, start, end) {
  let s = "", chunk = [];
  let i = start;
  while (i < end) {
    const c = b[i];
    let cp = 0xfffd, n = 1;
    if (c < 0x80) cp = c;
    else if (c >= 0xc2 && c < 0xe0 && cont(b, i + 1, end)) { cp = ((c & 31) << 6) | (b[i + 1] & 63); n = 2; }
    else if (c >= 0xe0 && c < 0xf0 && cont(b, i + 1, end) && cont(b, i + 2, end)) {
      const v = ((c & 15) << 12) | ((b[i + 1] & 63) << 6) | (b[i + 2] & 63);
      if (v >= 0x800 && (v < 0xd800 || v > 0xdfff)) { cp = v; n = 3; }
    } else if (c >= 0xf0 && c < 0xf5 && cont(b, i + 1, end) && cont(b, i + 2, end) && cont(b, i + 3, end)) {
      const v = ((c & 7) << 18) | ((b[i + 1] & 63) << 12) | ((b[i + 2] & 63) << 6) | (b[i + 3] & 63);
      if (v >= 0x10000 && v <= 0x10ffff) { cp = v; n = 4; }
    }
    chunk.push(cp);
    if (chunk.length >= 4096) { s += fromCodePoint(...chunk); chunk = []; }
    i += n;
  }
  return s + fromCodePoint(...chunk);
}
function base64Encode(b, start, end) {
  let s = "";
  for (let i = start; i < end; i += 3) {
    const n = (b[i] << 16) | ((i + 1 < end ? b[i + 1] : 0) << 8) | (i + 2 < end ? b[i + 2] : 0);
    s += B64[(n >> 18) & 63] + B64[(n >> 12) & 63] +
      (i + 1 < end ? B64[(n >> 6) & 63] : "=") + (i + 2 < end ? B64[n & 63] : "=");
  }
  return s;
}
function base64Decode(str) {
  const out = [];
  let acc = 0, bits = 0;
  for (let i = 0; i < str.length; i++) {
    let ch = str[i];
    if (ch === "-") ch = "+"; else if (ch === "_") ch = "/";
    const v = B64.indexOf(ch);
    if (v < 0) { if (ch === "=") break; continue; }
    acc = (acc << 6) | v; bits += 6;
    if (bits >= 8) { bits -= 8; out.push((acc >> bits) & 255); }
  }
  return out;
}
function hexDecode(str) {
  const out = [];
  for (let i = 0; i + 1 < str.length; i += 2) {
    const hi = HEX.indexOf(str[i].toLowerCase()), lo = HEX.indexOf(str[i + 1].toLowerCase());
    if (hi < 0 || lo < 0) break;
    out.push(hi * 16 + lo);
  }
  return out;
}
function normEnc(enc) { return String(enc === undefined ? "utf8" : enc).toLowerCase(); }
function bytesFromString(str, enc) {
  switch (normEnc(enc)) {
    case "hex": return hexDecode(str);
    case "base64": case "base64url": return base64Decode(str);
    case "ascii": case "latin1": case "binary": {
      const out = [];
      for (let i = 0; i < str.length; i++) out.push(str.charCodeAt(i) & 255);
      return out;
    }
    case "utf8": case "utf-8": return utf8Encode(str);
    default: throw new TypeError("Unknown encoding: " + enc);
  }
}

class Buffer extends Uint8Array {
  static from(value, encOrOffset, length) {
    if (typeof value === "string") return fromArray(bytesFromString(value, encOrOffset));
    if (value instanceof ArrayBuffer) {
      const off = encOrOffset === undefined ? 0 : encOrOffset;
      return new Buffer(value, off, length === undefined ? value.byteLength - off : length);
    }
    if (value && value.type === "Buffer" && Array.isArray(value.data)) return fromArray(value.data);
    if (value && typeof value === "object" && typeof value.length === "number") return fromArray(value);
    throw new TypeError("The first argument must be a string, Buffer, ArrayBuffer, Array, or array-like object.");
  }
  static alloc(size, fill, enc) {
    const b = new Buffer(size);
    if (fill !== undefined) {
      if (typeof fill === "string") {
        const pat = bytesFromString(fill, enc);
        if (pat.length) for (let i = 0; i < size; i++) b[i] = pat[i % pat.length];
      } else b.fill(fill);
    }
    return b;
  }
  static allocUnsafe(size) { return new Buffer(size); }
  static isBuffer(v) { return v instanceof Buffer; }
  static isEncoding(enc) {
    return ["hex", "base64", "base64url", "ascii", "latin1", "binary", "utf8", "utf-8"].includes(normEnc(enc));
  }
  static byteLength(v, enc) { return typeof v === "string" ? bytesFromString(v, enc).length : v.byteLength; }
  static concat(list, total) {
    if (total === undefined) { total = 0; for (const b of list) total += b.length; }
    const out = new Buffer(total);
    let pos = 0;
    for (const b of list) {
      for (let i = 0; i < b.length && pos < total; i++) out[pos++] = b[i];
    }
    return out;
  }
  static compare(a, b) { return a.compare(b); }
  toString(enc, start, end) {
    start = start === undefined ? 0 : Math.max(0, start | 0);
    end = end === undefined ? this.length : Math.min(this.length, end | 0);
    if (end <= start) return "";
    switch (normEnc(enc)) {
      case "hex": {
        let s = "";
        for (let i = start; i < end; i++) s += HEX[this[i] >> 4] + HEX[this[i] & 15];
        return s;
      }
      case "base64": return base64Encode(this, start, end);
      case "base64url": return base64Encode(this, start, end).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
      case "ascii": case "latin1": case "binary": {
        let s = "";
        for (let i = start; i < end; i++) s += String.fromCharCode(this[i]);
        return s;
      }
      case "utf8": case "utf-8": return utf8Decode(this, start, end);
      default: throw new TypeError("Unknown encoding: " + enc);
    }
  }
  toJSON() { return { type: "Buffer", data: Array.from(this) }; }
  equals(other) { return this.compare(other) === 0; }
  compare(other) {
    const n = Math.min(this.length, other.length);
    for (let i = 0; i < n; i++) if (this[i] !== other[i]) return this[i] < other[i] ? -1 : 1;
    return this.length === other.length ? 0 : (this.length < other.length ? -1 : 1);
  }
  slice(start, end) { return this.subarray(start, end); }
  write(str, offset, enc) {
    if (typeof offset === "string") { enc = offset; offset = 0; }
    offset = offset === undefined ? 0 : offset;
    const bytes = bytesFromString(str, enc);
    let n = 0;
    for (; n < bytes.length && offset + n < this.length; n++) this[offset + n] = bytes[n];
    return n;
  }
  readUIntBE(offset, len) { let v = 0; for (let i = 0; i < len; i++) v = v * 256 + this.at8(offset + i); return v; }
  readUIntLE(offset, len) { let v = 0; for (let i = len - 1; i >= 0; i--) v = v * 256 + this.at8(offset + i); return v; }
  readIntBE(offset, len) { const v = this.readUIntBE(offset, len), m = 2 ** (8 * len); return v >= m / 2 ? v - m : v; }
  readIntLE(offset, len) { const v = this.readUIntLE(offset, len), m = 2 ** (8 * len); return v >= m / 2 ? v - m : v; }
  at8(i) {
    if (!(i >= 0 && i < this.length)) throw new RangeError("Attempt to access memory outside buffer bounds");
    return this[i];
  }
}
function fromArray(arr) {
  const b = new Buffer(arr.length);
  for (let i = 0; i < arr.length; i++) b[i] = arr[i] & 255;
  return b;
}
function view(b) { return new DataView(b.buffer, b.byteOffset, b.byteLength); }
const KINDS = [["UInt8", "Uint8", 1], ["Int8", "Int8", 1], ["UInt16", "Uint16", 2], ["Int16", "Int16", 2],
  ["UInt32", "Uint32", 4], ["Int32", "Int32", 4], ["Float", "Float32", 4], ["Double", "Float64", 8],
  ["BigUInt64", "BigUint64", 8], ["BigInt64", "BigInt64", 8]];
const P = Buffer.prototype;
for (const [name, dv, size] of KINDS) {
  const get = DataView.prototype["get" + dv], set = DataView.prototype["set" + dv];
  const ends = size === 1 ? [["", false]] : [["BE", false], ["LE", true]];
  for (const [suffix, little] of ends) {
    const read = function (offset) { return get.call(view(this), offset === undefined ? 0 : offset, little); };
    const write = function (value, offset) {
      offset = offset === undefined ? 0 : offset;
      set.call(view(this), offset, value, little);
      return offset + size;
    };
    for (const n of [name, name.replace("UInt", "Uint")]) {
      P["read" + n + suffix] = read;
      P["write" + n + suffix] = write;
    }
  }
}

function fmt(a) {
  if (typeof a === "string") return a;
  try {
    if (a instanceof Buffer) {
      let s = "<Buffer";
      for (let i = 0; i < a.length && i < 50; i++) s += " " + HEX[a[i] >> 4] + HEX[a[i] & 15];
      return s + (a.length > 50 ? " ... " + (a.length - 50) + " more bytes>" : ">");
    }
    if (a instanceof Error) return String(a);
    if (a !== null && typeof a === "object") {
      const s = stringify(a);
      return s === undefined ? String(a) : s;
    }
    return String(a);
  } catch (e) {
    try { return String(a); } catch (e2) { return "[unprintable]"; }
  }
}
function log(...args) { nativeLog(args.map(fmt).join(" ")); }
globalThis.console = { log, info: log, debug: log, warn: log, error: log, trace: log };
globalThis.Buffer = Buffer;
globalThis.raw_payload_buffer = new Buffer(rawBytes.buffer, rawBytes.byteOffset, rawBytes.byteLength);
})