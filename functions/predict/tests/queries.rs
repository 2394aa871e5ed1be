//! The richer queries of `POST /predict`, in process against the trained test model:
//! cold-start profiles folded into the embedding space, filters and batches.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{UNKNOWN_HANDLE, known_handle, model, viewer_row};
use kindred_batch::ingest;
use kindred_core::projection::Profile;
use kindred_predict::api::{self, BatchItem, Disclosure, Filters};

/// Each user's full data as a profile: mean seconds per tag over their view rows (as
/// training computes it), interests and assessment scores, with tags by name.
fn profiles() -> HashMap<u64, Profile> {
    common::trained(); // writes the data
    let ds = ingest::read_dir(common::data_dir()).expect("read test data");
    let name = |t: u32| ds.tags.names[t as usize].clone();
    let mut sums: BTreeMap<(u64, u32), (f64, u32)> = BTreeMap::new();
    for v in &ds.views {
        for &t in &ds.course_tags[v.course as usize] {
            let e = sums.entry((v.user, t)).or_default();
            e.0 += f64::from(v.seconds);
            e.1 += 1;
        }
    }
    let mut out: HashMap<u64, Profile> = HashMap::new();
    for ((u, t), (sum, n)) in sums {
        out.entry(u)
            .or_default()
            .views
            .push((name(t), (sum / f64::from(n)) as f32));
    }
    for &(u, t) in &ds.interests {
        out.entry(u).or_default().interests.push(name(t));
    }
    for &(u, t, s) in &ds.assessments {
        out.entry(u)
            .or_default()
            .assessments
            .push((name(t), f32::from(s)));
    }
    out
}

#[test]
fn a_known_users_full_profile_folds_in_next_to_that_user() {
    // Given the full data of 40 users as cold-start profiles,
    let m = model();
    let profiles = profiles();
    let mut found = 0;
    let mut sims = Vec::new();
    let mut checked = 0;
    for i in 0..40 {
        let handle = known_handle(i * 7);
        let Some(p) = profiles.get(&handle) else {
            continue;
        };
        checked += 1;
        // when each is folded in and its 10 neighbours searched,
        let a = api::answer_profile(m, p, 10, &Filters::default(), Disclosure::Full)
            .expect("profile answer");
        // then the user is among them (the fold-in reproduces training's embedding up to
        // the smoothing step), with a high similarity,
        if let Some(me) = a.similar_users.iter().find(|u| u.user_handle == handle) {
            found += 1;
            sims.push(me.similarity);
        }
        // every matched tag is the profile's, with unit-length weights, largest first,
        let sq: f32 = a.matched.iter().map(|r| r.weight * r.weight).sum();
        assert!((sq - 1.0).abs() < 1e-3, "weights of a unit row: {sq}");
        assert!(a.matched.windows(2).all(|w| w[0].weight >= w[1].weight));
        assert!(a.unknown_tags.is_empty(), "{:?}", a.unknown_tags);
        // and the answer is ranked.
        assert!(
            a.similar_users
                .windows(2)
                .all(|w| w[0].similarity >= w[1].similarity)
        );
    }
    assert!(checked >= 30, "only {checked} users had data");
    assert!(
        found as f64 >= 0.9 * checked as f64,
        "the user was among their profile's 10 neighbours for {found} of {checked}"
    );
    sims.sort_by(f32::total_cmp);
    assert!(
        sims[sims.len() / 2] > 0.95,
        "median self-similarity {}",
        sims[sims.len() / 2]
    );
}

#[test]
fn a_profile_spelled_differently_folds_in_the_same() {
    // Given a user's profile and the same with tag names in another case,
    let m = model();
    let profiles = profiles();
    let handle = known_handle(11);
    let p = profiles.get(&handle).expect("user data");
    let shouted = Profile {
        views: p
            .views
            .iter()
            .map(|(t, v)| (t.to_uppercase(), *v))
            .collect(),
        interests: p.interests.iter().map(|t| t.to_uppercase()).collect(),
        assessments: p.assessments.clone(),
        ages: Vec::new(),
    };
    // when both are folded in, then the embeddings agree.
    let a = m.fold(p).expect("projection");
    let b = m.fold(&shouted).expect("projection");
    assert!(a.embedding.cosine(&b.embedding) > 0.9999);
}

#[test]
fn exclude_and_min_similarity_filter_the_ranked_list() {
    let m = model();
    let handle = known_handle(3);
    let plain = api::answer(m, handle, 10).expect("known");
    let top: Vec<u64> = plain.similar_users.iter().map(|u| u.user_handle).collect();
    // Given the first two neighbours excluded, then the list starts at the third and
    // still has ten users, none of them excluded.
    let filters = Filters {
        exclude: top[..2].iter().copied().collect(),
        ..Filters::default()
    };
    let a = api::answer_handle(m, handle, 10, &filters, Disclosure::Full).expect("known");
    let got: Vec<u64> = a.similar_users.iter().map(|u| u.user_handle).collect();
    assert_eq!(got.len(), 10);
    assert_eq!(got[..8], top[2..]);
    assert!(!got.contains(&top[0]) && !got.contains(&top[1]));
    assert_eq!(a.similar_users[0].rank, 1);
    // Given a floor at the fifth similarity, then exactly the users at or above it remain.
    let floor = plain.similar_users[4].similarity;
    let filters = Filters {
        min_similarity: Some(floor),
        ..Filters::default()
    };
    let a = api::answer_handle(m, handle, 10, &filters, Disclosure::Full).expect("known");
    assert!(
        a.similar_users.len() >= 5 && a.similar_users.len() < 10
            || floor == plain.similar_users[9].similarity
    );
    assert!(a.similar_users.iter().all(|u| u.similarity >= floor));
}

#[test]
fn a_batch_answers_like_single_requests_in_order() {
    let m = model();
    let handles = [
        known_handle(1),
        UNKNOWN_HANDLE,
        known_handle(9),
        known_handle(1),
    ];
    let batch = api::answer_batch(m, &handles, 5, &Filters::default(), Disclosure::Full);
    assert_eq!(batch.results.len(), 4);
    for (h, item) in handles.iter().zip(&batch.results) {
        match (item, api::answer(m, *h, 5)) {
            (BatchItem::Answer(a), Ok(single)) => assert_eq!(a, &single),
            (BatchItem::Error { user_handle, error }, Err(_)) => {
                assert_eq!((*user_handle, *error), (*h, "unknown user"));
            }
            (item, single) => panic!("{h}: batch {item:?} vs single {single:?}"),
        }
    }
}

/// `POST /recommend` in process: a validated query's JSON answer.
async fn recommend_json(body: &str, disclosure: Disclosure) -> (u16, serde_json::Value) {
    let q = api::parse_for(api::Ask::Recommend, &Default::default(), body.as_bytes())
        .expect("valid request");
    let resp = match api::respond_recommend(model(), &q, disclosure) {
        Ok(r) => r,
        Err(e) => axum::response::IntoResponse::into_response(e),
    };
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[test]
fn recommended_courses_are_unseen_ranked_and_come_from_the_neighbours() {
    let m = model();
    let courses = m.courses().expect("the test model has a course table");
    let handle = known_handle(viewer_row(4));
    let a = api::recommend_handle(m, handle, 10, &Filters::default(), Disclosure::Profiles)
        .expect("known");
    assert_eq!(a.recommendations.len(), 10);
    assert_eq!(a.neighbours, 50);
    let seen: Vec<&str> = courses
        .viewed_by(handle)
        .iter()
        .map(|v| courses.ids[v.course as usize].as_str())
        .collect();
    assert!(!seen.is_empty());
    let neighbours: Vec<u64> = api::neighbours(
        m,
        &m.embedding(m.row_of(handle).unwrap()),
        m.row_of(handle),
        50,
        &Filters::default(),
    )
    .iter()
    .map(|n| m.users.users.handle(n.row))
    .collect();
    for (i, r) in a.recommendations.iter().enumerate() {
        // Ranked, never a course the learner viewed,
        assert_eq!(r.rank as usize, i + 1);
        assert!(!seen.contains(&r.course_id), "{} was viewed", r.course_id);
        // each viewed by the similar learners the answer names (all among the 50),
        let because = r.because.as_ref().expect("reasons are disclosed");
        let voters = because
            .similar_users
            .as_ref()
            .expect("profiles are disclosed");
        assert!(!voters.is_empty() && voters.len() <= api::VOTERS_SHOWN);
        assert!(because.similar_learners as usize >= voters.len());
        let id = m.course_id(r.course_id).unwrap();
        for v in voters {
            assert!(neighbours.contains(&v.user_handle));
            assert!(
                courses
                    .viewed_by(v.user_handle)
                    .iter()
                    .any(|c| c.course == id)
            );
        }
        // with the course's tags, the shared ones among them.
        let tags: Vec<&str> = courses.tags[id as usize]
            .iter()
            .map(|&t| m.tag(t))
            .collect();
        assert_eq!(r.tags, tags);
        assert!(because.shared_tags.iter().all(|t| tags.contains(t)));
    }
    assert!(
        a.recommendations
            .windows(2)
            .all(|w| w[0].score >= w[1].score)
    );
    assert!(
        a.recommendations
            .iter()
            .any(|r| !r.because.as_ref().unwrap().shared_tags.is_empty()),
        "no recommended course shares a tag with the learner"
    );
    // Excluding the first two courses moves the rest up; excluding the neighbours who
    // voted for the first changes what is counted.
    let top: Vec<String> = a
        .recommendations
        .iter()
        .map(|r| r.course_id.to_owned())
        .collect();
    let filters = Filters {
        exclude_courses: top[..2].to_vec(),
        ..Filters::default()
    };
    let b = api::recommend_handle(m, handle, 10, &filters, Disclosure::Profiles).unwrap();
    let got: Vec<&str> = b.recommendations.iter().map(|r| r.course_id).collect();
    assert_eq!(
        got[..8],
        top[2..].iter().map(String::as_str).collect::<Vec<_>>()[..]
    );
    let filters = Filters {
        exclude: neighbours[..10].iter().copied().collect(),
        ..Filters::default()
    };
    let c = api::recommend_handle(m, handle, 10, &filters, Disclosure::Profiles).unwrap();
    for r in &c.recommendations {
        let voters = r.because.as_ref().unwrap().similar_users.as_ref().unwrap();
        assert!(
            voters
                .iter()
                .all(|v| !neighbours[..10].contains(&v.user_handle))
        );
    }
    // Unknown users are a 404.
    let err = api::recommend_handle(m, UNKNOWN_HANDLE, 10, &Filters::default(), Disclosure::Full)
        .unwrap_err();
    assert_eq!(err.status().as_u16(), 404);
}

#[tokio::test]
async fn recommendations_disclose_voters_only_with_profiles_and_serve_batches_and_profiles() {
    let row = viewer_row(2);
    let handle = known_handle(row);
    let one = format!(r#"{{"user_handle": {handle}, "k": 5}}"#);
    // At `similarity`, no reasons; at `reasons`, counts and tags but no other learner.
    let (status, a) = recommend_json(&one, Disclosure::Similarity).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["recommendations"].as_array().unwrap().len(), 5);
    assert!(a["recommendations"][0].get("because").is_none());
    let (_, a) = recommend_json(&one, Disclosure::Reasons).await;
    let because = &a["recommendations"][0]["because"];
    assert!(because["similar_learners"].as_u64().unwrap() >= 1, "{a}");
    assert!(because.get("similar_users").is_none(), "{a}");
    // A batch answers like single requests, in order, unknown users as error items.
    let batch = format!(r#"{{"user_handles": [{handle}, {UNKNOWN_HANDLE}], "k": 5}}"#);
    let (status, b) = recommend_json(&batch, Disclosure::Reasons).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["results"][0]["recommendations"], a["recommendations"]);
    assert_eq!(b["results"][1]["error"], "unknown user");
    // A cold-start profile gets courses too, none of those it excludes.
    let m = model();
    let tag = m
        .tag(m.users.users.get(row as u32).top_tags[0].0)
        .to_owned();
    let profile = format!(r#"{{"profile": {{"tags": {{"{tag}": 1800}}}}, "k": 5}}"#);
    let (status, p) = recommend_json(&profile, Disclosure::Reasons).await;
    assert_eq!(status, 200, "{p}");
    let first = p["recommendations"][0]["course_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(p["matched"][0]["tag"], tag.as_str());
    let excluded = format!(
        r#"{{"profile": {{"tags": {{"{tag}": 1800}}}}, "k": 5, "exclude_courses": ["{first}", "no-such-course"]}}"#
    );
    let (_, e) = recommend_json(&excluded, Disclosure::Reasons).await;
    let ids: Vec<&str> = e["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["course_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 5);
    assert!(!ids.contains(&first.as_str()));
    assert_eq!(ids[0], p["recommendations"][1]["course_id"]);
}

#[test]
fn a_profiles_older_tags_weigh_less_as_older_events_did_in_training() {
    // Given the test model, trained with the default recency,
    let m = model();
    let recency = m.recency().expect("the default trains with recency");
    // and a profile of two interests, one of them last followed a year ago,
    let u = m
        .users
        .users
        .iter()
        .find(|u| u.interests.len() >= 2)
        .unwrap();
    let (a, b) = (m.tag(u.interests[0]), m.tag(u.interests[1]));
    let body =
        |ages: &str| format!(r#"{{"profile": {{"interests": ["{a}", "{b}"]{ages}}}, "k": 3}}"#);
    let weight_of = |body: String, tag: &str| {
        let q = api::parse_request(&Default::default(), body.as_bytes()).unwrap();
        let api::Subject::Profile(p) = q.subject else {
            panic!("a profile")
        };
        let answer =
            api::answer_profile(m, &p, 3, &Filters::default(), Disclosure::Reasons).unwrap();
        answer
            .matched
            .iter()
            .find(|r| r.tag == tag)
            .map(|r| r.weight)
            .unwrap()
    };
    // when it is folded with and without that age,
    let fresh = weight_of(body(""), b) / weight_of(body(""), a);
    let aged = body(&format!(r#", "days_ago": {{"{b}": 365}}"#));
    let old = weight_of(aged.clone(), b) / weight_of(aged, a);
    // then the old interest's weight relative to the other falls by the model's factor.
    assert!(
        (old / fresh - recency.factor(365.0)).abs() < 1e-4,
        "{old} / {fresh} vs {}",
        recency.factor(365.0)
    );
}
