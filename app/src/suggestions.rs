//! Suggestions: dropped into the box at a micro-space site (the domain
//! decides where boxes stand), reviewed and answered by the community's
//! admins, always with a public answer.

use domain::suggestion::{Outcome, Suggestion, SuggestionCommand, SuggestionState};
use domain::values::{Role, SuggestionId};
use store::CommunityId;
use uuid::Uuid;

use crate::commands::suggestion_stream;
use crate::content;
use crate::error::{AppError, AppResult};
use crate::reports::site_by_code;
use crate::services::{Request, Services};

/// What a request on a suggestion wrote.
#[derive(Clone, Debug)]
pub struct SuggestionWritten {
    pub suggestion: SuggestionId,
    pub position: i64,
    /// For an anonymous suggestion only, shown once.
    pub claim_secret: Option<String>,
}

/// A step an admin takes on a suggestion.
#[derive(Clone, Debug)]
pub enum SuggestionAction {
    StartReview,
    /// Adopts, partly adopts or declines, with a public answer.
    Answer {
        outcome: Outcome,
        answer: String,
    },
}

impl Services {
    /// Drops a suggestion into the box at a micro-space site. Open to
    /// anonymous callers, as reports are.
    pub async fn submit_suggestion(
        &self,
        request: &Request,
        community_id: Uuid,
        site_code: &str,
        text: &str,
        client_fingerprint: Option<&str>,
    ) -> AppResult<SuggestionWritten> {
        let (submitter, claim_secret, meta) =
            self.reporter(request, community_id, client_fingerprint)?;
        let community_key = CommunityId::new(community_id);
        let text = content::prepare_text(text, self.retry_seed(&meta, "text"))?;
        let suggestion = SuggestionId(self.new_id(&meta, "suggestion"));
        let at = self.commands.clock().now();
        let (meta, text, submitter) = (&meta, &text, &submitter);
        let outcome = self
            .directory
            .deciding(&self.commands, community_key, |setup| async move {
                let (site, details) = site_by_code(&setup.community, site_code)?;
                let site_kind = details.kind;
                let (outcome, _) = self
                    .commands
                    .execute_new::<Suggestion>(
                        community_key,
                        &suggestion_stream(suggestion.0),
                        &setup.resting(meta),
                        std::slice::from_ref(text),
                        |_| {
                            Ok(SuggestionCommand::Submit {
                                suggestion,
                                site,
                                site_kind,
                                text: text.hash.clone(),
                                submitter: submitter.clone(),
                                at,
                            })
                        },
                    )
                    .await?;
                Ok(outcome)
            })
            .await?;
        Ok(SuggestionWritten {
            suggestion,
            position: outcome.last_position,
            claim_secret,
        })
    }

    /// An admin's step on a suggestion.
    pub async fn act_on_suggestion(
        &self,
        request: &Request,
        community_id: Uuid,
        suggestion_id: Uuid,
        action: SuggestionAction,
    ) -> AppResult<SuggestionWritten> {
        let claims = request.viewer.with_role(community_id, &[Role::Admin])?;
        let mut meta = request.meta.clone();
        let by = claims.actor();
        meta.actor = Some(by);
        let mut contents = Vec::new();
        let answer = match &action {
            SuggestionAction::StartReview => None,
            SuggestionAction::Answer { outcome, answer } => {
                let answer = content::prepare_text(answer, self.retry_seed(&meta, "answer"))?;
                let hash = answer.hash.clone();
                contents.push(answer);
                Some((*outcome, hash))
            }
        };
        let at = self.commands.clock().now();
        let (outcome, _) = self
            .commands
            .execute::<Suggestion>(
                CommunityId::new(community_id),
                &suggestion_stream(suggestion_id),
                &meta,
                &contents,
                |suggestion| {
                    if suggestion.state == SuggestionState::New {
                        return Err(AppError::not_found(format!("suggestion {suggestion_id}")));
                    }
                    Ok(match &answer {
                        None => SuggestionCommand::StartReview { by, at },
                        Some((outcome, answer)) => SuggestionCommand::Answer {
                            by,
                            outcome: *outcome,
                            answer: answer.clone(),
                            at,
                        },
                    })
                },
            )
            .await?;
        Ok(SuggestionWritten {
            suggestion: SuggestionId(suggestion_id),
            position: outcome.last_position,
            claim_secret: None,
        })
    }
}
