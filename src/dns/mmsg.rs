//! Batched datagram IO (Linux `recvmmsg`/`sendmmsg`): one call reads up to [`BATCH`]
//! queries waiting on a socket and one sends their responses, instead of two calls per
//! query. Under load most calls find several datagrams; with one waiting it is the
//! same two calls as before.
//!
//! The buffers live in a [`Batch`], reused for every call (no allocation per query).
//! A datagram longer than [`SLOT`] bytes is read cut to it (`MSG_TRUNC`) and dropped:
//! no DNS query needs more over UDP.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// Most datagrams read or sent per call.
pub const BATCH: usize = 32;
/// Bytes read per datagram.
pub const SLOT: usize = 4096;

/// The datagrams of one `recvmmsg`, and the responses to send back to their sources.
///
/// The message headers of both calls are built once, pointing into the boxed buffers
/// and addresses (heap memory that stays put however the `Batch` moves); a call only
/// resets what the kernel writes (receiving) or what changes per response (sending).
pub struct Batch {
    bufs: Box<[u8]>,
    lens: [usize; BATCH],
    addrs: Box<[libc::sockaddr_storage; BATCH]>,
    recv_iov: Box<[libc::iovec; BATCH]>,
    recv_hdrs: Box<[libc::mmsghdr; BATCH]>,
    send_iov: Box<[libc::iovec; BATCH]>,
    send_hdrs: Box<[libc::mmsghdr; BATCH]>,
    /// Response per datagram (empty: nothing to send).
    pub outs: Vec<Vec<u8>>,
    received: usize,
}

impl Default for Batch {
    fn default() -> Self {
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain data; all zeroes is a
        // valid value of each (null pointers, zero lengths).
        let mut b = unsafe {
            Batch {
                bufs: vec![0; BATCH * SLOT].into_boxed_slice(),
                lens: [0; BATCH],
                addrs: Box::new(zeroed()),
                recv_iov: Box::new(zeroed()),
                recv_hdrs: Box::new(zeroed()),
                send_iov: Box::new(zeroed()),
                send_hdrs: Box::new(zeroed()),
                outs: (0..BATCH).map(|_| Vec::with_capacity(1232)).collect(),
                received: 0,
            }
        };
        for (i, slot) in b.bufs.chunks_exact_mut(SLOT).enumerate() {
            b.recv_iov[i] = libc::iovec { iov_base: slot.as_mut_ptr().cast(), iov_len: SLOT };
            let h = &mut b.recv_hdrs[i].msg_hdr;
            h.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_iov = &mut b.recv_iov[i];
            h.msg_iovlen = 1;
            b.send_hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        b
    }
}

impl Batch {
    /// Reads the datagrams waiting on `fd` (at most [`BATCH`]), waiting as a blocking
    /// socket does for the first one only; returns how many.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.received = 0;
        for h in self.recv_hdrs.iter_mut() {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points at buffers of `self` (heap memory that lives as
        // long as it and does not move) with their true lengths; the kernel writes at
        // most that much.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.recv_hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (len, h) in self.lens.iter_mut().zip(self.recv_hdrs.iter()).take(n) {
            let cut = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            *len = if cut { 0 } else { h.msg_len as usize };
        }
        self.received = n;
        Ok(n)
    }

    /// Datagram `i` of the last read (empty when it was cut), its source, and its
    /// response buffer.
    pub fn datagram(&mut self, i: usize) -> (&[u8], Option<SocketAddr>, &mut Vec<u8>) {
        let packet = &self.bufs[i * SLOT..i * SLOT + self.lens[i]];
        let src = socket_addr(&self.addrs[i], self.recv_hdrs[i].msg_hdr.msg_namelen);
        (packet, src, &mut self.outs[i])
    }

    /// Sends the non-empty responses of datagrams `from..` of the last read to their
    /// sources, as many as `fd` takes in one call; returns the index to go on from. A
    /// datagram the kernel refuses is skipped, as a failed `send_to` would be.
    pub fn send(&mut self, fd: RawFd, from: usize) -> io::Result<usize> {
        let mut slots = [0usize; BATCH];
        let mut count = 0;
        for i in from..self.received {
            if self.outs[i].is_empty() {
                continue;
            }
            self.send_iov[count] =
                libc::iovec { iov_base: self.outs[i].as_mut_ptr().cast(), iov_len: self.outs[i].len() };
            let h = &mut self.send_hdrs[count].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.recv_hdrs[i].msg_hdr.msg_namelen;
            h.msg_iov = &mut self.send_iov[count];
            slots[count] = i;
            count += 1;
        }
        if count == 0 {
            return Ok(self.received);
        }
        // SAFETY: every header points at a response and an address of `self` that
        // outlive the call, with their true lengths; the kernel only reads them.
        let sent = unsafe { libc::sendmmsg(fd, self.send_hdrs.as_mut_ptr(), count as libc::c_uint, 0) };
        if sent < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::Interrupted => Err(e),
                _ => Ok(slots[0] + 1),
            };
        }
        let sent = sent as usize;
        Ok(if sent >= count { self.received } else { slots[sent] })
    }
}

/// The address the kernel wrote (`len` bytes of it), when IPv4 or IPv6.
fn socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(storage.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and it fits.
            let a = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6, and it fits.
            let a = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn reads_several_datagrams_and_answers_each_source() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let clients: Vec<_> = (0..3).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&[i as u8; 5], server.local_addr().unwrap()).unwrap();
        }
        let big = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        big.send_to(&vec![9; SLOT + 1], server.local_addr().unwrap()).unwrap();
        server.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut batch = Batch::default();
        let fd = server.as_raw_fd();
        assert_eq!(batch.recv(fd).unwrap(), 4, "all four read in one call");
        for i in 0..4 {
            let (packet, src, out) = batch.datagram(i);
            let src = src.unwrap();
            out.clear();
            if packet.is_empty() {
                assert_eq!(src, big.local_addr().unwrap(), "the datagram past SLOT bytes is cut");
                continue;
            }
            assert_eq!(src, clients[usize::from(packet[0])].local_addr().unwrap());
            out.extend_from_slice(&[packet[0], 0xAA]);
        }
        assert_eq!(batch.send(fd, 0).unwrap(), 4);
        server.set_read_timeout(Some(std::time::Duration::from_millis(50))).unwrap();
        let idle = batch.recv(fd).unwrap_err();
        assert_eq!(idle.kind(), io::ErrorKind::WouldBlock, "the read timeout ends a wait: {idle}");
        for (i, c) in clients.iter().enumerate() {
            let mut buf = [0; 16];
            let n = c.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i as u8, 0xAA]);
        }
    }
}
