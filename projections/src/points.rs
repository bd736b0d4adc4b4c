//! The points ledger's read model: every movement (double entry), the
//! system accounts' balances, each wallet with its statement, the flows per
//! month, gifts with their stock, and redemptions at the counters.
//!
//! Balances are folded from the movements; the wallet's balance on each
//! statement line is the one its event carries, so an auditor can check
//! the two against each other.

mod counter;
mod lots;
mod queries;

use domain::streams::StreamKind;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use domain::points::{Account, BudgetEvent, GiftEvent, Movement, RedemptionEvent, WalletEvent};
use rust_decimal::Decimal;
use store::RecordedEvent;
use tokio_postgres::types::{Json, ToSql};
use uuid::Uuid;

pub use self::queries::*;
use crate::community_info::{self, month_of};
use crate::error::ProjectionError;
use crate::runner::{decode, entity_id, Change};
use crate::sql::{column, execute, insert_rows, JsonText, TableRow};
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
    detail json NOT NULL,
    at bigint NOT NULL
);
-- Its key, as an index a generation filled from zero makes once filled:
-- rows are only ever appended.
CREATE UNIQUE INDEX movements_key ON {schema}.movements (community_id, position);
-- Shown, never searched: ANALYZE need not sort it.
ALTER TABLE {schema}.movements ALTER COLUMN detail SET STATISTICS 0;
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
    detail json NOT NULL,
    at bigint NOT NULL
);
-- Its key, as an index a generation filled from zero makes once filled:
-- rows are only ever appended.
CREATE UNIQUE INDEX wallet_lines_key ON {schema}.wallet_lines (community_id, resident_id, position);
-- Shown, never searched: ANALYZE need not sort it.
ALTER TABLE {schema}.wallet_lines ALTER COLUMN detail SET STATISTICS 0;
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

    fn streams(&self) -> &'static [StreamKind] {
        &[
            StreamKind::Community,
            StreamKind::Budget,
            StreamKind::Wallet,
            StreamKind::Gift,
            StreamKind::Redemption,
        ]
    }

    /// 2: each wallet's lots are kept, for its expiring points.
    fn fold_version(&self) -> i32 {
        2
    }

    fn tables_sql(&self) -> String {
        format!(
            "{}{TABLES_SQL}{}",
            community_info::TABLES_SQL,
            lots::TABLES_SQL
        )
    }

    /// Movements and wallets are gathered over the batch and written once per
    /// table; gifts and redemptions (a counter's pace) row by row.
    async fn apply_batch(
        &self,
        transaction: &Transaction<'_>,
        schema: &str,
        events: &[RecordedEvent],
        _changes: &mut Vec<Change>,
    ) -> Result<(), ProjectionError> {
        let Some(community) = events.first().map(|e| e.community_id.as_uuid()) else {
            return Ok(());
        };
        let mut batch = Batch::default();
        let mut counter = counter::Counter::default();
        // The wallets the batch spends from, their lots read at once.
        let mut spending: Vec<Uuid> = events
            .iter()
            .filter(|event| crate::runner::kind(event) == Some(StreamKind::Wallet))
            .filter(|event| SPENDING_EVENTS.contains(&event.event_type.as_str()))
            .map(|event| entity_id(event, "wallet"))
            .collect::<Result<_, _>>()?;
        spending.sort();
        spending.dedup();
        batch
            .lots
            .load(transaction, schema, community, &spending)
            .await?;
        for event in events {
            match crate::runner::kind(event) {
                Some(StreamKind::Community) => {
                    community_info::apply(transaction, schema, event).await?
                }
                Some(StreamKind::Budget) => {
                    let budget_event = decode::<BudgetEvent>(event)?;
                    if let BudgetEvent::BudgetFunded { at, .. } = &budget_event {
                        let movement = Movement::of_budget(&budget_event);
                        batch.movement(event, movement, "minted", at.micros())?;
                    }
                }
                Some(StreamKind::Wallet) => {
                    let wallet_event = decode::<WalletEvent>(event)?;
                    batch
                        .wallet(transaction, schema, event, wallet_event)
                        .await?
                }
                Some(StreamKind::Gift) => counter.gift(event, decode::<GiftEvent>(event)?)?,
                Some(StreamKind::Redemption) => {
                    counter.redemption(event, decode::<RedemptionEvent>(event)?)?
                }
                _ => {}
            }
        }
        counter.write(transaction, schema, community).await?;
        batch.write(transaction, schema, community).await
    }
}

/// The wallet events that take from a wallet's lots (see `Batch::wallet`).
const SPENDING_EVENTS: [&str; 3] = ["PointsRedeemed", "PointsReversed", "PointsExpired"];

/// The name of an account in the read model: `issuing`, `wallet:<id>`, …
pub fn account_name(account: Account) -> String {
    match account {
        Account::Wallet(person) => format!("wallet:{person}"),
        other => domain::values::serialized_name(&other),
    }
}

/// What a batch's budget and wallet events do to the tables, gathered.
#[derive(Default)]
struct Batch {
    movements: Vec<MovementRow>,
    /// What the batch moved in or out of each system account.
    accounts: BTreeMap<String, Decimal>,
    flows: Vec<Flow>,
    wallets: BTreeMap<Uuid, WalletChange>,
    lines: Vec<WalletLine>,
    lots: lots::Lots,
}

/// A row of `movements`.
#[derive(Debug)]
struct MovementRow {
    community_id: Uuid,
    position: i64,
    debit: String,
    credit: String,
    amount: Decimal,
    kind: &'static str,
    detail: JsonText,
    at: i64,
}

impl TableRow for MovementRow {
    const COLUMNS: &'static [&'static str] = &[
        "community_id",
        "position",
        "debit",
        "credit",
        "amount",
        "kind",
        "detail",
        "at",
    ];

    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.community_id,
            &self.position,
            &self.debit,
            &self.credit,
            &self.amount,
            &self.kind,
            &self.detail,
            &self.at,
        ]
    }
}

/// An amount added to the flows of the month of `at`.
#[derive(Debug)]
struct Flow {
    at: i64,
    kind: &'static str,
    amount: Decimal,
}

/// What a batch did to one wallet's row.
#[derive(Debug)]
struct WalletChange {
    resident_id: Uuid,
    balance: Decimal,
    held: Decimal,
    earned: Decimal,
    redeemed: Decimal,
    next_expiry: Option<i64>,
    /// Whether any event said when the next points expire (`next_expiry`
    /// is then what the last one said).
    sets_expiry: bool,
    last_position: i64,
}

/// A row of `wallet_lines`: one line of a wallet's statement.
#[derive(Debug)]
struct WalletLine {
    community_id: Uuid,
    resident_id: Uuid,
    position: i64,
    kind: &'static str,
    amount: Decimal,
    balance: Decimal,
    held: Decimal,
    redemption_id: Option<Uuid>,
    detail: JsonText,
    at: i64,
}

impl TableRow for WalletLine {
    const COLUMNS: &'static [&'static str] = &[
        "community_id",
        "resident_id",
        "position",
        "kind",
        "amount",
        "balance",
        "held",
        "redemption_id",
        "detail",
        "at",
    ];

    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.community_id,
            &self.resident_id,
            &self.position,
            &self.kind,
            &self.amount,
            &self.balance,
            &self.held,
            &self.redemption_id,
            &self.detail,
            &self.at,
        ]
    }
}

impl Batch {
    /// Records a movement and what it does to the system accounts (wallets
    /// keep theirs in `wallets`) and to the month's flows.
    fn movement(
        &mut self,
        event: &RecordedEvent,
        movement: Option<Movement>,
        kind: &'static str,
        at: i64,
    ) -> Result<(), ProjectionError> {
        let Some(movement) = movement else {
            return Ok(());
        };
        self.movements.push(MovementRow {
            community_id: event.community_id.as_uuid(),
            position: event.position,
            debit: account_name(movement.debit),
            credit: account_name(movement.credit),
            amount: movement.amount,
            kind,
            detail: Json(event.payload.clone()),
            at,
        });
        for (account, delta) in [
            (movement.debit, -movement.amount),
            (movement.credit, movement.amount),
        ] {
            if matches!(account, Account::Wallet(_)) {
                continue;
            }
            *self
                .accounts
                .entry(account_name(account))
                .or_insert(Decimal::ZERO) += delta;
        }
        self.flows.push(Flow {
            at,
            kind,
            amount: movement.amount,
        });
        Ok(())
    }

    async fn wallet(
        &mut self,
        transaction: &Transaction<'_>,
        schema: &str,
        event: &RecordedEvent,
        wallet_event: WalletEvent,
    ) -> Result<(), ProjectionError> {
        let resident = entity_id(event, "wallet")?;
        let community = event.community_id.as_uuid();
        match &wallet_event {
            WalletEvent::PointsGranted {
                amount, expires_at, ..
            } => self.lots.granted(
                resident,
                event.position,
                expires_at.map(|t| t.micros()),
                *amount,
            ),
            WalletEvent::PointsRedeemed { amount, .. }
            | WalletEvent::PointsReversed { amount, .. } => {
                self.lots
                    .spent(transaction, schema, community, resident, *amount, None)
                    .await?
            }
            WalletEvent::PointsExpired { amount, at, .. } => {
                self.lots
                    .spent(
                        transaction,
                        schema,
                        community,
                        resident,
                        *amount,
                        Some(at.micros()),
                    )
                    .await?
            }
            _ => {}
        }
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
        match self.wallets.entry(resident) {
            Entry::Vacant(vacant) => {
                vacant.insert(WalletChange {
                    resident_id: resident,
                    balance,
                    held,
                    earned,
                    redeemed,
                    next_expiry: next_expiry.flatten(),
                    sets_expiry: next_expiry.is_some(),
                    last_position: event.position,
                });
            }
            Entry::Occupied(mut occupied) => {
                let change = occupied.get_mut();
                change.balance = balance;
                change.held = held;
                change.earned += earned;
                change.redeemed += redeemed;
                if let Some(next_expiry) = next_expiry {
                    change.next_expiry = next_expiry;
                    change.sets_expiry = true;
                }
                change.last_position = event.position;
            }
        }
        let redemption = match &wallet_event {
            WalletEvent::PointsHeld { redemption, .. }
            | WalletEvent::HoldReleased { redemption, .. }
            | WalletEvent::PointsRedeemed { redemption, .. } => Some(redemption.0),
            _ => None,
        };
        self.lines.push(WalletLine {
            community_id: event.community_id.as_uuid(),
            resident_id: resident,
            position: event.position,
            kind,
            amount,
            balance,
            held,
            redemption_id: redemption,
            detail: Json(event.payload.clone()),
            at,
        });
        let movement = Movement::of_wallet(domain::values::PersonId(resident), &wallet_event);
        self.movement(event, movement, kind, at)
    }

    async fn write(
        self,
        transaction: &Transaction<'_>,
        schema: &str,
        community: Uuid,
    ) -> Result<(), ProjectionError> {
        insert_rows(transaction, &format!("{schema}.movements"), &self.movements).await?;
        self.lots.write(transaction, schema, community).await?;
        insert_rows(transaction, &format!("{schema}.wallet_lines"), &self.lines).await?;
        if !self.accounts.is_empty() {
            let sql = format!(
                "INSERT INTO {schema}.accounts (community_id, account, balance) \
                 SELECT $1, account, balance \
                 FROM unnest($2::text[], $3::numeric[]) AS d(account, balance) \
                 ON CONFLICT (community_id, account) DO UPDATE \
                 SET balance = {schema}.accounts.balance + excluded.balance"
            );
            let (accounts, balances): (Vec<&str>, Vec<Decimal>) = self
                .accounts
                .iter()
                .map(|(account, balance)| (account.as_str(), *balance))
                .unzip();
            execute(transaction, &sql, &[&community, &accounts, &balances]).await?;
        }
        if !self.flows.is_empty() {
            let sql = format!(
                "INSERT INTO {schema}.flows (community_id, month, kind, amount) \
                 SELECT $1, {month}, kind, sum(amount) \
                 FROM unnest($2::bigint[], $3::text[], $4::numeric[]) AS d(at, kind, amount) \
                 GROUP BY 2, 3 \
                 ON CONFLICT (community_id, month, kind) DO UPDATE \
                 SET amount = {schema}.flows.amount + excluded.amount",
                month = month_of(schema, "d.at")
            );
            let flows = &self.flows;
            let (ats, kinds) = (column(flows, |f| f.at), column(flows, |f| f.kind));
            let amounts = column(flows, |f| f.amount);
            execute(transaction, &sql, &[&community, &ats, &kinds, &amounts]).await?;
        }
        // A new row takes its `next_expiry` as given; a row already there
        // changes it only when one of the batch's events said it: those
        // wallets and the others are written apart, each row once.
        let (setting, keeping): (Vec<&WalletChange>, Vec<&WalletChange>) =
            self.wallets.values().partition(|wallet| wallet.sets_expiry);
        for (wallets, sets_expiry) in [(setting, true), (keeping, false)] {
            if wallets.is_empty() {
                continue;
            }
            let sql = format!(
                "INSERT INTO {schema}.wallets (community_id, resident_id, balance, held, earned, \
                 redeemed, next_expiry, last_position) \
                 SELECT $1, d.* FROM unnest($2::uuid[], $3::numeric[], $4::numeric[], \
                     $5::numeric[], $6::numeric[], $7::bigint[], $8::bigint[]) \
                     AS d(resident_id, balance, held, earned, redeemed, next_expiry, last_position) \
                 ON CONFLICT (community_id, resident_id) DO UPDATE SET balance = excluded.balance, \
                 held = excluded.held, earned = {schema}.wallets.earned + excluded.earned, \
                 redeemed = {schema}.wallets.redeemed + excluded.redeemed, \
                 next_expiry = CASE WHEN $9 THEN excluded.next_expiry \
                     ELSE {schema}.wallets.next_expiry END, \
                 last_position = excluded.last_position"
            );
            execute(
                transaction,
                &sql,
                &[
                    &community,
                    &column(&wallets, |w| w.resident_id),
                    &column(&wallets, |w| w.balance),
                    &column(&wallets, |w| w.held),
                    &column(&wallets, |w| w.earned),
                    &column(&wallets, |w| w.redeemed),
                    &column(&wallets, |w| w.next_expiry),
                    &column(&wallets, |w| w.last_position),
                    &sets_expiry,
                ],
            )
            .await?;
        }
        Ok(())
    }
}
