//! What residents send from a QR page: reports (also opened by patrol
//! findings) and suggestions. Validates everything before storing
//! anything, so a refused submission leaves nothing behind.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use domain::community::Community;
use domain::report::{Place, Report, ReportCommand, ReportEvent, Reporter, SubmitReport};
use domain::suggestion::{Suggestion, SuggestionCommand};
use domain::values::{
    CategoryCode, ContentHash, GeoPoint, GridId, ReportId, Role, SiteCode, SiteId, SuggestionId,
    Timestamp,
};
use sha2::{Digest, Sha256};
use store::CommunityId;
use uuid::Uuid;

use super::{app, meta, new_id, retry_seed, viewer, App};
use crate::auth::Viewer;
use crate::commands::{report_stream, suggestion_stream, RequestMeta};
use crate::content::{self, Prepared};
use crate::error::{ApiError, ApiResult};

/// A point is inside the community when a site of it lies this close: the
/// community is where its sites are.
const NEAR_SITE_METRES_MAX: f64 = 2_000.0;

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

#[derive(SimpleObject)]
pub struct SubmitSuggestionPayload {
    pub suggestion_id: Uuid,
    pub position: i64,
    pub claim_secret: Option<String>,
}

/// Where a report is: the site (and its grid) or the nearest site's grid.
pub struct Located {
    pub place: Place,
    pub grid: GridId,
    pub site: Option<SiteId>,
}

pub fn locate(
    community: &Community,
    site_code: Option<&str>,
    latitude_e6: Option<i64>,
    longitude_e6: Option<i64>,
) -> ApiResult<Located> {
    match (site_code, latitude_e6, longitude_e6) {
        (Some(code), None, None) => {
            let code = SiteCode::parse(code)?;
            let (id, site) = community
                .site_by_code(&code)
                .ok_or_else(|| ApiError::not_found(format!("no active site with code {code}")))?;
            Ok(Located {
                place: Place::Site { site: id, code },
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
                _ => Err(ApiError::validation(
                    "the coordinates are outside the community",
                )),
            }
        }
        _ => Err(ApiError::validation(
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

fn hash_of(text: &str) -> ApiResult<ContentHash> {
    Ok(ContentHash::parse(&hex::encode(Sha256::digest(
        text.as_bytes(),
    )))?)
}

/// A report's submission, all facts looked up, with its text and photos
/// prepared for storing.
/// Events of the log's tail read at most for reports the read model has not
/// folded yet; past that, only the newest are looked at.
const DUPLICATE_TAIL_EVENTS_MAX: i64 = 5_000;
/// Candidates from the read model checked against their streams at most.
const DUPLICATE_CANDIDATES_MAX: i64 = 5;

/// The newest open report at `site` in `category` submitted since `since`
/// (not `own`, so a retry does not find its first attempt): a new report
/// there is likely its duplicate. It does not rest on the read model having
/// caught up: reports submitted after the read model's checkpoint are read
/// from the log, and every candidate's state is its own stream's, so only
/// a truly open report is named.
async fn likely_duplicate(
    app: &App,
    community: CommunityId,
    site: SiteId,
    category: &CategoryCode,
    since: i64,
    own: ReportId,
) -> ApiResult<Option<ReportId>> {
    let store = app.commands.store();
    let (folded_candidates, folded) = projections::reports::open_reports_at(
        store.pool(),
        community,
        site.0,
        category.as_str(),
        since,
        DUPLICATE_CANDIDATES_MAX,
    )
    .await?;
    let head = store.head(community).await?.position;
    let mut position = (folded + 1).max(head - DUPLICATE_TAIL_EVENTS_MAX + 1);
    let mut newer = Vec::new();
    while position <= head {
        let events = store.read_log(community, position, 1_000).await?;
        let Some(last) = events.last() else { break };
        position = last.position + 1;
        for event in events.iter().filter(|e| e.event_type == "ReportSubmitted") {
            let ReportEvent::ReportSubmitted(submitted) = event.decode::<ReportEvent>()? else {
                continue;
            };
            let at_site = matches!(submitted.place, Place::Site { site: s, .. } if s == site);
            if at_site && submitted.category == *category && submitted.at.micros() >= since {
                newer.push(submitted.report);
            }
        }
    }
    let candidates = newer
        .into_iter()
        .rev()
        .chain(folded_candidates.into_iter().map(ReportId));
    for candidate in candidates.filter(|candidate| *candidate != own) {
        let loaded = app
            .commands
            .load::<Report>(community, &report_stream(candidate.0))
            .await?;
        if loaded.state.state.is_open() {
            return Ok(Some(candidate));
        }
    }
    Ok(None)
}

pub async fn submission(
    ctx: &Context<'_>,
    community_id: CommunityId,
    community: &Community,
    input: &ReportInput,
    reporter: Reporter,
    report: ReportId,
    at: Timestamp,
) -> ApiResult<(SubmitReport, Vec<Prepared>)> {
    let text = content::prepare_text(&input.text, retry_seed(ctx, "text"))?;
    let photos = content::prepare_photos(&input.photos, retry_seed(ctx, "photos"))?;
    let code = CategoryCode::parse(&input.category)?;
    let category = community
        .categories
        .get(&code)
        .ok_or_else(|| ApiError::validation(format!("unknown category {code}")))?;
    let located = locate(
        community,
        input.site_code.as_deref(),
        input.latitude_e6,
        input.longitude_e6,
    )?;
    let likely_duplicate_of = match located.site {
        Some(site) => {
            let window = i64::from(community.duplicate_window_hours) * Timestamp::MICROS_PER_HOUR;
            let since = at.micros() - window;
            likely_duplicate(app(ctx), community_id, site, &code, since, report).await?
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

/// The reporter behind a QR-page request: a signed-in resident (or staff
/// member), or an anonymous client (rate-limited) with a claim secret.
fn reporter(
    ctx: &Context<'_>,
    community_id: Uuid,
    fingerprint: Option<&str>,
) -> ApiResult<(Reporter, Option<String>, RequestMeta)> {
    let mut meta = meta(ctx);
    match viewer(ctx) {
        Viewer::Member(_) => {
            let claims = viewer(ctx).member_of(community_id)?;
            if claims.role == Role::Auditor {
                return Err(ApiError::forbidden("auditors change nothing"));
            }
            app(ctx)
                .submission_limits
                .member(community_id, claims.sub)?;
            meta.actor = Some(claims.actor());
            Ok((Reporter::Resident(claims.actor().person), None, meta))
        }
        Viewer::Refused(error) => Err(error.clone()),
        Viewer::Anonymous => {
            let fingerprint = fingerprint.unwrap_or_default();
            if fingerprint.len() > 200 {
                return Err(ApiError::validation(
                    "client_fingerprint: at most 200 bytes",
                ));
            }
            let address = meta.client.as_deref().unwrap_or("-");
            // Limited by the address alone: the fingerprint is the client's
            // to choose, so a new one each time must not buy a new budget.
            app(ctx)
                .submission_limits
                .anonymous(community_id, address)?;
            let client = format!("{address}|{fingerprint}");
            let secret = match retry_seed(ctx, "claim") {
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

/// The hash a claim secret is checked by.
pub fn claim_secret_hash(secret: &str) -> ApiResult<ContentHash> {
    hash_of(secret.trim())
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
        let (reporter, claim_secret, meta) =
            reporter(ctx, community_id, report.client_fingerprint.as_deref())?;
        let app = app(ctx);
        let community_key = CommunityId::new(community_id);
        let community = app
            .directory
            .community(&app.commands, community_key)
            .await?;
        let report_id = ReportId(new_id(ctx, "report"));
        let at = app.commands.clock().now();
        let (submit, pieces) = submission(
            ctx,
            community_key,
            &community,
            &report,
            reporter,
            report_id,
            at,
        )
        .await?;
        let (outcome, stored) = app
            .commands
            .execute::<domain::report::Report>(
                community_key,
                &report_stream(report_id.0),
                &meta,
                &pieces,
                |_| Ok(ReportCommand::Submit(Box::new(submit.clone()))),
            )
            .await?;
        // From the stored report: a retry answers what the first attempt did.
        let likely_duplicate_of = stored
            .submission
            .as_ref()
            .and_then(|s| s.likely_duplicate_of)
            .map(|r| r.0);
        Ok(SubmitReportPayload {
            report_id: report_id.0,
            position: outcome.last_position,
            claim_secret,
            likely_duplicate_of,
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
        let (submitter, claim_secret, meta) =
            reporter(ctx, community_id, client_fingerprint.as_deref())?;
        let app = app(ctx);
        let community_key = CommunityId::new(community_id);
        let community = app
            .directory
            .community(&app.commands, community_key)
            .await?;
        let text = content::prepare_text(&text, retry_seed(ctx, "text"))?;
        let code = SiteCode::parse(&site_code)?;
        let (site, details) = community
            .site_by_code(&code)
            .ok_or_else(|| ApiError::not_found(format!("no active site with code {code}")))?;
        // The domain decides where suggestion boxes stand.
        let site_kind = details.kind;
        let suggestion = SuggestionId(new_id(ctx, "suggestion"));
        let at = app.commands.clock().now();
        let (outcome, _) = app
            .commands
            .execute::<Suggestion>(
                community_key,
                &suggestion_stream(suggestion.0),
                &meta,
                std::slice::from_ref(&text),
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
        Ok(SubmitSuggestionPayload {
            suggestion_id: suggestion.0,
            position: outcome.last_position,
            claim_secret,
        })
    }
}
