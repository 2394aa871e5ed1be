//! Object storage for models: a local folder or an S3 bucket and prefix.
//!
//! The trait is deliberately small (get, put with an optional precondition) so the
//! registry logic above it is the same for both backends and easy to test.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

use crate::error::{Error, Result};

/// An object read from a store, with its entity tag for conditional writes.
#[derive(Clone, Debug)]
pub struct Object {
    /// Content.
    pub bytes: Vec<u8>,
    /// Entity tag: S3's ETag, or the SHA-256 of the content for a local folder.
    pub etag: String,
}

/// Condition a write must meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Write unconditionally.
    None,
    /// Write only if the object does not exist yet.
    IfAbsent,
    /// Write only if the object still has this entity tag.
    IfMatch(String),
}

/// The operations Kindred needs from object storage.
pub trait ObjectStore: Send + Sync {
    /// Reads `key`; `Ok(None)` when it does not exist.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Object>>> + Send;
    /// Writes `key` atomically (readers see the old or the new content, never a part).
    /// A failed precondition is [`Error::PreconditionFailed`].
    fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        condition: Precondition,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Human-readable location, for logs and summaries.
    fn location(&self) -> String;
    /// Every key under `prefix` (a folder such as `models/`), in byte order. The default,
    /// for stores that wrap another in tests, refuses.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>>> + Send {
        let prefix = prefix.to_owned();
        async move { Err(Error::store(&prefix, "this store cannot list its objects")) }
    }
    /// Removes `key`; removing a key that does not exist is not an error. The default,
    /// for stores that wrap another in tests, refuses.
    fn delete(&self, key: &str) -> impl Future<Output = Result<()>> + Send {
        let key = key.to_owned();
        async move { Err(Error::store(&key, "this store cannot delete objects")) }
    }
    /// Copies `from` to `to` unless `to` exists ([`Error::PreconditionFailed`]); a
    /// missing `from` is [`Error::MissingArtifact`]. S3 copies on the server; this
    /// default reads and writes the object.
    fn copy(&self, from: &str, to: &str) -> impl Future<Output = Result<()>> + Send {
        copy_by_reading(self, from, to)
    }
    /// Like [`ObjectStore::get`], for an object that must be `limit` bytes at most: a
    /// larger one is [`Error::SizeMismatch`] (expected `limit`). The folder and S3 stores
    /// refuse it from its declared size before reading its body, and stop reading a body
    /// that runs past `limit`; this default reads the object first.
    fn get_at_most(
        &self,
        key: &str,
        limit: u64,
    ) -> impl Future<Output = Result<Option<Object>>> + Send {
        async move {
            let obj = self.get(key).await?;
            if let Some(o) = &obj {
                check_size(key, o.bytes.len() as u64, limit)?;
            }
            Ok(obj)
        }
    }
}

/// A copy source as S3 wants it: every byte outside `A-Z a-z 0-9 - _ . ~ /`
/// percent-encoded (a `?` would otherwise start a version id).
fn percent_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// [`ObjectStore::copy`] by reading `from` and writing it to `to` if absent.
async fn copy_by_reading<S: ObjectStore + ?Sized>(store: &S, from: &str, to: &str) -> Result<()> {
    let obj = store
        .get(from)
        .await?
        .ok_or_else(|| Error::MissingArtifact {
            key: from.to_owned(),
        })?;
    store.put(to, obj.bytes, Precondition::IfAbsent).await
}

/// [`Error::SizeMismatch`] when `size` is over `limit`.
fn check_size(key: &str, size: u64, limit: u64) -> Result<()> {
    if size > limit {
        return Err(Error::SizeMismatch {
            name: key.to_owned(),
            expected: limit,
            received: size,
        });
    }
    Ok(())
}

/// A store chosen at run time from its location string.
#[derive(Clone, Debug)]
pub enum Store {
    /// A folder on the local file system.
    Local(LocalStore),
    /// A bucket and prefix on S3 (or an S3-compatible endpoint such as LocalStack).
    S3(S3Store),
}

impl Store {
    /// Opens a store from `./folder`, `/abs/folder`, `file:///abs/folder` or `s3://bucket/prefix`.
    ///
    /// For S3 the standard AWS configuration applies (credentials, region, `AWS_ENDPOINT_URL`);
    /// when an endpoint is set, path-style addressing is used so LocalStack works.
    pub async fn open(location: &str) -> Result<Store> {
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::InvalidStore {
                    location: location.into(),
                    reason: "missing bucket name".into(),
                });
            }
            return Ok(Store::S3(S3Store::connect(bucket, prefix).await));
        }
        let path = location.strip_prefix("file://").unwrap_or(location);
        if path.is_empty() {
            return Err(Error::InvalidStore {
                location: location.into(),
                reason: "empty path".into(),
            });
        }
        if location.contains("://") && !location.starts_with("file://") {
            return Err(Error::InvalidStore {
                location: location.into(),
                reason: "only s3:// and local paths are supported".into(),
            });
        }
        Ok(Store::Local(LocalStore::new(path)))
    }
}

impl ObjectStore for Store {
    async fn get(&self, key: &str) -> Result<Option<Object>> {
        match self {
            Store::Local(s) => s.get(key).await,
            Store::S3(s) => s.get(key).await,
        }
    }

    async fn put(&self, key: &str, bytes: Vec<u8>, condition: Precondition) -> Result<()> {
        match self {
            Store::Local(s) => s.put(key, bytes, condition).await,
            Store::S3(s) => s.put(key, bytes, condition).await,
        }
    }

    fn location(&self) -> String {
        match self {
            Store::Local(s) => s.location(),
            Store::S3(s) => s.location(),
        }
    }

    async fn get_at_most(&self, key: &str, limit: u64) -> Result<Option<Object>> {
        match self {
            Store::Local(s) => s.get_at_most(key, limit).await,
            Store::S3(s) => s.get_at_most(key, limit).await,
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        match self {
            Store::Local(s) => s.list(prefix).await,
            Store::S3(s) => s.list(prefix).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self {
            Store::Local(s) => s.delete(key).await,
            Store::S3(s) => s.delete(key).await,
        }
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        match self {
            Store::Local(s) => s.copy(from, to).await,
            Store::S3(s) => s.copy(from, to).await,
        }
    }
}

/// A folder on the local file system. Writes go to a temporary file renamed into place.
///
/// Conditional writes compare the current content's digest just before the rename:
/// safe against a stale writer, but not a lock between processes racing in the same
/// millisecond. Use S3 when several hosts publish to one store.
#[derive(Clone, Debug)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore { root: root.into() }
    }

    /// The folder holding the store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        if key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(Error::store(key, "invalid object key"));
        }
        Ok(self.root.join(key))
    }
}

impl ObjectStore for LocalStore {
    /// A hard link: artifacts are never written in place (a write renames a new file
    /// over the name), so two versions can share one file. Falls back to a read and a
    /// write where the file system cannot link.
    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        let (source, target) = (self.path(from)?, self.path(to)?);
        let dir = target
            .parent()
            .expect("a key has a parent folder")
            .to_owned();
        let linked = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            std::fs::hard_link(&source, &target)?;
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
        .map_err(|e| Error::store("(folder store)", e))?;
        match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::PreconditionFailed { key: to.to_owned() })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::MissingArtifact {
                key: from.to_owned(),
            }),
            Err(_) => copy_by_reading(self, from, to).await,
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Object>> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => {
                let etag = crate::codec::sha256_hex(&bytes);
                Ok(Some(Object { bytes, etag }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    async fn put(&self, key: &str, bytes: Vec<u8>, condition: Precondition) -> Result<()> {
        let path = self.path(key)?;
        let dir = path.parent().expect("a key has a parent folder");
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| Error::io(dir, e))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{nanos}",
            path.file_name().unwrap().to_string_lossy(),
            std::process::id()
        ));
        tokio::fs::write(&tmp, &bytes)
            .await
            .map_err(|e| Error::io(&tmp, e))?;
        let file = tokio::fs::File::open(&tmp)
            .await
            .map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().await.map_err(|e| Error::io(&tmp, e))?;
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || place(&tmp, &path, &key, &bytes, &condition))
            .await
            .map_err(|e| Error::store("(folder store)", e))?
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn get_at_most(&self, key: &str, limit: u64) -> Result<Option<Object>> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(meta) => check_size(key, meta.len(), limit)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        }
        let obj = self.get(key).await?;
        if let Some(o) = &obj {
            // It may have been replaced since.
            check_size(key, o.bytes.len() as u64, limit)?;
        }
        Ok(obj)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || list_folder(&root, &prefix))
            .await
            .map_err(|e| Error::store("(folder store)", e))?
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&path, e)),
        }
        // So does the lock file of its conditional writes, if it had any;
        let name = path.file_name().unwrap().to_string_lossy();
        let _ = std::fs::remove_file(path.with_file_name(format!(".{name}.lock")));
        // folders left empty go too, up to the root, so a pruned version leaves nothing.
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != self.root && d.starts_with(&self.root)) {
            if std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }
}

/// The keys of the files under `root` whose key starts with `prefix`, sorted. Hidden
/// files (temporary writes, lock files) are not objects and are skipped.
fn list_folder(root: &Path, prefix: &str) -> Result<Vec<String>> {
    // Walk from the deepest folder the prefix names entirely.
    let start = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
    let mut keys = Vec::new();
    let mut pending = vec![(root.join(start), start.to_owned())];
    while let Some((dir, key)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let child = if key.is_empty() {
                name
            } else {
                format!("{key}/{name}")
            };
            let kind = entry.file_type().map_err(|e| Error::io(&entry.path(), e))?;
            if kind.is_dir() {
                pending.push((entry.path(), child));
            } else if child.starts_with(prefix) {
                keys.push(child);
            }
        }
    }
    keys.sort();
    Ok(keys)
}

/// Moves the written and synced `tmp` file to `path` if `condition` holds, atomically
/// with respect to every other writer of this folder store, then syncs the folder so
/// the new name survives a crash.
///
/// * `None`: a rename, which replaces atomically.
/// * `IfAbsent`: a hard link, which the file system refuses when `path` exists, so two
///   writers cannot both succeed. An object already there with the same bytes counts as
///   written (a retried write is not an error).
/// * `IfMatch`: under an exclusive lock on a lock file beside the object (released when
///   the process ends, however it ends), the current content is compared and the rename
///   done, so no other conditional writer can move the object in between.
fn place(tmp: &Path, path: &Path, key: &str, bytes: &[u8], condition: &Precondition) -> Result<()> {
    let dir = path.parent().expect("a key has a parent folder");
    let outcome = match condition {
        Precondition::None => std::fs::rename(tmp, path).map_err(|e| Error::io(path, e)),
        Precondition::IfAbsent => match std::fs::hard_link(tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match std::fs::read(path) {
                Ok(existing) if existing == bytes => Ok(()),
                Ok(_) => Err(Error::PreconditionFailed { key: key.into() }),
                Err(e) => Err(Error::io(path, e)),
            },
            Err(e) => Err(Error::io(path, e)),
        },
        Precondition::IfMatch(tag) => replace_if_matches(tmp, path, key, tag),
    };
    // The temporary name is gone after a rename; after a link or a refusal it is removed.
    let _ = std::fs::remove_file(tmp);
    outcome?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Renames `tmp` over `path` if `path`'s content has the digest `tag`, under an
/// exclusive lock on a lock file beside it, held until the rename is done.
fn replace_if_matches(tmp: &Path, path: &Path, key: &str, tag: &str) -> Result<()> {
    let dir = path.parent().expect("a key has a parent folder");
    let name = path.file_name().unwrap().to_string_lossy();
    let lock_path = dir.join(format!(".{name}.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    lock.lock().map_err(|e| Error::io(&lock_path, e))?;
    match std::fs::read(path) {
        Ok(current) if crate::codec::sha256_hex(&current) == tag => {
            std::fs::rename(tmp, path).map_err(|e| Error::io(path, e))
        }
        Ok(_) => Err(Error::PreconditionFailed { key: key.into() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::PreconditionFailed { key: key.into() })
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// A bucket and key prefix on S3.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl S3Store {
    /// Connects with the standard AWS configuration chain. Path-style addressing is used
    /// when `AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_S3` is set (LocalStack, MinIO).
    pub async fn connect(bucket: &str, prefix: &str) -> S3Store {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(300))
            .build();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeouts)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
            .load()
            .await;
        let custom_endpoint = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]
            .iter()
            .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()));
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(custom_endpoint)
            .build();
        S3Store::with_client(aws_sdk_s3::Client::from_conf(config), bucket, prefix)
    }

    /// Connects to an S3-compatible endpoint on a developer machine (LocalStack, MinIO)
    /// with the static credentials `test`/`test`, region `us-east-1`, path-style
    /// addressing, no retries and short timeouts, so an endpoint that is down fails fast.
    pub fn at_endpoint(endpoint: &str, bucket: &str, prefix: &str) -> S3Store {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "kindred"))
            .force_path_style(true)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            )
            .build();
        S3Store::with_client(aws_sdk_s3::Client::from_conf(config), bucket, prefix)
    }

    /// Creates the bucket unless this account already owns it.
    pub async fn create_bucket_if_missing(&self) -> Result<()> {
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err)
                if err.as_service_error().is_some_and(|e| {
                    e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
                }) =>
            {
                Ok(())
            }
            Err(err) => Err(Error::store(&self.bucket, DisplayErrorContext(&err))),
        }
    }

    /// Wraps an existing client.
    pub fn with_client(client: aws_sdk_s3::Client, bucket: &str, prefix: &str) -> S3Store {
        S3Store {
            client,
            bucket: bucket.into(),
            prefix: prefix.trim_matches('/').into(),
        }
    }

    /// The underlying client (for tests and set-up).
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }
}

fn status_of<E>(err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

impl S3Store {
    /// Reads `key`, refusing an object over `limit` bytes from its declared length before
    /// reading its body, and stopping a body that runs past `limit`.
    async fn get_limited(&self, key: &str, limit: Option<u64>) -> Result<Option<Object>> {
        let full = self.key(key);
        let mut out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(out) => out,
            Err(err) => {
                let missing = err
                    .as_service_error()
                    .is_some_and(|e| e.is_no_such_key() || e.code() == Some("NoSuchKey"))
                    || status_of(&err) == Some(404);
                if missing {
                    return Ok(None);
                }
                return Err(Error::store(&full, DisplayErrorContext(&err)));
            }
        };
        let limit = limit.unwrap_or(u64::MAX);
        let declared = out.content_length().and_then(|n| u64::try_from(n).ok());
        check_size(key, declared.unwrap_or(0), limit)?;
        let etag = out.e_tag().unwrap_or_default().to_owned();
        let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(limit) as usize);
        while let Some(chunk) = out
            .body
            .try_next()
            .await
            .map_err(|e| Error::store(&full, e))?
        {
            check_size(key, (bytes.len() + chunk.len()) as u64, limit)?;
            bytes.extend_from_slice(&chunk);
        }
        Ok(Some(Object { bytes, etag }))
    }
}

impl ObjectStore for S3Store {
    async fn get(&self, key: &str) -> Result<Option<Object>> {
        self.get_limited(key, None).await
    }

    async fn get_at_most(&self, key: &str, limit: u64) -> Result<Option<Object>> {
        self.get_limited(key, Some(limit)).await
    }

    async fn put(&self, key: &str, bytes: Vec<u8>, condition: Precondition) -> Result<()> {
        let full = self.key(key);
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .body(ByteStream::from(bytes));
        match condition {
            Precondition::None => {}
            Precondition::IfAbsent => req = req.if_none_match("*"),
            Precondition::IfMatch(tag) => req = req.if_match(tag),
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(err) => {
                let code = err
                    .as_service_error()
                    .and_then(|e| e.code())
                    .unwrap_or_default()
                    .to_owned();
                // Only 412 is a failed condition. A 409 (ConditionalRequestConflict: a
                // concurrent conditional write to the key is in flight) is an error the
                // caller may retry, not a verdict on the condition.
                // The key as the caller named it (relative to the prefix), so that a
                // caller may read the object that is there.
                if status_of(&err) == Some(412) || code == "PreconditionFailed" {
                    Err(Error::PreconditionFailed {
                        key: key.to_owned(),
                    })
                } else {
                    Err(Error::store(&full, DisplayErrorContext(&err)))
                }
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let full = self.key(prefix);
        let strip = full.len() - prefix.len();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Error::store(&full, DisplayErrorContext(&e)))?;
            for object in page.contents() {
                if let Some(key) = object.key().and_then(|k| k.get(strip..)) {
                    keys.push(key.to_owned());
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// A server-side CopyObject (no bytes through this process), conditional on the
    /// target's absence as S3 allows for copies (`If-None-Match: *`).
    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        let (source, target) = (self.key(from), self.key(to));
        let sent = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(percent_encode(&format!("{}/{source}", self.bucket)))
            .key(&target)
            .if_none_match("*")
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(err) if status_of(&err) == Some(412) => {
                Err(Error::PreconditionFailed { key: to.to_owned() })
            }
            Err(err) if status_of(&err) == Some(404) => Err(Error::MissingArtifact { key: source }),
            Err(err) => Err(Error::store(&target, DisplayErrorContext(&err))),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let full = self.key(key);
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| Error::store(&full, DisplayErrorContext(&e)))
    }

    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_conditional_writes_follow_the_etag() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        // Given an absent object, IfAbsent succeeds once and then fails.
        store
            .put("a/current.json", b"v1".to_vec(), Precondition::IfAbsent)
            .await
            .unwrap();
        let err = store
            .put("a/current.json", b"v2".to_vec(), Precondition::IfAbsent)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::PreconditionFailed { .. }));
        // When the etag matches the write goes through; a stale etag is refused.
        let v1 = store.get("a/current.json").await.unwrap().unwrap();
        store
            .put(
                "a/current.json",
                b"v2".to_vec(),
                Precondition::IfMatch(v1.etag.clone()),
            )
            .await
            .unwrap();
        let err = store
            .put(
                "a/current.json",
                b"v3".to_vec(),
                Precondition::IfMatch(v1.etag),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::PreconditionFailed { .. }));
        assert_eq!(
            store.get("a/current.json").await.unwrap().unwrap().bytes,
            b"v2"
        );
        // No temporary files are left behind (the lock file of conditional writes stays).
        let leftovers: Vec<String> = std::fs::read_dir(dir.path().join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".current.json.lock")
            .collect();
        assert_eq!(leftovers, ["current.json"]);
    }

    #[tokio::test]
    async fn a_folder_lists_its_objects_under_a_prefix_and_deletes_them_with_their_folders() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        for key in [
            "models/v2/a.bin",
            "models/v1/b/c.bin",
            "models/v1/a.bin",
            "current.json",
        ] {
            store
                .put(key, b"x".to_vec(), Precondition::IfMatch("none".into()))
                .await
                .ok();
            store
                .put(key, b"x".to_vec(), Precondition::None)
                .await
                .unwrap();
        }
        // Keys come sorted, without hidden files (the lock file of the conditional
        // write above), and only under the prefix;
        assert_eq!(
            store.list("models/").await.unwrap(),
            ["models/v1/a.bin", "models/v1/b/c.bin", "models/v2/a.bin"]
        );
        assert_eq!(
            store.list("models/v1/b").await.unwrap(),
            ["models/v1/b/c.bin"]
        );
        assert!(store.list("history/").await.unwrap().is_empty());
        // deleting removes the object and folders left empty, and a missing key is fine.
        store.delete("models/v1/b/c.bin").await.unwrap();
        store.delete("models/v1/a.bin").await.unwrap();
        store.delete("models/v1/a.bin").await.unwrap();
        assert!(!dir.path().join("models/v1").exists());
        assert_eq!(
            store.list("").await.unwrap(),
            ["current.json", "models/v2/a.bin"]
        );
    }

    #[tokio::test]
    async fn local_keys_cannot_escape_the_root() {
        let store = LocalStore::new("/tmp/kindred-never");
        assert!(store.get("../etc/passwd").await.is_err());
        assert!(store.get("a//b").await.is_err());
    }

    #[test]
    fn copy_sources_are_percent_encoded() {
        assert_eq!(
            percent_encode("b/p/models/v-1/x.bin"),
            "b/p/models/v-1/x.bin"
        );
        assert_eq!(percent_encode("b/a b?c%/é"), "b/a%20b%3Fc%25/%C3%A9");
    }

    #[tokio::test]
    async fn store_locations_parse() {
        assert!(matches!(
            Store::open("./trained_model").await.unwrap(),
            Store::Local(_)
        ));
        assert!(matches!(
            Store::open("file:///tmp/x").await.unwrap(),
            Store::Local(_)
        ));
        assert!(Store::open("s3://").await.is_err());
        assert!(Store::open("gs://bucket").await.is_err());
    }

    /// Runs `writers` conditional puts of distinct contents (`{label} {i}`) to one key at
    /// once (released together, each placed on a blocking thread); returns how many
    /// succeeded.
    async fn race(
        store: &LocalStore,
        writers: usize,
        condition: Precondition,
        label: &'static str,
    ) -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let ready = std::sync::Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..writers)
            .map(|i| {
                let (store, ready, condition) = (store.clone(), ready.clone(), condition.clone());
                tokio::spawn(async move {
                    ready.fetch_add(1, Ordering::SeqCst);
                    while ready.load(Ordering::SeqCst) < writers {
                        tokio::task::yield_now().await;
                    }
                    let bytes = format!("{label} {i}").into_bytes();
                    store.put("p/current.json", bytes, condition).await
                })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => won += 1,
                Err(Error::PreconditionFailed { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        won
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_conditional_writes_to_a_folder_have_exactly_one_winner() {
        for round in 0..20 {
            // Given an absent object, of 8 writers that all want it absent, one wins;
            let dir = tempfile::tempdir().unwrap();
            let store = LocalStore::new(dir.path());
            assert_eq!(
                race(&store, 8, Precondition::IfAbsent, "first").await,
                1,
                "round {round}"
            );
            // and of 8 that all expect its current content (and write other content:
            // the tag is the content's digest, so rewriting the same bytes keeps it), one
            // wins, and the object is whole: one writer's bytes, not a mix.
            let etag = store.get("p/current.json").await.unwrap().unwrap().etag;
            assert_eq!(
                race(&store, 8, Precondition::IfMatch(etag), "second").await,
                1,
                "round {round}"
            );
            let now = store.get("p/current.json").await.unwrap().unwrap().bytes;
            assert!(String::from_utf8(now).unwrap().starts_with("second "));
            // No temporary file is left behind.
            let left: Vec<_> = std::fs::read_dir(dir.path().join("p"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".tmp-"))
                .collect();
            assert!(left.is_empty(), "{left:?}");
        }
    }

    #[tokio::test]
    async fn an_if_absent_write_repeated_with_the_same_bytes_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let put =
            |bytes: &'static [u8]| store.put("v/a.bin", bytes.to_vec(), Precondition::IfAbsent);
        put(b"same").await.unwrap();
        put(b"same")
            .await
            .expect("a retried write of the same bytes");
        assert!(matches!(
            put(b"other").await,
            Err(Error::PreconditionFailed { .. })
        ));
        assert_eq!(store.get("v/a.bin").await.unwrap().unwrap().bytes, b"same");
    }
}
