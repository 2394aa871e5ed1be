//! How an [`Index`](super::Index) holds its graph in memory, and its encoding: the same
//! bytes as instant-distance's `Hnsw`, laid out more compactly once decoded.
//!
//! - [`Points`]: every embedding in one row-major array, of `f32` as decoded or, once
//!   compacted, of 16-bit codes with a scale per point (a model served by its graphs,
//!   see [`Index::compact`](super::Index::compact)).
//! - [`Lists`]: a layer's neighbour lists back to back. instant-distance stores a fixed
//!   number of slots per node, empty ones last; on the graphs of a million users about 50
//!   of layer zero's 64 slots hold a neighbour, so only those are kept (and the empty
//!   slots are written back when encoding), 3 bytes an id. A compacted index holds
//!   layer zero's lists sorted by id and delta-coded instead, about 2 bytes an id.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, SerializeTuple};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::embedding::{Embedding, dot, row_major};
use crate::fixed16;
use crate::graph::EMPTY_SLOT;

/// The index's points, row-major in one array; encoded as instant-distance encodes its
/// `Vec` of points (a sequence of sequences), decoded straight into the array.
#[derive(Default)]
pub(super) struct Points {
    /// Values per point (0 while there are none).
    pub(super) dims: usize,
    pub(super) len: usize,
    /// The values as decoded, until [`Points::compact`] moves them to `codes`.
    values: Vec<f32>,
    /// The values as 16-bit fixed point ([`crate::fixed16`]), one scale per point; empty
    /// until [`Points::compact`].
    codes: Vec<i16>,
    scales: Vec<f32>,
}

impl Points {
    /// The points `rows`, copied into one array; `None` when their lengths differ.
    pub(super) fn from_rows(rows: &[Embedding]) -> Option<Points> {
        let dims = rows.first().map_or(0, |p| p.0.len());
        if rows.iter().any(|p| p.0.len() != dims) {
            return None;
        }
        Some(Points {
            dims,
            len: rows.len(),
            values: row_major(rows),
            ..Points::default()
        })
    }

    /// Every value, row-major, unless the points are held compactly.
    pub(super) fn full(&self) -> Option<&[f32]> {
        (!self.is_compact()).then_some(&self.values[..])
    }

    /// True once [`Points::compact`] has run on points that have values.
    pub(super) fn is_compact(&self) -> bool {
        !self.scales.is_empty()
    }

    /// Point `pid`'s values: borrowed, or decoded from their codes.
    pub(super) fn get(&self, pid: u32) -> Cow<'_, [f32]> {
        let range = self.range(pid);
        if self.is_compact() {
            Cow::Owned(fixed16::decode(&self.codes[range], self.scales[pid as usize]).collect())
        } else {
            Cow::Borrowed(&self.values[range])
        }
    }

    /// `query · point pid`, as held.
    #[inline]
    pub(super) fn dot(&self, query: &[f32], pid: u32) -> f32 {
        let range = self.range(pid);
        if self.is_compact() {
            fixed16::dot(query, &self.codes[range], self.scales[pid as usize])
        } else {
            dot(query, &self.values[range])
        }
    }

    /// Asks the CPU for point `pid`'s values (see [`super::prefetch`]).
    #[inline]
    pub(super) fn prefetch(&self, pid: u32) {
        let range = self.range(pid);
        if self.is_compact() {
            super::prefetch(&self.codes[range]);
        } else {
            super::prefetch(&self.values[range]);
        }
    }

    /// Holds the values as 16-bit codes from now on: about half the memory, each value
    /// within 1/65,534 of its point's largest magnitude.
    pub(super) fn compact(&mut self) {
        if self.is_compact() || self.len == 0 {
            return;
        }
        let mut codes = Vec::with_capacity(self.values.len());
        let scales = self
            .values
            .chunks_exact(self.dims)
            .map(|point| fixed16::encode(point, &mut codes))
            .collect();
        (self.codes, self.scales, self.values) = (codes, scales, Vec::new());
    }

    #[inline]
    fn range(&self, pid: u32) -> std::ops::Range<usize> {
        let start = pid as usize * self.dims;
        start..start + self.dims
    }
}

impl Serialize for Points {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for pid in 0..self.len {
            seq.serialize_element(&*self.get(pid as u32))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Points {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PointsVisitor;
        impl<'de> Visitor<'de> for PointsVisitor {
            type Value = Points;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sequence of points of equal length")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Points, A::Error> {
                let mut points = Points::default();
                // A point is appended to the array where it is decoded: no point is a
                // vector of its own, not even for a moment.
                while let Some(dims) = seq.next_element_seed(Append(&mut points.values))? {
                    if points.len == 0 {
                        points.dims = dims;
                        // The first point's length and the sequence's announce the size,
                        // trusted up to 4 MiB (bytes not yet checked may announce
                        // anything); a larger array grows as it is decoded.
                        let rest = seq.size_hint().unwrap_or(0);
                        points
                            .values
                            .reserve(rest.saturating_mul(dims).min(1 << 20));
                    } else if dims != points.dims {
                        return Err(de::Error::custom(format!(
                            "point {} has {dims} values where point 0 has {}",
                            points.len, points.dims
                        )));
                    }
                    points.len += 1;
                }
                points.values.shrink_to_fit();
                Ok(points)
            }
        }
        deserializer.deserialize_seq(PointsVisitor)
    }
}

/// Decodes one point's values onto the end of an array; its value is their number.
struct Append<'a>(&'a mut Vec<f32>);

impl<'de> de::DeserializeSeed<'de> for Append<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        struct AppendVisitor<'a>(&'a mut Vec<f32>);
        impl<'de> Visitor<'de> for AppendVisitor<'_> {
            type Value = usize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a point's values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
                let mut n = 0;
                while let Some(v) = seq.next_element::<f32>()? {
                    self.0.push(v);
                    n += 1;
                }
                Ok(n)
            }
        }
        deserializer.deserialize_seq(AppendVisitor(self.0))
    }
}

/// A layer's neighbour lists, node after node: node `i`'s are entries
/// `ends[i - 1]..ends[i]` (from 0 for node 0) of its [`Store`]. Encoded as
/// instant-distance encodes a layer: a sequence of nodes, each a tuple of `N` ids padded
/// with [`EMPTY_SLOT`].
pub(super) struct Lists<const N: usize> {
    ends: Vec<u32>,
    store: Store,
}

/// How a layer holds its ids.
enum Store {
    /// As decoded: each list nearest first, `ends` counting ids.
    Ids(Ids),
    /// After [`Lists::sort`]: each list by ascending id, delta-coded, `ends` counting
    /// bytes: the first id in 4 bytes, then each id as its 2-byte distance from the one
    /// before, or 0 and the id in 4 bytes when that distance does not fit 16 bits.
    Sorted(Vec<u8>),
}

impl<const N: usize> Lists<N> {
    /// The lists of a layer laid out in `N` slots a node, empty slots ([`EMPTY_SLOT`])
    /// last, as instant-distance stores it; the first node with a neighbour after an empty
    /// slot otherwise (as decoding refuses it).
    pub(super) fn from_slots(slots: &[u32]) -> Result<Lists<N>, usize> {
        let nodes = slots.len() / N;
        let mut ends = Vec::with_capacity(nodes);
        let mut ids = Ids::with_capacity(slots.len());
        for (node, row) in slots.chunks_exact(N).enumerate() {
            let filled = row.iter().position(|&id| id == EMPTY_SLOT).unwrap_or(N);
            if row[filled..].iter().any(|&id| id != EMPTY_SLOT) {
                return Err(node);
            }
            row[..filled].iter().for_each(|&id| ids.push(id));
            ends.push(u32::try_from(ids.len()).map_err(|_| node)?);
        }
        ids.finish();
        Ok(Lists {
            ends,
            store: Store::Ids(ids),
        })
    }

    /// Calls `f` with each of node `node`'s neighbours, nearest first as decoded or by
    /// id once [`Lists::sort`]ed (panics when out of range). The layer's form is decided
    /// once a node rather than once a neighbour, as the search's loops want.
    #[inline]
    pub(super) fn for_each(&self, node: u32, mut f: impl FnMut(u32)) {
        let range = self.range(node);
        match &self.store {
            Store::Ids(ids) => range.for_each(|i| f(ids.get(i))),
            Store::Sorted(bytes) => {
                let mut b = &bytes[range];
                if b.is_empty() {
                    return;
                }
                let mut id = u32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
                f(id);
                b = &b[4..];
                while let [lo, hi, rest @ ..] = b {
                    let gap = u16::from_le_bytes([*lo, *hi]);
                    b = rest;
                    if gap == 0 {
                        id = u32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
                        b = &b[4..];
                    } else {
                        id += u32::from(gap);
                    }
                    f(id);
                }
            }
        }
    }

    /// The bytes that hold node `node`'s neighbours (to prefetch them).
    #[inline]
    pub(super) fn bytes(&self, node: u32) -> &[u8] {
        let range = self.range(node);
        match &self.store {
            Store::Ids(ids) => &ids.bytes[range.start * ids.width..range.end * ids.width],
            Store::Sorted(bytes) => &bytes[range],
        }
    }

    #[inline]
    fn range(&self, node: u32) -> std::ops::Range<usize> {
        let node = node as usize;
        let start = if node == 0 {
            0
        } else {
            self.ends[node - 1] as usize
        };
        start..self.ends[node] as usize
    }

    /// Holds each list sorted by id and delta-coded from now on: on the graphs of a
    /// million users, about 2 bytes a neighbour instead of 3. A search meets the same
    /// neighbours in another order, which matters only where distances tie (it may then
    /// expand and keep other tied points); encoding writes the lists in id order. Refused (false, nothing
    /// changed) when the bytes would not fit the 32-bit ends.
    pub(super) fn sort(&mut self) -> bool {
        let Store::Ids(ids) = &self.store else {
            return true;
        };
        let mut bytes = Vec::with_capacity(ids.len() * 2 + self.ends.len() * 2);
        let mut ends = Vec::with_capacity(self.ends.len());
        let mut list = Vec::with_capacity(N);
        for node in 0..self.ends.len() as u32 {
            list.clear();
            self.for_each(node, |id| list.push(id));
            list.sort_unstable();
            for (i, &id) in list.iter().enumerate() {
                let gap = if i == 0 { 0 } else { id - list[i - 1] };
                match u16::try_from(gap) {
                    Ok(gap) if i > 0 && gap > 0 => bytes.extend_from_slice(&gap.to_le_bytes()),
                    _ => {
                        if i > 0 {
                            bytes.extend_from_slice(&[0, 0]);
                        }
                        bytes.extend_from_slice(&id.to_le_bytes());
                    }
                }
            }
            let Ok(end) = u32::try_from(bytes.len()) else {
                return false;
            };
            ends.push(end);
        }
        bytes.shrink_to_fit();
        (self.ends, self.store) = (ends, Store::Sorted(bytes));
        true
    }

    /// Nodes in the layer.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }
}

/// Neighbour ids, little-endian, in 3 bytes each while every id is below 2²⁴ (shards of
/// up to 16.7 million points), in 4 once one is not; then 3 spare bytes, so that any id
/// reads as one 4-byte load.
pub(super) struct Ids {
    bytes: Vec<u8>,
    /// Bytes per id: 3 or 4.
    width: usize,
    /// The bits of a 4-byte load that belong to the id.
    mask: u32,
    len: usize,
}

impl Ids {
    fn with_capacity(ids: usize) -> Ids {
        Ids {
            bytes: Vec::with_capacity(ids * 3 + 3),
            width: 3,
            mask: 0x00ff_ffff,
            len: 0,
        }
    }

    /// Ids held.
    fn len(&self) -> usize {
        self.len
    }

    /// Appends an id (before [`Ids::finish`]).
    fn push(&mut self, id: u32) {
        if id > self.mask {
            self.widen();
        }
        self.bytes
            .extend_from_slice(&id.to_le_bytes()[..self.width]);
        self.len += 1;
    }

    /// From 3 bytes an id to 4.
    fn widen(&mut self) {
        let ids: Vec<u32> = (0..self.len()).map(|i| self.get_unpadded(i)).collect();
        self.bytes = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
        (self.width, self.mask) = (4, u32::MAX);
    }

    fn get_unpadded(&self, i: usize) -> u32 {
        let mut id = [0u8; 4];
        id[..self.width].copy_from_slice(&self.bytes[i * self.width..(i + 1) * self.width]);
        u32::from_le_bytes(id)
    }

    /// Adds the spare bytes and releases spare capacity: the ids are complete.
    fn finish(&mut self) {
        self.bytes.extend_from_slice(&[0; 3]);
        self.bytes.shrink_to_fit();
    }

    /// Id `i` (after [`Ids::finish`]; panics when out of range).
    #[inline]
    fn get(&self, i: usize) -> u32 {
        let at = i * self.width;
        let load: [u8; 4] = self.bytes[at..at + 4].try_into().expect("4 bytes");
        u32::from_le_bytes(load) & self.mask
    }
}

impl<const N: usize> Serialize for Lists<N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.ends.len()))?;
        for node in 0..self.ends.len() as u32 {
            let mut slots = [EMPTY_SLOT; N];
            let mut n = 0;
            self.for_each(node, |id| {
                slots[n] = id;
                n += 1;
            });
            seq.serialize_element(&Slots(slots))?;
        }
        seq.end()
    }
}

/// One node's `N` slots, as a tuple.
struct Slots<const N: usize>([u32; N]);

impl<const N: usize> Serialize for Slots<N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut t = serializer.serialize_tuple(N)?;
        for id in &self.0 {
            t.serialize_element(id)?;
        }
        t.end()
    }
}

impl<'de, const N: usize> Deserialize<'de> for Lists<N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListsVisitor<const N: usize>;
        impl<'de, const N: usize> Visitor<'de> for ListsVisitor<N> {
            type Value = Lists<N>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a layer of nodes of {N} neighbour slots")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Lists<N>, A::Error> {
                // The announced size is trusted up to 1 MiB of ids (bytes not yet checked
                // may announce anything); a larger layer grows as it is decoded.
                let nodes = seq.size_hint().unwrap_or(0).min(1 << 18);
                let mut ends = Vec::with_capacity(nodes);
                let mut ids = Ids::with_capacity(nodes * N * 4 / 5);
                while seq.next_element_seed(AppendNode::<N>(&mut ids))?.is_some() {
                    let end = u32::try_from(ids.len()).map_err(|_| {
                        de::Error::custom("a layer of more than 2^32 neighbour ids")
                    })?;
                    ends.push(end);
                }
                ends.shrink_to_fit();
                ids.finish();
                Ok(Lists {
                    ends,
                    store: Store::Ids(ids),
                })
            }
        }
        deserializer.deserialize_seq(ListsVisitor::<N>)
    }
}

/// Decodes one node's `N` slots, appending its neighbours to an array.
struct AppendNode<'a, const N: usize>(&'a mut Ids);

impl<'de, const N: usize> DeserializeSeed<'de> for AppendNode<'_, N> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        struct SlotsVisitor<'a, const N: usize>(&'a mut Ids, PhantomData<[u32; N]>);
        impl<'de, const N: usize> Visitor<'de> for SlotsVisitor<'_, N> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "{N} neighbour ids, empty slots last")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                let mut empty = false;
                for i in 0..N {
                    let id: u32 = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                    if id == EMPTY_SLOT {
                        empty = true;
                    } else if empty {
                        // A search reads a node's ids up to its first empty slot; one
                        // after it could not be encoded back.
                        return Err(de::Error::custom("a neighbour after an empty slot"));
                    } else {
                        self.0.push(id);
                    }
                }
                Ok(())
            }
        }
        deserializer.deserialize_tuple(N, SlotsVisitor::<N>(self.0, PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};

    /// Node `node`'s neighbours, as [`Lists::for_each`] walks them.
    fn list<const N: usize>(lists: &Lists<N>, node: u32) -> Vec<u32> {
        let mut ids = Vec::new();
        lists.for_each(node, |id| ids.push(id));
        ids
    }

    /// A layer of nodes of 4 slots as instant-distance encodes it.
    fn slots(nodes: &[[u32; 4]]) -> Vec<u8> {
        encode("layer", &nodes.to_vec()).unwrap()
    }

    #[test]
    fn a_layer_keeps_only_its_neighbours_and_encodes_back_to_the_same_bytes() {
        let e = EMPTY_SLOT;
        let bytes = slots(&[[3, 1, e, e], [e, e, e, e], [0, 1, 2, 300], [2, e, e, e]]);
        let lists: Lists<4> = decode("layer", &bytes).unwrap();
        assert_eq!(lists.len(), 4);
        let got: Vec<Vec<u32>> = (0..4).map(|n| list(&lists, n)).collect();
        assert_eq!(got, [vec![3, 1], vec![], vec![0, 1, 2, 300], vec![2]]);
        // Seven ids of 3 bytes, and the spare bytes.
        let Store::Ids(ids) = &lists.store else {
            panic!("decoded lists hold ids");
        };
        assert_eq!((ids.len(), ids.bytes.len()), (7, 7 * 3 + 3));
        assert_eq!(lists.bytes(2).len(), 4 * 3);
        assert_eq!(encode("layer", &lists).unwrap(), bytes);
    }

    #[test]
    fn ids_of_24_bits_or_more_widen_the_layer_to_4_bytes_an_id() {
        let e = EMPTY_SLOT;
        let big = [0x00ff_ffff, 0x0100_0000, e - 1];
        let bytes = slots(&[[5, big[0], e, e], [big[1], 7, big[2], e], [9, e, e, e]]);
        let lists: Lists<4> = decode("layer", &bytes).unwrap();
        let got: Vec<Vec<u32>> = (0..3).map(|n| list(&lists, n)).collect();
        assert_eq!(got, [vec![5, big[0]], vec![big[1], 7, big[2]], vec![9]]);
        let Store::Ids(ids) = &lists.store else {
            panic!("decoded lists hold ids");
        };
        assert_eq!(ids.width, 4);
        assert_eq!(encode("layer", &lists).unwrap(), bytes);
    }

    #[test]
    fn sorted_lists_hold_the_same_neighbours_by_id_in_fewer_bytes_and_encode_in_that_order() {
        let e = EMPTY_SLOT;
        // Gaps of 1 and of 2^16 - 1 fit 2 bytes; 2^16 and an id of 2^24 take the escape.
        let far = [70_000, 70_001, 70_001 + 65_535, 1 << 24];
        let nodes = [
            [far[1], 3, far[0], e],
            [e, e, e, e],
            [far[3], far[2], far[1], 5],
            [9, e, e, e],
            // A gap of exactly 2^16 takes the escape, and so does a repeated id.
            [7 + 65_536, 7, 7 + 65_536, e],
        ];
        let mut lists: Lists<4> = decode("layer", &slots(&nodes)).unwrap();
        assert!(lists.sort());
        let got: Vec<Vec<u32>> = (0..5).map(|n| list(&lists, n)).collect();
        let sorted = [
            vec![3, far[0], far[1]],
            vec![],
            vec![5, far[1], far[2], far[3]],
            vec![9],
            vec![7, 7 + 65_536, 7 + 65_536],
        ];
        assert_eq!(got, sorted);
        // Node 0: 4, then 2 + 4 (escape), then 2; node 2: 4, 2 + 4, 2 (a gap of 65,535),
        // 2 + 4; node 4: 4, then two escapes.
        let sizes: Vec<usize> = (0..5).map(|n| lists.bytes(n).len()).collect();
        assert_eq!(sizes, [12, 0, 18, 4, 16]);
        let padded: Vec<[u32; 4]> = sorted
            .iter()
            .map(|l| std::array::from_fn(|i| l.get(i).copied().unwrap_or(e)))
            .collect();
        assert_eq!(encode("layer", &lists).unwrap(), slots(&padded));
    }

    #[test]
    fn a_neighbour_after_an_empty_slot_is_refused() {
        let bytes = slots(&[[3, EMPTY_SLOT, 1, EMPTY_SLOT]]);
        let Err(err) = decode::<Lists<4>>("layer", &bytes) else {
            panic!("decoded");
        };
        assert!(err.to_string().contains("after an empty slot"), "{err}");
    }
}
