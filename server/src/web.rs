//! The browser chat page, embedded in the binary so the server needs no
//! files and no external URL.

use chat_transport::{Page, Site};

/// The site the server answers over HTTP.
pub(crate) fn site() -> Site {
    let html = "text/html; charset=utf-8";
    Site::new("/ws", Some(chat_protocol::SUBPROTOCOL))
        .page(
            "/",
            Page {
                content_type: html,
                body: include_bytes!("../web/index.html"),
            },
        )
        .page(
            "/index.html",
            Page {
                content_type: html,
                body: include_bytes!("../web/index.html"),
            },
        )
        .page(
            "/app.js",
            Page {
                content_type: "text/javascript; charset=utf-8",
                body: include_bytes!("../web/app.js"),
            },
        )
        .page(
            "/style.css",
            Page {
                content_type: "text/css; charset=utf-8",
                body: include_bytes!("../web/style.css"),
            },
        )
        .page(
            "/favicon.svg",
            Page {
                content_type: "image/svg+xml",
                body: include_bytes!("../web/favicon.svg"),
            },
        )
        .page(
            "/healthz",
            Page {
                content_type: "text/plain; charset=utf-8",
                body: b"ok\n",
            },
        )
}
