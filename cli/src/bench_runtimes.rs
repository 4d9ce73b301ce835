//! `volley bench runtimes`: the same scenarios on io_uring and on epoll in
//! one invocation — throughput (64 KiB and 1 MiB frames, each against the
//! plain TCP relay of the same run), fan-out to 100 browsers and small
//! frames — in two rounds whose order alternates (io_uring first, then
//! epoll first), so that drift on a shared machine falls on both sides.
//! The record (`runtimes-DATE.json` under --out) holds every run and the
//! ratios epoll / io_uring of the means.

use anyhow::bail;
use serde_json::{json, Value};
use volley_bench::{Options, Scenario, ScenarioResult};

use crate::bench::{run_once, BenchArgs};

/// The drivers compared, as `volley gateway --runtime` names them.
const RUNTIMES: [&str; 2] = ["io_uring", "epoll"];
/// Rounds; each runs every case on both drivers, the order alternating.
const ROUNDS: usize = 2;
/// Browsers of the fan-out case.
const FANOUT_BROWSERS: usize = 100;
/// The goal for epoll against io_uring at 64 KiB and 1 MiB.
const GOAL_RATIO: f64 = 0.8;

/// One measured case: a scenario with its options, and the figures taken from its result.
struct Case {
    scenario: Scenario,
    browsers: Option<usize>,
    /// (figure name, unit, where in the result).
    figures: &'static [(&'static str, &'static str, &'static str)],
}

const CASES: [Case; 3] = [
    Case {
        scenario: Scenario::Throughput,
        browsers: None,
        figures: &[
            ("throughput_64k", "GB/s", "/figures/gbps_64k_frames"),
            ("throughput_1m", "GB/s", "/figures/gbps_1024k_frames"),
            ("throughput_64k_vs_relay", "×", "/figures/ratio_64k_frames"),
            ("throughput_1m_vs_relay", "×", "/figures/ratio_1024k_frames"),
        ],
    },
    Case {
        scenario: Scenario::Fanout,
        browsers: Some(FANOUT_BROWSERS),
        figures: &[("fanout_100", "", "/headline/value")],
    },
    Case { scenario: Scenario::SmallFrames, browsers: None, figures: &[("small_frames", "", "/headline/value")] },
];

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.gateway.is_some() || args.runtime.is_some() {
        bail!("`volley bench runtimes` starts its own gateways, one per driver: drop --gateway and --runtime");
    }
    let secret = format!("bench-{}-{}", std::process::id(), volley_bench::wire::now_nanos());
    let nofile = crate::fdlimit::raise_nofile(8192).soft;
    if nofile < 4096 {
        eprintln!("warning: open-file limit {nofile} is low for {FANOUT_BROWSERS} browsers; raise it (ulimit -n)");
    }
    let mut options = Options {
        duration_seconds: args.duration_seconds,
        frame_bytes: args.frame_bytes,
        progress: true,
        ..Options::default()
    };
    options.baseline = Some(volley_bench::measure_baseline(&options).map_err(anyhow::Error::msg)?);

    // figure name -> runtime -> values, and every run's record.
    let mut values: std::collections::BTreeMap<&str, [Vec<f64>; 2]> = Default::default();
    let mut units: std::collections::BTreeMap<&str, String> = Default::default();
    let mut runs = Vec::new();
    let mut errors = Vec::new();
    for round in 0..ROUNDS {
        for case in &CASES {
            let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for index in order {
                let runtime = RUNTIMES[index];
                println!("runtimes: round {} of {ROUNDS}, {} on {runtime}", round + 1, case.scenario.name());
                let case_options = Options { browsers: case.browsers.or(args.browsers), ..options.clone() };
                let result: ScenarioResult =
                    run_once(args, case.scenario, &case_options, &secret, false, Some(runtime))?;
                let figures = json!({"figures": result.figures, "headline": result.headline});
                for (name, unit, pointer) in case.figures {
                    let unit = if unit.is_empty() { result.headline["unit"].as_str().unwrap_or("") } else { unit };
                    units.insert(name, unit.to_owned());
                    if let Some(value) = figures.pointer(pointer).and_then(Value::as_f64) {
                        values.entry(name).or_default()[index].push(value);
                    }
                }
                if case.scenario == Scenario::Throughput {
                    // GB relayed per gateway CPU-second, over every sub-run of
                    // both frame sizes (the gateway's CPU time is read in
                    // ticks, so one sub-run alone is coarse).
                    let per_cpu: Vec<f64> = result.figures["runs"]
                        .as_array()
                        .map(|runs| runs.iter().filter_map(|r| r["gateway_gb_per_cpu_second"].as_f64()).collect())
                        .unwrap_or_default();
                    if !per_cpu.is_empty() {
                        units.insert("throughput_gb_per_cpu_second", "GB/CPU-s".to_owned());
                        values.entry("throughput_gb_per_cpu_second").or_default()[index].push(mean(&per_cpu));
                    }
                }
                errors.extend(result.errors.iter().map(|e| format!("{} on {runtime}: {e}", case.scenario.name())));
                runs.push(json!({"round": round + 1, "scenario": case.scenario.name(), "runtime": runtime,
                                 "headline": result.headline, "figures": result.figures, "gateway": result.gateway}));
            }
        }
    }

    let mut figures = json!({"rounds": ROUNDS, "runs": runs});
    println!("\n{:<26} {:>12} {:>12} {:>8}  unit", "figure", "io_uring", "epoll", "epoll/io_uring");
    for (name, [io_uring, epoll]) in &values {
        let (a, b) = (mean(io_uring), mean(epoll));
        let ratio = b / a;
        let unit = units.get(name).cloned().unwrap_or_default();
        println!("{name:<26} {a:>12.3} {b:>12.3} {ratio:>8.2}×  {unit}");
        figures[*name] = json!({"io_uring": io_uring, "epoll": epoll, "io_uring_mean": a, "epoll_mean": b,
                                "epoll_over_io_uring": ratio, "unit": unit});
    }
    let ratio_of = |name: &str| figures[name]["epoll_over_io_uring"].as_f64().unwrap_or(f64::NAN);
    let worst = ratio_of("throughput_64k").min(ratio_of("throughput_1m"));
    let result = ScenarioResult {
        scenario: "runtimes".into(),
        headline: json!({"name": "epoll / io_uring throughput, worse of 64 KiB and 1 MiB frames",
                         "value": worst, "unit": "×", "goal": format!("≥ {GOAL_RATIO}×")}),
        baseline: options.baseline.clone().unwrap_or(Value::Null),
        baseline_ratio: Some(ratio_of("throughput_64k_vs_relay")),
        baseline_ratio_meaning: "epoll: gateway GB/s / plain TCP relay GB/s at 64 KiB (the relay does less than \
                                 any gateway, the seed's included)"
            .into(),
        figures,
        errors,
        notes: vec![format!(
            "{ROUNDS} rounds; in each, every case on both drivers, io_uring first in odd rounds and epoll first in \
             even ones; child `volley gateway --runtime X` processes, workers = cores"
        )],
        ..Default::default()
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let (json_path, svg) = volley_bench::record::write(&result, &args.out_dir, &command).map_err(anyhow::Error::msg)?;
    let readme = volley_bench::record::report(&args.out_dir).map_err(anyhow::Error::msg)?;
    println!("\nepoll / io_uring throughput (worse of 64 KiB and 1 MiB): {worst:.2}× (goal ≥ {GOAL_RATIO}×)");
    println!("wrote {}, {}, {}", json_path.display(), svg.display(), readme.display());
    Ok(())
}
