//! The projection runner: a projection stopped mid-batch and restarted ends
//! with exactly the read model of one that never stopped, and a rebuild
//! from zero gives the same again, while the live one keeps serving.

use std::collections::BTreeMap;

use projections::generation::{
    discard_abandoned, finish_building, live, open_for_reading, reading_schema, schema_name,
    Builder, Building,
};
use projections::{ProjectionError, ProjectionRunner, RunnerConfig};
use serde_json::json;

use crate::app::{act, submit, Fixture, TestApp};

/// Every table of a schema, as JSON text of its rows in a stable order.
/// Compared as values (`jsonb`): a `json` column keeps the characters it
/// was given, and an event's payload may reach a fold in either form it
/// has (the canonical text sent, or PostgreSQL's rendering of it).
pub async fn dump(app: &TestApp, schema: &str) -> BTreeMap<String, String> {
    let client = app.db.client().await;
    let tables = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap();
    assert!(!tables.is_empty(), "schema {schema} has tables");
    let mut dumped = BTreeMap::new();
    for table in tables {
        let name: String = table.get(0);
        let rows: Option<String> = client
            .query_one(
                &format!(
                    "SELECT jsonb_agg(to_jsonb(t) ORDER BY to_jsonb(t)::text)::text \
                     FROM {schema}.{name} t"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        dumped.insert(name, rows.unwrap_or_default());
    }
    dumped
}

/// A schema's indexes and tables, with whether each table is written to the
/// write-ahead log (`p`) or not (`u`), the schema's name taken out.
pub async fn layout(app: &TestApp, schema: &str) -> Vec<String> {
    let client = app.db.client().await;
    let rows = client
        .query(
            "SELECT replace(indexdef, $1 || '.', '') FROM pg_indexes WHERE schemaname = $1 \
             UNION ALL SELECT c.relname || ' ' || c.relpersistence::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r' \
             ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

/// How far a generation of a projection has folded the test's community.
async fn checkpoint(app: &TestApp, projection: &str, generation: i32) -> i64 {
    app.db
        .client()
        .await
        .query_one(
            "SELECT max(position) FROM projection_checkpoints WHERE projection = $1 AND generation = $2",
            &[&projection, &generation],
        )
        .await
        .unwrap()
        .get(0)
}

/// Some history touching every read model.
async fn history(app: &TestApp) -> (i64, Fixture) {
    let counter = app.counter().await;
    // Points: a grant, a redemption completed and one cancelled.
    let gift = app.gift(&counter, "3", 5).await;
    app.grant(&counter.f, counter.f.resident_id, "20").await;
    for (key, finish) in [("h-1", "completeRedemption"), ("h-2", "cancelRedemption")] {
        let (clerk, f) = (&counter.clerk, &counter.f);
        redeemed(app, clerk, (f.community, f.resident_id, gift), key, finish).await;
    }
    let f = counter.f;
    let assign = format!("assignReport(workerId: \"{}\")", f.worker_id);
    for round in 0..4 {
        let (report, _) = submit(app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
        act(app, &f, &f.admin, "acceptReport", report).await;
        if round % 2 == 0 {
            act(app, &f, &f.admin, &assign, report).await;
            act(app, &f, &f.worker, "startWork", report).await;
            act(app, &f, &f.worker, "resolveReport(notes: \"清理\")", report).await;
        }
        app.clock.advance_hours(7);
    }
    let (sewage, _) = submit(app, &f, &f.resident, "RB-02", "SEWAGE-OUTFALL").await;
    act(app, &f, &f.worker, "acceptReport", sewage).await;
    app.ok(
        Some(&f.resident),
        "mutation($c: UUID!) { submitSuggestion(communityId: $c, siteCode: \"MS-01\", text: \"建议\") { position } }",
        json!({"c": f.community}),
    )
    .await;
    let patrol = app
        .ok(
            Some(&f.worker),
            "mutation($c: UUID!) { startPatrol(communityId: $c) { id } }",
            json!({"c": f.community}),
        )
        .await["startPatrol"]["id"]
        .clone();
    app.ok(
        Some(&f.worker),
        "mutation($c: UUID!, $p: UUID!) { checkInPatrol(communityId: $c, patrolId: $p, siteCode: \"RB-01\") { position } }",
        json!({"c": f.community, "p": patrol}),
    )
    .await;
    app.watcher.tick().await.unwrap();
    let head = app.head(f.community).await;
    // Let the live projections reach the head.
    for projection in projections::all() {
        assert!(projections::Progress::default()
            .wait_for(
                app.store.pool(),
                projection.name(),
                store::CommunityId::new(f.community),
                head,
                std::time::Duration::from_secs(10),
            )
            .await
            .unwrap());
    }
    (head, f)
}

#[tokio::test]
async fn a_projection_stopped_mid_batch_resumes_to_the_same_read_model_and_rebuilds_the_same() {
    let app = TestApp::spawn_quiet().await;
    let (head, f) = history(&app).await;
    assert!(head > 30, "enough history to stop in the middle: {head}");
    let pool = app.store.pool().clone();
    for projection in projections::all() {
        let name = projection.name();
        let live_generation = live(&pool, name).await.unwrap().unwrap();
        let never_stopped = dump(&app, &schema_name(name, live_generation)).await;
        let live_layout = layout(&app, &schema_name(name, live_generation)).await;

        // A second generation, folded in batches of 7 and stopped in the
        // middle of a batch.
        let mut builder = Builder::new(&pool).await.unwrap();
        let generation = builder
            .start(&*projection, Building::Rebuild)
            .await
            .unwrap();
        let interrupted = ProjectionRunner::new(
            app.store.clone(),
            RunnerConfig {
                batch_size: 7,
                interrupt_at_position: Some(head / 2 + 3),
                ..RunnerConfig::default()
            },
        );
        let stopped = interrupted.catch_up(&*projection, generation).await;
        assert!(
            matches!(stopped, Err(ProjectionError::Interrupted(_))),
            "{name}: {:?}",
            stopped.map(|_| ())
        );
        let checkpoint = checkpoint(&app, name, generation).await;
        assert!(
            checkpoint < head / 2 + 3,
            "{name}: the interrupted batch left no trace"
        );
        assert_eq!(
            checkpoint % 7,
            0,
            "{name}: checkpoints move by whole batches"
        );

        let resumed = ProjectionRunner::new(
            app.store.clone(),
            RunnerConfig {
                batch_size: 7,
                ..RunnerConfig::default()
            },
        );
        resumed.catch_up(&*projection, generation).await.unwrap();
        // Filled from zero: complete once finished (staged sums summed).
        finish_building(&pool, &*projection, generation, Building::Rebuild)
            .await
            .unwrap();
        assert_eq!(
            dump(&app, &schema_name(name, generation)).await,
            never_stopped,
            "{name}: resumed equals never stopped"
        );

        // A rebuild from zero becomes the live generation, with the same rows.
        let rebuilt = resumed.rebuild(&*projection).await.unwrap();
        assert_eq!(live(&pool, name).await.unwrap(), Some(rebuilt));
        assert_eq!(
            dump(&app, &schema_name(name, rebuilt)).await,
            never_stopped,
            "{name}: rebuilt equals never stopped"
        );
        // Built without its secondary indexes, which came once it was filled.
        assert_eq!(
            layout(&app, &schema_name(name, rebuilt)).await,
            live_layout,
            "{name}: rebuilt has the live one's indexes, and is logged"
        );
    }

    // The API reads the rebuilt generation, and the server's runner follows
    // it: a new write shows up.
    let (report, position) = submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    let data = app
        .ok(
            Some(&f.admin),
            "query($c: UUID!, $r: UUID!, $p: Int) { report(communityId: $c, reportId: $r, atLeast: $p) { id }
                reports(communityId: $c, first: 100, atLeast: $p) { edges { node { id } } } }",
            json!({"c": f.community, "r": report, "p": position}),
        )
        .await;
    assert_eq!(data["report"]["id"], report.to_string());
    assert_eq!(data["reports"]["edges"].as_array().unwrap().len(), 6);
    // The reports read model answered; the others fold the same write on
    // their own tasks: give them a moment (on a loaded machine, one pass).
    let caught_up = |metrics: &str| {
        ["reports", "suggestions", "patrols"]
            .iter()
            .all(|projection| {
                metrics.contains(&format!(
                    "civic_ledger_projection_lag_events{{projection=\"{projection}\"}} 0"
                ))
            })
    };
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = app
            .http
            .get(app.url.replace("/graphql", "/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if caught_up(&metrics) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for projection in ["reports", "suggestions", "patrols"] {
        assert!(
            metrics.contains(&format!(
                "civic_ledger_projection_lag_events{{projection=\"{projection}\"}} 0"
            )),
            "{metrics}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn every_read_model_folded_at_once_from_one_read_of_the_log_equals_the_live_ones() {
    let app = TestApp::spawn_quiet().await;
    let (head, f) = history(&app).await;
    let pool = app.store.pool().clone();
    let mut folds = Vec::new();
    let mut builder = Builder::new(&pool).await.unwrap();
    for projection in projections::all() {
        let generation = builder
            .start(&*projection, Building::Scratch)
            .await
            .unwrap();
        folds.push((projection, generation));
    }
    // Batches of 7 read once for all, each read model at its own pace; a
    // first pass stopped short of the head, then the rest.
    let runner = ProjectionRunner::new(
        app.store.clone(),
        RunnerConfig {
            replay_batch_size: 7,
            ..RunnerConfig::default()
        },
    );
    let community = store::CommunityId::new(f.community);
    let failing = ProjectionRunner::new(
        app.store.clone(),
        RunnerConfig {
            replay_batch_size: 7,
            interrupt_at_position: Some(head / 4),
            ..RunnerConfig::default()
        },
    );
    let failed = failing.catch_up_all_to(&folds, community, head / 2).await;
    assert!(
        matches!(failed, Err(ProjectionError::Interrupted(at)) if at == head / 4),
        "one read model failing stops the fold with its error: {failed:?}"
    );
    let first = runner
        .catch_up_all_to(&folds, community, head / 2)
        .await
        .unwrap();
    assert!(first <= (head / 2) as u64, "{first}");
    let rest = runner
        .catch_up_all_to(&folds, community, head * 3 / 4)
        .await
        .unwrap();
    assert_eq!(
        rest,
        (head * 3 / 4 - head / 2) as u64,
        "read from where they stood"
    );
    // Two runners at once on the same generations: each batch is folded
    // by one of them, the other moves on past it.
    let second = ProjectionRunner::new(
        app.store.clone(),
        RunnerConfig {
            replay_batch_size: 5,
            ..RunnerConfig::default()
        },
    );
    let (one, other) = futures::future::join(
        runner.catch_up_all_to(&folds, community, head),
        second.catch_up_all_to(&folds, community, head),
    )
    .await;
    one.unwrap();
    other.unwrap();
    for (projection, generation) in &folds {
        let name = projection.name();
        finish_building(&pool, &**projection, *generation, Building::Scratch)
            .await
            .unwrap();
        let live_generation = live(&pool, name).await.unwrap().unwrap();
        assert_eq!(
            dump(&app, &schema_name(name, *generation)).await,
            dump(&app, &schema_name(name, live_generation)).await,
            "{name}: folded with the others equals live"
        );
        let checkpoint = checkpoint(&app, name, *generation).await;
        assert_eq!(checkpoint, head, "{name}");
    }
}

/// A store of its own on the test's database, its connections named
/// `name`, for work whose statistics a test reads once they end.
async fn named_store(app: &TestApp, name: &str) -> store::EventStore {
    let mut config = app.db.config.clone();
    config.application_name(name);
    store::EventStore::connect(config, store::StoreConfig::default())
        .await
        .unwrap()
}

/// Stops a store made by [`named_store`] and waits until its connections
/// have ended: a backend's statistics are complete once it has.
async fn ended(app: &TestApp, store: store::EventStore, name: &str) {
    store.shutdown().await;
    drop(store);
    let client = app.db.client().await;
    for _ in 0..500 {
        let open: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        if open == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the connections of {name} did not end");
}

/// Scans, index scans and rows fetched through indexes (by plain and by
/// bitmap index scans) of every table of a schema, by table.
async fn scans(app: &TestApp, schema: &str) -> BTreeMap<String, (i64, i64, i64)> {
    let client = app.db.client().await;
    client
        .query(
            "SELECT relname::text, coalesce(seq_scan, 0), coalesce(idx_scan, 0), \
                 coalesce(idx_tup_fetch, 0) \
             FROM pg_stat_user_tables WHERE schemaname = $1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2), row.get(3))))
        .collect()
}

/// Places a redemption of one `gift` for `resident` at the counter, as
/// `token` (a clerk or an admin), and finishes it with `finish`
/// (`completeRedemption` or `cancelRedemption`).
async fn redeemed(
    app: &TestApp,
    token: &str,
    (community, resident, gift): (uuid::Uuid, uuid::Uuid, uuid::Uuid),
    key: &str,
    finish: &str,
) {
    let (redemption, _) = app.placed(token, community, resident, gift, key).await;
    app.ok(
        Some(token),
        &format!("mutation($c: UUID!, $r: UUID!) {{ {finish}(communityId: $c, redemptionId: $r) {{ status }} }}"),
        json!({"c": community, "r": redemption}),
    )
    .await;
}

/// The history of [`history`], then `weeks` more reports filed and
/// accepted a week apart, so the read models' tables outgrow what one
/// batch names (every leaderboard gains scores for each new week and
/// month), and each week at the counter: points granted to a resident,
/// a redemption cancelled and two completed (so the redemptions, the
/// gift's holds and the resident's lot, changed and then used up, are
/// changed where they are stored, not only added to). Returns the head.
async fn grown_history(app: &TestApp, weeks: usize) -> i64 {
    let (_, f) = history(app).await;
    let admin = Some(f.admin.as_str());
    let centre = app
        .ok(
            admin,
            "mutation($c: UUID!) { addCentre(communityId: $c, name: \"河长驿站\") { id } }",
            json!({"c": f.community}),
        )
        .await["addCentre"]["id"]
        .clone();
    let gift: uuid::Uuid = app
        .ok(
            admin,
            "mutation($c: UUID!, $k: UUID!) { offerGift(communityId: $c, centreId: $k, \
             name: \"环保购物袋\", price: \"1\", stock: 1000) { id } }",
            json!({"c": f.community, "k": centre}),
        )
        .await["offerGift"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for week in 0..weeks {
        app.clock.advance_hours(24 * 7);
        let (report, _) = submit(app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
        act(app, &f, &f.admin, "acceptReport", report).await;
        // A resident of the week, whose one lot is spent in part, then
        // wholly: no wallet's lots outgrow a batch.
        let resident = uuid::Uuid::new_v4();
        app.grant(&f, resident, "2").await;
        let finishes = [
            "cancelRedemption",
            "completeRedemption",
            "completeRedemption",
        ];
        for (n, finish) in finishes.into_iter().enumerate() {
            let key = format!("week-{week}-{n}");
            redeemed(app, &f.admin, (f.community, resident, gift), &key, finish).await;
        }
    }
    app.watcher.tick().await.unwrap();
    app.head(f.community).await
}

/// A fold looks up and changes the rows its batch names by their keys, and
/// never scans a read model's table: over a whole history folded in small
/// batches, on connections where an index probe is priced as a thousand
/// page reads, no statement of any projection scans a table, whether it
/// folds into a generation being filled from zero or into one that is
/// folded as the live one is. (Priced as PostgreSQL prices it by default,
/// a random read from disk, a few hundred probes looked dearer than a scan
/// of the community's whole table, which every batch then paid, more as
/// the history grew.) And priced as by default, no lookup reads rows
/// beyond the keys its batch names: on average an index scan of a fold
/// fetches at most as many rows as a batch has events (a probe finds one
/// key's rows: one row, a wallet's few lots; a walk along a median's set
/// is bounded by the batch; the community's set-up, its grids, is a few
/// rows), where reading the community's rows through the first column of
/// an index fetches more every batch as the tables grow. That is asserted
/// of generations being filled, whose statistics are their tables' sizes;
/// one analyzed while empty is read with plans for empty tables until its
/// first analysis, at 1,000 folded events.
#[tokio::test]
async fn a_fold_probes_the_keys_of_its_batch_and_scans_no_table_whatever_the_costs_say() {
    const BATCH: i64 = 5;
    let app = TestApp::spawn_quiet().await;
    let head = grown_history(&app, 40).await;
    let mut probed = 0;
    for (random_page_cost, filling) in [(4, true), (4, false), (1000, true), (1000, false)] {
        app.db
            .client()
            .await
            .batch_execute(&format!(
                "ALTER DATABASE {} SET random_page_cost = {random_page_cost}",
                app.db.name
            ))
            .await
            .unwrap();
        for projection in projections::all() {
            let name = projection.name();
            let building = named_store(&app, "fold-test-building").await;
            let mut builder = Builder::new(building.pool()).await.unwrap();
            let generation = builder
                .start(&*projection, Building::Rebuild)
                .await
                .unwrap();
            drop(builder);
            if !filling {
                // With its indexes and statistics, then neither being
                // filled (folded with `fill_batch`) nor live (followed by
                // the server's runner too): folded as the live one is.
                finish_building(building.pool(), &*projection, generation, Building::Rebuild)
                    .await
                    .unwrap();
                app.db
                    .client()
                    .await
                    .execute(
                        "UPDATE projection_generations SET state = 'retired' \
                         WHERE projection = $1 AND generation = $2",
                        &[&name, &generation],
                    )
                    .await
                    .unwrap();
            }
            ended(&app, building, "fold-test-building").await;
            let schema = schema_name(name, generation);
            let before = scans(&app, &schema).await;

            let folding = named_store(&app, "fold-test-folding").await;
            let runner = ProjectionRunner::new(
                folding.clone(),
                RunnerConfig {
                    batch_size: BATCH,
                    ..RunnerConfig::default()
                },
            );
            let folded = runner.catch_up(&*projection, generation).await.unwrap();
            assert_eq!(folded as i64, head, "{name}");
            drop(runner);
            ended(&app, folding, "fold-test-folding").await;
            let after = scans(&app, &schema).await;
            for (table, (seq_scans, index_scans, fetched)) in &after {
                let (seq_before, index_before, fetched_before) =
                    before.get(table).copied().unwrap_or_default();
                assert_eq!(
                    *seq_scans - seq_before,
                    0,
                    "{name} (filling: {filling}, random_page_cost {random_page_cost}): \
                     a fold scanned {schema}.{table}"
                );
                let (index_scans, fetched) = (index_scans - index_before, fetched - fetched_before);
                // A board's counts are found by their whole key, one row a
                // probe: never all of a community's counts (of every week
                // and month it ever had) to find the few at zero.
                assert!(
                    table != "score_counts" || fetched <= index_scans,
                    "{name} (filling: {filling}, random_page_cost {random_page_cost}): \
                     {index_scans} index scans fetched {fetched} rows of {schema}.{table}"
                );
                assert!(
                    !(filling && random_page_cost == 4) || fetched <= BATCH * index_scans,
                    "{name}: {index_scans} index scans fetched {fetched} rows of \
                     {schema}.{table}: a lookup read beyond its batch's keys"
                );
                probed += index_scans;
            }
        }
    }
    // The counts were complete: the folds' lookups show.
    assert!(probed > 0, "the folds probed indexes");
}

/// The generation a projection's reading schema says its views show.
async fn shown_by_reading_schema(app: &TestApp, projection: &str) -> Option<String> {
    app.db
        .client()
        .await
        .query_one(
            "SELECT (SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1)",
            &[&reading_schema(projection)],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn every_read_model_is_read_through_views_of_its_live_generation_whatever_made_it_live() {
    let app = TestApp::spawn_quiet().await;
    let (_, f) = history(&app).await;
    let pool = app.store.pool().clone();
    let runner = ProjectionRunner::new(app.store.clone(), RunnerConfig::default());
    let client = app.db.client().await;
    for projection in projections::all() {
        let name = projection.name();
        let reading = reading_schema(name);
        let mut live_generation = live(&pool, name).await.unwrap().unwrap();
        for made_live_by in ["the first run", "a rebuild", "start-up, its views lost"] {
            match made_live_by {
                "a rebuild" => {
                    let rebuilt = runner.rebuild(&*projection).await.unwrap();
                    assert_ne!(rebuilt, live_generation, "{name}: a new generation");
                    live_generation = rebuilt;
                }
                "start-up, its views lost" => {
                    // As a database whose live generation was made before
                    // reading schemas existed.
                    client
                        .batch_execute(&format!("DROP SCHEMA {reading} CASCADE"))
                        .await
                        .unwrap();
                    assert_eq!(shown_by_reading_schema(&app, name).await, None);
                    let opened = open_for_reading(&pool, &*projection).await.unwrap();
                    assert_eq!(
                        opened, live_generation,
                        "{name}: start-up keeps the live one"
                    );
                    // Opening again changes nothing.
                    open_for_reading(&pool, &*projection).await.unwrap();
                }
                _ => {}
            }
            assert_eq!(
                shown_by_reading_schema(&app, name).await.as_deref(),
                Some(format!("views onto generation {live_generation}").as_str()),
                "{name} after {made_live_by}"
            );
            assert_eq!(
                dump(&app, &reading).await,
                dump(&app, &schema_name(name, live_generation)).await,
                "{name} after {made_live_by}: every table, through its view"
            );
        }
    }
    // The API answers from the reading schemas after all of it.
    let data = app
        .ok(
            Some(&f.admin),
            "query($c: UUID!) { reports(communityId: $c, first: 100) { edges { node { id } } } }",
            json!({"c": f.community}),
        )
        .await;
    assert_eq!(data["reports"]["edges"].as_array().unwrap().len(), 5);
    app.stop().await;
}

/// The generations being built, by projection and number.
async fn being_built(app: &TestApp) -> Vec<(String, i32)> {
    let rows = app
        .db
        .client()
        .await
        .query(
            "SELECT projection, generation FROM projection_generations \
             WHERE state = 'building' ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|row| (row.get(0), row.get(1))).collect()
}

async fn schema_exists(app: &TestApp, schema: &str) -> bool {
    app.db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
            &[&schema],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 1
}

/// Sweeps until `expected` have been dropped (a closed connection's locks
/// are released once its server process has noticed), for up to 10 s.
async fn sweep_until(app: &TestApp, expected: usize) -> Vec<(String, i32)> {
    let mut dropped = Vec::new();
    for _ in 0..200 {
        dropped.extend(discard_abandoned(app.store.pool()).await.unwrap());
        if dropped.len() >= expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    dropped.sort();
    dropped
}

#[tokio::test]
async fn a_replay_abandoned_half_way_is_dropped_and_a_generation_still_being_built_is_kept() {
    let app = TestApp::spawn_quiet().await;
    let (head, f) = history(&app).await;
    let pool = app.store.pool().clone();
    let lives: Vec<Option<i32>> = futures::future::join_all(
        projections::all()
            .iter()
            .map(|projection| live(&pool, projection.name())),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();

    // A rebuild under way, in the test's hands.
    let reports = projections::by_name("reports").unwrap();
    let mut kept = Builder::new(&pool).await.unwrap();
    let kept_generation = kept.start(&*reports, Building::Rebuild).await.unwrap();

    // A replay interrupted as soon as it has started every generation, as
    // by an auditor's Ctrl-C: its future is dropped, nothing discards.
    let store = app.store.clone();
    let community = store::CommunityId::new(f.community);
    let replay =
        tokio::spawn(async move { app::audit::replay::replay(&store, community, head).await });
    let mut waited = 0;
    while being_built(&app).await.len() < 1 + projections::all().len() && !replay.is_finished() {
        assert!(waited < 1000, "the replay never started its generations");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        waited += 1;
    }
    replay.abort();
    // Aborted mid-way, or done and its result dropped here: either way
    // nothing discarded its generations.
    drop(replay.await);
    let left: Vec<(String, i32)> = being_built(&app)
        .await
        .into_iter()
        .filter(|built| *built != ("reports".to_string(), kept_generation))
        .collect();
    let mut names: Vec<&str> = left.iter().map(|(name, _)| name.as_str()).collect();
    names.dedup();
    let mut all: Vec<&str> = projections::all().iter().map(|p| p.name()).collect();
    all.sort();
    assert_eq!(names, all, "the replay left one generation per read model");

    // The next sweep drops exactly those, with their schemas.
    assert_eq!(sweep_until(&app, left.len()).await, left);
    for (name, generation) in &left {
        assert!(!schema_exists(&app, &schema_name(name, *generation)).await);
    }
    // The rebuild still being built is untouched, by this sweep and by a
    // new replay's, which runs to the end and discards its own.
    assert_eq!(
        being_built(&app).await,
        vec![("reports".to_string(), kept_generation)]
    );
    let replayed = app::audit::replay::replay(&app.store, community, head)
        .await
        .unwrap();
    assert!(schema_exists(&app, &replayed.schema("reports").unwrap()).await);
    replayed.discard(&app.store).await.unwrap();
    assert_eq!(
        being_built(&app).await,
        vec![("reports".to_string(), kept_generation)]
    );
    assert!(discard_abandoned(&pool).await.unwrap().is_empty());
    assert!(schema_exists(&app, &schema_name("reports", kept_generation)).await);

    // Once its builder is gone, it goes too; the live generations stay.
    drop(kept);
    assert_eq!(
        sweep_until(&app, 1).await,
        vec![("reports".to_string(), kept_generation)]
    );
    assert!(being_built(&app).await.is_empty());
    for (projection, before) in projections::all().iter().zip(lives) {
        let name = projection.name();
        assert_eq!(live(&pool, name).await.unwrap(), before, "{name}");
        assert!(schema_exists(&app, &schema_name(name, before.unwrap())).await);
    }

    // A builder's connection leaves the pool for good and the pool makes
    // another: builders, however many, never shrink it.
    let size = pool.status().max_size;
    for _ in 0..=size {
        drop(Builder::new(&pool).await.unwrap());
    }
    let lent = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        futures::future::try_join_all((0..size).map(|_| pool.get())),
    )
    .await
    .expect("the pool still lends its whole size at once")
    .unwrap();
    assert_eq!(lent.len(), size);
}

/// A fold of report streams only, that keeps the positions of every batch
/// it is given.
struct ReportsOnly {
    batches: std::sync::Arc<std::sync::Mutex<Vec<Vec<i64>>>>,
}

#[async_trait::async_trait]
impl projections::Projection for ReportsOnly {
    fn name(&self) -> &'static str {
        "reports_only"
    }

    fn tables_sql(&self) -> String {
        String::new()
    }

    fn streams(&self) -> &'static [domain::streams::StreamKind] {
        &[domain::streams::StreamKind::Report]
    }

    async fn apply_batch(
        &self,
        _transaction: &deadpool_postgres::Transaction<'_>,
        _schema: &str,
        events: &[store::RecordedEvent],
        _changes: &mut Vec<projections::Change>,
    ) -> Result<(), ProjectionError> {
        let positions = events.iter().map(|event| event.position).collect();
        self.batches.lock().unwrap().push(positions);
        Ok(())
    }
}

/// A batch with no event of the streams a projection reads is not given
/// to its fold: the checkpoint moves past it alone. A batch with one such
/// event is given whole, in order, and the checkpoint ends at the head
/// either way.
#[tokio::test]
async fn a_batch_of_streams_a_projection_does_not_read_only_moves_its_checkpoint() {
    let app = TestApp::spawn_quiet().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let projection = ReportsOnly {
        batches: Default::default(),
    };
    let generation = projections::generation::ensure_live(app.store.pool(), &projection)
        .await
        .unwrap();
    let runner = ProjectionRunner::new(app.store.clone(), RunnerConfig::default());
    let (runner, folded, at) = (&runner, &projection, &app);
    let caught_up = move || async move {
        runner.catch_up(folded, generation).await.unwrap();
        let head = at.head(f.community).await;
        assert_eq!(checkpoint(at, "reports_only", generation).await, head);
        std::mem::take(&mut *folded.batches.lock().unwrap())
    };
    // The set-up: the community's own stream, a budget funded.
    assert_eq!(caught_up().await, Vec::<Vec<i64>>::new());
    // A gift offered, points granted, a redemption placed and completed:
    // gifts, wallets, the budget, redemptions; nothing it reads.
    let gift = app.gift(&counter, "3", 5).await;
    app.grant(f, f.resident_id, "20").await;
    let redeeming = (f.community, f.resident_id, gift);
    redeemed(&app, &counter.clerk, redeeming, "r-1", "completeRedemption").await;
    assert_eq!(caught_up().await, Vec::<Vec<i64>>::new());
    // A report between grants: the batch that holds it is given whole.
    app.grant(f, f.resident_id, "5").await;
    let before = app.head(f.community).await;
    submit(&app, f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    app.grant(f, f.resident_id, "5").await;
    let given = caught_up().await;
    let head = app.head(f.community).await;
    assert_eq!(given.len(), 1, "{given:?}");
    assert!(given[0].contains(&(before + 1)), "{given:?} from {before}");
    assert_eq!(given[0].last(), Some(&head), "{given:?}");
    assert!(given[0].windows(2).all(|w| w[1] == w[0] + 1), "{given:?}");
    app.stop().await;
}
