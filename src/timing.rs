//! Stage timings for benchmarking, printed to stderr when `RECOUP_TIMINGS` is set. Kept
//! outside the pipeline so that every stage (ingest, the state-diff decode, the CLI) can
//! time itself without depending on the stages after it.

/// Prints stage timings to stderr when `RECOUP_TIMINGS` is set (for benchmarking).
pub struct StageTimer {
    on: bool,
    last: std::sync::Mutex<std::time::Instant>,
    last_cpu: std::sync::Mutex<Option<Usage>>,
}

impl StageTimer {
    /// Starts timing.
    pub fn new() -> Self {
        Self {
            on: std::env::var_os("RECOUP_TIMINGS").is_some(),
            last: std::sync::Mutex::new(std::time::Instant::now()),
            last_cpu: std::sync::Mutex::new(usage()),
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

    /// Prints the time since the previous lap, and on Linux the CPU time the process used
    /// meanwhile (of it in the kernel, and the minor page faults taken: first touches of new
    /// memory) and the resident set size now and at its peak so far (`VmRSS`, `VmHWM` of
    /// `/proc/self/status`).
    pub fn lap(&self, stage: &str) {
        if self.on {
            let now = std::time::Instant::now();
            let cpu = usage();
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let mut last_cpu = self.last_cpu.lock().unwrap_or_else(|p| p.into_inner());
            let used = match (cpu, *last_cpu) {
                (Some(c), Some(l)) => format!(
                    ", cpu {:>6.2} s (sys {:>5.2} s, {:>5}k faults)",
                    (c.user + c.sys - l.user - l.sys) as f64 / 100.0,
                    (c.sys - l.sys) as f64 / 100.0,
                    (c.minflt - l.minflt) / 1000
                ),
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

/// The whole process's resource use so far, from `/proc/self/stat`.
#[derive(Clone, Copy)]
struct Usage {
    /// Minor page faults (field 10).
    minflt: u64,
    /// User and system CPU time (fields 14 and 15), in the kernel's fixed `USER_HZ` of 100
    /// ticks a second.
    user: u64,
    sys: u64,
}

/// [`Usage`] now; `None` where it cannot be read. Beside a lap's wall time its CPU time shows
/// how many threads the stage kept busy.
fn usage() -> Option<Usage> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    // Field 3 is the first after ')'.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Usage {
        minflt: field(10)?,
        user: field(14)?,
        sys: field(15)?,
    })
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
