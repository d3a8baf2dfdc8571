//! DNS over UDP: a few worker threads per socket, each blocked in a receive until
//! datagrams wait (a batch of them on Linux, `mmsg`), answering each in place
//! (`respond`, no await) and sending the responses. Threads rather than tasks: a
//! datagram wakes the thread waiting in the kernel directly, without the runtime's
//! readiness events and task wake-ups in between (measured in `bench/peers`). No task per query and
//! nothing kept between datagrams, so no rate of datagrams grows memory.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::dns::hold::Hold;
use crate::dns::respond::{Ask, Reply, Responder, Transport};

/// How often a worker blocked on an idle socket looks at `cancel`.
pub const WAKE: Duration = Duration::from_millis(100);

/// Receives and answers on `socket` (blocking, with a read timeout of [`WAKE`]) until
/// `cancel` fires; the datagrams read are answered first. Runs on a thread of its own,
/// inside the runtime (`spawn_blocking`), which held queries wait in. On Linux the
/// datagrams waiting are read and answered in batches (`mmsg`).
#[cfg(target_os = "linux")]
pub fn serve(
    socket: Arc<UdpSocket>,
    responder: Arc<Responder>,
    hold: Arc<Hold>,
    epoch: Instant,
    cancel: CancellationToken,
) {
    use std::os::fd::AsRawFd;

    use crate::dns::mmsg::Batch;

    let runtime = Handle::current();
    let fd = socket.as_raw_fd();
    let mut batch = Batch::default();
    while !cancel.is_cancelled() {
        // Errors here are the timeout, or per datagram (e.g. an ICMP error reported
        // late); go on.
        let Ok(count) = batch.recv(fd) else { continue };
        let now = epoch.elapsed().as_secs();
        let may_hold = hold.may_hold(responder.store());
        for i in 0..count {
            let (packet, src, out) = batch.datagram(i);
            out.clear();
            let Some(src) = src.filter(|s| answerable(*s)) else { continue };
            let ask = Ask { may_hold, ..Ask::new(packet, src.ip(), Transport::Udp, now) };
            if responder.respond(&ask, out) == Reply::Hold {
                answer_when_ready(&runtime, &socket, &responder, &hold, packet, src, now);
                out.clear();
            }
        }
        let mut from = 0;
        while from < count {
            match batch.send(fd, from) {
                Ok(next) => from = next,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
}

/// Receives and answers on `socket` (blocking, with a read timeout of [`WAKE`]) until
/// `cancel` fires, one datagram at a time. Runs on a thread of its own, inside the
/// runtime (`spawn_blocking`), which held queries wait in.
#[cfg(not(target_os = "linux"))]
pub fn serve(
    socket: Arc<UdpSocket>,
    responder: Arc<Responder>,
    hold: Arc<Hold>,
    epoch: Instant,
    cancel: CancellationToken,
) {
    let runtime = Handle::current();
    let mut buf = vec![0u8; 65_535];
    let mut out = Vec::with_capacity(1232);
    while !cancel.is_cancelled() {
        let Ok((len, src)) = socket.recv_from(&mut buf) else { continue };
        if !answerable(src) {
            continue;
        }
        let now = epoch.elapsed().as_secs();
        let may_hold = hold.may_hold(responder.store());
        let ask = Ask { may_hold, ..Ask::new(&buf[..len], src.ip(), Transport::Udp, now) };
        match responder.respond(&ask, &mut out) {
            Reply::Send => {
                let _ = socket.send_to(&out, src);
            }
            Reply::Nothing => {}
            Reply::Hold => answer_when_ready(&runtime, &socket, &responder, &hold, &buf[..len], src, now),
        }
    }
}

/// Answers a held datagram once the first round has finished (in a task of its own,
/// while there is room), or at once.
fn answer_when_ready(
    runtime: &Handle,
    socket: &Arc<UdpSocket>,
    responder: &Arc<Responder>,
    hold: &Arc<Hold>,
    packet: &[u8],
    src: SocketAddr,
    now: u64,
) {
    fn released(packet: &[u8], src: SocketAddr, now: u64) -> Ask<'_> {
        Ask { released: true, ..Ask::new(packet, src.ip(), Transport::Udp, now) }
    }
    let mut out = Vec::new();
    let Some(slot) = hold.slot() else {
        if responder.respond(&released(packet, src, now), &mut out) == Reply::Send {
            let _ = socket.send_to(&out, src);
        }
        return;
    };
    let (socket, responder, hold, packet) = (socket.clone(), responder.clone(), hold.clone(), packet.to_vec());
    runtime.spawn(async move {
        hold.wait(responder.store()).await;
        if responder.respond(&released(&packet, src, now), &mut out) == Reply::Send {
            let _ = socket.send_to(&out, src);
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
