//! Property tests of the tokenizer, the parser and the edits.

use lb_nginx::config::{UpstreamFile, main_context};
use proptest::prelude::*;

/// Blanks between two words: spaces, tabs, newlines, comments that say
/// anything (`server`, braces, quotes, `;`).
fn gap() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(" ".to_string()),
        Just("  ".to_string()),
        Just("\t".to_string()),
        Just(" \t ".to_string()),
        Just("\n    ".to_string()),
        "[ -~&&[^\n]]{0,30}".prop_map(|c| format!(" # {c}\n\t")),
        Just(" # server 10.9.9.9:80 down; { } \" '\n  ".to_string()),
    ]
}

fn param() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..10).prop_map(|n| format!("max_fails={n}")),
        (1u32..60).prop_map(|n| format!("fail_timeout={n}s")),
        (0u32..100).prop_map(|n| format!("max_conns={n}")),
        Just("backup".to_string()),
        Just("\"slow_start=5s\"".to_string()),
    ]
}

#[derive(Debug, Clone)]
struct ServerSpec {
    quoted: bool,
    weight: Option<u32>,
    params: Vec<(String, String)>,
    before_semicolon: String,
    lead: String,
}

fn server() -> impl Strategy<Value = ServerSpec> {
    (
        any::<bool>(),
        proptest::option::of(2u32..100),
        proptest::collection::vec((gap(), param()), 0..3),
        prop_oneof![Just(String::new()), Just(" ".into()), Just("\t".into())],
        gap(),
    )
        .prop_map(
            |(quoted, weight, params, before_semicolon, lead)| ServerSpec {
                quoted,
                weight,
                params,
                before_semicolon,
                lead,
            },
        )
}

#[derive(Debug, Clone)]
struct UpstreamSpec {
    servers: Vec<ServerSpec>,
    extra: Vec<String>,
    compact: bool,
}

fn upstream() -> impl Strategy<Value = UpstreamSpec> {
    (
        proptest::collection::vec(server(), 1..6),
        proptest::collection::vec(
            prop_oneof![
                Just("zone z 64k;".to_string()),
                Just("keepalive 16;".to_string()),
                Just("least_conn;".to_string()),
            ],
            0..3,
        ),
        any::<bool>(),
    )
        .prop_map(|(servers, extra, compact)| UpstreamSpec {
            servers,
            extra,
            compact,
        })
}

fn address(u: usize, s: usize) -> String {
    format!("10.0.{u}.{s}:80")
}

/// Renders the upstreams as nginx text, with a comment on top.
fn render(ups: &[UpstreamSpec], header: &str) -> String {
    let mut t = format!("# {header}\n");
    for (ui, u) in ups.iter().enumerate() {
        let nl = if u.compact { " " } else { "\n" };
        t.push_str(&format!("upstream pool{ui} {{{nl}"));
        for e in &u.extra {
            t.push_str(&format!("  {e}{nl}"));
        }
        for (si, s) in u.servers.iter().enumerate() {
            let addr = if s.quoted {
                format!("\"{}\"", address(ui, si))
            } else {
                address(ui, si)
            };
            t.push_str(&format!("{}server {addr}", s.lead));
            if let Some(w) = s.weight {
                t.push_str(&format!(" weight={w}"));
            }
            for (g, p) in &s.params {
                t.push_str(g);
                t.push_str(p);
            }
            t.push_str(&format!("{};{nl}", s.before_semicolon));
        }
        t.push_str("}\n\n");
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = UpstreamFile::parse(&bytes);
        let _ = main_context(&bytes);
    }

    #[test]
    fn nginx_like_noise_never_panics(s in "[a-z0-9 \t\n{};#\"'\\\\$=:.]{0,300}") {
        if let Ok(f) = UpstreamFile::parse(s.as_bytes()) {
            for u in f.upstreams() {
                for srv in u.servers() {
                    let e = srv.set_flag(s.as_bytes(), "down", !srv.has("down"));
                    let _ = e.apply(s.as_bytes());
                    let _ = srv.set_weight(s.as_bytes(), 3).apply(s.as_bytes());
                }
            }
        }
        let _ = main_context(s.as_bytes());
    }

    #[test]
    fn parse_edit_unedit_is_the_identity(
        ups in proptest::collection::vec(upstream(), 1..4),
        header in "[ -~]{0,40}",
        pick in any::<prop::sample::Index>(),
        weight in 2u32..1000,
    ) {
        let text = render(&ups, &header);
        let src = text.as_bytes();
        let file = UpstreamFile::parse(src).expect("generated files parse");

        // The parser sees exactly what was generated.
        prop_assert_eq!(file.upstreams().len(), ups.len());
        let mut all = Vec::new();
        for (ui, u) in ups.iter().enumerate() {
            let got = &file.upstreams()[ui];
            prop_assert_eq!(got.name(), format!("pool{ui}"));
            prop_assert_eq!(got.servers().len(), u.servers.len());
            for (si, s) in u.servers.iter().enumerate() {
                let g = &got.servers()[si];
                prop_assert_eq!(g.address(), address(ui, si));
                prop_assert_eq!(g.weight(), s.weight);
                prop_assert!(!g.has("down"));
                all.push((ui, si));
            }
        }

        let (ui, si) = all[pick.index(all.len())];
        let (pool, addr) = (format!("pool{ui}"), address(ui, si));
        let target = file.find(&pool, &addr).expect("found");

        // down on, then off: the original bytes.
        let down = target.set_flag(src, "down", true).apply(src);
        let f2 = UpstreamFile::parse(&down).expect("edited file parses");
        prop_assert!(f2.find(&pool, &addr).unwrap().has("down"));
        for (uj, sj) in &all {
            if (*uj, *sj) != (ui, si) {
                let other = f2.find(&format!("pool{uj}"), &address(*uj, *sj)).unwrap();
                prop_assert!(!other.has("down"));
                prop_assert_eq!(other.weight(), ups[*uj].servers[*sj].weight);
            }
        }
        let back = f2.find(&pool, &addr).unwrap().set_flag(&down, "down", false).apply(&down);
        prop_assert_eq!(String::from_utf8(back).unwrap(), text.clone());

        // drain (swapping with down) and back.
        let drain = target
            .set_flag(src, "down", false)
            .and(target.set_flag(src, "drain", true))
            .apply(src);
        let f3 = UpstreamFile::parse(&drain).expect("edited file parses");
        let t3 = f3.find(&pool, &addr).unwrap();
        prop_assert!(t3.has("drain") && !t3.has("down"));
        let back = t3.set_flag(&drain, "drain", false).apply(&drain);
        prop_assert_eq!(String::from_utf8(back).unwrap(), text.clone());

        // weight to something else and back.
        let original = ups[ui].servers[si].weight;
        prop_assume!(Some(weight) != original);
        let w = target.set_weight(src, weight).apply(src);
        let f4 = UpstreamFile::parse(&w).expect("edited file parses");
        let t4 = f4.find(&pool, &addr).unwrap();
        prop_assert_eq!(t4.weight(), Some(weight));
        let back = t4.set_weight(&w, original.unwrap_or(1)).apply(&w);
        prop_assert_eq!(String::from_utf8(back).unwrap(), text);
    }
}
