/// WebSocket close codes the server uses, beyond those RFC 6455 defines.
///
/// The numeric values are part of the protocol and documented in
/// `docs/protocol.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: a normal close, asked for by the peer.
    Normal,
    /// 1001: the server is shutting down.
    GoingAway,
    /// 1009: a message was larger than the server accepts.
    TooBig,
    /// 4008: the client did not read fast enough and its outbound queue
    /// overflowed. Reconnect; nothing was lost that `history` cannot return.
    TooSlow,
    /// 4009: another connection resumed this connection's session.
    Replaced,
}

impl CloseCode {
    /// The numeric code sent in the close frame.
    pub fn code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::GoingAway => 1001,
            Self::TooBig => 1009,
            Self::TooSlow => 4008,
            Self::Replaced => 4009,
        }
    }

    /// The reason text sent with the code.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Normal => "bye",
            Self::GoingAway => "server shutting down",
            Self::TooBig => "message too big",
            Self::TooSlow => "too slow",
            Self::Replaced => "session resumed elsewhere",
        }
    }
}
