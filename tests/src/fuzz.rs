//! The fuzz targets' committed corpus (`fuzz/corpus/TARGET/`), replayed
//! by the drivers' tests on the stable toolchain, without a fuzzer.

use std::path::{Path, PathBuf};

/// Feeds every file of `fuzz/corpus/TARGET/` (sorted by name) to `entry`,
/// the target's entry point, naming each on stderr first (a panic shows
/// which input caused it). Returns how many inputs `entry` accepted.
///
/// # Panics
///
/// When the folder is missing or empty (a replay of nothing would pass
/// without testing anything), and wherever `entry` panics.
pub fn replay_fuzz_corpus(target: &str, mut entry: impl FnMut(&[u8]) -> bool) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list the corpus {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    let mut accepted = 0;
    for p in files {
        let bytes =
            std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
        eprintln!("{}", p.display());
        if entry(&bytes) {
            accepted += 1;
        }
    }
    accepted
}
