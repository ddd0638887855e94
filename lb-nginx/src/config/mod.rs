//! Reading and editing nginx configuration text.
//!
//! A tokenizer that follows nginx's own (`ngx_conf_read_token`): words
//! separated by whitespace, `#` comments where a word could start, single-
//! and double-quoted strings, backslash escapes, `${var}` inside words, and
//! `;`, `{`, `}` ending directives and blocks. On top of it,
//! [`UpstreamFile::parse`] finds every `upstream NAME { … }` block and each
//! `server ADDRESS [params];` in it, remembering where every word sits in the
//! bytes, so an [`Edit`] changes one parameter of one directive and leaves
//! every other byte of the file (comments, tabs, blank lines, order, other
//! blocks, unknown parameters) as it was.
//!
//! ```
//! use lb_nginx::config::UpstreamFile;
//!
//! let src = b"upstream app {\n    server 10.0.0.1:80 weight=5;  # main\n    server 10.0.0.2:80;\n}\n";
//! let file = UpstreamFile::parse(src).unwrap();
//! let server = file.find("app", "10.0.0.2:80").unwrap();
//! let drained = server.set_flag(src, "down", true).apply(src);
//! assert_eq!(
//!     String::from_utf8(drained.clone()).unwrap(),
//!     "upstream app {\n    server 10.0.0.1:80 weight=5;  # main\n    server 10.0.0.2:80 down;\n}\n"
//! );
//! // Taking the flag away again gives back the original bytes.
//! let file = UpstreamFile::parse(&drained).unwrap();
//! let server = file.find("app", "10.0.0.2:80").unwrap();
//! assert_eq!(server.set_flag(&drained, "down", false).apply(&drained), src);
//! ```

use std::ops::Range;

mod lexer;

pub use lexer::{Directive, ParseError, Word};
use lexer::{Event, Lexer, Lines};

/// Every directive of the main context (outside any block), in order.
/// Used to find the `error_log` of a main configuration file.
///
/// # Errors
///
/// When the text is not valid nginx syntax.
pub fn main_context(src: &[u8]) -> Result<Vec<Directive<'_>>, ParseError> {
    let mut lx = Lexer { src, pos: 0 };
    let mut depth = 0usize;
    let mut out = Vec::new();
    while let Some(ev) = lx.next_event()? {
        match ev {
            Event::Directive(d) if d.block => depth += 1,
            Event::Directive(d) => {
                if depth == 0 {
                    out.push(d);
                }
            }
            Event::BlockEnd(at) => {
                if depth == 0 {
                    return lx.error(at, "unexpected \"}\"");
                }
                depth -= 1;
            }
        }
    }
    if depth > 0 {
        return lx.error(src.len(), "unexpected end of file, expecting \"}\"");
    }
    Ok(out)
}

/// One `server` directive inside an upstream block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server<'a> {
    line: usize,
    /// `server`, the address, then the parameters.
    words: Vec<Word<'a>>,
}

/// One `include PATH;` directive inside an upstream block: its servers
/// are in the files `PATH` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include<'a> {
    line: usize,
    path: Word<'a>,
}

impl Include<'_> {
    /// The path as written (quotes removed): a file, or a glob pattern.
    pub fn path(&self) -> &str {
        &self.path.value
    }

    /// The line of the `include` directive.
    pub fn line(&self) -> usize {
        self.line
    }
}

/// One `upstream NAME { … }` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream<'a> {
    line: usize,
    name: Word<'a>,
    servers: Vec<Server<'a>>,
    includes: Vec<Include<'a>>,
}

impl<'a> Upstream<'a> {
    /// The upstream's name (the pool).
    pub fn name(&self) -> &str {
        &self.name.value
    }

    /// The line of its `upstream` directive.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Its `server` directives, in file order.
    pub fn servers(&self) -> &[Server<'a>] {
        &self.servers
    }

    /// Its `include` directives, in file order (the servers of the files
    /// they name are not in [`Upstream::servers`]).
    pub fn includes(&self) -> &[Include<'a>] {
        &self.includes
    }
}

/// The directives of a file included inside an upstream block, which
/// nginx reads as the block's own: see [`UpstreamBody::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamBody<'a> {
    servers: Vec<Server<'a>>,
    includes: Vec<Include<'a>>,
}

impl<'a> UpstreamBody<'a> {
    /// Parses the text of a file included inside an upstream block
    /// (`server …;` lines, `include`s of its own, other upstream
    /// directives), as nginx does: a `}` it did not open is an error.
    ///
    /// ```
    /// use lb_nginx::config::UpstreamBody;
    ///
    /// let body = UpstreamBody::parse(b"server 10.0.0.2:80;  # web-02\ninclude more/*.conf;\n").unwrap();
    /// assert_eq!(body.servers()[0].address(), "10.0.0.2:80");
    /// assert_eq!(body.includes()[0].path(), "more/*.conf");
    /// assert!(UpstreamBody::parse(b"server 10.0.0.2:80;\n}\n").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// As [`UpstreamFile::parse`].
    pub fn parse(src: &'a [u8]) -> Result<UpstreamBody<'a>, ParseError> {
        let mut ups = parse_upstreams(src, true)?;
        let body = ups.swap_remove(0);
        Ok(UpstreamBody {
            servers: body.servers,
            includes: body.includes,
        })
    }

    /// Its `server` directives, in file order.
    pub fn servers(&self) -> &[Server<'a>] {
        &self.servers
    }

    /// Its `include` directives, in file order.
    pub fn includes(&self) -> &[Include<'a>] {
        &self.includes
    }
}

/// Why [`UpstreamFile::find`] found no single server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// No upstream of that name.
    NoUpstream,
    /// The upstream is defined more than once (at these lines).
    DuplicateUpstream(Vec<usize>),
    /// The upstream has no server with that address.
    NoServer,
    /// The upstream lists the address more than once (at these lines).
    DuplicateServer(Vec<usize>),
}

/// The upstream blocks of a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamFile<'a> {
    upstreams: Vec<Upstream<'a>>,
}

impl<'a> UpstreamFile<'a> {
    /// Parses `src`, at any nesting depth (a bare upstream file, or a
    /// whole `nginx.conf` with `http { upstream … }`).
    ///
    /// # Errors
    ///
    /// When the text is not valid nginx syntax (unbalanced braces, a
    /// directive without `;`, an unterminated quote, …), or an `upstream`
    /// or `server` directive has no name or address.
    pub fn parse(src: &'a [u8]) -> Result<UpstreamFile<'a>, ParseError> {
        Ok(UpstreamFile {
            upstreams: parse_upstreams(src, false)?,
        })
    }

    /// Every upstream block, in file order.
    pub fn upstreams(&self) -> &[Upstream<'a>] {
        &self.upstreams
    }

    /// The one server with `address` in the one upstream named `pool`.
    ///
    /// # Errors
    ///
    /// A [`Lookup`] saying why there is not exactly one.
    pub fn find(&self, pool: &str, address: &str) -> Result<&Server<'a>, Lookup> {
        let mut ups = self.upstreams.iter().filter(|u| u.name.value == pool);
        let up = match (ups.next(), ups.next()) {
            (None, _) => return Err(Lookup::NoUpstream),
            (Some(u), None) => u,
            (Some(_), Some(_)) => {
                return Err(Lookup::DuplicateUpstream(
                    self.upstreams
                        .iter()
                        .filter(|u| u.name.value == pool)
                        .map(|u| u.line)
                        .collect(),
                ));
            }
        };
        let found: Vec<&Server<'a>> = up
            .servers
            .iter()
            .filter(|s| s.address() == address)
            .collect();
        match found.as_slice() {
            [] => Err(Lookup::NoServer),
            [one] => Ok(one),
            many => Err(Lookup::DuplicateServer(
                many.iter().map(|s| s.line).collect(),
            )),
        }
    }
}

/// Every upstream block of `src`; with `body`, `src` is the inside of
/// one (a file included there), returned as the first, nameless, block.
fn parse_upstreams<'a>(src: &'a [u8], body: bool) -> Result<Vec<Upstream<'a>>, ParseError> {
    enum Ctx {
        Upstream(usize),
        Other,
    }
    let mut lx = Lexer { src, pos: 0 };
    let mut lines = Lines {
        src,
        pos: 0,
        line: 1,
    };
    let mut stack: Vec<Ctx> = Vec::new();
    let mut upstreams: Vec<Upstream<'a>> = Vec::new();
    if body {
        upstreams.push(Upstream {
            line: 1,
            name: Word {
                value: "".into(),
                span: 0..0,
            },
            servers: Vec::new(),
            includes: Vec::new(),
        });
        stack.push(Ctx::Upstream(0));
    }
    // The contexts the text is read in, which a `}` cannot close.
    let outer = stack.len();
    while let Some(ev) = lx.next_event()? {
        match ev {
            Event::Directive(d) => {
                let start = d.words[0].span.start;
                let in_upstream = match stack.last() {
                    Some(Ctx::Upstream(i)) => Some(*i),
                    _ => None,
                };
                if d.block {
                    if d.words[0].value == "upstream" && in_upstream.is_none() {
                        if d.words.len() != 2 {
                            return lx.error(
                                start,
                                "invalid number of arguments in \"upstream\" directive",
                            );
                        }
                        let mut words = d.words;
                        upstreams.push(Upstream {
                            line: lines.at(start),
                            name: words.swap_remove(1),
                            servers: Vec::new(),
                            includes: Vec::new(),
                        });
                        stack.push(Ctx::Upstream(upstreams.len() - 1));
                    } else {
                        stack.push(Ctx::Other);
                    }
                } else if let Some(i) = in_upstream
                    && d.words[0].value == "server"
                {
                    if d.words.len() < 2 {
                        return lx
                            .error(start, "invalid number of arguments in \"server\" directive");
                    }
                    upstreams[i].servers.push(Server {
                        line: lines.at(start),
                        words: d.words,
                    });
                } else if let Some(i) = in_upstream
                    && d.words[0].value == "include"
                {
                    if d.words.len() != 2 {
                        return lx.error(
                            start,
                            "invalid number of arguments in \"include\" directive",
                        );
                    }
                    let mut words = d.words;
                    upstreams[i].includes.push(Include {
                        line: lines.at(start),
                        path: words.swap_remove(1),
                    });
                }
            }
            Event::BlockEnd(at) => {
                if stack.len() == outer {
                    return lx.error(at, "unexpected \"}\"");
                }
                stack.pop();
            }
        }
    }
    if stack.len() != outer {
        return lx.error(src.len(), "unexpected end of file, expecting \"}\"");
    }
    Ok(upstreams)
}

/// One replacement of a byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Splice {
    range: Range<usize>,
    text: String,
}

/// A set of changes to a file's bytes, made by [`Server::set_flag`] and
/// [`Server::set_weight`]. Empty when nothing has to change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[must_use]
pub struct Edit {
    splices: Vec<Splice>,
}

impl Edit {
    /// Whether the edit changes nothing.
    pub fn is_empty(&self) -> bool {
        self.splices.is_empty()
    }

    /// Both edits (made against the same source, on the same or different
    /// servers).
    pub fn and(mut self, other: Edit) -> Edit {
        self.splices.extend(other.splices);
        self
    }

    /// The source with the edit applied. Every byte outside the changed
    /// ranges is copied as it was.
    pub fn apply(&self, src: &[u8]) -> Vec<u8> {
        let mut splices: Vec<&Splice> = self.splices.iter().collect();
        splices.sort_by_key(|s| (s.range.start, s.range.end));
        let extra: usize = splices.iter().map(|s| s.text.len()).sum();
        let mut out = Vec::with_capacity(src.len() + extra);
        let mut cursor = 0;
        for s in splices {
            if s.range.start < cursor || s.range.end > src.len() {
                // Overlapping edits are never built; keep the source rather
                // than guess.
                debug_assert!(false, "overlapping or out-of-range splice {s:?}");
                continue;
            }
            out.extend_from_slice(&src[cursor..s.range.start]);
            out.extend_from_slice(s.text.as_bytes());
            cursor = s.range.end;
        }
        out.extend_from_slice(&src[cursor..]);
        out
    }
}

impl Server<'_> {
    fn param_words(&self) -> &[Word<'_>] {
        &self.words[2..]
    }

    /// The server's address as written (quotes removed), e.g.
    /// `10.0.0.1:8080`, `backend.example:80`, `unix:/run/app.sock`.
    pub fn address(&self) -> &str {
        &self.words[1].value
    }

    /// The line of its `server` directive.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Its parameters after the address, as nginx reads them.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.param_words().iter().map(|w| w.value.as_ref())
    }

    /// Whether a bare parameter (`down`, `drain`, `backup`, …) is present.
    pub fn has(&self, flag: &str) -> bool {
        self.param_words().iter().any(|w| w.value == flag)
    }

    /// The `weight=N` parameter (the last one, as nginx reads it), or
    /// `None` when there is none (nginx's default is 1) or it is not a
    /// number.
    pub fn weight(&self) -> Option<u32> {
        self.param_words()
            .iter()
            .rev()
            .find_map(|w| w.value.strip_prefix("weight="))
            .and_then(|v| v.parse().ok())
    }

    /// The end of the word before parameter `i`.
    fn end_before(&self, i: usize) -> usize {
        if i == 0 {
            self.words[1].span.end
        } else {
            self.param_words()[i - 1].span.end
        }
    }

    /// Removes parameter `i` together with the blanks that separate it
    /// from the word before it (when only spaces and tabs do), so that
    /// removing what [`Server::set_flag`] inserted restores the bytes.
    fn remove(&self, src: &[u8], i: usize) -> Splice {
        let w = &self.param_words()[i];
        let prev = self.end_before(i);
        let gap = &src[prev..w.span.start];
        let start = if gap.iter().all(|b| *b == b' ' || *b == b'\t') {
            prev
        } else {
            let mut s = w.span.start;
            while s > prev && matches!(src[s - 1], b' ' | b'\t') {
                s -= 1;
            }
            s
        };
        Splice {
            range: start..w.span.end,
            text: String::new(),
        }
    }

    /// Adds the bare parameter `flag` (after the last word of the
    /// directive, as ` flag`) or removes every occurrence of it. Empty
    /// when the server already is so.
    pub fn set_flag(&self, src: &[u8], flag: &str, on: bool) -> Edit {
        let has = self.has(flag);
        let mut e = Edit::default();
        if on && !has {
            let end = self.end_before(self.param_words().len());
            e.splices.push(Splice {
                range: end..end,
                text: format!(" {flag}"),
            });
        } else if !on && has {
            for (i, w) in self.param_words().iter().enumerate() {
                if w.value == flag {
                    e.splices.push(self.remove(src, i));
                }
            }
        }
        e
    }

    /// Sets `weight=N`: replaces the existing parameter, or inserts
    /// ` weight=N` right after the address. Weight 1, nginx's default,
    /// removes the parameter instead. Empty when the weight already is
    /// `weight`.
    pub fn set_weight(&self, src: &[u8], weight: u32) -> Edit {
        let mut e = Edit::default();
        let found: Vec<usize> = self
            .param_words()
            .iter()
            .enumerate()
            .filter(|(_, w)| w.value.starts_with("weight="))
            .map(|(i, _)| i)
            .collect();
        let current = self.weight();
        let already = match found.len() {
            0 => weight == 1,
            1 => current == Some(weight),
            _ => false,
        };
        if already {
            return e;
        }
        if weight == 1 {
            for i in found {
                e.splices.push(self.remove(src, i));
            }
            return e;
        }
        match found.split_last() {
            None => {
                let end = self.words[1].span.end;
                e.splices.push(Splice {
                    range: end..end,
                    text: format!(" weight={weight}"),
                });
            }
            Some((last, others)) => {
                for i in others {
                    e.splices.push(self.remove(src, *i));
                }
                e.splices.push(Splice {
                    range: self.param_words()[*last].span.clone(),
                    text: format!("weight={weight}"),
                });
            }
        }
        e
    }

    /// The span of the `server` keyword (the directive's start).
    pub fn start(&self) -> usize {
        self.words[0].span.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(src: &str) -> Vec<Vec<String>> {
        let mut lx = Lexer {
            src: src.as_bytes(),
            pos: 0,
        };
        let mut out = Vec::new();
        while let Some(ev) = lx.next_event().unwrap() {
            match ev {
                Event::Directive(d) => {
                    let mut v: Vec<String> =
                        d.words.into_iter().map(|w| w.value.into_owned()).collect();
                    v.push(if d.block { "{".into() } else { ";".into() });
                    out.push(v);
                }
                Event::BlockEnd(_) => out.push(vec!["}".into()]),
            }
        }
        out
    }

    #[test]
    fn tokenizes_like_nginx() {
        assert_eq!(
            words("a b;\n# c d;\ne \"f g\" 'h;i' j#k;"),
            vec![vec!["a", "b", ";"], vec!["e", "f g", "h;i", "j#k", ";"]]
        );
        // `}` inside a word is part of it; `${x}` does not open a block.
        assert_eq!(
            words("set $a ${b}c;\nx y}z;"),
            vec![vec!["set", "$a", "${b}c", ";"], vec!["x", "y}z", ";"]]
        );
        // Escapes as nginx resolves them.
        assert_eq!(
            words(r#"a "q\"uote" b\;c 'x\'y' \t\z;"#),
            vec![vec!["a", "q\"uote", "b\\;c", "x'y", "\t\\z", ";"]]
        );
        assert_eq!(
            words("http {\n upstream u { server a; }\n}"),
            vec![
                vec!["http", "{"],
                vec!["upstream", "u", "{"],
                vec!["server", "a", ";"],
                vec!["}"],
                vec!["}"]
            ]
        );
    }

    #[test]
    fn refuses_what_nginx_refuses() {
        for (src, line, msg) in [
            ("a b", 1, "unexpected end of file"),
            ("a;\n;", 2, "unexpected \";\""),
            ("a {\n b;\n", 3, "expecting \"}\""),
            ("}", 1, "unexpected \"}\""),
            ("a \"b", 1, "quoted string"),
            ("a \"b\"c;", 1, "unexpected \"c\""),
            ("a b }", 1, "unexpected \"}\""),
            (
                "upstream {\n}",
                1,
                "invalid number of arguments in \"upstream\"",
            ),
            ("upstream u {\n server;\n}", 2, "\"server\""),
        ] {
            let e = UpstreamFile::parse(src.as_bytes()).unwrap_err();
            assert_eq!(e.line, line, "{src:?}: {e}");
            assert!(e.message.contains(msg), "{src:?}: {e}");
        }
    }

    const SAMPLE: &str = "# upstreams for the app; this comment says server 10.0.0.9:80;\n\
upstream app {\n\
\tzone app 64k;   # shared\n\
\tserver 10.0.0.1:80 weight=5 max_fails=3;\n\
\n\
\tserver \"10.0.0.2:80\"\t; # quoted\n\
\tserver 10.0.0.3:80 backup;\n\
}\n\
\n\
upstream other{server 10.0.0.1:80;keepalive 8;}\n";

    #[test]
    fn notes_the_includes_inside_upstream_blocks() {
        let src = b"include outside.conf;\nupstream app {\n  server 10.0.0.1:80;\n  include /etc/nginx/app.d/*.conf;\n}\n";
        let f = UpstreamFile::parse(src).unwrap();
        let inc = &f.upstreams()[0].includes()[0];
        assert_eq!((inc.path(), inc.line()), ("/etc/nginx/app.d/*.conf", 4));
        assert_eq!(f.upstreams()[0].servers().len(), 1);
    }

    #[test]
    fn an_included_body_is_read_as_the_inside_of_an_upstream() {
        let src = b"# web\nserver 10.0.0.2:80 weight=2;\nkeepalive 4;\ninclude \"more.conf\";\n";
        let b = UpstreamBody::parse(src).unwrap();
        assert_eq!(b.servers()[0].address(), "10.0.0.2:80");
        assert_eq!(b.servers()[0].line(), 2);
        assert_eq!(b.includes()[0].path(), "more.conf");
        for (src, line, msg) in [
            ("server 10.0.0.2:80;\n}\n", 2, "unexpected \"}\""),
            ("server 10.0.0.2:80\n", 2, "unexpected end of file"),
            ("\nserver;\n", 2, "\"server\""),
            ("include a b;\n", 1, "\"include\""),
        ] {
            let e = UpstreamBody::parse(src.as_bytes()).unwrap_err();
            assert_eq!(e.line, line, "{src:?}: {e}");
            assert!(e.message.contains(msg), "{src:?}: {e}");
        }
        let e = UpstreamFile::parse(b"upstream u {\n include;\n}").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn finds_upstreams_and_servers() {
        let f = UpstreamFile::parse(SAMPLE.as_bytes()).unwrap();
        let names: Vec<_> = f.upstreams().iter().map(|u| u.name()).collect();
        assert_eq!(names, ["app", "other"]);
        let app = &f.upstreams()[0];
        let addrs: Vec<_> = app.servers().iter().map(|s| s.address()).collect();
        assert_eq!(addrs, ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
        assert_eq!(app.servers()[0].line(), 4);
        assert_eq!(app.servers()[0].weight(), Some(5));
        assert_eq!(
            app.servers()[0].params().collect::<Vec<_>>(),
            ["weight=5", "max_fails=3"]
        );
        assert!(app.servers()[2].has("backup"));
        assert_eq!(f.find("other", "10.0.0.1:80").unwrap().line(), 10);
        assert_eq!(f.find("nope", "x"), Err(Lookup::NoUpstream));
        assert_eq!(f.find("app", "10.0.0.9:80"), Err(Lookup::NoServer));
    }

    fn edit(src: &str, pool: &str, addr: &str, f: impl Fn(&Server, &[u8]) -> Edit) -> String {
        let file = UpstreamFile::parse(src.as_bytes()).unwrap();
        let s = file.find(pool, addr).unwrap();
        String::from_utf8(f(s, src.as_bytes()).apply(src.as_bytes())).unwrap()
    }

    #[test]
    fn flags_touch_one_directive_and_round_trip() {
        let down = edit(SAMPLE, "app", "10.0.0.1:80", |s, b| {
            s.set_flag(b, "down", true)
        });
        assert_eq!(
            down,
            SAMPLE.replace("weight=5 max_fails=3;", "weight=5 max_fails=3 down;")
        );
        let quoted = edit(SAMPLE, "app", "10.0.0.2:80", |s, b| {
            s.set_flag(b, "down", true)
        });
        assert_eq!(
            quoted,
            SAMPLE.replace("\"10.0.0.2:80\"\t;", "\"10.0.0.2:80\" down\t;")
        );
        for (pool, addr) in [
            ("app", "10.0.0.1:80"),
            ("app", "10.0.0.2:80"),
            ("other", "10.0.0.1:80"),
        ] {
            let on = edit(SAMPLE, pool, addr, |s, b| s.set_flag(b, "down", true));
            assert_ne!(on, SAMPLE);
            let off = edit(&on, pool, addr, |s, b| s.set_flag(b, "down", false));
            assert_eq!(off, SAMPLE, "{pool}/{addr}");
            // Already so: nothing to do.
            let f = UpstreamFile::parse(on.as_bytes()).unwrap();
            assert!(
                f.find(pool, addr)
                    .unwrap()
                    .set_flag(on.as_bytes(), "down", true)
                    .is_empty()
            );
        }
    }

    #[test]
    fn removing_a_flag_the_operator_wrote_keeps_the_rest() {
        let src = "upstream u {\n  server a down weight=2;\n  server b\n     down;\n  server c down down;\n}\n";
        assert_eq!(
            edit(src, "u", "a", |s, b| s.set_flag(b, "down", false)),
            src.replace("a down weight=2", "a weight=2")
        );
        assert_eq!(
            edit(src, "u", "b", |s, b| s.set_flag(b, "down", false)),
            src.replace("b\n     down;", "b\n;")
        );
        assert_eq!(
            edit(src, "u", "c", |s, b| s.set_flag(b, "down", false)),
            src.replace("c down down;", "c;")
        );
    }

    #[test]
    fn weights_are_replaced_inserted_or_removed() {
        assert_eq!(
            edit(SAMPLE, "app", "10.0.0.1:80", |s, b| s.set_weight(b, 7)),
            SAMPLE.replace("weight=5", "weight=7")
        );
        let w = edit(SAMPLE, "app", "10.0.0.3:80", |s, b| s.set_weight(b, 7));
        assert_eq!(
            w,
            SAMPLE.replace("10.0.0.3:80 backup", "10.0.0.3:80 weight=7 backup")
        );
        assert_eq!(
            edit(&w, "app", "10.0.0.3:80", |s, b| s.set_weight(b, 1)),
            SAMPLE
        );
        let f = UpstreamFile::parse(SAMPLE.as_bytes()).unwrap();
        let s = f.find("app", "10.0.0.1:80").unwrap();
        assert!(s.set_weight(SAMPLE.as_bytes(), 5).is_empty());
        let s = f.find("app", "10.0.0.3:80").unwrap();
        assert!(s.set_weight(SAMPLE.as_bytes(), 1).is_empty());
        // Two weights: nginx reads the last; one is left.
        let src = "upstream u { server a weight=2 weight=3; }";
        assert_eq!(
            edit(src, "u", "a", |s, b| s.set_weight(b, 4)),
            "upstream u { server a weight=4; }"
        );
    }

    #[test]
    fn drain_and_down_swap_in_one_edit() {
        let src = "upstream u { server a weight=2 down; }";
        let out = edit(src, "u", "a", |s, b| {
            s.set_flag(b, "down", false)
                .and(s.set_flag(b, "drain", true))
        });
        assert_eq!(out, "upstream u { server a weight=2 drain; }");
    }

    #[test]
    fn duplicates_are_reported() {
        let src = "upstream u { server a; server a; }\nupstream v { server b; }\nupstream v { server c; }";
        let f = UpstreamFile::parse(src.as_bytes()).unwrap();
        assert!(matches!(f.find("u", "a"), Err(Lookup::DuplicateServer(l)) if l.len() == 2));
        assert!(matches!(f.find("v", "b"), Err(Lookup::DuplicateUpstream(l)) if l == [2, 3]));
    }

    #[test]
    fn main_context_skips_blocks() {
        let src = b"error_log /var/log/e.log;\nevents {}\nhttp { error_log x; }\npid /run/n.pid;";
        let d = main_context(src).unwrap();
        let names: Vec<_> = d.iter().map(|d| d.words[0].value().to_string()).collect();
        assert_eq!(names, ["error_log", "pid"]);
        assert_eq!(d[0].words[1].value(), "/var/log/e.log");
    }
}
