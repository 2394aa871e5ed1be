//! A fast hash for the ingest's own tables (row fingerprints, handles, tag and course
//! names), in place of the standard library's SipHash, which took a fifth of reading
//! the challenge's files.
//!
//! Each 8 bytes are folded into the state through SplitMix64's output function
//! ([`mix64`], a bijection), so two inputs of equal length differing in one word never
//! collide, and fingerprints of distinct rows that nobody crafted collide with
//! probability about 2⁻⁶⁴ per pair. It is not keyed, so rows differing in two words can
//! be crafted to collide: the files are the operator's own, not an adversary's, and such
//! a collision would only make one row count as a duplicate of another.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use kindred_core::shard::mix64;

/// The hasher: the state after every word written so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let (words, tail) = bytes.as_chunks::<8>();
        for word in words {
            self.0 = mix64(self.0 ^ u64::from_le_bytes(*word));
        }
        self.0 = mix64(self.0 ^ tail_word(tail));
    }

    fn write_u8(&mut self, x: u8) {
        self.write_u64(u64::from(x));
    }

    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = mix64(self.0 ^ x);
    }

    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
/// A `HashSet` with [`FastHasher`].
pub type FastSet<T> = HashSet<T, BuildHasherDefault<FastHasher>>;
/// A set of [`fingerprint`]s, each its own hash (they are mixed already: hashing them
/// again took a third of the set's inserts).
pub type FingerprintSet = HashSet<u64, BuildHasherDefault<Unhashed>>;

/// The hasher of [`FingerprintSet`]: a `u64` key is its own hash.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unhashed(u64);

impl Hasher for Unhashed {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by a set of `u64`s; any other key still gets a (weak) hash.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The last word of a field or key: its tail (fewer than 8 bytes) with the tail's length
/// in the top byte, so "a" and "a\0" differ. The word is assembled in a register: copied
/// into a stack array and read back whole, it stalled each row on the store (a third of
/// reading the views file).
fn tail_word(tail: &[u8]) -> u64 {
    tail.iter()
        .enumerate()
        .fold((tail.len() as u64) << 56, |w, (i, &b)| {
            w | u64::from(b) << (8 * i)
        })
}

/// The fingerprint of a row's fields, for spotting exact duplicates in 8 bytes a row:
/// each field's 8-byte words, then its `tail_word`, folded as [`FastHasher`] folds
/// them, but alternately into two states; a third state folds the fields' lengths (a
/// full word can look like a tail word, so the words alone do not say where a field
/// ends). Independent chains of mixing run side by side in the processor, where one
/// chain made each row wait for about 18 mixes in turn: fingerprinting was two fifths
/// of reading the views file. A row differing from another in one word, with fields of
/// the same lengths, still always differs in its fingerprint (that word's state differs,
/// the others do not).
pub fn fingerprint(fields: &[&[u8]]) -> u64 {
    let (mut this, mut other, mut lengths) = (0u64, 0x9e37_79b9_7f4a_7c15u64, 0u64);
    let mut fold = |word: u64| {
        this = mix64(this ^ word);
        std::mem::swap(&mut this, &mut other);
    };
    for f in fields {
        let (words, tail) = f.as_chunks::<8>();
        for word in words {
            fold(u64::from_le_bytes(*word));
        }
        fold(tail_word(tail));
        lengths = mix64(lengths ^ f.len() as u64);
    }
    mix64(this ^ other.rotate_left(32) ^ lengths.rotate_left(16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_apart_rows_that_differ_anywhere() {
        // Given rows that differ in one byte, in where a field ends, or in trailing bytes,
        let rows: [&[&[u8]]; 8] = [
            &[b"1", b"2019-01-01", b"course-a"],
            &[b"1", b"2019-01-01", b"course-b"],
            &[b"1", b"2019-01-0", b"1course-a"],
            &[b"1", b"2019-01-01", b"course-a\0"],
            &[b"12345678", b"", b"x"],
            &[b"1234567", b"8", b"x"],
            // a full word whose top byte reads as a tail's length, against that tail
            &[b"abcdefg\x07", b"x"],
            &[b"abcdefg", b"\0\0\0\0\0\0\0\0x"],
        ];
        // then their fingerprints all differ, and a row's is stable.
        let prints: FastSet<u64> = rows.iter().map(|r| fingerprint(r)).collect();
        assert_eq!(prints.len(), rows.len());
        assert_eq!(
            fingerprint(rows[0]),
            fingerprint(&[b"1", b"2019-01-01", b"course-a"])
        );
    }
}
