//! libFuzzer target: see `kindred_fuzz::artifact`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kindred_fuzz::artifact(data));
