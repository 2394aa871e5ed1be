//! Kindred's end-to-end tests live in `tests/tests/`: they drive the real binaries
//! (`kindred-datagen`, `kindred-batch`, `kindred-predict`) as a user would. This library
//! holds the helpers they share (the predict crate's tests use them too).

pub mod events;
mod http;
mod lambda;
mod localstack;
mod process;
mod proxy;
mod support;

pub use http::{Response, exchange, http, try_exchange};
pub use lambda::{EMULATED, FUNCTION, LambdaWatch, is_emulator_error};
pub use localstack::LocalStack;
pub use process::{
    Running, binary, run_err, run_ok, run_ok_with_env, serve_predict, serve_predict_with_env,
};
pub use proxy::{FaultProxy, ProxyMode};
pub use support::{
    aws_env, background_job, eventually, free_port, primary_cohorts, published_version, repo_root,
    unique_prefix,
};
