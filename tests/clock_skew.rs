//! Clock skew (issue 13, item 5): the real binary (`plan`, `run --once`) against an emulator
//! whose clock is 3 minutes ahead of, or behind, the operator's. Ages are measured on the
//! service's clock (estimated from its `Date` headers): a failure is redriven once its minAge
//! and backoff have passed **on the service's clock**, never earlier, even when it stopped "in
//! the operator's future". Time moves only through the emulator's clock (no waiting); every
//! remaining wait in the scenario (≥ 2 min) is far longer than the test takes.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use redrive_emulator::{
    self as emulator, EmulatorConfig, EmulatorHandle, ExecutionSpec, Scenario, StateMachineSpec,
};
use serde_json::Value;
use support::*;

const LIMIT: Duration = Duration::from_secs(60);
const SKEW: Duration = Duration::from_secs(180);

fn min(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

/// minAge 10m; backoff 2m × 10^redriveCount (no jitter): the first redrive waits for minAge,
/// the second 20 minutes after the failure. Each "not yet" run is 2 minutes short of its wait,
/// less than the skew, so measuring on the wrong clock changes the decision.
const SPEC: &str = "  window: {minAge: 10m, maxAge: 7d}
  maxRedrives: 3
  backoff: {initial: 2m, factor: 10, max: 1h, jitter: 0}
";

/// Stop times are on the emulator's clock at seeding time.
fn scenario() -> Scenario {
    let failed = |name: &str| ExecutionSpec::failed(name, "Lambda.ServiceException");
    Scenario::new().with(
        StateMachineSpec::standard("skew")
            // 11 minutes old: minAge passed.
            .execution(failed("ripe").stopped_ago(min(11)))
            // 8 minutes old: 2 minutes to go.
            .execution(failed("young").stopped_ago(min(8)))
            // Redriven once, failed again 21 minutes ago: the 20-minute backoff passed.
            .execution(failed("backed-off").redriven(1).stopped_ago(min(21)))
            // Redriven once, failed again 18 minutes ago: 2 minutes of backoff to go.
            .execution(failed("backing-off").redriven(1).stopped_ago(min(18))),
    )
}

fn policy_file(dir: &std::path::Path) -> String {
    write(dir, "skew.yaml", &policy_yaml("skew", &["skew"], SPEC))
        .to_str()
        .unwrap()
        .to_string()
}

/// (decision, reason, until) by execution name, from `plan -o json`.
async fn plan(
    h: &EmulatorHandle,
    file: &str,
) -> BTreeMap<String, (String, String, Option<Timestamp>)> {
    let run = operator(
        &[
            "plan",
            "-f",
            file,
            "--endpoint-url",
            &h.endpoint,
            "-o",
            "json",
        ],
        LIMIT,
    )
    .await;
    assert!(run.ok(), "plan failed: {}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).expect("plan -o json prints JSON");
    v["policies"][0]["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|e| {
            let arn = e["executionArn"].as_str().unwrap();
            (
                arn.rsplit(':').next().unwrap().to_string(),
                (
                    e["decision"].as_str().unwrap().to_string(),
                    e["reason"].as_str().unwrap_or("").to_string(),
                    e["until"].as_str().map(|t| t.parse().unwrap()),
                ),
            )
        })
        .collect()
}

async fn run_once(h: &EmulatorHandle, file: &str) {
    let run = operator(
        &["run", "--once", "-f", file, "--endpoint-url", &h.endpoint],
        LIMIT,
    )
    .await;
    assert!(run.ok(), "run failed: {}\n{}", run.stdout, run.stderr);
}

fn redriven(h: &EmulatorHandle) -> Vec<String> {
    let mut names: Vec<String> = redriven_executions(h)
        .iter()
        .map(|a| a.rsplit(':').next().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// The two "not yet" runs wait, on the operator's clock, until their wait ends on the service's:
/// 2 minutes from now whichever way the clocks disagree.
fn assert_waits(d: &BTreeMap<String, (String, String, Option<Timestamp>)>, context: &str) {
    assert_eq!(d["ripe"].0, "Skip", "{context}: {d:?}"); // plan is a dry run
    assert_eq!(d["ripe"].1, "DryRun", "{context}: {d:?}");
    assert_eq!(d["backed-off"].1, "DryRun", "{context}: {d:?}");
    for (name, reason) in [("young", "TooYoung"), ("backing-off", "BackingOff")] {
        let (decision, r, until) = &d[name];
        assert_eq!(
            (decision.as_str(), r.as_str()),
            ("Wait", reason),
            "{context} {name}: {d:?}"
        );
        let left = until
            .expect("a wait has an until")
            .duration_since(Timestamp::now())
            .as_secs_f64();
        // 120 s on the service's clock, reported on the operator's (the estimate errs late by
        // at most the Date header's second plus latency; the plan ran a moment ago).
        assert!(
            (100.0..=125.0).contains(&left),
            "{context} {name}: waits {left:.1}s, expected ~120s on the operator's clock"
        );
    }
}

/// Both scenarios after the clocks were set: plan, redrive what is due, advance the service's
/// clock past the remaining waits, redrive the rest.
async fn redrives_on_the_service_clock(h: EmulatorHandle, context: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = policy_file(dir.path());

    assert_waits(&plan(&h, &file).await, context);

    run_once(&h, &file).await;
    assert_eq!(
        redriven(&h),
        ["backed-off", "ripe"],
        "{context}: only what is due"
    );

    // 2 minutes and a second later on the service's clock: the waits are over.
    h.advance_clock(Duration::from_secs(121));
    run_once(&h, &file).await;
    assert_eq!(
        redriven(&h),
        ["backed-off", "backing-off", "ripe", "young"],
        "{context}: the rest once due"
    );
    assert_no_duplicates(&h);
    assert_eq!(h.stats().calls("RedriveExecution"), 4, "{context}");
    h.shutdown().await;
}

/// The service's clock is 3 minutes ahead: "ripe" stopped 11 minutes ago on its clock, 8 on the
/// operator's; "young" stopped 8 minutes ago, 5 on the operator's clock. Measured on the
/// operator's clock both would wait 3 minutes too long.
#[tokio::test(flavor = "multi_thread")]
async fn service_clock_ahead_failures_from_the_operators_future_are_redriven_when_due() {
    let config = EmulatorConfig {
        clock_offset: SKEW,
        ..EmulatorConfig::default()
    };
    let h = emulator::start(config, scenario()).await.unwrap();
    redrives_on_the_service_clock(h, "service 3 min ahead").await;
}

/// The service's clock is 3 minutes behind: on the operator's clock "young" would look 11
/// minutes old and "backing-off" 21, both redriven 2 minutes before the policy allows.
#[tokio::test(flavor = "multi_thread")]
async fn service_clock_behind_nothing_is_redriven_before_the_policy_allows() {
    let h = emulator::start(EmulatorConfig::default(), Scenario::new())
        .await
        .unwrap();
    h.rewind_clock(SKEW);
    h.seed(scenario()).unwrap();
    redrives_on_the_service_clock(h, "service 3 min behind").await;
}

/// A service clock an hour off is not believed: its samples are ignored with a warning, and the
/// decisions fall back on the operator's clock (here: everything looks an hour younger).
#[tokio::test(flavor = "multi_thread")]
async fn an_absurd_skew_is_ignored_with_a_warning() {
    let config = EmulatorConfig {
        clock_offset: Duration::from_secs(3600),
        ..EmulatorConfig::default()
    };
    let h = emulator::start(config, scenario()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = policy_file(dir.path());
    let run = operator(
        &[
            "plan",
            "-f",
            &file,
            "--endpoint-url",
            &h.endpoint,
            "-o",
            "json",
        ],
        LIMIT,
    )
    .await;
    assert!(run.ok(), "plan failed: {}", run.stderr);
    assert!(
        run.stderr
            .contains("further from the operator's than the bound"),
        "a warning names the ignored skew: {}",
        run.stderr
    );
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    let reasons: Vec<&str> = v["policies"][0]["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or(""))
        .collect();
    assert!(
        reasons
            .iter()
            .all(|r| *r == "TooYoung" || *r == "BackingOff"),
        "on the operator's clock every failure is in its future: {reasons:?}"
    );
    run_once(&h, &file).await;
    assert!(redriven(&h).is_empty());
    h.shutdown().await;
}

/// Flow Service (the Platform's `Date` headers, read by the operator's own HTTP client), service
/// 3 minutes behind: a run that failed 2 minutes ago on Adobe's clock looks 5 minutes old to the
/// operator; with minAge 4m it is re-triggered only once 4 minutes passed on Adobe's clock.
#[tokio::test(flavor = "multi_thread")]
async fn flow_service_behind_is_retriggered_on_adobes_clock() {
    use support::flows::*;
    let h = emulator::start(EmulatorConfig::default(), Scenario::new())
        .await
        .unwrap();
    h.rewind_clock(SKEW);
    let flow = failing_flow("skewed", 1);
    let id = flow.flow_id();
    h.seed(
        Scenario::new()
            .with_ims_client(redrive_emulator::ImsClientSpec::new(
                CLIENT_ID,
                CLIENT_SECRET,
            ))
            .with_flow(flow),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secrets = write_secret_dir(&dir.path().join("secrets"), "aep", CLIENT_SECRET);
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let file = write(
        dir.path(),
        "flows.yaml",
        &format!(
            "apiVersion: redrive.dev/v1alpha1
kind: RedrivePolicy
metadata: {{name: dataflows}}
spec:
  flowService:
    credentialsSecretRef: {{name: aep}}
    flows: [\"{id}\"]
  window: {{minAge: 4m, maxAge: 7d}}
  maxRedrives: 2
"
        ),
    );
    let (platform, ims) = (h.flowservice_url(), h.ims_token_url());
    let args = |cmd: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        v.extend(
            [
                "-f",
                file.to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
                "--secrets-dir",
                secrets.to_str().unwrap(),
                "--adobe-platform-url",
                &platform,
                "--adobe-ims-url",
                &ims,
            ]
            .map(String::from),
        );
        v
    };
    let cli = |a: Vec<String>| async move {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        operator(&a, LIMIT).await
    };

    let run = cli(args(&["plan", "-o", "json"])).await;
    assert!(run.ok(), "plan failed: {}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    let entry = &v["policies"][0]["runs"][0];
    assert_eq!(entry["reason"], "TooYoung", "{v}");
    let left = entry["until"]
        .as_str()
        .unwrap()
        .parse::<Timestamp>()
        .unwrap()
        .duration_since(Timestamp::now())
        .as_secs_f64();
    assert!((100.0..=125.0).contains(&left), "waits {left:.1}s: {v}");

    let run = cli(args(&["run", "--once"])).await;
    assert!(run.ok(), "run failed: {}\n{}", run.stdout, run.stderr);
    assert_eq!(retriggered(&h), 0, "never before minAge on Adobe's clock");

    h.advance_clock(Duration::from_secs(121));
    let run = cli(args(&["run", "--once"])).await;
    assert!(run.ok(), "run failed: {}\n{}", run.stdout, run.stderr);
    assert_eq!(retriggered(&h), 1, "once minAge passed on Adobe's clock");
    h.shutdown().await;
}
