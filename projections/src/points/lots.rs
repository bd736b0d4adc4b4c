//! Each wallet's lots in the read model: what is left of each grant,
//! oldest first, and when it expires. A wallet's `expiring` points are read
//! from them without folding its stream.
//!
//! A grant adds its lot; a redemption, a reversal or an expiry takes from
//! the lots by the wallet's own rule ([`domain::points::takings`]), so the
//! rows are what the aggregate keeps. A batch reads the lots of the
//! wallets its events spend from, all in one statement before it folds,
//! and writes back only the rows it changed.

use std::collections::HashMap;

use deadpool_postgres::Transaction;
use domain::values::Timestamp;
use rust_decimal::Decimal;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::sql::{
    column, delete_probed, execute, insert_rows, probe, query, update_probed, TableRow,
};

pub(super) const TABLES_SQL: &str = "
CREATE TABLE {schema}.wallet_lots (
    community_id uuid NOT NULL,
    resident_id uuid NOT NULL,
    -- The grant's position in the log.
    position bigint NOT NULL,
    expires_at bigint,
    remaining numeric NOT NULL CHECK (remaining > 0),
    PRIMARY KEY (community_id, resident_id, position)
);
";

/// One lot, as the batch has it.
#[derive(Debug)]
struct Lot {
    position: i64,
    expires_at: Option<i64>,
    remaining: Decimal,
    /// What the table holds for it, if it is stored.
    stored: Option<Decimal>,
}

/// One wallet's lots that the batch knows of, oldest first: all of them
/// once `loaded`, else only those granted in the batch.
#[derive(Debug, Default)]
struct WalletLots {
    loaded: bool,
    lots: Vec<Lot>,
}

/// What a batch did to the wallets' lots.
#[derive(Debug, Default)]
pub(super) struct Lots {
    wallets: HashMap<Uuid, WalletLots>,
}

/// A new lot, for `COPY`.
struct NewLot<'a> {
    community_id: Uuid,
    resident_id: Uuid,
    lot: &'a Lot,
}

impl TableRow for NewLot<'_> {
    const COLUMNS: &'static [&'static str] = &[
        "community_id",
        "resident_id",
        "position",
        "expires_at",
        "remaining",
    ];

    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.community_id,
            &self.resident_id,
            &self.lot.position,
            &self.lot.expires_at,
            &self.lot.remaining,
        ]
    }
}

impl Lots {
    /// Reads the stored lots of the wallets in `residents` not read yet,
    /// in one statement. A batch reads those it spends from this way before
    /// it folds; `spent` reads any other it meets.
    pub(super) async fn load(
        &mut self,
        transaction: &Transaction<'_>,
        schema: &str,
        community: Uuid,
        residents: &[Uuid],
    ) -> Result<(), ProjectionError> {
        let unread: Vec<Uuid> = residents
            .iter()
            .copied()
            .filter(|resident| !self.wallets.get(resident).is_some_and(|w| w.loaded))
            .collect();
        if unread.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "SELECT l.resident_id, l.position, l.expires_at, l.remaining \
             FROM unnest($2::uuid[]) AS k(resident_id) CROSS JOIN LATERAL ({}) AS l \
             ORDER BY l.resident_id, l.position",
            probe(
                &format!("{schema}.wallet_lots"),
                "resident_id, position, expires_at, remaining",
                "resident_id = k.resident_id"
            )
        );
        let rows = query(transaction, &sql, &[&community, &unread]).await?;
        let mut stored: HashMap<Uuid, Vec<Lot>> = HashMap::new();
        for row in &rows {
            stored.entry(row.get(0)).or_default().push(Lot {
                position: row.get(1),
                expires_at: row.get(2),
                remaining: row.get(3),
                stored: Some(row.get(3)),
            });
        }
        for resident in unread {
            let wallet = self.wallets.entry(resident).or_default();
            let mut lots = stored.remove(&resident).unwrap_or_default();
            // Lots granted in this batch come after every stored one.
            lots.append(&mut wallet.lots);
            wallet.lots = lots;
            wallet.loaded = true;
        }
        Ok(())
    }

    /// A grant's lot, at the end of its wallet's.
    pub(super) fn granted(
        &mut self,
        resident: Uuid,
        position: i64,
        expires_at: Option<i64>,
        amount: Decimal,
    ) {
        self.wallets.entry(resident).or_default().lots.push(Lot {
            position,
            expires_at,
            remaining: amount,
            stored: None,
        });
    }

    /// Takes `amount` from a wallet's lots: from any lot, or at an expiry
    /// due at `due_at` only from lots due by then.
    pub(super) async fn spent(
        &mut self,
        transaction: &Transaction<'_>,
        schema: &str,
        community: Uuid,
        resident: Uuid,
        amount: Decimal,
        due_at: Option<i64>,
    ) -> Result<(), ProjectionError> {
        self.load(transaction, schema, community, &[resident])
            .await?;
        let wallet = self.wallets.entry(resident).or_default();
        let taken = domain::points::takings(
            wallet
                .lots
                .iter()
                .filter(|lot| !lot.remaining.is_zero())
                .map(|lot| (lot.expires_at.map(Timestamp::from_micros), lot.remaining)),
            amount,
            due_at.map(Timestamp::from_micros),
        );
        let open = wallet
            .lots
            .iter_mut()
            .filter(|lot| !lot.remaining.is_zero());
        for (lot, taken) in open.zip(taken) {
            lot.remaining -= taken;
        }
        Ok(())
    }

    /// Writes the lots the batch added, changed and used up.
    pub(super) async fn write(
        &self,
        transaction: &Transaction<'_>,
        schema: &str,
        community: Uuid,
    ) -> Result<(), ProjectionError> {
        let mut added = Vec::new();
        let mut changed = Vec::new();
        let mut used_up = Vec::new();
        for (resident, wallet) in &self.wallets {
            for lot in &wallet.lots {
                match lot.stored {
                    None if !lot.remaining.is_zero() => added.push(NewLot {
                        community_id: community,
                        resident_id: *resident,
                        lot,
                    }),
                    Some(_) if lot.remaining.is_zero() => used_up.push((*resident, lot)),
                    Some(stored) if stored != lot.remaining => changed.push((*resident, lot)),
                    _ => {}
                }
            }
        }
        if !used_up.is_empty() {
            let sql = delete_probed(
                &format!("{schema}.wallet_lots"),
                "unnest($2::uuid[], $3::bigint[]) AS d(resident_id, position)",
                "resident_id = d.resident_id AND position = d.position",
            );
            let residents = column(&used_up, |(resident, _)| *resident);
            let positions = column(&used_up, |(_, lot)| lot.position);
            execute(transaction, &sql, &[&community, &residents, &positions]).await?;
        }
        if !changed.is_empty() {
            let sql = update_probed(
                &format!("{schema}.wallet_lots"),
                "remaining = d.remaining",
                "unnest($2::uuid[], $3::bigint[], $4::numeric[]) \
                 AS d(resident_id, position, remaining)",
                "resident_id = d.resident_id AND position = d.position",
            );
            let residents = column(&changed, |(resident, _)| *resident);
            let positions = column(&changed, |(_, lot)| lot.position);
            let remaining = column(&changed, |(_, lot)| lot.remaining);
            execute(
                transaction,
                &sql,
                &[&community, &residents, &positions, &remaining],
            )
            .await?;
        }
        insert_rows(transaction, &format!("{schema}.wallet_lots"), &added).await
    }
}
