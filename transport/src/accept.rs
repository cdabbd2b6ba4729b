mod engineio;

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use http::header::{
    ACCEPT, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, Method, Request, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::{Role, WebSocketConfig};

use crate::event_stream::{Delivered, Posted};
use crate::gate::{Full, Gate, Pass};
use crate::outgoing::{Framing, Outgoing, SharedStream};
use crate::request::{Head, read_head};
use crate::response::{Response, respond_and_close, stream_head};
use crate::site::DynamicAnswer;
use crate::{Site, Socket, TransportConfig};

/// A client-side WebSocket, over TCP or TLS.
pub type WebSocket = WebSocketStream<crate::ClientStream>;

/// A server-side WebSocket: tungstenite reads it, and its writes share the
/// connection's [`Outgoing`] queue with whoever fans frames out to it.
pub type ServerSocket = WebSocketStream<SharedStream>;

/// What [`accept`] did with a connection.
#[derive(Debug)]
pub enum Accepted {
    /// The request was an upgrade; the WebSocket is ready.
    Upgraded(Box<Upgraded>),
    /// The request was answered over HTTP with this status and the
    /// connection closed.
    Answered(StatusCode),
    /// The connection was not let in (answered with an error status and
    /// closed): a limit, another site's page, a malformed upgrade.
    Refused(Refused),
    /// The peer closed before sending a complete request.
    Closed,
    /// The request opened an Engine.IO session (a Socket.IO client):
    /// serve it.
    EngineIo(Box<EngineOpened>),
}

/// A new Engine.IO session, to serve until its socket ends.
#[derive(Debug)]
pub struct EngineOpened {
    /// The session's side for the server.
    pub socket: crate::engineio::EngineSocket,
    /// The request that opened it.
    pub request: Request<()>,
    /// The peer's address (behind a trusted proxy, its client's).
    pub peer: SocketAddr,
    /// The session's place under the [`Gate`]'s limits, held as long as
    /// it is open.
    pub pass: Pass,
}

/// A connection refused: why, and who asked (behind a trusted proxy, its
/// client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub reason: Refusal,
    /// Who.
    pub peer: SocketAddr,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A connection limit, or a server shutting down.
    Full(Full),
    /// A browser page of another site (`403`).
    Origin,
    /// An upgrade request that is not a valid WebSocket handshake (`400`,
    /// `426`).
    Handshake,
}

impl Refusal {
    /// Its name in counters and logs: `server_full`, `address_full`,
    /// `downloads_full`, `draining`, `origin`, `handshake`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Full(Full::Server) => "server_full",
            Self::Full(Full::Address) => "address_full",
            Self::Full(Full::Downloads) => "downloads_full",
            Self::Full(Full::Draining) => "draining",
            Self::Origin => "origin",
            Self::Handshake => "handshake",
        }
    }
}

/// A connection that stays open: a completed WebSocket upgrade, or an
/// event stream of the HTTP fallback.
#[derive(Debug)]
pub struct Upgraded {
    /// The socket, speaking WebSocket or events.
    pub socket: Socket,
    /// The socket's write side, to push frames from anywhere.
    pub outgoing: Arc<Outgoing>,
    /// The request that asked for the upgrade.
    pub request: Request<()>,
    /// The subprotocol selected, if the client offered the site's.
    pub subprotocol: Option<&'static str>,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The connection's place under the [`Gate`]'s limits, held as long as
    /// the connection is open.
    pub pass: Pass,
}

/// Why [`accept`] could not finish with a connection.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// Reading or writing the socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The client did not send its request head in time; it was answered
    /// with `408` (best effort) and closed.
    #[error("request head not received within {0:?}")]
    Timeout(std::time::Duration),
    /// The client took nothing of an answer for this long; it was dropped.
    #[error("the client read nothing for {0:?}")]
    SendTimeout(std::time::Duration),
}

/// Reads one HTTP request from `stream` and either answers it and closes, or
/// upgrades it to a WebSocket.
///
/// Answers: the site's pages with `200` (`GET`, `HEAD`); `404` for unknown
/// paths; `405` for other methods; `431` for a head over
/// [`TransportConfig::max_header_bytes`]; `400` for a malformed request; on
/// the WebSocket path, `426` with `Upgrade: websocket` when the request asks
/// for no upgrade, `426` with `Sec-WebSocket-Version: 13` for another
/// version, `400` for a missing `Connection: upgrade` or a bad key, `403`
/// for a browser page of another site (see
/// [`TransportConfig::allowed_origins`]), `503` when `gate` holds its most
/// connections and `429` when the peer's address does.
///
/// # Errors
/// IO failures, and a request head that does not arrive within
/// [`TransportConfig::handshake_timeout`].
pub async fn accept(
    stream: TcpStream,
    site: &Site,
    config: &TransportConfig,
    gate: &Arc<Gate>,
) -> Result<Accepted, AcceptError> {
    let peer = stream.peer_addr()?;
    // Counted before anything is read: one address cannot hold more
    // sockets than its share, whatever phase they are in.
    let pass = match gate.enter_via(peer.ip(), &config.trusted_proxies) {
        Ok(pass) => pass,
        Err(full) => return refuse_at_once(stream, peer, full),
    };
    // Chat frames are small and latency matters more than packet count.
    stream.set_nodelay(true)?;
    match &config.tls {
        None => serve(stream, peer, pass, site, config).await,
        Some(tls) => {
            // The TLS handshake counts against the same deadline as the
            // request head: a slowloris client gets no more time over TLS.
            let deadline = tokio::time::Instant::now() + config.handshake_timeout;
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.0));
            let stream = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => return Err(AcceptError::Io(err)),
                Err(_) => return Err(AcceptError::Timeout(config.handshake_timeout)),
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let config = TransportConfig { handshake_timeout: left, ..config.clone() };
            serve(stream, peer, pass, site, &config).await
        }
    }
}

/// A stream the HTTP phase runs on, which becomes the WebSocket's on
/// upgrade: the TCP socket and, over TLS, the session state.
pub(crate) trait Conn: AsyncRead + AsyncWrite + Unpin {
    fn into_parts(self) -> (TcpStream, Option<rustls::ServerConnection>);
}

impl Conn for TcpStream {
    fn into_parts(self) -> (TcpStream, Option<rustls::ServerConnection>) {
        (self, None)
    }
}

impl Conn for tokio_rustls::server::TlsStream<TcpStream> {
    fn into_parts(self) -> (TcpStream, Option<rustls::ServerConnection>) {
        let (stream, session) = self.into_inner();
        (stream, Some(session))
    }
}

/// Answers a connection its address may not open, without waiting for its
/// request: whatever of it has arrived is read (so closing sends FIN, not
/// a reset that could lose the answer), the status is written if the socket
/// takes it at once, and the connection closes.
fn refuse_at_once(
    stream: TcpStream,
    peer: SocketAddr,
    full: Full,
) -> Result<Accepted, AcceptError> {
    let mut scratch = [0u8; 4096];
    for _ in 0..16 {
        match stream.try_read(&mut scratch) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    let (reason, response) = limit(full);
    let _ = stream.try_write(&response.encode());
    Ok(Accepted::Refused(Refused { reason, peer }))
}

async fn serve<S: Conn>(
    mut stream: S,
    peer: SocketAddr,
    mut pass: Pass,
    site: &Site,
    config: &TransportConfig,
) -> Result<Accepted, AcceptError> {
    let head = tokio::time::timeout(
        config.handshake_timeout,
        read_head(&mut stream, config.max_header_bytes),
    )
    .await;
    let (request, rest) = match head {
        Err(_) => {
            let response = Response::text(StatusCode::REQUEST_TIMEOUT, "request timeout\n");
            let _ = stream.write_all(&response.encode()).await;
            return Err(AcceptError::Timeout(config.handshake_timeout));
        }
        Ok(head) => match head? {
            Head::Request(request, rest) => (*request, rest),
            Head::Closed => return Ok(Accepted::Closed),
            Head::Refuse(status, why) => return answer(&mut stream, refusal(status, why)).await,
        },
    };
    // Behind a trusted proxy the client is who its header says: its
    // address takes the place, and is the peer from here on.
    let peer = match config.trusted_proxies.contains(peer.ip()) {
        false => peer,
        true => {
            let client = config.trusted_proxies.client(peer.ip(), request.headers());
            let peer = SocketAddr::new(client, peer.port());
            if let Err(full) = pass.rebind(client) {
                return refuse(&mut stream, limit(full), peer).await;
            }
            peer
        }
    };
    if request.version() >= Version::HTTP_11 && !request.headers().contains_key(HOST) {
        let response = Response::text(StatusCode::BAD_REQUEST, "an HTTP/1.1 request needs Host\n");
        return answer(&mut stream, response).await;
    }
    if !host_allowed(&request, &config.allowed_hosts) {
        let response = Response::text(
            StatusCode::MISDIRECTED_REQUEST,
            "this server does not answer for that host name (see --allowed-host)\n",
        );
        return answer(&mut stream, response).await;
    }
    if let Some(engines) = site.engineio(request.uri().path()) {
        let engines = Arc::clone(engines);
        let request = engineio::Request { request, rest, peer, pass };
        return engineio::serve(stream, request, &engines, (site, config)).await;
    }
    if site.upgrades(request.uri().path()) {
        if request.method() == Method::POST {
            return post(stream, request, rest, (site, peer), config).await;
        }
        if request.method() != Method::GET {
            let response = Response::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            return answer(&mut stream, response.header("Allow", "GET, POST")).await;
        }
        if wants_event_stream(&request) {
            if !origin_allowed(request.headers(), &config.allowed_origins) {
                return refuse(&mut stream, origin(), peer).await;
            }
            if let Err(full) = pass.upgrade() {
                return refuse(&mut stream, limit(full), peer).await;
            }
            return open_event_stream(
                stream,
                Upgrade { request, rest, handshake: None, peer, pass },
                site,
                config,
            )
            .await;
        }
        let handshake = match check_upgrade(&request, site, config) {
            Ok(handshake) => handshake,
            Err(refusal) => return refuse(&mut stream, refusal, peer).await,
        };
        if let Err(full) = pass.upgrade() {
            return refuse(&mut stream, limit(full), peer).await;
        }
        let mut websocket = config.websocket();
        if let Some(max) = site.message_limit(request.uri().path()) {
            websocket = websocket.max_message_size(Some(max)).max_frame_size(Some(max));
        }
        let checked = Upgrade { request, rest, handshake: Some(handshake), peer, pass };
        return upgrade(stream, checked, config, websocket).await;
    }
    if let Some((handler, rest)) = site.lookup_dynamic(request.uri().path()) {
        let head_only = match *request.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                let response =
                    Response::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                return answer(&mut stream, response.header("Allow", "GET, HEAD")).await;
            }
        };
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        return match handler.get(rest, authorization).await {
            DynamicAnswer::Text(status, text, headers) => {
                let mut response = Response::text(status, &text);
                response.headers = headers;
                response.head_only = head_only;
                answer(&mut stream, response).await
            }
            DynamicAnswer::Body { content_type, body, headers } => {
                let response = Response {
                    status: StatusCode::OK,
                    headers,
                    content_type,
                    body: body.as_bytes(),
                    head_only,
                };
                answer(&mut stream, response).await
            }
            DynamicAnswer::File { file, len, content_type, headers } => {
                let _download = match pass.download() {
                    Ok(download) => download,
                    Err(full) => return refuse(&mut stream, limit(full), peer).await,
                };
                let response = Response {
                    status: StatusCode::OK,
                    headers,
                    content_type: "",
                    body: &[],
                    head_only,
                };
                let send = config.send_timeout;
                within(send, stream.write_all(response.head(&content_type, len).as_bytes()))
                    .await?;
                if !head_only {
                    send_file(&mut stream, file, len, send).await?;
                }
                within(send, stream.flush()).await?;
                within(send, stream.shutdown()).await?;
                Ok(Accepted::Answered(StatusCode::OK))
            }
        };
    }
    let Some(page) = site.lookup(request.uri().path()) else {
        return answer(&mut stream, Response::text(StatusCode::NOT_FOUND, "not found\n")).await;
    };
    let head_only = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let response = Response::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            return answer(&mut stream, response.header("Allow", "GET, HEAD")).await;
        }
    };
    let response = Response {
        status: StatusCode::OK,
        headers: Vec::new(),
        content_type: page.content_type,
        body: page.body,
        head_only,
    };
    answer(&mut stream, response).await
}

/// Streams `len` bytes of `file`; each write may wait `send_timeout` for
/// the client to take more, so a client that stops reading lets go of the
/// file, the socket and the task instead of holding them for minutes.
async fn send_file<S: Conn>(
    stream: &mut S,
    file: tokio::fs::File,
    len: u64,
    send_timeout: std::time::Duration,
) -> Result<(), AcceptError> {
    let mut file = file.take(len);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    loop {
        let read = file.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        within(send_timeout, stream.write_all(chunk.get(..read).unwrap_or_default())).await?;
        sent += read as u64;
    }
    if sent < len {
        // The file shrank under us: the answer is cut short, and closing
        // says so.
        return Err(AcceptError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(())
}

/// A write that must finish within `limit`.
async fn within<T>(
    limit: std::time::Duration,
    write: impl Future<Output = std::io::Result<T>>,
) -> Result<T, AcceptError> {
    match tokio::time::timeout(limit, write).await {
        Ok(written) => Ok(written?),
        Err(_) => Err(AcceptError::SendTimeout(limit)),
    }
}

/// Whether the request names this server: by an IP address, `localhost`
/// (or a name under it), or one of `allowed` (`*.example.com` for the
/// names under `example.com`, `*` for any). An HTTP/1.0 request may leave
/// `Host` out.
fn host_allowed(request: &Request<()>, allowed: &[String]) -> bool {
    let Some(host) = request.headers().get(HOST) else {
        return request.version() < Version::HTTP_11;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        // An IPv6 literal, with or without a port.
        Some(rest) => {
            return rest
                .split_once(']')
                .is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    allowed.iter().any(|pattern| {
        let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            _ if pattern == "*" => true,
            Some(domain) => name.ends_with(&format!(".{domain}")),
            None => pattern == name,
        }
    })
}

/// What a valid upgrade request asked for.
pub(crate) struct Handshake {
    accept_key: String,
    subprotocol: Option<&'static str>,
}

pub(crate) fn check_upgrade(
    request: &Request<()>,
    site: &Site,
    config: &TransportConfig,
) -> Result<Handshake, (Refusal, Response<'static>)> {
    let headers = request.headers();
    if !origin_allowed(headers, &config.allowed_origins) {
        return Err(origin());
    }
    let malformed = |response| Err((Refusal::Handshake, response));
    if !has_token(headers, UPGRADE, "websocket") {
        return malformed(
            Response::text(StatusCode::UPGRADE_REQUIRED, "this endpoint speaks WebSocket only\n")
                .header("Upgrade", "websocket")
                .header("Connection", "Upgrade"),
        );
    }
    if request.version() < Version::HTTP_11 {
        return malformed(Response::text(StatusCode::BAD_REQUEST, "WebSocket needs HTTP/1.1\n"));
    }
    if !has_token(headers, CONNECTION, "upgrade") {
        return malformed(Response::text(StatusCode::BAD_REQUEST, "missing Connection: Upgrade\n"));
    }
    if headers.get(SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return malformed(
            Response::text(StatusCode::UPGRADE_REQUIRED, "unsupported WebSocket version\n")
                .header("Sec-WebSocket-Version", "13"),
        );
    }
    let key = headers.get(SEC_WEBSOCKET_KEY).map(|k| k.as_bytes()).unwrap_or_default();
    let decoded = base64::engine::general_purpose::STANDARD.decode(key.trim_ascii());
    if decoded.map(|k| k.len()) != Ok(16) {
        return malformed(Response::text(
            StatusCode::BAD_REQUEST,
            "missing or malformed Sec-WebSocket-Key\n",
        ));
    }
    let subprotocol =
        site.subprotocol().filter(|wanted| has_token(headers, SEC_WEBSOCKET_PROTOCOL, wanted));
    Ok(Handshake { accept_key: derive_accept_key(key.trim_ascii()), subprotocol })
}

/// The refusal of a browser page of another site.
fn origin() -> (Refusal, Response<'static>) {
    let why = "this origin may not connect here (see --allowed-origin)\n";
    (Refusal::Origin, Response::text(StatusCode::FORBIDDEN, why))
}

/// The refusal of a connection over a limit (or while draining).
fn limit(full: Full) -> (Refusal, Response<'static>) {
    let response = Response::text(full.status(), full.why()).header("Retry-After", "10");
    (Refusal::Full(full), response)
}

/// An upgrade (or event stream) request that passed every check.
struct Upgrade {
    request: Request<()>,
    /// Bytes read past the request head.
    rest: Vec<u8>,
    /// A WebSocket's handshake; `None` for an event stream.
    handshake: Option<Handshake>,
    peer: SocketAddr,
    pass: Pass,
}

async fn upgrade<S: Conn>(
    mut stream: S,
    Upgrade { request, rest, handshake, peer, pass }: Upgrade,
    config: &TransportConfig,
    websocket: WebSocketConfig,
) -> Result<Accepted, AcceptError> {
    let Some(handshake) = handshake else {
        return Err(AcceptError::Io(std::io::Error::other("an upgrade without a handshake")));
    };
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        handshake.accept_key
    );
    if let Some(protocol) = handshake.subprotocol {
        head.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await?;
    let (stream, tls) = stream.into_parts();
    let bounds = (config.max_queued_frames, config.max_queued_bytes);
    let outgoing = Outgoing::new(stream, tls, bounds, Framing::WebSocket);
    let shared = SharedStream::new(Arc::clone(&outgoing), &rest, config.max_message_frames)?;
    let socket = Socket::WebSocket(
        WebSocketStream::from_partially_read(shared, rest, Role::Server, Some(websocket)).await,
    );
    let upgraded =
        Upgraded { socket, outgoing, request, subprotocol: handshake.subprotocol, peer, pass };
    Ok(Accepted::Upgraded(Box::new(upgraded)))
}

/// Whether a `GET` of an upgrading path asks for the HTTP fallback: an
/// event stream (what `EventSource` accepts), and no WebSocket upgrade.
fn wants_event_stream(request: &Request<()>) -> bool {
    let headers = request.headers();
    !has_token(headers, UPGRADE, "websocket") && has_token(headers, ACCEPT, "text/event-stream")
}

/// Answers an event stream request: the stream's head, then its `open`
/// event naming it; from there on it is written like a WebSocket.
async fn open_event_stream<S: Conn>(
    mut stream: S,
    Upgrade { request, peer, pass, .. }: Upgrade,
    site: &Site,
    config: &TransportConfig,
) -> Result<Accepted, AcceptError> {
    // Proxies must pass each event on at once (nginx reads
    // X-Accel-Buffering), and nothing may cache or transform it.
    let head = stream_head(
        "text/event-stream",
        &[("Cache-Control", "no-cache, no-transform"), ("X-Accel-Buffering", "no")],
    );
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await?;
    let (stream, tls) = stream.into_parts();
    let bounds = (config.max_queued_frames, config.max_queued_bytes);
    let outgoing = Outgoing::new(stream, tls, bounds, Framing::EventStream);
    let raw = SharedStream::new(Arc::clone(&outgoing), &[], config.max_message_frames)?;
    let events = site.event_streams().open(&outgoing, raw);
    outgoing.push_event("stream", events.name())?;
    outgoing.unstall().await?;
    let socket = Socket::EventStream(events);
    let subprotocol = site.subprotocol();
    let upgraded = Upgraded { socket, outgoing, request, subprotocol, peer, pass };
    Ok(Accepted::Upgraded(Box::new(upgraded)))
}

/// Takes a request of the HTTP fallback (`POST PATH?stream=NAME&seq=N`):
/// reads its body and hands it to the stream. Answers `200` when taken (or
/// taken before), `404` for a stream that is gone, `409` out of order,
/// `413` too large, `411` without a length, `400` malformed, `403` from a
/// page of another site.
async fn post<S: Conn>(
    mut stream: S,
    request: Request<()>,
    mut body: Vec<u8>,
    (site, peer): (&Site, SocketAddr),
    config: &TransportConfig,
) -> Result<Accepted, AcceptError> {
    let headers = request.headers();
    if !origin_allowed(headers, &config.allowed_origins) {
        return refuse(&mut stream, origin(), peer).await;
    }
    let Some((name, seq, close)) = stream_and_seq(request.uri().query().unwrap_or("")) else {
        let why = "a post needs ?stream=NAME&seq=N\n";
        return answer(&mut stream, Response::text(StatusCode::BAD_REQUEST, why)).await;
    };
    let limit = site.message_limit(request.uri().path()).unwrap_or(config.max_message_bytes);
    let binary = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().starts_with("application/octet-stream"));
    // A batch of text messages may hold a few full-size ones.
    let max_body = if binary { limit } else { limit.saturating_mul(4) };
    let length = headers.get(CONTENT_LENGTH).and_then(|value| value.to_str().ok());
    let Some(length) = length.and_then(|value| value.trim().parse::<usize>().ok()) else {
        let why = "a post needs Content-Length\n";
        return answer(&mut stream, Response::text(StatusCode::LENGTH_REQUIRED, why)).await;
    };
    if length > max_body || body.len() > length {
        let why = "the body is too large\n";
        return answer(&mut stream, Response::text(StatusCode::PAYLOAD_TOO_LARGE, why)).await;
    }
    read_body(&mut stream, &mut body, length, config.handshake_timeout).await?;
    let posted = Posted { binary, body: body.into(), close };
    let delivered = site.event_streams().post(name, seq, posted, limit).await;
    let response = match delivered {
        Delivered::Taken | Delivered::Duplicate => Response::text(StatusCode::OK, ""),
        Delivered::Unknown => {
            Response::text(StatusCode::NOT_FOUND, "no such stream: open a new one\n")
        }
        Delivered::Unavailable => {
            let why = "the stream's server cannot be reached now\n";
            Response::text(StatusCode::SERVICE_UNAVAILABLE, why).header("Retry-After", "1")
        }
        Delivered::OutOfOrder { expected } => {
            Response::text(StatusCode::CONFLICT, "out of order\n")
                .header("X-Expected-Seq", expected.to_string())
        }
        Delivered::Malformed => {
            Response::text(StatusCode::BAD_REQUEST, "the body is not UTF-8 text\n")
        }
        Delivered::TooLarge => {
            Response::text(StatusCode::PAYLOAD_TOO_LARGE, "a message is too large\n")
        }
    };
    answer(&mut stream, response).await
}

/// Reads the rest of a body of `length` bytes (`body` holds what came with
/// the head, at most `length`) within `timeout`; past it the client is
/// answered `408`.
async fn read_body<S: Conn>(
    stream: &mut S,
    body: &mut Vec<u8>,
    length: usize,
    timeout: std::time::Duration,
) -> Result<(), AcceptError> {
    let have = body.len();
    body.resize(length, 0);
    let read = stream.read_exact(body.get_mut(have..).unwrap_or_default());
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(AcceptError::Io(err)),
        Err(_) => {
            let response = Response::text(StatusCode::REQUEST_TIMEOUT, "request timeout\n");
            let _ = stream.write_all(&response.encode()).await;
            Err(AcceptError::Timeout(timeout))
        }
    }
}

/// Whether `value` could be a stream's name: what names are made of
/// (a server's name and run, dots and hex), not too long.
fn is_stream_name(value: &str) -> bool {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
    !value.is_empty() && value.len() <= 160 && value.bytes().all(allowed)
}

/// `stream=NAME&seq=N` (and `close=CODE` if there) of a query, in any
/// order among other parameters.
fn stream_and_seq(query: &str) -> Option<(String, u64, Option<u16>)> {
    let mut name = None;
    let mut seq = None;
    let mut close = None;
    for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
        match key {
            "stream" if is_stream_name(value) => {
                name = Some(value.to_owned());
            }
            "seq" => seq = value.parse().ok(),
            "close" => close = Some(value.parse().ok().filter(|code| (1000..5000).contains(code))?),
            _ => {}
        }
    }
    Some((name?, seq?, close))
}

fn refusal(status: StatusCode, why: &'static str) -> Response<'static> {
    Response::text(status, why)
}

/// Answers a refused connection with its response and closes it.
async fn refuse<S: Conn>(
    stream: &mut S,
    (reason, response): (Refusal, Response<'_>),
    peer: SocketAddr,
) -> Result<Accepted, AcceptError> {
    respond_and_close(stream, &response).await?;
    Ok(Accepted::Refused(Refused { reason, peer }))
}

async fn answer<S: Conn>(stream: &mut S, response: Response<'_>) -> Result<Accepted, AcceptError> {
    respond_and_close(stream, &response).await?;
    Ok(Accepted::Answered(response.status))
}

/// Whether a browser page from the request's `Origin` may open a WebSocket:
/// no `Origin` (not a browser), the server's own origin (the same host and
/// port as `Host`, whatever the scheme), or one of `allowed` (`*` for any).
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allowed.iter().any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let own_host = headers.get(HOST).and_then(|host| host.to_str().ok());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .filter(|host| !host.is_empty() && !host.contains('/'));
    matches!((origin_host, own_host), (Some(origin), Some(own)) if origin.eq_ignore_ascii_case(own))
}

/// Whether a comma-separated header holds `token`, compared
/// case-insensitively, in any of its occurrences.
fn has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|part| part.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, http::HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn only_the_servers_own_origin_and_listed_ones_may_upgrade() {
        let none: &[String] = &[];
        let own = headers(&[("host", "chat.example:8080"), ("origin", "http://chat.example:8080")]);
        assert!(origin_allowed(&own, none));
        let tls = headers(&[("host", "Chat.Example"), ("origin", "https://chat.example")]);
        assert!(origin_allowed(&tls, none), "scheme and case do not matter");
        assert!(
            origin_allowed(&headers(&[("host", "chat.example")]), none),
            "no origin: not a browser"
        );
        let other = headers(&[("host", "chat.example"), ("origin", "https://evil.example")]);
        assert!(!origin_allowed(&other, none));
        let port =
            headers(&[("host", "chat.example:8080"), ("origin", "http://chat.example:9090")]);
        assert!(!origin_allowed(&port, none), "another port is another origin");
        let null = headers(&[("host", "chat.example"), ("origin", "null")]);
        assert!(!origin_allowed(&null, none));
        let path = headers(&[("host", "chat.example"), ("origin", "http://chat.example/x")]);
        assert!(!origin_allowed(&path, none));
        let no_host = headers(&[("origin", "http://chat.example")]);
        assert!(!origin_allowed(&no_host, none));
        let listed = ["https://evil.example".to_owned()];
        assert!(origin_allowed(&other, &listed));
        assert!(origin_allowed(&other, &["*".to_owned()]));
    }

    #[test]
    fn rfc_6455_sample_key() {
        assert_eq!(derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
