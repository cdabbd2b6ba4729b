//! The browser chat page, embedded in the binary so the server needs no
//! files and no external URL.

use std::sync::Arc;

use chat_transport::{Dynamic, Page, Site};

/// The site the server answers over HTTP; `files` answers `/files/{id}`.
pub(crate) fn site(files: Arc<dyn Dynamic>) -> Site {
    const INDEX: &[u8] = include_bytes!("../web/index.html");
    let page = |content_type, body| Page { content_type, body };
    let script = |body| page("text/javascript; charset=utf-8", body);
    let mut site = Site::new("/ws", Some(chat_protocol::SUBPROTOCOL))
        .page("/", page("text/html; charset=utf-8", INDEX))
        .page("/index.html", page("text/html; charset=utf-8", INDEX))
        .page("/style.css", page("text/css; charset=utf-8", include_bytes!("../web/style.css")))
        .page("/favicon.svg", page("image/svg+xml", include_bytes!("../web/favicon.svg")))
        .page("/stats", page("text/html; charset=utf-8", include_bytes!("../web/stats.html")))
        .page("/healthz", page("text/plain; charset=utf-8", b"ok\n"));
    for (path, body) in SCRIPTS {
        site = site.page(path, script(body));
    }
    site.dynamic("/files/", files)
}

/// The pages' ES modules (server/web/js), served as they are.
const SCRIPTS: [(&str, &[u8]); 12] = [
    ("/js/main.js", include_bytes!("../web/js/main.js")),
    ("/js/chat.js", include_bytes!("../web/js/chat.js")),
    ("/js/common.js", include_bytes!("../web/js/common.js")),
    ("/js/composer.js", include_bytes!("../web/js/composer.js")),
    ("/js/connection.js", include_bytes!("../web/js/connection.js")),
    ("/js/files.js", include_bytes!("../web/js/files.js")),
    ("/js/notify.js", include_bytes!("../web/js/notify.js")),
    ("/js/pacer.js", include_bytes!("../web/js/pacer.js")),
    ("/js/session.js", include_bytes!("../web/js/session.js")),
    ("/js/state.js", include_bytes!("../web/js/state.js")),
    ("/js/stats.js", include_bytes!("../web/js/stats.js")),
    ("/js/views.js", include_bytes!("../web/js/views.js")),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_of_the_page_is_served() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/js");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
            })
            .unwrap_or_default();
        files.sort();
        let mut served: Vec<String> =
            SCRIPTS.iter().map(|(path, _)| path.trim_start_matches("/js/").to_owned()).collect();
        served.sort();
        assert_eq!(files, served, "server/web/js and SCRIPTS differ");
    }
}
