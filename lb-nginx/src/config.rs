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

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

/// One word of the configuration: its value as nginx reads it (quotes
/// removed, escapes resolved) and the bytes it occupies in the source
/// (quotes included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word<'a> {
    value: Cow<'a, str>,
    span: Range<usize>,
}

impl Word<'_> {
    /// The value, as nginx reads it.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Where the word sits in the source, quotes included.
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }
}

/// Text nginx would refuse, with the line where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The line (1-based).
    pub line: usize,
    /// What is wrong, in nginx's words where nginx has them.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// One directive: its words, and whether it opens a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive<'a> {
    /// The directive's name and arguments.
    pub words: Vec<Word<'a>>,
    /// `true` when it ends with `{` (a block follows), `false` for `;`.
    pub block: bool,
}

enum Event<'a> {
    Directive(Directive<'a>),
    BlockEnd(usize),
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Resolves escapes as nginx does when it stores a word: `\"`, `\'`, `\\`
/// become the character, `\t`, `\r`, `\n` the control character, and any
/// other backslash stays.
fn unescape(raw: &[u8]) -> Cow<'_, str> {
    if !raw.contains(&b'\\') {
        return String::from_utf8_lossy(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && i + 1 < raw.len() {
            let c = match raw[i + 1] {
                b'"' | b'\'' | b'\\' => Some(raw[i + 1]),
                b't' => Some(b'\t'),
                b'r' => Some(b'\r'),
                b'n' => Some(b'\n'),
                _ => None,
            };
            if let Some(c) = c {
                out.push(c);
                i += 2;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

impl<'a> Lexer<'a> {
    fn error<T>(&self, at: usize, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line: line_of(self.src, at),
            message: message.into(),
        })
    }

    /// The next directive or block end; `None` at the end of the input.
    fn next_event(&mut self) -> Result<Option<Event<'a>>, ParseError> {
        let src = self.src;
        let mut words: Vec<Word<'a>> = Vec::with_capacity(4);
        loop {
            while self.pos < src.len() && is_space(src[self.pos]) {
                self.pos += 1;
            }
            if self.pos >= src.len() {
                if words.is_empty() {
                    return Ok(None);
                }
                return self.error(self.pos, "unexpected end of file, expecting \";\" or \"}\"");
            }
            let at = self.pos;
            match src[at] {
                b'#' => {
                    while self.pos < src.len() && src[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                b';' | b'{' => {
                    if words.is_empty() {
                        return self.error(at, format!("unexpected \"{}\"", src[at] as char));
                    }
                    self.pos += 1;
                    return Ok(Some(Event::Directive(Directive {
                        words,
                        block: src[at] == b'{',
                    })));
                }
                b'}' => {
                    if !words.is_empty() {
                        return self.error(at, "unexpected \"}\"");
                    }
                    self.pos += 1;
                    return Ok(Some(Event::BlockEnd(at)));
                }
                q @ (b'"' | b'\'') => {
                    let mut i = at + 1;
                    loop {
                        if i >= src.len() {
                            return self.error(at, "unexpected end of file in a quoted string");
                        }
                        if src[i] == b'\\' {
                            i += 2;
                            continue;
                        }
                        if src[i] == q {
                            break;
                        }
                        i += 1;
                    }
                    words.push(Word {
                        value: unescape(&src[at + 1..i]),
                        span: at..i + 1,
                    });
                    self.pos = i + 1;
                    // nginx wants a space, `;`, `{` or `)` after a quote.
                    if let Some(&c) = src.get(self.pos)
                        && !(is_space(c) || c == b';' || c == b'{' || c == b')')
                    {
                        return self.error(self.pos, format!("unexpected \"{}\"", c as char));
                    }
                }
                _ => {
                    let mut i = at;
                    let mut variable = false;
                    while i < src.len() {
                        let c = src[i];
                        if c == b'{' && variable {
                            i += 1;
                            continue;
                        }
                        variable = false;
                        if c == b'\\' {
                            i = (i + 2).min(src.len());
                            continue;
                        }
                        if c == b'$' {
                            variable = true;
                            i += 1;
                            continue;
                        }
                        if is_space(c) || c == b';' || c == b'{' {
                            break;
                        }
                        i += 1;
                    }
                    words.push(Word {
                        value: unescape(&src[at..i]),
                        span: at..i,
                    });
                    self.pos = i;
                }
            }
        }
    }
}

/// The 1-based line of byte `at`.
fn line_of(src: &[u8], at: usize) -> usize {
    1 + src[..at.min(src.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

/// Counts lines forward as the parser moves through the file.
struct Lines<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
}

impl Lines<'_> {
    fn at(&mut self, at: usize) -> usize {
        if at < self.pos {
            return line_of(self.src, at);
        }
        self.line += self.src[self.pos..at]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        self.pos = at;
        self.line
    }
}

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

/// One `upstream NAME { … }` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream<'a> {
    line: usize,
    name: Word<'a>,
    servers: Vec<Server<'a>>,
    includes: Vec<String>,
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

    /// The arguments of its `include` directives (their servers are not
    /// read: they are in other files), in file order.
    pub fn includes(&self) -> &[String] {
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
                            return lx.error(
                                start,
                                "invalid number of arguments in \"server\" directive",
                            );
                        }
                        upstreams[i].servers.push(Server {
                            line: lines.at(start),
                            words: d.words,
                        });
                    } else if let Some(i) = in_upstream
                        && d.words[0].value == "include"
                    {
                        let args: Vec<&str> = d.words[1..].iter().map(|w| w.value()).collect();
                        upstreams[i].includes.push(args.join(" "));
                    }
                }
                Event::BlockEnd(at) => {
                    if stack.pop().is_none() {
                        return lx.error(at, "unexpected \"}\"");
                    }
                }
            }
        }
        if !stack.is_empty() {
            return lx.error(src.len(), "unexpected end of file, expecting \"}\"");
        }
        Ok(UpstreamFile { upstreams })
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
        assert_eq!(f.upstreams()[0].includes(), ["/etc/nginx/app.d/*.conf"]);
        assert_eq!(f.upstreams()[0].servers().len(), 1);
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
