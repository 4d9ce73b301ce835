//! The scenarios. Each starts its own simulated connectors (fresh tunnels,
//! its own dataset names) and browsers against the gateway, measures, stops
//! them, and returns a [`ScenarioResult`]. Defaults follow the issue; the
//! `--duration` option scales the amount of data rather than a wall-clock
//! timer, so a run always finishes whole streams.

use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use volley_protocol::token::{sign, ConnectorClaims, SessionClaims, ROLE_CONNECTOR};

use crate::browsers::{self, Action, Fleet, GroupResult, GroupSpec};
use crate::connector::{Connector, ConnectorSpec, DatasetSpec};
use crate::source::median;
use crate::{hist, relay, ScenarioResult, READY_TIMEOUT};

/// Default latency rate (frames/s).
pub const LATENCY_RATE_DEFAULT: u64 = 10_000;
/// Default latency frame payload (after the 16-byte header).
pub const LATENCY_FRAME_BYTES_DEFAULT: usize = 256;
/// Bytes a latency frame takes on a browser's socket beyond its payload: the
/// level-2 header and a WebSocket server frame header with a 16-bit length.
pub const LATENCY_WIRE_OVERHEAD_BYTES: usize = crate::wire::HEADER_BYTES + 4;

/// Record size of the relay latency baselines for latency frames of
/// `frame_bytes` payload: what a browser reads per frame.
pub const fn latency_record_bytes(frame_bytes: usize) -> usize {
    frame_bytes + LATENCY_WIRE_OVERHEAD_BYTES
}
const TENANT: &str = "bench";
const MIB: u64 = 1 << 20;

/// Everything a scenario needs.
pub struct Context {
    /// Gateway address.
    pub addr: SocketAddr,
    /// Token secret.
    pub secret: String,
    /// Options.
    pub options: crate::Options,
    /// Baseline figures of this invocation.
    pub baseline: Value,
}

impl Context {
    fn session_token(&self) -> Result<String, String> {
        let now = unix_seconds();
        let claims = SessionClaims {
            sub: "bench".into(),
            cuenta_id: TENANT.into(),
            edge_id: String::new(),
            permisos: vec!["*".into()],
            jti: format!("bench-{}", crate::wire::now_nanos()),
            iat: now - 10,
            exp: now + 24 * 3600,
            nbf: None,
            role: None,
        };
        sign(&claims, self.secret.as_bytes()).map_err(|e| e.to_string())
    }

    fn connector(&self, datasets: Vec<DatasetSpec>) -> Result<Connector, String> {
        let now = unix_seconds();
        let claims = ConnectorClaims {
            cuenta_id: TENANT.into(),
            role: ROLE_CONNECTOR.into(),
            jti: format!("bench-c-{}", crate::wire::now_nanos()),
            iat: now - 10,
            exp: now + 24 * 3600,
            nbf: None,
        };
        let token = sign(&claims, self.secret.as_bytes()).map_err(|e| e.to_string())?;
        Connector::start(ConnectorSpec { addr: self.addr, tenant: TENANT.into(), token, datasets })
    }

    fn progress(&self, label: &str, status: impl Fn() -> String + Send + 'static) -> Option<Progress> {
        self.options.progress.then(|| Progress::start(label, status))
    }

    fn gateway_cpu(&self) -> Option<f64> {
        self.options.gateway_pid.and_then(crate::cpu_seconds)
    }

    fn baseline_f64(&self, key: &str) -> Option<f64> {
        self.baseline[key].as_f64()
    }
}

fn unix_seconds() -> i64 {
    i64::try_from(crate::wire::now_nanos() / 1_000_000_000).unwrap_or(0)
}

/// `ws://host:port[/…]` or `host:port` → a socket address.
pub fn resolve(url: &str) -> Result<SocketAddr, String> {
    let rest = url.strip_prefix("ws://").unwrap_or(url);
    if url.starts_with("wss://") {
        return Err("the bench speaks plain ws:// only (run it next to the gateway)".into());
    }
    let host = rest.split('/').next().unwrap_or(rest);
    host.to_socket_addrs()
        .map_err(|e| format!("gateway address {url:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("gateway address {url:?} resolves to nothing"))
}

/// A phase's status on stderr until dropped. On a terminal, one line
/// redrawn in place (`\r`) every 250 ms; otherwise (a pipe, a log file, CI)
/// one line when the phase ends, so a log gets a line per phase and no
/// carriage returns.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Not a terminal: what the line at the end needs.
    plain: Option<PlainLine>,
}

struct PlainLine {
    label: String,
    started: Instant,
    status: Box<dyn Fn() -> String + Send>,
}

impl Progress {
    /// Shows `[label] <seconds> status()` as described on [`Progress`].
    pub fn start(label: &str, status: impl Fn() -> String + Send + 'static) -> Progress {
        use std::io::IsTerminal as _;
        let stop = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            let plain = PlainLine { label: label.to_owned(), started: Instant::now(), status: Box::new(status) };
            return Progress { stop, thread: None, plain: Some(plain) };
        }
        let label = label.to_owned();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            loop {
                let done = flag.load(Ordering::Acquire);
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K[{label}] {:>5.1}s {}", started.elapsed().as_secs_f64(), status());
                if done {
                    let _ = writeln!(err);
                    return;
                }
                drop(err);
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        Progress { stop, thread: Some(thread), plain: None }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(line) = self.plain.take() {
            eprintln!("[{}] {:.1}s {}", line.label, line.started.elapsed().as_secs_f64(), (line.status)());
        }
    }
}

fn gib(bytes: f64) -> String {
    format!("{:.2} GB", bytes / 1e9)
}

/// Merged view of several groups.
struct Merged {
    browsers: usize,
    completed: usize,
    bytes: u64,
    frames: u64,
    gaps: u64,
    skipped: u64,
    end_nanos: Vec<u64>,
    first_frame: u64,
    last_frame: u64,
    errors: Vec<String>,
    error_count: u64,
    latency_scheduled: hdrhistogram::Histogram<u64>,
    latency_sent: hdrhistogram::Histogram<u64>,
    ttfb: hdrhistogram::Histogram<u64>,
    query: hdrhistogram::Histogram<u64>,
}

fn merge(groups: Vec<GroupResult>) -> Result<Merged, String> {
    let mut m = Merged {
        browsers: 0,
        completed: 0,
        bytes: 0,
        frames: 0,
        gaps: 0,
        skipped: 0,
        end_nanos: Vec::new(),
        first_frame: u64::MAX,
        last_frame: 0,
        errors: Vec::new(),
        error_count: 0,
        latency_scheduled: hist::new_ns(),
        latency_sent: hist::new_ns(),
        ttfb: hist::new_us(),
        query: hist::new_us(),
    };
    for g in groups {
        m.browsers += g.browsers;
        m.completed += g.completed;
        m.bytes += g.bytes;
        m.frames += g.frames;
        m.gaps += g.gaps;
        m.skipped += g.skipped_frames;
        m.end_nanos.extend(g.end_nanos);
        if g.first_frame_nanos > 0 {
            m.first_frame = m.first_frame.min(g.first_frame_nanos);
        }
        m.last_frame = m.last_frame.max(g.last_frame_nanos);
        m.error_count += g.error_count;
        m.errors.extend(g.errors);
        hist::merge_encoded(&mut m.latency_scheduled, g.latency_scheduled_ns.as_ref())?;
        hist::merge_encoded(&mut m.latency_sent, g.latency_sent_ns.as_ref())?;
        hist::merge_encoded(&mut m.ttfb, g.ttfb_us.as_ref())?;
        hist::merge_encoded(&mut m.query, g.query_us.as_ref())?;
    }
    m.errors.truncate(20);
    Ok(m)
}

/// How many groups (epoll reader threads, or child processes) `count`
/// browsers are split into: one up to 20 browsers, else one per core (at
/// least two, at most one per browser).
fn group_count(count: usize) -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if count <= 20 {
        1
    } else {
        cores.max(2).min(count)
    }
}

/// Splits `count` browsers into [`group_count`] groups, threads of this
/// process, child processes from 1000 browsers on.
fn plan_groups(
    ctx: &Context,
    count: usize,
    action: Action,
    stamped: bool,
    timeout: u64,
) -> Result<(Vec<GroupSpec>, bool), String> {
    let processes = count >= 1000;
    let groups = group_count(count);
    let token = ctx.session_token()?;
    let specs = (0..groups)
        .map(|g| GroupSpec {
            addr: ctx.addr,
            token: token.clone(),
            count: count / groups + usize::from(g < count % groups),
            action: action.clone(),
            stamped,
            timeout_seconds: timeout,
        })
        .filter(|s| s.count > 0)
        .collect();
    Ok((specs, processes))
}

/// One query stream of `frames` × `frame_bytes` through one browser.
fn one_stream(ctx: &Context, label: &str, frame_bytes: usize, frames: u64) -> Result<Value, String> {
    let dataset = format!("{label}-{}", crate::wire::now_nanos());
    let connector = ctx.connector(vec![DatasetSpec {
        name: dataset.clone(),
        live: false,
        frame_bytes,
        frames,
        rate_per_second: None,
    }])?;
    let stats = connector.stats.clone();
    let total = frames * frame_bytes as u64;
    let _progress = ctx.progress(label, move || {
        let sent = stats.bytes_sent.load(Ordering::Relaxed) as f64;
        format!("{} of {} sent", gib(sent), gib(total as f64))
    });
    let cpu_before = ctx.gateway_cpu();
    let (specs, _) = plan_groups(ctx, 1, Action::Query { dataset, queries: 1 }, false, 600)?;
    let fleet = Fleet::start(specs, false)?;
    let groups = fleet.join()?;
    let cpu = ctx.gateway_cpu().zip(cpu_before).map(|(a, b)| a - b);
    let credit_messages = connector.stats.credit_messages.load(Ordering::Relaxed);
    let conn_error = connector.stop().err();
    drop(_progress);
    let m = merge(groups)?;
    let seconds = m.query.max() as f64 / 1e6;
    let payload = frames as f64 * frame_bytes as f64;
    let mut errors = m.errors;
    errors.extend(conn_error);
    Ok(json!({
        "frame_bytes": frame_bytes,
        "frames": frames,
        "payload_bytes": payload,
        "received_frames": m.frames,
        "seconds": seconds,
        "gbps": payload / seconds.max(1e-9) / 1e9,
        "frames_per_s": frames as f64 / seconds.max(1e-9),
        "ttfb_us": m.ttfb.max(),
        "complete": m.completed == 1 && m.frames == frames,
        "gateway_cpu_seconds": cpu,
        "gateway_gb_per_cpu_second": cpu.map(|c| payload / 1e9 / c.max(1e-9)),
        "credit_messages": credit_messages,
        "errors": errors,
    }))
}

fn collect_errors(figures: &[&Value]) -> Vec<String> {
    figures
        .iter()
        .flat_map(|f| f["errors"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect()
}

/// 1 connector → 1 browser query stream, 64 MiB × duration (default 256 MiB)
/// in 64 KiB and in 1 MiB frames.
pub fn throughput(ctx: &Context) -> Result<ScenarioResult, String> {
    let duration = ctx.options.duration_seconds.unwrap_or(4);
    let total = 64 * MIB * duration;
    let sizes: Vec<usize> = match ctx.options.frame_bytes {
        Some(b) => vec![b],
        None => vec![64 * 1024, 1 << 20],
    };
    let mut runs = Vec::new();
    let mut figures = json!({"bytes_per_run": total, "repetitions": THROUGHPUT_REPETITIONS});
    // (GB/s, ratio to the relay) of the first frame size.
    let mut headline = None;
    for size in &sizes {
        // Relay and gateway alternate, REPETITIONS times each: on a shared
        // 2-core machine one 0.1 s run of either varies by ±30 %, so the
        // ratio of medians measured side by side is the figure to trust.
        let (mut gateway, mut relay) = (Vec::new(), Vec::new());
        for _ in 0..THROUGHPUT_REPETITIONS {
            relay.push(relay::relay_gbps(total, *size).map_err(|e| format!("relay: {e}"))?);
            let run = one_stream(ctx, &format!("throughput-{}k", size / 1024), *size, (total / *size as u64).max(1))?;
            gateway.push(run["gbps"].as_f64().unwrap_or(0.0));
            runs.push(run);
        }
        let (gateway, relay) = (median(&gateway), median(&relay));
        let ratio = gateway / relay.max(1e-9);
        let key = format!("{}k_frames", size / 1024);
        figures[format!("gbps_{key}")] = json!(gateway);
        figures[format!("relay_gbps_{key}")] = json!(relay);
        figures[format!("ratio_{key}")] = json!(ratio);
        headline.get_or_insert((gateway, ratio));
    }
    figures["runs"] = json!(runs);
    let (gbps, ratio) = headline.unwrap_or_default();
    Ok(ScenarioResult {
        headline: json!({"name": format!("throughput, {} KiB frames (median of {THROUGHPUT_REPETITIONS})", sizes[0] / 1024),
                         "value": gbps, "unit": "GB/s", "goal": "≥ 0.9× TCP relay"}),
        baseline_ratio: Some(ratio),
        baseline_ratio_meaning: format!(
            "median gateway GB/s / median plain TCP relay GB/s (same bytes, same frame size), {THROUGHPUT_REPETITIONS} \
             runs of each, alternated"
        ),
        errors: collect_errors(&runs.iter().collect::<Vec<_>>()),
        figures,
        notes: vec!["query stream (credit flow control), one level-2 browser; GB/s counts IPC payload bytes from query sent to stream_end".into()],
        ..Default::default()
    })
}

/// Runs of each side in the throughput scenario (relay and gateway alternated).
pub const THROUGHPUT_REPETITIONS: usize = 5;

/// 1 connector live stream → K browsers, 1 MiB × duration each (default 16 MiB).
pub fn fanout(ctx: &Context) -> Result<ScenarioResult, String> {
    let duration = ctx.options.duration_seconds.unwrap_or(16);
    let per_browser = MIB * duration;
    let frame_bytes = ctx.options.frame_bytes.unwrap_or(64 * 1024);
    let counts: Vec<usize> = match ctx.options.browsers {
        Some(k) => vec![k],
        None => vec![10, 100, 1000],
    };
    let mut runs = Vec::new();
    let mut histograms = std::collections::BTreeMap::new();
    let mut errors = Vec::new();
    for k in &counts {
        let frames = (per_browser / frame_bytes as u64).max(1);
        let dataset = format!("fanout-{k}-{}", crate::wire::now_nanos());
        let connector = ctx.connector(vec![DatasetSpec {
            name: dataset.clone(),
            live: true,
            frame_bytes,
            frames,
            rate_per_second: ctx.options.rate_per_second,
        }])?;
        let (specs, processes) = plan_groups(ctx, *k, Action::Subscribe { dataset }, false, 600)?;
        let connecting = ctx.progress(&format!("fanout {k}"), || "connecting browsers".into());
        let fleet = Fleet::start(specs, processes)?;
        fleet.wait_ready(READY_TIMEOUT)?;
        drop(connecting);
        let stats = connector.stats.clone();
        let total = frames * frame_bytes as u64;
        let progress = ctx.progress(&format!("fanout {k}"), move || {
            format!("{} of {} sent upstream", gib(stats.bytes_sent.load(Ordering::Relaxed) as f64), gib(total as f64))
        });
        let cpu_before = ctx.gateway_cpu();
        connector.go();
        let groups = fleet.join()?;
        let cpu = ctx.gateway_cpu().zip(cpu_before).map(|(a, b)| a - b);
        drop(progress);
        let started = connector.stats.live_started_nanos.load(Ordering::Acquire);
        let upstream_done = connector.stats.live_finished_nanos.load(Ordering::Acquire);
        if let Err(e) = connector.stop() {
            errors.push(e);
        }
        let m = merge(groups)?;
        let mut completion = hist::new_us();
        for end in &m.end_nanos {
            hist::record(&mut completion, end.saturating_sub(started) / 1000);
        }
        let end = m.end_nanos.iter().copied().max().unwrap_or(m.last_frame).max(m.last_frame);
        let seconds = end.saturating_sub(started) as f64 / 1e9;
        let delivered = m.bytes as f64;
        errors.extend(m.errors.iter().cloned());
        runs.push(json!({
            "browsers": k,
            "browser_processes": processes,
            "frame_bytes": frame_bytes,
            "frames_per_browser": frames,
            "offered_bytes_per_browser": total,
            "delivered_bytes": delivered,
            "delivered_fraction": delivered / (total as f64 * *k as f64).max(1.0),
            "seconds": seconds,
            "aggregate_gbps": delivered / seconds.max(1e-9) / 1e9,
            "upstream_seconds": upstream_done.saturating_sub(started) as f64 / 1e9,
            "completed_browsers": m.completed,
            "gaps": m.gaps,
            "skipped_frames": m.skipped,
            "completion_p50_s": completion.value_at_quantile(0.5) as f64 / 1e6,
            "completion_p99_s": completion.value_at_quantile(0.99) as f64 / 1e6,
            "gateway_cpu_seconds": cpu,
            "error_count": m.error_count,
        }));
        histograms.insert(format!("completion_{k}_browsers"), hist::record_json(&completion, "us"));
    }
    let last = runs.last().cloned().unwrap_or(Value::Null);
    let gbps = last["aggregate_gbps"].as_f64().unwrap_or(0.0);
    Ok(ScenarioResult {
        headline: json!({"name": format!("aggregate delivered, {} browsers", last["browsers"]), "value": gbps,
            "unit": "GB/s", "goal": "1000 browsers: ≥ 1.5 GB/s aggregate, p99 completion ≤ 12 s"}),
        baseline_ratio: ctx.baseline_f64("relay_64k_gbps").map(|r| gbps / r),
        baseline_ratio_meaning: "aggregate delivered GB/s / relay_64k_gbps (one relay stream)".into(),
        figures: json!({"runs": runs}),
        histograms,
        errors,
        notes: vec!["live subscription (no credit; slow readers skip to the next batch with a gap message, policy skip). Completion = connector's first frame → browser's LAST frame or stream_end; delivered bytes count what browsers actually received".into()],
        ..Default::default()
    })
}

/// Fixed-rate stamped live frames → 100 browsers; latency from the scheduled
/// send time. First, on the same machine before the gateway run, its
/// baseline: a plain TCP relay fanning the same records out to as many
/// readers on as many epoll threads ([`relay::relay_fanout_latency`]).
pub fn latency(ctx: &Context) -> Result<ScenarioResult, String> {
    let duration = ctx.options.duration_seconds.unwrap_or(10);
    let rate = ctx.options.rate_per_second.unwrap_or(LATENCY_RATE_DEFAULT);
    let browsers = ctx.options.browsers.unwrap_or(100);
    let frame_bytes = ctx.options.frame_bytes.unwrap_or(LATENCY_FRAME_BYTES_DEFAULT).max(16);
    let frames = rate * duration;
    let record_bytes = latency_record_bytes(frame_bytes);
    let reader_threads = group_count(browsers);
    let relaying = ctx.progress("latency", move || {
        format!("baseline: plain TCP relay → {browsers} readers on {reader_threads} threads at {rate}/s")
    });
    let relay_fanout =
        relay::relay_fanout_latency(rate, record_bytes, Duration::from_secs(duration), browsers, reader_threads);
    drop(relaying);
    let dataset = format!("latency-{}", crate::wire::now_nanos());
    let connector = ctx.connector(vec![DatasetSpec {
        name: dataset.clone(),
        live: true,
        frame_bytes,
        frames,
        rate_per_second: Some(rate),
    }])?;
    let (specs, processes) = plan_groups(ctx, browsers, Action::Subscribe { dataset }, true, duration + 120)?;
    let fleet = Fleet::start(specs, processes)?;
    fleet.wait_ready(READY_TIMEOUT)?;
    let stats = connector.stats.clone();
    let progress = ctx.progress("latency", move || {
        format!("{} of {frames} frames sent at {rate}/s", stats.frames_sent.load(Ordering::Relaxed))
    });
    let cpu_before = ctx.gateway_cpu();
    connector.go();
    let groups = fleet.join()?;
    let cpu = ctx.gateway_cpu().zip(cpu_before).map(|(a, b)| a - b);
    drop(progress);
    let mut errors: Vec<String> = connector.stop().err().into_iter().collect();
    let relay_fanout = relay_fanout.map_err(|e| errors.push(format!("relay fan-out baseline: {e}"))).ok();
    let m = merge(groups)?;
    errors.extend(m.errors.iter().cloned());
    let h = &m.latency_scheduled;
    let p50_us = h.value_at_quantile(0.5) as f64 / 1e3;
    let relay_us = |q: f64| relay_fanout.as_ref().map(|r| r.value_at_quantile(q) as f64 / 1e3);
    let mut histograms = std::collections::BTreeMap::new();
    histograms.insert("latency_from_scheduled".into(), hist::record_json(h, "ns"));
    histograms.insert("latency_from_actual_send".into(), hist::record_json(&m.latency_sent, "ns"));
    if let Some(r) = &relay_fanout {
        histograms.insert("relay_fanout_latency".into(), hist::record_json(r, "ns"));
    }
    Ok(ScenarioResult {
        headline: json!({"name": "latency p50 (from scheduled send)", "value": p50_us, "unit": "µs",
            "goal": "p50 ≤ 80 µs, p99 ≤ 1 ms at 100 browsers × 10k frames/s"}),
        baseline_ratio: relay_fanout
            .as_ref()
            .map(|r| h.value_at_quantile(0.5) as f64 / (r.value_at_quantile(0.5) as f64).max(1.0)),
        baseline_ratio_meaning: "gateway p50 / relay fan-out p50: plain TCP relay fanning out to the same number of \
            readers at the same rate, measured in the same run (same record size, as many epoll reader threads as \
            browser groups); lower is better"
            .into(),
        figures: json!({
            "browsers": browsers, "rate_per_s": rate, "frame_bytes": frame_bytes, "frames_sent": frames,
            "deliveries_expected": frames * browsers as u64, "deliveries": m.frames,
            "p50_us": p50_us, "p90_us": h.value_at_quantile(0.9) as f64 / 1e3,
            "p99_us": h.value_at_quantile(0.99) as f64 / 1e3, "p99_9_us": h.value_at_quantile(0.999) as f64 / 1e3,
            "max_us": h.max() as f64 / 1e3,
            "gaps": m.gaps, "skipped_frames": m.skipped, "completed_browsers": m.completed,
            "browser_processes": processes, "gateway_cpu_seconds": cpu,
            "relay_fanout_p50_us": relay_us(0.5), "relay_fanout_p99_us": relay_us(0.99),
            "relay_fanout_record_bytes": record_bytes, "relay_fanout_reader_threads": reader_threads,
        }),
        histograms,
        errors,
        notes: vec![
            "open loop: frame i is due at t0 + i/rate; latency = receive time − scheduled time (coordinated omission avoided); latency_from_actual_send excludes the sender's own timer lateness. Clock: CLOCK_REALTIME nanos, same host".into(),
            "relay_fanout_latency, measured just before the gateway run: the same open-loop sender (records of frame + level-2 + WebSocket header bytes) into a plain TCP relay, one thread doing a blocking read and a write_all (TCP_NODELAY) of each read to every reader in turn, read by as many readers on as many epoll threads as the browsers here; the baseline's relay_latency_ns is the same relay with one reader".into(),
        ],
        ..Default::default()
    })
}

/// 1 KiB frames, one query stream, frames/s.
pub fn small_frames(ctx: &Context) -> Result<ScenarioResult, String> {
    let duration = ctx.options.duration_seconds.unwrap_or(5);
    let frame_bytes = ctx.options.frame_bytes.unwrap_or(1024);
    let frames = 200_000 * duration;
    let run = one_stream(ctx, "small-frames", frame_bytes, frames)?;
    let fps = run["frames_per_s"].as_f64().unwrap_or(0.0);
    let wire = (frame_bytes + 16 + 4) as f64;
    let relay_fps = ctx.baseline_f64("relay_64k_gbps").map(|g| g * 1e9 / wire);
    Ok(ScenarioResult {
        headline: json!({"name": format!("frames/s, {frame_bytes} B frames"), "value": fps, "unit": "frames/s",
            "goal": "≥ 800k frames/s at 1 KiB"}),
        baseline_ratio: relay_fps.map(|r| fps / r),
        baseline_ratio_meaning: "gateway frames/s / (relay_64k_gbps ÷ wire bytes per frame): the relay moving the same bytes in the same 64 KiB batched writes".into(),
        errors: collect_errors(&[&run]),
        figures: json!({"run": run, "relay_equivalent_frames_per_s": relay_fps}),
        notes: vec!["one query stream with credit; the connector writes frames in 64 KiB batches".into()],
        ..Default::default()
    })
}

/// Descriptors the idle scenario keeps free beyond one per session.
pub const IDLE_FD_MARGIN: u64 = 512;
/// Sessions `idle` opens (and keeps open) before its baseline RSS reading.
pub const IDLE_WARM_UP_SESSIONS: usize = 200;
/// Wait before each RSS reading of `idle`: longer than the gateway's metrics
/// interval (1 s), so its periodic work has run.
pub const IDLE_SETTLE: Duration = Duration::from_millis(2000);

/// K idle browser sessions; gateway RSS growth per session.
pub fn idle(ctx: &Context) -> Result<ScenarioResult, String> {
    let count = ctx.options.browsers.unwrap_or(10_000);
    let pid =
        ctx.options.gateway_pid.ok_or("idle needs the gateway's pid (run without --gateway, or give --gateway-pid)")?;
    // Each session is a socket here and one in the gateway: without the
    // descriptors the run would only measure accept errors and timeouts.
    for (who, id) in [("this process", std::process::id()), ("the gateway", pid)] {
        if let Some(limit) = crate::open_files_limit(id) {
            if limit < (count + IDLE_WARM_UP_SESSIONS) as u64 + IDLE_FD_MARGIN {
                return Err(format!(
                    "{who} may open {limit} files, fewer than {count} sessions and {IDLE_WARM_UP_SESSIONS} warm-up \
                     ones need (+{IDLE_FD_MARGIN}); \
                     raise the hard limit (ulimit -Hn, or LimitNOFILE= under systemd)"
                ));
            }
        }
    }
    let token = ctx.session_token()?;
    // The baseline is a gateway that already holds a few sessions and has
    // done its lazy start-up work (first accepts, first metrics publication):
    // the figure is what one more idle session costs, not start-up.
    let (warm_up, warm_up_errors) = browsers::open_idle(ctx.addr, &token, IDLE_WARM_UP_SESSIONS, &|_| {});
    if let Some(e) = warm_up_errors.first() {
        return Err(format!("warm-up sessions: {e}"));
    }
    std::thread::sleep(IDLE_SETTLE);
    let before = crate::rss_bytes(pid).ok_or("cannot read the gateway's VmRSS")?;
    let opened = Arc::new(AtomicU64::new(0));
    let shown = opened.clone();
    let progress = ctx.progress("idle", move || format!("{} of {count} sessions open", shown.load(Ordering::Relaxed)));
    let started = Instant::now();
    let (sockets, errors) =
        browsers::open_idle(ctx.addr, &token, count, &|n| opened.store(n as u64, Ordering::Relaxed));
    let open_seconds = started.elapsed().as_secs_f64();
    drop(progress);
    std::thread::sleep(IDLE_SETTLE);
    let after = crate::rss_bytes(pid).ok_or("cannot read the gateway's VmRSS")?;
    let per_session = after.saturating_sub(before) as f64 / sockets.len().max(1) as f64;
    let open = sockets.len();
    drop(sockets);
    drop(warm_up);
    Ok(ScenarioResult {
        headline: json!({"name": format!("gateway RSS per idle session ({open} open)"), "value": per_session,
            "unit": "bytes", "goal": "≤ 2 KiB per session with 10k open"}),
        baseline_ratio: None,
        baseline_ratio_meaning: "none: a plain relay holds no per-session state to compare; compare with the 2048-byte goal (ratio to goal in figures)".into(),
        figures: json!({
            "sessions_requested": count, "warm_up_sessions": IDLE_WARM_UP_SESSIONS, "sessions_open": open, "rss_before_bytes": before, "rss_after_bytes": after,
            "rss_per_session_bytes": per_session, "ratio_to_goal": per_session / 2048.0, "open_seconds": open_seconds,
            "sessions_per_second": open as f64 / open_seconds.max(1e-9),
        }),
        errors: errors.into_iter().take(20).collect(),
        notes: vec!["VmRSS from /proc/<pid>/status: the baseline with IDLE_WARM_UP_SESSIONS (200) idle sessions open and 2 s of settling, then again 2 s after the measured sessions opened (256 handshakes in flight); per session = growth / sessions opened. Sessions are upgraded level-2 sockets that received hello and then stay silent".into()],
        ..Default::default()
    })
}

/// B browsers × Q queries against M connectors serving a 4 MiB dataset.
pub fn query_storm(ctx: &Context) -> Result<ScenarioResult, String> {
    let connectors = ctx.options.connectors.unwrap_or(2).max(1);
    let browsers = ctx.options.browsers.unwrap_or(100);
    let duration = ctx.options.duration_seconds.unwrap_or(4);
    let queries = u32::try_from((duration * 5 / 2).max(1)).unwrap_or(10);
    let frame_bytes = ctx.options.frame_bytes.unwrap_or(64 * 1024);
    let dataset_bytes = 4 * MIB;
    let frames = (dataset_bytes / frame_bytes as u64).max(1);
    let dataset = format!("storm-{}", crate::wire::now_nanos());
    let mut conns = Vec::new();
    for _ in 0..connectors {
        conns.push(ctx.connector(vec![DatasetSpec {
            name: dataset.clone(),
            live: false,
            frame_bytes,
            frames,
            rate_per_second: None,
        }])?);
    }
    let (specs, processes) = plan_groups(ctx, browsers, Action::Query { dataset, queries }, false, 600)?;
    let stats: Vec<_> = conns.iter().map(|c| c.stats.clone()).collect();
    let total_queries = u64::from(queries) * browsers as u64;
    let progress = ctx.progress("query-storm", move || {
        let done: u64 = stats.iter().map(|s| s.streams_done.load(Ordering::Relaxed)).sum();
        format!("{done} upstream streams done ({total_queries} queries)")
    });
    let cpu_before = ctx.gateway_cpu();
    let started = Instant::now();
    let fleet = Fleet::start(specs, processes)?;
    let groups = fleet.join()?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = ctx.gateway_cpu().zip(cpu_before).map(|(a, b)| a - b);
    drop(progress);
    let upstream: u64 = conns.iter().map(|c| c.stats.streams_opened.load(Ordering::Relaxed)).sum();
    let mut errors = Vec::new();
    for c in conns {
        errors.extend(c.stop().err());
    }
    let m = merge(groups)?;
    errors.extend(m.errors.iter().cloned());
    let gbps = m.bytes as f64 / seconds / 1e9;
    let mut histograms = std::collections::BTreeMap::new();
    histograms.insert("time_to_first_byte".into(), hist::record_json(&m.ttfb, "us"));
    histograms.insert("query_completion".into(), hist::record_json(&m.query, "us"));
    Ok(ScenarioResult {
        headline: json!({"name": format!("queries/s ({browsers} browsers × {queries}, {connectors} connectors)"),
            "value": m.query.len() as f64 / seconds, "unit": "queries/s", "goal": "(no numeric goal; TTFB and completion histograms)"}),
        baseline_ratio: ctx.baseline_f64("relay_64k_gbps").map(|r| gbps / r),
        baseline_ratio_meaning: "delivered GB/s / relay_64k_gbps".into(),
        figures: json!({
            "browsers": browsers, "queries_per_browser": queries, "connectors": connectors, "dataset_bytes": dataset_bytes,
            "frame_bytes": frame_bytes, "queries_completed": m.query.len(), "upstream_streams": upstream,
            "seconds": seconds, "delivered_bytes": m.bytes, "delivered_gbps": gbps,
            "ttfb_p50_us": m.ttfb.value_at_quantile(0.5), "ttfb_p99_us": m.ttfb.value_at_quantile(0.99),
            "completion_p50_us": m.query.value_at_quantile(0.5), "completion_p99_us": m.query.value_at_quantile(0.99),
            "browser_processes": processes, "gateway_cpu_seconds": cpu, "error_count": m.error_count,
        }),
        histograms,
        errors,
        notes: vec!["each browser runs its queries one after the other; identical queries arriving before the first record batch share one upstream stream (PROTOCOL.md §5.1), so upstream_streams ≤ queries".into()],
        ..Default::default()
    })
}

/// The baseline alone.
pub fn baseline(ctx: &Context) -> Result<ScenarioResult, String> {
    let v = ctx.baseline_f64("relay_64k_gbps").unwrap_or(0.0);
    let mut histograms = std::collections::BTreeMap::new();
    histograms.insert("relay_latency".into(), ctx.baseline["relay_latency_ns"].clone());
    Ok(ScenarioResult {
        headline: json!({"name": "plain TCP relay, 64 KiB writes", "value": v, "unit": "GB/s", "goal": "(the machine's limit)"}),
        baseline_ratio: Some(1.0),
        baseline_ratio_meaning: "the baseline itself".into(),
        figures: ctx.baseline.clone(),
        histograms,
        ..Default::default()
    })
}
