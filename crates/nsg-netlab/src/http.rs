//! A minimal HTTP/1.1 client for tests that talk to a server inside a namespace: one request per
//! connection (`Connection: close`), so the response ends where the stream does.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response: status code and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// Sends one request over `stream` (already connected, e.g. by [`crate::tcp_connect`] inside a
/// namespace) with a bearer token and a JSON body, and reads the whole response.
pub fn http_request(
    mut stream: TcpStream,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let host = stream.peer_addr()?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{method} {path}: no HTTP status line in {response:?}"),
            )
        })?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok(HttpResponse { status, body })
}
