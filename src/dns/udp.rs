//! DNS over UDP: a few worker tasks per socket, each receiving the datagrams waiting
//! (a batch on Linux, `mmsg`), answering each in place (`respond`, no await) and
//! sending the responses. No task per query and
//! nothing kept between datagrams, so no rate of datagrams grows memory.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::dns::hold::Hold;
use crate::dns::respond::{Ask, Reply, Responder, Transport};

/// Largest datagram read (anything longer is cut by the kernel and fails to parse).
#[cfg(not(target_os = "linux"))]
const RECV_BUFFER: usize = 65_535;

/// Receives and answers on `socket` until `cancel` fires; a datagram being answered
/// is answered first. On Linux the datagrams waiting are read and answered in
/// batches (`mmsg`).
#[cfg(target_os = "linux")]
pub async fn serve(
    socket: Arc<UdpSocket>,
    responder: Arc<Responder>,
    hold: Arc<Hold>,
    epoch: Instant,
    cancel: CancellationToken,
) {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;

    use crate::dns::mmsg::Batch;

    let fd = socket.as_raw_fd();
    let mut batch = Batch::default();
    loop {
        let received = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            r = socket.async_io(Interest::READABLE, || batch.recv(fd)) => r,
        };
        // Errors here are per datagram (e.g. an ICMP error reported late); go on.
        let Ok(count) = received else { continue };
        let now = epoch.elapsed().as_secs();
        let may_hold = hold.may_hold(responder.store());
        for i in 0..count {
            let (packet, src, out) = batch.datagram(i);
            out.clear();
            let Some(src) = src.filter(|s| answerable(*s)) else { continue };
            let ask = Ask { may_hold, ..Ask::new(packet, src.ip(), Transport::Udp, now) };
            if responder.respond(&ask, out) == Reply::Hold {
                let mut spare = Vec::new();
                answer_when_ready(&socket, &responder, &hold, packet, src, now, &mut spare).await;
                out.clear();
            }
        }
        let mut from = 0;
        while from < count {
            match socket.async_io(Interest::WRITABLE, || batch.send(fd, from)).await {
                Ok(next) => from = next,
                Err(_) => break,
            }
        }
    }
}

/// Receives and answers on `socket` until `cancel` fires; a datagram being answered
/// is answered first.
#[cfg(not(target_os = "linux"))]
pub async fn serve(
    socket: Arc<UdpSocket>,
    responder: Arc<Responder>,
    hold: Arc<Hold>,
    epoch: Instant,
    cancel: CancellationToken,
) {
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut out = Vec::with_capacity(1232);
    loop {
        let received = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        let (len, src) = match received {
            Ok(r) => r,
            // Errors here are per datagram (e.g. an ICMP error reported late); go on.
            Err(_) => continue,
        };
        if !answerable(src) {
            continue;
        }
        let now = epoch.elapsed().as_secs();
        let may_hold = hold.may_hold(responder.store());
        let ask = Ask { may_hold, ..Ask::new(&buf[..len], src.ip(), Transport::Udp, now) };
        match responder.respond(&ask, &mut out) {
            Reply::Send => {
                let _ = socket.send_to(&out, src).await;
            }
            Reply::Nothing => {}
            Reply::Hold => answer_when_ready(&socket, &responder, &hold, &buf[..len], src, now, &mut out).await,
        }
    }
}

/// Answers a held datagram once the first round has finished (in a task of its own,
/// while there is room), or at once.
async fn answer_when_ready(
    socket: &Arc<UdpSocket>,
    responder: &Arc<Responder>,
    hold: &Arc<Hold>,
    packet: &[u8],
    src: SocketAddr,
    now: u64,
    out: &mut Vec<u8>,
) {
    fn released(packet: &[u8], src: SocketAddr, now: u64) -> Ask<'_> {
        Ask { released: true, ..Ask::new(packet, src.ip(), Transport::Udp, now) }
    }
    let Some(slot) = hold.slot() else {
        if responder.respond(&released(packet, src, now), out) == Reply::Send {
            let _ = socket.send_to(out, src).await;
        }
        return;
    };
    let (socket, responder, hold, packet) = (socket.clone(), responder.clone(), hold.clone(), packet.to_vec());
    tokio::spawn(async move {
        hold.wait(responder.store()).await;
        let mut out = Vec::new();
        if responder.respond(&released(&packet, src, now), &mut out) == Reply::Send {
            let _ = socket.send_to(&out, src).await;
        }
        drop(slot);
    });
}

/// A source a response may go to: not port 0, unspecified, broadcast or multicast.
fn answerable(src: SocketAddr) -> bool {
    let ip = src.ip().to_canonical();
    let broadcast = matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast());
    src.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoofable_sources_get_nothing() {
        for (src, want) in [
            ("127.0.0.1:5000", true),
            ("[::1]:5000", true),
            ("127.0.0.1:0", false),
            ("0.0.0.0:53", false),
            ("255.255.255.255:53", false),
            ("224.0.0.1:53", false),
            ("[::ffff:255.255.255.255]:53", false),
            ("[ff02::1]:53", false),
        ] {
            assert_eq!(answerable(src.parse().unwrap()), want, "{src}");
        }
    }
}
