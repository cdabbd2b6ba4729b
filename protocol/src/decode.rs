use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{ClientFrame, ClientMessage, ErrorCode, MAX_ID_BYTES};

/// Why a text frame from a client is not a valid [`ClientMessage`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DecodeError {
    /// The code to answer with.
    pub code: ErrorCode,
    /// What is wrong, for a human.
    pub message: String,
    /// The frame's `id`, when it had a valid one, so the error can carry it.
    pub id: Option<String>,
}

impl DecodeError {
    fn new(code: ErrorCode, message: impl Into<String>, id: Option<String>) -> Self {
        Self { code, message: message.into(), id }
    }
}

/// Decodes one text frame sent by a client.
///
/// Unknown extra fields are ignored.
///
/// # Errors
/// - `bad_json`: the text is not a JSON object.
/// - `bad_frame`: `type` is missing or not a string, `id` is not a string of
///   at most [`MAX_ID_BYTES`] bytes, or a field is missing or mistyped.
/// - `unknown_type`: `type` names no client frame.
pub fn decode_client(text: &str) -> Result<ClientMessage, DecodeError> {
    let value: Value = serde_json::from_str(text).map_err(|err| {
        DecodeError::new(ErrorCode::BadJson, format!("invalid JSON: {err}"), None)
    })?;
    let Value::Object(mut map) = value else {
        return Err(DecodeError::new(ErrorCode::BadJson, "a frame must be a JSON object", None));
    };
    let id = match map.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if id.len() <= MAX_ID_BYTES => Some(id),
        Some(Value::String(_)) => {
            return Err(DecodeError::new(
                ErrorCode::BadFrame,
                format!("id is longer than {MAX_ID_BYTES} bytes"),
                None,
            ));
        }
        Some(_) => {
            return Err(DecodeError::new(ErrorCode::BadFrame, "id must be a string", None));
        }
    };
    match map.get("type") {
        Some(Value::String(kind)) if ClientFrame::TYPES.contains(&kind.as_str()) => {}
        Some(Value::String(kind)) => {
            let message = format!("unknown frame type {:?}", truncate(kind, 64));
            return Err(DecodeError::new(ErrorCode::UnknownType, message, id));
        }
        Some(_) => {
            return Err(DecodeError::new(ErrorCode::BadFrame, "type must be a string", id));
        }
        None => {
            return Err(DecodeError::new(ErrorCode::BadFrame, "missing field `type`", id));
        }
    }
    match ClientFrame::deserialize(Value::Object(map)) {
        Ok(frame) => Ok(ClientMessage { id, frame }),
        Err(err) => Err(DecodeError::new(ErrorCode::BadFrame, err.to_string(), id)),
    }
}

/// Encodes a client frame as the JSON text sent on the wire.
pub fn encode_client(message: &ClientMessage) -> String {
    let mut map = match serde_json::to_value(&message.frame) {
        Ok(Value::Object(map)) => map,
        // An internally tagged enum of plain structs always serializes to an
        // object; anything else would be a bug in this crate.
        _ => Map::new(),
    };
    if let Some(id) = &message.id {
        map.insert("id".to_owned(), Value::String(id.clone()));
    }
    Value::Object(map).to_string()
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> (ErrorCode, Option<String>) {
        match decode_client(text) {
            Ok(message) => panic!("decoded {message:?} from {text}"),
            Err(err) => (err.code, err.id),
        }
    }

    #[test]
    fn errors_have_stable_codes() {
        let cases: &[(&str, ErrorCode, Option<&str>)] = &[
            ("not json", ErrorCode::BadJson, None),
            ("[1,2]", ErrorCode::BadJson, None),
            ("\"hello\"", ErrorCode::BadJson, None),
            ("{}", ErrorCode::BadFrame, None),
            (r#"{"type":7}"#, ErrorCode::BadFrame, None),
            (r#"{"type":"fly","id":"a"}"#, ErrorCode::UnknownType, Some("a")),
            (r#"{"type":"say","room":"x","id":"b"}"#, ErrorCode::BadFrame, Some("b")),
            (r#"{"type":"say","room":"x","text":5}"#, ErrorCode::BadFrame, None),
            (r#"{"type":"ping","id":5}"#, ErrorCode::BadFrame, None),
            (r#"{"type":"history","room":"x","limit":-1}"#, ErrorCode::BadFrame, None),
        ];
        for (text, expected, id) in cases {
            assert_eq!(code(text), (*expected, id.map(str::to_owned)), "{text}");
        }
        let long_id = format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(65));
        assert_eq!(code(&long_id), (ErrorCode::BadFrame, None));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let message = decode_client(r#"{"type":"ping","id":"p","extra":{"a":1}}"#);
        assert_eq!(
            message,
            Ok(ClientMessage { id: Some("p".into()), frame: ClientFrame::Ping {} })
        );
    }

    #[test]
    fn id_of_64_bytes_is_accepted() {
        let id = "é".repeat(32);
        let text = format!(r#"{{"type":"rooms","id":"{id}"}}"#);
        assert_eq!(decode_client(&text).map(|m| m.id), Ok(Some(id)));
    }
}
