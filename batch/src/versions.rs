//! The text `kindred-batch versions` prints: one row per version, then the rollbacks.

use std::fmt::Write;

use kindred_core::registry::Pointer;
use kindred_core::versions::{Rollback, Version, VersionState};

use crate::summary::HoldoutMethod;

/// A table of `versions` (oldest first) with date, users, quality and size, the current
/// and previous ones marked, followed by the rollback records.
pub fn render(versions: &[Version], pointer: Option<&Pointer>, history: &[Rollback]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<32} {:<20} {:>9} {:>9} {:>9} {:>9} {:>9}  state",
        "version", "created", "users", "recall@10", "cohort", "hold-out", "MiB"
    );
    for v in versions {
        let state = match (&v.state, v.current, v.previous) {
            (_, true, _) => "current".to_owned(),
            (VersionState::Complete(_), _, true) => "previous".to_owned(),
            (VersionState::Complete(_), _, _) => String::new(),
            (VersionState::Incomplete, ..) => "incomplete (no manifest)".to_owned(),
            (VersionState::Unreadable(why), ..) => format!("unreadable manifest: {why}"),
        };
        let Some(m) = v.manifest() else {
            let _ = writeln!(out, "{:<32} {:<20} {:>59}  {state}", v.name, "-", "");
            continue;
        };
        let quality = |name: &str| {
            m.training["quality"][name]
                .as_f64()
                .map_or_else(|| "-".to_owned(), |x| format!("{x:.3}"))
        };
        // A hold-out figure from folding users in is marked: it runs a little below a
        // refit's (manifests from before the fold-in measure hold refits).
        let folded_in =
            m.training["quality"]["holdout_method"].as_str() == Some(HoldoutMethod::FoldIn.name());
        let holdout = quality("holdout_recall_at_10");
        let holdout = if folded_in {
            format!("{holdout}f")
        } else {
            holdout
        };
        let mib = m.artifacts.iter().map(|a| a.bytes).sum::<u64>() as f64 / (1 << 20) as f64;
        // An update shows the quality of the training it came from, and says so.
        let state = match &m.update {
            None => state,
            Some(u) => {
                let advice = if u.retrain_advised {
                    ", retrain advised"
                } else {
                    ""
                };
                let kind = format!(
                    "update of {} ({} users folded in{advice})",
                    u.trained, u.folded_users
                );
                [state, kind].join(" ").trim().to_owned()
            }
        };
        let _ = writeln!(
            out,
            "{:<32} {:<20} {:>9} {:>9.3} {:>9} {:>9} {:>9.1}  {state}",
            v.name,
            m.created_at,
            m.users,
            m.recall_at_10,
            quality("cohort_precision_at_10"),
            holdout,
            mib,
        );
    }
    match pointer {
        None => out.push_str("no version is current: nothing was published\n"),
        Some(p) if !versions.iter().any(|v| v.current) => {
            let _ = writeln!(out, "the pointer names {}, which is missing", p.version);
        }
        Some(_) => {}
    }
    for r in history {
        let _ = writeln!(
            out,
            "rollback at {}: {} -> {} ({})",
            r.at, r.from, r.to, r.reason
        );
    }
    out
}
