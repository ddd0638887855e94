use std::fmt::Write as _;

use super::*;
use crate::engine::{Coordination, FileBackend};

fn ts(days_ago: u64) -> String {
    (time::OffsetDateTime::now_utc() - Duration::from_secs(days_ago * 86_400))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn start(out: &mut String, id: &str, pid: u32, days_ago: u64, command: &str) {
    let t = ts(days_ago);
    writeln!(out, r#"{{"ts":"{t}","run":"{id}","event":"start","pid":{pid},"host":"elsewhere","user":"ops","command":"{command}"}}"#).unwrap();
}

fn end(out: &mut String, id: &str, days_ago: u64, status: &str) {
    let t = ts(days_ago);
    writeln!(
        out,
        r#"{{"ts":"{t}","run":"{id}","event":"end","status":"{status}"}}"#
    )
    .unwrap();
}

fn finished(out: &mut String, id: &str, days_ago: u64) {
    start(out, id, 1, days_ago, "drain node1");
    end(out, id, days_ago, "ok");
}

fn lines(text: &str) -> Vec<Option<Record>> {
    text.lines().map(|l| serde_json::from_str(l).ok()).collect()
}

/// The runs each fate gets, in order.
fn runs_of(text: &str, fates: &[Fate], want: Fate) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (l, f) in lines(text).iter().zip(fates) {
        if let (Some(r), true) = (l, *f == want)
            && !out.contains(&r.run)
        {
            out.push(r.run.clone());
        }
    }
    out
}

#[test]
fn finished_runs_go_and_open_alive_paused_and_recovered_ones_stay() {
    let mut j = String::new();
    finished(&mut j, "old", 60);
    finished(&mut j, "recent", 1);
    // No end: recover's.
    start(&mut j, "open", 2, 50, "drain node2");
    // Ended, but its process still writes (alive here).
    start(&mut j, "alive", 77, 50, "recover");
    end(&mut j, "alive", 50, "ok");
    // A rolling run that paused (ended interrupted), resuming an older
    // one that failed: `--resume` reads both; and an older run of
    // another plan that finished, then a newer one that finished.
    for (id, plan, resumes, status) in [
        ("r1", "/p.toml", None, "failed"),
        ("r2", "/p.toml", Some("r1"), "interrupted"),
        ("q1", "/q.toml", None, "ok"),
        ("q2", "/q.toml", None, "ok"),
    ] {
        start(&mut j, id, 3, 40, "rolling");
        let t = ts(40);
        let resumes = resumes.map_or(String::new(), |r| format!(r#","resumes":"{r}""#));
        writeln!(
            j,
            r#"{{"ts":"{t}","run":"{id}","event":"rolling","plan":"{plan}"{resumes}}}"#
        )
        .unwrap();
        end(&mut j, id, 40, status);
    }
    // A run closed by a recover that is still at work: both stay.
    start(&mut j, "cut", 4, 10, "drain node3");
    start(&mut j, "rec", 78, 9, "recover");
    writeln!(
        j,
        r#"{{"ts":"{}","run":"rec","event":"end","status":"recovered","recovered":"cut"}}"#,
        ts(9)
    )
    .unwrap();
    // A run closed by a finished recover: both go.
    start(&mut j, "cut2", 4, 8, "drain node3");
    start(&mut j, "rec2", 5, 8, "recover");
    writeln!(
        j,
        r#"{{"ts":"{}","run":"rec2","event":"end","status":"recovered","recovered":"cut2"}}"#,
        ts(8)
    )
    .unwrap();
    end(&mut j, "rec2", 8, "ok");
    j.push_str("{not a record\n");

    let (fates, done) = plan(
        &lines(&j),
        &Retention::default(),
        time::OffsetDateTime::now_utc(),
        &BTreeSet::new(),
        |pid, _| pid >= 77,
    );
    assert_eq!(
        runs_of(&j, &fates, Fate::Keep),
        ["open", "alive", "r1", "r2", "q2", "cut", "rec"]
    );
    assert_eq!(
        runs_of(&j, &fates, Fate::Archive),
        ["recent", "cut2", "rec2"]
    );
    assert_eq!(runs_of(&j, &fates, Fate::Drop), ["old", "q1"]);
    assert_eq!(*fates.last().unwrap(), Fate::Archive, "an unreadable line");
    assert_eq!(
        (done.kept, done.archived, done.dropped),
        (7, 3, 2),
        "{done:?}"
    );
}

#[test]
fn keep_runs_drops_the_oldest_finished_runs_and_zero_retention_all() {
    let mut j = String::new();
    for i in 0..5 {
        finished(&mut j, &format!("f{i}"), 1);
    }
    let now = time::OffsetDateTime::now_utc();
    let r = Retention::from_keys(None, Some(2));
    let (fates, _) = plan(&lines(&j), &r, now, &BTreeSet::new(), |_, _| false);
    assert_eq!(runs_of(&j, &fates, Fate::Archive), ["f3", "f4"]);
    let r = Retention::from_keys(Some(Duration::ZERO), None);
    let (fates, done) = plan(&lines(&j), &r, now, &BTreeSet::new(), |_, _| false);
    assert!(fates.iter().all(|f| *f == Fate::Drop), "{fates:?}");
    assert_eq!(done.dropped, 5);
}

fn live(dir: &Path) -> String {
    fs::read_to_string(dir.join("journal.jsonl")).unwrap()
}

async fn history_ids(b: &FileBackend) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for r in b.read_all().await.unwrap().records {
        if matches!(r.event, Event::Start { .. }) {
            ids.push(r.run);
        }
    }
    ids
}

#[tokio::test]
async fn a_crash_mid_compaction_loses_nothing_and_reads_each_run_once() {
    let mut j = String::new();
    for i in 0..4 {
        finished(&mut j, &format!("f{i}"), 1);
    }
    start(&mut j, "open", 2, 1, "drain node2");
    // The same state directory, compacted elsewhere: the archive file as
    // that compaction wrote it.
    let done = tempfile::tempdir().unwrap();
    fs::write(done.path().join("journal.jsonl"), &j).unwrap();
    let b = FileBackend::open(done.path()).unwrap();
    let c = b.compact().await.unwrap().unwrap();
    assert_eq!((c.archived, c.kept), (4, 1));
    let seg = segments(done.path()).pop().unwrap();

    // Crashed after renaming the archive file into place, before the new
    // live journal replaced the old one (which a half-written temporary
    // file stands next to).
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("journal.jsonl"), &j).unwrap();
    fs::create_dir(dir.path().join(ARCHIVE)).unwrap();
    fs::copy(
        &seg.path,
        dir.path().join(ARCHIVE).join(seg.path.file_name().unwrap()),
    )
    .unwrap();
    fs::write(dir.path().join("journal.jsonl.tmp"), "{\"ts\":\"half").unwrap();
    fs::write(dir.path().join(ARCHIVE).join("0000000002-1.jsonl.tmp"), "{").unwrap();

    let b = FileBackend::open(dir.path()).unwrap();
    // Nothing lost, nothing twice, nothing half-written read.
    assert_eq!(history_ids(&b).await, ["f0", "f1", "f2", "f3", "open"]);
    assert_eq!(b.read_all().await.unwrap().skipped, 0);
    assert_eq!(b.read().await.unwrap().records.len(), j.lines().count());

    // The next compaction finishes the job: the archived runs leave the
    // live journal without being archived twice.
    let c = b.compact().await.unwrap().unwrap();
    assert_eq!((c.archived, c.dropped, c.kept), (0, 0, 1), "{c:?}");
    assert!(!live(dir.path()).contains("\"f0\""), "{}", live(dir.path()));
    assert_eq!(history_ids(&b).await, ["f0", "f1", "f2", "f3", "open"]);
    assert_eq!(segments(dir.path()).len(), 1);
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .chain(fs::read_dir(dir.path().join(ARCHIVE)).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn appends_during_and_after_a_compaction_land_in_the_new_journal() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = String::new();
    for i in 0..3 {
        finished(&mut j, &format!("f{i}"), 1);
    }
    fs::write(dir.path().join("journal.jsonl"), &j).unwrap();
    // This process opened the journal before another compacted it.
    let writer = FileBackend::open(dir.path()).unwrap();
    let other = FileBackend::open(dir.path()).unwrap();
    other.compact().await.unwrap().unwrap();
    let rec: Record = serde_json::from_str(&format!(
        r#"{{"ts":"{}","run":"late","event":"start","pid":1,"host":"elsewhere","user":"ops","command":"drain node1"}}"#,
        ts(0)
    ))
    .unwrap();
    writer.append(&[rec], true).await.unwrap();
    assert!(
        live(dir.path()).contains("\"late\""),
        "{}",
        live(dir.path())
    );
    assert_eq!(history_ids(&other).await, ["f0", "f1", "f2", "late"]);
}

#[tokio::test]
async fn archive_files_past_the_retention_or_keep_runs_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let b = FileBackend::open(dir.path())
        .unwrap()
        .with_retention(Retention::from_keys(None, Some(3)));
    for round in 0..4 {
        let mut j = String::new();
        for i in 0..2 {
            finished(&mut j, &format!("f{round}-{i}"), 1);
        }
        fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("journal.jsonl"))
            .unwrap()
            .write_all(j.as_bytes())
            .unwrap();
        b.compact().await.unwrap().unwrap();
    }
    // Two runs a file: the newest two files hold the 3 newest runs.
    let segs: Vec<usize> = segments(dir.path()).iter().map(|s| s.runs).collect();
    assert_eq!(segs, [2, 2]);
    assert_eq!(history_ids(&b).await, ["f2-0", "f2-1", "f3-0", "f3-1"]);

    // A file written longer ago than the retention goes whole.
    let b = FileBackend::open(dir.path())
        .unwrap()
        .with_retention(Retention::from_keys(Some(Duration::from_secs(3600)), None));
    let old = segments(dir.path())[0].path.clone();
    File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    b.compact().await.unwrap().unwrap();
    assert!(!old.exists());
    assert_eq!(history_ids(&b).await, ["f3-0", "f3-1"]);
}
