//! Per-worker HDR histograms and counters, merged on read.
//!
//! The hot path records into a worker-local [`WorkerMetrics`] (an `Rc`,
//! no lock, no atomic). Once a second each worker publishes a copy into its
//! slot of the [`MetricsHub`]; `/metrics` and `/metrics.json` merge the slots.
//! A scrape therefore sees figures at most a second old and never slows a worker.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{json, Value};

/// Highest value a latency histogram tracks, microseconds (1 hour).
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Highest ring occupancy tracked, bytes (4 GiB).
pub const OCCUPANCY_BYTES_MAX: u64 = 1 << 32;
/// Points kept in the p50/p99 time series (one per second: 10 minutes).
pub const SERIES_POINTS_MAX: usize = 600;

fn histogram(max: u64) -> Histogram<u64> {
    // 3 significant figures; bounds are constants, so creation cannot fail.
    Histogram::new_with_bounds(1, max, 3).unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// One worker's figures.
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    /// Frame read → write completion, per browser write, µs.
    pub relay_latency_us: Histogram<u64>,
    /// Query sent → first frame delivered to the browser, µs.
    pub ttfb_us: Histogram<u64>,
    /// Query sent → `stream_end` delivered, ms.
    pub stream_duration_ms: Histogram<u64>,
    /// Ring bytes queued when a writer picks up a batch.
    pub ring_occupancy_bytes: Histogram<u64>,
    /// Time a query waited in its tenant's admission queue, ms.
    pub queue_wait_ms: Histogram<u64>,
    /// Frames read from connectors.
    pub frames_in: u64,
    /// Frames written to browsers.
    pub frames_out: u64,
    /// Payload bytes written to browsers.
    pub bytes_out: u64,
    /// Frames dropped for slow live readers.
    pub frames_skipped: u64,
    /// Bytes moved between read buffers when a frame straddled a buffer end.
    pub read_carry_bytes: u64,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        WorkerMetrics {
            relay_latency_us: histogram(LATENCY_US_MAX),
            ttfb_us: histogram(LATENCY_US_MAX),
            stream_duration_ms: histogram(LATENCY_US_MAX / 1000),
            ring_occupancy_bytes: histogram(OCCUPANCY_BYTES_MAX),
            queue_wait_ms: histogram(LATENCY_US_MAX / 1000),
            frames_in: 0,
            frames_out: 0,
            bytes_out: 0,
            frames_skipped: 0,
            read_carry_bytes: 0,
        }
    }
}

impl WorkerMetrics {
    /// Records a value, saturating at the histogram's bound.
    pub fn record(histogram: &mut Histogram<u64>, value: u64) {
        let value = value.clamp(1, histogram.high());
        let _ = histogram.record(value);
    }

    /// Records a duration in µs.
    pub fn record_us(histogram: &mut Histogram<u64>, duration: Duration) {
        WorkerMetrics::record(histogram, u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
    }

    fn merge(&mut self, other: &WorkerMetrics) {
        let _ = self.relay_latency_us.add(&other.relay_latency_us);
        let _ = self.ttfb_us.add(&other.ttfb_us);
        let _ = self.stream_duration_ms.add(&other.stream_duration_ms);
        let _ = self.ring_occupancy_bytes.add(&other.ring_occupancy_bytes);
        let _ = self.queue_wait_ms.add(&other.queue_wait_ms);
        self.frames_in += other.frames_in;
        self.frames_out += other.frames_out;
        self.bytes_out += other.bytes_out;
        self.frames_skipped += other.frames_skipped;
        self.read_carry_bytes += other.read_carry_bytes;
    }
}

#[derive(Debug, Clone, Copy)]
struct SeriesPoint {
    t_ms: u64,
    relay_p50_us: u64,
    relay_p99_us: u64,
}

/// Published per-worker snapshots plus the merged time series.
#[derive(Debug)]
pub struct MetricsHub {
    slots: Vec<Mutex<WorkerMetrics>>,
    series: Mutex<VecDeque<SeriesPoint>>,
    /// Set to false to turn recording off (bench: metrics on vs off).
    pub enabled: bool,
}

impl MetricsHub {
    /// A hub for `workers` workers.
    pub fn new(workers: usize, enabled: bool) -> MetricsHub {
        MetricsHub {
            slots: (0..workers).map(|_| Mutex::new(WorkerMetrics::default())).collect(),
            series: Mutex::new(VecDeque::new()),
            enabled,
        }
    }

    /// Worker `index` publishes its figures (called once a second).
    pub fn publish(&self, index: usize, metrics: &WorkerMetrics) {
        if let Some(slot) = self.slots.get(index) {
            *slot.lock() = metrics.clone();
        }
        if index == 0 {
            let merged = self.merged();
            let mut series = self.series.lock();
            series.push_back(SeriesPoint {
                t_ms: now_ms(),
                relay_p50_us: merged.relay_latency_us.value_at_quantile(0.5),
                relay_p99_us: merged.relay_latency_us.value_at_quantile(0.99),
            });
            while series.len() > SERIES_POINTS_MAX {
                series.pop_front();
            }
        }
    }

    /// Worker `index`'s last published figures (tests check how work spread over workers).
    pub fn worker(&self, index: usize) -> Option<WorkerMetrics> {
        self.slots.get(index).map(|slot| slot.lock().clone())
    }

    /// All workers' figures merged.
    pub fn merged(&self) -> WorkerMetrics {
        let mut total = WorkerMetrics::default();
        for slot in &self.slots {
            total.merge(&slot.lock());
        }
        total
    }

    /// The JSON the latency page draws (shape documented in web/README.md).
    pub fn to_json(&self, gauges: &Gauges) -> Value {
        let merged = self.merged();
        let series: Vec<Value> = self
            .series
            .lock()
            .iter()
            .map(|p| json!({"t_ms": p.t_ms, "relay_p50_us": p.relay_p50_us, "relay_p99_us": p.relay_p99_us}))
            .collect();
        json!({
            "uptime_ms": gauges.uptime_ms,
            "workers": gauges.workers,
            "connectors": gauges.connectors,
            "sessions": gauges.sessions,
            "ring_bytes": gauges.ring_bytes,
            "control_bytes": gauges.control_bytes,
            "retained_bytes": gauges.retained_bytes,
            "inbox_bytes": gauges.inbox_bytes,
            "queued_queries": gauges.queued_queries,
            "share_log_bytes": gauges.share_log_bytes,
            "share_reserved_bytes": gauges.share_reserved_bytes,
            "runtimes": vec![gauges.runtime; gauges.workers],
            "counters": {
                "frames_in": merged.frames_in,
                "frames_out": merged.frames_out,
                "bytes_out": merged.bytes_out,
                "frames_skipped": merged.frames_skipped,
                "read_carry_bytes": merged.read_carry_bytes,
                "panics": gauges.panics,
                "queries_queued": gauges.queries_queued_total,
                "shared_joins": gauges.shared_joins_total,
                "shared_reuses": gauges.shared_reuses_total,
                "share_refused": gauges.share_refused_total,
            },
            "histograms": {
                "relay_latency_us": summary(&merged.relay_latency_us),
                "ttfb_us": summary(&merged.ttfb_us),
                "stream_duration_ms": summary(&merged.stream_duration_ms),
                "ring_occupancy_bytes": summary(&merged.ring_occupancy_bytes),
                "queue_wait_ms": summary(&merged.queue_wait_ms),
            },
            "series": series,
        })
    }

    /// Prometheus text exposition format.
    pub fn to_prometheus(&self, gauges: &Gauges) -> String {
        let merged = self.merged();
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, kind: &str, value: u64| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
        };
        gauge("volley_workers", "Worker threads.", "gauge", gauges.workers as u64);
        gauge("volley_connectors", "Connector tunnels online.", "gauge", gauges.connectors as u64);
        gauge("volley_sessions", "Browser sessions open.", "gauge", gauges.sessions as u64);
        gauge("volley_ring_bytes", "Bytes queued in session rings.", "gauge", gauges.ring_bytes as u64);
        gauge("volley_control_bytes", "Of the queued bytes, control output.", "gauge", gauges.control_bytes as u64);
        gauge(
            "volley_live_retained_bytes",
            "Bytes of schema and dictionary frames live streams keep for late joiners.",
            "gauge",
            gauges.retained_bytes as u64,
        );
        gauge(
            "volley_queued_queries",
            "Queries waiting in admission queues for a stream slot, all tenants.",
            "gauge",
            gauges.queued_queries as u64,
        );
        gauge(
            "volley_share_log_bytes",
            "Bytes shared query logs hold now (frames of streams identical queries read together).",
            "gauge",
            gauges.share_log_bytes as u64,
        );
        gauge(
            "volley_share_reserved_bytes",
            "Of queries.share_total_bytes, what running and kept shared query logs reserved.",
            "gauge",
            gauges.share_reserved_bytes as u64,
        );
        gauge(
            "volley_inbox_bytes",
            "Bytes of frames and stream events waiting in worker inboxes for delivery, all workers.",
            "gauge",
            gauges.inbox_bytes as u64,
        );
        out.push_str("# HELP volley_worker_runtime The IO driver a worker runs on (1 for its driver).\n");
        out.push_str("# TYPE volley_worker_runtime gauge\n");
        for worker in 0..gauges.workers {
            let runtime = gauges.runtime;
            out.push_str(&format!("volley_worker_runtime{{worker=\"{worker}\",runtime=\"{runtime}\"}} 1\n"));
        }
        let mut gauge = |name: &str, help: &str, kind: &str, value: u64| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
        };
        gauge("volley_frames_in_total", "Frames read from connectors.", "counter", merged.frames_in);
        gauge("volley_frames_out_total", "Frames written to browsers.", "counter", merged.frames_out);
        gauge("volley_bytes_out_total", "Bytes written to browsers.", "counter", merged.bytes_out);
        gauge("volley_frames_skipped_total", "Frames skipped for slow live readers.", "counter", merged.frames_skipped);
        gauge("volley_read_carry_bytes_total", "Bytes moved between read buffers.", "counter", merged.read_carry_bytes);
        gauge(
            "volley_queries_queued_total",
            "Queries that waited in an admission queue for a stream slot.",
            "counter",
            gauges.queries_queued_total,
        );
        gauge(
            "volley_shared_joins_total",
            "Queries that joined an identical query's upstream stream instead of starting one (streams saved).",
            "counter",
            gauges.shared_joins_total,
        );
        gauge(
            "volley_shared_reuses_total",
            "Of the joins, those answered from a completed stream kept for queries.reuse_seconds.",
            "counter",
            gauges.shared_reuses_total,
        );
        gauge(
            "volley_share_refused_total",
            "Queries that got a stream of their own because queries.share_total_bytes was taken.",
            "counter",
            gauges.share_refused_total,
        );
        gauge(
            "volley_panics_total",
            "Connection tasks ended by a panic (each closed one connection).",
            "counter",
            gauges.panics,
        );
        for (name, help, h, scale) in [
            (
                "volley_relay_latency_seconds",
                "Frame read to write completion (replays to late joiners excluded).",
                &merged.relay_latency_us,
                1e-6,
            ),
            ("volley_ttfb_seconds", "Query to first frame delivered.", &merged.ttfb_us, 1e-6),
            ("volley_stream_duration_seconds", "Query to stream end.", &merged.stream_duration_ms, 1e-3),
            ("volley_queue_wait_seconds", "Time queries waited in admission queues.", &merged.queue_wait_ms, 1e-3),
        ] {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} summary\n"));
            for q in [0.5, 0.9, 0.99, 0.999] {
                out.push_str(&format!("{name}{{quantile=\"{q}\"}} {}\n", h.value_at_quantile(q) as f64 * scale));
            }
            out.push_str(&format!("{name}_sum {}\n", h.mean() * h.len() as f64 * scale));
            out.push_str(&format!("{name}_count {}\n", h.len()));
        }
        out
    }
}

/// Point-in-time gauges the registry knows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Since start.
    pub uptime_ms: u64,
    /// Worker threads.
    pub workers: usize,
    /// Connector tunnels.
    pub connectors: usize,
    /// Browser sessions.
    pub sessions: usize,
    /// Ring bytes queued.
    pub ring_bytes: usize,
    /// Of which control output (replies, events, pings).
    pub control_bytes: usize,
    /// Connection tasks ended by a panic.
    pub panics: u64,
    /// Bytes live streams keep for late joiners.
    pub retained_bytes: usize,
    /// Bytes of frames and events waiting in worker inboxes, all workers.
    pub inbox_bytes: usize,
    /// The driver every worker runs on (`io_uring` or `epoll`).
    pub runtime: &'static str,
    /// Queries waiting in admission queues.
    pub queued_queries: usize,
    /// Queries that ever waited in one.
    pub queries_queued_total: u64,
    /// Bytes shared query logs hold now.
    pub share_log_bytes: usize,
    /// Of `queries.share_total_bytes`, what running and kept logs reserved.
    pub share_reserved_bytes: usize,
    /// Queries that joined an identical query's stream (upstream streams saved).
    pub shared_joins_total: u64,
    /// Of those, joins of a completed stream kept for `reuse_seconds`.
    pub shared_reuses_total: u64,
    /// Queries not shared because the gateway's log budget was taken.
    pub share_refused_total: u64,
}

fn summary(h: &Histogram<u64>) -> Value {
    let distribution: Vec<Value> = [50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0]
        .iter()
        .map(|p| json!([p, h.value_at_percentile(*p)]))
        .collect();
    json!({
        "count": h.len(),
        "min": if h.is_empty() { 0 } else { h.min() },
        "p50": h.value_at_quantile(0.5),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
        "mean": h.mean(),
        "distribution": distribution,
    })
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(0)).unwrap_or(0)
}
