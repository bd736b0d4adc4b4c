//! Suggestion lists with their public answers.

use async_trait::async_trait;
use deadpool_postgres::{Pool, Transaction};
use domain::report::Reporter;
use domain::streams::StreamKind;
use domain::suggestion::SuggestionEvent;
use store::{CommunityId, RecordedEvent};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::generation::reading_schema;
use crate::runner::{decode, entity_id, Change};
use crate::sql::{execute, query};
use crate::Projection;

pub const NAME: &str = "suggestions";

pub struct SuggestionsProjection;

const TABLES_SQL: &str = "
CREATE TABLE {schema}.suggestions (
    community_id uuid NOT NULL,
    suggestion_id uuid NOT NULL,
    site_id uuid NOT NULL,
    text_hash text NOT NULL,
    submitter_id uuid,
    anonymous boolean NOT NULL,
    state text NOT NULL,
    outcome text,
    answer_hash text,
    answered_by uuid,
    submitted_at bigint NOT NULL,
    answered_at bigint,
    last_position bigint NOT NULL,
    PRIMARY KEY (community_id, suggestion_id)
);
CREATE INDEX ON {schema}.suggestions (community_id, submitted_at DESC, suggestion_id DESC);
";

#[async_trait]
impl Projection for SuggestionsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn streams(&self) -> &'static [StreamKind] {
        &[StreamKind::Suggestion]
    }

    fn tables_sql(&self) -> String {
        TABLES_SQL.to_string()
    }

    /// Event by event: these events are few.
    async fn apply_batch(
        &self,
        transaction: &Transaction<'_>,
        schema: &str,
        events: &[RecordedEvent],
        _changes: &mut Vec<Change>,
    ) -> Result<(), ProjectionError> {
        for event in events {
            apply(transaction, schema, event).await?;
        }
        Ok(())
    }
}

async fn apply(
    transaction: &Transaction<'_>,
    schema: &str,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    if crate::runner::kind(event) != Some(StreamKind::Suggestion) {
        return Ok(());
    }
    let community = event.community_id.as_uuid();
    match decode::<SuggestionEvent>(event)? {
        SuggestionEvent::SuggestionSubmitted {
            suggestion,
            site,
            text,
            submitter,
            at,
        } => {
            let submitter_id = match submitter {
                Reporter::Resident(person) => Some(person.0),
                Reporter::Anonymous { .. } => None,
            };
            let sql = format!(
                "INSERT INTO {schema}.suggestions (community_id, suggestion_id, site_id, \
                 text_hash, submitter_id, anonymous, state, submitted_at, last_position) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'submitted', $7, $8)"
            );
            execute(
                transaction,
                &sql,
                &[
                    &community,
                    &suggestion.0,
                    &site.0,
                    &text.as_str(),
                    &submitter_id,
                    &submitter_id.is_none(),
                    &at.micros(),
                    &event.position,
                ],
            )
            .await?;
        }
        SuggestionEvent::SuggestionReviewStarted { .. } => {
            let sql = format!(
                "UPDATE {schema}.suggestions SET state = 'under_review', last_position = $3 \
                 WHERE community_id = $1 AND suggestion_id = $2"
            );
            execute(
                transaction,
                &sql,
                &[&community, &suggestion_id(event)?, &event.position],
            )
            .await?;
        }
        SuggestionEvent::SuggestionAnswered {
            by,
            outcome,
            answer,
            at,
        } => {
            let sql = format!(
                "UPDATE {schema}.suggestions SET state = 'answered', outcome = $3, \
                 answer_hash = $4, answered_by = $5, answered_at = $6, last_position = $7 \
                 WHERE community_id = $1 AND suggestion_id = $2"
            );
            let outcome = serde_json::to_value(outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string));
            execute(
                transaction,
                &sql,
                &[
                    &community,
                    &suggestion_id(event)?,
                    &outcome,
                    &answer.as_str(),
                    &by.person.0,
                    &at.micros(),
                    &event.position,
                ],
            )
            .await?;
        }
    }
    Ok(())
}

fn suggestion_id(event: &RecordedEvent) -> Result<Uuid, ProjectionError> {
    entity_id(event, "suggestion")
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuggestionRow {
    pub suggestion_id: Uuid,
    pub site_id: Uuid,
    pub text_hash: String,
    pub submitter_id: Option<Uuid>,
    pub anonymous: bool,
    pub state: String,
    pub outcome: Option<String>,
    pub answer_hash: Option<String>,
    pub answered_by: Option<Uuid>,
    pub submitted_at: i64,
    pub answered_at: Option<i64>,
    pub last_position: i64,
}

impl SuggestionRow {
    fn from_row(row: &Row) -> Self {
        SuggestionRow {
            suggestion_id: row.get(0),
            site_id: row.get(1),
            text_hash: row.get(2),
            submitter_id: row.get(3),
            anonymous: row.get(4),
            state: row.get(5),
            outcome: row.get(6),
            answer_hash: row.get(7),
            answered_by: row.get(8),
            submitted_at: row.get(9),
            answered_at: row.get(10),
            last_position: row.get(11),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct SuggestionFilter {
    pub site: Option<Uuid>,
    pub state: Option<String>,
    pub outcome: Option<String>,
    pub submitter: Option<Uuid>,
}

/// A page of a community's suggestions, newest first, after the suggestion
/// `(submitted_at, id)`.
pub async fn list_suggestions(
    pool: &Pool,
    community: CommunityId,
    filter: &SuggestionFilter,
    after: Option<(i64, Uuid)>,
    limit: i64,
) -> Result<Vec<SuggestionRow>, ProjectionError> {
    let schema = reading_schema(NAME);
    let sql = format!(
        "SELECT suggestion_id, site_id, text_hash, submitter_id, anonymous, state, outcome, \
         answer_hash, answered_by, submitted_at, answered_at, last_position \
         FROM {schema}.suggestions WHERE community_id = $1 \
         AND ($2::uuid IS NULL OR site_id = $2) AND ($3::text IS NULL OR state = $3) \
         AND ($4::text IS NULL OR outcome = $4) AND ($5::uuid IS NULL OR submitter_id = $5) \
         AND ($6::bigint IS NULL OR (submitted_at, suggestion_id) < ($6, $7::uuid)) \
         ORDER BY submitted_at DESC, suggestion_id DESC LIMIT $8"
    );
    let client = pool.get().await?;
    let rows = query(
        &client,
        &sql,
        &[
            &community.as_uuid(),
            &filter.site,
            &filter.state,
            &filter.outcome,
            &filter.submitter,
            &after.map(|a| a.0),
            &after.map(|a| a.1),
            &limit,
        ],
    )
    .await?;
    Ok(rows.iter().map(SuggestionRow::from_row).collect())
}
