//! Tests of the `kindred-datagen` binary.

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kindred-datagen"));
    cmd.args(args)
        .env_remove("KINDRED_DATA_OUT")
        .env_remove("KINDRED_GEN_USERS")
        .env_remove("KINDRED_COURSE_TAGS");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("binary runs")
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count()
}

#[test]
fn given_a_folder_with_outputs_when_running_without_force_then_it_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();

    let first = run(&["--out", out, "--users", "200"], &[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let summary = String::from_utf8_lossy(&first.stdout);
    assert!(
        summary.contains("user_course_views.csv"),
        "summary: {summary}"
    );
    assert_eq!(lines(&dir.path().join("ground_truth.csv")), 201);

    let second = run(&["--out", out, "--users", "300"], &[]);
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("--force"), "stderr: {err}");
    assert_eq!(
        lines(&dir.path().join("ground_truth.csv")),
        201,
        "files were touched"
    );

    let third = run(&["--out", out, "--users", "300", "--force"], &[]);
    assert!(
        third.status.success(),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert_eq!(lines(&dir.path().join("ground_truth.csv")), 301);
}

#[test]
fn given_environment_variables_when_running_then_they_set_out_and_users() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested");
    let result = run(
        &["--cohorts", "5"],
        &[
            ("KINDRED_DATA_OUT", out.to_str().unwrap()),
            ("KINDRED_GEN_USERS", "150"),
        ],
    );
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(lines(&out.join("ground_truth.csv")), 151);
}

#[test]
fn given_bad_options_when_running_then_it_fails_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    for args in [
        vec!["--users", "10"],
        vec!["--out", out, "--view-share", "2"],
        vec!["--out", out, "--cohorts", "1"],
        vec!["--out", out, "--primary-share-min", "0.95"],
    ] {
        let result = run(&args, &[]);
        assert!(!result.status.success(), "{args:?} succeeded");
        assert!(!result.stderr.is_empty(), "{args:?} gave no message");
    }
}

#[test]
fn given_no_catalogue_option_then_the_challenges_course_tags_are_used() {
    let challenge = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pluralsight/course_tags.csv"
    ))
    .expect("the challenge's course_tags.csv is in the repository");
    let dir = tempfile::tempdir().unwrap();
    let (default, synthetic, file) = (
        dir.path().join("default"),
        dir.path().join("synthetic"),
        dir.path().join("file"),
    );
    let tags_file = dir.path().join("tags.csv");
    std::fs::write(&tags_file, &challenge).unwrap();
    for (out, extra) in [
        (&default, vec![]),
        (&synthetic, vec!["--synthetic-catalogue"]),
        (&file, vec!["--course-tags", tags_file.to_str().unwrap()]),
    ] {
        let mut args = vec!["--out", out.to_str().unwrap(), "--users", "200"];
        args.extend(extra);
        let result = run(&args, &[]);
        assert!(
            result.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&result.stderr)
        );
    }
    let tags = |dir: &Path| std::fs::read(dir.join("course_tags.csv")).unwrap();
    assert!(
        tags(&default) == challenge,
        "default is not the challenge's"
    );
    assert!(tags(&file) == challenge, "--course-tags was not copied");
    assert!(
        tags(&synthetic) != challenge,
        "--synthetic-catalogue ignored"
    );
    let views = |dir: &Path| std::fs::read(dir.join("user_course_views.csv")).unwrap();
    assert!(views(&default) == views(&file));

    // Both catalogue options at once are refused, also through the environment.
    let both = run(
        &[
            "--out",
            default.to_str().unwrap(),
            "--force",
            "--synthetic-catalogue",
        ],
        &[("KINDRED_COURSE_TAGS", tags_file.to_str().unwrap())],
    );
    assert!(!both.status.success(), "conflicting options accepted");
}

#[test]
fn given_help_then_every_option_is_documented() {
    let help = run(&["--help"], &[]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--out",
        "--force",
        "--users",
        "--seed",
        "--cohorts",
        "--course-tags",
        "--synthetic-catalogue",
        "--view-share",
        "--popular-noise",
        "--primary-share-min",
        "--primary-share-max",
        "--long-watcher-share",
        "--assessment-share",
        "KINDRED_DATA_OUT",
        "KINDRED_GEN_USERS",
        "KINDRED_COURSE_TAGS",
    ] {
        assert!(text.contains(option), "--help lacks {option}");
    }
}
