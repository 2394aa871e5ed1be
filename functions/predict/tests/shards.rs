//! Sharded models: the same data trained unsharded and in 3 shards must give the same
//! answers; a process serving some shards answers for them only; answers of disjoint
//! shard subsets merge into the whole answer (what scatter-gather relies on).

mod common;

use std::collections::HashSet;

use kindred_batch::config;
use kindred_batch::train::{self, Trained};
use kindred_core::Model;
use kindred_core::registry::{self, LoadOptions};
use kindred_core::shard::{Selection, shard_of};
use kindred_core::store::LocalStore;
use kindred_predict::api::{self, Filters};

const USERS: u64 = 2_000;
const SHARDS: u32 = 3;

fn train_with(shards: u32, data: &std::path::Path) -> Trained {
    let mut cfg = config::default_config(data.to_owned());
    cfg.rank = 16;
    cfg.recall_sample = 300;
    cfg.evaluate = config::Evaluate::Never;
    cfg.shards = Some(shards);
    train::train(&cfg, &common::version(shards)).expect("train")
}

/// Publishes `t` to a fresh folder store and loads the `selection` of it.
fn publish_and_load(t: Trained, selection: Option<Selection>) -> (tempfile::TempDir, Model) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let model = rt.block_on(async {
        let published = registry::publish(&store, t.manifest, t.artifacts)
            .await
            .expect("publish");
        let options = LoadOptions {
            max_model_bytes: None,
            shards: selection,
            ..LoadOptions::default()
        };
        registry::load_version_with(&store, &published.version, None, &options)
            .await
            .expect("load")
    });
    (dir, model)
}

/// A generated data set of `users` users from `seed`, in a fresh folder.
fn generated(users: u64, seed: u64) -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    let config = kindred_datagen::GenConfig {
        users,
        seed,
        ..Default::default()
    };
    kindred_datagen::generate(&config, data.path()).expect("generate");
    data
}

struct Setup {
    _data: tempfile::TempDir,
    whole: (tempfile::TempDir, Model),
    sharded: (tempfile::TempDir, Model),
    data: std::path::PathBuf,
}

fn setup() -> Setup {
    let data = generated(USERS, 5);
    let whole = publish_and_load(train_with(1, data.path()), None);
    let sharded = publish_and_load(train_with(SHARDS, data.path()), None);
    Setup {
        data: data.path().to_owned(),
        _data: data,
        whole,
        sharded,
    }
}

/// (handle, similarity) of each neighbour in an answer.
fn neighbours(model: &Model, handle: u64, k: u32) -> Vec<(u64, f32)> {
    api::answer_handle(model, handle, k, &Filters::default(), api::Disclosure::Full)
        .expect("known user")
        .similar_users
        .iter()
        .map(|u| (u.user_handle, u.similarity))
        .collect()
}

#[test]
fn sharded_and_unsharded_models_give_the_same_answers() {
    // Given the same data trained unsharded (format 2) and in 3 shards (format 3),
    let s = setup();
    let (whole, sharded) = (&s.whole.1, &s.sharded.1);
    assert_eq!(whole.manifest.format_version, 2);
    assert!(whole.manifest.shards.is_empty());
    assert_eq!(sharded.manifest.format_version, 3);
    assert_eq!(sharded.manifest.shards.len(), SHARDS as usize);
    assert_eq!(whole.len(), sharded.len());
    // whose shards hold the users their handles hash to, in roughly equal parts,
    for (i, entry) in sharded.manifest.shards.iter().enumerate() {
        assert_eq!(entry.id, i as u32);
        assert!(entry.users as usize > whole.len() / 5, "{entry:?}");
    }
    for u in &sharded.users.users {
        let row = sharded.row_of(u.handle).unwrap();
        assert_eq!(
            sharded.shards.shard_of_row(row).id,
            shard_of(u.handle, SHARDS)
        );
    }
    // when every user is asked for (an exact scan at this size, merged over shards),
    let mut same_order = 0;
    for u in &whole.users.users {
        let a = neighbours(whole, u.handle, 10);
        let b = neighbours(sharded, u.handle, 10);
        // then both rank the same similarities, and the same users up to ties.
        let sims = |v: &[(u64, f32)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
        assert_eq!(sims(&a), sims(&b), "user {}", u.handle);
        same_order += usize::from(a == b);
    }
    assert!(
        same_order * 100 >= whole.len() * 99,
        "{same_order} of {} identical",
        whole.len()
    );
    // The HNSW path merged over shards finds what the single index finds.
    let rows: Vec<u32> = (0..sharded.len() as u32).step_by(3).collect();
    let recall = sharded.shards.recall_at_k(&rows, 10);
    assert!(recall >= 0.97, "sharded recall@10 {recall}");
}

#[test]
fn a_process_serving_some_shards_answers_for_them_and_merges_into_the_whole() {
    // Given a 3-shard model, once whole and once as two processes would hold it:
    // shard 1 alone, and shards 0 and 2,
    let s = setup();
    let whole = &s.sharded.1;
    let one = publish_and_load(train_with(SHARDS, &s.data), Some(vec![1].into())).1;
    let rest = publish_and_load(train_with(SHARDS, &s.data), Some(vec![0, 2].into())).1;
    assert_eq!(one.shards_held(), vec![1]);
    assert_eq!(one.len() + rest.len(), whole.len());
    assert_eq!(one.len() as u64, whole.manifest.shards[1].users);
    // a handle of another shard is a 404 naming its shard, not "unknown user",
    let elsewhere = rest.users.users.handle(0);
    let err = api::answer_handle(
        &one,
        elsewhere,
        10,
        &Filters::default(),
        api::Disclosure::Full,
    )
    .unwrap_err();
    let body = err.body().to_string();
    assert!(body.contains("shard not served here"), "{body}");
    assert!(
        body.contains(&format!("\"shard\":{}", shard_of(elsewhere, SHARDS))),
        "{body}"
    );
    // and for every user of shard 1, its own top-k merged with the top-k that shards 0
    // and 2 give for its embedding is the whole model's answer.
    let mut checked = 0;
    for u in one.users.users.iter().take(200) {
        let own = neighbours(&one, u.handle, 10);
        let row = one.row_of(u.handle).unwrap();
        let others = api::neighbours(&rest, &one.embedding(row), None, 10, &Filters::default());
        let mut merged: Vec<(u64, f32)> = own
            .into_iter()
            .chain(
                others
                    .iter()
                    .map(|n| (rest.users.users.handle(n.row), n.similarity)),
            )
            .collect();
        merged.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        merged.truncate(10);
        let expected = neighbours(whole, u.handle, 10);
        let handles = |v: &[(u64, f32)]| v.iter().map(|x| x.0).collect::<HashSet<_>>();
        let sims = |v: &[(u64, f32)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
        assert_eq!(sims(&merged), sims(&expected), "user {}", u.handle);
        assert!(handles(&merged).len() == 10 && !handles(&merged).contains(&u.handle));
        checked += 1;
    }
    assert!(checked >= 100, "only {checked} users in shard 1");
}

#[test]
fn shard_groups_take_their_share_of_any_shard_count_and_replicate_beyond_it() {
    // Given a 3-shard model loaded as groups of 2 and of 4,
    let s = setup();
    let whole = &s.sharded.1;
    let group = |g: u32, n: u32| {
        let selection = Selection::Group {
            group: g,
            groups: n,
        };
        publish_and_load(train_with(SHARDS, &s.data), Some(selection)).1
    };
    // then groups 0 and 1 of 2 hold shards 0, 2 and shard 1: every user once,
    let (g0, g1) = (group(0, 2), group(1, 2));
    assert_eq!((g0.shards_held(), g1.shards_held()), (vec![0, 2], vec![1]));
    assert_eq!(g0.len() + g1.len(), whole.len());
    // and group 3 of 4 (beyond the 3 shards) serves a replica of shard 0, answering for
    // its users exactly as the whole model does.
    let g3 = group(3, 4);
    assert_eq!(g3.shards_held(), vec![0]);
    let u = g3.users.users.handle(0);
    assert_eq!(shard_of(u, SHARDS), 0);
    assert_eq!(neighbours(&g3, u, 10).len(), 10);
    let own: Vec<f32> = neighbours(&g3, u, 10).iter().map(|x| x.1).collect();
    let top_in_shard0: Vec<f32> = neighbours(whole, u, 200)
        .into_iter()
        .filter(|(h, _)| shard_of(*h, SHARDS) == 0)
        .take(10)
        .map(|x| x.1)
        .collect();
    assert_eq!(own, top_in_shard0);
}

#[test]
fn a_shard_the_version_lacks_is_refused() {
    // Given a 3-shard version, when a process asks for shard 5, then loading fails with
    // an error naming the shard and the count.
    let data = generated(300, 2);
    let t = train_with(SHARDS, data.path());
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt.block_on(async {
        let p = registry::publish(&store, t.manifest, t.artifacts)
            .await
            .unwrap();
        let options = LoadOptions {
            max_model_bytes: None,
            shards: Some(vec![0, 5].into()),
            ..LoadOptions::default()
        };
        registry::load_version_with(&store, &p.version, None, &options)
            .await
            .err()
            .expect("refused")
    });
    assert_eq!(
        err.to_string(),
        format!(
            "model {} has 3 shards, so it has no shard 5",
            common::version(SHARDS)
        )
    );
}

#[test]
fn a_model_held_compactly_answers_as_its_stored_embeddings_do_within_their_rounding() {
    // Given a model published once and loaded as a large model is served (its graphs
    // searched), with 32-bit and with 16-bit embeddings,
    let data = generated(USERS, 8);
    let t = train_with(SHARDS, data.path());
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let [stored, compact] = rt.block_on(async {
        let p = registry::publish(&store, t.manifest, t.artifacts)
            .await
            .unwrap();
        let mut models = Vec::new();
        for compact_points in [false, true] {
            let options = LoadOptions {
                index_only: true,
                compact_points,
                ..LoadOptions::default()
            };
            models.push(
                registry::load_version_with(&store, &p.version, None, &options)
                    .await
                    .unwrap(),
            );
        }
        <[Model; 2]>::try_from(models).ok().unwrap()
    });
    let held = |m: &Model| {
        m.shards
            .shards()
            .iter()
            .map(|s| s.index.is_compact())
            .collect::<Vec<_>>()
    };
    assert_eq!(held(&stored), [false; SHARDS as usize]);
    assert_eq!(held(&compact), [true; SHARDS as usize]);
    // when users are asked for,
    let (mut same, mut total) = (0, 0);
    for u in stored.users.users.iter().step_by(4) {
        let a = neighbours(&stored, u.handle, 10);
        let b = neighbours(&compact, u.handle, 10);
        // then the similarities of the users both return agree closely,
        for (handle, similarity) in &b {
            if let Some((_, s)) = a.iter().find(|(h, _)| h == handle) {
                assert!(
                    (s - similarity).abs() < 1e-4,
                    "user {}: {s} {similarity}",
                    u.handle
                );
            }
        }
        // and the answers are nearly all the same users.
        same += b
            .iter()
            .filter(|(h, _)| a.iter().any(|(g, _)| g == h))
            .count();
        total += a.len();
    }
    assert!(same as f64 >= 0.99 * total as f64, "{same} of {total}");
}
