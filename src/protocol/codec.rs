//! The `tokio_util` codec: reads and checks the fixed header, enforces the maximum packet
//! size before buffering a body, waits for the whole frame, and hands exactly that frame
//! to the packet decoder.

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
}

impl MqttCodec {
    /// `max_packet_size` bounds a whole frame in bytes, fixed header included.
    pub(crate) fn new(max_packet_size: usize) -> Self {
        MqttCodec { max_packet_size }
    }
}

/// The fixed header at the front of the buffer.
struct FixedHeader {
    byte: u8,
    header_len: usize,
    remaining: usize,
}

/// Type and flags of the first header byte (§2.2.2), checked as soon as it arrives.
fn check_type_and_flags(byte: u8) -> Result<(), DecodeError> {
    let (kind, flags) = (byte >> 4, byte & 0x0F);
    let name = packet_name(kind);
    let expected = match kind {
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
fn parse_fixed_header(src: &[u8]) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&byte) = src.first() else {
        return Ok(None);
    };
    check_type_and_flags(byte)?;
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&b) = src.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7F) << (7 * i);
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
fn check_fixed_length(h: &FixedHeader) -> Result<(), DecodeError> {
    let expected = match h.byte >> 4 {
        2 | 4 | 5 | 6 | 7 | 11 => 2,
        12..=14 => 0,
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
        let Some(header) = parse_fixed_header(src)? else {
            return Ok(None);
        };
        check_fixed_length(&header)?;
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
        decode_frame(header.byte, frame, header.header_len).map(Some)
    }
}

impl Encoder<&Packet> for MqttCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: &Packet, dst: &mut BytesMut) -> std::io::Result<()> {
        encode_packet(item, dst)
    }
}

impl Encoder<Packet> for MqttCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Packet, dst: &mut BytesMut) -> std::io::Result<()> {
        encode_packet(&item, dst)
    }
}
