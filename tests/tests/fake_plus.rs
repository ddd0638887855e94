//! The fake NGINX Plus API against the published spec (`fixtures/nginx_api.yaml`,
//! a copy of NGINX's `nginx_api.yaml`, v9): every answer's status is one the
//! spec lists for that path and method, its body validates against the
//! spec's schema (no field the spec does not define), and its error code is
//! one the spec names for that status. The spec's own examples validate
//! too, and the fake's server objects carry the example's fields.

use std::collections::BTreeSet;

use lb_lab::{Backend, FakePlus, FakePlusOptions, PoolSpec, Pools, http};
use serde_json::{Value, json};

mod yaml {
    //! Just enough YAML for the swagger file: block mappings and sequences
    //! (also sequences at their key's indentation), quoted and plain
    //! scalars (plain ones may continue on more-indented lines), `|` and
    //! `>` block scalars, `{}` and `[]`.

    use serde_json::{Map, Value};

    struct P<'a> {
        lines: Vec<(usize, &'a str)>,
        i: usize,
    }

    fn is_seq(t: &str) -> bool {
        t == "-" || t.starts_with("- ")
    }

    /// Splits `key: rest` (the key may be quoted).
    fn split_key(t: &str) -> Option<(String, &str)> {
        if let Some(q) = t.chars().next().filter(|c| *c == '\'' || *c == '"') {
            let end = t[1..].find(q)? + 1;
            let key = t[1..end].to_string();
            let rest = t[end + 1..].strip_prefix(':')?;
            return Some((key, rest.trim()));
        }
        let pos = t
            .find(": ")
            .or_else(|| t.ends_with(':').then(|| t.len() - 1))?;
        Some((t[..pos].to_string(), t[pos + 1..].trim()))
    }

    fn scalar(t: &str) -> Value {
        match t {
            "true" => return Value::Bool(true),
            "false" => return Value::Bool(false),
            "null" | "~" => return Value::Null,
            "{}" => return Value::Object(Map::new()),
            "[]" => return Value::Array(Vec::new()),
            _ => {}
        }
        if let Some(s) = t.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
            return Value::String(s.replace("''", "'"));
        }
        if let Some(s) = t.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            return Value::String(s.replace("\\\"", "\"").replace("\\\\", "\\"));
        }
        if let Ok(n) = t.parse::<i64>() {
            return Value::from(n);
        }
        Value::String(t.to_string())
    }

    impl<'a> P<'a> {
        fn peek(&mut self) -> Option<(usize, &'a str)> {
            while self.i < self.lines.len() {
                let (ind, t) = self.lines[self.i];
                if t.is_empty() || t.starts_with('#') {
                    self.i += 1;
                    continue;
                }
                return Some((ind, t));
            }
            None
        }

        fn node(&mut self, indent: usize) -> Value {
            match self.peek() {
                Some((_, t)) if is_seq(t) => self.seq(indent),
                Some(_) => self.map(indent, Map::new()),
                None => Value::Null,
            }
        }

        /// A plain scalar and its more-indented continuation lines.
        fn plain(&mut self, first: &str, indent: usize) -> Value {
            let mut text = first.to_string();
            while let Some((ind, t)) = self.peek() {
                if ind <= indent {
                    break;
                }
                text.push(' ');
                text.push_str(t);
                self.i += 1;
            }
            if text == first {
                scalar(first)
            } else {
                Value::String(text)
            }
        }

        fn block(&mut self, style: &str, indent: usize) -> Value {
            let mut out: Vec<&str> = Vec::new();
            let mut base = None;
            while self.i < self.lines.len() {
                let (ind, t) = self.lines[self.i];
                if !t.is_empty() && ind <= indent {
                    break;
                }
                if !t.is_empty() {
                    base.get_or_insert(ind);
                }
                out.push(t);
                self.i += 1;
            }
            while out.last().is_some_and(|l| l.is_empty()) {
                out.pop();
            }
            let sep = if style.starts_with('>') { " " } else { "\n" };
            Value::String(out.join(sep))
        }

        fn value(&mut self, rest: &str, indent: usize) -> Value {
            if rest.is_empty() {
                return match self.peek() {
                    Some((ind, _)) if ind > indent => self.node(ind),
                    Some((ind, t)) if ind == indent && is_seq(t) => self.seq(indent),
                    _ => Value::Null,
                };
            }
            if rest.starts_with('|') || rest.starts_with('>') {
                return self.block(rest, indent);
            }
            if rest.starts_with('\'') || rest.starts_with('"') {
                return scalar(rest);
            }
            self.plain(rest, indent)
        }

        fn map(&mut self, indent: usize, mut m: Map<String, Value>) -> Value {
            while let Some((ind, t)) = self.peek() {
                if ind != indent || is_seq(t) {
                    break;
                }
                let (k, rest) = split_key(t).unwrap_or_else(|| panic!("not a key: {t:?}"));
                self.i += 1;
                let v = self.value(rest, indent);
                m.insert(k, v);
            }
            Value::Object(m)
        }

        fn seq(&mut self, indent: usize) -> Value {
            let mut items = Vec::new();
            while let Some((ind, t)) = self.peek() {
                if ind != indent || !is_seq(t) {
                    break;
                }
                let after = t[1..].trim_start();
                let inner = indent + (t.len() - after.len());
                self.i += 1;
                if after.is_empty() {
                    let v = match self.peek() {
                        Some((i2, _)) if i2 > indent => self.node(i2),
                        _ => Value::Null,
                    };
                    items.push(v);
                } else if let Some((k, rest)) =
                    split_key(after).filter(|_| !after.starts_with('\''))
                {
                    let mut m = Map::new();
                    let v = self.value(rest, inner);
                    m.insert(k, v);
                    items.push(self.map(inner, m));
                } else {
                    items.push(self.plain(after, inner));
                }
            }
            Value::Array(items)
        }
    }

    pub fn parse(src: &str) -> Value {
        let lines = src
            .lines()
            .map(|l| {
                let t = l.trim_start_matches(' ');
                (l.len() - t.len(), t.trim_end())
            })
            .collect();
        let mut p = P { lines, i: 0 };
        p.map(0, Map::new())
    }
}

fn spec() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/nginx_api.yaml"
    ))
    .expect("the spec fixture");
    yaml::parse(&text)
}

fn def<'a>(spec: &'a Value, name: &str) -> &'a Value {
    spec["definitions"]
        .get(name)
        .unwrap_or_else(|| panic!("no definition {name}"))
}

/// Validates `v` against a swagger 2.0 schema. `strict`: an object may
/// hold only the properties its schema declares.
fn validate(spec: &Value, schema: &Value, v: &Value, at: &str, strict: bool) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/definitions/").expect("local ref");
        return validate(spec, def(spec, name), v, at, strict);
    }
    let ty = schema
        .get("type")
        .and_then(Value::as_str)
        .or_else(|| schema.get("properties").map(|_| "object"));
    match ty {
        Some("object") => {
            let o = v
                .as_object()
                .ok_or(format!("{at}: expected an object, got {v}"))?;
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties");
            for (k, x) in o {
                let here = format!("{at}.{k}");
                if let Some(p) = props.and_then(|p| p.get(k)) {
                    validate(spec, p, x, &here, strict)?;
                } else if let Some(a) = extra.filter(|a| a.is_object()) {
                    validate(spec, a, x, &here, strict)?;
                } else if strict {
                    return Err(format!("{here}: the spec defines no such property"));
                }
            }
            Ok(())
        }
        Some("array") => {
            let a = v
                .as_array()
                .ok_or(format!("{at}: expected an array, got {v}"))?;
            for (i, x) in a.iter().enumerate() {
                validate(spec, &schema["items"], x, &format!("{at}[{i}]"), strict)?;
            }
            Ok(())
        }
        Some("integer") if v.is_i64() || v.is_u64() => Ok(()),
        Some("boolean") if v.is_boolean() => Ok(()),
        Some("number") if v.is_number() => Ok(()),
        Some("string") => {
            let s = v
                .as_str()
                .ok_or(format!("{at}: expected a string, got {v}"))?;
            match schema.get("enum").and_then(Value::as_array) {
                Some(e) if !e.iter().any(|x| x.as_str() == Some(s)) => {
                    Err(format!("{at}: {s:?} is not one of {e:?}"))
                }
                _ => Ok(()),
            }
        }
        Some(t) => Err(format!("{at}: expected {t}, got {v}")),
        None => Ok(()),
    }
}

#[test]
fn the_yaml_reader_reads_the_spec() {
    let s = spec();
    assert_eq!(s["swagger"], "2.0");
    assert_eq!(s["basePath"], "/api/9");
    let patch =
        &s["paths"]["/http/upstreams/{httpUpstreamName}/servers/{httpUpstreamServerId}"]["patch"];
    assert_eq!(patch["operationId"], "patchHttpUpstreamPeer");
    assert_eq!(patch["parameters"][0]["in"], "body");
    assert!(
        patch["responses"]["405"]["description"]
            .as_str()
            .unwrap()
            .contains("MethodDisabled")
    );
    let states = &def(&s, "NginxHTTPUpstreamPeer")["properties"]["state"]["enum"];
    assert_eq!(
        states,
        &json!(["up", "draining", "down", "unavail", "checking", "unhealthy"])
    );
    assert_eq!(
        def(&s, "NginxHTTPUpstreamConfServerMap")["example"][1]["down"],
        json!(true)
    );
}

#[test]
fn the_specs_own_examples_validate() {
    let s = spec();
    for (name, example) in [
        (
            "NginxHTTPUpstreamConfServerMap",
            def(&s, "NginxHTTPUpstreamConfServerMap")["example"].clone(),
        ),
        (
            "NginxHTTPUpstreamConfServer",
            def(&s, "NginxHTTPUpstreamConfServer")["example"].clone(),
        ),
        (
            "NginxHTTPUpstream",
            def(&s, "NginxHTTPUpstream")["example"]["upstream_backend"].clone(),
        ),
    ] {
        assert!(!example.is_null(), "{name} has an example");
        validate(&s, def(&s, name), &example, name, false).unwrap_or_else(|e| panic!("{e}"));
    }
    // The validator does reject what does not fit.
    let bad = json!({"id": "zero", "server": "a"});
    assert!(validate(&s, def(&s, "NginxHTTPUpstreamConfServer"), &bad, "x", true).is_err());
    let unknown = json!({"id": 0, "colour": "red"});
    assert!(
        validate(
            &s,
            def(&s, "NginxHTTPUpstreamConfServer"),
            &unknown,
            "x",
            true
        )
        .is_err()
    );
    let state = json!({"peers": [{"id": 0, "server": "a", "state": "sleeping"}]});
    assert!(validate(&s, def(&s, "NginxHTTPUpstream"), &state, "x", true).is_err());
}

/// The spec's path template for a request path under `/api/9`.
fn template(path: &str) -> Option<&'static str> {
    let p = path.split('?').next()?.strip_prefix("/api/9")?;
    let segs: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    Some(match segs.as_slice() {
        [] => "/",
        ["http"] => "/http/",
        ["http", "upstreams"] => "/http/upstreams/",
        ["http", "upstreams", _] => "/http/upstreams/{httpUpstreamName}/",
        ["http", "upstreams", _, "servers"] => "/http/upstreams/{httpUpstreamName}/servers/",
        ["http", "upstreams", _, "servers", _] => {
            "/http/upstreams/{httpUpstreamName}/servers/{httpUpstreamServerId}"
        }
        _ => return None,
    })
}

/// Checks one exchange against the spec; returns the parsed body.
fn check(s: &Value, method: &str, path: &str, status: u16, body: &str) -> Value {
    let what = format!("{method} {path} -> {status} {body}");
    let t = template(path).unwrap_or_else(|| panic!("{what}: not a spec path"));
    let op = &s["paths"][t][method.to_ascii_lowercase()];
    assert!(op.is_object(), "{what}: the spec has no {method} {t}");
    let resp = &op["responses"][status.to_string()];
    assert!(
        resp.is_object(),
        "{what}: the spec lists no {status} for {method} {t}"
    );
    let v: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"))
    };
    match resp.get("schema") {
        Some(schema) => {
            validate(s, schema, &v, "body", true).unwrap_or_else(|e| panic!("{what}: {e}"))
        }
        None => assert!(v.is_null(), "{what}: the spec defines no body"),
    }
    if status >= 400 {
        let code = v["error"]["code"].as_str().expect("an error code");
        let desc = resp["description"].as_str().unwrap_or("");
        assert!(
            desc.contains(&format!("(*{code}*)")) || desc.contains(&format!("*{code}*")),
            "{what}: the spec names no {code} for {status}: {desc}"
        );
        assert_eq!(v["error"]["status"], json!(status), "{what}");
        assert!(
            v["error"]["text"].as_str().is_some_and(|t| !t.is_empty()),
            "{what}"
        );
        assert_eq!(v["request_id"].as_str().map(str::len), Some(32), "{what}");
    }
    v
}

fn pools(b: &[Backend]) -> Pools {
    Pools::new()
        .with(
            PoolSpec::new("app")
                .weighted("node1", b[0].addr(), 5)
                .member("node2", b[1].addr())
                .member("node3", b[2].addr()),
        )
        .with(PoolSpec::new("legacy").member("node1", b[0].addr()))
}

#[test]
fn every_answer_is_one_the_spec_defines() {
    let s = spec();
    let b = Backend::start_many(3);
    let plus = FakePlus::start_with(
        &pools(&b),
        &FakePlusOptions {
            write: true,
            static_pools: vec!["legacy".into()],
        },
    );
    let base = plus.url();
    let exchanges: Vec<(&str, String, String, u16)> = vec![
        ("GET", "/".into(), String::new(), 200),
        ("GET", "/http/".into(), String::new(), 200),
        ("GET", "/http/upstreams/".into(), String::new(), 200),
        ("GET", "/http/upstreams/?fields=zone".into(), String::new(), 200),
        ("GET", "/http/upstreams/app/".into(), String::new(), 200),
        ("GET", "/http/upstreams/app".into(), String::new(), 200),
        ("GET", "/http/upstreams/app/servers/".into(), String::new(), 200),
        ("GET", "/http/upstreams/app/servers/1".into(), String::new(), 200),
        ("PATCH", "/http/upstreams/app/servers/1".into(), r#"{"drain":true}"#.into(), 200),
        ("PATCH", "/http/upstreams/app/servers/1".into(), r#"{"down":true}"#.into(), 200),
        ("PATCH", "/http/upstreams/app/servers/1".into(), r#"{"down":false,"drain":false}"#.into(), 200),
        ("PATCH", "/http/upstreams/app/servers/1".into(), r#"{"weight":7,"max_fails":2,"fail_timeout":"5s","slow_start":"1m","route":"a","max_conns":10}"#.into(), 200),
        ("POST", "/http/upstreams/app/servers/".into(), r#"{"server":"127.0.0.1:1","backup":true}"#.into(), 201),
        ("POST", "/http/upstreams/app/servers/".into(), r#"{"server":"127.0.0.1:1"}"#.into(), 409),
        ("POST", "/http/upstreams/app/servers/".into(), r#"{"weight":2}"#.into(), 400),
        ("DELETE", "/http/upstreams/app/servers/3".into(), String::new(), 200),
        ("DELETE", "/http/upstreams/app/".into(), String::new(), 204),
        // Errors.
        ("GET", "/http/upstreams/nope/".into(), String::new(), 404),
        ("GET", "/http/upstreams/nope/servers/".into(), String::new(), 404),
        ("PATCH", "/http/upstreams/nope/servers/0".into(), r#"{"down":true}"#.into(), 404),
        ("GET", "/http/upstreams/legacy/".into(), String::new(), 400),
        ("GET", "/http/upstreams/legacy/servers/".into(), String::new(), 400),
        ("PATCH", "/http/upstreams/legacy/servers/0".into(), r#"{"down":true}"#.into(), 400),
        ("GET", "/http/upstreams/app/servers/99".into(), String::new(), 404),
        ("PATCH", "/http/upstreams/app/servers/99".into(), r#"{"down":true}"#.into(), 404),
        ("GET", "/http/upstreams/app/servers/x".into(), String::new(), 400),
        ("PATCH", "/http/upstreams/app/servers/x".into(), r#"{"down":true}"#.into(), 400),
        ("PATCH", "/http/upstreams/app/servers/1".into(), "{not json".into(), 415),
        ("PATCH", "/http/upstreams/app/servers/1".into(), r#"{"weight":0}"#.into(), 400),
        ("PATCH", "/http/upstreams/app/servers/1".into(), r#"{"weight":"heavy"}"#.into(), 400),
        ("PATCH", "/http/upstreams/app/servers/1".into(), r#"{"down":"yes"}"#.into(), 400),
        ("PATCH", "/http/upstreams/app/servers/1".into(), r#"{"colour":"red"}"#.into(), 400),
        ("PATCH", "/http/upstreams/app/servers/1".into(), r#"{"down":{"x":1}}"#.into(), 400),
        ("PATCH", "/http/upstreams/app/servers/1".into(), r#"{"backup":true}"#.into(), 400),
        ("PATCH", "/http/upstreams/app/servers/1".into(), r#"{"server":""}"#.into(), 400),
        ("PATCH", "/http/upstreams/app/servers/1".into(), r#"{"max_conns":-1}"#.into(), 400),
        ("PATCH", "/http/upstreams/app/servers/1".into(), r#"{"max_fails":-1}"#.into(), 400),
        ("PATCH", "/http/upstreams/app/servers/1".into(), r#"{"fail_timeout":"soon"}"#.into(), 400),
        ("PATCH", "/http/upstreams/app/servers/1".into(), r#"{"slow_start":"1.5s"}"#.into(), 400),
    ];
    let mut codes = BTreeSet::new();
    for (method, path, body, want) in &exchanges {
        let url = format!("{base}{path}");
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", "application/json")]
        };
        let r = http::request(method, &url, headers, body)
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        assert_eq!(r.status, *want, "{method} {path} {body}: {}", r.body);
        let v = check(&s, method, &format!("/api/9{path}"), r.status, &r.body);
        if let Some(c) = v["error"]["code"].as_str() {
            codes.insert(c.to_string());
        }
    }
    assert_eq!(
        codes.into_iter().collect::<Vec<_>>(),
        [
            "EntryExists",
            "JsonError",
            "UpstreamBadAddress",
            "UpstreamBadFailTimeout",
            "UpstreamBadMaxConns",
            "UpstreamBadMaxFails",
            "UpstreamBadServerId",
            "UpstreamBadSlowStart",
            "UpstreamBadWeight",
            "UpstreamConfFormatError",
            "UpstreamNotFound",
            "UpstreamServerNotFound",
            "UpstreamStatic",
        ]
    );

    // Writes switched off: every write is 405 MethodDisabled, reads work.
    plus.set_write(false);
    for (method, path, body) in [
        ("PATCH", "/http/upstreams/app/servers/1", r#"{"down":true}"#),
        (
            "POST",
            "/http/upstreams/app/servers/",
            r#"{"server":"127.0.0.1:2"}"#,
        ),
        ("DELETE", "/http/upstreams/app/servers/1", ""),
        ("DELETE", "/http/upstreams/app/", ""),
    ] {
        let r = http::request(method, &format!("{base}{path}"), &[], body).unwrap();
        assert_eq!(r.status, 405, "{method} {path}: {}", r.body);
        let v = check(&s, method, &format!("/api/9{path}"), r.status, &r.body);
        assert_eq!(v["error"]["code"], "MethodDisabled");
    }
    let r = http::get(&format!("{base}/http/upstreams/app/servers/")).unwrap();
    check(
        &s,
        "GET",
        "/api/9/http/upstreams/app/servers/",
        r.status,
        &r.body,
    );

    // Another version: 404 UnknownVersion, in the spec's error object.
    let r = http::get(&base.replace("/api/9", "/api/8/http/upstreams/")).unwrap();
    assert_eq!(r.status, 404);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    validate(&s, def(&s, "NginxError"), &v, "body", true).unwrap();
    assert_eq!(v["error"]["code"], "UnknownVersion");

    // Every request was logged, with its status.
    let log = plus.requests();
    assert_eq!(log.len(), exchanges.len() + 4 + 2);
    assert_eq!(log[8].method, "PATCH");
    assert_eq!(log[8].body, r#"{"drain":true}"#);
    assert_eq!(log[8].status, 200);
}

#[test]
fn servers_carry_the_fields_of_the_specs_example() {
    let s = spec();
    let b = Backend::start_many(3);
    let plus = FakePlus::start(&pools(&b));
    let r = http::get(&format!("{}/http/upstreams/app/servers/", plus.url())).unwrap();
    let got: Value = serde_json::from_str(&r.body).unwrap();
    let keys = |v: &Value| {
        v.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>()
    };
    let example = &def(&s, "NginxHTTPUpstreamConfServerMap")["example"];
    for x in got.as_array().unwrap() {
        assert_eq!(keys(x), keys(&example[0]), "{x}");
    }
    let r = http::get(&format!("{}/http/upstreams/app/", plus.url())).unwrap();
    let got: Value = serde_json::from_str(&r.body).unwrap();
    let example = &def(&s, "NginxHTTPUpstream")["example"]["upstream_backend"];
    assert_eq!(keys(&got), keys(example));
    let peer_keys = keys(&example["peers"][1]);
    for p in got["peers"].as_array().unwrap() {
        let k = keys(p);
        assert!(
            k.is_subset(&peer_keys),
            "{:?} beyond the example's {peer_keys:?}",
            k.difference(&peer_keys)
        );
    }
}

#[test]
fn state_follows_the_writes_and_the_tests_switches() {
    let b = Backend::start_many(3);
    let plus = FakePlus::start(&pools(&b));
    let a2 = b[1].addr().to_string();
    let peer = |plus: &FakePlus| -> Value {
        let r = http::get(&format!("{}/http/upstreams/app", plus.url())).unwrap();
        let v: Value = serde_json::from_str(&r.body).unwrap();
        v["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["server"] == a2.as_str())
            .cloned()
            .unwrap()
    };
    let patch = |body: &str| {
        http::request(
            "PATCH",
            &format!("{}/http/upstreams/app/servers/1", plus.url()),
            &[],
            body,
        )
        .unwrap()
    };
    assert_eq!(peer(&plus)["state"], "up");
    assert_eq!(patch(r#"{"drain":true}"#).status, 200);
    plus.set_active("app", &a2, 3);
    let p = peer(&plus);
    assert_eq!(
        (p["state"].clone(), p["active"].clone()),
        (json!("draining"), json!(3))
    );
    assert!(plus.server("app", &a2).unwrap().drain);
    assert_eq!(patch(r#"{"down":true}"#).status, 200);
    assert_eq!(peer(&plus)["state"], "down");
    assert_eq!(patch(r#"{"down":false,"drain":false}"#).status, 200);
    plus.set_health("app", &a2, "unhealthy");
    let p = peer(&plus);
    assert_eq!(p["state"], "unhealthy");
    assert_eq!(p["health_checks"]["last_passed"], false);
    // A rejected PATCH changes nothing, even in the fields that were valid.
    let before = plus.server("app", &a2).unwrap();
    assert_eq!(patch(r#"{"weight":9,"down":"yes"}"#).status, 400);
    assert_eq!(plus.server("app", &a2).unwrap(), before);
    // The zone switch.
    plus.set_zone("app", false);
    let r = http::get(&format!("{}/http/upstreams/", plus.url())).unwrap();
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert!(v.get("app").is_none() && v.get("legacy").is_some(), "{v}");
    assert_eq!(patch(r#"{"down":true}"#).status, 400);
    // Weights from the pools, and names with characters a URL escapes.
    let plus =
        FakePlus::start(&Pools::new().with(PoolSpec::new("a:b").weighted("n", b[0].addr(), 4)));
    let r = http::get(&format!("{}/http/upstreams/a%3Ab/servers/", plus.url())).unwrap();
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v[0]["weight"], 4);
}
