//! Neighbourhood smoothing of user embeddings (one mean-shift step).
//!
//! A user's embedding is estimated from a few dozen views and interests, so it is noisy.
//! Adding the mean of the user's nearest neighbours' embeddings pulls each user towards
//! the centre of the taste group it sits in, which denoises the embedding without
//! moving users whose neighbourhood disagrees with them (their neighbours' mean is
//! small when the neighbours point different ways).
//!
//! How many neighbours are averaged follows the number of users smoothed together
//! ([`neighbours_for`]): a fixed share of them ([`DEFAULT_SHARE`], 2%), capped. A taste
//! group holds a roughly constant share of the users, so a fixed count would average
//! across groups in a small data set and stay far inside one in a large one: on
//! generated data with 40 planted cohorts, 200 neighbours at weight 2 lift cohort
//! precision@10 from 0.870 to 0.892 at 10k users but drop it from 0.875 to 0.783 at
//! 1,500 users, where 2% (30 neighbours) gives 0.878.

use kindred_core::embedding::{Embedding, row_major};
use kindred_core::projection::smooth_towards;
use kindred_core::shard::mix64;

use crate::neighbours::map_nearest;

/// Up to this many points, each point's neighbours are found by an exact scan of all
/// points (quadratic in the number of users).
pub const EXACT_MAX_POINTS: usize = 50_000;
/// Above [`EXACT_MAX_POINTS`], points are split into seeded random groups of at most
/// this many, and neighbours are found by an exact scan of the point's own group: the
/// cost grows linearly with the users (about 0.1 ms of CPU per user for 20k-point groups
/// at rank 64). A random group of 20k users is as dense as a whole 20k-user model, where
/// smoothing already helps the most (see docs/scaling.md).
pub const GROUP_POINTS: usize = 20_000;

/// Default share of the users smoothed together that each embedding is smoothed
/// towards (see [`neighbours_for`]).
pub const DEFAULT_SHARE: f32 = 0.02;

/// Neighbours averaged when `n` points are smoothed together: `share` of the other
/// points, rounded, at least 1 and at most `max` (0 when `max` or `share` is 0, or there
/// is no other point).
pub fn neighbours_for(n: usize, share: f32, max: usize) -> usize {
    let others = n.saturating_sub(1);
    if max == 0 || others == 0 || share.is_nan() || share <= 0.0 {
        return 0;
    }
    let k = (f64::from(share) * others as f64).round() as usize;
    k.clamp(1, max.min(others))
}

/// Neighbours each point gets when `n` points are smoothed by [`smooth`] (within its
/// group above [`EXACT_MAX_POINTS`], taken as the mean group size): what a folded-in
/// profile is smoothed towards too.
pub fn effective_neighbours(n: usize, share: f32, max: usize) -> usize {
    let together = if n <= EXACT_MAX_POINTS {
        n
    } else {
        n / n.div_ceil(GROUP_POINTS)
    };
    neighbours_for(together, share, max)
}

/// Smoothed embeddings, with the neighbours they were smoothed towards when those were
/// found among all points.
pub struct Smoothed {
    /// The smoothed embeddings, `points[i]` for input `i`.
    pub points: Vec<Embedding>,
    /// Each input's neighbours (input indices), when smoothing was exact over all points
    /// (up to [`EXACT_MAX_POINTS`]); the index's graph seeks its candidates among them.
    pub near: Option<Vec<Vec<u32>>>,
}

/// Returns `normalise(e_i + alpha * mean(e_j for the k nearest j != i))` for every point,
/// spread over `threads`, with `k` from [`neighbours_for`] (`share` of the points
/// smoothed together, at most `max_k`). Neighbours are exact among all points up to
/// [`EXACT_MAX_POINTS`] points, else exact within the point's random group of at most
/// [`GROUP_POINTS`].
pub fn smooth(
    points: &[Embedding],
    max_k: usize,
    share: f32,
    alpha: f32,
    threads: usize,
) -> Smoothed {
    let n = points.len();
    let k = effective_neighbours(n, share, max_k);
    if k == 0 || alpha == 0.0 {
        return Smoothed {
            points: points.to_vec(),
            near: None,
        };
    }
    if n <= EXACT_MAX_POINTS {
        let (points, near) = smooth_exact(points, k, alpha, threads).into_iter().unzip();
        return Smoothed {
            points,
            near: Some(near),
        };
    }
    // Each group counts its own neighbours: group sizes vary around the mean.
    Smoothed {
        points: smooth_grouped(points, max_k, share, alpha, threads, GROUP_POINTS),
        near: None,
    }
}

/// [`smooth`] with each point's neighbours taken from its own group: the points are
/// split into `ceil(n / group_points)` groups by a hash of their position, and each
/// group gets its own neighbour count from [`neighbours_for`].
fn smooth_grouped(
    points: &[Embedding],
    max_k: usize,
    share: f32,
    alpha: f32,
    threads: usize,
    group_points: usize,
) -> Vec<Embedding> {
    let groups = points.len().div_ceil(group_points.max(2)) as u64;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); groups as usize];
    for i in 0..points.len() {
        members[(mix64(i as u64 ^ 0x5300_7000) % groups) as usize].push(i);
    }
    let mut out: Vec<Option<Embedding>> = vec![None; points.len()];
    for group in members {
        let local: Vec<Embedding> = group.iter().map(|&i| points[i].clone()).collect();
        let k = neighbours_for(local.len(), share, max_k);
        let smoothed = if k == 0 {
            local
        } else {
            smooth_exact(&local, k, alpha, threads)
                .into_iter()
                .map(|(e, _)| e)
                .collect()
        };
        for (i, e) in group.into_iter().zip(smoothed) {
            out[i] = Some(e);
        }
    }
    out.into_iter()
        .map(|e| e.expect("every point is in one group"))
        .collect()
}

/// [`smooth`] with neighbours from an exact scan of all `points` (at least 2), by
/// [`map_nearest`]: each smoothed point with its neighbours.
fn smooth_exact(
    points: &[Embedding],
    k: usize,
    alpha: f32,
    threads: usize,
) -> Vec<(Embedding, Vec<u32>)> {
    // The neighbours are read from one contiguous copy rather than through each
    // embedding's own allocation (a fifth less summing time at 10k users).
    let dims = points.first().map_or(0, |p| p.0.len());
    let flat = row_major(points);
    map_nearest(points, k, threads, |i, best| {
        let near: Vec<&[f32]> = best
            .iter()
            .map(|&(_, j)| &flat[j as usize * dims..][..dims])
            .collect();
        let smoothed = smooth_towards(&points[i], &near, alpha);
        (smoothed, best.iter().map(|&(_, j)| j).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let smoothed = smooth(&points, 5, 1.0, 1.0, 2).points;
        // then it leans less towards the second group, everything stays unit length,
        let after = smoothed[40].0[1] / smoothed[40].0[0];
        assert!(after < before * 0.7, "{before} -> {after}");
        assert!(smoothed.iter().all(|e| (e.cosine(e) - 1.0).abs() < 1e-5));
        // and weight 0 changes nothing.
        assert_eq!(smooth(&points, 5, 1.0, 0.0, 2).points, points);
        assert_eq!(smooth(&points, 5, 0.0, 1.0, 2).points, points);
    }

    #[test]
    fn the_grouped_path_agrees_with_the_exact_one_on_separated_clusters() {
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
        // Given three separated clusters of 100 points each, smoothed exactly and
        // within 3 random groups of about 100 points,
        let exact = smooth(&points, 8, 1.0, 1.0, 2).points;
        let approx = smooth_grouped(&points, 8, 1.0, 1.0, 2, 100);
        // then every point lands where the exact smoothing puts it.
        let worst = exact
            .iter()
            .zip(&approx)
            .map(|(a, b)| a.cosine(b))
            .fold(1.0f32, f32::min);
        assert!(worst > 0.999, "worst agreement {worst}");
    }

    #[test]
    fn the_neighbour_count_is_a_share_of_the_points_capped() {
        // 2% of the other points, rounded,
        assert_eq!(neighbours_for(1_501, 0.02, 200), 30);
        assert_eq!(neighbours_for(3_001, 0.02, 200), 60);
        // capped (a 10k model and a 20k group both get 200),
        assert_eq!(neighbours_for(10_000, 0.02, 200), 200);
        assert_eq!(neighbours_for(20_000, 0.02, 200), 200);
        // at least one and never more than the other points,
        assert_eq!(neighbours_for(10, 0.02, 200), 1);
        assert_eq!(neighbours_for(3, 1.0, 200), 2);
        // none without another point, a cap or a share;
        assert_eq!(neighbours_for(1, 0.02, 200), 0);
        assert_eq!(neighbours_for(100, 0.02, 0), 0);
        assert_eq!(neighbours_for(100, 0.0, 200), 0);
        // above the exact limit each group of about 20k points gets its own count.
        assert_eq!(effective_neighbours(1_000_000, 0.02, 200), 200);
        assert_eq!(effective_neighbours(60_000, 0.01, 500), 200);
    }
}
