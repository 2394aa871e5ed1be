//! A TCP proxy whose behaviour the tests switch: slow answers, or none at all.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
