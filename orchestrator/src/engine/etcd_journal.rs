//! The etcd journal kept small, as the file backend's ([`super::compact`]
//! decides which runs stay): under the prefix `P`,
//!
//! - `P/index`: the revision up to which runs were sorted (none yet: 0);
//! - `P/live/RUN`: a run that stays live (not finished, or a rolling
//!   plan's last run), written when runs are sorted;
//! - `P/done/SECS/RUN`: a finished run and when it ended (seconds since
//!   the epoch, zero-padded), for the retention to find the old ones
//!   without reading them.
//!
//! What `recover`, `--resume` and `watch` read ([`read_live`]) is the
//! live runs' records and every record created after `P/index`'s
//! revision (so runs an lbctl started since, of any release, are never
//! missed), never the finished runs sorted before. Sorting runs under the
//! lock once [`COMPACT_EVERY`] revisions went by since the last time
//! ([`compact`]): kept runs get their `live` key, then the index moves,
//! then finished runs lose theirs (and, past the retention, their
//! records); a crash in between leaves runs read twice, never lost.

use std::collections::{BTreeMap, BTreeSet};

use etcd_client::{
    Client, DeleteOptions, GetOptions, KeyValue, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};

use super::compact::{Compacted, Fate, Retention, plan};
use super::records::Record;

/// Revisions (journal records, claims, locks) between two sortings.
pub(crate) const COMPACT_EVERY: i64 = 4096;

/// Requests in one etcd transaction (etcd's default limit is 128).
const OPS: usize = 100;

type EtcdResult<T> = std::result::Result<T, etcd_client::Error>;

/// The key of `rest` under `prefix`.
fn key(prefix: &str, rest: &str) -> String {
    format!("{prefix}/{rest}")
}

/// The revision `P/index` holds (0: runs were never sorted).
pub(crate) fn index_of(kvs: &[KeyValue]) -> i64 {
    kvs.first()
        .and_then(|kv| kv.value_str().ok()?.parse().ok())
        .unwrap_or(0)
}

/// The get of `P/index`, to fold into another transaction.
pub(crate) fn get_index(prefix: &str) -> TxnOp {
    TxnOp::get(key(prefix, "index"), None)
}

/// What [`read_live`] found: the records' key-values in creation order,
/// the live runs, and the revision the read saw.
pub(crate) struct Live {
    pub kvs: Vec<KeyValue>,
    pub live: BTreeSet<String>,
    pub revision: i64,
}

fn gets(r: &etcd_client::TxnResponse) -> Vec<KeyValue> {
    r.op_responses()
        .into_iter()
        .flat_map(|op| match op {
            TxnOpResponse::Get(g) => g.kvs().to_vec(),
            _ => Vec::new(),
        })
        .collect()
}

/// The live runs' records and every record created since the index.
pub(crate) async fn read_live(client: &mut Client, prefix: &str) -> EtcdResult<Live> {
    let live_prefix = key(prefix, "live/");
    let r = client
        .txn(Txn::new().and_then([
            get_index(prefix),
            TxnOp::get(
                live_prefix.clone(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            ),
        ]))
        .await?;
    let ops = r.op_responses();
    let (index, live) = match ops.as_slice() {
        [TxnOpResponse::Get(i), TxnOpResponse::Get(l)] => (
            index_of(i.kvs()),
            l.kvs()
                .iter()
                .filter_map(|kv| Some(kv.key_str().ok()?[live_prefix.len()..].to_owned()))
                .collect::<BTreeSet<String>>(),
        ),
        _ => (0, BTreeSet::new()),
    };
    let journal = key(prefix, "journal/");
    let (since, revision) = get_paged(client, &journal, index + 1).await?;
    let mut kvs: BTreeMap<Vec<u8>, KeyValue> = since
        .into_iter()
        .map(|kv| (kv.key().to_vec(), kv))
        .collect();
    let ops: Vec<TxnOp> = live
        .iter()
        .map(|run| {
            TxnOp::get(
                format!("{journal}{run}/"),
                Some(GetOptions::new().with_prefix()),
            )
        })
        .collect();
    for chunk in ops.chunks(OPS) {
        let r = client.txn(Txn::new().and_then(chunk.to_vec())).await?;
        for kv in gets(&r) {
            kvs.insert(kv.key().to_vec(), kv);
        }
    }
    let mut kvs: Vec<KeyValue> = kvs.into_values().collect();
    kvs.sort_by_key(|kv| kv.create_revision());
    Ok(Live {
        kvs,
        live,
        revision,
    })
}

/// Keys a page: each page is one message, well under gRPC's 4 MiB.
const PAGE: i64 = 2000;

/// Every key under `prefix` created at revision `min_create` or later,
/// in creation order, a page at a time (all pages at the first one's
/// revision, which is returned).
pub(crate) async fn get_paged(
    client: &mut Client,
    prefix: &str,
    min_create: i64,
) -> EtcdResult<(Vec<KeyValue>, i64)> {
    // The end of the prefix: its last byte (`/`) plus one.
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let mut from = prefix.as_bytes().to_vec();
    let mut out = Vec::new();
    let mut revision = 0;
    loop {
        let mut opts = GetOptions::new()
            .with_range(end.clone())
            .with_limit(PAGE)
            .with_revision(revision);
        if min_create > 1 {
            opts = opts.with_min_create_revision(min_create);
        }
        let r = client.get(from.clone(), Some(opts)).await?;
        if revision == 0 {
            revision = r.header().map_or(0, |h| h.revision());
        }
        let more = r.more();
        let Some(last) = r.kvs().last() else {
            break;
        };
        from = last.key().to_vec();
        from.push(0);
        out.extend_from_slice(r.kvs());
        if !more {
            break;
        }
    }
    out.sort_by_key(|kv| kv.create_revision());
    Ok((out, revision))
}

/// Seconds since the epoch of an RFC 3339 time (0 when unreadable).
fn secs(ts: &str) -> i64 {
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .map_or(0, |t| t.unix_timestamp().max(0))
}

/// Sorts the runs [`read_live`] finds (call it under the lock): what stays
/// live keeps or gets its `live` key, the index moves to the read's
/// revision, finished runs lose their `live` key and get a `done` one, or
/// (past the retention) lose their records; then the `done` runs past the
/// retention or `keep_runs` lose theirs.
pub(crate) async fn compact(
    client: &mut Client,
    prefix: &str,
    retention: &Retention,
    alive: impl Fn(u32, &str) -> bool,
) -> EtcdResult<Compacted> {
    let live = read_live(client, prefix).await?;
    let records: Vec<Option<Record>> = live
        .kvs
        .iter()
        .map(|kv| serde_json::from_slice(kv.value()).ok())
        .collect();
    let now = time::OffsetDateTime::now_utc();
    let (fates, mut done) = plan(&records, retention, now, &BTreeSet::new(), alive);
    let mut fate: BTreeMap<&str, (Fate, &str)> = BTreeMap::new();
    for (r, f) in records.iter().zip(&fates) {
        if let Some(r) = r {
            fate.insert(&r.run, (*f, &r.ts));
        }
    }
    let journal = |run: &str| key(prefix, &format!("journal/{run}/"));
    let live_key = |run: &str| key(prefix, &format!("live/{run}"));
    // 1. What stays live is marked so.
    let keep: Vec<TxnOp> = fate
        .iter()
        .filter(|(run, (f, _))| *f == Fate::Keep && !live.live.contains(**run))
        .map(|(run, _)| TxnOp::put(live_key(run), "", None))
        .collect();
    run_all(client, keep).await?;
    // 2. The index moves: what was read is sorted.
    client
        .put(key(prefix, "index"), live.revision.to_string(), None)
        .await?;
    // 3. Finished runs leave the live set (and the journal, past the
    // retention).
    let mut ops = Vec::new();
    for (run, (f, ts)) in &fate {
        if *f == Fate::Keep {
            continue;
        }
        if live.live.contains(*run) {
            ops.push(TxnOp::delete(live_key(run), None));
        }
        match f {
            Fate::Archive => ops.push(TxnOp::put(
                key(prefix, &format!("done/{:012}/{run}", secs(ts))),
                "",
                None,
            )),
            _ => ops.push(TxnOp::delete(
                journal(run),
                Some(DeleteOptions::new().with_prefix()),
            )),
        }
    }
    run_all(client, ops).await?;
    done.dropped += prune(client, prefix, retention, now).await?;
    Ok(done)
}

async fn run_all(client: &mut Client, ops: Vec<TxnOp>) -> EtcdResult<()> {
    for chunk in ops.chunks(OPS) {
        client.txn(Txn::new().and_then(chunk.to_vec())).await?;
    }
    Ok(())
}

/// Deletes the finished runs that ended before the retention, and the
/// oldest beyond `keep_runs`; returns how many.
async fn prune(
    client: &mut Client,
    prefix: &str,
    retention: &Retention,
    now: time::OffsetDateTime,
) -> EtcdResult<usize> {
    let done = key(prefix, "done/");
    let cutoff = (now - retention.retention).unix_timestamp().max(0);
    let old = client
        .get(
            done.clone(),
            Some(
                GetOptions::new()
                    .with_range(format!("{done}{cutoff:012}"))
                    .with_keys_only(),
            ),
        )
        .await?;
    let mut gone: Vec<String> = old
        .kvs()
        .iter()
        .filter_map(|kv| kv.key_str().ok().map(str::to_owned))
        .collect();
    if let Some(n) = retention.keep_runs {
        let count = client
            .get(
                done.clone(),
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await?
            .count();
        let over = usize::try_from(count).unwrap_or(0).saturating_sub(n);
        if over > gone.len() {
            let oldest = client
                .get(
                    done.clone(),
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_keys_only()
                            .with_sort(SortTarget::Key, SortOrder::Ascend)
                            .with_limit(over as i64),
                    ),
                )
                .await?;
            gone = oldest
                .kvs()
                .iter()
                .filter_map(|kv| kv.key_str().ok().map(str::to_owned))
                .collect();
        }
    }
    let mut ops = Vec::new();
    for k in &gone {
        let Some(run) = k.rsplit('/').next() else {
            continue;
        };
        ops.push(TxnOp::delete(
            key(prefix, &format!("journal/{run}/")),
            Some(DeleteOptions::new().with_prefix()),
        ));
        ops.push(TxnOp::delete(k.as_str(), None));
    }
    run_all(client, ops).await?;
    Ok(gone.len())
}
