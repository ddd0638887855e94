//! lb-azure against the lab's fake ARM: HTTPS, a client secret, Azure's
//! request and response shapes (see `lb_lab::FakeArm`).

mod common;

mod concurrency;
mod conformance;
mod errors;
mod failed;
mod forms;
mod fuzz_corpus;
mod health;
mod roundtrip;
mod secrets;
mod timer;
