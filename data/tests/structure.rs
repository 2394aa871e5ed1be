//! The generated assessments against the real file, by both measures of
//! `kindred_datagen::structure`: the README's claim that assessments generated
//! at the default shares (0.6-0.9) and at 0.7-1.0 show less structure than the
//! real file's, while the probe still sees more than the real file's in fully
//! focused users (share 1.0).

use std::path::Path;

use kindred_datagen::structure::{UserTags, measure};
use kindred_datagen::{ASSESSMENTS_FILE, GenConfig, generate};

/// The challenge's real assessments, in the repository.
const REAL_ASSESSMENTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/pluralsight/user_assessment_scores.csv"
);

/// Users compared from each file: both measures grow with the number of users.
const USERS: usize = 3_000;

/// Both measures of `path`'s assessments, on [`USERS`] of its users.
fn measures(path: &Path) -> [f64; 2] {
    let users = UserTags::read_csv(path, "assessment_tag").unwrap();
    assert!(
        users.users.len() >= USERS,
        "{} has too few users",
        path.display()
    );
    let s = measure(&users.sample(USERS, 1), 5, 1);
    [s.excess_information(), s.held_out_gain]
}

/// Both measures of the assessments generated with `cfg` (10k users).
fn generated(cfg: GenConfig) -> [f64; 2] {
    let dir = tempfile::tempdir().unwrap();
    generate(&cfg, dir.path()).unwrap();
    measures(&dir.path().join(ASSESSMENTS_FILE))
}

#[test]
fn given_the_real_assessments_then_generated_ones_at_the_documented_shares_carry_less_structure() {
    let real_path = Path::new(REAL_ASSESSMENTS);
    // Given the real file
    let whole = measure(
        &UserTags::read_csv(real_path, "assessment_tag")
            .unwrap_or_else(|e| panic!("cannot read {REAL_ASSESSMENTS}: {e:#}")),
        1,
        1,
    );
    assert!(
        (3_000..3_200).contains(&whole.users) && whole.tags == 54,
        "not the challenge file: {whole:?}"
    );
    let real = measures(real_path);

    // When the defaults, shares 0.7-1.0 and fully focused users are generated on
    // the real course tags (the default catalogue, as in the README's data sets)
    let on_real_tags = GenConfig::default();
    let defaults = generated(on_real_tags.clone());
    let share_07 = generated(GenConfig {
        primary_share_min: 0.7,
        primary_share_max: 1.0,
        ..on_real_tags.clone()
    });
    let focused = generated(GenConfig {
        primary_share_min: 1.0,
        primary_share_max: 1.0,
        ..on_real_tags
    });

    // Then, by both measures, both documented settings show less structure than
    // the real file, and fully focused users more.
    for (m, name) in ["excess information", "held-out gain"].iter().enumerate() {
        assert!(
            defaults[m] < share_07[m] && share_07[m] < real[m] && real[m] < focused[m],
            "{name}: defaults {:.3}, share 0.7-1.0 {:.3}, real {:.3}, share 1.0 {:.3}",
            defaults[m],
            share_07[m],
            real[m],
            focused[m]
        );
    }
}
