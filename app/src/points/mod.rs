//! The points economy's commands (docs/DESIGN.md §5). Each one changes several
//! streams of a community in one append: a grant the resident's wallet and
//! the budget; a redemption its own stream, the wallet and the gift. The
//! streams' expected versions make that safe under any concurrency: a
//! wallet never goes below zero, nor a gift's stock, nor the budget.

pub mod earning;
pub mod service;
pub mod sweeper;

use std::sync::Arc;

use domain::community::Community;
use domain::points::redemption::Placement;
use domain::points::wallet::ReversalReason;
use domain::points::{
    counter, Budget, BudgetCommand, Gift, GiftCommand, Grant, GrantSource, Redemption,
    RedemptionStatus, Wallet, WalletCommand, WalletEvent,
};
use domain::values::{
    Actor, CentreId, GiftId, GridId, PersonId, Points, RedemptionId, ReportId, Timestamp,
};
use domain::Decide;
use rust_decimal::Decimal;
use store::{AppendOutcome, CommunityId};

use crate::commands::{Commands, Decision, OnStreams, Queued, Ran, RequestMeta};
use crate::content::Prepared;
use crate::directory::Directory;
use crate::error::{AppError, AppResult};

pub use domain::streams::{
    gift as gift_stream, redemption as redemption_stream, wallet as wallet_stream,
    BUDGET as BUDGET_STREAM,
};

const MICROS_PER_MINUTE: i64 = 60_000_000;

/// A grant as asked for: the rest (budget, limits, expiry) is looked up.
pub struct GrantRequest {
    pub resident: PersonId,
    pub source: GrantSource,
    pub amount: Points,
    pub by: Option<Actor>,
    pub grid: Option<GridId>,
    pub at: Timestamp,
}

/// A grant looked up and ready to decide ([`PointsDesk::prepare_grant`]).
pub struct PreparedGrant {
    community: CommunityId,
    wallet_id: String,
    streams: [String; 2],
    daily_limit: Option<Decimal>,
    day: i32,
    expires_at: Option<Timestamp>,
    request: GrantRequest,
}

impl PreparedGrant {
    /// Decides and queues it; returns once it is queued, so grants queued
    /// one after another are planned in that order.
    pub async fn queue(
        &self,
        desk: &PointsDesk,
        meta: &RequestMeta,
        contents: &[Prepared],
    ) -> AppResult<Queued<WalletEvent>> {
        let decide = || self.decide(&desk.commands);
        desk.commands
            .queue_all(&self.command(meta, contents, decide))
            .await
    }

    /// Waits for a queued grant to land, deciding it again on a conflict.
    pub async fn land(
        &self,
        desk: &PointsDesk,
        meta: &RequestMeta,
        contents: &[Prepared],
        queued: Queued<WalletEvent>,
    ) -> AppResult<Ran<WalletEvent>> {
        let decide = || self.decide(&desk.commands);
        desk.commands
            .land_all(&self.command(meta, contents, decide), queued)
            .await
    }

    /// The grant as a command on the budget's and the wallet's streams.
    fn command<'a, F>(
        &'a self,
        meta: &'a RequestMeta,
        contents: &'a [Prepared],
        decide: F,
    ) -> OnStreams<'a, F> {
        OnStreams {
            community: self.community,
            streams: &self.streams,
            meta,
            contents,
            decide,
        }
    }

    async fn decide(&self, commands: &Commands) -> AppResult<Decision<WalletEvent>> {
        let (community, request) = (self.community, &self.request);
        let wallet = commands
            .load_kept::<Wallet>(community, &self.wallet_id)
            .await?;
        let budget = commands
            .load_kept::<Budget>(community, BUDGET_STREAM)
            .await?;
        let grant = Grant {
            source: request.source.clone(),
            amount: request.amount,
            by: request.by,
            grid: request.grid,
            budget_available: budget.state.balance,
            daily_limit: self.daily_limit,
            day: self.day,
            expires_at: self.expires_at,
            at: request.at,
        };
        let event = wallet.state.decide(WalletCommand::Grant(Box::new(grant)))?;
        let mut decision = Decision::new(event.clone()).with(&self.wallet_id, &wallet, &event)?;
        if let WalletEvent::PointsGranted { amount, .. } = &event {
            let issued = budget.state.decide(BudgetCommand::Issue {
                resident: request.resident,
                source: request.source.clone(),
                amount: *amount,
                at: request.at,
            })?;
            decision = decision.with(BUDGET_STREAM, &budget, &issued)?;
        }
        Ok(decision)
    }
}

/// Taking back what a report earned a resident.
pub struct Reversal {
    pub resident: PersonId,
    pub report: ReportId,
    /// The admin; none for the earning process (merged duplicates).
    pub by: Option<Actor>,
    pub reason: ReversalReason,
}

pub struct PlaceRequest {
    pub redemption: RedemptionId,
    pub resident: PersonId,
    pub gift: GiftId,
    pub quantity: u32,
    pub by: Actor,
    /// The clerk's centre; none for an admin, who may serve any counter.
    pub centre: Option<CentreId>,
}

pub use domain::points::counter::Finish;

#[derive(Clone)]
pub struct PointsDesk {
    commands: Commands,
    directory: Directory,
}

impl PointsDesk {
    pub fn new(commands: Commands, directory: Directory) -> Self {
        PointsDesk {
            commands,
            directory,
        }
    }

    pub fn commands(&self) -> &Commands {
        &self.commands
    }

    pub async fn community(&self, community: CommunityId) -> AppResult<std::sync::Arc<Community>> {
        self.directory.community(&self.commands, community).await
    }

    pub async fn fund(
        &self,
        community: CommunityId,
        meta: &RequestMeta,
        by: Actor,
        amount: Points,
        note: Prepared,
    ) -> AppResult<AppendOutcome> {
        self.community(community).await?;
        let at = self.commands.clock().now();
        let hash = note.hash.clone();
        let (outcome, _) = self
            .commands
            .execute::<Budget>(community, BUDGET_STREAM, meta, &[note], |_| {
                Ok(BudgetCommand::Fund {
                    by,
                    amount,
                    note: hash.clone(),
                    at,
                })
            })
            .await?;
        Ok(outcome)
    }

    /// Grants points to a wallet from the budget, once per source. An
    /// automatic grant that cannot be made is recorded as withheld.
    pub async fn grant(
        &self,
        community: CommunityId,
        meta: &RequestMeta,
        request: GrantRequest,
        contents: &[Prepared],
    ) -> AppResult<Ran<WalletEvent>> {
        let setup = self.community(community).await?;
        let grant = self.prepare_grant(community, &setup, request).await?;
        let queued = grant.queue(self, meta, contents).await?;
        grant.land(self, meta, contents, queued).await
    }

    /// A grant with what it is decided on looked up (`setup` is the
    /// community as the caller read it): ready to be queued with
    /// [`PreparedGrant::queue`] and waited for with [`PreparedGrant::land`].
    pub async fn prepare_grant(
        &self,
        community: CommunityId,
        setup: &Community,
        request: GrantRequest,
    ) -> AppResult<PreparedGrant> {
        let rules = &setup.points_rules;
        let day = self
            .commands
            .store()
            .local_day(crate::calendar::zone_of(setup), request.at.micros())
            .await?;
        let expires_at = rules
            .expiry_days
            .map(|days| request.at.plus_hours(days * 24));
        let wallet_id = wallet_stream(request.resident.0);
        Ok(PreparedGrant {
            community,
            streams: [BUDGET_STREAM.to_string(), wallet_id.clone()],
            wallet_id,
            daily_limit: rules.daily_limit,
            day,
            expires_at,
            request,
        })
    }

    /// What a wallet command did, also when it ran before: a retry is
    /// answered with the wallet event its first run appended.
    pub async fn wallet_outcome(
        &self,
        community: CommunityId,
        ran: Ran<WalletEvent>,
    ) -> AppResult<(AppendOutcome, WalletEvent)> {
        let outcome = match ran {
            Ran::Appended(outcome, event) => return Ok((outcome, event)),
            Ran::Repeated(outcome) => outcome,
        };
        let count = outcome.last_position - outcome.first_position + 1;
        let events = self
            .commands
            .store()
            .read_log(community, outcome.first_position, count)
            .await?;
        let wallet_event = events
            .iter()
            .find(|event| {
                projections::runner::kind(event) == Some(domain::streams::StreamKind::Wallet)
            })
            .ok_or_else(crate::idempotency::reused)?;
        Ok((outcome, wallet_event.decode::<WalletEvent>()?))
    }

    /// One command on a wallet alone (expiry, reversal).
    pub async fn on_wallet(
        &self,
        community: CommunityId,
        meta: &RequestMeta,
        resident: PersonId,
        contents: &[Prepared],
        command: impl Fn(&Wallet) -> AppResult<WalletCommand>,
    ) -> AppResult<Ran<WalletEvent>> {
        let wallet_id = wallet_stream(resident.0);
        let commands = &self.commands;
        let command = &command;
        self.commands
            .execute_all(
                community,
                std::slice::from_ref(&wallet_id),
                meta,
                contents,
                || async {
                    let wallet = commands.load_kept::<Wallet>(community, &wallet_id).await?;
                    let event = wallet.state.decide(command(&wallet.state)?)?;
                    Decision::new(event.clone()).with(&wallet_id, &wallet, &event)
                },
            )
            .await
    }

    pub async fn reverse(
        &self,
        community: CommunityId,
        meta: &RequestMeta,
        reversal: Reversal,
        contents: &[Prepared],
    ) -> AppResult<Ran<WalletEvent>> {
        let at = self.commands.clock().now();
        self.on_wallet(community, meta, reversal.resident, contents, |_| {
            Ok(WalletCommand::Reverse {
                report: reversal.report,
                by: reversal.by,
                reason: reversal.reason.clone(),
                at,
            })
        })
        .await
    }

    /// Places a redemption: holds the resident's points and the gift's
    /// stock, both or neither. `setup` is the community as the caller
    /// loaded it (for its hold period).
    pub async fn place(
        &self,
        community: CommunityId,
        meta: &RequestMeta,
        setup: &Community,
        request: PlaceRequest,
    ) -> AppResult<Ran<Placement>> {
        let at = self.commands.clock().now();
        let expires_at = Timestamp::from_micros(
            at.micros() + i64::from(setup.points_rules.hold_minutes) * MICROS_PER_MINUTE,
        );
        let redemption_id = redemption_stream(request.redemption.0);
        let wallet_id = wallet_stream(request.resident.0);
        let gift_id = gift_stream(request.gift.0);
        let streams = [redemption_id.clone(), wallet_id.clone(), gift_id.clone()];
        let commands = &self.commands;
        commands.mint::<Redemption>(community, &redemption_id);
        let request = &request;
        self.commands
            .execute_all(community, &streams, meta, &[], || async {
                let gift = commands.load_kept::<Gift>(community, &gift_id).await?;
                let centre = offered_at(&gift.state, request.centre)?;
                let points = Points::parse(gift.state.price * Decimal::from(request.quantity))?;
                let placement = Placement {
                    redemption: request.redemption,
                    resident: request.resident,
                    gift: request.gift,
                    centre,
                    quantity: request.quantity,
                    points: points.amount(),
                    by: request.by,
                    expires_at,
                    at,
                };
                let redemption = commands
                    .load_kept::<Redemption>(community, &redemption_id)
                    .await?;
                let wallet = commands.load_kept::<Wallet>(community, &wallet_id).await?;
                let decided = counter::place(
                    &redemption.state,
                    &wallet.state,
                    &gift.state,
                    placement.clone(),
                )?;
                Decision::new(placement)
                    .with(&redemption_id, &redemption, &decided.redemption)?
                    .with(&wallet_id, &wallet, &decided.wallet)?
                    .with(&gift_id, &gift, &decided.gift)
            })
            .await
    }

    /// A redemption as stored, with its status.
    pub async fn redemption(
        &self,
        community: CommunityId,
        redemption: RedemptionId,
    ) -> AppResult<(RedemptionStatus, Placement)> {
        let loaded = self
            .commands
            .load::<Redemption>(community, &redemption_stream(redemption.0))
            .await?;
        match &loaded.state.placement {
            Some(placement) => Ok((loaded.state.status, placement.clone())),
            None => Err(AppError::not_found(format!("redemption {redemption}"))),
        }
    }

    /// A redemption's placement (which never changes once placed) as this
    /// process keeps it after its last write, or else as stored.
    pub async fn placement_kept(
        &self,
        community: CommunityId,
        redemption: RedemptionId,
    ) -> AppResult<Placement> {
        let kept = self
            .commands
            .load_kept::<Redemption>(community, &redemption_stream(redemption.0))
            .await?;
        kept.state
            .placement
            .clone()
            .ok_or_else(|| AppError::not_found(format!("redemption {redemption}")))
    }

    /// Completes, cancels or releases a placed redemption: the wallet's
    /// points are redeemed or released with the gift's stock.
    pub async fn finish(
        &self,
        community: CommunityId,
        meta: &RequestMeta,
        redemption: RedemptionId,
        finish: Finish,
        centre: Option<CentreId>,
    ) -> AppResult<Ran<RedemptionStatus>> {
        // A placement never changes: what this process kept of it will do.
        let kept = self
            .commands
            .load_kept::<Redemption>(community, &redemption_stream(redemption.0))
            .await?;
        let Some(placement) = kept.state.placement.clone() else {
            return Err(AppError::not_found(format!("redemption {redemption}")));
        };
        if centre.is_some_and(|centre| centre != placement.centre) {
            return Err(AppError::forbidden(
                "the redemption was placed at another centre",
            ));
        }
        let at = self.commands.clock().now();
        let redemption_id = redemption_stream(redemption.0);
        let wallet_id = wallet_stream(placement.resident.0);
        let gift_id = gift_stream(placement.gift.0);
        let streams = [redemption_id.clone(), wallet_id.clone(), gift_id.clone()];
        let commands = &self.commands;
        self.commands
            .execute_all(community, &streams, meta, &[], || async {
                let loaded = commands
                    .load_kept::<Redemption>(community, &redemption_id)
                    .await?;
                let wallet = commands.load_kept::<Wallet>(community, &wallet_id).await?;
                let gift = commands.load_kept::<Gift>(community, &gift_id).await?;
                let decided =
                    counter::finish(&loaded.state, &wallet.state, &gift.state, finish, at)?;
                let mut after = Redemption::clone(&loaded.state);
                cqrs_es::Aggregate::apply(&mut after, decided.redemption.clone());
                Decision::new(after.status)
                    .with(&redemption_id, &loaded, &decided.redemption)?
                    .with(&wallet_id, &wallet, &decided.wallet)?
                    .with(&gift_id, &gift, &decided.gift)
            })
            .await
    }

    /// A command on a gift, by an admin or a clerk of its centre.
    pub async fn on_gift(
        &self,
        community: CommunityId,
        meta: &RequestMeta,
        gift: GiftId,
        centre: Option<CentreId>,
        contents: &[Prepared],
        command: impl Fn(&Gift) -> AppResult<GiftCommand>,
    ) -> AppResult<(AppendOutcome, Arc<Gift>)> {
        self.community(community).await?;
        self.commands
            .execute::<Gift>(community, &gift_stream(gift.0), meta, contents, |state| {
                let command = command(state)?;
                if !matches!(command, GiftCommand::Offer { .. }) {
                    offered_at(state, centre)?;
                }
                Ok(command)
            })
            .await
    }
}

/// The centre a gift is offered at, which must be the clerk's own.
fn offered_at(gift: &Gift, clerk_centre: Option<CentreId>) -> AppResult<CentreId> {
    let Some(centre) = gift.centre.filter(|_| gift.offered) else {
        return Err(AppError::not_found("gift"));
    };
    if clerk_centre.is_some_and(|clerk| clerk != centre) {
        return Err(AppError::forbidden("the gift is offered at another centre"));
    }
    Ok(centre)
}
