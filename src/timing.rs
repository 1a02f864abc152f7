//! Stage timings for benchmarking, printed to stderr when `RECOUP_TIMINGS` is set. Kept
//! outside the pipeline so that every stage (ingest, the state-diff decode, the CLI) can
//! time itself without depending on the stages after it.

/// Prints stage timings to stderr when `RECOUP_TIMINGS` is set (for benchmarking).
pub struct StageTimer {
    on: bool,
    last: std::sync::Mutex<std::time::Instant>,
    last_cpu: std::sync::Mutex<Option<f64>>,
}

impl StageTimer {
    /// Starts timing.
    pub fn new() -> Self {
        Self {
            on: std::env::var_os("RECOUP_TIMINGS").is_some(),
            last: std::sync::Mutex::new(std::time::Instant::now()),
            last_cpu: std::sync::Mutex::new(cpu_seconds()),
        }
    }

    /// Prints `elapsed` for a step timed on its own (one of several running side by side),
    /// leaving the laps' clock alone.
    pub fn took(&self, step: &str, elapsed: std::time::Duration) {
        if self.on {
            eprintln!(
                "timing {step:<12} {:>8.3} s{}",
                elapsed.as_secs_f64(),
                rss()
            );
        }
    }

    /// Prints the time since the previous lap, and on Linux the resident set size now and
    /// at its peak so far (`VmRSS`, `VmHWM` of `/proc/self/status`).
    pub fn lap(&self, stage: &str) {
        if self.on {
            let now = std::time::Instant::now();
            let cpu = cpu_seconds();
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let mut last_cpu = self.last_cpu.lock().unwrap_or_else(|p| p.into_inner());
            let used = match (cpu, *last_cpu) {
                (Some(c), Some(l)) => format!(", cpu {:>6.2} s", c - l),
                _ => String::new(),
            };
            eprintln!(
                "timing {stage:<12} {:>8.3} s{used}{}",
                (now - *last).as_secs_f64(),
                rss()
            );
            *last = now;
            *last_cpu = cpu;
        }
    }
}

/// User + system CPU time of the whole process so far, seconds, from `/proc/self/stat`
/// (fields 14 and 15, in the kernel's fixed `USER_HZ` of 100 ticks a second); `None` where
/// it cannot be read. Beside a lap's wall time it shows how many threads the stage kept busy.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // field 3 is the first after ')'
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// `  rss X MiB, peak Y MiB` from `/proc/self/status`, or nothing where it cannot be read.
fn rss() -> String {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return String::new();
    };
    let kib = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    match (kib("VmRSS:"), kib("VmHWM:")) {
        (Some(now), Some(peak)) => {
            format!("   rss {:>5} MiB, peak {:>5} MiB", now / 1024, peak / 1024)
        }
        _ => String::new(),
    }
}

impl Default for StageTimer {
    fn default() -> Self {
        Self::new()
    }
}
