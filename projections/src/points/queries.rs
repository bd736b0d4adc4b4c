//! Reads of the points ledger.

use std::sync::Arc;

use deadpool_postgres::{GenericClient, Pool};
use rust_decimal::Decimal;
use store::CommunityId;
use tokio_postgres::types::Json;
use tokio_postgres::Row;
use uuid::Uuid;

use super::NAME;
use crate::cache::{Answer, Question, ReadCache};
use crate::error::ProjectionError;
use crate::generation::reading_schema;
use crate::sql::query;

#[derive(Clone, Debug, PartialEq)]
pub struct WalletRow {
    pub resident_id: Uuid,
    pub balance: Decimal,
    pub held: Decimal,
    /// Granted, less what was reversed.
    pub earned: Decimal,
    pub redeemed: Decimal,
    pub next_expiry: Option<i64>,
    pub last_position: i64,
}

/// A resident's wallet, as fresh as `at_least`; `None` before its first
/// movement.
pub async fn wallet(
    reads: &ReadCache,
    community: CommunityId,
    resident: Uuid,
    at_least: Option<i64>,
) -> Result<Arc<Option<WalletRow>>, ProjectionError> {
    let question = Question::new(NAME, community, format!("wallet {resident}"));
    reads
        .read(question, 0, at_least, &[], async |client| {
            Ok(Answer::timeless(
                wallet_in(client, community, resident).await?,
                1,
            ))
        })
        .await
}

async fn wallet_in(
    client: &impl GenericClient,
    community: CommunityId,
    resident: Uuid,
) -> Result<Option<WalletRow>, ProjectionError> {
    let schema = reading_schema(NAME);
    let sql = format!(
        "SELECT resident_id, balance, held, earned, redeemed, next_expiry, last_position \
         FROM {schema}.wallets WHERE community_id = $1 AND resident_id = $2"
    );
    let rows = query(client, &sql, &[&community.as_uuid(), &resident]).await?;
    Ok(rows.first().map(|row| WalletRow {
        resident_id: row.get(0),
        balance: row.get(1),
        held: row.get(2),
        earned: row.get(3),
        redeemed: row.get(4),
        next_expiry: row.get(5),
        last_position: row.get(6),
    }))
}

/// What of a wallet expires when, soonest first: the remainders of its
/// lots that have an expiry, added up per moment (micros). None when the
/// live generation was folded before lots were kept (it is being rebuilt):
/// the caller folds the wallet's stream instead.
pub async fn expiring(
    pool: &Pool,
    community: CommunityId,
    resident: Uuid,
) -> Result<Option<Vec<(i64, Decimal)>>, ProjectionError> {
    let schema = reading_schema(NAME);
    let sql = format!(
        "SELECT expires_at, sum(remaining) FROM {schema}.wallet_lots \
         WHERE community_id = $1 AND resident_id = $2 AND expires_at IS NOT NULL \
         GROUP BY expires_at ORDER BY expires_at"
    );
    let client = pool.get().await?;
    match query(&client, &sql, &[&community.as_uuid(), &resident]).await {
        Ok(rows) => Ok(Some(
            rows.iter().map(|row| (row.get(0), row.get(1))).collect(),
        )),
        Err(ProjectionError::Database(error))
            if error.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) =>
        {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// One line of a wallet's statement: an event of the wallet with the
/// balance and held points after it.
#[derive(Clone, Debug, PartialEq)]
pub struct StatementLine {
    pub position: i64,
    /// granted, withheld, held, released, redeemed, expired, reversed
    pub kind: String,
    pub amount: Decimal,
    pub balance: Decimal,
    pub held: Decimal,
    /// The event itself: its source, redemption or reason (decoded once,
    /// when the page is read, not each time a kept page is shown).
    pub detail: domain::points::WalletEvent,
    pub at: i64,
    /// The gift a redemption's line is for.
    pub gift: Option<(Uuid, String)>,
}

/// A page of a wallet's statement, newest first, before `before` (a
/// position), as fresh as `at_least`.
pub async fn statement(
    reads: &ReadCache,
    community: CommunityId,
    resident: Uuid,
    (before, limit): (Option<i64>, i64),
    at_least: Option<i64>,
) -> Result<Arc<Vec<StatementLine>>, ProjectionError> {
    let question = Question::new(
        NAME,
        community,
        format!("statement {resident} {before:?} {limit}"),
    );
    reads
        .read(question, 0, at_least, &[], async |client| {
            let lines = statement_in(client, community, resident, before, limit).await?;
            let count = lines.len();
            Ok(Answer::timeless(lines, count))
        })
        .await
}

async fn statement_in(
    client: &impl GenericClient,
    community: CommunityId,
    resident: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<StatementLine>, ProjectionError> {
    let schema = reading_schema(NAME);
    // The page first, from the wallet's own index; then each line's gift,
    // looked up for that line alone (the `LIMIT 1` keeps the lookup a
    // subquery per line: without it PostgreSQL pulls it up into a join).
    // Joined before the limit, the plan prepared once for every page size
    // (it cannot see the limit, and takes a tenth of the resident's lines
    // as its guess) may hash every redemption of the community for a page
    // of twenty lines: 55-70 ms a read instead of 0.1-0.4, in half of the
    // bench's runs, as the statistics of the moment decided.
    let sql = format!(
        "SELECT l.position, l.kind, l.amount, l.balance, l.held, l.detail, l.at, g.gift_id, g.name \
         FROM (SELECT * FROM {schema}.wallet_lines \
               WHERE community_id = $1 AND resident_id = $2 \
               AND ($3::bigint IS NULL OR position < $3) ORDER BY position DESC LIMIT $4) l \
         LEFT JOIN LATERAL (SELECT g.gift_id, g.name FROM {schema}.redemptions r \
               JOIN {schema}.gifts g ON g.community_id = r.community_id AND g.gift_id = r.gift_id \
               WHERE r.community_id = l.community_id AND r.redemption_id = l.redemption_id LIMIT 1) g ON true \
         ORDER BY l.position DESC"
    );
    let rows = query(
        client,
        &sql,
        &[&community.as_uuid(), &resident, &before, &limit],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let detail: Json<domain::points::WalletEvent> = row.get(5);
            StatementLine {
                position: row.get(0),
                kind: row.get(1),
                amount: row.get(2),
                balance: row.get(3),
                held: row.get(4),
                detail: detail.0,
                at: row.get(6),
                gift: row
                    .get::<_, Option<Uuid>>(7)
                    .map(|gift| (gift, row.get::<_, Option<String>>(8).unwrap_or_default())),
            }
        })
        .collect())
}

/// Every account of a community with its balance; wallets as one line.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialBalance {
    /// The system accounts: minted, issuing, redeemed, expired, reversed.
    pub accounts: Vec<(String, Decimal)>,
    pub wallets_total: Decimal,
    pub wallet_count: i64,
    /// Zero when the books balance.
    pub total: Decimal,
    /// The position the read model had folded to.
    pub position: i64,
}

pub async fn trial_balance(
    pool: &Pool,
    community: CommunityId,
) -> Result<TrialBalance, ProjectionError> {
    let schema = reading_schema(NAME);
    trial_balance_in(pool, &schema, community).await
}

/// `trial_balance` from the read model in `schema` (a replay's).
pub async fn trial_balance_in(
    pool: &Pool,
    schema: &str,
    community: CommunityId,
) -> Result<TrialBalance, ProjectionError> {
    let mut client = pool.get().await?;
    let accounts_sql = format!(
        "SELECT account, balance FROM {schema}.accounts WHERE community_id = $1 ORDER BY account"
    );
    let wallets_sql = format!(
        "SELECT coalesce(sum(balance), 0), count(*) FROM {schema}.wallets WHERE community_id = $1"
    );
    let position_sql = "SELECT c.position FROM projection_checkpoints c \
         JOIN projection_generations g USING (projection, generation) \
         WHERE c.projection = $2 AND g.state = 'live' AND c.community_id = $1";
    // One snapshot for all three reads, so that they agree.
    let transaction = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let accounts = query(&transaction, &accounts_sql, &[&community.as_uuid()]).await?;
    let wallets = query(&transaction, &wallets_sql, &[&community.as_uuid()]).await?;
    let position = query(&transaction, position_sql, &[&community.as_uuid(), &NAME]).await?;
    transaction.commit().await?;
    let accounts: Vec<(String, Decimal)> = accounts
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let wallets_total: Decimal = wallets[0].get(0);
    let total = accounts
        .iter()
        .map(|(_, balance)| *balance)
        .sum::<Decimal>()
        + wallets_total;
    Ok(TrialBalance {
        accounts,
        wallets_total,
        wallet_count: wallets[0].get(1),
        total,
        position: position.first().map_or(0, |row| row.get(0)),
    })
}

/// Points that moved in one month of the community's calendar.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MonthFlows {
    pub month: String,
    pub minted: Decimal,
    pub granted: Decimal,
    pub redeemed: Decimal,
    pub expired: Decimal,
    pub reversed: Decimal,
}

/// The latest `limit` months with any movement, newest first.
pub async fn flows(
    pool: &Pool,
    community: CommunityId,
    limit: i64,
) -> Result<Vec<MonthFlows>, ProjectionError> {
    let schema = reading_schema(NAME);
    let sql = format!(
        "SELECT month, \
             coalesce(sum(amount) FILTER (WHERE kind = 'minted'), 0), \
             coalesce(sum(amount) FILTER (WHERE kind = 'granted'), 0), \
             coalesce(sum(amount) FILTER (WHERE kind = 'redeemed'), 0), \
             coalesce(sum(amount) FILTER (WHERE kind = 'expired'), 0), \
             coalesce(sum(amount) FILTER (WHERE kind = 'reversed'), 0) \
         FROM {schema}.flows WHERE community_id = $1 GROUP BY month ORDER BY month DESC LIMIT $2"
    );
    let client = pool.get().await?;
    let rows = query(&client, &sql, &[&community.as_uuid(), &limit]).await?;
    Ok(rows
        .iter()
        .map(|row| MonthFlows {
            month: row.get(0),
            minted: row.get(1),
            granted: row.get(2),
            redeemed: row.get(3),
            expired: row.get(4),
            reversed: row.get(5),
        })
        .collect())
}

#[derive(Clone, Debug, PartialEq)]
pub struct GiftRow {
    pub gift_id: Uuid,
    pub centre_id: Uuid,
    pub name: String,
    pub price: Decimal,
    pub stock: i32,
    pub held: i32,
    pub handed_over: i32,
    pub last_position: i64,
}

impl GiftRow {
    const COLUMNS: &'static str =
        "gift_id, centre_id, name, price, stock, held, handed_over, last_position";

    fn from_row(row: &Row) -> Self {
        GiftRow {
            gift_id: row.get(0),
            centre_id: row.get(1),
            name: row.get(2),
            price: row.get(3),
            stock: row.get(4),
            held: row.get(5),
            handed_over: row.get(6),
            last_position: row.get(7),
        }
    }
}

/// A community's gifts, at one centre or all, by name.
pub async fn gifts(
    pool: &Pool,
    community: CommunityId,
    centre: Option<Uuid>,
) -> Result<Vec<GiftRow>, ProjectionError> {
    let schema = reading_schema(NAME);
    let sql = format!(
        "SELECT {columns} FROM {schema}.gifts WHERE community_id = $1 \
         AND ($2::uuid IS NULL OR centre_id = $2) ORDER BY name, gift_id LIMIT 1000",
        columns = GiftRow::COLUMNS
    );
    let client = pool.get().await?;
    let rows = query(&client, &sql, &[&community.as_uuid(), &centre]).await?;
    Ok(rows.iter().map(GiftRow::from_row).collect())
}

#[derive(Clone, Debug, PartialEq)]
pub struct RedemptionRow {
    pub redemption_id: Uuid,
    pub centre_id: Uuid,
    pub gift_id: Uuid,
    pub resident_id: Uuid,
    pub placed_by: Uuid,
    pub quantity: i32,
    pub points: Decimal,
    pub status: String,
    pub placed_at: i64,
    pub expires_at: i64,
    pub finished_at: Option<i64>,
    pub finished_by: Option<Uuid>,
}

impl RedemptionRow {
    fn from_row(row: &Row) -> Self {
        RedemptionRow {
            redemption_id: row.get(0),
            centre_id: row.get(1),
            gift_id: row.get(2),
            resident_id: row.get(3),
            placed_by: row.get(4),
            quantity: row.get(5),
            points: row.get(6),
            status: row.get(7),
            placed_at: row.get(8),
            expires_at: row.get(9),
            finished_at: row.get(10),
            finished_by: row.get(11),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct RedemptionFilter {
    pub centre: Option<Uuid>,
    pub placed_by: Option<Uuid>,
    pub resident: Option<Uuid>,
    /// A day of the community's calendar, `YYYY-MM-DD`.
    pub day: Option<String>,
}

/// Redemptions, newest first, before `(placed_at, id)`.
pub async fn redemptions(
    pool: &Pool,
    community: CommunityId,
    filter: &RedemptionFilter,
    after: Option<(i64, Uuid)>,
    limit: i64,
) -> Result<Vec<RedemptionRow>, ProjectionError> {
    let schema = reading_schema(NAME);
    let day_start = format!(
        "(extract(epoch FROM ($5::date::timestamp AT TIME ZONE coalesce((SELECT time_zone \
         FROM {schema}.communities WHERE community_id = $1), 'Asia/Shanghai'))) * 1000000)::bigint"
    );
    let sql = format!(
        "SELECT redemption_id, centre_id, gift_id, resident_id, placed_by, quantity, points, \
         status, placed_at, expires_at, finished_at, finished_by FROM {schema}.redemptions \
         WHERE community_id = $1 AND ($2::uuid IS NULL OR centre_id = $2) \
         AND ($3::uuid IS NULL OR placed_by = $3) AND ($4::uuid IS NULL OR resident_id = $4) \
         AND ($5::text IS NULL OR (placed_at >= {day_start} \
             AND placed_at < {day_start} + 86400000000)) \
         AND ($6::bigint IS NULL OR (placed_at, redemption_id) < ($6, $7::uuid)) \
         ORDER BY placed_at DESC, redemption_id DESC LIMIT $8"
    );
    let client = pool.get().await?;
    let rows = query(
        &client,
        &sql,
        &[
            &community.as_uuid(),
            &filter.centre,
            &filter.placed_by,
            &filter.resident,
            &filter.day,
            &after.map(|a| a.0),
            &after.map(|a| a.1),
            &limit,
        ],
    )
    .await?;
    Ok(rows.iter().map(RedemptionRow::from_row).collect())
}

/// Placed redemptions whose hold ran out by `now`.
pub async fn holds_due(
    pool: &Pool,
    community: CommunityId,
    now: i64,
    limit: i64,
) -> Result<Vec<Uuid>, ProjectionError> {
    let schema = reading_schema(NAME);
    let sql = format!(
        "SELECT redemption_id FROM {schema}.redemptions WHERE community_id = $1 \
         AND status = 'placed' AND expires_at < $2 ORDER BY expires_at LIMIT $3"
    );
    let client = pool.get().await?;
    let rows = query(&client, &sql, &[&community.as_uuid(), &now, &limit]).await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Wallets with points due to expire by `now`.
pub async fn expiries_due(
    pool: &Pool,
    community: CommunityId,
    now: i64,
    limit: i64,
) -> Result<Vec<Uuid>, ProjectionError> {
    let schema = reading_schema(NAME);
    let sql = format!(
        "SELECT resident_id FROM {schema}.wallets WHERE community_id = $1 \
         AND next_expiry <= $2 AND balance > held ORDER BY next_expiry LIMIT $3"
    );
    let client = pool.get().await?;
    let rows = query(&client, &sql, &[&community.as_uuid(), &now, &limit]).await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// A line of a gift's stock history.
#[derive(Clone, Debug, PartialEq)]
pub struct GiftLineRow {
    pub position: i64,
    /// offered, added, corrected, held, released, handed_over
    pub kind: String,
    /// How many it moved (for a correction: the change, may be negative).
    pub quantity: i32,
    pub stock: i32,
    pub held: Option<i32>,
    pub by: Option<Uuid>,
    pub reason_hash: Option<String>,
    pub redemption_id: Option<Uuid>,
    pub at: i64,
}

/// A gift and its stock history, newest first, before `before` (a position).
pub async fn gift_history(
    pool: &Pool,
    community: CommunityId,
    gift: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Option<(GiftRow, Vec<GiftLineRow>)>, ProjectionError> {
    let schema = reading_schema(NAME);
    let client = pool.get().await?;
    let gift_sql = format!(
        "SELECT {columns} FROM {schema}.gifts WHERE community_id = $1 AND gift_id = $2",
        columns = GiftRow::COLUMNS
    );
    let gifts = query(&client, &gift_sql, &[&community.as_uuid(), &gift]).await?;
    let Some(found) = gifts.first().map(GiftRow::from_row) else {
        return Ok(None);
    };
    let lines_sql = format!(
        "SELECT position, kind, quantity, stock, held, by_id, reason_hash, redemption_id, at \
         FROM {schema}.gift_lines WHERE community_id = $1 AND gift_id = $2 \
         AND ($3::bigint IS NULL OR position < $3) ORDER BY position DESC LIMIT $4"
    );
    let rows = query(
        &client,
        &lines_sql,
        &[&community.as_uuid(), &gift, &before, &limit],
    )
    .await?;
    let lines = rows
        .iter()
        .map(|row| GiftLineRow {
            position: row.get(0),
            kind: row.get(1),
            quantity: row.get(2),
            stock: row.get(3),
            held: row.get(4),
            by: row.get(5),
            reason_hash: row.get(6),
            redemption_id: row.get(7),
            at: row.get(8),
        })
        .collect();
    Ok(Some((found, lines)))
}
