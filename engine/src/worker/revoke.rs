//! What a worker does about revocations: closes its own browser sessions
//! and tunnels that a revocation covers, or that the revoked set covers
//! after a reload.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::rc::Rc;
use std::sync::Arc;

use volley_protocol::ws::close_code;

use super::Worker;
use crate::registry::{ConnectorCmd, ConnectorHandle};
use crate::revocation::Revocation;
use crate::session::BrowserSession;

impl Worker {
    /// Closes this worker's sessions and tunnels that `revocation` covers.
    pub(super) fn revoke(&self, revocation: &Revocation) {
        let revocations = &self.shared.revocations;
        let sessions: Vec<Rc<BrowserSession>> =
            self.local.borrow().sessions.values().filter(|s| revocation.matches(&s.claims)).cloned().collect();
        for session in &sessions {
            if let Revocation::Session(jti) = revocation {
                revocations.token_seen(jti, session.claims.exp);
            }
            session.close(close_code::REVOKED, "revoked");
        }
        // A tenant revocation drops its tunnels; a `session_id` revocation
        // naming a connector credential's `jti` drops the tunnels that
        // registered with it, and lasts until that credential's `exp`.
        let (connectors, reason) = match revocation {
            Revocation::Tenant(tenant) => (self.shared.registry.connectors(tenant), "tenant revoked"),
            Revocation::Session(jti) => {
                let connectors: Vec<Arc<ConnectorHandle>> = self
                    .shared
                    .registry
                    .all_connectors()
                    .into_iter()
                    .filter(|c| c.credential_jti.as_deref() == Some(jti.as_str()))
                    .collect();
                for (_, exp) in connectors.iter().filter_map(|c| c.credential()) {
                    revocations.token_seen(jti, exp);
                }
                (connectors, "connector credential revoked")
            }
            Revocation::User(_) => (Vec::new(), ""),
        };
        let tunnels = self.close_tunnels(connectors, reason);
        if !sessions.is_empty() || tunnels > 0 {
            log::info!(
                "worker {}: {revocation:?} closed {} session(s) and {tunnels} tunnel(s)",
                self.index,
                sessions.len()
            );
        }
    }

    /// Closes this worker's sessions and tunnels that the revocation set covers now.
    pub(super) fn recheck(&self) {
        let revocations = &self.shared.revocations;
        let now = crate::clock::unix_now();
        let sessions: Vec<Rc<BrowserSession>> = self
            .local
            .borrow()
            .sessions
            .values()
            .filter(|s| revocations.check_session(&s.claims, now).is_some())
            .cloned()
            .collect();
        for session in &sessions {
            session.close(close_code::REVOKED, "revoked");
        }
        let connectors: Vec<Arc<ConnectorHandle>> = self
            .shared
            .registry
            .all_connectors()
            .into_iter()
            .filter(|c| c.worker == self.index && revocations.check_connector(c.credential(), &c.tenant, now))
            .collect();
        let tunnels = self.close_tunnels(connectors, "revoked");
        if !sessions.is_empty() || tunnels > 0 {
            log::info!(
                "worker {}: revocations loaded from Redis closed {} session(s) and {tunnels} tunnel(s)",
                self.index,
                sessions.len()
            );
        }
    }

    /// Asks the tunnels of `connectors` owned by this worker to close with
    /// 4000; returns how many.
    fn close_tunnels(&self, connectors: Vec<Arc<ConnectorHandle>>, reason: &str) -> usize {
        let mut tunnels = 0;
        for connector in connectors {
            if connector.worker != self.index {
                continue;
            }
            let close = ConnectorCmd::Close { code: close_code::REVOKED, reason: reason.into() };
            if connector.mailbox.push(close).is_err() {
                log::warn!("connector c-{}: command queue full or closed; revocation close not queued", connector.id);
            }
            tunnels += 1;
        }
        tunnels
    }
}
