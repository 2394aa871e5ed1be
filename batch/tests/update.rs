//! `kindred-batch update` as a library: what a delta folds in, what it refuses, and how
//! close it comes to a full training.

use std::path::Path;

use kindred_batch::config;
use kindred_batch::train;
use kindred_batch::update::{UpdateError, update};
use kindred_core::registry;
use kindred_core::store::LocalStore;
use kindred_datagen::split::{Split, split_delta};

/// 1,500 generated users, of which `moved` are split off into `delta`; the rest trained
/// and published to a folder store.
async fn trained_base(dir: &Path, moved: usize) -> (LocalStore, Split) {
    let cfg = kindred_datagen::GenConfig {
        users: 1500,
        seed: 4,
        cohorts: 15,
        ..Default::default()
    };
    kindred_datagen::generate(&cfg, &dir.join("full")).unwrap();
    let split = split_delta(
        &dir.join("full"),
        &dir.join("base"),
        &dir.join("delta"),
        moved,
        9,
    )
    .unwrap();
    let mut train_cfg = config::default_config(dir.join("base"));
    train_cfg.rank = 24;
    train_cfg.recall_sample = 200;
    let trained = train::train(&train_cfg, &registry::new_version_name()).unwrap();
    let store = LocalStore::new(dir.join("store"));
    registry::publish(&store, trained.manifest, trained.artifacts)
        .await
        .unwrap();
    (store, split)
}

#[tokio::test]
async fn updates_replace_changed_users_carry_earlier_ones_forward_and_record_the_basis_fit() {
    let dir = tempfile::tempdir().unwrap();
    let (store, split) = trained_base(dir.path(), 100).await;
    let before = registry::load_current(&store).await.unwrap();
    let delta = dir.path().join("delta");

    // Given a delta of 50 new and 50 changed users, when it is folded in,
    let first = update(&store, &delta).await.unwrap();
    let r = &first.record;
    assert_eq!((r.new_users, r.changed_users, r.skipped_users), (50, 50, 0));
    assert_eq!(r.previous, before.manifest.version);
    assert_eq!(r.trained, before.manifest.version);
    // (Measured: 0.43 of the folded rows' norm kept, against 0.44 of the training rows.)
    assert!(
        r.basis_fit > 0.5 * r.trained_fit && r.basis_fit <= 1.0,
        "{r:?}"
    );
    assert!(!r.retrain_advised, "{}", r.advice);

    // then the new version holds every user once, the changed ones with their new rows,
    let after = registry::load_current(&store).await.unwrap();
    assert_eq!(after.manifest.format_version, 4);
    assert_eq!(after.len(), before.len() + 50);
    assert_eq!(after.manifest.users as usize, after.len());
    let courses = after.courses().unwrap();
    for &h in split.new.iter().chain(&split.changed) {
        let row = after.row_of(h).unwrap_or_else(|| panic!("{h} missing"));
        let u = &after.users.users.get(row);
        assert_eq!(u.courses as usize, courses.viewed_by(h).len(), "{h}");
        if let Some(old) = before.row_of(h) {
            // a changed user has more courses than the base knew, and its old point is
            // never a neighbour of anyone,
            assert!(u.courses >= before.users.users.get(old).courses, "{h}");
            assert!(after.shards.is_retired(old), "{h}");
        }
        let near = after.shards.nearest(&after.embedding(row), 10, Some(row));
        assert_eq!(near.len(), 10);
        assert!(near.iter().all(|n| !after.shards.is_retired(n.row)));
    }

    // and a second update of the same users replaces them again: the folded users are
    // not counted twice and the model's size holds.
    let second = update(&store, &delta).await.unwrap();
    let r2 = &second.record;
    assert_eq!((r2.new_users, r2.changed_users), (0, 100));
    assert_eq!(r2.folded_users, 100);
    assert_eq!(r2.trained, before.manifest.version);
    assert_eq!(r2.previous, first.published.version);
    let again = registry::load_current(&store).await.unwrap();
    assert_eq!(again.len(), after.len());
}

#[tokio::test]
async fn an_unusable_delta_is_refused_and_the_current_version_stays() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = trained_base(dir.path(), 20).await;
    let current = || async { registry::read_pointer(&store).await.unwrap().unwrap().0 };
    let before = current().await;

    // A folder without views has nothing to update,
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = update(&store, &empty).await.err().unwrap();
    assert!(matches!(err, UpdateError::NoDelta(_)), "{err}");
    // one whose views do not read is refused,
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("user_course_views.csv"),
        "user_handle,when\n1,2\n",
    )
    .unwrap();
    let err = update(&store, &broken).await.err().unwrap();
    assert!(matches!(err, UpdateError::Ingest(_)), "{err}");
    // and so is one whose users only have tags the model does not know,
    let unknown = dir.path().join("unknown");
    std::fs::create_dir_all(&unknown).unwrap();
    std::fs::write(
        unknown.join("user_course_views.csv"),
        "user_handle,view_date,course_id,author_handle,level,view_time_seconds\n\
         90001,2017-09-01,a-course-nobody-knows,1,Beginner,300\n",
    )
    .unwrap();
    std::fs::write(
        unknown.join("course_tags.csv"),
        "course_id,course_tags\na-course-nobody-knows,quantum-basket-weaving\n",
    )
    .unwrap();
    let err = update(&store, &unknown).await.err().unwrap();
    assert!(matches!(err, UpdateError::NothingToFold(_)), "{err}");
    // and the pointer has not moved.
    assert_eq!(current().await, before);
    // Beside a user the model can fold in, such a user is skipped and counted.
    let model = registry::load_current(&store).await.unwrap();
    let courses = model.courses().unwrap();
    let tagged = courses.tags.iter().position(|t| !t.is_empty()).unwrap();
    let course = &courses.ids[tagged];
    let views = std::fs::read_to_string(unknown.join("user_course_views.csv")).unwrap();
    std::fs::write(
        unknown.join("user_course_views.csv"),
        format!("{views}90002,2017-09-01,{course},1,Beginner,300\n"),
    )
    .unwrap();
    let r = update(&store, &unknown).await.unwrap().record;
    assert_eq!((r.new_users, r.skipped_users), (1, 1), "{r:?}");

    // An empty store has nothing to update.
    let nothing = LocalStore::new(dir.path().join("nothing"));
    let err = update(&nothing, &dir.path().join("delta"))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, UpdateError::NoModel(_)), "{err}");
}

#[test]
fn folded_users_find_neighbours_as_good_as_a_full_training_does() {
    // Given 2,000 generated users, 400 of them (200 new, 200 changed) folded into a model
    // trained without their latest rows,
    let dir = tempfile::tempdir().unwrap();
    let cfg = kindred_datagen::GenConfig {
        users: 2000,
        seed: 8,
        cohorts: 20,
        ..Default::default()
    };
    kindred_datagen::generate(&cfg, dir.path()).unwrap();
    let mut train_cfg = config::default_config(dir.path().to_owned());
    train_cfg.rank = 24;
    let q = kindred_batch::update_eval::compare(&train_cfg, 400, 3).unwrap();
    eprintln!("{q:?}");
    // their neighbours overlap a full training's about as much as a retrain moves anyone's,
    // (Measured: 0.75 for folded users, 0.81 for untouched ones, on 10k users.)
    assert!(q.overlap_folded >= 0.6, "{q:?}");
    assert!(q.overlap_folded >= q.overlap_untouched - 0.15, "{q:?}");
    // and they find their cohort as often as in the full training.
    let (updated, full, _) = q.precision.unwrap();
    assert!(updated >= full - 0.03, "{q:?}");
}

#[tokio::test]
async fn rows_unlike_the_training_data_lower_the_basis_fit_and_advise_a_retrain() {
    // Given a trained model and a delta of 300 users who each viewed 12 courses drawn
    // at random from the whole catalogue (no cohort behind them),
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = trained_base(dir.path(), 10).await;
    let model = registry::load_current(&store).await.unwrap();
    let ids = &model.courses().unwrap().ids;
    let odd = dir.path().join("odd");
    std::fs::create_dir_all(&odd).unwrap();
    let mut csv =
        String::from("user_handle,view_date,course_id,author_handle,level,view_time_seconds\n");
    let mut state = 7u64;
    for user in 0..300u64 {
        for _ in 0..12 {
            state = kindred_core::shard::mix64(state);
            let course = &ids[(state % ids.len() as u64) as usize];
            csv.push_str(&format!(
                "{},2017-09-01,{course},1,Beginner,600\n",
                90_000 + user
            ));
        }
    }
    std::fs::write(odd.join("user_course_views.csv"), csv).unwrap();
    // when they are folded in,
    let r = update(&store, &odd).await.unwrap().record;
    eprintln!("{r:?}");
    // then the stored basis keeps clearly less of their rows than of the training rows,
    assert!(r.basis_fit < 0.8 * r.trained_fit, "{r:?}");
    // and the record advises a full training.
    assert!(
        r.retrain_advised && r.advice.contains("basis"),
        "{}",
        r.advice
    );
}

/// A folder store that, just before the first manifest is written, publishes a copy of
/// the current version under a new name: another run finishing while an update runs.
struct RacingStore {
    inner: LocalStore,
    raced: std::sync::atomic::AtomicBool,
}

impl kindred_core::ObjectStore for RacingStore {
    async fn get(&self, key: &str) -> kindred_core::Result<Option<kindred_core::store::Object>> {
        self.inner.get(key).await
    }
    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        c: kindred_core::store::Precondition,
    ) -> kindred_core::Result<()> {
        if key.ends_with("/manifest.json")
            && !self.raced.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let (pointer, _) = registry::read_pointer(&self.inner).await?.unwrap();
            let current = registry::load_current(&self.inner).await?;
            let mut manifest = current.manifest.clone();
            manifest.version = registry::new_version_name();
            for a in &current.manifest.artifacts {
                registry::copy_artifact(&self.inner, &pointer.version, &manifest.version, a)
                    .await?;
            }
            registry::commit(&self.inner, manifest).await?;
        }
        self.inner.put(key, bytes, c).await
    }
    fn location(&self) -> String {
        self.inner.location()
    }
}

#[tokio::test]
async fn an_update_never_replaces_a_version_published_while_it_ran() {
    // Given a trained model, and another version published while an update runs,
    let dir = tempfile::tempdir().unwrap();
    let (_, _) = trained_base(dir.path(), 40).await;
    let store = RacingStore {
        inner: LocalStore::new(dir.path().join("store")),
        raced: std::sync::atomic::AtomicBool::new(false),
    };
    let before = registry::read_pointer(&store.inner)
        .await
        .unwrap()
        .unwrap()
        .0;
    // when the update comes to move the pointer,
    let err = update(&store, &dir.path().join("delta"))
        .await
        .err()
        .unwrap();
    // then it refuses, naming the version it was built on,
    assert!(
        matches!(&err, UpdateError::Core(kindred_core::Error::BaseChanged { base, current })
            if *base == before.version && current.as_ref().is_some_and(|c| *c != before.version)),
        "{err}"
    );
    // and the version published meanwhile stays current.
    let now = registry::read_pointer(&store.inner)
        .await
        .unwrap()
        .unwrap()
        .0;
    assert_ne!(now.version, before.version);
    assert!(now.previous.as_deref() == Some(before.version.as_str()));
}

#[tokio::test]
async fn a_training_that_ran_while_an_update_published_still_becomes_current() {
    // Given a trained model, and a second training that started (was named) before an
    // update of the first one published,
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = trained_base(dir.path(), 40).await;
    let first = registry::read_pointer(&store).await.unwrap().unwrap().0;
    let mut cfg = config::default_config(dir.path().join("base"));
    cfg.rank = 24;
    let second = train::train(&cfg, &registry::new_version_name()).unwrap();
    let updated = update(&store, &dir.path().join("delta")).await.unwrap();
    assert!(updated.published.version > second.manifest.version);
    // when that training publishes, it replaces the update,
    let published = registry::publish(&store, second.manifest.clone(), second.artifacts)
        .await
        .unwrap();
    assert_eq!(
        published.previous.as_deref(),
        Some(updated.published.version.as_str())
    );
    // but a training older than the one the update folded into is still refused.
    let mut stale = second.manifest;
    // (The same name a year earlier.)
    let year: u32 = first.version[..4].parse().unwrap();
    stale.version = format!("{}{}", year - 1, &first.version[4..]);
    assert!(stale.version < first.version);
    let old = train::train(&cfg, &stale.version).unwrap();
    let err = registry::publish(&store, old.manifest, old.artifacts)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, kindred_core::Error::StaleVersion { .. }),
        "{err}"
    );
}
