//! Suggestions: dropped into the box at a micro-space site, reviewed and
//! answered by the community's admins, always with a public answer; and
//! the list of them (`app::suggestions`).

use crate::error::{ApiError, ApiResult};
use crate::graphql::types::*;
use crate::graphql::{app, fresh, page_size, request, viewer};
use app::clock::to_datetime;
use app::content;
use app::suggestions::SuggestionAction;
use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use projections::suggestions::{SuggestionFilter, SuggestionRow};
use store::CommunityId;
use uuid::Uuid;

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

#[derive(SimpleObject)]
pub struct SubmitSuggestionPayload {
    pub suggestion_id: Uuid,
    pub position: i64,
    pub claim_secret: Option<String>,
}

#[derive(InputObject, Default)]
pub struct SuggestionFilterInput {
    pub site_id: Option<Uuid>,
    pub state: Option<String>,
    pub outcome: Option<String>,
    pub mine: Option<bool>,
}

#[derive(Default)]
pub struct SuggestionQuery;

#[Object]
impl SuggestionQuery {
    /// Suggestions with their public answers, newest first.
    async fn suggestions(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        filter: Option<SuggestionFilterInput>,
        first: Option<i32>,
        after: Option<String>,
        at_least: Option<i64>,
    ) -> ApiResult<Connection<String, SuggestionNode>> {
        let claims = viewer(ctx).member_of(community_id)?;
        let limit = page_size(first)?;
        let after = after.as_deref().map(decode_cursor).transpose()?;
        fresh(ctx, projections::suggestions::NAME, community_id, at_least).await?;
        let filter = filter.unwrap_or_default();
        let query = SuggestionFilter {
            site: filter.site_id,
            state: filter.state,
            outcome: filter.outcome,
            submitter: filter.mine.filter(|m| *m).map(|_| claims.sub),
        };
        let community = CommunityId::new(community_id);
        let pool = app(ctx).commands.store().pool();
        let mut rows =
            projections::suggestions::list_suggestions(pool, community, &query, after, limit + 1)
                .await?;
        let has_next = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let mut connection = Connection::new(after.is_some(), has_next);
        connection.edges.extend(rows.into_iter().map(|row| {
            let privileged = sees_hidden(claims) || row.submitter_id == Some(claims.sub);
            Edge::new(
                encode_cursor(row.submitted_at, row.suggestion_id),
                SuggestionNode {
                    community,
                    row,
                    privileged,
                },
            )
        }));
        Ok(connection)
    }
}

#[derive(Default)]
pub struct SubmitSuggestionMutation;

#[Object]
impl SubmitSuggestionMutation {
    /// Drops a suggestion into the box at a micro-space site.
    async fn submit_suggestion(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        site_code: String,
        text: String,
        client_fingerprint: Option<String>,
    ) -> ApiResult<SubmitSuggestionPayload> {
        let written = app(ctx)
            .submit_suggestion(
                &request(ctx),
                community_id,
                &site_code,
                &text,
                client_fingerprint.as_deref(),
            )
            .await?;
        Ok(SubmitSuggestionPayload {
            suggestion_id: written.suggestion.0,
            position: written.position,
            claim_secret: written.claim_secret,
        })
    }
}

pub struct SuggestionNode {
    pub community: CommunityId,
    pub row: SuggestionRow,
    pub privileged: bool,
}

#[Object(name = "Suggestion")]
impl SuggestionNode {
    async fn id(&self) -> Uuid {
        self.row.suggestion_id
    }
    async fn site_id(&self) -> Uuid {
        self.row.site_id
    }
    async fn text(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        content::text_of(
            app(ctx).commands.store(),
            self.community,
            &self.row.text_hash,
        )
        .await
        .map_err(ApiError::from)
    }
    async fn anonymous(&self) -> bool {
        self.row.anonymous
    }
    async fn submitter_id(&self) -> Option<Uuid> {
        self.row.submitter_id.filter(|_| self.privileged)
    }
    /// `submitted`, `under_review` or `answered`.
    async fn state(&self) -> &str {
        &self.row.state
    }
    /// `adopted`, `partly_adopted` or `declined`, once answered.
    async fn outcome(&self) -> Option<&str> {
        self.row.outcome.as_deref()
    }
    /// The community's public answer.
    async fn answer(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        match &self.row.answer_hash {
            Some(hash) => content::text_of(app(ctx).commands.store(), self.community, hash)
                .await
                .map_err(ApiError::from),
            None => Ok(None),
        }
    }
    async fn submitted_at(&self) -> DateTime<Utc> {
        to_datetime(self.row.submitted_at)
    }
    async fn answered_at(&self) -> Option<DateTime<Utc>> {
        self.row.answered_at.map(to_datetime)
    }
    async fn position(&self) -> i64 {
        self.row.last_position
    }
}
