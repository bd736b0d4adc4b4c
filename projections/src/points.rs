//! The points ledger's read model: every movement (double entry), the
//! system accounts' balances, each wallet with its statement, the flows per
//! month, gifts with their stock, and redemptions at the counters.
//!
//! Balances are folded from the movements; the wallet's balance on each
//! statement line is the one its event carries, so an auditor can check
//! the two against each other.

mod queries;

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use domain::points::{Account, BudgetEvent, GiftEvent, Movement, RedemptionEvent, WalletEvent};
use domain::values::Actor;
use rust_decimal::Decimal;
use store::RecordedEvent;
use tokio_postgres::types::Json;
use uuid::Uuid;

pub use self::queries::*;
use crate::community_info::{self, month_sql};
use crate::error::ProjectionError;
use crate::runner::{decode, entity_id, Change};
use crate::sql::execute;
use crate::Projection;

pub const NAME: &str = "points";

pub struct PointsProjection;

const TABLES_SQL: &str = "
CREATE TABLE {schema}.movements (
    community_id uuid NOT NULL,
    position bigint NOT NULL,
    debit text NOT NULL,
    credit text NOT NULL,
    amount numeric NOT NULL CHECK (amount > 0),
    kind text NOT NULL,
    detail jsonb NOT NULL,
    at bigint NOT NULL,
    PRIMARY KEY (community_id, position)
);
CREATE TABLE {schema}.accounts (
    community_id uuid NOT NULL,
    account text NOT NULL,
    balance numeric NOT NULL,
    PRIMARY KEY (community_id, account)
);
CREATE TABLE {schema}.flows (
    community_id uuid NOT NULL,
    month text NOT NULL,
    kind text NOT NULL,
    amount numeric NOT NULL,
    PRIMARY KEY (community_id, month, kind)
);
CREATE TABLE {schema}.wallets (
    community_id uuid NOT NULL,
    resident_id uuid NOT NULL,
    balance numeric NOT NULL CHECK (balance >= 0),
    held numeric NOT NULL CHECK (held >= 0 AND held <= balance),
    earned numeric NOT NULL,
    redeemed numeric NOT NULL,
    next_expiry bigint,
    last_position bigint NOT NULL,
    PRIMARY KEY (community_id, resident_id)
);
CREATE INDEX ON {schema}.wallets (community_id, next_expiry) WHERE next_expiry IS NOT NULL;
CREATE TABLE {schema}.wallet_lines (
    community_id uuid NOT NULL,
    resident_id uuid NOT NULL,
    position bigint NOT NULL,
    kind text NOT NULL,
    amount numeric NOT NULL,
    balance numeric NOT NULL,
    held numeric NOT NULL,
    redemption_id uuid,
    detail jsonb NOT NULL,
    at bigint NOT NULL,
    PRIMARY KEY (community_id, resident_id, position)
);
CREATE TABLE {schema}.gifts (
    community_id uuid NOT NULL,
    gift_id uuid NOT NULL,
    centre_id uuid NOT NULL,
    name text NOT NULL,
    price numeric NOT NULL,
    stock integer NOT NULL CHECK (stock >= 0),
    held integer NOT NULL CHECK (held >= 0),
    handed_over integer NOT NULL DEFAULT 0,
    last_position bigint NOT NULL,
    PRIMARY KEY (community_id, gift_id)
);
CREATE TABLE {schema}.gift_lines (
    community_id uuid NOT NULL,
    gift_id uuid NOT NULL,
    position bigint NOT NULL,
    kind text NOT NULL,
    quantity integer NOT NULL,
    stock integer NOT NULL,
    held integer,
    by_id uuid,
    reason_hash text,
    redemption_id uuid,
    at bigint NOT NULL,
    PRIMARY KEY (community_id, gift_id, position)
);
CREATE TABLE {schema}.redemptions (
    community_id uuid NOT NULL,
    redemption_id uuid NOT NULL,
    centre_id uuid NOT NULL,
    gift_id uuid NOT NULL,
    resident_id uuid NOT NULL,
    placed_by uuid NOT NULL,
    quantity integer NOT NULL,
    points numeric NOT NULL,
    status text NOT NULL,
    placed_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    finished_at bigint,
    finished_by uuid,
    last_position bigint NOT NULL,
    PRIMARY KEY (community_id, redemption_id)
);
CREATE INDEX ON {schema}.redemptions (community_id, expires_at) WHERE status = 'placed';
CREATE INDEX ON {schema}.redemptions (community_id, centre_id, placed_at DESC);
CREATE INDEX ON {schema}.redemptions (community_id, placed_by, placed_at DESC);
";

#[async_trait]
impl Projection for PointsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables_sql(&self) -> String {
        format!("{}{TABLES_SQL}", community_info::TABLES_SQL)
    }

    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        schema: &str,
        event: &RecordedEvent,
        _changes: &mut Vec<Change>,
    ) -> Result<(), ProjectionError> {
        let fold = Fold {
            transaction,
            schema,
            event,
        };
        match event.stream_type.as_str() {
            "Community" => community_info::apply(transaction, schema, event).await,
            "Budget" => {
                let budget_event = decode::<BudgetEvent>(event)?;
                if let BudgetEvent::BudgetFunded { at, .. } = &budget_event {
                    let movement = Movement::of_budget(&budget_event);
                    fold.movement(movement, "minted", at.micros()).await?;
                }
                Ok(())
            }
            "Wallet" => fold.wallet(decode::<WalletEvent>(event)?).await,
            "Gift" => fold.gift(decode::<GiftEvent>(event)?).await,
            "Redemption" => fold.redemption(decode::<RedemptionEvent>(event)?).await,
            _ => Ok(()),
        }
    }
}

/// The name of an account in the read model: `issuing`, `wallet:<id>`, …
pub fn account_name(account: Account) -> String {
    match account {
        Account::Wallet(person) => format!("wallet:{person}"),
        other => domain::values::serialized_name(&other),
    }
}

struct Fold<'a> {
    transaction: &'a Transaction<'a>,
    schema: &'a str,
    event: &'a RecordedEvent,
}

impl Fold<'_> {
    fn community(&self) -> Uuid {
        self.event.community_id.as_uuid()
    }

    /// Records a movement, moves the system accounts' balances (wallets
    /// keep theirs in `wallets`) and adds it to the month's flows.
    async fn movement(
        &self,
        movement: Option<Movement>,
        kind: &str,
        at: i64,
    ) -> Result<(), ProjectionError> {
        let Some(movement) = movement else {
            return Ok(());
        };
        let schema = self.schema;
        let detail = self.event.payload_value()?;
        let sql = format!(
            "INSERT INTO {schema}.movements (community_id, position, debit, credit, amount, kind, \
             detail, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        );
        execute(
            self.transaction,
            &sql,
            &[
                &self.community(),
                &self.event.position,
                &account_name(movement.debit),
                &account_name(movement.credit),
                &movement.amount,
                &kind,
                &Json(&detail),
                &at,
            ],
        )
        .await?;
        for (account, delta) in [
            (movement.debit, -movement.amount),
            (movement.credit, movement.amount),
        ] {
            if matches!(account, Account::Wallet(_)) {
                continue;
            }
            let sql = format!(
                "INSERT INTO {schema}.accounts (community_id, account, balance) VALUES ($1, $2, $3) \
                 ON CONFLICT (community_id, account) DO UPDATE \
                 SET balance = {schema}.accounts.balance + excluded.balance"
            );
            execute(
                self.transaction,
                &sql,
                &[&self.community(), &account_name(account), &delta],
            )
            .await?;
        }
        let sql = format!(
            "INSERT INTO {schema}.flows (community_id, month, kind, amount) \
             VALUES ($1, {month}, $3, $4) ON CONFLICT (community_id, month, kind) DO UPDATE \
             SET amount = {schema}.flows.amount + excluded.amount",
            month = month_sql(schema, 2)
        );
        execute(
            self.transaction,
            &sql,
            &[&self.community(), &at, &kind, &movement.amount],
        )
        .await?;
        Ok(())
    }

    async fn wallet(&self, wallet_event: WalletEvent) -> Result<(), ProjectionError> {
        let schema = self.schema;
        let resident = entity_id(self.event, "wallet")?;
        let (balance, held) = wallet_event.balance_and_held();
        let at = wallet_event.at().micros();
        let (kind, amount, earned, redeemed, next_expiry) = match &wallet_event {
            WalletEvent::PointsGranted {
                amount,
                next_expiry,
                ..
            } => (
                "granted",
                *amount,
                *amount,
                Decimal::ZERO,
                Some(*next_expiry),
            ),
            WalletEvent::GrantWithheld { .. } => (
                "withheld",
                Decimal::ZERO,
                Decimal::ZERO,
                Decimal::ZERO,
                None,
            ),
            WalletEvent::PointsHeld { amount, .. } => {
                ("held", *amount, Decimal::ZERO, Decimal::ZERO, None)
            }
            WalletEvent::HoldReleased { amount, .. } => {
                ("released", *amount, Decimal::ZERO, Decimal::ZERO, None)
            }
            WalletEvent::PointsRedeemed {
                amount,
                next_expiry,
                ..
            } => (
                "redeemed",
                *amount,
                Decimal::ZERO,
                *amount,
                Some(*next_expiry),
            ),
            WalletEvent::PointsExpired {
                amount,
                next_expiry,
                ..
            } => (
                "expired",
                *amount,
                Decimal::ZERO,
                Decimal::ZERO,
                Some(*next_expiry),
            ),
            WalletEvent::PointsReversed {
                amount,
                next_expiry,
                ..
            } => (
                "reversed",
                *amount,
                -*amount,
                Decimal::ZERO,
                Some(*next_expiry),
            ),
        };
        let next_expiry: Option<Option<i64>> = next_expiry.map(|n| n.map(|t| t.micros()));
        let sql = format!(
            "INSERT INTO {schema}.wallets (community_id, resident_id, balance, held, earned, \
             redeemed, next_expiry, last_position) VALUES ($1, $2, $3, $4, $5, $6, $7, $9) \
             ON CONFLICT (community_id, resident_id) DO UPDATE SET balance = excluded.balance, \
             held = excluded.held, earned = {schema}.wallets.earned + excluded.earned, \
             redeemed = {schema}.wallets.redeemed + excluded.redeemed, \
             next_expiry = CASE WHEN $8 THEN excluded.next_expiry \
                 ELSE {schema}.wallets.next_expiry END, \
             last_position = excluded.last_position"
        );
        execute(
            self.transaction,
            &sql,
            &[
                &self.community(),
                &resident,
                &balance,
                &held,
                &earned,
                &redeemed,
                &next_expiry.flatten(),
                &next_expiry.is_some(),
                &self.event.position,
            ],
        )
        .await?;
        let sql = format!(
            "INSERT INTO {schema}.wallet_lines (community_id, resident_id, position, kind, amount, \
             balance, held, redemption_id, detail, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        let redemption = match &wallet_event {
            WalletEvent::PointsHeld { redemption, .. }
            | WalletEvent::HoldReleased { redemption, .. }
            | WalletEvent::PointsRedeemed { redemption, .. } => Some(redemption.0),
            _ => None,
        };
        execute(
            self.transaction,
            &sql,
            &[
                &self.community(),
                &resident,
                &self.event.position,
                &kind,
                &amount,
                &balance,
                &held,
                &redemption,
                &Json(&self.event.payload_value()?),
                &at,
            ],
        )
        .await?;
        let movement = Movement::of_wallet(domain::values::PersonId(resident), &wallet_event);
        self.movement(movement, kind, at).await
    }

    async fn gift(&self, gift_event: GiftEvent) -> Result<(), ProjectionError> {
        let schema = self.schema;
        let gift = entity_id(self.event, "gift")?;
        if let GiftEvent::GiftOffered {
            centre,
            name,
            price,
            stock,
            ..
        } = &gift_event
        {
            let sql = format!(
                "INSERT INTO {schema}.gifts (community_id, gift_id, centre_id, name, price, stock, \
                 held, last_position) VALUES ($1, $2, $3, $4, $5, $6, 0, $7)"
            );
            let stock = i32::try_from(*stock).unwrap_or(i32::MAX);
            execute(
                self.transaction,
                &sql,
                &[
                    &self.community(),
                    &gift,
                    &centre.0,
                    name,
                    price,
                    &stock,
                    &self.event.position,
                ],
            )
            .await?;
        }
        let line = GiftLine::of(&gift_event);
        let sql = format!(
            "UPDATE {schema}.gifts SET stock = $3, held = coalesce($4, held), \
             handed_over = handed_over + $5, last_position = $6 \
             WHERE community_id = $1 AND gift_id = $2"
        );
        execute(
            self.transaction,
            &sql,
            &[
                &self.community(),
                &gift,
                &line.stock,
                &line.held,
                &line.handed_over,
                &self.event.position,
            ],
        )
        .await?;
        let sql = format!(
            "INSERT INTO {schema}.gift_lines (community_id, gift_id, position, kind, quantity, \
             stock, held, by_id, reason_hash, redemption_id, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        );
        execute(
            self.transaction,
            &sql,
            &[
                &self.community(),
                &gift,
                &self.event.position,
                &line.kind,
                &line.quantity,
                &line.stock,
                &line.held,
                &line.by.map(|by| by.person.0),
                &line.reason,
                &line.redemption,
                &line.at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn redemption(&self, redemption_event: RedemptionEvent) -> Result<(), ProjectionError> {
        let schema = self.schema;
        let redemption = entity_id(self.event, "redemption")?;
        let (status, at, by) = match redemption_event {
            RedemptionEvent::RedemptionPlaced(placement) => {
                let sql = format!(
                    "INSERT INTO {schema}.redemptions (community_id, redemption_id, centre_id, \
                     gift_id, resident_id, placed_by, quantity, points, status, placed_at, \
                     expires_at, last_position) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'placed', $9, $10, $11)"
                );
                let quantity = i32::try_from(placement.quantity).unwrap_or(i32::MAX);
                return execute(
                    self.transaction,
                    &sql,
                    &[
                        &self.community(),
                        &redemption,
                        &placement.centre.0,
                        &placement.gift.0,
                        &placement.resident.0,
                        &placement.by.person.0,
                        &quantity,
                        &placement.points,
                        &placement.at.micros(),
                        &placement.expires_at.micros(),
                        &self.event.position,
                    ],
                )
                .await
                .map(drop);
            }
            RedemptionEvent::RedemptionCompleted { by, at } => ("completed", at, Some(by)),
            RedemptionEvent::RedemptionCancelled { by, at } => ("cancelled", at, Some(by)),
            RedemptionEvent::RedemptionReleased { at } => ("released", at, None),
        };
        let sql = format!(
            "UPDATE {schema}.redemptions SET status = $3, finished_at = $4, finished_by = $5, \
             last_position = $6 WHERE community_id = $1 AND redemption_id = $2"
        );
        execute(
            self.transaction,
            &sql,
            &[
                &self.community(),
                &redemption,
                &status,
                &at.micros(),
                &by.map(|by: Actor| by.person.0),
                &self.event.position,
            ],
        )
        .await
        .map(drop)
    }
}

/// A gift event as a line of the gift's stock history.
struct GiftLine {
    kind: &'static str,
    quantity: i32,
    stock: i32,
    /// Stock events that leave holds alone do not say.
    held: Option<i32>,
    handed_over: i32,
    by: Option<Actor>,
    reason: Option<String>,
    redemption: Option<Uuid>,
    at: i64,
}

impl GiftLine {
    fn of(event: &GiftEvent) -> GiftLine {
        let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
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
                by: Some(*by),
                ..line("offered", *stock, *stock, Some(0), *at)
            },
            GiftEvent::GiftStockAdded {
                by,
                quantity,
                reason,
                stock,
                at,
            } => GiftLine {
                by: Some(*by),
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
                by: Some(*by),
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
