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

/// Large blocks are backed by transparent huge pages where the kernel allows it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[global_allocator]
static ALLOC: huge_pages::Advised = huge_pages::Advised;

/// A global allocator that is glibc's malloc (`System`) plus `madvise(MADV_HUGEPAGE)` on
/// every block of 2 MiB or more.
///
/// A million-claimant run first touches ≈ 5 GB of fresh memory (1.3M page faults for a
/// 1.42 GiB peak: each stage's columns replace the last one's). On these VMs a 4 KiB fault
/// costs ≈ 1.9 µs against ≈ 0.4 µs for each 4 KiB of a 2 MiB one (a 2 GB touch loop: 0.95 s
/// against 0.19 s); advised, a run takes 0.24M faults and over alternated pairs ≈ 9% less
/// wall time (BENCHMARKS.md, "Session 20", which also says why a run's system time on these
/// VMs depends on the run before it). Most machines set THP to `madvise`
/// (`/sys/kernel/mm/transparent_hugepage/enabled`), where only advised ranges get huge
/// pages; with `never` the advice does nothing, with `always` it is already the default.
/// glibc's own `glibc.malloc.hugetlb=1` tunable does the same but must be set in the
/// environment before the process starts.
///
/// Blocks this large mostly come from their own mapping ([`MMAP_THRESHOLD`] is 1 MiB),
/// unmapped when freed; one taken from a free stretch of malloc's heap is advised too, with
/// the pages it shares with its neighbours at each end, which changes only the size of the
/// pages backing them. A block smaller than a huge page could not use one.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod huge_pages {
    use std::alloc::{GlobalAlloc, Layout, System};

    /// Blocks of at least this size are advised: one huge page on x86-64 and aarch64 with
    /// 4 KiB base pages.
    const HUGE_PAGE: usize = 2 << 20;
    /// The base page size `madvise` aligns to.
    const PAGE: usize = 4096;

    /// See the module.
    pub(super) struct Advised;

    /// Asks the kernel to back the pages of the block at `p` of `size` bytes with huge
    /// pages. The advice only changes the page size of later faults; a failure (an old
    /// kernel, THP compiled out) leaves 4 KiB pages, as without it.
    fn advise(p: *mut u8, size: usize) {
        if p.is_null() || size < HUGE_PAGE {
            return;
        }
        let start = p as usize & !(PAGE - 1);
        let end = (p as usize + size).next_multiple_of(PAGE);
        // SAFETY: [start, end) is the pages holding a block malloc just returned, all
        // mapped (its own mapping, or malloc's heap); MADV_HUGEPAGE changes no contents and
        // no protection, only which page size backs the range.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }

    // SAFETY: every allocation, reallocation and free is `System`'s, with the caller's
    // layout; only the advice above is added.
    unsafe impl GlobalAlloc for Advised {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract is passed on unchanged.
            let p = unsafe { System.alloc(layout) };
            advise(p, layout.size());
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as above.
            let p = unsafe { System.alloc_zeroed(layout) };
            advise(p, layout.size());
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: as above.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            advise(p, new_size);
            p
        }
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
