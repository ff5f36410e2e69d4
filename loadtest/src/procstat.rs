//! CPU time and resident memory of a process, from /proc (Linux); CPU time of a process with
//! its children (the PostgreSQL server of `--start-cluster`: a postmaster and one backend per
//! connection).

use std::sync::OnceLock;

/// A process's CPU time (all threads, user + system) and resident set size at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

/// Clock ticks per second of /proc's CPU times.
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .unwrap_or(100.0)
    })
}

/// Samples process `pid`. `None` when /proc cannot be read.
pub fn sample(pid: u32) -> Option<Sample> {
    sample_dir(&format!("/proc/{pid}"))
}

/// Samples this process.
pub fn sample_self() -> Option<Sample> {
    sample_dir("/proc/self")
}

/// CPU seconds of process `pid` and of its children: its own time, the time of the children it
/// has waited for (ended backends), and the time of its live children so far. The difference of
/// two samples is the CPU the whole tree used in between, ended children included.
pub fn tree_cpu_seconds(pid: u32) -> Option<f64> {
    let own = stat_fields(&format!("/proc/{pid}"))?;
    let ticks =
        |index: usize| -> f64 { own.get(index).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
    // utime, stime, cutime, cstime: fields 14 to 17 of the whole line, 12 to 15 after the name.
    let mut total = ticks(11) + ticks(12) + ticks(13) + ticks(14);
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|byte| byte.is_ascii_digit()) {
            continue;
        }
        let Some(fields) = stat_fields(&format!("/proc/{name}")) else {
            continue;
        };
        // The parent's pid is field 4: 2 after the name.
        if fields.get(1).and_then(|ppid| ppid.parse::<u32>().ok()) == Some(pid) {
            let child = |index: usize| -> f64 {
                fields
                    .get(index)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0)
            };
            total += child(11) + child(12);
        }
    }
    Some(total / ticks_per_second())
}

/// The fields of `<dir>/stat` after the command name (which may contain spaces and ends at the
/// last ')'): the state is index 0, the parent's pid 1, utime 11, stime 12.
fn stat_fields(dir: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_string).collect())
}

fn sample_dir(dir: &str) -> Option<Sample> {
    let fields = stat_fields(dir)?;
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())?;
    Some(Sample {
        cpu_seconds: (utime + stime) / ticks_per_second(),
        rss_bytes: rss_kb * 1024,
    })
}
