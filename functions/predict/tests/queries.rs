//! The richer queries of `POST /predict`, in process against the trained test model:
//! cold-start profiles folded into the embedding space, filters and batches.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{UNKNOWN_HANDLE, known_handle, model};
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
        min_similarity: None,
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
        exclude: Default::default(),
        min_similarity: Some(floor),
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
