//! The training run split as the Step Functions Distributed Map runs it: `prepare` once,
//! `build-shard` for every shard in parallel processes, `publish` once; the result must
//! load and answer like a one-shot `train` of the same data and shard count.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use kindred_e2e::{binary, exchange, run_err, run_ok, serve_predict};
use serde_json::Value;

fn similarities(addr: SocketAddr, handle: u64) -> (String, Vec<f64>) {
    let r = exchange(
        addr,
        "POST",
        "/predict",
        Some("application/json"),
        &format!(r#"{{"user_handle": {handle}}}"#),
        Duration::from_secs(30),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let sims = v["similar_users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["similarity"].as_f64().unwrap())
        .collect();
    (v["model_version"].as_str().unwrap().to_owned(), sims)
}

#[test]
fn a_split_run_publishes_what_a_one_shot_run_does() {
    // Given generated data,
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let split = dir.path().join("split");
    let whole = dir.path().join("whole");
    let (data_s, split_s, whole_s) = (
        data.to_str().unwrap(),
        split.to_str().unwrap(),
        whole.to_str().unwrap(),
    );
    run_ok(
        "kindred-datagen",
        &["--out", data_s, "--users", "3000", "--seed", "6"],
    );
    let common = ["--rank", "24", "--shards", "3", "--evaluate", "never"];
    // when one run trains it in one go,
    let mut args = vec!["train", "--data", data_s, "--store", whole_s];
    args.extend(common);
    run_ok("kindred-batch", &args);
    // and another in steps: prepare, a shard step before prepare ran fails clearly,
    let err = run_err(
        "kindred-batch",
        &[
            "build-shard",
            "--store",
            split_s,
            "--run",
            "r1",
            "--shard",
            "0",
        ],
    );
    assert!(err.contains("run `prepare` first"), "{err}");
    let mut args = vec![
        "prepare", "--run", "r1", "--data", data_s, "--store", split_s,
    ];
    args.extend(common);
    let prepared = run_ok("kindred-batch", &args);
    assert!(prepared.contains("3 shard(s) of 3000 users"), "{prepared}");
    let items: Value =
        serde_json::from_slice(&std::fs::read(split.join("staging/r1/shards.json")).unwrap())
            .unwrap();
    assert_eq!(
        items,
        serde_json::json!([{"shard": 0}, {"shard": 1}, {"shard": 2}])
    );
    // publishing before every shard is built is refused and moves nothing,
    let err = run_err(
        "kindred-batch",
        &["publish", "--store", split_s, "--run", "r1"],
    );
    assert!(err.contains("run `build-shard` first"), "{err}");
    assert!(!split.join("current.json").exists());
    // the three shards build in parallel processes (one of them twice, as a retry),
    let builders: Vec<_> = (0..3)
        .map(|s| {
            Command::new(binary("kindred-batch"))
                .args(["build-shard", "--store", split_s, "--run", "r1", "--shard"])
                .arg(s.to_string())
                .output()
        })
        .collect();
    for b in builders {
        let b = b.unwrap();
        assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    }
    run_ok(
        "kindred-batch",
        &[
            "build-shard",
            "--store",
            split_s,
            "--run",
            "r1",
            "--shard",
            "1",
        ],
    );
    let published = run_ok(
        "kindred-batch",
        &[
            "publish", "--store", split_s, "--run", "r1", "--data", data_s,
        ],
    );
    assert!(published.contains("published: version"), "{published}");
    assert!(published.contains("cohort precision@10 0."), "{published}");
    // (a retried publish succeeds and changes nothing),
    let pointer = std::fs::read(split.join("current.json")).unwrap();
    let again = run_ok(
        "kindred-batch",
        &["publish", "--store", split_s, "--run", "r1"],
    );
    assert!(again.contains("published: version"), "{again}");
    assert_eq!(std::fs::read(split.join("current.json")).unwrap(), pointer);
    // then the split version verifies, lists 3 shards and carries its recall,
    let shown = run_ok("kindred-batch", &["show", "--store", split_s]);
    assert!(shown.contains("verified, 3000 users"), "{shown}");
    let manifest: Value = serde_json::from_str(&shown[shown.find('{').unwrap()..]).unwrap();
    assert_eq!(manifest["format_version"], 3);
    assert_eq!(manifest["shards"].as_array().unwrap().len(), 3);
    assert!(
        manifest["recall_at_10"].as_f64().unwrap() > 0.95,
        "{manifest}"
    );
    // and both versions answer with the same similarities (exact scans at this size)
    // and recommend the same courses.
    let (_a, split_addr) = serve_predict(&["--store", split_s]);
    let (_b, whole_addr) = serve_predict(&["--store", whole_s]);
    for handle in (1..=3000).step_by(97) {
        let (v1, s1) = similarities(split_addr, handle);
        let (v2, s2) = similarities(whole_addr, handle);
        assert_ne!(v1, v2);
        assert_eq!(s1, s2, "user {handle}");
        assert_eq!(courses(split_addr, handle), courses(whole_addr, handle));
    }
}

/// The course ids `POST /recommend` ranks for `handle`.
fn courses(addr: SocketAddr, handle: u64) -> Vec<String> {
    let r = exchange(
        addr,
        "POST",
        "/recommend",
        Some("application/json"),
        &format!(r#"{{"user_handle": {handle}}}"#),
        Duration::from_secs(30),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["course_id"].as_str().unwrap().to_owned())
        .collect()
}
