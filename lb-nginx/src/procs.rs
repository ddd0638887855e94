//! The nginx processes, as `/proc` shows them, and what `nginx -V` says.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::NgxError;

/// One child process of the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Child {
    pub pid: u32,
    /// Start time in clock ticks since boot: tells a reused PID apart.
    pub start: u64,
    /// The process title nginx set, e.g. `nginx: worker process`.
    pub title: String,
}

impl Child {
    /// A worker serving the current configuration.
    pub(crate) fn is_current_worker(&self) -> bool {
        self.title == "nginx: worker process"
    }

    /// A worker of an older configuration, finishing its requests.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.title.ends_with("is shutting down")
    }

    fn same(&self, other: &Child) -> bool {
        self.pid == other.pid && self.start == other.start
    }
}

/// `(state, ppid, starttime)` from `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(char, u32, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything.
    let rest = s.get(s.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split(' ').collect();
    // After the name: state(3) ppid(4) … starttime(22), here 0-based from 3.
    let state = f.first()?.chars().next()?;
    let ppid = f.get(1)?.parse().ok()?;
    let start = f.get(19)?.parse().ok()?;
    Some((state, ppid, start))
}

/// The process title: `/proc/PID/cmdline` up to its first NUL.
pub(crate) fn title(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    Some(String::from_utf8_lossy(&raw[..end]).trim_end().to_string())
}

/// The live children of `master`.
pub(crate) fn children(master: u32) -> Vec<Child> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some((state, ppid, start)) = stat(pid)
            && ppid == master
            && state != 'Z'
            && state != 'X'
            && let Some(title) = title(pid)
        {
            out.push(Child { pid, start, title });
        }
    }
    out.sort_by_key(|c| c.pid);
    out
}

/// Whether `c` was among `before`.
pub(crate) fn was_there(before: &[Child], c: &Child) -> bool {
    before.iter().any(|b| b.same(c))
}

/// The master's PID from `pid_file`, checked to be a live nginx master
/// (never signal a process that merely reused a stale PID).
pub(crate) fn master_pid(pid_file: &Path) -> Result<u32, NgxError> {
    let text = fs::read_to_string(pid_file).map_err(|e| {
        NgxError::NotRunning(format!(
            "nginx does not seem to run: cannot read its pid file {}: {e}",
            pid_file.display()
        ))
    })?;
    let pid: u32 = text.trim().parse().ok().filter(|p| *p > 1).ok_or_else(|| {
        NgxError::NotRunning(format!(
            "the pid file {} does not hold a PID: {:?}",
            pid_file.display(),
            text.trim()
        ))
    })?;
    match title(pid) {
        Some(t) if t.starts_with("nginx: master process") => Ok(pid),
        Some(t) => Err(NgxError::NotRunning(format!(
            "process {pid} (from {}) is not an nginx master: its title is {t:?}",
            pid_file.display()
        ))),
        None => Err(NgxError::NotRunning(format!(
            "nginx is not running: process {pid} from {} does not exist",
            pid_file.display()
        ))),
    }
}

/// What `nginx -V` reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct BuildInfo {
    /// `nginx/1.22.1` → `(1, 22, 1)`.
    pub version: (u32, u32, u32),
    /// `--prefix`.
    pub prefix: Option<PathBuf>,
    /// `--conf-path`.
    pub conf_path: Option<PathBuf>,
    /// `--error-log-path`.
    pub error_log_path: Option<PathBuf>,
}

impl BuildInfo {
    /// Parses the output of `nginx -V` (nginx writes it to stderr).
    pub(crate) fn parse(text: &str) -> Option<BuildInfo> {
        let v = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("nginx/"))?;
        let mut parts = v.split('.').map(|p| {
            p.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse::<u32>()
                .ok()
        });
        let version = (
            parts.next()??,
            parts.next().flatten().unwrap_or(0),
            parts.next().flatten().unwrap_or(0),
        );
        let arg = |name: &str| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(PathBuf::from)
        };
        Some(BuildInfo {
            version,
            prefix: arg("--prefix="),
            conf_path: arg("--conf-path="),
            error_log_path: arg("--error-log-path="),
        })
    }

    /// Whether this nginx knows the `drain` server parameter (1.29.6+).
    pub(crate) fn has_drain(&self) -> bool {
        self.version >= (1, 29, 6)
    }

    /// Whether `-e` (the start-up error log) is known (1.19.5+).
    pub(crate) fn has_e_flag(&self) -> bool {
        self.version >= (1, 19, 5)
    }
}

/// Follows an error log from its current end, returning the lines nginx's
/// master (`[level] PID#…`) writes at `[emerg]` or `[alert]`.
#[derive(Debug)]
pub(crate) struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl LogTail {
    /// Starts at the log's current end (`None` when it cannot be read).
    pub(crate) fn open(path: &Path) -> Option<LogTail> {
        let len = fs::metadata(path).ok()?.len();
        Some(LogTail {
            path: path.to_owned(),
            offset: len,
            partial: Vec::new(),
        })
    }

    /// The master's new `[emerg]`/`[alert]` lines, from `[level]` on;
    /// `grew` tells whether anything at all was appended.
    pub(crate) fn poll(&mut self, master: u32) -> (Vec<String>, bool) {
        let mut grew = false;
        let mut lines = Vec::new();
        let Ok(mut f) = fs::File::open(&self.path) else {
            return (lines, grew);
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            // Rotated or truncated: read the new file from its start.
            self.offset = 0;
            self.partial.clear();
        }
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return (lines, grew);
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() || buf.is_empty() {
            return (lines, grew);
        }
        grew = true;
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let tag = format!(" {master}#");
        while let Some(nl) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            for level in ["[emerg]", "[alert]"] {
                if let Some(i) = line.find(level)
                    && line[i..].contains(&tag)
                {
                    lines.push(line[i..].to_string());
                }
            }
        }
        (lines, grew)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nginx_v() {
        let b = BuildInfo::parse(
            "nginx version: nginx/1.22.1\nbuilt with OpenSSL 3.0.20\nconfigure arguments: --with-cc-opt='-g -O2' --prefix=/usr/share/nginx --conf-path=/etc/nginx/nginx.conf --error-log-path=/var/log/nginx/error.log --pid-path=/run/nginx.pid",
        )
        .unwrap();
        assert_eq!(b.version, (1, 22, 1));
        assert_eq!(b.prefix.as_deref(), Some(Path::new("/usr/share/nginx")));
        assert_eq!(
            b.conf_path.as_deref(),
            Some(Path::new("/etc/nginx/nginx.conf"))
        );
        assert_eq!(
            b.error_log_path.as_deref(),
            Some(Path::new("/var/log/nginx/error.log"))
        );
        assert!(!b.has_drain() && b.has_e_flag());
        let plus = BuildInfo::parse("nginx version: nginx/1.29.6 (nginx-plus-r36)").unwrap();
        assert!(plus.has_drain());
        assert!(
            !BuildInfo::parse("nginx version: nginx/1.29.5")
                .unwrap()
                .has_drain()
        );
        assert!(
            !BuildInfo::parse("nginx version: nginx/1.18.0")
                .unwrap()
                .has_e_flag()
        );
        assert!(
            BuildInfo::parse("nginx version: nginx/1.30")
                .unwrap()
                .has_drain()
        );
        assert_eq!(BuildInfo::parse("bash: nginx: not found"), None);
    }

    #[test]
    fn tails_the_masters_emergencies() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("error.log");
        fs::write(&p, "2026/01/01 00:00:00 [emerg] 10#10: old news\n").unwrap();
        let mut t = LogTail::open(&p).unwrap();
        assert_eq!(t.poll(10), (vec![], false));
        use std::io::Write;
        let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
        write!(
            f,
            "2026/01/01 00:00:01 [notice] 10#10: reconfiguring\n\
             2026/01/01 00:00:01 [emerg] 11#11: another process\n\
             2026/01/01 00:00:01 [emerg] 10#10: bind() failed\n2026/01/01 [emerg] 10#10: half"
        )
        .unwrap();
        let (lines, grew) = t.poll(10);
        assert!(grew);
        assert_eq!(lines, ["[emerg] 10#10: bind() failed"]);
        writeln!(f, " a line").unwrap();
        assert_eq!(t.poll(10).0, ["[emerg] 10#10: half a line"]);
    }

    #[test]
    fn sees_its_own_children() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        // Right after the exec the title can still be empty: look again.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let k = loop {
            let k = children(me).into_iter().find(|c| c.pid == child.id());
            if k.as_ref().is_some_and(|k| !k.title.is_empty())
                || std::time::Instant::now() > deadline
            {
                break k;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let _ = child.kill();
        let _ = child.wait();
        let k = k.expect("the child is listed");
        assert_eq!(k.title, "sleep");
        assert!(!k.is_current_worker() && !k.is_shutting_down());
        assert!(master_pid(Path::new("/nonexistent/nginx.pid")).is_err());
    }
}
