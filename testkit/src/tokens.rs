//! Session tokens and connector credentials, signed the way `volley token`
//! signs them, for the tests' gateways (which all use [`SECRET`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use volley_protocol::token::{sign, ConnectorClaims, SessionClaims, ROLE_CONNECTOR};

/// The gateway secret of every test gateway.
pub const SECRET: &str = "volley-test-secret";
/// The tenant most tests use.
pub const TENANT: &str = "acme";

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// A number no other token of this process has (for `jti`s).
fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A browser session token for `tenant` allowed to read `permisos`, valid for an hour.
pub fn session_token(tenant: &str, permisos: &[&str]) -> String {
    session_token_with(tenant, permisos, unix_now() + 3600, SECRET)
}

/// A browser session token with an explicit expiry and secret.
pub fn session_token_with(tenant: &str, permisos: &[&str], exp: i64, secret: &str) -> String {
    sign_session("", "ana", tenant, permisos, &format!("s-{}", next_id()), exp, secret)
}

/// A session token for user `sub` of `tenant`, every dataset, with session
/// id (revocation key) `jti`, valid for an hour.
pub fn session_token_of(sub: &str, tenant: &str, jti: &str) -> String {
    sign_session("", sub, tenant, &["*"], jti, unix_now() + 3600, SECRET)
}

/// A session token for `tenant`, every dataset, issued for edge `edge_id`
/// (`""`: no edge), valid for an hour.
pub fn session_token_on_edge(tenant: &str, edge_id: &str) -> String {
    sign_session(edge_id, "ana", tenant, &["*"], &format!("s-{}", next_id()), unix_now() + 3600, SECRET)
}

fn sign_session(
    edge_id: &str,
    sub: &str,
    tenant: &str,
    permisos: &[&str],
    jti: &str,
    exp: i64,
    secret: &str,
) -> String {
    let claims = SessionClaims {
        sub: sub.into(),
        cuenta_id: tenant.into(),
        edge_id: edge_id.into(),
        permisos: permisos.iter().map(|p| (*p).to_owned()).collect(),
        jti: jti.into(),
        iat: unix_now() - 10,
        exp,
        nbf: None,
        role: None,
    };
    sign(&claims, secret.as_bytes()).expect("sign session")
}

/// A valid connector credential for `tenant`.
pub fn connector_token(tenant: &str) -> String {
    connector_token_with(tenant, SECRET)
}

/// A connector credential for `tenant`, signed with `secret`.
pub fn connector_token_with(tenant: &str, secret: &str) -> String {
    connector_token_jti(tenant, secret, &format!("c-{}", next_id()))
}

/// A connector credential for `tenant` with a chosen `jti`, valid for an hour.
pub fn connector_token_jti(tenant: &str, secret: &str, jti: &str) -> String {
    let claims = ConnectorClaims {
        cuenta_id: tenant.into(),
        role: ROLE_CONNECTOR.into(),
        jti: jti.into(),
        iat: unix_now() - 10,
        exp: unix_now() + 3600,
        nbf: None,
    };
    sign(&claims, secret.as_bytes()).expect("sign connector")
}

#[cfg(test)]
mod tests {
    use volley_protocol::token::{verify_connector, verify_session, Validation};

    use super::*;

    #[test]
    fn tokens_verify_with_the_secret_and_carry_what_they_were_minted_with() {
        let secrets: &[&[u8]] = &[SECRET.as_bytes()];
        let validation = Validation { secrets, now: unix_now(), leeway_seconds: 0, token_bytes_max: 8192 };
        let session = verify_session(&session_token(TENANT, &["ventas"]), &validation).expect("session verifies");
        assert_eq!((session.cuenta_id.as_str(), session.permisos.as_slice()), (TENANT, &["ventas".to_owned()][..]));
        let of = verify_session(&session_token_of("luis", TENANT, "j-1"), &validation).expect("verifies");
        assert_eq!((of.sub.as_str(), of.jti.as_str()), ("luis", "j-1"));
        let edge = verify_session(&session_token_on_edge(TENANT, "edge-7"), &validation).expect("verifies");
        assert_eq!(edge.edge_id, "edge-7");
        let connector = verify_connector(&connector_token(TENANT), &validation).expect("credential verifies");
        assert_eq!(connector.cuenta_id, TENANT);
        let jti = verify_connector(&connector_token_jti(TENANT, SECRET, "c-x"), &validation).expect("verifies");
        assert_eq!(jti.jti, "c-x");
        assert!(verify_connector(&connector_token_with(TENANT, "another"), &validation).is_err());
        assert!(verify_session(&session_token_with(TENANT, &["*"], unix_now() - 60, SECRET), &validation).is_err());
    }
}
