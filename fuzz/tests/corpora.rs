//! Every committed fuzzing input (the seeds, `fuzz/seeds/<target>/`, and the crashes
//! found and fixed, `fuzz/regressions/<target>/`) runs through its harness on the stable
//! toolchain, so a fixed panic that comes back fails the ordinary test suite. (An out-of-memory finding
//! does not fail here: without libFuzzer's malloc limit a huge zeroed allocation is lazy
//! and succeeds. Those get a unit test of their own, as in `kindred_core::codec`.)

use std::path::Path;

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"));
    files.sort();
    files
}

/// Most seed inputs committed per target, and most bytes in one seed: the seeds start
/// `./dev fuzz`, whose growing corpus lives outside the repository.
const MAX_SEEDS: usize = 64;
const MAX_SEED_BYTES: u64 = 16 * 1024;

#[test]
fn every_committed_seed_and_regression_input_passes_its_harness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (target, harness) in kindred_fuzz::TARGETS {
        let corpus = inputs(&root.join("seeds").join(target));
        let regressions = inputs(&root.join("regressions").join(target));
        assert!(
            (5..=MAX_SEEDS).contains(&corpus.len()),
            "fuzz/seeds/{target} holds {} inputs, not 5 to {MAX_SEEDS}",
            corpus.len()
        );
        for path in &corpus {
            let bytes = std::fs::metadata(path).unwrap().len();
            assert!(
                bytes <= MAX_SEED_BYTES,
                "{}: {bytes} bytes, over {MAX_SEED_BYTES}",
                path.display()
            );
        }
        for path in corpus.iter().chain(&regressions) {
            let data = std::fs::read(path).unwrap();
            let outcome = std::panic::catch_unwind(|| harness(&data));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
        }
        eprintln!(
            "{target}: {} seed and {} regression inputs pass",
            corpus.len(),
            regressions.len()
        );
    }
}

/// xorshift64*: a tiny seeded generator, so the mutations below are the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One libFuzzer-like mutation: flip bits, overwrite with an interesting byte, insert,
/// erase, truncate, or splice in part of another input.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        let last = data.len().saturating_sub(1);
        match rng.below(6) {
            0 if !data.is_empty() => data[at.min(last)] ^= 1 << rng.below(8),
            1 if !data.is_empty() => {
                const INTERESTING: [u8; 8] = [0, 1, 0x7f, 0x80, 0xfb, 0xfc, 0xfd, 0xff];
                data[at.min(last)] = INTERESTING[rng.below(8)];
            }
            2 => data.insert(at, rng.next() as u8),
            3 if at < data.len() => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            4 => data.truncate(at),
            _ if !other.is_empty() => {
                let from = rng.below(other.len());
                let end = (from + 1 + rng.below(64)).min(other.len());
                data.splice(at..at, other[from..end].iter().copied());
            }
            _ => {}
        }
    }
    data
}

#[test]
fn seeded_mutations_of_the_seeds_pass_their_harnesses() {
    // A brief fuzz on the stable toolchain: 2,000 seeded mutations per target of its
    // seed inputs (coverage-guided fuzzing is `./dev fuzz`).
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (t, (target, harness)) in kindred_fuzz::TARGETS.into_iter().enumerate() {
        let corpus: Vec<Vec<u8>> = inputs(&root.join("seeds").join(target))
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        assert!(!corpus.is_empty(), "{target}: no seeds");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ t as u64);
        for case in 0..2000 {
            let input = &corpus[rng.below(corpus.len())];
            let other = &corpus[rng.below(corpus.len())];
            let data = mutate(&mut rng, input, other);
            let outcome = std::panic::catch_unwind(|| harness(&data));
            assert!(
                outcome.is_ok(),
                "{target}: mutation {case} fails; input (hex): {}",
                data.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
        }
    }
}
