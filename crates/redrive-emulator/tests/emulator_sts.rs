//! The emulator's STS stand-in, driven by the real SDK (`aws_config::sts::AssumeRoleProvider` on
//! the same endpoint as Step Functions, exactly as the operator builds it) and by raw HTTP for the
//! awsQuery/XML wire format.

use std::time::{Duration, Instant};

use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_sfn::Client;
use aws_sdk_sfn::config::retry::RetryConfig;
use aws_sdk_sfn::error::ProvideErrorMetadata;
use aws_smithy_types::error::display::DisplayErrorContext;
use redrive_emulator::{
    self as emulator, EmulatorConfig, EmulatorHandle, ExecutionSpec, LedgerOutcome, RoleSpec,
    Scenario, StateMachineSpec, StsOutcome,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACCOUNT: &str = "123456789012";
const ROLE: &str = "arn:aws:iam::123456789012:role/redrive-team-a";
const ROLE_NAME: &str = "redrive-team-a";
const SESSION: &str = "redrive-operator";
const NS: &str = "team-a";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn scenario(roles: impl IntoIterator<Item = RoleSpec>) -> Scenario {
    let mut sc = Scenario::new()
        .with(
            StateMachineSpec::standard("orders")
                .execution(ExecutionSpec::failed("o-1", "Lambda.ServiceException"))
                .execution(ExecutionSpec::failed("o-2", "Lambda.ServiceException")),
        )
        .with(
            StateMachineSpec::standard("orders-eu")
                .execution(ExecutionSpec::failed("e-1", "Lambda.ServiceException")),
        )
        .with(
            StateMachineSpec::standard("billing")
                .execution(ExecutionSpec::failed("b-1", "Lambda.ServiceException")),
        );
    for r in roles {
        sc = sc.with_role(r);
    }
    sc
}

async fn start(roles: impl IntoIterator<Item = RoleSpec>) -> EmulatorHandle {
    emulator::start(EmulatorConfig::default(), scenario(roles))
        .await
        .expect("emulator starts")
}

/// What the operator builds: region, endpoint_url and static dummy credentials.
async fn base_config(h: &EmulatorHandle) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&h.endpoint)
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}

async fn provider(
    h: &EmulatorHandle,
    role: &str,
    external_id: Option<&str>,
    session: &str,
    length: Option<Duration>,
) -> AssumeRoleProvider {
    let base = base_config(h).await;
    let mut b = AssumeRoleProvider::builder(role).session_name(session);
    if let Some(e) = external_id {
        b = b.external_id(e);
    }
    if let Some(d) = length {
        b = b.session_length(d);
    }
    b.configure(&base).build().await
}

/// A Step Functions client whose credentials come from AssumeRole (as `reconcile.rs` does).
async fn assumed_client(h: &EmulatorHandle, role: &str, external_id: Option<&str>) -> Client {
    let base = base_config(h).await;
    let p = provider(h, role, external_id, SESSION, None).await;
    let conf = aws_sdk_sfn::config::Builder::from(&base)
        .credentials_provider(p)
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

async fn static_client(h: &EmulatorHandle) -> Client {
    Client::new(&base_config(h).await)
}

fn code<E: ProvideErrorMetadata, R>(e: &aws_sdk_sfn::error::SdkError<E, R>) -> Option<String> {
    e.as_service_error()
        .and_then(|s| s.code())
        .map(str::to_string)
}

fn message<E: ProvideErrorMetadata, R>(e: &aws_sdk_sfn::error::SdkError<E, R>) -> String {
    e.as_service_error()
        .and_then(|s| s.message())
        .unwrap_or_default()
        .to_string()
}

fn denied_message(op: &str, resource: &str) -> String {
    format!(
        "User: arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE_NAME}/{SESSION} is not authorized to perform: states:{op} on resource: {resource} because no identity-based policy allows the states:{op} action"
    )
}

fn issued_keys(h: &EmulatorHandle) -> Vec<String> {
    h.sts_ledger()
        .iter()
        .filter_map(|e| e.issued_key().map(str::to_string))
        .collect()
}

// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn correct_external_id_assumes_the_role_and_the_ledgers_name_it() {
    let h = start([RoleSpec::new(ROLE).external_id(NS)]).await;
    let c = assumed_client(&h, ROLE, Some(NS)).await;
    let sm = h.state_machine_arn("orders");
    let out = c
        .list_executions()
        .state_machine_arn(&sm)
        .send()
        .await
        .expect("ListExecutions with assumed credentials");
    assert_eq!(out.executions().len(), 2);

    let sts = h.sts_ledger();
    assert_eq!(sts.len(), 1, "{sts:?}");
    let e = &sts[0];
    assert_eq!(e.role_arn, ROLE);
    assert_eq!(e.external_id.as_deref(), Some(NS));
    assert_eq!(e.role_session_name.as_deref(), Some(SESSION));
    assert_eq!(e.caller_access_key_id.as_deref(), Some("AKIDTEST"));
    let key = e.issued_key().expect("issued").to_string();
    assert!(key.starts_with("ASIA") && key.len() == 20, "{key}");
    assert!(
        key[4..]
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    );

    // The Step Functions call was signed with the session key, the STS call with the static one.
    let stats = h.stats();
    assert_eq!(stats.access_key_ids.get(&key).copied(), Some(1));
    assert_eq!(stats.access_key_ids.get("AKIDTEST").copied(), Some(1));
    assert_eq!(stats.calls("AssumeRole"), 1);
    assert_eq!(
        h.role_of(&key),
        Some((ROLE.to_string(), Some(NS.to_string())))
    );
    let session = h.sts_session(&key).unwrap();
    assert_eq!(
        session.assumed_role_arn,
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE_NAME}/{SESSION}")
    );
    assert!(session.assumed_role_id.starts_with("AROA"));
    assert!(session.assumed_role_id.ends_with(":redrive-operator"));

    // A redrive is attributed to the role through the ledger's access key id.
    let exec = h.execution_arn("orders", "o-1");
    c.redrive_execution()
        .execution_arn(&exec)
        .send()
        .await
        .expect("redrive");
    let ledger = h.ledger();
    assert_eq!(ledger.len(), 1);
    assert!(ledger[0].outcome.is_redriven());
    let by = ledger[0].access_key_id.as_deref().unwrap();
    assert_eq!(h.role_of(by).unwrap().0, ROLE);
    // The credentials are cached: still a single AssumeRole.
    assert_eq!(h.sts_ledger().len(), 1);

    // Static keys keep full access and map to no role.
    assert_eq!(h.role_of("AKIDTEST"), None);
    h.shutdown().await;
}

#[tokio::test]
async fn wrong_missing_or_unknown_role_is_access_denied_before_any_sfn_call() {
    let other_role = "arn:aws:iam::123456789012:role/no-such-role";
    let h = start([RoleSpec::new(ROLE).external_id(NS).external_id("team-b")]).await;
    let sm = h.state_machine_arn("orders");
    let expected = format!(
        "User: arn:aws:iam::{ACCOUNT}:user/emulator is not authorized to perform: sts:AssumeRole on resource: "
    );
    for (role, ext) in [(ROLE, Some("team-c")), (ROLE, None), (other_role, Some(NS))] {
        let c = assumed_client(&h, role, ext).await;
        let err = c
            .list_executions()
            .state_machine_arn(&sm)
            .send()
            .await
            .expect_err("no credentials");
        // The SDK surfaces the provider failure: not a service error of ListExecutions.
        assert!(err.as_service_error().is_none(), "{err:?}");
        let text = format!("{}", DisplayErrorContext(&err));
        assert!(text.contains("dispatch failure"), "{text}");
        assert!(
            text.contains("an error occurred while loading credentials"),
            "{text}"
        );
        assert!(text.contains("AccessDenied"), "{text}");
        assert!(text.contains(&format!("{expected}{role}")), "{text}");
        let last = h.sts_ledger().pop().unwrap();
        assert_eq!(last.role_arn, role);
        assert_eq!(last.external_id.as_deref(), ext);
        assert_eq!(
            last.outcome,
            StsOutcome::AccessDenied {
                message: format!("{expected}{role}")
            }
        );
    }
    // team-b is accepted too (any listed ExternalId).
    let c = assumed_client(&h, ROLE, Some("team-b")).await;
    c.list_executions()
        .state_machine_arn(&sm)
        .send()
        .await
        .expect("second ExternalId accepted");

    let stats = h.stats();
    assert_eq!(stats.errors("AssumeRole", "AccessDenied"), 3);
    assert_eq!(stats.calls("ListExecutions"), 1, "only the allowed call");
    assert_eq!(issued_keys(&h).len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn a_role_restricted_to_some_state_machines_is_denied_the_others() {
    let h = start([RoleSpec::new(ROLE)
        .external_id(NS)
        .state_machines(["orders", "arn:aws:states:*:stateMachine:orders-e?"])])
    .await;
    let c = assumed_client(&h, ROLE, Some(NS)).await;
    let orders = h.state_machine_arn("orders");
    let eu = h.state_machine_arn("orders-eu");
    let billing = h.state_machine_arn("billing");

    c.list_executions()
        .state_machine_arn(&orders)
        .send()
        .await
        .expect("orders allowed by name");
    c.describe_state_machine()
        .state_machine_arn(&eu)
        .send()
        .await
        .expect("orders-eu allowed by ARN glob");

    let err = c
        .list_executions()
        .state_machine_arn(&billing)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("AccessDeniedException"));
    assert_eq!(message(&err), denied_message("ListExecutions", &billing));

    let b1 = h.execution_arn("billing", "b-1");
    let err = c
        .describe_execution()
        .execution_arn(&b1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("AccessDeniedException"));
    assert_eq!(message(&err), denied_message("DescribeExecution", &b1));
    let err = c
        .get_execution_history()
        .execution_arn(&b1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("AccessDeniedException"));
    let err = c
        .start_execution()
        .state_machine_arn(&billing)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("AccessDeniedException"));

    // Redrive outside the role: denied and recorded with the session key.
    let err = c
        .redrive_execution()
        .execution_arn(&b1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("AccessDeniedException"));
    assert_eq!(message(&err), denied_message("RedriveExecution", &b1));
    let o1 = h.execution_arn("orders", "o-1");
    c.redrive_execution()
        .execution_arn(&o1)
        .send()
        .await
        .expect("redrive inside the role");
    let ledger = h.ledger();
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[0].outcome, LedgerOutcome::AccessDenied);
    assert!(ledger[1].outcome.is_redriven());
    let key = ledger[0].access_key_id.clone().unwrap();
    assert_eq!(ledger[1].access_key_id.as_deref(), Some(key.as_str()));
    assert_eq!(h.role_of(&key).unwrap().0, ROLE);
    assert_eq!(h.execution(&b1).unwrap().redrive_count, 0);

    // ListStateMachines has no resource-level restriction.
    let all = c.list_state_machines().send().await.unwrap();
    assert_eq!(all.state_machines().len(), 3);

    // The static dummy credentials keep full access.
    let s = static_client(&h).await;
    s.list_executions()
        .state_machine_arn(&billing)
        .send()
        .await
        .expect("static key: full access");

    // Role policies are evaluated at request time: widening the role takes effect at once.
    h.add_role(RoleSpec::new(ROLE).external_id(NS)).unwrap();
    c.list_executions()
        .state_machine_arn(&billing)
        .send()
        .await
        .expect("widened role");
    assert_eq!(
        h.stats().errors("ListExecutions", "AccessDeniedException"),
        1
    );
    h.shutdown().await;
}

/// The SDK caches assumed credentials and refreshes them 5–10 s before their `Expiration`
/// (aws-smithy-runtime's lazy identity cache: 10 s buffer, up to 50 % jitter), measured on the
/// SDK's own clock (real time). `advance_clock` moves only the emulator's clock, so after it the
/// SDK keeps sending the cached key and gets `ExpiredTokenException` until its own clock reaches
/// the refresh point; then it re-assumes and the emulator sees a second AssumeRole.
#[tokio::test]
async fn expired_credentials_are_rejected_until_the_sdk_re_assumes() {
    let h = start([RoleSpec::new(ROLE).external_id(NS).credential_ttl(secs(14))]).await;
    let c = assumed_client(&h, ROLE, Some(NS)).await;
    let sm = h.state_machine_arn("orders");
    let t0 = Instant::now();
    c.list_executions()
        .state_machine_arn(&sm)
        .send()
        .await
        .expect("fresh credentials");
    let first = issued_keys(&h);
    assert_eq!(first.len(), 1);
    let session = h.sts_session(&first[0]).unwrap();
    let ttl = session.expiration.as_second() - session.issued_at.as_second();
    assert_eq!(ttl, 14);

    h.advance_clock(secs(15));
    let err = c
        .list_executions()
        .state_machine_arn(&sm)
        .send()
        .await
        .unwrap_err();
    assert!(
        t0.elapsed() < secs(3),
        "the SDK still trusted its cached key"
    );
    assert_eq!(code(&err).as_deref(), Some("ExpiredTokenException"));
    assert_eq!(
        message(&err),
        "The security token included in the request is expired"
    );
    assert_eq!(h.sts_ledger().len(), 1, "no re-assume on ExpiredToken");

    // Expiration (real clock, as the SDK sees it) is at most t0 + 14 s; the SDK refreshes at
    // Expiration − 10 s + jitter(0..5 s) ≤ t0 + 9 s.
    tokio::time::sleep(
        (t0 + Duration::from_millis(9_300)).saturating_duration_since(Instant::now()),
    )
    .await;
    c.list_executions()
        .state_machine_arn(&sm)
        .send()
        .await
        .expect("re-assumed credentials");
    let keys = issued_keys(&h);
    assert_eq!(keys.len(), 2, "the SDK assumed the role again");
    assert_ne!(keys[0], keys[1]);
    let stats = h.stats();
    assert_eq!(stats.access_key_ids.get(&keys[1]).copied(), Some(1));
    assert_eq!(stats.errors("ListExecutions", "ExpiredTokenException"), 1);
    assert_eq!(h.role_of(&keys[1]).unwrap().0, ROLE);
    h.shutdown().await;
}

/// Credentials that expire within the SDK's refresh buffer are re-assumed before every call.
#[tokio::test]
async fn short_lived_credentials_are_re_assumed_by_the_sdk_on_every_call() {
    let h = start([RoleSpec::new(ROLE).credential_ttl(secs(3))]).await;
    let c = assumed_client(&h, ROLE, Some(NS)).await;
    let sm = h.state_machine_arn("orders");
    for _ in 0..3 {
        c.list_executions()
            .state_machine_arn(&sm)
            .send()
            .await
            .expect("list");
    }
    let keys = issued_keys(&h);
    assert_eq!(keys.len(), 3, "{:?}", h.sts_ledger());
    // A role without an ExternalId condition ignores the one sent.
    assert_eq!(h.role_of(&keys[2]), Some((ROLE.into(), Some(NS.into()))));
    h.shutdown().await;
}

type Case = (
    &'static str,
    Option<&'static str>,
    &'static str,
    Option<Duration>,
    &'static str,
);

#[tokio::test]
async fn malformed_assume_role_input_is_a_validation_error() {
    let h = start([
        RoleSpec::new(ROLE).external_id(NS),
        RoleSpec::new("arn:aws:iam::123456789012:role/long").max_session_duration(secs(12 * 3600)),
    ])
    .await;
    // (role, ExternalId, session name, session length, expected message)
    let cases: [Case; 5] = [
        (
            ROLE,
            Some(NS),
            "x",
            None,
            "1 validation error detected: Value 'x' at 'roleSessionName' failed to satisfy constraint: Member must have length greater than or equal to 2",
        ),
        (
            ROLE,
            Some(NS),
            SESSION,
            Some(secs(100)),
            "1 validation error detected: Value '100' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900",
        ),
        (
            ROLE,
            Some("has space"),
            "bad name!",
            None,
            "2 validation errors detected: Value 'bad name!' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*; Value 'has space' at 'externalId' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@:/-]*",
        ),
        (
            "arn:aws:iam::123:role/x",
            Some(NS),
            SESSION,
            None,
            "1 validation error detected: Value 'arn:aws:iam::123:role/x' at 'roleArn' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:aws:iam::\\d{12}:role/[\\w+=,.@/-]+",
        ),
        (
            ROLE,
            Some(NS),
            SESSION,
            Some(secs(2 * 3600)),
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        ),
    ];
    for (role, ext, session, length, msg) in cases {
        let p = provider(&h, role, ext, session, length).await;
        let err = p.provide_credentials().await.expect_err(msg);
        let text = format!("{}", DisplayErrorContext(&err));
        assert!(text.contains("ValidationError"), "{text}");
        // The SDK prints the message Debug-escaped.
        let escaped = format!("{msg:?}");
        assert!(text.contains(&escaped[1..escaped.len() - 1]), "{text}");
        let last = h.sts_ledger().pop().unwrap();
        assert_eq!(
            last.outcome,
            StsOutcome::ValidationError {
                message: msg.to_string()
            }
        );
    }
    // Validation comes before authorization: none of these was an AccessDenied.
    assert_eq!(h.stats().errors("AssumeRole", "ValidationError"), 5);

    // A role with a 12 h MaxSessionDuration grants 2 h (the SDK sends DurationSeconds=7200).
    let p = provider(
        &h,
        "arn:aws:iam::123456789012:role/long",
        None,
        SESSION,
        Some(secs(2 * 3600)),
    )
    .await;
    let creds = p.provide_credentials().await.expect("2 h session");
    let key = creds.access_key_id().to_string();
    let s = h.sts_session(&key).unwrap();
    assert_eq!(s.expiration.as_second() - s.issued_at.as_second(), 7200);
    assert_eq!(
        creds
            .expiry()
            .map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64),
        Some(s.expiration.as_second())
    );
    assert_eq!(creds.session_token().map(|t| t.len() > 100), Some(true));
    assert_eq!(creds.account_id().map(|a| a.as_str()), Some(ACCOUNT));
    h.shutdown().await;
}

// ------------------------------------------------------------------------------------------
// Raw HTTP

async fn raw_http(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn auth(akid: &str, service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={akid}/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc"
    )
}

const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

async fn sts_raw(
    h: &EmulatorHandle,
    akid: Option<&str>,
    token: Option<&str>,
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let a = akid.map(|k| auth(k, "sts"));
    let mut hs = vec![("Content-Type", FORM)];
    if let Some(a) = &a {
        hs.push(("Authorization", a.as_str()));
    }
    if let Some(t) = token {
        hs.push(("X-Amz-Security-Token", t));
    }
    raw_http(&h.endpoint, "POST", "/", &hs, body).await
}

async fn sfn_raw(
    h: &EmulatorHandle,
    akid: &str,
    token: Option<&str>,
    op: &str,
    body: &str,
) -> (u16, String) {
    let a = auth(akid, "states");
    let target = format!("AWSStepFunctions.{op}");
    let mut hs = vec![
        ("X-Amz-Target", target.as_str()),
        ("Content-Type", "application/x-amz-json-1.0"),
        ("Authorization", a.as_str()),
    ];
    if let Some(t) = token {
        hs.push(("X-Amz-Security-Token", t));
    }
    let (st, _, body) = raw_http(&h.endpoint, "POST", "/", &hs, body).await;
    (st, body)
}

fn header<'a>(hs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    hs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// Text of the first `<tag>…</tag>`.
fn tag<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + open.len();
    let end = xml[start..].find(&format!("</{tag}>")).unwrap() + start;
    &xml[start..end]
}

/// The document with every element's text replaced by `…`, whitespace removed: its shape.
fn shape(xml: &str) -> String {
    let mut out = String::new();
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        let text = rest[..i].trim();
        if !text.is_empty() {
            out.push('…');
        }
        let j = rest[i..].find('>').unwrap() + i;
        out.push_str(&rest[i..=j]);
        rest = &rest[j + 1..];
    }
    out
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn assume_body(role: &str, session: &str, ext: Option<&str>, dur: Option<&str>) -> String {
    let mut b = format!(
        "Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName={}",
        enc(role),
        enc(session)
    );
    if let Some(e) = ext {
        b.push_str(&format!("&ExternalId={}", enc(e)));
    }
    if let Some(d) = dur {
        b.push_str(&format!("&DurationSeconds={d}"));
    }
    b
}

const NS_ATTR: &str = "xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"";

#[tokio::test]
async fn xml_shapes_and_session_keys_over_raw_http() {
    let h = start([RoleSpec::new(ROLE)
        .external_id(NS)
        .state_machines(["orders"])])
    .await;

    // AssumeRole success.
    let (st, hs, body) = sts_raw(
        &h,
        Some("AKIDRAW"),
        None,
        &assume_body(ROLE, "raw-session", Some(NS), Some("900")),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(header(&hs, "content-type"), Some("text/xml"));
    assert_eq!(
        shape(&body),
        format!(
            "<AssumeRoleResponse {NS_ATTR}><AssumeRoleResult><Credentials><AccessKeyId>…</AccessKeyId><SecretAccessKey>…</SecretAccessKey><SessionToken>…</SessionToken><Expiration>…</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>…</AssumedRoleId><Arn>…</Arn></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>…</RequestId></ResponseMetadata></AssumeRoleResponse>"
        )
    );
    assert_eq!(
        header(&hs, "x-amzn-requestid"),
        Some(tag(&body, "RequestId"))
    );
    let key = tag(&body, "AccessKeyId").to_string();
    let token = tag(&body, "SessionToken").to_string();
    assert!(key.starts_with("ASIA") && key.len() == 20);
    assert_eq!(tag(&body, "SecretAccessKey").len(), 40);
    assert_eq!(
        tag(&body, "Arn"),
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE_NAME}/raw-session")
    );
    let role_id = tag(&body, "AssumedRoleId");
    assert!(role_id.starts_with("AROA") && role_id.ends_with(":raw-session"));
    assert_eq!(role_id.split(':').next().unwrap().len(), 21);
    let exp: jiff::Timestamp = tag(&body, "Expiration").parse().unwrap();
    assert!(tag(&body, "Expiration").ends_with('Z'));
    assert!(!tag(&body, "Expiration").contains('.'), "whole seconds");
    let ttl = exp.as_second() - h.now().as_second();
    assert!((898..=900).contains(&ttl), "{ttl}");

    // AccessDenied: exact document.
    let (st, hs, body) = sts_raw(
        &h,
        Some("AKIDRAW"),
        None,
        &assume_body(ROLE, "raw-session", Some("intruder"), None),
    )
    .await;
    assert_eq!(st, 403);
    assert_eq!(header(&hs, "content-type"), Some("text/xml"));
    let rid = header(&hs, "x-amzn-requestid").unwrap();
    assert_eq!(
        body,
        format!(
            "<ErrorResponse {NS_ATTR}>\n  <Error>\n    <Type>Sender</Type>\n    <Code>AccessDenied</Code>\n    <Message>User: arn:aws:iam::{ACCOUNT}:user/emulator is not authorized to perform: sts:AssumeRole on resource: {ROLE}</Message>\n  </Error>\n  <RequestId>{rid}</RequestId>\n</ErrorResponse>\n"
        )
    );

    // 400s.
    let (st, _, body) = sts_raw(
        &h,
        Some("AKIDRAW"),
        None,
        "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fx",
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(tag(&body, "Code"), "MissingParameter");
    assert_eq!(
        tag(&body, "Message"),
        "The request must contain the parameter RoleSessionName"
    );
    let (st, _, body) = sts_raw(
        &h,
        Some("AKIDRAW"),
        None,
        &assume_body(ROLE, SESSION, Some(NS), Some("50000")),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(tag(&body, "Code"), "ValidationError");
    assert!(tag(&body, "Message").contains("at 'durationSeconds'"));
    assert!(tag(&body, "Message").contains("less than or equal to 43200"));
    let (st, _, body) = sts_raw(
        &h,
        Some("AKIDRAW"),
        None,
        "Action=DecodeAuthorizationMessage",
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(tag(&body, "Code"), "InvalidAction");
    let (st, _, body) = sts_raw(&h, None, None, &assume_body(ROLE, SESSION, Some(NS), None)).await;
    assert_eq!(st, 403);
    assert_eq!(tag(&body, "Code"), "MissingAuthenticationToken");

    // GetCallerIdentity, static and assumed.
    let (st, _, body) = sts_raw(
        &h,
        Some("AKIDRAW"),
        None,
        "Action=GetCallerIdentity&Version=2011-06-15",
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        shape(&body),
        format!(
            "<GetCallerIdentityResponse {NS_ATTR}><GetCallerIdentityResult><Arn>…</Arn><UserId>…</UserId><Account>…</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>…</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
        )
    );
    assert_eq!(
        tag(&body, "Arn"),
        format!("arn:aws:iam::{ACCOUNT}:user/emulator")
    );
    assert!(tag(&body, "UserId").starts_with("AIDA"));
    let (st, _, body) = sts_raw(
        &h,
        Some(&key),
        Some(&token),
        "Action=GetCallerIdentity&Version=2011-06-15",
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        tag(&body, "Arn"),
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE_NAME}/raw-session")
    );
    assert_eq!(tag(&body, "Account"), ACCOUNT);
    assert_eq!(tag(&body, "UserId"), role_id);

    // Step Functions with the session key.
    let orders = h.state_machine_arn("orders");
    let billing = h.state_machine_arn("billing");
    let list = |arn: &str| format!("{{\"stateMachineArn\":\"{arn}\"}}");
    let (st, body) = sfn_raw(&h, &key, Some(&token), "ListExecutions", &list(&orders)).await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = sfn_raw(&h, &key, Some(&token), "ListExecutions", &list(&billing)).await;
    assert_eq!(st, 400);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["__type"],
        "com.amazon.coral.service#AccessDeniedException"
    );
    assert_eq!(
        v["message"],
        format!(
            "User: arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE_NAME}/raw-session is not authorized to perform: states:ListExecutions on resource: {billing} because no identity-based policy allows the states:ListExecutions action"
        )
    );
    // Wrong or missing session token, unknown ASIA key.
    for (k, t) in [
        (key.as_str(), Some("not-the-token")),
        (key.as_str(), None),
        ("ASIAUNKNOWN000000000", Some(token.as_str())),
    ] {
        let (st, body) = sfn_raw(&h, k, t, "ListExecutions", &list(&orders)).await;
        assert_eq!(st, 400);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["__type"],
            "com.amazon.coral.service#UnrecognizedClientException"
        );
        assert_eq!(
            v["message"],
            "The security token included in the request is invalid."
        );
    }
    // Expired on the emulated clock (also for RedriveExecution, which the ledger records).
    h.advance_clock(secs(901));
    let (st, body) = sfn_raw(&h, &key, Some(&token), "ListExecutions", &list(&orders)).await;
    assert_eq!(st, 400);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["__type"],
        "com.amazon.coral.service#ExpiredTokenException"
    );
    assert_eq!(
        v["message"],
        "The security token included in the request is expired"
    );
    let o1 = h.execution_arn("orders", "o-1");
    let (st, _) = sfn_raw(
        &h,
        &key,
        Some(&token),
        "RedriveExecution",
        &format!("{{\"executionArn\":\"{o1}\"}}"),
    )
    .await;
    assert_eq!(st, 400);
    let last = h.ledger().pop().unwrap();
    assert_eq!(
        last.outcome,
        LedgerOutcome::Unauthenticated {
            code: "ExpiredTokenException".into()
        }
    );
    assert!(!last.outcome.reached_model());
    assert_eq!(h.execution(&o1).unwrap().redrive_count, 0);
    let (st, _, body) = sts_raw(
        &h,
        Some(&key),
        Some(&token),
        "Action=GetCallerIdentity&Version=2011-06-15",
    )
    .await;
    assert_eq!(st, 403);
    assert_eq!(tag(&body, "Code"), "ExpiredToken");
    // Any other key still has full access.
    let (st, _) = sfn_raw(&h, "AKIDRAW", None, "ListExecutions", &list(&billing)).await;
    assert_eq!(st, 200);

    // Admin view of the STS ledger.
    let (st, _, body) = raw_http(&h.endpoint, "GET", "/_emulator/sts", &[], "").await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let kinds: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "issued",
            "accessDenied",
            "missingParameter",
            "validationError",
            "invalidCaller"
        ]
    );
    assert_eq!(v[0]["outcome"]["accessKeyId"], key.as_str());
    assert_eq!(v[0]["externalId"], NS);
    assert_eq!(v[0]["durationSeconds"], "900");
    assert_eq!(v[0]["callerAccessKeyId"], "AKIDRAW");
    let stats = h.stats();
    assert_eq!(stats.calls("AssumeRole"), 5);
    assert_eq!(stats.calls("GetCallerIdentity"), 3);
    assert_eq!(stats.errors("Unknown", "InvalidAction"), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn roles_come_from_the_scenario_and_can_be_seeded_later() {
    let yaml = r#"
stateMachines:
  - name: orders
    executions: [{name: o-1, outcomes: [fail]}]
roles:
  - arn: arn:aws:iam::123456789012:role/redrive-team-a
    externalIds: [team-a]
    stateMachines: ["orders*"]
    credentialTtl: 20m
  - arn: arn:aws:iam::210987654321:role/path/cross-account
"#;
    let sc = Scenario::from_yaml(yaml).unwrap();
    assert_eq!(sc.roles.len(), 2);
    assert_eq!(sc.roles[0].external_ids, ["team-a"]);
    assert_eq!(
        sc.roles[0].credential_ttl.map(|d| d.0),
        Some(Duration::from_secs(1200))
    );
    assert_eq!(sc.roles[1].state_machines, None);
    // Round trip through JSON.
    let json = serde_json::to_string(&sc.roles).unwrap();
    assert_eq!(
        serde_json::from_str::<Vec<RoleSpec>>(&json).unwrap(),
        sc.roles
    );
    for bad in [
        "roles: [{arn: 'arn:aws:iam::1:role/x'}]",
        "roles: [{arn: 'arn:aws:iam::123456789012:role/x', externalIds: ['a']}]",
        "roles: [{arn: 'arn:aws:iam::123456789012:role/x', maxSessionDuration: 13h}]",
    ] {
        let sc = Scenario::from_yaml(bad).unwrap();
        assert!(
            emulator::start(EmulatorConfig::default(), sc)
                .await
                .is_err(),
            "{bad}"
        );
    }
    assert!(Scenario::from_yaml("roles: [{arn: x, trust: y}]").is_err());

    let h = emulator::start(EmulatorConfig::default(), sc)
        .await
        .unwrap();
    let c = assumed_client(&h, ROLE, Some("team-a")).await;
    c.list_executions()
        .state_machine_arn(h.state_machine_arn("orders"))
        .send()
        .await
        .expect("role from the scenario");
    let key = issued_keys(&h).pop().unwrap();
    let s = h.sts_session(&key).unwrap();
    assert_eq!(s.expiration.as_second() - s.issued_at.as_second(), 1200);

    // Cross-account role: the assumed-role ARN carries the role's account.
    let p = provider(
        &h,
        "arn:aws:iam::210987654321:role/path/cross-account",
        None,
        "x-acct",
        None,
    )
    .await;
    let creds = p.provide_credentials().await.unwrap();
    let s = h.sts_session(creds.access_key_id()).unwrap();
    assert_eq!(
        s.assumed_role_arn,
        "arn:aws:sts::210987654321:assumed-role/cross-account/x-acct"
    );

    // POST /_emulator/scenario adds (or replaces) roles; invalid ones are rejected as a whole.
    let late = "arn:aws:iam::123456789012:role/late";
    let (st, _, body) = raw_http(
        &h.endpoint,
        "POST",
        "/_emulator/scenario",
        &[("Content-Type", "application/json")],
        &format!("{{\"roles\":[{{\"arn\":\"{late}\",\"externalIds\":[\"ns-1\"]}}]}}"),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert!(h.roles().iter().any(|r| r.arn == late));
    let (st, _, _) = raw_http(
        &h.endpoint,
        "POST",
        "/_emulator/scenario",
        &[("Content-Type", "application/json")],
        "{\"roles\":[{\"arn\":\"nope\"}]}",
    )
    .await;
    assert_eq!(st, 400);
    let p = provider(&h, late, Some("ns-1"), SESSION, None).await;
    p.provide_credentials().await.expect("late role");
    assert!(h.remove_role(late));
    let p = provider(&h, late, Some("ns-1"), SESSION, None).await;
    assert!(p.provide_credentials().await.is_err());
    h.shutdown().await;
}
