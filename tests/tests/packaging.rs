//! Packaging for AWS Lambda: `cargo lambda build --release --arm64 --output-format zip`
//! produces the predict function's deployment zip (what `infra/template.yaml` deploys on
//! `provided.al2023`, arm64). Needs cargo-lambda and the aarch64 Rust target: `./dev test`
//! installs both, and runs that build beside the other tests (`KINDRED_LAMBDA_ZIP_DIR`);
//! elsewhere the test runs it itself.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kindred_e2e::{FUNCTION, background_job, repo_root};
use serde_json::Value;

/// Lambda's limit for a zip uploaded directly (50 MB).
const LAMBDA_ZIP_LIMIT: u64 = 50 * 1024 * 1024;

/// ELF `e_machine` of AArch64.
const EM_AARCH64: u16 = 183;

#[test]
#[ignore = "needs cargo-lambda and the aarch64 target: run ./dev test"]
fn cargo_lambda_packages_the_function_as_an_arm64_bootstrap_zip() {
    // Given the workspace, when cargo-lambda builds the function for arm64 as a zip,
    let tmp = tempfile::tempdir().unwrap();
    let lambda_dir = if background_job("LAMBDA_ZIP", Duration::from_secs(40 * 60)) {
        PathBuf::from(std::env::var("KINDRED_LAMBDA_ZIP_DIR").unwrap())
    } else {
        let status = Command::new("cargo")
            .args([
                "lambda",
                "build",
                "--release",
                "--arm64",
                "--output-format",
                "zip",
            ])
            .args(["-p", FUNCTION, "--lambda-dir"])
            .arg(tmp.path())
            .current_dir(repo_root())
            .status()
            .expect("run cargo lambda build");
        assert!(status.success(), "cargo lambda build failed: {status}");
        tmp.path().to_owned()
    };

    // then the zip is within Lambda's direct-upload limit,
    let zip = lambda_dir.join(FUNCTION).join("bootstrap.zip");
    let size = std::fs::metadata(&zip)
        .unwrap_or_else(|e| panic!("{}: {e}", zip.display()))
        .len();
    assert!(size > 0 && size < LAMBDA_ZIP_LIMIT, "zip is {size} bytes");

    // it holds exactly one entry, an executable named `bootstrap`,
    let unpacked = tmp.path().join("unpacked");
    let listing = Command::new("python3")
        .args([
            "-c",
            "import json, sys, zipfile\n\
             z = zipfile.ZipFile(sys.argv[1])\n\
             z.extractall(sys.argv[2])\n\
             print(json.dumps([{'name': i.filename, 'mode': i.external_attr >> 16} for i in z.infolist()]))",
        ])
        .arg(&zip)
        .arg(&unpacked)
        .output()
        .expect("python3 zipfile");
    assert!(listing.status.success(), "{listing:?}");
    let entries: Value = serde_json::from_slice(&listing.stdout).unwrap();
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["name"], "bootstrap");
    let mode = entries[0]["mode"].as_u64().unwrap();
    assert!(
        mode & 0o111 != 0,
        "bootstrap is not executable: mode {mode:o}"
    );

    // and that is a 64-bit little-endian ELF for AArch64 that needs no BLAS or LAPACK.
    let elf = std::fs::read(unpacked.join("bootstrap")).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!((elf[4], elf[5]), (2, 1), "not 64-bit little-endian");
    assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), EM_AARCH64);
    for library in [&b"libopenblas"[..], b"liblapack", b"libgfortran"] {
        assert!(
            !elf.windows(library.len()).any(|w| w == library),
            "links {}",
            String::from_utf8_lossy(library)
        );
    }
    // Its debug info and symbol table are stripped (Cargo.toml's release override for
    // kindred-predict): they would only make the zip Lambda fetches on a cold start larger.
    let sections = section_names(&elf);
    assert!(sections.iter().any(|s| s == ".text"), "{sections:?}");
    let kept: Vec<&String> = sections
        .iter()
        .filter(|s| s.starts_with(".debug_") || *s == ".symtab")
        .collect();
    assert!(kept.is_empty(), "not stripped: {kept:?}");
}

/// The section names of a 64-bit little-endian ELF file.
fn section_names(elf: &[u8]) -> Vec<String> {
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    let (table, entry_size, count, names) =
        (u64_at(0x28), u16_at(0x3A), u16_at(0x3C), u16_at(0x3E));
    let header = |i: usize| table + i * entry_size;
    let strings = u64_at(header(names) + 0x18);
    (0..count)
        .map(|i| {
            let start = strings
                + u32::from_le_bytes(elf[header(i)..header(i) + 4].try_into().unwrap()) as usize;
            let end = start + elf[start..].iter().position(|b| *b == 0).unwrap();
            String::from_utf8_lossy(&elf[start..end]).into_owned()
        })
        .collect()
}
