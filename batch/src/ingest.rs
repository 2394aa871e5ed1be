//! Reading the four challenge CSVs into compact, validated records.
//!
//! Files are streamed row by row. Bad rows are skipped and counted by reason, with
//! the first few quoted by file and line; only a missing required file or column, or
//! a required file without a single usable row, stops the run.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fast_hash::{FastMap, FastSet, FingerprintSet, fingerprint};

/// Name of the course views file (required).
pub const VIEWS: &str = "user_course_views.csv";
/// Name of the course tags file (required).
pub const COURSE_TAGS: &str = "course_tags.csv";
/// Name of the interests file (optional).
pub const INTERESTS: &str = "user_interests.csv";
/// Name of the assessment scores file (optional).
pub const ASSESSMENTS: &str = "user_assessment_scores.csv";

/// How many malformed rows each file quotes in the report.
const EXAMPLES: usize = 5;

/// A problem that makes the input unusable: the run stops and publishes nothing.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A required file is absent.
    #[error("required file {file} is missing from {dir}")]
    MissingFile {
        /// File name.
        file: &'static str,
        /// Folder searched.
        dir: PathBuf,
    },
    /// A required column is absent from a file's header.
    #[error("{file} has no column {column:?} (header: {header:?})")]
    MissingColumn {
        /// File name.
        file: &'static str,
        /// Column expected.
        column: &'static str,
        /// The header found.
        header: Vec<String>,
    },
    /// A required file has no usable row.
    #[error("{file} has no usable rows ({rows} read, all skipped)")]
    Unusable {
        /// File name.
        file: &'static str,
        /// Rows read.
        rows: u64,
    },
    /// The files name more tags than a model's vocabulary may hold.
    #[error("the files name {tags} tags, more than the {max} a model may have")]
    TooManyTags {
        /// Tags named.
        tags: usize,
        /// [`kindred_core::users::MAX_TAGS`].
        max: usize,
    },
    /// The file could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// File name.
        file: &'static str,
        /// Underlying error.
        source: csv::Error,
    },
}

/// Why a row was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Not the header's number of fields.
    WrongFieldCount,
    /// `user_handle` is not a non-negative integer.
    BadHandle,
    /// `view_time_seconds` is not an integer.
    BadSeconds,
    /// `view_time_seconds` is negative.
    NegativeSeconds,
    /// An assessment score is not an integer in 0..=1000.
    BadScore,
    /// A required text field (course id, tag) is empty.
    EmptyField,
    /// The row repeats an earlier row exactly.
    Duplicate,
}

impl SkipReason {
    fn describe(self) -> &'static str {
        match self {
            SkipReason::WrongFieldCount => "wrong number of fields",
            SkipReason::BadHandle => "user_handle is not a non-negative integer",
            SkipReason::BadSeconds => "view_time_seconds is not an integer",
            SkipReason::NegativeSeconds => "view_time_seconds is negative",
            SkipReason::BadScore => "score is not an integer in 0..=1000",
            SkipReason::EmptyField => "empty required field",
            SkipReason::Duplicate => "duplicate of an earlier row",
        }
    }
}

/// What happened to one file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FileReport {
    /// File name.
    pub file: String,
    /// Whether the file was present.
    pub present: bool,
    /// Data rows read (header excluded).
    pub rows: u64,
    /// Rows used.
    pub used: u64,
    /// Rows skipped, by reason.
    pub skipped: BTreeMap<SkipReason, u64>,
    /// File-specific observations that did not skip the row (e.g. empty tags, case variants).
    pub quirks: BTreeMap<String, u64>,
    /// The first few skipped rows: `file:line: reason`.
    pub examples: Vec<String>,
}

impl FileReport {
    fn new(file: &str) -> Self {
        FileReport {
            file: file.into(),
            ..Default::default()
        }
    }

    fn skip(&mut self, line: u64, reason: SkipReason) {
        *self.skipped.entry(reason).or_default() += 1;
        if self.examples.len() < EXAMPLES && reason != SkipReason::Duplicate {
            self.examples
                .push(format!("{}:{line}: {}", self.file, reason.describe()));
        }
    }

    fn quirk(&mut self, what: &'static str) {
        *self.quirks.entry(what.to_owned()).or_default() += 1;
    }

    /// Total rows skipped.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

/// Interned strings with dense ids (tags, courses).
#[derive(Clone, Debug, Default)]
pub struct Vocab {
    /// Names by id.
    pub names: Vec<String>,
    ids: FastMap<String, u32>,
}

impl Vocab {
    /// The id of `name`, adding it when new.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }

    /// The id of `name`, if known.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// One usable view row: who watched which course for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    /// User handle.
    pub user: u64,
    /// Course id (index into [`Dataset::courses`]).
    pub course: u32,
    /// Seconds watched.
    pub seconds: u32,
    /// The view's date as days since 1970-01-01; 0 when the row's date is unreadable.
    pub day: u32,
}

/// Everything read from a data folder.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    /// Tag vocabulary (course tags, interests and assessment tags), interned by
    /// [`tags::key`](crate::tags::key) and named by each tag's commonest lower-case spelling.
    pub tags: Vocab,
    /// Course vocabulary (ids as in the files).
    pub courses: Vocab,
    /// Tags of each course, by course id; empty for courses without tags.
    pub course_tags: Vec<Vec<u32>>,
    /// Usable view rows.
    pub views: Vec<View>,
    /// Deduplicated (user, interest tag) pairs.
    pub interests: Vec<(u64, u32)>,
    /// The day each of [`Dataset::interests`] was last followed (days since
    /// 1970-01-01; 0 when unreadable).
    pub interest_days: Vec<u32>,
    /// Deduplicated (user, assessment tag, score) triples; the latest row wins.
    pub assessments: Vec<(u64, u32, u16)>,
    /// The day of each of [`Dataset::assessments`] (0 when unreadable).
    pub assessment_days: Vec<u32>,
    /// One report per file.
    pub reports: Vec<FileReport>,
    /// Rows per lower-case spelling, by tag id (to name merged tags).
    spellings: Vec<FastMap<String, u64>>,
}

impl Dataset {
    /// The day of the newest dated event (view, follow or assessment), as days since
    /// 1970-01-01; 0 when nothing is dated. Recency is measured back from it.
    pub fn newest_day(&self) -> u32 {
        let views = self.views.iter().map(|v| v.day);
        let others = self
            .interest_days
            .iter()
            .chain(&self.assessment_days)
            .copied();
        views.chain(others).max().unwrap_or(0)
    }

    /// The rows of the users in `keep` only, with the same vocabularies (tag and course
    /// ids unchanged). Measure recency with the whole data set's [`Dataset::newest_day`].
    pub fn of_users(&self, keep: &FastSet<u64>) -> Dataset {
        let (interests, interest_days) = kept(&self.interests, &self.interest_days, |i| {
            keep.contains(&i.0)
        });
        let (assessments, assessment_days) = kept(&self.assessments, &self.assessment_days, |a| {
            keep.contains(&a.0)
        });
        Dataset {
            tags: self.tags.clone(),
            courses: self.courses.clone(),
            course_tags: self.course_tags.clone(),
            views: self
                .views
                .iter()
                .filter(|v| keep.contains(&v.user))
                .copied()
                .collect(),
            interests,
            interest_days,
            assessments,
            assessment_days,
            reports: Vec::new(),
            spellings: Vec::new(),
        }
    }

    /// The number of distinct users with a view, interest or assessment when it is at
    /// most `limit`; `None` as soon as more are seen.
    pub fn users_up_to(&self, limit: usize) -> Option<usize> {
        let mut seen = FastSet::with_capacity_and_hasher(limit.min(1 << 20), Default::default());
        let users = self.views.iter().map(|v| v.user);
        let others = self.interests.iter().map(|i| i.0);
        for user in users
            .chain(others)
            .chain(self.assessments.iter().map(|a| a.0))
        {
            if seen.insert(user) && seen.len() > limit {
                return None;
            }
        }
        Some(seen.len())
    }

    /// The id of a tag in any of its spellings (`C#`, `csharp`, `c-sharp`).
    pub fn tag(&self, spelling: &str) -> Option<u32> {
        self.tags.get(&crate::tags::key(spelling))
    }

    /// Interns a tag spelling by its key; counts a spelling that joins another.
    fn intern_tag(&mut self, spelling: &str, report: &mut FileReport) -> u32 {
        self.intern_tag_rows(spelling, 1, report)
    }

    /// [`Dataset::intern_tag`] for `rows` rows of one spelling at once.
    fn intern_tag_rows(&mut self, spelling: &str, rows: u64, report: &mut FileReport) -> u32 {
        let id = self.tags.intern(&crate::tags::key(spelling)) as usize;
        if self.spellings.len() <= id {
            self.spellings.resize_with(id + 1, FastMap::default);
        }
        let seen = &mut self.spellings[id];
        if !seen.is_empty() && !seen.contains_key(spelling) {
            report.quirk("tag_spellings_merged");
        }
        *seen.entry(spelling.to_owned()).or_default() += rows;
        id as u32
    }

    /// Names every tag by its commonest spelling (ties: the shorter, then the first in
    /// byte order), so `c#` and `csharp` end as one tag with one name.
    fn name_tags(&mut self) {
        for (name, seen) in self.tags.names.iter_mut().zip(&self.spellings) {
            if let Some((best, _)) = seen.iter().max_by(|a, b| {
                a.1.cmp(b.1)
                    .then(b.0.len().cmp(&a.0.len()))
                    .then(b.0.cmp(a.0))
            }) {
                best.clone_into(name);
            }
        }
    }
}

/// Reads a data folder: views and course tags are required, interests and assessments optional.
pub fn read_dir(dir: &Path) -> Result<Dataset, IngestError> {
    let mut ds = Dataset::default();
    for required in [VIEWS, COURSE_TAGS] {
        if !dir.join(required).is_file() {
            return Err(IngestError::MissingFile {
                file: required,
                dir: dir.to_owned(),
            });
        }
    }
    // The interests file is parsed from the start, beside the course tags (which the
    // views need first: at 10k users 8-12 ms), and its tags interned after them.
    // The interests and assessments are then finished on that thread while the views are
    // read. The views add no tags, so that thread takes the vocabulary along and brings
    // it back: their tags get the ids a row-by-row read would give them.
    let (views, interests) = std::thread::scope(|scope| {
        let parsing = scope.spawn(|| parse_interests(&dir.join(INTERESTS)));
        read_course_tags(&dir.join(COURSE_TAGS), &mut ds)?;
        let mut tagged = Dataset {
            tags: std::mem::take(&mut ds.tags),
            spellings: std::mem::take(&mut ds.spellings),
            ..Dataset::default()
        };
        let interests = scope.spawn(move || {
            let parsed = parsing.join().expect("the interests parser panicked")?;
            add_interests(parsed, &mut tagged);
            read_assessments(&dir.join(ASSESSMENTS), &mut tagged).map(|()| tagged)
        });
        let views = read_views(&dir.join(VIEWS), &mut ds);
        Ok::<_, IngestError>((views, interests.join()))
    })?;
    views?;
    let tagged = interests.expect("the interests and assessments reader panicked")?;
    // Every field that thread may fill, named: one it starts filling must be moved too.
    let Dataset {
        tags,
        spellings,
        interests,
        interest_days,
        assessments,
        assessment_days,
        mut reports,
        courses: _,
        course_tags: _,
        views: _,
    } = tagged;
    ds.tags = tags;
    ds.spellings = spellings;
    ds.interests = interests;
    ds.interest_days = interest_days;
    ds.assessments = assessments;
    ds.assessment_days = assessment_days;
    ds.reports.append(&mut reports);
    ds.name_tags();
    within_vocabulary(ds)
}

/// The data set, unless its tags are more than a model may hold.
fn within_vocabulary(ds: Dataset) -> Result<Dataset, IngestError> {
    let (tags, max) = (ds.tags.len(), kindred_core::users::MAX_TAGS);
    if tags > max {
        return Err(IngestError::TooManyTags { tags, max });
    }
    Ok(ds)
}

/// Reads a delta folder for `kindred-batch update`: the same files as [`read_dir`], with
/// a model's tag vocabulary (`tags`) and course catalogue (`courses`, with their tags)
/// known beforehand, so that every known tag and course keeps the model's id (new ones
/// follow). `user_course_views.csv` is required; `course_tags.csv` is optional (it may
/// add courses, or tags to a course).
pub fn read_dir_onto(
    dir: &Path,
    tags: &[String],
    courses: &[String],
    course_tags: &[Vec<u32>],
) -> Result<Dataset, IngestError> {
    if !dir.join(VIEWS).is_file() {
        return Err(IngestError::MissingFile {
            file: VIEWS,
            dir: dir.to_owned(),
        });
    }
    let mut ds = Dataset::default();
    let mut seeding = FileReport::new("(model)");
    for name in tags {
        ds.intern_tag(name, &mut seeding);
    }
    for name in courses {
        ds.courses.intern(name);
    }
    ds.course_tags = course_tags.to_vec();
    ds.course_tags.resize(ds.courses.len(), Vec::new());
    if dir.join(COURSE_TAGS).is_file() {
        read_course_tags(&dir.join(COURSE_TAGS), &mut ds)?;
    }
    read_views(&dir.join(VIEWS), &mut ds)?;
    add_interests(parse_interests(&dir.join(INTERESTS))?, &mut ds);
    read_assessments(&dir.join(ASSESSMENTS), &mut ds)?;
    // The model's tags keep the model's names.
    ds.name_tags();
    for (name, model) in ds.tags.names.iter_mut().zip(tags) {
        name.clone_from(model);
    }
    within_vocabulary(ds)
}

/// An open CSV file with its required columns located.
struct Table {
    file: &'static str,
    reader: csv::Reader<std::fs::File>,
    columns: Vec<usize>,
    width: usize,
}

impl Table {
    fn open(
        path: &Path,
        file: &'static str,
        required: &[&'static str],
    ) -> Result<Table, IngestError> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(path)
            .map_err(|source| IngestError::Read { file, source })?;
        let header: Vec<String> = reader
            .headers()
            .map_err(|source| IngestError::Read { file, source })?
            .iter()
            .map(|h| h.trim().trim_start_matches('\u{feff}').to_owned())
            .collect();
        let mut columns = Vec::with_capacity(required.len());
        for &column in required {
            match header.iter().position(|h| h == column) {
                Some(i) => columns.push(i),
                None => {
                    return Err(IngestError::MissingColumn {
                        file,
                        column,
                        header,
                    });
                }
            }
        }
        Ok(Table {
            file,
            reader,
            columns,
            width: header.len(),
        })
    }

    /// Calls `f(line, fields)` for each row with the right field count; counts the others.
    fn for_each(
        mut self,
        report: &mut FileReport,
        mut f: impl FnMut(u64, &[&[u8]], &mut FileReport),
    ) -> Result<(), IngestError> {
        let mut record = csv::ByteRecord::new();
        report.present = true;
        loop {
            match self.reader.read_byte_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(source) => {
                    return Err(IngestError::Read {
                        file: self.file,
                        source,
                    });
                }
            }
            report.rows += 1;
            let line = record.position().map_or(0, |p| p.line());
            if record.len() != self.width {
                // A lone empty line is not a row worth reporting.
                if record.len() == 1 && record[0].is_empty() {
                    report.rows -= 1;
                    continue;
                }
                report.skip(line, SkipReason::WrongFieldCount);
                continue;
            }
            let mut fields: [&[u8]; 8] = [&[]; 8];
            for (slot, &i) in fields.iter_mut().zip(&self.columns) {
                *slot = &record[i];
            }
            f(line, &fields[..self.columns.len()], report);
        }
        Ok(())
    }
}

/// The day number of a date field (`YYYY-MM-DD`, with or without a time); 0, counted as
/// the quirk `unreadable`, when it is not a date.
fn read_day(field: &[u8], report: &mut FileReport, unreadable: &'static str) -> u32 {
    std::str::from_utf8(field)
        .ok()
        .and_then(kindred_datagen::day_number)
        .and_then(|d| u32::try_from(d).ok())
        .unwrap_or_else(|| {
            report.quirk(unreadable);
            0
        })
}

/// A field as trimmed text (invalid UTF-8 replaced), borrowed when it is valid.
fn text(field: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(field) {
        Ok(s) => Cow::Borrowed(s.trim()),
        Err(_) => Cow::Owned(String::from_utf8_lossy(field).trim().to_owned()),
    }
}

fn parse_u64(field: &[u8]) -> Option<u64> {
    std::str::from_utf8(field).ok()?.trim().parse().ok()
}

fn parse_i64(field: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(field).ok()?.trim();
    // Accept "12.0"-style integers written by spreadsheets, nothing fractional.
    s.parse::<i64>()
        .ok()
        .or_else(|| s.strip_suffix(".0").and_then(|t| t.parse().ok()))
}

/// Lower-cases a tag; notes when the spelling differed only by case.
fn normalise_tag<'a>(raw: &'a [u8], report: &mut FileReport) -> Option<Cow<'a, str>> {
    let tag = text(raw);
    if tag.is_empty() {
        return None;
    }
    if tag.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        return Some(tag);
    }
    let lower = tag.to_lowercase();
    if lower != tag {
        report.quirk("tags_with_upper_case_merged");
    }
    Some(Cow::Owned(lower))
}

fn read_course_tags(path: &Path, ds: &mut Dataset) -> Result<(), IngestError> {
    let mut report = FileReport::new(COURSE_TAGS);
    let table = Table::open(path, COURSE_TAGS, &["course_id", "course_tags"])?;
    let mut seen = FingerprintSet::default();
    table.for_each(&mut report, |line, f, report| {
        let course = text(f[0]);
        if course.is_empty() {
            return report.skip(line, SkipReason::EmptyField);
        }
        if !seen.insert(fingerprint(f)) {
            return report.skip(line, SkipReason::Duplicate);
        }
        if course.contains([',', '"']) {
            report.quirk("quoted_fields_with_commas_or_quotes");
        }
        let id = ds.courses.intern(&course) as usize;
        if ds.course_tags.len() <= id {
            ds.course_tags.resize(id + 1, Vec::new());
        }
        report.used += 1;
        match normalise_tag(f[1], report) {
            None => report.quirk("empty_tags"),
            Some(tag) => {
                let t = ds.intern_tag(&tag, report);
                if ds.course_tags[id].contains(&t) {
                    report.quirk("tags_repeated_for_a_course_after_merging_spellings");
                } else {
                    ds.course_tags[id].push(t);
                }
            }
        }
    })?;
    let untagged = ds.course_tags.iter().filter(|t| t.is_empty()).count() as u64;
    report
        .quirks
        .insert("courses_without_tags".to_owned(), untagged);
    if report.used == 0 {
        return Err(IngestError::Unusable {
            file: COURSE_TAGS,
            rows: report.rows,
        });
    }
    ds.reports.push(report);
    Ok(())
}

fn read_views(path: &Path, ds: &mut Dataset) -> Result<(), IngestError> {
    let mut report = FileReport::new(VIEWS);
    let table = Table::open(
        path,
        VIEWS,
        &[
            "user_handle",
            "view_date",
            "course_id",
            "author_handle",
            "level",
            "view_time_seconds",
        ],
    )?;
    let mut seen = FingerprintSet::default();
    let known_courses = ds.courses.len();
    table.for_each(&mut report, |line, f, report| {
        let Some(user) = parse_u64(f[0]) else {
            return report.skip(line, SkipReason::BadHandle);
        };
        let seconds = match parse_i64(f[5]) {
            None => return report.skip(line, SkipReason::BadSeconds),
            Some(s) if s < 0 => return report.skip(line, SkipReason::NegativeSeconds),
            Some(s) => s.min(u32::MAX as i64) as u32,
        };
        let course = text(f[2]);
        if course.is_empty() {
            return report.skip(line, SkipReason::EmptyField);
        }
        if !seen.insert(fingerprint(f)) {
            return report.skip(line, SkipReason::Duplicate);
        }
        let id = match ds.courses.get(&course) {
            Some(id) => id,
            None => {
                report.quirk("views_of_courses_missing_from_course_tags");
                ds.courses.intern(&course)
            }
        };
        if (id as usize) < known_courses && ds.course_tags[id as usize].is_empty() {
            report.quirk("views_of_courses_without_tags");
        }
        if seconds == 0 {
            report.quirk("zero_second_views");
        }
        let day = read_day(f[1], report, "views_without_a_readable_date");
        report.used += 1;
        ds.views.push(View {
            user,
            course: id,
            seconds,
            day,
        });
    })?;
    ds.course_tags.resize(ds.courses.len(), Vec::new());
    if report.used == 0 {
        return Err(IngestError::Unusable {
            file: VIEWS,
            rows: report.rows,
        });
    }
    ds.reports.push(report);
    Ok(())
}

/// The interests file read apart from the data set's vocabulary, its tags interned
/// afterwards by [`add_interests`]: each row's tag is an index into `spellings`.
struct ParsedInterests {
    report: FileReport,
    /// (user, spelling, day) of each usable row, in file order.
    rows: Vec<(u64, u32, u32)>,
    /// The distinct tag spellings in order of first appearance, with their rows.
    spellings: Vec<(String, u64)>,
}

fn parse_interests(path: &Path) -> Result<ParsedInterests, IngestError> {
    let mut report = FileReport::new(INTERESTS);
    let mut rows = Vec::new();
    let mut spellings: Vec<(String, u64)> = Vec::new();
    if path.is_file() {
        let table = Table::open(
            path,
            INTERESTS,
            &["user_handle", "interest_tag", "date_followed"],
        )?;
        let mut seen_rows = FingerprintSet::default();
        let mut ids: FastMap<String, u32> = FastMap::default();
        table.for_each(&mut report, |line, f, report| {
            let Some(user) = parse_u64(f[0]) else {
                return report.skip(line, SkipReason::BadHandle);
            };
            let Some(tag) = normalise_tag(f[1], report) else {
                return report.skip(line, SkipReason::EmptyField);
            };
            // Exact duplicates (same user, tag and date) are a known quirk of this file.
            if !seen_rows.insert(fingerprint(f)) {
                return report.skip(line, SkipReason::Duplicate);
            }
            report.used += 1;
            let day = read_day(f[2], report, "interests_without_a_readable_date");
            let id = match ids.get(tag.as_ref()) {
                Some(&id) => id,
                None => {
                    let id = spellings.len() as u32;
                    ids.insert(tag.to_string(), id);
                    spellings.push((tag.into_owned(), 0));
                    id
                }
            };
            spellings[id as usize].1 += 1;
            rows.push((user, id, day));
        })?;
    }
    Ok(ParsedInterests {
        report,
        rows,
        spellings,
    })
}

/// Adds the interests of [`parse_interests`] to `ds`: their spellings interned in order
/// of first appearance (the ids and quirks of a row-by-row read), then the latest follow
/// of each (user, tag) kept.
fn add_interests(parsed: ParsedInterests, ds: &mut Dataset) {
    let ParsedInterests {
        mut report,
        rows,
        spellings,
    } = parsed;
    let tags: Vec<u32> = spellings
        .iter()
        .map(|(spelling, n)| ds.intern_tag_rows(spelling, *n, &mut report))
        .collect();
    let mut pairs: Vec<(u64, u32, u32)> = rows
        .into_iter()
        .map(|(user, spelling, day)| (user, tags[spelling as usize], day))
        .collect();
    // Sorted by user, tag and day: the last of each (user, tag) is the latest follow.
    pairs.sort_unstable();
    let before = pairs.len();
    pairs.dedup_by(|later, earlier| {
        let same = (later.0, later.1) == (earlier.0, earlier.1);
        if same {
            earlier.2 = later.2;
        }
        same
    });
    if report.present {
        report.quirks.insert(
            "same_interest_followed_again".to_owned(),
            (before - pairs.len()) as u64,
        );
    }
    ds.interests = pairs.iter().map(|&(u, t, _)| (u, t)).collect();
    ds.interest_days = pairs.iter().map(|p| p.2).collect();
    ds.reports.push(report);
}

fn read_assessments(path: &Path, ds: &mut Dataset) -> Result<(), IngestError> {
    let mut report = FileReport::new(ASSESSMENTS);
    if !path.is_file() {
        ds.reports.push(report);
        return Ok(());
    }
    let table = Table::open(
        path,
        ASSESSMENTS,
        &[
            "user_handle",
            "assessment_tag",
            "user_assessment_date",
            "user_assessment_score",
        ],
    )?;
    let mut seen = FingerprintSet::default();
    // (user, tag) -> (date, score): the latest assessment wins.
    let mut latest: FastMap<(u64, u32), (String, u16)> = FastMap::default();
    table.for_each(&mut report, |line, f, report| {
        let Some(user) = parse_u64(f[0]) else {
            return report.skip(line, SkipReason::BadHandle);
        };
        let Some(tag) = normalise_tag(f[1], report) else {
            return report.skip(line, SkipReason::EmptyField);
        };
        let score = match parse_i64(f[3]) {
            Some(s) if (0..=1000).contains(&s) => s as u16,
            _ => return report.skip(line, SkipReason::BadScore),
        };
        if !seen.insert(fingerprint(f)) {
            return report.skip(line, SkipReason::Duplicate);
        }
        report.used += 1;
        let date = text(f[2]).into_owned();
        let tag = ds.intern_tag(&tag, report);
        let slot = latest
            .entry((user, tag))
            .or_insert_with(|| (date.clone(), score));
        if date > slot.0 {
            *slot = (date, score);
            report.quirk("repeated_assessments_latest_kept");
        }
    })?;
    let mut rows: Vec<(u64, u32, u16, u32)> = latest
        .into_iter()
        .map(|((u, t), (date, s))| {
            let day = read_day(
                date.as_bytes(),
                &mut report,
                "assessments_without_a_readable_date",
            );
            (u, t, s, day)
        })
        .collect();
    rows.sort_unstable();
    ds.assessments = rows.iter().map(|&(u, t, s, _)| (u, t, s)).collect();
    ds.assessment_days = rows.iter().map(|r| r.3).collect();
    ds.reports.push(report);
    Ok(())
}

/// The rows of `rows` that `keep` keeps, with their days (none when `days` is empty: the
/// rows are undated; a row past the end of `days` is undated, 0).
fn kept<T: Copy>(rows: &[T], days: &[u32], keep: impl Fn(&T) -> bool) -> (Vec<T>, Vec<u32>) {
    let mut out = (Vec::new(), Vec::new());
    for (i, r) in rows.iter().enumerate() {
        if keep(r) {
            out.0.push(*r);
            if !days.is_empty() {
                out.1.push(days.get(i).copied().unwrap_or(0));
            }
        }
    }
    out
}
