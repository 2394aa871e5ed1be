//! The error type shared by the store, artifact and registry modules.

use std::fmt;

/// Result alias for Kindred's core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while storing, publishing or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store location could not be parsed.
    #[error("invalid store location {location:?}: {reason}")]
    InvalidStore {
        /// What the user gave.
        location: String,
        /// Why it was refused.
        reason: String,
    },
    /// The store could not be reached or refused an operation.
    #[error("store error on {key:?}: {message}")]
    Store {
        /// Object key involved.
        key: String,
        /// Message from the backend.
        message: String,
    },
    /// No model has been published yet (no pointer object).
    #[error("no model has been published to this store yet")]
    NoModel,
    /// A required artifact is missing from a model version.
    #[error("artifact {key:?} is missing")]
    MissingArtifact {
        /// Object key.
        key: String,
    },
    /// An artifact's size differs from its manifest.
    #[error("artifact {name} has {received} bytes, manifest says {expected}")]
    SizeMismatch {
        /// Artifact name.
        name: String,
        /// Size in the manifest.
        expected: u64,
        /// Size read.
        received: u64,
    },
    /// An artifact's SHA-256 differs from its manifest.
    #[error("artifact {name} has SHA-256 {received}, manifest says {expected}")]
    ChecksumMismatch {
        /// Artifact name.
        name: String,
        /// Digest in the manifest.
        expected: String,
        /// Digest computed.
        received: String,
    },
    /// An artifact is larger than this build accepts.
    #[error("artifact {name} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Artifact name.
        name: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The manifest was written by an incompatible format version.
    #[error(
        "unsupported model format version {received} (this build reads {oldest} to {expected})"
    )]
    UnsupportedFormat {
        /// Oldest version this build reads.
        oldest: u32,
        /// Newest version this build reads.
        expected: u32,
        /// Version found.
        received: u32,
    },
    /// Decoding an artifact failed.
    #[error("cannot decode {name}: {message}")]
    Decode {
        /// Artifact name.
        name: String,
        /// Decoder message.
        message: String,
    },
    /// Encoding an artifact failed.
    #[error("cannot encode {name}: {message}")]
    Encode {
        /// Artifact name.
        name: String,
        /// Encoder message.
        message: String,
    },
    /// A version's artifacts add up to more than the loader may hold in memory.
    #[error(
        "model {version} lists {bytes} bytes of artifacts, over the memory limit of {limit} bytes"
    )]
    ModelTooLarge {
        /// The version refused.
        version: String,
        /// Sum of the artifact sizes its manifest lists.
        bytes: u64,
        /// The limit it was held to.
        limit: u64,
    },
    /// A process was asked to serve a shard the version does not have.
    #[error("model {version} has {count} shards, so it has no shard {shard}")]
    UnknownShard {
        /// The version.
        version: String,
        /// The shard asked for.
        shard: u32,
        /// The version's shard count.
        count: u32,
    },
    /// The artifacts of a version disagree with each other or with the manifest.
    #[error("inconsistent model: {0}")]
    Inconsistent(String),
    /// Embeddings of the wrong dimension.
    #[error("invalid embedding dimension: expected {expected}, received {received}")]
    InvalidVecDimension {
        /// Dimension of the model.
        expected: usize,
        /// Dimension given.
        received: usize,
    },
    /// The pointer changed under a conditional write: another run published first.
    #[error("lost the race to publish: the current pointer changed to {current:?} meanwhile")]
    PointerRace {
        /// Version now current, when known.
        current: Option<String>,
    },
    /// A version built on another (an update) was not published: that version stopped
    /// being current while it was built.
    #[error(
        "version {base}, which this update was built on, is no longer current ({current:?} is): run the update again"
    )]
    BaseChanged {
        /// The version built on.
        base: String,
        /// Version now current, when known.
        current: Option<String>,
    },
    /// A conditional write's precondition did not hold (the object changed meanwhile).
    #[error("precondition failed writing {key:?}")]
    PreconditionFailed {
        /// Object key.
        key: String,
    },
    /// Refused to move the pointer back to an older version.
    #[error("refusing to replace current version {current} with older version {candidate}")]
    StaleVersion {
        /// Version now current.
        current: String,
        /// Version that would have replaced it.
        candidate: String,
    },
    /// Refused to publish a version whose run started before the last rollback.
    #[error(
        "refusing to publish version {candidate}: its run started before the rollback at {rollback_at}; train again to publish"
    )]
    StartedBeforeRollback {
        /// Version that would have become current.
        candidate: String,
        /// When the rollback was made.
        rollback_at: String,
    },
    /// Local file-system error.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// Path involved.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn store(key: &str, message: impl fmt::Display) -> Self {
        Error::Store {
            key: key.to_owned(),
            message: message.to_string(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// True when the error is transient (store unreachable) rather than a bad model.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::Store { .. } | Error::Io { .. } | Error::NoModel
        )
    }
}
