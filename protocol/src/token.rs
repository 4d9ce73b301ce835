//! HS256 JSON Web Tokens (RFC 7519) for browser sessions and connector
//! credentials (PROTOCOL.md §6). Pure computation: the caller passes the time.
//!
//! Verification pins the algorithm to HS256 (no `none`, no key confusion),
//! checks the size before decoding, compares signatures in constant time
//! (`hmac`'s `verify_slice`), accepts several secrets during a rotation
//! window, and checks `exp`/`nbf`/`iat` with a leeway.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The only header Volley writes; verification accepts any header whose
/// `alg` is `HS256` and whose `typ`, when present, is `JWT`.
const HEADER_JSON: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// The `role` claim of a connector credential.
pub const ROLE_CONNECTOR: &str = "connector";

/// Claims of a browser session token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// User id.
    pub sub: String,
    /// Tenant id.
    pub cuenta_id: String,
    /// Edge (gateway) id the session was issued for; may be empty.
    #[serde(default)]
    pub edge_id: String,
    /// Datasets the session may read; `["*"]` means all.
    #[serde(default)]
    pub permisos: Vec<String>,
    /// Session id (revocation key).
    pub jti: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Not before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Must be absent (or not `connector`) for a browser session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl SessionClaims {
    /// True when `permisos` allows `dataset`.
    pub fn allows(&self, dataset: &str) -> bool {
        self.permisos.iter().any(|p| p == "*" || p == dataset)
    }
}

/// Claims of a connector credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorClaims {
    /// Tenant the connector serves.
    pub cuenta_id: String,
    /// Always [`ROLE_CONNECTOR`].
    pub role: String,
    /// Credential id (revocation key).
    pub jti: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Not before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Longer than the limit; not decoded at all.
    #[error("token of {size} bytes exceeds the limit of {limit}")]
    TooLong {
        /// Token length.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// Not three base64url parts, or a part is not JSON.
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    /// `alg` is not HS256.
    #[error("token algorithm {0:?} is not accepted (only HS256)")]
    Algorithm(String),
    /// No configured secret produces this signature.
    #[error("token signature does not verify")]
    Signature,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("token was issued in the future")]
    IssuedInFuture,
    /// Claims are missing or have the wrong type: the token is malformed.
    #[error("token claims are invalid: {0}")]
    Claims(String),
    /// A well-formed token of the wrong kind: a connector credential
    /// presented as a browser session, or the reverse.
    #[error("{0}")]
    Role(String),
}

impl TokenError {
    /// The protocol error code for this refusal (PROTOCOL.md §8).
    pub fn code(&self) -> crate::ErrorCode {
        match self {
            TokenError::Expired => crate::ErrorCode::TokenExpired,
            TokenError::Role(_) => crate::ErrorCode::Forbidden,
            _ => crate::ErrorCode::Unauthorized,
        }
    }
}

/// Signs `claims` with `secret`, returning the compact JWT.
pub fn sign<T: Serialize>(claims: &T, secret: &[u8]) -> Result<String, serde_json::Error> {
    let header = URL_SAFE_NO_PAD.encode(HEADER_JSON);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?);
    let signing_input = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(mac(secret, signing_input.as_bytes()).finalize().into_bytes());
    Ok(format!("{signing_input}.{signature}"))
}

fn mac(secret: &[u8], data: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    };
    mac.update(data);
    mac
}

/// Options for [`verify`].
#[derive(Debug, Clone, Copy)]
pub struct Validation<'a> {
    /// Secrets accepted (the current one first; older ones during rotation).
    pub secrets: &'a [&'a [u8]],
    /// Current Unix time, seconds.
    pub now: i64,
    /// Leeway for `exp`, `nbf` and `iat`, seconds.
    pub leeway_seconds: i64,
    /// Longest token accepted, bytes.
    pub token_bytes_max: usize,
}

/// Verifies signature and times, then decodes the claims as `T`.
pub fn verify<T: for<'de> Deserialize<'de>>(token: &str, validation: &Validation<'_>) -> Result<T, TokenError> {
    decode_claims(verify_value(token, validation)?)
}

fn decode_claims<T: for<'de> Deserialize<'de>>(claims: serde_json::Value) -> Result<T, TokenError> {
    serde_json::from_value(claims).map_err(|e| TokenError::Claims(e.to_string()))
}

/// Verifies signature and times; the claims as JSON.
fn verify_value(token: &str, validation: &Validation<'_>) -> Result<serde_json::Value, TokenError> {
    if token.len() > validation.token_bytes_max {
        return Err(TokenError::TooLong { size: token.len(), limit: validation.token_bytes_max });
    }
    // header.payload.signature; the signature covers "header.payload".
    let three_parts = token
        .rsplit_once('.')
        .and_then(|(signing_input, signature)| {
            signing_input.split_once('.').map(|(header, payload)| (signing_input, header, payload, signature))
        })
        .filter(|(_, _, payload, _)| !payload.contains('.'));
    let Some((signing_input, header_b64, payload_b64, signature_b64)) = three_parts else {
        return Err(TokenError::Malformed("expected three dot-separated parts"));
    };
    let header_raw =
        URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| TokenError::Malformed("header is not base64url"))?;
    #[derive(Deserialize)]
    struct Header {
        alg: String,
        typ: Option<String>,
    }
    let header: Header =
        serde_json::from_slice(&header_raw).map_err(|_| TokenError::Malformed("header is not a JSON object"))?;
    if header.alg != "HS256" {
        return Err(TokenError::Algorithm(header.alg));
    }
    if header.typ.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("JWT")) {
        return Err(TokenError::Malformed("typ is not JWT"));
    }
    let signature =
        URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| TokenError::Malformed("signature is not base64url"))?;
    // Every secret is tried (no early exit on the first byte) and each
    // comparison is constant-time.
    let mut verified = false;
    for secret in validation.secrets {
        verified |= mac(secret, signing_input.as_bytes()).verify_slice(&signature).is_ok();
    }
    if !verified {
        return Err(TokenError::Signature);
    }
    let payload_raw =
        URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| TokenError::Malformed("payload is not base64url"))?;
    let value: serde_json::Value =
        serde_json::from_slice(&payload_raw).map_err(|_| TokenError::Malformed("payload is not JSON"))?;
    check_times(&value, validation)?;
    Ok(value)
}

fn check_times(claims: &serde_json::Value, validation: &Validation<'_>) -> Result<(), TokenError> {
    let time = |name: &str| -> Result<Option<i64>, TokenError> {
        match claims.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| TokenError::Claims(format!("{name} is not an integer"))),
        }
    };
    let now = validation.now;
    let leeway = validation.leeway_seconds;
    let Some(exp) = time("exp")? else {
        return Err(TokenError::Claims("exp is required".into()));
    };
    if now > exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = time("nbf")? {
        if now.saturating_add(leeway) < nbf {
            return Err(TokenError::NotYetValid);
        }
    }
    if let Some(iat) = time("iat")? {
        if now.saturating_add(leeway) < iat {
            return Err(TokenError::IssuedInFuture);
        }
    }
    Ok(())
}

/// Verifies a browser session token; refuses connector credentials (by
/// their `role`, before looking at the session claims they lack), saying
/// which command makes a session.
pub fn verify_session(token: &str, validation: &Validation<'_>) -> Result<SessionClaims, TokenError> {
    let claims = verify_value(token, validation)?;
    if claims.get("role").and_then(serde_json::Value::as_str) == Some(ROLE_CONNECTOR) {
        return Err(TokenError::Role(format!(
            "this is a connector credential, not a browser session token; make a session with \
             `volley token --tenant {} --user USER`",
            tenant_of(&claims)
        )));
    }
    decode_claims(claims)
}

/// Verifies a connector credential; refuses anything whose role is not
/// `connector`. A browser session (it has `sub` and no connector role) is
/// named as such, with the command that makes a connector credential.
pub fn verify_connector(token: &str, validation: &Validation<'_>) -> Result<ConnectorClaims, TokenError> {
    let claims = verify_value(token, validation)?;
    let role = claims.get("role").and_then(serde_json::Value::as_str);
    if role != Some(ROLE_CONNECTOR) && claims.get("sub").is_some() {
        return Err(TokenError::Role(format!(
            "this is a browser session token, not a connector credential; make one with \
             `volley token --connector --tenant {}`",
            tenant_of(&claims)
        )));
    }
    let claims: ConnectorClaims = decode_claims(claims)?;
    if claims.role != ROLE_CONNECTOR {
        return Err(TokenError::Role(format!("role {:?} is not connector", claims.role)));
    }
    Ok(claims)
}

/// The verified token's tenant for a message (control characters escaped):
/// its `cuenta_id`, or a placeholder when it has none.
fn tenant_of(claims: &serde_json::Value) -> String {
    claims.get("cuenta_id").and_then(serde_json::Value::as_str).unwrap_or("TENANT").escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    // Tests index fixtures they built themselves; a panic there fails the test.
    #![allow(clippy::indexing_slicing, clippy::string_slice)]

    use super::*;

    const SECRET: &[u8] = b"s3cret";

    fn validation<'a>(secrets: &'a [&'a [u8]], now: i64) -> Validation<'a> {
        Validation { secrets, now, leeway_seconds: 30, token_bytes_max: 4096 }
    }

    fn session(exp: i64) -> SessionClaims {
        SessionClaims {
            sub: "ana".into(),
            cuenta_id: "t1".into(),
            edge_id: String::new(),
            permisos: vec!["ventas".into()],
            jti: "sess-1".into(),
            iat: 1000,
            exp,
            nbf: None,
            role: None,
        }
    }

    #[test]
    fn round_trip_and_rotation() {
        let token = sign(&session(2000), SECRET).unwrap();
        assert_eq!(verify_session(&token, &validation(&[SECRET], 1500)).unwrap(), session(2000));
        assert_eq!(verify_session(&token, &validation(&[b"new", SECRET], 1500)).unwrap(), session(2000));
        assert_eq!(verify_session(&token, &validation(&[b"other"], 1500)), Err(TokenError::Signature));
    }

    #[test]
    fn expiry_and_leeway() {
        let token = sign(&session(2000), SECRET).unwrap();
        assert!(verify_session(&token, &validation(&[SECRET], 2030)).is_ok());
        assert_eq!(verify_session(&token, &validation(&[SECRET], 2031)), Err(TokenError::Expired));
        assert_eq!(verify_session(&token, &validation(&[SECRET], 900)), Err(TokenError::IssuedInFuture));
    }

    #[test]
    fn algorithm_is_pinned() {
        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&session(2000)).unwrap());
        let forged = format!("{none_header}.{payload}.");
        assert_eq!(verify_session(&forged, &validation(&[SECRET], 1500)), Err(TokenError::Algorithm("none".into())));
    }

    #[test]
    fn tampered_payload_fails() {
        let token = sign(&session(2000), SECRET).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut evil = session(2000);
        evil.permisos = vec!["*".into()];
        let evil_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&evil).unwrap());
        parts[1] = &evil_payload;
        assert_eq!(verify_session(&parts.join("."), &validation(&[SECRET], 1500)), Err(TokenError::Signature));
    }

    #[test]
    fn roles_do_not_cross() {
        let connector = ConnectorClaims {
            cuenta_id: "t1".into(),
            role: ROLE_CONNECTOR.into(),
            jti: "c1".into(),
            iat: 1000,
            exp: 2000,
            nbf: None,
        };
        let token = sign(&connector, SECRET).unwrap();
        assert!(verify_connector(&token, &validation(&[SECRET], 1500)).is_ok());
        let Err(TokenError::Role(message)) = verify_session(&token, &validation(&[SECRET], 1500)) else {
            panic!("a connector credential is not a session");
        };
        assert!(message.contains("connector credential") && message.contains("volley token --tenant t1"), "{message}");
        // A session (it has `sub`, no connector role) is named as one, with the command to run.
        let browser = sign(&session(2000), SECRET).unwrap();
        let Err(TokenError::Role(message)) = verify_connector(&browser, &validation(&[SECRET], 1500)) else {
            panic!("a session is not a connector credential");
        };
        assert!(message.contains("browser session") && message.contains("volley token --connector --tenant t1"));
        // Neither shape: malformed.
        let shapeless = sign(&serde_json::json!({"cuenta_id": "t1", "exp": 2000}), SECRET).unwrap();
        let refused = verify_connector(&shapeless, &validation(&[SECRET], 1500)).unwrap_err();
        assert!(matches!(refused, TokenError::Claims(_)), "{refused:?}");
        let mut viewer = serde_json::to_value(&connector).unwrap();
        viewer["role"] = "viewer".into();
        let viewer = sign(&viewer, SECRET).unwrap();
        let refused = verify_connector(&viewer, &validation(&[SECRET], 1500)).unwrap_err();
        assert!(matches!(refused, TokenError::Role(_)), "{refused:?}");
        assert_eq!(refused.code(), crate::ErrorCode::Forbidden);
    }

    #[test]
    fn missing_or_ill_typed_claims_are_malformed_tokens() {
        let good = serde_json::to_value(session(2000)).unwrap();
        let cases: [(&str, Option<serde_json::Value>); 5] = [
            ("exp", None),
            ("exp", Some(serde_json::json!(2000.5))),
            ("sub", None),
            ("iat", Some(serde_json::json!("1000"))),
            ("permisos", Some(serde_json::json!("*"))),
        ];
        for (name, value) in cases {
            let mut claims = good.clone();
            match &value {
                Some(value) => claims[name] = value.clone(),
                None => {
                    claims.as_object_mut().unwrap().remove(name);
                }
            }
            let refused = verify_session(&sign(&claims, SECRET).unwrap(), &validation(&[SECRET], 1500)).unwrap_err();
            assert!(matches!(refused, TokenError::Claims(_)), "{name} = {value:?}: {refused:?}");
            assert_eq!(refused.code(), crate::ErrorCode::Unauthorized, "{name} = {value:?}");
        }
    }

    #[test]
    fn size_and_shape_limits() {
        let long = "a".repeat(5000);
        assert!(matches!(verify_session(&long, &validation(&[SECRET], 0)), Err(TokenError::TooLong { .. })));
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!", "e30.e30.e30"] {
            assert!(verify_session(bad, &validation(&[SECRET], 0)).is_err(), "{bad}");
        }
    }
}
