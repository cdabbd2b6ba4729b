use std::collections::BTreeMap;

/// One static resource, embedded in the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// The `Content-Type` it is served with.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

/// What a server answers over HTTP: static pages by path, and the path and
/// subprotocol of its WebSocket endpoint.
#[derive(Debug, Clone)]
pub struct Site {
    pages: BTreeMap<&'static str, Page>,
    websocket_path: &'static str,
    subprotocol: Option<&'static str>,
}

impl Site {
    /// A site with no pages whose WebSocket endpoint is `websocket_path`.
    /// When a client offers `subprotocol` in `Sec-WebSocket-Protocol`, the
    /// upgrade selects it; clients offering none are accepted too.
    pub fn new(websocket_path: &'static str, subprotocol: Option<&'static str>) -> Self {
        Self { pages: BTreeMap::new(), websocket_path, subprotocol }
    }

    /// Serves `page` at `path` (an exact match, query string ignored).
    pub fn page(mut self, path: &'static str, page: Page) -> Self {
        self.pages.insert(path, page);
        self
    }

    pub(crate) fn lookup(&self, path: &str) -> Option<&Page> {
        self.pages.get(path)
    }

    pub(crate) fn websocket_path(&self) -> &str {
        self.websocket_path
    }

    pub(crate) fn subprotocol(&self) -> Option<&'static str> {
        self.subprotocol
    }
}
