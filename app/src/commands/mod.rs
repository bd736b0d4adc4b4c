//! Runs commands: loads an aggregate from its stream, lets the caller check
//! who may do what against its state, decides, and appends the event with
//! the request's metadata, expecting the version it loaded. A concurrent
//! change is retried from the fresh state a bounded number of times.
//!
//! In one process, commands on the same stream take turns (see `streams`),
//! so they conflict only with other processes' writers.

mod streams;

use std::collections::BTreeMap;
use std::sync::Arc;

use cqrs_es::{Aggregate, DomainEvent};
use domain::Decide;
use serde::de::DeserializeOwned;
use serde::Serialize;
use store::{
    AppendOutcome, AppendRequest, CommunityId, EventStore, EventType, ExpectedVersion,
    IdempotencyKey, Landing, NewEvent, RecordedEvent, StoreError, StreamId, StreamType, Submitted,
};

use self::streams::{StateCache, StreamLocks};
use crate::clock::Clock;
use crate::content::Prepared;
use crate::error::{AppError, AppResult};
use crate::idempotency::{self, Idempotency};

/// Attempts of one command when other writers keep changing its stream.
pub(crate) const CONFLICT_ATTEMPTS_MAX: usize = 10;
/// Events read per round trip when loading a stream.
const LOAD_BATCH_SIZE: i64 = 1_000;
/// No stream the API loads is longer; a longer one is a bug or an attack.
const STREAM_EVENTS_MAX: i64 = 100_000;

/// Where a request comes from, recorded with every event it causes.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    pub request_id: String,
    pub client: Option<String>,
    /// The key the client sent, checked; never stored as it is.
    pub client_key: Option<crate::idempotency::ClientKey>,
    /// The key the store records: the client's, scoped to caller and
    /// operation (see `idempotency`), or one the server made.
    pub idempotency: Option<Idempotency>,
    pub actor: Option<domain::values::Actor>,
    /// The version of the community's set-up the command was decided on,
    /// when it was decided on the set-up as kept rather than as read
    /// (`Directory::deciding`): the append lands only while the set-up is
    /// still there, and one that moved refuses it at once (`Contended`),
    /// to be decided again on a fresh read.
    pub setup_version: Option<i64>,
}

impl RequestMeta {
    fn metadata(&self) -> BTreeMap<String, String> {
        let mut metadata = BTreeMap::new();
        metadata.insert("request_id".to_string(), self.request_id.clone());
        if let Some(client) = &self.client {
            metadata.insert("client".to_string(), client.clone());
        }
        if let Some(idempotency) = &self.idempotency {
            metadata.insert("idempotency_key".to_string(), idempotency.key.clone());
        }
        if let Some(actor) = &self.actor {
            metadata.insert("actor_id".to_string(), actor.person.to_string());
            metadata.insert(
                "actor_role".to_string(),
                crate::caller::role_name(actor.role),
            );
        }
        metadata
    }
}

/// An aggregate loaded from its stream, at a version.
pub struct Loaded<A> {
    /// Shared with the states kept (`StateCache`): a load or a decision
    /// copies it only to change it.
    pub state: Arc<A>,
    pub version: i64,
    /// The append of this process, queued and not yet committed, that
    /// brings the stream to `version`: a decision on this state lands only
    /// behind it.
    pub landing: Option<Landing>,
}

impl<A> Loaded<A> {
    /// A state read from the log (or a stream known to be empty).
    pub fn stored(state: A, version: i64) -> Self {
        Loaded {
            state: Arc::new(state),
            version,
            landing: None,
        }
    }
}

/// One stream's part of an append: the event an aggregate decided.
pub struct Decided {
    pub stream_id: StreamId,
    pub stream_type: &'static str,
    pub expected_version: i64,
    pub event: NewEvent,
}

/// What a command on several streams decided: one event per stream, and
/// each stream's state after it (kept once the append succeeds).
pub struct Decision<T> {
    decided: Vec<Decided>,
    after: Vec<(String, i64, Arc<dyn std::any::Any + Send + Sync>)>,
    /// The queued appends the loaded states rest on.
    behind: Vec<Landing>,
    /// What the caller wants back once it is appended.
    value: T,
}

impl<T> Decision<T> {
    pub fn new(value: T) -> Self {
        Decision {
            decided: Vec::new(),
            after: Vec::new(),
            behind: Vec::new(),
            value,
        }
    }

    /// Adds the event an aggregate loaded from `stream_id` decided.
    pub fn with<A>(
        mut self,
        stream_id: &str,
        loaded: &Loaded<A>,
        event: &A::Event,
    ) -> AppResult<Self>
    where
        A: Aggregate + Clone + 'static,
        A::Event: Serialize + Clone,
    {
        self.decided
            .push(decided::<A>(stream_id, loaded.version, event)?);
        self.behind.extend(loaded.landing.iter().cloned());
        let mut state = A::clone(&loaded.state);
        state.apply(event.clone());
        self.after
            .push((stream_id.to_string(), loaded.version + 1, Arc::new(state)));
        Ok(self)
    }
}

/// A command on several streams decided and queued, not yet landed
/// ([`Commands::queue_all`]).
pub enum Queued<T> {
    Submitted {
        submitted: Submitted,
        value: T,
        /// The appends it was queued behind.
        behind: Vec<Landing>,
        attempt: usize,
    },
    /// Answered without queueing: a retry of a request already carried out.
    Done(Ran<T>),
}

/// A command on several streams of one community, as `execute_all` runs
/// it: `decide` loads what it needs and decides (see there).
pub struct OnStreams<'a, F> {
    pub community: CommunityId,
    pub streams: &'a [String],
    pub meta: &'a RequestMeta,
    pub contents: &'a [Prepared],
    pub decide: F,
}

/// How a command on several streams ended.
pub enum Ran<T> {
    Appended(AppendOutcome, T),
    /// A retry of a request that was already carried out: its outcome.
    Repeated(AppendOutcome),
}

#[derive(Clone)]
pub struct Commands {
    store: EventStore,
    clock: Arc<dyn Clock>,
    locks: StreamLocks,
    cache: StateCache,
}

impl Commands {
    pub fn new(store: EventStore, clock: Arc<dyn Clock>) -> Self {
        Commands {
            store,
            clock,
            locks: StreamLocks::default(),
            cache: StateCache::default(),
        }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// Folds a stream into its aggregate, reading from `from` (a loaded
    /// state's version + 1) on.
    pub async fn load_from<A>(
        &self,
        community: CommunityId,
        stream_id: &str,
        mut loaded: Loaded<A>,
    ) -> AppResult<Loaded<A>>
    where
        A: Aggregate + Clone,
        A::Event: DeserializeOwned,
    {
        loop {
            let events = self
                .store
                .read_stream(community, stream_id, loaded.version + 1, LOAD_BATCH_SIZE)
                .await?;
            let done = (events.len() as i64) < LOAD_BATCH_SIZE;
            fold(&mut loaded, &events)?;
            if loaded.version > STREAM_EVENTS_MAX {
                return Err(AppError::internal(format!(
                    "stream {stream_id} is too long"
                )));
            }
            if done {
                return Ok(loaded);
            }
        }
    }

    /// The aggregate as of now: from the cache, brought up to date.
    pub async fn load<A>(&self, community: CommunityId, stream_id: &str) -> AppResult<Loaded<A>>
    where
        A: Aggregate + Default + Clone + 'static,
        A::Event: DeserializeOwned,
    {
        // A state on its way counts once it has landed.
        let start = match self.cache.get::<A>(community.as_uuid(), stream_id) {
            Some(kept) => match &kept.landing {
                Some(landing) if !landing.settled().await => Loaded::stored(A::default(), 0),
                _ => Loaded {
                    landing: None,
                    ..kept
                },
            },
            None => Loaded::stored(A::default(), 0),
        };
        let loaded = self.load_from(community, stream_id, start).await?;
        self.remember(community, stream_id, &loaded);
        Ok(loaded)
    }

    /// Keeps a state the caller knows to be at `loaded.version`.
    pub fn remember<A>(&self, community: CommunityId, stream_id: &str, loaded: &Loaded<A>)
    where
        A: Aggregate + Clone + 'static,
    {
        self.cache.put_shared(
            community.as_uuid(),
            stream_id,
            loaded.version,
            loaded.state.clone(),
            None,
        );
    }

    /// Keeps a stream whose id was just minted as empty, unless a state of
    /// it is kept already, so that a decision under `execute_all` takes it
    /// without reading. If the stream exists after all (a retry's id,
    /// derived from its key), the append conflicts, the kept state is
    /// forgotten and the decision is made again from a read.
    pub fn mint<A>(&self, community: CommunityId, stream_id: &str)
    where
        A: Aggregate + Default + Clone + 'static,
    {
        self.cache
            .put(community.as_uuid(), stream_id, 0, &A::default());
    }

    /// The aggregate for a decision under its stream's lock: as kept after
    /// this process's last write, without reading, or else loaded. The
    /// last write may still be on its way: the decision is then queued
    /// behind it, and lands only if it does. A kept state can be behind
    /// only if another process wrote the stream; then the append conflicts
    /// and `execute_all` decides again from a read.
    pub async fn load_kept<A>(
        &self,
        community: CommunityId,
        stream_id: &str,
    ) -> AppResult<Loaded<A>>
    where
        A: Aggregate + Default + Clone + 'static,
        A::Event: DeserializeOwned,
    {
        match self.cache.get::<A>(community.as_uuid(), stream_id) {
            Some(kept) => Ok(kept),
            None => self.load(community, stream_id).await,
        }
    }

    /// Waits for this process's appends on their way to these streams,
    /// then drops what is kept of them: the next decision reads what
    /// landed, and what other processes wrote.
    async fn settle_and_forget(&self, community: CommunityId, streams: &[String]) {
        for landing in self.cache.on_their_way(community.as_uuid(), streams) {
            landing.settled().await;
        }
        self.cache.forget(community.as_uuid(), streams);
    }

    /// Runs a command that changes several streams of one community at
    /// once. With the streams locked, `decide` loads what it needs (with
    /// `load_kept`) and decides one event per stream; they are appended
    /// together, each at the version it was decided on. A conflict with
    /// another process decides again from fresh reads, and so does a
    /// refusal decided on kept states, so that no one is refused on stale
    /// state; a retried request is answered with its first outcome.
    ///
    /// The streams stay locked only until the append is queued, not until
    /// it commits: the next command on a busy stream is decided on the
    /// state this one leaves and queued right behind it, landing only if
    /// this one does (`store::Landing`), so many commands on one stream
    /// share a commit.
    pub async fn execute_all<T, F, Fut>(
        &self,
        community: CommunityId,
        streams: &[String],
        meta: &RequestMeta,
        contents: &[Prepared],
        decide: F,
    ) -> AppResult<Ran<T>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = AppResult<Decision<T>>>,
    {
        let command = OnStreams {
            community,
            streams,
            meta,
            contents,
            decide,
        };
        let queued = self.queue_all(&command).await?;
        self.land_all(&command, queued).await
    }

    /// The first half of [`Commands::execute_all`]: decides and queues the
    /// append, and returns once it is queued. A caller that queues several
    /// commands one after another gets them planned in that order, then
    /// waits for each with [`Commands::land_all`].
    pub async fn queue_all<T, F, Fut>(&self, command: &OnStreams<'_, F>) -> AppResult<Queued<T>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = AppResult<Decision<T>>>,
    {
        self.decide_and_queue(command, 1, false).await
    }

    /// The second half of [`Commands::execute_all`]: waits for the append
    /// to land; one that conflicted is decided again from fresh reads.
    pub async fn land_all<T, F, Fut>(
        &self,
        command: &OnStreams<'_, F>,
        mut queued: Queued<T>,
    ) -> AppResult<Ran<T>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = AppResult<Decision<T>>>,
    {
        let (community_id, streams) = (command.community.as_uuid(), command.streams);
        loop {
            let (submitted, value, behind, attempt) = match queued {
                Queued::Done(ran) => return Ok(ran),
                Queued::Submitted {
                    submitted,
                    value,
                    behind,
                    attempt,
                } => (submitted, value, behind, attempt),
            };
            let landing = submitted.landing();
            let refusal = match submitted.outcome().await {
                Ok(outcome) if !outcome.replayed => return Ok(Ran::Appended(outcome, value)),
                // The key's first attempt carried it out; what was decided
                // now, and kept, was not written.
                Ok(outcome) => {
                    self.cache.forget_behind(community_id, streams, &landing);
                    return Ok(Ran::Repeated(outcome));
                }
                Err(refusal) => refusal,
            };
            self.cache.forget_behind(community_id, streams, &landing);
            match refusal {
                conflict if setup_moved(command.meta, &conflict) => {
                    return Err(append_error(conflict))
                }
                // A stream moved under us, or an append this one was queued
                // behind did not land (only that: a key used for another
                // request, or a refusal, is not retried).
                StoreError::Conflict { .. } if attempt < CONFLICT_ATTEMPTS_MAX => {
                    let behind_failed = behind.iter().any(Landing::has_failed);
                    if !behind_failed {
                        tokio::time::sleep(conflict_pause(attempt)).await;
                    }
                    queued = self.decide_and_queue(command, attempt + 1, true).await?;
                }
                other => return Err(append_error(other)),
            }
        }
    }

    /// One attempt: with the streams locked, decides and queues.
    async fn decide_and_queue<T, F, Fut>(
        &self,
        command: &OnStreams<'_, F>,
        attempt: usize,
        mut read_fresh: bool,
    ) -> AppResult<Queued<T>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = AppResult<Decision<T>>>,
    {
        let OnStreams {
            community,
            streams,
            meta,
            contents,
            decide,
        } = command;
        let community = *community;
        let _turn = self.locks.lock(community.as_uuid(), streams).await;
        if read_fresh {
            self.settle_and_forget(community, streams).await;
        }
        loop {
            let decision = match decide().await {
                Ok(decision) => decision,
                Err(error) => {
                    if let Some(outcome) = self.first_outcome(community, meta).await? {
                        return Ok(Queued::Done(Ran::Repeated(outcome)));
                    }
                    if read_fresh {
                        return Err(error);
                    }
                    self.settle_and_forget(community, streams).await;
                    read_fresh = true;
                    continue;
                }
            };
            let request = self.request(
                community,
                meta,
                decision.decided,
                contents,
                &decision.behind,
            )?;
            let submitted = self.store.submit(request).await.map_err(append_error)?;
            let landing = submitted.landing();
            for (stream_id, version, state) in decision.after {
                self.cache.put_shared(
                    community.as_uuid(),
                    &stream_id,
                    version,
                    state,
                    Some(landing.clone()),
                );
            }
            return Ok(Queued::Submitted {
                submitted,
                value: decision.value,
                behind: decision.behind,
                attempt,
            });
        }
    }

    /// Runs one command on one aggregate. `command` sees the state (to
    /// check the caller's scope against it) and builds the command, or
    /// refuses. The state is first the one this process kept after its
    /// last committed write, without a read; a conflict, or a refusal, is
    /// decided again on the stream as read. `contents` (what the command's
    /// hashes name) are stored once the command is decided, before its
    /// event is appended, so a refused command stores nothing.
    pub async fn execute<A>(
        &self,
        community: CommunityId,
        stream_id: &str,
        meta: &RequestMeta,
        contents: &[Prepared],
        command: impl Fn(&A) -> AppResult<A::Command>,
    ) -> AppResult<(AppendOutcome, Arc<A>)>
    where
        A: Aggregate + Decide + Default + Clone + 'static,
        A::Event: DeserializeOwned + Serialize,
    {
        self.execute_on(community, stream_id, meta, contents, command, false)
            .await
    }

    /// [`Commands::execute`] for a stream whose id was just minted: the
    /// first decision is made on the empty stream without reading it. If
    /// the stream exists after all (a retry's id, derived from its key),
    /// the append conflicts and the command is decided again from a read.
    pub async fn execute_new<A>(
        &self,
        community: CommunityId,
        stream_id: &str,
        meta: &RequestMeta,
        contents: &[Prepared],
        command: impl Fn(&A) -> AppResult<A::Command>,
    ) -> AppResult<(AppendOutcome, Arc<A>)>
    where
        A: Aggregate + Decide + Default + Clone + 'static,
        A::Event: DeserializeOwned + Serialize,
    {
        self.execute_on(community, stream_id, meta, contents, command, true)
            .await
    }

    async fn execute_on<A>(
        &self,
        community: CommunityId,
        stream_id: &str,
        meta: &RequestMeta,
        contents: &[Prepared],
        command: impl Fn(&A) -> AppResult<A::Command>,
        minted: bool,
    ) -> AppResult<(AppendOutcome, Arc<A>)>
    where
        A: Aggregate + Decide + Default + Clone + 'static,
        A::Event: DeserializeOwned + Serialize,
    {
        let _turn = self
            .locks
            .lock(community.as_uuid(), &[stream_id.to_string()])
            .await;
        if let Some(outcome) = self.first_outcome(community, meta).await? {
            let loaded = self.load::<A>(community, stream_id).await?;
            return Ok((outcome, loaded.state));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The first decision is made without reading: on the empty state
            // of a minted stream, or on the state this process kept after
            // its last committed write. It can be behind only if another
            // process wrote the stream; then the append conflicts, and a
            // refusal is decided again, both from a fresh read.
            let unread = match attempt {
                1 if minted => Some(Loaded::stored(A::default(), 0)),
                1 => self
                    .cache
                    .get::<A>(community.as_uuid(), stream_id)
                    .filter(|kept| kept.landing.is_none()),
                _ => None,
            };
            let read = unread.is_none();
            let mut loaded = match unread {
                Some(loaded) => loaded,
                None => self.load::<A>(community, stream_id).await?,
            };
            let decision = command(&loaded.state).and_then(|c| Ok(loaded.state.decide(c)?));
            let event = match decision {
                Ok(event) => event,
                // A retry that raced its first attempt: the first one
                // committed after this one loaded, so answer with it.
                Err(error) => match self.first_outcome(community, meta).await? {
                    Some(outcome) => {
                        let loaded = self.load::<A>(community, stream_id).await?;
                        return Ok((outcome, loaded.state));
                    }
                    // No one is refused on a state that was not read.
                    None if !read => continue,
                    None => return Err(error),
                },
            };
            let decided = decided::<A>(stream_id, loaded.version, &event)?;
            match self
                .try_append(community, meta, vec![decided], contents)
                .await?
            {
                Err(conflict) if setup_moved(meta, &conflict) => {
                    return Err(append_error(conflict))
                }
                // Decided on a kept state another process has moved past:
                // read and decide again at once; after a read, back off.
                Err(StoreError::Conflict { .. }) if attempt < CONFLICT_ATTEMPTS_MAX => {
                    if read {
                        tokio::time::sleep(conflict_pause(attempt)).await;
                    }
                }
                Err(error) => return Err(append_error(error)),
                // The key's first attempt (another process's) committed
                // after this one looked: answer with it and with the state it
                // stored, never the state decided here, which was not.
                Ok(outcome) if outcome.replayed => {
                    let stored = self.load::<A>(community, stream_id).await?;
                    return Ok((outcome, stored.state));
                }
                Ok(outcome) => {
                    Arc::make_mut(&mut loaded.state).apply(event);
                    loaded.version += 1;
                    self.remember(community, stream_id, &loaded);
                    return Ok((outcome, loaded.state));
                }
            }
        }
    }

    /// The first outcome of the request's idempotency key, if it has one and
    /// the key was used: a retry is answered with it, not decided again
    /// (against state the first attempt already changed).
    pub async fn first_outcome(
        &self,
        community: CommunityId,
        meta: &RequestMeta,
    ) -> AppResult<Option<AppendOutcome>> {
        let Some(idempotency) = &meta.idempotency else {
            return Ok(None);
        };
        let key = IdempotencyKey::parse(idempotency.key.clone())?;
        match self.store.idempotent_outcome(community, &key).await? {
            Some(first) if idempotency.matches(&first.request_hash) => Ok(Some(first.outcome)),
            Some(_) => Err(idempotency::reused()),
            None => Ok(None),
        }
    }

    /// Appends what aggregates decided, atomically. A conflict surfaces as
    /// `CONFLICT`; callers that can re-decide do so.
    pub async fn append(
        &self,
        community: CommunityId,
        meta: &RequestMeta,
        decided: Vec<Decided>,
    ) -> AppResult<AppendOutcome> {
        self.try_append(community, meta, decided, &[])
            .await?
            .map_err(append_error)
    }

    /// Appends, answering the store's own refusal as it is (outside) so the
    /// command loops can tell a stream that moved (`StoreError::Conflict`,
    /// retried) from every other refusal; a request that cannot be built
    /// is the error inside. `contents` (what the events' hashes name) are
    /// stored in the append's own transaction: one commit for both.
    async fn try_append(
        &self,
        community: CommunityId,
        meta: &RequestMeta,
        decided: Vec<Decided>,
        contents: &[Prepared],
    ) -> AppResult<Result<AppendOutcome, StoreError>> {
        let request = self.request(community, meta, decided, contents, &[])?;
        Ok(self.store.append(request).await)
    }

    /// The append of what aggregates decided, with the request's metadata,
    /// key and set-up condition, queued behind `behind`.
    fn request(
        &self,
        community: CommunityId,
        meta: &RequestMeta,
        decided: Vec<Decided>,
        contents: &[Prepared],
        behind: &[Landing],
    ) -> AppResult<AppendRequest> {
        let mut request = AppendRequest::new(community);
        for landing in behind {
            request = request.after(landing.clone());
        }
        for piece in contents {
            request = piece.carried_by(request);
        }
        for part in decided {
            let expected = match part.expected_version {
                0 => ExpectedVersion::NoStream,
                version => ExpectedVersion::Exact(version),
            };
            let mut event = part.event;
            event.metadata = meta.metadata();
            request = request.stream(
                part.stream_id,
                StreamType::parse(part.stream_type)?,
                expected,
                vec![event],
            );
        }
        if let Some(idempotency) = &meta.idempotency {
            let key = IdempotencyKey::parse(idempotency.key.clone())?;
            request = request.idempotent_as(key, idempotency.fingerprint);
        }
        if let Some(version) = meta.setup_version {
            request = request.provided(
                StreamId::parse(COMMUNITY_STREAM)?,
                ExpectedVersion::Exact(version),
            );
        }
        Ok(request)
    }
}

/// Whether an append was refused because the set-up it was decided on
/// moved: deciding again here would rest on the same set-up, so the
/// caller that kept it decides again on a fresh read instead.
fn setup_moved(meta: &RequestMeta, refusal: &StoreError) -> bool {
    meta.setup_version.is_some()
        && matches!(refusal, StoreError::Conflict { stream_id, .. } if stream_id == COMMUNITY_STREAM)
}

/// What a client hears of a store refusal of an append.
fn append_error(error: StoreError) -> AppError {
    match error {
        StoreError::Conflict { .. } => {
            AppError::Contended("someone changed this at the same moment; try again".into())
        }
        StoreError::IdempotencyKeyReused { .. } => idempotency::reused(),
        other => other.into(),
    }
}

/// A short, growing, jittered pause before deciding again after a conflict
/// with another process, so that two retrying writers drift apart.
fn conflict_pause(attempt: usize) -> std::time::Duration {
    use rand::Rng;
    let ceiling_ms = 2_u64 << attempt.min(6);
    std::time::Duration::from_millis(rand::thread_rng().gen_range(1..=ceiling_ms))
}

/// Folds `events`, the next of its stream, into a loaded aggregate.
pub fn fold<A>(loaded: &mut Loaded<A>, events: &[RecordedEvent]) -> AppResult<()>
where
    A: Aggregate + Clone,
    A::Event: DeserializeOwned,
{
    if events.is_empty() {
        return Ok(());
    }
    // Copied only if the kept states share it.
    let state = Arc::make_mut(&mut loaded.state);
    for event in events {
        assert_eq!(
            event.stream_version,
            loaded.version + 1,
            "stream versions are gap-free"
        );
        state.apply(event.decode::<A::Event>()?);
        loaded.version = event.stream_version;
    }
    Ok(())
}

/// The event an aggregate decided, ready to append to its stream.
pub fn decided<A>(stream_id: &str, version: i64, event: &A::Event) -> AppResult<Decided>
where
    A: Aggregate,
    A::Event: Serialize,
{
    let payload = serde_json::to_value(event).map_err(AppError::internal)?;
    Ok(Decided {
        stream_id: StreamId::parse(stream_id)?,
        stream_type: A::TYPE,
        expected_version: version,
        event: NewEvent {
            event_version: event.event_version(),
            ..NewEvent::new(EventType::parse(event.event_type())?, payload)
        },
    })
}

pub use domain::streams::{
    patrol as patrol_stream, report as report_stream, suggestion as suggestion_stream,
    COMMUNITY as COMMUNITY_STREAM,
};
