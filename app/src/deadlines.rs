//! The deadline watcher: a process that reads the clock (the domain never
//! does). Each missed deadline is recorded once (the report refuses a
//! second record of the same kind), escalating the report one level.

use std::time::Duration;

use domain::report::{Report, ReportCommand};
use store::CommunityId;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::commands::{report_stream, Commands, RequestMeta};
use crate::error::{AppError, AppResult};
use projections::stalls::Stalls;

/// Missed deadlines handled per community per tick; the rest wait a tick.
const PER_TICK_MAX: i64 = 500;
/// The first pause before a community it is stuck in is tried again.
const STUCK_DELAY: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct DeadlineWatcher {
    commands: Commands,
    stalls: Stalls,
}

pub const PROCESS: &str = "deadline-watcher";

impl DeadlineWatcher {
    pub fn new(commands: Commands) -> Self {
        DeadlineWatcher {
            commands,
            stalls: Stalls::default(),
        }
    }

    /// Notes where it is stuck in `stalls` (the server shares one).
    pub fn with_stalls(self, stalls: Stalls) -> Self {
        DeadlineWatcher { stalls, ..self }
    }

    /// Records every deadline missed by now; returns how many it recorded.
    pub async fn tick(&self) -> AppResult<usize> {
        let now = self.commands.clock().now();
        let store = self.commands.store();
        let meta = RequestMeta {
            request_id: format!("deadline-watcher-{}", now.micros()),
            client: Some("deadline-watcher".to_string()),
            ..RequestMeta::default()
        };
        let meta = &meta;
        let recorded = self
            .stalls
            .each_community(
                PROCESS,
                store.communities().await?,
                STUCK_DELAY,
                |community| self.tick_community(community, now, meta),
            )
            .await;
        Ok(recorded.into_iter().sum())
    }

    async fn tick_community(
        &self,
        community: CommunityId,
        now: domain::values::Timestamp,
        meta: &RequestMeta,
    ) -> AppResult<usize> {
        let store = self.commands.store();
        let due = projections::reports::missed_deadlines(
            store.pool(),
            community,
            now.micros(),
            PER_TICK_MAX,
        )
        .await?;
        let mut recorded = 0;
        for (report, kind) in due {
            recorded += usize::from(self.record(community, report, kind, meta).await?);
        }
        Ok(recorded)
    }

    async fn record(
        &self,
        community: CommunityId,
        report: uuid::Uuid,
        kind: domain::report::DeadlineKind,
        meta: &RequestMeta,
    ) -> AppResult<bool> {
        let at = self.commands.clock().now();
        let result = self
            .commands
            .execute::<Report>(community, &report_stream(report), meta, &[], |_| {
                Ok(ReportCommand::RecordMissedDeadline { kind, at })
            })
            .await;
        match result {
            Ok(_) => Ok(true),
            // Already recorded, or the report moved on since the read model
            // was folded: nothing to record.
            Err(AppError::Conflict(_) | AppError::Validation { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    pub fn spawn(self, interval: Duration, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            while !*shutdown.borrow() {
                if let Err(error) = self.tick().await {
                    tracing::error!(code = error.code(), %error, "the deadline watcher failed; retrying next tick");
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = shutdown.changed() => {}
                }
            }
        })
    }
}
