//! Each community's set-up (grids, sites, categories, staff) as its
//! aggregate's state, cached and brought up to date with one short read
//! per use, since commands and scope checks need it on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use domain::community::Community;
use domain::values::{CentreId, DepartmentId, GridId, PersonId, Role};
use store::CommunityId;

use crate::caller::{Claims, Viewer};
use crate::commands::{Commands, Loaded, COMMUNITY_STREAM};
use crate::error::{AppError, AppResult};

/// Communities kept in memory at most; beyond it the cache starts over.
const CACHED_COMMUNITIES_MAX: usize = 10_000;

/// Each community's set-up with the stream version it was read at.
type Cache = HashMap<CommunityId, (i64, Arc<Community>)>;

#[derive(Clone, Default)]
pub struct Directory {
    cached: Arc<Mutex<Cache>>,
}

impl Directory {
    /// The community's current set-up; `NOT_FOUND` when it is not registered.
    pub async fn community(
        &self,
        commands: &Commands,
        community: CommunityId,
    ) -> AppResult<Arc<Community>> {
        let cached = self.lock().get(&community).cloned();
        let loaded = match cached {
            Some((version, state)) => {
                let newer = commands
                    .store()
                    .read_stream(community, COMMUNITY_STREAM, version + 1, 1)
                    .await?;
                if newer.is_empty() {
                    return Ok(state);
                }
                Loaded {
                    state: (*state).clone(),
                    version,
                }
            }
            None => Loaded {
                state: Community::default(),
                version: 0,
            },
        };
        let loaded = commands
            .load_from(community, COMMUNITY_STREAM, loaded)
            .await?;
        if !loaded.state.registered {
            return Err(AppError::not_found("community"));
        }
        let state = Arc::new(loaded.state);
        let mut cache = self.lock();
        if cache.len() >= CACHED_COMMUNITIES_MAX && !cache.contains_key(&community) {
            cache.clear();
        }
        cache.insert(community, (loaded.version, state.clone()));
        Ok(state)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a signed-in member of staff may act on, from their staff record
/// (narrowed by their token).
pub struct Scope {
    pub grids: Vec<GridId>,
    pub department: Option<DepartmentId>,
}

/// The staff record must still say what the token says: a removed worker's
/// token stops working at once. Admins and auditors are trusted as issued
/// by the operator for their community.
pub fn staff_scope(community: &Community, claims: &Claims) -> AppResult<Scope> {
    match claims.role {
        Role::Admin | Role::Auditor | Role::Citizen => Ok(Scope {
            grids: Vec::new(),
            department: None,
        }),
        role => {
            let person = PersonId(claims.sub);
            let member = community
                .staff
                .get(&person)
                .filter(|member| member.role == role)
                .ok_or_else(|| AppError::forbidden("not on this community's staff in this role"))?;
            let mut grids = community.worker_grids(person);
            if !claims.grids.is_empty() {
                grids.retain(|grid| claims.grids.contains(&grid.0));
            }
            Ok(Scope {
                grids,
                department: member.department,
            })
        }
    }
}

/// The caller as the server vouches for them: a staff member's token counts
/// only while the community's staff record still says so, for every
/// mutation, read and subscription alike, so a removed worker, clerk or
/// department member is refused everywhere at once (not only where a
/// resolver remembers to look).
pub async fn vouched(directory: &Directory, commands: &Commands, viewer: Viewer) -> Viewer {
    let Viewer::Member(claims) = &viewer else {
        return viewer;
    };
    if matches!(claims.role, Role::Admin | Role::Auditor | Role::Citizen) {
        return viewer;
    }
    let checked = match directory
        .community(commands, CommunityId::new(claims.community))
        .await
    {
        Ok(community) => staff_scope(&community, claims).map(drop),
        Err(AppError::NotFound(_)) => Err(AppError::forbidden(
            "not on this community's staff in this role",
        )),
        Err(error) => Err(error),
    };
    match checked {
        Ok(()) => viewer,
        Err(error) => Viewer::Refused(error),
    }
}

/// The centre whose counter the caller serves: a clerk's own (their staff
/// record and token must agree); `None` for an admin, who serves any.
pub fn counter_centre(community: &Community, claims: &Claims) -> AppResult<Option<CentreId>> {
    match claims.role {
        Role::Admin => Ok(None),
        Role::Clerk => {
            let centre = community
                .staff
                .get(&PersonId(claims.sub))
                .filter(|member| member.role == Role::Clerk)
                .and_then(|member| member.centre)
                .ok_or_else(|| AppError::forbidden("not a clerk of this community's centres"))?;
            if claims
                .centre
                .is_some_and(|token_centre| token_centre != centre.0)
            {
                return Err(AppError::forbidden(
                    "the token is for another centre than the clerk's",
                ));
            }
            Ok(Some(centre))
        }
        _ => Err(AppError::forbidden(
            "only clerks and admins work the counter",
        )),
    }
}
