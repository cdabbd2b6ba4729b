//! The browser chat page, embedded in the binary so the server needs no
//! files and no external URL.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chat_transport::http::StatusCode;
use chat_transport::{Dynamic, DynamicAnswer, Page, Site};

use crate::cluster::Health;
use crate::metrics::{self, Metrics};
use crate::readiness::Readiness;

/// The site the server answers over HTTP; `files` answers `/files/{id}`,
/// `health` (in cluster mode) what `/healthz` says, `readiness` what
/// `/readyz` says, `metrics` `/metrics`; shared documents take messages of
/// up to `doc_frame_bytes`.
pub(crate) fn site(
    files: Arc<dyn Dynamic>,
    health: Option<Health>,
    (readiness, metrics): (Readiness, MetricsPage),
    doc_frame_bytes: usize,
) -> Site {
    const INDEX: &[u8] = include_bytes!("../web/index.html");
    let page = |content_type, body| Page { content_type, body };
    let script = |body| page("text/javascript; charset=utf-8", body);
    let mut site = Site::new("/ws", Some(chat_protocol::SUBPROTOCOL))
        .websocket_prefix(crate::docs::PREFIX, Some(doc_frame_bytes))
        .page("/", page("text/html; charset=utf-8", INDEX))
        .page("/index.html", page("text/html; charset=utf-8", INDEX))
        .page("/style.css", page("text/css; charset=utf-8", include_bytes!("../web/style.css")))
        .page("/favicon.svg", page("image/svg+xml", include_bytes!("../web/favicon.svg")))
        .page("/stats", page("text/html; charset=utf-8", include_bytes!("../web/stats.html")));
    site = probes(site, readiness).dynamic("/metrics", Arc::new(metrics));
    site = match health {
        Some(health) => site.dynamic("/healthz", Arc::new(Probe::healthz(health))),
        None => site.page("/healthz", page("text/plain; charset=utf-8", b"ok\n")),
    };
    for (path, body) in SCRIPTS {
        site = site.page(path, script(body));
    }
    // Yjs and y-websocket, bundled by scripts/build-vendor (shared documents).
    site = site.page("/js/yjs.js", script(include_bytes!("../web/vendor/yjs.js")));
    // The official Socket.IO client, for pages written for a Socket.IO
    // server (`<script src="/socket.io/socket.io.js">`): socket.io-client's
    // own dist/socket.io.min.js, pinned by server/web-vendor's lock file.
    const SOCKET_IO: &[u8] = include_bytes!("../web/vendor/socket.io.min.js");
    site = site.page("/socket.io/socket.io.js", script(SOCKET_IO));
    site = site.page("/socket.io/socket.io.min.js", script(SOCKET_IO));
    site.dynamic("/files/", files)
}

/// The site of `--metrics-listen`: `/metrics`, and the probes an
/// orchestrator may prefer to ask on a private port.
pub(crate) fn metrics_site(readiness: Readiness, metrics: MetricsPage) -> Site {
    probes(Site::pages_only(), readiness).dynamic("/metrics", Arc::new(metrics))
}

/// `/livez` (the process answers: for an orchestrator's liveness probe,
/// which must not fail for what a restart would not mend, like Redis or
/// storage) and `/readyz`.
fn probes(site: Site, readiness: Readiness) -> Site {
    let ok = Page { content_type: "text/plain; charset=utf-8", body: b"ok\n" };
    site.page("/livez", ok).dynamic("/readyz", Arc::new(Probe::readyz(readiness)))
}

/// `GET /metrics`: the metrics in the OpenMetrics text format. With a
/// token set, only to a scraper that sends it (`Authorization: Bearer`);
/// without one, only where `open` (the `--metrics-listen` port): on the
/// chat's own port it is off, `404`.
#[derive(Debug)]
pub(crate) struct MetricsPage {
    pub metrics: Arc<Metrics>,
    pub token: Option<String>,
    pub open: bool,
}

impl Dynamic for MetricsPage {
    fn get(
        &self,
        rest: String,
        authorization: Option<String>,
    ) -> Pin<Box<dyn Future<Output = DynamicAnswer> + Send>> {
        let no_store = || vec![("Cache-Control", "no-store".to_owned())];
        let shown = authorization.as_deref().and_then(|value| value.strip_prefix("Bearer "));
        let answer = match &self.token {
            _ if !rest.is_empty() => {
                DynamicAnswer::Text(StatusCode::NOT_FOUND, "not found\n".into(), no_store())
            }
            Some(token)
                if !shown.is_some_and(|shown| crate::auth::same_secret(shown.trim(), token)) =>
            {
                let mut headers = no_store();
                headers.push(("WWW-Authenticate", "Bearer".to_owned()));
                let why = "send the metrics token: Authorization: Bearer <token>\n";
                DynamicAnswer::Text(StatusCode::UNAUTHORIZED, why.into(), headers)
            }
            None if !self.open => {
                let why = "metrics are off on this port (see --metrics-listen, --metrics-token)\n";
                DynamicAnswer::Text(StatusCode::NOT_FOUND, why.into(), no_store())
            }
            _ => DynamicAnswer::Body {
                content_type: metrics::CONTENT_TYPE,
                body: self.metrics.render(),
                headers: no_store(),
            },
        };
        Box::pin(std::future::ready(answer))
    }
}

/// A health endpoint: `200` with `ok`, or `503` with what `check` says is
/// wrong. `/healthz` in cluster mode (`redis unavailable: ...`: the node
/// serves what it can meanwhile, a load balancer may prefer another), and
/// `/readyz` (`not ready: ...`: draining, storage failing, Redis down).
struct Probe {
    ok: &'static str,
    check: Box<dyn Fn() -> Option<String> + Send + Sync>,
}

impl Probe {
    /// `/healthz` in cluster mode.
    fn healthz(health: Health) -> Self {
        let check = move || health.down().map(|why| format!("redis unavailable: {why}\n"));
        Self { ok: "ok\n", check: Box::new(check) }
    }

    /// `/readyz`.
    fn readyz(readiness: Readiness) -> Self {
        let check = move || readiness.not_ready().map(|why| format!("not ready: {why}\n"));
        Self { ok: "ready\n", check: Box::new(check) }
    }
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe").field("ok", &self.ok).finish_non_exhaustive()
    }
}

impl Dynamic for Probe {
    fn get(
        &self,
        rest: String,
        _authorization: Option<String>,
    ) -> Pin<Box<dyn Future<Output = DynamicAnswer> + Send>> {
        let no_store = vec![("Cache-Control", "no-store".to_owned())];
        let answer = match (rest.is_empty(), (self.check)()) {
            (false, _) => {
                DynamicAnswer::Text(StatusCode::NOT_FOUND, "not found\n".into(), no_store)
            }
            (true, None) => DynamicAnswer::Text(StatusCode::OK, self.ok.into(), no_store),
            (true, Some(why)) => {
                DynamicAnswer::Text(StatusCode::SERVICE_UNAVAILABLE, why.into(), no_store)
            }
        };
        Box::pin(std::future::ready(answer))
    }
}

/// The pages' ES modules (server/web/js), served as they are.
const SCRIPTS: [(&str, &[u8]); 14] = [
    ("/js/main.js", include_bytes!("../web/js/main.js")),
    ("/js/markdown.js", include_bytes!("../web/js/markdown.js")),
    ("/js/chat.js", include_bytes!("../web/js/chat.js")),
    ("/js/common.js", include_bytes!("../web/js/common.js")),
    ("/js/composer.js", include_bytes!("../web/js/composer.js")),
    ("/js/connection.js", include_bytes!("../web/js/connection.js")),
    ("/js/docs.js", include_bytes!("../web/js/docs.js")),
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
