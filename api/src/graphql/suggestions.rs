//! Reviewing and answering suggestions: the community's admins, always
//! with a public answer.

use async_graphql::{Context, Enum, Object, ID};
use domain::suggestion::{Outcome, Suggestion, SuggestionCommand};
use domain::values::Role;
use store::CommunityId;
use uuid::Uuid;

use super::types::Written;
use super::{app, meta, retry_seed, viewer};
use crate::commands::suggestion_stream;
use crate::content::{self, Prepared};
use crate::error::{ApiError, ApiResult};

#[derive(Default)]
pub struct SuggestionMutation;

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "domain::suggestion::Outcome")]
pub enum SuggestionOutcome {
    Adopted,
    PartlyAdopted,
    Declined,
}

async fn run(
    ctx: &Context<'_>,
    community_id: Uuid,
    suggestion_id: Uuid,
    contents: &[Prepared],
    command: impl Fn(domain::values::Actor, domain::values::Timestamp) -> SuggestionCommand,
) -> ApiResult<Written> {
    let claims = viewer(ctx).with_role(community_id, &[Role::Admin])?;
    let app = app(ctx);
    let mut meta = meta(ctx);
    meta.actor = Some(claims.actor());
    let at = app.commands.clock().now();
    let (outcome, _) = app
        .commands
        .execute::<Suggestion>(
            CommunityId::new(community_id),
            &suggestion_stream(suggestion_id),
            &meta,
            contents,
            |suggestion| {
                if suggestion.state == domain::suggestion::SuggestionState::New {
                    return Err(ApiError::not_found(format!("suggestion {suggestion_id}")));
                }
                Ok(command(claims.actor(), at))
            },
        )
        .await?;
    Ok(Written {
        id: ID(suggestion_id.to_string()),
        position: outcome.last_position,
    })
}

#[Object]
impl SuggestionMutation {
    async fn start_suggestion_review(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        suggestion_id: Uuid,
    ) -> ApiResult<Written> {
        run(ctx, community_id, suggestion_id, &[], |by, at| {
            SuggestionCommand::StartReview { by, at }
        })
        .await
    }

    /// Adopts, partly adopts or declines, with a public answer.
    async fn answer_suggestion(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        suggestion_id: Uuid,
        outcome: SuggestionOutcome,
        answer: String,
    ) -> ApiResult<Written> {
        let answer = content::prepare_text(&answer, retry_seed(ctx, "answer"))?;
        let hash = answer.hash.clone();
        let outcome: Outcome = outcome.into();
        run(ctx, community_id, suggestion_id, &[answer], |by, at| {
            SuggestionCommand::Answer {
                by,
                outcome,
                answer: hash.clone(),
                at,
            }
        })
        .await
    }
}
