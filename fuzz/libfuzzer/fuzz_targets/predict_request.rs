//! libFuzzer target: see `kindred_fuzz::predict_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kindred_fuzz::predict_request(data));
