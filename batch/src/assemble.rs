//! From a dataset to the training matrix: rows assigned to users, the weighted blocks,
//! the user summaries and explanation features, and the fold-in projection of a fit.

use kindred_core::courses::CourseTable;
use kindred_core::projection::{Centring, Entry, ProjectedBlock, Projection, Smoothing};
use kindred_core::users::{Feature, Signal, UserSummary};

use crate::config::TrainConfig;
use crate::fast_hash::{FastMap, FastSet};
use crate::ingest::{Dataset, View};
use crate::matrix::{self, Block};
use crate::svd;

/// A row's `n` largest entries as explanation features, scaled to a unit-length row and
/// sorted by (signal, tag).
pub fn strongest_features(
    csr: &matrix::Csr,
    columns: &[matrix::Column],
    row: usize,
    n: usize,
) -> Vec<Feature> {
    let norm = csr.row(row).map(|(_, v)| v * v).sum::<f32>().sqrt();
    if norm == 0.0 || n == 0 {
        return Vec::new();
    }
    // Course columns have no tag to name: explanations speak of tags only.
    let mut entries: Vec<(u32, f32)> = csr
        .row(row)
        .filter(|(c, _)| columns[*c as usize].block < 3)
        .collect();
    entries.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
    entries.truncate(n);
    let mut features: Vec<Feature> = entries
        .into_iter()
        .map(|(col, v)| {
            let c = &columns[col as usize];
            Feature {
                signal: [Signal::Views, Signal::Interests, Signal::Assessments][c.block],
                // Ingest refuses more than `MAX_TAGS` tags.
                tag: c.tag as u16,
                weight: v / norm,
            }
        })
        .collect();
    features.sort_by_key(|f| (f.signal, f.tag));
    features
}

/// The matrix stage's output.
pub struct Built {
    /// User handles by row (sorted).
    pub handles: Vec<u64>,
    /// The blocks before weighting (views hold the seed's mean seconds per tag).
    pub blocks: Vec<Block>,
    /// The weighted, stacked matrix.
    pub csr: matrix::Csr,
    /// What each column stands for.
    pub columns: Vec<matrix::Column>,
    /// Each column's idf factor.
    pub idf: Vec<f32>,
    /// One summary per row.
    pub summaries: Vec<UserSummary>,
    /// Users with at least one view row.
    pub users_with_views: usize,
}

/// Assigns rows to users (sorted handles) and builds the weighted matrix and the summaries.
pub fn build_matrix(ds: &Dataset, cfg: &TrainConfig) -> Built {
    build_matrix_hiding(ds, cfg, &FastSet::default())
}

/// [`build_matrix`] with the (handle, tag) pairs in `hidden` left out of every block (and
/// a hidden tag's courses left out of the courses block).
pub fn build_matrix_hiding(ds: &Dataset, cfg: &TrainConfig, hidden: &FastSet<(u64, u32)>) -> Built {
    let Gathered {
        handles,
        blocks,
        summaries,
        users_with_views,
    } = gather(ds, cfg, hidden);
    let (csr, columns, idf) = matrix::assemble(handles.len(), &blocks);
    Built {
        handles,
        blocks,
        csr,
        columns,
        idf,
        summaries,
        users_with_views,
    }
}

/// A data set's rows before weighting: what [`build_matrix_hiding`] weighs and stacks,
/// and what `kindred-batch update` weighs with a model's stored weighting instead.
pub struct Gathered {
    /// User handles by row (sorted).
    pub handles: Vec<u64>,
    /// The blocks before weighting, with each entry's recency factor.
    pub blocks: Vec<Block>,
    /// One summary per row.
    pub summaries: Vec<UserSummary>,
    /// Users with at least one view row.
    pub users_with_views: usize,
}

/// Assigns rows to users (sorted handles) and gathers each block's entries and the
/// summaries, the (handle, tag) pairs in `hidden` left out.
pub fn gather(ds: &Dataset, cfg: &TrainConfig, hidden: &FastSet<(u64, u32)>) -> Gathered {
    gather_at(ds, cfg, hidden, ds.newest_day())
}

/// [`gather`] with recency measured back from the day `newest` (days since 1970-01-01)
/// rather than from `ds`'s newest event: for a part of a data set, as the whole measured it.
pub fn gather_at(
    ds: &Dataset,
    cfg: &TrainConfig,
    hidden: &FastSet<(u64, u32)>,
    newest: u32,
) -> Gathered {
    let is_hidden = |user: u64, tag: u32| !hidden.is_empty() && hidden.contains(&(user, tag));
    let mut handles: Vec<u64> = ds
        .views
        .iter()
        .map(|v| v.user)
        .chain(ds.interests.iter().map(|i| i.0))
        .chain(ds.assessments.iter().map(|a| a.0))
        .collect();
    handles.sort_unstable();
    handles.dedup();
    let row_of: FastMap<u64, u32> = handles
        .iter()
        .enumerate()
        .map(|(r, &h)| (h, r as u32))
        .collect();

    // Recency: each event's factor by its age before the newest event.
    let recency = |day: u32| {
        let age = if day == 0 {
            0
        } else {
            newest.saturating_sub(day)
        };
        matrix::decay(age as f32, cfg.half_life_days, cfg.recency_floor)
    };
    std::thread::scope(|scope| {
        // Views: one observation per (view row, tag of its course), averaged per (user,
        // tag). The largest part of the gathering: each half of the views is observed
        // and sorted on a thread of its own beside the rest (at 10k users one thread
        // took 48 ms, the rest 18), so its observations (16 bytes each, about two a
        // view) are held while the courses are totalled (12 bytes a view), then averaged
        // as the two halves are merged: at 10k users the run's peak rose by about 10 MiB.
        let observe = |views: &[View]| {
            let mut observations: Vec<matrix::Observation> = Vec::with_capacity(views.len() * 2);
            for v in views {
                let r = row_of[&v.user];
                let factor = recency(v.day);
                for &t in &ds.course_tags[v.course as usize] {
                    if !is_hidden(v.user, t) {
                        observations.push((r, t, v.seconds, factor));
                    }
                }
            }
            matrix::sort_by_row_and_column(&mut observations, |o| (o.0, o.1));
            observations
        };
        let (early, late) = ds.views.split_at(ds.views.len() / 2);
        let early = scope.spawn(move || observe(early));
        let late = scope.spawn(move || observe(late));
        // Courses: total seconds per (user, course).
        let course_entries: Vec<(u32, u32, f32)> = if cfg.courses.weight != 0.0 {
            let mut per_course: Vec<(u32, u32, u32)> = ds
                .views
                .iter()
                .filter(|v| {
                    !ds.course_tags[v.course as usize]
                        .iter()
                        .any(|&t| is_hidden(v.user, t))
                })
                .map(|v| (row_of[&v.user], v.course, v.seconds))
                .collect();
            per_course.sort_unstable_by_key(|o| (o.0, o.1));
            let mut out: Vec<(u32, u32, f32)> = Vec::new();
            for (r, c, secs) in per_course {
                match out.last_mut() {
                    Some(last) if last.0 == r && last.1 == c => last.2 += secs as f32,
                    _ => out.push((r, c, secs as f32)),
                }
            }
            out
        } else {
            Vec::new()
        };
        // Courses per user.
        let mut user_courses: Vec<(u32, u32)> = ds
            .views
            .iter()
            .map(|v| (row_of[&v.user], v.course))
            .collect();
        matrix::sort_by_row_and_column(&mut user_courses, |&pair| pair);
        user_courses.dedup();
        let (interest_entries, interest_decay) = {
            let mut e: Vec<_> = ds
                .interests
                .iter()
                .zip(dated(&ds.interest_days))
                .filter(|&(&(u, t), _)| !is_hidden(u, t))
                .map(|(&(u, t), day)| ((row_of[&u], t, 1.0), recency(day)))
                .collect();
            matrix::sort_by_row_and_column(&mut e, |x| (x.0.0, x.0.1));
            e.into_iter().unzip::<_, _, Vec<_>, Vec<_>>()
        };
        let (assessment_entries, assessment_decay) = {
            let mut e: Vec<_> = ds
                .assessments
                .iter()
                .zip(dated(&ds.assessment_days))
                .filter(|&(&(u, t, _), _)| !is_hidden(u, t))
                .map(|(&(u, t, s), day)| ((row_of[&u], t, f32::from(s)), recency(day)))
                .collect();
            matrix::sort_by_row_and_column(&mut e, |x| (x.0.0, x.0.1));
            e.into_iter().unzip::<_, _, Vec<_>, Vec<_>>()
        };
        let (view_entries, view_decay) = matrix::average_merged(
            &early.join().expect("gathering the views panicked"),
            &late.join().expect("gathering the views panicked"),
        );

        let (summaries, users_with_views) = summarise(
            &handles,
            &user_courses,
            &view_entries,
            &interest_entries,
            &assessment_entries,
            cfg,
        );

        let blocks = vec![
            Block {
                name: "views",
                entries: view_entries,
                weighting: cfg.views,
                decay: view_decay,
            },
            Block {
                name: "interests",
                entries: interest_entries,
                weighting: cfg.interests,
                decay: interest_decay,
            },
            Block {
                name: "assessments",
                entries: assessment_entries,
                weighting: cfg.assessments,
                decay: assessment_decay,
            },
            Block {
                name: "courses",
                entries: course_entries,
                weighting: cfg.courses,
                decay: Vec::new(),
            },
        ];
        Gathered {
            handles,
            blocks,
            summaries,
            users_with_views,
        }
    })
}

/// Each row's summary (what an answer may show of a user) from its gathered entries; and
/// the number of users with a view.
fn summarise(
    handles: &[u64],
    user_courses: &[(u32, u32)],
    view_entries: &[(u32, u32, f32)],
    interest_entries: &[(u32, u32, f32)],
    assessment_entries: &[(u32, u32, f32)],
    cfg: &TrainConfig,
) -> (Vec<UserSummary>, usize) {
    let mut summaries: Vec<UserSummary> = handles
        .iter()
        .map(|&handle| UserSummary {
            handle,
            ..Default::default()
        })
        .collect();
    for &(r, _) in user_courses {
        summaries[r as usize].courses += 1;
    }
    let users_with_views = summaries.iter().filter(|s| s.courses > 0).count();
    for &(r, t, avg) in view_entries {
        let s = &mut summaries[r as usize];
        s.tags_viewed += 1;
        s.top_tags.push((t, avg));
    }
    for s in &mut summaries {
        s.top_tags
            .sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        s.top_tags.truncate(cfg.summary_tags);
    }
    for &(r, t, _) in interest_entries {
        let s = &mut summaries[r as usize];
        if s.interests.len() < cfg.summary_interests {
            s.interests.push(t);
        }
    }
    for &(r, t, score) in assessment_entries {
        summaries[r as usize].assessments.push((t, score as u16));
    }
    (summaries, users_with_views)
}

/// Each of the `rows` matrix rows' raw entries (views, interests, assessments) with their
/// recency factors, tags unknown to the model left out (a row may end up empty).
pub fn entries_by_row(blocks: &[Block], rows: usize, tag_count: u32) -> Vec<Vec<Entry>> {
    let mut rows: Vec<Vec<Entry>> = vec![Vec::new(); rows];
    let signals = [Signal::Views, Signal::Interests, Signal::Assessments];
    for (block, signal) in blocks.iter().zip(signals) {
        for (i, &(r, tag, value)) in block.entries.iter().enumerate() {
            if tag >= tag_count {
                continue;
            }
            rows[r as usize].push(Entry {
                signal,
                tag,
                value,
                factor: block.decay.get(i).copied().unwrap_or(1.0),
            });
        }
    }
    rows
}

/// The days of a signal's rows, or undated (0) for each row when the data set carries
/// none (built in code rather than read).
fn dated(days: &[u32]) -> impl Iterator<Item = u32> + '_ {
    days.iter().copied().chain(std::iter::repeat(0))
}

/// The course table of a data set (`courses.bin`): the catalogue and each user's viewed
/// courses with their summed seconds, for recommendations.
pub fn course_table(ds: &Dataset) -> CourseTable {
    CourseTable::build(
        ds.courses.names.clone(),
        ds.course_tags.clone(),
        ds.views
            .iter()
            .map(|v| (v.user, v.course, v.seconds))
            .collect(),
    )
}

/// The fold-in projection of a fit: per tag block, the weighting and the rows of
/// `V Σ^(p-1)` (the courses block has no tags to fold in and is left out).
pub fn projection(
    cfg: &TrainConfig,
    columns: &[matrix::Column],
    idf: &[f32],
    svd: &svd::Svd,
) -> Projection {
    let k = svd.singular_values.len();
    let scale = svd.scale(cfg.power);
    let basis_row = |col: usize| -> Vec<f32> {
        (0..k)
            .map(|j| (svd.v[[col, j]] * scale[j]) as f32)
            .collect()
    };
    let weightings = [cfg.views, cfg.interests, cfg.assessments];
    let signals = [Signal::Views, Signal::Interests, Signal::Assessments];
    let blocks = (0..3)
        .map(|b| {
            let w = weightings[b];
            let mut block = ProjectedBlock {
                signal: signals[b],
                transform: w.transform.stored(),
                normalise: w.normalise,
                weight: w.weight,
                tags: Vec::new(),
                idf: Vec::new(),
                basis: Vec::new(),
            };
            let mut cols: Vec<(u32, usize)> = columns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.block == b)
                .map(|(i, c)| (c.tag, i))
                .collect();
            cols.sort_unstable();
            for (tag, col) in cols {
                block.tags.push(tag);
                block.idf.push(idf[col]);
                block.basis.extend(basis_row(col));
            }
            block
        })
        .filter(|b| !b.tags.is_empty())
        .collect();
    let centring = svd.centring.as_ref().map(|c| Centring {
        columns: columns.len() as u32,
        basis_column_sums: c
            .v_colsums
            .iter()
            .zip(&scale)
            .map(|(s, f)| (s * f) as f32)
            .collect(),
    });
    Projection {
        dimensions: k as u32,
        blocks,
        centring,
        // The neighbour count used (a share of the users) is set once they are known.
        smoothing: Smoothing {
            neighbours: cfg.smooth_neighbours as u32,
            weight: cfg.smooth_weight,
        },
    }
}
