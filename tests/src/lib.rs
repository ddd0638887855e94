#![doc = include_str!("../README.md")]

mod apache;
pub mod app;
mod backend;
mod daemon;
pub mod fake_arm;
mod fake_plus;
mod haproxy;
pub mod http;
pub mod load;
mod moto;
mod nginx;
mod pools;
mod ports;
pub mod zdu;

pub use apache::{Apache, ApacheOptions};
pub use app::AppNodes;
pub use backend::Backend;
pub use daemon::{Daemon, find_binary, lab_binary, pids_in_group, port_is_open};
pub use fake_arm::{FakeArm, GetFault, PutFault};
pub use fake_plus::{FakePlus, FakePlusOptions, FakePlusRequest, FakePlusServer};
pub use haproxy::{Haproxy, HaproxyOptions};
pub use load::{Load, LoadOptions, LoadReport};
pub use moto::{AWS_TEST_ENV, MOTO_REGION, Moto, MotoTarget};
pub use nginx::{Nginx, NginxOptions};
pub use pools::{MemberSpec, PoolSpec, Pools};
pub use ports::{PortLease, lease_port};
pub use zdu::FakeZdu;
