//! The fuzz target's corpus (`fuzz/corpus/apache_xml/`) replayed on the
//! stable toolchain through the target's own entry point: no input
//! panics, and the real balancer-manager answers among them still parse.

#[test]
fn every_input_of_the_corpus_reads_without_panic() {
    let parsed = lb_lab::replay_fuzz_corpus("apache_xml", |b| {
        lb_apache::fuzzing::manager_xml(b).is_ok_and(|n| n > 0)
    });
    assert!(
        parsed > 0,
        "no input of the corpus parses as balancer-manager XML"
    );
}
