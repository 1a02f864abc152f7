//! The `recoup` binary: a thin layer over the library's `cli` module.

use clap::Parser;
use recoup::cli::{dispatch, Cli, EXIT_ERROR};
use std::process::ExitCode;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod reuse;

/// Large blocks are mapped by [`reuse`] and kept for reuse below the run's peak; the rest
/// is glibc's malloc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[global_allocator]
static ALLOC: reuse::Reuse = reuse::Reuse;

/// glibc's mmap threshold: [`reuse::LARGE`], below which glibc's heap serves every block.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = reuse::LARGE as i32;

/// Fixes glibc's mmap threshold, which also turns off its adjustment.
///
/// By default glibc raises its mmap threshold each time a mapped block is freed, up to
/// 32 MiB, and its trim threshold with it; after the first large vector of a run is
/// dropped, every block below that came from the heap, and freeing it there kept its
/// pages. The policy stage frees its allocation log chunk by chunk while the result that
/// replaces it grows: with the dynamic threshold none of those pages went back, and a
/// million-claimant run peaked ≈ 170 MiB higher (BENCHMARKS.md, "Session 6"). Blocks of
/// 1 MiB and more now go to [`reuse`], which gives back what the peak has no room for; the
/// fixed threshold keeps glibc's heap as it was measured then (mallopt(3),
/// `M_MMAP_THRESHOLD`).
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc parameter; it is called before any other thread
    // exists, and the value is within glibc's accepted range (0 ..= 32 MiB on 64-bit).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

fn main() -> ExitCode {
    fixed_mmap_threshold();
    let cli = Cli::parse();
    let json = cli.global.json;
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let msg = chain_message(&e);
            if json {
                println!("{}", serde_json::json!({ "error": msg }));
            } else {
                eprintln!("error: {msg}");
            }
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The error and its causes joined by `: `, leaving out a cause whose text an outer
/// message already quotes (stage errors embed their cause in their own message).
fn chain_message(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if msg.contains(&s) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&s);
    }
    msg
}
