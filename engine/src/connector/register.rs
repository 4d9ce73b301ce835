//! A tunnel's first message: `register`, and the credential it carries.

use std::cell::RefCell;
use std::rc::Rc;

use volley_protocol::message::{ConnectorMessage, Register};
use volley_protocol::token::{verify_connector, Validation};
use volley_protocol::ws::Message;

use crate::conn::transport::ConnRead;
use crate::conn::{ReadError, Ring, WsReader};
use crate::refusal::{Refusal, RefusalKind};
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
    let limits = &worker.shared.config.limits.protocol;
    let register = match reader.next().await {
        Ok(Some(Message::Text(text))) => {
            let text = std::str::from_utf8(&text).unwrap_or_default();
            match ConnectorMessage::parse(text, limits.id_bytes_max) {
                Ok(ConnectorMessage::Register(register)) => register,
                Ok(_) => {
                    refuse(
                        ring,
                        RefusalKind::RegisterBadRequest.with("the first message on a tunnel must be register"),
                    );
                    return None;
                }
                Err(e) => {
                    refuse(ring, RefusalKind::at_register(e.code).with(e.message));
                    return None;
                }
            }
        }
        Ok(Some(_)) => {
            refuse(ring, RefusalKind::RegisterBadRequest.with("the first message on a tunnel must be a text register"));
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
        Err(refusal) => {
            log::warn!("connector for tenant {:?} refused: {}", register.tenant_id, refusal.message);
            refuse(ring, refusal);
            None
        }
    }
}

/// Queues the refusal's `register` reply and the close its kind names.
fn refuse(ring: &Rc<RefCell<Ring>>, refusal: Refusal) {
    let (reply, close) = refusal.register_reply();
    let mut ring = ring.borrow_mut();
    ring.push_text(&reply);
    ring.push_close(close, &refusal.message);
}

/// Verifies the credential and its revocations; returns its `jti` and `exp`.
fn authenticate(worker: &Worker, register: &Register) -> Result<Credential, Refusal> {
    let shared = &worker.shared;
    let credential = authenticate_token(worker, register)?;
    let presented = credential.as_ref().map(|(jti, exp)| (jti.as_str(), *exp));
    if shared.revocations.check_connector(presented, &register.tenant_id, crate::clock::unix_now()) {
        return Err(RefusalKind::RegisterRevoked.with("the tenant or this connector credential is revoked"));
    }
    Ok(credential)
}

/// Verifies the credential; returns its `jti` and `exp` (none for a seed-style connector).
fn authenticate_token(worker: &Worker, register: &Register) -> Result<Credential, Refusal> {
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
        None => Err(RefusalKind::RegisterUnauthorized.with(format!(
            "register must carry a connector token: put one from `volley token --connector --tenant {}` in \
             tenant.token, or set `allow_unauthenticated_connectors: true` on the gateway",
            register.tenant_id.escape_debug()
        ))),
        Some(token) => {
            let secrets: Vec<&[u8]> = shared.connector_secrets.iter().map(Vec::as_slice).collect();
            let validation = Validation {
                secrets: &secrets,
                now: crate::clock::unix_now(),
                leeway_seconds: i64::try_from(shared.config.limits.protocol.token_leeway_seconds).unwrap_or(0),
                token_bytes_max: shared.config.limits.protocol.token_bytes_max,
            };
            let claims = verify_connector(token, &validation)
                .map_err(|e| RefusalKind::at_register(e.code()).with(format!("connector token: {e}")))?;
            if claims.cuenta_id != register.tenant_id {
                return Err(RefusalKind::RegisterForbidden.with("the connector token belongs to another tenant"));
            }
            Ok(Some((claims.jti, claims.exp)))
        }
    }
}
