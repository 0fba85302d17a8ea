//! The file-system seam: every byte the durable store reads or writes passes here.
//!
//! The store never calls `std::fs` directly. It talks to a [`Vfs`] (directory
//! operations, whole-file reads) and to the [`VfsFile`] handles it returns
//! (appends, positional writes, `fsync`, truncation), and reads the log through
//! [`VfsReader`] windows. Production uses [`RealVfs`], a thin layer
//! over `std::fs` whose calls go through [`retry_io`],
//! so interrupted system calls are retried in one place. Tests substitute the
//! in-memory `fault_fs::FaultFs` (feature `failpoints`), which
//! injects write errors, fsync errors, `ENOSPC`, short writes and failed
//! renames, and which, on a simulated crash, forgets everything that was not
//! made durable — the discipline RocksDB's `FaultInjectionTestFS` enforces.
//!
//! The durability rules the store relies on are the POSIX ones, stated here so
//! both implementations keep them: written bytes survive a crash only after the
//! file's `sync`; a new, renamed or removed directory entry survives only after
//! the directory's [`Vfs::sync_dir`].

use crate::retry::retry_io;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// An open file the store appends to.
pub trait VfsFile: Send + Sync + Debug {
    /// Appends all of `buf` at the end of the file.
    fn append(&self, buf: &[u8]) -> io::Result<()>;
    /// Writes all of `buf` at byte `offset` (`pwrite`), extending the file if
    /// it ends before `offset + buf.len()`. The log writer writes this way, so
    /// it can fill space it preallocated (see [`tlog_writer`](crate::tlog_writer)).
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes every written byte durable (`fdatasync`: the data and the metadata
    /// needed to read it back, such as a grown size; not timestamps).
    fn sync(&self) -> io::Result<()>;
    /// Cuts or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// An open file the store reads piece by piece (the log scan), so that
/// reading a log needs memory for one window, not for a whole segment.
pub trait VfsReader: Send + Debug {
    /// The file's size in bytes when it was opened.
    fn len(&self) -> u64;
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads up to `buf.len()` bytes at `offset`; returns how many (0 at the end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

/// A [`VfsReader`] over bytes already in memory.
#[derive(Debug)]
pub struct MemReader(pub Vec<u8>);

impl VfsReader for MemReader {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.0.len());
        let n = buf.len().min(self.0.len() - start);
        buf[..n].copy_from_slice(&self.0[start..start + n]);
        Ok(n)
    }
}

/// The file-system operations the store uses.
pub trait Vfs: Send + Sync + Debug {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates (or truncates) a file for appending.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn VfsFile>>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn VfsFile>>;
    /// The whole contents of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Opens a file for reading piece by piece. The default reads it whole
    /// (right for in-memory file systems); [`RealVfs`] reads from the file.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn VfsReader>> {
        Ok(Box::new(MemReader(self.read(path)?)))
    }
    /// The names of the entries of a directory (no particular order).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Renames a file, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of a directory durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Whether a file or directory exists.
    fn exists(&self, path: &Path) -> bool;
    /// Takes an exclusive advisory lock on the file at `path` (created if
    /// needed), held until the returned guard is dropped. Another holder makes
    /// this fail with [`io::ErrorKind::WouldBlock`]. File systems without other
    /// processes (the in-memory fault file system) need not lock anything.
    fn lock_exclusive(&self, _path: &Path) -> io::Result<DirLock> {
        Ok(DirLock(None))
    }
}

/// An exclusive lock on a data directory (its `LOCK` file); released on drop.
#[derive(Debug)]
pub struct DirLock(Option<File>);

impl DirLock {
    /// Whether a real lock is held (false on file systems that need none).
    pub fn is_held(&self) -> bool {
        self.0.is_some()
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealVfs;

/// A real open file.
#[derive(Debug)]
struct RealFile(File);

impl VfsFile for RealFile {
    fn append(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = retry_io(|| (&self.0).write(buf))?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "write returned 0 bytes",
                ));
            }
            buf = &buf[n..];
        }
        Ok(())
    }

    fn write_at(&self, mut offset: u64, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = retry_io(|| self.0.write_at(buf, offset))?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "pwrite returned 0 bytes",
                ));
            }
            buf = &buf[n..];
            offset += n as u64;
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        retry_io(|| self.0.sync_data())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        retry_io(|| self.0.set_len(len))
    }
}

/// A real file opened for reading.
#[derive(Debug)]
struct RealReader {
    file: File,
    len: u64,
}

impl VfsReader for RealReader {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        retry_io(|| self.file.read_at(buf, offset))
    }
}

impl Vfs for RealVfs {
    fn lock_exclusive(&self, path: &Path) -> io::Result<DirLock> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match f.try_lock() {
            Ok(()) => Ok(DirLock(Some(f))),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "held by another open store",
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        retry_io(|| std::fs::create_dir_all(path))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn VfsFile>> {
        let f = retry_io(|| {
            OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(path)
        })?;
        Ok(Arc::new(RealFile(f)))
    }

    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn VfsFile>> {
        let f = retry_io(|| OpenOptions::new().append(true).open(path))?;
        Ok(Arc::new(RealFile(f)))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        retry_io(|| std::fs::read(path))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn VfsReader>> {
        let f = retry_io(|| File::open(path))?;
        let len = retry_io(|| f.metadata())?.len();
        Ok(Box::new(RealReader { file: f, len }))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in retry_io(|| std::fs::read_dir(dir))? {
            let e = e?;
            if let Some(name) = e.file_name().to_str() {
                out.push(name.to_owned());
            }
        }
        Ok(out)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        retry_io(|| std::fs::rename(from, to))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        retry_io(|| std::fs::remove_file(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let d = retry_io(|| File::open(dir))?;
        retry_io(|| d.sync_all())
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}
