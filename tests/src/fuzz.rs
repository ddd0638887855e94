//! The fuzz targets' committed corpus (`fuzz/corpus/TARGET/`), for the
//! driver tests that replay it on the stable toolchain, without a fuzzer.

use std::path::{Path, PathBuf};

/// Every file of `fuzz/corpus/TARGET/`, sorted by name, with its bytes.
///
/// # Panics
///
/// When the folder is missing or empty: a replay of nothing would pass
/// without testing anything.
pub fn fuzz_corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
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
    files
        .into_iter()
        .map(|p| {
            let bytes =
                std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}
