use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The most headers a request may have; more get `431`.
const MAX_HEADERS: usize = 64;

/// The outcome of reading a request head.
#[derive(Debug)]
pub(crate) enum Head {
    /// A complete request and the bytes read after its head.
    Request(Box<Request<()>>, Vec<u8>),
    /// The request is malformed or too large: answer with this status.
    Refuse(StatusCode, &'static str),
    /// The peer closed before sending a complete head.
    Closed,
}

/// Reads one request head of at most `max_bytes`.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    max_bytes: usize,
) -> std::io::Result<Head> {
    let mut buf = Vec::with_capacity(1024.min(max_bytes));
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        match parse(&buf) {
            Parsed::Complete(_, len) if len > max_bytes => {
                return Ok(Head::Refuse(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request head too large",
                ));
            }
            Parsed::Complete(request, len) => {
                return Ok(Head::Request(request, buf.split_off(len)));
            }
            Parsed::Refuse(status, why) => return Ok(Head::Refuse(status, why)),
            Parsed::Partial if buf.len() >= max_bytes => {
                return Ok(Head::Refuse(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request head too large",
                ));
            }
            Parsed::Partial => {}
        }
    }
}

pub(crate) enum Parsed {
    Complete(Box<Request<()>>, usize),
    Partial,
    Refuse(StatusCode, &'static str),
}

pub(crate) fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refuse(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "too many headers");
        }
        Err(_) => return Parsed::Refuse(StatusCode::BAD_REQUEST, "malformed request"),
    };
    match build(&parsed) {
        Some(request) => match framing_error(&request) {
            Some(why) => Parsed::Refuse(StatusCode::BAD_REQUEST, why),
            None => Parsed::Complete(Box::new(request), len),
        },
        None => Parsed::Refuse(StatusCode::BAD_REQUEST, "malformed request"),
    }
}

/// A request whose body length is ambiguous, refused as nginx refuses it
/// (RFC 9112 §6.3): two servers on the way could read different bodies
/// into it, which is how requests are smuggled past a proxy.
fn framing_error(request: &Request<()>) -> Option<&'static str> {
    let headers = request.headers();
    let lengths: Vec<&[u8]> =
        headers.get_all(http::header::CONTENT_LENGTH).iter().map(|v| v.as_bytes()).collect();
    let has_encoding = headers.contains_key(http::header::TRANSFER_ENCODING);
    if has_encoding && !lengths.is_empty() {
        return Some("both Content-Length and Transfer-Encoding");
    }
    if has_encoding && request.version() < Version::HTTP_11 {
        return Some("Transfer-Encoding in an HTTP/1.0 request");
    }
    let valid = |value: &[u8]| !value.is_empty() && value.iter().all(u8::is_ascii_digit);
    if lengths.iter().any(|value| !valid(value)) {
        return Some("malformed Content-Length");
    }
    if lengths.windows(2).any(|pair| pair.first() != pair.get(1)) {
        return Some("conflicting Content-Length headers");
    }
    None
}

fn build(parsed: &httparse::Request<'_, '_>) -> Option<Request<()>> {
    let method = Method::from_bytes(parsed.method?.as_bytes()).ok()?;
    let version = match parsed.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut builder = Request::builder().method(method).uri(parsed.path?).version(version);
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(header.value).ok()?;
        builder = builder.header(name, value);
    }
    builder.body(()).ok()
}
