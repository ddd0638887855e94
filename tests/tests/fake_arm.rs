//! The fake ARM checked against Azure's published examples
//! (`tests/fixtures/azure/`) and the REST contract drivers rely on.

use lb_lab::fake_arm::{EXAMPLE_BACKEND_HEALTH, EXAMPLE_CREATE, EXAMPLE_GET};
use lb_lab::{FakeArm, GetFault, PutFault, http};
use serde_json::{Value, json};

const TOKEN: &str = "test-token";
const V: &str = "api-version=2025-07-01";

fn example(text: &str) -> Value {
    serde_json::from_str(text).expect("the example parses")
}

fn send(
    arm: &FakeArm,
    method: &str,
    path_query: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> http::Response {
    let url = if path_query.starts_with("http") {
        path_query.to_owned()
    } else {
        format!("{}{path_query}", arm.endpoint())
    };
    let auth = format!("Bearer {TOKEN}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    headers.extend_from_slice(extra);
    http::request(method, &url, &headers, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

fn json_of(r: &http::Response) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("JSON body ({e}): {}", r.body))
}

fn without(mut v: Value, keys: &[&str]) -> Value {
    fn walk(v: &mut Value, keys: &[&str]) {
        match v {
            Value::Object(o) => {
                for k in keys {
                    o.remove(*k);
                }
                o.values_mut().for_each(|x| walk(x, keys));
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, keys)),
            _ => {}
        }
    }
    walk(&mut v, keys);
    v
}

fn gw() -> String {
    FakeArm::gateway_path("subid", "rg1", "appgw")
}

/// Follows an `Azure-AsyncOperation` URL to its end; returns every status read.
fn follow(arm: &FakeArm, url: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    for _ in 0..20 {
        let r = send(arm, "GET", url, &[], "");
        assert_eq!(r.status, 200, "{r:?}");
        let v = json_of(&r);
        let s = v["status"].as_str().expect("status").to_owned();
        seen.push(v);
        if s != "InProgress" {
            return seen;
        }
        assert_eq!(
            r.header("retry-after"),
            Some("10"),
            "InProgress carries Retry-After"
        );
    }
    panic!("the operation never ended: {seen:?}")
}

#[test]
fn serves_the_published_get_example_with_an_etag() {
    let arm = FakeArm::start();
    arm.accept_token(TOKEN);
    let ex = example(EXAMPLE_GET);
    let body = ex["responses"]["200"]["body"].clone();
    arm.insert_gateway("subid", "rg1", "appgw", body.clone());

    let r = send(&arm, "GET", &format!("{}?{V}", gw()), &[], "");
    assert_eq!(r.status, 200, "{r:?}");
    let got = json_of(&r);
    let etag = got["etag"]
        .as_str()
        .expect("an etag in the body")
        .to_owned();
    assert!(etag.starts_with("W/\""), "{etag}");
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(
        without(got.clone(), &["etag"]),
        body,
        "the example body, verbatim"
    );
    // Key order is kept too.
    let keys = |v: &Value| {
        v["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&got), keys(&body));
    // The string form of backend addresses in the example is served as is.
    assert_eq!(
        got["properties"]["backendAddressPools"][1]["properties"]["backendAddresses"],
        json!(["10.0.0.1", "10.0.0.2"])
    );

    // The same path in another case names the same gateway, as in ARM.
    let r = send(
        &arm,
        "GET",
        &format!("{}?{V}", gw().to_ascii_lowercase()),
        &[],
        "",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn refuses_what_arm_refuses() {
    let arm = FakeArm::start();
    arm.accept_token(TOKEN);
    let body = example(EXAMPLE_GET)["responses"]["200"]["body"].clone();
    arm.insert_gateway("subid", "rg1", "appgw", body);
    let url = format!("{}{}?{V}", arm.endpoint(), gw());

    let r = http::request("GET", &url, &[], "").unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(json_of(&r)["error"]["code"], "AuthenticationFailed");
    assert!(r.header("www-authenticate").is_some());
    let r = http::request("GET", &url, &[("Authorization", "Bearer wrong")], "").unwrap();
    assert_eq!(json_of(&r)["error"]["code"], "InvalidAuthenticationToken");

    let r = send(&arm, "GET", &gw(), &[], "");
    assert_eq!(r.status, 400);
    assert_eq!(json_of(&r)["error"]["code"], "MissingApiVersionParameter");

    let other = FakeArm::gateway_path("subid", "rg1", "nope");
    let r = send(&arm, "GET", &format!("{other}?{V}"), &[], "");
    assert_eq!(r.status, 404);
    assert_eq!(json_of(&r)["error"]["code"], "ResourceNotFound");

    // Duplicate addresses and malformed entries are refused, nothing stored.
    let before = arm.gateway("subid", "rg1", "appgw").unwrap();
    let mut bad = before.clone();
    bad["properties"]["backendAddressPools"][1]["properties"]["backendAddresses"] =
        json!(["10.0.0.1", {"ipAddress": "10.0.0.1"}]);
    let r = send(&arm, "PUT", &format!("{}?{V}", gw()), &[], &bad.to_string());
    assert_eq!(r.status, 400, "{r:?}");
    bad["properties"]["backendAddressPools"][1]["properties"]["backendAddresses"] =
        json!([{"ipAddress": "10.0.0.1", "fqdn": "a.example"}]);
    let r = send(&arm, "PUT", &format!("{}?{V}", gw()), &[], &bad.to_string());
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(arm.gateway("subid", "rg1", "appgw").unwrap(), before);
}

#[test]
fn accepts_the_published_create_example() {
    let arm = FakeArm::start();
    arm.accept_token(TOKEN);
    let ex = example(EXAMPLE_CREATE);
    let request = ex["parameters"]["parameters"].clone();
    let p = &ex["parameters"];
    let (sub, rg, name) = (
        p["subscriptionId"].as_str().unwrap(),
        p["resourceGroupName"].as_str().unwrap(),
        p["applicationGatewayName"].as_str().unwrap(),
    );
    let path = FakeArm::gateway_path(sub, rg, name);

    let r = send(
        &arm,
        "PUT",
        &format!("{path}?{V}"),
        &[],
        &request.to_string(),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let op = r
        .header("azure-asyncoperation")
        .expect("Azure-AsyncOperation")
        .to_owned();
    assert!(op.starts_with(&arm.endpoint()), "{op}");
    assert!(
        op.contains("/providers/Microsoft.Network/locations/"),
        "{op}"
    );
    assert_eq!(r.header("retry-after"), Some("10"));
    let created = json_of(&r);
    assert_eq!(created["properties"]["provisioningState"], "Updating");

    // The response has the shape of the example's 201: the same top-level
    // keys and property names (Azure adds read-only properties we do not
    // invent, such as operationalState).
    let resp201 = &ex["responses"]["201"]["body"];
    for k in ["name", "id", "type"] {
        assert!(created.get(k).is_some(), "{k} missing from {created}");
        assert_eq!(created[k], resp201[k], "{k}");
    }
    // (The example's response is in another region than its request: the
    // examples are not self-consistent; the location asked for is kept.)
    assert_eq!(created["location"], request["location"]);
    // The properties are the request's, plus provisioningState. (The
    // example's 201 also shows defaults Azure fills in, such as empty
    // `probes`, and lacks the request's `trustedRootCertificates`: it is not
    // self-consistent, so the fake does not invent the defaults.)
    let mut want: Vec<&String> = request["properties"].as_object().unwrap().keys().collect();
    let ps = "provisioningState".to_string();
    want.push(&ps);
    let mut have: Vec<&String> = created["properties"].as_object().unwrap().keys().collect();
    want.sort();
    have.sort();
    assert_eq!(have, want);
    assert!(resp201["properties"].get("provisioningState").is_some());
    // Pools read back as in the example's response.
    assert_eq!(
        without(
            created["properties"]["backendAddressPools"].clone(),
            &["provisioningState"]
        ),
        without(
            resp201["properties"]["backendAddressPools"].clone(),
            &["provisioningState"]
        )
    );
    // Every pool got an id as in the example response.
    assert_eq!(
        created["properties"]["backendAddressPools"][0]["id"],
        resp201["properties"]["backendAddressPools"][0]["id"]
    );
    // The request is kept verbatim apart from what ARM fills in.
    let stored = arm.gateway(sub, rg, name).unwrap();
    let strip = |v: Value| without(v, &["id", "etag", "provisioningState", "name", "type"]);
    assert_eq!(strip(stored.clone()), strip(request.clone()));

    let statuses = follow(&arm, &op);
    assert_eq!(
        statuses
            .iter()
            .map(|s| s["status"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["InProgress", "Succeeded"]
    );
    let after = json_of(&send(&arm, "GET", &format!("{path}?{V}"), &[], ""));
    assert_eq!(after["properties"]["provisioningState"], "Succeeded");
    assert_ne!(
        after["etag"], created["etag"],
        "the etag changes when the operation ends"
    );
}

#[test]
fn if_match_is_enforced_and_the_etag_changes_on_every_put() {
    let arm = FakeArm::start();
    arm.accept_token(TOKEN);
    arm.insert_gateway(
        "subid",
        "rg1",
        "appgw",
        example(EXAMPLE_GET)["responses"]["200"]["body"].clone(),
    );
    let url = format!("{}?{V}", gw());
    let first = json_of(&send(&arm, "GET", &url, &[], ""));
    let etag1 = first["etag"].as_str().unwrap().to_owned();

    let mut changed = first.clone();
    changed["properties"]["backendAddressPools"][1]["properties"]["backendAddresses"] =
        json!(["10.0.0.1"]);
    changed["properties"]["someFuturePropertyAzureAdds"] = json!({"nested": [1, 2, {"x": null}]});
    let r = send(
        &arm,
        "PUT",
        &url,
        &[("If-Match", "W/\"stale\"")],
        &changed.to_string(),
    );
    assert_eq!(r.status, 412, "{r:?}");
    assert_eq!(json_of(&r)["error"]["code"], "PreconditionFailed");
    assert_eq!(
        arm.gateway("subid", "rg1", "appgw").unwrap(),
        first,
        "nothing stored"
    );

    let r = send(
        &arm,
        "PUT",
        &url,
        &[("If-Match", &etag1)],
        &changed.to_string(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let etag2 = json_of(&r)["etag"].as_str().unwrap().to_owned();
    assert_ne!(etag1, etag2);
    // The same If-Match again is now stale.
    let r = send(
        &arm,
        "PUT",
        &url,
        &[("If-Match", &etag1)],
        &changed.to_string(),
    );
    assert_eq!(r.status, 412);

    let got = json_of(&send(&arm, "GET", &url, &[], ""));
    assert_eq!(
        got["properties"]["someFuturePropertyAzureAdds"],
        json!({"nested": [1, 2, {"x": null}]})
    );
    assert_eq!(
        got["properties"]["backendAddressPools"][1]["properties"]["backendAddresses"],
        json!(["10.0.0.1"])
    );
    assert_eq!(arm.put_count(), 3);
    let puts: Vec<_> = arm
        .requests()
        .into_iter()
        .filter(|l| l.is_gateway_put())
        .collect();
    assert_eq!(
        puts.iter().map(|l| l.status).collect::<Vec<_>>(),
        [412, 200, 412]
    );
    assert_eq!(puts[1].if_match.as_deref(), Some(etag1.as_str()));
}

#[test]
fn a_put_during_an_operation_supersedes_it() {
    let arm = FakeArm::start();
    arm.accept_token(TOKEN);
    arm.insert_gateway(
        "subid",
        "rg1",
        "appgw",
        example(EXAMPLE_GET)["responses"]["200"]["body"].clone(),
    );
    let url = format!("{}?{V}", gw());
    let body = json_of(&send(&arm, "GET", &url, &[], ""));
    let op1 = send(&arm, "PUT", &url, &[], &body.to_string())
        .header("azure-asyncoperation")
        .unwrap()
        .to_owned();
    let op2 = send(&arm, "PUT", &url, &[], &body.to_string())
        .header("azure-asyncoperation")
        .unwrap()
        .to_owned();
    let first = follow(&arm, &op1);
    let last = first.last().unwrap();
    assert_eq!(last["status"], "Canceled");
    assert_eq!(
        last["error"]["code"],
        "CanceledAndSupersededDueToAnotherOperation"
    );
    assert_eq!(follow(&arm, &op2).last().unwrap()["status"], "Succeeded");
}

#[test]
fn injected_faults_answer_as_arm_does() {
    let arm = FakeArm::start();
    arm.accept_token(TOKEN);
    arm.insert_gateway(
        "subid",
        "rg1",
        "appgw",
        example(EXAMPLE_GET)["responses"]["200"]["body"].clone(),
    );
    let url = format!("{}?{V}", gw());
    let body = json_of(&send(&arm, "GET", &url, &[], "")).to_string();
    let cases = [
        (
            PutFault::Superseded,
            409,
            "CanceledAndSupersededDueToAnotherOperation",
        ),
        (
            PutFault::AnotherOperationInProgress,
            409,
            "AnotherOperationInProgress",
        ),
        (PutFault::PreconditionFailed, 412, "PreconditionFailed"),
        (PutFault::TooManyRequests, 429, "TooManyRequests"),
        (PutFault::ServerError, 500, "InternalServerError"),
        (
            PutFault::Forbidden("LinkedAuthorizationFailed".into()),
            403,
            "LinkedAuthorizationFailed",
        ),
    ];
    for (fault, status, code) in cases {
        let before = arm.gateway("subid", "rg1", "appgw").unwrap();
        arm.push_put_fault(fault);
        let r = send(&arm, "PUT", &url, &[], &body);
        assert_eq!(
            (r.status, json_of(&r)["error"]["code"].as_str().unwrap()),
            (status, code)
        );
        if status == 429 {
            assert_eq!(r.header("retry-after"), Some("10"));
        }
        assert_eq!(
            arm.gateway("subid", "rg1", "appgw").unwrap(),
            before,
            "{code}: nothing stored"
        );
    }

    // Failed, reverting: the operation reports Azure's code and message.
    let before = arm.gateway("subid", "rg1", "appgw").unwrap();
    let mut changed: Value = serde_json::from_str(&body).unwrap();
    changed["tags"] = json!({"x": "y"});
    arm.push_put_fault(PutFault::Failed {
        code: "ApplicationGatewayBackendAddressPoolAlreadyInUse".into(),
        message: "it broke".into(),
        keep: false,
    });
    let r = send(&arm, "PUT", &url, &[], &changed.to_string());
    assert_eq!(r.status, 200);
    let end = follow(&arm, r.header("azure-asyncoperation").unwrap());
    let end = end.last().unwrap();
    assert_eq!(end["status"], "Failed");
    assert_eq!(
        end["error"]["code"],
        "ApplicationGatewayBackendAddressPoolAlreadyInUse"
    );
    assert_eq!(end["error"]["message"], "it broke");
    let after = arm.gateway("subid", "rg1", "appgw").unwrap();
    assert_eq!(after["properties"]["provisioningState"], "Failed");
    assert!(after.get("tags").is_none(), "reverted");
    assert_eq!(
        without(after, &["etag", "provisioningState"]),
        without(before, &["etag", "provisioningState"])
    );

    // A concurrent change lands before the PUT: the old If-Match is stale.
    let current = arm.gateway("subid", "rg1", "appgw").unwrap();
    let etag = current["etag"].as_str().unwrap().to_owned();
    arm.push_put_fault(PutFault::ConcurrentChange(Box::new(|g| {
        g["properties"]["backendAddressPools"][0]["properties"]["backendAddresses"] =
            json!([{"ipAddress": "10.9.9.9"}]);
    })));
    let r = send(
        &arm,
        "PUT",
        &url,
        &[("If-Match", &etag)],
        &current.to_string(),
    );
    assert_eq!(r.status, 412);
    assert_eq!(
        arm.gateway("subid", "rg1", "appgw").unwrap()["properties"]["backendAddressPools"][0]["properties"]
            ["backendAddresses"],
        json!([{"ipAddress": "10.9.9.9"}])
    );

    arm.push_get_fault(GetFault::TooManyRequests);
    arm.push_get_fault(GetFault::ServiceUnavailable);
    arm.push_get_fault(GetFault::Forbidden("AuthorizationFailed".into()));
    assert_eq!(send(&arm, "GET", &url, &[], "").status, 429);
    assert_eq!(send(&arm, "GET", &url, &[], "").status, 503);
    let r = send(&arm, "GET", &url, &[], "");
    assert_eq!(
        (r.status, json_of(&r)["error"]["code"].clone()),
        (403, json!("AuthorizationFailed"))
    );
    assert_eq!(send(&arm, "GET", &url, &[], "").status, 200);
}

/// A gateway whose pools and settings are those of the backend-health example.
fn health_example_gateway() -> Value {
    let id = |kind: &str, n: &str| json!({"id": format!("{}/{kind}/{n}", gw())});
    json!({
        "location": "westus2",
        "properties": {
            "backendAddressPools": [
                {"name": "MFAnalyticsPool", "properties": {"backendAddresses": [{"ipAddress": "10.220.1.8"}]}},
                {"name": "MFPool", "properties": {"backendAddresses": ["10.220.1.4", {"ipAddress": "10.220.1.5"}]}}
            ],
            "backendHttpSettingsCollection": [
                {"name": "MFPoolSettings", "properties": {"port": 80, "protocol": "Http"}}
            ],
            "requestRoutingRules": [
                {"name": "r1", "properties": {"ruleType": "Basic", "priority": 10,
                    "backendAddressPool": id("backendAddressPools", "MFAnalyticsPool"),
                    "backendHttpSettings": id("backendHttpSettingsCollection", "MFPoolSettings")}},
                {"name": "r2", "properties": {"ruleType": "PathBasedRouting", "priority": 20,
                    "urlPathMap": id("urlPathMaps", "m")}}
            ],
            "urlPathMaps": [
                {"name": "m", "properties": {
                    "defaultBackendAddressPool": id("backendAddressPools", "MFPool"),
                    "defaultBackendHttpSettings": id("backendHttpSettingsCollection", "MFPoolSettings"),
                    "pathRules": []}}
            ]
        }
    })
}

#[test]
fn answers_backend_health_in_the_published_shape() {
    let arm = FakeArm::start();
    arm.accept_token(TOKEN);
    arm.insert_gateway("subid", "rg1", "appgw", health_example_gateway());
    let ex = example(EXAMPLE_BACKEND_HEALTH);

    // 202 + Location, polled until 200.
    arm.set_health_polls(2);
    let r = send(
        &arm,
        "POST",
        &format!("{}/backendhealth?{V}", gw()),
        &[],
        "",
    );
    assert_eq!(r.status, 202, "{r:?}");
    let loc = r.header("location").expect("Location").to_owned();
    let example_loc = ex["responses"]["202"]["headers"]["location"]
        .as_str()
        .unwrap();
    let tail = |u: &str| {
        u.split("/providers/")
            .nth(1)
            .unwrap()
            .split('/')
            .take(3)
            .collect::<Vec<_>>()
            .join("/")
    };
    assert_eq!(
        tail(&loc).split('/').next(),
        tail(example_loc).split('/').next()
    );
    assert!(loc.contains("/operationResults/"), "{loc}");
    let r = send(&arm, "GET", &loc, &[], "");
    assert_eq!(r.status, 202);
    let r = send(&arm, "GET", &loc, &[], "");
    assert_eq!(r.status, 200, "{r:?}");
    let got = json_of(&r);
    assert_eq!(
        without(got.clone(), &["healthProbeLog"]),
        ex["responses"]["200"]["body"],
        "the example's body, for the example's pools"
    );
    assert_eq!(
        got["backendAddressPools"][0]["backendHttpSettingsCollection"][0]["servers"][0]["healthProbeLog"],
        "Success. Received 200 status code"
    );

    // 200 at once, with whatever health is set (values Azure may add too).
    arm.set_health_polls(0);
    arm.set_health("10.220.1.4", "Down");
    arm.set_health("10.220.1.5", "Warming");
    let r = send(
        &arm,
        "POST",
        &format!("{}/backendhealth?{V}", gw()),
        &[],
        "",
    );
    assert_eq!(r.status, 200);
    let servers =
        &json_of(&r)["backendAddressPools"][1]["backendHttpSettingsCollection"][0]["servers"];
    assert_eq!(servers[0]["health"], "Down");
    assert_eq!(servers[1]["health"], "Warming");
}

#[test]
fn issues_tokens_for_the_client_credentials_grant() {
    let arm = FakeArm::start();
    arm.add_client("tenant1", "app1", "s3cret");
    arm.insert_gateway("subid", "rg1", "appgw", health_example_gateway());
    let token_url = format!("{}/tenant1/oauth2/v2.0/token", arm.endpoint());
    let form = "client_id=app1&client_secret=s3cret&grant_type=client_credentials&scope=https%3A%2F%2Fmanagement.azure.com%2F.default";
    let ct = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = http::request("POST", &token_url, &ct, form).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let t = json_of(&r);
    assert_eq!(t["token_type"], "Bearer");
    let token = t["access_token"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {token}");
    let url = format!("{}{}?{V}", arm.endpoint(), gw());
    assert_eq!(
        http::request("GET", &url, &[("Authorization", &auth)], "")
            .unwrap()
            .status,
        200
    );

    let r = http::request("POST", &token_url, &ct, &form.replace("s3cret", "wrong")).unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(json_of(&r)["error"], "invalid_client");
    let r = http::request("POST", &token_url, &ct, &form.replace("%2F.default", "")).unwrap();
    assert_eq!(json_of(&r)["error"], "invalid_scope");
    let log = arm.token_requests();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].scope, "https://management.azure.com/.default");
    assert_eq!(
        log.iter().map(|l| l.status).collect::<Vec<_>>(),
        [200, 401, 400]
    );
}
