use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::StatusCode;

/// One static resource, embedded in the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// The `Content-Type` it is served with.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

/// Content decided at request time, under a path prefix: files the
/// application stores, say. The transport parses the request and streams
/// the answer; the application only says what to send.
pub trait Dynamic: Send + Sync + std::fmt::Debug {
    /// Answers a `GET` (or `HEAD`) of `rest`, the path after the prefix,
    /// with the request's `Authorization` header if it had one.
    fn get(
        &self,
        rest: String,
        authorization: Option<String>,
    ) -> Pin<Box<dyn Future<Output = DynamicAnswer> + Send>>;
}

/// What a [`Dynamic`] answers.
#[derive(Debug)]
pub enum DynamicAnswer {
    /// `200` with the first `len` bytes of `file` as the body, streamed.
    File {
        /// The open file.
        file: tokio::fs::File,
        /// How many bytes to send.
        len: u64,
        /// The `Content-Type`.
        content_type: String,
        /// More headers (`Content-Disposition`...).
        headers: Vec<(&'static str, String)>,
    },
    /// A status with a short plain-text body (an error's explanation, a
    /// health check's word), and headers.
    Text(StatusCode, Cow<'static, str>, Vec<(&'static str, String)>),
    /// `200` with a body made for this request, of its own type (metrics).
    Body {
        /// The `Content-Type`.
        content_type: &'static str,
        /// The body.
        body: String,
        /// More headers.
        headers: Vec<(&'static str, String)>,
    },
}

/// What a server answers over HTTP: static pages by path, dynamic content
/// under prefixes, and the path and subprotocol of its WebSocket endpoint.
#[derive(Debug, Clone)]
pub struct Site {
    pages: BTreeMap<&'static str, Page>,
    dynamic: Vec<(&'static str, Arc<dyn Dynamic>)>,
    /// `None` for a site of pages alone.
    websocket_path: Option<&'static str>,
    /// Other paths that upgrade, by prefix (each ending with `/`), with
    /// the largest message each takes if not the configured one.
    websocket_prefixes: Vec<(&'static str, Option<usize>)>,
    subprotocol: Option<&'static str>,
    /// The HTTP fallback's streams open on the upgrading paths.
    event_streams: Arc<crate::Streams>,
    /// The path Engine.IO is served under (`/socket.io/`), and its
    /// sessions.
    engineio: Option<(&'static str, Arc<crate::engineio::Engines>)>,
}

impl Site {
    /// A site with no pages whose WebSocket endpoint is `websocket_path`.
    /// When a client offers `subprotocol` in `Sec-WebSocket-Protocol`, the
    /// upgrade selects it; clients offering none are accepted too.
    pub fn new(websocket_path: &'static str, subprotocol: Option<&'static str>) -> Self {
        Self { websocket_path: Some(websocket_path), subprotocol, ..Self::pages_only() }
    }

    /// A site with no pages yet where nothing upgrades (a metrics port).
    pub fn pages_only() -> Self {
        Self {
            pages: BTreeMap::new(),
            dynamic: Vec::new(),
            websocket_path: None,
            websocket_prefixes: Vec::new(),
            subprotocol: None,
            event_streams: Arc::default(),
            engineio: None,
        }
    }

    /// Keeps the HTTP fallback's streams in `streams` (to name them for a
    /// cluster node, and forward requests for other nodes' streams).
    pub fn with_event_streams(mut self, streams: Arc<crate::Streams>) -> Self {
        self.event_streams = streams;
        self
    }

    /// Serves Engine.IO (what Socket.IO clients speak) at `path` (which
    /// ends with `/`: `/socket.io/`), its sessions kept in `engines`.
    pub fn with_engineio(
        mut self,
        path: &'static str,
        engines: Arc<crate::engineio::Engines>,
    ) -> Self {
        self.engineio = Some((path, engines));
        self
    }

    /// The Engine.IO sessions, if a request for `path` is one of theirs.
    pub(crate) fn engineio(&self, path: &str) -> Option<&Arc<crate::engineio::Engines>> {
        self.engineio.as_ref().filter(|(at, _)| path == *at).map(|(_, engines)| engines)
    }

    /// The HTTP fallback's streams.
    pub fn event_streams(&self) -> &Arc<crate::Streams> {
        &self.event_streams
    }

    /// Upgrades the paths under `prefix` (which ends with `/`) too, with the
    /// same checks; the server tells them apart by the request's path.
    /// Their messages and frames may be up to `max_message_bytes` (`None`:
    /// [`TransportConfig::max_message_bytes`](crate::TransportConfig)).
    pub fn websocket_prefix(
        mut self,
        prefix: &'static str,
        max_message_bytes: Option<usize>,
    ) -> Self {
        self.websocket_prefixes.push((prefix, max_message_bytes));
        self
    }

    /// Serves `page` at `path` (an exact match, query string ignored).
    pub fn page(mut self, path: &'static str, page: Page) -> Self {
        self.pages.insert(path, page);
        self
    }

    /// Answers paths under `prefix` (which ends with `/`) with `handler`.
    pub fn dynamic(mut self, prefix: &'static str, handler: Arc<dyn Dynamic>) -> Self {
        self.dynamic.push((prefix, handler));
        self
    }

    pub(crate) fn lookup(&self, path: &str) -> Option<&Page> {
        self.pages.get(path)
    }

    /// The handler for `path` and the rest of the path after its prefix.
    pub(crate) fn lookup_dynamic(&self, path: &str) -> Option<(&Arc<dyn Dynamic>, String)> {
        self.dynamic.iter().find_map(|(prefix, handler)| {
            path.strip_prefix(prefix).map(|rest| (handler, rest.to_owned()))
        })
    }

    /// Whether a request for `path` may upgrade to a WebSocket.
    pub(crate) fn upgrades(&self, path: &str) -> bool {
        Some(path) == self.websocket_path
            || self.websocket_prefixes.iter().any(|(prefix, _)| path.starts_with(prefix))
    }

    /// The largest message a WebSocket at `path` takes, if not the
    /// configured one.
    pub(crate) fn message_limit(&self, path: &str) -> Option<usize> {
        let mut prefixes = self.websocket_prefixes.iter();
        prefixes.find(|(prefix, _)| path.starts_with(prefix)).and_then(|(_, limit)| *limit)
    }

    pub(crate) fn subprotocol(&self) -> Option<&'static str> {
        self.subprotocol
    }
}
