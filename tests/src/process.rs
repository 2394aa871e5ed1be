//! Running the workspace's binaries: one-shot commands and long-running processes whose
//! output is captured.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of a workspace binary next to the test executable (`target/<profile>/<name>`).
///
/// `cargo test --workspace` builds the binaries of every package with integration tests.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile> folder");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --workspace --bins` (or ./dev test)",
        path.display()
    );
    path
}

/// Runs a binary to completion; panics with its output when it fails.
pub fn run_ok(name: &str, args: &[&str]) -> String {
    run_ok_with_env(name, args, &[])
}

/// Runs a binary to completion with extra environment variables; panics with its output
/// when it fails.
pub fn run_ok_with_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(binary(name))
        .args(args)
        .env_remove("KINDRED_STORE")
        .envs(env.iter().copied())
        .output()
        .expect("spawn");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs a binary that must fail; returns its stderr (panics with its output if it
/// succeeds).
pub fn run_err(name: &str, args: &[&str]) -> String {
    let out = Command::new(binary(name))
        .args(args)
        .env_remove("KINDRED_STORE")
        .output()
        .expect("spawn");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{name} {args:?} succeeded:\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// Starts `kindred-predict --listen 127.0.0.1:0 --log-format json` with `args` added;
/// returns it with the address it serves on (from its `serving` log line).
pub fn serve_predict(args: &[&str]) -> (Running, SocketAddr) {
    serve_predict_with_env(args, &[])
}

/// [`serve_predict`] with extra environment variables.
pub fn serve_predict_with_env(args: &[&str], env: &[(&str, &str)]) -> (Running, SocketAddr) {
    let mut cmd = Command::new(binary("kindred-predict"));
    cmd.args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(args)
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .envs(env.iter().copied());
    let mut p = Running::start(cmd);
    let serving = p.wait_for_log("serving", Duration::from_secs(30));
    let addr = serving["fields"]["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {serving}"));
    (p, addr)
}

/// A child process (with its own process group) stopped when dropped; its stdout and
/// stderr are collected together.
pub struct Running {
    child: Child,
    output: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Spawns a workspace binary.
    pub fn spawn(name: &str, args: &[&str]) -> Running {
        let mut cmd = Command::new(binary(name));
        cmd.args(args).env_remove("AWS_LAMBDA_RUNTIME_API");
        Running::start(cmd)
    }

    /// Spawns any command in a new process group (so [`Running::stop`] reaches its children).
    pub fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("stdout"));
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("stderr"));
        let readers = [out, err]
            .into_iter()
            .map(|pipe| {
                let sink = Arc::clone(&output);
                std::thread::spawn(move || {
                    for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                        let mut s = sink.lock().unwrap();
                        s.push_str(&line);
                        s.push('\n');
                    }
                })
            })
            .collect();
        Running {
            child,
            output,
            readers,
        }
    }

    /// Everything the process has written so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Kills the process at once (SIGKILL, no chance to clean up), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself; panics with its output after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Everything it wrote is in `output` once the readers reach end of file.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {limit:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// JSON log lines (tracing's format) whose message is `message`.
    pub fn logs(&self, message: &str) -> Vec<serde_json::Value> {
        self.output()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["fields"]["message"] == message)
            .collect()
    }

    /// Waits for a JSON log line whose message is `message` and returns it.
    pub fn wait_for_log(&mut self, message: &str, limit: Duration) -> serde_json::Value {
        self.wait_until(&format!("{message:?}"), limit, |p| p.logs(message).pop())
    }

    /// Waits until the output contains `text`.
    pub fn wait_for_text(&mut self, text: &str, limit: Duration) {
        self.wait_until(&format!("{text:?}"), limit, |p| {
            p.output().contains(text).then_some(())
        })
    }

    /// Polls `check` every 20 ms; panics with the output when the process exits first or
    /// `limit` passes.
    fn wait_until<T>(
        &mut self,
        what: &str,
        limit: Duration,
        check: impl Fn(&Running) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "process exited ({status}) before {what}:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {limit:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the whole process group: SIGTERM, then SIGKILL after five seconds.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}
