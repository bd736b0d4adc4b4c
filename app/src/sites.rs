//! What a site's QR code opens, as the application sees it: the site, its
//! grid, whether it still takes reports, the community's categories, and
//! whether a suggestion box stands there. The pages and the printable QR
//! sheet are drawn from these views; the rules behind them are here.

use domain::community::{Community, SiteKind};
use domain::values::{Role, SiteCode};
use store::CommunityId;
use uuid::Uuid;

use crate::error::{AppError, AppResult};
use crate::services::{Request, Services};

/// A site as its page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteView {
    pub community_id: Uuid,
    pub community_name: String,
    pub code: String,
    pub name: String,
    pub kind: SiteKind,
    pub grid_name: String,
    /// False once retired: its page says so instead of taking reports.
    pub active: bool,
    /// The categories a report may be filed under: (code, name).
    pub categories: Vec<(String, String)>,
    pub has_suggestion_box: bool,
}

fn view(community_id: Uuid, community: &Community, site: &domain::community::Site) -> SiteView {
    SiteView {
        community_id,
        community_name: community.name.clone(),
        code: site.code.as_str().to_string(),
        name: site.name.clone(),
        kind: site.kind,
        grid_name: community
            .grids
            .get(&site.grid)
            .map(|grid| grid.name.clone())
            .unwrap_or_default(),
        active: site.active,
        categories: community
            .categories
            .iter()
            .map(|(code, category)| (code.as_str().to_string(), category.name.clone()))
            .collect(),
        has_suggestion_box: site.kind.has_suggestion_box(),
    }
}

impl Services {
    /// The site a QR code names, active or retired (an active site with
    /// the code comes first): open to anyone, since the code is printed
    /// on the river bank.
    pub async fn site_view(&self, community_id: Uuid, code: &str) -> AppResult<SiteView> {
        let code = SiteCode::parse(code)?;
        let community = self
            .directory
            .community(&self.commands, CommunityId::new(community_id))
            .await?;
        let not_found = || AppError::not_found(format!("no site with code {code}"));
        if !community.registered {
            return Err(not_found());
        }
        let site = community
            .sites
            .values()
            .filter(|site| site.code == code)
            .max_by_key(|site| site.active)
            .ok_or_else(not_found)?;
        Ok(view(community_id, &community, site))
    }

    /// Every active site of the community, by code: for the admin's
    /// printable QR sheet.
    pub async fn active_sites(
        &self,
        request: &Request,
        community_id: Uuid,
    ) -> AppResult<Vec<SiteView>> {
        request.viewer.with_role(community_id, &[Role::Admin])?;
        let community = self
            .directory
            .community(&self.commands, CommunityId::new(community_id))
            .await?;
        let mut sites: Vec<SiteView> = community
            .sites
            .values()
            .filter(|site| site.active)
            .map(|site| view(community_id, &community, site))
            .collect();
        sites.sort_by(|a, b| a.code.cmp(&b.code));
        Ok(sites)
    }
}

/// A report as its public status page shows it: no reporter, no staff
/// names, no other residents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicReport {
    pub report_id: Uuid,
    /// The read model's state (`submitted`, `in_progress`, …).
    pub state: String,
    pub category: String,
    pub site_name: Option<String>,
    pub submitted_at_micros: i64,
    /// `None` once redacted.
    pub text: Option<String>,
    pub photos: Vec<String>,
    /// Each step: its event type and when, oldest first.
    pub steps: Vec<(String, i64)>,
    /// The latest resolution's notes and photos.
    pub resolution: Option<(Option<String>, Vec<String>)>,
}

impl Services {
    /// A report's public status, for those who may see it (a hidden one
    /// for its reporter and staff only; anyone else is told it is not
    /// found).
    pub async fn public_report(
        &self,
        request: &Request,
        community_id: Uuid,
        report_id: Uuid,
    ) -> AppResult<PublicReport> {
        let community = CommunityId::new(community_id);
        let store = self.commands.store();
        let not_found = || AppError::not_found(format!("report {report_id}"));
        let row = projections::reports::report(store.pool(), community, report_id)
            .await?
            .filter(|row| crate::reports::may_see(&request.viewer, row))
            .ok_or_else(not_found)?;
        let setup = self.directory.community(&self.commands, community).await?;
        let category = domain::values::CategoryCode::parse(&row.category)
            .ok()
            .and_then(|code| setup.categories.get(&code))
            .map_or_else(|| row.category.clone(), |c| c.name.clone());
        let site_name = row.site_id.and_then(|site| {
            setup
                .sites
                .get(&domain::values::SiteId(site))
                .map(|s| s.name.clone())
        });
        let text = if row.text_redacted {
            None
        } else {
            crate::content::text_of(store, community, &row.text_hash).await?
        };
        let photos = match (&row.photos_hash, row.photos_redacted) {
            (Some(hash), false) => crate::content::photos_of(store, community, hash).await?,
            _ => Vec::new(),
        };
        let timeline = projections::reports::timeline(store.pool(), community, report_id).await?;
        let mut resolution = None;
        for entry in timeline.iter().filter(|e| e.event_type == "ReportResolved") {
            let notes = match entry.detail["notes"].as_str() {
                Some(hash) if !row.text_redacted => {
                    crate::content::text_of(store, community, hash).await?
                }
                _ => None,
            };
            let photos = match entry.detail["photos"]["content"].as_str() {
                Some(hash) if !row.photos_redacted => {
                    crate::content::photos_of(store, community, hash).await?
                }
                _ => Vec::new(),
            };
            resolution = Some((notes, photos));
        }
        Ok(PublicReport {
            report_id,
            state: row.state.clone(),
            category,
            site_name,
            submitted_at_micros: row.submitted_at,
            text,
            photos,
            steps: timeline
                .iter()
                .map(|entry| (entry.event_type.clone(), entry.at))
                .collect(),
            resolution,
        })
    }
}
