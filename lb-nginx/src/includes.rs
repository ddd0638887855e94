//! The servers of the upstream file's `upstream` blocks together with
//! those of the files the blocks `include`, found as nginx finds them.
//!
//! nginx reads `include PATH;` inside an upstream block as if the file's
//! text stood there (`ngx_conf_include`): a relative `PATH` is under the
//! directory of the main configuration file (`cycle->conf_prefix`), and a
//! path with `*`, `?` or `[` is a glob(3) pattern expanded in sorted order,
//! where a pattern matching nothing includes nothing.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use lb_core::MemberRef;

use crate::config::{Include, Server, UpstreamBody, UpstreamFile};
use crate::error::NgxError;

/// One file read: the upstream file (always the first), or a file
/// included inside one of its upstream blocks.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// The path as the configuration names it (for messages).
    pub path: PathBuf,
    /// The file itself, symlinks resolved: what a write locks and replaces
    /// (renaming over a symlink would replace the link).
    pub real: PathBuf,
    /// Its bytes as read.
    pub bytes: Vec<u8>,
    /// When it was last written.
    pub modified: Option<SystemTime>,
    /// The upstream whose block includes it, and where: the including
    /// file (an index into [`Tree::files`]) and the line of the `include`.
    /// `None` for the upstream file.
    pub included: Option<(String, usize, usize)>,
}

/// A `server` line of an upstream, in the file that holds it: what
/// `members()` reports, and where the line is ([`Tree::server`] finds the
/// directive again to edit it).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The upstream (pool) it is in.
    pub pool: String,
    /// The file that holds it (an index into [`Tree::files`]).
    pub file: usize,
    /// Where its `server` keyword starts in that file's bytes.
    start: usize,
    /// Its line in that file.
    pub line: usize,
    /// The address as written.
    pub address: String,
    /// Whether it has the `down` parameter.
    pub down: bool,
    /// Whether it has the `drain` parameter.
    pub drain: bool,
    /// Its `weight=` (`None`: nginx's default, 1).
    pub weight: Option<u32>,
}

impl Entry {
    pub(crate) fn new(pool: &str, file: usize, s: &Server<'_>) -> Entry {
        Entry {
            pool: pool.to_owned(),
            file,
            start: s.start(),
            line: s.line(),
            address: s.address().to_owned(),
            down: s.has("down"),
            drain: s.has("drain"),
            weight: s.weight(),
        }
    }
}

/// The upstream file and every file its upstream blocks include.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    /// The files read: the upstream file first, then the included ones
    /// (a file included twice is read twice).
    pub files: Vec<Source>,
    /// Every upstream block of the upstream file: its name and line.
    upstreams: Vec<(String, usize)>,
    /// Every server of every upstream: the upstream file's, then those of
    /// the included files.
    pub servers: Vec<Entry>,
}

/// An `include` to follow: the pool, the including file, its line and the
/// path as written.
type Pending = (String, usize, usize, String);

impl Tree {
    /// Reads `upstream_file` and, recursively, every file included inside
    /// its upstream blocks; relative include paths are under `conf_prefix`.
    ///
    /// # Errors
    ///
    /// A file that cannot be read (`Io`, naming it and the `include` that
    /// names it), text nginx would refuse (`Parse`, naming the file and
    /// the line), a file that includes itself (`Config`).
    pub(crate) fn read(upstream_file: &Path, conf_prefix: &Path) -> Result<Tree, NgxError> {
        let real = fs::canonicalize(upstream_file)
            .map_err(|e| NgxError::io(format!("cannot read {}", upstream_file.display()), e))?;
        let mut tree = Tree {
            files: Vec::new(),
            upstreams: Vec::new(),
            servers: Vec::new(),
        };
        let bytes = read(upstream_file, &real, String::new)?;
        let includes = tree.add_main(upstream_file, real.clone(), bytes)?;
        let mut chain = vec![real];
        for (pool, from, line, path) in includes {
            tree.follow(&pool, from, line, &path, conf_prefix, &mut chain)?;
        }
        Ok(tree)
    }

    /// Adds the upstream file; returns its includes.
    fn add_main(
        &mut self,
        path: &Path,
        real: PathBuf,
        bytes: Vec<u8>,
    ) -> Result<Vec<Pending>, NgxError> {
        let parts = main_parts(&bytes).map_err(|err| NgxError::Parse {
            file: path.to_owned(),
            err,
        })?;
        self.servers.extend(parts.servers);
        self.upstreams = parts.upstreams;
        self.files.push(Source {
            path: path.to_owned(),
            modified: modified(&real),
            real,
            bytes,
            included: None,
        });
        Ok(parts.includes)
    }

    /// Reads what `include PATH` (line `line` of file `from`, inside
    /// upstream `pool`) names, and what those files include in turn.
    /// `chain` holds the files being read, to catch a loop.
    fn follow(
        &mut self,
        pool: &str,
        from: usize,
        line: usize,
        path: &str,
        conf_prefix: &Path,
        chain: &mut Vec<PathBuf>,
    ) -> Result<(), NgxError> {
        let at_text = format!(
            "upstream {pool}: include {path} ({})",
            self.place(from, line)
        );
        let at = || at_text.clone();
        let full = std::path::absolute(conf_prefix.join(path))
            .map_err(|e| NgxError::io(format!("{}: cannot resolve the path", at()), e))?;
        let files = if is_glob(full.as_os_str().as_bytes()) {
            expand(&full).map_err(|(dir, e)| {
                NgxError::io(
                    format!("{}: cannot read the directory {}", at(), dir.display()),
                    e,
                )
            })?
        } else {
            vec![full]
        };
        for file in files {
            let real = fs::canonicalize(&file).map_err(|e| {
                NgxError::io(format!("{}: cannot read {}", at(), file.display()), e)
            })?;
            if chain.contains(&real) {
                let mut names: Vec<String> =
                    chain.iter().map(|p| p.display().to_string()).collect();
                names.push(real.display().to_string());
                return Err(NgxError::Config(format!(
                    "{}: {} includes itself ({}); nginx would loop on it",
                    at(),
                    file.display(),
                    names.join(" → ")
                )));
            }
            let bytes = read(&file, &real, at)?;
            let index = self.files.len();
            let body = UpstreamBody::parse(&bytes).map_err(|err| NgxError::Parse {
                file: file.clone(),
                err,
            })?;
            self.servers
                .extend(body.servers().iter().map(|s| Entry::new(pool, index, s)));
            let nested = pending(pool, index, body.includes());
            drop(body);
            self.files.push(Source {
                path: file,
                modified: modified(&real),
                real: real.clone(),
                bytes,
                included: Some((pool.to_owned(), from, line)),
            });
            chain.push(real);
            for (pool, from, line, path) in nested {
                self.follow(&pool, from, line, &path, conf_prefix, chain)?;
            }
            chain.pop();
        }
        Ok(())
    }

    /// The servers file `index` would hold with `bytes` instead: how an
    /// edit of one of its server lines reads.
    ///
    /// # Errors
    ///
    /// When the bytes do not parse.
    pub(crate) fn reparse(&self, index: usize, bytes: &[u8]) -> Result<Vec<Entry>, NgxError> {
        let src = &self.files[index];
        match &src.included {
            None => main_parts(bytes).map(|parts| parts.servers),
            Some((pool, ..)) => UpstreamBody::parse(bytes).map(|b| {
                b.servers()
                    .iter()
                    .map(|s| Entry::new(pool, index, s))
                    .collect()
            }),
        }
        .map_err(|err| NgxError::Parse {
            file: src.path.clone(),
            err,
        })
    }

    /// The directive of `entry` in `bytes` (the bytes of its file as read).
    pub(crate) fn server<'b>(&self, entry: &Entry, bytes: &'b [u8]) -> Option<Server<'b>> {
        let at =
            |servers: &[Server<'b>]| servers.iter().find(|s| s.start() == entry.start).cloned();
        match self.files[entry.file].included {
            None => {
                let f = UpstreamFile::parse(bytes).ok()?;
                f.upstreams().iter().find_map(|u| at(u.servers()))
            }
            Some(_) => at(UpstreamBody::parse(bytes).ok()?.servers()),
        }
    }

    /// Where line `line` of file `index` is, for messages.
    pub(crate) fn place(&self, index: usize, line: usize) -> String {
        format!("{} line {line}", self.files[index].path.display())
    }

    /// The one server `m` names, with the file that holds it.
    ///
    /// # Errors
    ///
    /// `NotFound` when its upstream or its server is missing,
    /// `Unsupported` when there is not exactly one (an upstream defined
    /// twice, an address listed twice), or when the file holding it is
    /// included in more than one place (an edit would change them all).
    pub(crate) fn find(&self, m: &MemberRef) -> Result<&Entry, NgxError> {
        let main = self.files[0].path.display();
        let blocks: Vec<usize> = self
            .upstreams
            .iter()
            .filter(|(name, _)| *name == m.pool)
            .map(|(_, line)| *line)
            .collect();
        match blocks.len() {
            0 => {
                return Err(NgxError::NotFound(format!(
                    "pool {} not found: {main} has no upstream {} (member {m})",
                    m.pool, m.pool
                )));
            }
            1 => {}
            _ => {
                return Err(NgxError::Unsupported(format!(
                    "upstream {} is defined more than once in {main} (lines {blocks:?}); cannot change {m}",
                    m.pool
                )));
            }
        }
        let found: Vec<&Entry> = self
            .servers
            .iter()
            .filter(|e| e.pool == m.pool && e.address == m.member)
            .collect();
        let entry = match found.as_slice() {
            [] => {
                let also = if self.files.len() > 1 {
                    " (with the files it includes)"
                } else {
                    ""
                };
                return Err(NgxError::NotFound(format!(
                    "member {m} not found: upstream {} in {main}{also} has no server {}",
                    m.pool, m.member
                )));
            }
            [one] => *one,
            many => {
                let at: Vec<String> = many.iter().map(|e| self.place(e.file, e.line)).collect();
                return Err(NgxError::Unsupported(format!(
                    "server {} appears more than once in upstream {} ({}); cannot tell which is {m}",
                    m.member,
                    m.pool,
                    at.join(", ")
                )));
            }
        };
        let real = &self.files[entry.file].real;
        let shared: Vec<String> = self
            .files
            .iter()
            .filter(|f| f.real == *real)
            .filter_map(|f| f.included.as_ref())
            .map(|(pool, from, line)| format!("upstream {pool} at {}", self.place(*from, *line)))
            .collect();
        if shared.len() > 1 {
            return Err(NgxError::Unsupported(format!(
                "cannot change {m}: {} is included in more than one place ({}), and an edit would change them all",
                real.display(),
                shared.join(", ")
            )));
        }
        Ok(entry)
    }

    /// When the most recently written file of the tree was written.
    pub(crate) fn last_written(&self) -> Option<SystemTime> {
        self.files.iter().filter_map(|f| f.modified).max()
    }
}

/// What an upstream file holds.
struct Parts {
    servers: Vec<Entry>,
    upstreams: Vec<(String, usize)>,
    includes: Vec<Pending>,
}

/// The servers, the upstream blocks and the includes of an upstream file.
fn main_parts(bytes: &[u8]) -> Result<Parts, crate::config::ParseError> {
    let file = UpstreamFile::parse(bytes)?;
    let mut servers = Vec::new();
    let mut includes = Vec::new();
    for u in file.upstreams() {
        servers.extend(u.servers().iter().map(|s| Entry::new(u.name(), 0, s)));
        includes.extend(pending(u.name(), 0, u.includes()));
    }
    let upstreams = file
        .upstreams()
        .iter()
        .map(|u| (u.name().to_owned(), u.line()))
        .collect();
    Ok(Parts {
        servers,
        upstreams,
        includes,
    })
}

fn pending(pool: &str, from: usize, includes: &[Include<'_>]) -> Vec<Pending> {
    includes
        .iter()
        .map(|i| (pool.to_owned(), from, i.line(), i.path().to_owned()))
        .collect()
}

fn read(path: &Path, real: &Path, at: impl Fn() -> String) -> Result<Vec<u8>, NgxError> {
    fs::read(real).map_err(|e| {
        let at = at();
        let at = if at.is_empty() { at } else { at + ": " };
        NgxError::io(format!("{at}cannot read {}", path.display()), e)
    })
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Whether nginx reads the path as a glob pattern (`strpbrk(…, "*?[")`).
fn is_glob(p: &[u8]) -> bool {
    p.iter().any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// The paths that match the absolute `pattern`, as glob(3) with no flags
/// finds them (what nginx calls): sorted byte-wise (nginx runs in the C
/// locale), `\` escaping the next character, and a name starting with `.`
/// matched only by a pattern starting with `.`. One difference: a
/// directory that exists and cannot be read is an error (glob(3) skips
/// it), since nginx, often running as another user, may read servers
/// there that would then be missed.
///
/// # Errors
///
/// The directory that could not be read, with why.
pub(crate) fn expand(pattern: &Path) -> Result<Vec<PathBuf>, (PathBuf, io::Error)> {
    let parts: Vec<&[u8]> = pattern
        .as_os_str()
        .as_bytes()
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    let mut found = vec![PathBuf::from("/")];
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mut next = Vec::new();
        if !is_glob(part) {
            let name = std::ffi::OsStr::from_bytes(&unescape(part)).to_owned();
            for dir in found {
                let p = dir.join(&name);
                if fs::symlink_metadata(&p).is_ok() {
                    next.push(p);
                }
            }
        } else {
            for dir in found {
                let entries = match fs::read_dir(&dir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) if e.raw_os_error() == Some(nix::libc::ENOTDIR) => continue,
                    Err(e) => return Err((dir, e)),
                };
                for entry in entries {
                    let entry = entry.map_err(|e| (dir.clone(), e))?;
                    let name = entry.file_name();
                    if matches(part, name.as_bytes()) {
                        let p = dir.join(&name);
                        if last || p.is_dir() {
                            next.push(p);
                        }
                    }
                }
            }
        }
        found = next;
    }
    found.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    Ok(found)
}

/// A pattern component without its escapes.
fn unescape(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'\\' && i + 1 < p.len() {
            i += 1;
        }
        out.push(p[i]);
        i += 1;
    }
    out
}

/// Whether file name `name` matches pattern component `p` (fnmatch(3)
/// with `FNM_PERIOD`, as glob(3) uses it).
fn matches(p: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && p.first() != Some(&b'.') {
        return false;
    }
    glob_match(p, name)
}

fn glob_match(p: &[u8], n: &[u8]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some(b'*') => (0..=n.len()).any(|i| glob_match(&p[1..], &n[i..])),
        Some(b'?') => !n.is_empty() && glob_match(&p[1..], &n[1..]),
        Some(b'[') => match (n.first(), class(&p[1..])) {
            (Some(c), Some((set, rest))) => set(*c) && glob_match(rest, &n[1..]),
            (None, _) => false,
            // No closing `]`: a literal `[`.
            (Some(c), None) => *c == b'[' && glob_match(&p[1..], &n[1..]),
        },
        Some(b'\\') if p.len() > 1 => n.first() == Some(&p[1]) && glob_match(&p[2..], &n[1..]),
        Some(c) => n.first() == Some(c) && glob_match(&p[1..], &n[1..]),
    }
}

/// A bracket expression (after its `[`): what it matches, and the pattern
/// after its `]`; `None` when it has no closing `]`.
fn class(p: &[u8]) -> Option<(impl Fn(u8) -> bool + '_, &[u8])> {
    let (negated, start) = match p.first() {
        Some(b'!' | b'^') => (true, 1),
        _ => (false, 0),
    };
    // A `]` right after the `[` (or `[!`) is a member, not the end.
    let end = start + 1 + p.get(start + 1..)?.iter().position(|b| *b == b']')?;
    let body = &p[start..end];
    let set = move |c: u8| {
        let mut hit = false;
        let mut i = 0;
        while i < body.len() {
            if i + 2 < body.len() && body[i + 1] == b'-' {
                hit |= (body[i]..=body[i + 2]).contains(&c);
                i += 3;
            } else {
                hit |= body[i] == c;
                i += 1;
            }
        }
        hit != negated
    };
    Some((set, &p[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_fnmatch() {
        for (p, n, want) in [
            ("*.conf", "web.conf", true),
            ("*.conf", ".web.conf", false),
            (".*.conf", ".web.conf", true),
            ("*.conf", ".app.conf.ABC123.lbctl-tmp", false),
            ("web-0?.conf", "web-02.conf", true),
            ("web-0?.conf", "web-002.conf", false),
            ("web-[0-2].conf", "web-2.conf", true),
            ("web-[!0-2].conf", "web-2.conf", false),
            ("web-[^0-2].conf", "web-3.conf", true),
            ("[]a].conf", "].conf", true),
            ("web-[.conf", "web-[.conf", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("*", "", true),
        ] {
            assert_eq!(matches(p.as_bytes(), n.as_bytes()), want, "{p} ~ {n}");
        }
    }

    #[test]
    fn expands_in_sorted_order_across_directories() {
        let d = tempfile::tempdir().unwrap();
        for f in ["a/x.conf", "a-b/x.conf", "a/y.conf", "a/.x.conf", "b/x.txt"] {
            let p = d.path().join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, "").unwrap();
        }
        let got: Vec<String> = expand(&d.path().join("*/*.conf"))
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(d.path()).unwrap().display().to_string())
            .collect();
        // Sorted as whole paths, as glob(3) does: `-` sorts before `/`.
        assert_eq!(got, ["a-b/x.conf", "a/x.conf", "a/y.conf"]);
        assert!(expand(&d.path().join("none/*.conf")).unwrap().is_empty());
        assert!(expand(&d.path().join("a/*.none")).unwrap().is_empty());
    }
}
