//! The pictures of the HTML model report (`report.html`), gathered from a fit.

use std::collections::HashMap;

use kindred_core::shard::Shards;
use kindred_core::users::{Feature, User};

use crate::index;
use crate::summary::RunSummary;

/// Users drawn on the report's map.
const MAP_USERS: usize = 3000;

/// What the HTML model report plots, gathered from a fit.
pub struct Pictures {
    singular_values: Vec<f64>,
    similarities: Vec<f32>,
    map: Vec<crate::model_report::MapPoint>,
}

impl Pictures {
    /// Gathers the pictures of a model: `user(i)` is row `i` of `shards`, and
    /// `similarities` those of sampled users to their neighbours ([`Measured`]).
    ///
    /// [`Measured`]: crate::measured::Measured
    pub fn of<'u>(
        shards: &Shards,
        user: impl Fn(u32) -> User<'u>,
        singular_values: &[f64],
        similarities: Vec<f32>,
    ) -> Pictures {
        let n = shards.len();
        // Components 2 and 3: the first mostly says how much of the popular tags a
        // user has (the matrix is not centred), the next two separate tastes.
        let (cx, cy) = if singular_values.len() >= 3 {
            (1, 2)
        } else {
            (0, 1)
        };
        // Colour by tag: the 10 tags that are most often a sampled user's strongest
        // feature, and each user's strongest feature among those 10 (grey if none).
        let rows = index::sample_rows(n, MAP_USERS, 29);
        let by_weight = |row: u32| {
            let mut f: Vec<&Feature> = user(row).features.iter().collect();
            f.sort_by(|a, b| {
                let (wa, wb) = (a.weight, b.weight);
                wb.total_cmp(&wa)
            });
            f
        };
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for &row in &rows {
            if let Some(f) = by_weight(row).first() {
                *counts.entry(u32::from(f.tag)).or_default() += 1;
            }
        }
        let mut common: Vec<(usize, u32)> = counts.into_iter().map(|(t, c)| (c, t)).collect();
        common.sort_unstable_by(|a, b| b.cmp(a));
        let common: Vec<u32> = common.iter().take(10).map(|&(_, t)| t).collect();
        let map = rows
            .into_iter()
            .filter_map(|row| {
                let e = shards.embedding(row);
                let group = by_weight(row)
                    .iter()
                    .map(|f| u32::from(f.tag))
                    .find(|t| common.contains(t))
                    .unwrap_or(crate::model_report::UNGROUPED);
                Some(crate::model_report::MapPoint {
                    x: *e.get(cx)?,
                    y: *e.get(cy)?,
                    group,
                    handle: user(row).handle,
                })
            })
            .collect();
        Pictures {
            singular_values: singular_values.to_vec(),
            similarities,
            map,
        }
    }

    /// The HTML model report.
    pub fn render(
        &self,
        version: &str,
        created_at: &str,
        s: &RunSummary,
        tags: &[String],
    ) -> String {
        let q = &s.quality;
        let opt =
            |v: Option<f64>| v.map_or_else(|| "not measured".to_owned(), |v| format!("{v:.3}"));
        let figures = vec![
            (
                "method".to_owned(),
                format!("{:?}", s.config.method).to_lowercase(),
            ),
            (
                "index recall@10".to_owned(),
                format!("{:.4}", s.recall_at_10),
            ),
            (
                "cohort precision@10 (chance)".to_owned(),
                format!(
                    "{} ({})",
                    opt(q.cohort_precision_at_10),
                    opt(q.cohort_chance)
                ),
            ),
            (
                "hold-out recall@10 (chance)".to_owned(),
                format!(
                    "{} ({}){}",
                    opt(q.holdout_recall_at_10),
                    opt(q.holdout_chance),
                    q.holdout_suffix()
                ),
            ),
            ("matrix non-zeros".to_owned(), s.nonzeros.to_string()),
            (
                "training time".to_owned(),
                format!("{:.1} s", crate::summary::wall_seconds(&s.stages)),
            ),
        ];
        let notes = vec![
            "The map places a sample of users by their second and third embedding components, \
             coloured by the strongest of their features among the ten tags that most often \
             lead a user's features (grey: none of them)."
                .to_owned(),
            crate::report::render(s, None)
                .lines()
                .filter(|l| !l.trim_start().starts_with("published:"))
                .collect::<Vec<_>>()
                .join("\n"),
        ];
        crate::model_report::render(&crate::model_report::ReportInput {
            version,
            created_at,
            users: s.users_in_model,
            tags: s.tags,
            dimensions: s.rank,
            explained_variance: s.explained_variance,
            singular_values: &self.singular_values,
            neighbour_similarities: &self.similarities,
            map: &self.map,
            groups: tags,
            figures: &figures,
            notes: &notes,
        })
    }
}
