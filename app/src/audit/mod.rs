//! Audit (docs/AUDIT.md): verifying a community's history (the hash chain
//! and the points ledger's invariants), from the database or from an
//! export alone, and exporting it as NDJSON.

pub mod erasure;
pub mod export;
pub mod ledger;
pub mod proofs;
pub mod replay;
pub mod seals;

use serde::{Deserialize, Serialize};
use store::verify::ChainChecker;
use store::{CommunityId, EventStore, RecordedEvent, StoreError};

use ledger::LedgerChecker;
pub use ledger::{Failure, FAILURES};

/// Events read per round trip while verifying or exporting.
pub const AUDIT_BATCH_SIZE: i64 = 5_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    pub community_id: CommunityId,
    /// False for an export that does not start at position 1: the ledger
    /// needs the whole history.
    pub ledger_checked: bool,
    /// Seals checked against the events (each at a position the range
    /// holds).
    pub seals_checked: i64,
    /// Seals whose tree root was checked against the tree of the events
    /// (a range from position 1 only; seals made before the tree have no
    /// root).
    pub tree_roots_checked: i64,
    /// Whether the seals were checked against a key the auditor pinned;
    /// without one each seal is checked against the key it names, which
    /// anyone can sign with: no seal was trusted.
    pub seals_trusted: bool,
    /// Whether every erasure was checked against the chain: each
    /// tombstone (an export's erasure line) against its `ContentErased`
    /// event and each such event against a tombstone. False for a range
    /// that does not start at position 1, where an erasure's event may lie
    /// before it.
    pub erasures_checked: bool,
    /// The chain is checked from here (the ledger always from position 1).
    pub from_position: i64,
    pub to_position: i64,
    pub events_checked: i64,
    /// The first position where anything failed, and what.
    pub first_failure: Option<Failure>,
}

impl AuditReport {
    pub fn is_intact(&self) -> bool {
        self.first_failure.is_none()
    }
}

/// The head of a community's chain as its head row holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub position: i64,
    #[serde(with = "store::types::hex_bytes")]
    pub hash: [u8; 32],
    /// The last position the events were read (or exported) up to.
    pub checked_to: i64,
    /// The first position read (or exported): an export names where it
    /// starts, so that events cut from its front are missed. Exports
    /// written before it was named have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_position: Option<i64>,
}

/// Checks events fed in position order from position 1: the chain from
/// `from_position` on, the ledger throughout.
pub struct Verifier {
    from_position: i64,
    to_position: i64,
    next_position: i64,
    last_hash: [u8; 32],
    chain: Option<ChainChecker>,
    ledger: Option<LedgerChecker>,
    /// Seals not yet reached, by position, and the key they must be by.
    seals: std::collections::VecDeque<store::Seal>,
    trusted_key: Option<[u8; 32]>,
    seals_checked: i64,
    /// The log's Merkle tree, grown as events are fed from position 1.
    tree: Option<store::merkle::Frontier>,
    tree_roots_checked: i64,
    /// The first position fed.
    from_start: i64,
    /// The tombstones of erased content, to be matched with the chain's
    /// `ContentErased` events; `None` when the range cannot tell.
    erasures: Option<Erasures>,
    checked: i64,
    failure: Option<Failure>,
}

/// A tombstone as the database keeps it and an export writes it: what was
/// erased, by whom and why.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Tombstone {
    pub content_hash: String,
    pub erased_by: String,
    pub reason: String,
}

/// Tombstones and the erasures the chain recorded, matched at the end.
#[derive(Default)]
struct Erasures {
    tombstones: std::collections::BTreeMap<String, Tombstone>,
    /// Each `ContentErased` event seen: its content, by whom, why, where.
    recorded: Vec<(Tombstone, i64)>,
}

impl Erasures {
    fn see(&mut self, event: &RecordedEvent) -> Result<(), Failure> {
        if event.event_type != "ContentErased" {
            return Ok(());
        }
        let undecodable = |detail: String| Failure::new(event.position, "undecodable", detail);
        let payload = event
            .payload_value()
            .map_err(|e| undecodable(e.to_string()))?;
        let fields = &payload["ContentErased"];
        let text = |name: &str| {
            fields[name]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| undecodable(format!("ContentErased without {name}")))
        };
        self.recorded.push((
            Tombstone {
                content_hash: text("content")?,
                erased_by: text("by")?,
                reason: text("reason")?,
            },
            event.position,
        ));
        Ok(())
    }

    /// Every recorded erasure has its tombstone, alike; every tombstone
    /// was recorded.
    fn finish(mut self) -> Result<(), Failure> {
        for (recorded, position) in &self.recorded {
            match self.tombstones.remove(&recorded.content_hash) {
                None => {
                    return Err(Failure::new(
                        *position,
                        "erasure_tombstone_missing",
                        format!(
                            "the chain records the erasure of {} and no tombstone says so",
                            recorded.content_hash
                        ),
                    ))
                }
                Some(tombstone) if tombstone != *recorded => {
                    return Err(Failure::new(
                        *position,
                        "erasure_mismatch",
                        format!(
                            "the tombstone of {} names another who or why than the chain",
                            recorded.content_hash
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        match self.tombstones.into_keys().next() {
            Some(hash) => Err(Failure::new(
                0,
                "erasure_unrecorded",
                format!("{hash} is said to be erased and the chain records no such erasure"),
            )),
            None => Ok(()),
        }
    }
}

impl Verifier {
    /// For events from position 1 on.
    pub fn new(from_position: i64, to_position: i64) -> Self {
        Verifier::starting_at(
            1,
            store::canonical::GENESIS_HASH,
            from_position,
            to_position,
        )
    }

    /// For events from `start` on, trusting `start_hash` as the hash before
    /// it; the ledger is checked only from position 1.
    pub fn starting_at(
        start: i64,
        start_hash: [u8; 32],
        from_position: i64,
        to_position: i64,
    ) -> Self {
        Verifier {
            from_position: from_position.max(start),
            to_position,
            next_position: start,
            last_hash: start_hash,
            chain: None,
            ledger: (start == 1).then(LedgerChecker::default),
            seals: Default::default(),
            trusted_key: None,
            seals_checked: 0,
            tree: (start == 1).then(store::merkle::Frontier::default),
            tree_roots_checked: 0,
            from_start: start,
            erasures: None,
            checked: 0,
            failure: None,
        }
    }

    /// Also checks these seals (any order; the same seal given twice is
    /// checked once) against the events, signed by `trusted_key` when
    /// given.
    pub fn with_seals(
        mut self,
        mut seals: Vec<store::Seal>,
        trusted_key: Option<[u8; 32]>,
    ) -> Self {
        seals.sort_by(|a, b| (a.position, &a.signature).cmp(&(b.position, &b.signature)));
        seals.dedup();
        self.seals = seals.into();
        self.trusted_key = trusted_key;
        self
    }

    /// Also matches these tombstones with the chain's erasures, when the
    /// range starts at position 1 (else an erasure's event may lie before
    /// it, and the report says they were not checked).
    pub fn with_tombstones(mut self, tombstones: Vec<Tombstone>) -> Self {
        if self.next_position == 1 {
            self.erasures = Some(Erasures {
                tombstones: tombstones
                    .into_iter()
                    .map(|t| (t.content_hash.clone(), t))
                    .collect(),
                recorded: Vec::new(),
            });
        }
        self
    }

    /// Checks the seals of this event's position.
    fn check_seals(&mut self, event: &RecordedEvent) -> Result<(), Failure> {
        while let Some(seal) = self.seals.front() {
            if seal.position > event.position {
                break;
            }
            let seal = self.seals.pop_front().expect("a front seal");
            if seal.position < event.position {
                continue; // before the range checked
            }
            let broken =
                |what: &str, detail: &str| Failure::new(seal.position, what, detail.to_string());
            if let Err(what) = seals::check_signature(&seal, self.trusted_key.as_ref()) {
                return Err(broken(what, "the seal's signature does not hold"));
            }
            self.seals_checked += 1;
            if seal.hash != event.hash || seal.community_id != event.community_id {
                return Err(broken(
                    "seal_mismatch",
                    "the log no longer has the sealed hash here: it was rewritten",
                ));
            }
            if let (Some(root), Some(tree)) = (seal.tree_root, &self.tree) {
                self.tree_roots_checked += 1;
                if tree.root() != root {
                    return Err(broken(
                        "seal_tree_mismatch",
                        "the seal's tree root is not the root of the events up to it",
                    ));
                }
            }
        }
        Ok(())
    }

    /// False once something failed or the range is done: feed no more.
    pub fn check(&mut self, event: &RecordedEvent) -> bool {
        let recomputed = store::verify::recompute_hash(event).ok();
        self.check_recomputed(event, recomputed)
    }

    /// `check`, with the event's hash recomputed already.
    pub fn check_recomputed(
        &mut self,
        event: &RecordedEvent,
        recomputed: Option<[u8; 32]>,
    ) -> bool {
        if self.failure.is_some() || event.position > self.to_position {
            return false;
        }
        if event.position != self.next_position {
            return self.fail(Failure::new(
                self.next_position,
                "missing_position",
                format!("position {} came next", event.position),
            ));
        }
        if event.position == self.from_position {
            self.chain = Some(ChainChecker::new(self.from_position, self.last_hash));
        }
        if let Some(chain) = &mut self.chain {
            if let Err(mismatch) = chain.check_recomputed(event, recomputed) {
                return self.fail(Failure::new(
                    mismatch.position,
                    &domain::values::serialized_name(&mismatch.kind),
                    "the hash chain does not hold here",
                ));
            }
            self.checked += 1;
        }
        if let Some(Err(failure)) = self.ledger.as_mut().map(|ledger| ledger.check(event)) {
            return self.fail(failure);
        }
        if let Some(tree) = &mut self.tree {
            tree.push(&event.hash, |_, _| {});
        }
        if let Err(failure) = self.check_seals(event) {
            return self.fail(failure);
        }
        if let Some(Err(failure)) = self.erasures.as_mut().map(|e| e.see(event)) {
            return self.fail(failure);
        }
        self.next_position += 1;
        self.last_hash = event.hash;
        true
    }

    fn fail(&mut self, failure: Failure) -> bool {
        self.failure = Some(failure);
        false
    }

    /// The report, after the last event; `head` is the chain's head when
    /// the range reaches it.
    pub fn finish(mut self, community: CommunityId, head: Option<&ChainHead>) -> AuditReport {
        let last = self.next_position - 1;
        if let (None, Some(head)) = (&self.failure, head) {
            let start = self.from_start;
            if head.from_position.is_some_and(|from| from != start) {
                let from = head.from_position.unwrap_or(start);
                self.failure = Some(Failure::new(
                    from.min(start),
                    "missing_position",
                    format!("the export says it starts at {from}; its events start at {start}"),
                ));
            } else if last < head.checked_to {
                self.failure = Some(Failure::new(
                    last + 1,
                    "missing_position",
                    format!("the events end at {last}, the range at {}", head.checked_to),
                ));
            } else if head.position == last && head.hash != self.last_hash {
                self.failure = Some(Failure::new(
                    head.position,
                    "head_mismatch",
                    "the head row names another hash",
                ));
            }
        }
        // A seal past the end of a log read to its head: the log was cut.
        let complete = head.is_some_and(|head| last >= head.position);
        if let (None, true, Some(seal)) = (&self.failure, complete, self.seals.front()) {
            self.failure = Some(Failure::new(
                seal.position,
                "seal_beyond_log",
                format!(
                    "a seal names position {} and the log ends at {last}",
                    seal.position
                ),
            ));
        }
        if self.failure.is_none() {
            self.failure = self
                .ledger
                .as_ref()
                .and_then(|ledger| ledger.finish().err());
        }
        // Only a range read to the head has every erasure in it.
        let erasures_checked = complete && self.erasures.is_some();
        if let (None, true, Some(erasures)) = (&self.failure, complete, self.erasures.take()) {
            self.failure = erasures.finish().err();
        }
        AuditReport {
            community_id: community,
            ledger_checked: self.ledger.is_some(),
            erasures_checked,
            seals_checked: self.seals_checked,
            tree_roots_checked: self.tree_roots_checked,
            seals_trusted: self.trusted_key.is_some(),
            from_position: self.from_position,
            to_position: last,
            events_checked: self.checked,
            first_failure: self.failure,
        }
    }
}

/// Verifies a community in the database: positions `from..=to` of the
/// chain (clamped to the head), the ledger up to `to`, and every seal in
/// the range, signed by `trusted_key` when given.
pub async fn verify(
    store: &EventStore,
    community: CommunityId,
    from_position: i64,
    to_position: i64,
    trusted_key: Option<[u8; 32]>,
) -> Result<AuditReport, StoreError> {
    let head = store.head(community).await?;
    let to_position = to_position.min(head.position);
    let seals = all_seals(store, community).await?;
    let seals = seals
        .into_iter()
        .filter(|seal| {
            seal.position >= from_position
                && (seal.position <= to_position || to_position == head.position)
        })
        .collect();
    let tombstones = store
        .erased_contents(community)
        .await?
        .into_iter()
        .map(|(hash, tombstone)| Tombstone {
            content_hash: hash.to_hex(),
            erased_by: tombstone.erased_by,
            reason: tombstone.reason,
        })
        .collect();
    let mut verifier = Verifier::new(from_position, to_position)
        .with_seals(seals, trusted_key)
        .with_tombstones(tombstones);
    // The next batch is read while this one is checked; hashes are
    // recomputed on every core, links and the ledger checked in order.
    let read = |next: i64| {
        let store = store.clone();
        tokio::spawn(async move { store.read_log(community, next, AUDIT_BATCH_SIZE).await })
    };
    let mut pending = (to_position >= 1).then(|| read(1));
    while let Some(reading) = pending.take() {
        let batch = reading
            .await
            .map_err(|error| StoreError::Corrupt(format!("a read failed: {error}")))??;
        let Some(last) = batch.last().map(|event| event.position) else {
            break;
        };
        if last < to_position {
            pending = Some(read(last + 1));
        }
        let (batch, hashes) = recompute_all(batch).await?;
        let mut going = true;
        for (event, recomputed) in batch.iter().zip(hashes) {
            going = verifier.check_recomputed(event, recomputed);
            if !going {
                break;
            }
        }
        if !going {
            break;
        }
    }
    let head = ChainHead {
        position: head.position,
        hash: head.hash,
        checked_to: to_position,
        from_position: Some(1),
    };
    Ok(verifier.finish(community, Some(&head)))
}

/// Every event's hash recomputed, the batch split across the cores.
async fn recompute_all(
    batch: Vec<RecordedEvent>,
) -> Result<(Vec<RecordedEvent>, Vec<Option<[u8; 32]>>), StoreError> {
    let parts = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let size = batch.len().div_ceil(parts).max(1);
    let batch = std::sync::Arc::new(batch);
    let tasks: Vec<_> = (0..batch.len())
        .step_by(size)
        .map(|start| {
            let batch = batch.clone();
            tokio::task::spawn_blocking(move || {
                batch[start..(start + size).min(batch.len())]
                    .iter()
                    .map(|event| store::verify::recompute_hash(event).ok())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut hashes = Vec::with_capacity(batch.len());
    for task in tasks {
        hashes.extend(
            task.await
                .map_err(|error| StoreError::Corrupt(format!("hashing failed: {error}")))?,
        );
    }
    let batch = std::sync::Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
    Ok((batch, hashes))
}

/// Every seal of a community, in position order.
pub async fn all_seals(
    store: &EventStore,
    community: CommunityId,
) -> Result<Vec<store::Seal>, StoreError> {
    const PAGE: i64 = 10_000;
    let mut seals = Vec::new();
    loop {
        let from = seals
            .last()
            .map_or(1, |seal: &store::Seal| seal.position + 1);
        let page = store.seals(community, from, PAGE).await?;
        let done = (page.len() as i64) < PAGE;
        seals.extend(page);
        if done {
            return Ok(seals);
        }
    }
}

/// The ledger folded from position 1 to `position`: its accounts then, or
/// the first invariant that did not hold.
pub async fn ledger_as_of(
    store: &EventStore,
    community: CommunityId,
    position: i64,
) -> Result<Result<LedgerChecker, Failure>, StoreError> {
    let mut ledger = LedgerChecker::default();
    let mut batches = store.log_batches(community, 1, position, AUDIT_BATCH_SIZE);
    while let Some(batch) = batches.next().await? {
        for event in &batch {
            if let Err(failure) = ledger.check(event) {
                return Ok(Err(failure));
            }
        }
    }
    Ok(Ok(ledger))
}
