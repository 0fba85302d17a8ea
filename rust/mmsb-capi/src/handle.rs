//! Checked handles: the only way C and Julia refer to Rust objects.
//!
//! A handle is a `uint64_t`, never a pointer. It packs a kind tag (bits 56..64),
//! a generation (bits 32..56) and a slot number plus one (bits 0..32). The
//! registry looks every handle up before use: `0` is null, a handle whose slot
//! is empty or holds a newer generation is *stale* (the object was freed), and
//! a handle with an unknown tag, a slot out of range or the wrong kind is
//! *forged*. Each case is an `InvalidHandle` error naming what was wrong, so no
//! bad handle can reach freed or foreign memory.
//!
//! Objects live in the registry as `Arc`s; a call clones the `Arc` out and
//! releases the registry lock before working, so a slow call never blocks
//! others, and freeing a handle while another thread uses it is safe (the
//! object lives until that call returns).

use crate::durable_api::{CommitBuilder, History};
use crate::txn_api::Txn;
use mmsb_core::{Delta, Error, ErrorCode, PageSnapshot, PageStore, ReadOnlyState, Result, Store};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// What a handle refers to.
#[derive(Clone)]
pub(crate) enum Object {
    Store(Arc<Mutex<PageStore>>),
    Delta(Arc<Mutex<Delta>>),
    Borrow(Arc<PageSnapshot>),
    /// A durable store (data directory, log, checkpoints).
    Durable(Arc<Store>),
    /// A read-only past state of a durable store.
    State(Arc<ReadOnlyState>),
    /// A commit being built.
    Commit(Arc<Mutex<CommitBuilder>>),
    /// A page history (list of logged deltas).
    History(Arc<History>),
    /// A GPU store (`mmsb-gpu`: pages in CPU, GPU or unified memory).
    Gpu(Arc<Mutex<mmsb_gpu::GpuStore>>),
    /// A GPU mirror of a durable store's gpu-sync children.
    GpuMirror(Arc<mmsb_gpu::GpuMirror>),
    /// An optimistic transaction on a durable store.
    Txn(Arc<Mutex<Txn>>),
}

impl Object {
    fn tag(&self) -> u64 {
        match self {
            Object::Store(_) => TAG_STORE,
            Object::Delta(_) => TAG_DELTA,
            Object::Borrow(_) => TAG_BORROW,
            Object::Durable(_) => TAG_DURABLE,
            Object::State(_) => TAG_STATE,
            Object::Commit(_) => TAG_COMMIT,
            Object::History(_) => TAG_HISTORY,
            Object::Gpu(_) => TAG_GPU,
            Object::GpuMirror(_) => TAG_GPU_MIRROR,
            Object::Txn(_) => TAG_TXN,
        }
    }
}

pub(crate) const TAG_STORE: u64 = 0x51;
pub(crate) const TAG_DELTA: u64 = 0xD1;
pub(crate) const TAG_BORROW: u64 = 0xB0;
pub(crate) const TAG_DURABLE: u64 = 0x5D;
pub(crate) const TAG_STATE: u64 = 0x5E;
pub(crate) const TAG_COMMIT: u64 = 0xC0;
pub(crate) const TAG_HISTORY: u64 = 0x4E;
pub(crate) const TAG_GPU: u64 = 0x6B;
pub(crate) const TAG_GPU_MIRROR: u64 = 0x6C;
pub(crate) const TAG_TXN: u64 = 0x7A;

fn tag_name(tag: u64) -> &'static str {
    match tag {
        TAG_STORE => "store",
        TAG_DELTA => "delta",
        TAG_BORROW => "borrow",
        TAG_DURABLE => "durable store",
        TAG_STATE => "read-only state",
        TAG_COMMIT => "commit",
        TAG_HISTORY => "page history",
        TAG_GPU => "GPU store",
        TAG_GPU_MIRROR => "GPU mirror",
        TAG_TXN => "transaction",
        _ => "unknown",
    }
}

struct Slot {
    generation: u64,
    object: Option<Object>,
}

#[derive(Default)]
struct Registry {
    slots: Vec<Slot>,
    free: Vec<usize>,
    live: usize,
}

const GEN_MASK: u64 = (1 << 24) - 1;

fn registry() -> MutexGuard<'static, Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    // A panic while the lock is held cannot leave the registry inconsistent
    // (every mutation is a single push or field store), so recover from poison.
    R.get_or_init(|| Mutex::new(Registry::default()))
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Registers an object and returns its new handle.
pub(crate) fn insert(object: Object) -> u64 {
    let tag = object.tag();
    let mut r = registry();
    let index = match r.free.pop() {
        Some(i) => {
            let s = &mut r.slots[i];
            s.generation = (s.generation + 1) & GEN_MASK;
            if s.generation == 0 {
                s.generation = 1;
            }
            s.object = Some(object);
            i
        }
        None => {
            r.slots.push(Slot {
                generation: 1,
                object: Some(object),
            });
            r.slots.len() - 1
        }
    };
    r.live += 1;
    let generation = r.slots[index].generation;
    (tag << 56) | (generation << 32) | (index as u64 + 1)
}

fn locate(r: &Registry, handle: u64, want_tag: u64) -> Result<usize> {
    locate_any(r, handle, &[want_tag], tag_name(want_tag))
}

/// Like `locate`, accepting any of `tags`; `kind` names them in messages.
fn locate_any(r: &Registry, handle: u64, tags: &[u64], kind: &str) -> Result<usize> {
    if handle == 0 {
        return Err(Error::new(
            ErrorCode::InvalidHandle,
            format!("the {kind} handle is null"),
        ));
    }
    let tag = handle >> 56;
    if !tags.contains(&tag) {
        return Err(Error::new(
            ErrorCode::InvalidHandle,
            format!(
                "handle {handle:#x} is not a {kind} handle (it is tagged {})",
                tag_name(tag)
            ),
        ));
    }
    let index = (handle & 0xFFFF_FFFF) as usize;
    let generation = (handle >> 32) & GEN_MASK;
    let slot = index
        .checked_sub(1)
        .and_then(|i| r.slots.get(i).map(|s| (i, s)));
    match slot {
        Some((i, s)) if s.generation == generation && s.object.is_some() => Ok(i),
        Some(_) => Err(Error::new(
            ErrorCode::InvalidHandle,
            format!("{kind} handle {handle:#x} is stale: its object was already freed"),
        )),
        None => Err(Error::new(
            ErrorCode::InvalidHandle,
            format!("{kind} handle {handle:#x} was never issued (forged or corrupted)"),
        )),
    }
}

/// The object behind a handle of the given kind.
pub(crate) fn get(handle: u64, want_tag: u64) -> Result<Object> {
    let r = registry();
    let i = locate(&r, handle, want_tag)?;
    r.slots[i]
        .object
        .clone()
        .ok_or_else(|| Error::new(ErrorCode::Internal, "located an empty slot"))
}

/// The object behind a handle of any of the given kinds (`kind` names them in messages).
pub(crate) fn get_any(handle: u64, tags: &[u64], kind: &str) -> Result<Object> {
    let r = registry();
    let i = locate_any(&r, handle, tags, kind)?;
    r.slots[i]
        .object
        .clone()
        .ok_or_else(|| Error::new(ErrorCode::Internal, "located an empty slot"))
}

/// Frees a handle of any of the given kinds; later uses of it are stale.
pub(crate) fn remove_any(handle: u64, tags: &[u64], kind: &str) -> Result<Object> {
    let mut r = registry();
    let i = locate_any(&r, handle, tags, kind)?;
    let obj = r.slots[i]
        .object
        .take()
        .ok_or_else(|| Error::new(ErrorCode::Internal, "located an empty slot"))?;
    r.free.push(i);
    r.live -= 1;
    Ok(obj)
}

/// Frees a handle; later uses of it are stale.
pub(crate) fn remove(handle: u64, want_tag: u64) -> Result<Object> {
    let mut r = registry();
    let i = locate(&r, handle, want_tag)?;
    let obj = r.slots[i]
        .object
        .take()
        .ok_or_else(|| Error::new(ErrorCode::Internal, "located an empty slot"))?;
    r.free.push(i);
    r.live -= 1;
    Ok(obj)
}

/// The number of live handles (all kinds), for leak checks.
pub(crate) fn live_count() -> usize {
    registry().live
}

/// The store behind a handle.
#[cfg(test)]
pub(crate) fn store(handle: u64) -> Result<Arc<Mutex<PageStore>>> {
    match get(handle, TAG_STORE)? {
        Object::Store(s) => Ok(s),
        _ => Err(Error::new(ErrorCode::Internal, "store tag on a non-store")),
    }
}

/// Anything whose pages can be read: an in-memory store, a durable store or a
/// read-only past state.
pub(crate) enum Reader {
    Memory(Arc<Mutex<PageStore>>),
    Durable(Arc<Store>),
    State(Arc<ReadOnlyState>),
}

impl Reader {
    /// Runs `f` on the pages (under the store's lock: keep it short).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&PageStore) -> Result<R>) -> Result<R> {
        match self {
            Reader::Memory(s) => f(&*lock(s)?),
            Reader::Durable(s) => s.read_with(f),
            Reader::State(s) => f(s.pages()),
        }
    }
}

const READ_TAGS: [u64; 3] = [TAG_STORE, TAG_DURABLE, TAG_STATE];

/// The pages behind a store, durable store or read-only state handle.
pub(crate) fn reader(handle: u64) -> Result<Reader> {
    match get_any(handle, &READ_TAGS, "store")? {
        Object::Store(s) => Ok(Reader::Memory(s)),
        Object::Durable(s) => Ok(Reader::Durable(s)),
        Object::State(s) => Ok(Reader::State(s)),
        _ => Err(Error::new(ErrorCode::Internal, "store tag on a non-store")),
    }
}

/// A store that can be written: in memory, or durable (each write a one-op commit).
pub(crate) enum Writer {
    Memory(Arc<Mutex<PageStore>>),
    Durable(Arc<Store>),
}

/// The writable store behind a handle; a read-only state is `ReadOnly`.
pub(crate) fn writer(handle: u64) -> Result<Writer> {
    match get_any(handle, &READ_TAGS, "store")? {
        Object::Store(s) => Ok(Writer::Memory(s)),
        Object::Durable(s) => Ok(Writer::Durable(s)),
        Object::State(s) => Err(Error::new(
            ErrorCode::ReadOnly,
            format!(
                "handle {handle:#x} is a read-only state (replayed to LSN {}); write to the live store",
                s.lsn()
            ),
        )),
        _ => Err(Error::new(ErrorCode::Internal, "store tag on a non-store")),
    }
}

/// The durable store behind a handle.
pub(crate) fn durable(handle: u64) -> Result<Arc<Store>> {
    match get(handle, TAG_DURABLE)? {
        Object::Durable(s) => Ok(s),
        _ => Err(Error::new(
            ErrorCode::Internal,
            "durable tag on a non-durable",
        )),
    }
}

/// The delta behind a handle.
pub(crate) fn delta(handle: u64) -> Result<Arc<Mutex<Delta>>> {
    match get(handle, TAG_DELTA)? {
        Object::Delta(d) => Ok(d),
        _ => Err(Error::new(ErrorCode::Internal, "delta tag on a non-delta")),
    }
}

/// The GPU store behind a handle.
pub(crate) fn gpu_mirror(handle: u64) -> Result<Arc<mmsb_gpu::GpuMirror>> {
    match get(handle, TAG_GPU_MIRROR)? {
        Object::GpuMirror(m) => Ok(m),
        _ => Err(Error::new(
            ErrorCode::Internal,
            "GPU mirror tag on another object",
        )),
    }
}
pub(crate) fn gpu(handle: u64) -> Result<Arc<Mutex<mmsb_gpu::GpuStore>>> {
    match get(handle, TAG_GPU)? {
        Object::Gpu(g) => Ok(g),
        _ => Err(Error::new(
            ErrorCode::Internal,
            "GPU tag on a non-GPU store",
        )),
    }
}

/// Locks a mutex, turning poison (a panic in an earlier call) into an error.
pub(crate) fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock().map_err(|_| {
        Error::new(
            ErrorCode::Internal,
            "object is poisoned by an earlier internal failure",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_forged_and_wrong_kind_handles_are_rejected() {
        let h = insert(Object::Delta(Arc::new(Mutex::new(Delta::dense(
            mmsb_core::PageId(1),
            0,
            vec![1],
        )))));
        assert!(delta(h).is_ok());
        assert_eq!(
            store(h).err().map(|e| e.code),
            Some(ErrorCode::InvalidHandle)
        );
        assert_eq!(
            delta(0).err().map(|e| e.code),
            Some(ErrorCode::InvalidHandle)
        );
        assert!(delta(h + 1000).is_err());
        assert!(delta(h ^ (1 << 40)).is_err());
        remove(h, TAG_DELTA).unwrap();
        let e = delta(h).err().unwrap();
        assert!(e.message.contains("stale"), "{}", e.message);
        // The slot is reused with a new generation: the old handle stays stale.
        let h2 = insert(Object::Store(Arc::new(Mutex::new(PageStore::new()))));
        assert!(delta(h).is_err());
        remove(h2, TAG_STORE).unwrap();
    }
}
