//! Tells every other process of this process's commits, after they land.
//!
//! A transaction that runs NOTIFY takes one lock for the whole database at
//! its commit and holds it until its commit record is flushed, so
//! notifying transactions commit one at a time (measured with pgbench on
//! this machine: 5,300–5,600 commits/s with a NOTIFY against 12,800–13,100
//! without, 16 clients), and each commit wakes the listening backends while
//! the appending batch waits. The writers therefore do not notify inside
//! their transactions: after a commit they hand `community:position` to
//! this task, which sends what has gathered in one statement on a
//! connection of its own with `synchronous_commit = off` (a notification
//! holds nothing that must survive a crash; what it announces is already
//! durable). Announcements gather for a few milliseconds and are coalesced:
//! per community only the highest position matters.
//!
//! An announcement can be lost when this process dies between a commit and
//! its announcement. Every reader of announcements has a bound for that:
//! followers recheck the heads when idle, and kept answers have a maximum
//! age (ADR 0013).

use std::collections::HashMap;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use crate::store::{lock, Inner};
use crate::types::CommunityId;
use crate::writer::APPENDED_CHANNEL;

const RECONNECT_DELAY_MS: u64 = 1_000;

/// How long announcements gather after the first before they are sent: a
/// notification costs the database a transaction and a wake-up of every
/// listening backend, so a busy writer's commits share one, at the price of
/// other processes hearing of them this much later.
const GATHER_MS: u64 = 5;

/// Sends the gathered announcements as one statement: one notification per
/// community.
const NOTIFY_ALL: &str = "SELECT pg_notify($1, notice) FROM unnest($2::text[]) AS notice";

/// The announcements not yet sent, at most one per community.
#[derive(Default)]
pub(crate) struct Pending {
    positions: Mutex<HashMap<CommunityId, i64>>,
    gathered: Notify,
}

impl Pending {
    /// Queues `position` of `community` to be announced to other processes.
    pub(crate) fn announce(&self, community: CommunityId, position: i64) {
        lock(&self.positions)
            .entry(community)
            .and_modify(|queued| *queued = (*queued).max(position))
            .or_insert(position);
        self.gathered.notify_one();
    }

    fn take(&self) -> HashMap<CommunityId, i64> {
        std::mem::take(&mut *lock(&self.positions))
    }

    /// Puts back what could not be sent, keeping anything newer, for the
    /// next connection to send.
    fn restore(&self, unsent: HashMap<CommunityId, i64>) {
        for (community, position) in unsent {
            self.announce(community, position);
        }
    }
}

/// Sends what is pending now, on a connection of the pool (at shutdown,
/// after the last batches committed).
pub(crate) async fn send_now(inner: &Inner) -> Result<(), crate::error::StoreError> {
    let positions = inner.pending_announcements.take();
    if positions.is_empty() {
        return Ok(());
    }
    let notices = notices(&positions);
    let client = inner.pool.get().await?;
    client
        .execute(NOTIFY_ALL, &[&APPENDED_CHANNEL, &notices])
        .await?;
    Ok(())
}

fn notices(positions: &HashMap<CommunityId, i64>) -> Vec<String> {
    positions
        .iter()
        .map(|(community, position)| format!("{community}:{position}"))
        .collect()
}

pub(crate) fn spawn(inner: Weak<Inner>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Some((config, pending)) = inner
                .upgrade()
                .map(|i| (i.pg_config.clone(), i.pending_announcements.clone()))
            else {
                return;
            };
            if let Err(error) = send_gathered(&inner, &pending, config).await {
                tracing::warn!(%error, "the commit notifier lost its connection; reconnecting");
            }
            tokio::time::sleep(Duration::from_millis(RECONNECT_DELAY_MS)).await;
        }
    })
}

/// Sends announcements as they gather, until the connection fails or the
/// store is gone.
async fn send_gathered(
    inner: &Weak<Inner>,
    pending: &Pending,
    config: tokio_postgres::Config,
) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    let sent = async {
        client.batch_execute("SET synchronous_commit = off").await?;
        let statement = client.prepare(NOTIFY_ALL).await?;
        while inner.strong_count() > 0 {
            // Woken by the first announcement after the last send (a
            // permit is kept when nobody waits).
            pending.gathered.notified().await;
            tokio::time::sleep(Duration::from_millis(GATHER_MS)).await;
            let positions = pending.take();
            if positions.is_empty() {
                continue;
            }
            let notices = notices(&positions);
            if let Err(error) = client
                .execute(&statement, &[&APPENDED_CHANNEL, &notices])
                .await
            {
                pending.restore(positions);
                return Err(error);
            }
        }
        Ok(())
    }
    .await;
    driver.abort();
    sent
}
