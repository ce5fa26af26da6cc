//! A minimal HTTP/1.1 client for tests that talk to a server inside a namespace: one request per
//! connection (`Connection: close`), so the response ends where the stream does. The stream may
//! be plain TCP or TLS over it.

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// A response: status code and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// Sends one request for `host` over `stream` (already connected, with its timeouts set, e.g.
/// by [`crate::tcp_connect`] inside a namespace) with a bearer token and a JSON body, and reads
/// the whole response.
pub fn http_request(
    stream: &mut (impl Read + Write),
    host: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> io::Result<HttpResponse> {
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()?;
    let mut bytes = Vec::new();
    match stream.read_to_end(&mut bytes) {
        Ok(_) => {}
        // A TLS peer may close without close_notify once it has sent everything.
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof && !bytes.is_empty() => {}
        Err(error) => return Err(error),
    }
    let response = String::from_utf8_lossy(&bytes);
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

/// A TLS client stream over `stream` to `server_name`, trusting only the PEM certificates in
/// `ca_pem` (e.g. a test server's self-signed certificate). The handshake happens on first use.
pub fn tls_client(
    stream: TcpStream,
    server_name: &str,
    ca_pem: &[u8],
) -> io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| invalid(format!("CA certificate PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| invalid(format!("CA certificate: {e}")))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| invalid(format!("server name {server_name}: {e}")))?;
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .map_err(io::Error::other)?;
    Ok(rustls::StreamOwned::new(connection, stream))
}
