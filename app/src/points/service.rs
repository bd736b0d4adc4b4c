//! The points economy as callers ask for it: who may do what (admins fund,
//! grant, reverse and offer gifts; staff record volunteer service; clerks
//! keep their centre's stock and work its counter, and cannot grant), on
//! top of the `PointsDesk`'s commands.

use domain::points::redemption::Placement;
use domain::points::wallet::ReversalReason;
use domain::points::{GiftCommand, GrantSource, RedemptionStatus, WalletEvent};
use domain::report::{Report, Reporter};
use domain::values::{
    Actor, CentreId, ContentHash, GiftId, GrantId, GridId, PersonId, Points, RedemptionId,
    ReportId, Role, Timestamp,
};
use rust_decimal::Decimal;
use store::CommunityId;
use uuid::Uuid;

use super::{Finish, GrantRequest, PlaceRequest, Reversal};
use crate::caller::Claims;
use crate::commands::{report_stream, Ran, RequestMeta};
use crate::content;
use crate::directory::{counter_centre, staff_scope};
use crate::error::{AppError, AppResult};
use crate::idempotency::{self, Idempotency};
use crate::services::{Request, Services};

/// The most hours one record of volunteer service may hold.
const SERVICE_HOURS_MAX: u32 = 24;

/// What a grant did: the wallet's event (granted, or withheld and why).
#[derive(Clone, Debug)]
pub struct Granted {
    pub grant: GrantId,
    pub position: i64,
    pub event: WalletEvent,
}

/// What a reversal took back, and what it could not.
#[derive(Clone, Debug)]
pub struct Reversed {
    pub resident: PersonId,
    pub position: i64,
    pub amount: Decimal,
    pub shortfall: Decimal,
    pub balance: Decimal,
}

/// A redemption as the counter sees it after a step.
#[derive(Clone, Debug)]
pub struct CounterOutcome {
    pub placement: Placement,
    pub status: RedemptionStatus,
    pub position: i64,
    /// True when this answers a retry with the first outcome.
    pub replayed: bool,
}

/// A change to a gift's stock, with its reason.
#[derive(Clone, Copy, Debug)]
pub enum StockChange {
    /// Stock delivered to the centre.
    Add(u32),
    /// What was counted on the shelf.
    Correct(u32),
}

/// The counter's second step.
#[derive(Clone, Copy, Debug)]
pub enum FinishKind {
    /// The gift was handed over: the held points are redeemed.
    Complete,
    /// The resident changed their mind: points and stock are released.
    Cancel,
}

impl Services {
    /// The caller with one of `roles`, and the request's meta as theirs.
    fn acting(
        &self,
        request: &Request,
        community_id: Uuid,
        roles: &[Role],
    ) -> AppResult<(Claims, RequestMeta)> {
        let claims = request.viewer.with_role(community_id, roles)?.clone();
        let mut meta = request.meta.clone();
        meta.actor = Some(claims.actor());
        Ok((claims, meta))
    }

    /// Adds points to the community's budget (its issuing account).
    pub async fn fund_budget(
        &self,
        request: &Request,
        community_id: Uuid,
        amount: Points,
        note: &str,
    ) -> AppResult<i64> {
        let (claims, meta) = self.acting(request, community_id, &[Role::Admin])?;
        let note = content::prepare_text(note, self.retry_seed(&meta, "note"))?;
        let outcome = self
            .points
            .fund(
                CommunityId::new(community_id),
                &meta,
                claims.actor(),
                amount,
                note,
            )
            .await?;
        Ok(outcome.last_position)
    }

    /// Grants points to a resident by hand, with a reason.
    pub async fn grant_points(
        &self,
        request: &Request,
        community_id: Uuid,
        resident: PersonId,
        amount: Points,
        reason: &str,
    ) -> AppResult<Granted> {
        let (claims, meta) = self.acting(request, community_id, &[Role::Admin])?;
        let reason = content::prepare_text(reason, self.retry_seed(&meta, "reason"))?;
        let grant = GrantId(self.new_id(&meta, "grant"));
        let grant_request = GrantRequest {
            resident,
            source: GrantSource::Manual {
                grant,
                reason: reason.hash.clone(),
            },
            amount,
            by: Some(claims.actor()),
            grid: None,
            at: self.commands.clock().now(),
        };
        let community = CommunityId::new(community_id);
        let ran = self
            .points
            .grant(community, &meta, grant_request, &[reason])
            .await?;
        let (outcome, event) = self.points.wallet_outcome(community, ran).await?;
        granted(grant, outcome.last_position, event)
    }

    /// Records hours of volunteer service; they earn the community's rate
    /// per hour (rounded to cents). A grid worker records service in one of
    /// their grids.
    pub async fn record_volunteer_service(
        &self,
        request: &Request,
        community_id: Uuid,
        resident: PersonId,
        hours: Decimal,
        grid: Option<GridId>,
    ) -> AppResult<Granted> {
        let (claims, meta) =
            self.acting(request, community_id, &[Role::Admin, Role::GridWorker])?;
        if hours <= Decimal::ZERO || hours.scale() > 2 || hours > SERVICE_HOURS_MAX.into() {
            return Err(AppError::validation(
                "hours",
                format!("more than 0, at most {SERVICE_HOURS_MAX}, two decimals"),
            ));
        }
        let community = CommunityId::new(community_id);
        let setup = self.points.community(community).await?;
        let scope = staff_scope(&setup, &claims)?;
        if claims.role == Role::GridWorker && !grid.is_some_and(|grid| scope.grids.contains(&grid))
        {
            return Err(AppError::forbidden(
                "a grid worker records service in one of their grids",
            ));
        }
        let amount = (hours * setup.points_rules.volunteer_hour).round_dp(2);
        let amount = Points::parse(amount).map_err(|_| {
            AppError::validation("hours", "the community's rules give no points for them")
        })?;
        let service = GrantId(self.new_id(&meta, "service"));
        let grant_request = GrantRequest {
            resident,
            source: GrantSource::VolunteerService { service, hours },
            amount,
            by: Some(claims.actor()),
            grid,
            at: self.commands.clock().now(),
        };
        let ran = self
            .points
            .grant(community, &meta, grant_request, &[])
            .await?;
        let (outcome, event) = self.points.wallet_outcome(community, ran).await?;
        granted(service, outcome.last_position, event)
    }

    /// Takes back the points a report earned, found fraudulent, as far as
    /// the reporter's available points allow; the rest is recorded as a
    /// shortfall. The report earns nothing more.
    pub async fn reverse_report_points(
        &self,
        request: &Request,
        community_id: Uuid,
        report: ReportId,
        reason: &str,
    ) -> AppResult<Reversed> {
        let (claims, meta) = self.acting(request, community_id, &[Role::Admin])?;
        let reason = content::prepare_text(reason, self.retry_seed(&meta, "reason"))?;
        let community = CommunityId::new(community_id);
        let loaded = self
            .commands
            .load::<Report>(community, &report_stream(report.0))
            .await?;
        let resident = match loaded.state.submission.as_deref().map(|s| &s.reporter) {
            Some(Reporter::Resident(resident)) => *resident,
            Some(Reporter::Anonymous { .. }) => {
                return Err(AppError::validation(
                    "reportId",
                    "an unclaimed anonymous report earned nothing",
                ))
            }
            None => return Err(AppError::not_found(format!("report {report}"))),
        };
        let reversal = Reversal {
            resident,
            report,
            by: Some(claims.actor()),
            reason: ReversalReason::Fraudulent {
                note: reason.hash.clone(),
            },
        };
        let ran = self
            .points
            .reverse(community, &meta, reversal, &[reason])
            .await?;
        match self.points.wallet_outcome(community, ran).await? {
            (
                outcome,
                WalletEvent::PointsReversed {
                    amount,
                    shortfall,
                    balance,
                    ..
                },
            ) => Ok(Reversed {
                resident,
                position: outcome.last_position,
                amount,
                shortfall,
                balance,
            }),
            _ => Err(idempotency::reused()),
        }
    }

    /// Offers a gift at a centre, with its price and first stock.
    pub async fn offer_gift(
        &self,
        request: &Request,
        community_id: Uuid,
        centre: CentreId,
        name: &str,
        price: Points,
        stock: u32,
    ) -> AppResult<(GiftId, i64)> {
        let (claims, meta) = self.acting(request, community_id, &[Role::Admin])?;
        let community = CommunityId::new(community_id);
        let setup = self.points.community(community).await?;
        if !setup.centres.contains_key(&centre) {
            return Err(AppError::not_found(format!("centre {centre}")));
        }
        let gift = GiftId(self.new_id(&meta, "gift"));
        let at = self.commands.clock().now();
        let (outcome, _) = self
            .points
            .on_gift(community, &meta, gift, None, &[], |_| {
                Ok(GiftCommand::Offer {
                    by: claims.actor(),
                    centre,
                    name: name.to_string(),
                    price,
                    stock,
                    at,
                })
            })
            .await?;
        Ok((gift, outcome.last_position))
    }

    /// A stock change with a reason, by an admin or a clerk of the gift's
    /// centre.
    pub async fn change_gift_stock(
        &self,
        request: &Request,
        community_id: Uuid,
        gift: GiftId,
        change: StockChange,
        reason: &str,
    ) -> AppResult<i64> {
        let (claims, meta) = self.acting(request, community_id, &[Role::Clerk, Role::Admin])?;
        let reason = content::prepare_text(reason, self.retry_seed(&meta, "reason"))?;
        let hash = reason.hash.clone();
        let community = CommunityId::new(community_id);
        let setup = self.points.community(community).await?;
        let centre = counter_centre(&setup, &claims)?;
        let at = self.commands.clock().now();
        let command = |by: Actor, reason: ContentHash, at: Timestamp| match change {
            StockChange::Add(quantity) => GiftCommand::AddStock {
                by,
                quantity,
                reason,
                at,
            },
            StockChange::Correct(stock) => GiftCommand::CorrectStock {
                by,
                stock,
                reason,
                at,
            },
        };
        let (outcome, _) = self
            .points
            .on_gift(community, &meta, gift, centre, &[reason], |_| {
                Ok(command(claims.actor(), hash.clone(), at))
            })
            .await?;
        Ok(outcome.last_position)
    }

    /// Holds the resident's points and the gift's stock at the clerk's
    /// counter. `idempotency` is the counter device's key for this
    /// redemption, scoped by the adapter: the redemption's id derives from
    /// it, so a retry holds nothing twice and answers the first outcome.
    pub async fn place_redemption(
        &self,
        request: &Request,
        community_id: Uuid,
        resident: PersonId,
        gift: GiftId,
        quantity: u32,
        idempotency: Idempotency,
    ) -> AppResult<CounterOutcome> {
        let (claims, mut meta) = self.acting(request, community_id, &[Role::Clerk, Role::Admin])?;
        let redemption = RedemptionId(self.derived_id(&idempotency, "redemption"));
        meta.idempotency = Some(idempotency);
        let community = CommunityId::new(community_id);
        let (claims, meta) = (&claims, &meta);
        let placed = self
            .directory
            .deciding(&self.commands, community, |setup| async move {
                let centre = counter_centre(&setup.community, claims)?;
                let place = PlaceRequest {
                    redemption,
                    resident,
                    gift,
                    quantity,
                    by: claims.actor(),
                    centre,
                };
                let meta = setup.resting(meta);
                self.points
                    .place(community, &meta, &setup.community, place)
                    .await
            })
            .await?;
        match placed {
            Ran::Appended(outcome, placement) => Ok(CounterOutcome {
                placement,
                status: RedemptionStatus::Placed,
                position: outcome.last_position,
                replayed: false,
            }),
            Ran::Repeated(outcome) => {
                let (status, placement) = self.points.redemption(community, redemption).await?;
                Ok(CounterOutcome {
                    placement,
                    status,
                    position: outcome.last_position,
                    replayed: true,
                })
            }
        }
    }

    /// Completes or cancels a redemption at the clerk's counter.
    pub async fn finish_redemption(
        &self,
        request: &Request,
        community_id: Uuid,
        redemption: RedemptionId,
        kind: FinishKind,
    ) -> AppResult<CounterOutcome> {
        let (claims, meta) = self.acting(request, community_id, &[Role::Clerk, Role::Admin])?;
        let community = CommunityId::new(community_id);
        let finish = match kind {
            FinishKind::Complete => Finish::Complete(claims.actor()),
            FinishKind::Cancel => Finish::Cancel(claims.actor()),
        };
        let (claims, meta) = (&claims, &meta);
        let ran = self
            .directory
            .deciding(&self.commands, community, |setup| async move {
                let centre = counter_centre(&setup.community, claims)?;
                self.points
                    .finish(community, &setup.resting(meta), redemption, finish, centre)
                    .await
            })
            .await?;
        // What this request did is known without reading it back; a
        // repeat answers with the redemption as stored.
        let (status, placement, position, replayed) = match ran {
            Ran::Appended(outcome, status) => {
                let placement = self.points.placement_kept(community, redemption).await?;
                (status, placement, outcome.last_position, false)
            }
            Ran::Repeated(outcome) => {
                let (status, placement) = self.points.redemption(community, redemption).await?;
                (status, placement, outcome.last_position, true)
            }
        };
        Ok(CounterOutcome {
            placement,
            status,
            position,
            replayed,
        })
    }
}

/// A grant's answer: granted or withheld; any other wallet event means the
/// idempotency key answered another command.
fn granted(grant: GrantId, position: i64, event: WalletEvent) -> AppResult<Granted> {
    match event {
        WalletEvent::PointsGranted { .. } | WalletEvent::GrantWithheld { .. } => Ok(Granted {
            grant,
            position,
            event,
        }),
        _ => Err(idempotency::reused()),
    }
}
