//! Kindred in the local cloud, as it runs in AWS: the batch publishes to S3 (LocalStack on
//! the host) and the predict function runs under `cargo lambda watch`, cargo-lambda's
//! Lambda emulator, reached over HTTP through its Function URL endpoint and with
//! `cargo lambda invoke` and API Gateway events.
//!
//! Needs LocalStack and cargo-lambda: `./dev test` installs both, starts a LocalStack
//! (`KINDRED_TEST_S3_ENDPOINT`) and names LocalStack's Python (`KINDRED_LOCALSTACK_PYTHON`)
//! for the test that stops and restarts one of its own.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kindred_core::registry::{self, POINTER};
use kindred_core::store::{ObjectStore, Precondition, S3Store};
use kindred_e2e::events::{Source, event_json};
use kindred_e2e::{
    EMULATED, LambdaWatch, LocalStack, Response, aws_env, eventually, is_emulator_error,
    primary_cohorts, published_version, run_ok, run_ok_with_env, unique_prefix,
};
use serde_json::Value;

const BUCKET: &str = "kindred-test";
const USERS: u64 = 2000;

/// Generated data with planted cohorts: the folder and each user's cohort.
struct Data {
    _dir: tempfile::TempDir,
    path: String,
    cohort: HashMap<u64, u32>,
}

fn generate(seed: u64) -> Data {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").to_str().unwrap().to_owned();
    run_ok(
        "kindred-datagen",
        &[
            "--out",
            &path,
            "--users",
            &USERS.to_string(),
            "--seed",
            &seed.to_string(),
            "--cohorts",
            "20",
        ],
    );
    let cohort = primary_cohorts(Path::new(&path));
    Data {
        _dir: dir,
        path,
        cohort,
    }
}

/// Runs `kindred-batch train` into `s3://kindred-test/<prefix>` at `endpoint`; returns
/// the published version.
fn train(data: &Data, endpoint: &str, prefix: &str) -> String {
    let store = format!("s3://{BUCKET}/{prefix}");
    let out = run_ok_with_env(
        "kindred-batch",
        &[
            "train", "--data", &data.path, "--store", &store, "--rank", "24",
        ],
        &aws_env(endpoint),
    );
    published_version(&out).unwrap_or_else(|| panic!("no published version in:\n{out}"))
}

/// Starts the function under `cargo lambda watch`, reading `s3://kindred-test/<prefix>`.
fn watch(endpoint: &str, prefix: &str) -> LambdaWatch {
    let store = format!("s3://{BUCKET}/{prefix}");
    let mut env = aws_env(endpoint);
    env.extend([
        ("KINDRED_STORE", store.as_str()),
        ("KINDRED_REFRESH_SECONDS", "1"),
    ]);
    LambdaWatch::start(&env)
}

fn predict(function: &LambdaWatch, handle: u64) -> Response {
    function.request(
        "POST",
        "/predict",
        &format!("{{\"user_handle\": {handle}}}"),
    )
}

/// The course ids `handle` viewed, from the generated `user_course_views.csv`.
fn viewed_courses(data: &Data, handle: u64) -> std::collections::HashSet<String> {
    let views = std::fs::read_to_string(Path::new(&data.path).join("user_course_views.csv"))
        .expect("views");
    let user = handle.to_string();
    views
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .map(|f| f.trim_matches('"'))
                .collect::<Vec<_>>()
        })
        .filter(|f| f[0] == user)
        .map(|f| f[2].to_owned())
        .collect()
}

/// Checks a 200 answer for `handle` from `version`: ten ranked neighbours, not the user.
/// Returns how many of them share the user's cohort.
fn check_answer(body: &Value, handle: u64, version: &str, data: &Data) -> usize {
    assert_eq!(body["user_handle"], handle, "{body}");
    assert_eq!(body["model_version"], version, "{body}");
    let similar = body["similar_users"].as_array().expect("similar_users");
    assert_eq!(similar.len(), 10, "{body}");
    let mut same = 0;
    let mut last = f64::INFINITY;
    for (i, s) in similar.iter().enumerate() {
        assert_eq!(s["rank"], i + 1, "{body}");
        let sim = s["similarity"].as_f64().unwrap();
        assert!(sim <= last, "not ranked by similarity: {body}");
        last = sim;
        let other = s["user_handle"].as_u64().unwrap();
        assert_ne!(other, handle);
        same += usize::from(data.cohort[&other] == data.cohort[&handle]);
    }
    same
}

/// How long the traffic waits for one answer before it counts the request as lost.
const UNANSWERED_AFTER: Duration = Duration::from_secs(15);

/// Requests in a loop on a background thread until stopped: records answers that are not
/// 200 (the emulator's own failures apart) and the versions that answered.
struct Traffic {
    stop: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<String>>>,
    answered: Arc<AtomicUsize>,
    emulator_errors: Arc<AtomicUsize>,
    unanswered: Arc<Mutex<Vec<String>>>,
    versions: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(function: &LambdaWatch) -> Traffic {
        let addr = function.addr;
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let answered = Arc::new(AtomicUsize::new(0));
        let emulator_errors = Arc::new(AtomicUsize::new(0));
        let unanswered = Arc::new(Mutex::new(Vec::new()));
        let versions = Arc::new(Mutex::new(Vec::<String>::new()));
        let (s, f, a, e, u, v) = (
            stop.clone(),
            failures.clone(),
            answered.clone(),
            emulator_errors.clone(),
            unanswered.clone(),
            versions.clone(),
        );
        let thread = std::thread::spawn(move || {
            let mut handle = 1;
            while !s.load(Ordering::Relaxed) {
                let sent = kindred_e2e::try_exchange(
                    addr,
                    "POST",
                    &format!("/lambda-url/{EMULATED}/predict"),
                    Some("application/json"),
                    &format!("{{\"user_handle\": {handle}}}"),
                    UNANSWERED_AFTER,
                );
                handle = handle % USERS + 1;
                a.fetch_add(1, Ordering::Relaxed);
                let r = match sent {
                    Ok(r) => r,
                    Err(err) => {
                        u.lock().unwrap().push(format!("handle {handle}: {err}"));
                        continue;
                    }
                };
                if is_emulator_error(&r) {
                    e.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if r.status != 200 {
                    f.lock().unwrap().push(format!("{}: {}", r.status, r.body));
                    continue;
                }
                let version = r.json()["model_version"].as_str().unwrap().to_owned();
                let mut seen = v.lock().unwrap();
                if seen.last() != Some(&version) {
                    seen.push(version);
                }
            }
        });
        Traffic {
            stop,
            failures,
            answered,
            emulator_errors,
            unanswered,
            versions,
            thread: Some(thread),
        }
    }

    fn latest(&self) -> Option<String> {
        self.versions.lock().unwrap().last().cloned()
    }

    /// Stops the traffic and checks it: no request failed in the function, the emulator
    /// failed or lost at most 2% of them, and some were answered. Returns the versions in
    /// the order they answered.
    ///
    /// A request with no response within [`UNANSWERED_AFTER`] is counted with the
    /// emulator's failures: the function answers a warm request from memory in
    /// milliseconds and takes the next invocation right after, so a request that never
    /// comes back was lost between the emulator's Function URL endpoint and its Runtime
    /// API (a CI run at dad0211 saw one). Such losses are printed with both logs.
    fn finish(mut self, function: &LambdaWatch) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("traffic thread");
        let answered = self.answered.load(Ordering::Relaxed);
        let failures = self.failures.lock().unwrap().clone();
        let unanswered = self.unanswered.lock().unwrap().clone();
        let emulator = self.emulator_errors.load(Ordering::Relaxed) + unanswered.len();
        assert!(
            failures.is_empty(),
            "failed requests: {failures:?}\n{}",
            function.output()
        );
        assert!(answered > 0, "no request was answered");
        if !unanswered.is_empty() {
            eprintln!("unanswered requests: {unanswered:?}\n{}", function.output());
        }
        assert!(
            emulator * 50 <= answered,
            "the emulator failed or lost {emulator} of {answered} requests (unanswered: {unanswered:?})\n{}",
            function.output()
        );
        eprintln!("traffic: {answered} requests, {emulator} failed or lost by the emulator");
        self.versions.lock().unwrap().clone()
    }
}

/// Copies the version that `from`'s pointer names into `to` with one byte of `index.bin`
/// flipped, then points `to` at it: what a torn or tampered upload looks like.
async fn copy_corrupted(from: &S3Store, to: &S3Store) -> String {
    let (pointer, _) = registry::read_pointer(from)
        .await
        .unwrap()
        .expect("pointer");
    for name in [
        "users.bin",
        "index.bin",
        "projection.bin",
        "report.html",
        "manifest.json",
    ] {
        let key = registry::version_key(&pointer.version, name);
        let mut bytes = from.get(&key).await.unwrap().expect(name).bytes;
        if name == "index.bin" {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x5a;
        }
        to.put(&key, bytes, Precondition::IfAbsent).await.unwrap();
    }
    let pointer_bytes = from.get(POINTER).await.unwrap().unwrap().bytes;
    to.put(POINTER, pointer_bytes, Precondition::None)
        .await
        .unwrap();
    pointer.version
}

#[test]
#[ignore = "needs LocalStack S3 and cargo-lambda: run ./dev test"]
fn the_function_under_cargo_lambda_serves_s3_models_swaps_warm_and_refuses_corruption() {
    let endpoint = std::env::var("KINDRED_TEST_S3_ENDPOINT")
        .expect("KINDRED_TEST_S3_ENDPOINT (./dev test sets it)");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let prefix = unique_prefix("e2e", "serve");
    let live = S3Store::at_endpoint(&endpoint, BUCKET, &prefix);
    runtime.block_on(live.create_bucket_if_missing()).unwrap();
    let data = generate(11);

    // 1. Given the batch has published a model to s3://kindred-test/<prefix> on LocalStack,
    let v1 = train(&data, &endpoint, &prefix);

    // 2. when the function runs under cargo lambda watch against that store,
    let mut function = watch(&endpoint, &prefix);
    // then POST /predict through the Function URL endpoint answers with ranked neighbours,
    // mostly from the user's planted cohort (chance is about 0.05),
    let (mut same, mut total) = (0, 0);
    for handle in (1..=USERS).step_by(101) {
        let r = predict(&function, handle);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"));
        same += check_answer(&r.json(), handle, &v1, &data);
        total += 10;
    }
    let precision = same as f64 / total as f64;
    eprintln!("cohort precision@10 {precision} ({same} of {total})");
    // (Measured at 4c04b70: 0.835, 167 of 200; chance is about 0.05.)
    assert!(precision >= 0.75, "cohort precision@10 {precision}");
    // POST /recommend answers with ranked courses the user has not viewed, each taken by
    // at least one of the user's similar learners,
    for handle in (1..=USERS).step_by(151) {
        let r = function.request(
            "POST",
            "/recommend",
            &format!("{{\"user_handle\": {handle}, \"k\": 5}}"),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let body = r.json();
        assert_eq!(body["model_version"], v1.as_str(), "{body}");
        let viewed = viewed_courses(&data, handle);
        let recs = body["recommendations"].as_array().expect("recommendations");
        assert_eq!(recs.len(), 5, "{body}");
        for (i, c) in recs.iter().enumerate() {
            assert_eq!(c["rank"], i + 1, "{body}");
            let course = c["course_id"].as_str().unwrap();
            assert!(!viewed.contains(course), "{handle} viewed {course}: {body}");
            assert!(
                c["because"]["similar_learners"].as_u64().unwrap() >= 1,
                "{body}"
            );
        }
    }
    // bad requests are 4xx JSON errors through the emulator too,
    let r = function.request("POST", "/predict", r#"{"user_handle": "one"}"#);
    assert_eq!(
        (r.status, r.json()["error"].is_string()),
        (400, true),
        "{r:?}"
    );
    let r = predict(&function, 987_654_321);
    assert_eq!(
        (r.status, r.json()["error"].is_string()),
        (404, true),
        "{r:?}"
    );
    // and `cargo lambda invoke` with API Gateway REST (v1) and HTTP API (v2) events
    // answers in the API Gateway response format.
    for source in [Source::RestApi, Source::HttpApi] {
        let body = r#"{"user_handle": 7}"#;
        let event = event_json(
            source,
            "POST",
            "/predict",
            &[("content-type", "application/json")],
            Some(body),
        );
        let out = function.invoke(&event);
        assert_eq!(out["statusCode"], 200, "{source:?}: {out}");
        let answer: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
        check_answer(&answer, 7, &v1, &data);
        let bad = event_json(
            source,
            "POST",
            "/predict",
            &[("content-type", "application/json")],
            Some("{"),
        );
        assert_eq!(function.invoke(&bad)["statusCode"], 400, "{source:?}");
    }
    // Every answer was also written as a CloudWatch EMF line on stdout: by route and
    // status class, with the model version, and the model's load time once.
    let emf: Vec<Value> = function
        .output()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["_aws"]["CloudWatchMetrics"].is_array())
        .collect();
    let of = |class: &str| {
        emf.iter()
            .filter(|l| l["Route"] == "/predict" && l["StatusClass"] == class)
            .count()
    };
    assert!(of("2xx") >= 10 && of("4xx") >= 4, "{emf:?}");
    assert!(
        emf.iter()
            .all(|l| l["Latency"].as_f64().is_some_and(|ms| ms >= 0.0))
    );
    assert!(emf.iter().any(|l| l["ModelVersion"] == v1.as_str()));
    let loads: Vec<&Value> = emf
        .iter()
        .filter(|l| l["ModelLoadTime"].is_number())
        .collect();
    assert_eq!(loads.len(), 1, "{emf:?}");
    // A cacheable question also counts one answer-cache hit or miss (user 7 asked again
    // through the second event source is a hit, the unknown user a miss); a body that
    // does not parse counts neither.
    let counted = |name: &str| emf.iter().filter(|l| l[name] == 1).count();
    assert!(
        counted("AnswerCacheHits") >= 1 && counted("AnswerCacheMisses") >= 1,
        "{emf:?}"
    );
    assert!(
        emf.iter()
            .any(|l| l["StatusClass"] == "4xx" && l.get("AnswerCacheMisses").is_none()),
        "{emf:?}"
    );

    // 3. When a second batch run publishes a new version while requests keep coming,
    let traffic = Traffic::start(&function);
    let v2 = train(&data, &endpoint, &prefix);
    assert!(v2 > v1, "{v2} should sort after {v1}");
    // then the warm function switches to it without a failed request.
    eventually(
        Duration::from_secs(60),
        "the warm function serves v2",
        || (traffic.latest().as_deref() == Some(v2.as_str())).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(traffic.finish(&function), vec![v1.clone(), v2.clone()]);

    // 4. When a version whose index.bin is corrupted in S3 becomes current,
    let staging = S3Store::at_endpoint(&endpoint, BUCKET, &format!("{prefix}-staging"));
    let _ = train(&data, &endpoint, &format!("{prefix}-staging"));
    let traffic = Traffic::start(&function);
    let v3 = runtime.block_on(copy_corrupted(&staging, &live));
    // then the function refuses it, says so, and keeps serving v2 throughout,
    let refusal = eventually(Duration::from_secs(60), "a refusal of v3", || {
        function
            .logs("refusing model version that failed verification")
            .into_iter()
            .find(|e| e["fields"]["version"] == v3.as_str())
    });
    assert_eq!(refusal["fields"]["keeping"], v2.as_str(), "{refusal}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(traffic.finish(&function), vec![v2.clone()]);
    // and the next good version published after it is picked up.
    let v4 = train(&data, &endpoint, &prefix);
    eventually(Duration::from_secs(60), "the function serves v4", || {
        let r = predict(&function, 3);
        assert_eq!(r.status, 200, "{}", r.body);
        (r.json()["model_version"] == v4.as_str()).then_some(())
    });

    // 5. When `kindred-batch update` folds in exact copies of three users under new
    // handles (the unchanged artifacts copied inside S3),
    let twins = [5u64, 50, 500];
    let delta = write_twins(&data, &twins, 1_000_000);
    let out = run_ok_with_env(
        "kindred-batch",
        &[
            "update",
            "--data",
            delta.path().to_str().unwrap(),
            "--store",
            &format!("s3://{BUCKET}/{prefix}"),
        ],
        &aws_env(&endpoint),
    );
    assert!(out.contains("3 new, 0 changed"), "{out}");
    let v5 = published_version(&out).unwrap_or_else(|| panic!("no version in:\n{out}"));
    // then the function serves the new users, each with its original among its nearest.
    for h in twins {
        let body = eventually(Duration::from_secs(60), "the function serves v5", || {
            let r = predict(&function, 1_000_000 + h);
            (r.status == 200).then(|| r.json())
        });
        assert_eq!(body["model_version"], v5.as_str(), "{body}");
        let near: Vec<u64> = body["similar_users"].as_array().unwrap()[..3]
            .iter()
            .map(|s| s["user_handle"].as_u64().unwrap())
            .collect();
        assert!(near.contains(&h), "{h}'s twin found {near:?}");
        // and recommends courses from the updated course table: none its original viewed.
        let r = function.request(
            "POST",
            "/recommend",
            &format!("{{\"user_handle\": {}, \"k\": 5}}", 1_000_000 + h),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let viewed = viewed_courses(&data, h);
        let recs = r.json()["recommendations"].as_array().unwrap().clone();
        assert_eq!(recs.len(), 5, "{}", r.body);
        for c in recs {
            assert!(!viewed.contains(c["course_id"].as_str().unwrap()), "{c}");
        }
    }
    function.stop();
}

/// A delta folder holding every row of `users`, under the handles `offset + handle`.
fn write_twins(data: &Data, users: &[u64], offset: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "user_course_views.csv",
        "user_interests.csv",
        "user_assessment_scores.csv",
    ] {
        let text = std::fs::read_to_string(Path::new(&data.path).join(file)).unwrap();
        let mut lines = text.lines();
        let mut out = vec![lines.next().unwrap().to_owned()];
        for line in lines {
            let (handle, rest) = line.split_once(',').unwrap();
            if let Ok(h) = handle.trim_matches('"').parse::<u64>()
                && users.contains(&h)
            {
                out.push(format!("{},{rest}", h + offset));
            }
        }
        std::fs::write(dir.path().join(file), out.join("\n") + "\n").unwrap();
    }
    dir
}

#[test]
#[ignore = "needs LocalStack and cargo-lambda: run ./dev test"]
fn a_cold_function_answers_503_while_localstack_is_down_and_recovers_when_it_is_back() {
    let data = generate(12);
    let prefix = "cold";
    // Given a model published to a LocalStack of this test's own,
    let mut localstack = LocalStack::start();
    let endpoint = localstack.endpoint();
    let store = S3Store::at_endpoint(&endpoint, BUCKET, prefix);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(store.create_bucket_if_missing()).unwrap();
    train(&data, &endpoint, prefix);

    // when LocalStack stops and then a cold function is asked for a prediction,
    localstack.stop();
    let mut function = watch(&endpoint, prefix);
    // then it answers 503 with a retry hint (twice: it does not give up or crash),
    for _ in 0..2 {
        let r = predict(&function, 1);
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(r.header("retry-after").is_some(), "{r:?}");
        assert_eq!(r.json()["error"], "model unavailable", "{r:?}");
        assert!(
            !r.body.contains(&endpoint),
            "the endpoint leaked: {}",
            r.body
        );
    }
    assert!(
        !function.logs("model store unavailable").is_empty(),
        "{}",
        function.output()
    );

    // and once LocalStack is back (community LocalStack keeps S3 in memory, so the
    // schedule publishes again), the same function instance answers.
    localstack.resume();
    runtime.block_on(store.create_bucket_if_missing()).unwrap();
    let version = train(&data, &endpoint, prefix);
    let body = eventually(Duration::from_secs(60), "recovery after the outage", || {
        let r = predict(&function, 1);
        (r.status == 200).then(|| r.json())
    });
    check_answer(&body, 1, &version, &data);
    function.stop();
    localstack.stop();
}
