//! Every command, its success and each of its rejections.

use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use uuid::Uuid;

use super::*;
use crate::values::Photos;

type Given = TestFramework<Report>;

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}
fn hash(n: u8) -> ContentHash {
    ContentHash::parse(&format!("{n:02x}").repeat(32)).unwrap()
}
fn at(hours: u32) -> Timestamp {
    Timestamp::from_micros(1_800_000_000_000_000).plus_hours(hours)
}

const REPORT: u128 = 1;
const GRID: u128 = 10;
const RESIDENT: u128 = 100;
const OTHER_RESIDENT: u128 = 101;
const WORKER: u128 = 200;
const OTHER_WORKER: u128 = 201;

fn actor(person: u128, role: Role) -> Actor {
    Actor {
        person: PersonId(id(person)),
        role,
    }
}
fn admin() -> Actor {
    actor(300, Role::Admin)
}
fn worker() -> Actor {
    actor(WORKER, Role::GridWorker)
}
fn resident() -> Actor {
    actor(RESIDENT, Role::Citizen)
}
fn stranger() -> Actor {
    actor(OTHER_RESIDENT, Role::Citizen)
}
fn department_staff() -> Actor {
    actor(400, Role::Department)
}

fn photos(content: u8, urls: &[&str]) -> AttachedPhotos {
    AttachedPhotos::new(hash(content), &Photos::parse(urls).unwrap())
}

fn submission(reporter: Reporter) -> Box<SubmitReport> {
    Box::new(SubmitReport {
        report: ReportId(id(REPORT)),
        place: Place::Site {
            site: SiteId(id(20)),
            code: SiteCode::parse("RB-0042").unwrap(),
        },
        grid: GridId(id(GRID)),
        category: CategoryCode::parse("FLOATING-GARBAGE").unwrap(),
        text: hash(1),
        photos: Some(photos(7, &["https://img.example/1.jpg"])),
        reporter,
        first_response_due: at(4),
        resolution_due: at(48),
        department: Some(DepartmentId(id(50))),
        likely_duplicate_of: None,
        at: at(0),
    })
}

fn submitted() -> Vec<ReportEvent> {
    vec![ReportEvent::ReportSubmitted(submission(
        Reporter::Resident(PersonId(id(RESIDENT))),
    ))]
}
fn accepted() -> Vec<ReportEvent> {
    let mut events = submitted();
    events.push(ReportEvent::ReportAccepted {
        by: admin(),
        at: at(1),
    });
    events
}
fn assigned() -> Vec<ReportEvent> {
    let mut events = accepted();
    events.push(ReportEvent::ReportAssigned {
        by: admin(),
        worker: PersonId(id(WORKER)),
        at: at(2),
    });
    events
}
fn in_progress() -> Vec<ReportEvent> {
    let mut events = assigned();
    events.push(ReportEvent::ReportWorkStarted {
        by: worker(),
        at: at(3),
    });
    events
}
fn resolved() -> Vec<ReportEvent> {
    let mut events = in_progress();
    events.push(ReportEvent::ReportResolved {
        by: worker(),
        notes: hash(2),
        photos: Some(photos(8, &["https://img.example/after.jpg"])),
        at: at(5),
    });
    events
}
fn confirmed() -> Vec<ReportEvent> {
    let mut events = resolved();
    events.push(ReportEvent::ReportConfirmed {
        by: resident(),
        at: at(6),
    });
    events
}
fn closed() -> Vec<ReportEvent> {
    let mut events = confirmed();
    events.push(ReportEvent::ReportClosed {
        by: admin(),
        at: at(7),
    });
    events
}

fn illegal(action: &str, state: &str) -> DomainError {
    DomainError::IllegalTransition {
        action: action.into(),
        state: state.into(),
    }
}
fn forbidden(text: &str) -> DomainError {
    DomainError::Forbidden(text.into())
}

#[test]
fn submit() {
    let reporter = Reporter::Resident(PersonId(id(RESIDENT)));
    Given::with(())
        .given_no_previous_events()
        .when(ReportCommand::Submit(submission(reporter.clone())))
        .then_expect_events(submitted());
    Given::with(())
        .given(submitted())
        .when(ReportCommand::Submit(submission(reporter.clone())))
        .then_expect_error(DomainError::AlreadyExists(format!("report {}", id(REPORT))));
    let mut early = submission(reporter.clone());
    early.resolution_due = at(1);
    Given::with(())
        .given_no_previous_events()
        .when(ReportCommand::Submit(early))
        .then_expect_error(DomainError::validation(
            "deadlines",
            "must not be before the submission or each other",
        ));
    let mut itself = submission(reporter);
    itself.likely_duplicate_of = Some(ReportId(id(REPORT)));
    Given::with(())
        .given_no_previous_events()
        .when(ReportCommand::Submit(itself))
        .then_expect_error(DomainError::validation(
            "likely_duplicate_of",
            "a report is no duplicate of itself",
        ));
}

#[test]
fn nothing_but_a_submission_happens_to_a_new_report() {
    Given::with(())
        .given_no_previous_events()
        .when(ReportCommand::Accept {
            by: admin(),
            at: at(1),
        })
        .then_expect_error(illegal("accept", "new"));
    Given::with(())
        .given_no_previous_events()
        .when(ReportCommand::Support {
            resident: PersonId(id(RESIDENT)),
            at: at(1),
        })
        .then_expect_error(illegal("support", "new"));
}

#[test]
fn accept_and_reject() {
    Given::with(())
        .given(submitted())
        .when(ReportCommand::Accept {
            by: worker(),
            at: at(1),
        })
        .then_expect_events(vec![ReportEvent::ReportAccepted {
            by: worker(),
            at: at(1),
        }]);
    Given::with(())
        .given(submitted())
        .when(ReportCommand::Accept {
            by: resident(),
            at: at(1),
        })
        .then_expect_error(forbidden("a Citizen cannot do this"));
    Given::with(())
        .given(accepted())
        .when(ReportCommand::Accept {
            by: admin(),
            at: at(1),
        })
        .then_expect_error(illegal("accept", "accepted"));
    let reason = RejectionReason::DuplicateOf(ReportId(id(9)));
    Given::with(())
        .given(submitted())
        .when(ReportCommand::Reject {
            by: admin(),
            reason: reason.clone(),
            at: at(1),
        })
        .then_expect_events(vec![ReportEvent::ReportRejected {
            by: admin(),
            reason,
            at: at(1),
        }]);
    Given::with(())
        .given(submitted())
        .when(ReportCommand::Reject {
            by: admin(),
            reason: RejectionReason::DuplicateOf(ReportId(id(REPORT))),
            at: at(1),
        })
        .then_expect_error(DomainError::validation(
            "original",
            "a report is no duplicate of itself",
        ));
    Given::with(())
        .given(accepted())
        .when(ReportCommand::Reject {
            by: admin(),
            reason: RejectionReason::Abusive,
            at: at(1),
        })
        .then_expect_error(illegal("reject", "accepted"));
    Given::with(())
        .given(submitted())
        .when(ReportCommand::Reject {
            by: department_staff(),
            reason: RejectionReason::OutOfScope,
            at: at(1),
        })
        .then_expect_error(forbidden("a Department cannot do this"));
}

#[test]
fn assign() {
    let worker_id = PersonId(id(WORKER));
    Given::with(())
        .given(accepted())
        .when(ReportCommand::Assign {
            by: admin(),
            worker: worker_id,
            worker_grids: vec![GridId(id(GRID))],
            at: at(2),
        })
        .then_expect_events(vec![ReportEvent::ReportAssigned {
            by: admin(),
            worker: worker_id,
            at: at(2),
        }]);
    let other = PersonId(id(OTHER_WORKER));
    Given::with(())
        .given(assigned())
        .when(ReportCommand::Assign {
            by: admin(),
            worker: other,
            worker_grids: vec![GridId(id(GRID))],
            at: at(2),
        })
        .then_expect_events(vec![ReportEvent::ReportAssigned {
            by: admin(),
            worker: other,
            at: at(2),
        }]);
    Given::with(())
        .given(accepted())
        .when(ReportCommand::Assign {
            by: admin(),
            worker: worker_id,
            worker_grids: vec![GridId(id(11))],
            at: at(2),
        })
        .then_expect_error(forbidden("the worker is not assigned to the report's grid"));
    Given::with(())
        .given(submitted())
        .when(ReportCommand::Assign {
            by: admin(),
            worker: worker_id,
            worker_grids: vec![GridId(id(GRID))],
            at: at(2),
        })
        .then_expect_error(illegal("assign", "submitted"));
    Given::with(())
        .given(accepted())
        .when(ReportCommand::Assign {
            by: resident(),
            worker: worker_id,
            worker_grids: vec![GridId(id(GRID))],
            at: at(2),
        })
        .then_expect_error(forbidden("a Citizen cannot do this"));
}

#[test]
fn escalate_and_work_as_a_department() {
    let department = DepartmentId(id(50));
    Given::with(())
        .given(assigned())
        .when(ReportCommand::Escalate {
            by: worker(),
            department,
            at: at(3),
        })
        .then_expect_events(vec![ReportEvent::ReportEscalated {
            by: worker(),
            department,
            at: at(3),
        }]);
    Given::with(())
        .given(submitted())
        .when(ReportCommand::Escalate {
            by: admin(),
            department,
            at: at(3),
        })
        .then_expect_error(illegal("escalate", "submitted"));
    Given::with(())
        .given(accepted())
        .when(ReportCommand::Escalate {
            by: stranger(),
            department,
            at: at(3),
        })
        .then_expect_error(forbidden("a Citizen cannot do this"));
    let mut escalated = accepted();
    escalated.push(ReportEvent::ReportEscalated {
        by: admin(),
        department,
        at: at(2),
    });
    Given::with(())
        .given(escalated)
        .when(ReportCommand::StartWork {
            by: department_staff(),
            at: at(3),
        })
        .then_expect_events(vec![ReportEvent::ReportWorkStarted {
            by: department_staff(),
            at: at(3),
        }]);
    // Without an escalation a department has no part in the report.
    Given::with(())
        .given(assigned())
        .when(ReportCommand::StartWork {
            by: department_staff(),
            at: at(3),
        })
        .then_expect_error(forbidden("only whoever handles the report can do this"));
}

#[test]
fn start_work_and_resolve() {
    Given::with(())
        .given(assigned())
        .when(ReportCommand::StartWork {
            by: worker(),
            at: at(3),
        })
        .then_expect_events(vec![ReportEvent::ReportWorkStarted {
            by: worker(),
            at: at(3),
        }]);
    Given::with(())
        .given(assigned())
        .when(ReportCommand::StartWork {
            by: actor(OTHER_WORKER, Role::GridWorker),
            at: at(3),
        })
        .then_expect_error(forbidden("only whoever handles the report can do this"));
    Given::with(())
        .given(accepted())
        .when(ReportCommand::StartWork {
            by: worker(),
            at: at(3),
        })
        .then_expect_error(illegal("start work on", "accepted"));
    let photos = Some(photos(8, &["https://img.example/after.jpg"]));
    Given::with(())
        .given(in_progress())
        .when(ReportCommand::Resolve {
            by: worker(),
            notes: hash(2),
            photos: photos.clone(),
            at: at(5),
        })
        .then_expect_events(vec![ReportEvent::ReportResolved {
            by: worker(),
            notes: hash(2),
            photos: photos.clone(),
            at: at(5),
        }]);
    Given::with(())
        .given(assigned())
        .when(ReportCommand::Resolve {
            by: worker(),
            notes: hash(2),
            photos: photos.clone(),
            at: at(5),
        })
        .then_expect_error(illegal("resolve", "assigned"));
    Given::with(())
        .given(in_progress())
        .when(ReportCommand::Resolve {
            by: resident(),
            notes: hash(2),
            photos,
            at: at(5),
        })
        .then_expect_error(forbidden("only whoever handles the report can do this"));
}

#[test]
fn confirm_reopen_and_close() {
    Given::with(())
        .given(resolved())
        .when(ReportCommand::Confirm {
            by: resident(),
            at: at(6),
        })
        .then_expect_events(vec![ReportEvent::ReportConfirmed {
            by: resident(),
            at: at(6),
        }]);
    let inspector = actor(500, Role::Inspector);
    Given::with(())
        .given(resolved())
        .when(ReportCommand::Confirm {
            by: inspector,
            at: at(6),
        })
        .then_expect_events(vec![ReportEvent::ReportConfirmed {
            by: inspector,
            at: at(6),
        }]);
    Given::with(())
        .given(resolved())
        .when(ReportCommand::Confirm {
            by: stranger(),
            at: at(6),
        })
        .then_expect_error(forbidden("only the reporter or staff can do this"));
    Given::with(())
        .given(in_progress())
        .when(ReportCommand::Confirm {
            by: resident(),
            at: at(6),
        })
        .then_expect_error(illegal("confirm", "in_progress"));
    Given::with(())
        .given(resolved())
        .when(ReportCommand::Reopen {
            by: resident(),
            reason: hash(3),
            at: at(6),
        })
        .then_expect_events(vec![ReportEvent::ReportReopened {
            by: resident(),
            reason: hash(3),
            reopen_count: 1,
            at: at(6),
        }]);
    let mut reopened_once = resolved();
    reopened_once.push(ReportEvent::ReportReopened {
        by: resident(),
        reason: hash(3),
        reopen_count: 1,
        at: at(6),
    });
    reopened_once.push(ReportEvent::ReportResolved {
        by: worker(),
        notes: hash(4),
        photos: None,
        at: at(7),
    });
    Given::with(())
        .given(reopened_once)
        .when(ReportCommand::Reopen {
            by: admin(),
            reason: hash(5),
            at: at(8),
        })
        .then_expect_events(vec![ReportEvent::ReportReopened {
            by: admin(),
            reason: hash(5),
            reopen_count: 2,
            at: at(8),
        }]);
    Given::with(())
        .given(accepted())
        .when(ReportCommand::Reopen {
            by: resident(),
            reason: hash(3),
            at: at(6),
        })
        .then_expect_error(illegal("reopen", "accepted"));
    Given::with(())
        .given(confirmed())
        .when(ReportCommand::Close {
            by: admin(),
            at: at(7),
        })
        .then_expect_events(vec![ReportEvent::ReportClosed {
            by: admin(),
            at: at(7),
        }]);
    Given::with(())
        .given(resolved())
        .when(ReportCommand::Close {
            by: admin(),
            at: at(7),
        })
        .then_expect_error(illegal("close", "resolved"));
    Given::with(())
        .given(confirmed())
        .when(ReportCommand::Close {
            by: resident(),
            at: at(7),
        })
        .then_expect_error(forbidden("a Citizen cannot do this"));
}

#[test]
fn comment() {
    Given::with(())
        .given(accepted())
        .when(ReportCommand::Comment {
            by: resident(),
            text: hash(6),
            at: at(2),
        })
        .then_expect_events(vec![ReportEvent::ReportCommented {
            by: resident(),
            text: hash(6),
            at: at(2),
        }]);
    Given::with(())
        .given(accepted())
        .when(ReportCommand::Comment {
            by: stranger(),
            text: hash(6),
            at: at(2),
        })
        .then_expect_error(forbidden("only the reporter or staff can do this"));
    Given::with(())
        .given(closed())
        .when(ReportCommand::Comment {
            by: admin(),
            text: hash(6),
            at: at(9),
        })
        .then_expect_error(illegal("comment on", "closed"));
}

#[test]
fn claim_an_anonymous_report() {
    let anonymous = Reporter::Anonymous {
        client: hash(7),
        claim_secret_hash: hash(8),
    };
    let given = vec![ReportEvent::ReportSubmitted(submission(anonymous))];
    let resident_id = PersonId(id(RESIDENT));
    Given::with(())
        .given(given.clone())
        .when(ReportCommand::Claim {
            resident: resident_id,
            secret_hash: hash(8),
            at: at(1),
        })
        .then_expect_events(vec![ReportEvent::ReportClaimed {
            resident: resident_id,
            at: at(1),
        }]);
    Given::with(())
        .given(given)
        .when(ReportCommand::Claim {
            resident: resident_id,
            secret_hash: hash(9),
            at: at(1),
        })
        .then_expect_error(forbidden("the claim secret does not match"));
    Given::with(())
        .given(submitted())
        .when(ReportCommand::Claim {
            resident: resident_id,
            secret_hash: hash(8),
            at: at(1),
        })
        .then_expect_error(DomainError::validation("report", "already has a reporter"));
}

#[test]
fn support_instead_of_a_second_report() {
    let neighbour = PersonId(id(OTHER_RESIDENT));
    Given::with(())
        .given(accepted())
        .when(ReportCommand::Support {
            resident: neighbour,
            at: at(2),
        })
        .then_expect_events(vec![ReportEvent::ReportSupported {
            resident: neighbour,
            supporters: 1,
            at: at(2),
        }]);
    let mut supported = accepted();
    supported.push(ReportEvent::ReportSupported {
        resident: neighbour,
        supporters: 1,
        at: at(2),
    });
    Given::with(())
        .given(supported)
        .when(ReportCommand::Support {
            resident: neighbour,
            at: at(3),
        })
        .then_expect_error(DomainError::AlreadyExists("this resident's support".into()));
    Given::with(())
        .given(accepted())
        .when(ReportCommand::Support {
            resident: PersonId(id(RESIDENT)),
            at: at(2),
        })
        .then_expect_error(DomainError::validation(
            "resident",
            "the reporter already counts",
        ));
    Given::with(())
        .given(closed())
        .when(ReportCommand::Support {
            resident: neighbour,
            at: at(9),
        })
        .then_expect_error(illegal("support", "closed"));
}

#[test]
fn merge_a_duplicate() {
    let original = ReportId(id(9));
    Given::with(())
        .given(submitted())
        .when(ReportCommand::MergeInto {
            by: worker(),
            original,
            at: at(1),
        })
        .then_expect_events(vec![ReportEvent::ReportMerged {
            by: worker(),
            original,
            at: at(1),
        }]);
    Given::with(())
        .given(submitted())
        .when(ReportCommand::MergeInto {
            by: worker(),
            original: ReportId(id(REPORT)),
            at: at(1),
        })
        .then_expect_error(DomainError::validation(
            "original",
            "a report is no duplicate of itself",
        ));
    Given::with(())
        .given(in_progress())
        .when(ReportCommand::MergeInto {
            by: admin(),
            original,
            at: at(4),
        })
        .then_expect_error(illegal("merge", "in_progress"));
}

#[test]
fn moderation() {
    Given::with(())
        .given(submitted())
        .when(ReportCommand::Hide {
            by: admin(),
            reason: hash(10),
            at: at(1),
        })
        .then_expect_events(vec![ReportEvent::ReportHidden {
            by: admin(),
            reason: hash(10),
            at: at(1),
        }]);
    let mut hidden = submitted();
    hidden.push(ReportEvent::ReportHidden {
        by: admin(),
        reason: hash(10),
        at: at(1),
    });
    Given::with(())
        .given(hidden.clone())
        .when(ReportCommand::Hide {
            by: admin(),
            reason: hash(10),
            at: at(2),
        })
        .then_expect_error(DomainError::validation("report", "is hidden already"));
    Given::with(())
        .given(hidden)
        .when(ReportCommand::Unhide {
            by: admin(),
            at: at(2),
        })
        .then_expect_events(vec![ReportEvent::ReportUnhidden {
            by: admin(),
            at: at(2),
        }]);
    Given::with(())
        .given(submitted())
        .when(ReportCommand::Unhide {
            by: admin(),
            at: at(2),
        })
        .then_expect_error(DomainError::validation("report", "is not hidden"));
    Given::with(())
        .given(submitted())
        .when(ReportCommand::Hide {
            by: worker(),
            reason: hash(10),
            at: at(1),
        })
        .then_expect_error(forbidden("a GridWorker cannot do this"));
    // Redaction names the content that the caller erases beside the log.
    Given::with(())
        .given(resolved())
        .when(ReportCommand::RedactText {
            by: admin(),
            at: at(6),
        })
        .then_expect_events(vec![ReportEvent::ReportTextRedacted {
            by: admin(),
            text: hash(1),
            at: at(6),
        }]);
    Given::with(())
        .given(submitted())
        .when(ReportCommand::RedactPhotos {
            by: admin(),
            at: at(1),
        })
        .then_expect_events(vec![ReportEvent::ReportPhotosRedacted {
            by: admin(),
            photos: vec![hash(7)],
            at: at(1),
        }]);
    Given::with(())
        .given(resolved())
        .when(ReportCommand::RedactPhotos {
            by: admin(),
            at: at(6),
        })
        .then_expect_events(vec![ReportEvent::ReportPhotosRedacted {
            by: admin(),
            photos: vec![hash(7), hash(8)],
            at: at(6),
        }]);
    Given::with(())
        .given(submitted())
        .when(ReportCommand::RedactText {
            by: resident(),
            at: at(1),
        })
        .then_expect_error(forbidden("a Citizen cannot do this"));
    Given::with(())
        .given_no_previous_events()
        .when(ReportCommand::RedactPhotos {
            by: admin(),
            at: at(1),
        })
        .then_expect_error(illegal("redact", "new"));
    Given::with(())
        .given(accepted())
        .when(ReportCommand::HideReporterName {
            by: resident(),
            at: at(2),
        })
        .then_expect_events(vec![ReportEvent::ReporterNameHidden {
            by: resident(),
            at: at(2),
        }]);
    Given::with(())
        .given(accepted())
        .when(ReportCommand::HideReporterName {
            by: stranger(),
            at: at(2),
        })
        .then_expect_error(forbidden("only the reporter can hide their name"));
}

#[test]
fn missed_deadlines_escalate_once_each() {
    let first_response = ReportCommand::RecordMissedDeadline {
        kind: DeadlineKind::FirstResponse,
        at: at(5),
    };
    let missed = ReportEvent::ReportDeadlineMissed {
        kind: DeadlineKind::FirstResponse,
        due: at(4),
        escalated_to: EscalationLevel::Level1GridLead,
        at: at(5),
    };
    Given::with(())
        .given(submitted())
        .when(first_response.clone())
        .then_expect_events(vec![missed.clone()]);
    let mut once = submitted();
    once.push(missed);
    Given::with(())
        .given(once.clone())
        .when(first_response)
        .then_expect_error(DomainError::AlreadyExists("this missed deadline".into()));
    Given::with(())
        .given(once)
        .when(ReportCommand::RecordMissedDeadline {
            kind: DeadlineKind::Resolution,
            at: at(49),
        })
        .then_expect_events(vec![ReportEvent::ReportDeadlineMissed {
            kind: DeadlineKind::Resolution,
            due: at(48),
            escalated_to: EscalationLevel::CommunityAdmin,
            at: at(49),
        }]);
    Given::with(())
        .given(submitted())
        .when(ReportCommand::RecordMissedDeadline {
            kind: DeadlineKind::FirstResponse,
            at: at(3),
        })
        .then_expect_error(DomainError::validation("at", "the deadline has not passed"));
    Given::with(())
        .given(accepted())
        .when(ReportCommand::RecordMissedDeadline {
            kind: DeadlineKind::FirstResponse,
            at: at(5),
        })
        .then_expect_error(illegal("record a missed deadline on", "accepted"));
    Given::with(())
        .given(resolved())
        .when(ReportCommand::RecordMissedDeadline {
            kind: DeadlineKind::Resolution,
            at: at(49),
        })
        .then_expect_error(illegal("record a missed deadline on", "resolved"));
}

#[test]
fn events_fold_into_the_state_a_reader_expects() {
    let mut report = Report::default();
    for event in confirmed() {
        report.apply(event);
    }
    assert_eq!(report.state, ReportState::Confirmed);
    assert_eq!(report.assignee, Some(PersonId(id(WORKER))));
    assert!(report.state.is_active());
    assert!(!report.state.is_open(), "confirmed waits for no work");
    // Events round-trip through JSON with only integers and strings inside,
    // as the event store requires.
    fn integers_only(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Number(n) => n.is_i64(),
            serde_json::Value::Array(items) => items.iter().all(integers_only),
            serde_json::Value::Object(map) => map.values().all(integers_only),
            _ => true,
        }
    }
    for event in closed() {
        let value = serde_json::to_value(&event).unwrap();
        assert!(integers_only(&value), "no fractional numbers: {value}");
        assert_eq!(serde_json::from_value::<ReportEvent>(value).unwrap(), event);
    }
}
