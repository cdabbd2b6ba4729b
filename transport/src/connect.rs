use http::{HeaderValue, StatusCode, Uri};
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
    /// The TCP connection failed.
    #[error("cannot connect to {addr}: {source}")]
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
}

fn body_suffix(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() { String::new() } else { format!(": {body}") }
}

/// Opens a WebSocket to `url` (`ws://host[:port]/path`), offering
/// `subprotocol` if given.
///
/// # Errors
/// A bad URL, a failed TCP connection, or an upgrade the server refused,
/// reported with the status and body it answered.
pub async fn connect(
    url: &str,
    subprotocol: Option<&str>,
    config: &TransportConfig,
) -> Result<WebSocketStream<TcpStream>, ConnectError> {
    let bad = |why: &str| ConnectError::BadUrl { url: url.to_owned(), why: why.to_owned() };
    let uri: Uri = url.parse().map_err(|err: http::uri::InvalidUri| bad(&err.to_string()))?;
    match uri.scheme_str() {
        Some("ws") => {}
        Some("wss") => return Err(bad("wss:// is not supported yet; use ws://")),
        _ => return Err(bad("the scheme must be ws://")),
    }
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let addr = format!("{host}:{port}");
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|source| ConnectError::Io { addr: addr.clone(), source })?;
    stream.set_nodelay(true).map_err(|source| ConnectError::Io { addr, source })?;
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
            let body = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            Err(ConnectError::Refused { status: response.status(), body })
        }
        Err(err) => Err(ConnectError::Handshake(err.to_string())),
    }
}
