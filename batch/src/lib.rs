//! Kindred's training job as a library: ingest the CSVs, build the weighted user x tag
//! matrix, factorise it with a truncated SVD, index the user embeddings with HNSW and
//! publish the versioned model through `kindred_core`.

pub mod assemble;
pub mod blas;
pub mod config;
pub mod course_eval;
pub mod eval;
pub mod exact_graph;
pub mod fast_hash;
pub mod index;
pub mod ingest;
pub mod matrix;
pub mod measured;
pub mod model_report;
pub mod neighbours;
pub mod pictures;
pub mod pipeline;
pub mod report;
pub mod smooth;
pub mod summary;
pub mod svd;
pub use kindred_core::tags;
pub mod train;
pub mod update;
pub mod update_eval;
pub mod versions;
mod wide;
