//! The fuzz target's corpus (`fuzz/corpus/nginx_conf/`) replayed on the
//! stable toolchain through the target's own entry point: no input
//! panics, every edit keeps its promises (the entry point checks them),
//! and the real configurations among them still parse.

#[test]
fn every_input_of_the_corpus_reads_and_edits_without_panic() {
    let parsed = lb_lab::replay_fuzz_corpus("nginx_conf", |b| {
        lb_nginx::fuzzing::upstream_file(b).is_ok_and(|n| n > 0)
    });
    assert!(parsed > 0, "no input of the corpus has an upstream server");
}
