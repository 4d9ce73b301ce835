//! The leases this node holds, sans IO: the directory thread tells it which
//! tunnels are registered here now and what Redis answered, and it says what
//! to write and which tunnels to close. No Redis, no clock, no threads here.
//!
//! A lease is per (tenant, connector): a connector is named by its
//! credential's `jti` ([`UNAUTHENTICATED`] for a seed-style connector without
//! one), and all its tunnels on this node share the lease. Every tunnel that
//! appears is a registration (a new epoch). A lease that is lost fences its
//! tunnels: they are closed and never registered again, whatever the
//! registry still shows while they close.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::collections::{BTreeMap, BTreeSet};

use super::scripts::Renewal;

/// The connector id of a connector registered without a credential
/// (`allow_unauthenticated_connectors`): all such connectors of a tenant
/// share one lease.
pub const UNAUTHENTICATED: &str = "-unauthenticated-";

/// A lease's name: (tenant, connector id).
pub type LeaseKey = (String, String);

/// A tunnel registered on this node, as the directory sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// The tunnel's id (`c-<id>` in logs and its register reply).
    pub id: u64,
    /// Its tenant.
    pub tenant: String,
    /// Its connector id.
    pub connector: String,
}

/// What to write to Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A new registration of this connector here (a new epoch).
    Register(LeaseKey),
    /// This node's last tunnel of the connector closed: delete the lease if
    /// this node still holds it at this epoch.
    Release(LeaseKey, u64),
}

#[derive(Debug, Default)]
struct Local {
    tunnels: BTreeSet<u64>,
    /// The epoch Redis gave; `None` until the first registration is written.
    epoch: Option<u64>,
    /// A tunnel appeared since the last registration written.
    needs_register: bool,
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct Leases {
    local: BTreeMap<LeaseKey, Local>,
    /// Tunnels whose lease was lost: closed, never registered again.
    fenced: BTreeSet<u64>,
}

impl Leases {
    /// Compares with the tunnels registered here now; returns the writes
    /// due: releases first, then registrations (also those still owed from
    /// a time Redis could not be reached).
    pub fn reconcile(&mut self, tunnels: &[Tunnel]) -> Vec<Action> {
        let present: BTreeSet<u64> = tunnels.iter().map(|t| t.id).collect();
        self.fenced.retain(|id| present.contains(id));
        for tunnel in tunnels.iter().filter(|t| !self.fenced.contains(&t.id)) {
            let local = self.local.entry((tunnel.tenant.clone(), tunnel.connector.clone())).or_default();
            if local.tunnels.insert(tunnel.id) {
                local.needs_register = true;
            }
        }
        let mut actions = Vec::new();
        self.local.retain(|key, local| {
            local.tunnels.retain(|id| present.contains(id));
            if !local.tunnels.is_empty() {
                return true;
            }
            if let Some(epoch) = local.epoch {
                actions.push(Action::Release(key.clone(), epoch));
            }
            false
        });
        actions
            .extend(self.local.iter().filter(|(_, l)| l.needs_register).map(|(key, _)| Action::Register(key.clone())));
        actions
    }

    /// Redis gave this registration `epoch`.
    pub fn registered(&mut self, key: &LeaseKey, epoch: u64) {
        if let Some(local) = self.local.get_mut(key) {
            local.epoch = Some(epoch);
            local.needs_register = false;
        }
    }

    /// The leases to renew now, with their epochs (registrations still owed are not among them).
    pub fn renewals(&self) -> Vec<(LeaseKey, u64)> {
        self.local
            .iter()
            .filter(|(_, l)| !l.needs_register)
            .filter_map(|(key, l)| l.epoch.map(|epoch| (key.clone(), epoch)))
            .collect()
    }

    /// Applies a renewal's answer for the lease renewed at `epoch`; returns
    /// the tunnels to close (a lost lease's, all of them).
    pub fn renewed(&mut self, key: &LeaseKey, epoch: u64, answer: Renewal) -> Vec<u64> {
        let Renewal::Lost(_) = answer else { return Vec::new() };
        // A registration made since (a newer epoch of ours) is not what was lost.
        if self.local.get(key).is_none_or(|l| l.epoch != Some(epoch) || l.needs_register) {
            return Vec::new();
        }
        let Some(local) = self.local.remove(key) else { return Vec::new() };
        self.fenced.extend(local.tunnels.iter().copied());
        local.tunnels.into_iter().collect()
    }

    /// The local tunnels of a lease, as the lease's `tunnels` field: `c-3,c-7`.
    pub fn tunnels_field(&self, key: &LeaseKey) -> String {
        self.local
            .get(key)
            .map_or_else(String::new, |l| l.tunnels.iter().map(|id| format!("c-{id}")).collect::<Vec<_>>().join(","))
    }

    /// Leases held now (written to Redis, not lost).
    pub fn held(&self) -> usize {
        self.local.values().filter(|l| l.epoch.is_some()).count()
    }

    /// Every lease written to Redis, for the release at shutdown; the table is emptied.
    pub fn drain(&mut self) -> Vec<(LeaseKey, u64)> {
        std::mem::take(&mut self.local).into_iter().filter_map(|(key, l)| l.epoch.map(|epoch| (key, epoch))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel(id: u64, connector: &str) -> Tunnel {
        Tunnel { id, tenant: "acme".into(), connector: connector.into() }
    }

    fn key(connector: &str) -> LeaseKey {
        ("acme".into(), connector.into())
    }

    #[test]
    fn each_new_tunnel_is_a_registration_and_the_last_one_leaving_releases() {
        let mut leases = Leases::default();
        assert_eq!(leases.reconcile(&[tunnel(1, "j")]), vec![Action::Register(key("j"))]);
        // Redis unreachable: the registration stays owed and nothing is renewed.
        assert_eq!(leases.reconcile(&[tunnel(1, "j")]), vec![Action::Register(key("j"))]);
        assert!(leases.renewals().is_empty());
        leases.registered(&key("j"), 1);
        assert_eq!(leases.reconcile(&[tunnel(1, "j")]), vec![]);
        assert_eq!(leases.renewals(), vec![(key("j"), 1)]);
        // A second tunnel of the same connector: a new registration, one lease.
        assert_eq!(leases.reconcile(&[tunnel(1, "j"), tunnel(2, "j")]), vec![Action::Register(key("j"))]);
        leases.registered(&key("j"), 2);
        assert_eq!((leases.held(), leases.tunnels_field(&key("j")).as_str()), (1, "c-1,c-2"));
        assert_eq!(leases.reconcile(&[tunnel(2, "j")]), vec![]);
        assert_eq!(leases.reconcile(&[]), vec![Action::Release(key("j"), 2)]);
        assert_eq!(leases.held(), 0);
        // A tunnel that came and went while Redis was down leaves nothing to release.
        leases.reconcile(&[tunnel(3, "k")]);
        assert_eq!(leases.reconcile(&[]), vec![]);
    }

    #[test]
    fn a_lost_lease_closes_its_tunnels_which_are_never_registered_again() {
        let mut leases = Leases::default();
        leases.reconcile(&[tunnel(1, "j"), tunnel(2, "j"), tunnel(3, "other")]);
        leases.registered(&key("j"), 1);
        leases.registered(&key("other"), 1);
        assert_eq!(leases.renewed(&key("j"), 1, Renewal::Renewed), Vec::<u64>::new());
        assert_eq!(leases.renewed(&key("j"), 1, Renewal::Restored), Vec::<u64>::new());
        assert_eq!(leases.renewed(&key("j"), 1, Renewal::Lost(2)), vec![1, 2]);
        // Still in the registry while they close: fenced, not registered anew
        // (which would take the connector back from the newer registration).
        assert_eq!(leases.reconcile(&[tunnel(1, "j"), tunnel(2, "j"), tunnel(3, "other")]), vec![]);
        assert_eq!(leases.renewals(), vec![(key("other"), 1)]);
        // Gone, and the connector reconnects here: a new registration.
        assert_eq!(leases.reconcile(&[tunnel(3, "other")]), vec![]);
        assert_eq!(leases.reconcile(&[tunnel(3, "other"), tunnel(4, "j")]), vec![Action::Register(key("j"))]);
    }

    #[test]
    fn a_loss_of_an_older_epoch_spares_a_newer_registration() {
        let mut leases = Leases::default();
        leases.reconcile(&[tunnel(1, "j")]);
        leases.registered(&key("j"), 1);
        // A new tunnel registered at epoch 3 after the renewal at 1 was sent.
        leases.reconcile(&[tunnel(1, "j"), tunnel(2, "j")]);
        leases.registered(&key("j"), 3);
        assert_eq!(leases.renewed(&key("j"), 1, Renewal::Lost(2)), Vec::<u64>::new());
        assert_eq!(leases.renewals(), vec![(key("j"), 3)]);
        assert_eq!(leases.drain(), vec![(key("j"), 3)]);
        assert_eq!(leases.held(), 0);
    }
}
