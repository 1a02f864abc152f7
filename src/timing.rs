//! Stage timings for benchmarking, printed to stderr when `RECOUP_TIMINGS` is set. Kept
//! outside the pipeline so that every stage (ingest, the state-diff decode, the CLI) can
//! time itself without depending on the stages after it.

/// Prints stage timings to stderr when `RECOUP_TIMINGS` is set (for benchmarking).
pub struct StageTimer {
    on: bool,
    last: std::sync::Mutex<std::time::Instant>,
}

impl StageTimer {
    /// Starts timing.
    pub fn new() -> Self {
        Self {
            on: std::env::var_os("RECOUP_TIMINGS").is_some(),
            last: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }

    /// Prints the time since the previous lap.
    pub fn lap(&self, stage: &str) {
        if self.on {
            let now = std::time::Instant::now();
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            eprintln!("timing {stage:<12} {:>8.3} s", (now - *last).as_secs_f64());
            *last = now;
        }
    }
}

impl Default for StageTimer {
    fn default() -> Self {
        Self::new()
    }
}
