//! Kindred's end-to-end tests live in `tests/tests/`: they drive the real binaries
//! (`kindred-datagen`, `kindred-batch`, `kindred-predict`) as a user would. This library
//! holds the helpers they share (the predict crate's tests use them too).

pub mod events;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
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

/// An HTTP response as the minimal client saw it.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: String,
}

impl Response {
    /// The first value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A minimal HTTP/1.1 exchange (one request per connection); returns status and body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, String) {
    let r = exchange(
        addr,
        method,
        path,
        content_type,
        body,
        Duration::from_secs(30),
    );
    (r.status, r.body)
}

/// A minimal HTTP/1.1 exchange (one request per connection) that waits up to `limit`
/// for the response.
pub fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
    limit: Duration,
) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(limit)).unwrap();
    let ct = content_type
        .map(|c| format!("content-type: {c}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{ct}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("response");
    let (head, rest) = raw.split_once("\r\n\r\n").expect("HTTP head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// Each generated user's planted (primary) cohort, from `<dir>/ground_truth.csv` as
/// `kindred-datagen` writes it.
pub fn primary_cohorts(dir: &Path) -> std::collections::HashMap<u64, u32> {
    kindred_datagen::read_ground_truth(&dir.join("ground_truth.csv"))
        .expect("ground truth")
        .into_iter()
        .map(|(handle, truth)| (handle, truth.primary_cohort))
        .collect()
}

/// The repository root (the workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// An S3 key prefix no other test run uses: `<kind>-<name>-<pid>-<nanoseconds>`.
pub fn unique_prefix(kind: &str, name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{kind}-{name}-{}-{nanos}", std::process::id())
}

/// The environment that points the AWS SDK at an S3-compatible `endpoint` (LocalStack)
/// with its fixed test credentials.
pub fn aws_env(endpoint: &str) -> Vec<(&str, &str)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ]
}

/// The version a `kindred-batch train` run printed as published, if it published one.
pub fn published_version(output: &str) -> Option<String> {
    let rest = output.split("published: version ").nth(1)?;
    Some(rest.split_whitespace().next()?.to_owned())
}

/// A loopback port that was free a moment ago, and never handed out before in this test
/// process: the kernel may offer a port again as soon as its probe closes, and two tests
/// running at once would then start their servers on one port (a function would poll
/// another test's server as its Runtime API).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind a free port")
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Waits for a job that `./dev test` started beside the test run (cargo-deny's build, the
/// Lambda zip's cross-build; see `start_job` in `dev`): `KINDRED_<job>_DONE` names the file
/// its exit status is written to when it ends, `KINDRED_<job>_LOG` its log. Returns `false`
/// when the variable is unset (a run outside `./dev test`: the test does the work itself);
/// panics with the log when the job failed or has not ended within `limit`.
pub fn background_job(job: &str, limit: Duration) -> bool {
    let Ok(done) = std::env::var(format!("KINDRED_{job}_DONE")) else {
        return false;
    };
    let log = std::env::var(format!("KINDRED_{job}_LOG")).unwrap_or_default();
    let tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    let status = eventually(limit, &format!("the background job {job} to end"), || {
        std::fs::read_to_string(&done).ok()
    });
    assert_eq!(status.trim(), "0", "background job {job} failed ({log}):\n{}", tail());
    true
}

/// Polls `check` every 100 ms until it returns `Some`, panicking with `what` after `limit`.
pub fn eventually<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A LocalStack S3 of the test's own, on a free loopback port, that the test can stop
/// and start again (on the same port). LocalStack's Python comes from
/// `KINDRED_LOCALSTACK_PYTHON`, which `./dev test` sets. Community LocalStack keeps S3 in
/// memory, so a restart starts empty.
pub struct LocalStack {
    port: u16,
    dir: tempfile::TempDir,
    process: Option<Running>,
}

impl LocalStack {
    /// Starts LocalStack and waits until S3 is available.
    pub fn start() -> LocalStack {
        let mut ls = LocalStack {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            process: None,
        };
        ls.resume();
        ls
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the LocalStack process (its data is lost).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    /// Starts LocalStack again on the same port, after [`LocalStack::stop`].
    pub fn resume(&mut self) {
        self.stop();
        let python = std::env::var("KINDRED_LOCALSTACK_PYTHON")
            .expect("KINDRED_LOCALSTACK_PYTHON (LocalStack's Python; ./dev test sets it)");
        let mut cmd = Command::new(python);
        cmd.args(["-m", "localstack.runtime.main"])
            .env("GATEWAY_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("SERVICES", "s3")
            .env("DNS_ADDRESS", "0")
            .env("FILESYSTEM_ROOT", self.dir.path().join("fs"))
            .env("LOCALSTACK_VOLUME_DIR", self.dir.path().join("volume"))
            .env("SKIP_SSL_CERT_DOWNLOAD", "1")
            .env("DISABLE_EVENTS", "1");
        let process = Running::start(cmd);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let up = TcpStream::connect(addr).is_ok() && {
                let r = exchange(
                    addr,
                    "GET",
                    "/_localstack/health",
                    None,
                    "",
                    Duration::from_secs(5),
                );
                let s3 = &r.json()["services"]["s3"];
                s3 == "available" || s3 == "running"
            };
            if up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "LocalStack did not start:\n{}",
                process.output()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        self.process = Some(process);
    }
}

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
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt"))
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

/// What a [`FaultProxy`] does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forwards both ways untouched.
    Pass,
    /// Forwards, but holds every chunk of the upstream's answers for this long first.
    Delay(Duration),
    /// Closes new connections at once and cuts the open ones (the service is "down").
    Refuse,
}

/// A TCP proxy on a free loopback port in front of `upstream` (e.g. LocalStack) whose
/// behaviour can be switched while clients use it: slow answers, or none at all.
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    mode: Arc<Mutex<ProxyMode>>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
}

impl FaultProxy {
    /// Starts forwarding to `upstream` (`host:port`) in [`ProxyMode::Pass`].
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let mode = Arc::new(Mutex::new(ProxyMode::Pass));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (m, o, stop) = (Arc::clone(&mode), Arc::clone(&open), Arc::clone(&stopped));
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if *m.lock().unwrap() == ProxyMode::Refuse {
                    continue; // dropped: the client sees the connection closed
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                {
                    let mut open = o.lock().unwrap();
                    open.retain(|s| s.peer_addr().is_ok());
                    open.extend([&client, &server].iter().filter_map(|s| s.try_clone().ok()));
                }
                // `set(Refuse)` may have drained the list just before this registered.
                if *m.lock().unwrap() == ProxyMode::Refuse {
                    continue;
                }
                let pairs = [
                    (client.try_clone(), server.try_clone(), false),
                    (server.try_clone(), client.try_clone(), true),
                ];
                for (from, to, answers) in pairs {
                    let (Ok(mut from), Ok(mut to)) = (from, to) else {
                        continue;
                    };
                    let mode = Arc::clone(&m);
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let now = *mode.lock().unwrap();
                            match now {
                                ProxyMode::Refuse => break,
                                ProxyMode::Delay(d) if answers => std::thread::sleep(d),
                                _ => {}
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        FaultProxy {
            addr,
            mode,
            open,
            stopped,
        }
    }

    /// `http://<addr>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches the behaviour; [`ProxyMode::Refuse`] also cuts every open connection.
    pub fn set(&self, mode: ProxyMode) {
        *self.mode.lock().unwrap() = mode;
        if mode == ProxyMode::Refuse {
            self.cut_all();
        }
    }

    fn cut_all(&self) {
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for FaultProxy {
    /// Stops accepting (a last connection wakes the accept loop) and cuts what is open.
    fn drop(&mut self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
        self.cut_all();
    }
}
