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

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use domain::points::wallet::ReversalReason;
use domain::points::{GrantSource, Wallet};
use domain::report::{Report, ReportEvent, ReportState, Reporter};
use domain::streams::StreamKind;
use domain::suggestion::{Outcome, SuggestionEvent};
use domain::values::{GridId, PersonId, Points, ReportId, SuggestionId, Timestamp};
use projections::runner::{decode, entity_id};
use projections::{Change, Projection, ProjectionError};
use rust_decimal::Decimal;
use store::{CommunityId, RecordedEvent};

use super::{wallet_stream, GrantRequest, PointsDesk, Reversal};
use crate::commands::{report_stream, suggestion_stream, RequestMeta};
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

    /// No read model: what it does lands in the log.
    fn tables_sql(&self) -> String {
        String::new()
    }

    /// Event by event: each grant is its own command.
    async fn apply_batch(
        &self,
        _transaction: &Transaction<'_>,
        _schema: &str,
        events: &[RecordedEvent],
        _changes: &mut Vec<Change>,
    ) -> Result<(), ProjectionError> {
        for event in events {
            let followed = match projections::runner::kind(event) {
                Some(StreamKind::Report) => self.follow_report(event).await,
                Some(StreamKind::Suggestion) => self.follow_suggestion(event).await,
                _ => Ok(()),
            };
            followed.map_err(|error: AppError| ProjectionError::Process {
                process: NAME,
                position: event.position,
                reason: error.describe(),
            })?;
        }
        Ok(())
    }
}

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
    async fn follow_report(&self, event: &RecordedEvent) -> AppResult<()> {
        let earning = match decode::<ReportEvent>(event)? {
            ReportEvent::ReportAccepted { at, .. } => Earning::Accepted(at),
            ReportEvent::ReportConfirmed { at, .. } => Earning::Resolved(at),
            ReportEvent::ReportClaimed { at, .. } => Earning::Claimed(at),
            ReportEvent::ReportMerged { original, .. } => Earning::Merged(original),
            _ => return Ok(()),
        };
        let community = event.community_id;
        let report_id = ReportId(entity_id(event, "report")?);
        let report = self
            .desk
            .commands()
            .load::<Report>(community, &report_stream(report_id.0))
            .await?
            .state;
        let Some(submission) = report.submission.as_deref() else {
            return Ok(());
        };
        // Anonymous reporters earn nothing until they claim the report.
        let Reporter::Resident(resident) = submission.reporter else {
            return Ok(());
        };
        let setup = self.desk.community(community).await?;
        let submitted = self
            .desk
            .commands()
            .store()
            .read_stream(community, &report_stream(report_id.0), 1, 1)
            .await?;
        let filed_as_staff = submitted.first().is_some_and(filed_as_staff);
        if !setup
            .points_rules
            .earns(resident, filed_as_staff, report.accepted_by)
        {
            return Ok(());
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
        let earns = |source: GrantSource, amount: Decimal, at: Timestamp| Earn {
            community,
            position: event.position,
            resident,
            source,
            amount,
            grid,
            at,
        };
        match earning {
            Earning::Accepted(at) if !merged => {
                self.earn(earns(accepted, accepted_points, at)).await
            }
            Earning::Resolved(at) => self.earn(earns(resolved, bonus, at)).await,
            Earning::Claimed(at) if !merged => {
                if was_accepted(report.state) {
                    self.earn(earns(accepted, accepted_points, at)).await?;
                }
                if matches!(report.state, ReportState::Confirmed | ReportState::Closed) {
                    self.earn(earns(resolved, bonus, at)).await?;
                }
                Ok(())
            }
            Earning::Merged(original) => {
                self.reverse_merged(community, event.position, resident, report_id, original)
                    .await
            }
            Earning::Accepted(_) | Earning::Claimed(_) => Ok(()),
        }
    }

    async fn follow_suggestion(&self, event: &RecordedEvent) -> AppResult<()> {
        let SuggestionEvent::SuggestionAnswered { outcome, at, .. } =
            decode::<SuggestionEvent>(event)?
        else {
            return Ok(());
        };
        let partly = match outcome {
            Outcome::Adopted => false,
            Outcome::PartlyAdopted => true,
            _ => return Ok(()),
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
            return Ok(());
        };
        let setup = self.desk.community(community).await?;
        let as_staff = first.first().is_some_and(filed_as_staff);
        if !setup.points_rules.earns(resident, as_staff, None) {
            return Ok(());
        }
        let rules = &setup.points_rules;
        let amount = if partly {
            rules.suggestion_partly_adopted
        } else {
            rules.suggestion_adopted
        };
        self.earn(Earn {
            community,
            position: event.position,
            resident,
            source: GrantSource::SuggestionAdopted { suggestion, partly },
            amount,
            grid: setup.sites.get(&site).map(|site| site.grid),
            at,
        })
        .await
    }

    /// Grants unless the wallet has seen this source already.
    async fn earn(&self, earn: Earn) -> AppResult<()> {
        let Ok(amount) = Points::parse(earn.amount) else {
            // The rules give nothing for this.
            return Ok(());
        };
        let wallet = self
            .desk
            .commands()
            .load::<Wallet>(earn.community, &wallet_stream(earn.resident.0))
            .await?;
        if wallet.state.sources.contains_key(&earn.source.key()) {
            return Ok(());
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
        self.desk
            .grant(earn.community, &meta, request, &[])
            .await
            .map(drop)
    }

    async fn reverse_merged(
        &self,
        community: CommunityId,
        position: i64,
        resident: PersonId,
        report: ReportId,
        original: ReportId,
    ) -> AppResult<()> {
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
