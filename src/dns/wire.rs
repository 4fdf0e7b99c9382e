//! One question to one server, directly: UDP first, TCP when the answer is truncated, the whole
//! exchange under one time bound. Knows nothing of zones or TSIG beyond carrying bytes.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::error::DnsError;

/// Largest UDP answer read (the EDNS buffer we advertise is smaller).
const UDP_MAX: usize = 4096;
/// EDNS buffer size we advertise (the DNS flag day 2020 value).
pub(crate) const EDNS_PAYLOAD: u16 = 1232;

/// An answer: parsed, and its bytes (TSIG verification needs them).
pub(crate) struct Answer {
    pub(crate) msg: Message,
    pub(crate) bytes: Vec<u8>,
}

/// Send `query` (already encoded, id `id`) to `server`; the answer within `bound`.
pub(crate) async fn exchange(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    bound: Duration,
) -> Result<Answer, DnsError> {
    let timeout = || DnsError::Timeout {
        server,
        after: bound,
    };
    tokio::time::timeout(bound, async {
        let udp = udp(server, query, id).await?;
        if !udp.msg.truncated() {
            return Ok(udp);
        }
        tcp(server, query, id).await
    })
    .await
    .map_err(|_| timeout())?
}

fn io(server: SocketAddr) -> impl Fn(std::io::Error) -> DnsError {
    move |e| DnsError::Io {
        server,
        detail: e.to_string(),
    }
}

/// UDP: sent again every second until an answer with our id comes from the server.
async fn udp(server: SocketAddr, query: &[u8], id: u16) -> Result<Answer, DnsError> {
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(io(server))?;
    sock.connect(server).await.map_err(io(server))?;
    let mut buf = vec![0u8; UDP_MAX];
    loop {
        sock.send(query).await.map_err(io(server))?;
        let wait = tokio::time::sleep(Duration::from_secs(1));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                got = sock.recv(&mut buf) => {
                    let n = got.map_err(io(server))?;
                    if let Some(a) = parse(&buf[..n], id) {
                        return Ok(a);
                    }
                }
            }
        }
    }
}

/// TCP: one connection, two-byte length prefix each way.
async fn tcp(server: SocketAddr, query: &[u8], id: u16) -> Result<Answer, DnsError> {
    let mut s = tokio::net::TcpStream::connect(server)
        .await
        .map_err(io(server))?;
    let len = u16::try_from(query.len()).map_err(|_| DnsError::BadAnswer {
        server,
        detail: "query too large".into(),
    })?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(query);
    s.write_all(&out).await.map_err(io(server))?;
    let n = s.read_u16().await.map_err(io(server))? as usize;
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).await.map_err(io(server))?;
    parse(&buf, id).ok_or_else(|| DnsError::BadAnswer {
        server,
        detail: "the TCP answer is not for our query".into(),
    })
}

/// The answer in `bytes`, or None when it is not an answer to query `id` (a stray datagram).
fn parse(bytes: &[u8], id: u16) -> Option<Answer> {
    let msg = Message::from_vec(bytes).ok()?;
    if msg.id() != id || msg.message_type() != MessageType::Response {
        return None;
    }
    Some(Answer {
        msg,
        bytes: bytes.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn silence_is_a_timeout_naming_the_server() {
        let quiet = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = quiet.local_addr().unwrap();
        let bound = Duration::from_millis(200);
        let e = exchange(server, &[0u8; 12], 7, bound).await.err().unwrap();
        assert_eq!(
            e,
            DnsError::Timeout {
                server,
                after: bound
            }
        );
        assert!(e.to_string().contains(&server.to_string()), "{e}");
    }

    #[test]
    fn a_stray_datagram_is_skipped() {
        assert!(parse(b"junk", 1).is_none());
        let mut m = Message::new();
        m.set_id(2).set_message_type(MessageType::Response);
        let bytes = m.to_vec().unwrap();
        assert!(parse(&bytes, 1).is_none());
        assert!(parse(&bytes, 2).is_some());
    }
}
