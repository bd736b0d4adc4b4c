//! A report's lifecycle after submission. Every mutation checks the role
//! here, the caller's scope against the report (a grid worker acts on
//! reports of their grids, a department on reports escalated to it), and
//! leaves the rest of the rules to the domain.

use async_graphql::{Context, Enum, InputObject, Object};
use domain::report::{RejectionReason, Report, ReportCommand, ReportState as DomainState};
use domain::values::{Actor, DepartmentId, PersonId, ReportId, Role, Timestamp};
use store::CommunityId;
use uuid::Uuid;

use super::submit::claim_secret_hash;
use super::types::{ReportPayload, ReportState};
use super::{app, meta, retry_seed, viewer};
use crate::commands::report_stream;
use crate::content::{self, Prepared};
use crate::directory::staff_scope;
use crate::error::{ApiError, ApiResult};

use Role::{Admin, Citizen, Department, GridWorker, Inspector};

#[derive(Default)]
pub struct ReportMutation;

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum RejectionKind {
    DuplicateOf,
    NotActionable,
    OutOfScope,
    Abusive,
}

#[derive(InputObject)]
pub struct RejectionInput {
    pub kind: RejectionKind,
    /// The original, when rejecting a duplicate.
    pub duplicate_of: Option<Uuid>,
}

/// Runs `command` on a report as a caller with one of `roles`, after the
/// scope checks; stores `contents` once the command is decided.
async fn act(
    ctx: &Context<'_>,
    community_id: Uuid,
    report_id: Uuid,
    roles: &[Role],
    contents: &[Prepared],
    command: impl Fn(&Report, Actor, Timestamp) -> ApiResult<ReportCommand>,
) -> ApiResult<(ReportPayload, Report)> {
    let claims = viewer(ctx).with_role(community_id, roles)?;
    let app = app(ctx);
    let community = CommunityId::new(community_id);
    let directory = app.directory.community(&app.commands, community).await?;
    let scope = staff_scope(&directory, claims)?;
    let actor = claims.actor();
    let mut meta = meta(ctx);
    meta.actor = Some(actor);
    let at = app.commands.clock().now();
    let (outcome, report) = app
        .commands
        .execute::<Report>(
            community,
            &report_stream(report_id),
            &meta,
            contents,
            |report| {
                let Some(submission) = report.submission.as_deref() else {
                    return Err(ApiError::not_found(format!("report {report_id}")));
                };
                match actor.role {
                    GridWorker if !scope.grids.contains(&submission.grid) => Err(
                        ApiError::forbidden("the report is not in one of your grids"),
                    ),
                    Department
                        if report.escalated_to.is_none()
                            || report.escalated_to != scope.department =>
                    {
                        Err(ApiError::forbidden(
                            "the report is not escalated to your department",
                        ))
                    }
                    _ => command(report, actor, at),
                }
            },
        )
        .await?;
    let payload = ReportPayload {
        report_id,
        position: outcome.last_position,
        state: state_of(report.state),
    };
    Ok((payload, report))
}

fn state_of(state: DomainState) -> Option<ReportState> {
    serde_json::to_value(state)
        .ok()
        .and_then(|value| serde_json::from_value(value).ok())
}

/// Like `act`, for commands that need nothing but who and when.
async fn simple(
    ctx: &Context<'_>,
    community_id: Uuid,
    report_id: Uuid,
    roles: &[Role],
    command: fn(Actor, Timestamp) -> ReportCommand,
) -> ApiResult<ReportPayload> {
    let (payload, _) = act(ctx, community_id, report_id, roles, &[], |_, by, at| {
        Ok(command(by, at))
    })
    .await?;
    Ok(payload)
}

/// Like `act`, for commands that carry a text (a note, a reason).
async fn with_text(
    ctx: &Context<'_>,
    community_id: Uuid,
    report_id: Uuid,
    roles: &[Role],
    text: &str,
    command: fn(Actor, domain::values::ContentHash, Timestamp) -> ReportCommand,
) -> ApiResult<ReportPayload> {
    let text = content::prepare_text(text, retry_seed(ctx, "text"))?;
    let hash = text.hash.clone();
    let (payload, _) = act(ctx, community_id, report_id, roles, &[text], |_, by, at| {
        Ok(command(by, hash.clone(), at))
    })
    .await?;
    Ok(payload)
}

#[Object]
impl ReportMutation {
    async fn accept_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        simple(
            ctx,
            community_id,
            report_id,
            &[Admin, GridWorker],
            |by, at| ReportCommand::Accept { by, at },
        )
        .await
    }

    async fn reject_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        reason: RejectionInput,
    ) -> ApiResult<ReportPayload> {
        let reason = match (reason.kind, reason.duplicate_of) {
            (RejectionKind::DuplicateOf, Some(original)) => {
                RejectionReason::DuplicateOf(ReportId(original))
            }
            (RejectionKind::DuplicateOf, None) => {
                return Err(ApiError::validation("duplicate_of: name the original"))
            }
            (RejectionKind::NotActionable, _) => RejectionReason::NotActionable,
            (RejectionKind::OutOfScope, _) => RejectionReason::OutOfScope,
            (RejectionKind::Abusive, _) => RejectionReason::Abusive,
        };
        let (payload, _) = act(
            ctx,
            community_id,
            report_id,
            &[Admin, GridWorker],
            &[],
            |_, by, at| {
                Ok(ReportCommand::Reject {
                    by,
                    reason: reason.clone(),
                    at,
                })
            },
        )
        .await?;
        Ok(payload)
    }

    /// Assigns a grid worker of the report's grid.
    async fn assign_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        worker_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        let app = app(ctx);
        let community = app
            .directory
            .community(&app.commands, CommunityId::new(community_id))
            .await?;
        let worker = PersonId(worker_id);
        let worker_grids = community.worker_grids(worker);
        let (payload, _) = act(
            ctx,
            community_id,
            report_id,
            &[Admin, GridWorker],
            &[],
            |_, by, at| {
                Ok(ReportCommand::Assign {
                    by,
                    worker,
                    worker_grids: worker_grids.clone(),
                    at,
                })
            },
        )
        .await?;
        Ok(payload)
    }

    /// Escalates to a department: the one named, or the category's.
    async fn escalate_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        department_id: Option<Uuid>,
    ) -> ApiResult<ReportPayload> {
        let app = app(ctx);
        let community = app
            .directory
            .community(&app.commands, CommunityId::new(community_id))
            .await?;
        let (payload, _) = act(
            ctx,
            community_id,
            report_id,
            &[Admin, GridWorker],
            &[],
            |report, by, at| {
                let department = department_id
                    .map(DepartmentId)
                    .or_else(|| report.submission.as_ref().and_then(|s| s.department))
                    .ok_or_else(|| {
                        ApiError::validation("the category has no department; name one")
                    })?;
                if !community.departments.contains_key(&department) {
                    return Err(ApiError::not_found(format!("department {department}")));
                }
                Ok(ReportCommand::Escalate { by, department, at })
            },
        )
        .await?;
        Ok(payload)
    }

    async fn start_work(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        simple(
            ctx,
            community_id,
            report_id,
            &[Admin, GridWorker, Department],
            |by, at| ReportCommand::StartWork { by, at },
        )
        .await
    }

    async fn resolve_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        notes: String,
        #[graphql(default)] photos: Vec<String>,
    ) -> ApiResult<ReportPayload> {
        let notes = content::prepare_text(&notes, retry_seed(ctx, "notes"))?;
        let photos = content::prepare_photos(&photos, retry_seed(ctx, "photos"))?;
        let mut pieces = vec![notes.clone()];
        let attached = photos.map(|(prepared, attached)| {
            pieces.push(prepared);
            attached
        });
        let roles = [Admin, GridWorker, Department];
        let (payload, _) = act(
            ctx,
            community_id,
            report_id,
            &roles,
            &pieces,
            |_, by, at| {
                Ok(ReportCommand::Resolve {
                    by,
                    notes: notes.hash.clone(),
                    photos: attached.clone(),
                    at,
                })
            },
        )
        .await?;
        Ok(payload)
    }

    /// The reporter or an inspector confirms the problem is gone.
    async fn confirm_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        simple(
            ctx,
            community_id,
            report_id,
            &[Citizen, Inspector, Admin],
            |by, at| ReportCommand::Confirm { by, at },
        )
        .await
    }

    async fn reopen_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        reason: String,
    ) -> ApiResult<ReportPayload> {
        with_text(
            ctx,
            community_id,
            report_id,
            &[Citizen, Inspector, Admin],
            &reason,
            |by, reason, at| ReportCommand::Reopen { by, reason, at },
        )
        .await
    }

    async fn close_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        simple(
            ctx,
            community_id,
            report_id,
            &[Admin, Inspector],
            |by, at| ReportCommand::Close { by, at },
        )
        .await
    }

    async fn comment_on_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        text: String,
    ) -> ApiResult<ReportPayload> {
        let roles = [Citizen, Admin, GridWorker, Department, Inspector];
        with_text(
            ctx,
            community_id,
            report_id,
            &roles,
            &text,
            |by, text, at| ReportCommand::Comment { by, text, at },
        )
        .await
    }

    /// Links an anonymous report to the signed-in resident, with the
    /// secret its QR page received.
    async fn claim_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        claim_secret: String,
    ) -> ApiResult<ReportPayload> {
        let secret_hash = claim_secret_hash(&claim_secret)?;
        let (payload, _) = act(
            ctx,
            community_id,
            report_id,
            &[Citizen],
            &[],
            |_, by, at| {
                Ok(ReportCommand::Claim {
                    resident: by.person,
                    secret_hash: secret_hash.clone(),
                    at,
                })
            },
        )
        .await?;
        Ok(payload)
    }

    /// "Me too": a resident supports an open report instead of filing another.
    async fn support_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        simple(ctx, community_id, report_id, &[Citizen], |by, at| {
            ReportCommand::Support {
                resident: by.person,
                at,
            }
        })
        .await
    }

    /// Merges a duplicate into its original: the duplicate closes, the
    /// original counts one more reporter.
    async fn merge_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        original_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        let app = app(ctx);
        let original = app
            .commands
            .load::<Report>(CommunityId::new(community_id), &report_stream(original_id))
            .await?;
        if !original.state.state.is_active() {
            return Err(ApiError::validation(
                "the original must be an active report (not rejected, closed or merged)",
            ));
        }
        let (payload, _) = act(
            ctx,
            community_id,
            report_id,
            &[Admin, GridWorker],
            &[],
            |_, by, at| {
                Ok(ReportCommand::MergeInto {
                    by,
                    original: ReportId(original_id),
                    at,
                })
            },
        )
        .await?;
        Ok(payload)
    }

    async fn hide_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
        reason: String,
    ) -> ApiResult<ReportPayload> {
        with_text(
            ctx,
            community_id,
            report_id,
            &[Admin],
            &reason,
            |by, reason, at| ReportCommand::Hide { by, reason, at },
        )
        .await
    }

    async fn unhide_report(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        simple(ctx, community_id, report_id, &[Admin], |by, at| {
            ReportCommand::Unhide { by, at }
        })
        .await
    }

    /// Removes the report's text for good (the event keeps its hash).
    async fn redact_report_text(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        let (payload, report) = act(ctx, community_id, report_id, &[Admin], &[], |_, by, at| {
            Ok(ReportCommand::RedactText { by, at })
        })
        .await?;
        let text = report.submission.as_ref().map(|s| s.text.clone());
        erase(ctx, community_id, text.into_iter().collect()).await?;
        Ok(payload)
    }

    /// Removes the report's photo links for good, resolution photos too.
    async fn redact_report_photos(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        let (payload, report) = act(ctx, community_id, report_id, &[Admin], &[], |_, by, at| {
            Ok(ReportCommand::RedactPhotos { by, at })
        })
        .await?;
        let mut photos: Vec<_> = report
            .submission
            .as_ref()
            .and_then(|s| s.photos.as_ref())
            .map(|p| p.content().clone())
            .into_iter()
            .collect();
        photos.extend(report.resolution_photos.iter().cloned());
        erase(ctx, community_id, photos).await?;
        Ok(payload)
    }

    /// The reporter hides their name from the public.
    async fn hide_reporter_name(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        report_id: Uuid,
    ) -> ApiResult<ReportPayload> {
        simple(ctx, community_id, report_id, &[Citizen], |by, at| {
            ReportCommand::HideReporterName { by, at }
        })
        .await
    }
}

/// Erases redacted content. Runs after the redaction event is stored; a
/// repeat of the redaction erases again, so a failure here is retried by
/// the moderator repeating the mutation.
async fn erase(
    ctx: &Context<'_>,
    community_id: Uuid,
    hashes: Vec<domain::values::ContentHash>,
) -> ApiResult<()> {
    let app = app(ctx);
    let by = viewer(ctx).member_of(community_id)?.sub.to_string();
    for hash in hashes {
        content::erase(
            app.commands.store(),
            CommunityId::new(community_id),
            &hash,
            &by,
            "redacted by a moderator",
        )
        .await?;
    }
    Ok(())
}
