//! The explorer page (`GET /explore`) in a real browser: the real binary serves a model
//! (`--listen`) and headless Chromium loads the page, whose script asks `predict` and
//! renders the answer. The browser tests need Debian's `chromium` (`./dev test` installs
//! it); the page's headers and self-containment are checked without one.

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{Running, function};
use common::{UNKNOWN_HANDLE, known_handle};
use kindred_core::store::LocalStore;
use serde_json::Value;
use tempfile::TempDir;

const CHROMIUM: &str = "/usr/bin/chromium";
/// A browser run taking longer than this has hung: it is killed and the test fails.
const BROWSER_LIMIT: Duration = Duration::from_secs(60);
/// Virtual time the page gets to load, query and render (ms; pending fetches pause it).
const VIRTUAL_TIME_BUDGET: &str = "--virtual-time-budget=10000";

/// The binary serving a store on a free loopback port.
struct Server {
    _process: Running,
    _store: TempDir,
    addr: SocketAddr,
}

impl Server {
    /// Serves an empty store, or one with the test model published when `with_model`.
    async fn start(with_model: bool) -> Server {
        let store = tempfile::tempdir().unwrap();
        if with_model {
            common::publish(&LocalStore::new(store.path()), &common::version(1)).await;
        }
        let mut cmd = function();
        cmd.args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(["--disclose", "profiles", "--store"])
            .arg(store.path());
        let mut process = Running::spawn(cmd);
        let addr = process.wait_for_address(Duration::from_secs(30)).await;
        Server {
            _process: process,
            _store: store,
            addr,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The user handles `POST /predict` ranks for `handle`, over HTTP.
    fn neighbours(&self, handle: u64) -> (Vec<String>, Value) {
        let body = format!(r#"{{"user_handle": {handle}}}"#);
        let (status, answer) = kindred_e2e::http(
            self.addr,
            "POST",
            "/predict",
            Some("application/json"),
            &body,
        );
        assert_eq!(status, 200, "{answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        let handles = answer["similar_users"]
            .as_array()
            .expect("similar_users")
            .iter()
            .map(|u| u["user_handle"].to_string())
            .collect();
        (handles, answer)
    }
}

impl Server {
    /// The course ids `POST /recommend` ranks for `handle`, over HTTP.
    fn recommended(&self, handle: u64) -> (Vec<String>, Value) {
        let body = format!(r#"{{"user_handle": {handle}}}"#);
        let (status, answer) = kindred_e2e::http(
            self.addr,
            "POST",
            "/recommend",
            Some("application/json"),
            &body,
        );
        assert_eq!(status, 200, "{answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        let courses = answer["recommendations"]
            .as_array()
            .expect("recommendations")
            .iter()
            .map(|c| c["course_id"].as_str().unwrap().to_owned())
            .collect();
        (courses, answer)
    }
}

/// A headless Chromium run; its whole process group is killed when dropped.
struct Browser {
    child: Child,
    dir: TempDir,
}

impl Browser {
    /// Runs Chromium on `url` with `flags` and a fresh profile until it exits (at most
    /// [`BROWSER_LIMIT`]); returns what it wrote to stdout (the DOM with `--dump-dom`).
    fn run(url: &str, flags: &[&str]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
            ])
            .args(["--no-first-run", "--disable-background-networking"])
            .args(["--disable-component-update", "--disable-sync"])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .args(flags)
            .arg(url)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMIUM} (Debian package chromium): {e}"));
        let mut browser = Browser { child, dir };
        let deadline = Instant::now() + BROWSER_LIMIT;
        let status = loop {
            if let Some(status) = browser.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "chromium still running after {BROWSER_LIMIT:?} on {url}:\n{}",
                browser.read("stderr")
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "chromium {status}:\n{}",
            browser.read("stderr")
        );
        browser.read("stdout")
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The serialized element with `id` (to its first closing tag of the same name: enough
/// for the page's table and paragraphs, which nest no element of their own kind).
fn element<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!(r#"id="{id}""#))
        .unwrap_or_else(|| panic!("no #{id} in the DOM:\n{dom}"));
    let start = dom[..at].rfind('<').unwrap();
    let name: String = dom[start + 1..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    let close = format!("</{name}>");
    let end = dom[start..].find(&close).expect("closing tag") + close.len();
    &dom[start..start + end]
}

/// The values of attribute `name` in `html`, in document order.
fn attribute_values(html: &str, name: &str) -> Vec<String> {
    let key = format!(r#" {name}=""#);
    html.split(&key)
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

/// The text of `html`: tags dropped, the entities a serializer writes decoded.
fn text(html: &str) -> String {
    let mut out = String::new();
    for part in html.split('<') {
        out.push_str(part.split_once('>').map_or(part, |(_, text)| text));
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Width and height from a PNG's IHDR chunk (the first 24 bytes).
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.len() > 24, "PNG too short: {} bytes", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&png[12..16], b"IHDR", "first chunk is not IHDR");
    let be = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    (be(&png[16..20]), be(&png[20..24]))
}

#[tokio::test]
#[ignore = "needs Debian chromium (installed by ./dev test)"]
async fn chromium_shows_the_neighbours_predict_ranks_in_the_same_order() {
    // Given the binary serving a model, and the neighbours POST /predict ranks for a user,
    let server = Server::start(true).await;
    let handle = known_handle(7);
    let (expected, answer) = server.neighbours(handle);
    assert_eq!(expected.len(), 10, "{answer}");
    // when Chromium loads the explorer for that user and lets its script run,
    let url = server.url(&format!("/explore?handle={handle}"));
    let dom = Browser::run(&url, &["--dump-dom", VIRTUAL_TIME_BUDGET]);
    // then the table's rows are those neighbours, in order,
    let table = element(&dom, "neighbours");
    assert_eq!(attribute_values(table, "data-handle"), expected, "{table}");
    // each with its reasons,
    let rows: Vec<String> = table.split("<tr").skip(2).map(text).collect();
    let mut reasons = 0;
    for (row, user) in rows.iter().zip(answer["similar_users"].as_array().unwrap()) {
        for reason in user["because"].as_array().unwrap() {
            let tag = reason["tag"].as_str().unwrap();
            assert!(row.contains(tag), "{tag:?} not in {row:?}");
            reasons += 1;
        }
    }
    assert!(reasons > 0, "no neighbour has reasons to show: {answer}");
    // under the user's summary, and the status is no error.
    assert!(text(element(&dom, "summary")).contains(&format!("User {handle}")));
    let status = element(&dom, "status");
    assert_eq!(attribute_values(status, "data-state"), ["ok"], "{status}");
    assert!(text(status).contains("10 users most similar"), "{status}");
    // Below them, the courses POST /recommend ranks, in its order.
    let (expected, answer) = server.recommended(handle);
    assert!(!expected.is_empty(), "{answer}");
    let courses = element(&dom, "courses");
    assert_eq!(
        attribute_values(courses, "data-course"),
        expected,
        "{courses}"
    );
    assert!(text(courses).contains("similar learner"), "{courses}");
}

#[tokio::test]
#[ignore = "needs Debian chromium (installed by ./dev test)"]
async fn chromium_screenshots_an_answer_and_an_unknown_user_differently() {
    // Given the binary serving a model,
    let server = Server::start(true).await;
    let shots = tempfile::tempdir().unwrap();
    // when Chromium screenshots the explorer for a known and for an unknown user,
    let shoot = |handle: u64, file: &str| {
        let png = shots.path().join(file);
        let flag = format!("--screenshot={}", png.display());
        let url = server.url(&format!("/explore?handle={handle}"));
        let flags = [
            flag.as_str(),
            "--window-size=1000,800",
            VIRTUAL_TIME_BUDGET,
            "--dump-dom",
        ];
        let dom = Browser::run(&url, &flags);
        let png = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot {file}: {e}"));
        (png, dom)
    };
    let (found, found_dom) = shoot(known_handle(7), "explore.png");
    let (unknown, unknown_dom) = shoot(UNKNOWN_HANDLE, "unknown.png");
    // then both are PNGs of the window's size,
    assert_eq!(png_size(&found), (1000, 800));
    assert_eq!(png_size(&unknown), (1000, 800));
    // the first shows the answer and the second the 404 error text,
    let status = element(&found_dom, "status");
    assert_eq!(attribute_values(status, "data-state"), ["ok"], "{status}");
    let status = element(&unknown_dom, "status");
    assert_eq!(
        attribute_values(status, "data-state"),
        ["error"],
        "{status}"
    );
    let message = text(status);
    assert!(
        message.contains("404") && message.contains("unknown user"),
        "{message:?}"
    );
    assert!(
        !unknown_dom.contains("data-handle="),
        "rows shown for an unknown user"
    );
    // and the pictures differ (the page is not blank).
    assert_ne!(found, unknown, "the two screenshots are identical");
}

#[tokio::test]
async fn the_explorer_is_self_contained_html_that_calls_predict_relatively() {
    // Given the binary (no model needed: the page is static),
    let server = Server::start(false).await;
    // when the page is fetched,
    let r = kindred_e2e::exchange(server.addr, "GET", "/explore", None, "", BROWSER_LIMIT);
    // then it is the HTML in the repo, not cached without revalidation, under a policy
    // that lets it load nothing from elsewhere;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let csp = r.header("content-security-policy").expect("a CSP");
    assert!(csp.starts_with("default-src 'self';"), "{csp}");
    let in_repo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/explore.html")).unwrap();
    assert_eq!(r.body, in_repo);
    assert!(
        !in_repo.contains("://"),
        "the page refers to another origin"
    );
    // its script asks `predict` and `recommend` relative to the page (so a stage prefix
    // is kept) and writes answers as text, never as HTML.
    assert!(in_repo.contains(r#"fetch("predict""#));
    assert!(in_repo.contains(r#"fetch("recommend""#));
    assert!(!in_repo.contains("/predict\"") && !in_repo.contains("/recommend\""));
    assert!(!in_repo.contains("innerHTML"));
    // Only GET (and HEAD) are allowed.
    let r = kindred_e2e::exchange(server.addr, "POST", "/explore", None, "", BROWSER_LIMIT);
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
}
