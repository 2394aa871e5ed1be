//! Helpers shared by the integration tests: a small trained model, publishing it under
//! chosen version names, stores that can be observed and broken, and log capture.
#![allow(dead_code)] // Each test binary uses a different subset.

pub mod process;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kindred_batch::config;
use kindred_batch::train::{self, Trained};
use kindred_core::registry::{self, POINTER, Published};
use kindred_core::store::{LocalStore, Object, ObjectStore, Precondition};
use kindred_core::{Error, Model};

/// Users in the test data set.
pub const USERS: u64 = 500;

/// The test data set (500 generated users), trained once per test binary.
///
/// Every version the tests publish carries these artifacts under its own name, so
/// versions differ by name only: `model_version` in answers tells them apart.
pub fn trained() -> &'static Trained {
    static TRAINED: OnceLock<Trained> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let data = data_dir();
        let config = kindred_datagen::GenConfig {
            users: USERS,
            seed: 1,
            ..Default::default()
        };
        kindred_datagen::generate(&config, data).expect("generate test data");
        let mut cfg = config::default_config(data.to_owned());
        cfg.rank = 16;
        cfg.recall_sample = 200;
        train::train(&cfg, &version(0)).expect("train test model")
    })
}

/// The folder holding the test data set's CSVs (kept for the whole test binary).
pub fn data_dir() -> &'static Path {
    static DATA: OnceLock<tempfile::TempDir> = OnceLock::new();
    DATA.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

/// A version name that sorts by `n` (as the registry requires), unique to `tag`.
pub fn version_for(tag: u32, n: u32) -> String {
    format!("20260101T{n:06}000Z-{tag:08x}")
}

/// `version_for(0, n)`.
pub fn version(n: u32) -> String {
    version_for(0, n)
}

/// Publishes the test model under `version`.
pub async fn publish<S: ObjectStore>(store: &S, version: &str) -> Published {
    let t = trained();
    let mut manifest = t.manifest.clone();
    manifest.version = version.to_owned();
    let artifacts = t
        .artifacts
        .iter()
        .map(|(name, bytes)| (name.clone(), bytes.clone()))
        .collect();
    registry::publish(store, manifest, artifacts)
        .await
        .expect("publish")
}

/// The test model as loaded from a store, for looking up handles and expectations.
pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let t = trained();
        let bytes = |name: &str| &t.artifacts.iter().find(|(n, _)| *n == name).expect(name).1;
        let users = kindred_core::codec::decode("users.bin", bytes("users.bin")).expect("users");
        let index = kindred_core::codec::decode("index.bin", bytes("index.bin")).expect("index");
        let projection = kindred_core::codec::decode("projection.bin", bytes("projection.bin"))
            .expect("projection");
        let courses =
            kindred_core::codec::decode("courses.bin", bytes("courses.bin")).expect("courses");
        Model::from_parts(t.manifest.clone(), users, index)
            .and_then(|m| m.with_projection(projection))
            .and_then(|m| m.with_courses(courses))
            .expect("model")
    })
}

/// A handle the model knows (the `i`-th user of the table).
pub fn known_handle(i: usize) -> u64 {
    model().users.users.handle(i as u32)
}

/// The row of the `i`-th user of the table who viewed courses (rows follow the index's
/// point order, which is its builder's: a test needing a viewer must not assume one).
pub fn viewer_row(i: usize) -> usize {
    let m = model();
    let courses = m.courses().expect("the test model has a course table");
    (0..m.users.users.len())
        .filter(|&r| {
            let user = m.users.users.get(r as u32);
            !user.top_tags.is_empty() && !courses.viewed_by(user.handle).is_empty()
        })
        .nth(i)
        .expect("enough viewers in the test model")
}

/// A handle no model knows.
pub const UNKNOWN_HANDLE: u64 = 987_654_321;

/// Rewrites the pointer to name `version` with the digest of its manifest as stored now,
/// as a publisher of an edited manifest would.
pub fn repoint(root: &Path, version: &str) {
    let manifest = std::fs::read(root.join(registry::version_key(version, "manifest.json")))
        .expect("manifest");
    let pointer = registry::Pointer {
        version: version.to_owned(),
        manifest_sha256: kindred_core::codec::sha256_hex(&manifest),
        updated_at: registry::now_rfc3339(),
        previous: None,
        rollback: None,
    };
    std::fs::write(
        root.join(POINTER),
        serde_json::to_vec_pretty(&pointer).unwrap(),
    )
    .expect("write pointer");
}

/// A local folder store that counts reads, can be made to fail like an unreachable
/// backend, and can delay reads.
#[derive(Clone)]
pub struct TestStore {
    inner: LocalStore,
    gets: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    delay: Arc<Mutex<Duration>>,
}

impl TestStore {
    /// A store over the folder `root`.
    pub fn new(root: &Path) -> Self {
        TestStore {
            inner: LocalStore::new(root),
            gets: Arc::default(),
            down: Arc::default(),
            delay: Arc::default(),
        }
    }

    /// The real store underneath (for publishing past the failures).
    pub fn inner(&self) -> &LocalStore {
        &self.inner
    }

    /// Reads so far.
    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    /// Makes every read fail (true) or work again (false).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Delays every read by `d`.
    pub fn set_delay(&self, d: Duration) {
        *self.delay.lock().unwrap() = d;
    }
}

/// A message from a backend that must never reach a client.
pub const SECRET_DETAIL: &str = "connect error to 10.1.2.3:9000 (credentials AKIAEXAMPLE)";

impl ObjectStore for TestStore {
    async fn get(&self, key: &str) -> kindred_core::Result<Option<Object>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::Store {
                key: key.into(),
                message: SECRET_DETAIL.into(),
            });
        }
        self.inner.get(key).await
    }

    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        condition: Precondition,
    ) -> kindred_core::Result<()> {
        self.inner.put(key, bytes, condition).await
    }

    fn location(&self) -> String {
        self.inner.location()
    }
}

/// Log lines written so far by this test binary (JSON, one event a line).
pub fn logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

/// Installs a global subscriber writing JSON logs into [`logs`] (once per test binary).
pub fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(|| LogWriter)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
    });
}

fn log_buffer() -> &'static Mutex<Vec<u8>> {
    static BUFFER: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    BUFFER.get_or_init(Mutex::default)
}

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        log_buffer().lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Checks the shape every `POST /predict` answer must have for `handle` and `k` under the
/// default disclosure (reasons): ranked neighbours with `because`, and no learner's summary.
pub fn assert_prediction(body: &serde_json::Value, handle: u64, k: usize, version: &str) {
    assert_eq!(body["user_handle"], handle, "{body}");
    assert_eq!(body["model_version"], version, "{body}");
    assert!(body.get("summary").is_none(), "{body}");
    let similar = body["similar_users"]
        .as_array()
        .expect("similar_users is an array");
    assert_eq!(similar.len(), k, "{body}");
    let sims: Vec<f64> = similar
        .iter()
        .map(|u| u["similarity"].as_f64().expect("similarity is a number"))
        .collect();
    assert!(
        sims.windows(2).all(|w| w[0] >= w[1]),
        "not ranked by descending similarity: {sims:?}"
    );
    assert!(sims.iter().all(|s| (-1.0..=1.0).contains(s)), "{sims:?}");
    for (i, u) in similar.iter().enumerate() {
        assert_eq!(u["rank"], i + 1);
        assert_ne!(
            u["user_handle"], handle,
            "the query user is in its own list"
        );
        assert!(u["because"].is_array(), "{u}");
        assert!(u.get("summary").is_none(), "{u}");
    }
}

/// A store that, the first time the pointer is written with a condition, first publishes
/// `second` through the store it wraps: another publisher slipping in between a
/// publish's pointer read and its pointer write, at exactly that point.
pub struct Interleaved<S> {
    /// The wrapped store.
    pub inner: S,
    second: std::sync::Mutex<Option<String>>,
}

impl<S: ObjectStore> Interleaved<S> {
    /// Wraps `inner`; `second` is the version the other publisher publishes.
    pub fn new(inner: S, second: &str) -> Self {
        Interleaved {
            inner,
            second: std::sync::Mutex::new(Some(second.to_owned())),
        }
    }
}

impl<S: ObjectStore> ObjectStore for Interleaved<S> {
    async fn get(&self, key: &str) -> kindred_core::Result<Option<kindred_core::store::Object>> {
        self.inner.get(key).await
    }

    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        condition: kindred_core::store::Precondition,
    ) -> kindred_core::Result<()> {
        if key == registry::POINTER && condition != kindred_core::store::Precondition::None {
            let second = self.second.lock().unwrap().take();
            if let Some(version) = second {
                publish(&self.inner, &version).await;
            }
        }
        self.inner.put(key, bytes, condition).await
    }

    fn location(&self) -> String {
        self.inner.location()
    }
}

/// Publishes `first` through a store where another publisher publishes `second` between
/// the first publish's pointer read and write, and checks the outcome: the newer of the
/// two is current (never rolled back to the older), and both versions are stored whole.
pub async fn check_interleaved_publish<S: ObjectStore>(store: S, first: &str, second: &str) {
    let interleaved = Interleaved::new(store, second);
    let t = trained();
    let mut manifest = t.manifest.clone();
    manifest.version = first.to_owned();
    let artifacts: Vec<_> = t
        .artifacts
        .iter()
        .map(|(name, bytes)| (name.clone(), bytes.clone()))
        .collect();
    let outcome = registry::publish(&interleaved, manifest, artifacts).await;
    assert!(
        interleaved.second.lock().unwrap().is_none(),
        "the second publish never ran"
    );
    let newer = first.max(second);
    match &outcome {
        Ok(p) => {
            assert!(
                first > second,
                "the older {first} was made current over {second}"
            );
            assert_eq!(p.previous.as_deref(), Some(second));
        }
        Err(kindred_core::Error::StaleVersion { current, candidate }) => {
            assert!(first < second, "{outcome:?}");
            assert_eq!((current.as_str(), candidate.as_str()), (second, first));
        }
        Err(e) => panic!("publish failed: {e}"),
    }
    let (pointer, _) = registry::read_pointer(&interleaved.inner)
        .await
        .unwrap()
        .expect("a pointer");
    assert_eq!(pointer.version, newer);
    for v in [first, second] {
        let key = registry::version_key(v, kindred_core::manifest::MANIFEST);
        assert!(
            interleaved.inner.get(&key).await.unwrap().is_some(),
            "version {v} lost its manifest"
        );
    }
}
