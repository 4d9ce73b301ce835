//! Results as records: the JSON file with command,
//! commit, date, machine, build profile, figures, raw HDR histograms and the
//! baseline measured in the same run; the percentile-distribution SVG; and
//! `perf-results/README.md` regenerated from the latest result per scenario.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde_json::{json, Value};

use crate::hist;
use crate::scenario::ScenarioResult;

/// Today's date, UTC, `YYYY-MM-DD`.
pub fn today() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Cores, kernel, CPU model, memory.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb = meminfo.lines().find(|l| l.starts_with("MemTotal")).and_then(|l| l.split_whitespace().nth(1));
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "kernel": kernel,
        "cpu_model": model,
        "memory_kb": mem_kb.and_then(|m| m.parse::<u64>().ok()),
    })
}

/// `git rev-parse HEAD` in the current directory (empty when unavailable).
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Which build profile produced this binary.
pub fn build_profile() -> String {
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    let lto = option_env!("CARGO_PROFILE_RELEASE_LTO").unwrap_or("fat (workspace default)");
    let units = option_env!("CARGO_PROFILE_RELEASE_CODEGEN_UNITS").unwrap_or("1 (workspace default)");
    if profile == "release" {
        format!("release (lto={lto}, codegen-units={units})")
    } else {
        "debug (dev profile, dependencies at opt-level 2)".into()
    }
}

/// The full record of one run.
pub fn to_json(result: &ScenarioResult, command: &str) -> Value {
    json!({
        "scenario": result.scenario,
        "date": today(),
        "unix_time": crate::wire::now_nanos() / 1_000_000_000,
        "command": command,
        "commit": git_commit(),
        "machine": machine(),
        "build_profile": build_profile(),
        "gateway": result.gateway,
        "headline": result.headline,
        "baseline_ratio": result.baseline_ratio,
        "baseline_ratio_meaning": result.baseline_ratio_meaning,
        "figures": result.figures,
        "histograms": result.histograms,
        "metrics_off": result.metrics_off,
        "baseline": result.baseline,
        "errors": result.errors,
        "notes": result.notes,
    })
}

/// Writes `<scenario>-<date>.json` and `.svg` under `out`; returns their paths.
pub fn write(result: &ScenarioResult, out: &Path, command: &str) -> Result<(PathBuf, PathBuf), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let stem = format!("{}-{}", result.scenario, today());
    let json_path = out.join(format!("{stem}.json"));
    let svg_path = out.join(format!("{stem}.svg"));
    let text = serde_json::to_string_pretty(&to_json(result, command)).map_err(|e| e.to_string())?;
    std::fs::write(&json_path, text + "\n").map_err(|e| format!("{}: {e}", json_path.display()))?;
    plot(result, &svg_path)?;
    Ok((json_path, svg_path))
}

/// x position of quantile `q` on a "1/(1-q)" log axis.
fn x_of(q: f64) -> f64 {
    (1.0 / (1.0 - q.min(0.999_999))).log10()
}

/// Percentile-distribution plot of every histogram in the result (values in µs).
pub fn plot(result: &ScenarioResult, path: &Path) -> Result<(), String> {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (name, record) in &result.histograms {
        let Some(text) = record["hdr_v2_base64"].as_str() else { continue };
        let Ok(h) = hist::decode(text) else { continue };
        if h.is_empty() {
            continue;
        }
        let scale = match record["unit"].as_str() {
            Some("ns") => 1e-3,
            Some("ms") => 1e3,
            _ => 1.0,
        };
        let points: Vec<(f64, f64)> = h
            .iter_quantiles(1)
            .map(|v| (x_of(v.quantile_iterated_to()), v.value_iterated_to() as f64 * scale))
            .collect();
        series.push((name.clone(), points));
    }
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let title = format!("volley bench {} — {}", result.scenario, today());
    if series.is_empty() && result.figures["bars"]["items"].is_array() {
        return plot_bars(result, &root, &title);
    }
    if series.is_empty() {
        root.draw(&Text::new(
            format!("{title}: no histogram (headline {})", result.headline),
            (20, 40),
            ("sans-serif", 18),
        ))
        .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
        return Ok(());
    }
    let y_max = series.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y)).fold(1.0f64, f64::max) * 1.1;
    let x_max = series.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x)).fold(1.0f64, f64::max).max(3.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, (0.5f64..y_max).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("µs (log)")
        .x_label_formatter(&|x| format!("{:.4}%", 100.0 * (1.0 - 10f64.powf(-*x))))
        .draw()
        .map_err(|e| e.to_string())?;
    for (index, (name, points)) in series.into_iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        chart
            .draw_series(LineSeries::new(points.into_iter().map(|(x, y)| (x, y.max(0.5))), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// A horizontal bar per `figures.bars.items[] = {label, value}` (unit
/// `figures.bars.unit`), for results that compare rates rather than
/// distributions (`volley bench source`).
fn plot_bars(
    result: &ScenarioResult,
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
) -> Result<(), String> {
    let unit = result.figures["bars"]["unit"].as_str().unwrap_or("");
    let items: Vec<(String, f64)> = result.figures["bars"]["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| Some((item["label"].as_str()?.to_owned(), item["value"].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    let x_max = items.iter().map(|(_, v)| *v).fold(1.0f64, f64::max) * 1.15;
    let labels: Vec<String> = items.iter().map(|(label, _)| label.clone()).collect();
    let count = items.len().max(1);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(200)
        .build_cartesian_2d(0f64..x_max, 0f64..count as f64)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(unit)
        .x_label_formatter(&|x| fmt_num(*x))
        .y_labels(count * 2 + 1)
        .y_label_formatter(&|y| {
            // One label at the centre of each bar, none on the tick marks between.
            labels
                .iter()
                .enumerate()
                .find(|(index, _)| (*index as f64 + 0.5 - y).abs() < 0.01)
                .map(|(_, label)| label.clone())
                .unwrap_or_default()
        })
        .draw()
        .map_err(|e| e.to_string())?;
    for (index, (_, value)) in items.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        let y = index as f64;
        chart
            .draw_series(std::iter::once(Rectangle::new([(0.0, y + 0.15), (*value, y + 0.85)], color.filled())))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(Text::new(fmt_num(*value), (*value, y + 0.5), ("sans-serif", 14))))
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

/// Regenerates `out/README.md`: the latest result per scenario, its headline
/// and ratio to the baseline, links; then `out/ANALYSIS.md` if present.
pub fn report(out: &Path) -> Result<PathBuf, String> {
    let mut latest: std::collections::BTreeMap<String, (u64, String, Value)> = Default::default();
    let entries = std::fs::read_dir(out).map_err(|e| format!("{}: {e}", out.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let Ok(value) = serde_json::from_str::<Value>(&text) else { continue };
        let Some(scenario) = value["scenario"].as_str().map(str::to_owned) else { continue };
        let time = value["unix_time"].as_u64().unwrap_or(0);
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        if latest.get(&scenario).is_none_or(|(t, _, _)| time >= *t) {
            latest.insert(scenario, (time, stem, value));
        }
    }
    let mut md = String::from(
        "# Benchmark results\n\nGenerated by `volley bench report` from the latest JSON record per scenario in this \
         folder. Each record holds the command, commit, date, machine, build profile, raw HDR histograms (V2, base64) \
         and the baseline measured in the same run. Ratios: `gateway / plain TCP relay` for \
         rates (higher is better); for latency `gateway p50 / relay p50` (lower is better; a relay fanning out to \
         as many readers at the same rate, one reader in older records: see each record's `baseline_ratio_meaning`); \
         none for idle memory; for `source-*` (the connector's source → IPC path, no gateway) `connector rows/s / \
         pyarrow rows/s` on the same data (higher is better).\n\n\
         | scenario | date | headline | baseline ratio | goal | build | record |\n|---|---|---|---|---|---|---|\n",
    );
    for (scenario, (_, stem, value)) in &latest {
        let headline = &value["headline"];
        let figure = format!(
            "{} = {} {}",
            headline["name"].as_str().unwrap_or("?"),
            fmt_num(headline["value"].as_f64().unwrap_or(f64::NAN)),
            headline["unit"].as_str().unwrap_or("")
        );
        let ratio = value["baseline_ratio"].as_f64().map(|r| format!("{r:.2}×")).unwrap_or_else(|| "—".into());
        let goal = headline["goal"].as_str().unwrap_or("");
        let build = value["build_profile"].as_str().unwrap_or("").split(' ').next().unwrap_or("");
        md.push_str(&format!(
            "| {scenario} | {} | {figure} | {ratio} | {goal} | {build} | [json]({stem}.json) · [svg]({stem}.svg) |\n",
            value["date"].as_str().unwrap_or("")
        ));
    }
    if let Some((_, _, any)) = latest.values().next() {
        md.push_str(&format!(
            "\nMachine: {} cores, {}, kernel {}.\n",
            any["machine"]["cores"],
            any["machine"]["cpu_model"].as_str().unwrap_or(""),
            any["machine"]["kernel"].as_str().unwrap_or("")
        ));
    }
    if let Ok(analysis) = std::fs::read_to_string(out.join("ANALYSIS.md")) {
        md.push('\n');
        md.push_str(&analysis);
    }
    let path = out.join("README.md");
    std::fs::write(&path, md).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// A number with sensible precision.
pub fn fmt_num(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}
