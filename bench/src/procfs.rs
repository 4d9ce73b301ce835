//! What `/proc` says about a process: resident memory, open-file limit,
//! CPU time (its own, its children's); and how busy the whole machine was.

/// Reads `VmRSS` of `pid`, bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// Reads `VmHWM` of `pid`: the most resident memory it has had, bytes.
pub fn rss_peak_bytes(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// The soft open-file limit of `pid` (`Max open files` in `/proc/<pid>/limits`).
pub fn open_files_limit(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// User + system CPU time of `pid` (all threads), seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_seconds(&format!("/proc/{pid}/stat"), 11)
}

/// User + system CPU time of this process's children that have ended and
/// been waited for (`cutime` + `cstime`), seconds.
pub fn children_cpu_seconds() -> Option<f64> {
    stat_seconds("/proc/self/stat", 13)
}

/// Two clock-tick fields of a `stat` file from `index` (0 = the state, after
/// the command's closing parenthesis), summed, in seconds.
fn stat_seconds(path: &str, index: usize) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let first: f64 = fields.get(index)?.parse().ok()?;
    let second: f64 = fields.get(index + 1)?.parse().ok()?;
    Some((first + second) / 100.0)
}

/// CPU seconds every process on the machine has used since boot, all
/// cores together (`/proc/stat`: everything but idle and iowait).
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let idle = ticks.get(3)? + ticks.get(4)?;
    // guest and guest_nice (8, 9) are already counted in user and nice.
    let total: u64 = ticks.iter().take(8).sum();
    Some(total.saturating_sub(idle) as f64 / 100.0)
}
