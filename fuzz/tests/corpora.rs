//! Every committed fuzzing input (`fuzz/corpus/<target>/` and the crashes found and fixed,
//! `fuzz/regressions/<target>/`) runs through its harness on the stable toolchain, so a
//! regression of a fixed crash fails the ordinary test suite.

use std::path::Path;

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"));
    files.sort();
    files
}

#[test]
fn every_committed_corpus_and_regression_input_passes_its_harness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (target, harness) in kindred_fuzz::TARGETS {
        let corpus = inputs(&root.join("corpus").join(target));
        let regressions = inputs(&root.join("regressions").join(target));
        assert!(
            corpus.len() >= 5,
            "fuzz/corpus/{target} holds {} inputs: run ./dev fuzz to grow it",
            corpus.len()
        );
        for path in corpus.iter().chain(&regressions) {
            let data = std::fs::read(path).unwrap();
            let outcome = std::panic::catch_unwind(|| harness(&data));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
        }
        eprintln!(
            "{target}: {} corpus and {} regression inputs pass",
            corpus.len(),
            regressions.len()
        );
    }
}
