//! What a deployment lets the API do: how much an answer reveals about learners
//! ([`Disclosure`]), who may call it ([`ApiKeys`]), and whether it serves a scatter-gather
//! coordinator (`/shard/search`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use super::throttle::CallerRate;

/// How much an answer reveals about the learners in it: a deployment setting, never a
/// client's choice. Each level adds to the one before it. Assessment scores of other
/// learners appear only at [`Disclosure::Full`].
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Disclosure {
    /// Handles, ranks and similarities only.
    Similarity,
    /// Also `because`: the tags, interests and assessments two learners share (never a
    /// score or a time) that explain most of their similarity.
    #[default]
    Reasons,
    /// Also each learner's summary: top tags with average view seconds, course and tag
    /// counts, interests; no assessment scores.
    Profiles,
    /// Also assessment scores.
    Full,
}

impl Disclosure {
    /// Every level, least revealing first.
    pub const ALL: [Disclosure; 4] = [
        Disclosure::Similarity,
        Disclosure::Reasons,
        Disclosure::Profiles,
        Disclosure::Full,
    ];

    /// The level's name in settings and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Disclosure::Similarity => "similarity",
            Disclosure::Reasons => "reasons",
            Disclosure::Profiles => "profiles",
            Disclosure::Full => "full",
        }
    }

    /// Whether answers carry `because`.
    pub fn reasons(self) -> bool {
        self >= Disclosure::Reasons
    }

    /// Whether answers carry learners' summaries.
    pub fn profiles(self) -> bool {
        self >= Disclosure::Profiles
    }

    /// Whether summaries carry assessment scores.
    pub fn scores(self) -> bool {
        self >= Disclosure::Full
    }
}

impl fmt::Display for Disclosure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Disclosure {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Disclosure::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = Disclosure::ALL.iter().map(|d| d.name()).collect();
                format!(
                    "unknown disclosure {s:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// The keys a caller may present as `Authorization: Bearer KEY`. Compared in constant
/// time. Keys shorter than [`ApiKeys::MIN_LEN`] are refused when the set is built.
#[derive(Clone, Default)]
pub struct ApiKeys(Vec<Vec<u8>>);

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeys({} keys)", self.0.len())
    }
}

impl ApiKeys {
    /// Shortest key accepted (bytes).
    pub const MIN_LEN: usize = 16;

    /// Keys from a comma-separated list (blanks around keys ignored, empty items skipped).
    pub fn parse(list: &str) -> Result<ApiKeys, String> {
        let keys: Vec<Vec<u8>> = list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| k.as_bytes().to_vec())
            .collect();
        if keys.is_empty() {
            return Err("no API key given".to_owned());
        }
        if let Some(short) = keys.iter().position(|k| k.len() < Self::MIN_LEN) {
            return Err(format!(
                "API key {} is shorter than {} characters",
                short + 1,
                Self::MIN_LEN
            ));
        }
        Ok(ApiKeys(keys))
    }

    /// Whether no key is set (the API is open).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `presented` is one of the keys. Every key is compared in full, whatever
    /// matches, so the time taken does not tell how much of a key was right.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let mut any = false;
        for key in &self.0 {
            any |= constant_time_eq(key, presented);
        }
        any
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, &x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

/// A deployment's settings for the API's router.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// How much answers reveal.
    pub disclosure: Disclosure,
    /// Keys callers must present on `/predict` and `/shard/search`; empty: no key needed
    /// (behind API Gateway's authorizer, or on loopback).
    pub keys: ApiKeys,
    /// Serve `/shard/search` (a process started with `--shards`, called by a coordinator).
    pub shard_mode: bool,
    /// How fast one caller may ask (none: no per-caller limit).
    pub caller_rate: Option<CallerRate>,
    /// The process's request and model counters (`/metrics`, EMF lines in Lambda).
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Encoded answers to questions asked again of the same model version.
    pub answers: std::sync::Arc<super::answers::AnswerCache>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disclosure_levels_parse_by_name_and_each_adds_to_the_one_before() {
        for d in Disclosure::ALL {
            assert_eq!(d.name().parse::<Disclosure>(), Ok(d));
            assert_eq!(
                serde_json::to_value(d).unwrap(),
                serde_json::json!(d.name())
            );
        }
        assert_eq!(" FULL ".parse::<Disclosure>(), Ok(Disclosure::Full));
        assert!("everything".parse::<Disclosure>().is_err());
        let flags = |d: Disclosure| (d.reasons(), d.profiles(), d.scores());
        assert_eq!(flags(Disclosure::Similarity), (false, false, false));
        assert_eq!(flags(Disclosure::Reasons), (true, false, false));
        assert_eq!(flags(Disclosure::Profiles), (true, true, false));
        assert_eq!(flags(Disclosure::Full), (true, true, true));
        assert!(!Disclosure::default().scores());
    }

    #[test]
    fn keys_are_accepted_only_whole_and_short_keys_are_refused() {
        let keys = ApiKeys::parse(" 0123456789abcdef , fedcba9876543210fedcba ").unwrap();
        assert!(keys.accepts(b"0123456789abcdef"));
        assert!(keys.accepts(b"fedcba9876543210fedcba"));
        assert!(!keys.accepts(b"0123456789abcde"));
        assert!(!keys.accepts(b"0123456789abcdef0"));
        assert!(!keys.accepts(b""));
        assert!(ApiKeys::parse("short").is_err());
        assert!(ApiKeys::parse(" , ").is_err());
        assert!(ApiKeys::default().is_empty());
        assert_eq!(format!("{keys:?}"), "ApiKeys(2 keys)");
    }
}
