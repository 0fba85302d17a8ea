//! Page identity.
//!
//! A [`PageId`] names one page for the life of a store. Ids are assigned by the
//! store in increasing order starting at 1 and are never reused after a page is
//! deleted, so an id seen in the log always means the same page. `0` is reserved
//! as "no page" (a null id at the C ABI).

use std::fmt;

/// The identity of one page in a store. Never `0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageId(pub u64);

impl PageId {
    /// The raw number, as it appears in the log and at the C ABI.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for PageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "page#{}", self.0)
    }
}
