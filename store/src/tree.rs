//! Reading a community's Merkle tree (`merkle.rs`): its root at a size, and
//! inclusion and consistency proofs, from the stored subtrees and, for the
//! small ones, the events' hashes.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;

use crate::error::StoreError;
use crate::merkle::{self, Hash, LeafRange, Subtree};
use crate::store::EventStore;
use crate::types::{hex_bytes, CommunityId};
use crate::writer::to_hash;

/// Leaves proved in one call at most ([`EventStore::inclusion_proofs`]).
pub const PROOFS_PER_CALL_MAX: usize = 10_000;

/// The receipt of one event: the hashes that lead from its leaf to the
/// root of the tree of `tree_size` events (docs/AUDIT.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub community_id: CommunityId,
    pub position: i64,
    /// The event's chain hash: the leaf's data.
    #[serde(with = "hex_bytes")]
    pub event_hash: Hash,
    pub tree_size: i64,
    #[serde(with = "hex_bytes")]
    pub tree_root: Hash,
    /// From the leaf's sibling up.
    #[serde(with = "crate::types::hex_list")]
    pub path: Vec<Hash>,
}

impl InclusionProof {
    /// Whether the path leads from the event's leaf to the root.
    pub fn holds(&self) -> bool {
        self.position >= 1
            && merkle::verify_inclusion(
                &merkle::leaf_hash(&self.event_hash),
                (self.position - 1) as u64,
                self.tree_size as u64,
                &self.path,
                &self.tree_root,
            )
    }
}

/// That the tree of `new_size` events extends the tree of `old_size`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    pub community_id: CommunityId,
    pub old_size: i64,
    #[serde(with = "hex_bytes")]
    pub old_root: Hash,
    pub new_size: i64,
    #[serde(with = "hex_bytes")]
    pub new_root: Hash,
    #[serde(with = "crate::types::hex_list")]
    pub path: Vec<Hash>,
}

impl ConsistencyProof {
    pub fn holds(&self) -> bool {
        self.old_size >= 1
            && merkle::verify_consistency(
                self.old_size as u64,
                self.new_size as u64,
                &self.old_root,
                &self.new_root,
                &self.path,
            )
    }
}

impl EventStore {
    /// The root of the tree of a community's first `size` events.
    pub async fn tree_root(
        &self,
        community_id: CommunityId,
        size: i64,
    ) -> Result<Hash, StoreError> {
        if size == 0 {
            return Ok(merkle::empty_root());
        }
        let whole = LeafRange {
            start: 0,
            end: leaves_in(size)?,
        };
        let (roots, _) = self.range_roots(community_id, size, &[whole]).await?;
        Ok(roots[0])
    }

    /// Receipts for the events at `positions` in the tree of the first
    /// `tree_size` events, read together.
    pub async fn inclusion_proofs(
        &self,
        community_id: CommunityId,
        tree_size: i64,
        positions: &[i64],
    ) -> Result<Vec<InclusionProof>, StoreError> {
        if positions.len() > PROOFS_PER_CALL_MAX {
            return Err(StoreError::invalid(
                "positions",
                format!("at most {PROOFS_PER_CALL_MAX} in one call"),
            ));
        }
        let size = leaves_in(tree_size)?;
        if let Some(outside) = positions.iter().find(|p| **p < 1 || **p > tree_size) {
            return Err(StoreError::invalid(
                "position",
                format!("{outside} is not in the tree of {tree_size} events"),
            ));
        }
        let whole = LeafRange {
            start: 0,
            end: size,
        };
        let leaves = positions.iter().map(|p| {
            let leaf = (*p - 1) as u64;
            LeafRange {
                start: leaf,
                end: leaf + 1,
            }
        });
        let mut wanted: Vec<LeafRange> = vec![whole];
        let mut paths = Vec::with_capacity(positions.len());
        for (leaf, position) in leaves.zip(positions) {
            let path = merkle::inclusion_ranges((*position - 1) as u64, size);
            paths.push((wanted.len(), path.len()));
            wanted.push(leaf);
            wanted.extend(path);
        }
        let (roots, event_hashes) = self.range_roots(community_id, tree_size, &wanted).await?;
        let tree_root = roots[0];
        positions
            .iter()
            .zip(paths)
            .map(|(position, (at, length))| {
                let event_hash = *event_hashes.get(&((*position - 1) as u64)).ok_or_else(|| {
                    StoreError::Corrupt(format!("the event at position {position} is not stored"))
                })?;
                Ok(InclusionProof {
                    community_id,
                    position: *position,
                    event_hash,
                    tree_size,
                    tree_root,
                    path: roots[at + 1..at + 1 + length].to_vec(),
                })
            })
            .collect()
    }

    /// That the tree of the first `new_size` events extends the tree of
    /// the first `old_size`.
    pub async fn consistency_proof(
        &self,
        community_id: CommunityId,
        old_size: i64,
        new_size: i64,
    ) -> Result<ConsistencyProof, StoreError> {
        if old_size < 1 || old_size > new_size {
            return Err(StoreError::invalid(
                "old_size",
                "must be at least 1 and at most the newer size",
            ));
        }
        let new = leaves_in(new_size)?;
        let old = old_size as u64;
        let mut wanted = vec![
            LeafRange { start: 0, end: old },
            LeafRange { start: 0, end: new },
        ];
        wanted.extend(merkle::consistency_ranges(old, new));
        let (roots, _) = self.range_roots(community_id, new_size, &wanted).await?;
        Ok(ConsistencyProof {
            community_id,
            old_size,
            old_root: roots[0],
            new_size,
            new_root: roots[1],
            path: roots[2..].to_vec(),
        })
    }

    /// The root of each range of the tree of `size` events, once the log is
    /// found to hold that many: stored subtrees are read, the others hashed
    /// from the events' hashes, each read once. Also the events' hashes
    /// read, by leaf (every leaf of a range of one is).
    async fn range_roots(
        &self,
        community_id: CommunityId,
        size: i64,
        ranges: &[LeafRange],
    ) -> Result<(Vec<Hash>, HashMap<u64, Hash>), StoreError> {
        let client = self.pool().get().await?;
        let community = community_id.as_uuid();
        let head = client
            .query_opt(
                "SELECT last_position, tree_size FROM community_heads WHERE community_id = $1",
                &[&community],
            )
            .await?
            .ok_or(StoreError::UnknownCommunity(community_id))?;
        let (last_position, tree_size): (i64, i64) = (head.get(0), head.get(1));
        if size > last_position {
            return Err(StoreError::invalid(
                "tree_size",
                format!("the log holds {last_position} events"),
            ));
        }
        let subtrees: BTreeSet<Subtree> = ranges.iter().flat_map(LeafRange::subtrees).collect();
        // A subtree is stored once complete, if the tree was kept then.
        let stored = |s: &Subtree| s.is_stored() && s.first_leaf() + s.leaves() <= tree_size as u64;
        let (to_read, to_rehash): (Vec<Subtree>, Vec<Subtree>) =
            subtrees.into_iter().partition(|s| stored(s));
        let levels: Vec<i16> = to_read.iter().map(|s| s.level as i16).collect();
        let indexes: Vec<i64> = to_read.iter().map(|s| s.index as i64).collect();
        let (lows, highs) = leaf_spans(&to_rehash);
        let node_params: [&(dyn ToSql + Sync); 3] = [&community, &levels, &indexes];
        let leaf_params: [&(dyn ToSql + Sync); 3] = [&community, &lows, &highs];
        let (node_rows, leaf_rows) = futures::try_join!(
            client.query(
                "SELECT n.level, n.index, n.hash FROM unnest($2::smallint[], $3::bigint[]) \
                 AS w(level, index) JOIN tree_nodes n ON n.community_id = $1 \
                 AND n.level = w.level AND n.index = w.index",
                &node_params,
            ),
            client.query(
                "SELECT e.position, e.hash FROM unnest($2::bigint[], $3::bigint[]) AS s(low, high) \
                 JOIN events e ON e.community_id = $1 AND e.position BETWEEN s.low AND s.high",
                &leaf_params,
            ),
        )?;
        let mut known: HashMap<Subtree, Hash> = HashMap::new();
        for row in node_rows {
            let level: i16 = row.get(0);
            let index: i64 = row.get(1);
            let subtree = Subtree {
                level: level as u32,
                index: index as u64,
            };
            known.insert(subtree, to_hash(row.get(2))?);
        }
        let mut leaves: HashMap<u64, Hash> = HashMap::with_capacity(leaf_rows.len());
        for row in leaf_rows {
            let position: i64 = row.get(0);
            leaves.insert((position - 1) as u64, to_hash(row.get(1))?);
        }
        for subtree in to_rehash {
            known.insert(subtree, hash_subtree(&subtree, &leaves)?);
        }
        let roots = ranges
            .iter()
            .map(|range| {
                let roots = range
                    .subtrees()
                    .iter()
                    .map(|s| {
                        known.get(s).copied().ok_or_else(|| {
                            StoreError::Corrupt(format!("the tree's node {s:?} is not stored"))
                        })
                    })
                    .collect::<Result<Vec<Hash>, StoreError>>()?;
                Ok(LeafRange::root_of(&roots))
            })
            .collect::<Result<Vec<Hash>, StoreError>>()?;
        Ok((roots, leaves))
    }
}

/// `size` events as a count of leaves: a tree holds at least one (the
/// store checks the log holds that many when it reads).
fn leaves_in(size: i64) -> Result<u64, StoreError> {
    if size < 1 {
        return Err(StoreError::invalid(
            "tree_size",
            "a tree holds at least one event",
        ));
    }
    Ok(size as u64)
}

/// The positions (inclusive spans, merged) whose events' hashes make the
/// subtrees that are hashed again.
fn leaf_spans(subtrees: &[Subtree]) -> (Vec<i64>, Vec<i64>) {
    let mut spans: Vec<(i64, i64)> = subtrees
        .iter()
        .map(|s| {
            let first = s.first_leaf() as i64 + 1;
            (first, first + s.leaves() as i64 - 1)
        })
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (low, high) in spans {
        match merged.last_mut() {
            Some(last) if low <= last.1 + 1 => last.1 = last.1.max(high),
            _ => merged.push((low, high)),
        }
    }
    merged.into_iter().unzip()
}

/// A subtree's root from its events' hashes, by leaf: the tree of just
/// those leaves.
fn hash_subtree(subtree: &Subtree, event_hashes: &HashMap<u64, Hash>) -> Result<Hash, StoreError> {
    let mut tree = merkle::Frontier::default();
    let first = subtree.first_leaf();
    for leaf in first..first + subtree.leaves() {
        let event_hash = event_hashes.get(&leaf).ok_or_else(|| {
            StoreError::Corrupt(format!("the event at position {} is not stored", leaf + 1))
        })?;
        tree.push(event_hash, |_, _| {});
    }
    Ok(tree.root())
}
