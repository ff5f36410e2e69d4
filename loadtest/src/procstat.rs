//! CPU time and resident memory of a process, from /proc (Linux).

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

fn sample_dir(dir: &str) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
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
