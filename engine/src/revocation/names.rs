//! What a revocation names — a session, a user (in one tenant or all), a
//! tenant — parsed from a feed message, and the kinds of entry the set and
//! the Redis record keep.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use serde::Deserialize;
use volley_protocol::token::SessionClaims;

use super::REVOCATION_MESSAGE_BYTES_MAX;

/// A user revocation: one user id in one tenant, or in every tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedUser {
    /// The user (`sub`).
    pub user_id: String,
    /// Only this tenant's user (`cuenta_id`); `None`: the user id in every tenant.
    pub cuenta_id: Option<String>,
}

/// What a revocation names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// One session: a browser token's or a connector credential's `jti`.
    Session(String),
    /// Every session of a user, in one tenant or in all.
    User(RevokedUser),
    /// Every session and connector of a tenant (`cuenta_id`).
    Tenant(String),
}

/// The four kinds of entry, each with its own sorted set in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `session_id`: member = the `jti`.
    Sessions,
    /// `user_id` alone: member = the user id.
    Users,
    /// `user_id` with `cuenta_id`: member = the JSON array `["<cuenta_id>","<user_id>"]`.
    TenantUsers,
    /// `cuenta_id` alone: member = the tenant id.
    Tenants,
}

impl Kind {
    /// Every kind, broadest first (the order the feed loads them in).
    pub const ALL: [Kind; 4] = [Kind::Tenants, Kind::Users, Kind::TenantUsers, Kind::Sessions];

    /// The suffix of its sorted set: `<channel>:<suffix>`.
    pub fn suffix(self) -> &'static str {
        match self {
            Kind::Sessions => "sessions",
            Kind::Users => "users",
            Kind::TenantUsers => "tenant_users",
            Kind::Tenants => "tenants",
        }
    }
}

#[derive(Deserialize)]
struct RevocationMessage {
    session_id: Option<String>,
    user_id: Option<String>,
    cuenta_id: Option<String>,
    exp: Option<i64>,
}

impl Revocation {
    /// Parses a feed message; returns the revocation and the optional expiry it carries.
    pub fn parse(text: &str) -> Result<(Revocation, Option<i64>), String> {
        if text.len() > REVOCATION_MESSAGE_BYTES_MAX {
            return Err(format!("message of {} bytes is over {REVOCATION_MESSAGE_BYTES_MAX}", text.len()));
        }
        let message: RevocationMessage = serde_json::from_str(text).map_err(|e| format!("not a revocation: {e}"))?;
        let revocation = match (message.session_id, message.user_id, message.cuenta_id) {
            (Some(jti), None, None) => Revocation::Session(jti),
            (None, Some(user_id), cuenta_id) => Revocation::User(RevokedUser { user_id, cuenta_id }),
            (None, None, Some(tenant)) => Revocation::Tenant(tenant),
            _ => {
                return Err("name one of session_id, user_id (optionally with cuenta_id), cuenta_id".into());
            }
        };
        if revocation.has_empty_id() {
            return Err("the revoked id is empty".into());
        }
        Ok((revocation, message.exp))
    }

    fn has_empty_id(&self) -> bool {
        match self {
            Revocation::Session(k) | Revocation::Tenant(k) => k.is_empty(),
            Revocation::User(user) => user.user_id.is_empty() || user.cuenta_id.as_deref() == Some(""),
        }
    }

    /// Its kind (which sorted set records it).
    pub fn kind(&self) -> Kind {
        match self {
            Revocation::Session(_) => Kind::Sessions,
            Revocation::User(RevokedUser { cuenta_id: None, .. }) => Kind::Users,
            Revocation::User(RevokedUser { cuenta_id: Some(_), .. }) => Kind::TenantUsers,
            Revocation::Tenant(_) => Kind::Tenants,
        }
    }

    /// Its member in the sorted set of its kind (also its key in memory).
    pub fn member(&self) -> String {
        match self {
            Revocation::Session(k) | Revocation::Tenant(k) => k.clone(),
            Revocation::User(RevokedUser { user_id, cuenta_id: None }) => user_id.clone(),
            Revocation::User(RevokedUser { user_id, cuenta_id: Some(tenant) }) => tenant_user_member(tenant, user_id),
        }
    }

    /// The revocation a sorted-set member names.
    pub fn from_member(kind: Kind, member: &str) -> Result<Revocation, String> {
        if member.is_empty() {
            return Err("empty member".into());
        }
        Ok(match kind {
            Kind::Sessions => Revocation::Session(member.to_owned()),
            Kind::Users => Revocation::User(RevokedUser { user_id: member.to_owned(), cuenta_id: None }),
            Kind::Tenants => Revocation::Tenant(member.to_owned()),
            Kind::TenantUsers => {
                let (tenant, user_id): (String, String) = serde_json::from_str(member)
                    .map_err(|e| format!("not a [\"<cuenta_id>\",\"<user_id>\"] array: {e}"))?;
                let revocation = Revocation::User(RevokedUser { user_id, cuenta_id: Some(tenant) });
                if revocation.has_empty_id() {
                    return Err("an empty id".into());
                }
                revocation
            }
        })
    }

    /// True when it covers a browser session with these claims.
    pub fn matches(&self, claims: &SessionClaims) -> bool {
        match self {
            Revocation::Session(jti) => claims.jti == *jti,
            Revocation::User(user) => {
                claims.sub == user.user_id && user.cuenta_id.as_ref().is_none_or(|tenant| claims.cuenta_id == *tenant)
            }
            Revocation::Tenant(tenant) => claims.cuenta_id == *tenant,
        }
    }
}

/// The member of a tenant-scoped user revocation: `["<cuenta_id>","<user_id>"]`
/// (a JSON array, so neither id needs a separator it cannot contain).
pub(super) fn tenant_user_member(tenant: &str, user_id: &str) -> String {
    serde_json::Value::from(vec![tenant, user_id]).to_string()
}
