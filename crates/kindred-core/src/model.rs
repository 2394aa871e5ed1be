//! A loaded model version: its users, the shards held and the fold-in projection,
//! checked against each other and the manifest when assembled.

use std::collections::HashMap;

use crate::courses::CourseTable;
use crate::delta::Delta;
use crate::error::{Error, Result};
use crate::handles::HandleRows;
use crate::manifest::Manifest;
use crate::projection::{self, Folded, Profile, Projection, Recency};
use crate::search::Index;
use crate::shard::{self, Shards};
use crate::users::{MAX_TAGS, UserTable, Users, check_user};

/// Models with at most this many users (over all shards) answer queries by an exact scan
/// of their embeddings (with 8-bit codes where they pay), which measured as fast as the HNSW search
/// at 10k users (see docs/performance.md) and has perfect recall. Larger models use the index.
pub const EXACT_SCAN_MAX_USERS: usize = 50_000;

/// A verified, decoded model version ready for queries: all its shards, or the ones this
/// process serves, in one row space.
pub struct Model {
    /// The version's manifest.
    pub manifest: Manifest,
    /// Per-user metadata of the shards held, shard after shard (row `i` is row `i` of
    /// [`Model::shards`]; a row retired by a delta keeps its old summary, unreachable).
    pub users: UserTable,
    /// The HNSW indexes of the shards held.
    pub shards: Shards,
    by_handle: HandleRows,
    /// The fold-in projection for profile queries, when the version has one.
    projection: Option<Projection>,
    /// Tag ids by [`crate::tags::key`], built with the projection.
    tag_keys: HashMap<String, u32>,
    /// The course table for recommendations, when the version has one.
    courses: Option<CourseTable>,
    /// Course ids by name, built with the course table.
    course_ids: HashMap<String, u32>,
    /// How training weighed events by age, from the manifest's training summary.
    recency: Option<Recency>,
}

/// One shard's decoded parts: its number, user summaries and index (point `i` is user
/// `i`), and its delta (empty for a trained version).
pub type ShardParts = (u32, Users, Index, Delta);

impl Model {
    /// Assembles an unsharded model and checks that its parts agree with each other and
    /// the manifest.
    pub fn from_parts(manifest: Manifest, users: UserTable, index: Index) -> Result<Model> {
        Model::from_shards(
            manifest,
            users.tags,
            vec![(0, users.users, index, Delta::default())],
        )
    }

    /// Assembles a model from some or all of its shards (in the given order) and checks
    /// them: counts against the manifest, dimensions, tag references, feature order,
    /// unique handles, and that every user sits in the shard its handle hashes to. A
    /// shard's rows are its index points, then its delta's users; a retired point keeps
    /// its row, but its handle finds the delta's row.
    pub fn from_shards(
        manifest: Manifest,
        tags: Vec<String>,
        parts: Vec<ShardParts>,
    ) -> Result<Model> {
        if manifest.tags != tags.len() as u64 {
            return Err(Error::Inconsistent(format!(
                "manifest says {} tags, user table has {}",
                manifest.tags,
                tags.len()
            )));
        }
        if tags.len() > MAX_TAGS {
            return Err(Error::Inconsistent(format!(
                "{} tags, more than the {MAX_TAGS} a model may have",
                tags.len()
            )));
        }
        let count = manifest.shard_count();
        let whole = parts.len() as u32 == count;
        // Each delta first: the counts below subtract its retired points.
        for p in &parts {
            p.3.validate(p.1.len(), manifest.dimensions as usize)?;
        }
        let live = |p: &ShardParts| (p.1.len() - p.3.retired.len() + p.3.users.len()) as u64;
        let total: u64 = parts.iter().map(live).sum();
        if whole && manifest.users != total {
            return Err(Error::Inconsistent(format!(
                "manifest says {} users, its shards hold {total}",
                manifest.users
            )));
        }
        let rows: usize = parts.iter().map(|p| p.1.len() + p.3.users.len()).sum();
        if rows > u32::MAX as usize {
            return Err(Error::Inconsistent("more than 2^32 users".into()));
        }
        let tag_count = tags.len() as u32;
        let mut by_handle = Vec::with_capacity(total as usize);
        let mut tables = Vec::with_capacity(2 * parts.len());
        let mut row = 0u32;
        let mut indexes = Vec::with_capacity(parts.len());
        for part in parts {
            let listed = manifest.shards.get(part.0 as usize).map(|s| s.users);
            let held = live(&part);
            let (id, shard_users, index, mut delta) = part;
            if listed.is_some_and(|n| n != held) || id >= count {
                return Err(Error::Inconsistent(format!(
                    "shard {id} has {held} users, the manifest lists {listed:?}"
                )));
            }
            let points = index.len();
            if points != shard_users.len() {
                return Err(Error::Inconsistent(format!(
                    "index has {points} points, user table has {}",
                    shard_users.len()
                )));
            }
            let fresh = Users::from_summaries(std::mem::take(&mut delta.users))?;
            let mut retired = delta.retired.iter().peekable();
            for (local, u) in shard_users.iter().chain(fresh.iter()).enumerate() {
                check_user(u, tag_count)?;
                if count > 1 && shard::shard_of(u.handle, count) != id {
                    return Err(Error::Inconsistent(format!(
                        "user {} is in shard {id}, its handle belongs to shard {}",
                        u.handle,
                        shard::shard_of(u.handle, count)
                    )));
                }
                let is_retired = retired.next_if_eq(&&(local as u32)).is_some();
                if !is_retired {
                    by_handle.push((u.handle, row));
                }
                row += 1;
            }
            tables.push(shard_users);
            tables.push(fresh);
            indexes.push((id, index, delta));
        }
        let by_handle = HandleRows::new(by_handle)
            .map_err(|handle| Error::Inconsistent(format!("user {handle} appears twice")))?;
        let users = Users::concat(tables)?;
        let exact = manifest.users <= EXACT_SCAN_MAX_USERS as u64;
        let recency = recency_of(&manifest.training);
        let shards = Shards::with_deltas(indexes, manifest.dimensions as usize, exact)?;
        Ok(Model {
            manifest,
            users: UserTable { tags, users },
            shards,
            by_handle,
            projection: None,
            tag_keys: HashMap::new(),
            courses: None,
            course_ids: HashMap::new(),
            recency,
        })
    }

    /// Attaches the fold-in projection after checking it against the model.
    pub fn with_projection(mut self, projection: Projection) -> Result<Model> {
        projection.validate(self.users.tags.len(), self.dimensions())?;
        self.tag_keys = projection::key_index(&self.users.tags);
        self.projection = Some(projection);
        Ok(self)
    }

    /// Attaches the course table after checking it against the model's tag vocabulary.
    pub fn with_courses(mut self, courses: CourseTable) -> Result<Model> {
        courses.validate(self.users.tags.len())?;
        self.course_ids = courses.index();
        self.courses = Some(courses);
        Ok(self)
    }

    /// The course table, if this version has one.
    pub fn courses(&self) -> Option<&CourseTable> {
        self.courses.as_ref()
    }

    /// The id of a course by its name in the data files.
    pub fn course_id(&self, name: &str) -> Option<u32> {
        self.course_ids.get(name).copied()
    }

    /// The fold-in projection, if this version has one.
    pub fn projection(&self) -> Option<&Projection> {
        self.projection.as_ref()
    }

    /// Folds a profile into the embedding space, its tags weighed by the ages it gives
    /// them as training weighed events ([`Model::recency`]); `None` when the version has
    /// no projection.
    pub fn fold(&self, profile: &Profile) -> Option<Folded> {
        Some(
            self.projection
                .as_ref()?
                .fold(profile, &self.tag_keys, self.recency),
        )
    }

    /// How training weighed events by age, if it did.
    pub fn recency(&self) -> Option<Recency> {
        self.recency
    }

    /// Row (= index point) of a user, if the shards held know them.
    pub fn row_of(&self, handle: u64) -> Option<u32> {
        self.by_handle.get(handle)
    }

    /// The shard a handle belongs to, by [`shard::shard_of`].
    pub fn shard_of(&self, handle: u64) -> u32 {
        shard::shard_of(handle, self.manifest.shard_count())
    }

    /// True when this process holds every shard of the version.
    pub fn holds_all_shards(&self) -> bool {
        self.shards.shards().len() as u32 == self.manifest.shard_count()
    }

    /// The numbers of the shards held.
    pub fn shards_held(&self) -> Vec<u32> {
        self.shards.shards().iter().map(|s| s.id).collect()
    }

    /// The embedding of the user at `row`.
    pub fn embedding(&self, row: u32) -> std::borrow::Cow<'_, [f32]> {
        self.shards.embedding(row)
    }

    /// Embedding dimension.
    pub fn dimensions(&self) -> usize {
        self.manifest.dimensions as usize
    }

    /// Number of users held (a user whose index point a delta retired counts once).
    pub fn len(&self) -> usize {
        self.by_handle.len()
    }

    /// True when the model holds no users.
    pub fn is_empty(&self) -> bool {
        self.by_handle.len() == 0
    }

    /// Name of tag `id`.
    pub fn tag(&self, id: u32) -> &str {
        &self.users.tags[id as usize]
    }
}

/// The recency of a training run's summary (`training.config.half_life_days` and
/// `recency_floor`, written since recency exists); `None` without a positive half-life
/// or a floor in 0..=1.
fn recency_of(training: &serde_json::Value) -> Option<Recency> {
    let config = training.get("config")?;
    let half_life_days = config.get("half_life_days")?.as_f64()? as f32;
    let floor = config.get("recency_floor")?.as_f64()? as f32;
    (half_life_days > 0.0 && (0.0..=1.0).contains(&floor)).then_some(Recency {
        half_life_days,
        floor,
    })
}
