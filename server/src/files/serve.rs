//! `GET /files/{id}`: a stored file, for a session that can see a message
//! it came with.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use chat_core::{Attachment, SessionToken};
use chat_transport::http::StatusCode;
use chat_transport::{Dynamic, DynamicAnswer};
use tokio::sync::{mpsc, oneshot};

use super::Uploads;
use crate::hub::Input;
use crate::metrics::Metrics;

/// Whether a type is shown in the page (inline) rather than downloaded.
fn inline(mime: &str) -> bool {
    matches!(mime, "image/png" | "image/jpeg" | "image/gif" | "image/webp")
        || mime.starts_with("audio/")
        || mime.starts_with("video/")
}

/// `Content-Disposition` for a file named `name` (RFC 6266: an ASCII
/// fallback and the UTF-8 name percent-encoded).
fn disposition(mime: &str, name: &str) -> String {
    let kind = if inline(mime) { "inline" } else { "attachment" };
    let ascii: String = name
        .chars()
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// `GET /files/{id}`: the file, for a session that can see a message it
/// came with (`Authorization: Bearer <session token>`).
#[derive(Debug)]
pub(crate) struct FileServer {
    pub uploads: Option<Uploads>,
    /// Weak, so the site (alive as long as the server) does not keep the
    /// hub from stopping when the connections are gone.
    pub hub: mpsc::WeakSender<Input>,
    pub metrics: Arc<Metrics>,
}

fn refused(status: StatusCode, why: &'static str) -> DynamicAnswer {
    let mut headers = Vec::new();
    if status == StatusCode::UNAUTHORIZED {
        headers.push(("WWW-Authenticate", "Bearer".to_owned()));
    }
    DynamicAnswer::Text(status, why.into(), headers)
}

impl Dynamic for FileServer {
    fn get(
        &self,
        rest: String,
        authorization: Option<String>,
    ) -> Pin<Box<dyn Future<Output = DynamicAnswer> + Send>> {
        let uploads = self.uploads.clone();
        let hub = self.hub.clone();
        let metrics = Arc::clone(&self.metrics);
        Box::pin(async move {
            let Some(uploads) = uploads else {
                return refused(StatusCode::NOT_FOUND, "this server takes no uploads\n");
            };
            let Some(path) = uploads.path(&rest) else {
                return refused(StatusCode::NOT_FOUND, "no such file\n");
            };
            let token = authorization
                .as_deref()
                .and_then(|value| value.strip_prefix("Bearer "))
                .and_then(|token| SessionToken::parse(token.trim()).ok());
            let Some(token) = token else {
                return refused(
                    StatusCode::UNAUTHORIZED,
                    "send your session token: Authorization: Bearer <session>\n",
                );
            };
            let (reply, answer) = oneshot::channel();
            let Some(hub) = hub.upgrade() else {
                return refused(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping\n");
            };
            if hub.send(Input::File { token, file: rest, reply }).await.is_err() {
                return refused(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping\n");
            }
            // The same answer for a file that does not exist and one this
            // session may not see: which files exist is not for outsiders.
            let Ok(Some(attachment)) = answer.await else {
                return refused(StatusCode::NOT_FOUND, "no such file in your rooms\n");
            };
            let answer = serve(&path, &attachment).await;
            if let DynamicAnswer::File { len, .. } = &answer {
                metrics.download_bytes.inc_by(*len);
            }
            answer
        })
    }
}

async fn serve(path: &Path, attachment: &Attachment) -> DynamicAnswer {
    let file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(err) => {
            tracing::error!(%err, path = %path.display(), "a stored file is missing");
            return refused(StatusCode::NOT_FOUND, "the file is gone\n");
        }
    };
    let len = match file.metadata().await {
        Ok(meta) => meta.len(),
        Err(_) => return refused(StatusCode::NOT_FOUND, "the file is gone\n"),
    };
    let mime = &*attachment.mime;
    DynamicAnswer::File {
        file,
        len,
        content_type: mime.to_owned(),
        headers: vec![
            ("Content-Disposition", disposition(mime, &attachment.name)),
            // Opened on its own, a file runs nothing (an uploaded page
            // would otherwise run as this site).
            ("Content-Security-Policy", "sandbox".to_owned()),
            // Content-addressed: the bytes behind an id never change.
            ("ETag", format!("\"{}\"", attachment.id)),
        ],
    }
}

/// The `Arc` the site holds.
pub(crate) fn server(
    uploads: Option<Uploads>,
    hub: &mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
) -> Arc<dyn Dynamic> {
    Arc::new(FileServer { uploads, hub: hub.downgrade(), metrics })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_are_safe_for_any_name() {
        assert_eq!(
            disposition("image/png", "cat.png"),
            "inline; filename=\"cat.png\"; filename*=UTF-8''cat.png"
        );
        let odd = disposition("text/html", "a\"b\r\n<é>.html");
        assert!(odd.starts_with("attachment; filename=\"a_b__"), "{odd}");
        assert!(odd.ends_with("filename*=UTF-8''a%22b%0D%0A%3C%C3%A9%3E.html"), "{odd}");
        assert!(!odd.contains('\r') && !odd.contains('\n'));
    }
}
