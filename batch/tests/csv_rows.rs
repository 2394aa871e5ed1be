//! Property test of ingestion with seeded random rows: whatever the data rows of the four
//! CSVs hold (valid rows, wrong field counts, non-numbers, negative or huge values, empty
//! fields, stray quotes, invalid UTF-8), reading never panics, fails only when a required
//! file has no usable row, counts every data row as used or skipped with a reason, and
//! uses no more rows than were valid.

use std::io::Write;

use kindred_batch::ingest;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

const VIEWS: &str =
    "\"user_handle\",\"view_date\",\"course_id\",\"author_handle\",\"level\",\"view_time_seconds\"";
const TAGS: &str = "\"course_id\",\"course_tags\"";
const INTERESTS: &str = "\"user_handle\",\"interest_tag\",\"date_followed\"";
const ASSESSMENTS: &str =
    "\"user_handle\",\"assessment_tag\",\"user_assessment_date\",\"user_assessment_score\"";

/// A data row: (bytes, whether it is a valid row of its file).
type Row = (Vec<u8>, bool);

fn junk() -> impl Strategy<Value = Row> {
    prop_oneof![
        Just((b"".to_vec(), false)),
        Just((b",,,,,".to_vec(), false)),
        Just((b"\"unclosed,1,2".to_vec(), false)),
        Just((vec![0xff, 0xfe, b',', 0x80], false)),
        prop::collection::vec(any::<u8>(), 1..40)
            .prop_filter("one line", |b| !b.contains(&b'\n') && !b.contains(&b'\r'))
            .prop_map(|b| (b, false)),
    ]
}

fn views_row() -> impl Strategy<Value = Row> {
    let valid = (1u64..50, 0usize..4, 0u32..100_000).prop_map(|(u, c, s)| {
        (
            format!("{u},\"2017-03-31\",\"course-{c}\",7,\"Beginner\",{s}").into_bytes(),
            true,
        )
    });
    let bad = prop_oneof![
        (1u64..50).prop_map(|u| (
            format!("{u},\"2017-03-31\",\"course-1\",7,\"Beginner\",-5").into_bytes(),
            false
        )),
        (1u64..50).prop_map(|u| (
            format!("{u},\"2017-03-31\",\"course-1\",7,\"Beginner\",lots").into_bytes(),
            false
        )),
        Just((
            b"x,\"2017-03-31\",\"course-1\",7,\"Beginner\",10".to_vec(),
            false
        )),
        Just((b"1,\"2017-03-31\",\"course-1\",7".to_vec(), false)),
    ];
    prop_oneof![6 => valid, 2 => bad, 2 => junk()]
}

fn tags_row() -> impl Strategy<Value = Row> {
    let valid = (0usize..4, "[a-zA-Z#+.-]{1,10}")
        .prop_map(|(c, t)| (format!("\"course-{c}\",\"{t}\"").into_bytes(), true));
    prop_oneof![6 => valid, 1 => junk()]
}

fn interests_row() -> impl Strategy<Value = Row> {
    let valid = (1u64..50, "[a-z#+.-]{1,10}").prop_map(|(u, t)| {
        (
            format!("{u},\"{t}\",\"2017-01-01 10:00:00\"").into_bytes(),
            true,
        )
    });
    prop_oneof![6 => valid, 1 => junk()]
}

fn assessments_row() -> impl Strategy<Value = Row> {
    let valid = (1u64..50, "[a-z#+.-]{1,10}", 0u32..300).prop_map(|(u, t, s)| {
        (
            format!("{u},\"{t}\",\"2017-01-01 10:00:00\",{s}").into_bytes(),
            true,
        )
    });
    let bad = (1u64..50).prop_map(|u| {
        (
            format!("{u},\"python\",\"2017-01-01\",-3").into_bytes(),
            false,
        )
    });
    prop_oneof![6 => valid, 1 => bad, 1 => junk()]
}

fn write(dir: &std::path::Path, name: &str, header: &str, rows: &[Row]) {
    let mut f = std::fs::File::create(dir.join(name)).unwrap();
    writeln!(f, "{header}").unwrap();
    for (bytes, _) in rows {
        f.write_all(bytes).unwrap();
        f.write_all(b"\n").unwrap();
    }
}

#[test]
fn every_row_is_used_or_counted_as_skipped() {
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 200,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[11; 32]),
    );
    let files = (
        prop::collection::vec(views_row(), 0..40),
        prop::collection::vec(tags_row(), 1..12),
        prop::collection::vec(interests_row(), 0..30),
        prop::collection::vec(assessments_row(), 0..20),
    );
    let unusable = std::cell::Cell::new(0u32);
    runner
        .run(&files, |(views, tags, interests, assessments)| {
            // Given the four files with the right headers and random data rows,
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), "user_course_views.csv", VIEWS, &views);
            write(dir.path(), "course_tags.csv", TAGS, &tags);
            write(dir.path(), "user_interests.csv", INTERESTS, &interests);
            write(
                dir.path(),
                "user_assessment_scores.csv",
                ASSESSMENTS,
                &assessments,
            );
            // when read, then reading succeeds, unless a required file has no usable row
            // at all (the one way random rows may make the input unusable),
            let ds = match ingest::read_dir(dir.path()) {
                Ok(ds) => ds,
                Err(e) => {
                    let message = e.to_string();
                    prop_assert!(message.contains("no usable rows"), "read failed: {message}");
                    unusable.set(unusable.get() + 1);
                    return Ok(());
                }
            };
            // and in every file each data row is used or skipped, and no more rows are
            // used than were valid (blank lines are not rows to a CSV reader).
            // (Text-only files accept any two or three fields as ids and tags, so the
            // bound on used rows applies to the files with numeric fields.)
            for (name, rows, numeric) in [
                ("user_course_views.csv", &views, true),
                ("course_tags.csv", &tags, false),
                ("user_interests.csv", &interests, false),
                ("user_assessment_scores.csv", &assessments, true),
            ] {
                let r = ds.reports.iter().find(|r| r.file == name).unwrap();
                prop_assert_eq!(r.rows, r.used + r.skipped.values().sum::<u64>(), "{:?}", r);
                let valid = rows.iter().filter(|(_, ok)| *ok).count() as u64;
                prop_assert!(
                    !numeric || r.used <= valid,
                    "{name}: used {} of {valid} valid rows",
                    r.used
                );
                let nonblank = rows.iter().filter(|(b, _)| !b.is_empty()).count() as u64;
                prop_assert!(r.rows <= nonblank, "{name}: {} rows of {nonblank}", r.rows);
            }
            Ok(())
        })
        .unwrap();
    // Most generated data sets are usable, so the row checks above did run.
    assert!(
        unusable.get() < 40,
        "{} of 200 data sets were unusable",
        unusable.get()
    );
}
