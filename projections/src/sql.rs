//! Small helpers shared by the read models.
//!
//! A batch is folded in memory and written set-based: the rows a batch
//! touched are loaded with one query, changed in Rust, and written back with
//! one `COPY` per table; sums (counts, balances, flows) travel as one binary
//! array per column ([`column`], read back with `unnest`) and are added in
//! one statement. Statements per event would cap a replay at a few thousand
//! events a second.

use std::collections::{HashMap, HashSet};

use bytes::{BufMut, Bytes, BytesMut};
use deadpool_postgres::{GenericClient, Transaction};
use futures::SinkExt;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tokio_postgres::types::{IsNull, Json, ToSql, Type};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::ProjectionError;

/// JSON text for a `json` column (an event's payload, or part of it):
/// written as it is, never parsed into a tree and back. Its characters are
/// not part of the read model, only its value: a fold is given a payload
/// as the canonical text that was sent (events this process committed a
/// moment ago) or as PostgreSQL's rendering of it (events read from the
/// log), and readers parse it.
pub(crate) type JsonText = Json<Box<RawValue>>;

/// One field of every row, as an array parameter (`unnest($n::type[])`).
pub(crate) fn column<'r, T, U>(rows: &'r [T], field: impl Fn(&'r T) -> U) -> Vec<U> {
    rows.iter().map(field).collect()
}

/// Runs a statement through the connection's statement cache.
pub(crate) async fn execute(
    transaction: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, ProjectionError> {
    let statement = transaction.prepare_cached(sql).await?;
    Ok(transaction.execute(&statement, params).await?)
}

/// Queries through the connection's statement cache.
pub(crate) async fn query(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, ProjectionError> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query(&statement, params).await?)
}

/// [`query`] on its generic plan, for a hot statement whose generic plan
/// is right for every community. PostgreSQL plans a prepared statement's
/// first five runs on each connection for their parameters, then keeps
/// those custom plans for good if they cost less than the generic one: a
/// connection whose first runs were in a young community (few rows, cheap
/// plans) planned the statement again on every run from then on. The
/// duplicate check while filing over eight communities spent 0.88 ms
/// planning a call that runs in 0.12 ms, and which connections fell into
/// that decided the rate of a whole run. In a transaction of its own:
/// the statement is prepared first (from the connection's cache), then
/// `BEGIN` with the setting, the statement and `COMMIT` go out together,
/// one round trip (a filing waits for this one; a second round trip for
/// the `COMMIT` was a filing's millisecond under load, docs/adr/0019). The
/// three are queued on the connection in that order when first polled, so
/// a caller that gives up after that leaves the connection out of any
/// transaction all the same; a statement that fails turns the `COMMIT`
/// into a rollback.
pub(crate) async fn query_generic(
    pool: &deadpool_postgres::Pool,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, ProjectionError> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(sql).await?;
    let (_, rows, _) = futures::try_join!(
        client.batch_execute("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan"),
        client.query(&statement, params),
        client.batch_execute("COMMIT"),
    )?;
    Ok(rows)
}

/// A lookup of one key's rows of `table` (qualified) in the community `$1`,
/// as the inner side of `CROSS JOIN LATERAL` over a batch's keys: `key` is
/// a condition on the outer key (`id = k.id`). The subquery cannot be
/// merged into the join (`OFFSET 0`), so it runs once per key with the key
/// given, and the cheapest way to find one key's rows is the key's index:
/// a probe per key. (`{key} = ANY($2)`, one scan for all the keys, was
/// planned as a read of the community's whole table through the first
/// column of another index, every key compared with every row: 6,500
/// reports read to find 213, 15 to 19 ms a batch at 30,000 events, with
/// statistics true to the table.)
pub(crate) fn probe(table: &str, columns: &str, key: &str) -> String {
    format!("SELECT {columns} FROM {table} WHERE community_id = $1 AND {key} OFFSET 0")
}

/// Deletes the rows of `table` (qualified) that `keys` (the batch's keys as
/// an aliased set, such as `unnest($2::uuid[]) AS k(id)`) name, each found
/// by [`probe`] on `key` (`id = k.id`): by their row addresses, so the
/// statement reads nothing but the probed rows, however the planner would
/// join the keys to the table.
pub(crate) fn delete_probed(table: &str, keys: &str, key: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT t.ctid FROM {keys} \
         CROSS JOIN LATERAL ({}) AS t))",
        probe(table, "ctid", key)
    )
}

/// Updates the rows of `table` (qualified) that `rows` (the batch's rows
/// as a set aliased `d`, such as `unnest($2::uuid[], $3::text[]) AS
/// d(id, state)`) name, each found by [`probe`] on `key` (`id = d.id`) and
/// then changed by its row address: `set` assigns the columns from `d`
/// and from `t`, the row as stored. Joined to the table directly (`FROM
/// unnest(…) … WHERE t.id = d.id`), the statement's plan was made while
/// the table was small and kept: every redemption completed read every
/// redemption of its community, 5.8 ms a batch at 9,000 redemptions and
/// growing.
pub(crate) fn update_probed(table: &str, set: &str, rows: &str, key: &str) -> String {
    format!(
        "UPDATE {table} AS t SET {set} FROM (SELECT p.ctid AS found, d.* FROM {rows} \
         CROSS JOIN LATERAL ({}) AS p) AS d WHERE t.ctid = d.found",
        probe(table, "ctid", key)
    )
}

/// The rows a batch loaded to change, keyed by id ([`load_rows`]).
pub(crate) struct Loaded<T> {
    /// The keys found stored: the rows [`replace_rows`] deletes.
    pub(crate) stored: Vec<Uuid>,
    pub(crate) rows: HashMap<Uuid, T>,
}

/// The rows of `table` (qualified) of one community whose `key` column is
/// one of `touched`, as `T` (whose fields are named as the columns), keyed
/// by `key_of`. Keys in `new` (rows the batch itself creates, which cannot
/// be stored yet) are not looked up.
pub(crate) async fn load_rows<T: DeserializeOwned>(
    transaction: &Transaction<'_>,
    (table, key): (&str, &str),
    community: Uuid,
    (mut touched, new): (Vec<Uuid>, &HashSet<Uuid>),
    key_of: impl Fn(&T) -> Uuid,
) -> Result<Loaded<T>, ProjectionError> {
    touched.retain(|id| !new.contains(id));
    touched.sort_unstable();
    touched.dedup();
    let mut loaded = Loaded {
        stored: Vec::new(),
        rows: HashMap::new(),
    };
    if touched.is_empty() {
        return Ok(loaded);
    }
    // `row_to_json` writes the row's text at once; `to_jsonb` builds a
    // binary value first and PostgreSQL then writes its text for the wire:
    // twice the time (34 against 18.5 µs a report row), the largest part
    // of loading a batch's reports once each is found by a probe.
    let sql = format!(
        "SELECT row_to_json(t) FROM unnest($2::uuid[]) AS k(id) CROSS JOIN LATERAL ({}) AS t",
        probe(table, "*", &format!("{key} = k.id"))
    );
    for row in query(transaction, &sql, &[&community, &touched]).await? {
        let Json(value): Json<T> = row.try_get(0)?;
        let id = key_of(&value);
        loaded.stored.push(id);
        loaded.rows.insert(id, value);
    }
    Ok(loaded)
}

/// A row of a read model's table, written with `COPY`.
pub(crate) trait TableRow {
    /// The columns `values` gives, in that order.
    const COLUMNS: &'static [&'static str];

    fn values(&self) -> Vec<&(dyn ToSql + Sync)>;
}

/// Writes `rows` (by their `key` column's value) back: the community's rows
/// whose keys are in `stored` (those [`load_rows`] found) are deleted, and
/// every row of `rows` is appended. A key the batch did not find stored is
/// not stored meanwhile: a batch holds its generation's checkpoint row
/// locked, so no other writer adds to its tables.
pub(crate) async fn replace_rows<T: TableRow>(
    transaction: &Transaction<'_>,
    (table, key): (&str, &str),
    community: Uuid,
    stored: &[Uuid],
    rows: &HashMap<Uuid, T>,
) -> Result<(), ProjectionError> {
    if !stored.is_empty() {
        let sql = delete_probed(
            table,
            "unnest($2::uuid[]) AS k(id)",
            &format!("{key} = k.id"),
        );
        execute(transaction, &sql, &[&community, &stored]).await?;
    }
    insert_rows(transaction, table, rows.values()).await
}

/// Bytes of `COPY` data sent per message: few large messages rather than
/// one every few kilobytes, each a hand-over to the connection's task.
const COPY_CHUNK: usize = 256 * 1024;

/// Appends `rows` to `table` with a binary `COPY`: no statement per row,
/// and no text for PostgreSQL to parse.
pub(crate) async fn insert_rows<'r, T: TableRow + 'r>(
    transaction: &Transaction<'_>,
    table: &str,
    rows: impl IntoIterator<Item = &'r T>,
) -> Result<(), ProjectionError> {
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let columns = T::COLUMNS.join(", ");
    let typed = transaction
        .prepare_cached(&format!("SELECT {columns} FROM {table} LIMIT 0"))
        .await?;
    let types: Vec<Type> = typed.columns().iter().map(|c| c.type_().clone()).collect();
    let sink = transaction
        .copy_in::<_, Bytes>(&format!(
            "COPY {table} ({columns}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let mut sink = std::pin::pin!(sink);
    let mut data = BytesMut::with_capacity(COPY_CHUNK * 2);
    // The binary format's header: signature, flags, no extension.
    data.put_slice(b"PGCOPY\n\xff\r\n\0");
    data.put_i32(0);
    data.put_i32(0);
    for row in rows {
        let values = row.values();
        data.put_i16(values.len() as i16);
        for (value, type_) in values.into_iter().zip(&types) {
            let at = data.len();
            data.put_i32(0);
            let written = value.to_sql_checked(type_, &mut data).map_err(|error| {
                ProjectionError::Unwritable {
                    table: table.to_string(),
                    reason: error.to_string(),
                }
            })?;
            let length = match written {
                IsNull::Yes => -1,
                IsNull::No => (data.len() - at - 4) as i32,
            };
            data[at..at + 4].copy_from_slice(&length.to_be_bytes());
        }
        if data.len() >= COPY_CHUNK {
            sink.send(data.split().freeze()).await?;
        }
    }
    data.put_i16(-1);
    sink.send(data.split().freeze()).await?;
    sink.as_mut().finish().await?;
    Ok(())
}
