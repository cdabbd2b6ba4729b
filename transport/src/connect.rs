use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, StatusCode, Uri};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tungstenite::client::IntoClientRequest;

use crate::TransportConfig;

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not a `ws://` URL with a host.
    #[error("invalid server URL {url:?}: {why}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The TCP connection failed. (The cause is the error's `source`, not
    /// part of its message: `{:#}` shows both once.)
    #[error("cannot connect to {addr}")]
    Io {
        /// The address tried.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The server answered the upgrade with something other than `101`.
    #[error("server answered {status}{}", body_suffix(.body))]
    Refused {
        /// The status it answered with.
        status: StatusCode,
        /// The start of the body it sent, if any.
        body: String,
    },
    /// The WebSocket handshake failed in another way.
    #[error("websocket handshake failed: {0}")]
    Handshake(String),
    /// The TLS handshake failed (for example, a certificate that is not
    /// trusted: see `--ca` and `--insecure`).
    #[error("TLS with {addr} failed")]
    Tls {
        /// The address tried.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A client connection: plain TCP for `ws://`, TLS for `wss://`.
#[derive(Debug)]
pub enum ClientStream {
    /// `ws://`
    Plain(TcpStream),
    /// `wss://`
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How a client trusts servers over `wss://`.
#[derive(Debug, Clone)]
pub struct ClientTls(Arc<rustls::ClientConfig>);

impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ClientTls {}

impl ClientTls {
    fn builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        match rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
        {
            Ok(builder) => builder,
            Err(_) => unreachable!("the ring provider supports the default protocol versions"),
        }
    }

    /// Trusts the public web's certificate authorities (Mozilla's list).
    pub fn public() -> Self {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self(Arc::new(Self::builder().with_root_certificates(roots).with_no_client_auth()))
    }

    /// Trusts the certificates in a PEM file (a private CA, or a server's
    /// self-signed certificate).
    ///
    /// # Errors
    /// The file cannot be read or holds no certificate.
    pub fn from_ca_file(path: &std::path::Path) -> Result<Self, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|err| format!("{}: {err}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|err| format!("{}: {err}", path.display()))?;
            roots.add(cert).map_err(|err| format!("{}: {err}", path.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("{}: no certificate in it", path.display()));
        }
        Ok(Self(Arc::new(Self::builder().with_root_certificates(roots).with_no_client_auth())))
    }

    /// Trusts any certificate: for development against a self-signed
    /// server only. The connection is encrypted but not authenticated.
    pub fn insecure() -> Self {
        let verifier = Arc::new(AnyCertificate(rustls::crypto::ring::default_provider()));
        let config = Self::builder()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Self(Arc::new(config))
    }
}

/// A verifier that accepts every certificate (`--insecure`), still checking
/// that the handshake is signed by the key of the certificate shown.
#[derive(Debug)]
struct AnyCertificate(rustls::crypto::CryptoProvider);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn body_suffix(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() { String::new() } else { format!(": {body}") }
}

/// Opens a WebSocket to `url` (`ws://host[:port]/path` or `wss://...`),
/// offering `subprotocol` if given. `wss://` trusts what
/// [`TransportConfig::client_tls`] says (the public CAs by default).
///
/// # Errors
/// A bad URL, a failed TCP connection, or an upgrade the server refused,
/// reported with the status and body it answered.
pub async fn connect(
    url: &str,
    subprotocol: Option<&str>,
    config: &TransportConfig,
) -> Result<WebSocketStream<ClientStream>, ConnectError> {
    let bad = |why: &str| ConnectError::BadUrl { url: url.to_owned(), why: why.to_owned() };
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return Err(bad("the scheme must be ws:// or wss://"));
    }
    let (uri, stream) = dial(url, config).await?;
    let mut request = uri.into_client_request().map_err(|err| bad(&err.to_string()))?;
    if let Some(protocol) = subprotocol {
        let value = HeaderValue::from_str(protocol).map_err(|_| bad("invalid subprotocol"))?;
        request.headers_mut().insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    match tokio_tungstenite::client_async_with_config(request, stream, Some(config.websocket()))
        .await
    {
        Ok((socket, _response)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            let body = String::from_utf8_lossy(body.get(..512).unwrap_or(body)).into_owned();
            Err(ConnectError::Refused { status: response.status(), body })
        }
        Err(err) => Err(ConnectError::Handshake(err.to_string())),
    }
}

/// Connects to the server of a `ws://` or `wss://` URL: TCP, then TLS for
/// `wss://`.
pub(crate) async fn dial(
    url: &str,
    config: &TransportConfig,
) -> Result<(Uri, ClientStream), ConnectError> {
    let bad = |why: &str| ConnectError::BadUrl { url: url.to_owned(), why: why.to_owned() };
    let uri: Uri = url.parse().map_err(|err: http::uri::InvalidUri| bad(&err.to_string()))?;
    let secure = match uri.scheme_str() {
        Some("ws" | "http") => false,
        Some("wss" | "https") => true,
        _ => return Err(bad("the scheme must be ws://, wss://, http:// or https://")),
    };
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let addr = format!("{host}:{port}");
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|source| ConnectError::Io { addr: addr.clone(), source })?;
    stream.set_nodelay(true).map_err(|source| ConnectError::Io { addr: addr.clone(), source })?;
    let stream = if secure {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|_| bad("the host is not a valid TLS server name"))?;
        let tls = config.client_tls.clone().unwrap_or_else(ClientTls::public);
        let connector = tokio_rustls::TlsConnector::from(tls.0);
        let stream = connector
            .connect(name, stream)
            .await
            .map_err(|source| ConnectError::Tls { addr: addr.clone(), source })?;
        ClientStream::Tls(Box::new(stream))
    } else {
        ClientStream::Plain(stream)
    };
    Ok((uri, stream))
}

/// Fetches `path` (`/files/{id}`) from the server of the WebSocket URL
/// `url` with `GET` and `Authorization: Bearer <token>`, writing the body
/// to `out` as it arrives. Returns the bytes written.
///
/// # Errors
/// The connection fails, the server answers other than `200` (reported
/// with the status and the start of its body), or the body ends early.
pub async fn fetch(
    url: &str,
    path: &str,
    token: &str,
    config: &TransportConfig,
    out: &mut (impl AsyncWrite + Unpin),
) -> Result<u64, ConnectError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (uri, mut stream) = dial(url, config).await?;
    let io = |source: io::Error| ConnectError::Io { addr: url.to_owned(), source };
    let host = uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let AnswerHead { status, length, rest: body, .. } = read_answer_head(&mut stream, url).await?;
    if status != StatusCode::OK {
        let body = String::from_utf8_lossy(body.get(..512).unwrap_or(&body)).into_owned();
        return Err(ConnectError::Refused { status, body });
    }
    let Some(length) = length else {
        return Err(ConnectError::Handshake("an answer without Content-Length".into()));
    };
    let first = body.get(..usize::try_from(length).unwrap_or(usize::MAX).min(body.len()));
    let first = first.unwrap_or_default();
    out.write_all(first).await.map_err(io)?;
    let rest = length - first.len() as u64;
    let copied = tokio::io::copy(&mut (&mut stream).take(rest), out).await.map_err(io)?;
    if copied < rest {
        return Err(ConnectError::Handshake(format!(
            "the file ended after {} of {length} bytes",
            first.len() as u64 + copied
        )));
    }
    out.flush().await.map_err(io)?;
    Ok(length)
}

/// An answer's head, as a client reads it.
#[derive(Debug)]
pub(crate) struct AnswerHead {
    pub status: StatusCode,
    /// Its `Content-Type`, or empty.
    pub content_type: String,
    /// Its `Content-Length`, if it gave one.
    pub length: Option<u64>,
    /// The bytes read past the head: the body's start.
    pub rest: Vec<u8>,
}

/// Reads an answer's head (at most 64 KiB) from `stream`, a connection to
/// `addr` (for errors).
///
/// # Errors
/// The stream failed or ended first, or the head is malformed or too large.
pub(crate) async fn read_answer_head(
    stream: &mut ClientStream,
    addr: &str,
) -> Result<AnswerHead, ConnectError> {
    use tokio::io::AsyncReadExt;
    let mut buffer = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 4096];
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|source| ConnectError::Io { addr: addr.to_owned(), source })?;
        if read == 0 {
            return Err(ConnectError::Handshake("the server closed before answering".into()));
        }
        buffer.extend_from_slice(chunk.get(..read).unwrap_or_default());
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buffer) {
            Ok(httparse::Status::Complete(len)) => {
                let status = StatusCode::from_u16(response.code.unwrap_or(0))
                    .map_err(|_| ConnectError::Handshake("a bad status code".into()))?;
                let header = |name: &str| {
                    let found = response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name));
                    found.map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
                };
                let content_type = header("content-type").unwrap_or_default();
                let length = header("content-length").and_then(|v| v.parse::<u64>().ok());
                return Ok(AnswerHead {
                    status,
                    content_type,
                    length,
                    rest: buffer.split_off(len),
                });
            }
            Ok(httparse::Status::Partial) if buffer.len() < 64 * 1024 => {}
            Ok(httparse::Status::Partial) => {
                return Err(ConnectError::Handshake("an answer head over 64 KiB".into()));
            }
            Err(err) => return Err(ConnectError::Handshake(format!("a bad answer: {err}"))),
        }
    }
}
