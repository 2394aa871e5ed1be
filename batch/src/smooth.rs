//! Neighbourhood smoothing of user embeddings (one mean-shift step).
//!
//! A user's embedding is estimated from a few dozen views and interests, so it is noisy.
//! Adding the mean of the user's nearest neighbours' embeddings pulls each user towards
//! the centre of the taste group it sits in, which denoises the embedding without
//! moving users whose neighbourhood disagrees with them (their neighbours' mean is
//! small when the neighbours point different ways).

use kindred_core::artifact::{Embedding, HnswParams, dots};
use kindred_core::projection::smooth_towards;
use kindred_core::query;

/// Above this many points the neighbours come from a temporary HNSW index instead of an
/// exact scan (which is quadratic in the number of users).
pub const EXACT_MAX_POINTS: usize = 50_000;

/// Returns `normalise(e_i + alpha * mean(e_j for the k nearest j != i))` for every point,
/// spread over `threads`. Neighbours are exact up to [`EXACT_MAX_POINTS`] points, else
/// approximate (an HNSW index built with `params`, without its heuristic).
pub fn smooth(
    points: &[Embedding],
    k: usize,
    alpha: f32,
    threads: usize,
    params: &HnswParams,
) -> Vec<Embedding> {
    let n = points.len();
    if n < 2 || k == 0 || alpha == 0.0 {
        return points.to_vec();
    }
    if n > EXACT_MAX_POINTS {
        return smooth_approximate(points, k, alpha, threads, params);
    }
    let dims = points[0].0.len();
    let flat: Vec<f32> = points.iter().flat_map(|p| p.0.iter().copied()).collect();
    let k = k.min(n - 1);
    each_point(n, threads, |i| {
        let q = &points[i].0;
        let mut scores = Vec::with_capacity(n);
        dots(q, &flat, dims, &mut scores);
        scores[i] = f32::NEG_INFINITY;
        let mut ids: Vec<u32> = (0..n as u32).collect();
        ids.select_nth_unstable_by(k - 1, |&a, &b| {
            scores[b as usize].total_cmp(&scores[a as usize])
        });
        let near: Vec<&Embedding> = ids[..k].iter().map(|&j| &points[j as usize]).collect();
        smooth_towards(&points[i], &near, alpha)
    })
}

/// `f(i)` for every point `i` in `0..n`, in order, spread over `threads` scoped threads.
fn each_point(n: usize, threads: usize, f: impl Fn(usize) -> Embedding + Sync) -> Vec<Embedding> {
    let chunk = n.div_ceil(threads.max(1)).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|start| {
                scope.spawn(move || (start..(start + chunk).min(n)).map(f).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("smoothing worker panicked"))
            .collect()
    })
}

/// [`smooth`] with neighbours from a temporary HNSW index.
fn smooth_approximate(
    points: &[Embedding],
    k: usize,
    alpha: f32,
    threads: usize,
    params: &HnswParams,
) -> Vec<Embedding> {
    let params = HnswParams {
        ef_search: params.ef_search.max(k + 1),
        heuristic: false,
        ..params.clone()
    };
    let (index, order) = crate::index::build(points.to_vec(), &params);
    // Point p of the index is input order[p]; find each input's point.
    let mut point_of = vec![0u32; points.len()];
    for (p, &input) in order.iter().enumerate() {
        point_of[input as usize] = p as u32;
    }
    each_point(points.len(), threads, |i| {
        let near: Vec<&Embedding> = query::approximate(&index, &points[i], k, Some(point_of[i]))
            .iter()
            .map(|nb| &points[order[nb.row as usize] as usize])
            .collect();
        smooth_towards(&points[i], &near, alpha)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> HnswParams {
        HnswParams {
            ef_construction: 64,
            ef_search: 64,
            heuristic: false,
            seed: 3,
        }
    }

    #[test]
    fn smoothing_pulls_a_noisy_point_towards_its_group() {
        // Given two tight groups on the axes and one point of the first group tilted
        // towards the second,
        let mut points = Vec::new();
        for i in 0..20 {
            let t = i as f32 * 0.001;
            points.push(Embedding::normalized(vec![1.0, t]));
            points.push(Embedding::normalized(vec![t, 1.0]));
        }
        points.push(Embedding::normalized(vec![1.0, 0.6]));
        let before = points[40].0[1] / points[40].0[0];
        // when smoothed towards its 5 nearest neighbours,
        let smoothed = smooth(&points, 5, 1.0, 2, &params());
        // then it leans less towards the second group, everything stays unit length,
        let after = smoothed[40].0[1] / smoothed[40].0[0];
        assert!(after < before * 0.7, "{before} -> {after}");
        assert!(smoothed.iter().all(|e| (e.cosine(e) - 1.0).abs() < 1e-5));
        // and weight 0 changes nothing.
        assert_eq!(smooth(&points, 5, 0.0, 2, &params()), points);
    }

    #[test]
    fn the_approximate_path_agrees_with_the_exact_one_on_separated_groups() {
        let mut points = Vec::new();
        for i in 0..300 {
            let t = (i % 30) as f32 * 0.002;
            let v = match i % 3 {
                0 => vec![1.0, t, 0.0],
                1 => vec![0.0, 1.0, t],
                _ => vec![t, 0.0, 1.0],
            };
            points.push(Embedding::normalized(v));
        }
        let exact = smooth(&points, 8, 1.0, 2, &params());
        let approx = smooth_approximate(&points, 8, 1.0, 2, &params());
        let worst = exact
            .iter()
            .zip(&approx)
            .map(|(a, b)| a.cosine(b))
            .fold(1.0f32, f32::min);
        assert!(worst > 0.999, "worst agreement {worst}");
    }
}
