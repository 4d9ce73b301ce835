//! `volley cluster status --redis URL`: the cluster's directory as a person
//! reads it — the nodes (id, advertised address, age of their last
//! heartbeat) and the connector leases (tenant, connector, node, epoch, time
//! left), read from the Redis the gateways share (their `redis.url`). Exit
//! status 1, with what to check, when Redis does not answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use clap::{Args, Subcommand};
use volley_engine::ClusterStatus;

/// How long `status` waits for Redis (connect, and each command).
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// The cluster of gateways that share one Redis.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Print the nodes and the connector leases in the directory.
    Status {
        /// The Redis the gateways share: their `redis.url`.
        #[arg(long = "redis", value_name = "URL", env = "VOLLEY_REDIS_URL")]
        redis: String,
    },
}

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Status { redis } => {
            let status = volley_engine::read_status(&redis, STATUS_TIMEOUT).map_err(|e| {
                anyhow!(
                    "cannot read the cluster directory at {} ({e}): check that redis-server runs there and answers \
                     (redis-cli -u URL ping), that this host can reach it, and that URL is the redis.url of the \
                     gateways' gateway.yaml",
                    redact(&redis)
                )
            })?;
            print!("{}", render(&status, now_ms()));
            Ok(())
        }
    }
}

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(i64::MAX)
}

/// A URL without its `user:password@` part.
fn redact(url: &str) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| rest.rsplit_once('@').map(|(_, host)| (scheme, host))) {
        Some((scheme, host)) => format!("{scheme}://<redacted>@{host}"),
        None => url.to_owned(),
    }
}

/// Milliseconds as people read them: `0.4 s`, `12 s`, `3 min`, `2 h`.
fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..=9_999 => format!("{:.1} s", ms as f64 / 1000.0),
        10_000..=119_999 => format!("{} s", ms / 1000),
        120_000..=7_199_999 => format!("{} min", ms / 60_000),
        _ => format!("{} h", ms / 3_600_000),
    }
}

/// Rows as columns padded to their widest cell, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}", width = *width)).collect();
        format!("  {}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// The status as text.
fn render(status: &ClusterStatus, now_ms: i64) -> String {
    let mut out = String::new();
    if status.nodes.is_empty() {
        out.push_str(
            "Nodes: none. No gateway with a cluster: section heartbeats in this Redis (none runs, or their redis.url \
             names another Redis or database).\n",
        );
    } else {
        out.push_str(&format!("Nodes ({}):\n", status.nodes.len()));
        let rows: Vec<Vec<String>> = status
            .nodes
            .iter()
            .map(|n| {
                vec![
                    n.node.clone(),
                    n.advertise.clone(),
                    format!("{} ago", duration(now_ms - n.heartbeat_ms)),
                    format!("{} ago", duration(now_ms - n.started.saturating_mul(1000))),
                    duration(n.ttl_ms),
                ]
            })
            .collect();
        out.push_str(&table(&["NODE", "ADVERTISE", "HEARTBEAT", "STARTED", "EXPIRES IN"], &rows));
    }
    if status.leases.is_empty() {
        out.push_str("Leases: none. No connector is registered with a node of this cluster.\n");
    } else {
        out.push_str(&format!("Leases ({}): which node serves each tenant's connectors\n", status.leases.len()));
        let rows: Vec<Vec<String>> = status
            .leases
            .iter()
            .map(|l| {
                vec![
                    l.tenant.clone(),
                    l.connector.clone(),
                    l.node.clone(),
                    l.epoch.to_string(),
                    l.tunnels.clone(),
                    duration(l.ttl_ms),
                ]
            })
            .collect();
        out.push_str(&table(&["TENANT", "CONNECTOR", "NODE", "EPOCH", "TUNNELS", "EXPIRES IN"], &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use volley_engine::{LeaseStatus, NodeStatus};

    #[test]
    fn the_status_reads_as_two_tables() {
        let status = ClusterStatus {
            nodes: vec![NodeStatus {
                node: "gw-1".into(),
                advertise: "10.0.3.7:7071".into(),
                started: 0,
                heartbeat_ms: 1_000_000 - 400,
                ttl_ms: 9_600,
            }],
            leases: vec![LeaseStatus {
                tenant: "acme".into(),
                connector: "c-jti-1".into(),
                node: "gw-1".into(),
                epoch: 2,
                tunnels: "c-3".into(),
                ttl_ms: 8_000,
            }],
        };
        let text = render(&status, 1_000_000);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert_eq!(lines[0], "Nodes (1):");
        assert_eq!(lines[1], "  NODE  ADVERTISE      HEARTBEAT  STARTED     EXPIRES IN");
        assert_eq!(lines[2], "  gw-1  10.0.3.7:7071  0.4 s ago  16 min ago  9.6 s");
        assert_eq!(lines[3], "Leases (1): which node serves each tenant's connectors");
        assert_eq!(lines[4], "  TENANT  CONNECTOR  NODE  EPOCH  TUNNELS  EXPIRES IN");
        assert_eq!(lines[5], "  acme    c-jti-1    gw-1  2      c-3      8.0 s");
        let empty = render(&ClusterStatus::default(), 0);
        assert!(empty.contains("Nodes: none") && empty.contains("Leases: none"), "{empty}");
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(redact("redis://:pw@db:6379/0"), "redis://<redacted>@db:6379/0");
        assert_eq!(redact("redis://db:6379/"), "redis://db:6379/");
    }
}
