//! The `recoup` binary: a thin layer over the library's `cli` module.

use clap::Parser;
use recoup::cli::{dispatch, Cli, EXIT_ERROR};
use std::process::ExitCode;

/// Allocations of at least this many bytes get their own mapping from glibc's malloc.
const MMAP_THRESHOLD: i32 = 1 << 20;

/// Makes glibc's malloc give large blocks back to the kernel when they are freed.
///
/// By default glibc raises its mmap threshold each time a mapped block is freed, up to
/// 32 MiB; after the first large vector of a run is dropped, every block below that comes
/// from the heap, and freeing it there keeps its pages. The policy stage frees its
/// allocation log chunk by chunk while the result that replaces it grows: with the
/// dynamic threshold none of those pages went back, and a million-claimant run peaked
/// ≈ 170 MiB higher (BENCHMARKS.md, "Session 6"). A fixed threshold (mallopt(3),
/// `M_MMAP_THRESHOLD`) also turns the adjustment off.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc parameter; it is called before any other thread
    // exists, and the value is within glibc's accepted range (0 ..= 32 MiB on 64-bit).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// The global allocator: glibc's malloc, asking the kernel for transparent huge pages
/// behind every block of [`HugePageHint::AT_LEAST`] bytes or more.
///
/// These machines run THP in `madvise` mode, so without the hint every 4 KiB page of the
/// run's large columns and buffers is its own page fault: about 1.5 million of them at a
/// million claimants, ≈ 6 GiB faulted for a 1.5 GiB peak (blocks above the mmap threshold
/// are new mappings each time). With `MADV_HUGEPAGE` on those mappings the kernel faults
/// them in 2 MiB at a time (madvise(2); BENCHMARKS.md, "Session 16"). The blocks are still
/// glibc's, allocated and freed by it unchanged; only the hint is added.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
struct HugePageHint;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
impl HugePageHint {
    /// Blocks smaller than one huge page cannot hold an aligned one.
    const AT_LEAST: usize = 2 << 20;

    /// Hints the pages under `ptr .. ptr + size` (widened to whole 4 KiB pages: glibc's
    /// mapped blocks start 16 bytes into their first page, so the hint covers exactly
    /// their mapping). A refused hint changes nothing but speed, so its result is ignored.
    fn hint(ptr: *mut u8, size: usize) {
        const PAGE: usize = 4096;
        if ptr.is_null() || size < Self::AT_LEAST {
            return;
        }
        let start = ptr as usize & !(PAGE - 1);
        let end = (ptr as usize).saturating_add(size).next_multiple_of(PAGE);
        // SAFETY: the range lies within the block just allocated (up to the page edges of
        // its own mapping); MADV_HUGEPAGE changes no contents and no protection.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

// SAFETY: every call is passed to `System` unchanged, and its result returned unchanged.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe impl std::alloc::GlobalAlloc for HugePageHint {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System`'s.
        let p = unsafe { std::alloc::System.alloc(layout) };
        Self::hint(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System`'s.
        let p = unsafe { std::alloc::System.alloc_zeroed(layout) };
        Self::hint(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller's contract is `System`'s.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        // SAFETY: the caller's contract is `System`'s.
        let p = unsafe { std::alloc::System.realloc(ptr, layout, size) };
        Self::hint(p, size);
        p
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[global_allocator]
static GLOBAL: HugePageHint = HugePageHint;

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
