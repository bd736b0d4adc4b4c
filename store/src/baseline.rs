//! Raw PostgreSQL for benchmarks to measure the store against, on the same
//! server: a scratch database, a table of the events table's shape, plain
//! multi-row inserts (one statement, one transaction) and a plain ordered read.

use futures::TryStreamExt;
use serde_json::Value;
use tokio_postgres::types::{FromSql, Json, ToSql, Type};
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::canonical::sha256;
use crate::error::StoreError;
use crate::migrate::ensure_database;
use crate::types::CommunityId;

const RAW_INSERT: &str = "INSERT INTO raw_events (community_id, position, stream_id, \
    stream_type, stream_version, event_type, event_version, payload, metadata, recorded_at, \
    previous_hash, hash) \
    SELECT $1, u.p, u.si, 'Bench', u.sv, 'BenchEventRecorded', '1', u.pl, u.md, now(), u.h, u.h \
    FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::jsonb[], $6::jsonb[], $7::bytea[]) \
    AS u(p, si, sv, pl, md, h)";

async fn connect(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client, StoreError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Creates a database with a unique name beside the one `admin` points at;
/// returns its name and connection settings.
pub async fn create_scratch_database(
    admin: &tokio_postgres::Config,
) -> Result<(String, tokio_postgres::Config), StoreError> {
    let name = format!("civic_ledger_bench_{}", Uuid::new_v4().simple());
    ensure_database(admin, &name).await?;
    let config = admin.clone().dbname(&name).to_owned();
    Ok((name, config))
}

pub async fn drop_database(admin: &tokio_postgres::Config, name: &str) -> Result<(), StoreError> {
    let quoted = name.replace('"', "\"\"");
    connect(admin)
        .await?
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{quoted}\" WITH (FORCE)"
        ))
        .await?;
    Ok(())
}

/// Creates `raw_events` with the columns, constraints and indexes of `events`
/// (run the migrations first); returns the server's version.
pub async fn create_raw_table(config: &tokio_postgres::Config) -> Result<String, StoreError> {
    let client = connect(config).await?;
    client
        .batch_execute(
            "CREATE TABLE raw_events (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
             INCLUDING INDEXES)",
        )
        .await?;
    Ok(client.query_one("SHOW server_version", &[]).await?.get(0))
}

/// One connection inserting into `raw_events`.
pub struct RawWriter {
    client: tokio_postgres::Client,
}

impl RawWriter {
    pub async fn connect(config: &tokio_postgres::Config) -> Result<RawWriter, StoreError> {
        Ok(RawWriter {
            client: connect(config).await?,
        })
    }

    /// Inserts one row per payload in one statement (its own transaction).
    pub async fn insert(
        &self,
        community: Uuid,
        stream: &str,
        first_position: i64,
        first_version: i64,
        payloads: Vec<Value>,
    ) -> Result<(), StoreError> {
        let rows = payloads.len() as i64;
        let positions: Vec<i64> = (first_position..first_position + rows).collect();
        let stream_ids = vec![stream; payloads.len()];
        let versions: Vec<i64> = (first_version..first_version + rows).collect();
        let payloads: Vec<Json<Value>> = payloads.into_iter().map(Json).collect();
        let metadata = vec![Json(serde_json::json!({"actor_role": "bench"})); payloads.len()];
        let hashes: Vec<Vec<u8>> = positions
            .iter()
            .map(|p| sha256(&p.to_be_bytes()).to_vec())
            .collect();
        let params: [&(dyn ToSql + Sync); 7] = [
            &community,
            &positions,
            &stream_ids,
            &versions,
            &payloads,
            &metadata,
            &hashes,
        ];
        self.client.execute(RAW_INSERT, &params).await?;
        Ok(())
    }
}

/// A column as the bytes PostgreSQL sent, undecoded.
struct RawBytes;

impl<'a> FromSql<'a> for RawBytes {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        std::hint::black_box(raw);
        Ok(RawBytes)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Reads every event of a community by one plain `SELECT … ORDER BY
/// position`, streamed, touching every column; returns how many.
pub async fn read_all(
    config: &tokio_postgres::Config,
    community_id: CommunityId,
) -> Result<i64, StoreError> {
    let client = connect(config).await?;
    let params: [&(dyn ToSql + Sync); 1] = [&community_id.as_uuid()];
    let rows = client
        .query_raw(
            "SELECT community_id, position, stream_id, stream_type, stream_version, event_type, \
             event_version, payload, metadata, recorded_at, previous_hash, hash FROM events \
             WHERE community_id = $1 ORDER BY position",
            params,
        )
        .await?;
    let mut rows = std::pin::pin!(rows);
    let mut events = 0;
    while let Some(row) = rows.try_next().await? {
        for column in 0..row.len() {
            let _: RawBytes = row.try_get(column)?;
        }
        events += 1;
    }
    Ok(events)
}
