//! The balancer-manager's XML answer (`GET …/balancer-manager?xml=1`), parsed.
//!
//! httpd 2.4 answers with namespaced elements:
//!
//! ```text
//! <httpd:manager xmlns:httpd='http://httpd.apache.org'>
//!   <httpd:balancers>
//!     <httpd:balancer>
//!       <httpd:name>balancer://app</httpd:name>
//!       <httpd:nonce>977298cb-…</httpd:nonce>
//!       <httpd:workers>
//!         <httpd:worker>
//!           <httpd:name>http://127.0.0.1:18082</httpd:name>
//!           <httpd:hostname>127.0.0.1</httpd:hostname>
//!           <httpd:port>18082</httpd:port>
//!           <httpd:loadfactor>1.00</httpd:loadfactor>
//!           <httpd:status>Init Drn Ok </httpd:status>
//!           <httpd:route>node2</httpd:route>
//!           <httpd:busy>0</httpd:busy>
//!           …
//! ```
//!
//! Elements are matched by their local name, so the prefix does not
//! matter; elements this crate does not use are skipped. [`parse`] never
//! panics, whatever it is given: anything it cannot understand is a
//! [`ParseError`].

use std::fmt;

use lb_core::{AdminState, Health};
use quick_xml::events::{BytesRef, Event};

/// The whole answer: every balancer of the virtual host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manager {
    /// The balancers, in the order httpd lists them.
    pub balancers: Vec<BalancerInfo>,
}

impl Manager {
    /// The balancer whose pool name (the part after `balancer://`) is `pool`.
    pub fn balancer(&self, pool: &str) -> Option<&BalancerInfo> {
        self.balancers.iter().find(|b| b.pool() == pool)
    }
}

/// One `<httpd:balancer>`: a pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BalancerInfo {
    /// Its full name, e.g. `balancer://app`.
    pub name: String,
    /// The nonce every write to it must carry (empty with `BalancerNonce None`).
    pub nonce: String,
    /// Its workers (members), in order.
    pub workers: Vec<WorkerInfo>,
}

impl BalancerInfo {
    /// The pool name: [`name`](Self::name) without `balancer://`.
    pub fn pool(&self) -> &str {
        self.name.strip_prefix("balancer://").unwrap_or(&self.name)
    }
}

/// One `<httpd:worker>`: a member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerInfo {
    /// The worker's URL (`<httpd:name>`), which is what writes address.
    pub url: String,
    /// `<httpd:hostname>`.
    pub hostname: String,
    /// `<httpd:port>`, where given.
    pub port: Option<u16>,
    /// `<httpd:route>`; `None` when empty or absent.
    pub route: Option<String>,
    /// `<httpd:status>`: status tokens such as `Init Drn Ok`.
    pub status: Status,
    /// `<httpd:loadfactor>` in hundredths (httpd prints `5.00`: this is 500).
    pub load_factor: Option<u32>,
    /// `<httpd:busy>`: requests in flight, shared across httpd's children.
    pub busy: Option<u64>,
    /// `<httpd:elected>`: requests the balancer ever sent it.
    pub elected: Option<u64>,
    /// `<httpd:transferred>`: bytes sent to it.
    pub transferred: Option<u64>,
    /// `<httpd:read>`: bytes read from it.
    pub read: Option<u64>,
}

impl WorkerInfo {
    /// The member's name: its route when it has one, else its URL.
    pub fn member_name(&self) -> &str {
        self.route.as_deref().unwrap_or(&self.url)
    }

    /// `host:port` (IPv6 hosts in brackets), or the bare host without a port.
    pub fn address(&self) -> String {
        let host = if self.hostname.contains(':') && !self.hostname.starts_with('[') {
            format!("[{}]", self.hostname)
        } else {
            self.hostname.clone()
        };
        match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }

    /// The load factor as a whole weight (rounded), as `set_weight` sets it.
    pub fn weight(&self) -> Option<u32> {
        self.load_factor.map(|lf| lf.saturating_add(50) / 100)
    }
}

/// A worker's status tokens, as httpd prints them (`Init Drn Ok `).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status(pub String);

impl Status {
    /// The tokens, e.g. `["Init", "Drn", "Ok"]`.
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.0.split_whitespace()
    }

    /// Whether token `t` is present.
    pub fn has(&self, t: &str) -> bool {
        self.tokens().any(|x| x == t)
    }

    /// The administrative state: `Dis` (disabled) or `Stop` (stopped) →
    /// `Maint`; else `Drn` (draining) → `Drain`; else `Ready`.
    pub fn admin(&self) -> AdminState {
        if self.has("Dis") || self.has("Stop") {
            AdminState::Maint
        } else if self.has("Drn") {
            AdminState::Drain
        } else {
            AdminState::Ready
        }
    }

    /// Health: `Err` (in error) or `HcFl` (health check failed) → down;
    /// else `Ok` (usable) → up; else unknown (httpd prints no `Ok` for a
    /// disabled or stopped worker, so its health is not known).
    pub fn health(&self) -> Health {
        if self.has("Err") || self.has("HcFl") {
            Health::Down
        } else if self.has("Ok") {
            Health::Up
        } else {
            Health::Unknown
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.trim())
    }
}

/// Why an answer is not a balancer-manager XML document we understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

impl ParseError {
    fn new(m: impl Into<String>) -> Self {
        ParseError(m.into())
    }
}

/// Where the parser is: the open elements it cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Manager,
    Balancers,
    Balancer,
    Workers,
    Worker,
    Leaf(Field),
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    BalancerName,
    Nonce,
    WorkerName,
    Hostname,
    Port,
    LoadFactor,
    Status,
    Route,
    Busy,
    Elected,
    Transferred,
    Read,
}

fn child_tag(parent: Option<Tag>, local: &str) -> Result<Tag, ParseError> {
    Ok(match (parent, local) {
        (None, "manager") => Tag::Manager,
        (None, other) => {
            return Err(ParseError::new(format!(
                "the root element is <{other}>, not <httpd:manager>: not a balancer-manager XML answer"
            )));
        }
        (Some(Tag::Manager), "balancers") => Tag::Balancers,
        (Some(Tag::Balancers), "balancer") => Tag::Balancer,
        (Some(Tag::Balancer), "name") => Tag::Leaf(Field::BalancerName),
        (Some(Tag::Balancer), "nonce") => Tag::Leaf(Field::Nonce),
        (Some(Tag::Balancer), "workers") => Tag::Workers,
        (Some(Tag::Workers), "worker") => Tag::Worker,
        (Some(Tag::Worker), "name") => Tag::Leaf(Field::WorkerName),
        (Some(Tag::Worker), "hostname") => Tag::Leaf(Field::Hostname),
        (Some(Tag::Worker), "port") => Tag::Leaf(Field::Port),
        (Some(Tag::Worker), "loadfactor") => Tag::Leaf(Field::LoadFactor),
        (Some(Tag::Worker), "status") => Tag::Leaf(Field::Status),
        (Some(Tag::Worker), "route") => Tag::Leaf(Field::Route),
        (Some(Tag::Worker), "busy") => Tag::Leaf(Field::Busy),
        (Some(Tag::Worker), "elected") => Tag::Leaf(Field::Elected),
        (Some(Tag::Worker), "transferred") => Tag::Leaf(Field::Transferred),
        (Some(Tag::Worker), "read") => Tag::Leaf(Field::Read),
        _ => Tag::Other,
    })
}

/// `5.00` → 500, `5` → 500, `2.5` → 250.
fn hundredths(s: &str) -> Option<u32> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 6 {
        return None;
    }
    let mut f = frac.bytes().chain(std::iter::repeat(b'0')).take(2);
    let (a, b) = (f.next()? - b'0', f.next()? - b'0');
    int.parse::<u32>()
        .ok()?
        .checked_mul(100)?
        .checked_add(u32::from(a) * 10 + u32::from(b))
}

struct Builder {
    manager: Manager,
    balancer: Option<BalancerInfo>,
    worker: Option<WorkerInfo>,
    text: String,
}

impl Builder {
    fn where_(&self) -> String {
        let b = self
            .balancer
            .as_ref()
            .map(|b| b.name.as_str())
            .filter(|n| !n.is_empty())
            .unwrap_or("?");
        match &self.worker {
            Some(w) if !w.url.is_empty() => format!("balancer {b}, worker {}", w.url),
            Some(_) => format!("balancer {b}, a worker"),
            None => format!("balancer {b}"),
        }
    }

    /// Stores the text collected for leaf `f` (reusing the text buffer).
    fn set(&mut self, f: Field) -> Result<(), ParseError> {
        let mut text = std::mem::take(&mut self.text);
        let r = self.apply(f, text.trim());
        text.clear();
        self.text = text;
        r
    }

    fn apply(&mut self, f: Field, v: &str) -> Result<(), ParseError> {
        let bad = |what: &str, this: &Builder| {
            ParseError::new(format!(
                "{}: <httpd:{what}> is {v:?}, not a number",
                this.where_()
            ))
        };
        match f {
            Field::BalancerName | Field::Nonce => {
                let b = self
                    .balancer
                    .as_mut()
                    .ok_or_else(|| ParseError::new("a balancer field outside <httpd:balancer>"))?;
                if f == Field::BalancerName {
                    b.name = v.to_owned();
                } else {
                    b.nonce = v.to_owned();
                }
            }
            _ => {
                let port = match f {
                    Field::Port if !v.is_empty() => {
                        Some(v.parse::<u16>().map_err(|_| bad("port", self))?)
                    }
                    _ => None,
                };
                let lf = match f {
                    Field::LoadFactor => {
                        Some(hundredths(v).ok_or_else(|| bad("loadfactor", self))?)
                    }
                    _ => None,
                };
                let count = match f {
                    Field::Busy => Some(v.parse::<u64>().map_err(|_| bad("busy", self))?),
                    Field::Elected => Some(v.parse::<u64>().map_err(|_| bad("elected", self))?),
                    Field::Transferred => {
                        Some(v.parse::<u64>().map_err(|_| bad("transferred", self))?)
                    }
                    Field::Read => Some(v.parse::<u64>().map_err(|_| bad("read", self))?),
                    _ => None,
                };
                let w = self
                    .worker
                    .as_mut()
                    .ok_or_else(|| ParseError::new("a worker field outside <httpd:worker>"))?;
                match f {
                    Field::WorkerName => w.url = v.to_owned(),
                    Field::Hostname => w.hostname = v.to_owned(),
                    Field::Port => w.port = port,
                    Field::LoadFactor => w.load_factor = lf,
                    Field::Status => w.status = Status(v.to_owned()),
                    Field::Route => w.route = (!v.is_empty()).then(|| v.to_owned()),
                    Field::Busy => w.busy = count,
                    Field::Elected => w.elected = count,
                    Field::Transferred => w.transferred = count,
                    Field::Read => w.read = count,
                    Field::BalancerName | Field::Nonce => {}
                }
            }
        }
        Ok(())
    }

    fn close(&mut self, t: Tag) -> Result<(), ParseError> {
        match t {
            Tag::Leaf(f) => self.set(f)?,
            Tag::Worker => {
                let w = self.worker.take().unwrap_or_default();
                if w.url.is_empty() {
                    return Err(ParseError::new(format!(
                        "{}: a worker without <httpd:name>",
                        self.where_()
                    )));
                }
                if let Some(b) = self.balancer.as_mut() {
                    b.workers.push(w);
                }
            }
            Tag::Balancer => {
                let b = self.balancer.take().unwrap_or_default();
                if b.name.is_empty() {
                    return Err(ParseError::new("a balancer without <httpd:name>"));
                }
                self.manager.balancers.push(b);
            }
            _ => {}
        }
        Ok(())
    }
}

fn entity(r: &BytesRef<'_>) -> Result<String, ParseError> {
    let name = r.xml10_content();
    if let Some(c) = r
        .resolve_char_ref()
        .map_err(|e| ParseError::new(format!("bad character reference &{name};: {e}")))?
    {
        return Ok(c.to_string());
    }
    quick_xml::escape::resolve_predefined_entity(&name)
        .map(str::to_owned)
        .ok_or_else(|| ParseError::new(format!("unknown entity &{name};")))
}

/// Parses a balancer-manager XML answer.
///
/// ```
/// let xml = "<httpd:manager xmlns:httpd='http://httpd.apache.org'><httpd:balancers>\
///   <httpd:balancer><httpd:name>balancer://app</httpd:name><httpd:nonce>n1</httpd:nonce>\
///   <httpd:workers><httpd:worker><httpd:name>http://10.0.0.2:8080</httpd:name>\
///   <httpd:hostname>10.0.0.2</httpd:hostname><httpd:port>8080</httpd:port>\
///   <httpd:loadfactor>1.00</httpd:loadfactor><httpd:status>Init Drn Ok </httpd:status>\
///   <httpd:route>node2</httpd:route><httpd:busy>3</httpd:busy></httpd:worker></httpd:workers>\
///   </httpd:balancer></httpd:balancers></httpd:manager>";
/// let m = lb_apache::xml::parse(xml)?;
/// let w = &m.balancer("app").unwrap().workers[0];
/// assert_eq!((w.member_name(), w.address().as_str()), ("node2", "10.0.0.2:8080"));
/// assert_eq!((w.status.admin(), w.busy, w.weight()), (lb_core::AdminState::Drain, Some(3), Some(1)));
/// # Ok::<(), lb_apache::xml::ParseError>(())
/// ```
///
/// # Errors
///
/// [`ParseError`] for input that is not well-formed XML, whose root is not
/// `<httpd:manager>`, or whose numbers (port, load factor, busy) are not
/// numbers.
pub fn parse(xml: &str) -> Result<Manager, ParseError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    // Skips the whitespace between elements (half the events). It would
    // also drop spaces next to an entity (`a &amp; b`), which cannot occur
    // in the values read here: URLs, routes, names, nonces, numbers.
    reader.config_mut().trim_text(true);
    let mut stack: Vec<Tag> = Vec::with_capacity(8);
    let mut b = Builder {
        manager: Manager::default(),
        balancer: None,
        worker: None,
        text: String::new(),
    };
    let mut seen_root = false;
    loop {
        let ev = reader.read_event().map_err(|e| {
            ParseError::new(format!(
                "not well-formed XML at byte {}: {e}",
                reader.error_position()
            ))
        })?;
        match ev {
            Event::Start(e) | Event::Empty(e) if seen_root && stack.is_empty() => {
                return Err(ParseError::new(format!(
                    "a second root element <{}>",
                    e.name().as_ref()
                )));
            }
            Event::Start(e) => {
                let t = child_tag(stack.last().copied(), e.local_name().as_ref())?;
                seen_root = true;
                match t {
                    Tag::Balancer => b.balancer = Some(BalancerInfo::default()),
                    Tag::Worker => b.worker = Some(WorkerInfo::default()),
                    Tag::Leaf(_) => b.text.clear(),
                    _ => {}
                }
                stack.push(t);
            }
            Event::Empty(e) => {
                let t = child_tag(stack.last().copied(), e.local_name().as_ref())?;
                seen_root = true;
                match t {
                    Tag::Leaf(_) => {
                        b.text.clear();
                        b.close(t)?;
                    }
                    Tag::Balancer => {
                        b.balancer = Some(BalancerInfo::default());
                        b.close(t)?;
                    }
                    Tag::Worker => {
                        b.worker = Some(WorkerInfo::default());
                        b.close(t)?;
                    }
                    _ => {}
                }
            }
            Event::End(_) => {
                // quick-xml checks that end names match their start.
                if let Some(t) = stack.pop() {
                    b.close(t)?;
                }
            }
            Event::Text(t) => {
                if let Some(Tag::Leaf(_)) = stack.last() {
                    b.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some(Tag::Leaf(_)) = stack.last() {
                    b.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let s = entity(&r)?;
                if let Some(Tag::Leaf(_)) = stack.last() {
                    b.text.push_str(&s);
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !seen_root {
        return Err(ParseError::new(
            "no <httpd:manager> element: not a balancer-manager XML answer",
        ));
    }
    if !stack.is_empty() {
        return Err(ParseError::new(
            "the XML ends before its elements are closed",
        ));
    }
    Ok(b.manager)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = include_str!("../tests/data/manager.xml");

    #[test]
    fn parses_what_httpd_2_4_answers() {
        let m = parse(REAL).unwrap();
        let pools: Vec<_> = m.balancers.iter().map(|b| b.pool()).collect();
        assert_eq!(pools, ["app", "api"]);
        let app = m.balancer("app").unwrap();
        assert_eq!(app.nonce, "977298cb-3e1b-190d-31ab-d838432e5612");
        let names: Vec<_> = app.workers.iter().map(|w| w.member_name()).collect();
        assert_eq!(names, ["node1", "node2", "http://127.0.0.1:29883"]);
        let n2 = &app.workers[1];
        assert_eq!(n2.url, "http://127.0.0.1:29882");
        assert_eq!(n2.address(), "127.0.0.1:29882");
        assert_eq!((n2.load_factor, n2.weight()), (Some(500), Some(5)));
        assert_eq!(n2.status.admin(), AdminState::Drain);
        assert_eq!(n2.status.health(), Health::Down);
        assert_eq!(n2.busy, Some(2));
        let api = m.balancer("api").unwrap();
        let sub = &api.workers[1];
        assert_eq!(sub.route, None);
        assert_eq!(sub.member_name(), "http://localhost:29884/sub");
        assert_eq!(sub.address(), "localhost:29884");
        assert_eq!(sub.status.admin(), AdminState::Maint);
        assert_eq!(sub.status.health(), Health::Unknown);
    }

    #[test]
    fn status_tokens_map_to_states() {
        let cases = [
            ("Init Ok ", AdminState::Ready, Health::Up),
            ("Init Drn Ok ", AdminState::Drain, Health::Up),
            ("Init Drn Dis ", AdminState::Maint, Health::Unknown),
            ("Init Dis ", AdminState::Maint, Health::Unknown),
            ("Init Stop ", AdminState::Maint, Health::Unknown),
            ("Init Err ", AdminState::Ready, Health::Down),
            ("Init Drn Err ", AdminState::Drain, Health::Down),
            ("Init HcFl ", AdminState::Ready, Health::Down),
            ("Init Stby Ok ", AdminState::Ready, Health::Up),
            ("", AdminState::Ready, Health::Unknown),
        ];
        for (s, admin, health) in cases {
            let st = Status(s.into());
            assert_eq!((st.admin(), st.health()), (admin, health), "{s:?}");
        }
    }

    #[test]
    fn load_factors_in_hundredths() {
        for (s, v) in [
            ("1.00", Some(100)),
            ("5", Some(500)),
            ("2.5", Some(250)),
            ("100.00", Some(10000)),
            ("0.01", Some(1)),
            ("1.999", Some(199)),
            ("", None),
            ("-1", None),
            ("1.0a", None),
            (".5", None),
            ("99999999999", None),
        ] {
            assert_eq!(hundredths(s), v, "{s:?}");
        }
        let w = WorkerInfo {
            load_factor: Some(250),
            ..WorkerInfo::default()
        };
        assert_eq!(w.weight(), Some(3));
    }

    #[test]
    fn entities_and_empty_elements() {
        let xml = "<m:manager xmlns:m='x'><m:balancers><m:balancer><m:name>balancer://a&amp;b</m:name>\
                   <m:workers><m:worker><m:name>http://h:1/p?x=&#49;</m:name><m:route/>\
                   <m:status><![CDATA[Init Ok]]></m:status></m:worker></m:workers></m:balancer>\
                   </m:balancers></m:manager>";
        let m = parse(xml).unwrap();
        assert_eq!(m.balancers[0].pool(), "a&b");
        let w = &m.balancers[0].workers[0];
        assert_eq!(w.url, "http://h:1/p?x=1");
        assert_eq!((w.route.as_deref(), w.status.health()), (None, Health::Up));
        assert_eq!((w.port, w.busy, w.load_factor), (None, None, None));
    }

    #[test]
    fn rejects_what_is_not_a_manager_answer() {
        let cases = [
            ("", "no <httpd:manager>"),
            ("<!DOCTYPE HTML><html><head>", "root element is <html>"),
            ("<httpd:manager><httpd:balancers>", "ends before"),
            ("<manager></wrong>", "not well-formed"),
            ("<manager/><manager/>", "second root"),
            (
                "<manager><balancers><balancer><workers><worker><name>u</name><port>x</port>",
                "worker u: <httpd:port> is \"x\"",
            ),
            (
                "<manager><balancers><balancer><workers><worker></worker></workers></balancer></balancers></manager>",
                "without <httpd:name>",
            ),
            ("<manager>&bogus;</manager>", "unknown entity"),
        ];
        for (xml, why) in cases {
            let e = parse(xml).unwrap_err().to_string();
            assert!(e.contains(why), "{xml:?}: {e}");
        }
    }
}
