use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Headers every HTTP answer of ours carries (the policy first: a page
/// with a policy of its own replaces that line): nothing we serve may be
/// framed, sniffed into another type, or load anything from elsewhere.
/// Images, audio and video may also come from `blob:` URLs the page made
/// of files it fetched.
const SECURITY_HEADERS: &str = "Content-Security-Policy: default-src 'self'; \
img-src 'self' blob:; media-src 'self' blob:\r\n\
X-Content-Type-Options: nosniff\r\n\
X-Frame-Options: DENY\r\n\
Referrer-Policy: no-referrer\r\n";

/// A complete HTTP/1.1 answer that closes the connection.
#[derive(Debug)]
pub(crate) struct Response<'a> {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub content_type: &'static str,
    pub body: &'a [u8],
    /// `HEAD`: send the headers only.
    pub head_only: bool,
}

impl<'a> Response<'a> {
    pub(crate) fn text(status: StatusCode, body: &'a str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes(),
            head_only: false,
        }
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The status line and headers for a body of `len` bytes.
    pub(crate) fn head(&self, content_type: &str, len: u64) -> String {
        let reason = self.status.canonical_reason().unwrap_or("");
        // A page that brings its own policy gets it instead of ours.
        let own_policy = self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("Content-Security-Policy"));
        let security = match own_policy {
            true => SECURITY_HEADERS.split_once("\r\n").map_or("", |(_, rest)| rest),
            false => SECURITY_HEADERS,
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\
             Cache-Control: no-cache\r\nConnection: close\r\n{security}",
            self.status.as_u16(),
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let len = u64::try_from(self.body.len()).unwrap_or(u64::MAX);
        let mut bytes = self.head(self.content_type, len).into_bytes();
        if !self.head_only {
            bytes.extend_from_slice(self.body);
        }
        bytes
    }
}

/// The head of a `200` answer whose body runs until the connection closes
/// (an event stream), with `headers`.
pub(crate) fn stream_head(content_type: &str, headers: &[(&str, &str)]) -> String {
    let mut head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n{SECURITY_HEADERS}"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Writes `response`, then closes without losing it: the write side is shut
/// first and what the peer still sends is read and dropped for a moment, so
/// the kernel does not answer unread bytes with a reset that could destroy
/// the response before the peer reads it.
pub(crate) async fn respond_and_close<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    response: &Response<'_>,
) -> std::io::Result<()> {
    stream.write_all(&response.encode()).await?;
    stream.shutdown().await?;
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut total = 0usize;
        while total < 256 * 1024 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    Ok(())
}
