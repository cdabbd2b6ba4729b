//! The requests of Engine.IO's path (`/socket.io/?EIO=4&transport=…`):
//! a `GET` without `sid` opens a session (on long-polling, or on a
//! WebSocket if it upgrades); with `sid`, a `GET` waits for the session's
//! next payload, a `POST` carries the client's packets, and a WebSocket
//! upgrade probes and takes over the session. Errors are answered as the
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
use crate::engineio::{EngineSocket, Engines, Link, VERSION};
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
        Some(sid) => match engines.get(sid) {
            Some(link) => Some(link),
            None => return answer(&mut stream, Error::SessionUnknown.response()).await,
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
    let response = Response {
        content_type: "text/plain; charset=UTF-8",
        ..Response::text(StatusCode::OK, &payload)
    };
    Ok(answered(stream, response).await)
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
    let length = request.headers().get(CONTENT_LENGTH).and_then(|value| value.to_str().ok());
    let Some(length) = length.and_then(|value| value.trim().parse::<usize>().ok()) else {
        let why = "a post needs Content-Length\n";
        return answer(&mut stream, Response::text(StatusCode::LENGTH_REQUIRED, why)).await;
    };
    if length > engines.config().max_payload || body.len() > length {
        // As Engine.IO does: the session is over, its client broke the
        // bound it was given.
        link.close();
        let why = "the payload is larger than maxPayload\n";
        return answer(&mut stream, Response::text(StatusCode::PAYLOAD_TOO_LARGE, why)).await;
    }
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
        Ok(()) => Response { content_type: "text/html", ..Response::text(StatusCode::OK, "ok") },
        Err(_) => Error::BadRequest.response(),
    };
    answer(&mut stream, response).await
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
