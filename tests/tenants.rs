//! One community's bad data never stalls another: refused configuration
//! leaves nothing behind, and a community whose history a process cannot
//! get past is skipped, retried with backoff and shown, while every other
//! community keeps flowing.

use std::time::Duration;

use app::commands::{RequestMeta, COMMUNITY_STREAM};
use domain::community::{Community, CommunityCommand};
use domain::values::{Actor, PersonId, Role};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::*;

const REGISTER: &str = "mutation($c: UUID!, $z: String) { registerCommunity(communityId: $c, name: \"滨河社区\", timeZone: $z) { position } }";

#[tokio::test]
async fn a_refused_registration_leaves_nothing_behind() {
    let app = TestApp::spawn_quiet().await;
    let client = app.db.client().await;
    for zone in [
        "Mars/Olympus",
        "asia/shanghai",
        "UTC+8",
        "UTC",
        "Asia/Shanghai/Extra",
        "",
    ] {
        let community = Uuid::new_v4();
        let admin = app.token(community, Uuid::new_v4(), Role::Admin);
        let answer = app
            .gql(Some(&admin), REGISTER, json!({"c": community, "z": zone}))
            .await;
        assert_eq!(code_of(&answer), "VALIDATION", "{zone:?}: {answer}");
        let rows: i64 = client
            .query_one(
                "SELECT (SELECT count(*) FROM communities WHERE community_id = $1) \
                 + (SELECT count(*) FROM community_heads WHERE community_id = $1)",
                &[&community],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 0, "{zone:?} left its community behind");
        // The same id registers once the zone is right.
        let fixed = app
            .gql(
                Some(&admin),
                REGISTER,
                json!({"c": community, "z": "Asia/Urumqi"}),
            )
            .await;
        assert_eq!(code_of(&fixed), "OK", "{fixed}");
    }
    app.stop().await;
}

fn fast_retries() -> Options {
    Options {
        runner: projections::RunnerConfig {
            retry_delay: Duration::from_millis(50),
            idle_recheck: Duration::from_millis(200),
            ..projections::RunnerConfig::default()
        },
        ..Options::default()
    }
}

async fn metrics(app: &TestApp) -> String {
    let url = app.url.replace("/graphql", "/metrics");
    app.http
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn balance_reaches(app: &TestApp, f: &Fixture, expected: &str) {
    let mut last = Value::Null;
    for _ in 0..200 {
        let head = app.head(f.community).await;
        let wallet = app
            .gql(
                Some(&f.admin),
                "query($c: UUID!, $p: UUID, $at: Int) { wallet(communityId: $c, residentId: $p, atLeast: $at) { balance } }",
                json!({"c": f.community, "p": f.resident_id, "at": head}),
            )
            .await;
        if wallet["data"]["wallet"]["balance"] == expected {
            return;
        }
        last = wallet;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the balance did not reach {expected}: {last}");
}

#[tokio::test]
async fn a_community_whose_history_cannot_be_folded_holds_up_only_itself() {
    let app = TestApp::spawn_with(fast_retries()).await;
    let poisoned = app.fixture().await;
    app.fund(&poisoned, "1000").await;
    let (report, _) = submit(
        &app,
        &poisoned,
        &poisoned.resident,
        "RB-01",
        "FLOATING-GARBAGE",
    )
    .await;
    // Older data no process of this version can read: an acceptance in a
    // shape the code no longer knows, appended beneath the commands.
    let accepted = app
        .store
        .append(
            store::AppendRequest::new(store::CommunityId::new(poisoned.community)).stream(
                store::StreamId::parse(format!("report-{report}")).unwrap(),
                store::StreamType::parse("Report").unwrap(),
                store::ExpectedVersion::Any,
                vec![store::NewEvent::new(
                    store::EventType::parse("ReportAccepted").unwrap(),
                    json!({"ReportAccepted": {"by": 7}}),
                )],
            ),
        )
        .await
        .unwrap()
        .last_position;

    // A community registered after it earns and reads as usual.
    let healthy = app.fixture().await;
    app.fund(&healthy, "1000").await;
    let (report, _) = submit(
        &app,
        &healthy,
        &healthy.resident,
        "RB-01",
        "FLOATING-GARBAGE",
    )
    .await;
    let at = accept(&app, &healthy, &healthy.worker, report).await;
    balance_reaches(&app, &healthy, "5").await;
    let ledgers = app
        .gql(
            Some(&healthy.admin),
            "query($c: UUID!, $at: Int) { gridLedgers(communityId: $c, atLeast: $at) { name } }",
            json!({"c": healthy.community, "at": at}),
        )
        .await;
    assert_eq!(code_of(&ledgers), "OK", "{ledgers}");

    // The poisoned one is shown stuck at the event, per process.
    let lag = app
        .ok(
            Some(&poisoned.admin),
            "query($c: UUID!) { projectionLag(communityId: $c) { name stuckAtPosition failures } }",
            json!({"c": poisoned.community}),
        )
        .await;
    let stuck: Vec<&Value> = lag["projectionLag"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["stuckAtPosition"].as_i64().is_some())
        .collect();
    assert!(
        stuck.iter().any(|row| row["name"] == "reports"),
        "the reports read model is stuck: {lag}"
    );
    assert!(
        stuck
            .iter()
            .all(|row| row["stuckAtPosition"].as_i64().unwrap() <= accepted),
        "{lag}"
    );
    let text = metrics(&app).await;
    let line = format!(
        "civic_ledger_process_stuck_position{{process=\"reports\",community=\"{}\"}}",
        poisoned.community
    );
    assert!(text.contains(&line), "{text}");
    assert!(
        !text.contains(&healthy.community.to_string()),
        "the healthy community is not stuck anywhere"
    );
    let healthy_lag = app
        .ok(
            Some(&healthy.admin),
            "query($c: UUID!) { projectionLag(communityId: $c) { name stuckAtPosition failures } }",
            json!({"c": healthy.community}),
        )
        .await;
    assert!(
        healthy_lag["projectionLag"]
            .as_array()
            .unwrap()
            .iter()
            .all(|row| row["stuckAtPosition"].is_null() && row["failures"] == 0),
        "{healthy_lag}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_zone_in_an_older_history_stalls_nothing_and_an_admin_corrects_it() {
    let app = TestApp::spawn_with(fast_retries()).await;
    // An older server accepted any zone of the right shape: register one
    // straight through the commands, as its history holds it.
    let community = Uuid::new_v4();
    let admin_id = Uuid::new_v4();
    app.store
        .create_community(store::CommunityId::new(community), "老社区")
        .await
        .unwrap();
    let by = Actor {
        person: PersonId(admin_id),
        role: Role::Admin,
    };
    app.points
        .commands()
        .execute::<Community>(
            store::CommunityId::new(community),
            COMMUNITY_STREAM,
            &RequestMeta::default(),
            &[],
            |_| {
                Ok(CommunityCommand::Register {
                    by,
                    name: "老社区".into(),
                    time_zone: Some("Mars/Olympus".into()),
                    at: domain::values::Timestamp::from_micros(START_MICROS),
                })
            },
        )
        .await
        .unwrap();
    let admin = app.token(community, admin_id, Role::Admin);
    let grid = app
        .ok(
            Some(&admin),
            SETUP_GRID,
            json!({"c": community, "name": "一网格", "parent": null}),
        )
        .await;
    assert!(grid["addGrid"]["id"].is_string());
    let position = app.head(community).await;
    // Its read models fold it (in the default zone) instead of stopping.
    let ledgers = app
        .gql(
            Some(&admin),
            "query($c: UUID!, $at: Int) { gridLedgers(communityId: $c, atLeast: $at) { name } }",
            json!({"c": community, "at": position}),
        )
        .await;
    assert_eq!(
        ledgers["data"]["gridLedgers"][0]["name"], "一网格",
        "{ledgers}"
    );

    let set = "mutation($c: UUID!, $z: String!) { setTimeZone(communityId: $c, timeZone: $z) { position } }";
    let refused = app
        .gql(
            Some(&admin),
            set,
            json!({"c": community, "z": "Venus/Maxwell"}),
        )
        .await;
    assert_eq!(code_of(&refused), "VALIDATION", "{refused}");
    let set_answer = app
        .ok(
            Some(&admin),
            set,
            json!({"c": community, "z": "Asia/Urumqi"}),
        )
        .await;
    assert!(set_answer["setTimeZone"]["position"].as_i64().unwrap() > position);
    let shown = app
        .ok(
            Some(&admin),
            "query($c: UUID!) { community(communityId: $c) { timeZone } }",
            json!({"c": community}),
        )
        .await;
    assert_eq!(shown["community"]["timeZone"], "Asia/Urumqi");
    let citizen = app.token(community, Uuid::new_v4(), Role::Citizen);
    let not_admin = app
        .gql(
            Some(&citizen),
            set,
            json!({"c": community, "z": "Asia/Shanghai"}),
        )
        .await;
    assert_eq!(code_of(&not_admin), "FORBIDDEN", "{not_admin}");
    app.stop().await;
}

#[tokio::test]
async fn a_corrected_time_zone_rebuilds_the_calendar_read_models_for_the_whole_history() {
    let app = TestApp::spawn_with(Options {
        runner: projections::RunnerConfig {
            rebuild_check: Duration::from_millis(100),
            ..projections::RunnerConfig::default()
        },
        ..Options::default()
    })
    .await;
    let f = app.fixture().await;
    // 2026-11-30 20:00 UTC: already December in Shanghai, still November
    // in Los Angeles.
    app.clock.advance_minutes((28 * 24 + 20) * 60);
    let (_, at) = submit(&app, &f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    let months = |at: i64| {
        let f = &f;
        let app = &app;
        async move {
            let data = app
                .ok(
                    Some(&f.admin),
                    "query($c: UUID!, $at: Int) { statistics(communityId: $c, atLeast: $at) { month received } }",
                    json!({"c": f.community, "at": at}),
                )
                .await;
            data["statistics"].clone()
        }
    };
    assert_eq!(
        months(at).await,
        json!([{"month": "2026-12", "received": 1}])
    );
    let client = app.db.client().await;
    let live = "SELECT generation FROM projection_generations WHERE projection = 'reports' AND state = 'live'";
    let before: i32 = client.query_one(live, &[]).await.unwrap().get(0);
    let set = app
        .ok(
            Some(&f.admin),
            "mutation($c: UUID!) { setTimeZone(communityId: $c, timeZone: \"America/Los_Angeles\") { position } }",
            json!({"c": f.community}),
        )
        .await;
    let at = set["setTimeZone"]["position"].as_i64().unwrap();
    let mut after = before;
    for _ in 0..200 {
        after = client.query_one(live, &[]).await.unwrap().get(0);
        if after != before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(after, before, "a new generation of reports was promoted");
    assert_eq!(
        months(at).await,
        json!([{"month": "2026-11", "received": 1}]),
        "the history is counted in the corrected zone"
    );
    app.stop().await;
}
