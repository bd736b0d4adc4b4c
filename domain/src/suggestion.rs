//! An idea dropped in a suggestion box (a micro-space site), reviewed and
//! always answered in public: adopted, partly adopted or declined.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::community::SiteKind;
use crate::error::DomainError;
use crate::report::Reporter;
use crate::values::{Actor, ContentHash, Role, SiteId, SuggestionId, Timestamp};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionState {
    #[default]
    New,
    Submitted,
    UnderReview,
    Answered,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Adopted,
    PartlyAdopted,
    Declined,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SuggestionCommand {
    /// `site_kind` is looked up: suggestion boxes stand at micro-spaces.
    Submit {
        suggestion: SuggestionId,
        site: SiteId,
        site_kind: SiteKind,
        text: ContentHash,
        submitter: Reporter,
        at: Timestamp,
    },
    StartReview {
        by: Actor,
        at: Timestamp,
    },
    Answer {
        by: Actor,
        outcome: Outcome,
        answer: ContentHash,
        at: Timestamp,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SuggestionEvent {
    SuggestionSubmitted {
        suggestion: SuggestionId,
        site: SiteId,
        text: ContentHash,
        submitter: Reporter,
        at: Timestamp,
    },
    SuggestionReviewStarted {
        by: Actor,
        at: Timestamp,
    },
    SuggestionAnswered {
        by: Actor,
        outcome: Outcome,
        answer: ContentHash,
        at: Timestamp,
    },
}

impl DomainEvent for SuggestionEvent {
    fn event_type(&self) -> String {
        match self {
            SuggestionEvent::SuggestionSubmitted { .. } => "SuggestionSubmitted",
            SuggestionEvent::SuggestionReviewStarted { .. } => "SuggestionReviewStarted",
            SuggestionEvent::SuggestionAnswered { .. } => "SuggestionAnswered",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub state: SuggestionState,
    pub outcome: Option<Outcome>,
}

aggregate!(Suggestion, "Suggestion", SuggestionCommand, SuggestionEvent);

impl Suggestion {
    /// Applies an event; business rules live in `decide`.
    fn fold(&mut self, event: SuggestionEvent) {
        match event {
            SuggestionEvent::SuggestionSubmitted { .. } => self.state = SuggestionState::Submitted,
            SuggestionEvent::SuggestionReviewStarted { .. } => {
                self.state = SuggestionState::UnderReview
            }
            SuggestionEvent::SuggestionAnswered { outcome, .. } => {
                self.state = SuggestionState::Answered;
                self.outcome = Some(outcome);
            }
        }
    }

    fn decide(&self, command: SuggestionCommand) -> Result<SuggestionEvent, DomainError> {
        use SuggestionState::*;
        match command {
            SuggestionCommand::Submit {
                suggestion,
                site,
                site_kind,
                text,
                submitter,
                at,
            } => {
                if self.state != New {
                    return Err(DomainError::AlreadyExists(format!(
                        "suggestion {suggestion}"
                    )));
                }
                if !site_kind.has_suggestion_box() {
                    return Err(DomainError::validation(
                        "site",
                        "suggestion boxes stand at micro-spaces",
                    ));
                }
                Ok(SuggestionEvent::SuggestionSubmitted {
                    suggestion,
                    site,
                    text,
                    submitter,
                    at,
                })
            }
            SuggestionCommand::StartReview { by, at } => {
                self.expect("review", &[Submitted])?;
                require_admin(by)?;
                Ok(SuggestionEvent::SuggestionReviewStarted { by, at })
            }
            SuggestionCommand::Answer {
                by,
                outcome,
                answer,
                at,
            } => {
                self.expect("answer", &[Submitted, UnderReview])?;
                require_admin(by)?;
                Ok(SuggestionEvent::SuggestionAnswered {
                    by,
                    outcome,
                    answer,
                    at,
                })
            }
        }
    }

    fn expect(&self, action: &str, states: &[SuggestionState]) -> Result<(), DomainError> {
        if states.contains(&self.state) {
            return Ok(());
        }
        let state = crate::values::serialized_name(&self.state);
        Err(DomainError::IllegalTransition {
            action: action.to_string(),
            state,
        })
    }
}

fn require_admin(by: Actor) -> Result<(), DomainError> {
    if by.role == Role::Admin {
        Ok(())
    } else {
        Err(DomainError::Forbidden(
            "only the community's admin answers suggestions".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;
    use crate::values::PersonId;

    type Given = TestFramework<Suggestion>;

    fn at() -> Timestamp {
        Timestamp::from_micros(1_800_000_000_000_000)
    }
    fn hash(n: u8) -> ContentHash {
        ContentHash::parse(&format!("{n:02x}").repeat(32)).unwrap()
    }
    fn admin() -> Actor {
        Actor {
            person: PersonId(Uuid::from_u128(1)),
            role: Role::Admin,
        }
    }
    fn submitter() -> Reporter {
        Reporter::Anonymous {
            client: hash(7),
            claim_secret_hash: hash(8),
        }
    }
    fn submit_at(kind: SiteKind) -> SuggestionCommand {
        SuggestionCommand::Submit {
            suggestion: SuggestionId(Uuid::from_u128(5)),
            site: SiteId(Uuid::from_u128(6)),
            site_kind: kind,
            text: hash(1),
            submitter: submitter(),
            at: at(),
        }
    }
    fn submitted() -> Vec<SuggestionEvent> {
        vec![SuggestionEvent::SuggestionSubmitted {
            suggestion: SuggestionId(Uuid::from_u128(5)),
            site: SiteId(Uuid::from_u128(6)),
            text: hash(1),
            submitter: submitter(),
            at: at(),
        }]
    }

    #[test]
    fn submit() {
        Given::with(())
            .given_no_previous_events()
            .when(submit_at(SiteKind::MicroSpace))
            .then_expect_events(submitted());
        Given::with(())
            .given_no_previous_events()
            .when(submit_at(SiteKind::Outfall))
            .then_expect_error(DomainError::validation(
                "site",
                "suggestion boxes stand at micro-spaces",
            ));
        Given::with(())
            .given(submitted())
            .when(submit_at(SiteKind::MicroSpace))
            .then_expect_error(DomainError::AlreadyExists(format!(
                "suggestion {}",
                Uuid::from_u128(5)
            )));
    }

    #[test]
    fn review_and_answer_once_in_public() {
        Given::with(())
            .given(submitted())
            .when(SuggestionCommand::StartReview {
                by: admin(),
                at: at(),
            })
            .then_expect_events(vec![SuggestionEvent::SuggestionReviewStarted {
                by: admin(),
                at: at(),
            }]);
        let answer = SuggestionCommand::Answer {
            by: admin(),
            outcome: Outcome::PartlyAdopted,
            answer: hash(2),
            at: at(),
        };
        let answered = SuggestionEvent::SuggestionAnswered {
            by: admin(),
            outcome: Outcome::PartlyAdopted,
            answer: hash(2),
            at: at(),
        };
        Given::with(())
            .given(submitted())
            .when(answer.clone())
            .then_expect_events(vec![answered.clone()]);
        let mut done = submitted();
        done.push(answered);
        Given::with(())
            .given(done.clone())
            .when(answer)
            .then_expect_error(DomainError::IllegalTransition {
                action: "answer".into(),
                state: "answered".into(),
            });
        Given::with(())
            .given(done)
            .when(SuggestionCommand::StartReview {
                by: admin(),
                at: at(),
            })
            .then_expect_error(DomainError::IllegalTransition {
                action: "review".into(),
                state: "answered".into(),
            });
        let worker = Actor {
            person: PersonId(Uuid::from_u128(2)),
            role: Role::GridWorker,
        };
        Given::with(())
            .given(submitted())
            .when(SuggestionCommand::Answer {
                by: worker,
                outcome: Outcome::Declined,
                answer: hash(2),
                at: at(),
            })
            .then_expect_error(DomainError::Forbidden(
                "only the community's admin answers suggestions".into(),
            ));
        Given::with(())
            .given_no_previous_events()
            .when(SuggestionCommand::StartReview {
                by: admin(),
                at: at(),
            })
            .then_expect_error(DomainError::IllegalTransition {
                action: "review".into(),
                state: "new".into(),
            });
    }
}
