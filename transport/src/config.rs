use std::sync::Arc;
use std::time::Duration;

use tungstenite::protocol::WebSocketConfig;

/// Limits and buffer sizes of the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// The largest request head (request line and headers) accepted, in
    /// bytes; larger ones get `431`. Default 16 KiB, what common servers
    /// allow.
    pub max_header_bytes: usize,
    /// How long a client may take to send its request head; slower ones get
    /// `408`. Default 10 s, so a slowloris client cannot hold a socket.
    pub handshake_timeout: Duration,
    /// The largest WebSocket message (and frame) accepted, in bytes; larger
    /// ones close the connection with 1009. Default 64 KiB.
    pub max_message_bytes: usize,
    /// The WebSocket read buffer, allocated per connection, and the most
    /// read from the socket at once. Default 128 bytes: tungstenite's
    /// default of 128 KiB would cost 128 KiB per idle connection, and most
    /// chat frames from clients fit (a larger frame grows the buffer to its
    /// size). Measured in docs/performance.md.
    pub read_buffer_bytes: usize,
    /// How many bytes of outgoing frames tungstenite gathers before writing
    /// them without an explicit flush. Default 64 KiB; drivers flush after
    /// each batch anyway, so this only bounds one write.
    pub write_buffer_bytes: usize,
    /// Frames queued for one connection before pushes are refused
    /// ([`crate::Pushed::Full`]). Default 1024: several seconds of a busy
    /// room, so only a client that stopped reading hits it.
    pub max_queued_frames: usize,
    /// Bytes queued for one connection before pushes are refused (a single
    /// larger frame still goes to an empty queue). Default 8 MiB. Droppable
    /// frames are skipped once either bound is half used.
    pub max_queued_bytes: usize,
    /// The most frames one WebSocket message may be split into; more
    /// closes the connection with 1008. Default 64: browsers and common
    /// libraries send a message in one frame, and a message cut into
    /// thousands of empty ones only costs the server.
    pub max_message_frames: u32,
    /// How long writing an HTTP answer (a file download) may wait for the
    /// client to take more bytes before the connection is dropped, like
    /// nginx's `send_timeout`. Default 30 s.
    pub send_timeout: Duration,
    /// Host names, besides IP addresses and `localhost`, this server answers
    /// for (`chat.example.com`, `*.example.com`, or `*` for any). A request
    /// whose `Host` is another name gets `421`: a page of another site that
    /// made its name point at this server (DNS rebinding) reaches nothing.
    /// Default: none.
    pub allowed_hosts: Vec<String>,
    /// Browser origins, besides the server's own, allowed to open a
    /// WebSocket (`https://chat.example.com`), or `*` for any. Against
    /// cross-site WebSocket hijacking, a request whose `Origin` is neither
    /// the server's own (the scheme-less host in its `Host` header) nor
    /// listed gets `403`; non-browser clients send no `Origin` and are let
    /// in. Default: none.
    pub allowed_origins: Vec<String>,
    /// Reverse proxies whose forwarding header says who a request comes
    /// from: the per-address limits and the logs then use that address.
    /// From anyone else the header is ignored. Default: none.
    pub trusted_proxies: crate::TrustedProxies,
    /// With a certificate: serve `https://` and `wss://` (TLS 1.2 and
    /// 1.3, rustls) on the same port instead of plain HTTP. Default none.
    pub tls: Option<TlsConfig>,
    /// Client side: whom `wss://` trusts. Default (`None`): the public
    /// certificate authorities.
    pub client_tls: Option<crate::ClientTls>,
}

/// A TLS server configuration (certificate chain and key).
#[derive(Debug, Clone)]
pub struct TlsConfig(pub Arc<rustls::ServerConfig>);

impl PartialEq for TlsConfig {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TlsConfig {}

impl TlsConfig {
    /// A configuration serving `chain` (leaf first) with `key`.
    ///
    /// # Errors
    /// The key does not fit the certificate, or is of an unsupported kind.
    pub fn new(
        chain: Vec<rustls::pki_types::CertificateDer<'static>>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Result<Self, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self(Arc::new(config)))
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            handshake_timeout: Duration::from_secs(10),
            max_message_bytes: 64 * 1024,
            read_buffer_bytes: 128,
            write_buffer_bytes: 64 * 1024,
            max_queued_frames: 1024,
            max_queued_bytes: 8 << 20,
            max_message_frames: 64,
            send_timeout: Duration::from_secs(30),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            trusted_proxies: crate::TrustedProxies::default(),
            tls: None,
            client_tls: None,
        }
    }
}

impl TransportConfig {
    /// The tungstenite configuration these settings imply.
    pub fn websocket(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_bytes)
            .write_buffer_size(self.write_buffer_bytes)
            // No cap on the write buffer: one outgoing frame (a resuming
            // `joined`) can be megabytes, and a cap below it would fail the
            // write. What may be queued per connection is bounded by the
            // driver's outbound queue instead.
            .max_message_size(Some(self.max_message_bytes))
            .max_frame_size(Some(self.max_message_bytes))
    }
}
