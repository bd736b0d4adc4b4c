//! A problem reported by a resident (or found on patrol), from submission to
//! closing. Every transition records who, when and why; an illegal one is
//! refused with the state it came from.

use std::collections::BTreeSet;

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::values::{
    Actor, AttachedPhotos, CategoryCode, ContentHash, DepartmentId, GeoPoint, GridId, PersonId,
    ReportId, Role, SiteCode, SiteId, Timestamp,
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportState {
    /// Not submitted yet: the aggregate before its first event.
    #[default]
    New,
    Submitted,
    Accepted,
    Rejected,
    Assigned,
    Escalated,
    InProgress,
    Resolved,
    Confirmed,
    Closed,
    Merged,
}

impl ReportState {
    /// The states of an open report: waiting for the community to solve
    /// it. A resolved report waits for its reporter's confirmation, not for
    /// work, and is not open; reopened, it is open again (in progress).
    pub const OPEN: [ReportState; 5] = [
        ReportState::Submitted,
        ReportState::Accepted,
        ReportState::Assigned,
        ReportState::Escalated,
        ReportState::InProgress,
    ];

    /// Open: see [`ReportState::OPEN`]. Every figure that counts open
    /// reports, and the duplicate check, use this.
    pub fn is_open(self) -> bool {
        Self::OPEN.contains(&self)
    }

    /// Active reports can still be commented on, supported and merged
    /// into: open, resolved or confirmed (not yet rejected, closed or
    /// merged).
    pub fn is_active(self) -> bool {
        !matches!(
            self,
            ReportState::New | ReportState::Rejected | ReportState::Closed | ReportState::Merged
        )
    }

    /// Final: a rejected, closed or merged report never changes state
    /// again (only a resolved or confirmed one is reopened).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ReportState::Rejected | ReportState::Closed | ReportState::Merged
        )
    }

    /// The state a report is in after `event`: the one place the log's
    /// events move a report's state, for the aggregate and for whatever
    /// follows reports' states without the whole aggregate.
    pub fn after(self, event: &ReportEvent) -> ReportState {
        use ReportEvent::*;
        match event {
            ReportSubmitted(_) => ReportState::Submitted,
            ReportAccepted { .. } => ReportState::Accepted,
            ReportRejected { .. } => ReportState::Rejected,
            ReportAssigned { .. } => ReportState::Assigned,
            ReportEscalated { .. } => ReportState::Escalated,
            ReportWorkStarted { .. } | ReportReopened { .. } => ReportState::InProgress,
            ReportResolved { .. } => ReportState::Resolved,
            ReportConfirmed { .. } => ReportState::Confirmed,
            ReportClosed { .. } => ReportState::Closed,
            ReportMerged { .. } => ReportState::Merged,
            ReportCommented { .. }
            | ReportClaimed { .. }
            | ReportSupported { .. }
            | ReportHidden { .. }
            | ReportUnhidden { .. }
            | ReportTextRedacted { .. }
            | ReportPhotosRedacted { .. }
            | ReporterNameHidden { .. }
            | ReportDeadlineMissed { .. } => self,
        }
    }

    /// The state's name as the log and the read models write it.
    pub fn serialized(self) -> String {
        self.name()
    }

    fn name(self) -> String {
        crate::values::serialized_name(&self)
    }
}

/// Where the problem is: a site with a QR code, or a point inside the community.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    Site { site: SiteId, code: SiteCode },
    Point(GeoPoint),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reporter {
    Resident(PersonId),
    /// Reported from a QR page without an account. The page received a
    /// secret; its hash lets the resident claim the report later.
    Anonymous {
        client: ContentHash,
        claim_secret_hash: ContentHash,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionReason {
    DuplicateOf(ReportId),
    NotActionable,
    OutOfScope,
    Abusive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineKind {
    FirstResponse,
    Resolution,
}

/// Who a report is escalated to when a deadline is missed, one level at a time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationLevel {
    #[default]
    GridWorker,
    Level1GridLead,
    CommunityAdmin,
}

impl EscalationLevel {
    fn next(self) -> Self {
        match self {
            EscalationLevel::GridWorker => EscalationLevel::Level1GridLead,
            _ => EscalationLevel::CommunityAdmin,
        }
    }
}

/// Everything `handle` needs to accept a submission, looked up by the caller:
/// the grid comes from the site (or the point), deadlines and department from
/// the category, a likely duplicate from the open reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubmitReport {
    pub report: ReportId,
    pub place: Place,
    pub grid: GridId,
    pub category: CategoryCode,
    pub text: ContentHash,
    pub photos: Option<AttachedPhotos>,
    pub reporter: Reporter,
    pub first_response_due: Timestamp,
    pub resolution_due: Timestamp,
    pub department: Option<DepartmentId>,
    pub likely_duplicate_of: Option<ReportId>,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ReportCommand {
    Submit(Box<SubmitReport>),
    Accept {
        by: Actor,
        at: Timestamp,
    },
    Reject {
        by: Actor,
        reason: RejectionReason,
        at: Timestamp,
    },
    /// `worker_grids`: the grids the worker is assigned to, looked up.
    Assign {
        by: Actor,
        worker: PersonId,
        worker_grids: Vec<GridId>,
        at: Timestamp,
    },
    Escalate {
        by: Actor,
        department: DepartmentId,
        at: Timestamp,
    },
    StartWork {
        by: Actor,
        at: Timestamp,
    },
    Resolve {
        by: Actor,
        notes: ContentHash,
        photos: Option<AttachedPhotos>,
        at: Timestamp,
    },
    Confirm {
        by: Actor,
        at: Timestamp,
    },
    Reopen {
        by: Actor,
        reason: ContentHash,
        at: Timestamp,
    },
    Close {
        by: Actor,
        at: Timestamp,
    },
    Comment {
        by: Actor,
        text: ContentHash,
        at: Timestamp,
    },
    /// `secret_hash`: the hash of the secret the resident presents.
    Claim {
        resident: PersonId,
        secret_hash: ContentHash,
        at: Timestamp,
    },
    Support {
        resident: PersonId,
        at: Timestamp,
    },
    MergeInto {
        by: Actor,
        original: ReportId,
        at: Timestamp,
    },
    Hide {
        by: Actor,
        reason: ContentHash,
        at: Timestamp,
    },
    Unhide {
        by: Actor,
        at: Timestamp,
    },
    RedactText {
        by: Actor,
        at: Timestamp,
    },
    RedactPhotos {
        by: Actor,
        at: Timestamp,
    },
    HideReporterName {
        by: Actor,
        at: Timestamp,
    },
    /// From the deadline watcher, which reads the clock.
    RecordMissedDeadline {
        kind: DeadlineKind,
        at: Timestamp,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ReportEvent {
    ReportSubmitted(Box<SubmitReport>),
    ReportAccepted {
        by: Actor,
        at: Timestamp,
    },
    ReportRejected {
        by: Actor,
        reason: RejectionReason,
        at: Timestamp,
    },
    ReportAssigned {
        by: Actor,
        worker: PersonId,
        at: Timestamp,
    },
    ReportEscalated {
        by: Actor,
        department: DepartmentId,
        at: Timestamp,
    },
    ReportWorkStarted {
        by: Actor,
        at: Timestamp,
    },
    ReportResolved {
        by: Actor,
        notes: ContentHash,
        photos: Option<AttachedPhotos>,
        at: Timestamp,
    },
    ReportConfirmed {
        by: Actor,
        at: Timestamp,
    },
    ReportReopened {
        by: Actor,
        reason: ContentHash,
        reopen_count: u32,
        at: Timestamp,
    },
    ReportClosed {
        by: Actor,
        at: Timestamp,
    },
    ReportCommented {
        by: Actor,
        text: ContentHash,
        at: Timestamp,
    },
    ReportClaimed {
        resident: PersonId,
        at: Timestamp,
    },
    ReportSupported {
        resident: PersonId,
        supporters: u32,
        at: Timestamp,
    },
    ReportMerged {
        by: Actor,
        original: ReportId,
        at: Timestamp,
    },
    ReportHidden {
        by: Actor,
        reason: ContentHash,
        at: Timestamp,
    },
    ReportUnhidden {
        by: Actor,
        at: Timestamp,
    },
    ReportTextRedacted {
        by: Actor,
        text: ContentHash,
        at: Timestamp,
    },
    ReportPhotosRedacted {
        by: Actor,
        /// The redacted photo lists: the submission's and the resolution's.
        photos: Vec<ContentHash>,
        at: Timestamp,
    },
    ReporterNameHidden {
        by: Actor,
        at: Timestamp,
    },
    ReportDeadlineMissed {
        kind: DeadlineKind,
        due: Timestamp,
        escalated_to: EscalationLevel,
        at: Timestamp,
    },
}

impl DomainEvent for ReportEvent {
    fn event_type(&self) -> String {
        let name = match self {
            ReportEvent::ReportSubmitted(_) => "ReportSubmitted",
            ReportEvent::ReportAccepted { .. } => "ReportAccepted",
            ReportEvent::ReportRejected { .. } => "ReportRejected",
            ReportEvent::ReportAssigned { .. } => "ReportAssigned",
            ReportEvent::ReportEscalated { .. } => "ReportEscalated",
            ReportEvent::ReportWorkStarted { .. } => "ReportWorkStarted",
            ReportEvent::ReportResolved { .. } => "ReportResolved",
            ReportEvent::ReportConfirmed { .. } => "ReportConfirmed",
            ReportEvent::ReportReopened { .. } => "ReportReopened",
            ReportEvent::ReportClosed { .. } => "ReportClosed",
            ReportEvent::ReportCommented { .. } => "ReportCommented",
            ReportEvent::ReportClaimed { .. } => "ReportClaimed",
            ReportEvent::ReportSupported { .. } => "ReportSupported",
            ReportEvent::ReportMerged { .. } => "ReportMerged",
            ReportEvent::ReportHidden { .. } => "ReportHidden",
            ReportEvent::ReportUnhidden { .. } => "ReportUnhidden",
            ReportEvent::ReportTextRedacted { .. } => "ReportTextRedacted",
            ReportEvent::ReportPhotosRedacted { .. } => "ReportPhotosRedacted",
            ReportEvent::ReporterNameHidden { .. } => "ReporterNameHidden",
            ReportEvent::ReportDeadlineMissed { .. } => "ReportDeadlineMissed",
        };
        name.to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub state: ReportState,
    /// Who accepted the report (nobody earns for a report they accepted).
    pub accepted_by: Option<PersonId>,
    pub submission: Option<Box<SubmitReport>>,
    pub assignee: Option<PersonId>,
    /// The department the report was escalated to, if it was.
    pub escalated_to: Option<DepartmentId>,
    pub supporters: BTreeSet<PersonId>,
    pub reopen_count: u32,
    pub hidden: bool,
    pub reporter_name_hidden: bool,
    pub text_redacted: bool,
    pub photos_redacted: bool,
    /// Every photo list attached when resolving (a reopened report may be
    /// resolved again), so a redaction reaches them all.
    pub resolution_photos: Vec<ContentHash>,
    pub missed_deadlines: BTreeSet<DeadlineKind>,
    pub escalation: EscalationLevel,
}

aggregate!(Report, "Report", ReportCommand, ReportEvent);

impl Report {
    /// Applies an event; business rules live in `decide`.
    fn fold(&mut self, event: ReportEvent) {
        use ReportEvent::*;
        self.state = self.state.after(&event);
        match event {
            ReportSubmitted(submission) => self.submission = Some(submission),
            ReportAccepted { by, .. } => self.accepted_by = Some(by.person),
            ReportAssigned { worker, .. } => self.assignee = Some(worker),
            ReportEscalated { department, .. } => self.escalated_to = Some(department),
            ReportResolved { photos, .. } => {
                self.resolution_photos
                    .extend(photos.map(|p| p.content().clone()));
            }
            ReportReopened { reopen_count, .. } => self.reopen_count = reopen_count,
            ReportClaimed { resident, .. } => {
                if let Some(submission) = &mut self.submission {
                    submission.reporter = Reporter::Resident(resident);
                }
            }
            ReportSupported { resident, .. } => {
                self.supporters.insert(resident);
            }
            ReportHidden { .. } => self.hidden = true,
            ReportUnhidden { .. } => self.hidden = false,
            ReportTextRedacted { .. } => self.text_redacted = true,
            ReportPhotosRedacted { .. } => self.photos_redacted = true,
            ReporterNameHidden { .. } => self.reporter_name_hidden = true,
            ReportDeadlineMissed {
                kind, escalated_to, ..
            } => {
                self.missed_deadlines.insert(kind);
                self.escalation = escalated_to;
            }
            ReportRejected { .. }
            | ReportWorkStarted { .. }
            | ReportConfirmed { .. }
            | ReportClosed { .. }
            | ReportCommented { .. }
            | ReportMerged { .. } => {}
        }
    }

    /// All business rules: the one event a command leads to, or why not.
    fn decide(&self, command: ReportCommand) -> Result<ReportEvent, DomainError> {
        use ReportCommand::*;
        use ReportState::*;
        match command {
            Submit(submission) => self.submit(submission),
            Accept { by, at } => {
                self.expect("accept", &[Submitted])?;
                self.require_staff(by, &[Role::Admin, Role::GridWorker])?;
                Ok(ReportEvent::ReportAccepted { by, at })
            }
            Reject { by, reason, at } => {
                self.expect("reject", &[Submitted])?;
                self.require_staff(by, &[Role::Admin, Role::GridWorker])?;
                if let RejectionReason::DuplicateOf(original) = &reason {
                    self.require_other_report(*original)?;
                }
                Ok(ReportEvent::ReportRejected { by, reason, at })
            }
            Assign {
                by,
                worker,
                worker_grids,
                at,
            } => {
                self.expect("assign", &[Accepted, Assigned])?;
                self.require_staff(by, &[Role::Admin, Role::GridWorker])?;
                if !worker_grids.contains(&self.grid()) {
                    return Err(DomainError::Forbidden(
                        "the worker is not assigned to the report's grid".into(),
                    ));
                }
                Ok(ReportEvent::ReportAssigned { by, worker, at })
            }
            Escalate { by, department, at } => {
                self.expect("escalate", &[Accepted, Assigned, InProgress])?;
                self.require_staff(by, &[Role::Admin, Role::GridWorker])?;
                Ok(ReportEvent::ReportEscalated { by, department, at })
            }
            StartWork { by, at } => {
                self.expect("start work on", &[Assigned, Escalated])?;
                self.require_handler(by)?;
                Ok(ReportEvent::ReportWorkStarted { by, at })
            }
            Resolve {
                by,
                notes,
                photos,
                at,
            } => {
                self.expect("resolve", &[InProgress])?;
                self.require_handler(by)?;
                Ok(ReportEvent::ReportResolved {
                    by,
                    notes,
                    photos,
                    at,
                })
            }
            Confirm { by, at } => {
                self.expect("confirm", &[Resolved])?;
                self.require_reporter_or(by, &[Role::Inspector, Role::Admin])?;
                Ok(ReportEvent::ReportConfirmed { by, at })
            }
            Reopen { by, reason, at } => {
                self.expect("reopen", &[Resolved, Confirmed])?;
                self.require_reporter_or(by, &[Role::Inspector, Role::Admin])?;
                let reopen_count = self.reopen_count + 1;
                Ok(ReportEvent::ReportReopened {
                    by,
                    reason,
                    reopen_count,
                    at,
                })
            }
            Close { by, at } => {
                self.expect("close", &[Confirmed])?;
                self.require_staff(by, &[Role::Admin, Role::Inspector])?;
                Ok(ReportEvent::ReportClosed { by, at })
            }
            Comment { by, text, at } => {
                self.expect_open("comment on")?;
                self.require_reporter_or(
                    by,
                    &[
                        Role::Admin,
                        Role::GridWorker,
                        Role::Department,
                        Role::Inspector,
                    ],
                )?;
                Ok(ReportEvent::ReportCommented { by, text, at })
            }
            Claim {
                resident,
                secret_hash,
                at,
            } => self.claim(resident, secret_hash, at),
            Support { resident, at } => self.support(resident, at),
            MergeInto { by, original, at } => {
                self.expect("merge", &[Submitted, Accepted])?;
                self.require_staff(by, &[Role::Admin, Role::GridWorker])?;
                self.require_other_report(original)?;
                Ok(ReportEvent::ReportMerged { by, original, at })
            }
            Hide { by, reason, at } => {
                self.expect_submitted("hide")?;
                self.require_staff(by, &[Role::Admin])?;
                if self.hidden {
                    return Err(DomainError::validation("report", "is hidden already"));
                }
                Ok(ReportEvent::ReportHidden { by, reason, at })
            }
            Unhide { by, at } => {
                self.require_staff(by, &[Role::Admin])?;
                if !self.hidden {
                    return Err(DomainError::validation("report", "is not hidden"));
                }
                Ok(ReportEvent::ReportUnhidden { by, at })
            }
            RedactText { by, at } => {
                self.expect_submitted("redact")?;
                self.require_staff(by, &[Role::Admin])?;
                let text = self.submission().text.clone();
                Ok(ReportEvent::ReportTextRedacted { by, text, at })
            }
            RedactPhotos { by, at } => {
                self.expect_submitted("redact")?;
                self.require_staff(by, &[Role::Admin])?;
                let photos = self
                    .submission()
                    .photos
                    .iter()
                    .map(|p| p.content().clone())
                    .chain(self.resolution_photos.iter().cloned())
                    .collect();
                Ok(ReportEvent::ReportPhotosRedacted { by, photos, at })
            }
            HideReporterName { by, at } => {
                self.expect_submitted("hide the reporter's name of")?;
                if !self.is_reporter(by.person) {
                    return Err(DomainError::Forbidden(
                        "only the reporter can hide their name".into(),
                    ));
                }
                Ok(ReportEvent::ReporterNameHidden { by, at })
            }
            RecordMissedDeadline { kind, at } => self.missed_deadline(kind, at),
        }
    }

    fn submit(&self, submission: Box<SubmitReport>) -> Result<ReportEvent, DomainError> {
        if self.state != ReportState::New {
            return Err(DomainError::AlreadyExists(format!(
                "report {}",
                submission.report
            )));
        }
        if submission.first_response_due < submission.at
            || submission.resolution_due < submission.first_response_due
        {
            return Err(DomainError::validation(
                "deadlines",
                "must not be before the submission or each other",
            ));
        }
        if submission.likely_duplicate_of == Some(submission.report) {
            return Err(DomainError::validation(
                "likely_duplicate_of",
                "a report is no duplicate of itself",
            ));
        }
        Ok(ReportEvent::ReportSubmitted(submission))
    }

    fn claim(
        &self,
        resident: PersonId,
        secret_hash: ContentHash,
        at: Timestamp,
    ) -> Result<ReportEvent, DomainError> {
        self.expect_submitted("claim")?;
        match &self.submission().reporter {
            Reporter::Anonymous {
                claim_secret_hash, ..
            } if *claim_secret_hash == secret_hash => {
                Ok(ReportEvent::ReportClaimed { resident, at })
            }
            Reporter::Anonymous { .. } => Err(DomainError::Forbidden(
                "the claim secret does not match".into(),
            )),
            Reporter::Resident(_) => {
                Err(DomainError::validation("report", "already has a reporter"))
            }
        }
    }

    fn support(&self, resident: PersonId, at: Timestamp) -> Result<ReportEvent, DomainError> {
        self.expect_open("support")?;
        if self.is_reporter(resident) {
            return Err(DomainError::validation(
                "resident",
                "the reporter already counts",
            ));
        }
        if self.supporters.contains(&resident) {
            return Err(DomainError::AlreadyExists("this resident's support".into()));
        }
        let supporters = self.supporters.len() as u32 + 1;
        Ok(ReportEvent::ReportSupported {
            resident,
            supporters,
            at,
        })
    }

    /// Once per kind, only when the deadline has passed and the report still
    /// waits for what the deadline was for.
    fn missed_deadline(
        &self,
        kind: DeadlineKind,
        at: Timestamp,
    ) -> Result<ReportEvent, DomainError> {
        self.expect_open("record a missed deadline on")?;
        if self.missed_deadlines.contains(&kind) {
            return Err(DomainError::AlreadyExists("this missed deadline".into()));
        }
        let submission = self.submission();
        let (due, still_waiting) = match kind {
            DeadlineKind::FirstResponse => (
                submission.first_response_due,
                self.state == ReportState::Submitted,
            ),
            DeadlineKind::Resolution => (
                submission.resolution_due,
                !matches!(self.state, ReportState::Resolved | ReportState::Confirmed),
            ),
        };
        if at < due {
            return Err(DomainError::validation("at", "the deadline has not passed"));
        }
        if !still_waiting {
            return Err(self.illegal("record a missed deadline on"));
        }
        let escalated_to = self.escalation.next();
        Ok(ReportEvent::ReportDeadlineMissed {
            kind,
            due,
            escalated_to,
            at,
        })
    }

    fn submission(&self) -> &SubmitReport {
        self.submission
            .as_deref()
            .expect("a submitted report has its submission")
    }

    fn grid(&self) -> GridId {
        self.submission().grid
    }

    fn is_reporter(&self, person: PersonId) -> bool {
        matches!(&self.submission().reporter, Reporter::Resident(r) if *r == person)
    }

    fn illegal(&self, action: &str) -> DomainError {
        DomainError::IllegalTransition {
            action: action.to_string(),
            state: self.state.name(),
        }
    }

    fn expect(&self, action: &str, states: &[ReportState]) -> Result<(), DomainError> {
        if states.contains(&self.state) {
            Ok(())
        } else {
            Err(self.illegal(action))
        }
    }

    fn expect_open(&self, action: &str) -> Result<(), DomainError> {
        if self.state.is_active() {
            Ok(())
        } else {
            Err(self.illegal(action))
        }
    }

    fn expect_submitted(&self, action: &str) -> Result<(), DomainError> {
        if self.state == ReportState::New {
            Err(self.illegal(action))
        } else {
            Ok(())
        }
    }

    fn require_staff(&self, by: Actor, roles: &[Role]) -> Result<(), DomainError> {
        if roles.contains(&by.role) {
            Ok(())
        } else {
            Err(DomainError::Forbidden(format!(
                "a {:?} cannot do this",
                by.role
            )))
        }
    }

    /// The assigned worker, the department it is escalated to, or an admin.
    fn require_handler(&self, by: Actor) -> Result<(), DomainError> {
        let allowed = match by.role {
            Role::Admin => true,
            Role::GridWorker => self.assignee == Some(by.person),
            Role::Department => self.escalated_to.is_some(),
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(DomainError::Forbidden(
                "only whoever handles the report can do this".into(),
            ))
        }
    }

    fn require_reporter_or(&self, by: Actor, roles: &[Role]) -> Result<(), DomainError> {
        if self.is_reporter(by.person) || roles.contains(&by.role) {
            Ok(())
        } else {
            Err(DomainError::Forbidden(
                "only the reporter or staff can do this".into(),
            ))
        }
    }

    fn require_other_report(&self, original: ReportId) -> Result<(), DomainError> {
        if original == self.submission().report {
            return Err(DomainError::validation(
                "original",
                "a report is no duplicate of itself",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
