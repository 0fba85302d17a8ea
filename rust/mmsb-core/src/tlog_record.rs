//! Log records: the changes one commit makes, in the form the log stores.
//!
//! A commit is a list of [`Record`]s: page creations and deletions, metadata
//! and numeric-view changes, deltas (input deltas and the derived deltas of
//! the commit's propagation wave, which carry their provenance in the delta's
//! source and intent), and dependency-graph edits. Everything that changes state is a
//! record, so replaying the records of every commit in LSN order rebuilds the
//! state exactly, with nothing re-run and nothing read from outside the log.
//! The records of one commit travel in one log frame (see
//! [`tlog_frame`](crate::tlog_frame)), which is what makes a commit all or
//! nothing on recovery.
//!
//! [`Record::apply`] is the single place where a record changes a
//! [`PageStore`] and its [`DependencyGraph`]; the live store and replay both
//! use it, so they cannot drift. Recompute functions are code and are never
//! logged: a derived page is restored from its logged derived deltas.
//! It assumes the commit was validated first (see [`commit`](crate::commit)):
//! a validated commit always applies in full.
//!
//! Encoding (little-endian), one after another in the frame payload:
//!
//! ```text
//! kind u8 = 1 CreatePage      page u64, size u64, location u8
//! kind u8 = 2 DeletePage      page u64
//! kind u8 = 3 SetMetadata     page u64, key_len u16, key, value_len u32, value
//! kind u8 = 4 RemoveMetadata  page u64, key_len u16, key
//! kind u8 = 5 SetView         page u64, dtype u8 (0 = no view), len u64
//! kind u8 = 6 Delta           an encoded delta (see delta_codec)
//! kind u8 = 7 AddEdge         parent u64, child u64, edge kind u8,
//!                             weight tag u8 (0 = none, 1 = scalar), [weight f64 if tag 1]
//! kind u8 = 8 RemoveEdge      parent u64, child u64, edge kind u8
//! ```
//!
//! Kinds 7 and 8 are why log segments have format version 2 (see
//! [`tlog_segment::FORMAT_VERSION`](crate::tlog_segment::FORMAT_VERSION)): a
//! version 1 reader does not know them, and now refuses a version 2 segment by
//! its header instead of meeting an unknown record kind in the middle of it.
//! Builds from before that version change wrote kinds 7 and 8 into version 1
//! segments, so a version 1 segment is read with every kind above.

use crate::delta::Delta;
use crate::delta_codec;
use crate::dependency_graph::{DependencyGraph, EdgeKind, EdgeWeight};
use crate::dtype::{DType, NumericView};
use crate::error::{Error, ErrorCode, Result};
use crate::location::PageLocation;
use crate::page::Page;
use crate::page_id::PageId;
use crate::page_store::PageStore;

/// One change a commit makes. See the module docs.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// A new zeroed page with this id.
    CreatePage {
        /// The page's id (assigned by the store at commit).
        id: PageId,
        /// Size in bytes.
        size: u64,
        /// Where the bytes live.
        location: PageLocation,
    },
    /// The page is deleted.
    DeletePage {
        /// The page.
        id: PageId,
    },
    /// User metadata `key -> value` is set on a page.
    SetMetadata {
        /// The page.
        id: PageId,
        /// The key (1 to 256 bytes of UTF-8).
        key: String,
        /// The value.
        value: Vec<u8>,
    },
    /// User metadata under `key` is removed (a no-op if absent).
    RemoveMetadata {
        /// The page.
        id: PageId,
        /// The key.
        key: String,
    },
    /// The page's numeric view is set or cleared.
    SetView {
        /// The page.
        id: PageId,
        /// The new view, or `None` to clear it.
        view: Option<NumericView>,
    },
    /// A delta is applied.
    Delta(Delta),
    /// The dependency edge `parent -> child` is added.
    AddEdge {
        /// The page depended on.
        parent: PageId,
        /// The page that depends on it.
        child: PageId,
        /// The edge's kind.
        kind: EdgeKind,
        /// Its optional weight.
        weight: Option<EdgeWeight>,
    },
    /// The dependency edge `parent -> child` of this kind is removed.
    RemoveEdge {
        /// The page depended on.
        parent: PageId,
        /// The page that depended on it.
        child: PageId,
        /// The edge's kind.
        kind: EdgeKind,
    },
}

const K_CREATE: u8 = 1;
const K_DELETE: u8 = 2;
const K_SET_META: u8 = 3;
const K_REMOVE_META: u8 = 4;
const K_SET_VIEW: u8 = 5;
const K_DELTA: u8 = 6;
const K_ADD_EDGE: u8 = 7;
const K_REMOVE_EDGE: u8 = 8;
const W_NONE: u8 = 0;
const W_SCALAR: u8 = 1;

impl Record {
    /// The page the record touches.
    pub fn page(&self) -> PageId {
        match self {
            Record::CreatePage { id, .. }
            | Record::DeletePage { id }
            | Record::SetMetadata { id, .. }
            | Record::RemoveMetadata { id, .. }
            | Record::SetView { id, .. } => *id,
            Record::Delta(d) => d.page,
            Record::AddEdge { parent, .. } | Record::RemoveEdge { parent, .. } => *parent,
        }
    }

    /// A short name of the kind, for tools.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Record::CreatePage { .. } => "create-page",
            Record::DeletePage { .. } => "delete-page",
            Record::SetMetadata { .. } => "set-metadata",
            Record::RemoveMetadata { .. } => "remove-metadata",
            Record::SetView { .. } => "set-view",
            Record::Delta(_) => "delta",
            Record::AddEdge { .. } => "add-edge",
            Record::RemoveEdge { .. } => "remove-edge",
        }
    }

    /// Applies a validated record to `state` and `graph`. Compare-and-set
    /// epochs were checked at validation and are not checked again. Deleting
    /// a page removes it, and every edge touching it, from the graph.
    pub fn apply(&self, state: &mut PageStore, graph: &mut DependencyGraph) -> Result<()> {
        match self {
            Record::CreatePage { id, size, location } => {
                state.insert_page(Page::new(*id, *size, *location)?)
            }
            Record::DeletePage { id } => {
                state.delete_page(*id)?;
                if graph.contains_node(*id) {
                    graph.remove_node(*id)?;
                }
                Ok(())
            }
            Record::AddEdge {
                parent,
                child,
                kind,
                weight,
            } => graph.add_edge(*parent, *child, *kind, weight.clone()),
            Record::RemoveEdge {
                parent,
                child,
                kind,
            } => graph.remove_edge(*parent, *child, *kind).map(|_| ()),
            Record::SetMetadata { id, key, value } => state.set_metadata(*id, key, value),
            Record::RemoveMetadata { id, key } => match state.remove_metadata(*id, key) {
                Err(e) if e.code == ErrorCode::NotFound && state.contains(*id) => Ok(()),
                r => r,
            },
            Record::SetView { id, view } => state.set_view(*id, *view),
            Record::Delta(d) => state.apply_delta_unconditional(d).map(|_| ()),
        }
    }

    /// The size of the record's encoding, in bytes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Record::CreatePage { .. } => 18,
            Record::DeletePage { .. } => 9,
            Record::SetMetadata { key, value, .. } => 1 + 8 + 2 + key.len() + 4 + value.len(),
            Record::RemoveMetadata { key, .. } => 1 + 8 + 2 + key.len(),
            Record::SetView { .. } => 18,
            Record::Delta(d) => 1 + delta_codec::encoded_len(d),
            Record::AddEdge { weight, .. } => {
                1 + 8 + 8 + 1 + 1 + if weight.is_some() { 8 } else { 0 }
            }
            Record::RemoveEdge { .. } => 1 + 8 + 8 + 1,
        }
    }

    /// Appends the encoding of the record to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        match self {
            Record::CreatePage { id, size, location } => {
                out.push(K_CREATE);
                out.extend_from_slice(&id.0.to_le_bytes());
                out.extend_from_slice(&size.to_le_bytes());
                out.push(*location as u8);
            }
            Record::DeletePage { id } => {
                out.push(K_DELETE);
                out.extend_from_slice(&id.0.to_le_bytes());
            }
            Record::SetMetadata { id, key, value } => {
                out.push(K_SET_META);
                out.extend_from_slice(&id.0.to_le_bytes());
                put_key(out, key)?;
                let n = u32::try_from(value.len())
                    .map_err(|_| Error::invalid("metadata value exceeds 4 GiB"))?;
                out.extend_from_slice(&n.to_le_bytes());
                out.extend_from_slice(value);
            }
            Record::RemoveMetadata { id, key } => {
                out.push(K_REMOVE_META);
                out.extend_from_slice(&id.0.to_le_bytes());
                put_key(out, key)?;
            }
            Record::SetView { id, view } => {
                out.push(K_SET_VIEW);
                out.extend_from_slice(&id.0.to_le_bytes());
                out.push(view.map_or(0, |v| v.dtype as u8));
                out.extend_from_slice(&view.map_or(0, |v| v.len).to_le_bytes());
            }
            Record::Delta(d) => {
                out.push(K_DELTA);
                delta_codec::encode_into(d, out)?;
            }
            Record::AddEdge {
                parent,
                child,
                kind,
                weight,
            } => {
                out.push(K_ADD_EDGE);
                out.extend_from_slice(&parent.0.to_le_bytes());
                out.extend_from_slice(&child.0.to_le_bytes());
                out.push(kind.as_u8());
                match weight {
                    None => out.push(W_NONE),
                    Some(EdgeWeight::Scalar(w)) => {
                        out.push(W_SCALAR);
                        out.extend_from_slice(&w.to_bits().to_le_bytes());
                    }
                }
            }
            Record::RemoveEdge {
                parent,
                child,
                kind,
            } => {
                out.push(K_REMOVE_EDGE);
                out.extend_from_slice(&parent.0.to_le_bytes());
                out.extend_from_slice(&child.0.to_le_bytes());
                out.push(kind.as_u8());
            }
        }
        Ok(())
    }

    /// Decodes one record from the front of `buf`; returns it and the bytes used.
    pub fn decode(buf: &[u8]) -> Result<(Record, usize)> {
        let mut r = Cursor { buf, pos: 0 };
        let kind = r.u8()?;
        let rec = match kind {
            K_CREATE => {
                let id = PageId(r.u64()?);
                let size = r.u64()?;
                let location = PageLocation::from_u8(r.u8()?).map_err(corrupt)?;
                Record::CreatePage { id, size, location }
            }
            K_DELETE => Record::DeletePage {
                id: PageId(r.u64()?),
            },
            K_SET_META => {
                let id = PageId(r.u64()?);
                let key = r.key()?;
                let n = r.u32()? as usize;
                let value = r.take(n)?.to_vec();
                Record::SetMetadata { id, key, value }
            }
            K_REMOVE_META => {
                let id = PageId(r.u64()?);
                let key = r.key()?;
                Record::RemoveMetadata { id, key }
            }
            K_SET_VIEW => {
                let id = PageId(r.u64()?);
                let dt = r.u8()?;
                let len = r.u64()?;
                let view = match dt {
                    0 => None,
                    n => Some(NumericView {
                        dtype: DType::from_u8(n).map_err(corrupt)?,
                        len,
                    }),
                };
                Record::SetView { id, view }
            }
            K_DELTA => {
                let (d, used) = delta_codec::decode(&buf[1..])?;
                r.pos += used;
                Record::Delta(d)
            }
            K_ADD_EDGE => {
                let parent = PageId(r.u64()?);
                let child = PageId(r.u64()?);
                let kind = EdgeKind::from_u8(r.u8()?).map_err(corrupt)?;
                let weight = match r.u8()? {
                    W_NONE => None,
                    W_SCALAR => Some(EdgeWeight::Scalar(f64::from_bits(r.u64()?))),
                    t => return Err(Error::corruption(format!("unknown edge weight tag {t}"))),
                };
                Record::AddEdge {
                    parent,
                    child,
                    kind,
                    weight,
                }
            }
            K_REMOVE_EDGE => {
                let parent = PageId(r.u64()?);
                let child = PageId(r.u64()?);
                let kind = EdgeKind::from_u8(r.u8()?).map_err(corrupt)?;
                Record::RemoveEdge {
                    parent,
                    child,
                    kind,
                }
            }
            k => return Err(Error::corruption(format!("unknown log record kind {k}"))),
        };
        if rec.page().0 == 0 {
            return Err(Error::corruption("log record names page 0"));
        }
        if let Record::AddEdge { child, .. } | Record::RemoveEdge { child, .. } = &rec {
            if child.0 == 0 {
                return Err(Error::corruption("log record names page 0"));
            }
        }
        Ok((rec, r.pos))
    }
}

fn corrupt(e: Error) -> Error {
    Error::corruption(format!("log record: {}", e.message))
}

fn put_key(out: &mut Vec<u8>, key: &str) -> Result<()> {
    let n = u16::try_from(key.len()).map_err(|_| Error::invalid("metadata key too long"))?;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    Ok(())
}

/// Encodes a list of records, one after another.
pub fn encode_all(records: &[Record]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(records.iter().map(Record::encoded_len).sum());
    for r in records {
        r.encode_into(&mut out)?;
    }
    Ok(out)
}

/// Decodes exactly `count` records filling all of `buf`.
pub fn decode_all(buf: &[u8], count: u32) -> Result<Vec<Record>> {
    let mut out = Vec::with_capacity((count as usize).min(buf.len()));
    let mut pos = 0;
    for _ in 0..count {
        let (r, used) = Record::decode(&buf[pos..]).map_err(|e| {
            Error::corruption(format!("record at payload byte {pos}: {}", e.message))
        })?;
        pos += used;
        out.push(r);
    }
    if pos != buf.len() {
        return Err(Error::corruption(format!(
            "{} bytes follow the last of {count} records",
            buf.len() - pos
        )));
    }
    Ok(out)
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self
            .buf
            .get(self.pos..self.pos.saturating_add(n))
            .ok_or_else(|| {
                Error::corruption(format!(
                    "log record truncated at byte {}: needs {n} more bytes",
                    self.pos
                ))
            })?;
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn key(&mut self) -> Result<String> {
        let mut a = [0u8; 2];
        a.copy_from_slice(self.take(2)?);
        let n = u16::from_le_bytes(a) as usize;
        std::str::from_utf8(self.take(n)?)
            .map(str::to_owned)
            .map_err(|_| Error::corruption("metadata key is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record::CreatePage {
                id: PageId(3),
                size: 64,
                location: PageLocation::Cpu,
            },
            Record::SetMetadata {
                id: PageId(3),
                key: "owner".into(),
                value: b"sim".to_vec(),
            },
            Record::SetView {
                id: PageId(3),
                view: Some(NumericView {
                    dtype: DType::F64,
                    len: 8,
                }),
            },
            Record::Delta(Delta::masked(PageId(3), 2, vec![1, 2, 3], vec![0b101])),
            Record::RemoveMetadata {
                id: PageId(3),
                key: "owner".into(),
            },
            Record::SetView {
                id: PageId(3),
                view: None,
            },
            Record::AddEdge {
                parent: PageId(3),
                child: PageId(4),
                kind: EdgeKind::GpuSync,
                weight: Some(EdgeWeight::Scalar(-2.5)),
            },
            Record::AddEdge {
                parent: PageId(4),
                child: PageId(5),
                kind: EdgeKind::Data,
                weight: None,
            },
            Record::RemoveEdge {
                parent: PageId(3),
                child: PageId(4),
                kind: EdgeKind::GpuSync,
            },
            Record::DeletePage { id: PageId(3) },
        ]
    }

    #[test]
    fn records_round_trip() {
        let recs = sample();
        let bytes = encode_all(&recs).unwrap();
        assert_eq!(decode_all(&bytes, recs.len() as u32).unwrap(), recs);
    }

    #[test]
    fn every_truncation_of_records_is_corruption() {
        let recs = sample();
        let bytes = encode_all(&recs).unwrap();
        for cut in 0..bytes.len() {
            let e = decode_all(&bytes[..cut], recs.len() as u32).unwrap_err();
            assert_eq!(e.code, ErrorCode::Corruption);
        }
    }
}
