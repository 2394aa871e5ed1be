//! The versions in a store: listing them, moving the pointer back to one explicitly, and
//! removing old ones.
//!
//! A rollback is the one way the pointer moves to an older version. It verifies the
//! version it moves to as the function would load it, records itself twice (in the
//! pointer, and as an immutable `history/<time>-rollback.json` object that outlives the
//! next publish), and moves the pointer conditionally on the one it read, so it cannot
//! undo a publish that happened meanwhile unnoticed. Its fence keeps runs that started
//! before it (and retried publishes of the version rolled back from) from moving the
//! pointer again; runs started after it publish as usual. The function follows the
//! pointer whichever way it moves.
//!
//! Pruning never removes the current version, the previous one (the one the pointer
//! named before; in a pointer too old to say, the newest complete version older than the
//! current one), or any
//! version newer than the current one (a run may be publishing it). Of a removed version
//! the manifest goes first, so a half-removed version reads as incomplete, never as
//! whole.

use serde::{Deserialize, Serialize};

use crate::codec::sha256_hex;
use crate::error::{Error, Result};
use crate::manifest::{MANIFEST, MAX_MANIFEST_BYTES, Manifest};
use crate::registry::{self, POINTER, Pointer};
use crate::store::{ObjectStore, Precondition};

/// Folder of the version folders.
const MODELS: &str = "models/";
/// Folder of the rollback records.
pub const HISTORY: &str = "history/";

/// An explicit move of the pointer: from which version to which, when and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    /// The version that was current.
    pub from: String,
    /// The version made current.
    pub to: String,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// Why, as the operator said.
    pub reason: String,
    /// A version name made at the rollback: a publish of a version named before it (a
    /// run started before the rollback) is refused, so the rollback is not undone by a
    /// run already in flight. Empty in records written before fences existed.
    #[serde(default)]
    pub fence: String,
}

/// What a version folder holds.
#[derive(Clone, Debug)]
pub enum VersionState {
    /// A manifest that parses: a version that can be loaded (if its artifacts verify).
    Complete(Box<Manifest>),
    /// No manifest: a run still writing it, or one that failed before publishing.
    Incomplete,
    /// A manifest that does not parse.
    Unreadable(String),
}

/// One version folder of a store.
#[derive(Clone, Debug)]
pub struct Version {
    /// The version's name.
    pub name: String,
    /// Its manifest, or why there is none.
    pub state: VersionState,
    /// The keys of its objects.
    pub objects: Vec<String>,
    /// True for the version the pointer names.
    pub current: bool,
    /// True for the version served before the current one.
    pub previous: bool,
}

impl Version {
    /// The manifest, for a complete version.
    pub fn manifest(&self) -> Option<&Manifest> {
        match &self.state {
            VersionState::Complete(m) => Some(m),
            _ => None,
        }
    }
}

/// Every version folder in `store`, oldest first, with the current and previous ones
/// marked, and the pointer (`None` when nothing was published).
pub async fn list<S: ObjectStore>(store: &S) -> Result<(Vec<Version>, Option<Pointer>)> {
    let pointer = registry::read_pointer(store).await?.map(|(p, _)| p);
    let mut versions: Vec<Version> = Vec::new();
    for key in store.list(MODELS).await? {
        let Some((name, _)) = key[MODELS.len()..].split_once('/') else {
            continue;
        };
        match versions.last_mut() {
            Some(v) if v.name == name => v.objects.push(key),
            _ => versions.push(Version {
                name: name.to_owned(),
                state: VersionState::Incomplete,
                objects: vec![key],
                current: false,
                previous: false,
            }),
        }
    }
    for v in &mut versions {
        let key = registry::version_key(&v.name, MANIFEST);
        if !v.objects.contains(&key) {
            continue;
        }
        v.state = match store.get_at_most(&key, MAX_MANIFEST_BYTES).await? {
            None => VersionState::Incomplete,
            Some(obj) => match Manifest::parse(&obj.bytes) {
                Ok(m) => VersionState::Complete(Box::new(m)),
                Err(e) => VersionState::Unreadable(e.to_string()),
            },
        };
    }
    if let Some(p) = &pointer {
        let previous = previous_of(&versions, p);
        for v in &mut versions {
            v.current = v.name == p.version;
            v.previous = previous.as_deref() == Some(v.name.as_str());
        }
    }
    Ok((versions, pointer))
}

/// The version served before the pointer's: as the pointer records it, or (for a
/// pointer written before it did) the newest complete version older than the current one.
fn previous_of(versions: &[Version], pointer: &Pointer) -> Option<String> {
    if let Some(previous) = &pointer.previous {
        return Some(previous.clone());
    }
    versions
        .iter()
        .rev()
        .filter(|v| v.name < pointer.version && v.manifest().is_some())
        .map(|v| v.name.clone())
        .next()
}

/// The rollback records, oldest first.
pub async fn history<S: ObjectStore>(store: &S) -> Result<Vec<Rollback>> {
    let mut records = Vec::new();
    for key in store.list(HISTORY).await? {
        let Some(obj) = store.get_at_most(&key, 64 * 1024).await? else {
            continue;
        };
        let record = serde_json::from_slice(&obj.bytes).map_err(|e| Error::Decode {
            name: key.clone(),
            message: e.to_string(),
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Makes `to` the current version, whatever its age, after loading and verifying it
/// completely; records the move. Fails with [`Error::NoModel`] when nothing was
/// published, [`Error::Inconsistent`] when `to` has no manifest, any verification
/// error of `to`, or [`Error::PointerRace`] when the pointer moved meanwhile.
pub async fn rollback<S: ObjectStore>(store: &S, to: &str, reason: &str) -> Result<Rollback> {
    let (current, etag) = registry::read_pointer(store).await?.ok_or(Error::NoModel)?;
    if current.version == to {
        return Err(Error::Inconsistent(format!(
            "{to} is already the current version"
        )));
    }
    let manifest_key = registry::version_key(to, MANIFEST);
    let manifest = store
        .get_at_most(&manifest_key, MAX_MANIFEST_BYTES)
        .await?
        .ok_or_else(|| {
            Error::Inconsistent(format!(
                "{} holds no complete version {to:?} (see `kindred-batch versions`)",
                store.location()
            ))
        })?;
    let digest = sha256_hex(&manifest.bytes);
    // The same checks the function makes before it serves a version.
    registry::load_version(store, to, Some(&digest)).await?;

    // Named after the current version (and any earlier fence) whatever the clocks say.
    let stamp = registry::next_version_name(store).await?;
    let record = Rollback {
        from: current.version,
        to: to.to_owned(),
        at: registry::now_rfc3339(),
        reason: reason.to_owned(),
        fence: stamp.clone(),
    };
    let history_key = format!("{HISTORY}{stamp}-rollback.json");
    store
        .put(
            &history_key,
            json(&record, &history_key)?,
            Precondition::IfAbsent,
        )
        .await?;
    let pointer = Pointer {
        version: to.to_owned(),
        manifest_sha256: digest,
        updated_at: record.at.clone(),
        previous: Some(record.from.clone()),
        rollback: Some(record.clone()),
    };
    match store
        .put(
            POINTER,
            json(&pointer, POINTER)?,
            Precondition::IfMatch(etag),
        )
        .await
    {
        Ok(()) => Ok(record),
        Err(Error::PreconditionFailed { .. }) => Err(Error::PointerRace {
            current: registry::read_pointer(store).await?.map(|p| p.0.version),
        }),
        Err(e) => Err(e),
    }
}

/// What [`prune`] removed (or would remove, on a dry run) and kept.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Pruned {
    /// Versions removed, oldest first.
    pub removed: Vec<String>,
    /// Objects removed.
    pub objects: usize,
    /// Versions kept, oldest first.
    pub kept: Vec<String>,
}

/// Removes every version older than the current one except the `keep` newest complete
/// versions and the previous version; on a `dry_run`, only says which. Fails with
/// [`Error::NoModel`] when no version is current (nothing would say which are safe).
pub async fn prune<S: ObjectStore>(store: &S, keep: usize, dry_run: bool) -> Result<Pruned> {
    let (versions, pointer) = list(store).await?;
    let pointer = pointer.ok_or(Error::NoModel)?;
    let newest: Vec<&str> = versions
        .iter()
        .rev()
        .filter(|v| v.manifest().is_some())
        .take(keep)
        .map(|v| v.name.as_str())
        .collect();
    let mut pruned = Pruned::default();
    for v in &versions {
        let spare = v.current || v.previous || newest.contains(&v.name.as_str());
        if spare || v.name > pointer.version {
            pruned.kept.push(v.name.clone());
            continue;
        }
        pruned.removed.push(v.name.clone());
        pruned.objects += v.objects.len();
        if dry_run {
            continue;
        }
        let manifest = registry::version_key(&v.name, MANIFEST);
        if v.objects.contains(&manifest) {
            store.delete(&manifest).await?;
        }
        for key in v.objects.iter().filter(|k| **k != manifest) {
            store.delete(key).await?;
        }
    }
    Ok(pruned)
}

/// `value` as pretty JSON, for the object `name`.
fn json<T: Serialize>(value: &T, name: &str) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|e| Error::Encode {
        name: name.to_owned(),
        message: e.to_string(),
    })
}
