//! What can be wrong with incoming bytes ([`DecodeError`], which tells the
//! session how to answer), and the names and limits the decoder and the
//! encoder share.

/// The largest remaining length a 4-byte varint can express (MQTT 3.1.1 §2.2.3).
pub(super) const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Why an incoming byte stream could not be decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A frame (fixed header included) larger than the codec's `max_packet_size`.
    #[error("packet of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge { size: usize, max: usize },
    /// A protocol violation; the reason names the packet type and the problem.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// CONNECT with a known protocol name but an unsupported level: answer CONNACK 1.
    #[error("CONNECT: unacceptable protocol level {level}")]
    UnacceptableProtocol { level: u8 },
    /// CONNECT with a client identifier this server refuses: answer CONNACK 2.
    #[error("CONNECT: client identifier rejected: {0}")]
    IdentifierRejected(String),
}

impl DecodeError {
    /// The CONNACK return code the session should send before closing, if any.
    pub(crate) fn connack_code(&self) -> Option<u8> {
        match self {
            DecodeError::UnacceptableProtocol { .. } => Some(1),
            DecodeError::IdentifierRejected(_) => Some(2),
            _ => None,
        }
    }
}

pub(crate) fn malformed(packet: &str, why: impl std::fmt::Display) -> DecodeError {
    DecodeError::Malformed(format!("{packet}: {why}"))
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
        _ => "reserved packet type",
    }
}
