//! The points sweeper: a process that reads the clock (the domain never
//! does). It releases redemptions whose hold ran out and expires points
//! that are due, each at most once (the aggregates refuse a second time).

use std::time::Duration;

use domain::points::WalletCommand;
use domain::values::{PersonId, RedemptionId};
use store::CommunityId;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Finish, PointsDesk};
use crate::commands::RequestMeta;
use crate::error::{AppError, AppResult};
use projections::stalls::Stalls;

/// Holds released and wallets expired per community per tick; the rest
/// wait a tick.
const PER_TICK_MAX: i64 = 500;
/// The first pause before a community it is stuck in is tried again.
const STUCK_DELAY: Duration = Duration::from_secs(60);
pub const PROCESS: &str = "points-sweeper";

#[derive(Clone)]
pub struct PointsSweeper {
    desk: PointsDesk,
    stalls: Stalls,
}

/// What one tick did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub holds_released: usize,
    pub wallets_expired: usize,
}

impl PointsSweeper {
    pub fn new(desk: PointsDesk) -> Self {
        PointsSweeper {
            desk,
            stalls: Stalls::default(),
        }
    }

    /// Notes where it is stuck in `stalls` (the server shares one).
    pub fn with_stalls(self, stalls: Stalls) -> Self {
        PointsSweeper { stalls, ..self }
    }

    pub async fn tick(&self) -> AppResult<Swept> {
        let commands = self.desk.commands();
        let now = commands.clock().now();
        let store = commands.store();
        let meta = RequestMeta {
            request_id: format!("points-sweeper-{}", now.micros()),
            client: Some("points-sweeper".to_string()),
            ..RequestMeta::default()
        };
        let meta = &meta;
        let swept = self
            .stalls
            .each_community(
                PROCESS,
                store.communities().await?,
                STUCK_DELAY,
                |community| self.sweep_community(community, now, meta),
            )
            .await;
        Ok(swept
            .into_iter()
            .fold(Swept::default(), |total, one| Swept {
                holds_released: total.holds_released + one.holds_released,
                wallets_expired: total.wallets_expired + one.wallets_expired,
            }))
    }

    async fn sweep_community(
        &self,
        community: CommunityId,
        now: domain::values::Timestamp,
        meta: &RequestMeta,
    ) -> AppResult<Swept> {
        let store = self.desk.commands().store();
        let mut swept = Swept::default();
        {
            let pool = store.pool();
            let holds =
                projections::points::holds_due(pool, community, now.micros(), PER_TICK_MAX).await?;
            for redemption in holds {
                let released = self
                    .desk
                    .finish(
                        community,
                        meta,
                        RedemptionId(redemption),
                        Finish::Release,
                        None,
                    )
                    .await;
                swept.holds_released += usize::from(done(released)?);
            }
            let wallets =
                projections::points::expiries_due(pool, community, now.micros(), PER_TICK_MAX)
                    .await?;
            for resident in wallets {
                swept.wallets_expired += usize::from(self.expire(community, resident, meta).await?);
            }
        }
        Ok(swept)
    }

    async fn expire(
        &self,
        community: CommunityId,
        resident: uuid::Uuid,
        meta: &RequestMeta,
    ) -> AppResult<bool> {
        let at = self.desk.commands().clock().now();
        let expired = self
            .desk
            .on_wallet(community, meta, PersonId(resident), &[], |_| {
                Ok(WalletCommand::Expire { at })
            })
            .await;
        done(expired)
    }

    pub fn spawn(self, interval: Duration, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            while !*shutdown.borrow() {
                if let Err(error) = self.tick().await {
                    tracing::error!(code = error.code(), %error, "the points sweeper failed; retrying next tick");
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = shutdown.changed() => {}
                }
            }
        })
    }
}

/// True when the command was carried out; false when the read model was
/// behind and there was nothing left to do (already completed, cancelled,
/// released or expired; or held points that wait for their redemption).
fn done<T>(result: AppResult<T>) -> AppResult<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(AppError::Conflict(_) | AppError::Validation { .. } | AppError::NotFound(_)) => {
            Ok(false)
        }
        Err(error) => Err(error),
    }
}
