//! Gpu-sync edges that act by themselves: device copies refreshed after each commit.
//!
//! A gpu-sync edge (`EdgeKind::GpuSync`) of the durable store marks its child
//! for a device sync whenever the parent changes in a wave, and the store
//! emits an `Event::GpuSync` for it once the commit is acknowledged.
//! [`GpuMirror::attach`] subscribes to those events: after every acknowledged
//! commit that marked pages, the subscriber takes the store's pending syncs
//! (`Store::take_gpu_sync`) and refreshes the device copy of each marked page
//! in a [`GpuStore`] with the page's bytes and epoch as of that commit
//! ([`GpuStore::sync_from`]). Events run outside the store's commit lock, on
//! the committing thread, so the refresh is done when `commit` returns.
//!
//! The subscriber holds the store weakly (no reference cycle through the
//! store's subscriber list) and the GPU store behind a mutex (committers on
//! several threads take turns). A refresh that fails (a device page that
//! cannot be written keeps its refreshed bytes on the host, see
//! `sync_from`; other errors, such as a store closed meanwhile) is counted
//! and its message kept in [`MirrorStats`]; the commit itself has already
//! been acknowledged and is not affected. Dropping the mirror unsubscribes.

use crate::gpu_store::GpuStore;
use mmsb_core::error::{Error, Result};
use mmsb_core::events::{EventKind, SubscriptionId};
use mmsb_core::{PageLocation, Store};
use std::sync::{Arc, Mutex, Weak};

/// What a [`GpuMirror`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorStats {
    /// Refresh rounds run (one per acknowledged commit that marked pages).
    pub refreshes: u64,
    /// Device copies refreshed (pages, summed over rounds).
    pub pages_refreshed: u64,
    /// Rounds that failed.
    pub errors: u64,
    /// The last failure's message.
    pub last_error: Option<String>,
}

/// Keeps a [`GpuStore`]'s copies of gpu-sync children current with a durable
/// [`Store`]: see the module docs.
pub struct GpuMirror {
    store: Weak<Store>,
    sub: SubscriptionId,
    stats: Arc<Mutex<MirrorStats>>,
}

impl GpuMirror {
    /// Subscribes to `store`'s gpu-sync events: after each acknowledged commit
    /// that marks pages, their device copies in `gpu` are refreshed (created
    /// at `location` the first time). Pages already pending when attaching
    /// are refreshed now.
    pub fn attach(
        store: &Arc<Store>,
        gpu: Arc<Mutex<GpuStore>>,
        location: PageLocation,
    ) -> Result<GpuMirror> {
        let stats = Arc::new(Mutex::new(MirrorStats::default()));
        refresh(store, &gpu, location, &stats);
        let weak = Arc::downgrade(store);
        let (g, st) = (gpu.clone(), stats.clone());
        let sub = store.subscribe(EventKind::GpuSync, move |_| {
            match weak.upgrade() {
                Some(s) => refresh(&s, &g, location, &st),
                None => record(&st, Err(Error::invalid("the store is closed"))),
            };
        });
        Ok(GpuMirror {
            store: Arc::downgrade(store),
            sub,
            stats,
        })
    }

    /// What the mirror did so far.
    pub fn stats(&self) -> MirrorStats {
        match self.stats.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

impl Drop for GpuMirror {
    fn drop(&mut self) {
        if let Some(s) = self.store.upgrade() {
            s.unsubscribe(self.sub);
        }
    }
}

/// One refresh round: drains the store's pending syncs into `gpu`. A commit
/// marks several pages with one event each; the first event's round takes
/// them all and the others find nothing pending (not counted).
fn refresh(
    store: &Store,
    gpu: &Mutex<GpuStore>,
    location: PageLocation,
    stats: &Mutex<MirrorStats>,
) {
    let r = match gpu.lock() {
        Ok(mut g) => g.sync_from(store, location),
        Err(_) => Err(Error::new(
            mmsb_core::ErrorCode::Internal,
            "the GPU store's lock is poisoned",
        )),
    };
    record(stats, r);
}

fn record(stats: &Mutex<MirrorStats>, r: Result<Vec<mmsb_core::PageId>>) {
    let mut s = match stats.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    match r {
        Ok(pages) if pages.is_empty() => {}
        Ok(pages) => {
            s.refreshes += 1;
            s.pages_refreshed += pages.len() as u64;
        }
        Err(e) => {
            s.errors += 1;
            s.last_error = Some(e.to_string());
        }
    }
}
