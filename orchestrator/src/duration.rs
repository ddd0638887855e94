//! Durations as the inventory, plans and the CLI write them: lb-core's
//! [`lb_core::duration`], which the drivers read their settings with too.
//!
//! ```
//! use std::time::Duration;
//! use orchestrator::{format_duration, parse_duration};
//! assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
//! assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
//! assert!(parse_duration("5 minutes").is_err());
//! assert_eq!(format_duration(Duration::from_secs(300)), "5m");
//! ```

pub(crate) use lb_core::duration::serde_opt;
pub use lb_core::duration::{format_duration, parse_duration};
