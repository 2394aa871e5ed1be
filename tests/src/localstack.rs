//! LocalStack's S3 on the host, started and stopped by the tests.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{Running, exchange, free_port};

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
