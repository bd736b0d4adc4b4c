//! Generations of a projection: each lives in its own schema
//! (`rm_<projection>_<generation>`). One generation is live and serves
//! queries; a rebuild fills a `building` one from position zero, then
//! promotes it. The retired generation's schema stays until the next
//! rebuild, so queries already reading it finish undisturbed.
//!
//! Queries do not ask which generation is live: they read
//! `rm_<projection>_live`, a schema of views onto the live generation's
//! tables, switched in the same transaction that makes a generation live.
//! A read is one statement, in every process, and a promotion is seen by
//! the next statement anywhere.

use deadpool_postgres::{ClientWrapper, GenericClient, Object, Pool};

use crate::error::ProjectionError;
use crate::Projection;

/// Serialises generation changes of all projections, across processes.
const GENERATION_LOCK_KEY: i64 = 0x6369_7669_635f_7067;

pub fn schema_name(projection: &str, generation: i32) -> String {
    format!("rm_{projection}_{generation}")
}

/// The schema every query of `projection`'s read model reads: views onto
/// the live generation's tables (see the module's comment).
pub fn reading_schema(projection: &str) -> String {
    format!("rm_{projection}_live")
}

/// Points `projection`'s reading schema at `generation`'s tables, inside
/// the caller's transaction (which holds the generation lock). Simple views
/// are inlined by the planner: a read through one uses the table's indexes.
async fn point_reading_at(
    client: &impl GenericClient,
    projection: &str,
    generation: i32,
) -> Result<(), ProjectionError> {
    let reading = reading_schema(projection);
    let source = schema_name(projection, generation);
    let tables = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name",
            &[&source],
        )
        .await?;
    let mut ddl = format!("DROP SCHEMA IF EXISTS {reading} CASCADE; CREATE SCHEMA {reading};");
    for row in tables {
        let table: String = row.get(0);
        ddl.push_str(&format!(
            " CREATE VIEW {reading}.{table} AS SELECT * FROM {source}.{table};"
        ));
    }
    ddl.push_str(&format!(
        " COMMENT ON SCHEMA {reading} IS '{READING_COMMENT}{generation}';"
    ));
    client.batch_execute(&ddl).await?;
    Ok(())
}

/// How a reading schema's comment names the generation its views show.
const READING_COMMENT: &str = "views onto generation ";

/// Makes sure `projection` has a live generation and that its reading
/// schema shows it: at start-up, for a database whose live generation was
/// made before reading schemas existed, or whose views a crash left behind.
/// Returns the live generation.
pub async fn open_for_reading(
    pool: &Pool,
    projection: &dyn Projection,
) -> Result<i32, ProjectionError> {
    let live = ensure_live(pool, projection).await?;
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&GENERATION_LOCK_KEY])
        .await?;
    let live = live_in(&transaction, projection.name())
        .await?
        .unwrap_or(live);
    let shown: Option<String> = transaction
        .query_one(
            "SELECT (SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace \
                     WHERE nspname = $1)",
            &[&reading_schema(projection.name())],
        )
        .await?
        .get(0);
    if shown.as_deref() != Some(format!("{READING_COMMENT}{live}").as_str()) {
        point_reading_at(&transaction, projection.name(), live).await?;
    }
    transaction.commit().await?;
    Ok(live)
}

/// The live generation, created (with its tables) on first use.
pub async fn ensure_live(pool: &Pool, projection: &dyn Projection) -> Result<i32, ProjectionError> {
    if let Some(generation) = live(pool, projection.name()).await? {
        return Ok(generation);
    }
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&GENERATION_LOCK_KEY])
        .await?;
    if let Some(generation) = live_in(&transaction, projection.name()).await? {
        return Ok(generation);
    }
    let generation = next_generation(&transaction, projection.name()).await?;
    create(&transaction, projection, generation, None).await?;
    point_reading_at(&transaction, projection.name(), generation).await?;
    transaction.commit().await?;
    Ok(generation)
}

/// The live generation, if there is one.
/// Whether `projection`'s live generation was folded by an older fold than
/// the code's, with no generation of the current fold being built: then it
/// is to be rebuilt.
/// A rebuild is also due when one was asked for after the live generation
/// was made ([`request_rebuild`]).
pub async fn is_stale(pool: &Pool, projection: &dyn Projection) -> Result<bool, ProjectionError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "WITH live AS (SELECT fold_version, created_at FROM projection_generations \
                           WHERE projection = $1 AND state = 'live'), \
                  asked AS (SELECT max(requested_at) AS at FROM projection_rebuild_requests \
                           WHERE projection = $1) \
             SELECT EXISTS (SELECT 1 FROM live WHERE fold_version < $2 \
                               OR created_at < (SELECT at FROM asked)) \
               AND NOT EXISTS (SELECT 1 FROM projection_generations WHERE projection = $1 \
                         AND state = 'building' AND fold_version >= $2 \
                         AND created_at >= coalesce((SELECT at FROM asked), '-infinity'))",
            &[&projection.name(), &projection.fold_version()],
        )
        .await?;
    Ok(row.get(0))
}

/// Asks every runner to rebuild these projections (their live generations
/// were folded with a set-up since corrected, such as a time zone).
pub async fn request_rebuild(
    pool: &Pool,
    projections: &[&str],
    reason: &str,
) -> Result<(), ProjectionError> {
    let client = pool.get().await?;
    for projection in projections {
        client
            .execute(
                "INSERT INTO projection_rebuild_requests (projection, reason) VALUES ($1, $2)",
                &[projection, &reason],
            )
            .await?;
    }
    Ok(())
}

pub async fn live(pool: &Pool, projection: &str) -> Result<Option<i32>, ProjectionError> {
    let client = pool.get().await?;
    live_in(&client, projection).await
}

async fn live_in(
    client: &impl GenericClient,
    projection: &str,
) -> Result<Option<i32>, ProjectionError> {
    // Every read of a read model asks this first: on a cached statement it
    // is one round trip, not a prepare and an execute.
    let statement = client
        .prepare_cached(
            "SELECT generation FROM projection_generations \
             WHERE projection = $1 AND state = 'live'",
        )
        .await?;
    let row = client.query_opt(&statement, &[&projection]).await?;
    Ok(row.map(|row| row.get(0)))
}

async fn next_generation(
    client: &impl GenericClient,
    projection: &str,
) -> Result<i32, ProjectionError> {
    let row = client
        .query_one(
            "SELECT coalesce(max(generation), 0) + 1 FROM projection_generations \
             WHERE projection = $1",
            &[&projection],
        )
        .await?;
    Ok(row.get(0))
}

/// True while a generation is being filled from zero (not yet promoted):
/// it is folded with [`crate::Projection::fill_batch`].
pub async fn is_building(
    pool: &Pool,
    projection: &str,
    generation: i32,
) -> Result<bool, ProjectionError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT state FROM projection_generations WHERE projection = $1 AND generation = $2",
            &[&projection, &generation],
        )
        .await?;
    match row {
        Some(row) => Ok(row.get::<_, String>(0) == "building"),
        None => Err(ProjectionError::Invalid {
            field: "generation",
            reason: format!("{projection} has no generation {generation}"),
        }),
    }
}

/// How a generation being built from position zero is used once filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Building {
    /// Promoted to live: its tables are written to the write-ahead log like
    /// the live ones.
    Rebuild,
    /// Read and then dropped, never promoted (a replay's): its tables skip
    /// the write-ahead log, as nothing of them has to survive a crash, and
    /// it has no secondary indexes: it is read once, by primary key or whole.
    Scratch,
}

async fn create(
    client: &impl GenericClient,
    projection: &dyn Projection,
    generation: i32,
    building: Option<Building>,
) -> Result<(), ProjectionError> {
    let schema = schema_name(projection.name(), generation);
    let state = if building.is_some() {
        "building"
    } else {
        "live"
    };
    client
        .execute(
            "INSERT INTO projection_generations (projection, generation, state, fold_version) \
             VALUES ($1, $2, $3, $4)",
            &[
                &projection.name(),
                &generation,
                &state,
                &projection.fold_version(),
            ],
        )
        .await?;
    let (mut tables, indexes) = ddl(projection, &schema);
    match building {
        None => tables.extend(indexes),
        Some(Building::Rebuild) => {}
        Some(Building::Scratch) => {
            for table in &mut tables {
                *table = table.replacen("CREATE TABLE", "CREATE UNLOGGED TABLE", 1);
            }
        }
    }
    let ddl = format!("CREATE SCHEMA {schema}; {}", tables.join(";\n"));
    client.batch_execute(&ddl).await?;
    Ok(())
}

/// A projection's DDL for `schema`, split into the statements that make its
/// tables and those that make its secondary indexes. A generation filled
/// from zero makes its indexes once filled: one sort each is far cheaper than
/// keeping them up to date row by row.
fn ddl(projection: &dyn Projection, schema: &str) -> (Vec<String>, Vec<String>) {
    let sql = projection.tables_sql().replace("{schema}", schema);
    let uncommented: String = sql
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .map(|line| format!("{line}\n"))
        .collect();
    uncommented
        .split(';')
        .map(str::trim)
        .filter(|statement| !statement.is_empty())
        .map(str::to_string)
        .partition(|statement| {
            !(statement.starts_with("CREATE INDEX") || statement.starts_with("CREATE UNIQUE INDEX"))
        })
}

/// Starts generations to be filled from position zero (with
/// [`crate::Projection::fill_batch`]), and keeps them claimed while it
/// lives: its own connection holds a lock per generation it started. A
/// builder that stops without discarding or promoting them (an error, a
/// replay interrupted by its auditor, a killed process) closes that
/// connection, PostgreSQL releases the locks, and the next builder made
/// anywhere drops what it left ([`discard_abandoned`]).
pub struct Builder {
    client: ClientWrapper,
}

impl Builder {
    /// A builder on a connection of its own, taken out of the pool: it is
    /// closed, never handed back, when the builder is dropped. The
    /// generations other builders abandoned are dropped first.
    pub async fn new(pool: &Pool) -> Result<Self, ProjectionError> {
        discard_abandoned(pool).await?;
        let client = Object::take(pool.get().await?);
        Ok(Builder { client })
    }

    /// Starts a new generation of `projection`, without its secondary
    /// indexes until [`finish_building`].
    pub async fn start(
        &mut self,
        projection: &dyn Projection,
        building: Building,
    ) -> Result<i32, ProjectionError> {
        let transaction = self.client.transaction().await?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&GENERATION_LOCK_KEY])
            .await?;
        let generation = next_generation(&transaction, projection.name()).await?;
        // Held by the session, past this transaction's commit: no sweep can
        // see the new generation unclaimed.
        transaction
            .execute(
                "SELECT pg_advisory_lock(hashtext($1), $2)",
                &[&projection.name(), &generation],
            )
            .await?;
        create(&transaction, projection, generation, Some(building)).await?;
        transaction.commit().await?;
        Ok(generation)
    }
}

/// Drops every generation still being built whose builder is gone (its
/// claim released: see [`Builder`]), with its schema and checkpoints, and
/// returns them. A generation being built by a live builder is left alone,
/// in this process or another.
pub async fn discard_abandoned(pool: &Pool) -> Result<Vec<(String, i32)>, ProjectionError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&GENERATION_LOCK_KEY])
        .await?;
    // The lock taken here is the transaction's: it is released at commit,
    // and this connection never holds a builder's claim.
    let abandoned = transaction
        .query(
            "SELECT projection, generation FROM projection_generations \
             WHERE state = 'building' AND pg_try_advisory_xact_lock(hashtext(projection), generation) \
             ORDER BY projection, generation",
            &[],
        )
        .await?;
    let mut discarded = Vec::new();
    for row in abandoned {
        let (projection, generation): (String, i32) = (row.get(0), row.get(1));
        transaction
            .execute(
                "DELETE FROM projection_generations WHERE projection = $1 AND generation = $2",
                &[&projection, &generation],
            )
            .await?;
        transaction
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                schema_name(&projection, generation)
            ))
            .await?;
        tracing::warn!(
            projection,
            generation,
            "dropped a generation its builder abandoned"
        );
        discarded.push((projection, generation));
    }
    transaction.commit().await?;
    Ok(discarded)
}

/// Completes a generation filled from zero ([`crate::Projection::finish_fill`]).
/// A rebuild's then gets its secondary indexes and fresh planner statistics;
/// a replay's gets neither, as it is read once, by primary key or whole.
pub async fn finish_building(
    pool: &Pool,
    projection: &dyn Projection,
    generation: i32,
    building: Building,
) -> Result<(), ProjectionError> {
    let schema = schema_name(projection.name(), generation);
    projection.finish_fill(pool, &schema).await?;
    if building == Building::Scratch {
        return Ok(());
    }
    let client = pool.get().await?;
    let (_, indexes) = ddl(projection, &schema);
    for index in indexes {
        client.batch_execute(&index).await?;
    }
    analyze(&client, &schema).await
}

/// Refreshes the planner's statistics of every table of a schema.
pub(crate) async fn analyze(
    client: &impl GenericClient,
    schema: &str,
) -> Result<(), ProjectionError> {
    let tables = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1",
            &[&schema],
        )
        .await?;
    for table in tables {
        let table: String = table.get(0);
        client
            .batch_execute(&format!("ANALYZE {schema}.{table}"))
            .await?;
    }
    Ok(())
}

/// Makes a built generation the live one. The one it replaces is retired
/// (its schema kept for queries in flight); older retired ones are dropped.
pub async fn promote(
    pool: &Pool,
    projection: &str,
    generation: i32,
) -> Result<(), ProjectionError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&GENERATION_LOCK_KEY])
        .await?;
    let retired = transaction
        .query(
            "SELECT generation FROM projection_generations \
             WHERE projection = $1 AND state = 'retired'",
            &[&projection],
        )
        .await?;
    for row in retired {
        let old: i32 = row.get(0);
        transaction
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                schema_name(projection, old)
            ))
            .await?;
        transaction
            .execute(
                "DELETE FROM projection_generations WHERE projection = $1 AND generation = $2",
                &[&projection, &old],
            )
            .await?;
    }
    transaction
        .execute(
            "UPDATE projection_generations SET state = 'retired' \
             WHERE projection = $1 AND state = 'live'",
            &[&projection],
        )
        .await?;
    let promoted = transaction
        .execute(
            "UPDATE projection_generations SET state = 'live' \
             WHERE projection = $1 AND generation = $2 AND state = 'building'",
            &[&projection, &generation],
        )
        .await?;
    if promoted != 1 {
        return Err(ProjectionError::Invalid {
            field: "generation",
            reason: format!("{projection} generation {generation} is not being built"),
        });
    }
    point_reading_at(&transaction, projection, generation).await?;
    // Answers kept from the retired generation are retired with it, in
    // every process (projections/src/cache.rs).
    store::announce_topic_in(&transaction, &crate::cache::generations_topic(projection)).await?;
    transaction.commit().await?;
    Ok(())
}

/// The live generation's own schema (created when missing), for what must
/// see its tables themselves (their keys, their storage) rather than the
/// reading schema's views.
pub async fn live_schema(pool: &Pool, projection: &str) -> Result<String, ProjectionError> {
    let generation = match live(pool, projection).await? {
        Some(generation) => generation,
        None => {
            let projection = crate::by_name(projection)
                .ok_or_else(|| ProjectionError::UnknownProjection(projection.to_string()))?;
            ensure_live(pool, &*projection).await?
        }
    };
    Ok(schema_name(projection, generation))
}

/// Drops a generation that was built and never promoted (a replay's), its
/// builder still holding it.
pub async fn discard(
    pool: &Pool,
    projection: &str,
    generation: i32,
) -> Result<(), ProjectionError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&GENERATION_LOCK_KEY])
        .await?;
    let deleted = transaction
        .execute(
            "DELETE FROM projection_generations WHERE projection = $1 AND generation = $2 \
             AND state = 'building'",
            &[&projection, &generation],
        )
        .await?;
    if deleted != 1 {
        return Err(ProjectionError::Invalid {
            field: "generation",
            reason: format!("{projection} generation {generation} is not being built"),
        });
    }
    transaction
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            schema_name(projection, generation)
        ))
        .await?;
    transaction.commit().await?;
    Ok(())
}
