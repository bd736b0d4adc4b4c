//! Whether a submitted append landed, known in this process before its
//! caller hears the outcome.
//!
//! A command on a busy stream (a community's budget, a popular gift) need
//! not wait for the commit of the command before it: it may be decided on
//! the state that command leaves, and appended right behind it, if it lands
//! only when that command does. An append names the appends it was decided
//! behind (`AppendRequest::after`); the writer plans appends in the order
//! they were queued, so when it plans one, each append it names has already
//! been planned, in this batch or an earlier one, and is either planned to
//! land or refused. A named append that was refused, or answered as a
//! repeat of an earlier request (which wrote nothing now), refuses this one
//! with `Conflict`, so a decision never lands on a state that did not.
//!
//! Versions alone would not do: if the append named was refused because
//! another process wrote the stream, that write holds the very version this
//! one expects, and the expected version would be met by the wrong event.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

const QUEUED: u8 = 0;
/// Planned to land, in a batch not yet committed.
const PLANNED: u8 = 1;
/// Planned not to land, in a batch whose end is not yet known (a batch
/// planned on beliefs that went stale is planned again).
const PLANNED_REFUSED: u8 = 2;
const LANDED: u8 = 3;
const REFUSED: u8 = 4;

/// One submitted append's way to the log; cheap to clone.
#[derive(Clone, Default)]
pub struct Landing {
    inner: Arc<State>,
}

#[derive(Default)]
struct State {
    status: AtomicU8,
    settled: Notify,
}

impl Landing {
    /// Committed: its events are in the log.
    pub fn has_landed(&self) -> bool {
        self.status() == LANDED
    }

    /// Refused, failed, or a repeat that wrote nothing: it never lands.
    pub fn has_failed(&self) -> bool {
        self.status() == REFUSED
    }

    /// Landed or failed.
    pub fn is_settled(&self) -> bool {
        matches!(self.status(), LANDED | REFUSED)
    }

    /// Waits until it landed (`true`) or failed (`false`).
    pub async fn settled(&self) -> bool {
        loop {
            let notified = self.inner.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.status() {
                LANDED => return true,
                REFUSED => return false,
                _ => notified.await,
            }
        }
    }

    /// Whether an append decided behind this one may be planned now: this
    /// one is planned to land, or landed.
    pub(crate) fn admits_followers(&self) -> bool {
        matches!(self.status(), PLANNED | LANDED)
    }

    /// How the batch it is in was planned; final only with `settle`.
    pub(crate) fn planned(&self, to_land: bool) {
        let status = if to_land { PLANNED } else { PLANNED_REFUSED };
        self.inner.status.store(status, Ordering::Release);
    }

    pub(crate) fn settle(&self, landed: bool) {
        let status = if landed { LANDED } else { REFUSED };
        self.inner.status.store(status, Ordering::Release);
        self.inner.settled.notify_waiters();
    }

    fn status(&self) -> u8 {
        self.inner.status.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for Landing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match self.status() {
            QUEUED => "queued",
            PLANNED => "planned",
            PLANNED_REFUSED => "planned refused",
            LANDED => "landed",
            _ => "refused",
        };
        f.debug_tuple("Landing").field(&status).finish()
    }
}

impl PartialEq for Landing {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}
