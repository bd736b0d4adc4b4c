//! What residents send from a QR page: reports and suggestions. The
//! rules are the application's (`app::reports`, `app::suggestions`).

use app::reports::ReportSubmission;
use async_graphql::{Context, InputObject, Object, SimpleObject};
use uuid::Uuid;

use super::{app, request};
use crate::error::ApiResult;

#[derive(InputObject, Clone)]
pub struct ReportInput {
    /// The code of the site's QR code; or give coordinates instead.
    pub site_code: Option<String>,
    pub latitude_e6: Option<i64>,
    pub longitude_e6: Option<i64>,
    pub category: String,
    pub text: String,
    /// Up to 9 https links to photos.
    #[graphql(default)]
    pub photos: Vec<String>,
    /// Identifies the reporting device of an anonymous report (for rate
    /// limits); stored only as a hash.
    pub client_fingerprint: Option<String>,
}

#[derive(SimpleObject)]
pub struct SubmitReportPayload {
    pub report_id: Uuid,
    pub position: i64,
    /// For an anonymous report only, shown once: claim the report with it
    /// after signing up.
    pub claim_secret: Option<String>,
    /// An open report at the same site and category, likely the same problem.
    pub likely_duplicate_of: Option<Uuid>,
}

impl From<ReportInput> for ReportSubmission {
    fn from(input: ReportInput) -> Self {
        ReportSubmission {
            site_code: input.site_code,
            latitude_e6: input.latitude_e6,
            longitude_e6: input.longitude_e6,
            category: input.category,
            text: input.text,
            photos: input.photos,
            client_fingerprint: input.client_fingerprint,
        }
    }
}

#[derive(SimpleObject)]
pub struct SubmitSuggestionPayload {
    pub suggestion_id: Uuid,
    pub position: i64,
    pub claim_secret: Option<String>,
}

#[derive(Default)]
pub struct SubmitMutation;

#[Object]
impl SubmitMutation {
    /// Reports a problem from a site's QR code (or at coordinates). Open to
    /// anonymous callers, who receive a claim secret.
    async fn submit_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report: ReportInput,
    ) -> ApiResult<SubmitReportPayload> {
        let filed = app(ctx)
            .submit_report(&request(ctx), community_id, &report.into())
            .await?;
        Ok(SubmitReportPayload {
            report_id: filed.report.0,
            position: filed.position,
            claim_secret: filed.claim_secret,
            likely_duplicate_of: filed.likely_duplicate_of.map(|r| r.0),
        })
    }

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
