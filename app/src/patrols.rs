//! A grid worker's patrol: start, check in at sites by their QR codes,
//! record findings (one may open a report in the same append), end.

use domain::patrol::{Patrol, PatrolCommand};
use domain::report::{Report, ReportCommand, Reporter};
use domain::values::{Actor, PatrolId, ReportId, Role, Timestamp};
use domain::Decide;
use store::CommunityId;
use uuid::Uuid;

use crate::commands::{patrol_stream, report_stream, Decision, Loaded, Ran, RequestMeta};
use crate::content;
use crate::directory::staff_scope;
use crate::error::AppResult;
use crate::reports::{site_by_code, ReportSubmission};
use crate::services::{Request, Services};

/// The report a finding opens: the patrol's site (or coordinates), a
/// category, and photos; the finding's text becomes the report's text.
#[derive(Clone, Debug, Default)]
pub struct FindingReport {
    pub category: String,
    pub photos: Vec<String>,
    pub latitude_e6: Option<i64>,
    pub longitude_e6: Option<i64>,
}

/// What a finding wrote.
#[derive(Clone, Debug)]
pub struct FindingRecorded {
    pub patrol: PatrolId,
    pub position: i64,
    /// The report the finding opened, if it opened one.
    pub report: Option<ReportId>,
}

/// A step of a patrol other than a finding.
#[derive(Clone, Debug)]
pub enum PatrolAction {
    /// Checks in at a site by the code of its QR code.
    CheckIn {
        site_code: String,
    },
    End,
}

impl Services {
    /// The caller as a grid worker of the community, with their metadata.
    fn worker(&self, request: &Request, community_id: Uuid) -> AppResult<(Actor, RequestMeta)> {
        let claims = request
            .viewer
            .with_role(community_id, &[Role::GridWorker])?;
        let mut meta = request.meta.clone();
        meta.actor = Some(claims.actor());
        Ok((claims.actor(), meta))
    }

    async fn patrol_command(
        &self,
        request: &Request,
        community_id: Uuid,
        patrol: Uuid,
        command: impl Fn(Actor, Timestamp) -> PatrolCommand,
    ) -> AppResult<i64> {
        let (actor, meta) = self.worker(request, community_id)?;
        let at = self.commands.clock().now();
        let (outcome, _) = self
            .commands
            .execute::<Patrol>(
                CommunityId::new(community_id),
                &patrol_stream(patrol),
                &meta,
                &[],
                |_| Ok(command(actor, at)),
            )
            .await?;
        Ok(outcome.last_position)
    }

    /// Starts a patrol over the grids the worker's staff record (and
    /// token) allow. Gives the patrol and the position written.
    pub async fn start_patrol(
        &self,
        request: &Request,
        community_id: Uuid,
    ) -> AppResult<(PatrolId, i64)> {
        let claims = request
            .viewer
            .with_role(community_id, &[Role::GridWorker])?;
        let community = self
            .directory
            .community(&self.commands, CommunityId::new(community_id))
            .await?;
        let grids = staff_scope(&community, claims)?.grids;
        let patrol = PatrolId(self.new_id(&request.meta, "patrol"));
        let position = self
            .patrol_command(request, community_id, patrol.0, |by, at| {
                PatrolCommand::Start {
                    patrol,
                    by,
                    grids: grids.clone(),
                    at,
                }
            })
            .await?;
        Ok((patrol, position))
    }

    /// A check-in or the end of a patrol; gives the position written.
    pub async fn act_on_patrol(
        &self,
        request: &Request,
        community_id: Uuid,
        patrol: Uuid,
        action: PatrolAction,
    ) -> AppResult<i64> {
        match action {
            PatrolAction::CheckIn { site_code } => {
                let community = self
                    .directory
                    .community(&self.commands, CommunityId::new(community_id))
                    .await?;
                let (site, details) = site_by_code(&community, &site_code)?;
                let (code, site_grid) = (details.code.clone(), details.grid);
                self.patrol_command(request, community_id, patrol, |by, at| {
                    PatrolCommand::CheckIn {
                        by,
                        site,
                        code: code.clone(),
                        site_grid,
                        at,
                    }
                })
                .await
            }
            PatrolAction::End => {
                self.patrol_command(request, community_id, patrol, |by, at| PatrolCommand::End {
                    by,
                    at,
                })
                .await
            }
        }
    }

    /// Records what the worker found; with `open_report`, the finding
    /// opens a report in the same append (both or neither).
    pub async fn record_patrol_finding(
        &self,
        request: &Request,
        community_id: Uuid,
        patrol_id: Uuid,
        text: &str,
        site_code: Option<&str>,
        open_report: Option<FindingReport>,
    ) -> AppResult<FindingRecorded> {
        let (actor, meta) = self.worker(request, community_id)?;
        let community_key = CommunityId::new(community_id);
        let community = self
            .directory
            .community(&self.commands, community_key)
            .await?;
        let (site, site_grid) = match site_code {
            Some(code) => {
                let (site, details) = site_by_code(&community, code)?;
                (Some(site), Some(details.grid))
            }
            None => (None, None),
        };
        let finding = content::prepare_text(text, self.retry_seed(&meta, "text"))?;
        let at = self.commands.clock().now();
        let opened = match open_report {
            Some(input) => {
                let input = ReportSubmission {
                    site_code: site_code.map(str::to_string),
                    latitude_e6: input.latitude_e6,
                    longitude_e6: input.longitude_e6,
                    category: input.category,
                    text: text.to_string(),
                    photos: input.photos,
                    client_fingerprint: None,
                };
                let report = ReportId(self.new_id(&meta, "report"));
                let reporter = Reporter::Resident(actor.person);
                Some(
                    self.submission(
                        &meta,
                        community_key,
                        &community,
                        &input,
                        reporter,
                        report,
                        at,
                    )
                    .await?,
                )
            }
            None => None,
        };
        let report = opened.as_ref().map(|(submit, _)| submit.report);
        let grid = site_grid.or(opened.as_ref().map(|(submit, _)| submit.grid));
        let command = PatrolCommand::RecordFinding {
            by: actor,
            text: finding.hash.clone(),
            site,
            grid,
            report,
            at,
        };
        // The finding and the report it opens are one append, decided and
        // retried (on conflicts, with backoff) by the one command loop.
        let patrol_stream_id = patrol_stream(patrol_id);
        let mut streams = vec![patrol_stream_id.clone()];
        let mut pieces = vec![finding.clone()];
        if let Some((submit, report_pieces)) = &opened {
            streams.push(report_stream(submit.report.0));
            pieces.extend(report_pieces.iter().cloned());
        }
        let commands = &self.commands;
        let (command, opened, patrol_stream_id) = (&command, &opened, &patrol_stream_id);
        let ran = commands
            .execute_all(community_key, &streams, &meta, &pieces, || async move {
                let patrol = commands
                    .load_kept::<Patrol>(community_key, patrol_stream_id)
                    .await?;
                let event = patrol.state.decide(command.clone())?;
                let mut decision = Decision::new(()).with(patrol_stream_id, &patrol, &event)?;
                if let Some((submit, _)) = opened {
                    let new_report = Loaded::stored(Report::default(), 0);
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
        Ok(FindingRecorded {
            patrol: PatrolId(patrol_id),
            position: outcome.last_position,
            report,
        })
    }
}
