//! The read side of a connection: MQTT packets out of a byte stream, with a
//! heap buffer only while a packet is partly read.
//!
//! Most connections are idle devices, and a buffer that waits for the next
//! packet is what each of them would cost while it waits. So the socket is
//! read into a scratch area on the stack; what it gave is copied into a
//! buffer of exactly that size, the whole packets in it are split off (they
//! keep the allocation until they are dropped) and, once nothing is left,
//! the buffer is let go. Only the bytes of a packet still arriving stay
//! buffered between reads, however long the client takes to send the rest,
//! and the codec checks `max_packet_size` from the fixed header before the
//! buffer grows for a body.

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures::Stream;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::Decoder;

use crate::protocol::{DecodeError, MqttCodec, Packet};

/// The most one read takes from the socket (on the stack, not kept).
const READ_CHUNK: usize = 8 * 1024;

/// Where reading stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Reading,
    /// The socket ended; what is buffered is decoded, then the stream ends.
    Eof,
    /// An error was returned: the stream ends.
    Done,
}

/// A stream of the packets read from `io`.
pub(crate) struct PacketReader<R> {
    io: R,
    codec: MqttCodec,
    /// The bytes read and not yet decoded: empty (no allocation) between
    /// packets, part of one packet while it arrives.
    buf: BytesMut,
    state: State,
}

impl<R> PacketReader<R> {
    pub(crate) fn new(io: R, codec: MqttCodec) -> PacketReader<R> {
        PacketReader {
            io,
            codec,
            buf: BytesMut::new(),
            state: State::Reading,
        }
    }

    /// How many bytes are held for a packet still arriving (tests).
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        (self.buf.len(), self.buf.capacity())
    }

    /// The next whole packet from what is buffered, if there is one.
    fn decode(&mut self) -> Result<Option<Packet>, DecodeError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let packet = self.codec.decode(&mut self.buf)?;
        if self.buf.is_empty() {
            // Let the allocation go: the packets split off keep it only as
            // long as they live.
            self.buf = BytesMut::new();
        }
        Ok(packet)
    }
}

impl<R: AsyncRead + Unpin> Stream for PacketReader<R> {
    type Item = Result<Packet, DecodeError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.state == State::Done {
                return Poll::Ready(None);
            }
            match this.decode() {
                Ok(Some(packet)) => return Poll::Ready(Some(Ok(packet))),
                Ok(None) => {}
                Err(e) => {
                    this.state = State::Done;
                    this.buf = BytesMut::new();
                    return Poll::Ready(Some(Err(e)));
                }
            }
            if this.state == State::Eof {
                this.state = State::Done;
                if this.buf.is_empty() {
                    return Poll::Ready(None);
                }
                this.buf = BytesMut::new();
                let e = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the connection ended inside a packet",
                );
                return Poll::Ready(Some(Err(DecodeError::Io(e))));
            }
            let mut scratch = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut read = ReadBuf::uninit(&mut scratch);
            match Pin::new(&mut this.io).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    this.state = State::Done;
                    this.buf = BytesMut::new();
                    return Poll::Ready(Some(Err(DecodeError::Io(e))));
                }
                Poll::Ready(Ok(())) => {
                    let got = read.filled();
                    if got.is_empty() {
                        this.state = State::Eof;
                    } else if this.buf.is_empty() {
                        // Exactly what came: whole packets share it, and
                        // the codec reserves for the rest of a partial one.
                        this.buf = BytesMut::from(got);
                    } else {
                        this.buf.extend_from_slice(got);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;

    fn pingreq() -> [u8; 2] {
        [0xC0, 0x00]
    }

    /// A QoS 0 PUBLISH of `payload` to `t` (MQTT 3.1.1).
    fn publish(t: &str, payload: &[u8]) -> Vec<u8> {
        let remaining = 2 + t.len() + payload.len();
        assert!(remaining < 128);
        let mut v = vec![0x30, remaining as u8, 0, t.len() as u8];
        v.extend_from_slice(t.as_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn poll_once<S: Stream + Unpin>(s: &mut S) -> Poll<Option<S::Item>> {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        Pin::new(s).poll_next(&mut cx)
    }

    #[tokio::test]
    async fn a_packet_sent_a_byte_at_a_time_is_read_whole_and_nothing_is_held_after_it() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut r = PacketReader::new(server, MqttCodec::new(1024));
        assert!(poll_once(&mut r).is_pending());
        assert_eq!(r.held(), (0, 0), "an idle connection holds no buffer");
        let bytes = publish("a/b", b"hello");
        for (i, b) in bytes.iter().enumerate() {
            client.write_all(&[*b]).await.expect("write");
            if i + 1 < bytes.len() {
                assert!(poll_once(&mut r).is_pending(), "byte {i}: not whole yet");
                assert_eq!(r.held().0, i + 1, "the partial packet stays buffered");
            }
        }
        match r.next().await {
            Some(Ok(Packet::Publish(p))) => {
                assert_eq!(&*p.topic, "a/b");
                assert_eq!(&p.payload[..], b"hello");
            }
            other => panic!("expected the publish, got {other:?}"),
        }
        assert_eq!(r.held(), (0, 0), "let go once the packet is out");
    }

    #[tokio::test]
    async fn several_packets_in_one_read_and_one_split_across_reads() {
        let (mut client, server) = tokio::io::duplex(4096);
        let mut r = PacketReader::new(server, MqttCodec::new(1024));
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&pingreq());
        bytes.extend_from_slice(&publish("t", b"1"));
        let second = publish("t", b"22");
        bytes.extend_from_slice(&second[..3]);
        client.write_all(&bytes).await.expect("write");
        assert!(matches!(r.next().await, Some(Ok(Packet::PingReq))));
        assert!(matches!(r.next().await, Some(Ok(Packet::Publish(_)))));
        assert!(poll_once(&mut r).is_pending());
        assert_eq!(r.held().0, 3);
        client.write_all(&second[3..]).await.expect("write");
        match r.next().await {
            Some(Ok(Packet::Publish(p))) => assert_eq!(&p.payload[..], b"22"),
            other => panic!("expected the second publish, got {other:?}"),
        }
        assert_eq!(r.held(), (0, 0));
    }

    #[tokio::test]
    async fn a_packet_over_the_maximum_is_refused_from_its_header_before_its_body() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut r = PacketReader::new(server, MqttCodec::new(100));
        // A PUBLISH announcing 16 KiB: only the fixed header is sent.
        client
            .write_all(&[0x30, 0x80, 0x80, 0x01])
            .await
            .expect("write");
        match r.next().await {
            Some(Err(DecodeError::TooLarge { max: 100, .. })) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(r.held(), (0, 0));
        assert!(r.next().await.is_none(), "nothing after an error");
    }

    #[tokio::test]
    async fn the_end_of_the_stream_inside_a_packet_is_an_error_and_between_packets_is_the_end() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut r = PacketReader::new(server, MqttCodec::new(1024));
        client.write_all(&pingreq()).await.expect("write");
        client.write_all(&[0x30]).await.expect("write");
        drop(client);
        assert!(matches!(r.next().await, Some(Ok(Packet::PingReq))));
        assert!(matches!(r.next().await, Some(Err(DecodeError::Io(_)))));
        assert!(r.next().await.is_none());

        let (client, server) = tokio::io::duplex(64);
        let mut r = PacketReader::new(server, MqttCodec::new(1024));
        drop(client);
        assert!(r.next().await.is_none());
    }
}
