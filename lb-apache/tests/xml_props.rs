//! Property tests of the XML parser: it never panics, and it reads back
//! what it is given.

use lb_apache::xml::{self, Status};
use proptest::prelude::*;

const REAL: &str = include_str!("data/manager.xml");

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[derive(Debug, Clone)]
struct W {
    host: String,
    port: u16,
    route: String,
    status: String,
    lf: u32,
    busy: u64,
}

fn worker() -> impl Strategy<Value = W> {
    (
        "[a-z0-9.-]{1,20}",
        any::<u16>(),
        "[^\\s<>&]{0,12}",
        prop::sample::subsequence(
            vec!["Init", "Drn", "Dis", "Stop", "Err", "HcFl", "Stby", "Ok"],
            0..5,
        ),
        100u32..=10000,
        any::<u64>(),
    )
        .prop_map(|(host, port, route, tokens, lf, busy)| W {
            host,
            port,
            route,
            status: tokens.join(" "),
            lf,
            busy,
        })
}

fn render(pools: &[(String, String, Vec<W>)]) -> String {
    let mut s = String::from(
        "<?xml version='1.0' encoding='UTF-8' ?>\n<httpd:manager xmlns:httpd='http://httpd.apache.org'>\n<httpd:balancers>\n",
    );
    for (name, nonce, workers) in pools {
        s.push_str(&format!(
            "<httpd:balancer><httpd:name>balancer://{}</httpd:name><httpd:nonce>{}</httpd:nonce><httpd:workers>\n",
            escape(name),
            escape(nonce)
        ));
        for w in workers {
            s.push_str(&format!(
                "<httpd:worker><httpd:name>http://{h}:{p}</httpd:name><httpd:scheme>http</httpd:scheme>\
                 <httpd:hostname>{h}</httpd:hostname><httpd:loadfactor>{a}.{b:02}</httpd:loadfactor>\
                 <httpd:port>{p}</httpd:port><httpd:status>{st} </httpd:status>\
                 <httpd:route>{r}</httpd:route><httpd:busy>{busy}</httpd:busy></httpd:worker>\n",
                h = w.host,
                p = w.port,
                a = w.lf / 100,
                b = w.lf % 100,
                st = w.status,
                r = escape(&w.route),
                busy = w.busy,
            ));
        }
        s.push_str("</httpd:workers></httpd:balancer>\n");
    }
    s.push_str("</httpd:balancers>\n</httpd:manager>\n");
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(s in any::<String>()) {
        let _ = xml::parse(&s);
    }

    #[test]
    fn xml_like_text_never_panics(s in "(<[/!?]?[a-z:]{0,8}( [a-z]+='[^']*')?/?>|&[a-z#0-9]{0,5};?|[^<&]{0,6}){0,40}") {
        let _ = xml::parse(&s);
    }

    #[test]
    fn a_damaged_real_answer_never_panics(cut in 0usize..REAL.len(), at in 0usize..REAL.len(), junk in "[<>&/;'\"a-z ]{0,4}") {
        let cut = (0..=cut).rev().find(|i| REAL.is_char_boundary(*i)).unwrap_or(0);
        let _ = xml::parse(&REAL[..cut]);
        let at = (0..=at).rev().find(|i| REAL.is_char_boundary(*i)).unwrap_or(0);
        let damaged = format!("{}{}{}", &REAL[..at], junk, &REAL[at..]);
        let _ = xml::parse(&damaged);
    }

    #[test]
    fn what_is_rendered_is_read_back(
        pools in prop::collection::vec(("[^\\s<>&]{1,10}", "[a-f0-9-]{0,36}", prop::collection::vec(worker(), 0..6)), 0..4)
    ) {
        let m = xml::parse(&render(&pools)).expect("a well-formed answer parses");
        prop_assert_eq!(m.balancers.len(), pools.len());
        for (b, (name, nonce, workers)) in m.balancers.iter().zip(&pools) {
            prop_assert_eq!(b.pool(), name.as_str());
            prop_assert_eq!(&b.nonce, nonce);
            prop_assert_eq!(b.workers.len(), workers.len());
            for (got, w) in b.workers.iter().zip(workers) {
                let url = format!("http://{}:{}", w.host, w.port);
                prop_assert_eq!(&got.url, &url);
                prop_assert_eq!(got.port, Some(w.port));
                prop_assert_eq!(got.load_factor, Some(w.lf));
                prop_assert_eq!(got.busy, Some(w.busy));
                prop_assert_eq!(got.route.as_deref(), (!w.route.is_empty()).then_some(w.route.as_str()));
                prop_assert_eq!(got.member_name(), if w.route.is_empty() { url.as_str() } else { w.route.as_str() });
                let st = Status(w.status.clone() + " ");
                prop_assert_eq!(got.status.admin(), st.admin());
                prop_assert_eq!(got.status.health(), st.health());
            }
        }
    }
}
