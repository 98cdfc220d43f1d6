//! MLLP (HL7's Minimal Lower Layer Protocol): each message framed as `0x0B` message
//! `0x1C 0x0D`, over TCP. This adapter reads frames and hands each to the interface engine,
//! writing its acknowledgement back before it reads the next: a sender that sends faster
//! than the node applies is slowed by TCP, and no message waits in a queue.
//!
//! Tolerated, as real senders do them: several messages per connection, and bytes between
//! frames (NULs, stray line ends, a missing final CR). Bounded: the size of one frame (an
//! AR is sent and the frame skipped), the time a connection may stay silent, and the
//! number of connections at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use medmesh_interface_engine::{InterfaceEngine, Via};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

mod tls;

pub use tls::{TlsError, TlsSettings, acceptor};

/// Start of a frame.
pub const START: u8 = 0x0B;
/// End of a frame (followed by CR).
pub const END: u8 = 0x1C;

/// The listener's bounds.
#[derive(Debug, Clone)]
pub struct MllpLimits {
    /// The largest frame, in bytes.
    pub max_message_bytes: usize,
    /// How long a connection may send nothing before it is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
}

impl Default for MllpLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 32 * 1024 * 1024,
            idle_timeout: Duration::from_secs(300),
            max_connections: 64,
        }
    }
}

/// Takes the first complete frame out of `buf`, without its framing bytes: bytes before its
/// start byte are noise between frames and are dropped (all of `buf` when it holds no start
/// byte), and so is the CR after its end byte, which senders do not always send.
fn take_frame(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    match buf.iter().position(|b| *b == START) {
        Some(at) => {
            buf.drain(..at);
        }
        None => {
            buf.clear();
            return None;
        }
    }
    let end = buf.iter().position(|b| *b == END)?;
    let payload = buf[1..end].to_vec();
    let consumed = if buf.get(end + 1) == Some(&b'\r') {
        end + 2
    } else {
        end + 1
    };
    buf.drain(..consumed);
    Some(payload)
}

/// Frames `payload` for MLLP.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 3);
    out.push(START);
    out.extend_from_slice(payload);
    out.push(END);
    out.push(b'\r');
    out
}

/// Serves MLLP on `listener` until the task is dropped; over TLS when `tls` is given (and
/// then mutual TLS when it names client CAs: a client without a certificate they signed
/// is refused in the handshake).
pub async fn serve(
    listener: TcpListener,
    engine: Arc<InterfaceEngine>,
    limits: MllpLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        // Wait for a free slot before accepting: excess connections wait in the backlog.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "MLLP accept failed");
                continue;
            }
        };
        let engine = engine.clone();
        let limits = limits.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let ended = match tls {
                None => connection(stream, peer, &engine, &limits).await,
                Some(acceptor) => {
                    // The handshake is bounded by the idle timeout too.
                    match tokio::time::timeout(limits.idle_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(secured)) => connection(secured, peer, &engine, &limits).await,
                        Ok(Err(e)) => {
                            tracing::info!(error = %e, "an MLLP TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => Ok(()),
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "MLLP connection ended");
            }
            drop(permit);
        });
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    engine: &InterfaceEngine,
    limits: &MllpLimits,
) -> std::io::Result<()> {
    let via = Via::Mllp { peer: peer.ip() };
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    // Whether the frame being read grew past the limit: it is skipped to its end.
    let mut oversized = false;
    loop {
        // Serve every complete frame in the buffer.
        while let Some(payload) = take_frame(&mut buf) {
            let reply = if oversized {
                oversized = false;
                engine.refuse_too_large().await
            } else {
                engine.receive(&payload, &via).await.ack
            };
            // Enhanced mode may ask for no acknowledgement (MSH-15 `NE`, `ER`, `SU`).
            if !reply.is_empty() {
                stream.write_all(&frame(&reply)).await?;
                stream.flush().await?;
            }
        }
        if buf.len() > limits.max_message_bytes {
            // Keep only what could hold the end byte; say so when the frame ends.
            oversized = true;
            buf.clear();
            buf.push(START);
        }
        let n = match tokio::time::timeout(limits.idle_timeout, stream.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// How often an idle channel looks for new messages.
const POLL: Duration = Duration::from_millis(200);
/// How long a destination may take to connect or to acknowledge.
const DESTINATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Delivers a channel's queue to its destination over MLLP, in order, forever: one
/// connection kept open while it works; on any failure the message stays first in the queue
/// and is tried again after its backoff.
pub async fn deliver(engine: Arc<InterfaceEngine>, channel: medmesh_interface_engine::Channel) {
    let mut connection: Option<tokio::net::TcpStream> = None;
    loop {
        let next = match engine.next_outbound(&channel.name).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(channel = %channel.name, error = %e, "the outbound queue could not be read");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        let Some((row, payload)) = next else {
            tokio::time::sleep(POLL).await;
            continue;
        };
        let wait = row.next_attempt_micros - engine.clock_micros();
        if wait > 0 {
            tokio::time::sleep(Duration::from_micros(wait as u64).min(POLL * 5)).await;
            continue;
        }
        let result = match send_one(&mut connection, &channel.destination, &payload).await {
            Ok(ack) => outcome_of(&ack),
            Err(e) => {
                connection = None;
                medmesh_interface_engine::Delivery::Retry(format!(
                    "destination unreachable: {}",
                    e.kind()
                ))
            }
        };
        if matches!(result, medmesh_interface_engine::Delivery::Retry(_)) {
            connection = None;
        }
        if let Err(e) = engine.outbound_attempted(row, result).await {
            tracing::error!(channel = %channel.name, error = %e, "a delivery could not be recorded");
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}

/// Sends one framed message on the channel's connection (opening it if needed) and reads
/// the acknowledgement frame.
async fn send_one(
    connection: &mut Option<tokio::net::TcpStream>,
    destination: &str,
    payload: &[u8],
) -> std::io::Result<Vec<u8>> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
    if connection.is_none() {
        let stream = tokio::time::timeout(
            DESTINATION_TIMEOUT,
            tokio::net::TcpStream::connect(destination),
        )
        .await
        .map_err(|_| timed_out())??;
        let _ = stream.set_nodelay(true);
        *connection = Some(stream);
    }
    let Some(stream) = connection.as_mut() else {
        return Err(timed_out());
    };
    stream.write_all(&frame(payload)).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(ack) = take_frame(&mut buf) {
                return Ok(ack);
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed",
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > 1024 * 1024 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "acknowledgement too large",
                ));
            }
        }
    };
    tokio::time::timeout(DESTINATION_TIMEOUT, read)
        .await
        .map_err(|_| timed_out())?
}

/// MSA-1 of the destination's acknowledgement.
fn outcome_of(ack: &[u8]) -> medmesh_interface_engine::Delivery {
    use medmesh_interface_engine::Delivery;
    let code = medmesh_hl7v2::Message::parse(ack)
        .ok()
        .and_then(|m| m.segment("MSA").map(|s| s.get(1, 1).into_owned()));
    match code.as_deref() {
        Some("AA" | "CA") => Delivery::Accepted,
        Some(c @ ("AE" | "CE")) => Delivery::Refused(format!("the destination answered {c}")),
        Some(c) => Delivery::Retry(format!("the destination answered {c}")),
        None => Delivery::Retry("the destination's answer is not an acknowledgement".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_taken_whole_with_noise_and_a_missing_cr() {
        let mut buf = b"\r\n\0".to_vec();
        buf.extend(frame(b"MSH|one"));
        buf.extend(b"\n");
        buf.extend([START]);
        buf.extend(b"MSH|two");
        buf.push(END);
        buf.extend([START]);
        buf.extend(b"MSH|thr");
        assert_eq!(take_frame(&mut buf).as_deref(), Some(&b"MSH|one"[..]));
        assert_eq!(take_frame(&mut buf).as_deref(), Some(&b"MSH|two"[..]));
        // The third is not complete yet: it stays.
        assert_eq!(take_frame(&mut buf), None);
        assert_eq!(buf, [&[START][..], b"MSH|thr"].concat());
        buf.extend([END, b'\r']);
        assert_eq!(take_frame(&mut buf).as_deref(), Some(&b"MSH|thr"[..]));
        assert!(buf.is_empty());
        let mut noise = b"garbage".to_vec();
        assert_eq!(take_frame(&mut noise), None);
        assert!(noise.is_empty());
    }
}
