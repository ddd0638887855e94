//! The gateway's JSON, read and changed as `serde_json::Value` so that every
//! property this code does not know is written back exactly as read.

use std::collections::HashMap;

use lb_core::{AdminState, Health, Member, MemberRef};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{AzureError, Result};

/// The prefix of the resource tags that record removed members:
/// `lbctl-removed:{pool}:{address}`.
pub(crate) const TAG_PREFIX: &str = "lbctl-removed:";
/// Azure's limit on a tag value, in characters.
const TAG_VALUE_MAX: usize = 256;
/// Azure's limit on a tag name, in characters.
const TAG_NAME_MAX: usize = 512;

/// The key (lower case) of a member across maps: (pool, address).
pub(crate) type Key = (String, String);

pub(crate) fn key(pool: &str, address: &str) -> Key {
    (pool.to_ascii_lowercase(), address.to_ascii_lowercase())
}

/// The address an entry of `backendAddresses` holds: a bare string, or
/// `{"ipAddress": …}` / `{"fqdn": …}`.
pub(crate) fn entry_address(e: &Value) -> Option<&str> {
    match e {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Object(o) => ["ipAddress", "fqdn"]
            .iter()
            .filter_map(|k| o.get(*k).and_then(Value::as_str))
            .find(|s| !s.is_empty()),
        _ => None,
    }
}

fn last_segment(id: &str) -> &str {
    id.trim_end_matches('/').rsplit('/').next().unwrap_or(id)
}

fn props(body: &Value) -> Option<&Map<String, Value>> {
    body.get("properties").and_then(Value::as_object)
}

fn array<'a>(body: &'a Value, name: &str) -> &'a [Value] {
    props(body)
        .and_then(|p| p.get(name))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn name_of(v: &Value) -> &str {
    v.get("name").and_then(Value::as_str).unwrap_or("")
}

/// The index of pool `name` in `backendAddressPools` (exact name first,
/// then without regard to case, as ARM names are).
fn pool_index(body: &Value, name: &str) -> Option<usize> {
    let pools = array(body, "backendAddressPools");
    pools.iter().position(|p| name_of(p) == name).or_else(|| {
        pools
            .iter()
            .position(|p| name_of(p).eq_ignore_ascii_case(name))
    })
}

fn pool_addresses(pool: &Value) -> &[Value] {
    pool.pointer("/properties/backendAddresses")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The gateway's resource tags.
fn tags(body: &Value) -> Option<&Map<String, Value>> {
    body.get("tags").and_then(Value::as_object)
}

/// A removal recorded in a tag.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Removal {
    /// The tag's name, as written.
    pub tag: String,
    pub pool: String,
    pub address: String,
    /// The entry exactly as it was in `backendAddresses`.
    pub entry: Value,
    /// Its position there.
    pub index: usize,
    /// When it was removed (ARM's clock).
    pub removed: OffsetDateTime,
}

fn parse_removal(tag: &str, value: &Value) -> std::result::Result<Removal, String> {
    let rest = tag
        .get(..TAG_PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(TAG_PREFIX))
        .map(|_| &tag[TAG_PREFIX.len()..])
        .ok_or("not an lbctl tag")?;
    let (pool, address) = rest.split_once(':').ok_or("the name lacks pool:address")?;
    let text = value.as_str().ok_or("the value is not a string")?;
    let v: Value = serde_json::from_str(text).map_err(|e| format!("the value is not JSON: {e}"))?;
    let entry = v.get("entry").cloned().ok_or("no entry")?;
    let recorded = entry_address(&entry).ok_or("the entry has no address")?;
    if !recorded.eq_ignore_ascii_case(address) {
        return Err(format!(
            "the entry holds {recorded}, the name says {address}"
        ));
    }
    let index = v.get("index").and_then(Value::as_u64).ok_or("no index")? as usize;
    let removed = v
        .get("removed")
        .and_then(Value::as_str)
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        .ok_or("no removal time")?;
    Ok(Removal {
        tag: tag.to_owned(),
        pool: pool.to_owned(),
        address: address.to_owned(),
        entry,
        index,
        removed,
    })
}

/// Every removal recorded on the gateway; unreadable lbctl tags are
/// reported in `warnings` and skipped.
pub(crate) fn removals(body: &Value, warnings: &mut Vec<String>) -> Vec<Removal> {
    let mut out = Vec::new();
    for (k, v) in tags(body).into_iter().flatten() {
        let ours = k
            .get(..TAG_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(TAG_PREFIX));
        if !ours {
            continue;
        }
        match parse_removal(k, v) {
            Ok(r) => out.push(r),
            Err(e) => warnings.push(format!("tag {k:?} cannot be read ({e}); it is ignored")),
        }
    }
    out
}

fn removal_for<'a>(removals: &'a [Removal], pool: &str, address: &str) -> Option<&'a Removal> {
    removals
        .iter()
        .find(|r| r.pool.eq_ignore_ascii_case(pool) && r.address.eq_ignore_ascii_case(address))
}

/// How long the gateway drains a member removed from a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Draining {
    /// No rule routes traffic to the pool.
    Unrouted,
    /// Connection draining is off on every HTTP setting paired with the
    /// pool (named): in-flight requests are cut on removal.
    Disabled(Vec<String>),
    /// The longest `drainTimeoutInSec` of the settings paired with the pool.
    Seconds(u64),
}

/// The (pool reference, settings reference) pairs the routing rules make:
/// `requestRoutingRules` (pool + `backendHttpSettings`), `urlPathMaps`
/// (defaults and each path rule) and layer-4 `routingRules` (pool +
/// `backendSettings`).
fn routing_pairs(body: &Value) -> Vec<(&str, &str)> {
    fn id<'a>(p: Option<&'a Value>, k: &str) -> Option<&'a str> {
        p?.get(k)?.get("id")?.as_str()
    }
    fn push<'a>(out: &mut Vec<(&'a str, &'a str)>, p: Option<&'a Value>, pk: &str, sk: &str) {
        if let (Some(a), Some(b)) = (id(p, pk), id(p, sk)) {
            out.push((a, b));
        }
    }
    let mut out = Vec::new();
    for r in array(body, "requestRoutingRules") {
        push(
            &mut out,
            r.get("properties"),
            "backendAddressPool",
            "backendHttpSettings",
        );
    }
    for r in array(body, "routingRules") {
        push(
            &mut out,
            r.get("properties"),
            "backendAddressPool",
            "backendSettings",
        );
    }
    for m in array(body, "urlPathMaps") {
        let p = m.get("properties");
        push(
            &mut out,
            p,
            "defaultBackendAddressPool",
            "defaultBackendHttpSettings",
        );
        for r in p
            .and_then(|p| p.get("pathRules"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            push(
                &mut out,
                r.get("properties"),
                "backendAddressPool",
                "backendHttpSettings",
            );
        }
    }
    out
}

fn same_ref(reference: &str, item: &Value) -> bool {
    match item.get("id").and_then(Value::as_str) {
        Some(id) => id.eq_ignore_ascii_case(reference),
        None => name_of(item).eq_ignore_ascii_case(last_segment(reference)),
    }
}

/// How the gateway drains members removed from pool `pool`.
pub(crate) fn draining(body: &Value, pool: &Value) -> Draining {
    let pairs = routing_pairs(body);
    let settings: Vec<&Value> = array(body, "backendHttpSettingsCollection")
        .iter()
        .chain(array(body, "backendSettingsCollection"))
        .collect();
    let mut routed = false;
    let mut longest: Option<u64> = None;
    let mut disabled = Vec::new();
    for (p, s) in pairs {
        if !same_ref(p, pool) {
            continue;
        }
        routed = true;
        let setting = settings.iter().find(|x| same_ref(s, x));
        let cd = setting.and_then(|x| x.pointer("/properties/connectionDraining"));
        let enabled = cd
            .and_then(|c| c.get("enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let secs = cd
            .and_then(|c| c.get("drainTimeoutInSec"))
            .and_then(Value::as_u64);
        match (enabled, secs) {
            (true, Some(n)) => longest = Some(longest.map_or(n, |l| l.max(n))),
            _ => {
                let n = last_segment(s).to_owned();
                if !disabled.contains(&n) {
                    disabled.push(n);
                }
            }
        }
    }
    match (routed, longest) {
        (false, _) => Draining::Unrouted,
        (true, Some(n)) => Draining::Seconds(n),
        (true, None) => Draining::Disabled(disabled),
    }
}

/// Per (pool, address): the health the backend-health API reports, from
/// `backendAddressPools[].backendHttpSettingsCollection[].servers[]`.
/// Several settings: `Up` when all say `Up`, `Down` when none says `Up`
/// and one says `Down`, otherwise `Unknown`. `Partial`, `Draining`,
/// `Unknown` and values Azure may add later read as `Unknown`.
pub(crate) fn health_map(h: &Value) -> HashMap<Key, Health> {
    let mut seen: HashMap<Key, Vec<Health>> = HashMap::new();
    for p in h
        .get("backendAddressPools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(pool) = p
            .pointer("/backendAddressPool/id")
            .and_then(Value::as_str)
            .map(last_segment)
        else {
            continue;
        };
        for s in p
            .get("backendHttpSettingsCollection")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for server in s
                .get("servers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(addr) = server.get("address").and_then(Value::as_str) else {
                    continue;
                };
                let health = match server.get("health").and_then(Value::as_str) {
                    Some(x) if x.eq_ignore_ascii_case("up") => Health::Up,
                    Some(x) if x.eq_ignore_ascii_case("down") => Health::Down,
                    _ => Health::Unknown,
                };
                seen.entry(key(pool, addr)).or_default().push(health);
            }
        }
    }
    seen.into_iter()
        .map(|(k, v)| {
            let h = if v.iter().all(|h| *h == Health::Up) {
                Health::Up
            } else if v.contains(&Health::Down) && !v.contains(&Health::Up) {
                Health::Down
            } else {
                Health::Unknown
            };
            (k, h)
        })
        .collect()
}

/// What [`members`] needs beside the gateway.
pub(crate) struct View<'a> {
    pub health: &'a HashMap<Key, Health>,
    /// ARM's clock now.
    pub now: OffsetDateTime,
    /// Removals this process made, by key: the recorded removal time and
    /// when the update finished (the timer runs from the later).
    pub finished: &'a HashMap<Key, (OffsetDateTime, OffsetDateTime)>,
}

/// Whether a member removed at `from` is drained at `now` under `d`.
/// ARM's clock counts whole seconds, so one second is added.
pub(crate) fn drained(d: &Draining, from: OffsetDateTime, now: OffsetDateTime) -> bool {
    match d {
        Draining::Unrouted | Draining::Disabled(_) => true,
        Draining::Seconds(n) => {
            let n = i64::try_from(*n).unwrap_or(i64::MAX / 2);
            now - from >= time::Duration::seconds(n + 1)
        }
    }
}

/// Every member of every pool: the addresses in the pools (`Ready`), then
/// the members removed by lbctl (`Maint`, with `active` = `Some(0)` once
/// drained, `None` before).
pub(crate) fn members(body: &Value, view: &View<'_>, warnings: &mut Vec<String>) -> Vec<Member> {
    let removed = removals(body, warnings);
    let pools = array(body, "backendAddressPools");
    let mut out = Vec::new();
    for pool in pools {
        let pname = name_of(pool);
        let mut listed: Vec<String> = Vec::new();
        for e in pool_addresses(pool) {
            let Some(addr) = entry_address(e) else {
                warnings.push(format!(
                    "pool {pname}: a backend address without ipAddress or fqdn is ignored: {e}"
                ));
                continue;
            };
            if listed.iter().any(|l| l.eq_ignore_ascii_case(addr)) {
                continue;
            }
            listed.push(addr.to_owned());
            out.push(Member {
                pool: pname.to_owned(),
                name: addr.to_owned(),
                address: addr.to_owned(),
                admin: AdminState::Ready,
                health: view
                    .health
                    .get(&key(pname, addr))
                    .copied()
                    .unwrap_or(Health::Unknown),
                active: None,
                weight: None,
            });
        }
        let mut gone: Vec<&Removal> = removed
            .iter()
            .filter(|r| r.pool.eq_ignore_ascii_case(pname))
            .filter(|r| !listed.iter().any(|l| l.eq_ignore_ascii_case(&r.address)))
            .collect();
        gone.sort_by_key(|r| r.index);
        let d = draining(body, pool);
        if let Draining::Disabled(settings) = &d
            && !gone.is_empty()
        {
            warnings.push(format!(
                "pool {pname}: connection draining is disabled on {}: removing a member cuts its requests in flight",
                settings.join(", ")
            ));
        }
        for r in gone {
            let mut from = r.removed;
            if let Some((recorded, done)) = view.finished.get(&key(pname, &r.address))
                && *recorded == r.removed
            {
                from = from.max(*done);
            }
            out.push(Member {
                pool: pname.to_owned(),
                name: r.address.clone(),
                address: r.address.clone(),
                admin: AdminState::Maint,
                health: Health::Unknown,
                active: drained(&d, from, view.now).then_some(0),
                weight: None,
            });
        }
    }
    for r in &removed {
        if pool_index(body, &r.pool).is_none() {
            warnings.push(format!(
                "tag {:?} records {} as removed from pool {}, which the gateway no longer has",
                r.tag, r.address, r.pool
            ));
        }
    }
    out
}

/// Where a member is now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Place {
    /// In the pool's addresses, at this index.
    InPool(usize),
    /// Removed by lbctl.
    Removed(Removal),
}

/// Finds `m` on the gateway.
///
/// # Errors
///
/// `PoolNotFound`, `MemberNotFound`.
pub(crate) fn locate(body: &Value, m: &MemberRef, gateway: &str) -> Result<Place> {
    let Some(pi) = pool_index(body, &m.pool) else {
        return Err(AzureError::PoolNotFound {
            pool: m.pool.clone(),
            gateway: gateway.to_owned(),
        });
    };
    let pool = &array(body, "backendAddressPools")[pi];
    if let Some(i) = pool_addresses(pool)
        .iter()
        .position(|e| entry_address(e).is_some_and(|a| a.eq_ignore_ascii_case(&m.member)))
    {
        return Ok(Place::InPool(i));
    }
    let removed = removals(body, &mut Vec::new());
    match removal_for(&removed, name_of(pool), &m.member) {
        Some(r) => Ok(Place::Removed(r.clone())),
        None => Err(AzureError::MemberNotFound {
            pool: m.pool.clone(),
            member: m.member.clone(),
        }),
    }
}

/// The state a member reads back as: `Ready` in the pool, `Maint` removed.
pub(crate) fn state_of(place: &Place) -> AdminState {
    match place {
        Place::InPool(_) => AdminState::Ready,
        Place::Removed(_) => AdminState::Maint,
    }
}

/// What a write must do.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Nothing: the member is already there.
    Already,
    /// PUT this body.
    Write(Value),
}

fn pool_mut<'a>(body: &'a mut Value, pool: &str) -> Option<&'a mut Value> {
    let i = pool_index(body, pool)?;
    body.get_mut("properties")?
        .get_mut("backendAddressPools")?
        .get_mut(i)
}

/// The body that puts `m` into `target`, changing only that pool's
/// `backendAddresses` and lbctl's tag for `m`; everything else is kept as
/// read. `now` is the removal time recorded.
///
/// # Errors
///
/// As [`locate`]; `Unsupported` when the tag would exceed Azure's limits.
pub(crate) fn plan(
    body: &Value,
    m: &MemberRef,
    target: AdminState,
    now: OffsetDateTime,
    gateway: &str,
) -> Result<Plan> {
    let place = locate(body, m, gateway)?;
    let out = target != AdminState::Ready;
    match (place, out) {
        (Place::InPool(_), false) | (Place::Removed(_), true) => Ok(Plan::Already),
        (Place::InPool(i), true) => {
            let mut new = body.clone();
            let pool = pool_mut(&mut new, &m.pool).ok_or_else(|| {
                AzureError::Protocol(format!("pool {} vanished while being edited", m.pool))
            })?;
            let pname = name_of(pool).to_owned();
            let addrs = pool
                .pointer_mut("/properties/backendAddresses")
                .and_then(Value::as_array_mut)
                .ok_or_else(|| AzureError::Protocol("the pool has no backendAddresses".into()))?;
            let entry = addrs.remove(i);
            let address = entry_address(&entry).unwrap_or(&m.member).to_owned();
            let when = now
                .replace_nanosecond(0)
                .unwrap_or(now)
                .format(&Rfc3339)
                .map_err(|e| AzureError::Protocol(format!("cannot format the time: {e}")))?;
            let value = json!({"entry": entry, "index": i, "removed": when}).to_string();
            let tag = format!("{TAG_PREFIX}{pname}:{address}");
            if value.chars().count() > TAG_VALUE_MAX || tag.chars().count() > TAG_NAME_MAX {
                return Err(AzureError::Unsupported(format!(
                    "the removal of {address} cannot be recorded: Azure tag values hold {TAG_VALUE_MAX} characters and this one needs {}",
                    value.chars().count()
                )));
            }
            if let Some(c) = tag.chars().find(|c| "<>%&\\?/".contains(*c)) {
                return Err(AzureError::Unsupported(format!(
                    "the removal of {address} cannot be recorded: Azure tag names cannot hold {c:?}"
                )));
            }
            let obj = new
                .as_object_mut()
                .ok_or_else(|| AzureError::Protocol("the gateway is not a JSON object".into()))?;
            let tags = obj
                .entry("tags")
                .or_insert_with(|| Value::Object(Map::new()));
            if tags.is_null() {
                *tags = Value::Object(Map::new());
            }
            let tags = tags.as_object_mut().ok_or_else(|| {
                AzureError::Protocol("the gateway's tags are not an object".into())
            })?;
            // A stale record of the same member (re-added by hand) is replaced.
            tags.retain(|k, _| !k.eq_ignore_ascii_case(&tag));
            tags.insert(tag, Value::String(value));
            Ok(Plan::Write(new))
        }
        (Place::Removed(r), false) => {
            let mut new = body.clone();
            let pool = pool_mut(&mut new, &m.pool).ok_or_else(|| {
                AzureError::Protocol(format!("pool {} vanished while being edited", m.pool))
            })?;
            let props = pool
                .as_object_mut()
                .ok_or_else(|| AzureError::Protocol("the pool is not a JSON object".into()))?
                .entry("properties")
                .or_insert_with(|| Value::Object(Map::new()));
            let addrs = props
                .as_object_mut()
                .ok_or_else(|| {
                    AzureError::Protocol("the pool's properties are not an object".into())
                })?
                .entry("backendAddresses")
                .or_insert_with(|| Value::Array(Vec::new()));
            let addrs = addrs
                .as_array_mut()
                .ok_or_else(|| AzureError::Protocol("backendAddresses is not an array".into()))?;
            let at = r.index.min(addrs.len());
            addrs.insert(at, r.entry.clone());
            if let Some(obj) = new.as_object_mut() {
                let empty = match obj.get_mut("tags").and_then(Value::as_object_mut) {
                    Some(tags) => {
                        tags.retain(|k, _| k != &r.tag);
                        tags.is_empty()
                    }
                    None => false,
                };
                if empty {
                    obj.remove("tags");
                }
            }
            Ok(Plan::Write(new))
        }
    }
}

/// The gateway's `provisioningState`.
pub(crate) fn provisioning(body: &Value) -> &str {
    body.pointer("/properties/provisioningState")
        .and_then(Value::as_str)
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw() -> Value {
        let pool_id = "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/applicationGateways/g/backendAddressPools/app";
        let set = |n: &str| {
            format!(
                "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/applicationGateways/g/backendHttpSettingsCollection/{n}"
            )
        };
        json!({
            "name": "g",
            "tags": {"owner": "ops"},
            "properties": {
                "backendAddressPools": [
                    {"name": "app", "id": pool_id, "properties": {"backendAddresses": [
                        {"ipAddress": "10.0.0.1"}, "10.0.0.2", {"fqdn": "b.example"}
                    ], "futureThing": 7}},
                    {"name": "idle", "properties": {"backendAddresses": []}}
                ],
                "backendHttpSettingsCollection": [
                    {"name": "s1", "id": set("s1"), "properties": {"connectionDraining": {"enabled": true, "drainTimeoutInSec": 60}}},
                    {"name": "s2", "id": set("s2"), "properties": {"connectionDraining": {"enabled": true, "drainTimeoutInSec": 120}}},
                    {"name": "s3", "id": set("s3"), "properties": {}}
                ],
                "requestRoutingRules": [
                    {"name": "r1", "properties": {"backendAddressPool": {"id": pool_id.to_uppercase()}, "backendHttpSettings": {"id": set("s1")}}}
                ],
                "urlPathMaps": [
                    {"name": "m", "properties": {"defaultBackendAddressPool": {"id": pool_id}, "defaultBackendHttpSettings": {"id": set("s3")},
                        "pathRules": [{"name": "p", "properties": {"backendAddressPool": {"id": pool_id}, "backendHttpSettings": {"id": set("s2")}}}]}}
                ]
            }
        })
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2025-07-01T12:00:00Z", &Rfc3339).unwrap()
    }

    #[test]
    fn draining_takes_the_longest_enabled_timeout_of_the_routed_settings() {
        let g = gw();
        let pools = array(&g, "backendAddressPools");
        assert_eq!(draining(&g, &pools[0]), Draining::Seconds(120));
        assert_eq!(draining(&g, &pools[1]), Draining::Unrouted);
        let mut off = g.clone();
        off["properties"]["urlPathMaps"] = json!([]);
        off["properties"]["backendHttpSettingsCollection"][0]["properties"]["connectionDraining"]
            ["enabled"] = json!(false);
        let pools = array(&off, "backendAddressPools");
        assert_eq!(
            draining(&off, &pools[0]),
            Draining::Disabled(vec!["s1".into()])
        );
    }

    #[test]
    fn the_timer_adds_a_second_for_arm_clock_resolution() {
        let d = Draining::Seconds(60);
        let t = now();
        assert!(!drained(&d, t, t + time::Duration::seconds(60)));
        assert!(drained(&d, t, t + time::Duration::seconds(61)));
        assert!(drained(&Draining::Disabled(vec![]), t, t));
        assert!(drained(&Draining::Unrouted, t, t));
    }

    #[test]
    fn removal_and_restore_round_trip_every_form() {
        let g = gw();
        for (member, index) in [
            ("10.0.0.1", 0),
            ("10.0.0.2", 1),
            ("b.example", 2),
            ("B.EXAMPLE", 2),
        ] {
            let m = MemberRef::new("app", member);
            let Plan::Write(out) = plan(&g, &m, AdminState::Drain, now(), "r/g").unwrap() else {
                panic!("a write")
            };
            assert_eq!(
                array(&out, "backendAddressPools")[0]["properties"]["backendAddresses"]
                    .as_array()
                    .unwrap()
                    .len(),
                2
            );
            assert_eq!(
                array(&out, "backendAddressPools")[0]["properties"]["futureThing"],
                7
            );
            let r = removals(&out, &mut Vec::new());
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].index, index);
            assert_eq!(r[0].removed, now());
            assert_eq!(out["tags"]["owner"], "ops");
            assert!(matches!(
                plan(&out, &m, AdminState::Maint, now(), "r/g").unwrap(),
                Plan::Already
            ));
            let Plan::Write(back) = plan(&out, &m, AdminState::Ready, now(), "r/g").unwrap() else {
                panic!("a write")
            };
            assert_eq!(
                back, g,
                "{member}: the identical entry at its place, the tag gone"
            );
        }
    }

    #[test]
    fn the_tags_object_goes_when_lbctl_created_it() {
        let mut g = gw();
        g.as_object_mut().unwrap().remove("tags");
        let m = MemberRef::new("app", "10.0.0.2");
        let Plan::Write(out) = plan(&g, &m, AdminState::Maint, now(), "r/g").unwrap() else {
            panic!()
        };
        assert_eq!(out["tags"].as_object().unwrap().len(), 1);
        let Plan::Write(back) = plan(&out, &m, AdminState::Ready, now(), "r/g").unwrap() else {
            panic!()
        };
        assert_eq!(back, g);
    }

    #[test]
    fn unknown_pools_and_members_are_named() {
        let g = gw();
        let e = plan(
            &g,
            &MemberRef::new("nope", "10.0.0.1"),
            AdminState::Drain,
            now(),
            "r/g",
        )
        .unwrap_err();
        assert!(matches!(e, AzureError::PoolNotFound { .. }), "{e}");
        assert!(e.to_string().contains("nope"));
        let e = plan(
            &g,
            &MemberRef::new("app", "10.9.9.9"),
            AdminState::Ready,
            now(),
            "r/g",
        )
        .unwrap_err();
        assert!(matches!(e, AzureError::MemberNotFound { .. }), "{e}");
        assert!(e.to_string().contains("10.9.9.9"));
    }

    #[test]
    fn members_lists_pools_then_removed_members_with_the_timer() {
        let g = gw();
        let m = MemberRef::new("app", "10.0.0.2");
        let Plan::Write(out) = plan(&g, &m, AdminState::Drain, now(), "r/g").unwrap() else {
            panic!()
        };
        let health = HashMap::from([(key("app", "10.0.0.1"), Health::Up)]);
        let finished = HashMap::new();
        let at = |secs| View {
            health: &health,
            now: now() + time::Duration::seconds(secs),
            finished: &finished,
        };
        let list = members(&out, &at(5), &mut Vec::new());
        let names: Vec<_> = list
            .iter()
            .map(|m| (m.name.as_str(), m.admin, m.active))
            .collect();
        assert_eq!(
            names,
            [
                ("10.0.0.1", AdminState::Ready, None),
                ("b.example", AdminState::Ready, None),
                ("10.0.0.2", AdminState::Maint, None),
            ]
        );
        assert_eq!(list[0].health, Health::Up);
        assert_eq!(list[1].health, Health::Unknown);
        let later = members(&out, &at(121), &mut Vec::new());
        assert_eq!(later[2].active, Some(0));
        // A local finish later than the recorded time delays the signal.
        let finished = HashMap::from([(
            key("app", "10.0.0.2"),
            (now(), now() + time::Duration::seconds(30)),
        )]);
        let v = View {
            health: &health,
            now: now() + time::Duration::seconds(121),
            finished: &finished,
        };
        assert_eq!(members(&out, &v, &mut Vec::new())[2].active, None);
    }

    #[test]
    fn health_combines_settings_and_reads_unknown_values_as_unknown() {
        let h = json!({"backendAddressPools": [{
        "backendAddressPool": {"id": "/x/backendaddressPools/App"},
        "backendHttpSettingsCollection": [
            {"servers": [{"address": "a", "health": "Up"}, {"address": "b", "health": "Down"}, {"address": "c", "health": "Up"}, {"address": "d", "health": "Partial"}, {"address": "e", "health": "Draining"}, {"address": "f", "health": "SomethingNew"}]},
            {"servers": [{"address": "a", "health": "Up"}, {"address": "b", "health": "Down"}, {"address": "c", "health": "Down"}]}
        ]}]});
        let m = health_map(&h);
        let get = |a: &str| m[&key("app", a)];
        assert_eq!(
            ["a", "b", "c", "d", "e", "f"].map(get),
            [
                Health::Up,
                Health::Down,
                Health::Unknown,
                Health::Unknown,
                Health::Unknown,
                Health::Unknown
            ]
        );
    }

    #[test]
    fn unreadable_tags_are_warned_about_and_ignored() {
        let mut g = gw();
        g["tags"]["lbctl-removed:app:10.0.0.9"] = json!("not json");
        let mut w = Vec::new();
        assert!(removals(&g, &mut w).is_empty());
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn a_too_long_address_is_refused_before_writing() {
        let mut g = gw();
        let long = format!("{}.example", "a".repeat(240));
        g["properties"]["backendAddressPools"][1]["properties"]["backendAddresses"] =
            json!([{"fqdn": long}]);
        let e = plan(
            &g,
            &MemberRef::new("idle", &long),
            AdminState::Drain,
            now(),
            "r/g",
        )
        .unwrap_err();
        assert!(matches!(e, AzureError::Unsupported(_)), "{e}");
    }
}
