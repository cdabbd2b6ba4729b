//! `--socketio-page DIR`: a directory of the operator's pages served
//! under `/classic/` (`index.html` for a directory), such as the Socket.IO
//! tutorial's chat page, which loads `/socket.io/socket.io.js` and talks
//! to this server as it did to a Node one.

use std::borrow::Cow;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use chat_transport::http::StatusCode;
use chat_transport::{Dynamic, DynamicAnswer};

/// Where the pages are served.
pub(crate) const PREFIX: &str = "/classic/";

/// What the operator's pages may do: their own inline scripts and styles
/// (the tutorial's page is one file), and scripts and styles from `https:`
/// sites (it loaded jQuery from a CDN), besides this server's own.
const POLICY: &str = "default-src 'self'; script-src 'self' 'unsafe-inline' https:; \
style-src 'self' 'unsafe-inline' https:; img-src 'self' data: https:";

/// The pages of one directory.
#[derive(Debug)]
pub(crate) struct PageDir {
    pub dir: PathBuf,
}

impl Dynamic for PageDir {
    fn get(
        &self,
        rest: String,
        _authorization: Option<String>,
    ) -> Pin<Box<dyn Future<Output = DynamicAnswer> + Send>> {
        let path = file_of(&rest).map(|file| self.dir.join(file));
        Box::pin(async move {
            let not_found =
                || DynamicAnswer::Text(StatusCode::NOT_FOUND, Cow::Borrowed("not found\n"), vec![]);
            let Some(path) = path else { return not_found() };
            let Ok(file) = tokio::fs::File::open(&path).await else { return not_found() };
            let Ok(meta) = file.metadata().await else { return not_found() };
            if !meta.is_file() {
                return not_found();
            }
            let content_type = content_type(&path).to_owned();
            let headers = vec![("Content-Security-Policy", POLICY.to_owned())];
            DynamicAnswer::File { file, len: meta.len(), content_type, headers }
        })
    }
}

/// The file a request's path (after the prefix) names, relative to the
/// directory: `index.html` for the directory itself; `None` for anything
/// that could step out of it or at a hidden file.
fn file_of(rest: &str) -> Option<PathBuf> {
    let rest = match rest {
        "" => "index.html".to_owned(),
        dir if dir.ends_with('/') => format!("{dir}index.html"),
        file => file.to_owned(),
    };
    let mut path = PathBuf::new();
    for part in rest.split('/') {
        let plain =
            !part.is_empty() && !part.starts_with('.') && !part.contains(['\\', '%', '\0', ':']);
        if !plain {
            return None;
        }
        path.push(part);
    }
    Some(path)
}

fn content_type(path: &std::path::Path) -> &'static str {
    match path.extension().and_then(|ext| ext.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_directory() {
        assert_eq!(file_of(""), Some(PathBuf::from("index.html")));
        assert_eq!(file_of("a/"), Some(PathBuf::from("a/index.html")));
        assert_eq!(file_of("a/b.js"), Some(PathBuf::from("a/b.js")));
        for bad in ["../x", "a/../../x", ".env", "a//b", "a\\..\\b", "%2e%2e/x", "/etc/passwd"] {
            assert_eq!(file_of(bad), None, "{bad}");
        }
    }
}
