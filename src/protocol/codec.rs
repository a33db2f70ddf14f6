//! The `tokio_util` codec: reads and checks the fixed header, enforces the maximum packet
//! size before buffering a body, waits for the whole frame, and hands exactly that frame
//! to the packet decoder of the connection's protocol version.
//!
//! The version starts as 3.1.1 and follows the CONNECT: a CONNECT the codec
//! decodes (or encodes, for a client) sets the version of every packet after
//! it, so a connection whose CONNECT says level 5 is read as MQTT 5 from the
//! next byte on. A session that reads and writes through two instances
//! switches the writing one with [`MqttCodec::set_version`].

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use super::decode::decode_frame;
use super::encode::encode_packet;
use super::error::{malformed, packet_name, DecodeError};
use super::packet::Packet;

/// Do not pre-allocate more than this for a frame that is still arriving.
const MAX_RESERVE: usize = 64 * 1024;

/// Frames and validates MQTT packets; encodes `Packet`s.
#[derive(Debug, Clone)]
pub(crate) struct MqttCodec {
    max_packet_size: usize,
    /// The protocol level packets are decoded and encoded with: 3, 4 or 5.
    version: u8,
}

impl MqttCodec {
    /// `max_packet_size` bounds a whole frame in bytes, fixed header included.
    /// The codec starts at MQTT 3.1.1 (level 4) until a CONNECT says otherwise.
    pub(crate) fn new(max_packet_size: usize) -> Self {
        MqttCodec {
            max_packet_size,
            version: 4,
        }
    }

    /// Decode and encode as protocol level `level` from now on: 5 is MQTT 5,
    /// anything else MQTT 3.1.1 (3.1 differs from it only in CONNECT, which
    /// carries its own level).
    pub(crate) fn set_version(&mut self, level: u8) {
        self.version = level;
    }

    /// The protocol level in use (4 until a CONNECT or `set_version` changed it).
    pub(crate) fn version(&self) -> u8 {
        self.version
    }

    fn v5(&self) -> bool {
        self.version == 5
    }
}

/// The fixed header at the front of the buffer.
struct FixedHeader {
    byte: u8,
    header_len: usize,
    remaining: usize,
}

/// Type and flags of the first header byte (3.1.1 §2.2.2, MQTT 5 §2.1.3: invalid flags
/// are a Malformed Packet), checked as soon as it arrives. Type 15 is AUTH in MQTT 5 and
/// reserved before.
fn check_type_and_flags(byte: u8, v5: bool) -> Result<(), DecodeError> {
    let (kind, flags) = (byte >> 4, byte & 0x0F);
    let name = packet_name(kind);
    let expected = match kind {
        15 if v5 => 0b0000,
        0 | 15 => {
            return Err(DecodeError::Malformed(format!(
                "reserved packet type {kind}"
            )))
        }
        3 if (flags >> 1) & 0b11 == 3 => return Err(malformed(name, "QoS 3 in fixed header")),
        3 => return Ok(()),
        6 | 8 | 10 => 0b0010,
        _ => 0b0000,
    };
    if flags != expected {
        return Err(malformed(
            name,
            format_args!("fixed header flags {flags:#06b}, expected {expected:#06b}"),
        ));
    }
    Ok(())
}

/// Ok(None) until the whole fixed header is buffered.
fn parse_fixed_header(src: &[u8], v5: bool) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&byte) = src.first() else {
        return Ok(None);
    };
    check_type_and_flags(byte, v5)?;
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&b) = src.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7F) << (7 * i);
        if v5 && b == 0 && i > 0 {
            // MQTT 5 [MQTT-1.5.5-1]: the fewest bytes that hold the value.
            return Err(malformed(
                packet_name(byte >> 4),
                "remaining length longer than it needs to be",
            ));
        }
        if b & 0x80 == 0 {
            let header_len = 2 + i;
            return Ok(Some(FixedHeader {
                byte,
                header_len,
                remaining,
            }));
        }
    }
    Err(malformed(
        packet_name(byte >> 4),
        "remaining length longer than 4 bytes",
    ))
}

/// Packets whose remaining length is fixed by the spec, checked before buffering the body.
/// In MQTT 5 only PINGREQ and PINGRESP are: the acknowledgements, CONNACK, UNSUBACK and
/// DISCONNECT may carry a reason code and properties (their decoder checks the length).
fn check_fixed_length(h: &FixedHeader, v5: bool) -> Result<(), DecodeError> {
    let expected = match h.byte >> 4 {
        12 | 13 => 0,
        _ if v5 => return Ok(()),
        2 | 4 | 5 | 6 | 7 | 11 => 2,
        14 => 0,
        _ => return Ok(()),
    };
    if h.remaining != expected {
        let why = format_args!("remaining length {}, expected {expected}", h.remaining);
        return Err(malformed(packet_name(h.byte >> 4), why));
    }
    Ok(())
}

impl Decoder for MqttCodec {
    type Item = Packet;
    type Error = DecodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(header) = parse_fixed_header(src, self.v5())? else {
            return Ok(None);
        };
        check_fixed_length(&header, self.v5())?;
        let size = header.header_len + header.remaining;
        if size > self.max_packet_size {
            return Err(DecodeError::TooLarge {
                size,
                max: self.max_packet_size,
            });
        }
        if src.len() < size {
            src.reserve((size - src.len()).min(MAX_RESERVE));
            return Ok(None);
        }
        let frame = src.split_to(size).freeze();
        match decode_frame(header.byte, frame, header.header_len, self.version) {
            Ok(packet) => {
                if let Packet::Connect(c) = &packet {
                    self.version = c.level;
                }
                Ok(Some(packet))
            }
            Err(e) => {
                if matches!(e, DecodeError::Connect5(_)) {
                    self.version = 5;
                }
                Err(e)
            }
        }
    }
}

impl Encoder<&Packet> for MqttCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: &Packet, dst: &mut BytesMut) -> std::io::Result<()> {
        encode_packet(item, self.version, dst)?;
        if let Packet::Connect(c) = item {
            self.version = c.level;
        }
        Ok(())
    }
}

impl Encoder<Packet> for MqttCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Packet, dst: &mut BytesMut) -> std::io::Result<()> {
        <Self as Encoder<&Packet>>::encode(self, &item, dst)
    }
}
