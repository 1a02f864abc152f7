//! Output files written past the page cache (Linux `O_DIRECT`, see open(2)), by a
//! background thread, double-buffered.
//!
//! Why: a million-claimant run writes 2.8 GB of outputs. Through the page cache, every page
//! of it is first copied into memory the kernel has to find for it; on these virtual
//! machines memory the guest has not touched lately costs a fault in the host on first
//! touch, and the copy (`copy_folio_from_iter_atomic`) took 6–7 s of kernel time, a quarter
//! of all the CPU of the run (`perf`; `dd` of 2.8 GB: 3.7–6.5 s buffered, 1.5–1.9 s with
//! `oflag=direct`, of which 0.4 s of CPU). With `O_DIRECT` the device reads the blocks from
//! this writer's two buffers, and the rendering thread fills one while the other is on its
//! way to disk.
//!
//! `O_DIRECT` needs the buffer, the file offset and the length aligned to the device's
//! logical block size; blocks here are 4 MiB at 4 KiB alignment. The last, partial block is
//! written with `O_DIRECT` turned off (`fcntl(F_SETFL)`), so the file has exactly the bytes
//! written. Where the file system refuses `O_DIRECT` (tmpfs, some network file systems:
//! `EINVAL` on open or on the first write), or on other systems than Linux, the writer falls
//! back to ordinary buffered writes: the bytes are the same either way.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Alignment of the buffers and of every direct write, bytes.
const ALIGN: usize = 4096;
/// Bytes per block handed to the disk thread (a multiple of [`ALIGN`]).
const BLOCK: usize = 4 << 20;

/// One block buffer: `BLOCK` bytes starting at an `ALIGN`ed address inside `mem`.
struct Buf {
    mem: Vec<u8>,
    /// Offset of the aligned start in `mem`.
    start: usize,
    /// Bytes filled.
    len: usize,
    /// Whether `start` is aligned (it always is in practice; see [`Buf::new`]).
    aligned: bool,
}

impl Buf {
    fn new() -> Self {
        let mem = vec![0u8; BLOCK + ALIGN];
        // `align_offset` may in principle decline (usize::MAX); the buffer then just is not
        // used for direct writes.
        let off = mem.as_ptr().align_offset(ALIGN);
        let aligned = off < ALIGN;
        Self {
            mem,
            start: if aligned { off } else { 0 },
            len: 0,
            aligned,
        }
    }
    /// A placeholder holding no memory.
    fn empty() -> Self {
        Self {
            mem: Vec::new(),
            start: 0,
            len: 0,
            aligned: false,
        }
    }
    fn free(&self) -> usize {
        BLOCK - self.len
    }
    fn fill(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        let at = self.start + self.len;
        self.mem[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }
    fn data(&self) -> &[u8] {
        &self.mem[self.start..self.start + self.len]
    }
}

/// A file being written by a [`DirectWriter`]'s disk thread.
struct Disk {
    file: File,
    /// `O_DIRECT` is on.
    direct: bool,
}

impl Disk {
    /// Writes `buf` at the end of the file: directly the aligned part while `O_DIRECT` is
    /// on, the rest after turning it off. Falls back to buffered writes for good on `EINVAL`.
    fn write(&mut self, buf: &Buf) -> io::Result<()> {
        let data = buf.data();
        let mut done = 0;
        if self.direct && buf.aligned {
            let whole = data.len() / ALIGN * ALIGN;
            while done < whole {
                match self.file.write(&data[done..whole]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    // A short direct write leaves `done` a multiple of the block size in
                    // practice; if not, the next direct write fails with EINVAL and the
                    // rest goes buffered.
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::InvalidInput => break,
                    Err(e) => return Err(e),
                }
            }
        }
        if done < data.len() {
            self.buffered()?;
            self.file.write_all(&data[done..])?;
        }
        Ok(())
    }

    /// Turns `O_DIRECT` off for the rest of the file.
    fn buffered(&mut self) -> io::Result<()> {
        if self.direct {
            set_direct(&self.file, false)?;
            self.direct = false;
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    let mut flags = fcntl_getfl(file)?;
    flags.set(OFlags::DIRECT, on);
    fcntl_setfl(file, flags)?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn set_direct(_: &File, _: bool) -> io::Result<()> {
    Ok(())
}

/// Creates (or truncates) `path` for writing, with `O_DIRECT` where the file system takes it.
fn create(path: &Path) -> io::Result<(File, bool)> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let direct = File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(path);
        match direct {
            Ok(f) => return Ok((f, true)),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {}
            Err(e) => return Err(e),
        }
    }
    Ok((File::create(path)?, false))
}

/// A [`Write`] into a new file, written past the page cache where possible (module docs).
/// [`DirectWriter::finish`] must be called: it writes the last partial block and reports
/// any error of the disk thread. Dropping the writer without it leaves the file incomplete.
pub(super) struct DirectWriter {
    cur: Buf,
    /// Full blocks to the disk thread; `None` once finished.
    to_disk: Option<SyncSender<Buf>>,
    /// Written blocks back from it, to refill.
    back: Receiver<Buf>,
    disk: Option<JoinHandle<io::Result<File>>>,
}

impl DirectWriter {
    /// Creates `path` (truncating it if it exists) and starts its disk thread.
    ///
    /// # Errors
    /// The file cannot be created, or the thread cannot be started.
    pub(super) fn create(path: &Path) -> io::Result<Self> {
        let (file, direct) = create(path)?;
        let (to_disk, from_writer) = sync_channel::<Buf>(1);
        let (to_writer, back) = sync_channel::<Buf>(2);
        to_writer
            .send(Buf::new())
            .expect("the receiver is alive here");
        let disk = std::thread::Builder::new()
            .name("recoup-write".into())
            .spawn(move || {
                let mut disk = Disk { file, direct };
                for mut buf in from_writer {
                    disk.write(&buf)?;
                    buf.len = 0;
                    // The writer may be gone (finished); the block is then just freed.
                    let _ = to_writer.send(buf);
                }
                Ok(disk.file)
            })?;
        Ok(Self {
            cur: Buf::new(),
            to_disk: Some(to_disk),
            back,
            disk: Some(disk),
        })
    }

    /// Hands the current block to the disk thread and takes an empty one.
    fn ship(&mut self) -> io::Result<()> {
        let sent = self
            .to_disk
            .as_ref()
            .ok_or_else(|| io::Error::other("write after finish"))?
            .send(std::mem::replace(&mut self.cur, Buf::empty()));
        let next = match sent {
            Ok(()) => self.back.recv().ok(),
            Err(_) => None,
        };
        match next {
            Some(b) => {
                self.cur = b;
                Ok(())
            }
            // The disk thread stopped: it failed; its error is the one to report.
            None => Err(self
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("the disk thread stopped without an error"))),
        }
    }

    fn join(&mut self) -> io::Result<File> {
        self.to_disk = None;
        match self.disk.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the disk thread panicked"))),
            None => Err(io::Error::other("the disk thread is gone")),
        }
    }

    /// Writes what is left, waits for the disk thread and returns the file (all bytes
    /// written, not synced to the device).
    ///
    /// # Errors
    /// Any write error, the first one met.
    pub(super) fn finish(mut self) -> io::Result<File> {
        if self.cur.len > 0 {
            self.ship()?;
        }
        self.join()
    }
}

impl Write for DirectWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.cur.free() == 0 {
            self.ship()?;
        }
        Ok(self.cur.fill(data))
    }

    fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.cur.free() == 0 {
                self.ship()?;
            }
            let n = self.cur.fill(data);
            data = &data[n..];
        }
        Ok(())
    }

    /// Does nothing: blocks go to disk as they fill, and the last one with
    /// [`DirectWriter::finish`] (a partial block written now would end direct writes).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for DirectWriter {
    fn drop(&mut self) {
        // Unfinished (an error on the caller's side): stop the disk thread, ignore its result.
        if self.disk.is_some() {
            let _ = self.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of `len` that differ from block to block.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i / BLOCK) as u8)
            .collect()
    }

    #[test]
    fn the_file_holds_exactly_the_bytes_written_at_every_block_boundary() {
        let dir = tempfile::tempdir().unwrap();
        for len in [
            0,
            1,
            ALIGN - 1,
            ALIGN,
            ALIGN + 1,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            2 * BLOCK + ALIGN + 7,
        ] {
            let data = pattern(len);
            let p = dir.path().join(format!("f{len}"));
            let mut w = DirectWriter::create(&p).unwrap();
            // Uneven pieces, so that writes straddle the block boundaries.
            for piece in data.chunks(999_983) {
                w.write_all(piece).unwrap();
            }
            w.finish().unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), data, "length {len}");
        }
    }

    #[test]
    fn an_existing_file_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![7u8; 3 * ALIGN]).unwrap();
        let mut w = DirectWriter::create(&p).unwrap();
        w.write_all(b"short").unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"short");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_write_is_reported_by_finish_or_by_the_write_after_it() {
        // Every write to /dev/full fails with ENOSPC.
        let mut w = DirectWriter::create(Path::new("/dev/full")).unwrap();
        let written = w.write_all(&pattern(3 * BLOCK));
        let e = match written {
            Err(e) => e,
            Ok(()) => w.finish().unwrap_err(),
        };
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::NOSPC.raw_os_error())
        );
    }

    #[test]
    fn a_file_that_cannot_be_created_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = DirectWriter::create(&dir.path().join("missing").join("f"))
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
