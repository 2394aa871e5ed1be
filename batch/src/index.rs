//! Building the HNSW index over user embeddings and measuring its recall.

use instant_distance::{Builder, Heuristic};
use kindred_core::artifact::{Embedding, HnswParams, Index};
use kindred_core::query;

/// Builds the index; returns it with `order`, where point `i` of the index is input `order[i]`.
pub fn build(points: Vec<Embedding>, params: &HnswParams) -> (Index, Vec<u32>) {
    let n = points.len();
    let builder = Builder::default()
        .ef_construction(params.ef_construction)
        .ef_search(params.ef_search)
        .seed(params.seed)
        .select_heuristic(params.heuristic.then(Heuristic::default));
    let (index, ids) = builder.build_hnsw(points);
    let mut order = vec![0u32; n];
    for (input, pid) in ids.into_iter().enumerate() {
        order[pid.into_inner() as usize] = input as u32;
    }
    (index, order)
}

/// A reproducible sample of `count` distinct rows out of `n` (all rows when `count >= n`).
pub fn sample_rows(n: usize, count: usize, seed: u64) -> Vec<u32> {
    if count >= n {
        return (0..n as u32).collect();
    }
    // Partial Fisher-Yates with splitmix64.
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut rows: Vec<u32> = (0..n as u32).collect();
    for i in 0..count {
        let j = i + (next() % (n - i) as u64) as usize;
        rows.swap(i, j);
    }
    rows.truncate(count);
    rows
}

/// Recall@k of the index against exact search over `rows`, spread over `threads`.
pub fn recall(index: &Index, rows: &[u32], k: usize, threads: usize) -> f64 {
    if rows.is_empty() {
        return 1.0;
    }
    let chunk = rows.len().div_ceil(threads.max(1));
    let parts: Vec<(f64, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .map(|part| scope.spawn(move || (query::recall_at_k(index, part, k), part.len())))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("recall worker panicked"))
            .collect()
    });
    parts.iter().map(|(r, n)| r * *n as f64).sum::<f64>() / rows.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded clustered points: `clusters` random centres, points scattered around them.
    fn clustered(n: usize, dims: usize, clusters: usize, seed: u64) -> Vec<Embedding> {
        let mut state = seed;
        let mut unif = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
        };
        let centres: Vec<Vec<f32>> = (0..clusters)
            .map(|_| (0..dims).map(|_| unif()).collect())
            .collect();
        (0..n)
            .map(|i| {
                let c = &centres[i % clusters];
                Embedding::normalized(c.iter().map(|x| x + 0.35 * unif()).collect())
            })
            .collect()
    }

    #[test]
    fn recall_at_10_against_exact_search_is_high_on_clustered_data() {
        // Given 3,000 seeded clustered 32-d points,
        let points = clustered(3000, 32, 30, 7);
        let params = HnswParams {
            ef_construction: 64,
            ef_search: 64,
            heuristic: false,
            seed: 1,
        };
        // when indexed,
        let (index, order) = build(points.clone(), &params);
        // then every input is a point exactly once,
        let mut seen = order.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..3000).collect::<Vec<u32>>());
        assert_eq!(
            index[instant_distance::PointId::from(5)],
            points[order[5] as usize]
        );
        // and recall@10 on a 1,000-user sample is at least 0.95.
        let sample = sample_rows(3000, 1000, 3);
        let r = recall(&index, &sample, 10, 2);
        assert!(r >= 0.95, "recall@10 = {r}");
    }

    #[test]
    fn samples_are_distinct_and_reproducible() {
        let a = sample_rows(10_000, 1000, 9);
        let mut d = a.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), 1000);
        assert_eq!(a, sample_rows(10_000, 1000, 9));
        assert_ne!(a, sample_rows(10_000, 1000, 10));
    }
}
