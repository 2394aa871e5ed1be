//! libFuzzer target: see `kindred_fuzz::csv_rows`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kindred_fuzz::csv_rows(data));
