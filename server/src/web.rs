//! The browser chat page, embedded in the binary so the server needs no
//! files and no external URL.

use std::sync::Arc;

use chat_transport::{Dynamic, Page, Site};

/// The site the server answers over HTTP; `files` answers `/files/{id}`.
pub(crate) fn site(files: Arc<dyn Dynamic>) -> Site {
    const INDEX: &[u8] = include_bytes!("../web/index.html");
    let page = |content_type, body| Page { content_type, body };
    Site::new("/ws", Some(chat_protocol::SUBPROTOCOL))
        .page("/", page("text/html; charset=utf-8", INDEX))
        .page("/index.html", page("text/html; charset=utf-8", INDEX))
        .page("/app.js", page("text/javascript; charset=utf-8", include_bytes!("../web/app.js")))
        .page("/style.css", page("text/css; charset=utf-8", include_bytes!("../web/style.css")))
        .page("/favicon.svg", page("image/svg+xml", include_bytes!("../web/favicon.svg")))
        .page(
            "/common.js",
            page("text/javascript; charset=utf-8", include_bytes!("../web/common.js")),
        )
        .page("/stats", page("text/html; charset=utf-8", include_bytes!("../web/stats.html")))
        .page(
            "/stats.js",
            page("text/javascript; charset=utf-8", include_bytes!("../web/stats.js")),
        )
        .page("/healthz", page("text/plain; charset=utf-8", b"ok\n"))
        .dynamic("/files/", files)
}
