//! The fuzz targets' corpus (`fuzz/corpus/haproxy_stat/`,
//! `fuzz/corpus/haproxy_state/`) replayed on the stable toolchain through
//! the targets' own entry points: no input panics, and the real HAProxy
//! answers among them still parse.

use lb_haproxy::fuzzing;
use lb_lab::replay_fuzz_corpus;

#[test]
fn every_show_stat_input_of_the_corpus_reads_without_panic() {
    let parsed = replay_fuzz_corpus("haproxy_stat", |b| {
        fuzzing::show_stat(b).is_ok_and(|rows| rows > 0)
    });
    assert!(parsed > 0, "no input of the corpus parses as show stat");
}

#[test]
fn every_show_servers_state_input_of_the_corpus_reads_without_panic() {
    let parsed = replay_fuzz_corpus("haproxy_state", |b| {
        fuzzing::show_servers_state(b).is_ok_and(|rows| rows > 0)
    });
    assert!(
        parsed > 0,
        "no input of the corpus parses as show servers state"
    );
}
