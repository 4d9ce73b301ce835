//! A per-client rate limit: at most `limit` events per minute per client,
//! as a burst of `limit` that refills at one event every `60 s / limit`
//! (the generic cell rate algorithm: one instant per client, the time at
//! which its bucket will be empty again).
//!
//! Clients are IPv4 addresses or IPv6 /64 prefixes (one host usually holds a
//! whole /64, so counting single IPv6 addresses would count nothing). The
//! table holds at most `clients_max` clients; a client whose bucket is empty
//! again needs no entry, so such entries are dropped when the table is full
//! (at most once per [`SWEEP_INTERVAL`]). A new client that finds the table
//! full of busy clients is refused: under a flood from that many addresses,
//! the limit holds rather than the memory growing.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The window the limit is expressed in.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Shortest time between two sweeps of a full table.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Why an event was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// The client used its budget; the next event is allowed after this long.
    Client {
        /// Wait before the next event is allowed.
        retry_after: Duration,
    },
    /// The table is full of clients that are still limited.
    Table,
}

struct Table {
    /// Client → the instant its bucket is empty again (always in the future
    /// when it matters; past entries are as good as absent).
    empty_at: HashMap<IpAddr, Instant>,
    last_sweep: Option<Instant>,
}

/// At most `limit` events per minute per client.
pub struct PerClientRate {
    limit: u32,
    interval: Duration,
    clients_max: usize,
    table: Mutex<Table>,
}

impl PerClientRate {
    /// `limit` events per [`RATE_WINDOW`] per client (at least 1), tracking
    /// at most `clients_max` clients.
    pub fn new(limit: u32, clients_max: usize) -> PerClientRate {
        let limit = limit.max(1);
        PerClientRate {
            limit,
            interval: RATE_WINDOW / limit,
            clients_max,
            table: Mutex::new(Table { empty_at: HashMap::new(), last_sweep: None }),
        }
    }

    /// The configured limit per minute.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Counts one event of `ip` at `now`, or says why it is refused (a
    /// refused event is not counted).
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Limited> {
        let client = client_of(ip);
        let mut table = self.table.lock();
        let known = table.empty_at.get(&client).copied();
        let empty_at = known.filter(|at| *at > now).unwrap_or(now);
        let next = empty_at + self.interval;
        let queued = next.saturating_duration_since(now);
        if queued > RATE_WINDOW {
            return Err(Limited::Client { retry_after: queued - RATE_WINDOW });
        }
        if known.is_none() && table.empty_at.len() >= self.clients_max {
            let swept_recently = table.last_sweep.is_some_and(|at| now.saturating_duration_since(at) < SWEEP_INTERVAL);
            if !swept_recently {
                table.empty_at.retain(|_, at| *at > now);
                table.last_sweep = Some(now);
            }
            if table.empty_at.len() >= self.clients_max {
                return Err(Limited::Table);
            }
        }
        table.empty_at.insert(client, next);
        Ok(())
    }

    /// Clients in the table now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table.lock().empty_at.len()
    }
}

/// The client an address counts as: the IPv4 address (also when written as
/// an IPv4-mapped IPv6 address), or the IPv6 /64 prefix.
pub fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_burst_of_limit_then_one_per_interval() {
        let rate = PerClientRate::new(6, 100);
        let t0 = Instant::now();
        for _ in 0..6 {
            assert_eq!(rate.check(ip("10.0.0.1"), t0), Ok(()));
        }
        assert_eq!(rate.check(ip("10.0.0.1"), t0), Err(Limited::Client { retry_after: Duration::from_secs(10) }));
        // Another client has its own budget.
        assert_eq!(rate.check(ip("10.0.0.2"), t0), Ok(()));
        // One more event every 10 s.
        assert!(rate.check(ip("10.0.0.1"), t0 + Duration::from_secs(9)).is_err());
        assert_eq!(rate.check(ip("10.0.0.1"), t0 + Duration::from_secs(10)), Ok(()));
        assert!(rate.check(ip("10.0.0.1"), t0 + Duration::from_secs(10)).is_err());
        // A full minute later the whole burst is back.
        let later = t0 + Duration::from_secs(80);
        for _ in 0..6 {
            assert_eq!(rate.check(ip("10.0.0.1"), later), Ok(()));
        }
        assert!(rate.check(ip("10.0.0.1"), later).is_err());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(client_of(ip("2001:db8:1:2:aaaa::1")), client_of(ip("2001:db8:1:2:bbbb::9")));
        assert_ne!(client_of(ip("2001:db8:1:2::1")), client_of(ip("2001:db8:1:3::1")));
        assert_eq!(client_of(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        let rate = PerClientRate::new(1, 100);
        let t0 = Instant::now();
        assert_eq!(rate.check(ip("2001:db8:1:2::1"), t0), Ok(()));
        assert!(rate.check(ip("2001:db8:1:2::ffff"), t0).is_err(), "same /64, same budget");
    }

    #[test]
    fn the_table_is_bounded_and_idle_clients_make_room() {
        let rate = PerClientRate::new(1, 3);
        let t0 = Instant::now();
        for n in 1..=3 {
            assert_eq!(rate.check(ip(&format!("10.0.0.{n}")), t0), Ok(()));
        }
        assert_eq!(rate.check(ip("10.0.0.4"), t0), Err(Limited::Table), "full of busy clients");
        assert_eq!(rate.tracked(), 3);
        // A minute on, those buckets are empty again: their entries go.
        let later = t0 + Duration::from_secs(61);
        assert_eq!(rate.check(ip("10.0.0.4"), later), Ok(()));
        assert_eq!(rate.tracked(), 1);
    }
}
