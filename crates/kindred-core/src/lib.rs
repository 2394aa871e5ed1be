//! Kindred's shared core, used by both the training job and the predict function.
//!
//! * [`artifact`]: the versioned model format (manifest, user table, HNSW index) and
//!   its verified encoding (SHA-256, size and bincode limits).
//! * [`store`]: object storage, a local folder or `s3://bucket/prefix`.
//! * [`registry`]: publishing a model version and loading the current one.
//! * [`query`]: nearest-neighbour search over a loaded model.
//! * [`tags`]: the one tag vocabulary across files and spellings (`C#`, `csharp`).
//! * [`projection`]: folding a new profile (tags, interests) into the embedding space.
//! * [`shard`]: which shard a user lives in; searching several shards as one index.
//!
//! This crate never links LAPACK: the linear algebra lives in `kindred-batch`.

pub mod artifact;
pub mod error;
pub mod projection;
pub mod query;
pub mod registry;
pub mod shard;
pub mod store;
pub mod tags;

pub use artifact::{Embedding, Manifest, Model, UserSummary, UserTable};
pub use error::{Error, Result};
pub use store::{ObjectStore, Store};
