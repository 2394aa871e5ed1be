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

use crate::error::{Error, Result};

/// Neighbour slots of a layer-zero node (`M * 2` in instant-distance).
const ZERO_SLOTS: usize = 64;
/// Neighbour slots of an upper-layer node (`M`).
const UPPER_SLOTS: usize = 32;
/// An empty slot.
const EMPTY: u64 = u32::MAX as u64;
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
        let index: Index = instant_distance::Builder::default()
            .seed(1)
            .build_hnsw(points)
            .0;
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
                let _ = crate::search::approximate(&index, &query, 10, None);
            }
        }
        assert!(refused > 0);
    }
}
