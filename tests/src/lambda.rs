//! The predict function under cargo-lambda's Lambda emulator.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::{Response, Running, binary, exchange, free_port, repo_root};

/// The predict function under `cargo lambda watch`, cargo-lambda's local Lambda emulator,
/// on a free loopback port. The emulator serves the Lambda Runtime API and the Function
/// URL endpoint (`--only-lambda-apis`); the function is the `kindred-predict` binary this
/// test run built, started against that Runtime API as Lambda starts a bootstrap. (Left
/// to itself, the emulator would compile the function again with the feature set of
/// `cargo run -p kindred-predict`, which differs from the workspace's: about five minutes
/// of a fresh CI run. `./dev cloud` runs the ordinary `cargo lambda watch`.)
pub struct LambdaWatch {
    /// The emulator's address.
    pub addr: SocketAddr,
    emulator: Running,
    function: Running,
}

/// The function's package and binary name.
pub const FUNCTION: &str = "kindred-predict";

/// The name the emulator gives a function it does not start itself: the name in its
/// Function URL paths (`/lambda-url/_/predict`) and Invoke calls.
pub const EMULATED: &str = "_";

impl LambdaWatch {
    /// Starts the emulator and the function, with extra environment variables for the
    /// function, and waits until the function answers `GET /health` through the emulator
    /// (which loads no model, so the function stays cold).
    pub fn start(env: &[(&str, &str)]) -> LambdaWatch {
        let port = free_port();
        let mut cmd = Command::new("cargo");
        cmd.args(["lambda", "watch", "--only-lambda-apis", "--quiet"])
            .args([
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port.to_string(),
            ])
            .current_dir(repo_root());
        let mut emulator = Running::start(cmd);
        emulator.wait_for_text("starting Runtime server", Duration::from_secs(60));
        let mut cmd = Command::new(binary(FUNCTION));
        cmd.env_remove("KINDRED_LISTEN")
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", EMULATED)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("KINDRED_LOG_FORMAT", "json")
            .envs(env.iter().copied());
        let mut function = Running::start(cmd);
        function.wait_for_log("running as a Lambda function", Duration::from_secs(30));
        let watch = LambdaWatch {
            addr: ([127, 0, 0, 1], port).into(),
            emulator,
            function,
        };
        let path = format!("/lambda-url/{EMULATED}/health");
        let health = exchange(watch.addr, "GET", &path, None, "", Duration::from_secs(60));
        assert_eq!(health.status, 200, "{health:?}\n{}", watch.output());
        watch
    }

    /// A request through the emulator's Function URL endpoint (`/lambda-url/<fn>/<path>`),
    /// sent again (up to three times) when the emulator itself fails it (see
    /// [`is_emulator_error`]).
    pub fn request(&self, method: &str, path: &str, body: &str) -> Response {
        let mut attempts = 0;
        loop {
            let r = self.request_once(method, path, body);
            attempts += 1;
            if !is_emulator_error(&r) || attempts == 3 {
                return r;
            }
        }
    }

    /// One request through the emulator's Function URL endpoint, as it came back.
    pub fn request_once(&self, method: &str, path: &str, body: &str) -> Response {
        let path = format!("/lambda-url/{EMULATED}{path}");
        exchange(
            self.addr,
            method,
            &path,
            Some("application/json"),
            body,
            Duration::from_secs(120),
        )
    }

    /// `cargo lambda invoke` with an event (e.g. an API Gateway request); returns the
    /// function's response event.
    pub fn invoke(&self, event: &serde_json::Value) -> serde_json::Value {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("event.json");
        std::fs::write(&file, event.to_string()).unwrap();
        let out = Command::new("cargo")
            .args(["lambda", "invoke", EMULATED, "--output-format", "json"])
            .args(["--invoke-address", "127.0.0.1", "--invoke-port"])
            .arg(self.addr.port().to_string())
            .arg("--data-file")
            .arg(&file)
            .output()
            .expect("run cargo lambda invoke");
        assert!(
            out.status.success(),
            "cargo lambda invoke failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "invoke output is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Everything the emulator and the function have logged.
    pub fn output(&self) -> String {
        format!(
            "emulator:\n{}\nfunction:\n{}",
            self.emulator.output(),
            self.function.output()
        )
    }

    /// The function's JSON log lines whose message is `message`.
    pub fn logs(&self, message: &str) -> Vec<serde_json::Value> {
        self.function.logs(message)
    }

    /// Stops the function and the emulator.
    pub fn stop(&mut self) {
        self.function.stop();
        self.emulator.stop();
    }
}

/// Whether a response is a failure of cargo-lambda's emulator rather than of the function:
/// a 500 in the emulator's own problem+json shape (the function's errors are
/// `{"error", "detail"}` objects and it never answers 500). cargo-lambda 1.9.2 fails a
/// few requests in a thousand this way when the function's runtime client opens a new
/// connection to the emulator's Runtime API, which it counts as a new instance; AWS's
/// Lambda service does not route requests this way.
pub fn is_emulator_error(r: &Response) -> bool {
    r.status == 500 && r.body.contains("httpstatuses.com/500")
}
