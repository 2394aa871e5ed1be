//! The lazily loaded, hot-swapped current model.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use kindred_core::registry;
use kindred_core::store::Store;
use kindred_core::{Error, Model};
use serde::Serialize;
use tracing::{error, info, warn};

/// Why no model can serve a request right now.
#[derive(Debug, Clone, Serialize)]
pub struct Unavailable {
    /// Short reason for clients (no internal details).
    pub reason: &'static str,
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

struct Checks {
    /// When the pointer was last checked (or a load last attempted).
    last: Option<Instant>,
    /// A version that failed verification: not retried until the pointer moves.
    refused: Option<String>,
    /// Outcome of the last attempt when nothing is loaded.
    failed: bool,
}

/// Holds the current model; loads it on first use and refreshes it every `refresh`.
pub struct ModelCache {
    store: Store,
    refresh: Duration,
    current: ArcSwapOption<Model>,
    checks: Mutex<Checks>,
    loading: tokio::sync::Mutex<()>,
}

impl ModelCache {
    /// A cache over `store` that re-checks the pointer at most every `refresh`.
    pub fn new(store: Store, refresh: Duration) -> Arc<ModelCache> {
        Arc::new(ModelCache {
            store,
            refresh,
            current: ArcSwapOption::empty(),
            checks: Mutex::new(Checks { last: None, refused: None, failed: false }),
            loading: tokio::sync::Mutex::new(()),
        })
    }

    /// The model currently serving, if any, without loading anything.
    pub fn peek(&self) -> Option<Arc<Model>> {
        self.current.load_full()
    }

    /// Current load state.
    pub fn state(&self) -> LoadState {
        if self.current.load().is_some() {
            LoadState::Loaded
        } else if self.checks.lock().map(|c| c.failed).unwrap_or(false) {
            LoadState::Unavailable
        } else {
            LoadState::NotLoaded
        }
    }

    /// The model to answer with: loads it when there is none (waiting for the load);
    /// otherwise returns the current one at once and, when due, refreshes in the background.
    pub async fn get(self: &Arc<Self>) -> Result<Arc<Model>, Unavailable> {
        if let Some(model) = self.current.load_full() {
            if self.due() {
                let this = Arc::clone(self);
                tokio::spawn(async move { this.refresh_once().await });
            }
            return Ok(model);
        }
        // Cold: one request loads, the others wait for it.
        let _guard = self.loading.lock().await;
        if let Some(model) = self.current.load_full() {
            return Ok(model);
        }
        self.mark_checked();
        match self.load_pointer_version().await {
            Ok(model) => {
                let model = Arc::new(model);
                self.current.store(Some(Arc::clone(&model)));
                self.set_failed(false);
                Ok(model)
            }
            Err(e) => {
                self.set_failed(true);
                Err(classify(&e))
            }
        }
    }

    /// Checks the pointer once and swaps in a newer verified version; keeps the current
    /// model on any failure. Returns the version serving afterwards.
    pub async fn refresh_once(&self) -> Option<String> {
        let Ok(_guard) = self.loading.try_lock() else {
            return self.current.load().as_ref().map(|m| m.manifest.version.clone());
        };
        self.mark_checked();
        let serving = self.current.load_full();
        let serving_version = serving.as_ref().map(|m| m.manifest.version.clone());
        let pointer = match registry::read_pointer(&self.store).await {
            Ok(Some((p, _))) => p,
            Ok(None) => return serving_version,
            Err(e) => {
                warn!(error = %e, "cannot read the model pointer; keeping the current model");
                return serving_version;
            }
        };
        if Some(&pointer.version) == serving_version.as_ref() {
            return serving_version;
        }
        if self.checks.lock().ok().and_then(|c| c.refused.clone()).as_ref() == Some(&pointer.version) {
            return serving_version;
        }
        match registry::load_version(&self.store, &pointer.version, Some(&pointer.manifest_sha256)).await {
            Ok(model) => {
                info!(from = serving_version.as_deref().unwrap_or("none"), to = %pointer.version, users = model.len(), "model swapped");
                self.current.store(Some(Arc::new(model)));
                self.set_failed(false);
                Some(pointer.version)
            }
            Err(e) if e.is_unavailable() => {
                warn!(error = %e, version = %pointer.version, "store unavailable while loading; keeping the current model");
                serving_version
            }
            Err(e) => {
                error!(error = %e, version = %pointer.version, "refusing model version that failed verification");
                if let Ok(mut c) = self.checks.lock() {
                    c.refused = Some(pointer.version);
                }
                serving_version
            }
        }
    }

    async fn load_pointer_version(&self) -> kindred_core::Result<Model> {
        let (pointer, _) = registry::read_pointer(&self.store).await?.ok_or(Error::NoModel)?;
        match registry::load_version(&self.store, &pointer.version, Some(&pointer.manifest_sha256)).await {
            Ok(model) => {
                info!(version = %pointer.version, users = model.len(), "model loaded");
                Ok(model)
            }
            Err(e) => {
                if e.is_unavailable() {
                    warn!(error = %e, "store unavailable");
                } else {
                    error!(error = %e, version = %pointer.version, "refusing model version that failed verification");
                }
                Err(e)
            }
        }
    }

    fn due(&self) -> bool {
        self.checks.lock().map(|c| c.last.is_none_or(|t| t.elapsed() >= self.refresh)).unwrap_or(false)
    }

    fn mark_checked(&self) {
        if let Ok(mut c) = self.checks.lock() {
            c.last = Some(Instant::now());
        }
    }

    fn set_failed(&self, failed: bool) {
        if let Ok(mut c) = self.checks.lock() {
            c.failed = failed;
        }
    }
}

fn classify(e: &Error) -> Unavailable {
    match e {
        Error::NoModel => Unavailable { reason: "no model has been published yet" },
        e if e.is_unavailable() => Unavailable { reason: "the model store is unreachable" },
        _ => Unavailable { reason: "the current model failed verification" },
    }
}
