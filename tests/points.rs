//! The points economy over HTTP: earning, the counter's two phases, the
//! ledger's balance under concurrency, expiry, reversal and the boards.

use std::time::Duration;

use domain::values::Role;
use futures::future::join_all;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::{accept, act, code_of, seeded, submit, Fixture, TestApp};

/// A community with a centre, its clerk, another centre's clerk, a funded
/// budget and points rules.
pub struct Counter {
    pub f: Fixture,
    pub centre: Uuid,
    pub clerk: String,
    pub clerk_id: Uuid,
    pub other_clerk: String,
}

pub const PLACE: &str = "mutation($c: UUID!, $i: PlaceRedemptionInput!) {
    placeRedemption(communityId: $c, input: $i) {
        redemptionId position status points quantity expiresAt replayed } }";
const COMPLETE: &str = "mutation($c: UUID!, $r: UUID!) {
    completeRedemption(communityId: $c, redemptionId: $r) { redemptionId status position } }";
const CANCEL: &str = "mutation($c: UUID!, $r: UUID!) {
    cancelRedemption(communityId: $c, redemptionId: $r) { redemptionId status position } }";
const GRANT: &str = "mutation($c: UUID!, $p: UUID!, $a: String!) {
    grantPoints(communityId: $c, residentId: $p, amount: $a, reason: \"河道清洁志愿活动\") {
        grantId position amount balance withheld } }";
const WALLET: &str = "query($c: UUID!, $p: UUID, $at: Int) {
    wallet(communityId: $c, residentId: $p, atLeast: $at) {
        balance held available earned redeemed expiring { at amount }
        statement(first: 50) { edges { node {
            position kind amount balance held available reason reportId redemptionId
            giftName note shortfall withheldReason } } } } }";
const TRIAL: &str = "query($c: UUID!, $at: Int) {
    trialBalance(communityId: $c, atLeast: $at) {
        accounts { account balance } wallets walletCount total position } }";

impl TestApp {
    pub fn clerk_token(&self, community: Uuid, clerk: Uuid, centre: Uuid) -> String {
        self.tokens
            .issue(civic_ledger::auth::TokenRequest {
                subject: clerk,
                role: Role::Clerk,
                community,
                grids: Vec::new(),
                centre: Some(centre),
                lifetime: Duration::from_secs(3600),
            })
            .expect("a token")
    }

    pub async fn counter(&self) -> Counter {
        let f = self.fixture().await;
        let a = Some(f.admin.as_str());
        let add_centre =
            "mutation($c: UUID!, $n: String!) { addCentre(communityId: $c, name: $n) { id } }";
        let mut centres = Vec::new();
        for name in ["化工路党群服务中心", "河畔兑换点"] {
            let data = self
                .ok(a, add_centre, json!({"c": f.community, "n": name}))
                .await;
            centres.push(
                data["addCentre"]["id"]
                    .as_str()
                    .unwrap()
                    .parse::<Uuid>()
                    .unwrap(),
            );
        }
        let staff = crate::app::ASSIGN_STAFF;
        let (clerk_id, other_clerk_id) = (Uuid::new_v4(), Uuid::new_v4());
        for (person, centre) in [(clerk_id, centres[0]), (other_clerk_id, centres[1])] {
            let s = json!({"personId": person, "role": "CLERK", "centreId": centre});
            self.ok(a, staff, json!({"c": f.community, "s": s})).await;
        }
        let rules = json!({"resolvedReportBonus": "3", "suggestionAdopted": "8",
            "suggestionPartlyAdopted": "4", "volunteerHour": "2.5"});
        self.ok(
            a,
            "mutation($c: UUID!, $r: PointsRulesInput!) { setPointsRules(communityId: $c, rules: $r) { position } }",
            json!({"c": f.community, "r": rules}),
        )
        .await;
        self.fund(&f, "100000").await;
        Counter {
            clerk: self.clerk_token(f.community, clerk_id, centres[0]),
            other_clerk: self.clerk_token(f.community, other_clerk_id, centres[1]),
            centre: centres[0],
            clerk_id,
            f,
        }
    }

    pub async fn fund(&self, f: &Fixture, amount: &str) -> i64 {
        let data = self
            .ok(
                Some(&f.admin),
                "mutation($c: UUID!, $a: String!) { fundBudget(communityId: $c, amount: $a, note: \"2026 年度护水币预算\") { position } }",
                json!({"c": f.community, "a": amount}),
            )
            .await;
        data["fundBudget"]["position"].as_i64().unwrap()
    }

    /// Offers a gift at the counter's centre; returns its id.
    pub async fn gift(&self, counter: &Counter, price: &str, stock: u32) -> Uuid {
        let data = self
            .ok(
                Some(&counter.f.admin),
                "mutation($c: UUID!, $k: UUID!, $p: String!, $s: Int!) {
                    offerGift(communityId: $c, centreId: $k, name: \"环保购物袋\", price: $p, stock: $s) { id } }",
                json!({"c": counter.f.community, "k": counter.centre, "p": price, "s": stock}),
            )
            .await;
        data["offerGift"]["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn grant(&self, f: &Fixture, resident: Uuid, amount: &str) -> i64 {
        let data = self
            .ok(
                Some(&f.admin),
                GRANT,
                json!({"c": f.community, "p": resident, "a": amount}),
            )
            .await;
        data["grantPoints"]["position"].as_i64().unwrap()
    }

    pub async fn place(
        &self,
        clerk: &str,
        community: Uuid,
        resident: Uuid,
        gift: Uuid,
        key: &str,
    ) -> Value {
        let input =
            json!({"residentId": resident, "giftId": gift, "quantity": 1, "idempotencyKey": key});
        self.gql(Some(clerk), PLACE, json!({"c": community, "i": input}))
            .await
    }

    /// Places a redemption that must succeed; returns its id and position.
    pub async fn placed(
        &self,
        clerk: &str,
        community: Uuid,
        resident: Uuid,
        gift: Uuid,
        key: &str,
    ) -> (Value, i64) {
        let placed = self.place(clerk, community, resident, gift, key).await;
        let payload = &placed["data"]["placeRedemption"];
        let position = payload["position"]
            .as_i64()
            .unwrap_or_else(|| panic!("placed: {placed}"));
        (payload["redemptionId"].clone(), position)
    }

    pub async fn wallet(&self, token: &str, community: Uuid, resident: Uuid, at: i64) -> Value {
        let data = self
            .ok(
                Some(token),
                WALLET,
                json!({"c": community, "p": resident, "at": at}),
            )
            .await;
        data["wallet"].clone()
    }

    /// The community's first gift's stock and held count, as of `at`.
    pub async fn gift_stock(&self, clerk: &str, community: Uuid, at: i64) -> Value {
        self.ok(
            Some(clerk),
            "query($c: UUID!, $at: Int) { gifts(communityId: $c, atLeast: $at) { stock held } }",
            json!({"c": community, "at": at}),
        )
        .await["gifts"][0]
            .clone()
    }

    pub async fn trial_balance(&self, f: &Fixture, at: i64) -> Value {
        self.ok(Some(&f.auditor), TRIAL, json!({"c": f.community, "at": at}))
            .await["trialBalance"]
            .clone()
    }
}

/// Places one redemption through a process's own desk (not over HTTP), as
/// the counter's clerk: how two processes are raced on one database.
async fn place_at_desk(
    desk: &app::points::PointsDesk,
    counter: &Counter,
    gift: Uuid,
    resident: Uuid,
    quantity: u32,
) -> app::error::AppResult<app::commands::Ran<domain::points::redemption::Placement>> {
    use domain::values::{Actor, CentreId, GiftId, PersonId, RedemptionId};
    let community = store::CommunityId::new(counter.f.community);
    let request = app::points::PlaceRequest {
        redemption: RedemptionId(Uuid::new_v4()),
        resident: PersonId(resident),
        gift: GiftId(gift),
        quantity,
        by: Actor {
            person: PersonId(counter.clerk_id),
            role: Role::Clerk,
        },
        centre: Some(CentreId(counter.centre)),
    };
    let meta = app::commands::RequestMeta {
        request_id: Uuid::new_v4().to_string(),
        ..app::commands::RequestMeta::default()
    };
    let setup = desk.community(community).await?;
    desk.place(community, &meta, &setup, request).await
}

fn statement_kinds(wallet: &Value) -> Vec<String> {
    wallet["statement"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["kind"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_resident_earns_by_reporting_and_redeems_at_a_counter() {
    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let gift = app.gift(&counter, "4", 10).await;

    let (report, _) = submit(&app, f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    let position = accept(&app, f, &f.worker, report).await;
    let wallet = app
        .wallet(&f.resident, f.community, f.resident_id, position)
        .await;
    assert_eq!(
        wallet["balance"], "5",
        "the category's points on acceptance: {wallet}"
    );
    assert_eq!(wallet["earned"], "5");

    let placed = app
        .place(
            &counter.clerk,
            f.community,
            f.resident_id,
            gift,
            "device-7:0001",
        )
        .await;
    let redemption = &placed["data"]["placeRedemption"];
    assert_eq!(redemption["status"], "PLACED", "{placed}");
    assert_eq!(redemption["points"], "4");
    let position = redemption["position"].as_i64().unwrap();
    let wallet = app
        .wallet(&f.resident, f.community, f.resident_id, position)
        .await;
    assert_eq!(
        (
            wallet["balance"].as_str(),
            wallet["held"].as_str(),
            wallet["available"].as_str()
        ),
        (Some("5"), Some("4"), Some("1"))
    );
    let completed = app
        .gql(
            Some(&counter.clerk),
            COMPLETE,
            json!({"c": f.community, "r": redemption["redemptionId"]}),
        )
        .await;
    assert_eq!(
        completed["data"]["completeRedemption"]["status"], "COMPLETED",
        "{completed}"
    );
    let position = completed["data"]["completeRedemption"]["position"]
        .as_i64()
        .unwrap();

    let wallet = app
        .wallet(&f.resident, f.community, f.resident_id, position)
        .await;
    assert_eq!(
        (wallet["balance"].as_str(), wallet["held"].as_str()),
        (Some("1"), Some("0"))
    );
    assert_eq!(wallet["redeemed"], "4");
    assert_eq!(statement_kinds(&wallet), ["redeemed", "held", "granted"]);
    let lines = wallet["statement"]["edges"].as_array().unwrap();
    assert_eq!(lines[2]["node"]["reason"], "report_accepted");
    assert_eq!(lines[2]["node"]["reportId"], report.to_string());
    assert_eq!(lines[0]["node"]["reason"], "redemption");
    assert_eq!(
        lines[0]["node"]["giftName"], "环保购物袋",
        "the gift behind it"
    );
    let running: Vec<&str> = lines
        .iter()
        .map(|l| l["node"]["balance"].as_str().unwrap())
        .collect();
    assert_eq!(
        running,
        ["1", "5", "5"],
        "the running balance, newest first"
    );

    let board = app
        .ok(
            None,
            "query($c: UUID!, $at: Int) { leaderboard(communityId: $c, by: POINTS_EARNED, period: MONTH, atLeast: $at) {
                entries { rank name score residentId isYou } } }",
            json!({"c": f.community, "at": position}),
        )
        .await;
    let entries = board["leaderboard"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{board}");
    assert_eq!(
        (entries[0]["rank"].as_i64(), entries[0]["score"].as_str()),
        (Some(1), Some("5"))
    );
    assert!(entries[0]["name"]
        .as_str()
        .unwrap()
        .starts_with("resident-"));
    assert_eq!(
        entries[0]["residentId"],
        json!(null),
        "the public sees no ids"
    );

    let trial = app.trial_balance(f, position).await;
    assert_eq!(trial["total"], "0", "{trial}");
    let balance = |account: &str| {
        trial["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["account"] == account)
            .map(|a| a["balance"].as_str().unwrap().to_string())
    };
    assert_eq!(balance("minted").as_deref(), Some("-100000"));
    assert_eq!(balance("issuing").as_deref(), Some("99995"));
    assert_eq!(balance("redeemed").as_deref(), Some("4"));
    assert_eq!(trial["wallets"], "1");

    let day = app
        .ok(
            Some(&counter.clerk),
            "query($c: UUID!, $at: Int) { counterDay(communityId: $c, atLeast: $at) { placed completed pointsRedeemed giftsHandedOver } }",
            json!({"c": f.community, "at": position}),
        )
        .await;
    assert_eq!(
        day["counterDay"],
        json!({"placed": 1, "completed": 1, "pointsRedeemed": "4", "giftsHandedOver": 1})
    );
    let gifts = app
        .ok(
            Some(&f.resident),
            "query($c: UUID!, $at: Int) { gifts(communityId: $c, atLeast: $at) { stock held handedOver } }",
            json!({"c": f.community, "at": position}),
        )
        .await;
    assert_eq!(
        gifts["gifts"][0],
        json!({"stock": 9, "held": 0, "handedOver": 1})
    );
}

#[tokio::test]
async fn fifty_counters_racing_for_a_wallet_that_affords_seven_redeem_exactly_seven() {
    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let gift = app.gift(&counter, "10", 100).await;
    app.grant(f, f.resident_id, "70").await;

    let attempts = (0..50).map(|n| {
        let key = format!("race-{n}");
        let app = &app;
        let counter = &counter;
        async move {
            app.place(
                &counter.clerk,
                counter.f.community,
                counter.f.resident_id,
                gift,
                &key,
            )
            .await
        }
    });
    let responses = join_all(attempts).await;
    let codes: Vec<String> = responses.iter().map(code_of).collect();
    let placed: Vec<&Value> = responses
        .iter()
        .filter(|r| code_of(r) == "OK")
        .map(|r| &r["data"]["placeRedemption"])
        .collect();
    assert_eq!(placed.len(), 7, "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| *c == "INSUFFICIENT_POINTS").count(),
        43,
        "every other one is refused for points: {codes:?}"
    );
    let completions = placed.iter().map(|p| {
        app.gql(
            Some(&counter.clerk),
            COMPLETE,
            json!({"c": f.community, "r": p["redemptionId"]}),
        )
    });
    for completed in join_all(completions).await {
        assert_eq!(code_of(&completed), "OK", "{completed}");
    }
    let head = app.head(f.community).await;
    let wallet = app.wallet(&f.admin, f.community, f.resident_id, head).await;
    assert_eq!(
        (wallet["balance"].as_str(), wallet["held"].as_str()),
        (Some("0"), Some("0"))
    );
    assert_eq!(wallet["redeemed"], "70");
    let trial = app.trial_balance(f, head).await;
    assert_eq!(trial["total"], "0", "{trial}");
}

#[tokio::test]
async fn thirty_counters_racing_for_five_gifts_hand_over_exactly_five() {
    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let gift = app.gift(&counter, "10", 5).await;
    let residents: Vec<Uuid> = (0..30).map(|_| Uuid::new_v4()).collect();
    for resident in &residents {
        app.grant(f, *resident, "10").await;
    }
    let attempts = residents.iter().enumerate().map(|(n, resident)| {
        let key = format!("stock-{n}");
        let app = &app;
        let clerk = &counter.clerk;
        async move { app.place(clerk, f.community, *resident, gift, &key).await }
    });
    let codes: Vec<String> = join_all(attempts).await.iter().map(code_of).collect();
    assert_eq!(codes.iter().filter(|c| *c == "OK").count(), 5, "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| *c == "OUT_OF_STOCK").count(),
        25,
        "{codes:?}"
    );
    let head = app.head(f.community).await;
    assert_eq!(
        app.gift_stock(&counter.clerk, f.community, head).await,
        json!({"stock": 0, "held": 5})
    );
    assert_eq!(app.trial_balance(f, head).await["total"], "0");
}

#[tokio::test]
async fn one_idempotency_key_sent_twenty_times_at_once_holds_points_once() {
    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let gift = app.gift(&counter, "10", 100).await;
    app.grant(f, f.resident_id, "100").await;
    let attempts = (0..20).map(|_| {
        app.place(
            &counter.clerk,
            f.community,
            f.resident_id,
            gift,
            "tablet-3:order-41",
        )
    });
    let responses = join_all(attempts).await;
    let mut ids: Vec<String> = Vec::new();
    for response in &responses {
        assert_eq!(code_of(response), "OK", "{response}");
        ids.push(
            response["data"]["placeRedemption"]["redemptionId"]
                .as_str()
                .unwrap()
                .into(),
        );
    }
    ids.dedup();
    assert_eq!(
        ids.len(),
        1,
        "every retry answers with the first redemption"
    );
    let replayed = responses
        .iter()
        .filter(|r| r["data"]["placeRedemption"]["replayed"] == json!(true))
        .count();
    assert_eq!(replayed, 19);
    let head = app.head(f.community).await;
    let wallet = app.wallet(&f.admin, f.community, f.resident_id, head).await;
    assert_eq!(wallet["held"], "10", "held once: {wallet}");
    assert_eq!(statement_kinds(&wallet), ["held", "granted"]);

    // Another clerk's device using the same key is another redemption.
    let other = app
        .gql(
            Some(&app.clerk_token(f.community, counter.clerk_id, counter.centre)),
            PLACE,
            json!({"c": f.community, "i": {"residentId": f.resident_id, "giftId": gift, "idempotencyKey": "tablet-3:order-42"}}),
        )
        .await;
    assert_eq!(code_of(&other), "OK");
}

#[tokio::test]
async fn a_hold_not_completed_in_time_is_released_and_cannot_be_completed() {
    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let gift = app.gift(&counter, "10", 1).await;
    app.grant(f, f.resident_id, "10").await;
    let (redemption, position) = app
        .placed(&counter.clerk, f.community, f.resident_id, gift, "k-1")
        .await;
    // The read model the sweeper reads must know the placement.
    app.wallet(&f.admin, f.community, f.resident_id, position)
        .await;

    app.clock.advance_minutes(14);
    assert_eq!(
        app.sweeper.tick().await.unwrap().holds_released,
        0,
        "not yet due"
    );
    app.clock.advance_minutes(2);
    assert_eq!(app.sweeper.tick().await.unwrap().holds_released, 1);
    assert_eq!(
        app.sweeper.tick().await.unwrap().holds_released,
        0,
        "released once"
    );

    let late = app
        .gql(
            Some(&counter.clerk),
            COMPLETE,
            json!({"c": f.community, "r": redemption}),
        )
        .await;
    assert_eq!(code_of(&late), "CONFLICT", "{late}");
    let head = app.head(f.community).await;
    let wallet = app.wallet(&f.admin, f.community, f.resident_id, head).await;
    assert_eq!(
        (wallet["balance"].as_str(), wallet["held"].as_str()),
        (Some("10"), Some("0"))
    );
    assert_eq!(statement_kinds(&wallet), ["released", "held", "granted"]);
    let again = app
        .place(&counter.clerk, f.community, f.resident_id, gift, "k-2")
        .await;
    assert_eq!(code_of(&again), "OK", "the stock is back: {again}");
    let cancelled = app
        .gql(
            Some(&counter.clerk),
            CANCEL,
            json!({"c": f.community, "r": again["data"]["placeRedemption"]["redemptionId"]}),
        )
        .await;
    assert_eq!(
        cancelled["data"]["cancelRedemption"]["status"], "CANCELLED",
        "{cancelled}"
    );
}

#[tokio::test]
async fn points_expire_oldest_first_after_the_communitys_period() {
    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let rules = json!({"resolvedReportBonus": "0", "suggestionAdopted": "0",
        "suggestionPartlyAdopted": "0", "volunteerHour": "0", "expiryDays": 30});
    app.ok(
        Some(&f.admin),
        "mutation($c: UUID!, $r: PointsRulesInput!) { setPointsRules(communityId: $c, rules: $r) { position } }",
        json!({"c": f.community, "r": rules}),
    )
    .await;
    app.grant(f, f.resident_id, "6").await;
    app.clock.advance_hours(24 * 10);
    let position = app.grant(f, f.resident_id, "4").await;
    let wallet = app
        .wallet(&f.resident, f.community, f.resident_id, position)
        .await;
    let expiring = wallet["expiring"].as_array().unwrap();
    assert_eq!(expiring.len(), 2, "{wallet}");
    assert_eq!(expiring[0]["amount"], "6", "the oldest expire first");

    app.clock.advance_hours(24 * 21);
    for _ in 0..50 {
        if app.sweeper.tick().await.unwrap().wallets_expired == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let head = app.head(f.community).await;
    let wallet = app
        .wallet(&f.resident, f.community, f.resident_id, head)
        .await;
    assert_eq!(wallet["balance"], "4", "{wallet}");
    assert_eq!(wallet["expiring"].as_array().unwrap().len(), 1);
    assert_eq!(statement_kinds(&wallet), ["expired", "granted", "granted"]);
    let trial = app.trial_balance(f, head).await;
    assert_eq!(trial["total"], "0");
    assert!(
        trial["accounts"]
            .as_array()
            .unwrap()
            .contains(&json!({"account": "expired", "balance": "6"})),
        "{trial}"
    );
    let flows = app
        .ok(
            Some(&f.admin),
            "query($c: UUID!) { pointsFlows(communityId: $c) { month minted granted expired } }",
            json!({"c": f.community}),
        )
        .await;
    let months = flows["pointsFlows"].as_array().unwrap();
    assert_eq!(
        months.len(),
        2,
        "granted in November, expired in December: {flows}"
    );
    assert_eq!(months[0]["expired"], "6");
    assert_eq!(months[1]["granted"], "10");
}

#[tokio::test]
async fn each_role_does_only_its_part_of_the_economy() {
    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let gift = app.gift(&counter, "2", 50).await;
    app.grant(f, f.resident_id, "40").await;
    let (redemption, _) = app
        .placed(&counter.clerk, f.community, f.resident_id, gift, "roles-1")
        .await;
    let wrong_centre = app.clerk_token(f.community, counter.clerk_id, Uuid::new_v4());
    let tokens: Vec<(&str, Option<&str>)> = vec![
        ("admin", Some(&f.admin)),
        ("auditor", Some(&f.auditor)),
        ("clerk", Some(&counter.clerk)),
        ("other_clerk", Some(&counter.other_clerk)),
        ("wrong_centre", Some(&wrong_centre)),
        ("resident", Some(&f.resident)),
        ("other_resident", Some(&f.other_resident)),
        ("worker", Some(&f.worker)),
        ("foreign_admin", Some(&f.foreign_admin)),
        ("anonymous", None),
    ];
    let token = |who: &str| tokens.iter().find(|(name, _)| *name == who).unwrap().1;
    let fund = "mutation($c: UUID!) { fundBudget(communityId: $c, amount: \"10\", note: \"n\") { position } }".to_string();
    let grant = format!("mutation($c: UUID!) {{ grantPoints(communityId: $c, residentId: \"{}\", amount: \"1\", reason: \"r\") {{ position }} }}", f.resident_id);
    let volunteer = |grid: Uuid| {
        format!("mutation($c: UUID!) {{ recordVolunteerService(communityId: $c, residentId: \"{}\", hours: \"2\", gridId: \"{grid}\") {{ amount }} }}", f.resident_id)
    };
    let place = |key: &str| {
        format!("mutation($c: UUID!) {{ placeRedemption(communityId: $c, input: {{residentId: \"{}\", giftId: \"{gift}\", idempotencyKey: \"{key}\"}}) {{ status }} }}", f.resident_id)
    };
    let cancel = format!("mutation($c: UUID!) {{ cancelRedemption(communityId: $c, redemptionId: {redemption}) {{ status }} }}");
    let stock = format!("mutation($c: UUID!) {{ addGiftStock(communityId: $c, giftId: \"{gift}\", quantity: 1, reason: \"到货\") {{ position }} }}");
    let offer = format!("mutation($c: UUID!) {{ offerGift(communityId: $c, centreId: \"{}\", name: \"毛巾\", price: \"3\", stock: 1) {{ id }} }}", counter.centre);
    let wallet = format!(
        "query($c: UUID!) {{ wallet(communityId: $c, residentId: \"{}\") {{ balance }} }}",
        f.resident_id
    );
    let statement = format!("query($c: UUID!) {{ wallet(communityId: $c, residentId: \"{}\") {{ statement {{ edges {{ cursor }} }} }} }}", f.resident_id);
    let trial = "query($c: UUID!) { trialBalance(communityId: $c) { total } }".to_string();
    let day = "query($c: UUID!) { counterDay(communityId: $c) { placed } }".to_string();
    let board = "query($c: UUID!) { leaderboard(communityId: $c, by: POINTS_EARNED, period: WEEK) { entries { rank } } }".to_string();
    let board_of = format!("query($c: UUID!) {{ leaderboard(communityId: $c, by: POINTS_EARNED, period: WEEK, residentId: \"{}\") {{ standing {{ rank }} }} }}", f.resident_id);
    let redemptions = format!("query($c: UUID!) {{ redemptions(communityId: $c, filter: {{centreId: \"{}\"}}) {{ edges {{ cursor }} }} }}", counter.centre);
    let table: Vec<(&String, &str, &str)> = vec![
        (&fund, "auditor", "FORBIDDEN"),
        (&fund, "clerk", "FORBIDDEN"),
        (&fund, "resident", "FORBIDDEN"),
        (&fund, "foreign_admin", "FORBIDDEN"),
        (&fund, "anonymous", "UNAUTHENTICATED"),
        (&fund, "admin", "OK"),
        (&grant, "clerk", "FORBIDDEN"),
        (&grant, "worker", "FORBIDDEN"),
        (&grant, "auditor", "FORBIDDEN"),
        (&grant, "admin", "OK"),
        (&offer, "clerk", "FORBIDDEN"),
        (&offer, "admin", "OK"),
        (&stock, "other_clerk", "FORBIDDEN"),
        (&stock, "wrong_centre", "FORBIDDEN"),
        (&stock, "resident", "FORBIDDEN"),
        (&stock, "clerk", "OK"),
        (&cancel, "other_clerk", "FORBIDDEN"),
        (&cancel, "resident", "FORBIDDEN"),
        (&cancel, "auditor", "FORBIDDEN"),
        (&wallet, "other_resident", "FORBIDDEN"),
        (&wallet, "worker", "FORBIDDEN"),
        (&wallet, "clerk", "OK"),
        (&wallet, "auditor", "OK"),
        (&wallet, "resident", "OK"),
        (&statement, "clerk", "FORBIDDEN"),
        (&statement, "auditor", "OK"),
        (&trial, "clerk", "FORBIDDEN"),
        (&trial, "resident", "FORBIDDEN"),
        (&trial, "admin", "OK"),
        (&day, "resident", "FORBIDDEN"),
        (&day, "clerk", "OK"),
        (&board, "anonymous", "OK"),
        (&board, "resident", "OK"),
        (&board, "foreign_admin", "FORBIDDEN"),
        (&board_of, "resident", "FORBIDDEN"),
        (&board_of, "auditor", "OK"),
        (&redemptions, "other_clerk", "FORBIDDEN"),
        (&redemptions, "worker", "FORBIDDEN"),
        (&redemptions, "clerk", "OK"),
    ];
    let place_table = [
        ("resident", "FORBIDDEN"),
        ("auditor", "FORBIDDEN"),
        ("worker", "FORBIDDEN"),
        ("other_clerk", "FORBIDDEN"),
        ("wrong_centre", "FORBIDDEN"),
        ("clerk", "OK"),
        ("admin", "OK"),
    ];
    let volunteer_table = [
        (volunteer(f.grid1a), "worker", "OK"),
        (volunteer(f.grid2), "worker", "FORBIDDEN"),
        (volunteer(f.grid2), "clerk", "FORBIDDEN"),
        (volunteer(f.grid2), "admin", "OK"),
    ];
    let mut failures = Vec::new();
    let mut check = |query: &str, who: &str, expected: &str, response: Value| {
        let code = code_of(&response);
        if code != expected {
            failures.push(format!(
                "{who} {query}: {code}, expected {expected}: {response}"
            ));
        }
    };
    let c = json!({"c": f.community});
    for (query, who, expected) in table {
        check(
            query,
            who,
            expected,
            app.gql(token(who), query, c.clone()).await,
        );
    }
    for (n, (who, expected)) in place_table.iter().enumerate() {
        let query = place(&format!("roles-place-{n}"));
        check(
            &query,
            who,
            expected,
            app.gql(token(who), &query, c.clone()).await,
        );
    }
    for (query, who, expected) in &volunteer_table {
        check(
            query,
            who,
            expected,
            app.gql(token(who), query, c.clone()).await,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn bad_points_input_is_refused_with_its_code_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let gift = app.gift(&counter, "2", 3).await;
    app.grant(f, f.resident_id, "4").await;
    let placed = app
        .place(&counter.clerk, f.community, f.resident_id, gift, "done")
        .await;
    let done = placed["data"]["placeRedemption"]["redemptionId"].clone();
    app.ok(
        Some(&counter.clerk),
        COMPLETE,
        json!({"c": f.community, "r": done}),
    )
    .await;
    let long_note = "注".repeat(2_001);
    let long_key = "k".repeat(101);
    let fund = |amount: &str, note: &str| {
        (
            "mutation($c: UUID!, $a: String!, $n: String!) { fundBudget(communityId: $c, amount: $a, note: $n) { position } }",
            json!({"c": f.community, "a": amount, "n": note}),
        )
    };
    let place = |quantity: i64, key: &str, gift: Uuid| {
        (
            PLACE,
            json!({"c": f.community, "i": {"residentId": f.resident_id, "giftId": gift, "quantity": quantity, "idempotencyKey": key}}),
        )
    };
    let grant = |amount: &str| {
        (
            GRANT,
            json!({"c": f.community, "p": f.resident_id, "a": amount}),
        )
    };
    let offer = |price: &str, stock: i64| {
        (
            "mutation($c: UUID!, $k: UUID!, $p: String!, $s: Int!) { offerGift(communityId: $c, centreId: $k, name: \"x\", price: $p, stock: $s) { id } }",
            json!({"c": f.community, "k": counter.centre, "p": price, "s": stock}),
        )
    };
    let table: Vec<(&str, (&str, Value), &str)> = vec![
        ("empty amount", fund("", "n"), "VALIDATION"),
        ("zero", fund("0", "n"), "VALIDATION"),
        ("negative", fund("-5", "n"), "VALIDATION"),
        ("three decimals", fund("1.001", "n"), "VALIDATION"),
        ("not a number", fund("ten", "n"), "VALIDATION"),
        (
            "huge",
            fund("100000000000000000000000000", "n"),
            "VALIDATION",
        ),
        ("over a billion", fund("1000000001", "n"), "VALIDATION"),
        ("empty note", fund("5", " "), "VALIDATION"),
        ("long note", fund("5", &long_note), "VALIDATION"),
        ("beyond the budget", grant("100001"), "INSUFFICIENT_BUDGET"),
        ("no gifts", place(0, "q0", gift), "VALIDATION"),
        ("too many gifts", place(21, "q21", gift), "VALIDATION"),
        ("negative quantity", place(-1, "qneg", gift), "BAD_QUERY"),
        ("empty key", place(1, " ", gift), "VALIDATION"),
        ("long key", place(1, &long_key, gift), "VALIDATION"),
        ("unknown gift", place(1, "u", Uuid::new_v4()), "NOT_FOUND"),
        (
            "more than the wallet",
            place(2, "more", gift),
            "INSUFFICIENT_POINTS",
        ),
        (
            "more than the stock",
            (
                PLACE,
                json!({"c": f.community, "i": {"residentId": f.resident_id, "giftId": gift, "quantity": 3, "idempotencyKey": "s"}}),
            ),
            "INSUFFICIENT_POINTS",
        ),
        (
            "completed twice",
            (COMPLETE, json!({"c": f.community, "r": done})),
            "CONFLICT",
        ),
        (
            "cancelled after completion",
            (CANCEL, json!({"c": f.community, "r": done})),
            "CONFLICT",
        ),
        (
            "unknown redemption",
            (COMPLETE, json!({"c": f.community, "r": Uuid::new_v4()})),
            "NOT_FOUND",
        ),
        ("free gift", offer("0", 1), "VALIDATION"),
        ("a shop's worth", offer("1", 1_000_001), "VALIDATION"),
        (
            "wrong type",
            (GRANT, json!({"c": f.community, "p": f.resident_id, "a": 5})),
            "BAD_QUERY",
        ),
    ];
    let before = app.head(f.community).await;
    let mut failures = Vec::new();
    for (what, (query, variables), expected) in table {
        let token = if query == GRANT || query.contains("fundBudget") || query.contains("offerGift")
        {
            &f.admin
        } else {
            &counter.clerk
        };
        let response = app.gql(Some(token), query, variables).await;
        if code_of(&response) != expected {
            failures.push(format!("{what}: expected {expected}: {response}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(app.head(f.community).await, before, "nothing was stored");
    let wallet = app
        .wallet(&f.resident, f.community, f.resident_id, before)
        .await;
    assert_eq!(
        (wallet["balance"].as_str(), wallet["held"].as_str()),
        (Some("2"), Some("0"))
    );
}

#[tokio::test]
async fn retried_grants_funding_and_reversals_answer_with_their_first_outcome() {
    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let vars = json!({"c": f.community, "p": f.resident_id, "a": "12.5"});
    let first = app
        .gql_with(Some(&f.admin), GRANT, vars.clone(), Some("grant-retry-1"))
        .await;
    let retry = app
        .gql_with(Some(&f.admin), GRANT, vars, Some("grant-retry-1"))
        .await;
    assert_eq!(code_of(&retry), "OK", "{retry}");
    assert_eq!(first["data"]["grantPoints"], retry["data"]["grantPoints"]);

    let fund = "mutation($c: UUID!) { fundBudget(communityId: $c, amount: \"50\", note: \"补充\") { position } }";
    let c = json!({"c": f.community});
    let funded = app
        .gql_with(Some(&f.admin), fund, c.clone(), Some("fund-retry-1"))
        .await;
    let again = app
        .gql_with(Some(&f.admin), fund, c.clone(), Some("fund-retry-1"))
        .await;
    assert_eq!(funded["data"], again["data"]);

    let (report, _) = submit(&app, f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    act(&app, f, &f.admin, "acceptReport", report).await;
    let accepted = app.head(f.community).await;
    app.wallet(&f.resident, f.community, f.resident_id, accepted)
        .await;
    let reverse = "mutation($c: UUID!, $r: UUID!) { reverseReportPoints(communityId: $c, reportId: $r, reason: \"虚假\") { amount shortfall balance position } }";
    let vars = json!({"c": f.community, "r": report});
    let reversed = app
        .gql_with(Some(&f.admin), reverse, vars.clone(), Some("reverse-1"))
        .await;
    let retried = app
        .gql_with(Some(&f.admin), reverse, vars, Some("reverse-1"))
        .await;
    assert_eq!(code_of(&retried), "OK", "{retried}");
    assert_eq!(reversed["data"], retried["data"]);
    assert_eq!(reversed["data"]["reverseReportPoints"]["amount"], "5");

    let head = app.head(f.community).await;
    let wallet = app
        .wallet(&f.resident, f.community, f.resident_id, head)
        .await;
    assert_eq!(
        wallet["balance"], "12.5",
        "granted once, reversed once: {wallet}"
    );
    let trial = app.trial_balance(f, head).await;
    assert!(
        trial["accounts"]
            .as_array()
            .unwrap()
            .contains(&json!({"account": "minted", "balance": "-100050"})),
        "funded once: {trial}"
    );
}

#[tokio::test]
async fn volunteer_hours_and_grids_have_their_boards() {
    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let volunteer = "mutation($c: UUID!, $p: UUID!, $h: String!, $g: UUID) {
        recordVolunteerService(communityId: $c, residentId: $p, hours: $h, gridId: $g) { amount position } }";
    let served = app
        .ok(
            Some(&f.worker),
            volunteer,
            json!({"c": f.community, "p": f.resident_id, "h": "1.5", "g": f.grid1a}),
        )
        .await;
    assert_eq!(
        served["recordVolunteerService"]["amount"], "3.75",
        "1.5 hours at 2.5"
    );
    for (hours, expected) in [
        ("0", "VALIDATION"),
        ("24.01", "VALIDATION"),
        ("1.001", "VALIDATION"),
        ("many", "VALIDATION"),
    ] {
        let refused = app
            .gql(
                Some(&f.admin),
                volunteer,
                json!({"c": f.community, "p": f.resident_id, "h": hours}),
            )
            .await;
        assert_eq!(code_of(&refused), expected, "{hours}: {refused}");
    }
    let position = served["recordVolunteerService"]["position"]
        .as_i64()
        .unwrap();
    let board = "query($c: UUID!, $g: UUID, $at: Int) { leaderboard(communityId: $c, by: VOLUNTEER_HOURS, period: WEEK, gridId: $g, atLeast: $at) {
        entries { rank score isYou } standing { rank score } } }";
    for grid in [json!(null), json!(f.grid1a), json!(f.grid1)] {
        let data = app
            .ok(
                Some(&f.resident),
                board,
                json!({"c": f.community, "g": grid, "at": position}),
            )
            .await;
        assert_eq!(
            data["leaderboard"],
            json!({"entries": [{"rank": 1, "score": "1.5", "isYou": true}], "standing": {"rank": 1, "score": "1.5"}}),
            "grid {grid}: the community's, the grid's and its level 1 grid's boards"
        );
    }
    let elsewhere = app
        .ok(
            Some(&f.resident),
            board,
            json!({"c": f.community, "g": f.grid2, "at": position}),
        )
        .await;
    assert_eq!(elsewhere["leaderboard"]["entries"], json!([]));

    // Grid 1a resolves what it gets; grid 2 does not.
    let (resolved, _) = submit(&app, f, &f.resident, "RB-01", "FLOATING-GARBAGE").await;
    act(&app, f, &f.admin, "acceptReport", resolved).await;
    let assign = format!("assignReport(workerId: \"{}\")", f.worker_id);
    act(&app, f, &f.admin, &assign, resolved).await;
    act(&app, f, &f.worker, "startWork", resolved).await;
    app.clock.advance_hours(2);
    act(
        &app,
        f,
        &f.worker,
        "resolveReport(notes: \"已清理\")",
        resolved,
    )
    .await;
    let (open, _) = submit(&app, f, &f.resident, "RB-02", "FLOATING-GARBAGE").await;
    let position = accept(&app, f, &f.admin, open).await;
    let grids = app
        .ok(
            None,
            "query($c: UUID!, $at: Int) { gridLeaderboard(communityId: $c, period: MONTH, atLeast: $at) {
                rank name received resolved resolutionRate medianResolutionHours } }",
            json!({"c": f.community, "at": position}),
        )
        .await;
    assert_eq!(
        grids["gridLeaderboard"],
        json!([
            {"rank": 1, "name": "Grid 1", "received": 1, "resolved": 1, "resolutionRate": 1.0, "medianResolutionHours": 2.0},
            {"rank": 1, "name": "Grid 1a", "received": 1, "resolved": 1, "resolutionRate": 1.0, "medianResolutionHours": 2.0},
            {"rank": 3, "name": "Grid 2", "received": 1, "resolved": 0, "resolutionRate": 0.0, "medianResolutionHours": null},
        ])
    );
}

#[tokio::test]
async fn a_gifts_stock_history_says_who_changed_it_and_why() {
    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let gift = app.gift(&counter, "5", 2).await;
    let add = "mutation($c: UUID!, $g: UUID!) { addGiftStock(communityId: $c, giftId: $g, quantity: 10, reason: \"街道办送来一箱\") { position } }";
    let correct = "mutation($c: UUID!, $g: UUID!) { correctGiftStock(communityId: $c, giftId: $g, stock: 9, reason: \"盘点少了三个\") { position } }";
    let vars = json!({"c": f.community, "g": gift});
    app.ok(Some(&counter.clerk), add, vars.clone()).await;
    let corrected = app.ok(Some(&f.admin), correct, vars.clone()).await;
    let position = corrected["correctGiftStock"]["position"].as_i64().unwrap();
    let history = "query($c: UUID!, $g: UUID!, $at: Int) { giftHistory(communityId: $c, giftId: $g, atLeast: $at) {
        gift { stock } lines { kind quantity stock reason } } }";
    let vars = json!({"c": f.community, "g": gift, "at": position});
    let data = app.ok(Some(&f.auditor), history, vars.clone()).await;
    assert_eq!(
        data["giftHistory"],
        json!({"gift": {"stock": 9}, "lines": [
            {"kind": "corrected", "quantity": -3, "stock": 9, "reason": "盘点少了三个"},
            {"kind": "added", "quantity": 10, "stock": 12, "reason": "街道办送来一箱"},
            {"kind": "offered", "quantity": 2, "stock": 2, "reason": null},
        ]})
    );
    let refused = app
        .gql(Some(&counter.other_clerk), history, vars.clone())
        .await;
    assert_eq!(code_of(&refused), "FORBIDDEN", "{refused}");
    let refused = app.gql(Some(&f.resident), history, vars).await;
    assert_eq!(code_of(&refused), "FORBIDDEN", "{refused}");
}

/// Two servers on one database: each decides on the state it kept after
/// its own writes, which the other one's writes make stale.
#[tokio::test]
async fn two_processes_deciding_on_kept_state_neither_overdraw_nor_wrongly_refuse() {
    use app::commands::{Commands, Ran, RequestMeta};
    use app::directory::Directory;
    use app::points::PointsDesk;
    use domain::values::{Actor, PersonId};

    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let gift = app.gift(&counter, "1", 100).await;
    let community = store::CommunityId::new(f.community);
    let first = app.points.clone();
    let second = PointsDesk::new(
        Commands::new(app.store.clone(), app.clock.clone()),
        Directory::default(),
    );
    let place = |desk: &PointsDesk, quantity: u32| {
        let (desk, counter) = (desk.clone(), &counter);
        async move {
            match place_at_desk(&desk, counter, gift, f.resident_id, quantity).await {
                Ok(Ran::Appended(..)) => "OK".to_string(),
                Ok(Ran::Repeated(_)) => "REPEATED".to_string(),
                Err(error) => error.code().to_string(),
            }
        }
    };
    // The first process keeps the wallet at 10 after granting and holding.
    app.grant(f, f.resident_id, "12").await;
    assert_eq!(place(&first, 2).await, "OK");
    // The second process adds 10 the first does not know of.
    let grant = domain::points::GrantSource::Manual {
        grant: domain::values::GrantId(Uuid::new_v4()),
        reason: domain::values::ContentHash::parse(&"a".repeat(64)).unwrap(),
    };
    let request = app::points::GrantRequest {
        resident: PersonId(f.resident_id),
        source: grant,
        amount: domain::values::Points::parse(10.into()).unwrap(),
        by: Some(Actor {
            person: PersonId(Uuid::new_v4()),
            role: Role::Admin,
        }),
        grid: None,
        at: app::clock::Clock::now(&*app.clock),
    };
    let meta = RequestMeta::default();
    assert!(matches!(
        second.grant(community, &meta, request, &[]).await,
        Ok(Ran::Appended(..))
    ));
    // 14 is more than the first process kept (10), not more than there is (20).
    assert_eq!(place(&first, 14).await, "OK", "not refused on stale state");
    // The second process kept nothing of the first's hold: its decision
    // conflicts, is made again, and takes what is left.
    assert_eq!(place(&second, 7).await, "INSUFFICIENT_POINTS");
    assert_eq!(place(&second, 6).await, "OK");
    assert_eq!(
        place(&first, 1).await,
        "INSUFFICIENT_POINTS",
        "nothing left"
    );
    let head = app.head(f.community).await;
    let wallet = app.wallet(&f.admin, f.community, f.resident_id, head).await;
    assert_eq!(
        (wallet["balance"].as_str(), wallet["held"].as_str()),
        (Some("22"), Some("22"))
    );
}

/// One gift, two processes, many counters at once: each process queues
/// its placements behind each other without waiting for their commits,
/// and the other process's writes make some of them conflict. Exactly the
/// stock is handed over, and nothing lands on a state that did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_placing_on_one_gift_at_once_hold_exactly_its_stock() {
    use app::commands::{Commands, Ran};
    use app::directory::Directory;
    use app::points::PointsDesk;

    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let gift = app.gift(&counter, "1", 24).await;
    let residents: Vec<Uuid> = (0..40).map(|_| Uuid::new_v4()).collect();
    for resident in &residents {
        app.grant(f, *resident, "3").await;
    }
    let other_store = store::EventStore::connect_url(&app.db.url(), store::StoreConfig::default())
        .await
        .expect("a second process's store");
    let desks = [
        app.points.clone(),
        PointsDesk::new(
            Commands::new(other_store.clone(), app.clock.clone()),
            Directory::default(),
        ),
    ];
    let attempts = residents.iter().enumerate().map(|(n, resident)| {
        let (desk, counter) = (desks[n % 2].clone(), &counter);
        let resident = *resident;
        async move {
            // As a counter would: a contended answer is tried again.
            for _ in 0..20 {
                match place_at_desk(&desk, counter, gift, resident, 1).await {
                    Ok(Ran::Appended(..)) => return "OK".to_string(),
                    Ok(Ran::Repeated(_)) => return "REPEATED".to_string(),
                    Err(app::error::AppError::Contended(_)) => continue,
                    Err(error) => return error.code().to_string(),
                }
            }
            "CONTENDED".to_string()
        }
    });
    let codes: Vec<String> = join_all(attempts).await;
    assert_eq!(codes.iter().filter(|c| *c == "OK").count(), 24, "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| *c == "OUT_OF_STOCK").count(),
        16,
        "{codes:?}"
    );
    let head = app.head(f.community).await;
    assert_eq!(
        app.gift_stock(&counter.clerk, f.community, head).await,
        json!({"stock": 0, "held": 24})
    );
    let mut held = 0;
    for resident in &residents {
        let wallet = app.wallet(&f.admin, f.community, *resident, head).await;
        let wallet_held = wallet["held"].as_str().unwrap().to_string();
        assert!(wallet_held == "0" || wallet_held == "1", "{wallet}");
        held += i32::from(wallet_held == "1");
    }
    assert_eq!(held, 24, "every placement held one resident's point");
    assert_eq!(app.trial_balance(f, head).await["total"], "0");
    other_store.shutdown().await;
}

/// What a wallet's stream says, folded here apart from the server: its
/// balance and held points from the amounts alone, and its lots spent
/// oldest first (an expiry only from lots due by its time).
#[derive(Debug, Default)]
struct Refolded {
    balance: rust_decimal::Decimal,
    held: rust_decimal::Decimal,
    /// (expires_at micros, remaining), oldest grant first.
    lots: Vec<(Option<i64>, rust_decimal::Decimal)>,
}

impl Refolded {
    fn spend(&mut self, mut amount: rust_decimal::Decimal, due_at: Option<i64>) {
        for (expires_at, remaining) in &mut self.lots {
            let due = due_at.is_none_or(|at| expires_at.is_some_and(|e| e <= at));
            if due && !amount.is_zero() {
                let taken = (*remaining).min(amount);
                *remaining -= taken;
                amount -= taken;
            }
        }
        assert!(amount.is_zero(), "the log spends only what the lots hold");
        self.lots.retain(|(_, remaining)| !remaining.is_zero());
    }

    /// `expiring` as the API shows it: per moment, soonest first.
    fn expiring(&self) -> Vec<Value> {
        let mut due: std::collections::BTreeMap<i64, rust_decimal::Decimal> = Default::default();
        for (expires_at, remaining) in &self.lots {
            if let Some(at) = expires_at {
                *due.entry(*at).or_default() += remaining;
            }
        }
        due.into_iter()
            .map(|(at, amount)| {
                let at = chrono::DateTime::from_timestamp_micros(at).unwrap();
                json!({"at": at.to_rfc3339(),
                    "amount": amount.normalize().to_string()})
            })
            .collect()
    }
}

#[tokio::test]
async fn wallets_the_ledger_keeps_are_their_streams_folded_again_over_a_varied_history() {
    use domain::points::WalletEvent::*;
    let app = TestApp::spawn().await;
    let counter = app.counter().await;
    let f = &counter.f;
    let rules = json!({"resolvedReportBonus": "3", "suggestionAdopted": "0",
        "suggestionPartlyAdopted": "0", "volunteerHour": "0", "expiryDays": 9});
    app.ok(
        Some(&f.admin),
        "mutation($c: UUID!, $r: PointsRulesInput!) { setPointsRules(communityId: $c, rules: $r) { position } }",
        json!({"c": f.community, "r": rules}),
    )
    .await;
    let gift = app.gift(&counter, "7", 10_000).await;
    let mut residents = vec![(f.resident_id, f.resident.clone())];
    for _ in 0..2 {
        let id = Uuid::new_v4();
        residents.push((id, app.token(f.community, id, Role::Citizen)));
    }
    let reverse = "mutation($c: UUID!, $r: UUID!) { reverseReportPoints(communityId: $c, reportId: $r, reason: \"虚假\") { amount } }";
    let mut next = seeded(0x1075);
    let mut placed: Vec<Value> = Vec::new();
    let mut reports: Vec<Uuid> = Vec::new();
    for round in 0..240 {
        let (resident, token) = residents[next(residents.len())].clone();
        match next(10) {
            0 | 1 => {
                let amount = format!("{}.{}", 1 + next(12), next(10));
                app.grant(f, resident, &amount).await;
            }
            2 => {
                let key = format!("walk-{round}");
                let answer = app
                    .place(&counter.clerk, f.community, resident, gift, &key)
                    .await;
                if let Some(id) = answer["data"]["placeRedemption"]["redemptionId"].as_str() {
                    placed.push(json!(id));
                }
            }
            3 if !placed.is_empty() => {
                let redemption = placed.swap_remove(next(placed.len()));
                let finish = [COMPLETE, COMPLETE, CANCEL][next(3)];
                app.gql(
                    Some(&counter.clerk),
                    finish,
                    json!({"c": f.community, "r": redemption}),
                )
                .await;
            }
            4 => {
                let (report, _) = submit(&app, f, &token, "RB-01", "FLOATING-GARBAGE").await;
                accept(&app, f, &f.admin, report).await;
                reports.push(report);
            }
            5 if !reports.is_empty() => {
                // The earning process must have granted what is reversed.
                let head = app.head(f.community).await;
                app.wallet(&f.admin, f.community, resident, head).await;
                let report = reports.swap_remove(next(reports.len()));
                app.gql(
                    Some(&f.admin),
                    reverse,
                    json!({"c": f.community, "r": report}),
                )
                .await;
            }
            6 | 7 => app.clock.advance_hours(1 + next(96) as i64),
            // Periods change: a later grant may expire before an earlier
            // one, or never, so an expiry is not simply the oldest lots.
            8 => {
                let mut rules = rules.clone();
                match [Some(2), Some(9), Some(40), None][next(4)] {
                    Some(days) => rules["expiryDays"] = json!(days),
                    None => drop(rules.as_object_mut().unwrap().remove("expiryDays")),
                }
                app.ok(
                    Some(&f.admin),
                    "mutation($c: UUID!, $r: PointsRulesInput!) { setPointsRules(communityId: $c, rules: $r) { position } }",
                    json!({"c": f.community, "r": rules}),
                )
                .await;
            }
            _ => {
                let head = app.head(f.community).await;
                app.wallet(&f.admin, f.community, resident, head).await;
                app.sweeper.tick().await.unwrap();
            }
        }
    }
    // The earning process grants for the last acceptances after them: wait
    // until it has nothing more to add.
    let mut head = app.head(f.community).await;
    loop {
        app.wallet(&f.admin, f.community, f.resident_id, head).await;
        let now = app.head(f.community).await;
        if now == head {
            break;
        }
        head = now;
    }
    let events = app
        .store
        .read_log(store::CommunityId::new(f.community), 1, head)
        .await
        .unwrap();
    let mut seen: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut expected = Vec::new();
    for (resident, _) in &residents {
        let stream = format!("wallet-{resident}");
        let mut wallet = Refolded::default();
        for event in events.iter().filter(|e| e.stream_id == stream) {
            let event: domain::points::WalletEvent =
                serde_json::from_str(event.payload.get()).unwrap();
            let kind = match event {
                PointsGranted {
                    amount, expires_at, ..
                } => {
                    wallet.balance += amount;
                    wallet.lots.push((expires_at.map(|t| t.micros()), amount));
                    "granted"
                }
                GrantWithheld { .. } => "withheld",
                PointsHeld { amount, .. } => {
                    wallet.held += amount;
                    "held"
                }
                HoldReleased { amount, .. } => {
                    wallet.held -= amount;
                    "released"
                }
                PointsRedeemed { amount, .. } => {
                    wallet.held -= amount;
                    wallet.balance -= amount;
                    wallet.spend(amount, None);
                    "redeemed"
                }
                PointsExpired { amount, at, .. } => {
                    wallet.balance -= amount;
                    wallet.spend(amount, Some(at.micros()));
                    "expired"
                }
                PointsReversed { amount, .. } => {
                    wallet.balance -= amount;
                    wallet.spend(amount, None);
                    "reversed"
                }
            };
            *seen.entry(kind).or_default() += 1;
        }
        let shown = app.wallet(&f.admin, f.community, *resident, head).await;
        let figure = |n: rust_decimal::Decimal| json!(n.normalize().to_string());
        assert_eq!(
            (&shown["balance"], &shown["held"], &shown["available"]),
            (
                &figure(wallet.balance),
                &figure(wallet.held),
                &figure(wallet.balance - wallet.held)
            ),
            "{resident}: {shown}"
        );
        assert_eq!(
            shown["expiring"],
            json!(wallet.expiring()),
            "{resident}: {shown}"
        );
        expected.push((*resident, wallet));
    }
    for kind in [
        "granted", "held", "released", "redeemed", "expired", "reversed",
    ] {
        assert!(
            seen.get(kind).is_some_and(|n| *n > 0),
            "the walk {kind} points: {seen:?}"
        );
    }

    // The counter's figures: each gift's stock, hold and handed-over count,
    // each redemption's status, folded here from their streams; the same
    // from the live generation (folded a few events at a time) and from a
    // rebuild (the whole walk in one batch: a gift's many events, and
    // redemptions placed and finished, together).
    let mut gifts: std::collections::BTreeMap<String, (u32, u32, u32)> = Default::default();
    let mut redemptions: std::collections::BTreeMap<String, &str> = Default::default();
    for event in &events {
        if let Some(id) = event.stream_id.strip_prefix("gift-") {
            use domain::points::GiftEvent::*;
            let gift = gifts.entry(id.to_string()).or_default();
            match serde_json::from_str(event.payload.get()).unwrap() {
                GiftOffered { stock, .. } => *gift = (stock, 0, 0),
                GiftStockAdded { stock, .. } | GiftStockCorrected { stock, .. } => gift.0 = stock,
                GiftStockHeld { stock, held, .. } | GiftStockReleased { stock, held, .. } => {
                    (gift.0, gift.1) = (stock, held)
                }
                GiftHandedOver {
                    stock,
                    held,
                    quantity,
                    ..
                } => *gift = (stock, held, gift.2 + quantity),
            }
        }
        if let Some(id) = event.stream_id.strip_prefix("redemption-") {
            use domain::points::RedemptionEvent::*;
            let status = match serde_json::from_str(event.payload.get()).unwrap() {
                RedemptionPlaced(_) => "PLACED",
                RedemptionCompleted { .. } => "COMPLETED",
                RedemptionCancelled { .. } => "CANCELLED",
                RedemptionReleased { .. } => "RELEASED",
            };
            redemptions.insert(id.to_string(), status);
        }
    }
    assert!(
        ["PLACED", "COMPLETED", "CANCELLED"]
            .iter()
            .all(|status| redemptions.values().any(|s| s == status)),
        "the walk places, completes and cancels: {redemptions:?}"
    );
    let counter_figures = || async {
        let data = app
            .ok(
                Some(&f.admin),
                "query($c: UUID!, $at: Int) {
                    gifts(communityId: $c, atLeast: $at) { giftId stock held handedOver }
                    redemptions(communityId: $c, first: 100, atLeast: $at) {
                        nodes { redemptionId status finishedAt } } }",
                json!({"c": f.community, "at": head}),
            )
            .await;
        let gifts: std::collections::BTreeMap<String, (u32, u32, u32)> = data["gifts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                let n = |field: &str| g[field].as_u64().unwrap() as u32;
                let id = g["giftId"].as_str().unwrap().to_string();
                (id, (n("stock"), n("held"), n("handedOver")))
            })
            .collect();
        let nodes = data["redemptions"]["nodes"].as_array().unwrap().clone();
        for node in &nodes {
            assert_eq!(
                node["finishedAt"].is_null(),
                node["status"] == "PLACED",
                "{node}"
            );
        }
        let redemptions: std::collections::BTreeMap<String, String> = nodes
            .iter()
            .map(|r| {
                let id = r["redemptionId"].as_str().unwrap().to_string();
                (id, r["status"].as_str().unwrap().to_string())
            })
            .collect();
        (gifts, redemptions)
    };
    let folded_here = (
        gifts,
        redemptions
            .into_iter()
            .map(|(id, status)| (id, status.to_string()))
            .collect(),
    );
    assert_eq!(counter_figures().await, folded_here, "live");
    let runner =
        projections::ProjectionRunner::new(app.store.clone(), projections::RunnerConfig::default());
    runner
        .rebuild(&projections::points::PointsProjection)
        .await
        .unwrap();
    assert_eq!(counter_figures().await, folded_here, "rebuilt");
    // The rebuild folded every wallet's grants and spendings in one batch,
    // the spending wallets' lots read together before it: the same lots.
    for (resident, wallet) in &expected {
        let shown = app.wallet(&f.admin, f.community, *resident, head).await;
        assert_eq!(
            shown["expiring"],
            json!(wallet.expiring()),
            "rebuilt: {resident}: {shown}"
        );
    }

    // While a generation folded before lots were kept serves (it is being
    // rebuilt), `expiring` is the wallet's stream folded.
    let reading = projections::generation::reading_schema(projections::points::NAME);
    app.db
        .client()
        .await
        .batch_execute(&format!("DROP VIEW {reading}.wallet_lots"))
        .await
        .unwrap();
    for (resident, wallet) in &expected {
        let shown = app.wallet(&f.admin, f.community, *resident, head).await;
        assert_eq!(
            shown["expiring"],
            json!(wallet.expiring()),
            "{resident}: {shown}"
        );
    }
}
