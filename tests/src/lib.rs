#![doc = include_str!("../README.md")]

mod apache;
pub mod app;
mod backend;
mod daemon;
pub mod fake_arm;
mod fake_plus;
mod fuzz;
mod haproxy;
pub mod http;
pub mod load;
mod moto;
mod nginx;
mod pools;
mod ports;
mod prometheus;
mod webhook;
pub mod zdu;

pub use apache::{Apache, ApacheOptions};
pub use app::AppNodes;
pub use backend::Backend;
pub mod etcd;
pub use daemon::{Daemon, find_binary, lab_binary, pids_in_group, port_is_open};
pub use etcd::Etcd;
pub use fake_arm::{FakeArm, GetFault, PutFault};
pub use fake_plus::{FakePlus, FakePlusOptions, FakePlusRequest, FakePlusServer};
pub use fuzz::replay_fuzz_corpus;
pub use haproxy::{Haproxy, HaproxyOptions};
pub use load::{Load, LoadOptions, LoadReport};
pub use moto::{AWS_TEST_ENV, MOTO_REGION, Moto, MotoTarget};
pub use nginx::{Nginx, NginxOptions};
pub use pools::{MemberSpec, PoolSpec, Pools};
pub use ports::{PortLease, lease_port};
pub use prometheus::Prometheus;
pub use webhook::Webhook;
pub use zdu::FakeZdu;
