//! Request parsing and validation: a body in, a [`Query`] or a 4xx [`ApiError`] out.

use axum::http::{HeaderMap, StatusCode, header};
use kindred_core::projection::Profile;
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, too_large, unprocessable};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Default number of similar users.
pub const DEFAULT_K: u32 = 10;
/// Largest number of similar users one request may ask for.
pub const MAX_K: u32 = 100;

/// A JSON number that is a whole number however it is written (`7`, `7.0`, `7e0`): JSON
/// Schema counts all of them as integers. The one reading of integers in request bodies.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Whole {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

impl Whole {
    /// Its value, when it is a whole number of magnitude below 2^64.
    pub(super) fn value(self) -> Option<i128> {
        match self {
            Whole::Unsigned(n) => Some(n.into()),
            Whole::Signed(n) => Some(n.into()),
            Whole::Float(x) if x.fract() == 0.0 && x.abs() < 18_446_744_073_709_551_616.0 => {
                Some(x as i128)
            }
            Whole::Float(_) => None,
        }
    }
}

/// A user handle: a JSON integer, or a string of digits as some clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle(pub u64);

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(Whole),
            Text(String),
        }
        let handle = match Raw::deserialize(d) {
            Ok(Raw::Number(n)) => n.value().and_then(|v| u64::try_from(v).ok()),
            Ok(Raw::Text(s)) => s.trim().parse().ok(),
            Err(_) => None,
        };
        handle.map(Handle).ok_or_else(|| {
            serde::de::Error::custom(
                "user_handle must be a non-negative integer or a string of digits",
            )
        })
    }
}

/// A field that may be left out but, when given, is not `null` (which would otherwise
/// read as absent, so that `{"user_handle": 1, "profile": null}` named two subjects).
pub(super) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// An optional integer ([`Whole`]); `null` reads as absent.
pub(super) fn integer<'de, D>(d: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    match Option::<Whole>::deserialize(d)? {
        None => Ok(None),
        Some(n) => n
            .value()
            .and_then(|v| i64::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("k must be an integer")),
    }
}

/// Body of `POST /predict` and `POST /recommend`: exactly one of `user_handle`,
/// `user_handles` or `profile`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    /// The user to find similar customers for.
    #[serde(default, deserialize_with = "present")]
    pub user_handle: Option<Handle>,
    /// Several users, answered one by one (at most [`MAX_BATCH`]).
    #[serde(default, deserialize_with = "present")]
    pub user_handles: Option<Vec<Handle>>,
    /// A cold-start profile instead of a known user.
    #[serde(default, deserialize_with = "present")]
    pub profile: Option<ProfileRequest>,
    /// How many similar users to return (1 to 100, default 10).
    #[serde(default, deserialize_with = "integer")]
    pub k: Option<i64>,
    /// Handles never to return (at most [`MAX_EXCLUDE`]).
    #[serde(default)]
    pub exclude: Option<Vec<Handle>>,
    /// Leave out neighbours less similar than this (-1 to 1).
    #[serde(default)]
    pub min_similarity: Option<f64>,
    /// `/recommend` only: course ids never to recommend (at most [`MAX_EXCLUDE_COURSES`]).
    #[serde(default)]
    pub exclude_courses: Option<Vec<String>>,
}

/// A cold-start profile in a request: what a new user watched, follows and scored.
/// Tags may be spelled any way the data spells them (`C#`, `csharp`, `c-sharp`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileRequest {
    /// Average view seconds per course tag.
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, f64>,
    /// Followed interest tags.
    #[serde(default)]
    pub interests: Vec<String>,
    /// Assessment scores per tag (0 to 1000).
    #[serde(default)]
    pub assessments: std::collections::BTreeMap<String, f64>,
    /// Days since the learner last engaged with a tag of the profile (0 to 36,500); the
    /// model weighs older tags less, as training weighed older events. Tags not listed
    /// count as new.
    #[serde(default)]
    pub days_ago: std::collections::BTreeMap<String, f64>,
}

/// Most handles in one `user_handles` request.
pub const MAX_BATCH: usize = 100;
/// Most neighbours one batch request may ask for in total (`handles x k`), which keeps
/// the answer well under Lambda's 6 MB response limit.
pub const MAX_BATCH_NEIGHBOURS: usize = 1000;
/// Most handles in `exclude`.
pub const MAX_EXCLUDE: usize = 1000;
/// Most course ids in `exclude_courses`: 200 ids of the longest length accepted
/// ([`MAX_TAG_CHARS`]) still fit in a body of [`MAX_BODY_BYTES`].
pub const MAX_EXCLUDE_COURSES: usize = 200;
/// The work budget of one request: the subjects (handles, or 1 for a profile) times the
/// neighbours searched for each (`k` plus the excluded handles, which the search must
/// look past). A search wider than the model's index width is an exact scan of every
/// user, so this also bounds the exact scans one request can cause.
pub const MAX_WORK: usize = 2000;
/// Most entries (tags, interests and assessments together) in a profile.
pub const MAX_PROFILE_ENTRIES: usize = 1000;
/// Longest tag name accepted in a profile, in characters.
pub const MAX_TAG_CHARS: usize = 200;

/// What a request asks about.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// One known user.
    Handle(u64),
    /// Several known users.
    Handles(Vec<u64>),
    /// A profile to fold into the embedding space.
    Profile(Profile),
}

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Who to find neighbours for.
    pub subject: Subject,
    /// Neighbours per answer.
    pub k: u32,
    /// Filters on the neighbours.
    pub filters: Filters,
}

/// Filters applied to every answer of a request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    /// Handles never returned (for `/recommend`: never asked for their courses).
    pub exclude: std::collections::HashSet<u64>,
    /// Smallest similarity returned (for `/recommend`: of the neighbours asked).
    pub min_similarity: Option<f32>,
    /// Course ids never recommended (`/recommend` only).
    pub exclude_courses: Vec<String>,
}

/// Which route a body is parsed for: they share the body's shape, not all its fields
/// or its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ask {
    /// `POST /predict`: `k` similar users per subject.
    Predict,
    /// `POST /recommend`: `k` courses per subject, from
    /// [`RECOMMEND_NEIGHBOURS`](kindred_core::recommend::RECOMMEND_NEIGHBOURS) neighbours.
    Recommend,
}

/// Validates a `/predict` request (content type, body size, JSON shape, ranges). A
/// missing content type is accepted; errors are 400, 413, 415, 422.
pub fn parse_request(headers: &HeaderMap, body: &[u8]) -> Result<Query, ApiError> {
    parse_for(Ask::Predict, headers, body)
}

/// Validates a request for the route `ask`, as [`parse_request`] does for `/predict`.
pub fn parse_for(ask: Ask, headers: &HeaderMap, body: &[u8]) -> Result<Query, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let json_like =
            ct == "application/json" || (ct.starts_with("application/") && ct.ends_with("+json"));
        if !json_like {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported content type",
                json!({"expected": "application/json", "received": ct}),
            ));
        }
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    // serde would also read a struct from a JSON array (`[1, 5]`): only objects are valid.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid request body",
            json!("expected a JSON object such as {\"user_handle\": 1}"),
        ));
    }
    let req: PredictRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid request body",
            json!(e.to_string()),
        )
    })?;
    let k = validate_k(req.k)?;
    let subject = match (req.user_handle, req.user_handles, req.profile) {
        (Some(h), None, None) => Subject::Handle(h.0),
        (None, Some(hs), None) => {
            if hs.is_empty() || hs.len() > MAX_BATCH {
                return Err(unprocessable(
                    "user_handles out of range",
                    json!({"count": hs.len(), "min": 1, "max": MAX_BATCH}),
                ));
            }
            if hs.len() * k as usize > MAX_BATCH_NEIGHBOURS {
                return Err(unprocessable(
                    "batch too large",
                    json!({"handles": hs.len(), "k": k, "max_handles_times_k": MAX_BATCH_NEIGHBOURS}),
                ));
            }
            Subject::Handles(hs.into_iter().map(|h| h.0).collect())
        }
        (None, None, Some(p)) => Subject::Profile(validate_profile(p)?),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid request body",
                json!("give exactly one of user_handle, user_handles or profile"),
            ));
        }
    };
    let mut filters = validate_filters(req.exclude, req.min_similarity)?;
    let subjects = match &subject {
        Subject::Handles(hs) => hs.len(),
        Subject::Handle(_) | Subject::Profile(_) => 1,
    };
    let searched = match ask {
        Ask::Predict => {
            if req.exclude_courses.is_some() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid request body",
                    json!(
                        "exclude_courses belongs to /recommend; /predict excludes users with exclude"
                    ),
                ));
            }
            k
        }
        Ask::Recommend => {
            filters.exclude_courses = validate_courses(req.exclude_courses.unwrap_or_default())?;
            kindred_core::recommend::RECOMMEND_NEIGHBOURS as u32
        }
    };
    check_work(subjects, searched, filters.exclude.len())?;
    Ok(Query {
        subject,
        k,
        filters,
    })
}

/// Refuses (422) a request whose work, `subjects x (k + excluded)`, is over [`MAX_WORK`].
pub(super) fn check_work(subjects: usize, k: u32, excluded: usize) -> Result<(), ApiError> {
    let work = subjects * (k as usize + excluded);
    if work > MAX_WORK {
        return Err(unprocessable(
            "request over the work budget",
            json!({
                "subjects": subjects,
                "k": k,
                "exclude": excluded,
                "work": work,
                "max_work": MAX_WORK,
                "why": "each subject searches k + exclude neighbours; ask for fewer subjects, a smaller k or a shorter exclude",
            }),
        ));
    }
    Ok(())
}

/// `k` of a request: 1 to [`MAX_K`], [`DEFAULT_K`] when absent; else 422.
pub(super) fn validate_k(k: Option<i64>) -> Result<u32, ApiError> {
    match k {
        None => Ok(DEFAULT_K),
        Some(k) if (1..=i64::from(MAX_K)).contains(&k) => Ok(k as u32),
        Some(k) => Err(unprocessable(
            "k out of range",
            json!({"k": k, "min": 1, "max": MAX_K}),
        )),
    }
}

/// The `exclude` (at most [`MAX_EXCLUDE`]) and `min_similarity` (-1 to 1) of a request.
pub(super) fn validate_filters(
    exclude: Option<Vec<Handle>>,
    min_similarity: Option<f64>,
) -> Result<Filters, ApiError> {
    let exclude = exclude.unwrap_or_default();
    if exclude.len() > MAX_EXCLUDE {
        return Err(unprocessable(
            "exclude too long",
            json!({"count": exclude.len(), "max": MAX_EXCLUDE}),
        ));
    }
    let min_similarity = match min_similarity {
        None => None,
        Some(m) if m.is_finite() && (-1.0..=1.0).contains(&m) => Some(m as f32),
        Some(m) => {
            return Err(unprocessable(
                "min_similarity out of range",
                json!({"min_similarity": m, "min": -1, "max": 1}),
            ));
        }
    };
    Ok(Filters {
        exclude: exclude.into_iter().map(|h| h.0).collect(),
        min_similarity,
        exclude_courses: Vec::new(),
    })
}

/// The `exclude_courses` of a `/recommend` request: at most [`MAX_EXCLUDE_COURSES`] ids
/// of at most [`MAX_TAG_CHARS`] characters. Ids the model does not know exclude nothing.
fn validate_courses(courses: Vec<String>) -> Result<Vec<String>, ApiError> {
    if courses.len() > MAX_EXCLUDE_COURSES {
        return Err(unprocessable(
            "exclude_courses too long",
            json!({"count": courses.len(), "max": MAX_EXCLUDE_COURSES}),
        ));
    }
    if let Some(long) = courses.iter().find(|c| c.chars().count() > MAX_TAG_CHARS) {
        return Err(unprocessable(
            "invalid course id",
            json!({"course_id": long.chars().take(40).collect::<String>(), "max_characters": MAX_TAG_CHARS}),
        ));
    }
    Ok(courses)
}

/// Checks a profile's sizes and values and converts it for folding.
pub(super) fn validate_profile(p: ProfileRequest) -> Result<Profile, ApiError> {
    let entries = p.tags.len() + p.interests.len() + p.assessments.len();
    if entries == 0 {
        return Err(unprocessable(
            "empty profile",
            json!("give at least one of tags (seconds per tag), interests or assessments"),
        ));
    }
    if entries > MAX_PROFILE_ENTRIES {
        return Err(unprocessable(
            "profile too large",
            json!({"entries": entries, "max": MAX_PROFILE_ENTRIES}),
        ));
    }
    let names = p
        .tags
        .keys()
        .chain(&p.interests)
        .chain(p.assessments.keys());
    for name in names {
        if name.trim().is_empty() || name.chars().count() > MAX_TAG_CHARS {
            return Err(unprocessable(
                "invalid tag name",
                json!({"tag": name.chars().take(40).collect::<String>(), "max_characters": MAX_TAG_CHARS}),
            ));
        }
    }
    let check = |field: &str, map: &std::collections::BTreeMap<String, f64>, max: f64| match map
        .iter()
        .find(|(_, v)| !(v.is_finite() && (0.0..=max).contains(*v)))
    {
        Some((tag, v)) => Err(unprocessable(
            "profile value out of range",
            json!({"field": field, "tag": tag, "value": v, "min": 0, "max": max}),
        )),
        None => Ok(()),
    };
    // A year of viewing is far more than any average per tag.
    check("tags", &p.tags, 31_536_000.0)?;
    check("assessments", &p.assessments, 1000.0)?;
    check("days_ago", &p.days_ago, 36_500.0)?;
    let key = kindred_core::tags::key;
    let named: std::collections::HashSet<String> = p
        .tags
        .keys()
        .chain(&p.interests)
        .chain(p.assessments.keys())
        .map(|t| key(t))
        .collect();
    if let Some(stray) = p.days_ago.keys().find(|t| !named.contains(&key(t))) {
        return Err(unprocessable(
            "days_ago names a tag the profile does not have",
            json!({"tag": stray.chars().take(40).collect::<String>()}),
        ));
    }
    Ok(Profile {
        views: p.tags.into_iter().map(|(t, v)| (t, v as f32)).collect(),
        interests: p.interests,
        assessments: p
            .assessments
            .into_iter()
            .map(|(t, v)| (t, v as f32))
            .collect(),
        ages: p.days_ago.into_iter().map(|(t, v)| (t, v as f32)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, header};

    #[test]
    fn requests_are_validated_before_any_model_is_needed() {
        let mut json = HeaderMap::new();
        json.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        let q = parse_request(&json, br#" {"user_handle": "42", "k": null}"#).unwrap();
        assert_eq!((q.subject, q.k), (Subject::Handle(42), DEFAULT_K));
        let q = parse_request(&HeaderMap::new(), br#"{"user_handle": 7, "k": 100}"#).unwrap();
        assert_eq!((q.subject, q.k), (Subject::Handle(7), 100));
        let status = |body: &[u8]| parse_request(&HeaderMap::new(), body).unwrap_err().status;
        assert_eq!(
            status(br#"{"user_handle": 18446744073709551616}"#),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(br#"{"user_handle": 1, "k": 101}"#),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(&vec![b' '; MAX_BODY_BYTES + 1]),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        // Exactly one subject.
        assert_eq!(status(br#"{"k": 3}"#), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(br#"{"user_handle": 1, "user_handles": [2]}"#),
            StatusCode::BAD_REQUEST
        );
        // Batches: 1 to 100 handles, at most 1,000 neighbours in all.
        assert_eq!(
            status(br#"{"user_handles": []}"#),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let many = format!("{{\"user_handles\": [{}]}}", ["1"; 101].join(","));
        assert_eq!(status(many.as_bytes()), StatusCode::UNPROCESSABLE_ENTITY);
        let wide = format!(
            "{{\"user_handles\": [{}], \"k\": 100}}",
            ["1"; 11].join(",")
        );
        assert_eq!(status(wide.as_bytes()), StatusCode::UNPROCESSABLE_ENTITY);
        let q = parse_request(
            &HeaderMap::new(),
            br#"{"user_handles": [3, "4"], "exclude": [5], "min_similarity": 0.25}"#,
        )
        .unwrap();
        assert_eq!(q.subject, Subject::Handles(vec![3, 4]));
        assert!(q.filters.exclude.contains(&5) && q.filters.min_similarity == Some(0.25));
        // Filters in range.
        assert_eq!(
            status(br#"{"user_handle": 1, "min_similarity": 1.5}"#),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        // Profiles: not empty, values in range, known fields only.
        assert_eq!(
            status(br#"{"profile": {}}"#),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(br#"{"profile": {"tags": {"python": -1}}}"#),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(br#"{"profile": {"tags": {"": 10}}}"#),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(br#"{"profile": {"tagz": {"python": 10}}}"#),
            StatusCode::BAD_REQUEST
        );
        let q = parse_request(
            &HeaderMap::new(),
            br#"{"profile": {"tags": {"python": 3600}, "interests": ["c#"], "assessments": {"python": 200}}}"#,
        )
        .unwrap();
        assert_eq!(
            q.subject,
            Subject::Profile(Profile {
                views: vec![("python".into(), 3600.0)],
                interests: vec!["c#".into()],
                assessments: vec![("python".into(), 200.0)],
                ages: Vec::new(),
            })
        );
        // Ages are for the profile's own tags, in days.
        let q = parse_request(
            &HeaderMap::new(),
            br#"{"profile": {"interests": ["C#"], "days_ago": {"csharp": 30}}}"#,
        )
        .unwrap();
        let Subject::Profile(p) = q.subject else {
            panic!("a profile")
        };
        assert_eq!(p.ages, vec![("csharp".to_owned(), 30.0)]);
        assert_eq!(
            status(br#"{"profile": {"interests": ["go"], "days_ago": {"python": 3}}}"#),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(br#"{"profile": {"interests": ["go"], "days_ago": {"go": -1}}}"#),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        // exclude_courses is /recommend's; its batches are bounded by the neighbours
        // each subject asks (50), not by k.
        assert_eq!(
            status(br#"{"user_handle": 1, "exclude_courses": ["a"]}"#),
            StatusCode::BAD_REQUEST
        );
        let recommend = |body: &[u8]| parse_for(Ask::Recommend, &HeaderMap::new(), body);
        let q = recommend(br#"{"user_handle": 1, "k": 5, "exclude_courses": ["a", "b"]}"#).unwrap();
        assert_eq!((q.k, q.filters.exclude_courses.len()), (5, 2));
        let forty = format!("{{\"user_handles\": [{}], \"k\": 1}}", ["1"; 40].join(","));
        assert!(recommend(forty.as_bytes()).is_ok());
        let many = format!("{{\"user_handles\": [{}], \"k\": 1}}", ["1"; 41].join(","));
        assert_eq!(
            recommend(many.as_bytes()).unwrap_err().status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let long = format!(
            "{{\"user_handle\": 1, \"exclude_courses\": [\"{}\"]}}",
            "x".repeat(201)
        );
        assert_eq!(
            recommend(long.as_bytes()).unwrap_err().status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let mut text = HeaderMap::new();
        text.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/json"));
        assert_eq!(
            parse_request(&text, b"{}").unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}
