//! Kindred's shared core, used by both the training job and the predict function.
//!
//! The modules read bottom-up; each uses only those above it in this list:
//!
//! * [`error`]: the one error type.
//! * [`codec`]: bincode encoding with bounded decoding, SHA-256 digests.
//! * [`manifest`]: the versioned model format: format numbers, artifact names, the
//!   manifest that lists every artifact's size and digest.
//! * [`embedding`]: unit-length user embeddings and their dot products.
//! * [`coded`]: 8-bit codes of embeddings, bounding a scan before it ranks in `f32`.
//! * [`users`]: the user table (summaries and strongest features).
//! * [`tags`]: the one tag vocabulary across files and spellings (`C#`, `csharp`).
//! * [`delta`]: users folded in between trainings, beside a shard's index.
//! * [`search`]: nearest neighbours within one index (HNSW or exact scan).
//! * [`graph`]: checks an encoded HNSW index before it is decoded.
//! * [`shard`]: which shard a user lives in; searching several shards as one index.
//! * [`projection`]: folding a new profile (tags, interests) into the embedding space.
//! * [`courses`]: the catalogue and the courses each user viewed.
//! * [`model`]: a loaded model version, its parts checked against each other.
//! * [`query`]: the users nearest to one, and why two users are similar.
//! * [`recommend`]: courses from similar learners, scored on their engagement.
//! * [`store`]: object storage, a local folder or `s3://bucket/prefix`.
//! * [`registry`]: publishing a model version and loading the current one.
//! * [`versions`]: listing a store's versions, rolling back, pruning old ones.
//!
//! This crate never links LAPACK: the linear algebra lives in `kindred-batch`.

#![warn(missing_docs)]

pub mod codec;
pub mod coded;
pub mod courses;
pub mod delta;
pub mod embedding;
pub mod error;
pub mod fixed16;
pub mod graph;
mod handles;
pub mod hnsw;
pub mod manifest;
pub mod model;
pub mod projection;
pub mod query;
pub mod recommend;
pub mod registry;
pub mod search;
pub mod shard;
pub mod store;
pub mod tags;
pub mod users;
pub mod versions;

pub use embedding::Embedding;
pub use error::{Error, Result};
pub use manifest::Manifest;
pub use model::Model;
pub use store::{ObjectStore, Store};
pub use users::{UserSummary, UserTable};
