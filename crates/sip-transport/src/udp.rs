//! UDP in batches: where many datagrams wait, one system call reads (`recvmmsg`) or sends
//! (`sendmmsg`) up to [`BATCH`] of them, instead of one call and one wake-up per datagram.
//! Elsewhere than Linux the same interface reads and sends one datagram per call.

use std::io;
use std::net::SocketAddr;

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Most datagrams read or sent per system call.
pub(crate) const BATCH: usize = 32;
/// Room for the largest UDP payload.
const SLOT: usize = 65_536;

/// Buffers for reading up to [`BATCH`] datagrams at once.
pub(crate) struct RecvBatch {
    buf: Vec<u8>,
    got: Vec<(usize, SocketAddr)>,
}

impl RecvBatch {
    pub(crate) fn new() -> Self {
        RecvBatch {
            buf: vec![0; BATCH * SLOT],
            got: Vec::with_capacity(BATCH),
        }
    }

    /// Datagrams read by the last call.
    pub(crate) fn len(&self) -> usize {
        self.got.len()
    }

    /// The `i`th datagram of the last read and who sent it.
    pub(crate) fn get(&self, i: usize) -> (&[u8], SocketAddr) {
        let (n, from) = self.got[i];
        (&self.buf[i * SLOT..i * SLOT + n], from)
    }

    /// Wait until at least one datagram is there, then read what waits (up to [`BATCH`]).
    pub(crate) async fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        loop {
            sock.readable().await?;
            match sock.try_io(Interest::READABLE, || self.read_now(sock)) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    #[cfg(target_os = "linux")]
    fn read_now(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrLike, SockaddrStorage};
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;
        self.got.clear();
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
            .buf
            .chunks_exact_mut(SLOT)
            .map(|c| [IoSliceMut::new(c)])
            .collect();
        // The headers hold raw pointers (not Send): made per call, a few kilobytes for up to
        // BATCH datagrams.
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let read = recvmmsg(
            sock.as_raw_fd(),
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        for m in read {
            let from = m
                .address
                .as_ref()
                .and_then(|a: &SockaddrStorage| match a.family() {
                    Some(nix::sys::socket::AddressFamily::Inet) => a
                        .as_sockaddr_in()
                        .map(|v4| SocketAddr::V4(std::net::SocketAddrV4::from(*v4))),
                    Some(nix::sys::socket::AddressFamily::Inet6) => a
                        .as_sockaddr_in6()
                        .map(|v6| SocketAddr::V6(std::net::SocketAddrV6::from(*v6))),
                    _ => None,
                });
            // A datagram without an IP source cannot be answered; its slot stays empty.
            let from = from.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
            self.got.push((m.bytes, from));
        }
        Ok(self.got.len())
    }

    #[cfg(not(target_os = "linux"))]
    fn read_now(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        self.got.clear();
        let (n, from) = sock.try_recv_from(&mut self.buf[..SLOT])?;
        self.got.push((n, from));
        Ok(1)
    }
}

/// What became of a batch handed to [`send`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Datagrams the kernel took.
    pub(crate) sent: usize,
    /// Datagrams refused with an error other than a full buffer (an unreachable address).
    pub(crate) failed: usize,
}

/// Send every datagram of `out` (payload, destination), in order, as few system calls
/// as the kernel allows; waits while the socket's send buffer is full.
pub(crate) async fn send(sock: &UdpSocket, out: &[(&[u8], SocketAddr)]) -> Sent {
    let mut done = Sent::default();
    let mut at = 0;
    while at < out.len() {
        let end = (at + BATCH).min(out.len());
        match sock.try_io(Interest::WRITABLE, || send_now(sock, &out[at..end])) {
            Ok(n) => {
                done.sent += n;
                at += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if sock.writable().await.is_err() {
                    done.failed += out.len() - at;
                    return done;
                }
            }
            Err(e) => {
                // The first datagram of the call was refused (an unreachable
                // destination): it is lost like any datagram, the rest go on.
                tracing::debug!(error = %e, remote = %out[at].1, "UDP send failed");
                done.failed += 1;
                at += 1;
            }
        }
    }
    done
}

#[cfg(target_os = "linux")]
fn send_now(sock: &UdpSocket, out: &[(&[u8], SocketAddr)]) -> io::Result<usize> {
    use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    if out.len() == 1 {
        return sock.try_send_to(out[0].0, out[0].1).map(|_| 1);
    }
    let slices: Vec<[IoSlice<'_>; 1]> = out.iter().map(|(p, _)| [IoSlice::new(p)]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = out
        .iter()
        .map(|(_, a)| Some(SockaddrStorage::from(*a)))
        .collect();
    let cmsgs: [ControlMessage<'_>; 0] = [];
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(out.len(), None);
    let sent = sendmmsg(
        sock.as_raw_fd(),
        &mut headers,
        slices.iter(),
        &addrs,
        cmsgs,
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    Ok(sent.count())
}

#[cfg(not(target_os = "linux"))]
fn send_now(sock: &UdpSocket, out: &[(&[u8], SocketAddr)]) -> io::Result<usize> {
    sock.try_send_to(out[0].0, out[0].1).map(|_| 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many datagrams from two senders are read in batches, each with its own length and
    /// sender, in order; many sent in one go all arrive.
    #[tokio::test]
    async fn batches_keep_every_datagram_and_its_sender() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = server.local_addr().unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for i in 0..50u32 {
            let s = if i % 2 == 0 { &a } else { &b };
            s.send_to(format!("msg {i} {}", "x".repeat(i as usize)).as_bytes(), to)
                .await
                .unwrap();
        }
        let mut rx = RecvBatch::new();
        let mut seen = Vec::new();
        while seen.len() < 50 {
            let n = rx.recv(&server).await.unwrap();
            assert!((1..=BATCH).contains(&n));
            for i in 0..n {
                let (data, from) = rx.get(i);
                seen.push((String::from_utf8(data.to_vec()).unwrap(), from));
            }
        }
        for (i, (text, from)) in seen.iter().enumerate() {
            assert_eq!(text, &format!("msg {i} {}", "x".repeat(i)));
            let want = if i % 2 == 0 { &a } else { &b };
            assert_eq!(*from, want.local_addr().unwrap());
        }
        // Back: 40 answers to alternating receivers in one call of send.
        let replies: Vec<(Vec<u8>, SocketAddr)> = (0..40)
            .map(|i| {
                let dest = if i % 2 == 0 { &a } else { &b };
                (
                    format!("reply {i}").into_bytes(),
                    dest.local_addr().unwrap(),
                )
            })
            .collect();
        let out: Vec<(&[u8], SocketAddr)> =
            replies.iter().map(|(p, d)| (p.as_slice(), *d)).collect();
        assert_eq!(
            send(&server, &out).await,
            Sent {
                sent: 40,
                failed: 0
            }
        );
        let mut buf = [0u8; 64];
        for i in (0..40).step_by(2) {
            let (n, _) = a.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], format!("reply {i}").as_bytes());
            let (n, _) = b.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], format!("reply {}", i + 1).as_bytes());
        }
    }
}
