//! The lazily loaded, hot-swapped current model.
//!
//! Nothing is read from the store until the first request needs a model. That request
//! loads and verifies the version the store's pointer names (manifest digest and format
//! version, size and SHA-256 of each artifact, bincode decoding under a size limit);
//! requests arriving meanwhile wait for the same attempt instead of starting their own.
//! Once a model serves, requests never wait for the store again: at most every
//! `refresh` a request starts a background check of the pointer, and a newer version
//! that verifies is swapped in atomically ([`arc_swap`]). A version that fails
//! verification is refused, logged, and not tried again until the pointer moves; the
//! previous model keeps serving.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use kindred_core::registry::{self, LoadOptions};
use kindred_core::store::{ObjectStore, Store};
use kindred_core::{Error, Model};
use serde::Serialize;
use tracing::{error, info, warn};

use crate::metrics::ModelGauges;

/// Why no model can serve a request right now (shown to clients: no internal details).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Unavailable {
    /// Short reason for clients.
    pub reason: &'static str,
}

impl Unavailable {
    /// Nothing has been published to the store yet.
    pub const NO_MODEL: Unavailable = Unavailable {
        reason: "no model has been published yet",
    };
    /// The store could not be read.
    pub const STORE_UNREACHABLE: Unavailable = Unavailable {
        reason: "the model store is unreachable",
    };
    /// The current version failed verification and no earlier one is loaded.
    pub const REFUSED: Unavailable = Unavailable {
        reason: "the current model failed verification",
    };
    /// The current version is larger than this function may load and none is serving.
    pub const TOO_LARGE: Unavailable = Unavailable {
        reason: "the current model is over this function's memory limit",
    };
    /// Loading failed for an unexpected reason (logged).
    pub const LOAD_FAILED: Unavailable = Unavailable {
        reason: "the model could not be loaded",
    };
}

/// Load state, for `GET /health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadState {
    /// Nothing loaded yet and no attempt made.
    NotLoaded,
    /// A model is serving.
    Loaded,
    /// The last attempt to load failed and nothing is serving.
    Unavailable,
}

impl LoadState {
    /// Whether a model is serving.
    pub fn is_loaded(self) -> bool {
        self == LoadState::Loaded
    }
}

/// Book-keeping behind a mutex that is only held for a few instructions.
#[derive(Default)]
struct Checks {
    /// When the pointer was last checked (or a check claimed).
    last: Option<Instant>,
    /// A version that failed verification: not loaded again until the pointer moves.
    refused: Option<(String, Unavailable)>,
    /// The last failed attempt while nothing serves: when it ended and why.
    failure: Option<(Instant, Unavailable)>,
}

/// Holds the current model; loads it on first use and refreshes it at most every `refresh`.
///
/// Generic over the store so tests can observe and break it; the binary uses [`Store`].
pub struct ModelCache<S = Store> {
    store: S,
    refresh: Duration,
    /// What to load of each version: a memory limit (versions whose artifacts add up to
    /// more are refused unread) and the shards this process serves.
    options: LoadOptions,
    current: ArcSwapOption<Model>,
    checks: Mutex<Checks>,
    /// Held while a version is being loaded, so at most one load runs at a time.
    loading: tokio::sync::Mutex<()>,
    /// Versions loaded, versions refused, and how long the last load took (µs).
    loads: AtomicU64,
    refusals: AtomicU64,
    last_load_micros: AtomicU64,
}

impl<S: ObjectStore + 'static> ModelCache<S> {
    /// A cache over `store` that re-checks the pointer at most every `refresh`.
    /// Reads nothing yet.
    pub fn new(store: S, refresh: Duration) -> Arc<Self> {
        Self::with_memory_limit(store, refresh, None)
    }

    /// Like [`ModelCache::new`], but a version whose artifacts add up to more than
    /// `max_model_bytes` is refused before it is downloaded (logged, previous one kept).
    pub fn with_memory_limit(
        store: S,
        refresh: Duration,
        max_model_bytes: Option<u64>,
    ) -> Arc<Self> {
        let options = LoadOptions {
            max_model_bytes,
            shards: None,
            ..LoadOptions::default()
        };
        Self::with_options(store, refresh, options)
    }

    /// Like [`ModelCache::new`], loading what `options` selects of each version (only some
    /// shards, under a memory limit).
    pub fn with_options(store: S, refresh: Duration, options: LoadOptions) -> Arc<Self> {
        Arc::new(ModelCache {
            store,
            refresh,
            options,
            current: ArcSwapOption::empty(),
            checks: Mutex::new(Checks::default()),
            loading: tokio::sync::Mutex::new(()),
            loads: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            last_load_micros: AtomicU64::new(0),
        })
    }

    /// The model's figures for metrics: version, users, state, loads, refusals and the
    /// last load's duration.
    pub fn gauges(&self) -> ModelGauges {
        let model = self.current.load();
        let loads = self.loads.load(Ordering::Relaxed);
        ModelGauges {
            version: model.as_ref().map(|m| m.manifest.version.clone()),
            users: model.as_ref().map_or(0, |m| m.len() as u64),
            state: match self.state() {
                LoadState::NotLoaded => "not_loaded",
                LoadState::Loaded => "loaded",
                LoadState::Unavailable => "unavailable",
            },
            loads,
            refusals: self.refusals.load(Ordering::Relaxed),
            last_load: (loads > 0)
                .then(|| Duration::from_micros(self.last_load_micros.load(Ordering::Relaxed))),
        }
    }

    /// The store this cache reads.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The model currently serving, if any, without loading anything.
    pub fn peek(&self) -> Option<Arc<Model>> {
        self.current.load_full()
    }

    /// Current load state.
    pub fn state(&self) -> LoadState {
        if self.current.load().is_some() {
            LoadState::Loaded
        } else if self.checks().failure.is_some() {
            LoadState::Unavailable
        } else {
            LoadState::NotLoaded
        }
    }

    /// Why the last attempt failed, while nothing serves.
    pub fn last_failure(&self) -> Option<Unavailable> {
        if self.current.load().is_some() {
            None
        } else {
            self.checks().failure.map(|(_, u)| u)
        }
    }

    /// The model to answer with.
    ///
    /// With a model serving, returns it at once and, when a check is due, starts one in
    /// the background. With none, loads the current version (or waits for the load
    /// already running, and shares its outcome). The load runs in its own task, so a
    /// client that gives up does not cancel it and the next request finds it done.
    pub async fn get(self: &Arc<Self>) -> Result<Arc<Model>, Unavailable> {
        if let Some(model) = self.current.load_full() {
            if self.claim_check() {
                let this = Arc::clone(self);
                tokio::spawn(async move { this.refresh_once().await });
            }
            return Ok(model);
        }
        let this = Arc::clone(self);
        let waiting_since = Instant::now();
        match tokio::spawn(async move { this.load_cold(waiting_since).await }).await {
            Ok(outcome) => outcome,
            Err(e) => {
                error!(error = %e, "the model loading task failed");
                Err(Unavailable::LOAD_FAILED)
            }
        }
    }

    /// Loads the current version when nothing serves, once for all waiting requests.
    async fn load_cold(&self, waiting_since: Instant) -> Result<Arc<Model>, Unavailable> {
        let _guard = self.loading.lock().await;
        if let Some(model) = self.current.load_full() {
            return Ok(model);
        }
        // An attempt that ended while this request waited answers for it too, so a
        // burst of requests against an unreachable store costs one attempt, not one each.
        if let Some((at, why)) = self.checks().failure
            && at >= waiting_since
        {
            return Err(why);
        }
        self.checks().last = Some(Instant::now());
        match self.load_pointed().await {
            Ok(loaded) => {
                self.checks().failure = None;
                // `None` means the pointer names the serving version: cannot happen cold.
                loaded
                    .or_else(|| self.current.load_full())
                    .ok_or(Unavailable::NO_MODEL)
            }
            Err(why) => {
                self.checks().failure = Some((Instant::now(), why));
                Err(why)
            }
        }
    }

    /// Checks the pointer once and swaps in the version it names if that is not the one
    /// serving and it verifies; keeps the current model on any failure. Does nothing when
    /// a load is already running. Returns the version serving afterwards.
    pub async fn refresh_once(&self) -> Option<String> {
        let serving = || {
            self.current
                .load()
                .as_ref()
                .map(|m| m.manifest.version.clone())
        };
        let Ok(_guard) = self.loading.try_lock() else {
            return serving();
        };
        self.checks().last = Some(Instant::now());
        match self.load_pointed().await {
            Ok(_) => self.checks().failure = None,
            Err(why) if self.current.load().is_none() => {
                self.checks().failure = Some((Instant::now(), why))
            }
            Err(_) => {}
        }
        serving()
    }

    /// Reads the pointer and, if it names a version other than the one serving, loads,
    /// verifies and swaps it in. `Ok(None)`: the pointer names the serving version.
    /// Must be called with `loading` held.
    async fn load_pointed(&self) -> Result<Option<Arc<Model>>, Unavailable> {
        let serving = self.current.load_full();
        let serving_version = serving.as_ref().map(|m| m.manifest.version.as_str());
        let pointer = match registry::read_pointer(&self.store).await {
            Ok(Some((pointer, _))) => pointer,
            Ok(None) => {
                if serving.is_none() {
                    warn!(store = %self.store.location(), "no model has been published to the store yet");
                }
                return Err(Unavailable::NO_MODEL);
            }
            Err(e) => return Err(self.failed(&e, None, serving_version)),
        };
        if Some(pointer.version.as_str()) == serving_version {
            return Ok(None);
        }
        if let Some((version, why)) = &self.checks().refused
            && *version == pointer.version
        {
            return Err(*why);
        }
        let started = Instant::now();
        match registry::load_version_with(
            &self.store,
            &pointer.version,
            Some(&pointer.manifest_sha256),
            &self.options,
        )
        .await
        {
            Ok(model) => {
                let model = Arc::new(model);
                info!(
                    from = serving_version.unwrap_or("none"),
                    to = %pointer.version,
                    users = model.len(),
                    shards = ?model.shards_held(),
                    millis = started.elapsed().as_millis() as u64,
                    "model loaded"
                );
                self.current.store(Some(Arc::clone(&model)));
                crate::memory::release_freed_memory();
                self.last_load_micros
                    .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                self.loads.fetch_add(1, Ordering::Relaxed);
                Ok(Some(model))
            }
            Err(e) => Err(self.failed(&e, Some(&pointer.version), serving_version)),
        }
    }

    /// Logs a failed check or load, remembers a refused version, and says what clients see.
    fn failed(&self, e: &Error, version: Option<&str>, serving: Option<&str>) -> Unavailable {
        let keeping = serving.unwrap_or("none");
        if e.is_unavailable() {
            warn!(error = %e, version, keeping, store = %self.store.location(), "model store unavailable");
            return if matches!(e, Error::NoModel) {
                Unavailable::NO_MODEL
            } else {
                Unavailable::STORE_UNREACHABLE
            };
        }
        let why = if matches!(e, Error::ModelTooLarge { .. }) {
            Unavailable::TOO_LARGE
        } else {
            Unavailable::REFUSED
        };
        match version {
            Some(version) => {
                error!(error = %e, version, keeping, "refusing model version that failed verification");
                self.refusals.fetch_add(1, Ordering::Relaxed);
                self.checks().refused = Some((version.to_owned(), why));
            }
            None => error!(error = %e, keeping, "cannot read the model pointer"),
        }
        why
    }

    /// True, and the check recorded as done now, when a background check is due.
    fn claim_check(&self) -> bool {
        let mut checks = self.checks();
        let due = checks.last.is_none_or(|t| t.elapsed() >= self.refresh);
        if due {
            checks.last = Some(Instant::now());
        }
        due
    }

    fn checks(&self) -> MutexGuard<'_, Checks> {
        // Nothing panics while holding the lock; recover the data if something ever did.
        self.checks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
