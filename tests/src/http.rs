//! A minimal HTTP/1.1 client for the tests: what a client sees, byte for byte.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// An HTTP response as the minimal client saw it.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: String,
}

impl Response {
    /// The first value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A minimal HTTP/1.1 exchange (one request per connection); returns status and body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, String) {
    let r = exchange(
        addr,
        method,
        path,
        content_type,
        body,
        Duration::from_secs(30),
    );
    (r.status, r.body)
}

/// A minimal HTTP/1.1 exchange (one request per connection) that waits up to `limit`
/// for the response; panics if there is none.
pub fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
    limit: Duration,
) -> Response {
    try_exchange(addr, method, path, content_type, body, limit)
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

/// [`exchange`], returning the failure to connect, send or read within `limit` (an
/// error of kind `WouldBlock` or `TimedOut` when no response came in time) instead of
/// panicking. A response that is not HTTP is an `InvalidData` error.
pub fn try_exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
    limit: Duration,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(limit))?;
    let ct = content_type
        .map(|c| format!("content-type: {c}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{ct}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let invalid = |what: &str| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{what}: {raw:?}"))
    };
    let (head, rest) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid("no HTTP head"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("no status code"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}
