//! Reports: what residents file from a QR page (or a patrol finding
//! opens), and every step staff and residents take on one after. The
//! rules that are not the aggregate's own live here: where a report is,
//! whether it is likely a duplicate, who may act on which report, who may
//! see whom. Everything is validated before anything is stored, so a
//! refused request leaves nothing behind.

use std::sync::Arc;

use domain::community::Community;
use domain::report::{
    Place, RejectionReason, Report, ReportCommand, ReportEvent, Reporter, SubmitReport,
};
use domain::values::{
    Actor, CategoryCode, ContentHash, DepartmentId, GeoPoint, GridId, PersonId, ReportId, Role,
    SiteCode, SiteId, Timestamp,
};
use projections::reports::NewestOpen;
use sha2::{Digest, Sha256};
use store::CommunityId;
use uuid::Uuid;

use crate::caller::{Claims, Viewer};
use crate::commands::{report_stream, RequestMeta};
use crate::content::{self, Prepared};
use crate::directory::{staff_scope, SetUp};
use crate::error::{AppError, AppResult};
use crate::services::{Request, Services};

use Role::{Admin, Auditor, Citizen, Department, GridWorker, Inspector};

/// A point is inside the community when a site of it lies this close: the
/// community is where its sites are.
const NEAR_SITE_METRES_MAX: f64 = 2_000.0;
/// Events of the log's tail read at most for reports the read model has not
/// folded yet; past that, only the newest are looked at.
const DUPLICATE_TAIL_EVENTS_MAX: i64 = 5_000;
/// Candidates from the read model checked against their streams at most.
const DUPLICATE_CANDIDATES_MAX: i64 = 5;
/// The longest device fingerprint an anonymous client may send.
const FINGERPRINT_BYTES_MAX: usize = 200;

/// A report as a resident files it.
#[derive(Clone, Debug, Default)]
pub struct ReportSubmission {
    /// The code of the site's QR code; or give coordinates instead.
    pub site_code: Option<String>,
    pub latitude_e6: Option<i64>,
    pub longitude_e6: Option<i64>,
    pub category: String,
    pub text: String,
    /// Up to 9 https links to photos.
    pub photos: Vec<String>,
    /// Identifies the reporting device of an anonymous report; stored only
    /// inside a hash.
    pub client_fingerprint: Option<String>,
}

/// What filing a report gave.
#[derive(Clone, Debug)]
pub struct ReportFiled {
    pub report: ReportId,
    pub position: i64,
    /// For an anonymous report only, shown once: claim the report with it
    /// after signing up.
    pub claim_secret: Option<String>,
    /// An open report at the same site and category, likely the same problem.
    pub likely_duplicate_of: Option<ReportId>,
}

/// Where a report is: the site (and its grid) or the nearest site's grid.
pub struct Located {
    pub place: Place,
    pub grid: GridId,
    pub site: Option<SiteId>,
}

/// An active site by the code of its QR code.
pub fn site_by_code<'a>(
    community: &'a Community,
    code: &str,
) -> AppResult<(SiteId, &'a domain::community::Site)> {
    let code = SiteCode::parse(code)?;
    community
        .site_by_code(&code)
        .ok_or_else(|| AppError::not_found(format!("no active site with code {code}")))
}

pub fn locate(
    community: &Community,
    site_code: Option<&str>,
    latitude_e6: Option<i64>,
    longitude_e6: Option<i64>,
) -> AppResult<Located> {
    match (site_code, latitude_e6, longitude_e6) {
        (Some(code), None, None) => {
            let (id, site) = site_by_code(community, code)?;
            Ok(Located {
                place: Place::Site {
                    site: id,
                    code: site.code.clone(),
                },
                grid: site.grid,
                site: Some(id),
            })
        }
        (None, Some(latitude), Some(longitude)) => {
            let point = GeoPoint::parse(latitude, longitude)?;
            let nearest = community
                .sites
                .values()
                .filter(|site| site.active)
                .filter_map(|site| Some((distance_metres(point, site.point?), site.grid)))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            match nearest {
                Some((metres, grid)) if metres <= NEAR_SITE_METRES_MAX => Ok(Located {
                    place: Place::Point(point),
                    grid,
                    site: None,
                }),
                _ => Err(AppError::validation(
                    "coordinates",
                    "they are outside the community",
                )),
            }
        }
        _ => Err(AppError::validation(
            "place",
            "give a site code, or both coordinates, not both",
        )),
    }
}

/// Equirectangular distance: exact enough within a few kilometres.
fn distance_metres(a: GeoPoint, b: GeoPoint) -> f64 {
    const EARTH_RADIUS_METRES: f64 = 6_371_000.0;
    let to_radians = |e6: i32| f64::from(e6) / 1e6 * std::f64::consts::PI / 180.0;
    let (lat_a, lat_b) = (to_radians(a.latitude_e6()), to_radians(b.latitude_e6()));
    let x = (to_radians(b.longitude_e6()) - to_radians(a.longitude_e6()))
        * ((lat_a + lat_b) / 2.0).cos();
    let y = lat_b - lat_a;
    (x * x + y * y).sqrt() * EARTH_RADIUS_METRES
}

fn hash_of(text: &str) -> AppResult<ContentHash> {
    Ok(ContentHash::parse(&hex::encode(Sha256::digest(
        text.as_bytes(),
    )))?)
}

/// The hash a claim secret is checked by.
pub fn claim_secret_hash(secret: &str) -> AppResult<ContentHash> {
    hash_of(secret.trim())
}

/// Staff who work reports, and auditors: they see hidden reports, who
/// reported what, and each step's stored fields.
pub fn is_report_staff(claims: Option<&Claims>) -> bool {
    claims.is_some_and(|claims| {
        matches!(
            claims.role,
            Admin | GridWorker | Department | Inspector | Auditor
        )
    })
}

/// Who sees a report's reporter: report staff and the reporter. Never the
/// public.
pub fn sees_reporter(claims: Option<&Claims>, reporter: Option<Uuid>) -> bool {
    is_report_staff(claims)
        || claims.is_some_and(|claims| reporter.is_some() && reporter == Some(claims.sub))
}

/// Whether the caller may see the report at all: anyone a report that is
/// not hidden; a hidden one its reporter and report staff of its
/// community.
pub fn may_see(viewer: &Viewer, row: &projections::reports::ReportRow) -> bool {
    let claims = viewer.claims_in(row.community_id);
    !row.hidden || is_report_staff(claims) || sees_reporter(claims, row.reporter_id)
}

/// A step on a report after it was filed, as a caller asks for it.
#[derive(Clone, Debug)]
pub enum ReportAction {
    Accept,
    Reject(RejectionReason),
    /// Assigns a grid worker of the report's grid.
    Assign {
        worker: PersonId,
    },
    /// Escalates to a department: the one named, or the category's.
    Escalate {
        department: Option<DepartmentId>,
    },
    StartWork,
    Resolve {
        notes: String,
        photos: Vec<String>,
    },
    /// The reporter or an inspector confirms the problem is gone.
    Confirm,
    Reopen {
        reason: String,
    },
    Close,
    Comment {
        text: String,
    },
    /// Links an anonymous report to the signed-in resident, with the
    /// secret its QR page received.
    Claim {
        secret: String,
    },
    /// "Me too": a resident supports an open report instead of filing another.
    Support,
    /// Merges a duplicate into its original: the duplicate closes, the
    /// original counts one more reporter.
    MergeInto {
        original: ReportId,
    },
    Hide {
        reason: String,
    },
    Unhide,
    /// Removes the report's text for good (the event keeps its hash).
    RedactText,
    /// Removes the report's photo links for good, resolution photos too.
    RedactPhotos,
    /// The reporter hides their name from the public.
    HideReporterName,
}

impl ReportAction {
    /// Who may take this step (the scope checks come after).
    pub fn roles(&self) -> &'static [Role] {
        use ReportAction::*;
        match self {
            Accept | Reject(_) | Assign { .. } | Escalate { .. } | MergeInto { .. } => {
                &[Admin, GridWorker]
            }
            StartWork | Resolve { .. } => &[Admin, GridWorker, Department],
            Confirm | Reopen { .. } => &[Citizen, Inspector, Admin],
            Close => &[Admin, Inspector],
            Comment { .. } => &[Citizen, Admin, GridWorker, Department, Inspector],
            Claim { .. } | Support | HideReporterName => &[Citizen],
            Hide { .. } | Unhide | RedactText | RedactPhotos => &[Admin],
        }
    }
}

/// What a step on a report gave.
#[derive(Clone, Debug)]
pub struct ReportActed {
    pub position: i64,
    pub report: Arc<Report>,
}

/// A command as decided from the report's state, by whom and when.
type Decide<'a> =
    Box<dyn Fn(&Report, Actor, Timestamp) -> AppResult<ReportCommand> + Send + Sync + 'a>;

impl Services {
    /// Files a report from a QR page (or at coordinates). Open to anonymous
    /// callers, who are rate-limited by address and receive a claim secret.
    pub async fn submit_report(
        &self,
        request: &Request,
        community_id: Uuid,
        input: &ReportSubmission,
    ) -> AppResult<ReportFiled> {
        let (reporter, claim_secret, meta) =
            self.reporter(request, community_id, input.client_fingerprint.as_deref())?;
        let community_key = CommunityId::new(community_id);
        let report = ReportId(self.new_id(&meta, "report"));
        let at = self.commands.clock().now();
        let (meta, reporter) = (&meta, &reporter);
        let (report, outcome, stored) = self
            .directory
            .deciding(&self.commands, community_key, |setup| async move {
                let meta = setup.resting(meta);
                let (submit, pieces) = self
                    .submission(
                        &meta,
                        community_key,
                        &setup.community,
                        input,
                        reporter.clone(),
                        report,
                        at,
                    )
                    .await?;
                let (outcome, stored) = self
                    .commands
                    .execute_new::<Report>(
                        community_key,
                        &report_stream(report.0),
                        &meta,
                        &pieces,
                        |_| Ok(ReportCommand::Submit(Box::new(submit.clone()))),
                    )
                    .await?;
                Ok((report, outcome, stored))
            })
            .await?;
        // From the stored report: a retry answers what the first attempt did.
        let likely_duplicate_of = stored
            .submission
            .as_ref()
            .and_then(|s| s.likely_duplicate_of);
        Ok(ReportFiled {
            report,
            position: outcome.last_position,
            claim_secret,
            likely_duplicate_of,
        })
    }

    /// The reporter behind a QR-page request: a signed-in resident (or
    /// staff member), or an anonymous client (rate-limited) with a claim
    /// secret. Also for suggestions.
    pub(crate) fn reporter(
        &self,
        request: &Request,
        community_id: Uuid,
        fingerprint: Option<&str>,
    ) -> AppResult<(Reporter, Option<String>, RequestMeta)> {
        let mut meta = request.meta.clone();
        match &request.viewer {
            Viewer::Member(_) => {
                let claims = request.viewer.member_of(community_id)?;
                if claims.role == Auditor {
                    return Err(AppError::forbidden("auditors change nothing"));
                }
                self.submission_limits.member(community_id, claims.sub)?;
                meta.actor = Some(claims.actor());
                Ok((Reporter::Resident(claims.actor().person), None, meta))
            }
            Viewer::Refused(error) => Err(error.clone()),
            Viewer::Anonymous => {
                let fingerprint = fingerprint.unwrap_or_default();
                if fingerprint.len() > FINGERPRINT_BYTES_MAX {
                    return Err(AppError::validation(
                        "client_fingerprint",
                        format!("at most {FINGERPRINT_BYTES_MAX} bytes"),
                    ));
                }
                let address = meta.client.as_deref().unwrap_or("-");
                // Limited by the address alone: the fingerprint is the
                // client's to choose, so a new one each time must not buy a
                // new budget.
                self.submission_limits.anonymous(community_id, address)?;
                let client = format!("{address}|{fingerprint}");
                let secret = match self.retry_seed(&meta, "claim") {
                    Some(seed) => hex::encode(&seed[..16]),
                    None => Uuid::new_v4().simple().to_string(),
                };
                let reporter = Reporter::Anonymous {
                    client: hash_of(&client)?,
                    claim_secret_hash: hash_of(&secret)?,
                };
                Ok((reporter, Some(secret), meta))
            }
        }
    }

    /// A report's submission, all facts looked up, with its text and
    /// photos prepared for storing.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn submission(
        &self,
        meta: &RequestMeta,
        community_id: CommunityId,
        community: &Community,
        input: &ReportSubmission,
        reporter: Reporter,
        report: ReportId,
        at: Timestamp,
    ) -> AppResult<(SubmitReport, Vec<Prepared>)> {
        let text = content::prepare_text(&input.text, self.retry_seed(meta, "text"))?;
        let photos = self
            .photo_list(
                community_id,
                report.0,
                &input.photos,
                self.retry_seed(meta, "photos"),
            )
            .await?;
        let code = CategoryCode::parse(&input.category)?;
        let category = community
            .categories
            .get(&code)
            .ok_or_else(|| AppError::validation("category", format!("unknown category {code}")))?;
        let located = locate(
            community,
            input.site_code.as_deref(),
            input.latitude_e6,
            input.longitude_e6,
        )?;
        let likely_duplicate_of = match located.site {
            Some(site) => {
                let window =
                    i64::from(community.duplicate_window_hours) * Timestamp::MICROS_PER_HOUR;
                let since = at.micros() - window;
                self.likely_duplicate(community_id, site, &code, since, report)
                    .await?
            }
            None => None,
        };
        let mut pieces = vec![text.clone()];
        let attached = photos.map(|(prepared, attached)| {
            pieces.push(prepared);
            attached
        });
        let submit = SubmitReport {
            report,
            place: located.place,
            grid: located.grid,
            category: code,
            text: text.hash,
            photos: attached,
            reporter,
            first_response_due: at.plus_hours(category.first_response_hours),
            resolution_due: at.plus_hours(category.resolution_hours),
            department: category.department,
            likely_duplicate_of,
            at,
        };
        Ok((submit, pieces))
    }

    /// The newest open report at `site` in `category` submitted since
    /// `since` (not `own`, so a retry does not find its first attempt): a
    /// new report there is likely its duplicate. It does not rest on the
    /// read model having caught up: the community's reports that may be
    /// open are kept in memory and moved along the log
    /// ([`projections::reports::OpenReportIndex`]); where they are not
    /// kept, reports submitted after the read model's checkpoint are read
    /// from the log, and every candidate's state is its own stream's, so
    /// only a truly open report is named.
    async fn likely_duplicate(
        &self,
        community: CommunityId,
        site: SiteId,
        category: &CategoryCode,
        since: i64,
        own: ReportId,
    ) -> AppResult<Option<ReportId>> {
        let asked = projections::reports::OpenReportsAsked {
            site: site.0,
            category: category.as_str().to_string(),
            since,
            limit: DUPLICATE_CANDIDATES_MAX,
        };
        let kept = self
            .open_index
            .newest_open(self.commands.store(), community, &asked, own.0)
            .await?;
        match kept {
            NewestOpen::Report(report) => return Ok(Some(ReportId(report))),
            NewestOpen::NoneOpen => return Ok(None),
            NewestOpen::NotKept => {}
        }
        let found = projections::reports::likely_duplicate_candidates(
            self.commands.store(),
            &self.open_reports,
            community,
            &asked,
            DUPLICATE_TAIL_EVENTS_MAX,
        )
        .await?;
        // Newest first: the submissions the read model has not folded, then
        // the reports it holds open. Each is open now unless its stream has
        // moved since (one event only for a submission in the tail); a
        // stream that moved is read to tell.
        let mut candidates = Vec::new();
        for (payload, version) in found.newer.into_iter().rev() {
            let ReportEvent::ReportSubmitted(submitted) =
                serde_json::from_value::<ReportEvent>(payload)
                    .map_err(|e| AppError::internal(format!("a stored submission: {e}")))?
            else {
                continue;
            };
            let at_site = matches!(submitted.place, Place::Site { site: s, .. } if s == site);
            if at_site && submitted.category == *category && submitted.at.micros() >= since {
                candidates.push((submitted.report, version > 1));
            }
        }
        candidates.extend(
            found
                .open_then
                .into_iter()
                .map(|(report, moved)| (ReportId(report), moved)),
        );
        for (candidate, moved) in candidates {
            if candidate == own {
                continue;
            }
            if !moved {
                return Ok(Some(candidate));
            }
            let loaded = self
                .commands
                .load::<Report>(community, &report_stream(candidate.0))
                .await?;
            if loaded.state.state.is_open() {
                return Ok(Some(candidate));
            }
        }
        Ok(None)
    }

    /// Takes `action` on a report: the caller's role, then their scope
    /// against the report (a grid worker acts on reports of their grids, a
    /// department on reports escalated to it); the rest of the rules are
    /// the aggregate's. A redaction erases the content once it is recorded.
    pub async fn act_on_report(
        &self,
        request: &Request,
        community_id: Uuid,
        report_id: Uuid,
        action: ReportAction,
    ) -> AppResult<ReportActed> {
        let claims = request.viewer.with_role(community_id, action.roles())?;
        let community_key = CommunityId::new(community_id);
        self.directory
            .deciding(&self.commands, community_key, |setup| {
                self.act_on_report_at(request, claims, community_key, report_id, &action, setup)
            })
            .await
    }

    /// [`Services::act_on_report`] decided on `setup`.
    async fn act_on_report_at(
        &self,
        request: &Request,
        claims: &Claims,
        community_key: CommunityId,
        report_id: Uuid,
        action: &ReportAction,
        setup: SetUp,
    ) -> AppResult<ReportActed> {
        let meta = &setup.resting(&request.meta);
        let community = setup.community;
        let seed = |purpose| self.retry_seed(meta, purpose);
        let mut contents = Vec::new();
        let decide: Decide = match action.clone() {
            ReportAction::Accept => Box::new(|_, by, at| Ok(ReportCommand::Accept { by, at })),
            ReportAction::Reject(reason) => Box::new(move |_, by, at| {
                Ok(ReportCommand::Reject {
                    by,
                    reason: reason.clone(),
                    at,
                })
            }),
            ReportAction::Assign { worker } => {
                let worker_grids = community.worker_grids(worker);
                Box::new(move |_, by, at| {
                    Ok(ReportCommand::Assign {
                        by,
                        worker,
                        worker_grids: worker_grids.clone(),
                        at,
                    })
                })
            }
            ReportAction::Escalate { department } => {
                let community = &community;
                Box::new(move |report, by, at| {
                    let department = department
                        .or_else(|| report.submission.as_ref().and_then(|s| s.department))
                        .ok_or_else(|| {
                            AppError::validation(
                                "department",
                                "the category has no department; name one",
                            )
                        })?;
                    if !community.departments.contains_key(&department) {
                        return Err(AppError::not_found(format!("department {department}")));
                    }
                    Ok(ReportCommand::Escalate { by, department, at })
                })
            }
            ReportAction::StartWork => {
                Box::new(|_, by, at| Ok(ReportCommand::StartWork { by, at }))
            }
            ReportAction::Resolve { notes, photos } => {
                let notes = content::prepare_text(&notes, seed("notes"))?;
                let photos = self
                    .photo_list(community_key, report_id, &photos, seed("photos"))
                    .await?;
                let hash = notes.hash.clone();
                contents.push(notes);
                let attached = photos.map(|(prepared, attached)| {
                    contents.push(prepared);
                    attached
                });
                Box::new(move |_, by, at| {
                    Ok(ReportCommand::Resolve {
                        by,
                        notes: hash.clone(),
                        photos: attached.clone(),
                        at,
                    })
                })
            }
            ReportAction::Confirm => Box::new(|_, by, at| Ok(ReportCommand::Confirm { by, at })),
            ReportAction::Reopen { reason } => {
                let reason = with_text(&mut contents, &reason, seed("text"))?;
                Box::new(move |_, by, at| {
                    Ok(ReportCommand::Reopen {
                        by,
                        reason: reason.clone(),
                        at,
                    })
                })
            }
            ReportAction::Close => Box::new(|_, by, at| Ok(ReportCommand::Close { by, at })),
            ReportAction::Comment { text } => {
                let text = with_text(&mut contents, &text, seed("text"))?;
                Box::new(move |_, by, at| {
                    Ok(ReportCommand::Comment {
                        by,
                        text: text.clone(),
                        at,
                    })
                })
            }
            ReportAction::Claim { secret } => {
                let secret_hash = claim_secret_hash(&secret)?;
                Box::new(move |_, by, at| {
                    Ok(ReportCommand::Claim {
                        resident: by.person,
                        secret_hash: secret_hash.clone(),
                        at,
                    })
                })
            }
            ReportAction::Support => Box::new(|_, by, at| {
                Ok(ReportCommand::Support {
                    resident: by.person,
                    at,
                })
            }),
            ReportAction::MergeInto { original } => {
                let loaded = self
                    .commands
                    .load::<Report>(community_key, &report_stream(original.0))
                    .await?;
                if !loaded.state.state.is_active() {
                    return Err(AppError::validation(
                        "original",
                        "the original must be an active report (not rejected, closed or merged)",
                    ));
                }
                Box::new(move |_, by, at| Ok(ReportCommand::MergeInto { by, original, at }))
            }
            ReportAction::Hide { reason } => {
                let reason = with_text(&mut contents, &reason, seed("text"))?;
                Box::new(move |_, by, at| {
                    Ok(ReportCommand::Hide {
                        by,
                        reason: reason.clone(),
                        at,
                    })
                })
            }
            ReportAction::Unhide => Box::new(|_, by, at| Ok(ReportCommand::Unhide { by, at })),
            ReportAction::RedactText => {
                Box::new(|_, by, at| Ok(ReportCommand::RedactText { by, at }))
            }
            ReportAction::RedactPhotos => {
                Box::new(|_, by, at| Ok(ReportCommand::RedactPhotos { by, at }))
            }
            ReportAction::HideReporterName => {
                Box::new(|_, by, at| Ok(ReportCommand::HideReporterName { by, at }))
            }
        };
        let scope = staff_scope(&community, claims)?;
        let actor = claims.actor();
        let mut meta = meta.clone();
        meta.actor = Some(actor);
        let at = self.commands.clock().now();
        let (outcome, report) = self
            .commands
            .execute::<Report>(
                community_key,
                &report_stream(report_id),
                &meta,
                &contents,
                |report| {
                    let Some(submission) = report.submission.as_deref() else {
                        return Err(AppError::not_found(format!("report {report_id}")));
                    };
                    match actor.role {
                        GridWorker if !scope.grids.contains(&submission.grid) => Err(
                            AppError::forbidden("the report is not in one of your grids"),
                        ),
                        Department
                            if report.escalated_to.is_none()
                                || report.escalated_to != scope.department =>
                        {
                            Err(AppError::forbidden(
                                "the report is not escalated to your department",
                            ))
                        }
                        _ => decide(report, actor, at),
                    }
                },
            )
            .await?;
        let redacted = match *action {
            ReportAction::RedactText => report
                .submission
                .as_ref()
                .map(|s| s.text.clone())
                .into_iter()
                .collect(),
            ReportAction::RedactPhotos => {
                let mut photos: Vec<_> = report
                    .submission
                    .as_ref()
                    .and_then(|s| s.photos.as_ref())
                    .map(|p| p.content().clone())
                    .into_iter()
                    .collect();
                photos.extend(report.resolution_photos.iter().cloned());
                photos
            }
            _ => Vec::new(),
        };
        self.erase_redacted(&request.meta, community_key, claims, redacted)
            .await?;
        Ok(ReportActed {
            position: outcome.last_position,
            report,
        })
    }

    /// Erases redacted content. Runs after the redaction event is stored;
    /// a repeat of the redaction erases again, so a failure here is retried
    /// by the moderator repeating the request.
    async fn erase_redacted(
        &self,
        meta: &RequestMeta,
        community: CommunityId,
        by: &Claims,
        hashes: Vec<ContentHash>,
    ) -> AppResult<()> {
        let meta = RequestMeta {
            actor: Some(by.actor()),
            ..meta.clone()
        };
        let by = by.sub.to_string();
        for hash in hashes {
            self.erase_content(&meta, community, &hash, &by, "redacted by a moderator")
                .await?;
        }
        Ok(())
    }
}

/// Prepares a text a command carries (a note, a reason) among `contents`,
/// and gives its hash.
fn with_text(
    contents: &mut Vec<Prepared>,
    text: &str,
    seed: Option<[u8; 32]>,
) -> AppResult<ContentHash> {
    let text = content::prepare_text(text, seed)?;
    let hash = text.hash.clone();
    contents.push(text);
    Ok(hash)
}
