//! Setting a community up: its admin registers it, adds grids, sites,
//! departments, centres, categories and staff, and sets its rules. The
//! community's aggregate decides each command; what is looked up or
//! refused before it (the zone's name, a half-given position, the row the
//! community's log hangs on) is here.

use domain::community::{Community, CommunityCommand};
use domain::values::{Actor, GeoPoint, Lines, Role, Timestamp};
use store::{CommunityId, StoreError};
use uuid::Uuid;

use crate::calendar;
use crate::commands::COMMUNITY_STREAM;
use crate::error::{AppError, AppResult};
use crate::services::{Request, Services};

/// The longest name a community may have, in characters.
const COMMUNITY_NAME_CHARS_MAX: usize = 100;

/// The read models that keep days, weeks or months of a community's
/// calendar, rebuilt when its zone is corrected.
const ZONE_DEPENDENT_READ_MODELS: [&str; 4] = [
    projections::reports::NAME,
    projections::leaderboards::NAME,
    projections::patrols::NAME,
    projections::points::NAME,
];

/// A zone of the IANA database the server ships, spelled as it spells it:
/// the read models' calendars work in it, so an unknown one is refused
/// here, not found out later.
pub fn known_time_zone(name: &str) -> AppResult<String> {
    let name = name.trim();
    if calendar::is_known_zone(name) {
        Ok(name.to_string())
    } else {
        Err(AppError::validation(
            "timeZone",
            "a zone of the IANA database, such as Asia/Shanghai",
        ))
    }
}

/// A site's position: both coordinates, or neither.
pub fn optional_point(
    latitude_e6: Option<i64>,
    longitude_e6: Option<i64>,
) -> AppResult<Option<GeoPoint>> {
    match (latitude_e6, longitude_e6) {
        (Some(latitude), Some(longitude)) => Ok(Some(GeoPoint::parse(latitude, longitude)?)),
        (None, None) => Ok(None),
        _ => Err(AppError::validation(
            "position",
            "give both latitude and longitude, or neither",
        )),
    }
}

impl Services {
    /// Runs a set-up command as the community's admin; gives the position
    /// written.
    pub async fn set_up_community(
        &self,
        request: &Request,
        community_id: Uuid,
        command: impl Fn(Actor, Timestamp) -> CommunityCommand,
    ) -> AppResult<i64> {
        let claims = request.viewer.with_role(community_id, &[Role::Admin])?;
        let mut meta = request.meta.clone();
        meta.actor = Some(claims.actor());
        let at = self.commands.clock().now();
        let (outcome, _) = self
            .commands
            .execute::<Community>(
                CommunityId::new(community_id),
                COMMUNITY_STREAM,
                &meta,
                &[],
                |_| Ok(command(claims.actor(), at)),
            )
            .await?;
        Ok(outcome.last_position)
    }

    /// Registers the community the admin's token is for. Everything that
    /// can be refused is checked before the community's row is made, and a
    /// refused registration forgets the row it made, so it leaves nothing.
    pub async fn register_community(
        &self,
        request: &Request,
        community_id: Uuid,
        name: &str,
        time_zone: Option<&str>,
    ) -> AppResult<i64> {
        request.viewer.with_role(community_id, &[Role::Admin])?;
        let store = self.commands.store();
        let trimmed =
            domain::values::plain_text("name", name, Lines::One, COMMUNITY_NAME_CHARS_MAX)?;
        let time_zone = time_zone.map(known_time_zone).transpose()?;
        let community = CommunityId::new(community_id);
        let created = match store.create_community(community, &trimmed).await {
            Ok(()) => true,
            Err(StoreError::CommunityExists(_)) => false,
            Err(error) => return Err(error.into()),
        };
        let registered = self
            .set_up_community(request, community_id, |by, at| CommunityCommand::Register {
                by,
                name: name.to_string(),
                time_zone: time_zone.clone(),
                at,
            })
            .await;
        if registered.is_err() && created {
            store.forget_empty_community(community).await?;
        }
        registered
    }

    /// Corrects the community's time zone, and asks for the read models
    /// that keep its calendar to be rebuilt in it.
    pub async fn set_time_zone(
        &self,
        request: &Request,
        community_id: Uuid,
        time_zone: &str,
    ) -> AppResult<i64> {
        let time_zone = known_time_zone(time_zone)?;
        let position = self
            .set_up_community(request, community_id, |by, at| {
                CommunityCommand::SetTimeZone {
                    by,
                    time_zone: time_zone.clone(),
                    at,
                }
            })
            .await?;
        projections::generation::request_rebuild(
            self.commands.store().pool(),
            &ZONE_DEPENDENT_READ_MODELS,
            &format!("community {community_id}: time zone corrected to {time_zone}"),
        )
        .await?;
        Ok(position)
    }
}
