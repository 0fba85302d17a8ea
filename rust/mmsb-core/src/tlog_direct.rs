//! Direct (unbuffered) log writes: a user-space tail buffer written by the syncing leader.
//!
//! Under immediate durability every commit pays one trip to the disk, so the
//! cost of that trip is the commit rate. Through the page cache the trip is a
//! copy into the cache, then `fdatasync`, which looks up and writes back the
//! dirty pages and then flushes the device. With `O_DIRECT` the bytes go
//! straight from a user-space buffer to the device, and with `RWF_DSYNC`
//! (`pwritev2`) the write and the flush are one system call.
//!
//! [`DirectLogFile`] wraps a segment opened with [`Vfs::open_direct`](crate::vfs::Vfs::open_direct) and keeps
//! the [`VfsFile`] contract the log writer and group commit already use:
//!
//! * [`VfsFile::write_at`] at the end of what was written (an append) only
//!   copies the frame into a *pending* buffer, in memory. It costs no system
//!   call, so the commit lock is held for no I/O (but the writer's occasional
//!   zero preallocation, below).
//! * [`VfsFile::sync`] (the group-commit leader) swaps the pending buffer
//!   for a spare one and writes it with one block-aligned positional write that
//!   also makes it durable ([`VfsFile::write_at_sync`]). Direct I/O writes
//!   whole [`DIRECT_ALIGN`]-byte blocks from an aligned buffer at an aligned
//!   offset, so the write starts at the block holding the oldest unwritten
//!   byte and ends at the next block boundary, the padding being zeros; the
//!   last, partial block stays in the pending buffer and is written again,
//!   longer, by the next sync. Earlier frames in that block are rewritten with
//!   the same bytes, so a crash during the rewrite leaves them as they were
//!   (the file's bytes only ever change from zero to their final value). The
//!   on-disk format is unchanged: frames, then zeros, which recovery already
//!   reads as the clean end of a segment.
//! * Writes of zeros at or past the end (the writer's preallocation) go
//!   straight to the file, whole blocks past the pending tail; other writes
//!   past the end are refused. (A frame is never all zeros: it opens with
//!   its non-zero length.)
//! * [`VfsFile::set_len`] writes what is pending first.
//!
//! A failed write or sync is sticky, as it is for `fsync` itself: the pending
//! bytes may be lost, so the file refuses every later write and sync.
//!
//! Whether the file system takes direct I/O is found out when the segment is
//! opened: [`Vfs::open_direct`](crate::vfs::Vfs::open_direct) fails (tmpfs answers `EINVAL`) and the writer
//! keeps the buffered path (see [`TLogWriter`](crate::tlog_writer::TLogWriter)).

use crate::vfs::VfsFile;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// Offsets, lengths and buffer addresses of direct writes are multiples of this.
/// 4 KiB covers the logical block size of common devices and the page size.
pub const DIRECT_ALIGN: usize = 4096;
/// A spare buffer larger than this is dropped after its write (a huge commit
/// must not pin its memory for the file's lifetime).
const BUFFER_KEPT: usize = 8 << 20;

/// Rounds `x` up to a multiple of [`DIRECT_ALIGN`].
pub fn align_up(x: u64) -> u64 {
    x.div_ceil(DIRECT_ALIGN as u64) * DIRECT_ALIGN as u64
}

/// Rounds `x` down to a multiple of [`DIRECT_ALIGN`].
pub fn align_down(x: u64) -> u64 {
    x - x % DIRECT_ALIGN as u64
}

/// A byte buffer whose start is [`DIRECT_ALIGN`]-aligned in memory, with room
/// to pad its contents with zeros to a whole block. Built on a `Vec<u8>` with
/// slack, no `unsafe`.
#[derive(Debug, Default)]
pub struct AlignedBuf {
    raw: Vec<u8>,
    off: usize,
    len: usize,
}

impl AlignedBuf {
    /// An empty buffer with room for `cap` bytes (rounded up to whole blocks).
    pub fn with_capacity(cap: usize) -> AlignedBuf {
        let cap = align_up(cap.max(1) as u64) as usize;
        let raw = vec![0u8; cap + DIRECT_ALIGN];
        let off = raw.as_ptr().align_offset(DIRECT_ALIGN);
        // `align_offset` of a `u8` pointer always succeeds, and the slack is a whole block.
        let off = if off < DIRECT_ALIGN { off } else { 0 };
        AlignedBuf { raw, off, len: 0 }
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes it can hold without growing.
    pub fn capacity(&self) -> usize {
        self.raw.len().saturating_sub(self.off + DIRECT_ALIGN)
    }

    /// The bytes held.
    pub fn as_slice(&self) -> &[u8] {
        &self.raw[self.off..self.off + self.len]
    }

    /// Forgets the bytes held (keeps the memory).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `b`, growing (to a new aligned allocation) if needed.
    pub fn extend_from_slice(&mut self, b: &[u8]) {
        let need = self.len + b.len();
        if need > self.capacity() {
            let mut bigger = AlignedBuf::with_capacity(need.max(2 * self.capacity()));
            bigger.extend_from_slice(self.as_slice());
            *self = bigger;
        }
        self.raw[self.off + self.len..self.off + need].copy_from_slice(b);
        self.len = need;
    }

    /// The bytes held followed by zeros up to the next block boundary: an
    /// aligned start and a whole number of blocks, as direct I/O wants.
    pub fn padded(&mut self) -> &[u8] {
        let end = align_up(self.len as u64) as usize;
        self.raw[self.off + self.len..self.off + end].fill(0);
        &self.raw[self.off..self.off + end]
    }
}

#[derive(Debug)]
struct Pending {
    /// File offset of the first pending byte's block (aligned).
    base: u64,
    /// The bytes from `base` on: the already written start of a partial block, then new frames.
    buf: AlignedBuf,
    /// Whether `buf` holds bytes not yet written.
    dirty: bool,
}

impl Pending {
    fn end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }
}

#[derive(Debug)]
struct Io {
    spare: AlignedBuf,
    zeros: AlignedBuf,
    failed: Option<(io::ErrorKind, String)>,
}

/// A log segment written with direct I/O; see the module docs.
#[derive(Debug)]
pub struct DirectLogFile {
    inner: Arc<dyn VfsFile>,
    /// Serializes writes to the file (so blocks land in order) and holds the spare buffer.
    io: Mutex<Io>,
    pending: Mutex<Pending>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned())
}

impl DirectLogFile {
    /// Wraps `inner` (opened for direct I/O), whose bytes up to `len` are
    /// written and durable; `tail` is the content of the file from the block
    /// holding `len` up to `len` (`len % DIRECT_ALIGN` bytes), which the next
    /// write rewrites.
    pub fn new(inner: Arc<dyn VfsFile>, len: u64, tail: &[u8]) -> io::Result<DirectLogFile> {
        let base = align_down(len);
        if tail.len() as u64 != len - base {
            return Err(invalid(
                "direct log: the tail must be the partial block before len",
            ));
        }
        let mut buf = AlignedBuf::with_capacity(64 << 10);
        buf.extend_from_slice(tail);
        Ok(DirectLogFile {
            inner,
            io: Mutex::new(Io {
                spare: AlignedBuf::with_capacity(64 << 10),
                zeros: AlignedBuf::default(),
                failed: None,
            }),
            pending: Mutex::new(Pending {
                base,
                buf,
                dirty: false,
            }),
        })
    }

    fn check(io: &Io) -> io::Result<()> {
        match &io.failed {
            Some((kind, msg)) => Err(io::Error::new(
                *kind,
                format!("an earlier direct log write failed: {msg}"),
            )),
            None => Ok(()),
        }
    }

    /// Writes what is pending (durably when `durable`); `io` is held by the caller.
    fn write_pending(&self, io: &mut Io, durable: bool) -> io::Result<bool> {
        Self::check(io)?;
        let base = {
            let mut p = lock(&self.pending);
            if !p.dirty {
                return Ok(false);
            }
            // Keep the last partial block pending: the next write rewrites it, longer.
            let end = p.end();
            let keep_from = (align_down(end) - p.base) as usize;
            io.spare.clear();
            io.spare.extend_from_slice(&p.buf.as_slice()[keep_from..]);
            std::mem::swap(&mut io.spare, &mut p.buf);
            let base = p.base;
            p.base = align_down(end);
            p.dirty = false;
            base
        };
        let bytes = io.spare.padded();
        let r = if durable {
            self.inner.write_at_sync(base, bytes)
        } else {
            self.inner.write_at(base, bytes)
        };
        if io.spare.capacity() > BUFFER_KEPT {
            io.spare = AlignedBuf::with_capacity(64 << 10);
        }
        if let Err(e) = r {
            io.failed = Some((e.kind(), e.to_string()));
            return Err(e);
        }
        Ok(true)
    }
}

impl VfsFile for DirectLogFile {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        let end = lock(&self.pending).end();
        self.write_at(end, buf)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        // A frame starts with its non-zero length, so this stops at its first byte.
        let zeros = !buf.iter().any(|&b| b != 0);
        {
            let mut p = lock(&self.pending);
            if offset < p.end() {
                return Err(invalid("direct log: writes must append at the end"));
            }
            if !zeros {
                if offset != p.end() {
                    return Err(invalid(
                        "direct log: only zeros may be written past the end",
                    ));
                }
                p.buf.extend_from_slice(buf);
                p.dirty = true;
                return Ok(());
            }
        }
        // Zeros at or past the end: the writer's preallocation. They go to the
        // file at once, whole blocks after the pending tail (whose own block
        // is zero-padded when it is written).
        let mut io = lock(&self.io);
        Self::check(&io)?;
        let tail_end = align_up(lock(&self.pending).end());
        let from = align_up(offset).max(tail_end);
        let to = align_up(offset + buf.len() as u64);
        if from >= to {
            return Ok(());
        }
        let n = (to - from) as usize;
        if io.zeros.capacity() < n {
            io.zeros = AlignedBuf::with_capacity(n);
        }
        io.zeros.clear();
        let r = {
            let z = &mut io.zeros;
            // A fresh AlignedBuf is all zeros and nothing else is ever put in `zeros`.
            z.len = n;
            self.inner.write_at(from, z.as_slice())
        };
        if let Err(e) = r {
            io.failed = Some((e.kind(), e.to_string()));
            return Err(e);
        }
        Ok(())
    }

    fn write_at_sync(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.write_at(offset, buf)?;
        self.sync()
    }

    fn sync(&self) -> io::Result<()> {
        let mut io = lock(&self.io);
        if self.write_pending(&mut io, true)? {
            return Ok(());
        }
        let r = self.inner.sync();
        if let Err(e) = &r {
            io.failed = Some((e.kind(), e.to_string()));
        }
        r
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut io = lock(&self.io);
        self.write_pending(&mut io, false)?;
        {
            let p = lock(&self.pending);
            if len != p.end() {
                return Err(invalid("direct log: set_len only trims preallocated zeros"));
            }
        }
        self.inner.set_len(len)
    }

    fn is_direct(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault_fs::FaultFs;
    use crate::vfs::Vfs;
    use std::path::Path;

    fn direct_file(fs: &FaultFs, prefix: &[u8]) -> DirectLogFile {
        fs.create_dir_all(Path::new("/d")).unwrap();
        let f = fs.create(Path::new("/d/seg")).unwrap();
        f.write_at(0, prefix).unwrap();
        f.sync().unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        let d = fs.open_direct(Path::new("/d/seg")).unwrap();
        let base = align_down(prefix.len() as u64) as usize;
        DirectLogFile::new(d, prefix.len() as u64, &prefix[base..]).unwrap()
    }

    #[test]
    fn aligned_buffers_start_on_a_block_and_pad_with_zeros() {
        for cap in [1, 100, 4096, 5000, 70_000] {
            let mut b = AlignedBuf::with_capacity(cap);
            assert_eq!(b.as_slice().as_ptr() as usize % DIRECT_ALIGN, 0);
            b.extend_from_slice(&vec![7u8; cap]);
            b.extend_from_slice(&[9u8; 3]); // grows past the capacity
            assert_eq!(b.as_slice().as_ptr() as usize % DIRECT_ALIGN, 0);
            let p = b.padded();
            assert_eq!(p.len() % DIRECT_ALIGN, 0);
            assert_eq!(p.as_ptr() as usize % DIRECT_ALIGN, 0);
            assert!(p[..cap].iter().all(|&x| x == 7));
            assert_eq!(&p[cap..cap + 3], &[9, 9, 9]);
            assert!(p[cap + 3..].iter().all(|&x| x == 0));
        }
    }

    #[test]
    fn each_sync_rewrites_the_partial_block_keeping_earlier_bytes() {
        let fs = FaultFs::new();
        let header = [0xAAu8; 40];
        let f = direct_file(&fs, &header);
        let mut model = header.to_vec();
        // Appends of odd sizes, synced one by one, many ending mid-block.
        for (i, n) in [100usize, 3000, 1, 4096, 5000, 7].into_iter().enumerate() {
            let bytes = vec![i as u8 + 1; n];
            f.write_at(model.len() as u64, &bytes).unwrap();
            model.extend_from_slice(&bytes);
            f.sync().unwrap();
            // Only synced bytes survive a crash: every earlier append must be there.
            let snapshot = fs.clone();
            snapshot.crash();
            let on_disk = fs.read(Path::new("/d/seg")).unwrap();
            assert_eq!(&on_disk[..model.len()], &model[..], "after append {i}");
            assert!(on_disk[model.len()..].iter().all(|&b| b == 0));
            assert_eq!(on_disk.len() as u64, align_up(model.len() as u64));
        }
    }

    #[test]
    fn unsynced_appends_never_reach_the_file() {
        let fs = FaultFs::new();
        let f = direct_file(&fs, &[1u8; 40]);
        f.write_at(40, &[2u8; 500]).unwrap();
        assert_eq!(fs.read(Path::new("/d/seg")).unwrap(), vec![1u8; 40]);
        f.sync().unwrap();
        f.write_at(540, &[3u8; 500]).unwrap();
        fs.crash();
        let on_disk = fs.read(Path::new("/d/seg")).unwrap();
        assert_eq!(&on_disk[40..540], &[2u8; 500][..]);
        assert!(on_disk[540..].iter().all(|&b| b == 0));
    }

    #[test]
    fn zeros_past_the_end_are_written_as_whole_blocks_and_other_bytes_refused() {
        let fs = FaultFs::new();
        let f = direct_file(&fs, &[1u8; 40]);
        f.write_at(40, &[5u8; 10]).unwrap();
        f.write_at(50, &vec![0u8; 3 * DIRECT_ALIGN]).unwrap();
        let on_disk = fs.read(Path::new("/d/seg")).unwrap();
        assert_eq!(on_disk.len() as u64, align_up(50 + 3 * DIRECT_ALIGN as u64));
        // The pending block was not overwritten by the zeros: it is written by the sync.
        f.sync().unwrap();
        let on_disk = fs.read(Path::new("/d/seg")).unwrap();
        assert_eq!(&on_disk[40..50], &[5u8; 10]);
        assert!(f.write_at(1 << 20, &[1]).is_err());
        assert!(f.write_at(10, &[1]).is_err());
    }

    #[test]
    fn set_len_writes_what_is_pending_then_trims() {
        let fs = FaultFs::new();
        let f = direct_file(&fs, &[1u8; 40]);
        f.write_at(40, &[5u8; 100]).unwrap();
        f.write_at(140, &vec![0u8; 2 * DIRECT_ALIGN]).unwrap();
        f.set_len(140).unwrap();
        f.sync().unwrap();
        let mut want = vec![1u8; 40];
        want.extend_from_slice(&[5u8; 100]);
        assert_eq!(fs.read(Path::new("/d/seg")).unwrap(), want);
    }

    #[test]
    fn a_failed_write_is_sticky() {
        use crate::fault_fs::Fault;
        let fs = FaultFs::new();
        let f = direct_file(&fs, &[1u8; 40]);
        f.write_at(40, &[5u8; 100]).unwrap();
        fs.fail_after(Fault::WriteError, 0);
        assert!(f.sync().is_err());
        f.write_at(140, &[6u8; 10]).unwrap();
        assert!(
            f.sync().is_err(),
            "a sync after a failed write must not succeed"
        );
    }
}
