//! Snapshots: a consistent multi-page view at one commit boundary.
//!
//! A [`Snapshot`] is taken under the durable store's commit lock, between two
//! commits, so it shows every page exactly as the last commit left it: never
//! part of a commit. Taking one is cheap — for each page it clones the `Arc` of
//! the page's bytes (and its small metadata), it copies no page bytes — and it
//! is read without any lock afterwards, while writers go on: a commit that
//! later writes a page the snapshot pins copies that page first
//! (copy-on-write, see [`page`](crate::page)), so the snapshot never changes.
//! The price of holding a snapshot is that copy, once per page written while it
//! is held; dropping the snapshot ends it.
//!
//! [`Store::snapshot`] pins every page (O(pages) `Arc` clones under the lock);
//! [`Store::snapshot_of`] pins only the pages named, which is what a reader that
//! knows its working set should use. Transactions read through the same kind
//! of consistent view (see [`transaction`](crate::transaction)).

use crate::durable_store::Store;
use crate::error::{Error, Result};
use crate::page::Page;
use crate::page_id::PageId;
use std::collections::BTreeMap;

/// Pages as they were after commit [`Snapshot::lsn`], read-only. See the module docs.
#[derive(Clone, Debug)]
pub struct Snapshot {
    lsn: u64,
    pages: BTreeMap<PageId, Page>,
}

impl Snapshot {
    /// The LSN of the last commit the snapshot includes.
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    /// The page (bytes, epoch, metadata, view) as of the snapshot.
    pub fn page(&self, id: PageId) -> Result<&Page> {
        self.pages.get(&id).ok_or_else(|| {
            Error::not_found(format!(
                "{id} is not in the snapshot at LSN {} (it did not exist or was not pinned)",
                self.lsn
            ))
        })
    }

    /// The page's bytes as of the snapshot (no copy).
    pub fn bytes(&self, id: PageId) -> Result<&[u8]> {
        self.page(id).map(Page::bytes)
    }

    /// A copy of the page's bytes.
    pub fn read(&self, id: PageId) -> Result<Vec<u8>> {
        self.bytes(id).map(<[u8]>::to_vec)
    }

    /// Ids of the pages in the snapshot, ascending.
    pub fn page_ids(&self) -> Vec<PageId> {
        self.pages.keys().copied().collect()
    }

    /// Number of pages in the snapshot.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Whether the snapshot holds no page.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }
}

impl Store {
    /// A snapshot of every page at the current commit boundary. See [`snapshot`](crate::snapshot).
    pub fn snapshot(&self) -> Snapshot {
        self.read_with_lsn(|state, lsn| Snapshot {
            lsn,
            pages: state
                .page_ids()
                .into_iter()
                .filter_map(|id| state.page(id).ok().map(|p| (id, p.clone())))
                .collect(),
        })
    }

    /// A snapshot of the pages `ids` at the current commit boundary;
    /// `NotFound` if one of them does not exist.
    pub fn snapshot_of(&self, ids: &[PageId]) -> Result<Snapshot> {
        self.read_with_lsn(|state, lsn| {
            let mut pages = BTreeMap::new();
            for &id in ids {
                pages.insert(id, state.page(id)?.clone());
            }
            Ok(Snapshot { lsn, pages })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit::Op;
    use crate::delta::Delta;
    use crate::location::PageLocation;

    fn store_with_pages(n: usize) -> (Store, Vec<PageId>) {
        let s = Store::in_memory();
        let ops = (0..n)
            .map(|_| Op::CreatePage {
                size: 8,
                location: PageLocation::Cpu,
            })
            .collect();
        let ids = s.commit(ops).unwrap().created;
        (s, ids)
    }

    #[test]
    fn a_snapshot_does_not_change_when_later_commits_write() {
        let (s, ids) = store_with_pages(2);
        let snap = s.snapshot();
        s.commit(vec![Op::Delta(Delta::dense(ids[0], 0, vec![7; 8]))])
            .unwrap();
        assert_eq!(snap.read(ids[0]).unwrap(), vec![0; 8]);
        assert_eq!(snap.page(ids[0]).unwrap().epoch(), 0);
        assert_eq!(snap.lsn(), 1);
        assert_eq!(s.read(ids[0]).unwrap(), vec![7; 8]);
        assert_eq!(s.snapshot().lsn(), 2);
    }

    #[test]
    fn stores_snapshots_and_transactions_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Store>();
        shareable::<Snapshot>();
        shareable::<crate::Transaction<'static>>();
        shareable::<crate::TxnBuffer>();
    }

    #[test]
    fn snapshot_of_pins_only_the_named_pages() {
        let (s, ids) = store_with_pages(3);
        let snap = s.snapshot_of(&ids[1..2]).unwrap();
        assert_eq!(snap.page_ids(), vec![ids[1]]);
        assert_eq!(
            snap.read(ids[0]).unwrap_err().code,
            crate::ErrorCode::NotFound
        );
        assert!(s.snapshot_of(&[PageId(99)]).is_err());
    }
}
