//! Train on generated data, publish, read back with verification; failure modes of publishing.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use kindred_batch::config;
use kindred_batch::train::{self, Trained};
use kindred_core::registry::{self, POINTER};
use kindred_core::store::{LocalStore, Object, ObjectStore, Precondition, S3Store};
use kindred_core::{Error, query, versions};

fn generate(dir: &Path, users: u64, seed: u64) {
    let cfg = kindred_datagen::GenConfig {
        users,
        seed,
        ..Default::default()
    };
    kindred_datagen::generate(&cfg, dir).unwrap();
}

fn train_on(dir: &Path, version: &str) -> Trained {
    let mut cfg = config::default_config(dir.to_owned());
    cfg.rank = 24;
    cfg.recall_sample = 300;
    train::train(&cfg, version).unwrap()
}

/// A real local store that fails the `fail_at`-th write (1-based), as a crash would.
struct CrashingStore {
    inner: LocalStore,
    fail_at: usize,
    writes: AtomicUsize,
}

impl ObjectStore for CrashingStore {
    async fn get(&self, key: &str) -> kindred_core::Result<Option<Object>> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, bytes: Vec<u8>, c: Precondition) -> kindred_core::Result<()> {
        if self.writes.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
            return Err(Error::Store {
                key: key.into(),
                message: "simulated crash".into(),
            });
        }
        self.inner.put(key, bytes, c).await
    }
    fn location(&self) -> String {
        self.inner.location()
    }
}

#[tokio::test]
async fn a_published_model_reads_back_verified_and_answers_queries() {
    // Given a generated data set of 1,500 users, trained and published to a folder,
    let data = tempfile::tempdir().unwrap();
    generate(data.path(), 1500, 1);
    let store_dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(store_dir.path());
    let trained = train_on(data.path(), &registry::new_version_name());
    assert!(
        trained.summary.recall_at_10 >= 0.9,
        "recall {}",
        trained.summary.recall_at_10
    );
    assert!(trained.summary.explained_variance > 0.0 && trained.summary.explained_variance <= 1.0);
    let published = registry::publish(&store, trained.manifest, trained.artifacts)
        .await
        .unwrap();
    assert_eq!(published.previous, None);
    // when the current version is loaded,
    let model = registry::load_current(&store).await.unwrap();
    // then it is the published one, every artifact verified against the manifest,
    assert_eq!(model.manifest.version, published.version);
    let names: Vec<&str> = model
        .manifest
        .artifacts
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "users.bin",
            "index.bin",
            "projection.bin",
            "courses.bin",
            "report.html"
        ]
    );
    assert!(
        model.projection().is_some(),
        "the fold-in projection is loaded"
    );
    // with the course table: every user's courses, each course with its tags.
    let courses = model.courses().expect("the course table is loaded");
    assert!(courses.len() > 1000 && courses.users() > 0);
    let handle = model.users.users.handle(0);
    assert_eq!(
        courses.viewed_by(handle).len() as u32,
        model.users.users.get(0).courses
    );
    // and the HTML report sits next to the artifacts, with its three plots.
    let html = store
        .get(&registry::version_key(&published.version, "report.html"))
        .await
        .unwrap()
        .expect("report.html");
    let html = String::from_utf8(html.bytes.to_vec()).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), 3);
    assert_eq!(model.len() as u64, model.manifest.users);
    assert!(model.len() > 1300);
    // and a query returns ranked neighbours without the user themself.
    let row = model.row_of(model.users.users.handle(0)).unwrap();
    let found = query::similar_users(&model, row, 10);
    assert_eq!(found.len(), 10);
    assert!(found.windows(2).all(|w| w[0].similarity >= w[1].similarity));
    assert!(found.iter().all(|n| n.row != row));
}

#[tokio::test]
async fn an_interrupted_publish_leaves_the_previous_version_current() {
    let data = tempfile::tempdir().unwrap();
    generate(data.path(), 400, 2);
    let store_dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(store_dir.path());
    let first = train_on(data.path(), "20260101T000000000Z-00000001");
    registry::publish(&store, first.manifest, first.artifacts)
        .await
        .unwrap();
    // Writes are users.bin, index.bin, projection.bin, report.html, manifest.json, then
    // the pointer: crash at each.
    for fail_at in 1..=6 {
        let crashing = CrashingStore {
            inner: store.clone(),
            fail_at,
            writes: AtomicUsize::new(0),
        };
        let version = format!("20260101T00000{fail_at}000Z-00000002");
        let next = train_on(data.path(), &version);
        assert!(
            registry::publish(&crashing, next.manifest, next.artifacts)
                .await
                .is_err()
        );
        let (pointer, _) = registry::read_pointer(&store).await.unwrap().unwrap();
        assert_eq!(
            pointer.version, "20260101T000000000Z-00000001",
            "crash at write {fail_at}"
        );
        let model = registry::load_current(&store).await.unwrap();
        assert_eq!(model.manifest.version, "20260101T000000000Z-00000001");
    }
    // The next run succeeds.
    let last = train_on(data.path(), "20260101T000009000Z-00000003");
    let p = registry::publish(&store, last.manifest, last.artifacts)
        .await
        .unwrap();
    assert_eq!(p.previous.as_deref(), Some("20260101T000000000Z-00000001"));
}

#[tokio::test]
async fn a_tampered_artifact_is_refused() {
    let data = tempfile::tempdir().unwrap();
    generate(data.path(), 300, 3);
    let store_dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(store_dir.path());
    let t = train_on(data.path(), &registry::new_version_name());
    let p = registry::publish(&store, t.manifest, t.artifacts)
        .await
        .unwrap();
    let path = store_dir
        .path()
        .join(registry::version_key(&p.version, "users.bin"));
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        registry::load_current(&store).await,
        Err(Error::ChecksumMismatch { .. })
    ));
    std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
    assert!(matches!(
        registry::load_current(&store).await,
        Err(Error::SizeMismatch { .. })
    ));
}

#[tokio::test]
async fn an_older_run_finishing_late_cannot_roll_the_pointer_back() {
    let data = tempfile::tempdir().unwrap();
    generate(data.path(), 300, 4);
    let store_dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(store_dir.path());
    let newer = train_on(data.path(), "20260102T000000000Z-0000000b");
    let older = train_on(data.path(), "20260101T000000000Z-0000000a");
    registry::publish(&store, newer.manifest, newer.artifacts)
        .await
        .unwrap();
    let err = registry::publish(&store, older.manifest, older.artifacts)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StaleVersion { .. }), "{err}");
    let (pointer, _) = registry::read_pointer(&store).await.unwrap().unwrap();
    assert_eq!(pointer.version, "20260102T000000000Z-0000000b");
}

#[test]
fn the_cli_refuses_a_folder_without_required_files_and_publishes_nothing() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("course_tags.csv"),
        "\"course_id\",\"course_tags\"\n\"a\",\"b\"\n",
    )
    .unwrap();
    let store = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kindred-batch"))
        .args(["train", "--data"])
        .arg(data.path())
        .arg("--store")
        .arg(store.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("user_course_views.csv is missing"),
        "{stderr}"
    );
    assert!(!store.path().join(POINTER).exists());
    assert_eq!(std::fs::read_dir(store.path()).unwrap().count(), 0);
}

#[test]
fn the_cli_trains_and_publishes_with_a_summary() {
    let data = tempfile::tempdir().unwrap();
    generate(data.path(), 800, 5);
    let store = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kindred-batch"))
        .args(["train", "--rank", "16", "--data"])
        .arg(data.path())
        .arg("--store")
        .arg(store.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "rows read",
        "explained variance",
        "recall@10",
        "stages:",
        "published: version",
    ] {
        assert!(
            stdout.contains(needle),
            "summary lacks {needle:?}:\n{stdout}"
        );
    }
    assert!(store.path().join(POINTER).exists());

    // With --emf, the run's figures also come as one CloudWatch EMF line: every metric
    // it declares is a number in it, the stages and quality included.
    let data = data.path().to_str().unwrap();
    let stdout = batch(
        &["train", "--rank", "16", "--emf", "--data", data],
        store.path(),
    )
    .unwrap();
    let emf: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(emf.len(), 1, "{stdout}");
    let doc = &emf[0];
    let declared: Vec<&str> = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    for name in [
        "TrainSeconds",
        "IndexSeconds",
        "IndexRecallAt10",
        "CohortPrecisionAt10",
        "HoldoutRecallAt10",
        "Users",
        "SkippedRows",
    ] {
        assert!(declared.contains(&name), "{name} not in {declared:?}");
    }
    for name in &declared {
        assert!(doc[name].is_number(), "{name} in {doc}");
    }
    assert_eq!(doc["Users"], 800);
    assert_eq!(doc["Service"], "kindred-batch");
    // (the hold-out figure's method as a property, for telling fold-in and refit apart),
    assert_eq!(doc["HoldoutMethod"], "fold-in");
    assert!(
        doc["ModelVersion"].as_str().unwrap().starts_with("20"),
        "{doc}"
    );
}

/// Runs `kindred-batch` with `args` on `store`: its stdout, or both streams if it fails.
fn batch(args: &[&str], store: &Path) -> Result<String, String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kindred-batch"))
        .args(args)
        .arg("--store")
        .arg(store)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

#[tokio::test]
async fn versions_roll_back_explicitly_and_prune_spares_the_current_and_previous() {
    // Given three versions published in turn,
    let data = tempfile::tempdir().unwrap();
    generate(data.path(), 600, 8);
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let mut names = Vec::new();
    for _ in 0..3 {
        let t = train_on(data.path(), &registry::new_version_name());
        names.push(
            registry::publish(&store, t.manifest, t.artifacts)
                .await
                .unwrap()
                .version,
        );
    }
    // `versions` lists them oldest first with their users and their hold-out recall,
    // marked as measured by folding in (the default), the newest current and the one
    // before it previous.
    let listed = batch(&["versions"], dir.path()).unwrap();
    let rows: Vec<&str> = listed.lines().filter(|l| l.starts_with("2")).collect();
    assert_eq!(rows.len(), 3, "{listed}");
    for (row, name) in rows.iter().zip(&names) {
        let folded_in = row
            .split_whitespace()
            .any(|cell| cell.ends_with('f') && cell.trim_end_matches('f').parse::<f64>().is_ok());
        assert!(
            row.starts_with(name.as_str()) && row.contains(" 600 ") && folded_in,
            "{listed}"
        );
    }
    assert!(
        rows[2].ends_with("current") && rows[1].ends_with("previous"),
        "{listed}"
    );

    // A rollback to a version that does not exist, or whose artifact was altered, is
    // refused and moves nothing.
    let before = std::fs::read(dir.path().join(POINTER)).unwrap();
    let err = batch(
        &[
            "rollback",
            "--to",
            "20200101T000000000Z-00000000",
            "--reason",
            "x",
        ],
        dir.path(),
    )
    .unwrap_err();
    assert!(err.contains("no complete version"), "{err}");
    let users = dir
        .path()
        .join(registry::version_key(&names[1], "users.bin"));
    let good = std::fs::read(&users).unwrap();
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 1;
    std::fs::write(&users, &bad).unwrap();
    let err = batch(
        &["rollback", "--to", &names[1], "--reason", "x"],
        dir.path(),
    )
    .unwrap_err();
    assert!(err.contains("checksum") || err.contains("SHA-256"), "{err}");
    assert_eq!(std::fs::read(dir.path().join(POINTER)).unwrap(), before);
    std::fs::write(&users, &good).unwrap();

    // When the oldest is made current again with a reason, while a run that started
    // before (after the third was published) is still training,
    let in_flight = registry::next_version_name(&store).await.unwrap();
    assert!(in_flight > names[2]);
    batch(
        &[
            "rollback",
            "--to",
            &names[0],
            "--reason",
            "v3 recommends badly",
        ],
        dir.path(),
    )
    .unwrap();
    // it loads as current, and the move is recorded in the pointer and in the history,
    let model = registry::load_current(&store).await.unwrap();
    assert_eq!(model.manifest.version, names[0]);
    let (pointer, _) = registry::read_pointer(&store).await.unwrap().unwrap();
    let record = pointer.rollback.expect("the pointer records the rollback");
    assert_eq!(
        (record.from.as_str(), record.reason.as_str()),
        (names[2].as_str(), "v3 recommends badly")
    );
    let listed = batch(&["versions"], dir.path()).unwrap();
    assert!(
        listed.contains(&format!(
            "{} -> {} (v3 recommends badly)",
            names[2], names[0]
        )),
        "{listed}"
    );
    // the run in flight may not publish over the rollback,
    let t = train_on(data.path(), &in_flight);
    let refused = registry::publish(&store, t.manifest, t.artifacts).await;
    assert!(
        matches!(refused, Err(Error::StartedBeforeRollback { .. })),
        "{refused:?}"
    );
    assert_eq!(
        registry::load_current(&store)
            .await
            .unwrap()
            .manifest
            .version,
        names[0]
    );
    // and a run started after it publishes and moves the pointer on.
    let next = registry::next_version_name(&store).await.unwrap();
    assert!(next > in_flight && next > record.fence, "{next}");
    let t = train_on(data.path(), &next);
    let fourth = registry::publish(&store, t.manifest, t.artifacts)
        .await
        .unwrap();
    assert_eq!(fourth.previous.as_deref(), Some(names[0].as_str()));
    names.push(fourth.version);

    // Pruning to one version keeps the current (4th) and previous (1st, served before
    // it) ones and removes the others (the 2nd, 3rd and the refused one, written but
    // never current), manifest and artifacts, after a dry run that removes nothing.
    let dry = batch(&["prune", "--keep", "1", "--dry-run"], dir.path()).unwrap();
    assert!(dry.contains("would remove 3 version(s)"), "{dry}");
    assert_eq!(
        std::fs::read_dir(dir.path().join("models"))
            .unwrap()
            .count(),
        5
    );
    let done = batch(&["prune", "--keep", "1"], dir.path()).unwrap();
    for removed in [&names[1], &names[2], &in_flight] {
        assert!(done.contains(removed.as_str()), "{done}");
    }
    let mut left: Vec<String> = std::fs::read_dir(dir.path().join("models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, [names[0].clone(), names[3].clone()]);
    assert_eq!(
        registry::load_current(&store)
            .await
            .unwrap()
            .manifest
            .version,
        names[3]
    );
}

/// Publishing to S3 (LocalStack): needs KINDRED_TEST_S3_ENDPOINT; `./dev test` starts LocalStack.
#[tokio::test]
#[ignore = "needs LocalStack S3: run ./dev test"]
async fn publishes_to_s3_and_reads_back() {
    let endpoint = std::env::var("KINDRED_TEST_S3_ENDPOINT")
        .expect("KINDRED_TEST_S3_ENDPOINT (./dev test sets it)");
    // (A client built for the endpoint, not process variables: the test binary is
    // threaded. The binaries' reading of AWS_ENDPOINT_URL is tested end to end in
    // tests/tests/local_cloud.rs.)
    let bucket = format!("kindred-test-{}", std::process::id());
    let store = S3Store::at_endpoint(&endpoint, &bucket, "batch-it");
    store
        .client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    // Given nothing published, the store has no model.
    assert!(matches!(
        registry::load_current(&store).await,
        Err(Error::NoModel)
    ));
    let data = tempfile::tempdir().unwrap();
    generate(data.path(), 600, 6);
    // When two versions are published one after the other,
    let v1 = train_on(data.path(), &registry::new_version_name());
    let p1 = registry::publish(&store, v1.manifest, v1.artifacts)
        .await
        .unwrap();
    let v2 = train_on(data.path(), &registry::new_version_name());
    let p2 = registry::publish(&store, v2.manifest, v2.artifacts)
        .await
        .unwrap();
    // then the second replaced the first and reads back verified,
    assert_eq!(p2.previous.as_deref(), Some(p1.version.as_str()));
    let model = registry::load_current(&store).await.unwrap();
    assert_eq!(model.manifest.version, p2.version);
    // and S3's conditional write refuses a stale entity tag.
    let (_, etag) = registry::read_pointer(&store).await.unwrap().unwrap();
    store
        .put(
            POINTER,
            b"{}".to_vec(),
            Precondition::IfMatch("\"0000\"".into()),
        )
        .await
        .unwrap_err();
    store
        .put(POINTER, b"{}".to_vec(), Precondition::IfAbsent)
        .await
        .unwrap_err();
    let (_, etag_after) = registry::read_pointer(&store).await.unwrap().unwrap();
    assert_eq!(etag, etag_after);
    // The CLI publishes a third version with the s3:// location.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kindred-batch"))
        .args(["train", "--rank", "16", "--data"])
        .arg(data.path())
        .args(["--store", &format!("s3://{bucket}/batch-it")])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let model = registry::load_current(&store).await.unwrap();
    assert_ne!(model.manifest.version, p2.version);
    let third = model.manifest.version.clone();

    // S3 lists the three versions, rolls back with its entity tags, and prunes: keeping
    // one removes only the oldest (the second is the previous one) and every object of it.
    let (listed, _) = versions::list(&store).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [p1.version.as_str(), p2.version.as_str(), third.as_str()]
    );
    assert!(
        listed
            .iter()
            .all(|v| v.manifest().is_some() && v.objects.len() >= 4)
    );
    versions::rollback(&store, &p2.version, "test")
        .await
        .unwrap();
    assert_eq!(
        registry::load_current(&store)
            .await
            .unwrap()
            .manifest
            .version,
        p2.version
    );
    versions::rollback(&store, &third, "test").await.unwrap();
    let pruned = versions::prune(&store, 1, false).await.unwrap();
    assert_eq!(pruned.removed, std::slice::from_ref(&p1.version));
    let left = store.list("models/").await.unwrap();
    assert!(
        !left.is_empty() && left.iter().all(|k| !k.contains(&p1.version)),
        "{left:?}"
    );
    assert_eq!(store.list("history/").await.unwrap().len(), 2);
}
