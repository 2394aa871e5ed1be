//! End-to-end tests of `kindred_datagen::generate`: formats, statistics at the
//! default 10k users (on the challenge's course tags, the default), determinism,
//! the planted structure, the synthetic catalogue and other course-tags files.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kindred_datagen::{
    ASSESSMENTS_FILE, CHALLENGE_COURSE_TAGS, COURSE_TAGS_FILE, CourseTags, GROUND_TRUTH_FILE,
    GenConfig, GenReport, INTERESTS_FILE, MANIFEST_FILE, VIEWS_FILE, generate, read_ground_truth,
};

/// The challenge's course tags in the repository (the generator embeds them).
const REAL_COURSE_TAGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pluralsight/course_tags.csv");

/// The default 10k-user data set, generated once per test run.
fn defaults() -> &'static (PathBuf, GenReport) {
    static DATA: OnceLock<(PathBuf, GenReport)> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kindred-datagen-defaults");
        let _ = fs::remove_dir_all(&dir);
        let report = generate(&GenConfig::default(), &dir).expect("default generation works");
        (dir, report)
    })
}

/// The default data set (10k users on the challenge's course tags) and the same
/// on the synthetic catalogue, generated once per test run.
fn both_catalogues() -> [&'static (PathBuf, GenReport); 2] {
    static SYNTHETIC: OnceLock<(PathBuf, GenReport)> = OnceLock::new();
    let synthetic = SYNTHETIC.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kindred-datagen-synthetic");
        let _ = fs::remove_dir_all(&dir);
        let cfg = GenConfig {
            course_tags: CourseTags::Synthetic,
            ..GenConfig::default()
        };
        let report = generate(&cfg, &dir).expect("generation on the synthetic catalogue works");
        (dir, report)
    });
    [defaults(), synthetic]
}

/// Data rows of a CSV file (header checked separately).
fn rows(path: &Path) -> Vec<csv::StringRecord> {
    csv::Reader::from_path(path)
        .unwrap()
        .records()
        .map(|r| r.unwrap())
        .collect()
}

fn median(mut xs: Vec<u64>) -> u64 {
    xs.sort_unstable();
    xs[xs.len() / 2]
}

fn share(part: usize, whole: usize) -> f64 {
    part as f64 / whole as f64
}

#[test]
fn given_the_same_config_when_generating_twice_then_every_file_is_byte_identical() {
    for course_tags in [CourseTags::Challenge, CourseTags::Synthetic] {
        let cfg = GenConfig {
            users: 2_000,
            course_tags,
            ..GenConfig::default()
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        generate(&cfg, a.path()).unwrap();
        generate(&cfg, b.path()).unwrap();
        for name in [
            VIEWS_FILE,
            COURSE_TAGS_FILE,
            INTERESTS_FILE,
            ASSESSMENTS_FILE,
            GROUND_TRUTH_FILE,
            MANIFEST_FILE,
        ] {
            let (x, y) = (
                fs::read(a.path().join(name)).unwrap(),
                fs::read(b.path().join(name)).unwrap(),
            );
            assert!(!x.is_empty(), "{name} is empty");
            assert!(
                x == y,
                "{name} differs between two runs ({:?})",
                cfg.course_tags
            );
        }
    }
}

#[test]
fn given_another_seed_when_generating_then_the_data_differs() {
    // The synthetic catalogue, so that the course tags depend on the seed too.
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for (seed, dir) in [1, 2].into_iter().zip(&dirs) {
        let cfg = GenConfig {
            users: 500,
            seed,
            course_tags: CourseTags::Synthetic,
            ..GenConfig::default()
        };
        generate(&cfg, dir.path()).unwrap();
    }
    for name in [
        VIEWS_FILE,
        COURSE_TAGS_FILE,
        INTERESTS_FILE,
        GROUND_TRUTH_FILE,
    ] {
        assert_ne!(
            fs::read(dirs[0].path().join(name)).unwrap(),
            fs::read(dirs[1].path().join(name)).unwrap(),
            "{name} ignores the seed"
        );
    }
}

#[test]
fn given_default_output_then_header_lines_are_exactly_the_challenges() {
    for (dir, _) in both_catalogues() {
        eprintln!("data set: {}", dir.display());
        let expected = [
            (
                VIEWS_FILE,
                r#""user_handle","view_date","course_id","author_handle","level","view_time_seconds""#,
            ),
            (COURSE_TAGS_FILE, r#""course_id","course_tags""#),
            (
                INTERESTS_FILE,
                r#""user_handle","interest_tag","date_followed""#,
            ),
            (
                ASSESSMENTS_FILE,
                r#""user_handle","assessment_tag","user_assessment_date","user_assessment_score""#,
            ),
            (
                GROUND_TRUTH_FILE,
                r#""user_handle","primary_cohort","secondary_cohort","primary_share","watch_multiplier""#,
            ),
        ];
        for (name, header) in expected {
            let text = fs::read_to_string(dir.join(name)).unwrap();
            assert_eq!(text.lines().next(), Some(header), "header of {name}");
        }
    }
}

/// Column kinds for the quoting check.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// `"..."`
    Text,
    /// digits
    Int,
    /// digits with an optional fraction
    Decimal,
}

fn field_ok(field: &str, kind: Kind) -> bool {
    match kind {
        Kind::Text => {
            field.len() >= 2
                && field.starts_with('"')
                && field.ends_with('"')
                && !field[1..field.len() - 1].contains('"')
        }
        Kind::Int => !field.is_empty() && field.bytes().all(|b| b.is_ascii_digit()),
        Kind::Decimal => {
            let mut parts = field.splitn(2, '.');
            let whole = parts.next().unwrap_or("");
            let frac = parts.next().unwrap_or("0");
            field_ok(whole, Kind::Int) && field_ok(frac, Kind::Int)
        }
    }
}

#[test]
fn given_default_output_then_every_line_is_ascii_lf_quoted_text_and_bare_numbers() {
    use Kind::*;
    for (dir, _) in both_catalogues() {
        eprintln!("data set: {}", dir.display());
        let layouts: [(&str, &[Kind]); 5] = [
            (VIEWS_FILE, &[Int, Text, Text, Int, Text, Int]),
            (COURSE_TAGS_FILE, &[Text, Text]),
            (INTERESTS_FILE, &[Int, Text, Text]),
            (ASSESSMENTS_FILE, &[Int, Text, Text, Int]),
            (GROUND_TRUTH_FILE, &[Int, Int, Int, Decimal, Decimal]),
        ];
        for (name, kinds) in layouts {
            let bytes = fs::read(dir.join(name)).unwrap();
            assert!(bytes.is_ascii(), "{name} is not ASCII");
            assert!(!bytes.contains(&b'\r'), "{name} has CR");
            assert_eq!(bytes.last(), Some(&b'\n'), "{name} does not end in LF");
            let text = String::from_utf8(bytes).unwrap();
            for (i, line) in text.lines().enumerate().skip(1) {
                let fields: Vec<&str> = line.split(',').collect();
                assert_eq!(fields.len(), kinds.len(), "{name} line {}: {line}", i + 1);
                for (field, &kind) in fields.iter().zip(kinds) {
                    assert!(
                        field_ok(field, kind),
                        "{name} line {}: {field:?} is not {kind:?}",
                        i + 1
                    );
                }
            }
        }
    }
}

#[test]
fn given_default_output_then_the_report_matches_the_files() {
    let (dir, report) = defaults();
    let lines = |name: &str| fs::read_to_string(dir.join(name)).unwrap().lines().count() as u64 - 1;
    assert_eq!(report.view_rows, lines(VIEWS_FILE));
    assert_eq!(report.course_tag_rows, lines(COURSE_TAGS_FILE));
    assert_eq!(report.interest_rows, lines(INTERESTS_FILE));
    assert_eq!(report.assessment_rows, lines(ASSESSMENTS_FILE));
    assert_eq!(report.ground_truth_rows, lines(GROUND_TRUTH_FILE));
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap()).unwrap();
    let cfg: GenConfig = serde_json::from_value(manifest["config"].clone()).unwrap();
    assert_eq!(cfg, GenConfig::default());
    assert_eq!(manifest["config"]["course_tags"], "challenge");
    let written: GenReport = serde_json::from_value(manifest["report"].clone()).unwrap();
    assert_eq!(&written, report);
    assert_eq!(report.course_tags_source, "challenge");
    assert_eq!(report.cohorts.len(), 40);
}

#[test]
fn given_10k_users_then_views_look_like_the_real_data() {
    for (dir, report) in both_catalogues() {
        eprintln!("data set: {}", dir.display());
        let views = rows(&dir.join(VIEWS_FILE));
        let n = views.len();
        assert!(
            (211_852..=286_624).contains(&n),
            "{n} view rows, expected 249,238 ± 15%"
        );

        let mut per_user: BTreeMap<u64, u64> = BTreeMap::new();
        let mut course_facts: HashMap<&str, (&str, &str)> = HashMap::new();
        let mut seconds: Vec<u64> = Vec::with_capacity(n);
        let mut seen_rows = HashSet::new();
        let mut days_per_user_course: HashMap<(&str, &str), u32> = HashMap::new();
        for r in &views {
            let user: u64 = r[0].parse().unwrap();
            assert!((1..=10_000).contains(&user));
            *per_user.entry(user).or_default() += 1;
            let date = &r[1];
            assert!(date.len() == 10 && date.starts_with("2017-"), "date {date}");
            assert!(["Beginner", "Intermediate", "Advanced"].contains(&&r[4]));
            let facts = course_facts.entry(&r[2]).or_insert((&r[3], &r[4]));
            assert_eq!(
                *facts,
                (&r[3], &r[4]),
                "author or level of {} varies",
                &r[2]
            );
            let s: u64 = r[5].parse().unwrap();
            assert!(s >= 1);
            seconds.push(s);
            assert!(
                seen_rows.insert(r.as_slice().to_owned()),
                "duplicate row {r:?}"
            );
            *days_per_user_course.entry((&r[0], &r[2])).or_default() += 1;
        }

        let with_views = share(per_user.len(), 10_000);
        assert!(
            (0.85..=0.91).contains(&with_views),
            "share with views {with_views}"
        );
        assert_eq!(per_user.len() as u64, report.users_with_views);
        let counts: Vec<u64> = per_user.values().copied().collect();
        assert!(*counts.iter().max().unwrap() >= 300, "no heavy users");
        assert!(median(counts) < 28, "rows per user are not right-skewed");

        let authors: HashSet<&str> = course_facts.values().map(|f| f.0).collect();
        assert!(
            (1_000..=1_800).contains(&authors.len()),
            "{} authors",
            authors.len()
        );
        let rewatched = days_per_user_course.values().filter(|&&d| d > 1).count();
        assert!(
            share(rewatched, days_per_user_course.len()) > 0.2,
            "few rewatches"
        );

        seconds.sort_unstable();
        let med = seconds[n / 2];
        assert!((100..=1_000).contains(&med), "median view time {med}");
        assert!(seconds[n * 99 / 100] > 5 * med, "tail too light");
        assert!(*seconds.last().unwrap() > 20_000, "no long tail");
    }
}

#[test]
fn given_10k_users_then_every_viewed_course_exists_in_course_tags() {
    for (dir, _) in both_catalogues() {
        eprintln!("data set: {}", dir.display());
        let courses: HashSet<String> = rows(&dir.join(COURSE_TAGS_FILE))
            .iter()
            .map(|r| r[0].to_owned())
            .collect();
        for r in rows(&dir.join(VIEWS_FILE)) {
            assert!(courses.contains(&r[2]), "unknown course {}", &r[2]);
        }
    }
}

#[test]
fn given_the_synthetic_catalogue_then_its_course_tags_look_like_the_real_file() {
    // The catalogue depends on the seed alone, not on the number of users.
    let dir = tempfile::tempdir().unwrap();
    let cfg = GenConfig {
        users: 1_000,
        course_tags: CourseTags::Synthetic,
        ..GenConfig::default()
    };
    let report = generate(&cfg, dir.path()).unwrap();
    assert_eq!(report.course_tags_source, "synthetic");
    let tags = rows(&dir.path().join(COURSE_TAGS_FILE));
    assert_ne!(
        fs::read_to_string(dir.path().join(COURSE_TAGS_FILE)).unwrap(),
        CHALLENGE_COURSE_TAGS,
        "the synthetic catalogue is the challenge's"
    );
    let mut per_course: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in &tags {
        per_course.entry(&r[0]).or_default().push(&r[1]);
    }
    assert!(
        (5_000..=7_000).contains(&per_course.len()),
        "{} courses",
        per_course.len()
    );
    assert_eq!(report.courses, per_course.len() as u64);
    let distinct: BTreeSet<&str> = tags
        .iter()
        .map(|r| &r[1])
        .filter(|t| !t.is_empty())
        .collect();
    assert!(
        (800..=1_200).contains(&distinct.len()),
        "{} tags",
        distinct.len()
    );
    let counts: Vec<u64> = per_course.values().map(|t| t.len() as u64).collect();
    assert_eq!(median(counts.clone()), 1);
    assert!(counts.iter().all(|&c| (1..=15).contains(&c)));
    assert!(*counts.iter().max().unwrap() >= 8);
    let empty = per_course.values().filter(|t| t == &&vec![""]).count();
    let empty_share = share(empty, per_course.len());
    assert!(
        (0.01..=0.03).contains(&empty_share),
        "empty-tag share {empty_share}"
    );
    let pairs: HashSet<(&str, &str)> = tags.iter().map(|r| (&r[0], &r[1])).collect();
    assert_eq!(pairs.len(), tags.len(), "duplicate (course, tag) rows");
    let case_variants = distinct
        .iter()
        .filter(|t| t.to_lowercase() != **t && distinct.contains(t.to_lowercase().as_str()))
        .count();
    assert!(case_variants >= 1, "no tags differing only by case");
    for r in rows(&dir.path().join(VIEWS_FILE)) {
        assert!(per_course.contains_key(&r[2]), "unknown course {}", &r[2]);
    }
}

#[test]
fn given_10k_users_then_interests_look_like_the_real_data() {
    for (dir, report) in both_catalogues() {
        eprintln!("data set: {}", dir.display());
        let interests = rows(&dir.join(INTERESTS_FILE));
        let n = interests.len();
        let users: BTreeSet<u64> = interests.iter().map(|r| r[0].parse().unwrap()).collect();
        assert_eq!(users.len(), 10_000, "every user has interests");
        assert_eq!(users.first(), Some(&1));
        assert_eq!(users.last(), Some(&10_000));
        let per_user = share(n, 10_000);
        assert!(
            (25.0..=35.0).contains(&per_user),
            "{per_user} interest rows per user"
        );

        let distinct: HashSet<&[u8]> = interests.iter().map(|r| r.as_slice().as_bytes()).collect();
        let dup_share = share(n - distinct.len(), n);
        assert!(
            (0.03..=0.10).contains(&dup_share),
            "duplicate share {dup_share}"
        );
        assert_eq!((n - distinct.len()) as u64, report.interest_duplicate_rows);

        let tags: HashSet<&str> = interests.iter().map(|r| &r[1]).collect();
        assert!(
            (600..=900).contains(&tags.len()),
            "{} interest tags",
            tags.len()
        );
        let course_tags: HashSet<String> = rows(&dir.join(COURSE_TAGS_FILE))
            .iter()
            .map(|r| r[1].to_owned())
            .collect();
        let from_courses = interests
            .iter()
            .filter(|r| course_tags.contains(&r[1]))
            .count();
        assert!(
            share(from_courses, n) > 0.85,
            "interests mostly course tags"
        );
        assert!(interests.iter().all(|r| r[1] == r[1].to_lowercase()));

        let mut per_moment: HashMap<(&str, &str), usize> = HashMap::new();
        for r in &interests {
            let ts = &r[2];
            assert_eq!(ts.len(), 19, "timestamp {ts}");
            assert_eq!(&ts[10..11], " ");
            *per_moment.entry((&r[0], ts)).or_default() += 1;
        }
        let bulk = per_moment.values().filter(|&&c| c > 1).sum::<usize>();
        assert!(share(bulk, n) > 0.5, "few bulk follows");
    }
}

#[test]
fn given_10k_users_then_assessments_look_like_the_real_data() {
    for (dir, report) in both_catalogues() {
        eprintln!("data set: {}", dir.display());
        let scores = rows(&dir.join(ASSESSMENTS_FILE));
        let mut per_user: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut total = 0u64;
        for r in &scores {
            assert!(
                per_user.entry(&r[0]).or_default().insert(&r[1]),
                "user {} has {} twice",
                &r[0],
                &r[1]
            );
            let score: u64 = r[3].parse().unwrap();
            assert!(score <= 300);
            total += score;
            let date = &r[2];
            assert!(("2016-07-13".."2017-11-29").contains(&date), "date {date}");
        }
        let user_share = share(per_user.len(), 10_000);
        assert!(
            (0.27..=0.33).contains(&user_share),
            "assessment user share {user_share}"
        );
        assert_eq!(per_user.len() as u64, report.users_with_assessments);
        let counts: Vec<u64> = per_user.values().map(|t| t.len() as u64).collect();
        assert_eq!(median(counts.clone()), 1);
        assert!(counts.iter().all(|&c| (1..=15).contains(&c)));
        let mean = total as f64 / scores.len() as f64;
        assert!((125.0..=160.0).contains(&mean), "mean score {mean}");
        let tags: HashSet<&str> = scores.iter().map(|r| &r[1]).collect();
        assert!(
            (40..=54).contains(&tags.len()),
            "{} assessment tags",
            tags.len()
        );
        assert!(tags.contains("c-sharp") && tags.contains("node-js") && !tags.contains("c#"));
    }
}

#[test]
fn given_10k_users_then_ground_truth_covers_every_user_with_valid_cohorts() {
    for (dir, report) in both_catalogues() {
        eprintln!("data set: {}", dir.display());
        let truth = read_ground_truth(&dir.join(GROUND_TRUTH_FILE)).unwrap();
        assert_eq!(truth.len(), 10_000);
        let mut long = 0;
        let mut primaries = BTreeSet::new();
        for handle in 1..=10_000u64 {
            let t = truth
                .get(&handle)
                .unwrap_or_else(|| panic!("user {handle} missing"));
            assert!(t.primary_cohort < 40 && t.secondary_cohort < 40);
            assert_ne!(t.primary_cohort, t.secondary_cohort);
            assert!(
                (0.6..=0.9).contains(&t.primary_share),
                "share {}",
                t.primary_share
            );
            if t.watch_multiplier == 1.0 {
            } else {
                assert!((3.0..=6.0).contains(&t.watch_multiplier));
                long += 1;
            }
            primaries.insert(t.primary_cohort);
        }
        assert_eq!(primaries.len(), 40, "some cohort has no users");
        assert_eq!(long, report.long_watchers);
        let long_share = share(long as usize, 10_000);
        assert!(
            (0.08..=0.12).contains(&long_share),
            "long-watcher share {long_share}"
        );
    }
}

#[test]
fn given_the_ground_truth_then_activity_follows_the_planted_cohorts() {
    for (dir, report) in both_catalogues() {
        eprintln!("data set: {}", dir.display());
        let truth = read_ground_truth(&dir.join(GROUND_TRUTH_FILE)).unwrap();
        let mut course_tags: HashMap<String, HashSet<String>> = HashMap::new();
        for r in rows(&dir.join(COURSE_TAGS_FILE)) {
            course_tags
                .entry(r[0].to_owned())
                .or_default()
                .insert(r[1].to_owned());
        }
        let focal: Vec<HashSet<&str>> = report
            .cohorts
            .iter()
            .map(|c| c.focal_tags.iter().map(String::as_str).collect())
            .collect();
        let on = |course: &str, cohort: u32| {
            course_tags[course]
                .iter()
                .any(|t| focal[cohort as usize].contains(t.as_str()))
        };

        // Views land on the primary cohort's courses far more than on an unrelated cohort's.
        let (mut total, mut primary, mut secondary, mut other) = (0, 0, 0, 0);
        let (mut long_secs, mut normal_secs) = (Vec::new(), Vec::new());
        for r in rows(&dir.join(VIEWS_FILE)) {
            let t = truth[&r[0].parse::<u64>().unwrap()];
            let unrelated = (0..40)
                .map(|k| (t.primary_cohort + 1 + k) % 40)
                .find(|&c| {
                    c != t.secondary_cohort
                        && focal[c as usize].is_disjoint(&focal[t.primary_cohort as usize])
                })
                .unwrap();
            total += 1;
            primary += usize::from(on(&r[2], t.primary_cohort));
            secondary += usize::from(on(&r[2], t.secondary_cohort));
            other += usize::from(on(&r[2], unrelated));
            let s: u64 = r[5].parse().unwrap();
            if t.watch_multiplier > 1.0 {
                long_secs.push(s)
            } else {
                normal_secs.push(s)
            }
        }
        let (p, s, o) = (
            share(primary, total),
            share(secondary, total),
            share(other, total),
        );
        assert!(p > 0.5, "primary-cohort view share {p}");
        assert!(s > 0.15 && s < p, "secondary-cohort view share {s}");
        assert!(o < 0.1, "unrelated-cohort view share {o}");
        let (ml, mn) = (median(long_secs), median(normal_secs));
        assert!(
            ml as f64 > 2.5 * mn as f64,
            "long watchers median {ml} vs {mn}"
        );

        // Users score higher on assessments of their own cohorts.
        let (mut own, mut rest) = (Vec::new(), Vec::new());
        for r in rows(&dir.join(ASSESSMENTS_FILE)) {
            let t = truth[&r[0].parse::<u64>().unwrap()];
            let mine = [t.primary_cohort, t.secondary_cohort].iter().any(|&c| {
                report.cohorts[c as usize]
                    .assessment_tags
                    .iter()
                    .take(3)
                    .any(|a| a == &r[1])
            });
            let score: f64 = r[3].parse().unwrap();
            if mine {
                own.push(score)
            } else {
                rest.push(score)
            }
        }
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
        assert!(
            own.len() > rest.len(),
            "most assessments should be on cohort topics"
        );
        assert!(
            mean(&own) > mean(&rest) + 15.0,
            "own {} vs rest {}",
            mean(&own),
            mean(&rest)
        );
    }
}

#[test]
fn given_the_defaults_then_the_challenges_course_tags_are_written_byte_for_byte() {
    // Given the challenge's file in the repository (a missing file fails here)
    let real = fs::read(REAL_COURSE_TAGS)
        .unwrap_or_else(|e| panic!("the challenge's {REAL_COURSE_TAGS} is missing: {e}"));
    // when generating with the defaults,
    let dir = tempfile::tempdir().unwrap();
    let cfg = GenConfig {
        users: 2_000,
        ..GenConfig::default()
    };
    let report = generate(&cfg, dir.path()).unwrap();
    // then the embedded catalogue is that file, written byte for byte,
    assert_eq!(CHALLENGE_COURSE_TAGS.as_bytes(), real.as_slice());
    let copy = dir.path().join(COURSE_TAGS_FILE);
    assert_eq!(fs::read(&copy).unwrap(), real);
    assert_eq!(report.course_tags_source, "challenge");
    assert_eq!(report.courses, 5_942);
    assert_eq!(report.course_tags, 998);
    assert_eq!(report.course_tag_rows, 11_337);

    // and every view is of one of its courses.
    let courses: HashSet<String> = rows(&copy).iter().map(|r| r[0].to_owned()).collect();
    let views = rows(&dir.path().join(VIEWS_FILE));
    assert!(!views.is_empty());
    for r in &views {
        assert!(courses.contains(&r[2]), "unknown course {}", &r[2]);
    }
}

#[test]
fn given_a_read_only_course_tags_file_when_generating_then_it_is_copied_byte_for_byte() {
    // Given a read-only copy of the challenge's file elsewhere,
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("my_course_tags.csv");
    fs::write(&path, CHALLENGE_COURSE_TAGS).unwrap();
    let mut permissions = fs::metadata(&path).unwrap().permissions();
    permissions.set_readonly(true);
    fs::set_permissions(&path, permissions).unwrap();
    // when generating on it,
    let dir = tempfile::tempdir().unwrap();
    let cfg = GenConfig {
        users: 1_000,
        course_tags: CourseTags::File(path.clone()),
        ..GenConfig::default()
    };
    let report = generate(&cfg, dir.path()).unwrap();
    // then it is copied byte for byte into a writable file,
    let copy = dir.path().join(COURSE_TAGS_FILE);
    assert_eq!(fs::read(&copy).unwrap(), CHALLENGE_COURSE_TAGS.as_bytes());
    assert!(!fs::metadata(&copy).unwrap().permissions().readonly());
    assert_eq!(report.course_tags_source, path.display().to_string());
    assert_eq!(report.courses, 5_942);
    // the data is the same as on the built-in catalogue,
    let builtin = tempfile::tempdir().unwrap();
    generate(
        &GenConfig {
            course_tags: CourseTags::Challenge,
            ..cfg.clone()
        },
        builtin.path(),
    )
    .unwrap();
    for name in [
        VIEWS_FILE,
        INTERESTS_FILE,
        ASSESSMENTS_FILE,
        GROUND_TRUTH_FILE,
    ] {
        assert!(
            fs::read(dir.path().join(name)).unwrap()
                == fs::read(builtin.path().join(name)).unwrap(),
            "{name} differs between the file and the built-in catalogue"
        );
    }
    // and generating again on top (same folder) reuses the writable copy.
    generate(&cfg, dir.path()).unwrap();
}

#[test]
fn given_invalid_configs_when_generating_then_they_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let not_tags = dir.path().join("not_tags.csv");
    fs::write(&not_tags, "\"course\",\"tag\"\n\"a\",\"b\"\n").unwrap();
    let bad = [
        GenConfig {
            users: 0,
            ..GenConfig::default()
        },
        GenConfig {
            cohorts: 1,
            ..GenConfig::default()
        },
        GenConfig {
            view_share: 1.5,
            ..GenConfig::default()
        },
        GenConfig {
            primary_share_min: 0.9,
            primary_share_max: 0.6,
            ..GenConfig::default()
        },
        GenConfig {
            course_tags: CourseTags::File(dir.path().join("missing.csv")),
            ..GenConfig::default()
        },
        GenConfig {
            course_tags: CourseTags::File(not_tags),
            ..GenConfig::default()
        },
    ];
    for cfg in bad {
        assert!(generate(&cfg, dir.path()).is_err(), "{cfg:?} was accepted");
    }
}

#[test]
fn given_a_malformed_ground_truth_when_reading_then_it_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(GROUND_TRUTH_FILE);
    let header = "\"user_handle\",\"primary_cohort\",\"secondary_cohort\",\"primary_share\",\"watch_multiplier\"\n";
    fs::write(&path, format!("{header}1,2,3,0.7,1\n1,2,3,0.7,1\n")).unwrap();
    assert!(read_ground_truth(&path).is_err(), "duplicate user accepted");
    fs::write(&path, format!("{header}1,x,3,0.7,1\n")).unwrap();
    assert!(read_ground_truth(&path).is_err(), "bad cohort accepted");
    fs::write(&path, format!("{header}7,2,3,0.7,4.25\n")).unwrap();
    let t = read_ground_truth(&path).unwrap();
    assert_eq!(t[&7].watch_multiplier, 4.25);
    assert_eq!(t[&7].primary_share, 0.7);
}

#[test]
fn given_a_drift_share_then_those_users_follow_a_new_cohort_after_the_drift_date() {
    // Given 2,000 users of whom a fifth drift,
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kindred-datagen-drift");
    let _ = fs::remove_dir_all(&dir);
    let cfg = GenConfig {
        users: 2_000,
        drift_share: 0.2,
        ..GenConfig::default()
    };
    generate(&cfg, &dir).unwrap();
    // then the ground truth marks about a fifth as drifted, from another cohort,
    let truth = read_ground_truth(&dir.join(GROUND_TRUTH_FILE)).unwrap();
    let drifted: Vec<u64> = truth
        .iter()
        .filter(|(_, t)| t.drifted_from.is_some())
        .map(|(h, _)| *h)
        .collect();
    let drift_share = share(drifted.len(), truth.len());
    assert!((0.17..0.23).contains(&drift_share), "{drift_share}");
    for h in &drifted {
        let t = &truth[h];
        assert_ne!(t.drifted_from, Some(t.primary_cohort));
        assert_ne!(t.drifted_from, Some(t.secondary_cohort));
    }
    // and most drifted users with views viewed courses on both sides of the drift date
    // (those with a row or two cannot).
    let mut before: HashMap<String, HashSet<String>> = HashMap::new();
    let mut after: HashMap<String, HashSet<String>> = HashMap::new();
    for r in rows(&dir.join(VIEWS_FILE)) {
        let side = if &r[1] >= kindred_datagen::DRIFT_DATE {
            &mut after
        } else {
            &mut before
        };
        side.entry(r[0].to_owned())
            .or_default()
            .insert(r[2].to_owned());
    }
    let both_sides = drifted
        .iter()
        .filter(|h| truth_has_views(&before, &after, **h))
        .count();
    let with_views = drifted
        .iter()
        .filter(|h| {
            let h = h.to_string();
            before.contains_key(&h) || after.contains_key(&h)
        })
        .count();
    assert!(
        share(both_sides, with_views) > 0.7,
        "{both_sides} of {with_views}"
    );
    // Without drift the file has no drifted_from column and nobody has drifted.
    let plain = fs::read_to_string(defaults().0.join(GROUND_TRUTH_FILE)).unwrap();
    assert!(!plain.lines().next().unwrap().contains("drifted_from"));
    let truth = read_ground_truth(&defaults().0.join(GROUND_TRUTH_FILE)).unwrap();
    assert!(truth.values().all(|t| t.drifted_from.is_none()));
}

fn truth_has_views(
    before: &HashMap<String, HashSet<String>>,
    after: &HashMap<String, HashSet<String>>,
    handle: u64,
) -> bool {
    let h = handle.to_string();
    before.contains_key(&h) && after.contains_key(&h)
}
