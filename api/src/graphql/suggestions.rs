//! Reviewing and answering suggestions: the community's admins, always
//! with a public answer (`app::suggestions`).

use app::suggestions::SuggestionAction;
use async_graphql::{Context, Enum, Object, ID};
use uuid::Uuid;

use super::types::Written;
use super::{app, request};
use crate::error::ApiResult;

#[derive(Default)]
pub struct SuggestionMutation;

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "domain::suggestion::Outcome")]
pub enum SuggestionOutcome {
    Adopted,
    PartlyAdopted,
    Declined,
}

async fn act(
    ctx: &Context<'_>,
    community_id: Uuid,
    suggestion_id: Uuid,
    action: SuggestionAction,
) -> ApiResult<Written> {
    let written = app(ctx)
        .act_on_suggestion(&request(ctx), community_id, suggestion_id, action)
        .await?;
    Ok(Written {
        id: ID(suggestion_id.to_string()),
        position: written.position,
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
        act(
            ctx,
            community_id,
            suggestion_id,
            SuggestionAction::StartReview,
        )
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
        let action = SuggestionAction::Answer {
            outcome: outcome.into(),
            answer,
        };
        act(ctx, community_id, suggestion_id, action).await
    }
}
