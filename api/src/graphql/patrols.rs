//! A grid worker's patrol: start, check in at sites by their QR codes,
//! record findings (one may open a report in the same append), end.

use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use domain::patrol::{Patrol, PatrolCommand};
use domain::report::{Report, ReportCommand, Reporter};
use domain::values::{Actor, PatrolId, ReportId, Role, SiteCode, Timestamp};
use domain::Decide;
use store::CommunityId;
use uuid::Uuid;

use super::submit::{submission, ReportInput};
use super::types::Written;
use super::{app, meta, new_id, retry_seed, viewer};
use crate::commands::{patrol_stream, report_stream, Decision, Loaded, Ran, RequestMeta};
use crate::content;
use crate::directory::staff_scope;
use crate::error::{ApiError, ApiResult};

#[derive(Default)]
pub struct PatrolMutation;

/// The report a finding opens: the patrol's site (or coordinates), a
/// category, and photos; the finding's text becomes the report's text.
#[derive(InputObject)]
pub struct FindingReportInput {
    pub category: String,
    #[graphql(default)]
    pub photos: Vec<String>,
    pub latitude_e6: Option<i64>,
    pub longitude_e6: Option<i64>,
}

#[derive(SimpleObject)]
pub struct FindingPayload {
    pub patrol_id: Uuid,
    pub position: i64,
    /// The report the finding opened, if it opened one.
    pub report_id: Option<Uuid>,
}

/// The caller as a grid worker of the community, with their metadata.
fn worker(ctx: &Context<'_>, community_id: Uuid) -> ApiResult<(Actor, RequestMeta)> {
    let claims = viewer(ctx).with_role(community_id, &[Role::GridWorker])?;
    let mut meta = meta(ctx);
    meta.actor = Some(claims.actor());
    Ok((claims.actor(), meta))
}

async fn run(
    ctx: &Context<'_>,
    community_id: Uuid,
    patrol_id: Uuid,
    command: impl Fn(Actor, Timestamp) -> ApiResult<PatrolCommand>,
) -> ApiResult<Written> {
    let (actor, meta) = worker(ctx, community_id)?;
    let app = app(ctx);
    let at = app.commands.clock().now();
    let (outcome, _) = app
        .commands
        .execute::<Patrol>(
            CommunityId::new(community_id),
            &patrol_stream(patrol_id),
            &meta,
            &[],
            |_| command(actor, at),
        )
        .await?;
    Ok(Written {
        id: ID(patrol_id.to_string()),
        position: outcome.last_position,
    })
}

#[Object]
impl PatrolMutation {
    async fn start_patrol(&self, ctx: &Context<'_>, community_id: Uuid) -> ApiResult<Written> {
        let claims = viewer(ctx).with_role(community_id, &[Role::GridWorker])?;
        let app = app(ctx);
        let community = app
            .directory
            .community(&app.commands, CommunityId::new(community_id))
            .await?;
        let grids = staff_scope(&community, claims)?.grids;
        let patrol = new_id(ctx, "patrol");
        run(ctx, community_id, patrol, |by, at| {
            Ok(PatrolCommand::Start {
                patrol: PatrolId(patrol),
                by,
                grids: grids.clone(),
                at,
            })
        })
        .await
    }

    /// Checks in at a site by the code of its QR code.
    async fn check_in_patrol(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        patrol_id: Uuid,
        site_code: String,
    ) -> ApiResult<Written> {
        let app = app(ctx);
        let community = app
            .directory
            .community(&app.commands, CommunityId::new(community_id))
            .await?;
        let code = SiteCode::parse(&site_code)?;
        let (site, details) = community
            .site_by_code(&code)
            .ok_or_else(|| ApiError::not_found(format!("no active site with code {code}")))?;
        let site_grid = details.grid;
        run(ctx, community_id, patrol_id, |by, at| {
            Ok(PatrolCommand::CheckIn {
                by,
                site,
                code: code.clone(),
                site_grid,
                at,
            })
        })
        .await
    }

    /// Records what the worker found; with `openReport`, the finding opens
    /// a report in the same append (both or neither).
    async fn record_patrol_finding(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        patrol_id: Uuid,
        text: String,
        site_code: Option<String>,
        open_report: Option<FindingReportInput>,
    ) -> ApiResult<FindingPayload> {
        let (actor, meta) = worker(ctx, community_id)?;
        let app = app(ctx);
        let community_key = CommunityId::new(community_id);
        let community = app
            .directory
            .community(&app.commands, community_key)
            .await?;
        let (site, site_grid) = match &site_code {
            Some(code) => {
                let code = SiteCode::parse(code)?;
                let (site, details) = community.site_by_code(&code).ok_or_else(|| {
                    ApiError::not_found(format!("no active site with code {code}"))
                })?;
                (Some(site), Some(details.grid))
            }
            None => (None, None),
        };
        let finding = content::prepare_text(&text, retry_seed(ctx, "text"))?;
        let at = app.commands.clock().now();
        let opened = match open_report {
            Some(input) => {
                let input = ReportInput {
                    site_code: site_code.clone(),
                    latitude_e6: input.latitude_e6,
                    longitude_e6: input.longitude_e6,
                    category: input.category,
                    text: text.clone(),
                    photos: input.photos,
                    client_fingerprint: None,
                };
                let report = ReportId(new_id(ctx, "report"));
                let reporter = Reporter::Resident(actor.person);
                Some(
                    submission(ctx, community_key, &community, &input, reporter, report, at)
                        .await?,
                )
            }
            None => None,
        };
        let report_id = opened.as_ref().map(|(submit, _)| submit.report);
        let grid = site_grid.or(opened.as_ref().map(|(submit, _)| submit.grid));
        let command = PatrolCommand::RecordFinding {
            by: actor,
            text: finding.hash.clone(),
            site,
            grid,
            report: report_id,
            at,
        };
        // The finding and the report it opens are one append, decided and
        // retried (on conflicts, with backoff) by the one command loop.
        let patrol_id_stream = patrol_stream(patrol_id);
        let mut streams = vec![patrol_id_stream.clone()];
        let mut pieces = vec![finding.clone()];
        if let Some((submit, report_pieces)) = &opened {
            streams.push(report_stream(submit.report.0));
            pieces.extend(report_pieces.iter().cloned());
        }
        let commands = &app.commands;
        let (command, opened, patrol_id_stream) = (&command, &opened, &patrol_id_stream);
        let ran = commands
            .execute_all(community_key, &streams, &meta, &pieces, || async move {
                let patrol = commands
                    .load_kept::<Patrol>(community_key, patrol_id_stream)
                    .await?;
                let event = patrol.state.decide(command.clone())?;
                let mut decision = Decision::new(()).with(patrol_id_stream, &patrol, &event)?;
                if let Some((submit, _)) = opened {
                    let new_report = Loaded {
                        state: Report::default(),
                        version: 0,
                    };
                    let submitted = new_report
                        .state
                        .decide(ReportCommand::Submit(Box::new(submit.clone())))?;
                    decision =
                        decision.with(&report_stream(submit.report.0), &new_report, &submitted)?;
                }
                Ok(decision)
            })
            .await?;
        let outcome = match ran {
            Ran::Appended(outcome, ()) | Ran::Repeated(outcome) => outcome,
        };
        Ok(FindingPayload {
            patrol_id,
            position: outcome.last_position,
            report_id: report_id.map(|r| r.0),
        })
    }

    async fn end_patrol(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        patrol_id: Uuid,
    ) -> ApiResult<Written> {
        run(ctx, community_id, patrol_id, |by, at| {
            Ok(PatrolCommand::End { by, at })
        })
        .await
    }
}
