//! The binary's global allocator: glibc's malloc, except that blocks of 1 MiB or more are
//! mapped here and, when freed, kept for the next large allocation instead of unmapped,
//! as long as keeping them does not raise the process's peak resident set.
//!
//! Why: a million-claimant run touches ≈ 5 GB of fresh pages for a 1.4 GiB peak, because
//! each stage frees the vectors of the one before and maps new ones; every first touch of
//! a page is a fault (the kernel zeroes the page, and on these VMs the host often backs it
//! anew, having been handed it back by free page reporting). A kept block's pages are
//! already backed. glibc's malloc cannot be told to keep its mapped blocks; keeping every
//! freed block on a heap (a raised mmap threshold, jemalloc, mimalloc) ran over the
//! 1.5 GiB memory target (BENCHMARKS.md, sessions 6, 9, 12 and 18). Measured in session 21:
//! minor faults 1.33M → 1.02M a run, system time ≈ 0.4–0.8 s lower, the peak unchanged.
//!
//! The bound. At each large allocation, free and growth the pool reads the resident set
//! (`/proc/self/statm`) and works out what it would be had every kept block been unmapped
//! when freed: that, less the kept bytes. Its running maximum is the peak an unmapping
//! allocator would have reached by now; kept blocks are shortened or unmapped so that the
//! resident set, with the block now asked for, stays within it. Kept blocks only ever fill
//! room below a peak already reached.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;

/// Allocations of at least this many bytes (with an alignment of at most a page) are
/// mapped here; `main` sets glibc's mmap threshold to the same figure for the rest.
pub(crate) const LARGE: usize = 1 << 20;
/// Kept blocks at most; a freed block beyond that replaces the shortest kept one if longer.
const SLOTS: usize = 64;
const PAGE: usize = 4096;

/// A mapped range: its address and length in bytes (a multiple of the page size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) addr: usize,
    pub(crate) len: usize,
}

/// The bookkeeping, without the system calls: which blocks are kept, their total length,
/// and the peak resident set an unmapping allocator would have reached so far.
#[derive(Debug)]
pub(crate) struct Pool {
    kept: [Block; SLOTS],
    n: usize,
    kept_bytes: usize,
    peak_unkept: usize,
}

impl Pool {
    pub(crate) const fn new() -> Self {
        Self {
            kept: [Block { addr: 0, len: 0 }; SLOTS],
            n: 0,
            kept_bytes: 0,
            peak_unkept: 0,
        }
    }

    /// Takes the kept block that best serves `len` bytes: the shortest at least as long,
    /// else the longest (to be grown). `None` when nothing is kept.
    pub(crate) fn take(&mut self, len: usize) -> Option<Block> {
        let kept = &self.kept[..self.n];
        let i = kept
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len >= len)
            .min_by_key(|(_, b)| b.len)
            .or_else(|| kept.iter().enumerate().max_by_key(|(_, b)| b.len))
            .map(|(i, _)| i)?;
        Some(self.remove(i))
    }

    fn remove(&mut self, i: usize) -> Block {
        let b = self.kept[i];
        self.n -= 1;
        self.kept[i] = self.kept[self.n];
        self.kept_bytes -= b.len;
        b
    }

    /// Keeps the freed block `b`; returns the block to unmap instead when every slot is
    /// taken (the shortest of the kept ones and `b`).
    pub(crate) fn give(&mut self, b: Block) -> Option<Block> {
        if self.n < SLOTS {
            self.kept[self.n] = b;
            self.n += 1;
            self.kept_bytes += b.len;
            return None;
        }
        let (i, shortest) = self
            .kept
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|(_, k)| k.len)?;
        if shortest.len >= b.len {
            return Some(b);
        }
        self.kept[i] = b;
        self.kept_bytes = self.kept_bytes - shortest.len + b.len;
        Some(shortest)
    }

    /// Given the resident set `resident` (bytes) the process will have once the current
    /// step is done, with the kept blocks counted as resident: notes the resident set an
    /// unmapping allocator would have (the same less the kept bytes) and returns by how
    /// many bytes the kept blocks must shrink to stay below that allocator's peak.
    pub(crate) fn excess(&mut self, resident: usize) -> usize {
        let unkept = resident.saturating_sub(self.kept_bytes);
        self.peak_unkept = self.peak_unkept.max(unkept);
        resident.saturating_sub(self.peak_unkept)
    }

    /// Gives back at least `excess` bytes of kept blocks (all of them if fewer are kept),
    /// cutting page-aligned tails off the longest, calling `unmap` with each range.
    pub(crate) fn trim(&mut self, excess: usize, mut unmap: impl FnMut(Block)) {
        let mut left = excess;
        while left > 0 {
            let Some((i, b)) = self.kept[..self.n]
                .iter()
                .copied()
                .enumerate()
                .max_by_key(|(_, b)| b.len)
            else {
                break;
            };
            if b.len <= left {
                left -= b.len;
                unmap(self.remove(i));
            } else {
                let cut = left.next_multiple_of(PAGE);
                left = 0;
                self.kept[i].len -= cut;
                self.kept_bytes -= cut;
                if self.kept[i].len == 0 {
                    self.remove(i);
                }
                unmap(Block {
                    addr: b.addr + (b.len - cut),
                    len: cut,
                });
            }
        }
    }

    /// The kept blocks' total length in bytes.
    #[cfg(test)]
    pub(crate) fn kept_bytes(&self) -> usize {
        self.kept_bytes
    }
}

/// The allocator: [`System`] below [`LARGE`] bytes, [`Pool`]-kept mappings at or above.
pub(crate) struct Reuse;

static POOL: Mutex<Pool> = Mutex::new(Pool::new());

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    POOL.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn pages(size: usize) -> usize {
    size.next_multiple_of(PAGE)
}

fn is_large(layout: Layout) -> bool {
    layout.size() >= LARGE && layout.align() <= PAGE
}

/// Shrinks the kept blocks so that the resident set, `more` bytes from now, stays below
/// the unmapping allocator's peak. With no resident figure, gives back every kept block.
fn settle(p: &mut Pool, more: usize) {
    let excess = match sys::resident() {
        Some(r) => p.excess(r.saturating_add(more)),
        None => usize::MAX,
    };
    p.trim(excess, sys::unmap);
}

mod sys {
    use super::{Block, PAGE};

    /// The process's resident set in bytes: the second field of `/proc/self/statm`
    /// (pages), the figure whose maximum getrusage(2) reports as `ru_maxrss`.
    pub(crate) fn resident() -> Option<usize> {
        let mut buf = [0u8; 128];
        // SAFETY: a NUL-terminated path; at most `buf.len()` bytes are read into `buf`,
        // and the descriptor is closed.
        let n = unsafe {
            let fd = libc::open(
                c"/proc/self/statm".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return None;
            }
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            libc::close(fd);
            n
        };
        let text = buf.get(..usize::try_from(n).ok()?)?;
        let field = text.split(|&c| c == b' ').nth(1)?;
        let pages = std::str::from_utf8(field).ok()?.parse::<usize>().ok()?;
        pages.checked_mul(PAGE)
    }

    pub(crate) fn map(len: usize) -> *mut u8 {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing
        // touches no existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p.cast()
        }
    }

    pub(crate) fn unmap(b: Block) {
        // SAFETY: `b` is a whole mapping, or a page-aligned tail of one, that this
        // allocator made and that nothing uses any more.
        unsafe {
            libc::munmap(b.addr as *mut libc::c_void, b.len);
        }
    }

    /// Moves or extends the mapping `b` to `len` bytes, keeping its pages; null on failure
    /// (the mapping is then as it was).
    pub(crate) fn remap(b: Block, len: usize) -> *mut u8 {
        // SAFETY: `b` is a whole mapping this allocator made; MREMAP_MAYMOVE lets the
        // kernel place the result anywhere, so no other mapping is disturbed.
        let p = unsafe {
            libc::mremap(
                b.addr as *mut libc::c_void,
                b.len,
                len,
                libc::MREMAP_MAYMOVE,
            )
        };
        if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p.cast()
        }
    }
}

impl Reuse {
    /// A large block of `len` (page-rounded) bytes, and how many of its leading bytes
    /// were in use before (so need clearing for a zeroed allocation).
    fn large(len: usize) -> (*mut u8, usize) {
        let mut p = pool();
        if let Some(b) = p.take(len) {
            let addr = if b.len > len {
                sys::unmap(Block {
                    addr: b.addr + len,
                    len: b.len - len,
                });
                b.addr as *mut u8
            } else if b.len < len {
                let q = sys::remap(b, len);
                if q.is_null() {
                    sys::unmap(b);
                    settle(&mut p, len);
                    drop(p);
                    return (sys::map(len), 0);
                }
                q
            } else {
                b.addr as *mut u8
            };
            // The kept pages are resident already; what the block grew by is not.
            settle(&mut p, len.saturating_sub(b.len));
            return (addr, b.len.min(len));
        }
        settle(&mut p, len);
        drop(p);
        (sys::map(len), 0)
    }
}

// SAFETY: blocks below LARGE (or over-aligned) go to `System` unchanged; large blocks are
// page-aligned mappings of at least the requested size, each handed out to one owner at a
// time (the pool's mutex guards the kept list), and `realloc` keeps the first
// `min(old, new)` bytes (mremap moves pages, it does not copy or clear them).
unsafe impl GlobalAlloc for Reuse {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_large(layout) {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.alloc(layout) };
        }
        Self::large(pages(layout.size())).0
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !is_large(layout) {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.alloc_zeroed(layout) };
        }
        let (p, used) = Self::large(pages(layout.size()));
        if !p.is_null() && used > 0 {
            // SAFETY: `p` is valid for at least `used` bytes, all this allocation's.
            unsafe { std::ptr::write_bytes(p, 0, used.min(layout.size())) };
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !is_large(layout) {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.dealloc(ptr, layout) };
        }
        let b = Block {
            addr: ptr as usize,
            len: pages(layout.size()),
        };
        let mut p = pool();
        if let Some(out) = p.give(b) {
            sys::unmap(out);
        }
        settle(&mut p, 0);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `new_size` with `layout`'s alignment is valid: the caller's contract.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_large(layout), is_large(new)) {
            // SAFETY: the caller's contract, passed on.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            (true, true) => {
                let old = Block {
                    addr: ptr as usize,
                    len: pages(layout.size()),
                };
                let len = pages(new_size);
                if len < old.len {
                    sys::unmap(Block {
                        addr: old.addr + len,
                        len: old.len - len,
                    });
                } else if len > old.len {
                    let mut p = pool();
                    settle(&mut p, len - old.len);
                    drop(p);
                    return sys::remap(old, len);
                }
                ptr
            }
            _ => {
                // SAFETY: `new` is a valid layout (above); the old block is valid for
                // `layout.size()` bytes and freed once after the copy.
                unsafe {
                    let q = self.alloc(new);
                    if !q.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, q, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    q
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn block(addr: usize, pages: usize) -> Block {
        Block {
            addr,
            len: pages * PAGE,
        }
    }

    #[test]
    fn takes_the_shortest_block_that_fits_else_the_longest() {
        let mut p = Pool::new();
        for b in [
            block(0x10_0000, 2),
            block(0x20_0000, 8),
            block(0x30_0000, 4),
        ] {
            assert_eq!(p.give(b), None);
        }
        assert_eq!(p.kept_bytes(), 14 * PAGE);
        assert_eq!(p.take(3 * PAGE), Some(block(0x30_0000, 4)));
        assert_eq!(p.take(9 * PAGE), Some(block(0x20_0000, 8)));
        assert_eq!(p.take(PAGE), Some(block(0x10_0000, 2)));
        assert_eq!(p.take(PAGE), None);
        assert_eq!(p.kept_bytes(), 0);
    }

    #[test]
    fn a_full_pool_gives_back_its_shortest_block() {
        let mut p = Pool::new();
        for i in 0..SLOTS {
            assert_eq!(p.give(block(i * MIB, i + 2)), None);
        }
        // Longer than the shortest kept (2 pages): replaces it.
        assert_eq!(p.give(block(0x4000_0000, 3)), Some(block(0, 2)));
        // No longer than the shortest kept (now 3 pages): given back itself.
        assert_eq!(p.give(block(0x5000_0000, 3)), Some(block(0x5000_0000, 3)));
        let total: usize = (3..SLOTS + 2).sum::<usize>() + 3;
        assert_eq!(p.kept_bytes(), total * PAGE);
    }

    #[test]
    fn kept_blocks_fill_only_room_below_the_unmapping_peak() {
        let mut p = Pool::new();
        // 100 MiB resident, nothing kept: the unmapping allocator's peak is 100 MiB.
        assert_eq!(p.excess(100 * MIB), 0);
        // A 40 MiB block is freed and kept: still 100 MiB resident, 60 MiB unkept.
        assert_eq!(p.give(block(0x1000_0000, 40 * MIB / PAGE)), None);
        assert_eq!(p.excess(100 * MIB), 0);
        // Other memory grows by 30 MiB: unmapped, the block would have made room for it,
        // so 30 MiB of it must go.
        assert_eq!(p.excess(130 * MIB), 30 * MIB);
        let mut out = Vec::new();
        p.trim(30 * MIB, |b| out.push(b));
        assert_eq!(out, vec![block(0x1000_0000 + 10 * MIB, 30 * MIB / PAGE)]);
        assert_eq!(p.kept_bytes(), 10 * MIB);
        // A new 50 MiB block on top of the 100 MiB now resident passes the old peak: the
        // unmapping allocator would be at 140 MiB, so the 10 MiB kept are over it.
        assert_eq!(p.excess(150 * MIB), 10 * MIB);
        // Lower again, the peak stays: 20 MiB kept fit under it at 120 MiB resident.
        p.trim(10 * MIB, |_| {});
        assert_eq!(p.give(block(0x2000_0000, 20 * MIB / PAGE)), None);
        assert_eq!(p.excess(120 * MIB), 0);
    }

    #[test]
    fn trim_cuts_whole_pages_off_the_longest_blocks_first() {
        let mut p = Pool::new();
        p.give(block(0x10_0000, 3));
        p.give(block(0x20_0000, 10));
        let mut out = Vec::new();
        p.trim(1, |b| out.push(b));
        assert_eq!(out, vec![block(0x20_0000 + 9 * PAGE, 1)]);
        out.clear();
        // 9 pages + 1 byte: the rest of the 9-page block, then a page off the other.
        p.trim(9 * PAGE + 1, |b| out.push(b));
        assert_eq!(
            out,
            vec![block(0x20_0000, 9), block(0x10_0000 + 2 * PAGE, 1)]
        );
        assert_eq!(p.kept_bytes(), 2 * PAGE);
        p.trim(usize::MAX, |_| {});
        assert_eq!(p.kept_bytes(), 0);
        assert_eq!(p.take(PAGE), None);
    }

    /// Through the allocator itself (the test binary's global allocator too): a freed
    /// block comes back for the next large allocation, cleared when asked zeroed, and a
    /// grown block keeps its bytes.
    #[test]
    fn a_freed_block_comes_back_cleared_and_grows_with_its_bytes() {
        let a = Reuse;
        let big = Layout::from_size_align(4 * MIB, 8).unwrap();
        let half = Layout::from_size_align(2 * MIB + 1, 8).unwrap();
        // SAFETY: layouts of non-zero size; each block is written within its size and
        // freed once with the layout it was allocated with (or grown to).
        unsafe {
            let p = a.alloc(big);
            assert!(!p.is_null());
            std::ptr::write_bytes(p, 0xAB, big.size());
            a.dealloc(p, big);
            let q = a.alloc_zeroed(half);
            assert_eq!(q, p, "the freed block was not kept for reuse");
            let bytes = std::slice::from_raw_parts(q, half.size());
            assert!(bytes.iter().all(|&b| b == 0));
            std::ptr::write_bytes(q, 0xCD, half.size());
            let r = a.realloc(q, half, 12 * MIB);
            assert!(!r.is_null());
            let bytes = std::slice::from_raw_parts(r, half.size());
            assert!(bytes.iter().all(|&b| b == 0xCD));
            let small = a.realloc(r, Layout::from_size_align(12 * MIB, 8).unwrap(), 100);
            let bytes = std::slice::from_raw_parts(small, 100);
            assert!(bytes.iter().all(|&b| b == 0xCD));
            a.dealloc(small, Layout::from_size_align(100, 8).unwrap());
        }
    }
}
