//! A tunnel's first message: `register`, and the credential it carries.

use std::cell::RefCell;
use std::rc::Rc;

use volley_protocol::message::{ConnectorMessage, ErrorBody, ErrorCode, Register, RegisterReply};
use volley_protocol::token::{verify_connector, Validation};
use volley_protocol::ws::{close_code, Message};

use crate::conn::transport::ConnRead;
use crate::conn::{ReadError, Ring, WsReader};
use crate::worker::Worker;

/// A credential's `jti` and `exp` (none for a seed-style connector).
pub type Credential = Option<(String, i64)>;

/// Reads the first message; returns the registration and its verified
/// credential, or refuses it (the refusal and a close are queued on `ring`).
pub async fn accept<R: ConnRead>(
    worker: &Worker,
    reader: &mut WsReader<R>,
    ring: &Rc<RefCell<Ring>>,
) -> Option<(Register, Credential)> {
    let limits = &worker.shared.limits;
    let register = match reader.next().await {
        Ok(Some(Message::Text(text))) => {
            let text = std::str::from_utf8(&text).unwrap_or_default();
            match ConnectorMessage::parse(text, limits.id_bytes_max) {
                Ok(ConnectorMessage::Register(register)) => register,
                Ok(_) => {
                    refuse(ring, ErrorCode::BadRequest, "the first message on a tunnel must be register");
                    return None;
                }
                Err(e) => {
                    refuse(ring, e.code, &e.message);
                    return None;
                }
            }
        }
        Ok(Some(_)) => {
            refuse(ring, ErrorCode::BadRequest, "the first message on a tunnel must be a text register");
            return None;
        }
        Ok(None) | Err(ReadError::Io(_)) => return None,
        Err(ReadError::Ws(e)) => {
            ring.borrow_mut().push_close(e.close_code(), &e.to_string());
            return None;
        }
    };
    match authenticate(worker, &register) {
        Ok(credential) => Some((register, credential)),
        Err((code, message)) => {
            log::warn!("connector for tenant {:?} refused: {message}", register.tenant_id);
            refuse(ring, code, &message);
            None
        }
    }
}

fn refuse(ring: &Rc<RefCell<Ring>>, code: ErrorCode, message: &str) {
    let mut ring = ring.borrow_mut();
    ring.push_text(&RegisterReply::Refused(ErrorBody::new(code, message)).to_json());
    let close = if matches!(
        code,
        ErrorCode::Unauthorized | ErrorCode::Forbidden | ErrorCode::TokenExpired | ErrorCode::Revoked
    ) {
        close_code::POLICY_VIOLATION
    } else {
        close_code::PROTOCOL_ERROR
    };
    ring.push_close(close, message);
}

/// Verifies the credential and its revocations; returns its `jti` and `exp`.
fn authenticate(worker: &Worker, register: &Register) -> Result<Credential, (ErrorCode, String)> {
    let shared = &worker.shared;
    let credential = authenticate_token(worker, register)?;
    let presented = credential.as_ref().map(|(jti, exp)| (jti.as_str(), *exp));
    if shared.revocations.check_connector(presented, &register.tenant_id, crate::clock::unix_now()) {
        return Err((ErrorCode::Revoked, "the tenant or this connector credential is revoked".to_owned()));
    }
    Ok(credential)
}

/// Verifies the credential; returns its `jti` and `exp` (none for a seed-style connector).
fn authenticate_token(worker: &Worker, register: &Register) -> Result<Credential, (ErrorCode, String)> {
    let shared = &worker.shared;
    match &register.token {
        None if shared.config.allow_unauthenticated_connectors => {
            log::warn!(
                "connector for tenant {:?} registered without a token (allow_unauthenticated_connectors is on)",
                register.tenant_id
            );
            Ok(None)
        }
        // A seed-style connector: name both fixes.
        None => Err((
            ErrorCode::Unauthorized,
            format!(
                "register must carry a connector token: put one from `volley token --connector --tenant {}` in \
                 tenant.token, or set `allow_unauthenticated_connectors: true` on the gateway",
                register.tenant_id.escape_debug()
            ),
        )),
        Some(token) => {
            let secrets: Vec<&[u8]> = shared.connector_secrets.iter().map(Vec::as_slice).collect();
            let validation = Validation {
                secrets: &secrets,
                now: crate::clock::unix_now(),
                leeway_seconds: i64::try_from(shared.limits.token_leeway_seconds).unwrap_or(0),
                token_bytes_max: shared.limits.token_bytes_max,
            };
            let claims =
                verify_connector(token, &validation).map_err(|e| (e.code(), format!("connector token: {e}")))?;
            if claims.cuenta_id != register.tenant_id {
                return Err((ErrorCode::Forbidden, "the connector token belongs to another tenant".to_owned()));
            }
            Ok(Some((claims.jti, claims.exp)))
        }
    }
}
