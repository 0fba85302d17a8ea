//! Pages: fixed-size byte buffers with an identity, a location, an epoch and metadata.
//!
//! A [`Page`] is the unit of state. Its size is fixed at creation. Its *epoch*
//! counts the commits that changed it: it starts at 0 and increases by one each
//! time a delta changes at least one byte (a no-op delta leaves it alone), which
//! is what compare-and-set deltas and optimistic transactions check.
//!
//! The bytes sit behind an `Arc`, so a reader can take a [`PageSnapshot`]
//! (zero-copy, pinned for as long as it is held) while writers go on: a write to
//! a page whose bytes are pinned copies them first (copy-on-write), and the
//! snapshot keeps showing the state at the moment it was taken.

use crate::dtype::NumericView;
use crate::error::{Error, Result};
use crate::location::PageLocation;
use crate::page_buf::PageBuf;
use crate::page_id::PageId;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest page the store accepts (16 GiB). Larger state spans several pages.
pub const MAX_PAGE_SIZE: u64 = 1 << 34;

/// Largest metadata key, in bytes.
pub const MAX_METADATA_KEY: usize = 256;

/// One page: identity, location, epoch, metadata, optional numeric view, bytes.
#[derive(Clone, Debug)]
pub struct Page {
    id: PageId,
    location: PageLocation,
    epoch: u64,
    metadata: BTreeMap<String, Vec<u8>>,
    view: Option<NumericView>,
    data: Arc<PageBuf>,
}

/// A pinned, read-only view of a page's bytes at one epoch (zero-copy).
#[derive(Clone, Debug)]
pub struct PageSnapshot {
    /// The page.
    pub id: PageId,
    /// The page's epoch when the snapshot was taken.
    pub epoch: u64,
    data: Arc<PageBuf>,
}

impl PageSnapshot {
    /// The bytes, as they were when the snapshot was taken.
    pub fn bytes(&self) -> &[u8] {
        self.data.as_slice()
    }
}

impl Page {
    /// A zeroed page of `size` bytes. Only CPU pages are backed today.
    pub fn new(id: PageId, size: u64, location: PageLocation) -> Result<Page> {
        if id.0 == 0 {
            return Err(Error::invalid("page id 0 is reserved"));
        }
        if size == 0 || size > MAX_PAGE_SIZE {
            return Err(Error::invalid(format!(
                "page size {size} is outside 1..={MAX_PAGE_SIZE}"
            )));
        }
        if location != PageLocation::Cpu {
            return Err(Error::new(
                crate::ErrorCode::Unsupported,
                format!(
                    "{} pages need the GPU layer, which this build does not have yet",
                    location.name()
                ),
            ));
        }
        let len = usize::try_from(size)
            .map_err(|_| Error::invalid(format!("page size {size} exceeds the address space")))?;
        Ok(Page {
            id,
            location,
            epoch: 0,
            metadata: BTreeMap::new(),
            view: None,
            data: Arc::new(PageBuf::zeroed(len)?),
        })
    }

    /// A page restored with given bytes and epoch (used by recovery and tests).
    pub fn from_parts(
        id: PageId,
        location: PageLocation,
        epoch: u64,
        bytes: &[u8],
    ) -> Result<Page> {
        let mut p = Page::new(id, bytes.len() as u64, location)?;
        p.epoch = epoch;
        p.data = Arc::new(PageBuf::from_slice(bytes)?);
        Ok(p)
    }

    /// The page's id.
    pub fn id(&self) -> PageId {
        self.id
    }

    /// Size in bytes (fixed at creation).
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// Where the bytes live.
    pub fn location(&self) -> PageLocation {
        self.location
    }

    /// The number of commits that changed this page.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        self.data.as_slice()
    }

    /// A zero-copy snapshot that stays valid (and unchanged) while writers go on.
    pub fn snapshot(&self) -> PageSnapshot {
        PageSnapshot {
            id: self.id,
            epoch: self.epoch,
            data: Arc::clone(&self.data),
        }
    }

    /// Whether a snapshot currently pins the bytes (the next write will copy).
    pub fn is_pinned(&self) -> bool {
        Arc::strong_count(&self.data) > 1
    }

    /// Mutable bytes for a write that will change the page; copies if pinned.
    /// Callers bump the epoch with [`Page::bump_epoch`] when the write changed bytes.
    /// A failed copy is `OutOfMemory` and leaves the page as it was.
    pub(crate) fn bytes_mut(&mut self) -> Result<&mut [u8]> {
        if Arc::get_mut(&mut self.data).is_none() {
            self.data = Arc::new(PageBuf::from_slice(self.data.as_slice())?);
        }
        Arc::get_mut(&mut self.data)
            .map(PageBuf::as_mut_slice)
            .ok_or_else(|| {
                Error::new(
                    crate::ErrorCode::Internal,
                    "page buffer still shared after copy",
                )
            })
    }

    /// Records one changing commit.
    pub(crate) fn bump_epoch(&mut self) {
        self.epoch += 1;
    }

    /// Puts the epoch back (undoing a commit, see `PageStore::undo`).
    pub(crate) fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// The numeric view, if one is set.
    pub fn view(&self) -> Option<NumericView> {
        self.view
    }

    /// Sets or clears the numeric view; it must fit the page.
    pub fn set_view(&mut self, view: Option<NumericView>) -> Result<()> {
        if let Some(v) = view {
            v.validate(self.size())?;
        }
        self.view = view;
        Ok(())
    }

    /// The user metadata value under `key`.
    pub fn metadata(&self, key: &str) -> Option<&[u8]> {
        self.metadata.get(key).map(Vec::as_slice)
    }

    /// All metadata, in key order.
    pub fn metadata_iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Sets user metadata `key -> value`. Keys are 1 to 256 bytes of UTF-8.
    pub fn set_metadata(&mut self, key: &str, value: &[u8]) -> Result<()> {
        if key.is_empty() || key.len() > MAX_METADATA_KEY {
            return Err(Error::invalid(format!(
                "metadata key must be 1..={MAX_METADATA_KEY} bytes, got {}",
                key.len()
            )));
        }
        self.metadata.insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    /// Removes metadata under `key`; returns whether it was there.
    pub fn remove_metadata(&mut self, key: &str) -> bool {
        self.metadata.remove(key).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    #[test]
    fn new_page_is_zeroed_at_epoch_zero() {
        let p = Page::new(PageId(1), 100, PageLocation::Cpu).unwrap();
        assert_eq!(p.size(), 100);
        assert_eq!(p.epoch(), 0);
        assert!(p.bytes().iter().all(|&b| b == 0));
    }

    #[test]
    fn bad_sizes_and_locations_are_rejected() {
        assert!(Page::new(PageId(1), 0, PageLocation::Cpu).is_err());
        assert!(Page::new(PageId(1), MAX_PAGE_SIZE + 1, PageLocation::Cpu).is_err());
        assert!(Page::new(PageId(0), 8, PageLocation::Cpu).is_err());
        let e = Page::new(PageId(1), 8, PageLocation::Gpu).unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::Unsupported);
    }

    #[test]
    fn snapshot_survives_later_writes() {
        let mut p = Page::new(PageId(1), 4, PageLocation::Cpu).unwrap();
        let s = p.snapshot();
        assert!(p.is_pinned());
        p.bytes_mut().unwrap()[0] = 9;
        assert_eq!(s.bytes(), &[0, 0, 0, 0]);
        assert_eq!(p.bytes(), &[9, 0, 0, 0]);
    }

    #[test]
    fn views_must_fit() {
        let mut p = Page::new(PageId(1), 64, PageLocation::Cpu).unwrap();
        p.set_view(Some(NumericView {
            dtype: DType::F64,
            len: 8,
        }))
        .unwrap();
        assert!(p
            .set_view(Some(NumericView {
                dtype: DType::F64,
                len: 9
            }))
            .is_err());
        assert!(p
            .set_view(Some(NumericView {
                dtype: DType::F64,
                len: u64::MAX
            }))
            .is_err());
        assert_eq!(p.view().unwrap().len, 8);
    }

    #[test]
    fn metadata_keys_are_checked() {
        let mut p = Page::new(PageId(1), 8, PageLocation::Cpu).unwrap();
        p.set_metadata("owner", b"sim").unwrap();
        assert_eq!(p.metadata("owner"), Some(&b"sim"[..]));
        assert!(p.set_metadata("", b"x").is_err());
        assert!(p.set_metadata(&"k".repeat(257), b"x").is_err());
        assert!(p.remove_metadata("owner"));
        assert_eq!(p.metadata("owner"), None);
    }
}
