//! cqrs-es aggregates run on the store unchanged: events, snapshots,
//! optimistic concurrency, and state as of a past position.

use std::collections::HashMap;
use std::sync::Arc;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, DomainEvent, EventStore as _};
use serde::{Deserialize, Serialize};
use store::{aggregate_id, CqrsRepository, EventStore};
use tokio::sync::Barrier;

use crate::helpers::*;

/// A volunteer's logged hours: small, but with a rule in `handle`.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct VolunteerHours {
    total_hours: i64,
    entries: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
enum VolunteerEvent {
    HoursLogged { hours: i64 },
}

impl DomainEvent for VolunteerEvent {
    fn event_type(&self) -> String {
        "HoursLogged".to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug)]
struct VolunteerError(String);

impl std::fmt::Display for VolunteerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for VolunteerError {}

impl Aggregate for VolunteerHours {
    const TYPE: &'static str = "VolunteerHours";
    type Command = i64;
    type Event = VolunteerEvent;
    type Error = VolunteerError;
    type Services = ();

    async fn handle(
        &mut self,
        hours: i64,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), VolunteerError> {
        if !(1..=12).contains(&hours) {
            return Err(VolunteerError(format!("{hours} hours is not 1 to 12")));
        }
        if self.total_hours + hours > HOURS_MAX {
            return Err(VolunteerError(format!(
                "{} hours logged already; {hours} more is over {HOURS_MAX}",
                self.total_hours
            )));
        }
        sink.write(VolunteerEvent::HoursLogged { hours }, self)
            .await;
        Ok(())
    }

    fn apply(&mut self, event: VolunteerEvent) {
        let VolunteerEvent::HoursLogged { hours } = event;
        self.total_hours += hours;
        self.entries += 1;
    }
}

/// The hours a volunteer logs at most, in all.
const HOURS_MAX: i64 = 200;

type Framework = store::cqrs::StoreCqrs<VolunteerHours>;

/// The embedder's one call: a framework on the store.
fn framework(store: &EventStore, snapshot_size: Option<usize>) -> Framework {
    store::cqrs::cqrs_framework(store.clone(), vec![], (), snapshot_size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_run_on_the_store_with_snapshots() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    let id = aggregate_id(community, &stream("volunteer-1"));
    let cqrs = framework(&store, Some(3));
    for hours in 1..=10 {
        let metadata = HashMap::from([("actor_role".to_string(), "grid_worker".to_string())]);
        cqrs.execute_with_metadata(&id, hours, metadata)
            .await
            .unwrap();
    }
    let refused = cqrs.execute(&id, 13).await.unwrap_err();
    assert!(matches!(refused, AggregateError::UserError(_)), "{refused}");

    // A snapshot holds exactly the events up to its version.
    let snapshot = store
        .load_snapshot(community, "volunteer-1")
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(snapshot.stream_version, 9);
    let state: VolunteerHours = serde_json::from_value(snapshot.state).unwrap();
    assert_eq!(
        state,
        VolunteerHours {
            total_hours: 45,
            entries: 9
        }
    );

    // Loading through a snapshot and through the events agree.
    let with_snapshot = PersistedEventStore::<_, VolunteerHours>::new_snapshot_store(
        CqrsRepository::with_snapshots(store.clone(), 3),
        3,
    );
    let from_events = PersistedEventStore::<_, VolunteerHours>::new_event_store(
        CqrsRepository::new(store.clone()),
    );
    let a = with_snapshot.load_aggregate(&id).await.unwrap();
    let b = from_events.load_aggregate(&id).await.unwrap();
    assert_eq!(
        a.aggregate,
        VolunteerHours {
            total_hours: 55,
            entries: 10
        }
    );
    assert_eq!(a.aggregate, b.aggregate);

    let events = read_all(&store, community).await;
    assert_eq!(events.len(), 10);
    assert_eq!(events[0].event_type, "HoursLogged");
    assert_eq!(events[0].stream_type, "VolunteerHours");
    assert_eq!(
        events[0].metadata.get("actor_role").map(String::as_str),
        Some("grid_worker")
    );

    // State as of a past position folds only what was there then.
    let (past, version) = store
        .aggregate_as_of::<VolunteerHours>(community, "volunteer-1", 4)
        .await
        .unwrap();
    assert_eq!(
        (past, version),
        (
            VolunteerHours {
                total_hours: 10,
                entries: 4
            },
            4
        )
    );
    let (before, version) = store
        .aggregate_as_of::<VolunteerHours>(community, "volunteer-1", 0)
        .await
        .unwrap();
    assert_eq!((before, version), (VolunteerHours::default(), 0));
    let at_time = store
        .position_at(community, events[6].recorded_at)
        .await
        .unwrap();
    assert!(at_time >= 7, "every event recorded by then is included");
    assert_chain_intact(&store, community).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_on_one_aggregate_conflict_instead_of_overwriting() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    let id = aggregate_id(community, &stream("volunteer-2"));
    let cqrs = Arc::new(framework(&store, None));
    let barrier = Arc::new(Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let cqrs = cqrs.clone();
            let barrier = barrier.clone();
            let id = id.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                cqrs.execute(&id, 2).await
            })
        })
        .collect();
    let mut committed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => committed += 1,
            Err(AggregateError::AggregateConflict) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(committed >= 1);
    let state = PersistedEventStore::<_, VolunteerHours>::new_event_store(CqrsRepository::new(
        store.clone(),
    ))
    .load_aggregate(&id)
    .await
    .unwrap();
    assert_eq!(
        state.aggregate.entries, committed,
        "only committed commands count"
    );
    assert_eq!(db.event_count().await, committed);
}

/// Two processes (two stores on one database) take commands on the same
/// aggregates at once, each loading the streams it wrote from memory: a
/// stream the other process wrote since is never written on (the append
/// conflicts and the command is retried on a fresh load), the cap `handle`
/// enforces holds exactly, and once all is announced each process loads
/// every stream as the log holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_decide_on_the_same_aggregates_loaded_from_memory() {
    let db = TestDb::new().await;
    let processes = [db.store().await, db.store().await];
    for store in &processes {
        listening(store).await;
    }
    let community = community(&processes[0]).await;
    // Watched from before the first command: a watch hears what is
    // announced after it is made.
    let mut heads: Vec<_> = processes.iter().map(|s| s.head_watch(community)).collect();

    // One process fills an aggregate up to four hours short of the cap,
    // the other logs those four: once that is announced, the first decides
    // on it and refuses, rather than deciding on what it wrote itself.
    let solo = aggregate_id(community, &stream("volunteer-solo"));
    let (here, there) = (
        framework(&processes[0], None),
        framework(&processes[1], None),
    );
    for _ in 0..HOURS_MAX / 4 - 1 {
        here.execute(&solo, 4).await.expect("under the cap");
    }
    there.execute(&solo, 4).await.expect("up to the cap");
    let head = processes[1].head(community).await.unwrap().position;
    announced(&mut heads[0], head).await;
    let refused = here.execute(&solo, 4).await.unwrap_err();
    assert!(
        matches!(refused, AggregateError::UserError(_)),
        "decided on the other process's commit: {refused}"
    );
    let solo_events = HOURS_MAX / 4;

    let names: Vec<String> = (0..4).map(|n| format!("volunteer-{n}")).collect();
    let ids: Arc<Vec<String>> = Arc::new(
        names
            .iter()
            .map(|name| aggregate_id(community, &stream(name)))
            .collect(),
    );
    let hours = 4;
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let cqrs = Arc::new(framework(&processes[task % 2], None));
            let ids = ids.clone();
            tokio::spawn(async move {
                let mut landed = vec![0_i64; ids.len()];
                let mut full = vec![false; ids.len()];
                let mut attempts = 0;
                while full.iter().any(|f| !f) {
                    attempts += 1;
                    assert!(attempts < 20_000, "task {task} does not get through");
                    let at = (task + attempts) % ids.len();
                    if full[at] {
                        continue;
                    }
                    match cqrs.execute(&ids[at], hours).await {
                        Ok(()) => landed[at] += 1,
                        Err(AggregateError::AggregateConflict) => {}
                        Err(AggregateError::UserError(_)) => full[at] = true,
                        Err(other) => panic!("unexpected {other}"),
                    }
                }
                landed
            })
        })
        .collect();
    let mut landed = vec![0_i64; ids.len()];
    for task in tasks {
        for (sum, n) in landed.iter_mut().zip(task.await.unwrap()) {
            *sum += n;
        }
    }
    assert_eq!(
        landed,
        vec![HOURS_MAX / hours; ids.len()],
        "commands landed"
    );
    let head = processes[0].head(community).await.unwrap().position;
    assert_eq!(head, solo_events + ids.len() as i64 * HOURS_MAX / hours);
    for (store, watch) in processes.iter().zip(&mut heads) {
        announced(watch, head).await;
        for name in &names {
            let loaded = store.read_whole_stream(community, name, 1).await.unwrap();
            let logged = store.read_stream(community, name, 1, 1_000).await.unwrap();
            let versions = |events: &[store::RecordedEvent]| -> Vec<(i64, i64)> {
                events
                    .iter()
                    .map(|e| (e.position, e.stream_version))
                    .collect()
            };
            assert_eq!(versions(&loaded), versions(&logged), "{name}");
            assert_eq!(logged.len() as i64, HOURS_MAX / hours, "{name}");
        }
        let from_memory = store
            .stats()
            .kept_stream_reads_total
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(from_memory > 0, "some loads came from memory");
    }
    assert_chain_intact(&processes[0], community).await;
}

#[test]
fn aggregate_ids_name_their_community() {
    let community = store::CommunityId::random();
    let id = aggregate_id(community, &stream("report-1"));
    let (parsed_community, parsed_stream) = store::parse_aggregate_id(&id).unwrap();
    assert_eq!(
        (parsed_community, parsed_stream.as_str()),
        (community, "report-1")
    );
    for bad in [
        "",
        "report-1",
        "not-a-uuid/report-1",
        &format!("{community}/"),
        &format!("{community}/with space"),
    ] {
        let error = store::parse_aggregate_id(bad).unwrap_err().to_string();
        assert!(
            error.contains("<community uuid>/<stream id>"),
            "{bad:?}: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedder_connects_from_a_url_and_gets_a_clear_error_for_a_bad_aggregate_id() {
    let db = TestDb::new().await;
    let store = EventStore::connect_url(&db.url(), store::StoreConfig::default())
        .await
        .expect("a URL connects");
    let community = community(&store).await;
    let cqrs = framework(&store, None);
    let id = aggregate_id(community, &stream("volunteer-7"));
    cqrs.execute(&id, 2).await.expect("a command on a good id");
    assert_eq!(db.event_count().await, 1);
    let refused = cqrs.execute("volunteer-7", 2).await.unwrap_err();
    assert!(
        refused.to_string().contains("<community uuid>/<stream id>"),
        "{refused}"
    );
    assert_eq!(db.event_count().await, 1, "nothing stored for a bad id");
    let bad_url = EventStore::connect_url("not a url at all", store::StoreConfig::default()).await;
    assert!(
        matches!(bad_url, Err(store::StoreError::Invalid { .. })),
        "{:?}",
        bad_url.err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_runs_its_lifecycle_on_the_store() {
    use domain::report::{Place, Report, ReportCommand, ReportState, Reporter, SubmitReport};
    use domain::values::{
        Actor, AttachedPhotos, CategoryCode, ContentHash, GridId, PersonId, Photos, ReportId, Role,
        SiteCode, SiteId, Timestamp,
    };
    use uuid::Uuid;

    let db = TestDb::new().await;
    let store = db.store().await;
    let community = community(&store).await;
    let report = ReportId(Uuid::new_v4());
    let id = aggregate_id(community, &stream(&format!("report-{report}")));
    let cqrs = CqrsFramework::new(
        PersistedEventStore::<_, Report>::new_event_store(CqrsRepository::new(store.clone())),
        vec![],
        (),
    );
    let now = Timestamp::from_micros(1_800_000_000_000_000);
    let resident = Actor {
        person: PersonId(Uuid::new_v4()),
        role: Role::Citizen,
    };
    let admin = Actor {
        person: PersonId(Uuid::new_v4()),
        role: Role::Admin,
    };
    let grid = GridId(Uuid::new_v4());
    let text = ContentHash::parse(&"ab".repeat(32)).unwrap();
    let submit = SubmitReport {
        report,
        place: Place::Site {
            site: SiteId(Uuid::new_v4()),
            code: SiteCode::parse("RB-0042").unwrap(),
        },
        grid,
        category: CategoryCode::parse("OUTFALL").unwrap(),
        text: text.clone(),
        photos: Some(AttachedPhotos::new(
            text.clone(),
            &Photos::parse(&["https://img.example/outfall.jpg"]).unwrap(),
        )),
        reporter: Reporter::Resident(resident.person),
        first_response_due: now.plus_hours(4),
        resolution_due: now.plus_hours(72),
        department: None,
        likely_duplicate_of: None,
        at: now,
    };
    cqrs.execute(&id, ReportCommand::Submit(Box::new(submit)))
        .await
        .unwrap();
    cqrs.execute(
        &id,
        ReportCommand::Accept {
            by: admin,
            at: now.plus_hours(1),
        },
    )
    .await
    .unwrap();
    let refused = cqrs
        .execute(
            &id,
            ReportCommand::Accept {
                by: admin,
                at: now.plus_hours(2),
            },
        )
        .await;
    assert!(
        matches!(refused, Err(AggregateError::UserError(_))),
        "{refused:?}"
    );

    let (state, version) = store
        .aggregate_as_of::<Report>(community, &format!("report-{report}"), i64::MAX)
        .await
        .unwrap();
    assert_eq!((state.state, version), (ReportState::Accepted, 2));
    let events = read_all(&store, community).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["ReportSubmitted", "ReportAccepted"]);
    assert_chain_intact(&store, community).await;
}
