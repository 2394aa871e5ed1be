//! Per-user generation: profile (ground truth), course views, interests and
//! assessment scores, streamed straight to the CSV files.
//!
//! Every user draws each file's rows from an independent random stream keyed
//! by (seed, file, handle), and rows are written as soon as a user is done,
//! so memory does not grow with the number of users.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

use crate::assessments::{ASSESSMENT_TAGS, ASSESSMENTS_PER_USER};
use crate::catalog::Catalog;
use crate::cohorts::{Cohort, InterestVocab};
use crate::dates::{DayTable, days_from_civil};
use crate::rng::{Rng, Stream, WeightedIndex};
use crate::{ASSESSMENTS_FILE, GROUND_TRUTH_FILE, GenConfig, INTERESTS_FILE, VIEWS_FILE};

/// Mean view rows of a user with views (real: 249,238 rows / 8,760 users).
const VIEW_ROWS_MEAN: f64 = 28.45;
/// Log-sd of view rows per user: most users watch a little, some a lot.
const VIEW_ROWS_SIGMA: f64 = 1.1;
const VIEW_ROWS_MAX: u64 = 5_000;
/// Chance that a course watched on one day is watched again on a later day.
const REWATCH_CHANCE: f64 = 0.45;
/// Median seconds watched per (user, course, day), before pace and multiplier.
const VIEW_SECONDS_MEDIAN: f64 = 300.0;
const VIEW_SECONDS_SIGMA: f64 = 1.25;
/// Log-sd of a user's personal pace (factor on all their viewing times).
const PACE_SIGMA: f64 = 0.3;
/// Seconds in a day: the most one can watch a course on one day.
const MAX_VIEW_SECONDS: f64 = 86_400.0;
/// Range of the long watchers' multiplier.
const LONG_WATCH_MULTIPLIER: (f64, f64) = (3.0, 6.0);

/// Mean distinct interests per user (real: about 27.9 plus 6% duplicates).
const INTERESTS_MEAN: f64 = 27.9;
const INTERESTS_SIGMA: f64 = 0.6;
const INTERESTS_MAX: u64 = 400;
/// Chance that an interest row is written twice (about 6% of rows end up duplicates).
const INTEREST_DUPLICATE_CHANCE: f64 = 0.065;
/// Share of interests followed in one of the user's bulk-follow sessions.
const BULK_FOLLOW_SHARE: f64 = 0.8;

/// Skill IQ score model: base, user ability sd, bonus on the user's own
/// cohort topics, per-test noise sd; clamped to 0..=300.
const SCORE_BASE: f64 = 112.0;
const SCORE_ABILITY_SD: f64 = 25.0;
const SCORE_COHORT_BONUS: f64 = 40.0;
const SCORE_NOISE_SD: f64 = 45.0;
const SCORE_MAX: f64 = 300.0;

/// A text field in double quotes (inner quotes doubled, as CSV wants).
pub(crate) struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.contains('"') {
            write!(f, "\"{}\"", self.0.replace('"', "\"\""))
        } else {
            write!(f, "\"{}\"", self.0)
        }
    }
}

/// Running counts over all users.
pub(crate) struct Tally {
    pub users_with_views: u64,
    pub users_with_assessments: u64,
    pub long_watchers: u64,
    pub view_rows: u64,
    pub interest_rows: u64,
    pub interest_duplicate_rows: u64,
    pub assessment_rows: u64,
    /// Users per primary cohort.
    pub primary_users: Vec<u64>,
    /// Interest tags followed by anyone.
    pub interest_seen: Vec<bool>,
    /// Assessment tags taken by anyone.
    pub assessment_seen: Vec<bool>,
}

/// The planted facts about one user.
struct Profile {
    primary: usize,
    secondary: usize,
    share: f64,
    multiplier: f64,
    has_views: bool,
    has_assessments: bool,
    /// The cohort a drifting user moves to on the drift day (`primary` is the one
    /// they leave).
    drift: Option<usize>,
}

impl Profile {
    /// The primary cohort on a day: after the drift day, the one a drifting user moved to.
    fn primary_on(&self, after_drift: bool) -> usize {
        match self.drift {
            Some(new) if after_drift => new,
            _ => self.primary,
        }
    }
}

/// Where one draw of a user comes from.
enum Source {
    Popular,
    Cohort(usize),
}

/// Buffers reused from user to user.
#[derive(Default)]
struct Scratch {
    /// (day, course, seconds)
    views: Vec<(u32, u32, u32)>,
    /// (day, second, interest tag)
    interests: Vec<(u32, u32, u32)>,
    /// Handle of the last user who followed each interest tag.
    interest_owner: Vec<u64>,
    /// (day, second) of bulk-follow sessions.
    sessions: Vec<(u32, u32)>,
    /// (assessment, on one of the user's cohort topics)
    assessments: Vec<(u32, bool)>,
}

/// The four per-user output files.
struct Sinks {
    views: BufWriter<File>,
    interests: BufWriter<File>,
    assessments: BufWriter<File>,
    truth: BufWriter<File>,
}

impl Sinks {
    /// Opens the files; `ground_truth.csv` has a `drifted_from` column only when some
    /// users drift.
    fn create(dir: &Path, drift: bool) -> Result<Self> {
        let open = |name: &str, header: &[&str]| -> Result<BufWriter<File>> {
            let path = dir.join(name);
            let file =
                File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = BufWriter::with_capacity(1 << 20, file);
            let header: Vec<String> = header.iter().map(|h| Quoted(h).to_string()).collect();
            writeln!(out, "{}", header.join(","))?;
            Ok(out)
        };
        Ok(Self {
            views: open(
                VIEWS_FILE,
                &[
                    "user_handle",
                    "view_date",
                    "course_id",
                    "author_handle",
                    "level",
                    "view_time_seconds",
                ],
            )?,
            interests: open(
                INTERESTS_FILE,
                &["user_handle", "interest_tag", "date_followed"],
            )?,
            assessments: open(
                ASSESSMENTS_FILE,
                &[
                    "user_handle",
                    "assessment_tag",
                    "user_assessment_date",
                    "user_assessment_score",
                ],
            )?,
            truth: open(
                GROUND_TRUTH_FILE,
                &[
                    "user_handle",
                    "primary_cohort",
                    "secondary_cohort",
                    "primary_share",
                    "watch_multiplier",
                    "drifted_from",
                ][..if drift { 6 } else { 5 }],
            )?,
        })
    }

    fn finish(self) -> io::Result<()> {
        for mut out in [self.views, self.interests, self.assessments, self.truth] {
            out.flush()?;
        }
        Ok(())
    }
}

/// Everything shared by all users.
pub(crate) struct World<'a> {
    cfg: &'a GenConfig,
    cat: &'a Catalog,
    cohorts: &'a [Cohort],
    vocab: &'a InterestVocab,
    cohort_pick: WeightedIndex,
    /// 2017: the views.
    view_days: DayTable,
    /// 2016-01-01 to 2017-12-31: interest follows.
    follow_days: DayTable,
    /// 2016-07-13 to 2017-11-28: assessments (the real file's range).
    assessment_days: DayTable,
    assessment_popular: WeightedIndex,
    assessments_per_user: WeightedIndex,
    /// [`crate::DRIFT_DATE`] as a day number.
    drift_day: i64,
}

impl<'a> World<'a> {
    pub(crate) fn new(
        cfg: &'a GenConfig,
        cat: &'a Catalog,
        cohorts: &'a [Cohort],
        vocab: &'a InterestVocab,
    ) -> Self {
        Self {
            cfg,
            cat,
            cohorts,
            vocab,
            cohort_pick: WeightedIndex::new(cohorts.iter().map(|c| c.size))
                .expect("cohorts have positive sizes"),
            view_days: DayTable::new(days_from_civil(2017, 1, 1), days_from_civil(2017, 12, 31)),
            follow_days: DayTable::new(days_from_civil(2016, 1, 1), days_from_civil(2017, 12, 31)),
            assessment_days: DayTable::new(
                days_from_civil(2016, 7, 13),
                days_from_civil(2017, 11, 28),
            ),
            assessment_popular: WeightedIndex::new(
                ASSESSMENT_TAGS.iter().map(|a| f64::from(a.real_rows)),
            )
            .expect("assessments have popularity"),
            assessments_per_user: WeightedIndex::new(ASSESSMENTS_PER_USER)
                .expect("positive weights"),
            drift_day: crate::dates::day_number(crate::DRIFT_DATE).expect("a valid date"),
        }
    }

    /// Generates and writes every user; returns the counts.
    pub(crate) fn write_all(&self, dir: &Path) -> Result<Tally> {
        let mut sinks = Sinks::create(dir, self.cfg.drift_share > 0.0)?;
        let mut tally = Tally {
            users_with_views: 0,
            users_with_assessments: 0,
            long_watchers: 0,
            view_rows: 0,
            interest_rows: 0,
            interest_duplicate_rows: 0,
            assessment_rows: 0,
            primary_users: vec![0; self.cohorts.len()],
            interest_seen: vec![false; self.vocab.len()],
            assessment_seen: vec![false; ASSESSMENT_TAGS.len()],
        };
        let mut scratch = Scratch {
            interest_owner: vec![0; self.vocab.len()],
            ..Scratch::default()
        };
        for handle in 1..=self.cfg.users {
            let profile = self.profile(handle);
            self.write_truth(handle, &profile, &mut sinks.truth, &mut tally)?;
            if profile.has_views {
                self.write_views(handle, &profile, &mut sinks.views, &mut tally, &mut scratch)?;
            }
            self.write_interests(
                handle,
                &profile,
                &mut sinks.interests,
                &mut tally,
                &mut scratch,
            )?;
            if profile.has_assessments {
                self.write_assessments(
                    handle,
                    &profile,
                    &mut sinks.assessments,
                    &mut tally,
                    &mut scratch,
                )?;
            }
        }
        sinks.finish()?;
        Ok(tally)
    }

    fn profile(&self, handle: u64) -> Profile {
        let cfg = self.cfg;
        let mut rng = Rng::stream(cfg.seed, Stream::Profile, handle);
        let primary = self.cohort_pick.sample(&mut rng);
        let secondary = loop {
            let c = self.cohort_pick.sample(&mut rng);
            if c != primary {
                break c;
            }
        };
        // Rounded so the ground-truth file holds the exact values used.
        let share = round_to(rng.uniform(cfg.primary_share_min, cfg.primary_share_max), 4)
            .clamp(cfg.primary_share_min, cfg.primary_share_max);
        let multiplier = if rng.chance(cfg.long_watcher_share) {
            round_to(
                rng.uniform(LONG_WATCH_MULTIPLIER.0, LONG_WATCH_MULTIPLIER.1),
                2,
            )
        } else {
            1.0
        };
        let has_views = rng.chance(cfg.view_share);
        let has_assessments = rng.chance(cfg.assessment_share);
        // Drawn last, and only when asked for, so that data sets without drift are
        // byte for byte what they were before drift existed.
        let drift = (cfg.drift_share > 0.0 && rng.chance(cfg.drift_share)).then(|| {
            loop {
                let c = self.cohort_pick.sample(&mut rng);
                if c != primary && c != secondary {
                    break c;
                }
            }
        });
        Profile {
            primary,
            secondary,
            share,
            multiplier,
            has_views,
            has_assessments,
            drift,
        }
    }

    /// The offset of the drift day in `table` (which starts on day `first`).
    fn drift_offset(&self, first: i64) -> u32 {
        (self.drift_day - first).max(0) as u32
    }

    /// Where the next draw comes from: popular noise, else primary or secondary cohort.
    fn source(&self, p: &Profile, rng: &mut Rng) -> Source {
        self.source_with_noise(p, rng, self.cfg.popular_noise)
    }

    /// [`Self::source`] with another popular-noise share.
    fn source_with_noise(&self, p: &Profile, rng: &mut Rng, noise: f64) -> Source {
        self.source_on(p, false, rng, noise)
    }

    /// Where a draw made before or after the drift day comes from.
    fn source_on(&self, p: &Profile, after_drift: bool, rng: &mut Rng, noise: f64) -> Source {
        if rng.chance(noise) {
            Source::Popular
        } else if rng.chance(p.share) {
            Source::Cohort(p.primary_on(after_drift))
        } else {
            Source::Cohort(p.secondary)
        }
    }

    fn write_truth(
        &self,
        handle: u64,
        p: &Profile,
        out: &mut impl Write,
        tally: &mut Tally,
    ) -> io::Result<()> {
        // The truth is the current cohort: a drifted user's new one.
        let current = p.primary_on(true);
        tally.primary_users[current] += 1;
        if p.multiplier > 1.0 {
            tally.long_watchers += 1;
        }
        write!(
            out,
            "{handle},{current},{},{},{}",
            p.secondary, p.share, p.multiplier
        )?;
        match (self.cfg.drift_share > 0.0, p.drift) {
            (false, _) => writeln!(out),
            (true, Some(_)) => writeln!(out, ",{}", p.primary),
            (true, None) => writeln!(out, ","),
        }
    }

    /// Views: the user takes courses on days within an active window of 2017;
    /// a course is often watched again on later days (one row per day).
    fn write_views(
        &self,
        handle: u64,
        p: &Profile,
        out: &mut impl Write,
        tally: &mut Tally,
        scratch: &mut Scratch,
    ) -> io::Result<()> {
        let mut rng = Rng::stream(self.cfg.seed, Stream::Views, handle);
        let target = rng.lognormal_count(VIEW_ROWS_MEAN, VIEW_ROWS_SIGMA, VIEW_ROWS_MAX) as usize;
        let pace = rng.lognormal(0.0, PACE_SIGMA) * p.multiplier;
        let last_day = self.view_days.len() - 1;
        let drift = self.drift_offset(days_from_civil(2017, 1, 1));
        let (first, end) = if p.drift.is_some() {
            // A drifting user is active on both sides of the drift day.
            let first = drift.saturating_sub(30 + rng.below(120) as u32);
            let end = (drift + 30 + rng.below(u64::from(last_day - drift)) as u32).min(last_day);
            (first, end)
        } else {
            let first = rng.below(u64::from(last_day) + 1) as u32;
            let end = (first + 14 + rng.below(u64::from(last_day)) as u32).min(last_day);
            (first, end)
        };

        let views = &mut scratch.views;
        views.clear();
        while views.len() < target {
            // (The order of the draws is kept for users who do not drift, so that their
            // rows are what earlier versions wrote.)
            let (course, mut day) = if p.drift.is_some() {
                let day = rng.between(u64::from(first), u64::from(end)) as u32;
                let noise = self.cfg.popular_noise;
                (
                    self.course_from(self.source_on(p, day >= drift, &mut rng, noise), &mut rng),
                    day,
                )
            } else {
                let course = self.course_from(self.source(p, &mut rng), &mut rng);
                (course, rng.between(u64::from(first), u64::from(end)) as u32)
            };
            loop {
                let seconds = rng.lognormal(VIEW_SECONDS_MEDIAN.ln(), VIEW_SECONDS_SIGMA) * pace;
                views.push((
                    day,
                    course,
                    seconds.round().clamp(1.0, MAX_VIEW_SECONDS) as u32,
                ));
                day += 1 + rng.geometric(0.5, 30);
                if views.len() >= target || day > last_day || !rng.chance(REWATCH_CHANCE) {
                    break;
                }
            }
        }
        // One row per (day, course): the same course picked twice on one day is dropped.
        views.sort_unstable();
        views.dedup_by_key(|v| (v.0, v.1));

        for &(day, course, seconds) in views.iter() {
            let c = &self.cat.courses[course as usize];
            writeln!(
                out,
                "{handle},\"{}\",{},{},\"{}\",{seconds}",
                self.view_days.label(day),
                Quoted(&c.id),
                c.author,
                c.level.as_str()
            )?;
        }
        tally.users_with_views += 1;
        tally.view_rows += views.len() as u64;
        Ok(())
    }

    /// A course drawn from `source`.
    fn course_from(&self, source: Source, rng: &mut Rng) -> u32 {
        match source {
            Source::Popular => self.cat.popular_course(rng),
            Source::Cohort(c) => self.cohorts[c].course(self.cat, rng),
        }
    }

    /// Interests: distinct tags from the cohort mix (plus popular noise),
    /// mostly followed in a few bulk sessions sharing a timestamp; some rows
    /// are written twice, as in the real file.
    fn write_interests(
        &self,
        handle: u64,
        p: &Profile,
        out: &mut impl Write,
        tally: &mut Tally,
        scratch: &mut Scratch,
    ) -> io::Result<()> {
        let mut rng = Rng::stream(self.cfg.seed, Stream::Interests, handle);
        let target = rng
            .lognormal_count(INTERESTS_MEAN, INTERESTS_SIGMA, INTERESTS_MAX)
            .min(self.vocab.len() as u64) as usize;
        let days = u64::from(self.follow_days.len());
        let drift = self.drift_offset(days_from_civil(2016, 1, 1));
        let drifts = p.drift.is_some();
        // A drifting user follows half their interests after the drift day.
        let moment = |rng: &mut Rng| {
            let day = if drifts && rng.chance(0.5) {
                rng.between(u64::from(drift), days - 1)
            } else if drifts {
                rng.below(u64::from(drift))
            } else {
                rng.below(days)
            };
            (day as u32, rng.below(86_400) as u32)
        };

        scratch.sessions.clear();
        for _ in 0..=rng.geometric(0.5, 5) {
            scratch.sessions.push(moment(&mut rng));
        }
        let interests = &mut scratch.interests;
        interests.clear();
        let mut attempts = 0;
        while interests.len() < target && attempts < target * 30 {
            attempts += 1;
            let noise = self.cfg.interest_noise.unwrap_or(self.cfg.popular_noise);
            let pick_moment = |rng: &mut Rng, sessions: &[(u32, u32)]| {
                if rng.chance(BULK_FOLLOW_SHARE) {
                    sessions[rng.index(sessions.len())]
                } else {
                    moment(rng)
                }
            };
            // A drifting user's moment comes first: it says which cohort the tag is from.
            let early = drifts.then(|| pick_moment(&mut rng, &scratch.sessions));
            let after = early.is_some_and(|(day, _)| day >= drift);
            let tag = match self.source_on(p, after, &mut rng, noise) {
                Source::Cohort(c) => self.cohorts[c].interest(&mut rng),
                Source::Popular => None,
            }
            .unwrap_or_else(|| self.vocab.popular(&mut rng));
            let owner = &mut scratch.interest_owner[tag as usize];
            if *owner == handle {
                continue;
            }
            *owner = handle;
            let (day, second) = match early {
                Some(m) => m,
                None => pick_moment(&mut rng, &scratch.sessions),
            };
            interests.push((day, second, tag));
        }
        interests.sort_unstable_by(|a, b| {
            (a.0, a.1)
                .cmp(&(b.0, b.1))
                .then_with(|| self.vocab.names[a.2 as usize].cmp(&self.vocab.names[b.2 as usize]))
        });

        for &(day, second, tag) in interests.iter() {
            tally.interest_seen[tag as usize] = true;
            let copies = if rng.chance(INTEREST_DUPLICATE_CHANCE) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                writeln!(
                    out,
                    "{handle},{},\"{}\"",
                    Quoted(&self.vocab.names[tag as usize]),
                    self.follow_days.timestamp(day, second)
                )?;
            }
            tally.interest_rows += copies;
            tally.interest_duplicate_rows += copies - 1;
        }
        Ok(())
    }

    /// Assessments: 1 to 15 distinct tags, mostly those mapped to the user's
    /// cohorts (scored higher), taken in one to a few sittings.
    fn write_assessments(
        &self,
        handle: u64,
        p: &Profile,
        out: &mut impl Write,
        tally: &mut Tally,
        scratch: &mut Scratch,
    ) -> io::Result<()> {
        let mut rng = Rng::stream(self.cfg.seed, Stream::Assessments, handle);
        let target = self.assessments_per_user.sample(&mut rng) + 1;
        let ability = SCORE_ABILITY_SD * rng.normal();
        if p.drift.is_some() {
            return self.write_drifted_assessments(handle, p, out, tally, rng, target, ability);
        }

        let chosen = &mut scratch.assessments;
        chosen.clear();
        let mut attempts = 0;
        while chosen.len() < target && attempts < target * 50 {
            attempts += 1;
            let drawn = match self.source(p, &mut rng) {
                Source::Cohort(c) => self.cohorts[c].assessment(&mut rng).map(|a| (a, true)),
                Source::Popular => None,
            };
            let (tag, relevant) =
                drawn.unwrap_or_else(|| (self.assessment_popular.sample(&mut rng) as u32, false));
            if chosen.iter().all(|&(t, _)| t != tag) {
                chosen.push((tag, relevant));
            }
        }
        chosen.sort_unstable_by_key(|&(t, _)| ASSESSMENT_TAGS[t as usize].name);

        let sittings: Vec<u32> = (0..=rng.geometric(0.35, 3))
            .map(|_| rng.below(u64::from(self.assessment_days.len())) as u32)
            .collect();
        for &(tag, relevant) in chosen.iter() {
            let day = sittings[rng.index(sittings.len())];
            self.write_assessment(handle, (tag, relevant, day), ability, &mut rng, out)?;
            tally.assessment_seen[tag as usize] = true;
        }
        tally.users_with_assessments += 1;
        tally.assessment_rows += chosen.len() as u64;
        Ok(())
    }

    /// [`Self::write_assessments`] for a drifting user: sittings on both sides of the
    /// drift day, each test drawn from the cohorts of its sitting's side.
    #[allow(clippy::too_many_arguments)]
    fn write_drifted_assessments(
        &self,
        handle: u64,
        p: &Profile,
        out: &mut impl Write,
        tally: &mut Tally,
        mut rng: Rng,
        target: usize,
        ability: f64,
    ) -> io::Result<()> {
        let days = u64::from(self.assessment_days.len());
        let drift = u64::from(self.drift_offset(days_from_civil(2016, 7, 13)));
        let sittings: Vec<u32> = (0..=rng.geometric(0.35, 3).max(1))
            .map(|i| {
                if i % 2 == 0 {
                    rng.below(drift)
                } else {
                    rng.between(drift, days - 1)
                }
            } as u32)
            .collect();
        let mut chosen: Vec<(u32, bool, u32)> = Vec::new();
        let mut attempts = 0;
        while chosen.len() < target && attempts < target * 50 {
            attempts += 1;
            let day = sittings[rng.index(sittings.len())];
            let noise = self.cfg.popular_noise;
            let drawn = match self.source_on(p, u64::from(day) >= drift, &mut rng, noise) {
                Source::Cohort(c) => self.cohorts[c].assessment(&mut rng).map(|a| (a, true)),
                Source::Popular => None,
            };
            let (tag, relevant) =
                drawn.unwrap_or_else(|| (self.assessment_popular.sample(&mut rng) as u32, false));
            if chosen.iter().all(|&(t, _, _)| t != tag) {
                chosen.push((tag, relevant, day));
            }
        }
        chosen.sort_unstable_by_key(|&(t, _, _)| ASSESSMENT_TAGS[t as usize].name);
        for &taken in &chosen {
            self.write_assessment(handle, taken, ability, &mut rng, out)?;
            tally.assessment_seen[taken.0 as usize] = true;
        }
        tally.users_with_assessments += 1;
        tally.assessment_rows += chosen.len() as u64;
        Ok(())
    }

    /// One assessment row: `(tag, on one of the user's cohort topics, day)` at a time of
    /// day and with a score drawn from `rng`.
    fn write_assessment(
        &self,
        handle: u64,
        (tag, relevant, day): (u32, bool, u32),
        ability: f64,
        rng: &mut Rng,
        out: &mut impl Write,
    ) -> io::Result<()> {
        let second = rng.between(7 * 3_600, 86_399) as u32;
        let bonus = if relevant { SCORE_COHORT_BONUS } else { 0.0 };
        let score = (SCORE_BASE + ability + bonus + SCORE_NOISE_SD * rng.normal())
            .round()
            .clamp(0.0, SCORE_MAX) as u32;
        writeln!(
            out,
            "{handle},{},\"{}\",{score}",
            Quoted(ASSESSMENT_TAGS[tag as usize].name),
            self.assessment_days.timestamp(day, second)
        )
    }
}

/// `x` rounded to `digits` decimals.
fn round_to(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_text_with_quotes_when_quoting_then_quotes_are_doubled() {
        assert_eq!(Quoted("c#").to_string(), "\"c#\"");
        assert_eq!(Quoted("").to_string(), "\"\"");
        assert_eq!(Quoted("say \"hi\"").to_string(), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn given_values_when_rounding_then_digits_are_kept() {
        assert_eq!(round_to(0.123_456, 4), 0.1235);
        assert_eq!(round_to(3.456, 2), 3.46);
    }
}
