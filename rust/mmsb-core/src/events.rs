//! Events: callbacks run after a commit, for the pages it touched.
//!
//! Subscribers register a Rust callback for one [`EventKind`] and get a
//! [`SubscriptionId`] to unsubscribe with. Events are delivered after a commit
//! has been applied in full (never for a commit that failed), in a fixed order:
//! every page-changed event (in the order the changes were applied), then stale,
//! gpu-sync and invalidated events (by page id). Callbacks run on the
//! committing thread and must not block for long. On an [`Engine`](crate::Engine)
//! they cannot call back into the engine (it is borrowed mutably while they
//! run), so a callback that wants to react queues work for later; on the
//! durable [`Store`](crate::Store) they run after the commit is acknowledged,
//! outside its lock, and may read the store.

use crate::page_id::PageId;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// A page's bytes changed (an input or a derived delta).
    PageChanged,
    /// A page became stale through a control edge.
    Stale,
    /// A page got a pending device sync through a gpu-sync edge.
    GpuSync,
    /// A page was invalidated through a compiler edge.
    Invalidated,
}

/// One event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `page`'s bytes changed; it is now at `epoch`.
    PageChanged {
        /// The page.
        page: PageId,
        /// Its epoch after the commit.
        epoch: u64,
    },
    /// `page` became stale because `cause` (a control parent) changed.
    Stale {
        /// The page.
        page: PageId,
        /// The parent whose change caused it.
        cause: PageId,
    },
    /// `page` needs a device copy because `cause` (a gpu-sync parent) changed.
    GpuSync {
        /// The page.
        page: PageId,
        /// The parent whose change caused it.
        cause: PageId,
    },
    /// `page` was invalidated because `cause` (a compiler parent) changed.
    Invalidated {
        /// The page.
        page: PageId,
        /// The parent whose change caused it.
        cause: PageId,
    },
}

impl Event {
    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::PageChanged { .. } => EventKind::PageChanged,
            Event::Stale { .. } => EventKind::Stale,
            Event::GpuSync { .. } => EventKind::GpuSync,
            Event::Invalidated { .. } => EventKind::Invalidated,
        }
    }

    /// The page the event is about.
    pub fn page(&self) -> PageId {
        match *self {
            Event::PageChanged { page, .. }
            | Event::Stale { page, .. }
            | Event::GpuSync { page, .. }
            | Event::Invalidated { page, .. } => page,
        }
    }
}

/// Names a subscription, for [`EventBus::unsubscribe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscriptionId(pub u64);

/// A subscriber's callback.
pub type Callback = dyn Fn(&Event) + Send + Sync;

/// The subscribers of one engine. See the module docs.
#[derive(Clone, Default)]
pub struct EventBus {
    next: u64,
    subs: BTreeMap<SubscriptionId, (EventKind, Arc<Callback>)>,
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("subscribers", &self.subs.len())
            .finish()
    }
}

impl EventBus {
    /// No subscribers.
    pub fn new() -> EventBus {
        EventBus::default()
    }

    /// Calls `f` for every later event of `kind`.
    pub fn subscribe(
        &mut self,
        kind: EventKind,
        f: impl Fn(&Event) + Send + Sync + 'static,
    ) -> SubscriptionId {
        self.next += 1;
        let id = SubscriptionId(self.next);
        self.subs.insert(id, (kind, Arc::new(f)));
        id
    }

    /// Removes a subscription; returns whether it existed.
    pub fn unsubscribe(&mut self, id: SubscriptionId) -> bool {
        self.subs.remove(&id).is_some()
    }

    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// Whether there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Delivers each of `events`, in order.
    pub fn emit_all(&self, events: &[Event]) {
        for e in events {
            self.emit(e);
        }
    }

    /// Delivers `event` to the subscribers of its kind, in subscription order.
    pub fn emit(&self, event: &Event) {
        let k = event.kind();
        for (kind, f) in self.subs.values() {
            if *kind == k {
                f(event);
            }
        }
    }
}
