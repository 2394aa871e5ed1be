//! Running the `kindred-predict` binary in tests: killed on drop, stderr collected.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A command for the function binary with a clean environment for its own settings.
pub fn function() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kindred-predict"));
    for var in [
        "AWS_LAMBDA_RUNTIME_API",
        "KINDRED_STORE",
        "KINDRED_LISTEN",
        "KINDRED_REFRESH_SECONDS",
        "KINDRED_LOG_FORMAT",
        "KINDRED_LOG",
        "KINDRED_DISCLOSE",
        "KINDRED_API_KEYS",
        "KINDRED_SHARD_KEY",
        "KINDRED_SHARDS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// A running child process; killed (and reaped) when dropped, even if a test fails.
pub struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
    /// Set once the stderr reader has read the pipe to its end.
    drained: Arc<AtomicBool>,
}

impl Running {
    /// Spawns `cmd` with stderr collected in the background.
    pub fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let pipe = child.stderr.take().expect("stderr pipe");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let drained = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&drained);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
            done.store(true, Ordering::SeqCst);
        });
        Running {
            child,
            stderr,
            drained,
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Stderr lines that are JSON log events.
    pub fn log_events(&self) -> Vec<Value> {
        self.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for a JSON log event matching `pred`; panics with the log after `limit`
    /// or when the process has exited.
    pub async fn wait_for_log(
        &mut self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(e) = self.log_events().into_iter().find(|e| pred(e)) {
                return e;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the function exited ({status}) before logging {what}:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} logged within {limit:?}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the "serving" event of a `--listen` server logging JSON and returns the
    /// address it logged (with `--listen 127.0.0.1:0`, the free port the system chose).
    pub async fn wait_for_address(&mut self, limit: Duration) -> SocketAddr {
        let serving = self
            .wait_for_log(limit, "the listening address", |e| {
                e["fields"]["message"] == "serving"
            })
            .await;
        serving["fields"]["address"]
            .as_str()
            .expect("address field")
            .parse()
            .expect("socket address")
    }

    /// Waits up to `limit` for the process to exit and for its last stderr lines to be
    /// read (the reader may lag the exit), so [`Running::stderr`] is then complete.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                while !self.drained.load(Ordering::SeqCst) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {limit:?}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
