//! Ingest and matrix tests on the hand-made `data/fixtures/quirks` data set.

use std::path::{Path, PathBuf};

use kindred_batch::ingest::{self, IngestError, SkipReason};
use kindred_batch::matrix::{BlockWeighting, Transform};
use kindred_batch::{assemble, config};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/fixtures/quirks")
}

fn report<'a>(ds: &'a ingest::Dataset, file: &str) -> &'a ingest::FileReport {
    ds.reports.iter().find(|r| r.file == file).unwrap()
}

#[test]
fn every_views_quirk_is_handled_and_counted() {
    // Given the quirks fixture, when it is read,
    let ds = ingest::read_dir(&fixture()).unwrap();
    let views = report(&ds, ingest::VIEWS);
    // then malformed rows are skipped and counted by reason,
    assert_eq!(views.rows, 14);
    assert_eq!(views.used, 9);
    assert_eq!(views.skipped[&SkipReason::Duplicate], 1);
    assert_eq!(views.skipped[&SkipReason::BadHandle], 1);
    assert_eq!(views.skipped[&SkipReason::BadSeconds], 1);
    assert_eq!(views.skipped[&SkipReason::NegativeSeconds], 1);
    assert_eq!(views.skipped[&SkipReason::WrongFieldCount], 1);
    // with file and line of the first few,
    assert_eq!(
        views.examples,
        vec![
            "user_course_views.csv:10: user_handle is not a non-negative integer",
            "user_course_views.csv:11: view_time_seconds is not an integer",
            "user_course_views.csv:12: view_time_seconds is negative",
            "user_course_views.csv:13: wrong number of fields",
        ]
    );
    // and the quirks that do not skip a row are counted too.
    assert_eq!(views.quirks["views_of_courses_without_tags"], 1);
    assert_eq!(views.quirks["views_of_courses_missing_from_course_tags"], 1);
    assert_eq!(views.quirks["zero_second_views"], 1);
}

#[test]
fn course_tags_quirks_are_counted_and_case_is_folded() {
    let ds = ingest::read_dir(&fixture()).unwrap();
    let tags = report(&ds, ingest::COURSE_TAGS);
    assert_eq!(tags.quirks["empty_tags"], 1);
    assert_eq!(tags.quirks["courses_without_tags"], 1);
    assert_eq!(tags.quirks["tags_with_upper_case_merged"], 1);
    assert_eq!(tags.quirks["quoted_fields_with_commas_or_quotes"], 1);
    // "SQL" and "sql" are one tag.
    let sql = ds.tags.get("sql").unwrap();
    assert!(ds.tags.get("SQL").is_none());
    let basics = ds.courses.get("sql-basics").unwrap() as usize;
    assert_eq!(ds.course_tags[basics], vec![sql]);
    // The quoted course id keeps its comma and quotes.
    assert!(ds.courses.get("comma, \"quoted\" course").is_some());
}

#[test]
fn interests_and_assessments_are_deduplicated() {
    let ds = ingest::read_dir(&fixture()).unwrap();
    let interests = report(&ds, ingest::INTERESTS);
    assert_eq!(interests.skipped[&SkipReason::Duplicate], 1);
    assert_eq!(interests.skipped[&SkipReason::EmptyField], 1);
    assert_eq!(interests.quirks["same_interest_followed_again"], 1);
    let python = ds.tags.get("python").unwrap();
    assert_eq!(
        ds.interests.iter().filter(|i| i.0 == 1).collect::<Vec<_>>(),
        vec![&(1, python)]
    );
    // A repeated follow keeps its latest date, for recency.
    let day = |text: &str| kindred_datagen::day_number(text).unwrap() as u32;
    let i = ds.interests.iter().position(|i| i.0 == 1).unwrap();
    assert_eq!(ds.interest_days[i], day("2017-02-01"));
    assert_eq!(ds.interest_days.len(), ds.interests.len());
    // The later of two assessments of the same tag wins, with its date; a bad score is
    // skipped.
    assert_eq!(ds.assessments, vec![(1, python, 250)]);
    assert_eq!(ds.assessment_days, vec![day("2017-03-01")]);
    assert!(ds.newest_day() >= day("2017-03-01"));
    assert_eq!(
        report(&ds, ingest::ASSESSMENTS).skipped[&SkipReason::BadScore],
        1
    );
}

#[test]
fn the_views_block_holds_hand_computed_mean_seconds() {
    // Given the fixture and the seed's raw weighting,
    let ds = ingest::read_dir(&fixture()).unwrap();
    let mut cfg = config::default_config(fixture());
    cfg.views = BlockWeighting {
        transform: Transform::Raw,
        idf: false,
        normalise: true,
        weight: 1.0,
    };
    // when the matrix is built,
    let built = assemble::build_matrix(&ds, &cfg);
    // then users 1, 2, 3, 5 and 6 are seen (7's only row was empty),
    assert_eq!(built.handles, vec![1, 2, 3, 5, 6]);
    let tag = |name: &str| ds.tags.get(name).unwrap();
    let mut got: Vec<(u64, &str, f32)> = built.blocks[0]
        .entries
        .iter()
        .map(|&(r, t, v)| {
            (
                built.handles[r as usize],
                ds.tags.names[t as usize].as_str(),
                v,
            )
        })
        .collect();
    got.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    // and the views block holds the mean seconds per user and tag, computed by hand.
    assert_eq!(
        got,
        vec![
            (1, "data-science", 200.0),
            (1, "python", 200.0),
            (1, "sql", 50.0),
            (2, "python", 60.0),
            (2, "sql", 1000.0),
            (5, "sql", 100.0),
        ]
    );
    let _ = tag("python");
    // Summaries: user 2 viewed 3 courses (one untagged), top tag sql at 1000 s.
    let s2 = &built.summaries[1];
    assert_eq!(s2.courses, 3);
    assert_eq!(s2.top_tags[0], (tag("sql"), 1000.0));
    // User 3 viewed a course unknown to course_tags: a course but no tag.
    assert_eq!(
        (built.summaries[2].courses, built.summaries[2].tags_viewed),
        (1, 0)
    );
    // Each block is normalised per user: user 1's views part and interests part have unit
    // length times the block weight (1 for both by default).
    let block_norm = |block: usize| -> f32 {
        built
            .csr
            .row(0)
            .filter(|(c, _)| built.columns[*c as usize].block == block)
            .map(|(_, v)| v * v)
            .sum::<f32>()
            .sqrt()
    };
    assert!((block_norm(0) - 1.0).abs() < 1e-6);
    assert!((block_norm(1) - cfg.interests.weight).abs() < 1e-6);
    // User 6 has only an interest: a row all the same.
    assert!(built.csr.row_nnz(4) > 0);
}

fn copy_fixture(to: &Path) {
    for f in [
        ingest::VIEWS,
        ingest::COURSE_TAGS,
        ingest::INTERESTS,
        ingest::ASSESSMENTS,
    ] {
        std::fs::copy(fixture().join(f), to.join(f)).unwrap();
    }
}

#[test]
fn a_missing_required_column_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    let views = dir.path().join(ingest::VIEWS);
    let text = std::fs::read_to_string(&views).unwrap().replacen(
        "\"view_time_seconds\"",
        "\"seconds\"",
        1,
    );
    std::fs::write(&views, text).unwrap();
    match ingest::read_dir(dir.path()) {
        Err(IngestError::MissingColumn { file, column, .. }) => {
            assert_eq!((file, column), (ingest::VIEWS, "view_time_seconds"));
        }
        other => panic!("expected a missing column, got {other:?}"),
    }
}

#[test]
fn a_missing_required_file_stops_the_run_but_optional_files_may_be_absent() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    std::fs::remove_file(dir.path().join(ingest::INTERESTS)).unwrap();
    std::fs::remove_file(dir.path().join(ingest::ASSESSMENTS)).unwrap();
    let ds = ingest::read_dir(dir.path()).unwrap();
    assert!(!report(&ds, ingest::INTERESTS).present);
    std::fs::remove_file(dir.path().join(ingest::COURSE_TAGS)).unwrap();
    assert!(matches!(
        ingest::read_dir(dir.path()),
        Err(IngestError::MissingFile {
            file: ingest::COURSE_TAGS,
            ..
        })
    ));
}

/// The fixture folder with a views file whose one row is malformed.
fn fixture_with_malformed_views() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    std::fs::write(
        dir.path().join(ingest::VIEWS),
        "\"user_handle\",\"view_date\",\"course_id\",\"author_handle\",\"level\",\"view_time_seconds\"\nx,y\n",
    )
    .unwrap();
    dir
}

#[test]
fn a_file_of_only_malformed_rows_is_unusable() {
    let dir = fixture_with_malformed_views();
    assert!(matches!(
        ingest::read_dir(dir.path()),
        Err(IngestError::Unusable {
            file: ingest::VIEWS,
            rows: 1
        })
    ));
}

#[test]
fn an_unusable_views_file_is_the_error_named_when_the_interests_and_assessments_are_bad_too() {
    // Given a views file of malformed rows, and interests and assessments files without
    // their required columns (read on another thread while the views are read),
    let dir = fixture_with_malformed_views();
    std::fs::write(dir.path().join(ingest::INTERESTS), "user_handle\n1\n").unwrap();
    std::fs::write(dir.path().join(ingest::ASSESSMENTS), "user_handle\n1\n").unwrap();
    // when the folder is read, then the views' error is the one named, as a row-by-row
    // read would name it;
    assert!(matches!(
        ingest::read_dir(dir.path()),
        Err(IngestError::Unusable {
            file: ingest::VIEWS,
            rows: 1
        })
    ));
    // and with usable views, the interests' error comes before the assessments'.
    std::fs::copy(
        fixture().join(ingest::VIEWS),
        dir.path().join(ingest::VIEWS),
    )
    .unwrap();
    assert!(matches!(
        ingest::read_dir(dir.path()),
        Err(IngestError::MissingColumn {
            file: ingest::INTERESTS,
            ..
        })
    ));
}

#[test]
fn files_naming_more_tags_than_a_model_may_hold_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    // One course tagged with 65,537 distinct tags: one more than a feature's 16-bit id.
    let mut tags = String::from("course_id,course_tags\n");
    for t in 0..=kindred_core::users::MAX_TAGS {
        tags.push_str(&format!("many,tag-{t}\n"));
    }
    std::fs::write(dir.path().join(ingest::COURSE_TAGS), tags).unwrap();
    let err = ingest::read_dir(dir.path()).unwrap_err();
    assert!(
        matches!(err, IngestError::TooManyTags { tags, max: 65_536 } if tags > 65_536),
        "{err}"
    );
}

#[test]
fn spellings_of_one_tag_across_files_become_one_tag_named_by_the_commonest() {
    // Given C# and Node.js spelled differently across the four files,
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/fixtures/spellings");
    // when they are read,
    let ds = ingest::read_dir(&dir).unwrap();
    // then there are two tags, each reachable by any of its spellings,
    assert_eq!(ds.tags.len(), 2, "{:?}", ds.tags.names);
    let csharp = ds.tag("c#").unwrap();
    let node = ds.tag("node-js").unwrap();
    assert_ne!(csharp, node);
    for spelling in ["csharp", "c-sharp", "C#", "C-Sharp"] {
        assert_eq!(ds.tag(spelling), Some(csharp), "{spelling}");
    }
    assert_eq!(ds.tag("nodejs"), Some(node));
    // named by their commonest spelling,
    assert_eq!(ds.tags.names[csharp as usize], "c-sharp");
    assert_eq!(ds.tags.names[node as usize], "node-js");
    // the course tags, interests and assessments of users 1 and 2 meet on one tag,
    assert_eq!(
        ds.course_tags[ds.courses.get("csharp-basics").unwrap() as usize],
        [csharp]
    );
    assert_eq!(
        ds.course_tags[ds.courses.get("csharp-advanced").unwrap() as usize],
        [csharp]
    );
    assert_eq!(ds.interests, [(1, csharp), (3, node)]);
    assert_eq!(ds.assessments, [(2, csharp, 150), (3, node, 120)]);
    // and each spelling that joined an earlier one is counted where it was met.
    let merged = |file: &str| {
        report(&ds, file)
            .quirks
            .get("tag_spellings_merged")
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(merged("course_tags.csv"), 1);
    assert_eq!(merged("user_interests.csv"), 2);
    assert_eq!(merged("user_assessment_scores.csv"), 0);
}

#[test]
fn tags_first_met_in_the_interests_are_numbered_in_the_order_they_are_met() {
    // The interests file is read beside the views; its tags must still be numbered as a
    // row-by-row read numbers them.
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("course_tags.csv", "course_id,course_tags\nc1,python\n");
    write(
        "user_course_views.csv",
        "user_handle,view_date,course_id,author_handle,level,view_time_seconds\n\
         1,2017-06-01,c1,9,Beginner,60\n",
    );
    write(
        "user_interests.csv",
        "user_handle,interest_tag,date_followed\n\
         1,zeta,2017-06-01\n2,alpha,2017-06-01\n1,Zeta,2017-06-02\n3,python,2017-06-01\n\
         3,beta,2017-06-01\n",
    );
    let ds = ingest::read_dir(dir.path()).unwrap();
    assert_eq!(ds.tags.names, ["python", "zeta", "alpha", "beta"]);
    let (zeta, alpha, beta) = (1, 2, 3);
    assert_eq!(ds.interests, [(1, zeta), (2, alpha), (3, 0), (3, beta)]);
    let interests = report(&ds, "user_interests.csv");
    assert_eq!(interests.quirks["same_interest_followed_again"], 1);
    assert_eq!(interests.quirks["tags_with_upper_case_merged"], 1);
}

#[test]
fn users_are_counted_across_the_files_up_to_a_limit() {
    // Given the spellings fixture's users, across its four files,
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/fixtures/spellings");
    let ds = ingest::read_dir(&dir).unwrap();
    let mut all: Vec<u64> = ds.views.iter().map(|v| v.user).collect();
    all.extend(ds.interests.iter().map(|i| i.0));
    all.extend(ds.assessments.iter().map(|a| a.0));
    all.sort_unstable();
    all.dedup();
    // then every distinct user counts once, and a limit below them stops the count.
    assert_eq!(ds.users_up_to(100), Some(all.len()));
    assert_eq!(ds.users_up_to(all.len()), Some(all.len()));
    assert_eq!(ds.users_up_to(all.len() - 1), None);
}
