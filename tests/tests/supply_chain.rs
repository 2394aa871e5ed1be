//! The supply-chain policy (`deny.toml`) holds for the locked dependency graph:
//! permissive licences only, crates.io only, no wildcard versions. Runs cargo-deny
//! offline; the advisory check needs the RustSec database from GitHub, so it runs in
//! `./dev deny --advisories` where the network allows, not here.
//!
//! Needs cargo-deny: `./dev test` builds it once (beside the other tests) and sets
//! `KINDRED_CARGO_DENY`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use kindred_e2e::{background_job, repo_root};

fn cargo_deny(config: &Path, checks: &[&str]) -> Output {
    background_job("CARGO_DENY", Duration::from_secs(40 * 60));
    let deny = std::env::var("KINDRED_CARGO_DENY")
        .expect("KINDRED_CARGO_DENY (cargo-deny's path; ./dev test sets it)");
    Command::new(deny)
        .arg("--offline")
        .arg("--manifest-path")
        .arg(repo_root().join("Cargo.toml"))
        .arg("--config")
        .arg(config)
        .arg("check")
        .args(checks)
        .output()
        .expect("run cargo-deny")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
#[ignore = "needs cargo-deny: run ./dev test"]
fn the_locked_dependencies_meet_the_licence_source_and_ban_policy() {
    let out = cargo_deny(
        &repo_root().join("deny.toml"),
        &["licenses", "sources", "bans"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("bans ok, licenses ok, sources ok"),
        "{}",
        text(&out)
    );
}

#[test]
#[ignore = "needs cargo-deny: run ./dev test"]
fn the_policy_has_teeth_a_licence_dropped_from_the_allow_list_fails_the_check() {
    // Given the policy without Unicode-3.0 (the licence of the ICU crates under `url`),
    let policy = std::fs::read_to_string(repo_root().join("deny.toml")).unwrap();
    let narrowed = policy.replace("  \"Unicode-3.0\",\n", "");
    assert_ne!(
        narrowed, policy,
        "deny.toml no longer allows Unicode-3.0 on its own line"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deny.toml");
    std::fs::write(&config, narrowed).unwrap();
    // when the licences are checked, then the check fails and names the licence.
    let out = cargo_deny(&config, &["licenses"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Unicode-3.0"), "{}", text(&out));
}

#[test]
fn every_exception_in_the_policy_gives_its_reason() {
    // Each ignored advisory carries a `reason`, and each licence exception a comment.
    let policy = std::fs::read_to_string(repo_root().join("deny.toml")).unwrap();
    let lines: Vec<&str> = policy.lines().collect();
    let mut exceptions = 0;
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        if line.starts_with("{ id = ") {
            exceptions += 1;
            assert!(line.contains("reason = \""), "no reason: {line}");
        }
        if line.starts_with("{ allow = ") {
            exceptions += 1;
            assert!(
                i > 0 && lines[i - 1].trim().starts_with('#'),
                "no comment above: {line}"
            );
        }
    }
    assert!(exceptions >= 3, "found {exceptions} exceptions");
}

/// Whether `text` holds something shaped like an AWS access key id (`AKIA` or `ASIA` and
/// 16 upper-case letters or digits) or a PEM private key.
fn looks_like_a_secret(text: &str) -> Option<String> {
    if let Some(i) = text.find("PRIVATE KEY-----") {
        return Some(text[i.saturating_sub(30)..i + 16].to_owned());
    }
    let bytes = text.as_bytes();
    for i in 0..bytes.len().saturating_sub(19) {
        let word = &bytes[i..i + 20];
        let key_like = (word.starts_with(b"AKIA") || word.starts_with(b"ASIA"))
            && word[4..]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
            && bytes.get(i + 20).is_none_or(|b| !b.is_ascii_alphanumeric());
        if key_like {
            return Some(String::from_utf8_lossy(word).into_owned());
        }
    }
    None
}

#[test]
fn no_credentials_or_private_keys_are_committed() {
    // The scanner finds what it looks for,
    assert!(looks_like_a_secret("id = AKIAIOSFODNN7EXAMPLE\n").is_some());
    assert!(looks_like_a_secret("-----BEGIN RSA PRIVATE KEY-----").is_some());
    assert!(looks_like_a_secret("AWS_ACCESS_KEY_ID=test").is_none());
    // and no tracked text file holds either (tests use LocalStack's test/test only).
    let root = repo_root();
    let listed = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["ls-files", "-z"])
        .output()
        .expect("git ls-files");
    assert!(listed.status.success());
    let mut scanned = 0;
    for name in listed.stdout.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name);
        if name.starts_with("fuzz/seeds/") || name.starts_with("fuzz/regressions/") {
            continue; // machine-made inputs
        }
        let Ok(text) = std::fs::read_to_string(root.join(name.as_ref())) else {
            continue; // binary or removed in the work tree
        };
        scanned += 1;
        if let Some(found) = looks_like_a_secret(&text) {
            // This very file spells the patterns out for the checks above.
            assert_eq!(name, "tests/tests/supply_chain.rs", "{name}: {found}");
        }
    }
    assert!(scanned > 50, "scanned only {scanned} files");
}
