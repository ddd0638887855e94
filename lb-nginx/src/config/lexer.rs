//! The tokenizer: nginx's words, quotes, escapes, comments and block
//! delimiters, with where each word sits in the bytes.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

/// One word of the configuration: its value as nginx reads it (quotes
/// removed, escapes resolved) and the bytes it occupies in the source
/// (quotes included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word<'a> {
    pub(super) value: Cow<'a, str>,
    pub(super) span: Range<usize>,
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

pub(super) enum Event<'a> {
    Directive(Directive<'a>),
    BlockEnd(usize),
}

pub(super) struct Lexer<'a> {
    pub(super) src: &'a [u8],
    pub(super) pos: usize,
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
    pub(super) fn error<T>(&self, at: usize, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line: line_of(self.src, at),
            message: message.into(),
        })
    }

    /// The next directive or block end; `None` at the end of the input.
    pub(super) fn next_event(&mut self) -> Result<Option<Event<'a>>, ParseError> {
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
pub(super) fn line_of(src: &[u8], at: usize) -> usize {
    1 + src[..at.min(src.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

/// Counts lines forward as the parser moves through the file.
pub(super) struct Lines<'a> {
    pub(super) src: &'a [u8],
    pub(super) pos: usize,
    pub(super) line: usize,
}

impl Lines<'_> {
    pub(super) fn at(&mut self, at: usize) -> usize {
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
