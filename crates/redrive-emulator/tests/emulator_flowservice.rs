//! Conformance of the Adobe Flow Service + IMS double against api-facts §3, §4.3 and §5.3,
//! over real HTTP/1.1 on 127.0.0.1.
//!
//! The client below is a minimal HTTP/1.1 client over `tokio::net::TcpStream` (one connection per
//! request, `Content-Length` and chunked bodies): `hyper`/`hyper-util`/`http-body-util` are in
//! Cargo.lock but not workspace dependencies, and adding them needs the root Cargo.toml.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use redrive_emulator::{
    self as emulator, BucketSpec, EmulatorConfig, EmulatorHandle, FaultConfig, FlowRunSpec,
    FlowRunStatus, FlowServiceConfig, FlowSpec, ImsClientSpec, ReTriggerOutcome, RetriggerResponse,
    RunOutcome, Scenario,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ------------------------------------------------------------------------------------------
// HTTP client

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(i) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_line = std::str::from_utf8(&b[..i]).unwrap_or("0");
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[i + 2 + size + 2..];
    }
}

async fn http(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let body = if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    }
}

const BASE: &str = "/data/foundation/flowservice";
const CLIENT: &str = "itest-client";
const SECRET: &str = "itest-secret";
const ORG: &str = "EMU0000000000000000000001@AdobeOrg";

/// A caller of the Platform API with the four documented headers.
struct Platform<'a> {
    emu: &'a EmulatorHandle,
    token: String,
    api_key: String,
    sandbox: String,
}

impl Platform<'_> {
    fn headers(&self) -> Vec<(&str, String)> {
        vec![
            ("Authorization", format!("Bearer {}", self.token)),
            ("x-api-key", self.api_key.clone()),
            ("x-gw-ims-org-id", ORG.to_string()),
            ("x-sandbox-name", self.sandbox.clone()),
        ]
    }
    async fn call(&self, method: &str, path: &str, extra: &[(&str, &str)]) -> Resp {
        let h = self.headers();
        let mut hs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        hs.extend_from_slice(extra);
        if method == "POST" {
            hs.push(("Content-Type", "application/json"));
        }
        http(
            &self.emu.endpoint,
            method,
            &format!("{BASE}{path}"),
            &hs,
            "",
        )
        .await
    }
    async fn get(&self, path: &str) -> Resp {
        self.call("GET", path, &[]).await
    }
    async fn retrigger(&self, run: &str) -> Resp {
        self.call("POST", &format!("/runs/{run}/action?op=re-trigger"), &[])
            .await
    }
}

async fn token_request(emu: &EmulatorHandle, form: &str) -> Resp {
    http(
        &emu.endpoint,
        "POST",
        "/ims/token/v3",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form,
    )
    .await
}

async fn token(emu: &EmulatorHandle, id: &str, secret: &str) -> String {
    let r = token_request(
        emu,
        &format!("grant_type=client_credentials&client_id={id}&client_secret={secret}&scope=openid,AdobeID,read_organizations,additional_info.projectedProductContext,session"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"].as_str().unwrap().to_string()
}

async fn platform(emu: &EmulatorHandle) -> Platform<'_> {
    Platform {
        emu,
        token: token(emu, CLIENT, SECRET).await,
        api_key: CLIENT.to_string(),
        sandbox: "prod".to_string(),
    }
}

fn config() -> EmulatorConfig {
    EmulatorConfig {
        flowservice: FlowServiceConfig {
            default_run_time: Duration::from_secs(30),
            ..FlowServiceConfig::default()
        },
        ..EmulatorConfig::default()
    }
}

const F_FAILED: &str = "11111111-1111-4111-8111-111111111111";
const F_ZERO: &str = "22222222-2222-4222-8222-222222222222";
const F_STREAM: &str = "33333333-3333-4333-8333-333333333333";
const F_SCRIPT: &str = "44444444-4444-4444-8444-444444444444";

/// Runs: `fa-*` (failed flow), `z-*` (zero-records / ok), `s-*` (streaming), `sc-*` (scripted).
fn scenario() -> Scenario {
    let h = |n: u64| Duration::from_secs(n * 3600);
    Scenario::new()
        .with_ims_client(ImsClientSpec::new(CLIENT, SECRET))
        .with_ims_client(ImsClientSpec::new("narrow-client", "narrow-secret").scopes(&["openid"]))
        .with_flow(
            FlowSpec::batch("crm-daily")
                .id(F_FAILED)
                .run(FlowRunSpec::failed("CONNECTOR-2001", h(5)).id("fa-1"))
                .run(FlowRunSpec::succeeded(500, h(4)).id("fa-2"))
                .run(FlowRunSpec::failed("CONNECTOR-2001", h(3)).id("fa-3"))
                .run(FlowRunSpec::running(h(1), None).id("fa-run")),
        )
        .with_flow(
            FlowSpec::batch("s3-hourly")
                .id(F_ZERO)
                .run(FlowRunSpec::new(RunOutcome::success_zero_records(), h(2)).id("z-0"))
                .run(FlowRunSpec::succeeded(42, h(6)).id("z-42")),
        )
        .with_flow(
            FlowSpec::streaming("web-stream")
                .id(F_STREAM)
                .run(FlowRunSpec::failed("CONNECTOR-1001", h(2)).id("s-f")),
        )
        .with_flow(
            FlowSpec::batch("scripted")
                .id(F_SCRIPT)
                .run_time(Duration::from_secs(20))
                .outcomes([
                    RunOutcome::failed("CONNECTOR-2001"),
                    RunOutcome::failed("CONNECTOR-2001"),
                    RunOutcome::success(900),
                ])
                .run(FlowRunSpec::failed("CONNECTOR-2001", h(1)).id("sc-0")),
        )
}

async fn start() -> EmulatorHandle {
    emulator::start(config(), scenario()).await.unwrap()
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

fn status_of(run: &Value) -> String {
    run["metrics"]["statusSummary"]["status"]
        .as_str()
        .unwrap()
        .to_string()
}

// ------------------------------------------------------------------------------------------
// IMS

#[tokio::test]
async fn ims_issues_bearer_tokens_with_documented_expiry() {
    let emu = start().await;
    let r = token_request(
        &emu,
        &format!("grant_type=client_credentials&client_id={CLIENT}&client_secret={SECRET}&scope=openid%2CAdobeID%2Cadditional_info.projectedProductContext"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["expires_in"], 86399);
    let t = v["access_token"].as_str().unwrap();
    assert!(!t.is_empty());
    // A second request issues a different token (no refresh tokens: just ask again).
    let t2 = token(&emu, CLIENT, SECRET).await;
    assert_ne!(t, t2);
    assert!(v.get("refresh_token").is_none());
}

#[tokio::test]
async fn ims_tokens_expire_on_the_emulated_clock() {
    let cfg = EmulatorConfig {
        flowservice: FlowServiceConfig {
            token_ttl: Duration::from_secs(60),
            ..FlowServiceConfig::default()
        },
        ..EmulatorConfig::default()
    };
    let emu = emulator::start(cfg, scenario()).await.unwrap();
    let r = token_request(
        &emu,
        &format!("grant_type=client_credentials&client_id={CLIENT}&client_secret={SECRET}"),
    )
    .await;
    assert_eq!(r.json()["expires_in"], 60);
    let p = Platform {
        emu: &emu,
        token: r.json()["access_token"].as_str().unwrap().to_string(),
        api_key: CLIENT.into(),
        sandbox: "prod".into(),
    };
    assert_eq!(p.get("/runs").await.status, 200);
    emu.advance_clock(Duration::from_secs(59));
    assert_eq!(p.get("/runs").await.status, 200);
    emu.advance_clock(Duration::from_secs(2));
    let r = p.get("/runs").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error_code"], "401013");
}

#[tokio::test]
async fn ims_rejects_bad_credentials_with_its_error_shape() {
    let emu = start().await;
    let bad_secret = token_request(
        &emu,
        &format!("grant_type=client_credentials&client_id={CLIENT}&client_secret=wrong"),
    )
    .await;
    assert!((400..500).contains(&bad_secret.status));
    let v = bad_secret.json();
    assert_eq!(v["error"], "invalid_client");
    assert!(v["error_description"].as_str().unwrap().contains("secret"));
    assert!(v.get("access_token").is_none());

    let unknown = token_request(
        &emu,
        "grant_type=client_credentials&client_id=nobody&client_secret=x",
    )
    .await;
    assert_eq!(unknown.json()["error"], "invalid_client");
    let grant = token_request(
        &emu,
        &format!("grant_type=password&client_id={CLIENT}&client_secret={SECRET}"),
    )
    .await;
    assert_eq!(grant.json()["error"], "unsupported_grant_type");
    let scope = token_request(
        &emu,
        "grant_type=client_credentials&client_id=narrow-client&client_secret=narrow-secret&scope=openid,session",
    )
    .await;
    assert_eq!(scope.json()["error"], "invalid_scope");
}

#[tokio::test]
async fn ims_secret_rotation_and_token_revocation() {
    let emu = start().await;
    let old_token = token(&emu, CLIENT, SECRET).await;
    // Rotate through the admin API.
    let r = http(
        &emu.endpoint,
        "POST",
        &format!("/_emulator/flowservice/ims/clients/{CLIENT}/secret"),
        &[("Content-Type", "application/json")],
        r#"{"clientSecret":"rotated-1"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let refused = token_request(
        &emu,
        &format!("grant_type=client_credentials&client_id={CLIENT}&client_secret={SECRET}"),
    )
    .await;
    assert_eq!(refused.json()["error"], "invalid_client");
    let new_token = token(&emu, CLIENT, "rotated-1").await;
    // Rotation keeps issued tokens valid.
    let p = Platform {
        emu: &emu,
        token: old_token.clone(),
        api_key: CLIENT.into(),
        sandbox: "prod".into(),
    };
    assert_eq!(p.get("/runs").await.status, 200);
    // Rotate again through the handle.
    emu.rotate_ims_secret(CLIENT, "rotated-2").unwrap();
    assert!(emu.rotate_ims_secret("nobody", "x").is_err());
    assert_eq!(
        token_request(
            &emu,
            &format!("grant_type=client_credentials&client_id={CLIENT}&client_secret=rotated-1"),
        )
        .await
        .status,
        400
    );
    // Revocation: both tokens answer 401013.
    assert_eq!(emu.revoke_ims_tokens(CLIENT).unwrap(), 2);
    let r = p.get("/runs").await;
    assert_eq!(
        (r.status, r.json()["error_code"].clone()),
        (401, "401013".into())
    );
    let p2 = Platform {
        token: new_token,
        ..p
    };
    assert_eq!(p2.get("/runs").await.status, 401);
    assert!(emu.ims_token_info(&old_token).unwrap().revoked);
    // Admin revoke on an unknown client is 404.
    let r = http(
        &emu.endpoint,
        "POST",
        "/_emulator/flowservice/ims/clients/nobody/revoke",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 404);
}

// ------------------------------------------------------------------------------------------
// Gateway

#[tokio::test]
async fn gateway_header_errors() {
    let emu = start().await;
    let p = platform(&emu).await;
    let good = p.headers();
    let without = |name: &str| -> Vec<(&str, &str)> {
        good.iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
            .map(|(k, v)| (*k, v.as_str()))
            .collect()
    };
    let path = format!("{BASE}/runs");
    let call = |hs: Vec<(&'static str, String)>| {
        let ep = emu.endpoint.clone();
        let path = path.clone();
        async move {
            let h: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            http(&ep, "GET", &path, &h, "").await
        }
    };
    let owned = |v: Vec<(&str, &str)>| -> Vec<(&'static str, String)> {
        v.into_iter()
            .map(|(k, v)| {
                let k: &'static str = match k {
                    "Authorization" => "Authorization",
                    "x-api-key" => "x-api-key",
                    "x-gw-ims-org-id" => "x-gw-ims-org-id",
                    _ => "x-sandbox-name",
                };
                (k, v.to_string())
            })
            .collect()
    };
    let gw = |r: &Resp| {
        (
            r.status,
            r.json()["error_code"].as_str().unwrap_or("").to_string(),
        )
    };

    let ok = call(owned(without("none"))).await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    let r = call(owned(without("x-api-key"))).await;
    assert_eq!(gw(&r), (403, "403000".into()));
    assert!(r.json()["message"].is_string());

    let r = call(owned(without("Authorization"))).await;
    assert_eq!(gw(&r), (403, "403010".into()));

    let mut bad = owned(without("Authorization"));
    bad.push(("Authorization", "Bearer not-a-token".into()));
    assert_eq!(gw(&call(bad).await), (401, "401013".into()));

    let mut bad = owned(without("x-api-key"));
    bad.push(("x-api-key", "unknown-key".into()));
    assert_eq!(gw(&call(bad).await), (403, "403003".into()));

    // A token of another client presented with this client's api key.
    let other = token_request(
        &emu,
        "grant_type=client_credentials&client_id=narrow-client&client_secret=narrow-secret&scope=openid",
    )
    .await
    .json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bad = owned(without("Authorization"));
    bad.push(("Authorization", format!("Bearer {other}")));
    assert_eq!(gw(&call(bad).await), (403, "403003".into()));

    // Missing scope: a valid token without the Platform scopes.
    let narrow = Platform {
        emu: &emu,
        token: other,
        api_key: "narrow-client".into(),
        sandbox: "prod".into(),
    };
    assert_eq!(gw(&narrow.get("/runs").await), (403, "403011".into()));

    // Org and sandbox are required too (4xx with an error body).
    let r = call(owned(without("x-gw-ims-org-id"))).await;
    assert!((400..500).contains(&r.status) && r.status != 429);
    assert!(r.json().is_object());
    let r = call(owned(without("x-sandbox-name"))).await;
    assert!((400..500).contains(&r.status));
    let mut bad = owned(without("x-gw-ims-org-id"));
    bad.push(("x-gw-ims-org-id", "OTHER@AdobeOrg".into()));
    assert_eq!(call(bad).await.status, 403);
    let mut bad = owned(without("x-sandbox-name"));
    bad.push(("x-sandbox-name", "no-such-sandbox".into()));
    assert_eq!(call(bad).await.status, 403);

    // The gateway rejects before reaching Flow Service: a re-trigger without a key is in the
    // ledger as unauthenticated and created nothing.
    let before = emu.flow_runs(F_FAILED).len();
    let r = http(
        &emu.endpoint,
        "POST",
        &format!("{BASE}/runs/fa-3/action?op=re-trigger"),
        &[("Authorization", &format!("Bearer {}", p.token))],
        "",
    )
    .await;
    assert_eq!(gw(&r), (403, "403000".into()));
    assert_eq!(emu.flow_runs(F_FAILED).len(), before);
    let l = emu.flowservice_ledger();
    assert_eq!(l.len(), 1);
    assert!(matches!(
        &l[0].outcome,
        ReTriggerOutcome::Unauthenticated { status: 403, code } if code == "403000"
    ));
}

// ------------------------------------------------------------------------------------------
// Listing

#[tokio::test]
async fn runs_filters_and_or_sets_and_case() {
    let emu = start().await;
    let p = platform(&emu).await;
    let r = p.get(&format!("/runs?property=flowId=={F_FAILED}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got: HashSet<String> = ids(&r.json()).into_iter().collect();
    assert_eq!(
        got,
        ["fa-1", "fa-2", "fa-3", "fa-run"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    for item in r.json()["items"].as_array().unwrap() {
        assert_eq!(item["flowId"], F_FAILED);
    }
    // Repeated property = AND; the doc's `Failed` matches the payload's lowercase value.
    for status in ["Failed", "failed", "FAILED"] {
        let r = p
            .get(&format!(
                "/runs?property=flowId=={F_FAILED}&property=metrics.statusSummary.status=={status}"
            ))
            .await;
        let mut got = ids(&r.json());
        got.sort();
        assert_eq!(got, vec!["fa-1", "fa-3"], "status {status}");
    }
    // Comma-separated values are a set.
    let r = p.get("/runs?property=id==fa-1,z-0,nope").await;
    let mut got = ids(&r.json());
    got.sort();
    assert_eq!(got, vec!["fa-1", "z-0"]);
    let r = p
        .get("/runs?property=metrics.statusSummary.status==success&property=metrics.recordSummary.outputRecordCount==0")
        .await;
    assert_eq!(ids(&r.json()), vec!["z-0"]);
    // `>` and `<` on epoch-ms fields.
    let all = p
        .get(&format!("/runs?property=flowId=={F_FAILED}"))
        .await
        .json();
    let created: BTreeMap<String, i64> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["createdAt"].as_i64().unwrap(),
            )
        })
        .collect();
    let pivot = created["fa-2"];
    let r = p
        .get(&format!(
            "/runs?property=flowId=={F_FAILED}&property=createdAt%3E{pivot}"
        ))
        .await;
    let mut got = ids(&r.json());
    got.sort();
    assert_eq!(got, vec!["fa-3", "fa-run"]);
    let r = p
        .get(&format!(
            "/runs?property=flowId=={F_FAILED}&property=createdAt%3C{pivot}"
        ))
        .await;
    assert_eq!(ids(&r.json()), vec!["fa-1"]);
    let r = p
        .get(&format!(
            "/runs?property=flowId=={F_FAILED}&property=metrics.durationSummary.startedAtUTC%3E{pivot}"
        ))
        .await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 2);
    // Streaming runs are listed too; another sandbox sees nothing of prod.
    let r = p.get(&format!("/runs?property=flowId=={F_STREAM}")).await;
    assert_eq!(ids(&r.json()), vec!["s-f"]);
}

#[tokio::test]
async fn runs_orderby_limit_paging_and_count() {
    let emu = start().await;
    let p = platform(&emu).await;
    let asc = p
        .get(&format!(
            "/runs?property=flowId=={F_FAILED}&orderby=createdAt"
        ))
        .await
        .json();
    assert_eq!(ids(&asc), vec!["fa-1", "fa-2", "fa-3", "fa-run"]);
    let desc = p
        .get(&format!(
            "/runs?property=flowId=={F_FAILED}&orderby=-createdAt"
        ))
        .await
        .json();
    assert_eq!(ids(&desc), vec!["fa-run", "fa-3", "fa-2", "fa-1"]);
    let plus = p
        .get(&format!(
            "/runs?property=flowId=={F_FAILED}&orderby=%2BcreatedAt"
        ))
        .await
        .json();
    assert_eq!(ids(&plus), ids(&asc));

    // Count.
    let c = p
        .get(&format!("/runs?property=flowId=={F_FAILED}&count=true"))
        .await
        .json();
    assert_eq!(c["count"], 4);
    let total = p.get("/runs?count=true").await.json()["count"]
        .as_u64()
        .unwrap();
    assert_eq!(total, 8);

    // Paging: limit=2 then follow _links.next.href (relative to the base URL).
    let first = p.get("/runs?limit=2&orderby=createdAt").await.json();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let mut seen = ids(&first);
    let mut next = first["_links"]["next"]["href"].as_str().map(str::to_string);
    let mut pages = 1;
    while let Some(href) = next {
        assert!(href.starts_with("/runs?"), "{href}");
        assert!(href.contains("continuationToken="), "{href}");
        let page = p.get(&href).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let v = page.json();
        assert!(v["items"].as_array().unwrap().len() <= 2);
        seen.extend(ids(&v));
        next = v["_links"]["next"]["href"].as_str().map(str::to_string);
        pages += 1;
        assert!(pages < 10);
    }
    assert_eq!(pages, 4);
    assert_eq!(seen.len(), 8);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        8,
        "no duplicates"
    );
    // The pages kept the order.
    let all = p.get("/runs?orderby=createdAt").await.json();
    assert_eq!(seen, ids(&all));
    assert!(all["_links"]["next"].is_null());
    // A bad token is a 4xx.
    let r = p.get("/runs?continuationToken=zz").await;
    assert!((400..500).contains(&r.status));
}

#[tokio::test]
async fn run_and_flow_lookups() {
    let emu = start().await;
    let p = platform(&emu).await;
    let r = p.get("/runs/fa-1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let run = v["items"].get(0).cloned().unwrap_or(v.clone());
    // Run object fields (api-facts §3.3).
    assert_eq!(run["id"], "fa-1");
    assert_eq!(run["flowId"], F_FAILED);
    for f in ["createdAt", "updatedAt"] {
        assert!(
            run[f].as_i64().unwrap() > 1_600_000_000_000,
            "{f} is epoch ms"
        );
    }
    for f in [
        "createdBy",
        "createdClient",
        "sandboxId",
        "sandboxName",
        "imsOrgId",
        "providerRefId",
    ] {
        assert!(run[f].is_string(), "{f}");
    }
    let etag = run["etag"].as_str().unwrap();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2);
    assert!(run["flowSpec"]["id"].is_string());
    assert_eq!(status_of(&run), "failed");
    assert_eq!(
        run["metrics"]["statusSummary"]["errors"][0]["code"],
        "CONNECTOR-2001"
    );
    assert!(run["metrics"]["statusSummary"]["errors"][0]["message"].is_string());
    let rs = &run["metrics"]["recordSummary"];
    for f in ["inputRecordCount", "outputRecordCount", "failedRecordCount"] {
        assert!(rs[f].is_u64(), "{f}");
    }
    assert!(run["metrics"]["durationSummary"]["startedAtUTC"].is_i64());
    assert!(run["metrics"]["durationSummary"]["completedAtUTC"].is_i64());
    assert!(run["activities"].is_array());
    let z = p.get("/runs/z-42").await.json();
    let z = z["items"].get(0).cloned().unwrap_or(z);
    assert_eq!(z["metrics"]["recordSummary"]["outputRecordCount"], 42);
    assert_eq!(status_of(&z), "success");

    assert_eq!(p.get("/runs/does-not-exist").await.status, 404);
    let f = p.get(&format!("/flows/{F_FAILED}")).await;
    assert_eq!(f.status, 200);
    let fv = f.json();
    let flow = fv["items"].get(0).cloned().unwrap_or(fv.clone());
    assert_eq!(flow["id"], F_FAILED);
    assert_eq!(flow["name"], "crm-daily");
    assert_eq!(p.get("/flows/nope").await.status, 404);
    let flows = p.get("/flows?property=name==web-stream").await.json();
    assert_eq!(ids(&flows), vec![F_STREAM]);
    assert_eq!(p.get("/flows?count=true").await.json()["count"], 4);
}

// ------------------------------------------------------------------------------------------
// Re-trigger

#[tokio::test]
async fn retrigger_failed_run_creates_a_new_run_and_leaves_the_original() {
    let emu = start().await;
    let p = platform(&emu).await;
    let before = p.get("/runs/fa-3").await.body;
    let r = p.retrigger("fa-3").await;
    assert!(r.status == 200 || r.status == 201, "{}", r.body);
    let v = r.json();
    let new_id = v["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, "fa-3");
    let etag = v["etag"].as_str().unwrap();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "quoted etag: {etag}"
    );
    // The new run: same flow, in progress (neither success nor failed).
    let nv = p.get(&format!("/runs/{new_id}")).await.json();
    let new = nv["items"].get(0).cloned().unwrap_or(nv);
    assert_eq!(new["flowId"], F_FAILED);
    let st = status_of(&new).to_ascii_lowercase();
    assert!(
        st != "success" && st != "failed",
        "starts in progress: {st}"
    );
    // The original run is unchanged.
    assert_eq!(p.get("/runs/fa-3").await.body, before);
    // The new run is listed under the flow.
    let listed = ids(&p
        .get(&format!("/runs?property=flowId=={F_FAILED}"))
        .await
        .json());
    assert!(listed.contains(&new_id));
    // The spec's spelling RE_TRIGGER works too, and there is no idempotency: another run.
    let r2 = p.call("POST", "/runs/fa-3/action?op=RE_TRIGGER", &[]).await;
    assert_eq!(r2.status, r.status, "{}", r2.body);
    let id2 = r2.json()["id"].as_str().unwrap().to_string();
    assert_ne!(id2, new_id);
    assert_eq!(emu.flow_runs(F_FAILED).len(), 6);
    // An older failure can be re-triggered as well.
    assert_eq!(p.retrigger("fa-1").await.status, r.status);
}

#[tokio::test]
async fn retrigger_eligibility() {
    let emu = start().await;
    let p = platform(&emu).await;
    // Success with zero ingested records: eligible.
    let r = p.retrigger("z-0").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let count_runs = emu.flow_runs(F_ZERO).len();
    // Success with records, streaming, running: 4xx with an error body, nothing created.
    for (run, flow) in [("z-42", F_ZERO), ("s-f", F_STREAM), ("fa-run", F_FAILED)] {
        let before = emu.flow_runs(flow).len();
        let r = p.retrigger(run).await;
        assert!(
            (400..500).contains(&r.status),
            "{run}: {} {}",
            r.status,
            r.body
        );
        let v = r.json();
        assert!(
            v.is_object() && !v.as_object().unwrap().is_empty(),
            "{run}: error body"
        );
        assert!(v.get("id").is_none() || v["id"] != run);
        assert_eq!(emu.flow_runs(flow).len(), before, "{run}");
    }
    assert_eq!(emu.flow_runs(F_ZERO).len(), count_runs);
    // A just re-triggered (in progress) run is not eligible either.
    let new_id = r.json()["id"].as_str().unwrap().to_string();
    assert!((400..500).contains(&p.retrigger(&new_id).await.status));
    // Unknown run and unknown op.
    assert_eq!(p.retrigger("no-such-run").await.status, 404);
    let r = p.call("POST", "/runs/fa-3/action?op=delete", &[]).await;
    assert!((400..500).contains(&r.status));
    // If-Match (optional in the spec): a stale etag is refused, the current one accepted.
    let cur = p.get("/runs/fa-3").await.json();
    let cur = cur["items"].get(0).cloned().unwrap_or(cur);
    let etag = cur["etag"].as_str().unwrap().to_string();
    let stale = p
        .call(
            "POST",
            "/runs/fa-3/action?op=re-trigger",
            &[("If-Match", "\"stale\"")],
        )
        .await;
    assert!((400..500).contains(&stale.status));
    let fresh = p
        .call(
            "POST",
            "/runs/fa-3/action?op=re-trigger",
            &[("If-Match", &etag)],
        )
        .await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
}

#[tokio::test]
async fn new_run_lifecycle_follows_the_script() {
    let emu = start().await;
    let p = platform(&emu).await;
    let mut source = "sc-0".to_string();
    let expect = [
        ("failed", Some("CONNECTOR-2001")),
        ("failed", Some("CONNECTOR-2001")),
        ("success", None),
    ];
    for (i, (status, code)) in expect.iter().enumerate() {
        let r = p.retrigger(&source).await;
        assert_eq!(r.status, 200, "attempt {i}: {}", r.body);
        let id = r.json()["id"].as_str().unwrap().to_string();
        let get = |id: String| {
            let p = &p;
            async move {
                let v = p.get(&format!("/runs/{id}")).await.json();
                v["items"].get(0).cloned().unwrap_or(v)
            }
        };
        let running = get(id.clone()).await;
        assert!(running["metrics"]["durationSummary"]["completedAtUTC"].is_null());
        emu.advance_clock(Duration::from_secs(10));
        let mid = get(id.clone()).await;
        assert!(
            !["success", "failed"].contains(&status_of(&mid).as_str()),
            "still running after 10 s of 20"
        );
        emu.advance_clock(Duration::from_secs(11));
        let done = get(id.clone()).await;
        assert_eq!(
            status_of(&done).to_ascii_lowercase(),
            *status,
            "attempt {i}"
        );
        assert!(done["metrics"]["durationSummary"]["completedAtUTC"].is_i64());
        assert!(done["updatedAt"].as_i64() > running["updatedAt"].as_i64());
        assert_ne!(done["etag"], running["etag"], "etag changes with the run");
        match code {
            Some(c) => assert_eq!(done["metrics"]["statusSummary"]["errors"][0]["code"], *c),
            None => {
                assert_eq!(done["metrics"]["recordSummary"]["outputRecordCount"], 900);
                // Succeeded with records: no longer eligible.
                assert!((400..500).contains(&p.retrigger(&id).await.status));
            }
        }
        source = id;
    }
    // The handle sees the same history, newest first.
    let runs = emu.flow_runs(F_SCRIPT);
    assert_eq!(runs.len(), 4);
    assert_eq!(runs[0].status, FlowRunStatus::Success);
    assert_eq!(runs[3].id, "sc-0");
}

#[tokio::test]
async fn scheduled_runs_supersede_old_failures() {
    let emu = start().await;
    let flow = FlowSpec::batch("nightly")
        .id("55555555-5555-4555-8555-555555555555")
        .every(Duration::from_secs(600), Duration::from_secs(300))
        .run_time(Duration::from_secs(60))
        .outcomes([RunOutcome::success(10)])
        .run(FlowRunSpec::failed("CONNECTOR-2001", Duration::from_secs(3600)).id("n-old"));
    emu.seed_flow(flow).unwrap();
    let p = platform(&emu).await;
    let q = "/runs?property=flowId==55555555-5555-4555-8555-555555555555&orderby=-createdAt";
    assert_eq!(ids(&p.get(q).await.json()), vec!["n-old"]);
    emu.advance_clock(Duration::from_secs(300 + 61));
    let v = p.get(q).await.json();
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(status_of(&items[0]), "success");
    assert!(items[0]["createdAt"].as_i64() > items[1]["createdAt"].as_i64());
    assert_eq!(status_of(&items[1]), "failed");
    emu.advance_clock(Duration::from_secs(600));
    assert_eq!(p.get(q).await.json()["items"].as_array().unwrap().len(), 3);
}

// ------------------------------------------------------------------------------------------
// Throttling, faults, ledger

#[tokio::test]
async fn throttled_calls_answer_429_with_retry_after() {
    let mut cfg = config();
    cfg.bucket_overrides.insert(
        "flowservice:ReTriggerRun".to_string(),
        BucketSpec {
            size: 1.0,
            refill_per_second: 0.5,
        },
    );
    let emu = emulator::start(cfg, scenario()).await.unwrap();
    let p = platform(&emu).await;
    assert_eq!(p.retrigger("fa-3").await.status, 200);
    let r = p.retrigger("fa-3").await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(r.json()["error_code"], "429050");
    assert_eq!(
        emu.flow_runs(F_FAILED).len(),
        5,
        "throttled call created nothing"
    );
    // Listing is not throttled by that bucket.
    assert_eq!(p.get("/runs").await.status, 200);
    emu.advance_clock(Duration::from_secs(2));
    assert_eq!(p.retrigger("fa-3").await.status, 200);

    // Injected 429s on every call (admin API), then off again.
    let r = http(
        &emu.endpoint,
        "PUT",
        "/_emulator/flowservice/throttle",
        &[("Content-Type", "application/json")],
        r#"{"rate":1.0,"retryAfterSeconds":7}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let r = p.get("/runs").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    emu.set_flowservice_throttle(0.0, Duration::from_secs(1));
    assert_eq!(p.get("/runs").await.status, 200);
    let l = emu.flowservice_ledger();
    assert_eq!(
        l.iter()
            .map(|e| e.outcome.code().to_string())
            .collect::<Vec<_>>(),
        vec!["ReTriggered", "429050", "ReTriggered"]
    );
}

#[tokio::test]
async fn server_errors_and_latency_are_injected() {
    let emu = start().await;
    let p = platform(&emu).await;
    emu.set_faults(FaultConfig {
        server_error_rate: 1.0,
        only_apis: vec!["flowservice:ReTriggerRun".into()],
        ..FaultConfig::default()
    });
    let r = p.retrigger("fa-3").await;
    assert!(r.status >= 500, "{}", r.status);
    assert_eq!(emu.flow_runs(F_FAILED).len(), 4);
    assert_eq!(
        p.get("/runs").await.status,
        200,
        "other operations unaffected"
    );
    emu.set_faults(FaultConfig {
        latency: Some(Duration::from_millis(150)),
        latency_rate: 1.0,
        only_apis: vec!["flowservice:ListRuns".into()],
        ..FaultConfig::default()
    });
    let t = std::time::Instant::now();
    assert_eq!(p.get("/runs").await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
    emu.set_faults(FaultConfig::default());
    assert_eq!(p.retrigger("fa-3").await.status, 200);
    let l = emu.flowservice_ledger();
    assert!(matches!(l[0].outcome, ReTriggerOutcome::Faulted { .. }));
    assert!(l[1].outcome.is_retriggered());
}

#[tokio::test]
async fn ledger_records_every_retrigger_call() {
    let emu = start().await;
    let p = platform(&emu).await;
    let t0 = emu.now();
    let ok = p.retrigger("fa-3").await.json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    emu.advance_clock(Duration::from_secs(5));
    assert!((400..500).contains(&p.retrigger("z-42").await.status));
    assert_eq!(p.retrigger("missing").await.status, 404);
    let l = emu.flowservice_ledger();
    assert_eq!(l.len(), 3);
    assert_eq!(l[0].run_id, "fa-3");
    assert_eq!(l[0].flow_id.as_deref(), Some(F_FAILED));
    assert_eq!(l[0].new_run_id.as_deref(), Some(ok.as_str()));
    assert_eq!(l[0].client_id.as_deref(), Some(CLIENT));
    assert_eq!(l[0].op, "re-trigger");
    assert!(l[0].outcome.is_retriggered());
    assert!(l[0].at >= t0 && l[1].at > l[0].at);
    assert_eq!(l[1].flow_id.as_deref(), Some(F_ZERO));
    assert!(l[1].new_run_id.is_none());
    assert!(matches!(
        &l[1].outcome,
        ReTriggerOutcome::Refused { status: 400, .. }
    ));
    assert!(matches!(
        &l[2].outcome,
        ReTriggerOutcome::Refused { status: 404, .. }
    ));
    assert!(l[2].flow_id.is_none());
    // The new run records who created it.
    assert_eq!(emu.flow_run(&ok).unwrap().created_client, CLIENT);
    // Admin API: same entries.
    let r = http(
        &emu.endpoint,
        "GET",
        "/_emulator/flowservice/ledger",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert_eq!(v[0]["runId"], "fa-3");
    assert_eq!(v[0]["newRunId"], ok.as_str());
    assert_eq!(v[0]["clientId"], CLIENT);
    assert_eq!(v[0]["outcome"]["kind"], "reTriggered");
}

// ------------------------------------------------------------------------------------------
// Scenario, admin, config

#[tokio::test]
async fn scenario_yaml_flows_and_admin_routes() {
    let yaml = r#"
imsClients:
  - clientId: y-client
    clientSecret: y-secret
flows:
  - id: 66666666-6666-4666-8666-666666666666
    name: yaml-flow
    runTime: 10s
    outcomes: ["failed(CONNECTOR-2001, source timed out)", "success(7)"]
    runs:
      - id: y-1
        outcome: failed(CONNECTOR-2001)
        startedAgo: 2h
      - id: y-2
        outcome: {status: success, outputRecords: 0, inputRecords: 0}
        startedAgo: 1h
  - name: y-stream
    kind: streaming
"#;
    let sc = Scenario::parse(yaml).unwrap();
    assert_eq!(sc.flows.len(), 2);
    assert!(Scenario::parse("flows:\n  - name: x\n    bogus: 1\n").is_err());
    // Files without flows stay valid; the demo flows seed.
    assert!(
        Scenario::parse("stateMachines: []\n")
            .unwrap()
            .flows
            .is_empty()
    );
    assert!(Scenario::demo_flows().flows.len() >= 4);
    let cfg = EmulatorConfig {
        flowservice: FlowServiceConfig {
            retrigger_response: RetriggerResponse::FullRun,
            ..FlowServiceConfig::default()
        },
        ..EmulatorConfig::default()
    };
    let emu = emulator::start(cfg, sc).await.unwrap();
    let p = Platform {
        token: token(&emu, "y-client", "y-secret").await,
        emu: &emu,
        api_key: "y-client".into(),
        sandbox: "prod".into(),
    };
    let r = p.retrigger("y-2").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let full = r.json();
    assert_eq!(full["flowId"], "66666666-6666-4666-8666-666666666666");
    assert!(full["metrics"]["statusSummary"]["status"].is_string());
    let new_id = full["id"].as_str().unwrap().to_string();
    // Admin: complete a run now, list runs, start a run.
    let r = http(
        &emu.endpoint,
        "POST",
        &format!("/_emulator/flowservice/runs/{new_id}/complete"),
        &[("Content-Type", "application/json")],
        r#"{"outcome":"failed(CONNECTOR-9, boom)"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let run = emu.flow_run(&new_id).unwrap();
    assert_eq!(run.status, FlowRunStatus::Failed);
    assert_eq!(run.errors[0].message, "boom");
    let r = http(
        &emu.endpoint,
        "POST",
        &format!("/_emulator/flowservice/runs/{new_id}/complete"),
        &[],
        r#"{"outcome":"success"}"#,
    )
    .await;
    assert_eq!(r.status, 409);
    let r = http(
        &emu.endpoint,
        "POST",
        "/_emulator/flowservice/flows/66666666-6666-4666-8666-666666666666/runs",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let started = r.json()["runId"].as_str().unwrap().to_string();
    emu.advance_clock(Duration::from_secs(11));
    // The script's second entry ("success(7)") went to the started run.
    assert_eq!(emu.flow_run(&started).unwrap().output_records, 7);
    let r = http(
        &emu.endpoint,
        "GET",
        "/_emulator/flowservice/flows/66666666-6666-4666-8666-666666666666/runs",
        &[],
        "",
    )
    .await;
    assert_eq!(r.json().as_array().unwrap().len(), 4);
    let stream_id = emu.flow_id("y-stream").unwrap();
    assert!(emu.flow_runs(&stream_id).is_empty());
    let stats = emu.stats();
    assert_eq!(stats.flows, 2);
    assert!(stats.calls("flowservice:ReTriggerRun") >= 1);
}
