//! Users folded in between full trainings (`kindred-batch update`): a shard's delta.
//!
//! The HNSW index cannot take new points, so an update leaves each shard's index and user
//! table as the full training wrote them and adds a small **delta** beside them
//! (`delta-NNNN.bin`, or `delta.bin` in an unsharded model, format 4):
//!
//! - `retired`: the shard's points whose user has newer data (their rows stay in the
//!   row space, but no search returns them and no handle finds them);
//! - `users` and `points`: the new and changed users, with embeddings folded in through
//!   the stored projection. Queries scan them exactly beside the index search.
//!
//! A later update carries the delta forward (a user changed again replaces its entry),
//! and the next full training starts without one. [`crate::manifest::UpdateRecord`] says
//! how much of the model was folded in and how well the stored basis still fits.

use serde::{Deserialize, Serialize};

use crate::embedding::Embedding;
use crate::error::{Error, Result};

/// One shard's delta: retired index points and freshly folded users.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// Index points (shard-local) superseded by newer data, ascending, unique.
    pub retired: Vec<u32>,
    /// The folded users' summaries.
    pub users: Vec<crate::users::UserSummary>,
    /// Their unit embeddings, `points[i]` for `users[i]`.
    pub points: Vec<Embedding>,
}

impl Delta {
    /// True when the delta changes nothing.
    pub fn is_empty(&self) -> bool {
        self.retired.is_empty() && self.users.is_empty()
    }

    /// Checks the delta against its shard: `base` index points, `dimensions` wide.
    pub fn validate(&self, base: usize, dimensions: usize) -> Result<()> {
        if self.users.len() != self.points.len() {
            return Err(Error::Inconsistent(format!(
                "delta has {} users and {} embeddings",
                self.users.len(),
                self.points.len()
            )));
        }
        self.validate_points(base, dimensions)
    }

    /// [`Delta::validate`] without the users (a search holds only the embeddings).
    pub fn validate_points(&self, base: usize, dimensions: usize) -> Result<()> {
        let ascending = self.retired.windows(2).all(|w| w[0] < w[1]);
        if !ascending || self.retired.last().is_some_and(|&r| r as usize >= base) {
            return Err(Error::Inconsistent(format!(
                "delta retires points that are unsorted, repeated or beyond the shard's {base}"
            )));
        }
        for p in &self.points {
            if p.0.len() != dimensions {
                return Err(Error::InvalidVecDimension {
                    expected: dimensions,
                    received: p.0.len(),
                });
            }
            if p.0.iter().any(|x| !x.is_finite()) {
                return Err(Error::Inconsistent(
                    "delta holds a non-finite embedding".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_is_checked_against_its_shard() {
        let ok = Delta {
            retired: vec![0, 4],
            users: vec![Default::default()],
            points: vec![Embedding(vec![1.0, 0.0])],
        };
        assert!(ok.validate(5, 2).is_ok());
        // A retired point beyond the shard, out of order, or a wrong width is refused.
        assert!(ok.validate(4, 2).is_err());
        assert!(ok.validate(5, 3).is_err());
        let unsorted = Delta {
            retired: vec![3, 1],
            ..ok.clone()
        };
        assert!(unsorted.validate(5, 2).is_err());
        let short = Delta {
            points: Vec::new(),
            ..ok
        };
        assert!(short.validate(5, 2).is_err());
    }
}
