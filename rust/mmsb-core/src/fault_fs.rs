//! An in-memory file system that injects faults and simulates crashes.
//!
//! [`FaultFs`] implements [`Vfs`] over a map of paths to byte vectors, and
//! keeps for every file two versions: what the process has written, and what
//! has been made durable by `sync`. Directory entries are durable only after
//! [`Vfs::sync_dir`] of their directory. [`FaultFs::crash`] models a power
//! loss: every file loses its unsynced bytes, and files whose entries were never
//! synced disappear. A store that acknowledges a commit before its bytes are
//! durable fails the tests built on this, however lucky the real disk is.
//!
//! Faults are armed with [`FaultFs::fail_after`]: after a number of further
//! successful operations of one kind, the next one fails once with the chosen
//! [`Fault`]. A short write keeps half of the buffer before failing, as a
//! `write(2)` cut short by a full disk does.
//!
//! Direct I/O ([`Vfs::open_direct`]) is modelled too, by default available:
//! a direct handle refuses, with `EINVAL` as Linux does, any write whose
//! offset, length or buffer address is not a multiple of
//! [`DIRECT_ALIGN`](crate::tlog_direct::DIRECT_ALIGN), and its writes are
//! durable only after a sync like any other. [`FaultFs::set_direct_io`] turns
//! it off, to model a file system that refuses it (tmpfs).
//!
//! Compiled with the `failpoints` cargo feature (and in unit tests); never part
//! of a production store.

use crate::tlog_direct::DIRECT_ALIGN;
use crate::vfs::{Vfs, VfsFile};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A fault [`FaultFs`] can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// An append fails with `EIO`, writing nothing.
    WriteError,
    /// An append writes half its bytes, then fails with `EIO`.
    ShortWrite,
    /// An append fails with `ENOSPC`, writing nothing.
    NoSpace,
    /// A file `sync` fails with `EIO`; the unsynced bytes are dropped, as Linux does.
    FsyncError,
    /// A rename fails with `EIO`.
    RenameError,
}

#[derive(Debug, Default)]
struct FileState {
    data: Vec<u8>,
    synced: Vec<u8>,
    durable_entry: bool,
}

#[derive(Debug, Default)]
struct Inner {
    files: BTreeMap<PathBuf, FileState>,
    dirs: BTreeSet<PathBuf>,
    armed: Vec<(Fault, u64)>,
    syncs: u64,
    no_direct: bool,
}

impl Inner {
    /// Whether an armed fault of one of `kinds` fires now (counting this operation).
    fn fire(&mut self, kinds: &[Fault]) -> Option<Fault> {
        let mut hit = None;
        for (f, left) in self.armed.iter_mut() {
            if kinds.contains(f) && hit.is_none() {
                if *left == 0 {
                    hit = Some(*f);
                } else {
                    *left -= 1;
                }
            }
        }
        if let Some(f) = hit {
            if let Some(i) = self.armed.iter().position(|(k, n)| *k == f && *n == 0) {
                self.armed.remove(i);
            }
        }
        hit
    }
}

/// The in-memory, fault-injecting, crash-simulating file system. Cheap to clone (shared).
#[derive(Debug, Default, Clone)]
pub struct FaultFs {
    inner: Arc<Mutex<Inner>>,
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("injected I/O error ({what})"))
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} does not exist", p.display()),
    )
}

impl FaultFs {
    /// An empty file system.
    pub fn new() -> FaultFs {
        FaultFs::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Arms `fault`: after `after` further successful operations of its kind, the next one fails once.
    pub fn fail_after(&self, fault: Fault, after: u64) {
        self.lock().armed.push((fault, after));
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.lock().armed.clear();
    }

    /// Simulates a power loss: unsynced bytes and unsynced directory entries vanish.
    pub fn crash(&self) {
        let mut g = self.lock();
        g.armed.clear();
        g.files.retain(|_, f| f.durable_entry);
        for f in g.files.values_mut() {
            f.data = f.synced.clone();
        }
    }

    /// Whether [`Vfs::open_direct`] succeeds (true by default); false models
    /// a file system that refuses direct I/O.
    pub fn set_direct_io(&self, supported: bool) {
        self.lock().no_direct = !supported;
    }

    /// How many file syncs succeeded so far.
    pub fn sync_count(&self) -> u64 {
        self.lock().syncs
    }

    /// Overwrites a file's contents, durably (for corruption tests).
    pub fn put(&self, path: &Path, bytes: Vec<u8>) {
        let mut g = self.lock();
        let f = g.files.entry(path.to_path_buf()).or_default();
        f.synced = bytes.clone();
        f.data = bytes;
        f.durable_entry = true;
    }
}

#[derive(Debug)]
struct FaultFile {
    fs: FaultFs,
    path: PathBuf,
    direct: bool,
}

impl VfsFile for FaultFile {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        if self.direct {
            return Err(io::Error::from_raw_os_error(22));
        }
        let mut g = self.fs.lock();
        let fault = g.fire(&[Fault::WriteError, Fault::ShortWrite, Fault::NoSpace]);
        let f = g
            .files
            .get_mut(&self.path)
            .ok_or_else(|| not_found(&self.path))?;
        match fault {
            Some(Fault::NoSpace) => Err(io::Error::from_raw_os_error(28)),
            Some(Fault::ShortWrite) => {
                f.data.extend_from_slice(&buf[..buf.len() / 2]);
                Err(eio("short write"))
            }
            Some(_) => Err(eio("write")),
            None => {
                f.data.extend_from_slice(buf);
                Ok(())
            }
        }
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let a = DIRECT_ALIGN;
        if self.direct
            && (!offset.is_multiple_of(a as u64)
                || !buf.len().is_multiple_of(a)
                || !(buf.as_ptr() as usize).is_multiple_of(a))
        {
            return Err(io::Error::from_raw_os_error(22));
        }
        let mut g = self.fs.lock();
        let fault = g.fire(&[Fault::WriteError, Fault::ShortWrite, Fault::NoSpace]);
        let f = g
            .files
            .get_mut(&self.path)
            .ok_or_else(|| not_found(&self.path))?;
        let at = usize::try_from(offset).map_err(|_| eio("write_at offset"))?;
        let (n, r) = match fault {
            Some(Fault::NoSpace) => (0, Err(io::Error::from_raw_os_error(28))),
            Some(Fault::ShortWrite) => (buf.len() / 2, Err(eio("short write"))),
            Some(_) => (0, Err(eio("write"))),
            None => (buf.len(), Ok(())),
        };
        if n > 0 {
            if f.data.len() < at + n {
                f.data.resize(at + n, 0);
            }
            f.data[at..at + n].copy_from_slice(&buf[..n]);
        }
        r
    }

    fn sync(&self) -> io::Result<()> {
        let mut g = self.fs.lock();
        let fault = g.fire(&[Fault::FsyncError]);
        let f = g
            .files
            .get_mut(&self.path)
            .ok_or_else(|| not_found(&self.path))?;
        if fault.is_some() {
            // Linux drops the dirty pages of a failed writeback: they are gone.
            f.data = f.synced.clone();
            return Err(eio("fsync"));
        }
        f.synced = f.data.clone();
        g.syncs += 1;
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut g = self.fs.lock();
        let f = g
            .files
            .get_mut(&self.path)
            .ok_or_else(|| not_found(&self.path))?;
        let len = usize::try_from(len).map_err(|_| eio("set_len"))?;
        f.data.resize(len, 0);
        Ok(())
    }

    fn is_direct(&self) -> bool {
        self.direct
    }
}

impl Vfs for FaultFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut g = self.lock();
        for a in path.ancestors() {
            g.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn VfsFile>> {
        let mut g = self.lock();
        let durable = g.files.get(path).map(|f| f.durable_entry).unwrap_or(false);
        g.files.insert(
            path.to_path_buf(),
            FileState {
                durable_entry: durable,
                ..FileState::default()
            },
        );
        Ok(Arc::new(FaultFile {
            fs: self.clone(),
            path: path.to_path_buf(),
            direct: false,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn VfsFile>> {
        if !self.lock().files.contains_key(path) {
            return Err(not_found(path));
        }
        Ok(Arc::new(FaultFile {
            fs: self.clone(),
            path: path.to_path_buf(),
            direct: false,
        }))
    }

    fn open_direct(&self, path: &Path) -> io::Result<Arc<dyn VfsFile>> {
        let g = self.lock();
        if g.no_direct {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "direct I/O turned off in the fault file system",
            ));
        }
        if !g.files.contains_key(path) {
            return Err(not_found(path));
        }
        Ok(Arc::new(FaultFile {
            fs: self.clone(),
            path: path.to_path_buf(),
            direct: true,
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.lock()
            .files
            .get(path)
            .map(|f| f.data.clone())
            .ok_or_else(|| not_found(path))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let g = self.lock();
        if !g.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(g.files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut g = self.lock();
        if g.fire(&[Fault::RenameError]).is_some() {
            return Err(eio("rename"));
        }
        let mut f = g.files.remove(from).ok_or_else(|| not_found(from))?;
        f.durable_entry = false;
        g.files.insert(to.to_path_buf(), f);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.lock()
            .files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut g = self.lock();
        for (p, f) in g.files.iter_mut() {
            if p.parent() == Some(dir) {
                f.durable_entry = true;
            }
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let g = self.lock();
        g.files.contains_key(path) || g.dirs.contains(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_drops_unsynced_bytes_and_entries() {
        let fs = FaultFs::new();
        let d = Path::new("/d");
        fs.create_dir_all(d).unwrap();
        let a = fs.create(&d.join("a")).unwrap();
        a.append(b"durable").unwrap();
        a.sync().unwrap();
        fs.sync_dir(d).unwrap();
        a.append(b" lost").unwrap();
        let b = fs.create(&d.join("b")).unwrap();
        b.append(b"x").unwrap();
        b.sync().unwrap();
        fs.crash();
        assert_eq!(fs.read(&d.join("a")).unwrap(), b"durable");
        assert!(!fs.exists(&d.join("b")));
    }

    #[test]
    fn crash_reverts_unsynced_overwrites_of_synced_bytes() {
        let fs = FaultFs::new();
        let d = Path::new("/d");
        fs.create_dir_all(d).unwrap();
        let a = fs.create(&d.join("a")).unwrap();
        a.write_at(0, &[0; 8]).unwrap();
        a.sync().unwrap();
        fs.sync_dir(d).unwrap();
        a.write_at(2, b"abc").unwrap();
        a.write_at(10, b"z").unwrap();
        assert_eq!(fs.read(&d.join("a")).unwrap(), b"\0\0abc\0\0\0\0\0z");
        fs.crash();
        assert_eq!(fs.read(&d.join("a")).unwrap(), [0; 8]);
    }

    #[test]
    fn direct_handles_refuse_unaligned_writes_and_can_be_turned_off() {
        use crate::tlog_direct::AlignedBuf;
        let fs = FaultFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        fs.create(Path::new("/d/a")).unwrap();
        let f = fs.open_direct(Path::new("/d/a")).unwrap();
        assert!(f.is_direct());
        let mut b = AlignedBuf::with_capacity(2 * DIRECT_ALIGN);
        b.extend_from_slice(&[1u8; 2 * DIRECT_ALIGN]);
        let s = b.as_slice();
        assert_eq!(f.write_at(1, s).unwrap_err().raw_os_error(), Some(22));
        assert_eq!(
            f.write_at(0, &s[..100]).unwrap_err().raw_os_error(),
            Some(22)
        );
        let off = &s[1..DIRECT_ALIGN + 1];
        assert_eq!(f.write_at(0, off).unwrap_err().raw_os_error(), Some(22));
        f.write_at(DIRECT_ALIGN as u64, s).unwrap();
        assert_eq!(fs.read(Path::new("/d/a")).unwrap().len(), 3 * DIRECT_ALIGN);
        fs.set_direct_io(false);
        let e = fs.open_direct(Path::new("/d/a")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    }

    #[test]
    fn armed_faults_fire_once_after_the_count() {
        let fs = FaultFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let a = fs.create(Path::new("/d/a")).unwrap();
        fs.fail_after(Fault::NoSpace, 1);
        a.append(b"1").unwrap();
        let e = a.append(b"2").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28));
        a.append(b"3").unwrap();
        assert_eq!(fs.read(Path::new("/d/a")).unwrap(), b"13");
    }
}
