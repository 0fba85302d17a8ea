//! Checkpoints: a whole, verified snapshot of the state at one commit.
//!
//! Replaying a long log from the first commit would make recovery slower every
//! day, and would keep every segment forever. A checkpoint writes down every
//! page (bytes, epoch, location, numeric view, metadata) as it stood after the
//! commit with a given LSN; recovery loads the newest one that verifies and
//! replays only the log after it, and log segments wholly older than the oldest
//! kept checkpoint can be deleted.
//!
//! Since format version 2 a checkpoint also holds the dependency graph, exactly
//! (order numbers and edge sequence numbers included, so a recompute
//! function's input order survives), after the page records. Version 1 files
//! (no graph: the empty graph) are still read.
//!
//! A checkpoint is taken at a commit boundary: the store clones the page table
//! under its commit lock (pages are copy-on-write, so this copies pointers, not
//! bytes) and writes the file outside it while commits go on. It is written to
//! `<name>.tmp`, synced, renamed to its final name, and the directory synced,
//! so a crash leaves either no checkpoint or a whole one; a `.tmp` left behind
//! is deleted at the next open. Each page record carries a CRC32C and the whole
//! file ends in its SHA-256, so any damage is found before a byte is trusted.
//!
//! File `<data dir>/checkpoints/ckpt-<LSN, 20 digits>.mmsbckpt`, little-endian:
//!
//! ```text
//! header, 64 bytes
//! 0   8  magic "MMSBCKPT"
//! 8   4  format version (FORMAT_VERSION = 2; 1 is still read)
//! 12  4  reserved, 0
//! 16  8  LSN of the last commit included
//! 24  8  that commit's timestamp, ns
//! 32  8  page count N
//! 40  8  next page id (ids below it are never reused)
//! 48  8  graph node count G (version 1: reserved, 0)
//! 56  8  graph edge count E (version 1: reserved, 0)
//! N page records
//! 0   8  page id
//! 8   8  size S
//! 16  8  epoch
//! 24  1  location
//! 25  1  view dtype (0 = no view)
//! 26  2  reserved, 0
//! 28  4  metadata entry count M
//! 32  8  view length
//! 40  .  M entries: key_len u16, key, value_len u32, value
//! ..  S  page bytes
//! ..  4  CRC32C of the record from its byte 0 to here
//! graph section (version 2 only)
//! 0   8  next order number
//! 8   8  next edge sequence number
//! ..     G nodes: page u64, order number u64 (ascending by order number)
//! ..     E edges: parent u64, child u64, kind u8, weight tag u8
//!        (0 = none, 1 = scalar), [weight f64 if tag 1], sequence number u64
//! ..  4  CRC32C of the graph section from its byte 0 to here
//! trailer
//! 0  32  SHA-256 of every byte before it
//! ```

use crate::dependency_graph::{DependencyGraph, Edge, EdgeKind, EdgeWeight, GraphParts};
use crate::dtype::{DType, NumericView};
use crate::error::{Error, ErrorCode, Result};
use crate::location::PageLocation;
use crate::page::Page;
use crate::page_id::PageId;
use crate::page_store::PageStore;
use crate::tlog_frame::crc32c;
use crate::tlog_segment::{le32, le64};
use crate::tlog_writer::io_err;
use crate::vfs::Vfs;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The checkpoint format version this build writes (2: with the dependency graph).
pub const FORMAT_VERSION: u32 = 2;
/// The oldest checkpoint format version this build reads (1: pages only).
pub const OLDEST_READABLE_VERSION: u32 = 1;

/// Magic bytes opening every checkpoint.
pub const MAGIC: [u8; 8] = *b"MMSBCKPT";
/// Size of the checkpoint header.
pub const HEADER_LEN: usize = 64;
/// Size of the fixed part of a page record.
pub const PAGE_HEADER_LEN: usize = 40;
/// Size of the SHA-256 trailer.
pub const TRAILER_LEN: usize = 32;
/// File name extension of checkpoints.
pub const EXTENSION: &str = "mmsbckpt";

/// What a checkpoint holds, in brief.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// The LSN of the last commit it includes.
    pub lsn: u64,
    /// That commit's timestamp, ns since the Unix epoch.
    pub timestamp_ns: u64,
    /// Pages in it.
    pub pages: u64,
    /// Size of the file in bytes.
    pub file_bytes: u64,
    /// Its path.
    pub path: PathBuf,
}

/// A checkpoint read back and verified.
#[derive(Debug)]
pub struct LoadedCheckpoint {
    /// What it holds.
    pub info: CheckpointInfo,
    /// The state it describes.
    pub state: PageStore,
    /// The dependency graph (empty for a version 1 file).
    pub graph: DependencyGraph,
    /// The file's format version.
    pub version: u32,
}

/// The file name of the checkpoint at `lsn`.
pub fn file_name(lsn: u64) -> String {
    format!("ckpt-{lsn:020}.{EXTENSION}")
}

/// The LSN a file name denotes, if it names a checkpoint.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let s = name
        .strip_prefix("ckpt-")?
        .strip_suffix(&format!(".{EXTENSION}"))?;
    (s.len() == 20 && s.bytes().all(|c| c.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Checkpoints in `dir`, by LSN ascending. A missing directory holds none.
pub fn list(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    if !vfs.exists(dir) {
        return Ok(Vec::new());
    }
    let mut v: Vec<(u64, PathBuf)> = vfs
        .list(dir)
        .map_err(|e| io_err("listing", dir, e))?
        .iter()
        .filter_map(|n| parse_file_name(n).map(|l| (l, dir.join(n))))
        .collect();
    v.sort();
    Ok(v)
}

/// Deletes temporary files a crash left in `dir`.
pub fn remove_temporaries(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
    if !vfs.exists(dir) {
        return Ok(());
    }
    for n in vfs.list(dir).map_err(|e| io_err("listing", dir, e))? {
        if n.ends_with(".tmp") {
            let p = dir.join(&n);
            vfs.remove(&p).map_err(|e| io_err("removing", &p, e))?;
        }
    }
    Ok(())
}

fn encode_page(p: &Page, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    out.extend_from_slice(&p.id().0.to_le_bytes());
    out.extend_from_slice(&p.size().to_le_bytes());
    out.extend_from_slice(&p.epoch().to_le_bytes());
    out.push(p.location() as u8);
    out.push(p.view().map_or(0, |v| v.dtype as u8));
    out.extend_from_slice(&[0, 0]);
    let meta: Vec<(&str, &[u8])> = p.metadata_iter().collect();
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&p.view().map_or(0, |v| v.len).to_le_bytes());
    for (k, v) in meta {
        out.extend_from_slice(&(k.len() as u16).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        let n =
            u32::try_from(v.len()).map_err(|_| Error::invalid("metadata value exceeds 4 GiB"))?;
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(v);
    }
    out.extend_from_slice(p.bytes());
    let crc = crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn encode_graph(parts: &GraphParts, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&parts.next_ord.to_le_bytes());
    out.extend_from_slice(&parts.next_seq.to_le_bytes());
    for (p, ord) in &parts.nodes {
        out.extend_from_slice(&p.0.to_le_bytes());
        out.extend_from_slice(&ord.to_le_bytes());
    }
    for e in &parts.edges {
        out.extend_from_slice(&e.parent.0.to_le_bytes());
        out.extend_from_slice(&e.child.0.to_le_bytes());
        out.push(e.kind.as_u8());
        match &e.weight {
            None => out.push(0),
            Some(EdgeWeight::Scalar(w)) => {
                out.push(1);
                out.extend_from_slice(&w.to_bits().to_le_bytes());
            }
        }
        out.extend_from_slice(&e.seq.to_le_bytes());
    }
    let crc = crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Writes a checkpoint of `pages` (the state after commit `lsn`) and an empty
/// graph into `dir`; see [`write_with_graph`].
pub fn write(
    vfs: &dyn Vfs,
    dir: &Path,
    lsn: u64,
    timestamp_ns: u64,
    next_page_id: PageId,
    pages: &[Page],
) -> Result<CheckpointInfo> {
    write_with_graph(
        vfs,
        dir,
        lsn,
        timestamp_ns,
        next_page_id,
        pages,
        &DependencyGraph::new(),
    )
}

/// Writes a checkpoint of `pages` and `graph` (the state after commit `lsn`)
/// into `dir`, durably: temporary file, sync, rename, directory sync.
pub fn write_with_graph(
    vfs: &dyn Vfs,
    dir: &Path,
    lsn: u64,
    timestamp_ns: u64,
    next_page_id: PageId,
    pages: &[Page],
    graph: &DependencyGraph,
) -> Result<CheckpointInfo> {
    let parts = graph.to_parts();
    vfs.create_dir_all(dir)
        .map_err(|e| io_err("creating", dir, e))?;
    let path = dir.join(file_name(lsn));
    let tmp = dir.join(format!("{}.tmp", file_name(lsn)));
    let file = vfs
        .create(&tmp)
        .map_err(|e| io_err("creating checkpoint", &tmp, e))?;
    let mut hasher = Sha256::new();
    let mut buf = Vec::with_capacity(HEADER_LEN);
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&lsn.to_le_bytes());
    buf.extend_from_slice(&timestamp_ns.to_le_bytes());
    buf.extend_from_slice(&(pages.len() as u64).to_le_bytes());
    buf.extend_from_slice(&next_page_id.0.to_le_bytes());
    buf.extend_from_slice(&(parts.nodes.len() as u64).to_le_bytes());
    buf.extend_from_slice(&(parts.edges.len() as u64).to_le_bytes());
    let mut total = 0u64;
    let mut flush = |buf: &mut Vec<u8>, force: bool| -> Result<()> {
        if force || buf.len() >= 1 << 20 {
            hasher.update(&buf[..]);
            file.append(buf)
                .map_err(|e| io_err("writing checkpoint", &tmp, e))?;
            total += buf.len() as u64;
            buf.clear();
        }
        Ok(())
    };
    for p in pages {
        encode_page(p, &mut buf)?;
        flush(&mut buf, false)?;
    }
    encode_graph(&parts, &mut buf);
    flush(&mut buf, true)?;
    let digest = hasher.finalize();
    file.append(&digest)
        .map_err(|e| io_err("writing checkpoint", &tmp, e))?;
    total += TRAILER_LEN as u64;
    file.sync()
        .map_err(|e| io_err("syncing checkpoint", &tmp, e))?;
    vfs.rename(&tmp, &path)
        .map_err(|e| io_err("renaming checkpoint", &tmp, e))?;
    vfs.sync_dir(dir)
        .map_err(|e| io_err("syncing directory", dir, e))?;
    Ok(CheckpointInfo {
        lsn,
        timestamp_ns,
        pages: pages.len() as u64,
        file_bytes: total,
        path,
    })
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let rem = (self.buf.len() - self.pos) as u64;
        if n > rem {
            return Err(Error::corruption(format!(
                "checkpoint {} truncated at byte {}: {what} needs {n} bytes, {rem} remain",
                self.path.display(),
                self.pos
            )));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    fn bad(&self, at: usize, what: &str) -> Error {
        Error::corruption(format!(
            "checkpoint {} at byte {at}: {what}",
            self.path.display()
        ))
    }
}

/// Reads and verifies the checkpoint at `path` (SHA-256 first, then every page's CRC32C).
///
/// A whole file of a newer format version than this build reads is an
/// [`ErrorCode::Unsupported`] error naming the file and the version.
pub fn load(vfs: &dyn Vfs, path: &Path) -> Result<LoadedCheckpoint> {
    let file = vfs
        .read(path)
        .map_err(|e| io_err("reading checkpoint", path, e))?;
    if file.len() < HEADER_LEN + TRAILER_LEN {
        return Err(Error::corruption(format!(
            "checkpoint {} is {} bytes, shorter than a header and trailer",
            path.display(),
            file.len()
        )));
    }
    let body_len = file.len() - TRAILER_LEN;
    let digest = Sha256::digest(&file[..body_len]);
    if digest[..] != file[body_len..] {
        return Err(Error::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "checkpoint {} fails its SHA-256 (trailer at byte {body_len})",
                path.display()
            ),
        ));
    }
    let mut c = Cursor {
        buf: &file[..body_len],
        pos: 0,
        path,
    };
    let h = c.take(HEADER_LEN as u64, "header")?;
    if h[0..8] != MAGIC {
        return Err(c.bad(0, "bad magic"));
    }
    let version = le32(&h[8..12]);
    if version > FORMAT_VERSION {
        return Err(Error::new(
            ErrorCode::Unsupported,
            format!(
                "checkpoint {} at byte 8: format version {version} is newer than this build \
                 reads ({OLDEST_READABLE_VERSION} to {FORMAT_VERSION}): it was written by a \
                 newer MMSB",
                path.display()
            ),
        ));
    }
    if version < OLDEST_READABLE_VERSION {
        return Err(c.bad(
            8,
            &format!(
                "format version {version}; this build reads {OLDEST_READABLE_VERSION} to {FORMAT_VERSION}"
            ),
        ));
    }
    let (graph_nodes, graph_edges) = if version >= 2 {
        (le64(&h[48..56]), le64(&h[56..64]))
    } else {
        (0, 0)
    };
    let lsn = le64(&h[16..24]);
    let timestamp_ns = le64(&h[24..32]);
    let count = le64(&h[32..40]);
    let next_id = le64(&h[40..48]);
    let mut state = PageStore::new();
    for _ in 0..count {
        let start = c.pos;
        let ph = c.take(PAGE_HEADER_LEN as u64, "page record header")?;
        let id = PageId(le64(&ph[0..8]));
        let size = le64(&ph[8..16]);
        let epoch = le64(&ph[16..24]);
        let location = PageLocation::from_u8(ph[24]).map_err(|e| c.bad(start + 24, &e.message))?;
        let dtype = ph[25];
        let meta_count = le32(&ph[28..32]);
        let view_len = le64(&ph[32..40]);
        let mut meta = Vec::new();
        for _ in 0..meta_count {
            let kl = c.take(2, "metadata key length")?;
            let kl = u16::from_le_bytes([kl[0], kl[1]]);
            let k = c.take(u64::from(kl), "metadata key")?;
            let k =
                std::str::from_utf8(k).map_err(|_| c.bad(c.pos, "metadata key is not UTF-8"))?;
            let vl = le32(c.take(4, "metadata value length")?);
            let v = c.take(u64::from(vl), "metadata value")?;
            meta.push((k, v));
        }
        let bytes = c.take(size, "page bytes")?;
        let crc_at = c.pos;
        let crc = le32(c.take(4, "page checksum")?);
        if crc != crc32c(&file[start..crc_at]) {
            return Err(Error::new(
                ErrorCode::ChecksumMismatch,
                format!(
                    "checkpoint {}: {id} (record at byte {start}) fails its CRC32C",
                    path.display()
                ),
            ));
        }
        let mut page =
            Page::from_parts(id, location, epoch, bytes).map_err(|e| c.bad(start, &e.message))?;
        if dtype != 0 {
            let dt = DType::from_u8(dtype).map_err(|e| c.bad(start + 25, &e.message))?;
            page.set_view(Some(NumericView {
                dtype: dt,
                len: view_len,
            }))
            .map_err(|e| c.bad(start + 32, &e.message))?;
        }
        for (k, v) in meta {
            page.set_metadata(k, v)
                .map_err(|e| c.bad(start, &e.message))?;
        }
        state
            .insert_page(page)
            .map_err(|e| c.bad(start, &e.message))?;
    }
    let graph = if version >= 2 {
        load_graph(&mut c, graph_nodes, graph_edges)?
    } else {
        DependencyGraph::new()
    };
    if c.pos != body_len {
        return Err(c.bad(c.pos, "bytes follow the last record"));
    }
    state.reserve_page_ids_below(PageId(next_id));
    Ok(LoadedCheckpoint {
        info: CheckpointInfo {
            lsn,
            timestamp_ns,
            pages: count,
            file_bytes: file.len() as u64,
            path: path.to_path_buf(),
        },
        state,
        graph,
        version,
    })
}

fn load_graph(c: &mut Cursor<'_>, nodes: u64, edges: u64) -> Result<DependencyGraph> {
    let start = c.pos;
    let h = c.take(16, "graph section header")?;
    let next_ord = le64(&h[0..8]);
    let next_seq = le64(&h[8..16]);
    // Bounded by the file: each node is 16 bytes, each edge at least 26.
    let mut parts = GraphParts {
        nodes: Vec::with_capacity((nodes as usize).min(c.buf.len() / 16)),
        edges: Vec::with_capacity((edges as usize).min(c.buf.len() / 26)),
        next_ord,
        next_seq,
    };
    for _ in 0..nodes {
        let n = c.take(16, "graph node")?;
        parts.nodes.push((PageId(le64(&n[0..8])), le64(&n[8..16])));
    }
    for _ in 0..edges {
        let at = c.pos;
        let e = c.take(18, "graph edge")?;
        let parent = PageId(le64(&e[0..8]));
        let child = PageId(le64(&e[8..16]));
        let kind = EdgeKind::from_u8(e[16]).map_err(|x| c.bad(at + 16, &x.message))?;
        let weight = match e[17] {
            0 => None,
            1 => Some(EdgeWeight::Scalar(f64::from_bits(le64(
                c.take(8, "edge weight")?,
            )))),
            t => return Err(c.bad(at + 17, &format!("unknown edge weight tag {t}"))),
        };
        let seq = le64(c.take(8, "edge sequence number")?);
        parts.edges.push(Edge {
            parent,
            child,
            kind,
            weight,
            seq,
        });
    }
    let crc_at = c.pos;
    let crc = le32(c.take(4, "graph checksum")?);
    if crc != crc32c(&c.buf[start..crc_at]) {
        return Err(Error::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "checkpoint {}: the graph section (at byte {start}) fails its CRC32C",
                c.path.display()
            ),
        ));
    }
    DependencyGraph::from_parts(parts).map_err(|e| c.bad(start, &e.message))
}

/// Keeps the newest `keep` checkpoints in `dir` (at least one) and deletes the rest.
/// Returns the LSN of the oldest kept, if any.
pub fn prune(vfs: &dyn Vfs, dir: &Path, keep: usize) -> Result<Option<u64>> {
    let all = list(vfs, dir)?;
    let keep = keep.max(1);
    let cut = all.len().saturating_sub(keep);
    for (_, p) in &all[..cut] {
        vfs.remove(p)
            .map_err(|e| io_err("removing checkpoint", p, e))?;
    }
    if cut > 0 {
        vfs.sync_dir(dir)
            .map_err(|e| io_err("syncing directory", dir, e))?;
    }
    Ok(all.get(cut).map(|(l, _)| *l))
}
