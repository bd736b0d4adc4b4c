//! Residents' wallets: grants by hand and for volunteer service,
//! reversals of fraudulent reports' points, and a wallet with its
//! statement.

use crate::error::{ApiError, ApiResult};
use crate::graphql::points::*;
use crate::graphql::types::*;
use crate::graphql::{amount, app, decimal, fresh, page_size, request, viewer};
use app::clock::to_datetime;
use app::points::service::Granted;
use app::points::wallet_stream;
use async_graphql::connection::{Connection, Edge};
use async_graphql::{ComplexObject, Context, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use domain::points::wallet::ReversalReason;
use domain::points::{GrantSource, Wallet, WalletEvent};
use domain::values::{ContentHash, GridId, PersonId, ReportId, Role};
use projections::points::StatementLine;
use rust_decimal::Decimal;
use std::sync::{Arc, OnceLock};
use store::CommunityId;
use uuid::Uuid;

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct WalletNode {
    pub resident_id: Uuid,
    /// Everything in the wallet, held points included (decimal strings).
    pub balance: String,
    /// Held for redemptions placed and not yet completed.
    pub held: String,
    /// What can be redeemed now.
    pub available: String,
    /// Granted, less what was reversed.
    pub earned: String,
    pub redeemed: String,
    #[graphql(skip)]
    community_id: Uuid,
    #[graphql(skip)]
    statement_visible: bool,
    /// The position the wallet was read at least as fresh as, which its
    /// statement is read as fresh as too.
    #[graphql(skip)]
    fresh_from: Option<i64>,
}

#[derive(SimpleObject)]
pub struct ExpiringPoints {
    pub at: DateTime<Utc>,
    pub amount: String,
}

/// A line of a statement: one event of the wallet. Its fields are made
/// when asked for, from the page kept for it: a statement is read far more
/// often than its lines' every field is wanted.
pub struct StatementLineNode {
    lines: Arc<Vec<StatementLine>>,
    index: usize,
    community_id: Uuid,
    described: OnceLock<Described>,
}

/// What a line's event says, beyond its amounts.
#[derive(Default)]
struct Described {
    reason: String,
    withheld_reason: Option<String>,
    report_id: Option<Uuid>,
    suggestion_id: Option<Uuid>,
    redemption_id: Option<Uuid>,
    grant_id: Option<Uuid>,
    hours: Option<String>,
    shortfall: Option<String>,
    by: Option<Uuid>,
    /// The hash of the admin's note, when it has one.
    note: Option<ContentHash>,
}

/// A line of a statement: one event of the wallet.
#[Object]
impl StatementLineNode {
    async fn position(&self) -> i64 {
        self.line().position
    }

    /// granted, withheld, held, released, redeemed, expired, reversed
    async fn kind(&self) -> &str {
        &self.line().kind
    }

    async fn amount(&self) -> String {
        super::amount(self.line().amount)
    }

    /// The running balance after this line.
    async fn balance(&self) -> String {
        super::amount(self.line().balance)
    }

    async fn held(&self) -> String {
        super::amount(self.line().held)
    }

    async fn available(&self) -> String {
        super::amount(self.line().balance - self.line().held)
    }

    /// What the points were for: report_accepted, report_resolved,
    /// suggestion_adopted, volunteer_service, manual, redemption, expiry,
    /// fraudulent, merged_duplicate.
    async fn reason(&self) -> &str {
        &self.described().reason
    }

    /// Why a grant was withheld: daily_limit, budget_exhausted, report_reversed.
    async fn withheld_reason(&self) -> Option<&str> {
        self.described().withheld_reason.as_deref()
    }

    async fn report_id(&self) -> Option<Uuid> {
        self.described().report_id
    }

    async fn suggestion_id(&self) -> Option<Uuid> {
        self.described().suggestion_id
    }

    async fn redemption_id(&self) -> Option<Uuid> {
        self.described().redemption_id
    }

    /// The gift a redemption's line is for.
    async fn gift_id(&self) -> Option<Uuid> {
        self.line().gift.as_ref().map(|(id, _)| *id)
    }

    async fn gift_name(&self) -> Option<&str> {
        self.line().gift.as_ref().map(|(_, name)| name.as_str())
    }

    /// The admin's reason, for a manual grant or a fraudulent report's
    /// reversal (none once erased).
    async fn note(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let Some(hash) = &self.described().note else {
            return Ok(None);
        };
        let store = app(ctx).commands.store();
        let community = CommunityId::new(self.community_id);
        Ok(app::content::text_of(store, community, hash.as_str()).await?)
    }

    async fn grant_id(&self) -> Option<Uuid> {
        self.described().grant_id
    }

    async fn hours(&self) -> Option<&str> {
        self.described().hours.as_deref()
    }

    /// What a reversal could not take back.
    async fn shortfall(&self) -> Option<&str> {
        self.described().shortfall.as_deref()
    }

    /// The admin or staff member behind it; none for automatic lines.
    async fn by(&self) -> Option<Uuid> {
        self.described().by
    }

    async fn at(&self) -> DateTime<Utc> {
        to_datetime(self.line().at)
    }
}

impl StatementLineNode {
    fn line(&self) -> &StatementLine {
        &self.lines[self.index]
    }

    fn described(&self) -> &Described {
        self.described.get_or_init(|| describe(&self.line().detail))
    }
}

#[ComplexObject]
impl WalletNode {
    /// What expires when, soonest first (none where points never expire):
    /// the remainders of the wallet's grants that carry an expiry, spent
    /// oldest grant first, added up per moment.
    async fn expiring(&self, ctx: &Context<'_>) -> ApiResult<Vec<ExpiringPoints>> {
        let app = app(ctx);
        let community = CommunityId::new(self.community_id);
        let pool = app.commands.store().pool();
        let due = match projections::points::expiring(pool, community, self.resident_id).await? {
            Some(due) => due,
            None => app
                .commands
                .load::<Wallet>(community, &wallet_stream(self.resident_id))
                .await?
                .state
                .expiring()
                .into_iter()
                .map(|(at, amount)| (at.micros(), amount))
                .collect(),
        };
        Ok(due
            .into_iter()
            .map(|(at, amount)| ExpiringPoints {
                at: to_datetime(at),
                amount: super::amount(amount),
            })
            .collect())
    }

    /// The wallet's lines, newest first; `after` is a position from a
    /// previous page.
    async fn statement(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, StatementLineNode>> {
        if !self.statement_visible {
            return Err(ApiError::forbidden("clerks see a wallet's balance only"));
        }
        let limit = page_size(first)?;
        let before = after
            .as_deref()
            .map(|cursor| {
                cursor
                    .parse::<i64>()
                    .map_err(|_| ApiError::validation("after: not a cursor this list gave"))
            })
            .transpose()?;
        let community = CommunityId::new(self.community_id);
        let lines = projections::points::statement(
            &app(ctx).reads,
            community,
            self.resident_id,
            (before, limit + 1),
            self.fresh_from,
        )
        .await?;
        let has_next = lines.len() as i64 > limit;
        let mut connection = Connection::new(before.is_some(), has_next);
        for index in 0..lines.len().min(limit as usize) {
            let node = StatementLineNode {
                lines: lines.clone(),
                index,
                community_id: self.community_id,
                described: OnceLock::new(),
            };
            connection
                .edges
                .push(Edge::new(lines[index].position.to_string(), node));
        }
        Ok(connection)
    }
}

/// What a statement line's event says, beyond its amounts.
fn describe(event: &WalletEvent) -> Described {
    let mut node = Described::default();
    match event {
        WalletEvent::PointsGranted { source, by, .. } => {
            node.by = by.as_ref().map(|by| by.person.0);
            describe_source(&mut node, source);
            if let GrantSource::Manual { reason, .. } = source {
                node.note = Some(reason.clone());
            }
        }
        WalletEvent::GrantWithheld {
            source, reason, by, ..
        } => {
            node.by = by.as_ref().map(|by| by.person.0);
            node.withheld_reason = Some(name_of(*reason));
            describe_source(&mut node, source);
        }
        WalletEvent::PointsHeld { redemption, .. }
        | WalletEvent::HoldReleased { redemption, .. }
        | WalletEvent::PointsRedeemed { redemption, .. } => {
            node.reason = "redemption".into();
            node.redemption_id = Some(redemption.0);
        }
        WalletEvent::PointsExpired { .. } => node.reason = "expiry".into(),
        WalletEvent::PointsReversed {
            report,
            shortfall,
            reason,
            by,
            ..
        } => {
            node.report_id = Some(report.0);
            node.shortfall = Some(super::amount(*shortfall));
            node.by = by.as_ref().map(|by| by.person.0);
            node.reason = match reason {
                ReversalReason::Fraudulent { note: hash } => {
                    node.note = Some(hash.clone());
                    "fraudulent".into()
                }
                ReversalReason::MergedDuplicate { .. } => "merged_duplicate".into(),
            };
        }
    }
    node
}

fn describe_source(node: &mut Described, source: &GrantSource) {
    node.reason = source.kind().to_string();
    match source {
        GrantSource::ReportAccepted { report } | GrantSource::ReportResolved { report } => {
            node.report_id = Some(report.0)
        }
        GrantSource::SuggestionAdopted { suggestion, .. } => {
            node.suggestion_id = Some(suggestion.0)
        }
        GrantSource::VolunteerService { service, hours } => {
            node.grant_id = Some(service.0);
            node.hours = Some(super::amount(*hours));
        }
        GrantSource::Manual { grant, .. } => node.grant_id = Some(grant.0),
    }
}

/// What a grant did.
#[derive(SimpleObject)]
pub struct GrantPayload {
    pub grant_id: ID,
    pub position: i64,
    /// What was granted: a decimal string ("0" when withheld).
    pub amount: String,
    /// Why nothing was granted, when it was withheld.
    pub withheld: Option<String>,
    /// The wallet's balance after it.
    pub balance: String,
}

/// What a reversal took back.
#[derive(SimpleObject)]
pub struct ReversalPayload {
    pub resident_id: Uuid,
    pub position: i64,
    pub amount: String,
    /// What could not be taken back (spent or held already).
    pub shortfall: String,
    pub balance: String,
}

fn grant_payload(granted: Granted) -> GrantPayload {
    let (granted_amount, withheld) = match &granted.event {
        WalletEvent::GrantWithheld { reason, .. } => ("0".to_string(), Some(name_of(*reason))),
        WalletEvent::PointsGranted { amount: given, .. } => (amount(*given), None),
        _ => ("0".to_string(), None),
    };
    GrantPayload {
        grant_id: ID(granted.grant.0.to_string()),
        position: granted.position,
        amount: granted_amount,
        withheld,
        balance: amount(granted.event.balance_and_held().0),
    }
}

#[derive(Default)]
pub struct WalletQuery;

#[Object]
impl WalletQuery {
    /// A wallet: a resident's own, or any resident's for admins and
    /// auditors; clerks see the balance at their counter, not the
    /// statement. Read from the ledger's read model, as fresh as its last
    /// folded batch; `atLeast` waits for the earning process and the ledger
    /// to have caught up with that position (e.g. a report's acceptance,
    /// or a grant's own position).
    async fn wallet(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        resident_id: Option<Uuid>,
        at_least: Option<i64>,
    ) -> ApiResult<WalletNode> {
        let claims = viewer(ctx).member_of(community_id)?;
        let resident = resident_id.unwrap_or(claims.sub);
        let statement_visible = match claims.role {
            Role::Admin | Role::Auditor => true,
            Role::Clerk => false,
            _ if resident == claims.sub => true,
            _ => return Err(ApiError::forbidden("residents see their own wallet only")),
        };
        let app = app(ctx);
        let community = CommunityId::new(community_id);
        let mut fresh_from = None;
        if let Some(position) = at_least {
            fresh(
                ctx,
                app::points::earning::NAME,
                community_id,
                Some(position),
            )
            .await?;
            // Every grant the earning process made for what came before
            // `position` is in the wallet's stream now: the ledger must have
            // folded the stream's last event (not the whole log's head).
            fresh_from = app
                .commands
                .store()
                .stream_last_position(community, &wallet_stream(resident))
                .await?;
            fresh(ctx, projections::points::NAME, community_id, fresh_from).await?;
        }
        let row = projections::points::wallet(&app.reads, community, resident, fresh_from).await?;
        let zero = Decimal::ZERO;
        let (balance, held, earned, redeemed) = row
            .as_ref()
            .as_ref()
            .map_or((zero, zero, zero, zero), |row| {
                (row.balance, row.held, row.earned, row.redeemed)
            });
        Ok(WalletNode {
            resident_id: resident,
            balance: super::amount(balance),
            held: super::amount(held),
            available: super::amount(balance - held),
            earned: super::amount(earned),
            redeemed: super::amount(redeemed),
            community_id,
            statement_visible,
            fresh_from,
        })
    }
}

#[derive(Default)]
pub struct WalletMutation;

#[Object]
impl WalletMutation {
    /// Grants points to a resident by hand, with a reason.
    async fn grant_points(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        resident_id: Uuid,
        #[graphql(
            desc = "A decimal string: 1 to 10 digits, optionally a point and 1 or 2 digits (12, 12.5, 12.50; no sign, exponent or underscore), more than 0, at most a billion."
        )]
        amount: String,
        reason: String,
    ) -> ApiResult<GrantPayload> {
        let amount = points("amount", &amount)?;
        let granted = app(ctx)
            .grant_points(
                &request(ctx),
                community_id,
                PersonId(resident_id),
                amount,
                &reason,
            )
            .await?;
        Ok(grant_payload(granted))
    }

    /// Records hours of volunteer service; they earn the community's rate
    /// per hour (rounded to cents) and count on the volunteer leaderboard.
    async fn record_volunteer_service(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        resident_id: Uuid,
        hours: String,
        grid_id: Option<Uuid>,
    ) -> ApiResult<GrantPayload> {
        let hours = decimal("hours", &hours)?;
        let granted = app(ctx)
            .record_volunteer_service(
                &request(ctx),
                community_id,
                PersonId(resident_id),
                hours,
                grid_id.map(GridId),
            )
            .await?;
        Ok(grant_payload(granted))
    }

    /// Takes back the points a report earned, found fraudulent, as far as
    /// the reporter's available points allow; the rest is recorded as a
    /// shortfall. The report earns nothing more.
    async fn reverse_report_points(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        reason: String,
    ) -> ApiResult<ReversalPayload> {
        let reversed = app(ctx)
            .reverse_report_points(&request(ctx), community_id, ReportId(report_id), &reason)
            .await?;
        Ok(ReversalPayload {
            resident_id: reversed.resident.0,
            position: reversed.position,
            amount: amount(reversed.amount),
            shortfall: amount(reversed.shortfall),
            balance: amount(reversed.balance),
        })
    }
}
