//! Each community's log as a Merkle tree in the shape of RFC 6962, over the
//! events' chain hashes (docs/AUDIT.md, "The tree"). Pure: the tree kept on
//! the append path is in `writer/`, its nodes are read in `tree.rs`.
//!
//! The leaf of the event at position `p` is leaf `p - 1`, its data the 32
//! bytes of the event's hash. A leaf hashes as `SHA-256(0x00 || hash)` and an
//! inner node as `SHA-256(0x01 || left || right)`; the tree of `n` leaves
//! splits at the largest power of two below `n`, the tree of none is
//! `SHA-256("")`. The chain stays: the tree adds receipts (inclusion proofs)
//! and the proof that a later tree extends an earlier one (consistency
//! proofs), each `O(log n)` hashes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Subtrees of at least `2^STORED_LEVEL_MIN` leaves are stored as they
/// complete; smaller ones are hashed again from the events' hashes when a
/// proof needs them (at most 256 hashes read). Storing every node would
/// insert a row per event; this stores one per 128 events.
pub const STORED_LEVEL_MIN: u32 = 8;

pub type Hash = [u8; 32];

/// The hash of a leaf whose data is `event_hash`.
pub fn leaf_hash(event_hash: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(event_hash);
    hasher.finalize().into()
}

/// The hash of an inner node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the tree of no leaves.
pub fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// A complete subtree of `2^level` leaves, the `index`-th of its level: it
/// covers leaves `index * 2^level .. (index + 1) * 2^level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subtree {
    pub level: u32,
    pub index: u64,
}

impl Subtree {
    pub fn first_leaf(&self) -> u64 {
        self.index << self.level
    }

    pub fn leaves(&self) -> u64 {
        1 << self.level
    }

    pub fn is_stored(&self) -> bool {
        self.level >= STORED_LEVEL_MIN
    }
}

/// A range of leaves whose root a proof carries: `start` is a multiple of
/// the largest power of two not below `end - start`, as every range of the
/// RFC 6962 recursions is, so it splits into complete subtrees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafRange {
    pub start: u64,
    pub end: u64,
}

impl LeafRange {
    /// The complete subtrees whose roots make this range's root, left to
    /// right (largest first).
    pub fn subtrees(&self) -> Vec<Subtree> {
        let mut subtrees = Vec::new();
        let mut start = self.start;
        while start < self.end {
            let level = largest_power_of_two_at_most(self.end - start).trailing_zeros();
            debug_assert_eq!(start % (1 << level), 0, "a range of the recursion");
            subtrees.push(Subtree {
                level,
                index: start >> level,
            });
            start += 1 << level;
        }
        subtrees
    }

    /// The range's root from its subtrees' roots, in [`LeafRange::subtrees`]
    /// order: folded from the right, as the tree splits.
    pub fn root_of(roots: &[Hash]) -> Hash {
        let mut folded = *roots.last().expect("a range holds a leaf");
        for left in roots.iter().rev().skip(1) {
            folded = node_hash(left, &folded);
        }
        folded
    }
}

fn largest_power_of_two_at_most(n: u64) -> u64 {
    assert!(n > 0);
    1 << (63 - n.leading_zeros())
}

/// The largest power of two below `n` (`n >= 2`), where the tree splits.
fn split(n: u64) -> u64 {
    largest_power_of_two_at_most(n - 1)
}

/// The ranges whose roots make the inclusion proof of leaf `index` in the
/// tree of `size` leaves, in the proof's order (RFC 6962, 2.1.1: from the
/// leaf's sibling up).
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<LeafRange> {
    assert!(index < size, "the leaf is in the tree");
    let mut ranges = Vec::new();
    let (mut start, mut end) = (0, size);
    // Walks down from the root, noting each sibling; the proof lists them
    // from the bottom.
    while end - start > 1 {
        let k = split(end - start);
        if index < start + k {
            ranges.push(LeafRange {
                start: start + k,
                end,
            });
            end = start + k;
        } else {
            ranges.push(LeafRange {
                start,
                end: start + k,
            });
            start += k;
        }
    }
    ranges.reverse();
    ranges
}

/// The ranges whose roots make the consistency proof from the tree of
/// `old_size` leaves to the tree of `new_size` (RFC 6962, 2.1.2), in the
/// proof's order. Empty when the sizes are equal.
pub fn consistency_ranges(old_size: u64, new_size: u64) -> Vec<LeafRange> {
    assert!(
        0 < old_size && old_size <= new_size,
        "an older, non-empty tree"
    );
    let mut ranges = Vec::new();
    let (mut start, mut end, mut m) = (0, new_size, old_size);
    let mut whole = true;
    while m != end - start {
        let k = split(end - start);
        if m <= k {
            ranges.push(LeafRange {
                start: start + k,
                end,
            });
            end = start + k;
        } else {
            ranges.push(LeafRange {
                start,
                end: start + k,
            });
            start += k;
            m -= k;
            whole = false;
        }
    }
    if !whole {
        ranges.push(LeafRange { start, end });
    }
    ranges.reverse();
    ranges
}

/// Whether `path` proves the leaf `leaf_hash` is leaf `index` of the tree
/// of `size` leaves whose root is `root` (RFC 9162, 2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    root: &Hash,
) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// Whether `path` proves the tree of `new_size` leaves with root `new_root`
/// extends the tree of `old_size` leaves with root `old_root` (RFC 9162,
/// 2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    path: &[Hash],
) -> bool {
    if old_size == 0 || old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return path.is_empty() && old_root == new_root;
    }
    if path.is_empty() {
        return false;
    }
    let mut path = path.to_vec();
    if old_size.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old_root && sr == *new_root && s == 0
}

/// The roots of the complete subtrees a tree of `size` leaves splits into,
/// largest first: all that appending needs, and its root folded. Each
/// append completes subtrees; those large enough to keep are handed out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frontier {
    size: u64,
    roots: Vec<Hash>,
}

impl Frontier {
    /// The frontier of a tree of `size` leaves from its subtrees' roots
    /// (one per set bit of `size`); `None` when they do not fit the size.
    pub fn from_parts(size: u64, roots: Vec<Hash>) -> Option<Frontier> {
        (roots.len() == size.count_ones() as usize).then_some(Frontier { size, roots })
    }

    /// The subtrees whose roots make the frontier of `size` leaves.
    pub fn subtrees_of(size: u64) -> Vec<Subtree> {
        if size == 0 {
            return Vec::new();
        }
        LeafRange {
            start: 0,
            end: size,
        }
        .subtrees()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn roots(&self) -> &[Hash] {
        &self.roots
    }

    /// Appends the leaf of `event_hash`; `completed` hears every subtree
    /// this completes at or above [`STORED_LEVEL_MIN`], with its root.
    pub fn push(&mut self, event_hash: &Hash, mut completed: impl FnMut(Subtree, Hash)) {
        let index = self.size;
        let mut hash = leaf_hash(event_hash);
        let mut level = 0;
        while index >> level & 1 == 1 {
            let left = self.roots.pop().expect("a root per set bit");
            hash = node_hash(&left, &hash);
            level += 1;
            if level >= STORED_LEVEL_MIN {
                completed(
                    Subtree {
                        level,
                        index: index >> level,
                    },
                    hash,
                );
            }
        }
        self.roots.push(hash);
        self.size += 1;
    }

    /// The tree's root.
    pub fn root(&self) -> Hash {
        if self.roots.is_empty() {
            return empty_root();
        }
        LeafRange::root_of(&self.roots)
    }
}

#[cfg(test)]
mod tests {
    //! Checked against a tree computed by the definition (RFC 6962, 2.1):
    //! plain recursion over the leaves, apart from this module's walks.

    use super::*;

    fn by_definition(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaf_hash(&leaves[0]),
            n => {
                let k = split(n as u64) as usize;
                node_hash(&by_definition(&leaves[..k]), &by_definition(&leaves[k..]))
            }
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| Sha256::digest(i.to_le_bytes()).into())
            .collect()
    }

    fn root_of_range(all: &[Hash], range: LeafRange) -> Hash {
        by_definition(&all[range.start as usize..range.end as usize])
    }

    #[test]
    fn the_frontier_root_is_the_root_by_definition_at_every_size() {
        let all = leaves(600);
        let mut frontier = Frontier::default();
        let mut stored = Vec::new();
        assert_eq!(frontier.root(), by_definition(&[]));
        for (i, leaf) in all.iter().enumerate() {
            frontier.push(leaf, |subtree, hash| stored.push((subtree, hash)));
            assert_eq!(frontier.root(), by_definition(&all[..=i]), "size {}", i + 1);
        }
        // 600 leaves complete two subtrees of 256 and one of 512.
        let expected: Vec<(Subtree, Hash)> = [(8, 0), (8, 1), (9, 0)]
            .into_iter()
            .map(|(level, index)| {
                let subtree = Subtree { level, index };
                let start = subtree.first_leaf() as usize;
                (
                    subtree,
                    by_definition(&all[start..start + subtree.leaves() as usize]),
                )
            })
            .collect();
        assert_eq!(stored, expected);
        let rebuilt = Frontier::from_parts(600, frontier.roots().to_vec()).unwrap();
        assert_eq!(rebuilt, frontier);
        assert!(Frontier::from_parts(601, frontier.roots().to_vec()).is_none());
    }

    #[test]
    fn inclusion_proofs_verify_for_every_leaf_and_fail_when_changed() {
        let all = leaves(70);
        for size in 1..=all.len() as u64 {
            let root = by_definition(&all[..size as usize]);
            for index in 0..size {
                let path: Vec<Hash> = inclusion_ranges(index, size)
                    .into_iter()
                    .map(|range| root_of_range(&all, range))
                    .collect();
                let leaf = leaf_hash(&all[index as usize]);
                assert!(
                    verify_inclusion(&leaf, index, size, &path, &root),
                    "{index} of {size}"
                );
                assert!(!verify_inclusion(
                    &leaf_hash(&[7; 32]),
                    index,
                    size,
                    &path,
                    &root
                ));
                assert!(!verify_inclusion(&leaf, index, size, &path, &[9; 32]));
                if size > 1 {
                    let other = (index + 1) % size;
                    assert!(!verify_inclusion(&leaf, other, size, &path, &root));
                }
            }
        }
    }

    #[test]
    fn consistency_proofs_verify_for_every_pair_and_fail_when_changed() {
        let all = leaves(70);
        for new_size in 1..=all.len() as u64 {
            let new_root = by_definition(&all[..new_size as usize]);
            for old_size in 1..=new_size {
                let old_root = by_definition(&all[..old_size as usize]);
                let path: Vec<Hash> = consistency_ranges(old_size, new_size)
                    .into_iter()
                    .map(|range| root_of_range(&all, range))
                    .collect();
                assert!(
                    verify_consistency(old_size, new_size, &old_root, &new_root, &path),
                    "{old_size} to {new_size}"
                );
                let forged = [9; 32];
                assert!(!verify_consistency(
                    old_size, new_size, &forged, &new_root, &path
                ));
                assert!(!verify_consistency(
                    old_size, new_size, &old_root, &forged, &path
                ));
                if old_size < new_size {
                    let mut changed = path.clone();
                    changed[0][0] ^= 1;
                    assert!(!verify_consistency(
                        old_size, new_size, &old_root, &new_root, &changed
                    ));
                }
            }
        }
    }

    /// The worked example of docs/AUDIT.md ("The tree", "Receipts and
    /// extensions"), recomputed on every test run.
    #[test]
    fn the_documented_tree_example_holds() {
        let events: Vec<Hash> = (1..=7)
            .map(|digit: u8| Sha256::digest([b'0' + digit]).into())
            .collect();
        let hex_of = |hashes: &[Hash]| hashes.iter().map(hex::encode).collect::<Vec<_>>();
        let mut tree = Frontier::default();
        for event in &events[..3] {
            tree.push(event, |_, _| {});
        }
        let root_3 = tree.root();
        for event in &events[3..] {
            tree.push(event, |_, _| {});
        }
        let root_7 = tree.root();
        assert_eq!(
            hex_of(&[root_3, root_7]),
            [
                "0073e5dfb5d3c6f71fb0dc1db2f096e02a2d6fd6d7a59d23c100b15a8488dac4",
                "ecc292c70642990404274af138c9e57c58ce328c76390a6d2fcf3758b6ed7391"
            ]
        );
        let root_of =
            |range: LeafRange| by_definition(&events[range.start as usize..range.end as usize]);
        let receipt: Vec<Hash> = inclusion_ranges(2, 7).into_iter().map(root_of).collect();
        assert_eq!(
            hex_of(&receipt),
            [
                "4c6bf817639562abeec7d3a2a6d4d2aaf3e1e818e0ff82cd04a43463ff84f6d6",
                "6e8393d7b8c8c1d492cbd897fa417689fe9a5b73cb6188a3b62af0bf8d4ddce6",
                "831fc315c7acafa292921fa99a7435ea3737143febf5d34c2050a42659547886"
            ]
        );
        assert!(verify_inclusion(
            &leaf_hash(&events[2]),
            2,
            7,
            &receipt,
            &root_7
        ));
        let extension: Vec<Hash> = consistency_ranges(3, 7).into_iter().map(root_of).collect();
        assert_eq!(
            hex_of(&extension),
            [
                "395421df5d0a75bdeb3c2ff42b96c071e4e197b1df5b7f7bbfd3e61a4864de46",
                "4c6bf817639562abeec7d3a2a6d4d2aaf3e1e818e0ff82cd04a43463ff84f6d6",
                "6e8393d7b8c8c1d492cbd897fa417689fe9a5b73cb6188a3b62af0bf8d4ddce6",
                "831fc315c7acafa292921fa99a7435ea3737143febf5d34c2050a42659547886"
            ]
        );
        assert!(verify_consistency(3, 7, &root_3, &root_7, &extension));
    }

    #[test]
    fn ranges_split_into_aligned_subtrees() {
        let range = LeafRange {
            start: 512,
            end: 1000,
        };
        let subtrees = range.subtrees();
        let covered: u64 = subtrees.iter().map(Subtree::leaves).sum();
        assert_eq!(covered, 488);
        assert_eq!(subtrees[0], Subtree { level: 8, index: 2 });
        assert!(subtrees.windows(2).all(|w| w[0].level > w[1].level));
    }
}
