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
    /// 1008: the client broke a rule of the server's (it never said
    /// `hello`, or kept flooding past its rate limits).
    Policy,
    /// 1009: a message was larger than the server accepts.
    TooBig,
    /// 1012: the server is restarting (ctrl-c, SIGTERM). The reason carries
    /// how long to wait before reconnecting ([`restart_reason`],
    /// [`retry_after`]), spread over a window so that thousands of clients
    /// do not come back in the same instant.
    Restart,
    /// 4008: the client did not read fast enough and its outbound queue
    /// overflowed. Reconnect; nothing was lost that `history` cannot return.
    TooSlow,
    /// 4009: another connection resumed this connection's session.
    Replaced,
    /// 4011: the session's access token expired and no `auth` renewed it.
    /// Reconnecting needs a new token.
    TokenExpired,
    /// 4010: the client answered none of the server's pings: it is taken
    /// for dead. Its session waits for a resume as after any lost
    /// connection.
    Unresponsive,
}

impl CloseCode {
    /// The numeric code sent in the close frame.
    pub fn code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::GoingAway => 1001,
            Self::Policy => 1008,
            Self::TooBig => 1009,
            Self::Restart => 1012,
            Self::TooSlow => 4008,
            Self::Replaced => 4009,
            Self::Unresponsive => 4010,
            Self::TokenExpired => 4011,
        }
    }

    /// The reason text sent with the code.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Normal => "bye",
            Self::GoingAway => "server shutting down",
            Self::Policy => "policy violation",
            Self::TooBig => "message too big",
            Self::Restart => "service restart",
            Self::TooSlow => "too slow",
            Self::Replaced => "session resumed elsewhere",
            Self::Unresponsive => "no answer to pings",
            Self::TokenExpired => "token expired",
        }
    }
}

/// The close reason of a [`CloseCode::Restart`] that asks the client to
/// wait `retry_after_ms` before reconnecting: `service restart;
/// retry_ms=3200`.
pub fn restart_reason(retry_after_ms: u64) -> String {
    format!("{}; retry_ms={retry_after_ms}", CloseCode::Restart.reason())
}

/// How long a close reason asks the client to wait before reconnecting, in
/// milliseconds: the `retry_ms=` field of [`restart_reason`], if any.
pub fn retry_after(reason: &str) -> Option<u64> {
    reason
        .split(';')
        .filter_map(|part| part.trim().strip_prefix("retry_ms="))
        .find_map(|ms| ms.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_reasons_carry_the_delay_and_fit_a_close_frame() {
        let reason = restart_reason(u64::MAX);
        assert!(reason.len() <= 123, "a close reason is at most 123 bytes");
        assert_eq!(retry_after(&reason), Some(u64::MAX));
        assert_eq!(retry_after(&restart_reason(3200)), Some(3200));
        assert_eq!(retry_after("service restart; retry_ms=12; x=1"), Some(12));
    }

    #[test]
    fn other_reasons_carry_no_delay() {
        assert_eq!(retry_after("service restart"), None);
        assert_eq!(retry_after("retry_ms=soon"), None);
        assert_eq!(retry_after("retry_ms=-5"), None);
        assert_eq!(retry_after(""), None);
    }
}
