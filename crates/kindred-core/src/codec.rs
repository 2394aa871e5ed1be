//! The artifacts' byte encoding: bincode 2 with bounded decoding, and SHA-256 digests.

use serde::{Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Largest artifact this build reads (also the bincode decode limit).
pub const MAX_ARTIFACT_BYTES: u64 = 4 << 30;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ MAX_ARTIFACT_BYTES as usize }>()
}

/// How much memory decoding may claim per input byte. bincode counts what it allocates
/// (a length-prefixed byte string claims its length before it is read) and the in-memory
/// size of each value it reads (a one-byte varint becomes an 8-byte integer), so real
/// artifacts stay far under 8 times their size; 32 leaves a wide margin. The limit is
/// this times the input size rounded up to a power of two (at least 1 MiB, at most
/// [`MAX_ARTIFACT_BYTES`]), so at most 64 bytes per input byte above 32 KiB of input.
pub const DECODE_EXPANSION: usize = 32;

/// Encodes an artifact with bincode 2.
pub fn encode<T: Serialize>(name: &str, value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, bincode_config()).map_err(|e| Error::Encode {
        name: name.into(),
        message: e.to_string(),
    })
}

fn decode_within<T: DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
) -> std::result::Result<(T, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard().with_limit::<LIMIT>())
}

/// Decodes an artifact with bincode 2; trailing bytes are an error.
///
/// The decoder may claim at most [`DECODE_EXPANSION`] times the input's size, rounded up
/// to a power of two between 1 MiB and [`MAX_ARTIFACT_BYTES`], so a corrupt or hostile
/// length prefix in a few bytes cannot make it allocate gigabytes (found by fuzzing:
/// `fuzz/regressions/artifact/`).
pub fn decode<T: DeserializeOwned>(name: &str, bytes: &[u8]) -> Result<T> {
    let budget = bytes
        .len()
        .saturating_mul(DECODE_EXPANSION)
        .clamp(1 << 20, MAX_ARTIFACT_BYTES as usize)
        .next_power_of_two();
    macro_rules! within {
        ($($shift:literal)*) => {
            match budget.trailing_zeros() {
                $($shift => decode_within::<T, { 1 << $shift }>(bytes),)*
                _ => decode_within::<T, { MAX_ARTIFACT_BYTES as usize }>(bytes),
            }
        };
    }
    let decoded = within!(20 21 22 23 24 25 26 27 28 29 30 31);
    let (value, used) = decoded.map_err(|e| Error::Decode {
        name: name.into(),
        message: e.to_string(),
    })?;
    if used != bytes.len() {
        return Err(Error::Decode {
            name: name.into(),
            message: format!("{} trailing bytes", bytes.len() - used),
        });
    }
    Ok(value)
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_length_prefix_far_beyond_the_input_is_refused_before_allocating() {
        // Given 7 bytes whose varint length prefix announces a 2 GB byte string (the
        // input libFuzzer found: fuzz/regressions/artifact/),
        let bytes = [0x25, 0xfc, 0xff, 0x80, 0xdb, 0x84, 0x00];
        // when they are decoded as a string, then the decoder refuses at its limit
        // (1 MiB for so small an input) instead of allocating and then running out of input.
        let err = decode::<String>("fuzzed", &bytes[1..])
            .unwrap_err()
            .to_string();
        assert!(err.contains("LimitExceeded"), "{err}");
        // A string that is really there still decodes.
        let ok = encode("s", &"x".repeat(100_000)).unwrap();
        assert_eq!(decode::<String>("s", &ok).unwrap().len(), 100_000);
    }

    #[test]
    fn decode_refuses_trailing_bytes() {
        let mut bytes = encode("t", &vec![1u32, 2, 3]).unwrap();
        assert_eq!(decode::<Vec<u32>>("t", &bytes).unwrap(), vec![1, 2, 3]);
        bytes.push(0);
        assert!(decode::<Vec<u32>>("t", &bytes).is_err());
    }
}
