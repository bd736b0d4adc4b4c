//! Each community's set-up (grids, sites, categories, staff) as its
//! aggregate's state, cached and brought up to date with one short read
//! per use, since commands and scope checks need it on every request. Uses
//! that wait at once share a read: each takes the answer of a read that
//! began after it arrived, so none misses a change committed before it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use domain::community::Community;
use domain::values::{CentreId, DepartmentId, GridId, PersonId, Role};
use store::CommunityId;

use crate::caller::{Claims, Viewer};
use crate::commands::{Commands, Loaded, RequestMeta, COMMUNITY_STREAM};
use crate::error::{AppError, AppResult};

/// Communities kept in memory at most; beyond it the cache starts over.
const CACHED_COMMUNITIES_MAX: usize = 10_000;

/// Decisions of one command at most, when the set-up keeps changing under
/// it (as many as when its own stream does).
const SETUP_ATTEMPTS_MAX: usize = crate::commands::CONFLICT_ATTEMPTS_MAX;

/// Each community's set-up with the stream version it was read at.
type Cache = HashMap<CommunityId, (i64, Arc<Community>)>;

/// One community's reads of its set-up, taken one at a time.
#[derive(Default)]
struct Reads {
    /// Reads begun so far; each takes the next number.
    begun: AtomicU64,
    /// Held while a read runs; holds the number of the last read that
    /// finished and was kept.
    finished: tokio::sync::Mutex<u64>,
}

#[derive(Clone, Default)]
pub struct Directory {
    cached: Arc<Mutex<Cache>>,
    reads: Arc<Mutex<HashMap<CommunityId, Arc<Reads>>>>,
}

impl Directory {
    /// The community's current set-up; `NOT_FOUND` when it is not registered.
    pub async fn community(
        &self,
        commands: &Commands,
        community: CommunityId,
    ) -> AppResult<Arc<Community>> {
        Ok(self.read(commands, community).await?.community)
    }

    /// Runs a command on the community's set-up as this process keeps it,
    /// without reading it: the command's append carries the set-up's
    /// version as a condition (`RequestMeta::setup_version`, which
    /// `command` must put on the meta it appends with), so a set-up changed
    /// by another process since refuses the append. Then, and after any
    /// refusal decided on the kept set-up, the set-up is read and, if it
    /// moved, the command runs again on it (a bounded number of times): no
    /// one is refused, and nothing is decided, on a set-up that is no
    /// longer there.
    pub async fn deciding<T, F, Fut>(
        &self,
        commands: &Commands,
        community: CommunityId,
        command: F,
    ) -> AppResult<T>
    where
        F: Fn(SetUp) -> Fut,
        Fut: std::future::Future<Output = AppResult<T>>,
    {
        let mut setup = match self.kept(community) {
            Some(kept) => kept,
            None => self.read(commands, community).await?,
        };
        let mut attempt = 1;
        loop {
            let version = setup.version;
            match command(setup).await {
                Err(error) if decided_before_storing(&error) && attempt < SETUP_ATTEMPTS_MAX => {
                    setup = self.read(commands, community).await?;
                    if setup.version == version {
                        return Err(error);
                    }
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    fn kept(&self, community: CommunityId) -> Option<SetUp> {
        let kept = self.lock().get(&community).cloned();
        kept.map(|(version, community)| SetUp { community, version })
    }

    /// The set-up as of a read that began after this call did: this
    /// call's own, or one that another caller began while this one waited
    /// for its turn. Under load, one read answers every caller waiting at
    /// once instead of one read each.
    async fn read(&self, commands: &Commands, community: CommunityId) -> AppResult<SetUp> {
        let reads = self.reads_of(community);
        let arrived = reads.begun.load(Ordering::SeqCst);
        let mut finished = reads.finished.lock().await;
        if *finished > arrived {
            if let Some(kept) = self.kept(community) {
                return Ok(kept);
            }
        }
        let number = reads.begun.fetch_add(1, Ordering::SeqCst) + 1;
        let setup = self.read_now(commands, community).await?;
        *finished = number;
        Ok(setup)
    }

    /// The reads of one community's set-up (bounded like the cache: past
    /// the bound the map starts over, and callers holding an old entry
    /// only miss sharing a read with newer ones).
    fn reads_of(&self, community: CommunityId) -> Arc<Reads> {
        let mut reads = self
            .reads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if reads.len() >= CACHED_COMMUNITIES_MAX && !reads.contains_key(&community) {
            reads.clear();
        }
        reads.entry(community).or_default().clone()
    }

    /// The set-up brought up to date with one short read (none of it when
    /// nothing changed since it was kept).
    async fn read_now(&self, commands: &Commands, community: CommunityId) -> AppResult<SetUp> {
        let loaded = match self.kept(community) {
            Some(kept) => {
                let newer = commands
                    .store()
                    .read_stream(community, COMMUNITY_STREAM, kept.version + 1, 1)
                    .await?;
                if newer.is_empty() {
                    return Ok(kept);
                }
                Loaded::stored((*kept.community).clone(), kept.version)
            }
            None => Loaded::stored(Community::default(), 0),
        };
        let loaded = commands
            .load_from(community, COMMUNITY_STREAM, loaded)
            .await?;
        if !loaded.state.registered {
            return Err(AppError::not_found("community"));
        }
        let state = loaded.state;
        let mut cache = self.lock();
        if cache.len() >= CACHED_COMMUNITIES_MAX && !cache.contains_key(&community) {
            cache.clear();
        }
        // Two readers may race: the newer set-up stays.
        let newest = match cache.get(&community) {
            Some((version, kept)) if *version > loaded.version => (*version, kept.clone()),
            _ => (loaded.version, state),
        };
        cache.insert(community, newest.clone());
        Ok(SetUp {
            community: newest.1,
            version: newest.0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A community's set-up at a version of its stream.
#[derive(Clone)]
pub struct SetUp {
    pub community: Arc<Community>,
    pub version: i64,
}

impl SetUp {
    /// `meta` for an append decided on this set-up: it lands only while
    /// the set-up is still at this version.
    pub fn resting(&self, meta: &RequestMeta) -> RequestMeta {
        RequestMeta {
            setup_version: Some(self.version),
            ..meta.clone()
        }
    }
}

/// A refusal made before anything was stored (by the rules, or by the store
/// because a stream moved), which a decision on a newer set-up may not give.
/// Failures whose outcome is unknown (a commit that may have landed) are not
/// among them: deciding again could do a thing twice.
fn decided_before_storing(error: &AppError) -> bool {
    matches!(
        error,
        AppError::Forbidden(_)
            | AppError::NotFound(_)
            | AppError::Validation { .. }
            | AppError::Conflict(_)
            | AppError::Contended(_)
            | AppError::InsufficientPoints(_)
            | AppError::InsufficientBudget(_)
            | AppError::OutOfStock(_)
    )
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
