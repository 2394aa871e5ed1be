//! Small shared helpers: the repository, data sets, unique names, ports, waiting.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Each generated user's planted (primary) cohort, from `<dir>/ground_truth.csv` as
/// `kindred-datagen` writes it.
pub fn primary_cohorts(dir: &Path) -> std::collections::HashMap<u64, u32> {
    kindred_datagen::read_ground_truth(&dir.join("ground_truth.csv"))
        .expect("ground truth")
        .into_iter()
        .map(|(handle, truth)| (handle, truth.primary_cohort))
        .collect()
}

/// The repository root (the workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// An S3 key prefix no other test run uses: `<kind>-<name>-<pid>-<nanoseconds>`.
pub fn unique_prefix(kind: &str, name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{kind}-{name}-{}-{nanos}", std::process::id())
}

/// The environment that points the AWS SDK at an S3-compatible `endpoint` (LocalStack)
/// with its fixed test credentials.
pub fn aws_env(endpoint: &str) -> Vec<(&str, &str)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ]
}

/// The version a `kindred-batch train` run printed as published, if it published one.
pub fn published_version(output: &str) -> Option<String> {
    let rest = output.split("published: version ").nth(1)?;
    Some(rest.split_whitespace().next()?.to_owned())
}

/// A loopback port that was free a moment ago, and never handed out before in this test
/// process: the kernel may offer a port again as soon as its probe closes, and two tests
/// running at once would then start their servers on one port (a function would poll
/// another test's server as its Runtime API).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind a free port")
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Waits for a job that `./dev test` started beside the test run (cargo-deny's build, the
/// Lambda zip's cross-build; see `start_job` in `dev`): `KINDRED_<job>_DONE` names the file
/// its exit status is written to when it ends, `KINDRED_<job>_LOG` its log. Returns `false`
/// when the variable is unset (a run outside `./dev test`: the test does the work itself);
/// panics with the log when the job failed or has not ended within `limit`.
pub fn background_job(job: &str, limit: Duration) -> bool {
    let Ok(done) = std::env::var(format!("KINDRED_{job}_DONE")) else {
        return false;
    };
    let log = std::env::var(format!("KINDRED_{job}_LOG")).unwrap_or_default();
    let tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    let status = eventually(limit, &format!("the background job {job} to end"), || {
        std::fs::read_to_string(&done).ok()
    });
    assert_eq!(
        status.trim(),
        "0",
        "background job {job} failed ({log}):\n{}",
        tail()
    );
    true
}

/// Polls `check` every 100 ms until it returns `Some`, panicking with `what` after `limit`.
pub fn eventually<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
