//! The earning process: what reports and suggestions earn, exactly once,
//! whatever crashes or runs twice.

use app::commands::Commands;
use app::directory::Directory;
use app::points::earning::EarningProcess;
use app::points::PointsDesk;
use projections::generation::{ensure_live, Builder, Building};
use projections::{ProjectionError, ProjectionRunner, RunnerConfig};
use serde_json::{json, Value};
use store::CommunityId;
use uuid::Uuid;

use crate::app::{accept, act, code_of, submit, TestApp, SUBMIT};

/// How many events of `event_type` a stream holds.
async fn count_events(app: &TestApp, community: Uuid, stream: &str, event_type: &str) -> usize {
    app.store
        .read_stream(CommunityId::new(community), stream, 1, 10_000)
        .await
        .unwrap()
        .iter()
        .filter(|event| event.event_type == event_type)
        .count()
}

fn lines(wallet: &Value) -> Vec<(String, String, String)> {
    wallet["statement"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| {
            let node = &edge["node"];
            (
                node["kind"].as_str().unwrap().to_string(),
                node["reason"].as_str().unwrap().to_string(),
                node["amount"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn line(kind: &str, reason: &str, amount: &str) -> (String, String, String) {
    (kind.into(), reason.into(), amount.into())
}

#[tokio::test]
async fn the_earning_process_killed_after_a_grant_and_before_its_checkpoint_grants_once() {
    let app = TestApp::spawn_quiet().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let (report, _) = submit(&app, f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    let acceptance = accept(&app, f, &f.worker, report).await;
    // Something after the acceptance, so the batch holding it goes on.
    act(
        &app,
        f,
        &f.admin,
        "commentOnReport(text: \"已派人\")",
        report,
    )
    .await;
    let wallet_stream = format!("wallet-{}", f.resident_id);

    let process = EarningProcess::new(app.points.clone());
    let generation = ensure_live(app.store.pool(), &process).await.unwrap();
    let killed = ProjectionRunner::new(
        app.store.clone(),
        RunnerConfig {
            interrupt_at_position: Some(acceptance + 1),
            ..RunnerConfig::default()
        },
    );
    let stopped = killed.catch_up(&process, generation).await;
    assert!(
        matches!(stopped, Err(ProjectionError::Interrupted(_))),
        "{:?}",
        stopped.map(drop)
    );
    assert_eq!(
        count_events(&app, f.community, &wallet_stream, "PointsGranted").await,
        1,
        "the grant was made before the process died"
    );
    let restarted = ProjectionRunner::new(app.store.clone(), RunnerConfig::default());
    restarted.catch_up(&process, generation).await.unwrap();
    assert_eq!(
        count_events(&app, f.community, &wallet_stream, "PointsGranted").await,
        1,
        "the replayed acceptance granted nothing more"
    );
    assert_eq!(
        count_events(&app, f.community, "budget", "BudgetIssued").await,
        1
    );

    // Two processes at once, each with its own commands (no shared locks or
    // cache), folding from the start into their own generations.
    let (second, _) = submit(&app, f, &f.other_resident, "RB-02", "FLOATING-GARBAGE").await;
    act(&app, f, &f.admin, "acceptReport", second).await;
    let twins = (0..2).map(|_| {
        let commands = Commands::new(app.store.clone(), app.clock.clone());
        EarningProcess::new(PointsDesk::new(commands, Directory::default()))
    });
    let runs = twins.map(|process| {
        let store = app.store.clone();
        async move {
            let mut builder = Builder::new(store.pool()).await.unwrap();
            let generation = builder.start(&process, Building::Rebuild).await.unwrap();
            let runner = ProjectionRunner::new(store, RunnerConfig::default());
            runner.catch_up(&process, generation).await
        }
    });
    for run in futures::future::join_all(runs).await {
        run.unwrap();
    }
    let grants: usize = futures::future::join_all(
        [f.resident_id, other_resident(&app, f).await].map(|resident| {
            let stream = format!("wallet-{resident}");
            let app = &app;
            async move { count_events(app, f.community, &stream, "PointsGranted").await }
        }),
    )
    .await
    .into_iter()
    .sum();
    assert_eq!(grants, 2, "one grant per acceptance");
    assert_eq!(
        count_events(&app, f.community, "budget", "BudgetIssued").await,
        2
    );
}

/// The id behind the fixture's other resident's token.
async fn other_resident(app: &TestApp, f: &crate::app::Fixture) -> Uuid {
    let data = app
        .ok(
            Some(&f.other_resident),
            "{ viewer { personId } }",
            json!({}),
        )
        .await;
    data["viewer"]["personId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn reports_and_suggestions_earn_by_the_rules_and_duplicates_earn_nothing() {
    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;

    // Accepted (5), then confirmed resolved (a bonus of 3).
    let (report, _) = submit(&app, f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    assert_eq!(
        code_of(&act(&app, f, &f.admin, "acceptReport", report).await),
        "OK"
    );
    let assign = format!("assignReport(workerId: \"{}\")", f.worker_id);
    act(&app, f, &f.admin, &assign, report).await;
    act(&app, f, &f.worker, "startWork", report).await;
    act(
        &app,
        f,
        &f.worker,
        "resolveReport(notes: \"清理完毕\")",
        report,
    )
    .await;
    let confirmed = act(&app, f, &f.resident, "confirmReport", report).await;
    let position = confirmed["data"]["confirmReport"]["position"]
        .as_i64()
        .unwrap();
    let wallet = app
        .wallet(&f.resident, f.community, f.resident_id, position)
        .await;
    assert_eq!(
        lines(&wallet),
        [
            line("granted", "report_resolved", "3"),
            line("granted", "report_accepted", "5")
        ]
    );

    // A duplicate, accepted before it was found out, is reversed on merge.
    let other = other_resident(&app, f).await;
    let (duplicate, _) = submit(&app, f, &f.other_resident, "RB-02", "SEWAGE-OUTFALL").await;
    let position = accept(&app, f, &f.admin, duplicate).await;
    // Paid before it is found out: the earning process has granted for the
    // acceptance (merged first, there is nothing to reverse and nothing is
    // granted; the balance is the same).
    let wallet = app.wallet(&f.admin, f.community, other, position).await;
    assert_eq!(lines(&wallet), [line("granted", "report_accepted", "5")]);
    let (original, _) = submit(&app, f, &f.resident, "RB-02", "FLOATING-GARBAGE").await;
    let merge = format!("mergeReport(originalId: \"{original}\")");
    let merged = act(&app, f, &f.admin, &merge, duplicate).await;
    let position = merged["data"]["mergeReport"]["position"].as_i64().unwrap();
    let wallet = app.wallet(&f.admin, f.community, other, position).await;
    assert_eq!(wallet["balance"], "0", "{wallet}");
    assert_eq!(
        lines(&wallet),
        [
            line("reversed", "merged_duplicate", "5"),
            line("granted", "report_accepted", "5")
        ]
    );

    // An anonymous report earns when a resident claims it.
    let input = json!({"c": f.community, "r": {"siteCode": "MS-01", "category": "FLOATING-GARBAGE", "text": "桥下有垃圾"}});
    let anonymous = app.ok(None, SUBMIT, input).await;
    let anonymous_report: Uuid = anonymous["submitReport"]["reportId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let secret = anonymous["submitReport"]["claimSecret"].clone();
    act(&app, f, &f.admin, "acceptReport", anonymous_report).await;
    let claimant = app.token(f.community, Uuid::new_v4(), domain::values::Role::Citizen);
    let claimant_id = Uuid::parse_str(
        app.ok(Some(&claimant), "{ viewer { personId } }", json!({}))
            .await["viewer"]["personId"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let claim = "mutation($c: UUID!, $r: UUID!, $s: String!) { claimReport(communityId: $c, reportId: $r, claimSecret: $s) { position } }";
    let claimed = app
        .ok(
            Some(&claimant),
            claim,
            json!({"c": f.community, "r": anonymous_report, "s": secret}),
        )
        .await;
    let position = claimed["claimReport"]["position"].as_i64().unwrap();
    let wallet = app
        .wallet(&claimant, f.community, claimant_id, position)
        .await;
    assert_eq!(lines(&wallet), [line("granted", "report_accepted", "5")]);

    // An adopted suggestion earns its submitter 8.
    let suggest = "mutation($c: UUID!) { submitSuggestion(communityId: $c, siteCode: \"MS-01\", text: \"多放垃圾桶\") { suggestionId } }";
    let suggestion = app
        .ok(Some(&claimant), suggest, json!({"c": f.community}))
        .await["submitSuggestion"]["suggestionId"]
        .clone();
    let answer = "mutation($c: UUID!, $s: UUID!) { answerSuggestion(communityId: $c, suggestionId: $s, outcome: ADOPTED, answer: \"采纳\") { position } }";
    let answered = app
        .ok(
            Some(&f.admin),
            answer,
            json!({"c": f.community, "s": suggestion}),
        )
        .await;
    let position = answered["answerSuggestion"]["position"].as_i64().unwrap();
    let wallet = app
        .wallet(&claimant, f.community, claimant_id, position)
        .await;
    assert_eq!(wallet["balance"], "13");
    assert_eq!(
        lines(&wallet)[0],
        line("granted", "suggestion_adopted", "8")
    );

    // The grant came after the answer: read the boards as fresh as the log.
    let position = app.head(f.community).await;
    // The boards count what was earned and accepted, not what was merged.
    let board = |by: &str| {
        let query = format!("query($c: UUID!, $at: Int) {{ leaderboard(communityId: $c, by: {by}, period: ALL_TIME, atLeast: $at) {{ entries {{ rank score residentId }} }} }}");
        let app = &app;
        async move {
            app.ok(
                Some(&f.admin),
                &query,
                json!({"c": f.community, "at": position}),
            )
            .await["leaderboard"]["entries"]
                .clone()
        }
    };
    assert_eq!(
        board("POINTS_EARNED").await,
        json!([
            {"rank": 1, "score": "13", "residentId": claimant_id},
            {"rank": 2, "score": "8", "residentId": f.resident_id},
        ])
    );
    assert_eq!(
        board("ACCEPTED_REPORTS").await,
        json!([
            {"rank": 1, "score": "1", "residentId": f.resident_id},
            {"rank": 1, "score": "1", "residentId": claimant_id},
        ]),
        "tied residents share a rank, listed by who got there first"
    );
    assert_eq!(
        board("ADOPTED_SUGGESTIONS").await,
        json!([{"rank": 1, "score": "1", "residentId": claimant_id}])
    );
}

#[tokio::test]
async fn a_fraudulent_report_is_reversed_as_far_as_the_balance_allows() {
    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let gift = app.gift(&counter, "4", 10).await;
    let (report, _) = submit(&app, f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    let position = accept(&app, f, &f.admin, report).await;
    app.wallet(&f.resident, f.community, f.resident_id, position)
        .await;
    let placed = app
        .place(&counter.clerk, f.community, f.resident_id, gift, "k")
        .await;
    assert_eq!(code_of(&placed), "OK", "{placed}");

    let reverse = "mutation($c: UUID!, $r: UUID!) { reverseReportPoints(communityId: $c, reportId: $r, reason: \"虚假举报\") { amount shortfall balance position } }";
    let vars = json!({"c": f.community, "r": report});
    for token in [&counter.clerk, &f.auditor, &f.resident, &f.worker] {
        let refused = app.gql(Some(token), reverse, vars.clone()).await;
        assert_eq!(code_of(&refused), "FORBIDDEN", "{refused}");
    }
    let reversed = app.ok(Some(&f.admin), reverse, vars.clone()).await;
    assert_eq!(
        reversed["reverseReportPoints"],
        json!({"amount": "1", "shortfall": "4", "balance": "4",
            "position": reversed["reverseReportPoints"]["position"]}),
        "4 are held for the gift: only 1 comes back"
    );
    let again = app.gql(Some(&f.admin), reverse, vars).await;
    assert_eq!(code_of(&again), "CONFLICT", "{again}");
    let position = reversed["reverseReportPoints"]["position"]
        .as_i64()
        .unwrap();
    let trial = app.trial_balance(f, position).await;
    assert_eq!(trial["total"], "0");
    assert!(
        trial["accounts"]
            .as_array()
            .unwrap()
            .contains(&json!({"account": "reversed", "balance": "1"})),
        "{trial}"
    );
    let wallet = app
        .wallet(&f.resident, f.community, f.resident_id, position)
        .await;
    assert_eq!(lines(&wallet)[0], line("reversed", "fraudulent", "1"));
    assert_eq!(wallet["statement"]["edges"][0]["node"]["shortfall"], "4");
    assert_eq!(
        wallet["statement"]["edges"][0]["node"]["note"], "虚假举报",
        "the admin's reason"
    );
}

#[tokio::test]
async fn the_daily_limit_cuts_what_one_resident_earns_automatically_in_a_day() {
    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let rules = json!({"resolvedReportBonus": "0", "suggestionAdopted": "0",
        "suggestionPartlyAdopted": "0", "volunteerHour": "0", "dailyLimit": "7"});
    app.ok(
        Some(&f.admin),
        "mutation($c: UUID!, $r: PointsRulesInput!) { setPointsRules(communityId: $c, rules: $r) { position } }",
        json!({"c": f.community, "r": rules}),
    )
    .await;
    let mut position = 0;
    for (site, category) in [
        ("RB-01", "FLOATING-GARBAGE"),
        ("RB-02", "SEWAGE-OUTFALL"),
        ("MS-01", "SEWAGE-OUTFALL"),
    ] {
        let (report, _) = submit(&app, f, &f.resident, site, category).await;
        position = accept(&app, f, &f.admin, report).await;
    }
    let wallet = app
        .wallet(&f.resident, f.community, f.resident_id, position)
        .await;
    assert_eq!(wallet["balance"], "7", "{wallet}");
    assert_eq!(
        lines(&wallet),
        [
            line("withheld", "report_accepted", "0"),
            line("granted", "report_accepted", "2"),
            line("granted", "report_accepted", "5"),
        ]
    );
    assert_eq!(
        wallet["statement"]["edges"][0]["node"]["withheldReason"],
        "daily_limit"
    );
    // A manual grant is no automatic earning: the limit does not apply.
    let manual = app.grant(f, f.resident_id, "20").await;
    assert_eq!(
        app.wallet(&f.resident, f.community, f.resident_id, manual)
            .await["balance"],
        "27"
    );
}

/// Earning processes on several servers race to carry out the same
/// earning: each decides from what it read (one may read the wallet before
/// another's grant and the budget after it), and appends under the one
/// key the server makes for that earning. The key names the operation, so
/// every racer gets the first outcome: one grant, and no process stalls on
/// a refusal.
#[tokio::test]
async fn racing_processes_carrying_out_one_earning_grant_once_and_none_is_refused() {
    use app::clock::Clock;
    use app::commands::{Ran, RequestMeta};
    use app::idempotency::Idempotency;
    use app::points::GrantRequest;
    use domain::points::GrantSource;
    use domain::values::{PersonId, Points, ReportId};

    const ROUNDS: usize = 12;
    const RACERS: usize = 6;
    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let community = CommunityId::new(f.community);
    let desks: Vec<PointsDesk> = (0..RACERS)
        .map(|_| {
            PointsDesk::new(
                Commands::new(app.store.clone(), app.clock.clone()),
                Directory::default(),
            )
        })
        .collect();
    for round in 0..ROUNDS {
        let report = ReportId(Uuid::new_v4());
        let key = format!("earning:test-round-{round}:{}", f.resident_id);
        let runs = desks.iter().enumerate().map(|(racer, desk)| {
            let meta = RequestMeta {
                request_id: format!("earning-racer-{racer}"),
                idempotency: Some(Idempotency::server(key.clone())),
                ..RequestMeta::default()
            };
            let request = GrantRequest {
                resident: PersonId(f.resident_id),
                source: GrantSource::ReportAccepted { report },
                amount: Points::parse(rust_decimal::Decimal::from(5)).unwrap(),
                by: None,
                grid: None,
                at: app.clock.now(),
            };
            async move { desk.grant(community, &meta, request, &[]).await }
        });
        let outcomes = futures::future::join_all(runs).await;
        let appended = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Ok(Ran::Appended(..))))
            .count();
        for outcome in &outcomes {
            assert!(
                outcome.is_ok(),
                "round {round}: {:?}",
                outcome.as_ref().err()
            );
        }
        assert_eq!(
            appended, 1,
            "round {round}: one racer appends, the rest repeat"
        );
    }
    let wallet = format!("wallet-{}", f.resident_id);
    assert_eq!(
        count_events(&app, f.community, &wallet, "PointsGranted").await,
        ROUNDS,
        "one grant per earning"
    );
}

/// With the earning process stopped, two residents' reports are accepted;
/// the process then follows all of it in one batch, queueing each grant
/// behind the last on the budget without waiting for each to commit. They
/// land in the log's order, which decides what the daily limit cuts: the
/// first reports are paid, the third in part, the fourth is withheld. A
/// process that kept nothing, following it all again, pays nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_batch_of_grants_lands_in_the_logs_order() {
    let app = TestApp::spawn_quiet().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let rules = json!({"resolvedReportBonus": "0", "suggestionAdopted": "0",
        "suggestionPartlyAdopted": "0", "volunteerHour": "0", "dailyLimit": "12"});
    app.ok(
        Some(&f.admin),
        "mutation($c: UUID!, $r: PointsRulesInput!) { setPointsRules(communityId: $c, rules: $r) { position } }",
        json!({"c": f.community, "r": rules}),
    )
    .await;
    let filed = [
        (&f.resident, "RB-01", "FLOATING-GARBAGE"),
        (&f.other_resident, "RB-01", "SEWAGE-OUTFALL"),
        (&f.resident, "RB-02", "FLOATING-GARBAGE"),
        (&f.resident, "MS-01", "FLOATING-GARBAGE"),
        (&f.other_resident, "RB-02", "SEWAGE-OUTFALL"),
        (&f.resident, "RB-02", "SEWAGE-OUTFALL"),
    ];
    let mut accepted = Vec::new();
    for (resident, site, category) in filed {
        let (report, _) = submit(&app, f, resident, site, category).await;
        accept(&app, f, &f.admin, report).await;
        accepted.push(report);
    }

    let process = EarningProcess::new(app.points.clone());
    let generation = ensure_live(app.store.pool(), &process).await.unwrap();
    let runner = ProjectionRunner::new(app.store.clone(), RunnerConfig::default());
    runner.catch_up(&process, generation).await.unwrap();
    // Followed again from the start by a process that kept nothing.
    let fresh = EarningProcess::new(PointsDesk::new(
        Commands::new(app.store.clone(), app.clock.clone()),
        Directory::default(),
    ));
    let mut builder = Builder::new(app.store.pool()).await.unwrap();
    let rebuilt = builder.start(&fresh, Building::Rebuild).await.unwrap();
    runner.catch_up(&fresh, rebuilt).await.unwrap();

    // The resident's wallet: what each of their reports got, in order.
    let wallet_stream = format!("wallet-{}", f.resident_id);
    let got: Vec<(String, String, String)> = app
        .store
        .read_stream(CommunityId::new(f.community), &wallet_stream, 1, 100)
        .await
        .unwrap()
        .iter()
        .map(|event| {
            let payload = event.payload_value().unwrap();
            let body = &payload[&event.event_type];
            let amount = body["amount"].as_str().unwrap_or("-").to_string();
            let report = body["source"]["report_accepted"]["report"]
                .as_str()
                .unwrap()
                .to_string();
            (event.event_type.clone(), amount, report)
        })
        .collect();
    let theirs: Vec<String> = [0, 2, 3, 5]
        .iter()
        .map(|n| accepted[*n].to_string())
        .collect();
    let want: Vec<(String, String, String)> = [
        ("PointsGranted", "5"),
        ("PointsGranted", "5"),
        ("PointsGranted", "2"),
        ("GrantWithheld", "-"),
    ]
    .iter()
    .zip(&theirs)
    .map(|((kind, amount), report)| (kind.to_string(), amount.to_string(), report.clone()))
    .collect();
    assert_eq!(got, want, "paid in the order the reports were accepted");
    assert_eq!(
        count_events(&app, f.community, "budget", "BudgetIssued").await,
        5,
        "three grants to one resident, two to the other, each once"
    );
    let head = app.head(f.community).await;
    let wallet = app.wallet(&f.admin, f.community, f.resident_id, head).await;
    assert_eq!(wallet["balance"], "12", "{wallet}");
}
