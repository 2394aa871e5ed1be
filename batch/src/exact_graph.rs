//! The HNSW graph of a shard small enough to find every point's exact neighbours.
//!
//! instant-distance inserts points one at a time: each insertion searches the graph built
//! so far and re-selects the neighbour lists it touches, which at 10k users costs several
//! times the rest of training. Up to [`MAX_POINTS`] points, every point's exact
//! `ef_construction` nearest are found instead by matrix products ([`map_nearest`]), and
//! the graph is laid out as instant-distance would lay it out:
//!
//! - the points in a seeded random order, point 0 the entry; each upper layer holds the
//!   first points of that order, `mL` times as many as the layer below, rounded down
//!   (`mL = 1 / ln 32`, instant-distance's level factor), while that is at least 32;
//! - on each layer, a node's candidates are its exact nearest among that layer's nodes
//!   (on layer zero, when smoothing found every point's nearest before smoothing and
//!   they are at least as many, the nearest among those: see [`build`]),
//!   ordered by instant-distance's selection heuristic (a candidate nearer to an
//!   already selected neighbour than to the node is a redundant link: it is moved after
//!   the useful ones, and kept, as with instant-distance's `keep_pruned`);
//! - each node's list is its useful links, then the nodes that chose it as a useful link
//!   (instant-distance's back links: without them a point nobody ranks near could not
//!   be reached), nearest first, then its redundant links, cut at 64 slots on layer zero
//!   and 32 above;
//! - a node that a walk from the entry still cannot reach (a group of outliers linked
//!   only among themselves) is linked from its nearest reachable candidate.
//!
//! The result is laid out as instant-distance stores its `Hnsw` ([`graph::assemble`]
//! checks it as a stored index is checked) and searched like any other index
//! (`kindred_core::hnsw`); its recall is measured against exact search in training like
//! the incremental build's.

use kindred_core::embedding::{Embedding, dot};
use kindred_core::graph::{self, EMPTY_SLOT, Layers, UPPER_SLOTS, ZERO_SLOTS};
use kindred_core::manifest::HnswParams;
use kindred_core::search::Index;

use crate::neighbours::{map_among, map_nearest, nearest_first};

/// The largest shard built from exact neighbours: finding them costs `n²` products, about
/// 0.3 s of CPU at 10k points and rank 64.
pub const MAX_POINTS: usize = 50_000;

/// instant-distance's `M`: an upper layer holds a share `1 / ln M` of the layer below,
/// and the top layer is the last of at least `M` nodes.
const M: usize = 32;

/// Builds the graph of `points` as the module describes, spread over `threads`; returns
/// it with `order`, where point `i` of the index is input `order[i]`. The same points and
/// parameters give the same index whatever the threads.
///
/// With `near`, layer zero's candidates are sought among each input point's `near[i]`
/// (input indices) rather than among all points: smoothing's neighbour lists, which hold
/// most of a smoothed point's nearest (see docs/performance.md).
pub fn build(
    points: Vec<Embedding>,
    near: Option<&[Vec<u32>]>,
    params: &HnswParams,
    threads: usize,
) -> kindred_core::Result<(Index, Vec<u32>)> {
    let n = points.len();
    let order = crate::index::permutation(n, params.seed);
    let mut slots: Vec<Option<Embedding>> = points.into_iter().map(Some).collect();
    let points: Vec<Embedding> = order
        .iter()
        .map(|&i| slots[i as usize].take().expect("a permutation"))
        .collect();
    let candidates = params.ef_construction.max(1);
    let heuristic = params.heuristic;
    // Lists shorter than a node's candidates (smoothing of a few thousand users, or with
    // few neighbours) would narrow the graph: then every point is searched.
    let usable = |near: &&[Vec<u32>]| {
        near.len() == n
            && near
                .iter()
                .all(|l| l.len() >= candidates.min(n.saturating_sub(1)))
    };
    let (zero, upper) = std::thread::scope(|scope| {
        // The upper layers need only the points: they are linked beside layer zero (whose
        // lists are then laid out on one thread), each with its own `threads` workers;
        // at 10k users the upper layers took a quarter of the index stage, and laying
        // out layer zero a sixth.
        let upper = scope.spawn(|| {
            upper_layer_sizes(n)
                .into_iter()
                .map(|size| links(&points[..size], candidates, UPPER_SLOTS, heuristic, threads))
                .collect::<Vec<Vec<u32>>>()
        });
        let zero = match near.filter(usable) {
            Some(near) => {
                // The lists in index order, naming index points, one after another (one
                // list a point had taken 6-9 ms at 10k users, on one thread).
                let mut position = vec![0u32; n];
                for (p, &i) in order.iter().enumerate() {
                    position[i as usize] = p as u32;
                }
                let mut starts = Vec::with_capacity(n + 1);
                starts.push(0);
                let mut lists = Vec::with_capacity(near.iter().map(Vec::len).sum());
                for &i in &order {
                    lists.extend(near[i as usize].iter().map(|&j| position[j as usize]));
                    starts.push(lists.len());
                }
                let chosen = map_among(
                    &points,
                    |p| &lists[starts[p]..starts[p + 1]],
                    candidates,
                    threads,
                    |_, best| split(best, &points, heuristic),
                );
                lay_out(&chosen, ZERO_SLOTS)
            }
            None => links(&points, candidates, ZERO_SLOTS, heuristic, threads),
        };
        (
            zero,
            upper.join().expect("linking the upper layers panicked"),
        )
    });
    let index = graph::assemble(&Layers {
        ef_search: params.ef_search,
        points: &points,
        zero: &zero,
        upper: &upper,
    })?;
    Ok((index, order))
}

/// Sizes of the upper layers, lowest first, for `n` points, as instant-distance sizes
/// them: each the previous times `1 / ln M`, rounded down, while that is at least `M`.
fn upper_layer_sizes(n: usize) -> Vec<usize> {
    let level = 1.0 / (M as f32).ln();
    let mut sizes = Vec::new();
    let mut num = n;
    loop {
        let next = (num as f32 * level) as usize;
        if next < M {
            return sizes;
        }
        sizes.push(next);
        num = next;
    }
}

/// The neighbour lists of one layer whose nodes are `points`: `slots` ids per node,
/// empty slots last, from each node's `candidates` exact nearest and its back links.
fn links(
    points: &[Embedding],
    candidates: usize,
    slots: usize,
    heuristic: bool,
    threads: usize,
) -> Vec<u32> {
    let chosen = map_nearest(points, candidates, threads, |_, best| {
        split(best, points, heuristic)
    });
    lay_out(&chosen, slots)
}

/// A node's candidates (`best`), nearest first, split into useful and redundant links
/// by the selection heuristic (all useful without it).
fn split(best: &mut [(f32, u32)], points: &[Embedding], heuristic: bool) -> Split {
    best.sort_unstable_by(nearest_first);
    if heuristic {
        select(best, points)
    } else {
        (best.to_vec(), Vec::new())
    }
}

/// The neighbour lists of one layer from each node's links (`chosen`, split by
/// [`split`]): `slots` ids per node, empty slots last, useful links, then back links,
/// then redundant ones.
fn lay_out(chosen: &[Split], slots: usize) -> Vec<u32> {
    let n = chosen.len();
    let mut back: Vec<Vec<(f32, u32)>> = vec![Vec::new(); n];
    for (i, (useful, _)) in chosen.iter().enumerate() {
        for &(similarity, j) in useful {
            back[j as usize].push((similarity, i as u32));
        }
    }
    let mut ids = vec![EMPTY_SLOT; n * slots];
    // The node whose row last took each id: a row's duplicates found without searching
    // it (searching took a tenth of the index stage at 10k users).
    let mut taken_by = vec![usize::MAX; n];
    for (i, ((useful, redundant), mut back)) in chosen.iter().zip(back).enumerate() {
        back.sort_unstable_by(nearest_first);
        let row = &mut ids[i * slots..(i + 1) * slots];
        let mut filled = 0;
        for &(_, j) in useful.iter().chain(&back).chain(redundant) {
            if filled == slots {
                break;
            }
            if taken_by[j as usize] != i {
                taken_by[j as usize] = i;
                row[filled] = j;
                filled += 1;
            }
        }
    }
    connect(&mut ids, slots, chosen);
    ids
}

/// Links every node that a walk from node 0 (the search's entry) cannot reach: from the
/// nearest reachable of its candidates (`chosen`), into a free slot or in place of a link
/// to the node with the most incoming links. Back links make this rare with the
/// selection heuristic (a group of outliers, such as duplicates, that only link among
/// themselves); without it, lists of plain nearest neighbours leave many.
///
/// The links a walk first reached each node by form a tree from the entry; they, and the
/// links added here, are never the ones replaced, so no node is cut off again and one
/// pass suffices.
fn connect(ids: &mut [u32], slots: usize, chosen: &[Split]) {
    let n = ids.len() / slots;
    let mut incoming = vec![0u32; n];
    for &id in ids.iter().filter(|&&id| id != EMPTY_SLOT) {
        incoming[id as usize] += 1;
    }
    let mut kept = vec![false; ids.len()];
    let mut reached = vec![false; n];
    let walk = |ids: &[u32], kept: &mut [bool], reached: &mut [bool], from: u32| {
        let mut stack = vec![from];
        reached[from as usize] = true;
        while let Some(node) = stack.pop() {
            let start = node as usize * slots;
            for slot in start..start + slots {
                let next = ids[slot];
                if next == EMPTY_SLOT {
                    break;
                }
                if !reached[next as usize] {
                    reached[next as usize] = true;
                    kept[slot] = true;
                    stack.push(next);
                }
            }
        }
    };
    walk(ids, &mut kept, &mut reached, 0);
    for orphan in 0..n {
        if reached[orphan] {
            continue;
        }
        // A slot of a reachable node that may take the link: free, or else the one
        // naming the node with the most incoming links, never a kept one.
        let open = |node: usize, ids: &[u32], kept: &[bool]| {
            let row = node * slots..(node + 1) * slots;
            ids[row.clone()]
                .iter()
                .position(|&id| id == EMPTY_SLOT)
                .map(|free| row.start + free)
                .or_else(|| {
                    row.filter(|&slot| !kept[slot])
                        .max_by_key(|&slot| (incoming[ids[slot] as usize], slot))
                })
        };
        let (useful, redundant) = &chosen[orphan];
        let candidates = useful.iter().chain(redundant).map(|&(_, j)| j as usize);
        let slot = candidates
            .chain(0..n)
            .filter(|&j| reached[j])
            .find_map(|j| open(j, ids, &kept))
            .expect("a tree of n - 1 kept links leaves a reachable node an open slot");
        if ids[slot] != EMPTY_SLOT {
            incoming[ids[slot] as usize] -= 1;
        }
        ids[slot] = orphan as u32;
        incoming[orphan] += 1;
        kept[slot] = true;
        walk(ids, &mut kept, &mut reached, orphan as u32);
    }
}

/// A node's useful and redundant links, as (similarity, id), each nearest first.
type Split = (Vec<(f32, u32)>, Vec<(f32, u32)>);

/// instant-distance's selection heuristic over a node's `candidates` (as (similarity to
/// the node, id), nearest first): a candidate more similar to an already selected
/// neighbour than to the node is redundant.
fn select(candidates: &[(f32, u32)], points: &[Embedding]) -> Split {
    let mut useful: Vec<(f32, u32)> = Vec::with_capacity(candidates.len());
    let mut redundant = Vec::new();
    for &(similarity, j) in candidates {
        let c = &points[j as usize].0;
        let covered = useful
            .iter()
            .any(|&(_, s)| dot(c, &points[s as usize].0) > similarity);
        if covered {
            redundant.push((similarity, j));
        } else {
            useful.push((similarity, j));
        }
    }
    (useful, redundant)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::clustered;
    use kindred_core::graph::check_index;

    fn params(seed: u64) -> HnswParams {
        HnswParams {
            ef_construction: 48,
            ef_search: 64,
            heuristic: true,
            seed,
        }
    }

    fn bytes(index: &Index) -> Vec<u8> {
        kindred_core::codec::encode("index.bin", index).unwrap()
    }

    #[test]
    fn the_same_points_and_seed_give_the_same_index_whatever_the_threads() {
        let points = clustered(1500, 16, 15, 3);
        let (a, order_a) = build(points.clone(), None, &params(4), 1).unwrap();
        let (b, order_b) = build(points.clone(), None, &params(4), 3).unwrap();
        assert_eq!(order_a, order_b);
        assert!(bytes(&a) == bytes(&b), "the builds differ");
        // and another seed orders the points otherwise.
        let (_, order_c) = build(points, None, &params(5), 1).unwrap();
        assert_ne!(order_a, order_c);
    }

    #[test]
    fn candidates_from_lists_holding_the_nearest_give_an_index_as_good() {
        // Given points and, for each, a list holding its 100 nearest (more than the 48
        // candidates a node takes), in input order, and the same lists reversed,
        let points = clustered(1200, 16, 12, 9);
        let near: Vec<Vec<u32>> = map_nearest(&points, 100, 2, |_, best| {
            best.iter().map(|&(_, j)| j).collect()
        });
        let reversed: Vec<Vec<u32>> = near
            .iter()
            .map(|l| l.iter().rev().copied().collect())
            .collect();
        // when the graph is built from all points and from the lists,
        let (from_all, order) = build(points.clone(), None, &params(6), 2).unwrap();
        let (from_lists, order_lists) = build(points.clone(), Some(&near), &params(6), 2).unwrap();
        let (reordered, _) = build(points.clone(), Some(&reversed), &params(6), 1).unwrap();
        // then the points keep their order, the lists' order and the threads do not
        // matter,
        assert_eq!(order, order_lists);
        assert!(
            bytes(&from_lists) == bytes(&reordered),
            "the list order matters"
        );
        // lists that do not match the points are not used, and the index finds the exact
        // neighbours as well (a similarity from a product per pair can differ from the
        // matrix product's in its last bit, so a link may differ).
        let recall = |index: Index| {
            let shards = kindred_core::shard::Shards::new(vec![(0, index)], 16, false).unwrap();
            shards.recall_at_k(&(0..1200).step_by(3).collect::<Vec<u32>>(), 10)
        };
        let (ignored, _) = build(points.clone(), Some(&near[1..]), &params(6), 2).unwrap();
        assert!(bytes(&from_all) == bytes(&ignored));
        // Lists shorter than the 48 candidates are not used either,
        let short: Vec<Vec<u32>> = near.iter().map(|l| l[..40].to_vec()).collect();
        let (from_short, _) = build(points.clone(), Some(&short), &params(6), 2).unwrap();
        assert!(bytes(&from_all) == bytes(&from_short));
        // while lists long enough are (without each point's 10 nearest, the graph changes).
        let far: Vec<Vec<u32>> = near.iter().map(|l| l[10..].to_vec()).collect();
        let (from_far, _) = build(points, Some(&far), &params(6), 2).unwrap();
        assert!(bytes(&from_all) != bytes(&from_far));
        let (all, lists) = (recall(from_all), recall(from_lists));
        assert!(
            lists >= all - 0.005 && lists > 0.95,
            "{lists} against {all}"
        );
    }

    #[test]
    fn the_layers_are_sized_as_instant_distance_sizes_them() {
        for n in [31, 32, 200, 5_000] {
            let points = clustered(n, 8, 10, 1);
            let ours = build(points.clone(), None, &params(1), 2).unwrap().0;
            let theirs: Index = Index::from_instant_distance(
                instant_distance::Builder::default()
                    .seed(1)
                    .ef_construction(16)
                    .build_hnsw(points)
                    .0,
            )
            .unwrap();
            let shape = |i: &Index| check_index("i", &bytes(i), 8).unwrap().layers;
            assert_eq!(shape(&ours), shape(&theirs), "{n} points");
            assert_eq!(shape(&ours), upper_layer_sizes(n).len());
        }
    }

    #[test]
    fn every_point_is_found_by_searching_for_itself() {
        // Given clustered points, a few of them outliers far from every cluster,
        let mut points = clustered(3000, 24, 30, 9);
        for (i, p) in points.iter_mut().enumerate().step_by(300) {
            let mut v = vec![0.0; 24];
            v[i % 24] = if i % 2 == 0 { 1.0 } else { -1.0 };
            *p = Embedding::normalized(v);
        }
        let (index, _) = build(points, None, &params(2), 2).unwrap();
        // then the search for each point's own embedding finds it first: every point
        // can be reached.
        for (pid, p) in index.iter() {
            let found = kindred_core::search::approximate(&index, &p, 1, None);
            let found = found[0];
            assert!(
                found.row == pid || found.similarity >= 1.0 - 1e-6,
                "point {pid} not found"
            );
        }
    }

    #[test]
    fn a_candidate_nearer_to_a_chosen_neighbour_than_to_the_node_is_redundant() {
        // Given a node at angle 0 and candidates at 10, 20 and -30 degrees,
        let at =
            |deg: f32| Embedding::normalized(vec![deg.to_radians().cos(), deg.to_radians().sin()]);
        let points = vec![at(0.0), at(10.0), at(20.0), at(-30.0)];
        let candidates: Vec<(f32, u32)> = [1u32, 2, 3]
            .into_iter()
            .map(|j| (points[0].cosine(&points[j as usize]), j))
            .collect();
        // then 20 degrees (nearer to 10 than to 0) is redundant and -30 is useful.
        let (useful, redundant) = select(&candidates, &points);
        let ids = |v: &[(f32, u32)]| v.iter().map(|&(_, j)| j).collect::<Vec<u32>>();
        assert_eq!(ids(&useful), vec![1, 3]);
        assert_eq!(ids(&redundant), vec![2]);
    }

    #[test]
    fn a_walk_from_the_entry_reaches_every_node_of_every_layer_size() {
        // Given clustered points and groups of identical outliers (which rank only each
        // other near),
        let mut points = clustered(2000, 16, 20, 4);
        for (i, p) in points.iter_mut().enumerate().step_by(97) {
            let mut v = vec![0.0; 16];
            v[i % 3] = 1.0;
            *p = Embedding::normalized(v);
        }
        // when their layers are linked with and without the heuristic,
        for heuristic in [true, false] {
            for (size, slots) in [(2000, ZERO_SLOTS), (300, UPPER_SLOTS)] {
                let ids = links(&points[..size], 64, slots, heuristic, 2);
                // then a walk from node 0 reaches every node.
                let mut reached = vec![false; size];
                let mut stack = vec![0usize];
                reached[0] = true;
                while let Some(node) = stack.pop() {
                    for &next in &ids[node * slots..(node + 1) * slots] {
                        if next != EMPTY_SLOT && !reached[next as usize] {
                            reached[next as usize] = true;
                            stack.push(next as usize);
                        }
                    }
                }
                let missed = reached.iter().filter(|&&r| !r).count();
                assert_eq!(missed, 0, "heuristic {heuristic}, {size} nodes");
            }
        }
    }

    #[test]
    fn each_list_holds_useful_links_then_back_links_then_the_rest() {
        // Given the four points above as one layer with 2 slots per node,
        let at =
            |deg: f32| Embedding::normalized(vec![deg.to_radians().cos(), deg.to_radians().sin()]);
        let points = vec![at(0.0), at(10.0), at(20.0), at(-30.0)];
        let ids = links(&points, 3, 2, true, 1);
        // then node 0 keeps its useful links 1 and 3, and node 3 (at -30) its one useful
        // link, 0;
        assert_eq!(&ids[0..2], &[1, 3]);
        assert_eq!(ids[3 * 2], 0);
        // and without the heuristic the lists are plain nearest first,
        let plain = links(&points, 3, 2, false, 1);
        assert_eq!(&plain[0..2], &[1, 2]);
        assert_eq!(&plain[2 * 2..2 * 2 + 2], &[1, 0]);
        // except that node 3, which no list names then, is linked from its nearest node
        // whose links a walk from node 0 does not need (1, not 0), in place of the link
        // to the node most linked to (0, named by 1, 2 and 3).
        let mut one = plain[2..4].to_vec();
        one.sort_unstable();
        assert_eq!(one, [2, 3]);
    }
}
