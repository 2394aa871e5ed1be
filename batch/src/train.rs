//! The training pipeline: data folder in, encoded model artifacts and a run summary out.
//!
//! Pure computation over the files read by [`crate::ingest`]; publishing is the caller's.
use std::collections::HashMap;
use std::time::Instant;

use kindred_core::codec::encode;
use kindred_core::embedding::{Embedding, row_major};
use kindred_core::manifest::{self, COURSES, Manifest, PROJECTION, REPORT};
use kindred_core::model::EXACT_SCAN_MAX_USERS;
use kindred_core::projection::{Entry, Projection};
use kindred_core::query::smoothed_towards;
use kindred_core::search::{Neighbour, exact_flat};
use kindred_core::shard::Shards;
use kindred_core::users::{UserSummary, UserTable, Users};

use crate::assemble::{
    Built, build_matrix_hiding, course_table, entries_by_row, gather_at, projection,
    strongest_features,
};
use crate::config::{AUTO_HOLDOUT_MAX_USERS, BLOCK_NAMES, Evaluate, HOLDOUT_SHARE, TrainConfig};
use crate::fast_hash::{FastMap, FastSet};
use crate::ingest::{self, Dataset};
use crate::measured::Measured;
use crate::pictures::Pictures;
use crate::summary::{HoldoutMethod, Quality, RunSummary, Stages, peak_rss_mib};
use crate::svd;
use crate::{eval, index};

/// A trained model, encoded and ready to publish (all of it from [`train`]; from
/// [`train_handing_over`], what was not handed over).
pub struct Trained {
    /// Manifest without artifact entries (the publisher fills them in).
    pub manifest: Manifest,
    /// Encoded artifacts by name, in the manifest's order: all of them from [`train`];
    /// from [`train_handing_over`], those not handed over (the report).
    pub artifacts: Vec<(String, Vec<u8>)>,
    /// The run summary.
    pub summary: RunSummary,
}

/// Errors that stop a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The input cannot be used.
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    /// The decomposition failed.
    #[error(transparent)]
    Svd(#[from] svd::SvdError),
    /// Encoding failed.
    #[error(transparent)]
    Core(#[from] kindred_core::Error),
}

/// A fitted model before encoding: the index and the user table in index order.
pub struct Fitted {
    /// All handles seen, by matrix row.
    pub handles: Vec<u64>,
    /// The HNSW index shards; row `i` is `users[i]`.
    pub shards: Shards,
    /// User summaries in index order.
    pub users: Vec<UserSummary>,
    /// The decomposition.
    pub svd: svd::Svd,
    /// Matrix non-zeros.
    pub nonzeros: usize,
    /// Matrix columns per block.
    pub columns: HashMap<String, usize>,
    /// Users with at least one view row.
    pub users_with_views: usize,
    /// The fold-in projection for profile queries.
    pub projection: Projection,
}

impl Fitted {
    /// Handles of the index's points, in index order.
    pub fn point_handles(&self) -> Vec<u64> {
        self.users.iter().map(|u| u.handle).collect()
    }
}

/// Builds the matrix, factorises it and computes the (smoothed) embeddings, with the
/// (handle, tag) pairs in `hidden` left out of the data.
pub fn embed(
    ds: &Dataset,
    cfg: &TrainConfig,
    hidden: &FastSet<(u64, u32)>,
    stages: &mut Stages,
) -> Result<Embedded, TrainError> {
    crate::blas::on_calling_thread();
    let built = stages.run("matrix", || build_matrix_hiding(ds, cfg, hidden));
    let Built {
        handles,
        blocks,
        csr,
        columns,
        idf,
        summaries,
        users_with_views,
    } = built;
    drop(blocks);
    // Users with an empty row have no signal: they are kept out of the index.
    let kept: Vec<usize> = (0..csr.rows).filter(|&row| csr.row_nnz(row) > 0).collect();
    let (svd, projection, points, near, features) = std::thread::scope(|scope| {
        // Their explanation features need only the matrix: they are picked beside the
        // decomposition (at 10k users 15-20 ms on one thread, while the SVD leaves a core
        // idle for part of its time).
        let picking = scope.spawn(|| {
            kept.iter()
                .map(|&row| strongest_features(&csr, &columns, row, cfg.explain_features))
                .collect::<Vec<_>>()
        });
        let svd = stages.run("svd", || {
            svd::truncated_svd(&csr, cfg.rank, cfg.threads, cfg.centre_rows)
        })?;
        let mut embeddings = stages.run("embed", || svd::embed(&csr, &svd, cfg.power, cfg.threads));
        let mut projection = projection(cfg, &columns, &idf, &svd);
        let mut points: Vec<Embedding> = kept
            .iter()
            .map(|&row| Embedding::normalized(std::mem::take(&mut embeddings[row])))
            .collect();
        drop(embeddings);
        let neighbours = crate::smooth::effective_neighbours(
            points.len(),
            cfg.smooth_share,
            cfg.smooth_neighbours,
        );
        // A folded-in profile gets the same step, towards at most `ef_search` of its nearest
        // (smoothed) users: more would leave the HNSW path for an exact scan of every user at
        // query time. Their mean is about the same, the smoothed users being concentrated
        // already: on the six 10k-user data sets of docs/quality.md, a user's own data folded in
        // this way finds neighbours as good with 64 as with 200 (cohort precision@10 within
        // 0.002, one data set 0.010 lower) and is among its own 10 nearest 99% of the time.
        projection.smoothing.neighbours = neighbours.min(cfg.hnsw.ef_search) as u32;
        let mut near = None;
        if neighbours > 0 {
            let smoothed = stages.run("smooth", || {
                crate::smooth::smooth(
                    &points,
                    cfg.smooth_neighbours,
                    cfg.smooth_share,
                    cfg.smooth_weight,
                    cfg.threads,
                )
            });
            points = smoothed.points;
            near = smoothed.near;
        }
        let features = picking.join().expect("picking the features panicked");
        Ok::<_, TrainError>((svd, projection, points, near, features))
    })?;
    let mut summaries = summaries;
    let users: Vec<UserSummary> = kept
        .iter()
        .zip(features)
        .map(|(&row, features)| UserSummary {
            features,
            ..std::mem::take(&mut summaries[row])
        })
        .collect();
    let mut col_counts = HashMap::new();
    for c in &columns {
        *col_counts
            .entry(BLOCK_NAMES[c.block].to_owned())
            .or_default() += 1;
    }
    Ok(Embedded {
        handles,
        points,
        near,
        users,
        svd,
        nonzeros: csr.nnz(),
        columns: col_counts,
        users_with_views,
        projection,
    })
}

/// Everything a fit computes before the index: the once-per-run work of a sharded
/// training (see [`crate::pipeline`]).
pub struct Embedded {
    /// All handles seen, by matrix row.
    pub handles: Vec<u64>,
    /// Unit (smoothed) embeddings of the users with any signal.
    pub points: Vec<Embedding>,
    /// The neighbours each point was smoothed towards (indices of `points`), when
    /// smoothing searched all points.
    pub near: Option<Vec<Vec<u32>>>,
    /// Their summaries, `users[i]` for `points[i]`.
    pub users: Vec<UserSummary>,
    /// The decomposition.
    pub svd: svd::Svd,
    /// Matrix non-zeros.
    pub nonzeros: usize,
    /// Matrix columns per block.
    pub columns: HashMap<String, usize>,
    /// Users with at least one view row.
    pub users_with_views: usize,
    /// The fold-in projection for profile queries.
    pub projection: Projection,
}

/// Builds the matrix, factorises it and indexes the embeddings, with the (handle, tag)
/// pairs in `hidden` left out of the data (for the hold-out measure).
pub fn fit(
    ds: &Dataset,
    cfg: &TrainConfig,
    hidden: &FastSet<(u64, u32)>,
    stages: &mut Stages,
) -> Result<Fitted, TrainError> {
    let Embedded {
        handles,
        points,
        near,
        mut users,
        svd,
        nonzeros,
        columns,
        users_with_views,
        projection,
    } = embed(ds, cfg, hidden, stages)?;
    let point_handles: Vec<u64> = users.iter().map(|u| u.handle).collect();
    let shard_count = cfg.shard_count(points.len());
    let hnsw = cfg.hnsw_for(points.len());
    let (shards, order) = stages.run("index", || {
        index::build_sharded(
            points,
            &point_handles,
            shard_count,
            &hnsw,
            cfg.threads,
            near.as_deref(),
        )
    });
    let users: Vec<UserSummary> = order
        .iter()
        .map(|&i| std::mem::take(&mut users[i as usize]))
        .collect();
    Ok(Fitted {
        handles,
        shards,
        users,
        svd,
        nonzeros,
        columns,
        users_with_views,
        projection,
    })
}

/// Receives each encoded artifact (name, bytes) as soon as it is made, from a thread of
/// the training run.
pub type Sink<'a> = &'a (dyn Fn(String, Vec<u8>) + Sync);

/// Trains a model from `cfg.data`; `version` names it.
pub fn train(cfg: &TrainConfig, version: &str) -> Result<Trained, TrainError> {
    let handed = std::sync::Mutex::new(Vec::new());
    let mut trained = train_handing_over(cfg, version, &|name, bytes| {
        handed.lock().expect("no holder panics").push((name, bytes));
    })?;
    let mut artifacts = handed.into_inner().expect("no holder panics");
    artifacts.append(&mut trained.artifacts);
    trained.artifacts = artifacts;
    Ok(trained)
}

/// [`train`], handing the user tables, indexes, projection and course table to `sink` as
/// soon as they are encoded, in the manifest's order, so that they can be written while
/// the model is measured (the quality figures belong in the manifest and the report,
/// which come last). The returned artifacts are the rest: the report.
pub fn train_handing_over(
    cfg: &TrainConfig,
    version: &str,
    sink: Sink<'_>,
) -> Result<Trained, TrainError> {
    let mut stages = Stages::new();
    let ds = stages.run("read", || ingest::read_dir(&cfg.data))?;
    let refits = cfg.evaluate == Evaluate::Refit;
    // A refit's plan is drawn first, for the refit to start from; a fold-in's is drawn
    // beside the fit, which it is needed after.
    let refit_plan = refits.then(|| holdout_plan(&ds, cfg));
    std::thread::scope(|scope| {
        // A hold-out refit needs only the data: it runs beside the model's own fit and
        // measures instead of after them, when the data is small enough for two fits to
        // share the memory (above, it runs afterwards).
        let refit = refit_plan
            .as_ref()
            .and_then(|plan| plan.as_ref().ok())
            .filter(|_| small(&ds))
            .map(|plan| {
                let ds = &ds;
                scope.spawn(move || {
                    let start = Instant::now();
                    let measured = holdout_recall(ds, cfg, plan);
                    (measured, start.elapsed().as_secs_f64())
                })
            });
        // A fold-in's users' rows need only the data too: they are gathered on the same
        // thread (at 10k users 8 ms, which had been on the critical path after the fit).
        let drawing = (!refits).then(|| {
            scope.spawn(|| {
                let plan = holdout_plan(&ds, cfg);
                let rows = plan
                    .as_ref()
                    .map_or_else(|_| Vec::new(), |plan| holdout_rows(&ds, cfg, plan));
                (plan, rows)
            })
        });
        let fitted = fit(&ds, cfg, &FastSet::default(), &mut stages)?;
        let drawn;
        let (holdout, folds) = match (drawing, &refit_plan) {
            (Some(drawing), _) => {
                drawn = drawing.join().expect("drawing the hold-out plan panicked");
                (&drawn.0, &drawn.1[..])
            }
            (None, Some(plan)) => (plan, &[][..]),
            (None, None) => unreachable!("a plan is drawn one way or the other"),
        };
        finish(
            &ds, cfg, version, fitted, stages, holdout, folds, refit, sink,
        )
    })
}

/// The hold-out measure's thread: its result and seconds.
type Refit<'scope> = std::thread::ScopedJoinHandle<'scope, (Result<(f64, f64), TrainError>, f64)>;

/// Measures, encodes and describes the model `fitted` from `ds`; `refit` is the hold-out
/// measure running beside it, if it is (else it runs here, or `holdout` says why not);
/// `folds` are a fold-in measure's users' rows ([`holdout_rows`]).
/// The artifacts are encoded into `sink` on a thread beside the measures.
#[allow(clippy::too_many_arguments)]
fn finish(
    ds: &Dataset,
    cfg: &TrainConfig,
    version: &str,
    fitted: Fitted,
    mut stages: Stages,
    holdout: &Result<eval::HoldoutPlan, String>,
    folds: &[(u64, Vec<Entry>)],
    refit: Option<Refit<'_>>,
    sink: Sink<'_>,
) -> Result<Trained, TrainError> {
    let users_in_model = fitted.users.len();
    let hnsw = cfg.hnsw_for(users_in_model);
    let point_handles = fitted.point_handles();
    let tags = ds.tags.names.clone();
    let refits = cfg.evaluate == Evaluate::Refit;
    let (recall, recall_sample, mut quality, folded, pictures) = std::thread::scope(|scope| {
        // Encoding reads the model as the measures do, and its artifacts do not depend
        // on them: it runs beside them (at 10k users it and the artifacts' writing took
        // 0.08 s after them).
        let encoding = scope.spawn(|| {
            let start = Instant::now();
            let encoded = encode_artifacts(ds, &fitted, &tags, sink);
            (encoded, start.elapsed().as_secs_f64())
        });
        let measured = stages.run("sample", || {
            Measured::of_config(&fitted.shards, &point_handles, cfg)
        });
        // The report's pictures are drawn beside the measures (on one thread: they are
        // the smallest of them), which leave a core idle for part of their time.
        let similarities = measured.similarities(cfg.eval_sample);
        let picturing = scope.spawn(|| {
            let start = Instant::now();
            let pictures = Pictures::of(
                &fitted.shards,
                |row| fitted.users[row as usize].as_user(),
                &fitted.svd.singular_values,
                similarities,
            );
            (pictures, start.elapsed().as_secs_f64())
        });
        let recall = stages.run("recall", || {
            measured.recall(&fitted.shards, cfg.recall_sample, cfg.threads)
        });
        let recall_sample = measured.prefix(cfg.recall_sample);
        let quality = evaluate(cfg, &fitted, &point_handles, &measured, recall, &mut stages);
        let folded = match holdout {
            Ok(plan) if !refits => {
                Some(stages.run("holdout", || holdout_folded(cfg, plan, folds, &fitted)))
            }
            _ => None,
        };
        let (pictures, seconds) = picturing.join().expect("drawing the pictures panicked");
        stages.record_beside("pictures", seconds);
        let (encoded, seconds) = encoding.join().expect("encoding the artifacts panicked");
        stages.record_beside("encode", seconds);
        encoded.map(|()| (recall, recall_sample, quality, folded, pictures))
    })?;

    let Fitted {
        handles,
        shards,
        users,
        svd,
        nonzeros,
        columns,
        users_with_views,
        projection,
    } = fitted;
    let shard_users: Vec<usize> = shards.shards().iter().map(|s| s.len()).collect();
    // Freed on a thread of their own, while the summary and report are written (at 10k
    // users freeing them took 4 ms of the run's last, one-thread part).
    std::thread::spawn(move || drop((users, shards, projection)));
    match holdout {
        Ok(plan) => {
            let (r, chance) = match (folded, refit) {
                (Some(measured), _) => measured,
                (None, Some(refit)) => {
                    let (measured, seconds) = refit.join().expect("the hold-out measure panicked");
                    stages.record_beside("holdout", seconds);
                    measured?
                }
                (None, None) => stages.run("holdout", || holdout_recall(ds, cfg, plan))?,
            };
            quality.holdout_method = Some(if refits {
                HoldoutMethod::Refit
            } else {
                HoldoutMethod::FoldIn
            });
            quality.holdout_recall_at_10 = Some(r);
            quality.holdout_chance = Some(chance);
            quality.holdout_users = plan.users.len();
        }
        Err(why) => quality.skipped.push(why.clone()),
    }

    let summary = RunSummary {
        files: ds.reports.clone(),
        users_seen: handles.len(),
        users_with_views,
        users_in_model,
        shard_users: shard_users.clone(),
        users_without_signal: handles.len() - users_in_model,
        tags: ds.tags.len(),
        columns,
        nonzeros,
        rank: svd.singular_values.len(),
        explained_variance: svd.explained_variance,
        singular_values: svd.singular_values.iter().take(10).copied().collect(),
        recall_at_10: recall,
        recall_sample,
        quality,
        stages: stages.into_times(),
        peak_rss_mib: peak_rss_mib(),
        config: TrainConfig {
            // The parameters the index was built with.
            hnsw: hnsw.clone(),
            ..cfg.clone()
        },
    };
    let created_at = kindred_core::registry::now_rfc3339();
    let html = pictures.render(version, &created_at, &summary, &tags);
    let artifacts = vec![(REPORT.to_owned(), html.into_bytes())];
    let shard_entries =
        manifest::entries(&shard_users.iter().map(|&n| n as u64).collect::<Vec<_>>());
    let manifest = Manifest {
        format_version: Manifest::format_for(&shard_entries),
        version: version.to_owned(),
        created_at,
        users: users_in_model as u64,
        tags: ds.tags.len() as u64,
        dimensions: svd.singular_values.len() as u64,
        explained_variance: svd.explained_variance,
        recall_at_10: recall,
        hnsw,
        artifacts: Vec::new(),
        training: serde_json::to_value(&summary).unwrap_or_default(),
        shards: shard_entries,
        update: None,
    };
    Ok(Trained {
        manifest,
        artifacts,
        summary,
    })
}

/// Encodes each shard's user table and index, then the projection and the course
/// table, into `sink`.
fn encode_artifacts(
    ds: &Dataset,
    fitted: &Fitted,
    tags: &[String],
    sink: Sink<'_>,
) -> Result<(), kindred_core::Error> {
    let sharded = fitted.shards.shards().len() > 1;
    for s in fitted.shards.shards() {
        let table = UserTable {
            tags: tags.to_vec(),
            users: Users::from_users(
                fitted.users[s.offset as usize..s.offset as usize + s.len()]
                    .iter()
                    .map(UserSummary::as_user),
            )?,
        };
        let (users_name, index_name) = manifest::artifact_names(s.id, sharded);
        sink(users_name.clone(), encode(&users_name, &table)?);
        sink(index_name.clone(), encode(&index_name, &s.index)?);
    }
    sink(
        PROJECTION.to_owned(),
        encode(PROJECTION, &fitted.projection)?,
    );
    sink(COURSES.to_owned(), encode(COURSES, &course_table(ds))?);
    Ok(())
}

/// The index's recall and, on generated data, cohort precision: over `measured`'s sample
/// of the users (`handles`, by point), and the drifted and stable users' precision apart.
fn evaluate(
    cfg: &TrainConfig,
    fitted: &Fitted,
    handles: &[u64],
    measured: &Measured,
    recall: f64,
    stages: &mut Stages,
) -> Quality {
    let mut q = Quality {
        index_recall_at_10: recall,
        ..Default::default()
    };
    let truth_path = cfg.data.join("ground_truth.csv");
    if truth_path.is_file() {
        match kindred_datagen::read_ground_truth(&truth_path) {
            Ok(truth) => {
                let cohort_of: HashMap<u64, u32> =
                    truth.iter().map(|(h, t)| (*h, t.primary_cohort)).collect();
                let (p, chance) = stages.run("cohorts", || {
                    measured.cohort_precision(handles, &cohort_of, cfg.eval_sample)
                });
                q.cohort_precision_at_10 = Some(p);
                q.cohort_chance = Some(chance);
                // (A user missing from the ground truth counts as stable.)
                let drifted = |row: &u32| {
                    truth
                        .get(&handles[*row as usize])
                        .is_some_and(|t| t.drifted_from.is_some())
                };
                if truth.values().any(|t| t.drifted_from.is_some()) {
                    let (all, stable): (Vec<u32>, Vec<u32>) =
                        (0..handles.len() as u32).partition(drifted);
                    let precision = |rows: &[u32]| {
                        eval::cohort_precision(
                            &fitted.shards,
                            handles,
                            &cohort_of,
                            rows,
                            10,
                            cfg.threads,
                        )
                        .0
                    };
                    q.cohort_precision_drifted = Some(precision(&all));
                    q.cohort_precision_stable = Some(precision(&stable));
                }
            }
            Err(e) => q.skipped.push(format!("cohort precision: {e:#}")),
        }
    }
    q
}

/// True when `ds` has at most [`AUTO_HOLDOUT_MAX_USERS`] users (counting them took 6 ms
/// at 10k users: it is done where it is needed, for a fold-in beside the fit).
fn small(ds: &Dataset) -> bool {
    ds.users_up_to(AUTO_HOLDOUT_MAX_USERS).is_some()
}

/// The hold-out measure's plan when `cfg.evaluate` asks for it, else why it is skipped.
fn holdout_plan(ds: &Dataset, cfg: &TrainConfig) -> Result<eval::HoldoutPlan, String> {
    match cfg.evaluate {
        Evaluate::Never => Err("hold-out recall: not asked for (--evaluate never)".to_owned()),
        Evaluate::Auto if !small(ds) => Err(format!(
            "hold-out recall: the data has more than the automatic limit of {AUTO_HOLDOUT_MAX_USERS} users (use --evaluate always or refit)"
        )),
        Evaluate::Auto | Evaluate::Always | Evaluate::Refit => Ok(eval::HoldoutPlan::draw(
            ds,
            cfg.eval_sample,
            HOLDOUT_SHARE,
            cfg.hnsw.seed,
        )),
    }
}

/// Hold-out recall@10 and its chance level: `plan`'s tags hidden, the embeddings fitted
/// again, and each hidden user's neighbours found by an exact scan of the refit's
/// embeddings (no index is built for a measure, which would cost as much as the
/// model's own index).
fn holdout_recall(
    ds: &Dataset,
    cfg: &TrainConfig,
    plan: &eval::HoldoutPlan,
) -> Result<(f64, f64), TrainError> {
    let Embedded { points, users, .. } = embed(ds, cfg, &plan.hidden, &mut Stages::quiet())?;
    let handles: Vec<u64> = users.iter().map(|u| u.handle).collect();
    let dims = points.first().map_or(0, |p| p.0.len());
    let flat = row_major(&points);
    Ok(eval::holdout_recall(plan, &handles, 10, |point, k| {
        let query = &points[point as usize].0;
        exact_flat(&flat, dims, query, k, Some(point))
    }))
}

/// Hold-out recall@10 and its chance level without a second fit: each of `plan`'s users
/// is left out of its own answers, its rows without the hidden tags are folded into the
/// model as `kindred-batch update` folds a user in (the stored projection, then one
/// smoothing step towards its nearest users), and its neighbours are searched as the
/// model is served, all of them at once ([`holdout_answers`]): exactly up to
/// [`EXACT_SCAN_MAX_USERS`] users (at 10k users a third of the time of their index
/// searches), through the indexes above.
/// The model was trained on the user's whole rows, so its basis and its neighbours'
/// smoothing saw the hidden tags; a refit ([`Evaluate::Refit`]) hides them from both.
fn holdout_folded(
    cfg: &TrainConfig,
    plan: &eval::HoldoutPlan,
    folds: &[(u64, Vec<Entry>)],
    fitted: &Fitted,
) -> (f64, f64) {
    const K: usize = 10;
    let handles = fitted.point_handles();
    let queries = fold_queries(folds, &handles);
    let found = holdout_answers(fitted, &queries, K, cfg.threads, EXACT_SCAN_MAX_USERS);
    eval::holdout_recall(plan, &handles, K, |point, _| {
        found.get(&point).cloned().unwrap_or_default()
    })
}

/// Each of `plan`'s users (by handle) with its rows without the hidden tags, as a
/// profile's entries.
fn holdout_rows(
    ds: &Dataset,
    cfg: &TrainConfig,
    plan: &eval::HoldoutPlan,
) -> Vec<(u64, Vec<Entry>)> {
    let chosen: FastSet<u64> = plan.users.iter().copied().collect();
    let gathered = gather_at(&ds.of_users(&chosen), cfg, &plan.hidden, ds.newest_day());
    let rows = entries_by_row(
        &gathered.blocks,
        gathered.handles.len(),
        ds.tags.len() as u32,
    );
    gathered.handles.into_iter().zip(rows).collect()
}

/// The rows of `folds` whose users are in the model, by their point (`handles[point]`).
fn fold_queries<'a>(folds: &'a [(u64, Vec<Entry>)], handles: &[u64]) -> Vec<(u32, &'a [Entry])> {
    let point_of: FastMap<u64, u32> = handles
        .iter()
        .enumerate()
        .map(|(p, &h)| (h, p as u32))
        .collect();
    folds
        .iter()
        .filter_map(|(h, entries)| Some((*point_of.get(h)?, entries.as_slice())))
        .collect()
}

/// [`holdout_folded`]'s answers: every user folded in, then all of them searched at
/// once as the model is served ([`index::answers_scanned_up_to`]: exactly up to `scanned`
/// users, through the indexes above), first for their smoothing neighbours, then for
/// their `k` nearest.
fn holdout_answers(
    fitted: &Fitted,
    queries: &[(u32, &[Entry])],
    k: usize,
    threads: usize,
    scanned: usize,
) -> FastMap<u32, Vec<Neighbour>> {
    let (shards, smoothing) = (&fitted.shards, fitted.projection.smoothing);
    let search = |embeddings: &[Embedding], k: usize| {
        let asked: Vec<(&[f32], Option<u32>)> = embeddings
            .iter()
            .zip(queries)
            .map(|(e, &(point, _))| (&e.0[..], Some(point)))
            .collect();
        index::answers_scanned_up_to(shards, &asked, k, threads, scanned)
    };
    let folded: Vec<Embedding> = queries
        .iter()
        .map(|&(_, entries)| fitted.projection.fold_entries(entries).embedding)
        .collect();
    // As `kindred_core::query::smoothed_among` smooths one profile.
    let smoothed: Vec<Embedding> = if smoothing.moves() {
        let near = search(&folded, smoothing.neighbours as usize);
        folded
            .iter()
            .zip(&near)
            .map(|(f, near)| smoothed_towards(shards, smoothing, f, near))
            .collect()
    } else {
        folded
    };
    let answers = search(&smoothed, k);
    queries
        .iter()
        .map(|&(point, _)| point)
        .zip(answers)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_config;

    #[test]
    fn the_hold_out_users_scanned_get_the_answers_their_index_searches_find() {
        // Given a model of 1,500 generated users and its hold-out plan,
        let data = tempfile::tempdir().unwrap();
        let generated = kindred_datagen::GenConfig {
            users: 1500,
            seed: 4,
            ..Default::default()
        };
        kindred_datagen::generate(&generated, data.path()).unwrap();
        let ds = ingest::read_dir(data.path()).unwrap();
        let cfg = default_config(data.path().to_path_buf());
        let plan = eval::HoldoutPlan::draw(&ds, 300, HOLDOUT_SHARE, 1);
        let fitted = fit(&ds, &cfg, &FastSet::default(), &mut Stages::quiet()).unwrap();
        let folds = holdout_rows(&ds, &cfg, &plan);
        let queries = fold_queries(&folds, &fitted.point_handles());
        assert!(queries.len() > 200, "{} users folded in", queries.len());
        // when they are folded in and searched exactly, and through the index,
        let scanned = holdout_answers(&fitted, &queries, 10, 2, usize::MAX);
        let searched = holdout_answers(&fitted, &queries, 10, 2, 0);
        // then each gets 10 answers, never itself, nearest first,
        let mut same = 0;
        for &(point, _) in &queries {
            let (a, b) = (&scanned[&point], &searched[&point]);
            assert_eq!(a.len(), 10);
            assert!(a.iter().all(|n| n.row != point), "{point} answers itself");
            assert!(a.windows(2).all(|w| w[0].similarity >= w[1].similarity));
            same += a
                .iter()
                .filter(|n| b.iter().any(|m| m.row == n.row))
                .count();
        }
        // and the index's answers are nearly all of them (it finds 99% of exact ones).
        let share = same as f64 / (10 * queries.len()) as f64;
        assert!(share > 0.95, "{share} of the answers agree");
    }
}
