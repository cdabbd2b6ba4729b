//! Access tokens: JSON Web Tokens signed with HS256 and the server's
//! secret. Verifying one turns it into a [`chat_core::Identity`]; the core
//! enforces what it grants.
//!
//! Hand-written on `hmac` and `sha2` rather than a JWT library: only HS256
//! is accepted (so no algorithm confusion and no `none`), the signature is
//! checked in constant time by `hmac`'s `verify_slice`, and nothing is
//! decoded before the signature holds.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chat_core::{Identity, RoomPattern, Timestamp};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The header of every token this server signs and accepts.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// The longest token accepted, in bytes.
const MAX_TOKEN_BYTES: usize = 4096;

/// The secret tokens are signed with; cloning shares it.
#[derive(Clone)]
pub struct Secret(Arc<[u8]>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The nick.
    pub sub: String,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Room patterns it may join; all rooms without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts, or parts that do not decode.
    #[error("malformed token")]
    Malformed,
    /// Anything but HS256.
    #[error("only HS256 tokens are accepted")]
    Algorithm,
    /// The signature does not match.
    #[error("bad signature")]
    Signature,
    /// Past its `exp`.
    #[error("token expired")]
    Expired,
}

impl Secret {
    /// A secret from its bytes; refuses one shorter than 32 bytes, the
    /// length of the HS256 output.
    ///
    /// # Errors
    /// The secret is too short.
    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < 32 {
            return Err(format!(
                "the auth secret must be at least 32 bytes (it is {})",
                bytes.len()
            ));
        }
        Ok(Self(bytes.into()))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        }
    }

    /// Signs `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(HEADER), URL_SAFE_NO_PAD.encode(payload));
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// Checks `token` at `now_secs` (seconds since the Unix epoch).
    ///
    /// # Errors
    /// The token is malformed, not HS256, badly signed or expired.
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature).map_err(|_| TokenError::Signature)?;
        // Signed by us; still, only HS256 headers are ours.
        let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| TokenError::Malformed)?;
        let header: serde_json::Value =
            serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
        if header.get("alg").and_then(|alg| alg.as_str()) != Some("HS256") {
            return Err(TokenError::Algorithm);
        }
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.exp <= now_secs {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

impl Claims {
    /// The identity these claims grant, for the core.
    pub fn identity(&self) -> Identity {
        Identity {
            nick: self.sub.clone(),
            rooms: self
                .rooms
                .as_ref()
                .map(|rooms| rooms.iter().map(|r| RoomPattern::new(r)).collect()),
            expires: Timestamp::from_unix_millis(self.exp.saturating_mul(1000)),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Whether two secrets (a metrics or stats token) are the same, in a time
/// that does not tell how much of them matched: their digests are compared
/// whole.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    use sha2::Digest;
    let (a, b) = (sha2::Sha256::digest(a), sha2::Sha256::digest(b));
    a.iter().zip(b.iter()).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap()
    }

    fn claims() -> Claims {
        Claims { sub: "alice".into(), exp: 2_000_000_000, rooms: Some(vec!["team-*".into()]) }
    }

    #[test]
    fn signed_tokens_verify_until_they_expire() {
        let token = secret().sign(&claims());
        assert_eq!(secret().verify(&token, 1_900_000_000), Ok(claims()));
        assert_eq!(secret().verify(&token, 2_000_000_000), Err(TokenError::Expired));
    }

    #[test]
    fn a_token_made_elsewhere_verifies() {
        // Made with Python's hmac and base64 (the same bytes PyJWT makes):
        // {"sub":"bob","exp":4102444800}, HS256, the secret above.
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJib2IiLCJleHAiOjQxMDI0NDQ4MDB9.\
                     022e1FjJvIwU9Vl8T-cNZhEWnUWy7Jn7N-NzZ3h0_C8";
        let claims = secret().verify(token, 1_900_000_000).unwrap();
        assert_eq!((claims.sub.as_str(), claims.exp, claims.rooms), ("bob", 4_102_444_800, None));
    }

    #[test]
    fn tampering_other_secrets_and_other_algorithms_are_refused() {
        let token = secret().sign(&claims());
        let other = Secret::new(b"another secret that is long enough!!".to_vec()).unwrap();
        assert_eq!(other.verify(&token, 0), Err(TokenError::Signature));
        let forged_payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"root","exp":2000000000}"#);
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = &forged_payload;
        assert_eq!(secret().verify(&parts.join("."), 0), Err(TokenError::Signature));
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"root","exp":2000000000}"#)
        );
        assert_eq!(secret().verify(&none, 0), Err(TokenError::Signature));
        for bad in ["", "a", "a.b", "a.b.c.d", "!!.!!.!!", &"x".repeat(5000)] {
            assert!(secret().verify(bad, 0).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(Secret::new(b"short".to_vec()).is_err());
    }
}
