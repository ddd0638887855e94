//! The fuzz targets' corpus (`fuzz/corpus/haproxy_stat/`,
//! `fuzz/corpus/haproxy_state/`) replayed on the stable toolchain through
//! the targets' own entry points: no input panics, and the real HAProxy
//! answers among them still parse.

use lb_haproxy::fuzzing;

#[test]
fn every_show_stat_input_of_the_corpus_reads_without_panic() {
    let mut parsed = 0;
    for (path, bytes) in lb_lab::fuzz_corpus("haproxy_stat") {
        if fuzzing::show_stat(&bytes).is_ok_and(|rows| rows > 0) {
            parsed += 1;
        }
        eprintln!("{}: read", path.display());
    }
    assert!(parsed > 0, "no input of the corpus parses as show stat");
}

#[test]
fn every_show_servers_state_input_of_the_corpus_reads_without_panic() {
    let mut parsed = 0;
    for (path, bytes) in lb_lab::fuzz_corpus("haproxy_state") {
        if fuzzing::show_servers_state(&bytes).is_ok_and(|rows| rows > 0) {
            parsed += 1;
        }
        eprintln!("{}: read", path.display());
    }
    assert!(
        parsed > 0,
        "no input of the corpus parses as show servers state"
    );
}
