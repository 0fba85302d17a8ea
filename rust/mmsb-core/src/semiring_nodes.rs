//! Semiring nodes inside durable commits.
//!
//! A page of a durable [`Store`](crate::durable_store::Store) can be declared a
//! *semiring node* ([`NodeDecl`]: a built-in semiring kind, a dtype, a length
//! and an optional input page `b`), and semiring edges with a weight
//! ([`SemiringWeight`]: scalar, diagonal or CSR) link node pages. The store
//! keeps one [`SemiringNetwork`] per (kind, dtype) pair in `SemiringNodes`
//! and holds every node page equal to that network's value:
//!
//! ```text
//! x_v = b_v ⊕ ⊕_{u -> v} (W_uv ⊗ x_u)
//! ```
//!
//! **The commit hook.** Before the propagation engine plans a commit, the
//! store calls `SemiringNodes::plan` on the commit's records. If a delta
//! writes an input page, the hook stages that page's bytes before and after
//! the commit, turns the difference into input changes, runs the incremental
//! wave ([`SemiringNetwork::update`]) on the live network, and appends the
//! node-page deltas it produces ([`SemiringNetwork::deltas`]) to the commit's
//! records, with provenance (`source = "semiring:<input pages>"`, an intent
//! naming the semiring). The engine then plans its own wave on top (node
//! pages may feed ordinary derived pages), and the store logs inputs,
//! semiring deltas and engine-derived deltas in one commit group. If the
//! commit fails after that (the engine's plan, the log), the store calls
//! `SemiringNodes::rollback`: the entries the wave changed are read back from
//! the node pages (which the commit never reached) and the inputs from their
//! saved bytes, so a rejected commit leaves no trace; an undo that cannot
//! complete rebuilds the networks from the pages. A declaration changes a
//! network's structure, so it works on a copy (edge weights are shared with
//! the copy behind `Arc`s) that replaces the live network once the commit is
//! applied (`SemiringNodes::install`).
//!
//! **Changing edges.** `Store::set_semiring_edge_weight` replaces an edge's
//! weight and `Store::remove_semiring_edge` removes it; like a declaration,
//! each is a commit of its own that works on a copy of the network, rewrites
//! (or removes) the edge's metadata, runs a full wave and writes the node
//! pages whose bytes differ.
//!
//! **Declarations are page metadata.** A node declaration is the metadata
//! value under [`NODE_KEY`] on the node page; an edge is the metadata value
//! under `mmsb.semiring.edge.<parent id>` on the child page (layouts in
//! `docs/format.md`). They are logged as ordinary `SetMetadata` records in the
//! declaring commit, and checkpoints keep metadata, so recovery restores them
//! with the pages; `SemiringNodes::rebuild` then rebuilds the networks from
//! the declarations, the input pages and the node pages' bytes (the values are
//! *loaded*, not recomputed), so node pages are byte-exact after recovery
//! without running any wave and later updates continue from them.
//!
//! **Rules.** A commit may not write a node page (write its input page), set
//! or remove metadata under `mmsb.semiring.`, or delete a node or input page;
//! these fail with `InvalidArgument` and change nothing. A declaration runs a
//! full wave of its network and writes every node page whose bytes differ
//! (declarations are rare; an input write costs only what its change moves).
//! Inputs must be written by commits, not by recompute functions: the
//! semiring wave runs before the engine's wave.

use crate::delta::Delta;
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::id_hash::IdHashMap as HashMap;
use crate::page_id::PageId;
use crate::page_store::PageStore;
use crate::semiring::{Semiring, SemiringKind};
use crate::semiring_matrix::{Csr, Weight};
use crate::semiring_network::SemiringNetwork;
use crate::semiring_wave::Change;
use crate::tlog_record::Record;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

/// Metadata key of a node declaration (on the node page).
pub const NODE_KEY: &str = "mmsb.semiring.node";
/// Metadata key prefix of a semiring edge (on the child page), followed by the
/// parent's page id in decimal.
pub const EDGE_KEY_PREFIX: &str = "mmsb.semiring.edge.";
/// Metadata keys under this prefix are the store's; commits may not set them.
pub const RESERVED_PREFIX: &str = "mmsb.semiring.";

const DECL_VERSION: u8 = 1;

/// A semiring node: which built-in, over which dtype, how many entries, and
/// the optional input page `b` (same dtype and length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeDecl {
    /// The semiring.
    pub kind: SemiringKind,
    /// The element type ([`DType::Bool`] for or-and reads as `u8`).
    pub dtype: DType,
    /// Entries; the node page (and the input page) must hold at least
    /// `len × dtype.size()` bytes (the value is the first ones).
    pub len: u64,
    /// The input page `b_v`, if any.
    pub input: Option<PageId>,
}

impl NodeDecl {
    /// The metadata value: version u8, kind u8, dtype u8, len u64, input u64
    /// (0 = none), little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(19);
        out.push(DECL_VERSION);
        out.push(self.kind as u8);
        out.push(self.dtype as u8);
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.input.map_or(0, PageId::get).to_le_bytes());
        out
    }

    /// Decodes [`NodeDecl::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<NodeDecl> {
        let mut r = Reader::new(bytes);
        let v = r.u8()?;
        if v != DECL_VERSION {
            return Err(Error::corruption(format!(
                "semiring node declaration version {v}"
            )));
        }
        let kind = SemiringKind::from_u8(r.u8()?)?;
        let dtype = DType::from_u8(r.u8()?)?;
        let len = r.u64()?;
        let input = r.u64()?;
        r.end()?;
        Ok(NodeDecl {
            kind,
            dtype,
            len,
            input: (input != 0).then_some(PageId(input)),
        })
    }

    fn key(&self) -> (u8, u8) {
        (self.kind as u8, self.dtype as u8)
    }

    fn bytes_len(&self) -> Result<usize> {
        self.len
            .checked_mul(self.dtype.size())
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| Error::invalid("a semiring node of that length does not fit"))
    }
}

/// A semiring edge weight over the nodes' dtype, elements little-endian.
#[derive(Clone, Debug, PartialEq)]
pub enum SemiringWeight {
    /// `w ⊗ x[i]`: one element.
    Scalar(Vec<u8>),
    /// `d[i] ⊗ x[i]`: one element per entry.
    Diagonal(Vec<u8>),
    /// `⊕_j A[i,j] ⊗ x[j]`: an `nrows × ncols` CSR matrix (`nrows` = the
    /// child's length, `ncols` = the parent's).
    Csr {
        /// Rows (child entries).
        nrows: u64,
        /// Columns (parent entries).
        ncols: u64,
        /// `nrows + 1` offsets into `indices`.
        indptr: Vec<u64>,
        /// Column of each stored entry, strictly increasing within a row.
        indices: Vec<u32>,
        /// Stored values, one element each.
        values: Vec<u8>,
    },
}

impl SemiringWeight {
    /// A scalar weight.
    pub fn scalar<E: Element>(w: E) -> SemiringWeight {
        SemiringWeight::Scalar(crate::dtype::encode(&[w]))
    }

    /// A diagonal weight.
    pub fn diagonal<E: Element>(d: &[E]) -> SemiringWeight {
        SemiringWeight::Diagonal(crate::dtype::encode(d))
    }

    /// A CSR weight.
    pub fn csr<E: Element>(a: &Csr<E>) -> SemiringWeight {
        SemiringWeight::Csr {
            nrows: a.nrows() as u64,
            ncols: a.ncols() as u64,
            indptr: a.indptr().iter().map(|&p| p as u64).collect(),
            indices: a.indices().to_vec(),
            values: crate::dtype::encode(a.values()),
        }
    }

    /// The typed weight.
    pub fn to_weight<E: Element>(&self) -> Result<Weight<E>> {
        Ok(match self {
            SemiringWeight::Scalar(b) => {
                let v = crate::dtype::decode::<E>(b)?;
                match v.as_slice() {
                    [w] => Weight::Scalar(*w),
                    _ => return Err(Error::invalid("a scalar weight is one element")),
                }
            }
            SemiringWeight::Diagonal(b) => Weight::Diagonal(crate::dtype::decode::<E>(b)?),
            SemiringWeight::Csr {
                nrows,
                ncols,
                indptr,
                indices,
                values,
            } => {
                let size = |n: u64| {
                    usize::try_from(n).map_err(|_| Error::invalid("a CSR size does not fit"))
                };
                let indptr = indptr
                    .iter()
                    .map(|&p| size(p))
                    .collect::<Result<Vec<_>>>()?;
                Weight::Matrix(Csr::from_parts(
                    size(*nrows)?,
                    size(*ncols)?,
                    indptr,
                    indices.clone(),
                    crate::dtype::decode::<E>(values)?,
                )?)
            }
        })
    }

    /// The edge metadata value: version u8, seq u64, tag u8 (1 scalar, 2
    /// diagonal, 3 CSR), then the weight (see `docs/format.md`).
    fn encode(&self, seq: u64) -> Vec<u8> {
        let mut out = vec![DECL_VERSION];
        out.extend_from_slice(&seq.to_le_bytes());
        match self {
            SemiringWeight::Scalar(b) => {
                out.push(1);
                out.extend_from_slice(b);
            }
            SemiringWeight::Diagonal(b) => {
                out.push(2);
                out.extend_from_slice(&(b.len() as u64).to_le_bytes());
                out.extend_from_slice(b);
            }
            SemiringWeight::Csr {
                nrows,
                ncols,
                indptr,
                indices,
                values,
            } => {
                out.push(3);
                for n in [*nrows, *ncols, indices.len() as u64, values.len() as u64] {
                    out.extend_from_slice(&n.to_le_bytes());
                }
                for p in indptr {
                    out.extend_from_slice(&p.to_le_bytes());
                }
                for i in indices {
                    out.extend_from_slice(&i.to_le_bytes());
                }
                out.extend_from_slice(values);
            }
        }
        out
    }

    /// Decodes [`SemiringWeight::encode`]'s bytes: (seq, weight).
    fn decode(bytes: &[u8]) -> Result<(u64, SemiringWeight)> {
        let mut r = Reader::new(bytes);
        let v = r.u8()?;
        if v != DECL_VERSION {
            return Err(Error::corruption(format!("semiring edge version {v}")));
        }
        let seq = r.u64()?;
        let w = match r.u8()? {
            1 => SemiringWeight::Scalar(r.rest().to_vec()),
            2 => {
                let n = r.len()?;
                let w = SemiringWeight::Diagonal(r.take(n)?.to_vec());
                r.end()?;
                w
            }
            3 => {
                let nrows = r.u64()?;
                let ncols = r.u64()?;
                let nnz = r.len()?;
                let nval = r.len()?;
                let rows = usize::try_from(nrows)
                    .map_err(|_| Error::corruption("semiring edge rows overflow"))?;
                let mut indptr = Vec::with_capacity(rows.min(r.remaining() / 8) + 1);
                for _ in 0..=rows {
                    indptr.push(r.u64()?);
                }
                let mut indices = Vec::with_capacity(nnz.min(r.remaining() / 4));
                for _ in 0..nnz {
                    let b = r.take(4)?;
                    indices.push(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                }
                let values = r.take(nval)?.to_vec();
                r.end()?;
                SemiringWeight::Csr {
                    nrows,
                    ncols,
                    indptr,
                    indices,
                    values,
                }
            }
            t => return Err(Error::corruption(format!("semiring edge weight tag {t}"))),
        };
        Ok((seq, w))
    }
}

/// A little-endian cursor over metadata bytes; running short is corruption.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Reader<'a> {
        Reader { b }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(Error::corruption("semiring declaration is truncated"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn len(&mut self) -> Result<usize> {
        usize::try_from(self.u64()?).map_err(|_| Error::corruption("semiring length overflow"))
    }
    fn remaining(&self) -> usize {
        self.b.len()
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.b)
    }
    fn end(&self) -> Result<()> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(Error::corruption("semiring declaration has trailing bytes"))
        }
    }
}

/// The deltas of an input wave, and the changed entries per node.
type WaveDeltas = (Vec<Delta>, Vec<(PageId, Vec<usize>)>);

/// `(node, first byte, input bytes before, input bytes after)`: a window of
/// the input, starting at an element boundary.
type InputChange<'a> = (PageId, usize, &'a [u8], &'a [u8]);

/// A network with its semiring type erased, over page bytes.
trait DynNet: Send + Sync + Debug {
    fn clone_box(&self) -> Box<dyn DynNet>;
    fn add_node(&mut self, page: PageId, len: usize, input: Option<&[u8]>) -> Result<()>;
    fn add_edge(&mut self, parent: PageId, child: PageId, w: &SemiringWeight) -> Result<()>;
    /// Removes the edge `parent -> child` (`NotFound` if there is none).
    fn remove_edge(&mut self, parent: PageId, child: PageId) -> Result<()>;
    /// Loads a node's value from its page bytes (recovery) and marks the
    /// network fresh once all are loaded (`fresh`).
    fn load_value(&mut self, page: PageId, bytes: &[u8], fresh: bool) -> Result<()>;
    /// Runs the incremental wave for `(node, old input bytes, new input bytes)`:
    /// the node-page deltas, and the entries whose value changed per node.
    fn update_inputs(&mut self, changes: &[InputChange<'_>]) -> Result<WaveDeltas>;
    /// Sets `entries` of `page`'s value back from its page bytes (undo).
    fn restore_value(&mut self, page: PageId, entries: &[usize], bytes: &[u8]) -> Result<()>;
    /// Sets `page`'s input from byte `start` back to `bytes` (undo).
    fn restore_input(&mut self, page: PageId, start: usize, bytes: &[u8]) -> Result<()>;
    fn run_full(&mut self) -> Result<()>;
    fn value_bytes(&self, page: PageId) -> Result<Vec<u8>>;
    fn node_ids(&self) -> Vec<PageId>;
}

impl Clone for Box<dyn DynNet> {
    fn clone(&self) -> Box<dyn DynNet> {
        self.clone_box()
    }
}

#[derive(Clone, Debug)]
struct Net<S: Semiring>(SemiringNetwork<S>);

impl<S> DynNet for Net<S>
where
    S: Semiring + Clone + Debug + Send + Sync + 'static,
    S::Elem: Element,
{
    fn clone_box(&self) -> Box<dyn DynNet> {
        Box::new(self.clone())
    }
    fn add_node(&mut self, page: PageId, len: usize, input: Option<&[u8]>) -> Result<()> {
        let input = input.map(crate::dtype::decode::<S::Elem>).transpose()?;
        self.0.add_node(page, len, input)
    }
    fn add_edge(&mut self, parent: PageId, child: PageId, w: &SemiringWeight) -> Result<()> {
        self.0.add_edge(parent, child, w.to_weight::<S::Elem>()?)
    }
    fn remove_edge(&mut self, parent: PageId, child: PageId) -> Result<()> {
        self.0.remove_edge(parent, child).map(|_| ())
    }
    fn load_value(&mut self, page: PageId, bytes: &[u8], fresh: bool) -> Result<()> {
        let v = crate::dtype::decode::<S::Elem>(bytes)?;
        let node = self
            .0
            .nodes
            .get_mut(&page)
            .ok_or_else(|| Error::not_found(format!("{page} is not a semiring node")))?;
        if v.len() != node.len {
            return Err(Error::corruption(format!(
                "semiring node {page} holds {} entries, not {}",
                v.len(),
                node.len
            )));
        }
        node.value = v;
        if fresh {
            self.0.fresh = true;
        }
        Ok(())
    }
    fn update_inputs(&mut self, changes: &[InputChange<'_>]) -> Result<WaveDeltas> {
        let size = std::mem::size_of::<S::Elem>();
        let mut all = Vec::new();
        for &(node, start, old, new) in changes {
            let first = start / size;
            all.extend(
                old.chunks_exact(size)
                    .zip(new.chunks_exact(size))
                    .enumerate()
                    .filter(|(_, (a, b))| a != b)
                    .map(|(k, (_, b))| Change::Input {
                        page: node,
                        index: first + k,
                        value: <S::Elem as Element>::read_le(b),
                    }),
            );
        }
        if all.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let report = self.0.update(&all)?;
        let deltas = self.0.deltas(&report)?;
        Ok((deltas, report.changed.into_iter().collect()))
    }
    fn restore_value(&mut self, page: PageId, entries: &[usize], bytes: &[u8]) -> Result<()> {
        let size = std::mem::size_of::<S::Elem>();
        let node = self
            .0
            .nodes
            .get_mut(&page)
            .ok_or_else(|| Error::not_found(format!("{page} is not a semiring node")))?;
        for &i in entries {
            let (Some(b), Some(v)) = (bytes.get(i * size..(i + 1) * size), node.value.get_mut(i))
            else {
                return Err(Error::invalid(format!("entry {i} is outside {page}")));
            };
            *v = <S::Elem as Element>::read_le(b);
        }
        Ok(())
    }
    fn restore_input(&mut self, page: PageId, start: usize, bytes: &[u8]) -> Result<()> {
        let v = crate::dtype::decode::<S::Elem>(bytes)?;
        let first = start / std::mem::size_of::<S::Elem>();
        let input = self
            .0
            .nodes
            .get_mut(&page)
            .and_then(|n| n.input.as_mut())
            .ok_or_else(|| Error::not_found(format!("{page} is not a node with an input")))?;
        let dst = input
            .get_mut(first..first + v.len())
            .ok_or_else(|| Error::invalid(format!("an input window of {page} is out of range")))?;
        dst.copy_from_slice(&v);
        Ok(())
    }
    fn run_full(&mut self) -> Result<()> {
        self.0.run_full().map(|_| ())
    }
    fn value_bytes(&self, page: PageId) -> Result<Vec<u8>> {
        Ok(crate::dtype::encode(self.0.value(page)?))
    }
    fn node_ids(&self) -> Vec<PageId> {
        self.0.nodes.keys().copied().collect()
    }
}

fn new_net(kind: SemiringKind, dtype: DType) -> Result<Box<dyn DynNet>> {
    crate::with_semiring!(kind, dtype, |S| Ok::<Box<dyn DynNet>, Error>(Box::new(
        Net(SemiringNetwork::new(S::default()))
    )))
}

/// A declaration made by its own commit.
#[derive(Clone, Debug)]
pub(crate) enum Declaration {
    /// Declare `page` a node.
    Node(PageId, NodeDecl),
    /// Add the edge `parent -> child`.
    Edge(PageId, PageId, SemiringWeight),
    /// Replace the weight of the existing edge `parent -> child`.
    SetWeight(PageId, PageId, SemiringWeight),
    /// Remove the edge `parent -> child`.
    RemoveEdge(PageId, PageId),
}

/// What a planned commit will change in [`SemiringNodes`]; installed with
/// [`SemiringNodes::install`] once the commit is applied.
#[derive(Debug)]
pub(crate) struct Pending {
    /// Copies to install (declarations change a network's structure).
    nets: Vec<((u8, u8), Box<dyn DynNet>)>,
    /// Live networks an input wave updated in place, with what to restore
    /// if the commit fails: the changed value entries per node (their old
    /// values are still in the node pages) and the old input bytes per node.
    undo: Vec<Undo>,
    node: Option<(PageId, NodeDecl)>,
    next_seq: u64,
}

/// How to take back one network's input wave (see [`Pending`]).
#[derive(Debug)]
struct Undo {
    key: (u8, u8),
    values: Vec<(PageId, Vec<usize>)>,
    inputs: Vec<(PageId, usize, Vec<u8>)>,
}

/// Every semiring network of a store, and which pages are nodes and inputs.
/// See the module docs.
#[derive(Clone, Debug, Default)]
pub(crate) struct SemiringNodes {
    nets: BTreeMap<(u8, u8), Box<dyn DynNet>>,
    decls: HashMap<PageId, NodeDecl>,
    /// Input page -> the nodes it feeds.
    inputs: HashMap<PageId, Vec<PageId>>,
    next_seq: u64,
}

impl SemiringNodes {
    /// The declaration of `page`, if it is a node.
    pub(crate) fn decl(&self, page: PageId) -> Option<NodeDecl> {
        self.decls.get(&page).copied()
    }

    /// Checks `records` against the rules, runs the waves their input writes
    /// (and `decl`) cause on copies of the networks, and appends the node-page
    /// deltas (and the declaration's metadata) to `records`. `None`: the
    /// commit does not concern a semiring network.
    pub(crate) fn plan(
        &mut self,
        store: &PageStore,
        records: &mut Vec<Record>,
        decl: Option<&Declaration>,
    ) -> Result<Option<Pending>> {
        let mut touched: BTreeSet<PageId> = BTreeSet::new();
        for r in records.iter() {
            match r {
                Record::Delta(d) => {
                    if self.decls.contains_key(&d.page) {
                        return Err(Error::invalid(format!(
                            "{} is a semiring node: write its input page instead",
                            d.page
                        )));
                    }
                    if self.inputs.contains_key(&d.page) {
                        touched.insert(d.page);
                    }
                }
                Record::SetMetadata { key, id, .. } | Record::RemoveMetadata { key, id }
                    if key.starts_with(RESERVED_PREFIX) =>
                {
                    return Err(Error::invalid(format!(
                        "metadata {key:?} of {id} belongs to the semiring layer"
                    )));
                }
                Record::DeletePage { id }
                    if self.decls.contains_key(id) || self.inputs.contains_key(id) =>
                {
                    return Err(Error::invalid(format!(
                        "{id} is a semiring node or input page and cannot be deleted"
                    )));
                }
                _ => {}
            }
        }
        if touched.is_empty() && decl.is_none() {
            return Ok(None);
        }
        let mut pending = Pending {
            nets: Vec::new(),
            undo: Vec::new(),
            node: None,
            next_seq: self.next_seq,
        };
        let mut extra: Vec<Record> = Vec::new();
        // Input writes: stage the window of each touched input page that the
        // commit's deltas cover (widened to 8-byte boundaries, which are
        // element boundaries for every dtype), before and after.
        let mut staged: BTreeMap<PageId, (usize, &[u8], Vec<u8>)> = BTreeMap::new();
        for &p in &touched {
            let page = store.page(p)?.bytes();
            let deltas = records.iter().filter_map(|r| match r {
                Record::Delta(d) if d.page == p => Some(d),
                _ => None,
            });
            let (mut lo, mut hi) = (usize::MAX, 0usize);
            for d in deltas.clone() {
                lo = lo.min(d.offset as usize);
                hi = hi.max((d.offset + d.len) as usize);
            }
            let lo = lo / 8 * 8;
            let hi = hi.div_ceil(8).saturating_mul(8).min(page.len());
            let old = page
                .get(lo..hi)
                .ok_or_else(|| Error::invalid("a delta is outside its page"))?;
            let mut new = old.to_vec();
            for d in deltas {
                let at = d.offset as usize - lo;
                let dst = new
                    .get_mut(at..at + d.len as usize)
                    .ok_or_else(|| Error::invalid("a delta is outside its page"))?;
                crate::apply::apply(dst, d)?;
            }
            staged.insert(p, (lo, old, new));
        }
        let mut by_net: BTreeMap<(u8, u8), Vec<InputChange<'_>>> = BTreeMap::new();
        let mut causes: BTreeMap<(u8, u8), Vec<PageId>> = BTreeMap::new();
        for (&p, (lo, old, new)) in &staged {
            for &node in self.inputs.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
                let Some(d) = self.decls.get(&node) else {
                    continue;
                };
                let n = d.bytes_len()?;
                if *lo >= n {
                    continue; // the commit wrote past this node's input
                }
                let end = old.len().min(n - lo);
                by_net
                    .entry(d.key())
                    .or_default()
                    .push((node, *lo, &old[..end], &new[..end]));
                causes.entry(d.key()).or_default().push(p);
            }
        }
        // Input waves run on the live networks (a copy would cost the node
        // vectors per commit); `undo` takes them back if the commit fails.
        for (key, changes) in by_net {
            let inputs = changes
                .iter()
                .map(|&(n, at, o, _)| (n, at, o.to_vec()))
                .collect();
            let result = match self.nets.get_mut(&key) {
                Some(net) => net.update_inputs(&changes),
                None => Err(Error::new(
                    crate::error::ErrorCode::Internal,
                    "an input page feeds a network that does not exist",
                )),
            };
            let (deltas, values) = match result {
                Ok(r) => r,
                Err(e) => {
                    // A wave that failed midway may have moved some values:
                    // rebuild from the pages (still as before this commit).
                    self.rollback(pending, store);
                    if let Ok(fresh) = SemiringNodes::rebuild(store) {
                        *self = fresh;
                    }
                    return Err(e);
                }
            };
            pending.undo.push(Undo {
                key,
                values,
                inputs,
            });
            let cause = causes.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            for d in deltas {
                match provenance(d, key, cause) {
                    Ok(d) => extra.push(Record::Delta(d)),
                    Err(e) => {
                        self.rollback(pending, store);
                        return Err(e);
                    }
                }
            }
        }
        if let Some(decl) = decl {
            if let Err(e) = self.declare(store, decl, &mut pending, &mut extra) {
                self.rollback(pending, store);
                return Err(e);
            }
        }
        records.extend(extra);
        Ok(Some(pending))
    }

    fn net_copy(&self, key: (u8, u8)) -> Result<Box<dyn DynNet>> {
        match self.nets.get(&key) {
            Some(n) => Ok(n.clone()),
            None => new_net(SemiringKind::from_u8(key.0)?, DType::from_u8(key.1)?),
        }
    }

    /// Applies a declaration to (a copy of) its network, runs a full wave, and
    /// writes the metadata and every node page whose bytes differ.
    fn declare(
        &self,
        store: &PageStore,
        decl: &Declaration,
        pending: &mut Pending,
        extra: &mut Vec<Record>,
    ) -> Result<()> {
        let (key, target, meta_key, meta) = match decl {
            Declaration::SetWeight(parent, child, _) | Declaration::RemoveEdge(parent, child) => {
                let key = self.existing_edge(store, *parent, *child)?;
                let mut net = take_or_copy(self, pending, key)?;
                net.remove_edge(*parent, *child)?;
                let meta_key = format!("{EDGE_KEY_PREFIX}{}", parent.get());
                let meta = match decl {
                    Declaration::SetWeight(_, _, w) => {
                        // A failing weight (wrong shape, wrong dtype) drops
                        // the copy: the live network keeps the old edge.
                        net.add_edge(*parent, *child, w)?;
                        let seq = pending.next_seq;
                        pending.next_seq += 1;
                        Some(w.encode(seq))
                    }
                    _ => None,
                };
                pending.nets.push((key, net));
                (key, *child, meta_key, meta)
            }
            Declaration::Node(page, d) => {
                if self.decls.contains_key(page) {
                    return Err(Error::invalid(format!("{page} is already a semiring node")));
                }
                if !d.kind.supports(d.dtype) {
                    return Err(crate::semiring::unsupported(d.kind, d.dtype));
                }
                let n = d.bytes_len()?;
                let size = store.page(*page)?.size();
                if size < n as u64 {
                    return Err(Error::invalid(format!(
                        "{page} has {size} bytes; a node of {} {} needs {n}",
                        d.len,
                        d.dtype.name()
                    )));
                }
                if d.input == Some(*page) {
                    return Err(Error::invalid("a node cannot be its own input page"));
                }
                let input = match d.input {
                    Some(b) => {
                        if self.decls.contains_key(&b) {
                            return Err(Error::invalid(format!(
                                "{b} is a semiring node and cannot be an input page"
                            )));
                        }
                        let bytes = store.read(b)?;
                        let v = bytes.get(..n).ok_or_else(|| {
                            Error::invalid(format!("input page {b} is smaller than {n} bytes"))
                        })?;
                        Some(v.to_vec())
                    }
                    None => None,
                };
                if self.inputs.contains_key(page) {
                    return Err(Error::invalid(format!(
                        "{page} is an input page and cannot be a node"
                    )));
                }
                let mut net = take_or_copy(self, pending, d.key())?;
                net.add_node(*page, d.len as usize, input.as_deref())?;
                pending.nets.push((d.key(), net));
                pending.node = Some((*page, *d));
                (d.key(), *page, NODE_KEY.to_string(), Some(d.encode()))
            }
            Declaration::Edge(parent, child, w) => {
                let (Some(dp), Some(dc)) = (self.decls.get(parent), self.decls.get(child)) else {
                    return Err(Error::not_found(format!(
                        "both ends of {parent} -> {child} must be semiring nodes"
                    )));
                };
                if dp.key() != dc.key() {
                    return Err(Error::invalid(format!(
                        "{parent} ({} over {}) and {child} ({} over {}) are in different semirings",
                        dp.kind.name(),
                        dp.dtype.name(),
                        dc.kind.name(),
                        dc.dtype.name()
                    )));
                }
                let mut net = take_or_copy(self, pending, dc.key())?;
                net.add_edge(*parent, *child, w)?;
                pending.nets.push((dc.key(), net));
                let seq = pending.next_seq;
                pending.next_seq += 1;
                (
                    dc.key(),
                    *child,
                    format!("{EDGE_KEY_PREFIX}{}", parent.get()),
                    Some(w.encode(seq)),
                )
            }
        };
        extra.push(match meta {
            Some(value) => Record::SetMetadata {
                id: target,
                key: meta_key,
                value,
            },
            None => Record::RemoveMetadata {
                id: target,
                key: meta_key,
            },
        });
        let Some((_, net)) = pending.nets.iter_mut().rev().find(|(k, _)| *k == key) else {
            return Err(Error::new(
                crate::error::ErrorCode::Internal,
                "a declared network went missing",
            ));
        };
        net.run_full()?;
        for page in net.node_ids() {
            let want = net.value_bytes(page)?;
            // Pages written earlier in this commit (an input wave) already
            // moved in the copy; compare with the staged bytes.
            let mut have = store.read(page)?;
            for r in extra.iter() {
                if let Record::Delta(d) = r {
                    if d.page == page {
                        let range = d.offset as usize..(d.offset + d.len) as usize;
                        if let Some(dst) = have.get_mut(range) {
                            crate::apply::apply(dst, d)?;
                        }
                    }
                }
            }
            let have = &have[..want.len().min(have.len())];
            let Some(first) = have.iter().zip(&want).position(|(a, b)| a != b) else {
                continue;
            };
            let last = have
                .iter()
                .zip(&want)
                .rposition(|(a, b)| a != b)
                .unwrap_or(first);
            let d = Delta::dense(page, first as u64, want[first..=last].to_vec());
            extra.push(Record::Delta(provenance(d, key, &[target])?));
        }
        Ok(())
    }

    /// The network key of the semiring edge `parent -> child`, which must
    /// exist (its declaration is the metadata on the child page).
    fn existing_edge(&self, store: &PageStore, parent: PageId, child: PageId) -> Result<(u8, u8)> {
        let missing = || Error::not_found(format!("no semiring edge {parent} -> {child}"));
        let d = self.decls.get(&child).ok_or_else(missing)?;
        let key = format!("{EDGE_KEY_PREFIX}{}", parent.get());
        let page = store.page(child)?;
        if page.metadata_iter().any(|(k, _)| k == key) {
            Ok(d.key())
        } else {
            Err(missing())
        }
    }

    /// Takes back a planned commit that failed: input waves are undone on
    /// the live networks (values from the node pages, which the commit did
    /// not reach; inputs from the saved bytes); copies are dropped. If an undo
    /// step fails, everything is rebuilt from the pages.
    pub(crate) fn rollback(&mut self, p: Pending, store: &PageStore) {
        let undo = |nodes: &mut SemiringNodes| -> Result<()> {
            for u in &p.undo {
                let net = nodes.nets.get_mut(&u.key).ok_or_else(|| {
                    Error::new(
                        crate::error::ErrorCode::Internal,
                        "an undone network is gone",
                    )
                })?;
                for (page, entries) in &u.values {
                    net.restore_value(*page, entries, store.page(*page)?.bytes())?;
                }
                for (page, start, bytes) in &u.inputs {
                    net.restore_input(*page, *start, bytes)?;
                }
            }
            Ok(())
        };
        if undo(self).is_err() {
            if let Ok(fresh) = SemiringNodes::rebuild(store) {
                *self = fresh;
            }
        }
    }

    /// Makes a planned commit's changes live (after it was logged and applied).
    pub(crate) fn install(&mut self, p: Pending) {
        for (key, net) in p.nets {
            self.nets.insert(key, net);
        }
        if let Some((page, d)) = p.node {
            if let Some(b) = d.input {
                self.inputs.entry(b).or_default().push(page);
            }
            self.decls.insert(page, d);
        }
        self.next_seq = p.next_seq;
    }

    /// Rebuilds every network from the declarations in the pages' metadata,
    /// the input pages and the node pages' bytes (loaded, not recomputed).
    pub(crate) fn rebuild(store: &PageStore) -> Result<SemiringNodes> {
        let mut out = SemiringNodes::default();
        let mut edges: Vec<(u64, PageId, PageId, SemiringWeight)> = Vec::new();
        for id in store.page_ids() {
            let page = store.page(id)?;
            for (key, value) in page.metadata_iter() {
                if key == NODE_KEY {
                    out.decls.insert(id, NodeDecl::decode(value)?);
                } else if let Some(parent) = key.strip_prefix(EDGE_KEY_PREFIX) {
                    let parent = parent
                        .parse::<u64>()
                        .map_err(|_| Error::corruption(format!("bad semiring edge key {key:?}")))?;
                    let (seq, w) = SemiringWeight::decode(value)?;
                    edges.push((seq, PageId(parent), id, w));
                }
            }
        }
        let mut nodes: Vec<(PageId, NodeDecl)> = out.decls.iter().map(|(&p, &d)| (p, d)).collect();
        nodes.sort_by_key(|&(p, _)| p);
        for &(page, d) in &nodes {
            let n = d.bytes_len()?;
            let input = match d.input {
                Some(b) => {
                    out.inputs.entry(b).or_default().push(page);
                    let bytes = store.read(b)?;
                    Some(
                        bytes
                            .get(..n)
                            .ok_or_else(|| Error::corruption(format!("input page {b} too small")))?
                            .to_vec(),
                    )
                }
                None => None,
            };
            let key = d.key();
            if let std::collections::btree_map::Entry::Vacant(e) = out.nets.entry(key) {
                e.insert(new_net(d.kind, d.dtype)?);
            }
            if let Some(net) = out.nets.get_mut(&key) {
                net.add_node(page, d.len as usize, input.as_deref())?;
            }
        }
        edges.sort_by_key(|e| e.0);
        for (seq, parent, child, w) in &edges {
            let d = out
                .decls
                .get(child)
                .ok_or_else(|| Error::corruption(format!("semiring edge into non-node {child}")))?;
            if let Some(net) = out.nets.get_mut(&d.key()) {
                net.add_edge(*parent, *child, w)?;
            }
            out.next_seq = out.next_seq.max(seq + 1);
        }
        for &(page, d) in &nodes {
            let n = d.bytes_len()?;
            let bytes = store.read(page)?;
            let v = bytes
                .get(..n)
                .ok_or_else(|| Error::corruption(format!("semiring node {page} too small")))?;
            if let Some(net) = out.nets.get_mut(&d.key()) {
                net.load_value(page, v, true)?;
            }
        }
        Ok(out)
    }
}

fn take_or_copy(
    nodes: &SemiringNodes,
    pending: &mut Pending,
    key: (u8, u8),
) -> Result<Box<dyn DynNet>> {
    if let Some(i) = pending.nets.iter().position(|(k, _)| *k == key) {
        return Ok(pending.nets.swap_remove(i).1);
    }
    nodes.net_copy(key)
}

/// Marks a semiring-derived delta with its provenance.
fn provenance(d: Delta, key: (u8, u8), causes: &[PageId]) -> Result<Delta> {
    use std::fmt::Write as _;
    let mut source = String::from("semiring:");
    let mut list = String::new();
    for (i, c) in causes.iter().take(32).enumerate() {
        if i > 0 {
            source.push(',');
            list.push(',');
        }
        let _ = write!(source, "{c}");
        let _ = write!(list, "{}", c.get());
    }
    let kind = SemiringKind::from_u8(key.0)?.name();
    let dtype = DType::from_u8(key.1)?.name();
    let intent = format!(
        "{{\"cause\":\"semiring\",\"page\":{},\"semiring\":\"{kind}\",\"dtype\":\"{dtype}\",\"changed_inputs\":[{list}]}}",
        d.page.get()
    );
    d.with_source(source).with_intent(intent)
}
