//! Rows by user handle: the model's one lookup from a handle to its row.
//!
//! Two sorted arrays (12 bytes a user) rather than a hash map (about 36 bytes a user at a
//! million, half its slots empty): a lookup is a binary search, a few microseconds at
//! most beside a query's hundreds.

/// Handles, ascending, each with its model row.
#[derive(Debug, Default)]
pub(crate) struct HandleRows {
    handles: Vec<u64>,
    rows: Vec<u32>,
}

impl HandleRows {
    /// The map of `(handle, row)` pairs in any order, or the first handle that appears
    /// twice.
    pub(crate) fn new(mut pairs: Vec<(u64, u32)>) -> Result<HandleRows, u64> {
        // Stable: the shards' rows arrive as a few ascending runs, which it merges.
        pairs.sort_by_key(|&(handle, _)| handle);
        if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(w[0].0);
        }
        let (handles, rows) = pairs.into_iter().unzip();
        Ok(HandleRows { handles, rows })
    }

    /// The row of `handle`, if it has one.
    pub(crate) fn get(&self, handle: u64) -> Option<u32> {
        let i = self.handles.binary_search(&handle).ok()?;
        Some(self.rows[i])
    }

    /// Handles held.
    pub(crate) fn len(&self) -> usize {
        self.handles.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_handle_finds_its_row_and_no_other_handle_finds_one() {
        let pairs: Vec<(u64, u32)> = (0..1_000u32)
            .map(|row| (u64::from(row) * 7919 % 10_007 + 1, row))
            .collect();
        let map = HandleRows::new(pairs.clone()).unwrap();
        assert_eq!(map.len(), 1_000);
        for (handle, row) in pairs {
            assert_eq!(map.get(handle), Some(row));
        }
        let held: std::collections::HashSet<u64> = map.handles.iter().copied().collect();
        for handle in (0..10_010).filter(|h| !held.contains(h)) {
            assert_eq!(map.get(handle), None);
        }
    }

    #[test]
    fn a_handle_given_twice_is_named() {
        let pairs = vec![(5, 0), (9, 1), (3, 2), (9, 3)];
        assert_eq!(HandleRows::new(pairs).unwrap_err(), 9);
        assert_eq!(HandleRows::new(Vec::new()).unwrap().get(1), None);
    }
}
