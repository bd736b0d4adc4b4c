//! The earning process: follows report and suggestion events and grants
//! what the community's rules say, exactly once per qualifying event.
//!
//! It runs as a projection without tables, so the runner gives it a
//! checkpoint, catch-up and live following. Exactly once does not rest on
//! the checkpoint: a crash after a grant and before the checkpoint moves
//! replays the event, and the wallet, which remembers every grant source,
//! is the one that refuses to pay twice (as it does when two processes run
//! at once). Each grant also carries an idempotency key made from its
//! source, so a replay is answered without deciding again.

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use domain::community::Community;
use domain::points::wallet::ReversalReason;
use domain::points::wallet::WalletEvent;
use domain::points::{GrantSource, Wallet};
use domain::report::{Report, ReportEvent, ReportState, Reporter};
use domain::streams::StreamKind;
use domain::suggestion::{Outcome, SuggestionEvent};
use domain::values::{GridId, PersonId, Points, ReportId, SuggestionId, Timestamp};
use futures::StreamExt;
use projections::runner::{decode, entity_id};
use projections::{Change, Projection, ProjectionError};
use rust_decimal::Decimal;
use store::{CommunityId, RecordedEvent};

use super::{wallet_stream, GrantRequest, PointsDesk, PreparedGrant, Reversal};
use crate::commands::{fold, report_stream, suggestion_stream, Loaded, Queued, RequestMeta};
use crate::error::{AppError, AppResult};
use crate::idempotency::Idempotency;

pub const NAME: &str = "earning";

pub struct EarningProcess {
    desk: PointsDesk,
}

impl EarningProcess {
    pub fn new(desk: PointsDesk) -> Self {
        EarningProcess { desk }
    }
}

#[async_trait]
impl Projection for EarningProcess {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Reports and suggestions earn (`may_earn`); nothing else does.
    fn streams(&self) -> &'static [StreamKind] {
        &[StreamKind::Report, StreamKind::Suggestion]
    }

    /// No read model: what it does lands in the log.
    fn tables_sql(&self) -> String {
        String::new()
    }

    /// Each grant is its own command, but they need not wait for each
    /// other's commits: what every event earns is read for several events
    /// at once; the grants are then decided and queued one after another
    /// in the log's order (so a wallet's daily limit and a reversal meet
    /// them in that order), each behind the last on the budget's stream;
    /// and the batch ends once every one has landed.
    async fn apply_batch(
        &self,
        _transaction: &Transaction<'_>,
        _schema: &str,
        events: &[RecordedEvent],
        _changes: &mut Vec<Change>,
    ) -> Result<(), ProjectionError> {
        let failed = |position: i64| {
            move |error: AppError| ProjectionError::Process {
                process: NAME,
                position,
                reason: error.describe(),
            }
        };
        // A batch is one community's: its set-up is read once.
        let Some(first) = events.iter().find(|event| may_earn(event)) else {
            return Ok(());
        };
        let setup = self
            .desk
            .community(first.community_id)
            .await
            .map_err(failed(first.position))?;
        // The streams of the reports that may earn, in a few statements.
        let reports = self
            .reports_read(first.community_id, events)
            .await
            .map_err(failed(first.position))?;
        // All read before any is queued: a read left half way holds a
        // connection the grants need.
        let reads: Vec<_> = events
            .iter()
            .filter(|event| may_earn(event))
            .map(|event| self.earned(event, &setup, &reports))
            .collect();
        let earnings: Vec<(i64, AppResult<Vec<Earned>>)> = futures::stream::iter(reads)
            .buffered(EVENTS_READ_AT_ONCE)
            .collect()
            .await;
        let mut queued = Vec::new();
        for (position, earned) in earnings {
            for earning in earned.map_err(failed(position))? {
                match earning {
                    Earned::Grant(earn) => {
                        if let Some(grant) = self.queue(earn).await.map_err(failed(position))? {
                            queued.push((position, grant));
                        }
                    }
                    Earned::Reversal(reversal) => {
                        self.reverse_merged(reversal)
                            .await
                            .map_err(failed(position))?;
                    }
                }
            }
        }
        for (position, (grant, meta, queued)) in queued {
            grant
                .land(&self.desk, &meta, &[], queued)
                .await
                .map_err(failed(position))?;
        }
        Ok(())
    }
}

/// Events whose earnings are read at once.
const EVENTS_READ_AT_ONCE: usize = 8;
/// A report's events read in one statement; a longer stream is read on.
const REPORT_EVENTS_READ: i64 = 100;
/// Report streams read in one statement.
const REPORTS_READ_AT_ONCE: usize = 100;
/// The report events that may earn (see `follow_report`).
const EARNING_REPORT_EVENTS: [&str; 4] = [
    "ReportAccepted",
    "ReportConfirmed",
    "ReportClaimed",
    "ReportMerged",
];

/// The first events of report streams, by stream id.
type ReportStreams = std::collections::HashMap<String, Vec<RecordedEvent>>;

/// Whether an event may earn, by its stream's kind and its type: a batch
/// of nothing else (reports filed, worked on) reads nothing.
fn may_earn(event: &RecordedEvent) -> bool {
    match projections::runner::kind(event) {
        Some(StreamKind::Report) => EARNING_REPORT_EVENTS.contains(&event.event_type.as_str()),
        Some(StreamKind::Suggestion) => event.event_type == "SuggestionAnswered",
        _ => false,
    }
}

/// What one event earns: grants, or the reversal of a merged duplicate's.
enum Earned {
    Grant(Earn),
    Reversal(MergedReversal),
}

struct MergedReversal {
    community: CommunityId,
    position: i64,
    resident: PersonId,
    report: ReportId,
    original: ReportId,
}

type QueuedGrant = (PreparedGrant, RequestMeta, Queued<WalletEvent>);

/// What a report event earns.
enum Earning {
    Accepted(Timestamp),
    Resolved(Timestamp),
    /// A resident claimed an anonymous report: it earns what it has
    /// earned so far.
    Claimed(Timestamp),
    Merged(ReportId),
}

impl EarningProcess {
    /// The first events of the streams of every report that an event of
    /// the batch may make earn, by stream.
    async fn reports_read(
        &self,
        community: CommunityId,
        events: &[RecordedEvent],
    ) -> AppResult<ReportStreams> {
        let mut stream_ids: Vec<String> = events
            .iter()
            .filter(|event| projections::runner::kind(event) == Some(StreamKind::Report))
            .filter(|event| may_earn(event))
            .map(|event| event.stream_id.clone())
            .collect();
        stream_ids.sort();
        stream_ids.dedup();
        let mut streams = ReportStreams::new();
        let store = self.desk.commands().store();
        for ids in stream_ids.chunks(REPORTS_READ_AT_ONCE) {
            for event in store
                .read_streams_start(community, ids, REPORT_EVENTS_READ)
                .await?
            {
                streams
                    .entry(event.stream_id.clone())
                    .or_default()
                    .push(event);
            }
        }
        Ok(streams)
    }

    /// What an event earns, with its position.
    async fn earned(
        &self,
        event: &RecordedEvent,
        setup: &Arc<Community>,
        reports: &ReportStreams,
    ) -> (i64, AppResult<Vec<Earned>>) {
        let earned = match projections::runner::kind(event) {
            Some(StreamKind::Report) => self.follow_report(event, setup, reports).await,
            Some(StreamKind::Suggestion) => self.follow_suggestion(event, setup).await,
            _ => Ok(Vec::new()),
        };
        (event.position, earned)
    }

    async fn follow_report(
        &self,
        event: &RecordedEvent,
        setup: &Arc<Community>,
        reports: &ReportStreams,
    ) -> AppResult<Vec<Earned>> {
        let earning = match decode::<ReportEvent>(event)? {
            ReportEvent::ReportAccepted { at, .. } => Earning::Accepted(at),
            ReportEvent::ReportConfirmed { at, .. } => Earning::Resolved(at),
            ReportEvent::ReportClaimed { at, .. } => Earning::Claimed(at),
            ReportEvent::ReportMerged { original, .. } => Earning::Merged(original),
            _ => return Ok(Vec::new()),
        };
        let community = event.community_id;
        let report_id = ReportId(entity_id(event, "report")?);
        // The report as it is now, and who filed it (its first event's
        // metadata).
        let (report, filed_as_staff) = self.report_and_filer(community, report_id, reports).await?;
        let Some(submission) = report.submission.as_deref() else {
            return Ok(Vec::new());
        };
        // Anonymous reporters earn nothing until they claim the report.
        let Reporter::Resident(resident) = submission.reporter else {
            return Ok(Vec::new());
        };
        if !setup
            .points_rules
            .earns(resident, filed_as_staff, report.accepted_by)
        {
            return Ok(Vec::new());
        }
        let accepted_points = setup
            .categories
            .get(&submission.category)
            .map_or(Decimal::ZERO, |category| category.accepted_report_points);
        let bonus = setup.points_rules.resolved_report_bonus;
        let accepted = GrantSource::ReportAccepted { report: report_id };
        let resolved = GrantSource::ReportResolved { report: report_id };
        let grid = Some(submission.grid);
        let merged = report.state == ReportState::Merged;
        let earns = |source: GrantSource, amount: Decimal, at: Timestamp| {
            Earned::Grant(Earn {
                community,
                setup: setup.clone(),
                position: event.position,
                resident,
                source,
                amount,
                grid,
                at,
            })
        };
        Ok(match earning {
            Earning::Accepted(at) if !merged => vec![earns(accepted, accepted_points, at)],
            Earning::Resolved(at) => vec![earns(resolved, bonus, at)],
            Earning::Claimed(at) if !merged => {
                let mut earned = Vec::new();
                if was_accepted(report.state) {
                    earned.push(earns(accepted, accepted_points, at));
                }
                if matches!(report.state, ReportState::Confirmed | ReportState::Closed) {
                    earned.push(earns(resolved, bonus, at));
                }
                earned
            }
            Earning::Merged(original) => vec![Earned::Reversal(MergedReversal {
                community,
                position: event.position,
                resident,
                report: report_id,
                original,
            })],
            Earning::Accepted(_) | Earning::Claimed(_) => Vec::new(),
        })
    }

    /// A report folded from its stream's first events as the batch read
    /// them (read on if there are more), and whether a member of staff
    /// filed it.
    async fn report_and_filer(
        &self,
        community: CommunityId,
        report: ReportId,
        reports: &ReportStreams,
    ) -> AppResult<(Report, bool)> {
        let commands = self.desk.commands();
        let stream_id = report_stream(report.0);
        let read;
        let events = match reports.get(&stream_id) {
            Some(events) => events,
            None => {
                read = commands
                    .store()
                    .read_stream(community, &stream_id, 1, REPORT_EVENTS_READ)
                    .await?;
                &read
            }
        };
        let filed_as_staff = events.first().is_some_and(filed_as_staff);
        let mut loaded = Loaded::stored(Report::default(), 0);
        fold(&mut loaded, events)?;
        if events.len() as i64 == REPORT_EVENTS_READ {
            loaded = commands.load_from(community, &stream_id, loaded).await?;
        }
        // Folded here, shared with nothing: taken, not copied.
        Ok((Arc::unwrap_or_clone(loaded.state), filed_as_staff))
    }

    async fn follow_suggestion(
        &self,
        event: &RecordedEvent,
        setup: &Arc<Community>,
    ) -> AppResult<Vec<Earned>> {
        let SuggestionEvent::SuggestionAnswered { outcome, at, .. } =
            decode::<SuggestionEvent>(event)?
        else {
            return Ok(Vec::new());
        };
        let partly = match outcome {
            Outcome::Adopted => false,
            Outcome::PartlyAdopted => true,
            _ => return Ok(Vec::new()),
        };
        let community = event.community_id;
        let suggestion = SuggestionId(entity_id(event, "suggestion")?);
        let first = self
            .desk
            .commands()
            .store()
            .read_stream(community, &suggestion_stream(suggestion.0), 1, 1)
            .await?;
        let Some(SuggestionEvent::SuggestionSubmitted {
            submitter: Reporter::Resident(resident),
            site,
            ..
        }) = first
            .first()
            .map(|submitted| submitted.decode::<SuggestionEvent>())
            .transpose()?
        else {
            return Ok(Vec::new());
        };
        let as_staff = first.first().is_some_and(filed_as_staff);
        if !setup.points_rules.earns(resident, as_staff, None) {
            return Ok(Vec::new());
        }
        let rules = &setup.points_rules;
        let amount = if partly {
            rules.suggestion_partly_adopted
        } else {
            rules.suggestion_adopted
        };
        let grid = setup.sites.get(&site).map(|site| site.grid);
        Ok(vec![Earned::Grant(Earn {
            community,
            setup: setup.clone(),
            position: event.position,
            resident,
            source: GrantSource::SuggestionAdopted { suggestion, partly },
            amount,
            grid,
            at,
        })])
    }

    /// Queues a grant unless the wallet has seen this source already. The
    /// wallet is taken as this process keeps it, with the grants queued
    /// before this one: a grant of this batch that does not land fails the
    /// batch, which is then followed again.
    async fn queue(&self, earn: Earn) -> AppResult<Option<QueuedGrant>> {
        let Ok(amount) = Points::parse(earn.amount) else {
            // The rules give nothing for this.
            return Ok(None);
        };
        let wallet = self
            .desk
            .commands()
            .load_kept::<Wallet>(earn.community, &wallet_stream(earn.resident.0))
            .await?;
        if wallet.state.sources.contains_key(&earn.source.key()) {
            return Ok(None);
        }
        let meta = process_meta(
            earn.position,
            format!("{}:{}", earn.source.key(), earn.resident),
        );
        let request = GrantRequest {
            resident: earn.resident,
            source: earn.source,
            amount,
            by: None,
            grid: earn.grid,
            at: earn.at,
        };
        let grant = self
            .desk
            .prepare_grant(earn.community, &earn.setup, request)
            .await?;
        let queued = grant.queue(&self.desk, &meta, &[]).await?;
        Ok(Some((grant, meta, queued)))
    }

    async fn reverse_merged(&self, reversal: MergedReversal) -> AppResult<()> {
        let MergedReversal {
            community,
            position,
            resident,
            report,
            original,
        } = reversal;
        let wallet = self
            .desk
            .commands()
            .load::<Wallet>(community, &wallet_stream(resident.0))
            .await?;
        if wallet.state.reversed_reports.contains(&report) {
            return Ok(());
        }
        let meta = process_meta(position, format!("merged:{report}:{resident}"));
        self.desk
            .reverse(
                community,
                &meta,
                Reversal {
                    resident,
                    report,
                    by: None,
                    reason: ReversalReason::MergedDuplicate { original },
                },
                &[],
            )
            .await
            .map(drop)
    }
}

struct Earn {
    community: CommunityId,
    /// The community as it was read for this event.
    setup: Arc<Community>,
    position: i64,
    resident: PersonId,
    source: GrantSource,
    amount: Decimal,
    grid: Option<GridId>,
    at: Timestamp,
}

/// Whether the event that filed a report or suggestion was appended by
/// someone acting in a staff role (its metadata says who acted, and how).
fn filed_as_staff(submitted: &RecordedEvent) -> bool {
    submitted
        .metadata
        .get("actor_role")
        .is_some_and(|role| role != "citizen")
}

/// States a report reaches only after it was accepted.
fn was_accepted(state: ReportState) -> bool {
    use ReportState::*;
    matches!(
        state,
        Accepted | Assigned | Escalated | InProgress | Resolved | Confirmed | Closed
    )
}

fn process_meta(position: i64, key: String) -> RequestMeta {
    RequestMeta {
        request_id: format!("{NAME}-{position}"),
        client: Some(format!("{NAME}-process")),
        client_key: None,
        idempotency: Some(Idempotency::server(format!("{NAME}:{key}"))),
        actor: None,
        setup_version: None,
    }
}
