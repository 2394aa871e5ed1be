//! Checks an encoded HNSW index (`index.bin`) before it is decoded: everything a search
//! relies on, so that a crafted file with valid checksums is refused at load instead of
//! panicking (or aborting) the searches that would read it.
//!
//! instant-distance keeps its graph private, so the check reads the bytes as the codec
//! wrote them (bincode 2, standard configuration: variable-length integers, `f32` as four
//! little-endian bytes) without allocating: the search width `ef_search`, the points (one
//! embedding each), layer zero (64 neighbour slots per point) and the upper layers (32
//! slots per node). A search starts at point 0 of the top layer and, on each layer, looks
//! up the nodes its candidates name in that layer's array, so every neighbour id must
//! index the array of its own layer (or be the empty slot `u32::MAX`), each layer must
//! be no larger than the one below it, and layer zero must have one node per point.
//!
//! [`assemble`] is the other direction: it takes a graph built by another builder (the
//! batch job's exact-neighbour builder for small shards) laid out the way
//! instant-distance stores it, checks it as above and holds it as a decoded index would
//! be held ([`crate::hnsw::Index`]), so the model carries an instant-distance index
//! whichever builder made it.

use crate::embedding::Embedding;
use crate::error::{Error, Result};
use crate::search::Index;

/// Neighbour slots of a layer-zero node (`M * 2` in instant-distance).
pub const ZERO_SLOTS: usize = 64;
/// Neighbour slots of an upper-layer node (`M`).
pub const UPPER_SLOTS: usize = 32;
/// An empty neighbour slot; a node's neighbours fill its first slots.
pub const EMPTY_SLOT: u32 = u32::MAX;
const EMPTY: u64 = EMPTY_SLOT as u64;
/// The widest search accepted: `ef_search` sizes each search's candidate lists.
pub const MAX_EF_SEARCH: u64 = 1 << 16;
/// How far from 1 an embedding's length may be (they are stored unit length).
const UNIT_TOLERANCE: f32 = 1e-3;

/// What the check learnt about a valid index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Points (users).
    pub points: usize,
    /// Candidates a search considers.
    pub ef_search: usize,
    /// Upper layers.
    pub layers: usize,
}

/// Checks `bytes`, an encoded index named `name` whose embeddings have `dimensions`
/// components, as described in the module documentation.
pub fn check_index(name: &str, bytes: &[u8], dimensions: usize) -> Result<Shape> {
    let bad = |what: String| Error::Inconsistent(format!("{name}: {what}"));
    let mut r = Reader { bytes, at: 0 };
    let ef_search = r.varint().ok_or_else(|| bad("truncated".into()))?;
    if !(1..=MAX_EF_SEARCH).contains(&ef_search) {
        return Err(bad(format!(
            "ef_search {ef_search} outside 1..={MAX_EF_SEARCH}"
        )));
    }
    let points = r.length(4).ok_or_else(|| bad("truncated points".into()))?;
    for p in 0..points {
        let len = r
            .length(4)
            .ok_or_else(|| bad(format!("truncated point {p}")))?;
        if len != dimensions {
            return Err(bad(format!(
                "point {p} has {len} dimensions, the model {dimensions}"
            )));
        }
        let mut norm = 0.0f32;
        for _ in 0..len {
            let x = r.f32().ok_or_else(|| bad(format!("truncated point {p}")))?;
            if !x.is_finite() {
                return Err(bad(format!("point {p} is not finite")));
            }
            norm += x * x;
        }
        if (norm.sqrt() - 1.0).abs() > UNIT_TOLERANCE && norm != 0.0 {
            return Err(bad(format!("point {p} is not unit length")));
        }
    }
    let zero = r
        .length(ZERO_SLOTS)
        .ok_or_else(|| bad("truncated layer 0".into()))?;
    if zero != points {
        return Err(bad(format!("layer 0 has {zero} nodes for {points} points")));
    }
    r.nodes(zero, ZERO_SLOTS, points as u64)
        .map_err(|node| bad(format!("layer 0 node {node} names a point out of range")))?;
    let layers = r.length(1).ok_or_else(|| bad("truncated layers".into()))?;
    let mut below = points;
    for layer in 1..=layers {
        let len = r
            .length(UPPER_SLOTS)
            .ok_or_else(|| bad(format!("truncated layer {layer}")))?;
        if len == 0 || len > below {
            return Err(bad(format!(
                "layer {layer} has {len} nodes, the layer below {below}"
            )));
        }
        r.nodes(len, UPPER_SLOTS, len as u64).map_err(|node| {
            bad(format!(
                "layer {layer} node {node} names a node out of range"
            ))
        })?;
        below = len;
    }
    if r.at != bytes.len() {
        return Err(bad("trailing bytes".into()));
    }
    Ok(Shape {
        points,
        ef_search: ef_search as usize,
        layers,
    })
}

/// A graph in instant-distance's layout. A search enters at point 0 of the top layer
/// and descends: upper layer `l` (`upper[l - 1]`) holds points `0..len` and is no larger
/// than the layer below it.
pub struct Layers<'a> {
    /// Candidates a search considers on layer zero.
    pub ef_search: usize,
    /// The points, unit length.
    pub points: &'a [Embedding],
    /// Layer zero: [`ZERO_SLOTS`] neighbour ids per point, empty slots last.
    pub zero: &'a [u32],
    /// The upper layers, lowest first: [`UPPER_SLOTS`] ids per node.
    pub upper: &'a [Vec<u32>],
}

/// The index `layers` describes, refused unless it passes what [`check_index`] asks of a
/// stored index. It is built directly, not encoded and decoded (at 10k users that took
/// 17 ms on one thread); its encoding is what [`check_index`] reads.
pub fn assemble(layers: &Layers) -> Result<Index> {
    let bad = |what: String| Error::Inconsistent(format!("assembled index: {what}"));
    if !(1..=MAX_EF_SEARCH).contains(&(layers.ef_search as u64)) {
        return Err(bad(format!(
            "ef_search {} outside 1..={MAX_EF_SEARCH}",
            layers.ef_search
        )));
    }
    for (p, point) in layers.points.iter().enumerate() {
        if point.0.iter().any(|x| !x.is_finite()) {
            return Err(bad(format!("point {p} is not finite")));
        }
        let norm = crate::embedding::dot(&point.0, &point.0);
        if (norm.sqrt() - 1.0).abs() > UNIT_TOLERANCE && norm != 0.0 {
            return Err(bad(format!("point {p} is not unit length")));
        }
    }
    let mut below = layers.points.len();
    for (l, (ids, slots)) in std::iter::once((layers.zero, ZERO_SLOTS))
        .chain(layers.upper.iter().map(|u| (&u[..], UPPER_SLOTS)))
        .enumerate()
    {
        let nodes = ids.len() / slots;
        if ids.len() % slots != 0 || nodes > below || (l == 0 && nodes != below) {
            return Err(bad(format!(
                "layer {l} has {} slots for {below} nodes below it",
                ids.len()
            )));
        }
        if let Some(at) = ids
            .iter()
            .position(|&id| id != EMPTY_SLOT && id as usize >= nodes)
        {
            return Err(bad(format!(
                "layer {l} node {} names a node out of range",
                at / slots
            )));
        }
        below = nodes;
    }
    Index::from_layers(layers).map_err(bad)
}

/// `layers` as bincode 2 writes instant-distance's `Hnsw`: what an assembled index must
/// encode to.
#[cfg(test)]
fn encode_layers(layers: &Layers) -> Vec<u8> {
    let dims = layers.points.first().map_or(0, |p| p.0.len());
    let ids = layers.zero.len() + layers.upper.iter().map(Vec::len).sum::<usize>();
    let mut w = Vec::with_capacity(16 + layers.points.len() * (dims * 4 + 2) + ids * 3);
    varint(&mut w, layers.ef_search as u64);
    varint(&mut w, layers.points.len() as u64);
    for p in layers.points {
        varint(&mut w, p.0.len() as u64);
        for x in &p.0 {
            w.extend_from_slice(&x.to_le_bytes());
        }
    }
    let nodes = |w: &mut Vec<u8>, ids: &[u32], slots: usize| {
        varint(w, (ids.len() / slots) as u64);
        for &id in ids {
            varint(w, u64::from(id));
        }
    };
    nodes(&mut w, layers.zero, ZERO_SLOTS);
    varint(&mut w, layers.upper.len() as u64);
    for layer in layers.upper {
        nodes(&mut w, layer, UPPER_SLOTS);
    }
    w
}

/// Appends `v` as [`Reader::varint`] reads it.
#[cfg(test)]
fn varint(w: &mut Vec<u8>, v: u64) {
    match v {
        0..=250 => w.push(v as u8),
        251..=0xFFFF => {
            w.push(251);
            w.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xFFFF_FFFF => {
            w.push(252);
            w.extend_from_slice(&(v as u32).to_le_bytes());
        }
        _ => {
            w.push(253);
            w.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// A cursor over bincode 2 standard-configuration bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    /// A variable-length unsigned integer: one byte below 251, else a marker (251: u16,
    /// 252: u32, 253: u64) and the value little-endian.
    fn varint(&mut self) -> Option<u64> {
        let first = *self.take(1)?.first()?;
        Some(match first {
            0..=250 => u64::from(first),
            251 => u64::from(u16::from_le_bytes(self.take(2)?.try_into().ok()?)),
            252 => u64::from(u32::from_le_bytes(self.take(4)?.try_into().ok()?)),
            253 => u64::from_le_bytes(self.take(8)?.try_into().ok()?),
            _ => return None,
        })
    }

    /// A sequence length whose items take at least `min_item_bytes` each, so a length
    /// the remaining bytes cannot hold is refused before anything loops over it.
    fn length(&mut self, min_item_bytes: usize) -> Option<usize> {
        let n = usize::try_from(self.varint()?).ok()?;
        let left = self.bytes.len() - self.at;
        (n.checked_mul(min_item_bytes)? <= left).then_some(n)
    }

    fn f32(&mut self) -> Option<f32> {
        Some(f32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    /// `count` nodes of `slots` neighbour ids each, every id below `limit` or empty;
    /// the first bad node's number otherwise (or `count` when the bytes run out).
    fn nodes(&mut self, count: usize, slots: usize, limit: u64) -> std::result::Result<(), usize> {
        for node in 0..count {
            for _ in 0..slots {
                match self.varint() {
                    Some(id) if id < limit || id == EMPTY => {}
                    Some(_) => return Err(node),
                    None => return Err(count),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedding::Embedding;
    use crate::search::Index;

    fn built(n: usize, d: usize) -> Vec<u8> {
        let points: Vec<Embedding> = (0..n)
            .map(|i| {
                Embedding::normalized(
                    (0..d)
                        .map(|j| ((i * 7 + j * 3) % 11) as f32 + 0.5)
                        .collect(),
                )
            })
            .collect();
        let index: Index = Index::from_instant_distance(
            instant_distance::Builder::default()
                .seed(1)
                .build_hnsw(points)
                .0,
        )
        .unwrap();
        crate::codec::encode("index.bin", &index).unwrap()
    }

    #[test]
    fn a_built_index_passes_and_its_shape_is_read() {
        let bytes = built(300, 8);
        let shape = check_index("index.bin", &bytes, 8).unwrap();
        assert_eq!(shape.points, 300);
        assert!(shape.ef_search >= 1);
        // and it is the index the decoder reads.
        let index: Index = crate::codec::decode("index.bin", &bytes).unwrap();
        assert_eq!(index.iter().count(), 300);
    }

    #[test]
    fn a_wrong_dimension_truncation_or_trailing_byte_is_refused() {
        let bytes = built(50, 8);
        assert!(check_index("i", &bytes, 9).is_err());
        for cut in [1, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(check_index("i", &bytes[..cut], 8).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(check_index("i", &longer, 8).is_err());
    }

    #[test]
    fn every_single_byte_change_is_refused_or_leaves_a_searchable_index() {
        // Given a valid index, every seventh byte in turn replaced by values that matter
        // for ids and lengths,
        let bytes = built(120, 4);
        let query = Embedding::normalized(vec![1.0, 0.5, 0.25, 0.125]);
        let mut refused = 0;
        for at in (0..bytes.len()).step_by(7) {
            for value in [0u8, 7, 250, 252, 255] {
                let mut crafted = bytes.clone();
                crafted[at] = value;
                // when the check accepts it, then decoding and searching it never panics.
                if check_index("i", &crafted, 4).is_err() {
                    refused += 1;
                    continue;
                }
                let Ok(index) = crate::codec::decode::<Index>("i", &crafted) else {
                    continue;
                };
                let _ = crate::search::approximate(&index, &query.0, 10, None);
            }
        }
        assert!(refused > 0);
    }

    /// Unit points at `positions` of `n` evenly spaced places on a circle.
    fn on_circle(positions: &[usize], n: usize) -> Vec<Embedding> {
        positions
            .iter()
            .map(|&p| {
                let a = p as f32 / n as f32 * std::f32::consts::TAU;
                Embedding::normalized(vec![a.cos(), a.sin(), 0.0])
            })
            .collect()
    }

    /// `slots` ids per node for the first `count` points: each linked to the points
    /// `1..=width` steps of `step` places either side of it on a circle of `n` places.
    fn ring(
        positions: &[usize],
        n: usize,
        count: usize,
        step: usize,
        width: usize,
        slots: usize,
    ) -> Vec<u32> {
        let mut point_at = vec![EMPTY_SLOT; n];
        for (p, &at) in positions.iter().enumerate() {
            point_at[at] = p as u32;
        }
        let mut ids = vec![EMPTY_SLOT; count * slots];
        for p in 0..count {
            let at = positions[p];
            let near = (1..=width).flat_map(|s| [(at + s * step) % n, (at + n - s * step) % n]);
            for (slot, place) in near.enumerate() {
                ids[p * slots + slot] = point_at[place];
            }
        }
        ids
    }

    #[test]
    fn varints_are_written_as_the_reader_reads_them() {
        for v in [0, 250, 251, 0xFFFF, 0x1_0000, u64::from(u32::MAX), u64::MAX] {
            let mut w = Vec::new();
            varint(&mut w, v);
            let mut r = Reader { bytes: &w, at: 0 };
            assert_eq!(r.varint(), Some(v));
            assert_eq!(r.at, w.len());
        }
    }

    #[test]
    fn an_assembled_graph_is_an_index_its_search_walks() {
        // Given 200 places on a circle, points 0..40 on every fifth place (the upper
        // layer, linked two steps of 5 either side) and the rest on the places between,
        // layer zero linked to the 3 nearest places either side,
        let mut positions: Vec<usize> = (0..40).map(|i| i * 5).collect();
        positions.extend((0..200).filter(|p| p % 5 != 0));
        let points = on_circle(&positions, 200);
        let zero = ring(&positions, 200, 200, 1, 3, ZERO_SLOTS);
        let upper = ring(&positions, 200, 40, 5, 2, UPPER_SLOTS);
        assert!(
            zero.iter()
                .chain(&upper)
                .all(|&id| id == EMPTY_SLOT || id < 200)
        );
        let layers = Layers {
            ef_search: 16,
            points: &points,
            zero: &zero,
            upper: &[upper],
        };
        // when assembled,
        let index = assemble(&layers).unwrap();
        // then it encodes as instant-distance lays the graph out, which the check passes,
        let bytes = crate::codec::encode("index.bin", &index).unwrap();
        assert_eq!(bytes, encode_layers(&layers));
        assert_eq!(check_index("index.bin", &bytes, 3).unwrap().layers, 1);
        // it holds the points in order, and its search finds every point's exact
        // neighbours on the circle.
        assert_eq!(index.iter().count(), 200);
        assert_eq!(index.iter().nth(41).unwrap().1, &points[41].0[..]);
        for (p, q) in points.iter().enumerate() {
            let found = crate::search::approximate(&index, &q.0, 3, None);
            let want = crate::search::exact(&index, &q.0, 3, None);
            assert_eq!(found, want, "point {p}");
            assert_eq!(found[0].row, p as u32);
        }
    }

    #[test]
    fn an_assembled_graph_naming_a_point_out_of_range_is_refused() {
        let positions: Vec<usize> = (0..50).collect();
        let points = on_circle(&positions, 50);
        let mut zero = ring(&positions, 50, 50, 1, 2, ZERO_SLOTS);
        zero[7 * ZERO_SLOTS] = 50;
        let layers = Layers {
            ef_search: 8,
            points: &points,
            zero: &zero,
            upper: &[],
        };
        assert!(assemble(&layers).is_err());
        // and an upper layer larger than layer zero is refused too.
        let zero = ring(&positions, 50, 50, 1, 2, ZERO_SLOTS);
        let upper = vec![EMPTY_SLOT; 60 * UPPER_SLOTS];
        let layers = Layers {
            upper: &[upper],
            zero: &zero,
            ..layers
        };
        assert!(assemble(&layers).is_err());
        // So are a neighbour after an empty slot and a point that is not unit length,
        let mut gap = zero.clone();
        gap[3 * ZERO_SLOTS + 10] = 5;
        let layers = Layers {
            upper: &[],
            zero: &gap,
            ..layers
        };
        assert!(assemble(&layers).is_err());
        let mut long = points.clone();
        long[9].0[0] += 0.5;
        let layers = Layers {
            points: &long,
            zero: &zero,
            ..layers
        };
        assert!(assemble(&layers).is_err());
        // while the same layers otherwise pass.
        assert!(
            assemble(&Layers {
                points: &points,
                ..layers
            })
            .is_ok()
        );
    }
}
