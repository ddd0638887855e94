#![doc = include_str!("../README.md")]

pub mod config;
mod error;
mod fsio;
#[doc(hidden)]
pub mod fuzzing;
mod includes;
mod oss;
mod plus;
mod procs;
mod settings;

pub use oss::{DEFAULT_RELOAD_TIMEOUT, MAX_WEIGHT, Nginx, NginxBuilder};
pub use plus::{DEFAULT_REQUEST_TIMEOUT, NginxPlus, NginxPlusBuilder};
pub use settings::{NginxConfig, NginxPlusConfig};
