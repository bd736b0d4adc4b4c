//! A running civic-ledger for a test: its own database, the real HTTP
//! server on a free port (in this process, so the clock, the code sender
//! and the deadline watcher can be controlled), and a set-up community.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::clock::ManualClock;
use app::deadlines::DeadlineWatcher;
use app::points::sweeper::PointsSweeper;
use app::points::PointsDesk;
use app::secrets::Secrets;
use app::signup::CodeSender;
use async_trait::async_trait;
use civic_ledger::auth::{TokenRequest, Tokens};
use civic_ledger::system::{Application, Settings};
use domain::values::{Role, Timestamp};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use store::EventStore;
use uuid::Uuid;

use crate::helpers::TestDb;

/// 2026-11-02 00:00 UTC (08:00 in Asia/Shanghai).
pub const START_MICROS: i64 = 1_793_577_600_000_000;

/// Keeps the codes it was asked to send.
#[derive(Default)]
pub struct CapturedCodes(Mutex<Vec<(String, String)>>);

#[async_trait]
impl CodeSender for CapturedCodes {
    async fn send(&self, phone: &str, code: &str) -> Result<(), String> {
        self.0
            .lock()
            .unwrap()
            .push((phone.to_string(), code.to_string()));
        Ok(())
    }
}

impl CapturedCodes {
    pub fn last_for(&self, phone: &str) -> String {
        let codes = self.0.lock().unwrap();
        let (_, code) = codes
            .iter()
            .rev()
            .find(|(to, _)| to == phone)
            .expect("a code was sent to this phone");
        code.clone()
    }
}

pub struct TestApp {
    pub db: TestDb,
    pub url: String,
    pub ws_url: String,
    pub http: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub codes: Arc<CapturedCodes>,
    pub tokens: Tokens,
    pub token_key: Vec<u8>,
    pub store: EventStore,
    pub watcher: DeadlineWatcher,
    pub points: PointsDesk,
    pub sweeper: PointsSweeper,
    pub sealer: app::audit::seals::Sealer,
    /// The server's reads, with the answers it keeps.
    pub reads: projections::ReadCache,
    secrets: Secrets,
    handle: actix_web::dev::ServerHandle,
}

/// Another server process on the test's database.
pub struct Process {
    pub url: String,
    pub reads: projections::ReadCache,
    handle: actix_web::dev::ServerHandle,
}

impl Process {
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

pub struct Options {
    pub anonymous_burst: u32,
    pub rates: app::ratelimit::SubmissionRates,
    /// Trusted reverse proxies (the tests' requests come from 127.0.0.1).
    pub trusted_proxies: &'static str,
    pub runner: projections::RunnerConfig,
    /// Whether the server follows the log (read models, earning process).
    pub run_projections: bool,
    pub run_earning: bool,
    pub read_cache: projections::CacheLimits,
    /// A demo server: sign-up codes shown on the pages, not sent.
    pub demo: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            anonymous_burst: 100,
            rates: app::ratelimit::SubmissionRates {
                anonymous_burst: 100,
                anonymous_community_burst: 1_000,
                member_burst: 1_000,
                ..Default::default()
            },
            trusted_proxies: "",
            runner: projections::RunnerConfig::default(),
            run_projections: true,
            run_earning: true,
            read_cache: projections::CacheLimits::default(),
            demo: false,
        }
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(Options::default()).await
    }

    /// Without the earning process: nothing appends behind the test's back.
    pub async fn spawn_quiet() -> TestApp {
        TestApp::spawn_with(Options {
            run_earning: false,
            ..Options::default()
        })
        .await
    }

    pub async fn spawn_with(options: Options) -> TestApp {
        // Server logs show with a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn,civic_ledger=info")
            .with_test_writer()
            .try_init();
        let db = TestDb::new().await;
        let secrets = Secrets::random();
        let clock = Arc::new(ManualClock::new(Timestamp::from_micros(START_MICROS)));
        let codes = Arc::new(CapturedCodes::default());
        let mut settings = Settings::new("127.0.0.1:0", secrets.clone());
        settings.clock = clock.clone();
        settings.code_sender = codes.clone();
        settings.deadline_interval = None;
        settings.points_sweep_interval = None;
        settings.seal_interval = None;
        settings.run_projections = options.run_projections;
        settings.run_earning = options.run_earning;
        settings.runner = options.runner;
        settings.read_cache = options.read_cache;
        settings.submission_rates = app::ratelimit::SubmissionRates {
            anonymous_burst: options.anonymous_burst,
            ..options.rates
        };
        settings.trusted_proxies =
            civic_ledger::clients::TrustedProxies::parse(options.trusted_proxies).unwrap();
        settings.store.pool_size_max = 8;
        if options.demo {
            settings.demo_codes = Some(Default::default());
        }
        let application = Application::build(&db.config, settings)
            .await
            .expect("the application starts");
        let address = application.address;
        let handle = application.handle();
        let store = application.store.clone();
        let watcher = DeadlineWatcher::new(application.app.commands.clone());
        let points = application.app.points.clone();
        let sweeper = PointsSweeper::new(points.clone());
        let sealer = application.app.sealer.clone();
        let reads = application.app.reads.clone();
        tokio::spawn(application.run_until_stopped());
        TestApp {
            db,
            url: format!("http://{address}/graphql"),
            ws_url: format!("ws://{address}/graphql"),
            http: reqwest::Client::new(),
            clock,
            codes,
            tokens: Tokens::new(&secrets.token_key),
            token_key: secrets.token_key.clone(),
            store,
            watcher,
            points,
            sweeper,
            sealer,
            reads,
            secrets,
            handle,
        }
    }

    /// A second server on the same database, as a second instance behind a
    /// load balancer is: the same secrets and clock, and no background
    /// processes, so that what it writes this process learns only from the
    /// database.
    pub async fn second_process(&self) -> Process {
        let mut settings = Settings::new("127.0.0.1:0", self.secrets.clone());
        settings.clock = self.clock.clone();
        settings.deadline_interval = None;
        settings.points_sweep_interval = None;
        settings.seal_interval = None;
        settings.run_projections = false;
        settings.run_earning = false;
        settings.store.pool_size_max = 4;
        let application = Application::build(&self.db.config, settings)
            .await
            .expect("the second process starts");
        let process = Process {
            url: format!("http://{}/graphql", application.address),
            reads: application.app.reads.clone(),
            handle: application.handle(),
        };
        tokio::spawn(application.run_until_stopped());
        process
    }

    pub fn token(&self, community: Uuid, subject: Uuid, role: Role) -> String {
        self.tokens
            .issue(TokenRequest {
                subject,
                role,
                community,
                grids: Vec::new(),
                centre: None,
                lifetime: Duration::from_secs(3600),
            })
            .expect("a token")
    }

    /// Sends one GraphQL request; returns the whole response body.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        self.gql_with(token, query, variables, None).await
    }

    /// The data of a request to `process` that must succeed.
    pub async fn ok_at(
        &self,
        process: &Process,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> Value {
        let response = self.post(&process.url, token, query, variables, None).await;
        assert!(
            response.get("errors").is_none(),
            "{query} failed: {response}"
        );
        response["data"].clone()
    }

    pub async fn gql_with(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
        idempotency_key: Option<&str>,
    ) -> Value {
        self.post(&self.url, token, query, variables, idempotency_key)
            .await
    }

    async fn post(
        &self,
        url: &str,
        token: Option<&str>,
        query: &str,
        variables: Value,
        idempotency_key: Option<&str>,
    ) -> Value {
        let mut request = self
            .http
            .post(url)
            .json(&json!({"query": query, "variables": variables}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("the server answers");
        response.json().await.expect("a JSON body")
    }

    /// The data of a request that must succeed.
    pub async fn ok(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let response = self.gql(token, query, variables).await;
        assert!(
            response.get("errors").is_none(),
            "{query} failed: {response}"
        );
        response["data"].clone()
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }

    /// The position of the community's last event.
    pub async fn head(&self, community: Uuid) -> i64 {
        self.store
            .head(store::CommunityId::new(community))
            .await
            .unwrap()
            .position
    }
}

/// The code of the first error, or "OK" when there is none.
/// A deterministic walk's dice: `next(n)` is in `0..n`, the same sequence
/// for the same seed (a linear congruential generator's high bits).
pub fn seeded(mut seed: u64) -> impl FnMut(usize) -> usize {
    move |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) % n as u64) as usize
    }
}

pub fn code_of(response: &Value) -> String {
    match response["errors"].get(0) {
        Some(error) => error["extensions"]["code"]
            .as_str()
            .unwrap_or("NO CODE")
            .to_string(),
        None => "OK".to_string(),
    }
}

/// A community set up through the API, with a token per role.
pub struct Fixture {
    pub community: Uuid,
    pub admin: String,
    pub auditor: String,
    pub inspector: String,
    pub resident: String,
    pub resident_id: Uuid,
    pub other_resident: String,
    /// A worker of grid 1 (level 1, so also of grid 1a inside it).
    pub worker: String,
    pub worker_id: Uuid,
    /// A worker of grid 2 only.
    pub other_worker: String,
    pub other_worker_id: Uuid,
    pub department: String,
    pub department_id: Uuid,
    pub other_department: String,
    pub grid1: Uuid,
    pub grid1a: Uuid,
    pub grid2: Uuid,
    /// An admin of another community.
    pub foreign_admin: String,
}

pub const ASSIGN_STAFF: &str =
    "mutation($c: UUID!, $s: StaffInput!) { assignStaff(communityId: $c, staff: $s) { position } }";

pub const SETUP_GRID: &str = "mutation($c: UUID!, $name: String!, $parent: UUID) {
    addGrid(communityId: $c, name: $name, parentId: $parent) { id position } }";
pub const SETUP_SITE: &str = "mutation($c: UUID!, $site: SiteInput!) {
    addSite(communityId: $c, site: $site) { id position } }";

impl TestApp {
    pub async fn fixture(&self) -> Fixture {
        let community = Uuid::new_v4();
        let admin = self.token(community, Uuid::new_v4(), Role::Admin);
        let a = Some(admin.as_str());
        self.ok(
            a,
            "mutation($c: UUID!) { registerCommunity(communityId: $c, name: \"长流河 Riverside\") { position } }",
            json!({"c": community}),
        )
        .await;
        let grid = |name: &str, parent: Option<Uuid>| json!({"c": community, "name": name, "parent": parent});
        let id = |data: &Value, field: &str| -> Uuid {
            data[field]["id"].as_str().unwrap().parse().unwrap()
        };
        let grid1 = id(
            &self.ok(a, SETUP_GRID, grid("Grid 1", None)).await,
            "addGrid",
        );
        let grid1a = id(
            &self.ok(a, SETUP_GRID, grid("Grid 1a", Some(grid1))).await,
            "addGrid",
        );
        let grid2 = id(
            &self.ok(a, SETUP_GRID, grid("Grid 2", None)).await,
            "addGrid",
        );
        let sites = [
            ("RB-01", "RIVER_BANK", grid1a, 30_878_000, 104_250_000),
            ("MS-01", "MICRO_SPACE", grid1, 30_879_000, 104_251_000),
            ("RB-02", "RIVER_BANK", grid2, 30_890_000, 104_260_000),
        ];
        for (code, kind, grid, latitude, longitude) in sites {
            let site = json!({"name": format!("Site {code}"), "kind": kind, "code": code,
                "gridId": grid, "latitudeE6": latitude, "longitudeE6": longitude});
            self.ok(a, SETUP_SITE, json!({"c": community, "site": site}))
                .await;
        }
        let department = |name: &str| json!({"c": community, "name": name});
        let add_department = "mutation($c: UUID!, $name: String!) { addDepartment(communityId: $c, name: $name) { id } }";
        let water = id(
            &self.ok(a, add_department, department("Water")).await,
            "addDepartment",
        );
        let city = id(
            &self.ok(a, add_department, department("City")).await,
            "addDepartment",
        );
        let category = "mutation($c: UUID!, $k: CategoryInput!) { defineCategory(communityId: $c, category: $k) { id } }";
        for (code, first, resolution, dept) in [
            ("FLOATING-GARBAGE", 4, 48, None),
            ("SEWAGE-OUTFALL", 2, 72, Some(water)),
        ] {
            let k = json!({"code": code, "name": code, "firstResponseHours": first,
                "resolutionHours": resolution, "departmentId": dept, "acceptedReportPoints": "5"});
            self.ok(a, category, json!({"c": community, "k": k})).await;
        }
        let (worker_id, other_worker_id) = (Uuid::new_v4(), Uuid::new_v4());
        let (department_id, other_department_id, inspector_id) =
            (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let staff = ASSIGN_STAFF;
        for s in [
            json!({"personId": worker_id, "role": "GRID_WORKER", "gridIds": [grid1]}),
            json!({"personId": other_worker_id, "role": "GRID_WORKER", "gridIds": [grid2]}),
            json!({"personId": department_id, "role": "DEPARTMENT", "departmentId": water}),
            json!({"personId": other_department_id, "role": "DEPARTMENT", "departmentId": city}),
            json!({"personId": inspector_id, "role": "INSPECTOR"}),
        ] {
            self.ok(a, staff, json!({"c": community, "s": s})).await;
        }
        let resident_id = Uuid::new_v4();
        Fixture {
            community,
            auditor: self.token(community, Uuid::new_v4(), Role::Auditor),
            inspector: self.token(community, inspector_id, Role::Inspector),
            resident: self.token(community, resident_id, Role::Citizen),
            resident_id,
            other_resident: self.token(community, Uuid::new_v4(), Role::Citizen),
            worker: self.token(community, worker_id, Role::GridWorker),
            worker_id,
            other_worker: self.token(community, other_worker_id, Role::GridWorker),
            other_worker_id,
            department: self.token(community, department_id, Role::Department),
            department_id: water,
            other_department: self.token(community, other_department_id, Role::Department),
            grid1,
            grid1a,
            grid2,
            foreign_admin: self.token(Uuid::new_v4(), Uuid::new_v4(), Role::Admin),
            admin,
        }
    }
}

pub const SUBMIT: &str = "mutation($c: UUID!, $r: ReportInput!) {
    submitReport(communityId: $c, report: $r) { reportId position claimSecret likelyDuplicateOf } }";

/// Submits a report as `token` at a site; returns (report id, position).
pub async fn submit(
    app: &TestApp,
    fixture: &Fixture,
    token: &str,
    site: &str,
    category: &str,
) -> (Uuid, i64) {
    let report = json!({"siteCode": site, "category": category, "text": "河面漂浮垃圾很多",
        "photos": ["https://img.example/1.jpg"]});
    let data = app
        .ok(
            Some(token),
            SUBMIT,
            json!({"c": fixture.community, "r": report}),
        )
        .await;
    let payload = &data["submitReport"];
    (
        payload["reportId"].as_str().unwrap().parse().unwrap(),
        payload["position"].as_i64().unwrap(),
    )
}

/// Runs a report mutation `name(communityId, reportId, …extra)` as `token`.
/// The mutation `name(arguments)` on a report (`mutation` as
/// `"name"` or `"name(arguments)"`), answering with `selection`.
pub fn report_mutation(mutation: &str, selection: &str) -> String {
    let (name, arguments) = mutation.split_once('(').unwrap_or((mutation, ")"));
    let arguments = arguments.trim_end_matches(')');
    let separator = if arguments.is_empty() { "" } else { ", " };
    format!(
        "mutation($c: UUID!, $r: UUID!) {{ {name}(communityId: $c, reportId: $r{separator}{arguments}) {{ {selection} }} }}"
    )
}

pub async fn act(
    app: &TestApp,
    fixture: &Fixture,
    token: &str,
    mutation: &str,
    report: Uuid,
) -> Value {
    let query = report_mutation(mutation, "position state");
    app.gql(
        Some(token),
        &query,
        json!({"c": fixture.community, "r": report}),
    )
    .await
}

/// Accepts a report as `token`; returns the position it wrote.
pub async fn accept(app: &TestApp, fixture: &Fixture, token: &str, report: Uuid) -> i64 {
    let accepted = act(app, fixture, token, "acceptReport", report).await;
    accepted["data"]["acceptReport"]["position"]
        .as_i64()
        .unwrap_or_else(|| panic!("accepted: {accepted}"))
}

/// A GraphQL subscription over graphql-transport-ws.
pub struct Subscription {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Subscription {
    pub async fn open(app: &TestApp, token: &str, query: &str, variables: Value) -> Subscription {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::Message;
        let mut request = app.ws_url.as_str().into_client_request().unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the WebSocket opens");
        let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
        socket.send(Message::Text(init.to_string())).await.unwrap();
        let mut subscription = Subscription { socket };
        let ack = subscription.next_message().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        let subscribe = json!({"id": "1", "type": "subscribe",
            "payload": {"query": query, "variables": variables}});
        subscription
            .socket
            .send(Message::Text(subscribe.to_string()))
            .await
            .unwrap();
        // graphql-transport-ws does not acknowledge a subscribe; give the
        // server a moment to register it before the test writes.
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        subscription
    }

    /// The next message of any type (`next`, `error`, `complete`).
    pub async fn next_message(&mut self) -> Value {
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.socket.next())
                .await
                .expect("a message within 10 s")
                .expect("the socket is open")
                .expect("a good frame");
            if let Message::Text(text) = message {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    /// The next `next` payload's data.
    pub async fn next(&mut self) -> Value {
        loop {
            let message = self.next_message().await;
            match message["type"].as_str() {
                Some("next") => return message["payload"]["data"].clone(),
                Some("ping") => continue,
                _ => panic!("unexpected message {message}"),
            }
        }
    }
}
