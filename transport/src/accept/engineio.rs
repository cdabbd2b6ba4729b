//! The requests of Engine.IO's path (`/socket.io/?EIO=4&transport=…`):
//! a `GET` without `sid` opens a session (on long-polling, or on a
//! WebSocket if it upgrades); with `sid`, a `GET` waits for the session's
//! next payload, a `POST` carries the client's packets, and a WebSocket
//! upgrade probes and takes over the session; a long-polling request for
//! a session another server holds is read here and relayed there (see
//! [`crate::engineio::Relay`]). Errors are answered as the
//! protocol says: `400` (`403` for a page of another site) with
//! `{"code":N,"message":"…"}`.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::CONTENT_LENGTH;
use http::{Method, StatusCode};
use tokio::io::AsyncReadExt;

use super::{
    AcceptError, Accepted, Conn, EngineOpened, Refusal, Upgrade, answer, check_upgrade, limit,
    origin_allowed, read_body, refuse, upgrade,
};
use crate::engineio::{
    Answer as RelayAnswer, EngineSocket, Engines, Link, Relay, Relayed, VERSION,
};
use crate::gate::Pass;
use crate::response::Response;
use crate::{Site, Socket, TransportConfig};

/// A request for the Engine.IO path, its head read.
pub(super) struct Request {
    pub request: http::Request<()>,
    /// Bytes read past the head.
    pub rest: Vec<u8>,
    pub peer: SocketAddr,
    pub pass: Pass,
}

/// An error as Engine.IO answers it: its code and message.
#[derive(Debug, Clone, Copy)]
enum Error {
    TransportUnknown,
    SessionUnknown,
    BadHandshakeMethod,
    BadRequest,
    UnsupportedVersion,
}

impl Error {
    fn response(self) -> Response<'static> {
        let body = match self {
            Self::TransportUnknown => r#"{"code":0,"message":"Transport unknown"}"#,
            Self::SessionUnknown => r#"{"code":1,"message":"Session ID unknown"}"#,
            Self::BadHandshakeMethod => r#"{"code":2,"message":"Bad handshake method"}"#,
            Self::BadRequest => r#"{"code":3,"message":"Bad request"}"#,
            Self::UnsupportedVersion => r#"{"code":5,"message":"Unsupported protocol version"}"#,
        };
        Response {
            content_type: "application/json",
            ..Response::text(StatusCode::BAD_REQUEST, body)
        }
    }
}

/// Which transport a request is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Polling,
    WebSocket,
}

/// Serves one request of Engine.IO's path.
pub(super) async fn serve<S: Conn>(
    mut stream: S,
    Request { request, rest, peer, mut pass }: Request,
    engines: &Arc<Engines>,
    (site, config): (&Site, &TransportConfig),
) -> Result<Accepted, AcceptError> {
    if !origin_allowed(request.headers(), &config.allowed_origins) {
        let forbidden = r#"{"code":4,"message":"Forbidden"}"#;
        let response = Response {
            content_type: "application/json",
            ..Response::text(StatusCode::FORBIDDEN, forbidden)
        };
        return refuse(&mut stream, (Refusal::Origin, response), peer).await;
    }
    let query = Query::parse(request.uri().query().unwrap_or(""));
    if query.version.as_deref() != Some(VERSION) {
        return answer(&mut stream, Error::UnsupportedVersion.response()).await;
    }
    let transport = match query.transport.as_deref() {
        Some("polling") => Transport::Polling,
        Some("websocket") => Transport::WebSocket,
        _ => return answer(&mut stream, Error::TransportUnknown.response()).await,
    };
    let link = match &query.sid {
        None => None,
        Some(sid) => match (engines.get(sid), engines.relay_for(sid), transport) {
            (Some(link), _, _) => Some(link),
            (None, Some(relay), Transport::Polling) => {
                let relay = Arc::clone(relay);
                return relayed(stream, (&request, rest), (sid, relay), (engines, config)).await;
            }
            (None, _, _) => return answer(&mut stream, Error::SessionUnknown.response()).await,
        },
    };
    match (request.method().clone(), transport, link) {
        (Method::GET, Transport::Polling, None) => {
            if let Err(full) = pass.upgrade() {
                return refuse(&mut stream, limit(full), peer).await;
            }
            let link = engines.open(None);
            let socket = EngineSocket::from(Arc::clone(&link));
            // The handshake is queued: the answer is at once.
            if let Err(refused) = poll(&mut stream, &link).await {
                return Ok(refused);
            }
            Ok(Accepted::EngineIo(Box::new(EngineOpened { socket, request, peer, pass })))
        }
        (Method::GET, Transport::Polling, Some(link)) => match poll(&mut stream, &link).await {
            Ok(answered) | Err(answered) => Ok(answered),
        },
        (Method::POST, Transport::Polling, Some(link)) => {
            post(stream, &request, rest, &link, (engines, config)).await
        }
        (Method::GET, Transport::WebSocket, link) => {
            let handshake = match check_upgrade(&request, site, config) {
                Ok(handshake) => handshake,
                Err(refusal) => return refuse(&mut stream, refusal, peer).await,
            };
            if link.is_none()
                && let Err(full) = pass.upgrade()
            {
                return refuse(&mut stream, limit(full), peer).await;
            }
            if link.as_ref().is_some_and(|link| link.ended().is_some()) {
                return answer(&mut stream, Error::SessionUnknown.response()).await;
            }
            let max = engines.config().max_payload;
            let websocket =
                config.websocket().max_message_size(Some(max)).max_frame_size(Some(max));
            let checked = Upgrade { request, rest, handshake: Some(handshake), peer, pass };
            let Accepted::Upgraded(upgraded) = upgrade(stream, checked, config, websocket).await?
            else {
                return Err(AcceptError::Io(std::io::Error::other("an upgrade that was not")));
            };
            let super::Upgraded { socket, outgoing, request, peer, pass, .. } = *upgraded;
            let Socket::WebSocket(socket) = socket else {
                return Err(AcceptError::Io(std::io::Error::other("an upgrade that was not")));
            };
            match link {
                // A probe: this request's task runs the WebSocket.
                Some(link) => {
                    if link.websocket(&outgoing).is_ok() {
                        link.run_websocket(socket, &outgoing, config.send_timeout).await;
                    }
                    Ok(Accepted::Answered(StatusCode::SWITCHING_PROTOCOLS))
                }
                // A session straight on a WebSocket: it is run apart, and
                // the server gets the session.
                None => {
                    let link = engines.open(Some(Arc::clone(&outgoing)));
                    link.flush();
                    let engine_socket = EngineSocket::from(Arc::clone(&link));
                    let send_timeout = config.send_timeout;
                    tokio::spawn(async move {
                        link.run_websocket(socket, &outgoing, send_timeout).await;
                    });
                    let opened = EngineOpened { socket: engine_socket, request, peer, pass };
                    Ok(Accepted::EngineIo(Box::new(opened)))
                }
            }
        }
        (_, _, None) => answer(&mut stream, Error::BadHandshakeMethod.response()).await,
        _ => answer(&mut stream, Error::BadRequest.response()).await,
    }
}

/// Answers a long-polling `GET` with the session's next payload, waiting
/// for one; a client that goes away meanwhile leaves it for the next.
/// `Err`: the request was refused (and the connection closed).
async fn poll<S: Conn>(stream: &mut S, link: &Link) -> Result<Accepted, Accepted> {
    let mut answer_rx = match link.poll() {
        Ok(answer) => answer,
        Err(_) => return Err(answered(stream, Error::BadRequest.response()).await),
    };
    let mut scratch = [0u8; 512];
    let payload = loop {
        tokio::select! {
            payload = &mut answer_rx => break payload,
            read = stream.read(&mut scratch) => match read {
                // A client sends nothing more while it waits: what comes
                // is its going away.
                Ok(0) | Err(_) => {
                    link.poll_gone();
                    return Ok(Accepted::Closed);
                }
                Ok(_) => {}
            },
        }
    };
    let Ok(payload) = payload else {
        return Err(answered(stream, Error::BadRequest.response()).await);
    };
    Ok(answered(stream, payload_response(&payload)).await)
}

/// Answers, and says so; a failed write is a client gone.
async fn answered<S: Conn>(stream: &mut S, response: Response<'_>) -> Accepted {
    answer(stream, response).await.unwrap_or(Accepted::Closed)
}

/// Takes a long-polling `POST`: at most `maxPayload` bytes of packets.
async fn post<S: Conn>(
    mut stream: S,
    request: &http::Request<()>,
    mut body: Vec<u8>,
    link: &Link,
    (engines, config): (&Engines, &TransportConfig),
) -> Result<Accepted, AcceptError> {
    let length = match post_length(request, body.len(), engines) {
        Ok(length) => length,
        Err(refused) => {
            if refused.ends_session {
                link.close();
            }
            return answer(&mut stream, refused.response).await;
        }
    };
    if link.begin_post().is_err() {
        return answer(&mut stream, Error::BadRequest.response()).await;
    }
    if let Err(error) = read_body(&mut stream, &mut body, length, config.handshake_timeout).await {
        let _ = link.end_post(None).await;
        return Err(error);
    }
    let taken = match std::str::from_utf8(&body) {
        Ok(text) => link.end_post(Some(text)).await,
        Err(_) => {
            let _ = link.end_post(None).await;
            link.close();
            return answer(&mut stream, Error::BadRequest.response()).await;
        }
    };
    let response = match taken {
        Ok(()) => taken_response(),
        Err(_) => Error::BadRequest.response(),
    };
    answer(&mut stream, response).await
}

/// A `POST` refused before its body is read.
struct PostRefused {
    response: Response<'static>,
    /// The client broke the bound it was given: as Engine.IO does, the
    /// session is over.
    ends_session: bool,
}

/// The length of a `POST`'s body, `read` bytes of which came with its
/// head, if it may be taken.
fn post_length(
    request: &http::Request<()>,
    read: usize,
    engines: &Engines,
) -> Result<usize, PostRefused> {
    let length = request.headers().get(CONTENT_LENGTH).and_then(|value| value.to_str().ok());
    let Some(length) = length.and_then(|value| value.trim().parse::<usize>().ok()) else {
        let why = "a post needs Content-Length\n";
        let response = Response::text(StatusCode::LENGTH_REQUIRED, why);
        return Err(PostRefused { response, ends_session: false });
    };
    if length > engines.config().max_payload || read > length {
        let why = "the payload is larger than maxPayload\n";
        let response = Response::text(StatusCode::PAYLOAD_TOO_LARGE, why);
        return Err(PostRefused { response, ends_session: true });
    }
    Ok(length)
}

/// The answer to a `POST` taken.
fn taken_response() -> Response<'static> {
    Response { content_type: "text/html", ..Response::text(StatusCode::OK, "ok") }
}

/// The answer to a `GET` with the session's next payload.
fn payload_response(payload: &str) -> Response<'_> {
    Response {
        content_type: "text/plain; charset=UTF-8",
        ..Response::text(StatusCode::OK, payload)
    }
}

/// Serves a long-polling request for a session another server holds:
/// reads it here, and answers what `relay` brings back from there.
async fn relayed<S: Conn>(
    mut stream: S,
    (request, mut body): (&http::Request<()>, Vec<u8>),
    (sid, relay): (&str, Arc<dyn Relay>),
    (engines, config): (&Engines, &TransportConfig),
) -> Result<Accepted, AcceptError> {
    let relayed = match *request.method() {
        Method::GET => Relayed::Poll,
        Method::POST => {
            let length = match post_length(request, body.len(), engines) {
                Ok(length) => length,
                Err(refused) => {
                    if refused.ends_session {
                        relay.relay(sid.to_owned(), Relayed::Broken).await;
                    }
                    return answer(&mut stream, refused.response).await;
                }
            };
            read_body(&mut stream, &mut body, length, config.handshake_timeout).await?;
            match String::from_utf8(body) {
                Ok(text) => Relayed::Post(text),
                Err(_) => {
                    relay.relay(sid.to_owned(), Relayed::Broken).await;
                    return answer(&mut stream, Error::BadRequest.response()).await;
                }
            }
        }
        _ => return answer(&mut stream, Error::BadRequest.response()).await,
    };
    let mut relaying = relay.relay(sid.to_owned(), relayed);
    let mut scratch = [0u8; 512];
    let brought = loop {
        tokio::select! {
            brought = &mut relaying => break brought,
            read = stream.read(&mut scratch) => match read {
                // As a local `GET`'s: what comes is the client going
                // away, which dropping the relay says there.
                Ok(0) | Err(_) => return Ok(Accepted::Closed),
                Ok(_) => {}
            },
        }
    };
    let response = match &brought {
        RelayAnswer::Payload(payload) => payload_response(payload),
        RelayAnswer::Taken => taken_response(),
        RelayAnswer::Refused => Error::BadRequest.response(),
        RelayAnswer::Unknown => Error::SessionUnknown.response(),
        RelayAnswer::Unavailable => {
            let why = "the session's server cannot be reached now\n";
            Response::text(StatusCode::SERVICE_UNAVAILABLE, why)
        }
    };
    Ok(answered(&mut stream, response).await)
}

/// The parameters of an Engine.IO request.
#[derive(Debug, Default)]
struct Query {
    version: Option<String>,
    transport: Option<String>,
    sid: Option<String>,
}

impl Query {
    fn parse(query: &str) -> Self {
        let mut parsed = Self::default();
        for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
            let value = Some(value.to_owned());
            match key {
                "EIO" => parsed.version = value,
                "transport" => parsed.transport = value,
                "sid" => parsed.sid = value,
                _ => {}
            }
        }
        parsed
    }
}
