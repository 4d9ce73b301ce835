//! The query-storm scenario: B browsers × Q queries against M connectors.

use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::json;

use crate::browsers::{Action, Fleet};
use crate::connector::DatasetSpec;
use crate::hist;
use crate::scenario::ScenarioResult;

use super::fleet::{merge, plan_groups};
use super::{Context, MIB};

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
        conns.push(ctx.connector(vec![DatasetSpec::query(&dataset, frame_bytes, frames)])?);
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
        notes: vec!["each browser runs its queries one after the other; every query gets an upstream stream of its own (PROTOCOL.md §5.1), and queries past streams_per_connector_max wait in the tenant's admission queue: error_count counts refusals".into()],
        ..Default::default()
    })
}
