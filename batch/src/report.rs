//! The human-readable run summary printed after training.

use std::fmt::Write;

use crate::config::Method;
use crate::summary::{RunSummary, StageTime, wall_seconds};
use crate::update::Updated;

/// Formats the run summary for a terminal.
pub fn render(s: &RunSummary, published: Option<(&str, &str)>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Kindred training run");
    let _ = writeln!(out, "  input files:");
    for f in &s.files {
        if !f.present {
            let _ = writeln!(out, "    {:<28} absent (optional)", f.file);
            continue;
        }
        let _ = writeln!(
            out,
            "    {:<28} {:>10} rows read, {:>10} used, {:>8} skipped",
            f.file,
            f.rows,
            f.used,
            f.skipped_total()
        );
        for (reason, n) in &f.skipped {
            let _ = writeln!(
                out,
                "      skipped {:<26} {n:>8}",
                format!("{reason:?}").to_lowercase()
            );
        }
        for (quirk, n) in &f.quirks {
            let _ = writeln!(out, "      {quirk:<34} {n:>8}");
        }
        for e in &f.examples {
            let _ = writeln!(out, "      e.g. {e}");
        }
    }
    let _ = writeln!(
        out,
        "  users: {} seen, {} with views, {} in the model, {} without usable signal",
        s.users_seen, s.users_with_views, s.users_in_model, s.users_without_signal
    );
    let mut cols: Vec<_> = s.columns.iter().collect();
    cols.sort();
    let cols: Vec<String> = cols.iter().map(|(b, n)| format!("{b} {n}")).collect();
    let _ = writeln!(
        out,
        "  tags: {} in the vocabulary; matrix columns: {}; non-zeros: {}",
        s.tags,
        cols.join(", "),
        s.nonzeros
    );
    let _ = writeln!(
        out,
        "  svd: rank {}, explained variance {:.3}",
        s.rank, s.explained_variance
    );
    let _ = writeln!(
        out,
        "  index: recall@10 {:.4} against exact search on {} users; {} shard(s) of {}",
        s.recall_at_10,
        s.recall_sample,
        s.shard_users.len(),
        shard_sizes(&s.shard_users)
    );
    let q = &s.quality;
    let opt = |v: Option<f64>| v.map_or_else(|| "not measured".to_owned(), |v| format!("{v:.3}"));
    let _ = writeln!(
        out,
        "  quality: cohort precision@10 {} (chance {}); hold-out recall@10 {} (chance {}, {} users{})",
        opt(q.cohort_precision_at_10),
        opt(q.cohort_chance),
        opt(q.holdout_recall_at_10),
        opt(q.holdout_chance),
        q.holdout_users,
        q.holdout_suffix()
    );
    for why in &q.skipped {
        let _ = writeln!(out, "    skipped {why}");
    }
    let total = wall_seconds(&s.stages);
    let stages: Vec<String> = s
        .stages
        .iter()
        .map(|t| match t.beside {
            false => format!("{} {:.2}s", t.stage, t.seconds),
            true => format!("{} {:.2}s on its own thread", t.stage, t.seconds),
        })
        .collect();
    let _ = writeln!(out, "  stages: {} (total {total:.2}s)", stages.join(", "));
    if let Some(rss) = s.peak_rss_mib {
        let _ = writeln!(out, "  peak memory: {rss:.0} MiB resident");
    }
    match published {
        Some((version, store)) => {
            let _ = writeln!(out, "  published: version {version} to {store}");
        }
        None => {
            let _ = writeln!(out, "  published: nothing (dry run)");
        }
    }
    out
}

/// "12,345 users" for one shard, "12,001 to 12,400 users" for several.
fn shard_sizes(sizes: &[usize]) -> String {
    match (sizes.iter().min(), sizes.iter().max()) {
        (Some(a), Some(b)) if a == b => format!("{a} users"),
        (Some(a), Some(b)) => format!("{a} to {b} users"),
        _ => "no users".to_owned(),
    }
}

/// A Markdown table comparing methods trained on the same data (`kindred-batch eval`).
pub fn comparison(data: &std::path::Path, rows: &[(Method, RunSummary)]) -> String {
    let mut out = String::new();
    let opt = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"));
    let _ = writeln!(out, "# Kindred evaluation of {}\n", data.display());
    if let Some((_, s)) = rows.first() {
        let _ = writeln!(out, "{} users sampled per measure.\n", s.config.eval_sample);
    }
    let _ = writeln!(
        out,
        "| method | users | cohort precision@10 | chance | hold-out recall@10 | chance | index recall@10 | train s |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for (method, s) in rows {
        let q = &s.quality;
        let secs = wall_seconds(&s.stages);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {:.4} | {secs:.1} |",
            format!("{method:?}").to_lowercase(),
            s.users_in_model,
            opt(q.cohort_precision_at_10),
            opt(q.cohort_chance),
            opt(q.holdout_recall_at_10),
            opt(q.holdout_chance),
            s.recall_at_10,
        );
    }
    let _ = writeln!(
        out,
        "\nCohort precision@10: share of a user's 10 neighbours from the same planted cohort \
         (needs ground_truth.csv). Hold-out recall@10: 20% of each sampled user's tags hidden \
         before training; share of them carried by at least one of the 10 neighbours. Chance \
         levels: same measures for random users. Index recall@10: HNSW against exact search."
    );
    if rows
        .iter()
        .any(|(_, s)| s.quality.cohort_precision_drifted.is_some())
    {
        let _ = writeln!(
            out,
            "\n## Taste drift\n\nCohort precision@10 against each user's current cohort: every user whose taste drifted, and every user whose taste did not.\n"
        );
        let _ = writeln!(out, "| method | half-life days | drifted | stable |");
        let _ = writeln!(out, "|---|---|---|---|");
        for (method, s) in rows {
            let q = &s.quality;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                format!("{method:?}").to_lowercase(),
                s.config
                    .half_life_days
                    .map_or_else(|| "none".to_owned(), |h| h.to_string()),
                opt(q.cohort_precision_drifted),
                opt(q.cohort_precision_stable),
            );
        }
    }
    out
}

/// The course recommendation comparison of `kindred-batch eval` as Markdown: one row per
/// method with recall@10, NDCG@10 and both as a multiple of popularity's.
pub fn course_comparison(rows: &[(&str, crate::course_eval::CourseScores)]) -> String {
    let mut out = String::new();
    let users = rows.first().map_or(0, |r| r.1.users);
    let _ = writeln!(
        out,
        "\n## Course recommendations\n\nHold-out: the most recent {:.0}% of the courses of {users} users hidden, the model trained again without them.\n",
        crate::course_eval::HIDDEN_SHARE * 100.0
    );
    let _ = writeln!(
        out,
        "| method | course recall@10 | x popularity | NDCG@10 | x popularity |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    let base = rows.iter().find(|r| r.0 == "popularity").map(|r| r.1);
    let times = |v: f64, b: Option<f64>| match b {
        Some(b) if b > 0.0 => format!("{:.2}", v / b),
        _ => "n/a".to_owned(),
    };
    for (name, s) in rows {
        let _ = writeln!(
            out,
            "| {name} | {:.4} | {} | {:.4} | {} |",
            s.recall,
            times(s.recall, base.map(|b| b.recall)),
            s.ndcg,
            times(s.ndcg, base.map(|b| b.ndcg)),
        );
    }
    out
}

/// The "Fresh users between retrains" section of `kindred-batch eval --update-users`.
pub fn update_comparison(q: &crate::update_eval::UpdateQuality) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## Fresh users between retrains\n\n{} new users and {} changed users (their latest {:.0}% of views held back) folded into a model trained without them, against a full training on all the data.\n",
        q.new,
        q.changed,
        kindred_datagen::split::HELD_BACK_SHARE * 100.0
    );
    let _ = writeln!(out, "| measure | value |");
    let _ = writeln!(out, "|---|---|");
    let _ = writeln!(
        out,
        "| neighbour overlap@10 with the full training, folded users | {:.3} |",
        q.overlap_folded
    );
    let _ = writeln!(
        out,
        "| neighbour overlap@10 with the full training, untouched users | {:.3} |",
        q.overlap_untouched
    );
    let _ = writeln!(
        out,
        "| the same before the update (base model against the full training) | {:.3} |",
        q.overlap_base_untouched
    );
    if let Some((updated, full, base)) = q.precision {
        let _ = writeln!(
            out,
            "| cohort precision@10 of folded users: updated / full training / changed users before | {updated:.3} / {full:.3} / {base:.3} |"
        );
    }
    let _ = writeln!(
        out,
        "| basis fit: folded rows / training rows | {:.3} / {:.3} |",
        q.basis_fit.0, q.basis_fit.1
    );
    let _ = writeln!(out, "| update wall time | {:.2} s |", q.update_seconds);
    out
}

/// The run's figures as one CloudWatch Embedded Metric Format line (namespace `Kindred`,
/// dimension `Service=kindred-batch`): total and per-stage seconds, users, skipped
/// rows, index recall@10 and, when measured, cohort precision@10 and hold-out
/// recall@10; the version as a property.
pub fn emf(s: &RunSummary, version: Option<&str>, now_millis: u64) -> String {
    let mut m = stage_metrics("TrainSeconds", &s.stages);
    m.push(("Users".into(), s.users_in_model.into(), "Count"));
    let skipped = s.files.iter().map(|f| f.skipped_total()).sum::<u64>();
    m.push(("SkippedRows".into(), skipped.into(), "Count"));
    m.push(("IndexRecallAt10".into(), s.recall_at_10.into(), "None"));
    if let Some(p) = s.quality.cohort_precision_at_10 {
        m.push(("CohortPrecisionAt10".into(), p.into(), "None"));
    }
    if let Some(r) = s.quality.holdout_recall_at_10 {
        m.push(("HoldoutRecallAt10".into(), r.into(), "None"));
    }
    let properties = s
        .quality
        .holdout_measured_by()
        .map(|method| ("HoldoutMethod", method.name().to_owned()));
    emf_line(m, version, properties.into_iter().collect(), now_millis)
}

/// An update's figures as one EMF line, as [`emf`] does for training: total and
/// per-stage seconds, users folded (new, changed, skipped), skipped rows, the folded
/// share, the basis fit and whether a full training is advised (1 or 0).
pub fn update_emf(u: &Updated, now_millis: u64) -> String {
    let r = &u.record;
    let mut m = stage_metrics("UpdateSeconds", &u.stages);
    m.push(("Users".into(), u.published.manifest.users.into(), "Count"));
    m.push(("NewUsers".into(), r.new_users.into(), "Count"));
    m.push(("ChangedUsers".into(), r.changed_users.into(), "Count"));
    m.push(("SkippedUsers".into(), r.skipped_users.into(), "Count"));
    let skipped = u.files.iter().map(|f| f.skipped_total()).sum::<u64>();
    m.push(("SkippedRows".into(), skipped.into(), "Count"));
    m.push(("FoldedShare".into(), r.folded_share.into(), "None"));
    m.push(("BasisFit".into(), r.basis_fit.into(), "None"));
    m.push((
        "RetrainAdvised".into(),
        u8::from(r.retrain_advised).into(),
        "Count",
    ));
    emf_line(m, Some(&u.published.version), Vec::new(), now_millis)
}

/// The total seconds of `stages` as `total`, then one `<Stage>Seconds` metric each.
fn stage_metrics(
    total: &str,
    stages: &[StageTime],
) -> Vec<(String, serde_json::Value, &'static str)> {
    let mut m = vec![(total.to_owned(), wall_seconds(stages).into(), "Seconds")];
    for t in stages {
        // "index (all shards, summed)" becomes IndexAllShardsSummedSeconds.
        let name: String = t
            .stage
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(|w| w[..1].to_ascii_uppercase() + &w[1..])
            .collect();
        m.push((format!("{name}Seconds"), t.seconds.into(), "Seconds"));
    }
    m
}

/// One EMF document: the metrics, `Service=kindred-batch`, the version as a property.
fn emf_line(
    metrics: Vec<(String, serde_json::Value, &str)>,
    version: Option<&str>,
    properties: Vec<(&str, String)>,
    now_millis: u64,
) -> String {
    let mut doc = serde_json::Map::new();
    let mut names = Vec::new();
    for (name, value, unit) in metrics {
        names.push(serde_json::json!({ "Name": name, "Unit": unit }));
        doc.insert(name, value);
    }
    doc.insert("Service".into(), "kindred-batch".into());
    doc.insert("ModelVersion".into(), version.unwrap_or("none").into());
    for (name, value) in properties {
        doc.insert(name.into(), value.into());
    }
    doc.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": now_millis,
            "CloudWatchMetrics": [{
                "Namespace": "Kindred",
                "Dimensions": [["Service"]],
                "Metrics": names,
            }],
        }),
    );
    serde_json::Value::Object(doc).to_string()
}

/// What an update did, for the terminal: the version, the users folded in, the figures
/// that say when a full training is due, skipped rows and stage times.
pub fn render_update(u: &Updated, location: &str) -> String {
    let r = &u.record;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "published: version {} to {location} (updated from {}, trained as {})",
        u.published.version, r.previous, r.trained
    );
    let _ = writeln!(
        out,
        "  users folded in: {} new, {} changed, {} skipped (no row the model can use)",
        r.new_users, r.changed_users, r.skipped_users
    );
    let _ = writeln!(
        out,
        "  model: {} users, {} folded in since training ({:.2}%)",
        u.published.manifest.users,
        r.folded_users,
        r.folded_share * 100.0
    );
    let _ = writeln!(
        out,
        "  basis fit: {:.3} of the new rows kept, {:.3} of the training rows",
        r.basis_fit, r.trained_fit
    );
    let _ = writeln!(out, "  {}", r.advice);
    for f in &u.files {
        let skipped = f.skipped_total();
        if f.present {
            let _ = writeln!(
                out,
                "  {}: {} rows, {} used, {skipped} skipped",
                f.file, f.rows, f.used
            );
        }
    }
    let total = wall_seconds(&u.stages);
    let _ = writeln!(out, "  time: {total:.2} s");
    for t in &u.stages {
        let _ = writeln!(out, "    {:<22} {:>8.2} s", t.stage, t.seconds);
    }
    out
}
