//! Just enough HTTP/1.1 to drive Patroni's REST API and etcd's health endpoint from
//! blocking code: one request per connection (`Connection: close`), a deadline on
//! everything, the body read to the end.

use super::error::LocalPgError;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    pub body: String,
}

/// `GET http://addr/path`.
pub(crate) fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response, LocalPgError> {
    request(addr, "GET", path, None, timeout)
}

/// `POST` (or `PATCH`) of a JSON `body` to `http://addr/path`.
pub(crate) fn send_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<Response, LocalPgError> {
    request(addr, method, path, Some(body), timeout)
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<Response, LocalPgError> {
    let what = format!("{method} http://{addr}{path}");
    let io = |e: std::io::Error| LocalPgError::Io { what: what.clone(), source: e };
    let mut tcp = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    tcp.set_read_timeout(Some(timeout)).map_err(io)?;
    tcp.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n");
    if let Some(body) = body {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.push_str(body.unwrap_or(""));
    tcp.write_all(head.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).map_err(io)?;
    parse(&raw).ok_or_else(|| {
        LocalPgError::Other(format!("{what}: not an HTTP response: {:?}", String::from_utf8_lossy(&raw)))
    })
}

/// Status and body of a complete `Connection: close` response (chunked bodies are
/// decoded; Patroni's and etcd's servers send Content-Length, but a proxy might not).
fn parse(raw: &[u8]) -> Option<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(body)? } else { body.to_string() };
    Some(Response { status, body })
}

fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix("\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse(plain), Some(Response { status: 200, body: "{}".into() }));
        let chunked =
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse(chunked), Some(Response { status: 503, body: "abcde".into() }));
        assert_eq!(parse(b"garbage"), None);
    }
}
