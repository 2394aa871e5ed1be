//! The API against its own contract: schemathesis, driven by the OpenAPI document the
//! live server serves, sends generated valid and invalid requests to every operation and
//! runs all its checks (server errors, undocumented statuses or content types, responses
//! that break their schema, invalid data accepted, valid data refused, method handling).

use std::process::Command;

use kindred_e2e::{repo_root, run_ok, serve_predict};

#[test]
#[ignore = "needs schemathesis (./dev test installs it)"]
fn schemathesis_with_all_checks_finds_nothing_against_the_live_server() {
    // Given a generated data set trained into a folder and served on loopback,
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = dir.path().join("store");
    let (data_s, store_s) = (data.to_str().unwrap(), store.to_str().unwrap());
    run_ok(
        "kindred-datagen",
        &["--out", data_s, "--users", "2000", "--seed", "5"],
    );
    run_ok(
        "kindred-batch",
        &[
            "train",
            "--data",
            data_s,
            "--store",
            store_s,
            "--evaluate",
            "never",
        ],
    );
    // once as a plain server and once serving shards (which adds /shard/search),
    for mode in [
        &["--store", store_s][..],
        &["--store", store_s, "--shards", "0-0"],
    ] {
        let (_server, addr) = serve_predict(mode);
        // when schemathesis runs every check on every operation of /openapi.json
        // (seeded, one worker, so that a run repeats),
        let program =
            std::env::var("KINDRED_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".to_owned());
        // (Run in a temporary folder: schemathesis keeps a cache in its working folder.)
        let config = repo_root().join("tests/schemathesis/schemathesis.toml");
        let out = Command::new(&program)
            .arg("--config-file")
            .arg(&config)
            .args(["run", &format!("http://{addr}/openapi.json")])
            .args(["--checks", "all", "--max-examples", "100", "--seed", "1"])
            .args(["--workers", "1", "--no-color"])
            .current_dir(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e} (./dev test installs it)"));
        // then it finds nothing.
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "schemathesis found problems with {mode:?}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("No issues found"), "{stdout}");
    }
}
