//! Spot-checks a running function's answers against the same model answered in process,
//! for `./dev load`: while the load generator runs, requests a sample of users over HTTP
//! and compares each body byte for byte with the in-process answer.
//!
//! ```text
//! cargo run --release --example spot_check -- <store folder> <host:port> <seconds>
//! ```
//!
//! Prints how many answers were compared and how many differed; exits non-zero on any
//! difference or failed request.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use kindred_core::store::LocalStore;
use kindred_predict::{api, cache::ModelCache};
use tower::ServiceExt;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [store, addr, seconds] = args.as_slice() else {
        eprintln!("usage: spot_check <store folder> <host:port> <seconds>");
        return ExitCode::from(2);
    };
    let (Ok(addr), Ok(seconds)) = (addr.parse::<SocketAddr>(), seconds.parse::<u64>()) else {
        eprintln!("spot_check: bad address or seconds");
        return ExitCode::from(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // In process: the same store, the same router, no network.
    let cache = ModelCache::new(LocalStore::new(store), Duration::from_secs(1 << 30));
    let router = api::router(cache.clone());
    let bodies = [
        |h: u64| format!(r#"{{"user_handle": {h}}}"#),
        |h: u64| format!(r#"{{"user_handle": {h}, "k": 3, "exclude": [{}]}}"#, h + 1),
        |h: u64| format!(r#"{{"user_handles": [{h}, {}], "k": 5}}"#, h + 7),
    ];
    let expected: Vec<(String, String)> = runtime.block_on(async {
        let warm = router
            .clone()
            .oneshot(post("{\"user_handle\": 1}".into()))
            .await;
        drop(warm);
        let model = cache.peek().expect("the model loads in process");
        let step = (model.len() / 200).max(1);
        let mut out = Vec::new();
        for (i, u) in model.users.users.iter().step_by(step).take(200).enumerate() {
            let body = bodies[i % bodies.len()](u.handle);
            let Ok(resp) = router.clone().oneshot(post(body.clone())).await;
            let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
                .await
                .expect("body");
            out.push((body, String::from_utf8_lossy(&bytes).into_owned()));
        }
        out
    });
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut compared, mut differed, mut failed) = (0u64, 0u64, 0u64);
    let mut i = 0;
    while Instant::now() < deadline {
        let (body, want) = &expected[i % expected.len()];
        i += 1;
        // The minimal client panics on a refused connection or a timeout: count those.
        let got = std::panic::catch_unwind(|| {
            kindred_e2e::exchange(
                addr,
                "POST",
                "/predict",
                Some("application/json"),
                body,
                Duration::from_secs(10),
            )
        });
        let Ok(got) = got else {
            failed += 1;
            compared += 1;
            continue;
        };
        if got.status != 200 {
            failed += 1;
            eprintln!("spot-check: status {} for {body}: {}", got.status, got.body);
        } else if got.body != *want {
            differed += 1;
            eprintln!("spot-check: a different answer for {body}");
        }
        compared += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "spot-checks under load: {compared} answers compared with the in-process result, \
         {differed} differed, {failed} failed"
    );
    if differed + failed > 0 || compared == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn post(body: String) -> Request<Body> {
    Request::post("/predict")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request")
}
