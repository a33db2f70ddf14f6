//! What can be wrong with incoming bytes ([`DecodeError`], which tells the
//! session how to answer), and the names and limits the decoder and the
//! encoder share.

use super::packet::reason;

/// The largest remaining length a 4-byte varint can express (MQTT 3.1.1 §2.2.3,
/// MQTT 5 §1.5.5); also the largest MQTT 5 Variable Byte Integer.
pub(super) const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Why an incoming byte stream could not be decoded.
///
/// MQTT 5 tells apart a packet that cannot be parsed (Malformed Packet,
/// 0x81) from one that parses but carries something the protocol does not
/// allow (Protocol Error, 0x82, or the more specific code the spec names),
/// §1.2 and §4.13. MQTT 3.1.1 has no such distinction: everything the 3.1.1
/// decoder rejects is [`DecodeError::Malformed`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A frame (fixed header included) larger than the codec's `max_packet_size`.
    #[error("packet of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge { size: usize, max: usize },
    /// Bytes that cannot be parsed; the reason names the packet type and the problem.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// MQTT 5: a well-formed packet with content the protocol does not allow.
    /// `reason` is the reason code to answer with: 0x82, or a more specific
    /// one where the spec has it (0x94 for topic alias 0, 0x90 for a topic
    /// name with wildcards, 0x8F for a bad topic filter; §4.13.2).
    #[error("protocol error: {why}")]
    Protocol { reason: u8, why: String },
    /// CONNECT with a known protocol name but an unsupported level: answer CONNACK 1.
    #[error("CONNECT: unacceptable protocol level {level}")]
    UnacceptableProtocol { level: u8 },
    /// CONNECT with a client identifier this server refuses: answer CONNACK 2.
    #[error("CONNECT: client identifier rejected: {0}")]
    IdentifierRejected(String),
    /// The error was found in an MQTT 5 CONNECT (after its protocol name and
    /// level were read): the client speaks MQTT 5, so the answer, if any, is
    /// an MQTT 5 CONNACK with [`DecodeError::connack_v5`].
    #[error("{0}")]
    Connect5(Box<DecodeError>),
}

impl DecodeError {
    /// The MQTT 3.1.1 CONNACK return code the session should send before
    /// closing, if any (never for an MQTT 5 CONNECT: see [`DecodeError::connack_v5`]).
    pub(crate) fn connack_code(&self) -> Option<u8> {
        match self {
            DecodeError::UnacceptableProtocol { .. } => Some(1),
            DecodeError::IdentifierRejected(_) => Some(2),
            _ => None,
        }
    }

    /// The MQTT 5 reason code for this error (§2.4, §4.13), for the DISCONNECT an
    /// MQTT 5 session sends before closing or the CONNACK of a refused MQTT 5 CONNECT:
    /// 0x95 Packet too large, 0x81 Malformed Packet, a Protocol Error's own code
    /// (0x82 or a more specific one), 0x84 and 0x85 for the CONNECT refusals, and
    /// 0x80 Unspecified error for an I/O error (there is rarely anyone to tell).
    pub(crate) fn reason_code(&self) -> u8 {
        match self {
            DecodeError::Io(_) => reason::UNSPECIFIED_ERROR,
            DecodeError::TooLarge { .. } => reason::PACKET_TOO_LARGE,
            DecodeError::Malformed(_) => reason::MALFORMED_PACKET,
            DecodeError::Protocol { reason, .. } => *reason,
            DecodeError::UnacceptableProtocol { .. } => reason::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::IdentifierRejected(_) => reason::CLIENT_IDENTIFIER_NOT_VALID,
            DecodeError::Connect5(inner) => inner.reason_code(),
        }
    }

    /// For an error in an MQTT 5 CONNECT: the reason code of the MQTT 5
    /// CONNACK to send before closing (§3.1.4, §4.13.2: the session switches
    /// its write codec to version 5 first). None for anything else.
    pub(crate) fn connack_v5(&self) -> Option<u8> {
        match self {
            DecodeError::Connect5(inner) => Some(inner.reason_code()),
            _ => None,
        }
    }
}

/// A [`DecodeError::Malformed`] naming the packet and the problem.
pub(crate) fn malformed(packet: &str, why: impl std::fmt::Display) -> DecodeError {
    DecodeError::Malformed(format!("{packet}: {why}"))
}

/// An MQTT 5 Protocol Error (0x82) naming the packet and the problem.
pub(crate) fn protocol(packet: &str, why: impl std::fmt::Display) -> DecodeError {
    protocol_with(reason::PROTOCOL_ERROR, packet, why)
}

/// An MQTT 5 Protocol Error with the more specific reason code the spec gives.
pub(crate) fn protocol_with(reason: u8, packet: &str, why: impl std::fmt::Display) -> DecodeError {
    DecodeError::Protocol {
        reason,
        why: format!("{packet}: {why}"),
    }
}

/// The name of a packet type (the high nibble of the first header byte).
pub(crate) fn packet_name(kind: u8) -> &'static str {
    match kind {
        1 => "CONNECT",
        2 => "CONNACK",
        3 => "PUBLISH",
        4 => "PUBACK",
        5 => "PUBREC",
        6 => "PUBREL",
        7 => "PUBCOMP",
        8 => "SUBSCRIBE",
        9 => "SUBACK",
        10 => "UNSUBSCRIBE",
        11 => "UNSUBACK",
        12 => "PINGREQ",
        13 => "PINGRESP",
        14 => "DISCONNECT",
        15 => "AUTH",
        _ => "reserved packet type",
    }
}
