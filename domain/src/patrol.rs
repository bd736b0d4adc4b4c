//! A grid worker's round: started, check-ins at sites (by scanning their QR
//! codes), findings (which may open a report in one step), ended.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::values::{
    Actor, ContentHash, GridId, PatrolId, PersonId, ReportId, Role, SiteCode, SiteId, Timestamp,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PatrolCommand {
    /// `grids`: the grids the worker may patrol, looked up.
    Start {
        patrol: PatrolId,
        by: Actor,
        grids: Vec<GridId>,
        at: Timestamp,
    },
    /// `site_grid`: the grid the scanned site lies in, looked up.
    CheckIn {
        by: Actor,
        site: SiteId,
        code: SiteCode,
        site_grid: GridId,
        at: Timestamp,
    },
    /// `grid`: the grid the finding's site, or the report it opens, lies
    /// in, looked up; a finding outside the worker's grids is refused, as a
    /// check-in there is.
    RecordFinding {
        by: Actor,
        text: ContentHash,
        site: Option<SiteId>,
        grid: Option<GridId>,
        report: Option<ReportId>,
        at: Timestamp,
    },
    End {
        by: Actor,
        at: Timestamp,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PatrolEvent {
    PatrolStarted {
        patrol: PatrolId,
        worker: PersonId,
        grids: Vec<GridId>,
        at: Timestamp,
    },
    PatrolCheckedIn {
        site: SiteId,
        code: SiteCode,
        at: Timestamp,
    },
    PatrolFindingRecorded {
        text: ContentHash,
        site: Option<SiteId>,
        report: Option<ReportId>,
        at: Timestamp,
    },
    PatrolEnded {
        check_ins: u32,
        findings: u32,
        at: Timestamp,
    },
}

impl DomainEvent for PatrolEvent {
    fn event_type(&self) -> String {
        match self {
            PatrolEvent::PatrolStarted { .. } => "PatrolStarted",
            PatrolEvent::PatrolCheckedIn { .. } => "PatrolCheckedIn",
            PatrolEvent::PatrolFindingRecorded { .. } => "PatrolFindingRecorded",
            PatrolEvent::PatrolEnded { .. } => "PatrolEnded",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Patrol {
    pub worker: Option<PersonId>,
    pub grids: Vec<GridId>,
    pub ended: bool,
    pub check_ins: u32,
    pub findings: u32,
    /// The time of the latest event: a patrol's times never go back.
    pub last_at: Option<Timestamp>,
}

aggregate!(Patrol, "Patrol", PatrolCommand, PatrolEvent);

impl Patrol {
    /// Applies an event; business rules live in `decide`.
    fn fold(&mut self, event: PatrolEvent) {
        match event {
            PatrolEvent::PatrolStarted {
                worker, grids, at, ..
            } => {
                self.worker = Some(worker);
                self.grids = grids;
                self.last_at = Some(at);
            }
            PatrolEvent::PatrolCheckedIn { at, .. } => {
                self.check_ins += 1;
                self.last_at = Some(at);
            }
            PatrolEvent::PatrolFindingRecorded { at, .. } => {
                self.findings += 1;
                self.last_at = Some(at);
            }
            PatrolEvent::PatrolEnded { at, .. } => {
                self.ended = true;
                self.last_at = Some(at);
            }
        }
    }

    fn decide(&self, command: PatrolCommand) -> Result<PatrolEvent, DomainError> {
        match command {
            PatrolCommand::Start {
                patrol,
                by,
                grids,
                at,
            } => {
                if self.worker.is_some() {
                    return Err(DomainError::AlreadyExists(format!("patrol {patrol}")));
                }
                if by.role != Role::GridWorker {
                    return Err(DomainError::Forbidden("only grid workers patrol".into()));
                }
                if grids.is_empty() {
                    return Err(DomainError::Forbidden(
                        "the worker has no grid to patrol".into(),
                    ));
                }
                Ok(PatrolEvent::PatrolStarted {
                    patrol,
                    worker: by.person,
                    grids,
                    at,
                })
            }
            PatrolCommand::CheckIn {
                by,
                site,
                code,
                site_grid,
                at,
            } => {
                self.under_way(by, at)?;
                if !self.grids.contains(&site_grid) {
                    return Err(DomainError::Forbidden(
                        "the site lies outside the worker's grids".into(),
                    ));
                }
                Ok(PatrolEvent::PatrolCheckedIn { site, code, at })
            }
            PatrolCommand::RecordFinding {
                by,
                text,
                site,
                grid,
                report,
                at,
            } => {
                self.under_way(by, at)?;
                if grid.is_some_and(|grid| !self.grids.contains(&grid)) {
                    return Err(DomainError::Forbidden(
                        "the finding lies outside the worker's grids".into(),
                    ));
                }
                Ok(PatrolEvent::PatrolFindingRecorded {
                    text,
                    site,
                    report,
                    at,
                })
            }
            PatrolCommand::End { by, at } => {
                self.under_way(by, at)?;
                Ok(PatrolEvent::PatrolEnded {
                    check_ins: self.check_ins,
                    findings: self.findings,
                    at,
                })
            }
        }
    }

    /// Started, not ended, by its own worker, and not earlier than before.
    fn under_way(&self, by: Actor, at: Timestamp) -> Result<(), DomainError> {
        let Some(worker) = self.worker else {
            return Err(DomainError::NotFound("patrol".into()));
        };
        if self.ended {
            return Err(DomainError::IllegalTransition {
                action: "continue".into(),
                state: "ended".into(),
            });
        }
        if by.person != worker {
            return Err(DomainError::Forbidden(
                "only the patrol's own worker records it".into(),
            ));
        }
        if self.last_at.is_some_and(|last| at < last) {
            return Err(DomainError::validation(
                "at",
                "earlier than the patrol's last entry",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;

    type Given = TestFramework<Patrol>;

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_micros(1_800_000_000_000_000 + minutes * 60_000_000)
    }
    fn worker() -> Actor {
        Actor {
            person: PersonId(Uuid::from_u128(2)),
            role: Role::GridWorker,
        }
    }
    fn grid() -> GridId {
        GridId(Uuid::from_u128(10))
    }
    fn code() -> SiteCode {
        SiteCode::parse("RB-0042").unwrap()
    }
    fn site() -> SiteId {
        SiteId(Uuid::from_u128(20))
    }
    fn started() -> Vec<PatrolEvent> {
        vec![PatrolEvent::PatrolStarted {
            patrol: PatrolId(Uuid::from_u128(7)),
            worker: worker().person,
            grids: vec![grid()],
            at: at(0),
        }]
    }
    fn check_in(by: Actor, site_grid: GridId, minutes: i64) -> PatrolCommand {
        PatrolCommand::CheckIn {
            by,
            site: site(),
            code: code(),
            site_grid,
            at: at(minutes),
        }
    }

    #[test]
    fn start() {
        let start = |by: Actor, grids: Vec<GridId>| PatrolCommand::Start {
            patrol: PatrolId(Uuid::from_u128(7)),
            by,
            grids,
            at: at(0),
        };
        Given::with(())
            .given_no_previous_events()
            .when(start(worker(), vec![grid()]))
            .then_expect_events(started());
        Given::with(())
            .given(started())
            .when(start(worker(), vec![grid()]))
            .then_expect_error(DomainError::AlreadyExists(format!(
                "patrol {}",
                Uuid::from_u128(7)
            )));
        let admin = Actor {
            person: PersonId(Uuid::from_u128(1)),
            role: Role::Admin,
        };
        Given::with(())
            .given_no_previous_events()
            .when(start(admin, vec![grid()]))
            .then_expect_error(DomainError::Forbidden("only grid workers patrol".into()));
        Given::with(())
            .given_no_previous_events()
            .when(start(worker(), vec![]))
            .then_expect_error(DomainError::Forbidden(
                "the worker has no grid to patrol".into(),
            ));
    }

    #[test]
    fn check_in_findings_and_end() {
        Given::with(())
            .given(started())
            .when(check_in(worker(), grid(), 5))
            .then_expect_events(vec![PatrolEvent::PatrolCheckedIn {
                site: site(),
                code: code(),
                at: at(5),
            }]);
        Given::with(())
            .given(started())
            .when(check_in(worker(), GridId(Uuid::from_u128(11)), 5))
            .then_expect_error(DomainError::Forbidden(
                "the site lies outside the worker's grids".into(),
            ));
        let other = Actor {
            person: PersonId(Uuid::from_u128(3)),
            role: Role::GridWorker,
        };
        Given::with(())
            .given(started())
            .when(check_in(other, grid(), 5))
            .then_expect_error(DomainError::Forbidden(
                "only the patrol's own worker records it".into(),
            ));
        Given::with(())
            .given_no_previous_events()
            .when(check_in(worker(), grid(), 5))
            .then_expect_error(DomainError::NotFound("patrol".into()));
        let mut walked = started();
        walked.push(PatrolEvent::PatrolCheckedIn {
            site: site(),
            code: code(),
            at: at(10),
        });
        Given::with(())
            .given(walked.clone())
            .when(check_in(worker(), grid(), 9))
            .then_expect_error(DomainError::validation(
                "at",
                "earlier than the patrol's last entry",
            ));
        let text = ContentHash::parse(&"ab".repeat(32)).unwrap();
        let report = Some(ReportId(Uuid::from_u128(30)));
        Given::with(())
            .given(walked.clone())
            .when(PatrolCommand::RecordFinding {
                by: worker(),
                text: text.clone(),
                site: Some(site()),
                grid: Some(GridId(Uuid::from_u128(11))),
                report,
                at: at(12),
            })
            .then_expect_error(DomainError::Forbidden(
                "the finding lies outside the worker's grids".into(),
            ));
        Given::with(())
            .given(walked.clone())
            .when(PatrolCommand::RecordFinding {
                by: worker(),
                text: text.clone(),
                site: Some(site()),
                grid: Some(grid()),
                report,
                at: at(12),
            })
            .then_expect_events(vec![PatrolEvent::PatrolFindingRecorded {
                text: text.clone(),
                site: Some(site()),
                report,
                at: at(12),
            }]);
        walked.push(PatrolEvent::PatrolFindingRecorded {
            text,
            site: Some(site()),
            report,
            at: at(12),
        });
        Given::with(())
            .given(walked.clone())
            .when(PatrolCommand::End {
                by: worker(),
                at: at(30),
            })
            .then_expect_events(vec![PatrolEvent::PatrolEnded {
                check_ins: 1,
                findings: 1,
                at: at(30),
            }]);
        walked.push(PatrolEvent::PatrolEnded {
            check_ins: 1,
            findings: 1,
            at: at(30),
        });
        Given::with(())
            .given(walked)
            .when(check_in(worker(), grid(), 31))
            .then_expect_error(DomainError::IllegalTransition {
                action: "continue".into(),
                state: "ended".into(),
            });
    }
}
