//! The whole local flow with the real binaries: generate data, train and publish to a
//! folder, serve it over HTTP, publish a second version and watch the server switch.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kindred_e2e::{Running, http, primary_cohorts, run_ok};
use serde_json::Value;

fn predict(addr: SocketAddr, handle: u64) -> (u16, Value) {
    let (status, body) = http(
        addr,
        "POST",
        "/predict",
        Some("application/json"),
        &format!("{{\"user_handle\": {handle}}}"),
    );
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn trained_models_are_served_ranked_and_a_new_version_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = dir.path().join("store");
    let (data_s, store_s) = (data.to_str().unwrap(), store.to_str().unwrap());
    // Given generated data with planted cohorts, trained and published to a folder,
    run_ok(
        "kindred-datagen",
        &[
            "--out",
            data_s,
            "--users",
            "2000",
            "--seed",
            "3",
            "--cohorts",
            "20",
        ],
    );
    let summary = run_ok(
        "kindred-batch",
        &[
            "train", "--data", data_s, "--store", store_s, "--rank", "24",
        ],
    );
    assert!(summary.contains("published: version"), "{summary}");
    let cohort = primary_cohorts(&data);

    // when the function serves that store, disclosing everything it knows,
    let mut server = Running::spawn(
        "kindred-predict",
        &[
            "--listen",
            "127.0.0.1:0",
            "--store",
            store_s,
            "--refresh-seconds",
            "0",
            "--log-format",
            "json",
            "--disclose",
            "full",
        ],
    );
    let serving = server.wait_for_log("serving", Duration::from_secs(30));
    let addr: SocketAddr = serving["fields"]["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // then POST /predict answers with ten ranked neighbours, mostly from the user's cohort,
    let mut same = 0;
    let mut total = 0;
    let mut explained = 0;
    let mut first_version = String::new();
    for handle in (1..=2000).step_by(97) {
        let (status, body) = predict(addr, handle);
        assert_eq!(status, 200, "{body}");
        first_version = body["model_version"].as_str().unwrap().to_owned();
        let similar = body["similar_users"].as_array().unwrap();
        assert_eq!(similar.len(), 10);
        let sims: Vec<f64> = similar
            .iter()
            .map(|s| s["similarity"].as_f64().unwrap())
            .collect();
        assert!(
            sims.windows(2).all(|w| w[0] >= w[1]),
            "not ranked: {sims:?}"
        );
        for s in similar {
            let other = s["user_handle"].as_u64().unwrap();
            assert_ne!(other, handle);
            // Each neighbour says why: shared features, positive and largest first,
            // summing to at most the rows' dot product (1 for identical rows).
            let because = s["because"].as_array().expect("because");
            let weights: Vec<f64> = because
                .iter()
                .map(|r| r["weight"].as_f64().unwrap())
                .collect();
            assert!(weights.iter().all(|&w| w > 0.0), "{because:?}");
            assert!(weights.windows(2).all(|w| w[0] >= w[1]), "{because:?}");
            assert!(weights.iter().sum::<f64>() <= 1.0 + 1e-4, "{because:?}");
            explained += usize::from(!because.is_empty());
            for r in because {
                let signal = r["signal"].as_str().unwrap();
                assert!(
                    ["views", "interests", "assessments"].contains(&signal),
                    "{r}"
                );
                if signal == "interests" {
                    // A shared interest is in both users' (untruncated) interest lists.
                    for list in [&body["summary"]["interests"], &s["summary"]["interests"]] {
                        let list = list.as_array().unwrap();
                        assert!(
                            list.len() >= 20 || list.contains(&r["tag"]),
                            "{r} not in {list:?}"
                        );
                    }
                }
            }
            total += 1;
            same += usize::from(cohort[&other] == cohort[&handle]);
        }
    }
    // (Measured: 170 of 210 with 16 features kept per user; the rest share only
    // features outside both users' strongest 16.)
    assert!(
        explained * 4 >= total * 3,
        "only {explained} of {total} neighbours say why"
    );
    let precision = same as f64 / total as f64;
    eprintln!("cohort precision@10 {precision} ({same} of {total})");
    // (Measured at 4c04b70: 0.776, 163 of 210, on this smaller data set.)
    assert!(
        precision >= 0.7,
        "cohort precision@10 {precision} (chance about 0.05)"
    );
    // an unknown user is a 404,
    assert_eq!(predict(addr, 987_654_321).0, 404);
    // cold-start profiles made of users' strongest tags and interests find users of their
    // cohorts (their summaries are partial: 5 tags and 20 interests),
    let (mut same, mut total) = (0, 0);
    for handle in (1..=2000).step_by(197) {
        let (_, known) = predict(addr, handle);
        let tags: serde_json::Map<String, Value> = known["summary"]["top_tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["tag"].as_str().unwrap().to_owned(),
                    t["avg_view_seconds"].clone(),
                )
            })
            .collect();
        let profile = serde_json::json!({"profile": {"tags": tags, "interests": known["summary"]["interests"]}});
        let (status, body) = http(
            addr,
            "POST",
            "/predict",
            Some("application/json"),
            &profile.to_string(),
        );
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        let similar = body["similar_users"].as_array().unwrap();
        assert_eq!(similar.len(), 10);
        for s in similar {
            total += 1;
            same += usize::from(cohort[&s["user_handle"].as_u64().unwrap()] == cohort[&handle]);
        }
    }
    assert!(
        same * 2 > total,
        "{same} of {total} profile neighbours from the user's cohort"
    );
    // and the explorer page is served.
    let (status, page) = http(addr, "GET", "/explore", None, "");
    assert_eq!(status, 200);
    assert!(page.contains("<form"), "{page}");

    // and after a second training run the server switches without a failed request.
    run_ok(
        "kindred-batch",
        &[
            "train", "--data", data_s, "--store", store_s, "--rank", "24",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = predict(addr, 1);
        assert_eq!(status, 200, "{body}");
        if body["model_version"] != first_version.as_str() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new version was not picked up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_update_folds_fresh_users_in_and_the_server_answers_for_them_without_a_retrain() {
    let dir = tempfile::tempdir().unwrap();
    let (data, delta, store) = (
        dir.path().join("data"),
        dir.path().join("delta"),
        dir.path().join("store"),
    );
    let (data_s, delta_s, store_s) = (
        data.to_str().unwrap(),
        delta.to_str().unwrap(),
        store.to_str().unwrap(),
    );
    // Given 2,000 generated users of which 200 are moved to a delta folder (100 new, 100
    // with their latest views held back), the rest trained and served,
    let said = run_ok(
        "kindred-datagen",
        &[
            "--out",
            data_s,
            "--users",
            "2000",
            "--seed",
            "5",
            "--cohorts",
            "20",
            "--delta-users",
            "200",
            "--delta-out",
            delta_s,
        ],
    );
    assert!(said.contains("moved 100 new and 100 changed"), "{said}");
    run_ok(
        "kindred-batch",
        &[
            "train",
            "--data",
            data_s,
            "--store",
            store_s,
            "--rank",
            "24",
            "--evaluate",
            "never",
        ],
    );
    let cohort = primary_cohorts(&data);
    let new: Vec<u64> = handles_in(&delta)
        .into_iter()
        .filter(|h| !handles_in(&data).contains(h))
        .collect();
    assert_eq!(new.len(), 100);
    let (mut server, addr) = kindred_e2e::serve_predict(&[
        "--store",
        store_s,
        "--refresh-seconds",
        "0",
        "--disclose",
        "full",
    ]);
    assert_eq!(predict(addr, new[0]).0, 404);
    let (_, before) = predict(addr, 1);

    // when `kindred-batch update` folds the delta in,
    let said = run_ok(
        "kindred-batch",
        &["update", "--data", delta_s, "--store", store_s, "--emf"],
    );
    assert!(
        said.contains("users folded in: 100 new, 100 changed, 0 skipped"),
        "{said}"
    );
    assert!(said.contains("no full training due"), "{said}");
    let emf: Value = serde_json::from_str(said.lines().last().unwrap()).unwrap();
    assert_eq!(emf["NewUsers"], 100);
    assert_eq!(emf["RetrainAdvised"], 0);
    let declared = emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap();
    assert!(declared.len() >= 10, "{emf}");
    for m in declared {
        assert!(emf[m["Name"].as_str().unwrap()].is_number(), "{m} in {emf}");
    }

    // then the server picks the new version up and answers for every new user, with
    // neighbours mostly of their cohort, never themselves and never twice the same user,
    let deadline = Instant::now() + Duration::from_secs(30);
    while predict(addr, new[0]).0 != 200 {
        assert!(Instant::now() < deadline, "the update was not picked up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut same, mut total) = (0, 0);
    for &h in &new {
        let (status, body) = predict(addr, h);
        assert_eq!(status, 200, "{body}");
        assert_ne!(body["model_version"], before["model_version"]);
        let similar: Vec<u64> = body["similar_users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["user_handle"].as_u64().unwrap())
            .collect();
        assert_eq!(similar.len(), 10);
        let mut unique = similar.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 10, "{similar:?}");
        assert!(!similar.contains(&h));
        total += 10;
        same += similar.iter().filter(|o| cohort[o] == cohort[&h]).count();
    }
    let precision = same as f64 / total as f64;
    assert!(
        precision >= 0.7,
        "folded users' cohort precision@10 {precision}"
    );
    // a user known before answers with the same handle once (its old point retired),
    let (status, body) = predict(addr, 1);
    assert_eq!(status, 200, "{body}");
    // and `versions` lists the update, marked as one.
    let version = kindred_e2e::published_version(&said).unwrap();
    let listed = run_ok("kindred-batch", &["versions", "--store", store_s]);
    let line = listed
        .lines()
        .find(|l| l.contains(version.as_str()))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(line.contains("update"), "{listed}");
    server.stop();
}

/// The handles with any row in a folder (every per-user file has the handle first).
fn handles_in(dir: &std::path::Path) -> std::collections::HashSet<u64> {
    let files = [
        "user_course_views.csv",
        "user_interests.csv",
        "user_assessment_scores.csv",
    ];
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(dir.join(f))
                .unwrap_or_default()
                .lines()
                .skip(1)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter_map(|l| l.split(',').next()?.trim_matches('"').parse().ok())
        .collect()
}
