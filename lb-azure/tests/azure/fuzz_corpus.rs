//! The fuzz target's corpus (`fuzz/corpus/azure_arm/`) replayed on the
//! stable toolchain through the target's own entry point: no input
//! panics, and Azure's published gateways among them still list members.

#[test]
fn every_input_of_the_corpus_reads_without_panic() {
    let listed = lb_lab::replay_fuzz_corpus("azure_arm", |b| {
        lb_azure::fuzzing::gateway(b).is_ok_and(|m| !m.is_empty())
    });
    assert!(listed > 0, "no input of the corpus lists a member");
}
