use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

/// The close frame to send a peer whose input made the WebSocket fail, or
/// `None` when the connection is gone and nothing can be sent.
///
/// tungstenite reports an oversized message, a protocol violation or bad
/// UTF-8 as an error and leaves telling the peer to its caller; RFC 6455
/// asks for 1009, 1002 and 1007 respectively.
///
/// A message split into more frames than allowed (see
/// [`TransportConfig::max_message_frames`]) is a policy violation: 1008.
///
/// [`TransportConfig::max_message_frames`]: crate::TransportConfig::max_message_frames
pub fn close_frame_for(err: &tungstenite::Error) -> Option<CloseFrame> {
    let (code, reason) = match err {
        tungstenite::Error::Capacity(_) => (CloseCode::Size, "message too big"),
        tungstenite::Error::Protocol(_) => (CloseCode::Protocol, "protocol error"),
        tungstenite::Error::Utf8(_) => (CloseCode::Invalid, "invalid utf-8"),
        tungstenite::Error::Io(io)
            if io.get_ref().is_some_and(|inner| inner.is::<crate::TooManyFragments>()) =>
        {
            (CloseCode::Policy, "too many frames in one message")
        }
        _ => return None,
    };
    Some(CloseFrame { code, reason: reason.into() })
}
