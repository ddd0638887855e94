//! The code paths the driver runs on what ARM answers, without a network,
//! for the fuzz targets in the workspace's `fuzz/` folder. Not part of the
//! API: hidden from the docs, and it may change with any release.

use std::collections::HashMap;

use lb_core::{AdminState, Member, MemberRef};
use time::OffsetDateTime;

use crate::arm::parse_json;
use crate::gateway::{self, Plan, View};

/// Reads `body` the way [`crate::AppGateway`] reads ARM's answers: as a
/// backend-health answer (`health_map`) and as the gateway itself
/// (`members`), then, for every member whose name is valid, plans taking
/// it out of its pool and putting it back (`set_state`), and lists the
/// members of each body that would be written.
///
/// # Errors
///
/// The driver's message when `body` is not JSON.
pub fn gateway(body: &[u8]) -> Result<Vec<Member>, String> {
    let value = parse_json("GET gateway", body).map_err(|e| e.to_string())?;
    let health = gateway::health_map(&value);
    // A fixed clock: the same input always takes the same path.
    let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let finished = HashMap::new();
    let view = View {
        health: &health,
        now,
        finished: &finished,
    };
    let mut warnings = Vec::new();
    let list = gateway::members(&value, &view, &mut warnings);
    for m in &list {
        let r = MemberRef::new(&m.pool, &m.name);
        if r.validate("fuzz").is_err() {
            continue;
        }
        for target in [AdminState::Maint, AdminState::Ready] {
            if let Ok(Plan::Write(new)) = gateway::plan(&value, &r, target, now, "fuzz") {
                let _ = gateway::locate(&new, &r, "fuzz");
                let _ = gateway::members(&new, &view, &mut warnings);
            }
        }
    }
    Ok(list)
}
