//! The counter's part of a points batch: gifts with their stock history,
//! and redemptions. A batch's gift and redemption events are gathered, then
//! written set-based, a few statements per batch whatever its size: the new
//! rows appended in one go, each touched gift and redemption updated once
//! with where the batch left it.

use std::collections::BTreeMap;

use deadpool_postgres::Transaction;
use domain::points::{GiftEvent, RedemptionEvent};
use domain::values::Actor;
use rust_decimal::Decimal;
use store::RecordedEvent;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::runner::entity_id;
use crate::sql::{column, execute, insert_rows, update_probed, TableRow};

#[derive(Default)]
pub(super) struct Counter {
    offered: Vec<GiftRow>,
    /// Each touched gift as the batch leaves it.
    gifts: BTreeMap<Uuid, GiftChange>,
    lines: Vec<GiftLineRow>,
    placed: Vec<RedemptionRow>,
    /// Each redemption the batch finished, as its last event left it.
    finished: BTreeMap<Uuid, Finished>,
}

/// A row of `gifts`, as its offer makes it.
struct GiftRow {
    community_id: Uuid,
    gift_id: Uuid,
    centre_id: Uuid,
    name: String,
    price: Decimal,
    stock: i32,
    held: i32,
    last_position: i64,
}

impl TableRow for GiftRow {
    const COLUMNS: &'static [&'static str] = &[
        "community_id",
        "gift_id",
        "centre_id",
        "name",
        "price",
        "stock",
        "held",
        "last_position",
    ];

    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.community_id,
            &self.gift_id,
            &self.centre_id,
            &self.name,
            &self.price,
            &self.stock,
            &self.held,
            &self.last_position,
        ]
    }
}

/// Where a batch leaves a gift: the stock (and hold, when an event said
/// it) of its last event, and how many it handed over.
struct GiftChange {
    stock: i32,
    held: Option<i32>,
    handed_over: i32,
    last_position: i64,
}

/// A row of `gift_lines`: one line of a gift's stock history.
struct GiftLineRow {
    community_id: Uuid,
    gift_id: Uuid,
    position: i64,
    line: GiftLine,
}

impl TableRow for GiftLineRow {
    const COLUMNS: &'static [&'static str] = &[
        "community_id",
        "gift_id",
        "position",
        "kind",
        "quantity",
        "stock",
        "held",
        "by_id",
        "reason_hash",
        "redemption_id",
        "at",
    ];

    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        let line = &self.line;
        vec![
            &self.community_id,
            &self.gift_id,
            &self.position,
            &line.kind,
            &line.quantity,
            &line.stock,
            &line.held,
            &line.by,
            &line.reason,
            &line.redemption,
            &line.at,
        ]
    }
}

/// A row of `redemptions`, as its placement makes it.
struct RedemptionRow {
    community_id: Uuid,
    redemption_id: Uuid,
    centre_id: Uuid,
    gift_id: Uuid,
    resident_id: Uuid,
    placed_by: Uuid,
    quantity: i32,
    points: Decimal,
    status: &'static str,
    placed_at: i64,
    expires_at: i64,
    last_position: i64,
}

impl TableRow for RedemptionRow {
    const COLUMNS: &'static [&'static str] = &[
        "community_id",
        "redemption_id",
        "centre_id",
        "gift_id",
        "resident_id",
        "placed_by",
        "quantity",
        "points",
        "status",
        "placed_at",
        "expires_at",
        "last_position",
    ];

    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.community_id,
            &self.redemption_id,
            &self.centre_id,
            &self.gift_id,
            &self.resident_id,
            &self.placed_by,
            &self.quantity,
            &self.points,
            &self.status,
            &self.placed_at,
            &self.expires_at,
            &self.last_position,
        ]
    }
}

/// How a redemption ended.
struct Finished {
    status: &'static str,
    at: i64,
    by: Option<Uuid>,
    last_position: i64,
}

fn count(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Counter {
    pub(super) fn gift(
        &mut self,
        event: &RecordedEvent,
        gift_event: GiftEvent,
    ) -> Result<(), ProjectionError> {
        let community_id = event.community_id.as_uuid();
        let gift_id = entity_id(event, "gift")?;
        if let GiftEvent::GiftOffered {
            centre,
            name,
            price,
            stock,
            ..
        } = &gift_event
        {
            self.offered.push(GiftRow {
                community_id,
                gift_id,
                centre_id: centre.0,
                name: name.clone(),
                price: *price,
                stock: count(*stock),
                held: 0,
                last_position: event.position,
            });
        }
        let line = GiftLine::of(&gift_event);
        let change = self.gifts.entry(gift_id).or_insert(GiftChange {
            stock: line.stock,
            held: None,
            handed_over: 0,
            last_position: event.position,
        });
        change.stock = line.stock;
        change.held = line.held.or(change.held);
        change.handed_over += line.handed_over;
        change.last_position = event.position;
        self.lines.push(GiftLineRow {
            community_id,
            gift_id,
            position: event.position,
            line,
        });
        Ok(())
    }

    pub(super) fn redemption(
        &mut self,
        event: &RecordedEvent,
        redemption_event: RedemptionEvent,
    ) -> Result<(), ProjectionError> {
        let redemption_id = entity_id(event, "redemption")?;
        let (status, at, by) = match redemption_event {
            RedemptionEvent::RedemptionPlaced(placement) => {
                self.placed.push(RedemptionRow {
                    community_id: event.community_id.as_uuid(),
                    redemption_id,
                    centre_id: placement.centre.0,
                    gift_id: placement.gift.0,
                    resident_id: placement.resident.0,
                    placed_by: placement.by.person.0,
                    quantity: count(placement.quantity),
                    points: placement.points,
                    status: "placed",
                    placed_at: placement.at.micros(),
                    expires_at: placement.expires_at.micros(),
                    last_position: event.position,
                });
                return Ok(());
            }
            RedemptionEvent::RedemptionCompleted { by, at } => ("completed", at, Some(by)),
            RedemptionEvent::RedemptionCancelled { by, at } => ("cancelled", at, Some(by)),
            RedemptionEvent::RedemptionReleased { at } => ("released", at, None),
        };
        self.finished.insert(
            redemption_id,
            Finished {
                status,
                at: at.micros(),
                by: by.map(|by: Actor| by.person.0),
                last_position: event.position,
            },
        );
        Ok(())
    }

    /// New rows first, then the updates of rows that may be among them.
    pub(super) async fn write(
        self,
        transaction: &Transaction<'_>,
        schema: &str,
        community: Uuid,
    ) -> Result<(), ProjectionError> {
        insert_rows(transaction, &format!("{schema}.gifts"), &self.offered).await?;
        if !self.gifts.is_empty() {
            let sql = update_probed(
                &format!("{schema}.gifts"),
                "stock = d.stock, held = coalesce(d.held, t.held), \
                 handed_over = t.handed_over + d.handed_over, last_position = d.last_position",
                "unnest($2::uuid[], $3::integer[], $4::integer[], $5::integer[], $6::bigint[]) \
                 AS d(gift_id, stock, held, handed_over, last_position)",
                "gift_id = d.gift_id",
            );
            let gifts: Vec<&GiftChange> = self.gifts.values().collect();
            update_each(
                transaction,
                &sql,
                community,
                self.gifts.keys().copied().collect(),
                &[
                    &column(&gifts, |g| g.stock),
                    &column(&gifts, |g| g.held),
                    &column(&gifts, |g| g.handed_over),
                    &column(&gifts, |g| g.last_position),
                ],
            )
            .await?;
        }
        insert_rows(transaction, &format!("{schema}.gift_lines"), &self.lines).await?;
        insert_rows(transaction, &format!("{schema}.redemptions"), &self.placed).await?;
        if !self.finished.is_empty() {
            let sql = update_probed(
                &format!("{schema}.redemptions"),
                "status = d.status, finished_at = d.at, finished_by = d.by, \
                 last_position = d.last_position",
                "unnest($2::uuid[], $3::text[], $4::bigint[], $5::uuid[], $6::bigint[]) \
                 AS d(redemption_id, status, at, by, last_position)",
                "redemption_id = d.redemption_id",
            );
            let finished: Vec<&Finished> = self.finished.values().collect();
            update_each(
                transaction,
                &sql,
                community,
                self.finished.keys().copied().collect(),
                &[
                    &column(&finished, |f| f.status),
                    &column(&finished, |f| f.at),
                    &column(&finished, |f| f.by),
                    &column(&finished, |f| f.last_position),
                ],
            )
            .await?;
        }
        Ok(())
    }
}

/// Runs an `UPDATE … FROM unnest(…)` whose `$1` is the community, `$2`
/// the rows' keys and `$3…` one array per column, in the keys' order.
async fn update_each(
    transaction: &Transaction<'_>,
    sql: &str,
    community: Uuid,
    keys: Vec<Uuid>,
    columns: &[&(dyn ToSql + Sync)],
) -> Result<(), ProjectionError> {
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&community, &keys];
    params.extend_from_slice(columns);
    execute(transaction, sql, &params).await.map(drop)
}

/// A gift event as a line of the gift's stock history.
struct GiftLine {
    kind: &'static str,
    quantity: i32,
    stock: i32,
    /// Stock events that leave holds alone do not say.
    held: Option<i32>,
    handed_over: i32,
    by: Option<Uuid>,
    reason: Option<String>,
    redemption: Option<Uuid>,
    at: i64,
}

impl GiftLine {
    fn of(event: &GiftEvent) -> GiftLine {
        let line =
            |kind, quantity: u32, stock: u32, held: Option<u32>, at: domain::values::Timestamp| {
                GiftLine {
                    kind,
                    quantity: count(quantity),
                    stock: count(stock),
                    held: held.map(count),
                    handed_over: 0,
                    by: None,
                    reason: None,
                    redemption: None,
                    at: at.micros(),
                }
            };
        match event {
            GiftEvent::GiftOffered { by, stock, at, .. } => GiftLine {
                by: Some(by.person.0),
                ..line("offered", *stock, *stock, Some(0), *at)
            },
            GiftEvent::GiftStockAdded {
                by,
                quantity,
                reason,
                stock,
                at,
            } => GiftLine {
                by: Some(by.person.0),
                reason: Some(reason.as_str().to_string()),
                ..line("added", *quantity, *stock, None, *at)
            },
            GiftEvent::GiftStockCorrected {
                by,
                previous,
                reason,
                stock,
                at,
            } => GiftLine {
                by: Some(by.person.0),
                reason: Some(reason.as_str().to_string()),
                quantity: count(*stock) - count(*previous),
                ..line("corrected", 0, *stock, None, *at)
            },
            GiftEvent::GiftStockHeld {
                redemption,
                quantity,
                stock,
                held,
                at,
            } => GiftLine {
                redemption: Some(redemption.0),
                ..line("held", *quantity, *stock, Some(*held), *at)
            },
            GiftEvent::GiftStockReleased {
                redemption,
                quantity,
                stock,
                held,
                at,
            } => GiftLine {
                redemption: Some(redemption.0),
                ..line("released", *quantity, *stock, Some(*held), *at)
            },
            GiftEvent::GiftHandedOver {
                redemption,
                quantity,
                stock,
                held,
                at,
            } => GiftLine {
                redemption: Some(redemption.0),
                handed_over: count(*quantity),
                ..line("handed_over", *quantity, *stock, Some(*held), *at)
            },
        }
    }
}
