//! Kindred's predict function: `POST /predict` answers with the customers most similar
//! to a given one, ranked by cosine similarity, each with a short summary.
//!
//! The same [`api::router`] serves as an AWS Lambda (API Gateway REST and HTTP APIs,
//! Function URLs, `cargo lambda watch`) and as a plain local HTTP server. The model is
//! loaded lazily by [`cache::ModelCache`] on first use, verified, shared by all requests
//! and swapped for a newer published version in the background.

pub mod api;
pub mod cache;
pub mod memory;
pub mod metrics;
pub mod scatter;
