//! Faults around a live deployment, with real processes and LocalStack S3: the batch
//! killed part-way through a publish, two batches publishing at once, and S3 slow or
//! gone while the function (the real `kindred-predict` binary, serving HTTP on loopback)
//! is warm or cold.
//!
//! Needs LocalStack: `./dev test` starts one and sets `KINDRED_TEST_S3_ENDPOINT`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kindred_core::registry;
use kindred_core::store::S3Store;
use kindred_e2e::{
    FaultProxy, ProxyMode, Running, aws_env, binary, eventually, exchange, published_version,
    run_ok, unique_prefix,
};

const BUCKET: &str = "kindred-faults";
const USERS: u64 = 1500;
const LONG: Duration = Duration::from_secs(120);

fn endpoint() -> String {
    std::env::var("KINDRED_TEST_S3_ENDPOINT")
        .expect("KINDRED_TEST_S3_ENDPOINT (./dev test sets it)")
}

/// The `ip:port` of an `http://ip:port` endpoint.
fn upstream(endpoint: &str) -> SocketAddr {
    endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("KINDRED_TEST_S3_ENDPOINT is http://<ip>:<port>")
}

/// Where each test starts: a fresh prefix on LocalStack, generated data, and v1 published
/// there by a real batch run.
struct Setup {
    endpoint: String,
    rt: tokio::runtime::Runtime,
    prefix: String,
    store: S3Store,
    data: String,
    v1: String,
    /// Holds the generated data (deleted on drop).
    dir: tempfile::TempDir,
}

fn given_v1_published(name: &str) -> Setup {
    let endpoint = endpoint();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let prefix = unique_prefix("faults", name);
    let store = S3Store::at_endpoint(&endpoint, BUCKET, &prefix);
    rt.block_on(store.create_bucket_if_missing()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = generate(dir.path());
    let v1 = publish(&data, &endpoint, &prefix);
    Setup {
        endpoint,
        rt,
        prefix,
        store,
        data,
        v1,
        dir,
    }
}

fn generate(dir: &Path) -> String {
    let path = dir.join("data").to_str().unwrap().to_owned();
    run_ok(
        "kindred-datagen",
        &["--out", &path, "--users", &USERS.to_string(), "--seed", "5"],
    );
    path
}

/// `kindred-batch train` into `s3://<BUCKET>/<prefix>` at `endpoint`, not yet started.
fn batch(data: &str, endpoint: &str, prefix: &str) -> Command {
    let mut cmd = Command::new(binary("kindred-batch"));
    cmd.args([
        "train",
        "--data",
        data,
        "--rank",
        "16",
        "--evaluate",
        "never",
    ])
    .args(["--store", &format!("s3://{BUCKET}/{prefix}")]);
    cmd.env_remove("KINDRED_STORE")
        .envs(aws_env(endpoint))
        .env("KINDRED_LOG", "warn");
    cmd
}

/// Runs a batch to completion; returns the version it published.
fn publish(data: &str, endpoint: &str, prefix: &str) -> String {
    let out = batch(data, endpoint, prefix).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "batch failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    published_version(&text).unwrap_or_else(|| panic!("no version in:\n{text}"))
}

/// The real function binary serving HTTP on a free loopback port, reading the store
/// through `s3_endpoint` and checking for new versions every second.
fn function(s3_endpoint: &str, prefix: &str) -> (Running, SocketAddr) {
    let mut cmd = Command::new(binary("kindred-predict"));
    cmd.args(["--store", &format!("s3://{BUCKET}/{prefix}")])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--refresh-seconds",
            "1",
            "--log-format",
            "json",
        ])
        .env_remove("AWS_LAMBDA_RUNTIME_API");
    cmd.env_remove("KINDRED_STORE")
        .envs(aws_env(s3_endpoint))
        .env("KINDRED_LOG", "info");
    let mut running = Running::start(cmd);
    let serving = running.wait_for_log("serving", LONG);
    let addr = serving["fields"]["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("address in the serving log line");
    (running, addr)
}

fn predict(addr: SocketAddr, handle: u64) -> kindred_e2e::Response {
    exchange(
        addr,
        "POST",
        "/predict",
        Some("application/json"),
        &format!("{{\"user_handle\": {handle}}}"),
        Duration::from_secs(60),
    )
}

/// Requests on a background thread until finished: every answer's status and version.
struct Traffic {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<(u16, String)>>>,
    count: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(addr: SocketAddr) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let (s, a, c) = (stop.clone(), answers.clone(), count.clone());
        let thread = std::thread::spawn(move || {
            let mut handle = 1;
            while !s.load(Ordering::Relaxed) {
                let r = predict(addr, handle);
                handle = handle % USERS + 1;
                let version = r.json()["model_version"].as_str().unwrap_or("").to_owned();
                let detail = if r.status == 200 { version } else { r.body };
                a.lock().unwrap().push((r.status, detail));
                c.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Traffic {
            stop,
            answers,
            count,
            thread: Some(thread),
        }
    }

    /// Waits until `n` more requests have been answered.
    fn wait_answers(&self, n: usize) {
        let target = self.count.load(Ordering::Relaxed) + n;
        eventually(LONG, "answers", || {
            (self.count.load(Ordering::Relaxed) >= target).then_some(())
        });
    }

    /// Stops; asserts every answer was 200; returns the versions that answered.
    fn finish(mut self) -> BTreeSet<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("traffic thread");
        let answers = self.answers.lock().unwrap();
        let failed: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
        assert!(failed.is_empty(), "failed requests: {failed:?}");
        assert!(!answers.is_empty());
        answers.iter().map(|(_, v)| v.clone()).collect()
    }
}

/// Keys on the store's bucket that start with `key_prefix`.
async fn list_keys(store: &S3Store, key_prefix: String) -> Vec<String> {
    let listed = store
        .client()
        .list_objects_v2()
        .bucket(store.bucket())
        .prefix(key_prefix)
        .send()
        .await
        .unwrap();
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

/// Names of the objects under `<prefix>/models/<version>/`.
async fn objects_of(store: &S3Store, prefix: &str, version: &str) -> Vec<String> {
    let key = registry::version_key(version, "");
    let keys = list_keys(store, format!("{prefix}/{key}")).await;
    keys.iter()
        .filter_map(|k| k.rsplit('/').next().map(str::to_owned))
        .collect()
}

/// Versions with at least one object in the store.
async fn versions(store: &S3Store, prefix: &str) -> BTreeSet<String> {
    let keys = list_keys(store, format!("{prefix}/models/")).await;
    keys.iter()
        .filter_map(|k| k.split('/').rev().nth(1).map(str::to_owned))
        .collect()
}

#[test]
#[ignore = "needs LocalStack S3: run ./dev test"]
fn a_batch_killed_at_any_point_of_its_publish_never_changes_what_is_served() {
    let Setup {
        endpoint,
        rt,
        prefix,
        store,
        data,
        v1,
        dir: _data_dir,
    } = given_v1_published("killed");
    let (mut server, addr) = function(&endpoint, &prefix);
    let traffic = Traffic::start(addr);
    traffic.wait_answers(5);
    // when a batch, whose S3 answers a proxy holds for 250 ms each (a window between its
    // writes), is killed (SIGKILL) as soon as the k-th object of its new version appears
    // in S3, for k from 1 to 5 (four artifacts and the manifest), and once more as soon
    // as it moves the pointer,
    let slow = FaultProxy::start(upstream(&endpoint));
    slow.set(ProxyMode::Delay(Duration::from_millis(250)));
    let mut current = v1.clone();
    let mut stopped_at = Vec::new();
    for k in 1..=6usize {
        let before = rt.block_on(versions(&store, &prefix));
        let mut run = Running::start(batch(&data, &slow.endpoint(), &prefix));
        let seen = loop {
            let new: Vec<String> = rt
                .block_on(versions(&store, &prefix))
                .difference(&before)
                .cloned()
                .collect();
            let written = match new.first() {
                Some(v) => rt.block_on(objects_of(&store, &prefix, v)).len(),
                None => 0,
            };
            let pointer_moved = rt
                .block_on(registry::read_pointer(&store))
                .unwrap()
                .is_some_and(|(p, _)| p.version != current);
            let due = if k <= 5 { written >= k } else { pointer_moved };
            if due || run.exited() {
                run.kill();
                break (written, pointer_moved);
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        stopped_at.push(seen);
        // then the pointer names a complete version that loads and verifies: the previous
        // one, unless the kill came after the pointer moved; and the function serves it.
        let model = rt.block_on(registry::load_current(&store)).unwrap();
        let now = model.manifest.version.clone();
        if now != current {
            current = now;
        }
        eventually(LONG, "the function serving the current version", || {
            (predict(addr, 5).json()["model_version"] == current.as_str()).then_some(())
        });
    }
    eprintln!("kills at (objects written, pointer moved): {stopped_at:?}");
    let inside: BTreeSet<usize> = stopped_at
        .iter()
        .filter(|s| s.0 < 5 && !s.1)
        .map(|s| s.0)
        .collect();
    assert!(
        inside.len() >= 3,
        "kills landed at fewer than 3 points inside a publish: {stopped_at:?}"
    );
    // and the next run publishes normally and the function picks it up.
    let last = publish(&data, &endpoint, &prefix);
    eventually(LONG, "the function serving the new version", || {
        let r = predict(addr, 3);
        (r.status == 200 && r.json()["model_version"] == last.as_str()).then_some(())
    });
    traffic.wait_answers(20);
    let served = traffic.finish();
    for v in &served {
        let loads = rt.block_on(registry::load_version(&store, v, None));
        assert!(
            loads.is_ok(),
            "served {v}, which does not load: {:?}",
            loads.err()
        );
    }
    assert!(served.contains(&v1) && served.contains(&last), "{served:?}");
    assert!(
        server
            .logs("refusing model version that failed verification")
            .is_empty(),
        "the function saw a partial version:\n{}",
        server.output()
    );
    server.stop();
}

#[test]
#[ignore = "needs LocalStack S3: run ./dev test"]
fn two_batches_publishing_at_once_end_with_one_consistent_current_version() {
    let Setup {
        endpoint,
        rt,
        prefix,
        store,
        data,
        v1,
        dir: _data_dir,
    } = given_v1_published("race");
    for round in 0..2 {
        // Given a current version, when two batches train and publish at the same time,
        let mut runs = [
            Running::start(batch(&data, &endpoint, &prefix)),
            Running::start(batch(&data, &endpoint, &prefix)),
        ];
        let outcomes: Vec<(bool, String)> = runs
            .iter_mut()
            .map(|r| (r.wait_exit(LONG).success(), r.output()))
            .collect();
        // then at least one succeeds, and one that did not says it lost the race,
        let mut candidates = Vec::new();
        for (ok, output) in &outcomes {
            if *ok {
                candidates.push(published_version(output).expect("published version"));
            } else {
                assert!(
                    output.contains("refusing to replace current version")
                        || output.contains("lost the race to publish"),
                    "round {round}: a batch failed for another reason:\n{output}"
                );
            }
        }
        assert!(
            !candidates.is_empty(),
            "round {round}: both failed: {outcomes:?}"
        );
        // and the pointer names the newest published version, complete and verified.
        let (pointer, _) = rt
            .block_on(registry::read_pointer(&store))
            .unwrap()
            .unwrap();
        assert_eq!(
            Some(&pointer.version),
            candidates.iter().max(),
            "round {round}"
        );
        assert!(pointer.version > v1);
        let model = rt.block_on(registry::load_current(&store)).unwrap();
        assert_eq!(model.manifest.version, pointer.version);
        eprintln!(
            "round {round}: {} succeeded, {} reported a lost race",
            candidates.len(),
            2 - candidates.len()
        );
    }
}

#[test]
#[ignore = "needs LocalStack S3: run ./dev test"]
fn slow_or_unreachable_s3_is_ridden_out_warm_and_gives_503_then_recovery_cold() {
    let Setup {
        endpoint,
        prefix,
        data,
        v1,
        dir: _data_dir,
        ..
    } = given_v1_published("slow");

    // Given the function reads S3 through a proxy and is warm on v1,
    let proxy = FaultProxy::start(upstream(&endpoint));
    let (mut warm, addr) = function(&proxy.endpoint(), &prefix);
    assert_eq!(predict(addr, 1).json()["model_version"], v1.as_str());
    let traffic = Traffic::start(addr);
    // when S3 answers 1.5 s late per chunk and a new version is published meanwhile,
    proxy.set(ProxyMode::Delay(Duration::from_millis(1500)));
    let v2 = publish(&data, &endpoint, &prefix);
    traffic.wait_answers(100);
    // then every request is still answered (by v1 while v2 crawls in),
    // and when S3 stops answering at all, requests are still answered,
    proxy.set(ProxyMode::Refuse);
    traffic.wait_answers(100);
    // and once S3 is back, v2 is picked up without a failed request.
    proxy.set(ProxyMode::Pass);
    eventually(LONG, "v2 served after S3 came back", || {
        (predict(addr, 2).json()["model_version"] == v2.as_str()).then_some(())
    });
    traffic.wait_answers(20);
    let served = traffic.finish();
    assert!(served.contains(&v1), "{served:?}");
    assert!(served.iter().all(|v| *v == v1 || *v == v2), "{served:?}");
    warm.stop();

    // Given S3 unreachable, when a cold function gets a request, then it is a 503 with a
    // retry hint and no internal detail,
    proxy.set(ProxyMode::Refuse);
    let (mut cold, addr) = function(&proxy.endpoint(), &prefix);
    let r = predict(addr, 1);
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.header("retry-after").is_some(), "{r:?}");
    assert!(!r.body.contains(&proxy.addr.to_string()), "{r:?}");
    // and once S3 is back (slow), the same instance answers from the current version.
    proxy.set(ProxyMode::Delay(Duration::from_millis(200)));
    let r = eventually(LONG, "a 200 after S3 came back", || {
        let r = predict(addr, 1);
        assert!(r.status == 200 || r.status == 503, "{r:?}");
        (r.status == 200).then_some(r)
    });
    assert_eq!(r.json()["model_version"], v2.as_str());
    cold.stop();
}
