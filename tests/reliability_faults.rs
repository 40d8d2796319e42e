//! Reliability (issue 7, items 3 and 4): stale views and AWS faults.
//!
//! Stale views are staged precisely with the library: a wrapping [`Target`] lets the test act
//! (as another replica, or as a person in the console) between the operator's ListExecutions and
//! its RedriveExecution, or hands the operator a list that is older than AWS's 15-minute token
//! window. Each case asserts what AWS documents (api-facts §1.2): a live token replays, a RUNNING
//! execution is not redrivable, an unknown or expired token is a new request.
//!
//! AWS faults run the real binary against the emulator: throttling, 5xx bursts, timeouts beyond
//! `--aws-timeout`, connection resets, malformed bodies, expired credentials and AccessDenied on
//! one state machine. Each must end with no crash, bounded retries, an error line that says what
//! is wrong, the other policies unaffected, and, once the fault clears, every eligible execution
//! redriven exactly once.

#[path = "support/operator.rs"]
mod operator;
mod reliability_common;
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use redrive_emulator::{
    self as emulator, Dur, EmulatorConfig, EmulatorHandle, ExecutionSpec, ExecutionStatus,
    FaultConfig, GenerateSpec, LedgerOutcome, Outcome, QuotaPreset, RoleSpec, Scenario,
    StateMachineSpec,
};
use redrive_operator::engine::{Candidate, Details, TargetLimits, client_token};
use redrive_operator::policy::Policy;
use redrive_operator::reconcile::{Context, PolicyState, PollReport, PollSettings, poll};
use redrive_operator::targets::stepfunctions::StepFunctions;
use redrive_operator::targets::{Discovery, RedriveOutcome, Target, TargetError};
use reliability_common::*;
use serde_json::json;
use support::*;

use operator::OperatorProcess;

const LIMIT: Duration = Duration::from_secs(120);

// ------------------------------------------------------------------------------------------
// Stale views (item 3)

/// A Step Functions target whose view can be made stale: `frozen` replaces ListExecutions with
/// an old answer, and `before_redrive` runs once, after the plan and before the first
/// RedriveExecution, to change the world behind the operator's back.
struct StaleView {
    inner: Arc<StepFunctions>,
    frozen: Option<Discovery>,
    before_redrive: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl StaleView {
    fn new(inner: Arc<StepFunctions>) -> Self {
        Self {
            inner,
            frozen: None,
            before_redrive: Mutex::new(None),
        }
    }
}

impl Target for StaleView {
    fn name(&self) -> &'static str {
        "stepfunctions"
    }
    fn limits(&self) -> TargetLimits {
        self.inner.limits()
    }
    async fn discover(&self, policy: &Policy, now: Timestamp) -> Result<Discovery, TargetError> {
        match &self.frozen {
            Some(d) => Ok(d.clone()),
            None => self.inner.discover(policy, now).await,
        }
    }
    async fn describe(&self, c: &Candidate) -> Result<Details, TargetError> {
        self.inner.describe(c).await
    }
    async fn running_redriven(&self, workflows: &[String]) -> Result<u32, TargetError> {
        self.inner.running_redriven(workflows).await
    }
    async fn redrive(
        &self,
        policy: &Policy,
        c: &Candidate,
        token: &str,
    ) -> Result<RedriveOutcome, TargetError> {
        let hook = self.before_redrive.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        self.inner.redrive(policy, c, token).await
    }
}

fn stale_policy(max_redrives: u32) -> Policy {
    redrive_operator::policy_file::parse_policy(json!({
        "apiVersion": "redrive.dev/v1alpha1",
        "kind": "RedrivePolicy",
        "metadata": {"name": "stale"},
        "spec": {
            "stepFunctions": {"region": REGION, "stateMachines": [sm_arn("stale")]},
            "maxRedrives": max_redrives,
        },
    }))
    .unwrap()
}

async fn context(h: &EmulatorHandle) -> Context {
    let mut settings = PollSettings::default();
    settings.aws.endpoint_url = Some(h.endpoint.clone());
    Context::new(settings)
}

/// RedriveExecution as another client would send it (the console, the CLI, another replica):
/// straight into the emulator's model.
fn redrive_by_someone_else(h: &EmulatorHandle, arn: &str, token: &str) -> (u16, String) {
    let body = json!({"executionArn": arn, "clientToken": token}).to_string();
    let (status, out) = emulator::handle_request(
        h.state(),
        "AWSStepFunctions.RedriveExecution",
        body.as_bytes(),
    );
    (status, String::from_utf8_lossy(&out).into_owned())
}

fn outcome_of(report: &PollReport, arn: &str) -> RedriveOutcome {
    report
        .actions
        .iter()
        .find(|a| a.run == arn)
        .unwrap_or_else(|| panic!("no action for {arn}: {:?}", report.actions))
        .result
        .clone()
        .unwrap_or_else(|e| panic!("{arn}: {e}"))
}

fn ledger_of(h: &EmulatorHandle, arn: &str) -> Vec<(u32, Option<String>, &'static str)> {
    h.ledger()
        .into_iter()
        .filter(|e| e.execution_arn == arn)
        .map(|e| {
            let kind = match e.outcome {
                LedgerOutcome::Redriven { .. } => "Redriven",
                LedgerOutcome::Replayed { .. } => "Replayed",
                LedgerOutcome::NotRedrivable { .. } => "NotRedrivable",
                _ => "other",
            };
            (e.redrive_count_before, e.client_token, kind)
        })
        .collect()
}

/// Between our list (redriveCount N, FAILED) and our RedriveExecution call, the execution is
/// redriven by someone else: by a replica with the same deterministic token, by the console
/// with another token while it is still RUNNING, or by the console after which it already
/// failed again.
#[tokio::test(flavor = "multi_thread")]
async fn stale_view_between_list_and_redrive_behaves_as_aws_documents() {
    let names = [
        "same-token-failed-again",
        "console-running",
        "console-failed-again",
        "untouched",
    ];
    let mut sm = StateMachineSpec::standard("stale").redrive_run_time(Duration::from_secs(3600));
    for n in names {
        sm = sm.execution(
            ExecutionSpec::failed(n, "Lambda.ServiceException")
                .stopped_ago(Duration::from_secs(600)),
        );
    }
    let h = Arc::new(
        emulator::start(EmulatorConfig::default(), Scenario::new().with(sm))
            .await
            .unwrap(),
    );
    let arn = |n: &str| exec_arn("stale", n);
    let ctx = context(&h).await;
    // maxRedrives 1: the policy allows exactly one redrive per execution.
    let policy = stale_policy(1);
    let target = StaleView::new(ctx.stepfunctions(&policy).await);
    let hh = h.clone();
    *target.before_redrive.lock().unwrap() = Some(Box::new(move || {
        // A replica that saw the same failure used the same token; the run failed again.
        let a = exec_arn("stale", "same-token-failed-again");
        assert_eq!(
            redrive_by_someone_else(&hh, &a, &client_token(&a, 0)).0,
            200
        );
        assert!(hh.fail_execution(&a, "Lambda.ServiceException", "again"));
        // Someone in the console redrove it (their own token); it is still running.
        let b = exec_arn("stale", "console-running");
        assert_eq!(redrive_by_someone_else(&hh, &b, "console-token-b").0, 200);
        // Someone in the console redrove it and it has already failed again.
        let c = exec_arn("stale", "console-failed-again");
        assert_eq!(redrive_by_someone_else(&hh, &c, "console-token-c").0, 200);
        assert!(hh.fail_execution(&c, "Lambda.ServiceException", "again"));
    }));
    let state = Mutex::new(PolicyState::default());
    let hn = h.clone();
    let report = poll(&target, &policy, &state, 4, move || hn.now())
        .await
        .unwrap();
    assert_eq!(report.actions.len(), 4, "{:?}", report.plan);

    // 1. Same token, within 15 minutes: AWS replays the earlier redrive (HTTP 200, nothing
    //    changes). The operator counts it as redriven; there is exactly one redrive.
    let a = arn("same-token-failed-again");
    assert!(matches!(
        outcome_of(&report, &a),
        RedriveOutcome::Redriven { .. }
    ));
    let tok = client_token(&a, 0);
    assert_eq!(
        ledger_of(&h, &a),
        vec![
            (0, Some(tok.clone()), "Redriven"),
            (1, Some(tok), "Replayed")
        ]
    );
    let snap = h.execution(&a).unwrap();
    assert_eq!(
        (snap.redrive_count, snap.status),
        (1, ExecutionStatus::Failed)
    );

    // 2. Console redrive, still RUNNING: ExecutionNotRedrivable, reported AlreadyRedriven.
    let b = arn("console-running");
    assert!(matches!(
        outcome_of(&report, &b),
        RedriveOutcome::AlreadyRedriven(m) if m.contains("RUNNING")
    ));
    assert_eq!(
        ledger_of(&h, &b)
            .iter()
            .map(|e| (e.0, e.2))
            .collect::<Vec<_>>(),
        vec![(0, "Redriven"), (1, "NotRedrivable")]
    );

    // 3. Console redrive with another token and the run already failed again: AWS has no
    //    "expected redriveCount" precondition and does not know our token, so our call is a new
    //    request and redrives attempt 1 (redriveCount 1 -> 2), beyond maxRedrives 1 and without
    //    the policy's checks for that attempt. This is the documented limit of a stale view
    //    racing a *foreign* actor (docs/reliability.md); no operator-only setup can reach it.
    let c = arn("console-failed-again");
    assert!(matches!(
        outcome_of(&report, &c),
        RedriveOutcome::Redriven { .. }
    ));
    assert_eq!(
        ledger_of(&h, &c)
            .iter()
            .map(|e| (e.0, e.2))
            .collect::<Vec<_>>(),
        vec![(0, "Redriven"), (1, "Redriven")]
    );
    assert_eq!(h.execution(&c).unwrap().redrive_count, 2);

    // 4. The control.
    assert_eq!(
        ledger_of(&h, &arn("untouched"))
            .iter()
            .map(|e| (e.0, e.2))
            .collect::<Vec<_>>(),
        vec![(0, "Redriven")]
    );

    // The next (fresh) poll sees the truth and does nothing more: every execution is at or
    // beyond maxRedrives, or running.
    let plain = ctx.stepfunctions(&policy).await;
    let hn = h.clone();
    let next = poll(plain.as_ref(), &policy, &state, 4, move || hn.now())
        .await
        .unwrap();
    assert!(next.actions.is_empty(), "{:?}", next.actions);
    figures(
        "stale_view_list_to_redrive",
        &[
            ("same_token_replayed", "1".into()),
            ("console_running_already_redriven", "1".into()),
            ("console_failed_again_redriven_again", "1".into()),
        ],
    );
}

/// A token replayed after AWS's 15-minute window. Only a view older than 15 minutes can send
/// it (the operator lists afresh at the start of every poll); this stages such a view (a
/// replica whose poll started 16 minutes ago) and shows what AWS does at 14 and at 16 minutes,
/// and that a fresh view is never fooled.
#[tokio::test(flavor = "multi_thread")]
async fn tokens_after_the_15_minute_window_are_new_requests() {
    let names = ["failed-again", "still-running", "fresh-view"];
    let mut sm = StateMachineSpec::standard("stale").redrive_run_time(Duration::from_secs(86_400));
    for n in names {
        sm = sm.execution(
            ExecutionSpec::failed(n, "Lambda.ServiceException")
                .stopped_ago(Duration::from_secs(600)),
        );
    }
    let h = Arc::new(
        emulator::start(EmulatorConfig::default(), Scenario::new().with(sm))
            .await
            .unwrap(),
    );
    let arn = |n: &str| exec_arn("stale", n);
    let ctx = context(&h).await;
    let policy = stale_policy(5);
    let sfn = ctx.stepfunctions(&policy).await;
    let now = {
        let h = h.clone();
        move || h.now()
    };

    // t0: a replica lists (redriveCount 0 for all) and keeps that view (of the first two).
    let mut old_view = sfn.discover(&policy, h.now()).await.unwrap();
    old_view
        .candidates
        .retain(|c| !c.id.ends_with(":fresh-view"));
    // t0: the operator redrives all three with the attempt-0 tokens.
    let state = Mutex::new(PolicyState::default());
    let r = poll(sfn.as_ref(), &policy, &state, 4, now.clone())
        .await
        .unwrap();
    assert_eq!(r.action_counts().get("Redriven"), Some(&3));
    // Two of them fail again; one keeps running.
    assert!(h.fail_execution(&arn("failed-again"), "Lambda.ServiceException", "again"));
    assert!(h.fail_execution(&arn("fresh-view"), "Lambda.ServiceException", "again"));

    let stale_target = || {
        let mut t = StaleView::new(sfn.clone());
        t.frozen = Some(old_view.clone());
        t
    };
    let only = |report: &PollReport, name: &str| outcome_of(report, &arn(name));

    // t0 + 14 min: the stale replica's attempt-0 token is still live: replayed, no redrive.
    h.advance_clock(Duration::from_secs(14 * 60));
    let stale_state = Mutex::new(PolicyState::default());
    let r = poll(&stale_target(), &policy, &stale_state, 4, now.clone())
        .await
        .unwrap();
    assert!(matches!(
        only(&r, "failed-again"),
        RedriveOutcome::Redriven { .. }
    ));
    assert_eq!(
        ledger_of(&h, &arn("failed-again")).last().unwrap().2,
        "Replayed"
    );
    assert_eq!(h.execution(&arn("failed-again")).unwrap().redrive_count, 1);

    // t0 + 16 min: the token has expired. For the run that is still RUNNING the guard holds
    // (ExecutionNotRedrivable -> AlreadyRedriven); for the run that failed again AWS performs a
    // new redrive (redriveCount 1 -> 2) on the strength of a 16-minute-old view.
    h.advance_clock(Duration::from_secs(2 * 60));
    let stale_state = Mutex::new(PolicyState::default());
    let r = poll(&stale_target(), &policy, &stale_state, 4, now.clone())
        .await
        .unwrap();
    assert!(matches!(
        only(&r, "still-running"),
        RedriveOutcome::AlreadyRedriven(_)
    ));
    assert!(matches!(
        only(&r, "failed-again"),
        RedriveOutcome::Redriven { .. }
    ));
    let l = ledger_of(&h, &arn("failed-again"));
    assert_eq!(
        l.last().unwrap(),
        &(1, Some(client_token(&arn("failed-again"), 0)), "Redriven"),
        "{l:?}"
    );
    assert_eq!(h.execution(&arn("failed-again")).unwrap().redrive_count, 2);

    // A fresh view at t0 + 16 min uses the attempt-1 token for the run that failed again: a
    // legitimate second attempt, never a replay of attempt 0.
    let fresh_state = Mutex::new(PolicyState::default());
    let before = h.ledger().len();
    let r = poll(sfn.as_ref(), &policy, &fresh_state, 4, now.clone())
        .await
        .unwrap();
    let fresh_calls: Vec<_> = h.ledger()[before..]
        .iter()
        .map(|e| (e.execution_arn.clone(), e.client_token.clone()))
        .collect();
    assert!(
        fresh_calls.iter().all(|(a, t)| {
            let n = h.ledger()[..before]
                .iter()
                .filter(|e| &e.execution_arn == a && e.outcome.is_redriven())
                .count() as u32;
            t.as_deref() == Some(client_token(a, n).as_str())
        }),
        "a fresh view always uses the token of the current redriveCount: {fresh_calls:?}"
    );
    assert!(matches!(
        only(&r, "fresh-view"),
        RedriveOutcome::Redriven { .. }
    ));
    assert_eq!(
        redrives_per_attempt(&h.ledger()).get(&(arn("fresh-view"), 1)),
        Some(&1)
    );
}

// ------------------------------------------------------------------------------------------
// AWS faults (item 4), with the real binary

const MAIN: [&str; 2] = ["fault-1", "fault-2"];
const OTHER: &str = "fault-3";

/// `n` fresh failures (failing again at once if redriven) in each fault machine, named `prefix`.
fn fault_batch(prefix: &str, n: u32) -> Scenario {
    fault_batch_started(prefix, n, Duration::from_secs(1200))
}

/// [`fault_batch`] with the newest execution started `ago` (on the emulator's clock).
fn fault_batch_started(prefix: &str, n: u32, ago: Duration) -> Scenario {
    let mut s = Scenario {
        state_machines: MAIN
            .iter()
            .chain([&OTHER])
            .map(|m| {
                StateMachineSpec::standard(m).generate(
                    GenerateSpec::new(n, prefix, [Outcome::fail("Lambda.ServiceException")])
                        .started_ago(ago),
                )
            })
            .collect(),
        ..Scenario::default()
    };
    s.defaults.redrive_run_time = Dur::secs(0);
    s
}

fn executions_with_prefix(h: &EmulatorHandle, machine: &str, prefix: &str) -> Vec<String> {
    h.executions_of(machine)
        .into_iter()
        .filter(|e| e.name.starts_with(prefix))
        .map(|e| e.execution_arn)
        .collect()
}

fn redriven_once(h: &EmulatorHandle, arns: &[String]) -> Result<(), String> {
    let per = redrives_per_attempt(&h.ledger());
    for a in arns {
        match per.get(&(a.clone(), 0)) {
            Some(1) => {}
            other => return Err(format!("{a}: {other:?} redrives of attempt 0")),
        }
        if per.keys().any(|(x, k)| x == a && *k > 0) {
            return Err(format!("{a} redriven beyond maxRedrives 1"));
        }
    }
    Ok(())
}

/// `error:` lines and `redrive failed` warnings of a run's stderr, without ANSI colours.
fn problem_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .map(strip_ansi)
        .filter(|l| l.starts_with("error:") || l.contains("redrive failed"))
        .collect()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

struct Faults {
    h: EmulatorHandle,
    dir: tempfile::TempDir,
    files: Vec<String>,
}

impl Faults {
    async fn new(config: EmulatorConfig) -> Self {
        let h = emulator::start(config, fault_batch("seed-", 1))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let main = write(
            dir.path(),
            "main.yaml",
            &policy_yaml("main", &MAIN, "  maxRedrives: 1\n  pollInterval: 10s\n"),
        );
        let other = write(
            dir.path(),
            "other.yaml",
            &policy_yaml("other", &[OTHER], "  maxRedrives: 1\n  pollInterval: 10s\n"),
        );
        Self {
            h,
            dir,
            files: vec![
                main.to_str().unwrap().to_string(),
                other.to_str().unwrap().to_string(),
            ],
        }
    }

    /// `run --once` on both policies with `extra` flags.
    async fn once(&self, extra: &[&str]) -> Run {
        let mut args = vec!["run", "--once", "--admin-addr", "off"];
        for f in &self.files {
            args.extend(["-f", f.as_str()]);
        }
        args.extend(["--endpoint-url", &self.h.endpoint]);
        args.extend(extra);
        let run = operator(&args, LIMIT).await;
        assert!(
            run.code.is_some(),
            "killed by a signal:\n{}\n{}",
            run.stdout,
            run.stderr
        );
        run
    }
}

/// One fault phase: fresh failures, one faulted poll, then the fault clears and one clean poll
/// must redrive every one of them exactly once.
struct Phase<'a> {
    name: &'a str,
    faults: FaultConfig,
    extra: &'a [&'a str],
    /// Substrings the faulted run's `error:` lines must contain.
    expect: &'a [&'a str],
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_faults_lose_nothing_duplicate_nothing_and_say_what_is_wrong() {
    let f = Faults::new(EmulatorConfig {
        seed: 11,
        ..EmulatorConfig::default()
    })
    .await;
    let h = &f.h;
    let max_attempts = 3u64;
    let attempts_flag = max_attempts.to_string();
    let phases = [
        Phase {
            name: "5xx-burst",
            faults: FaultConfig {
                server_error_rate: 1.0,
                ..FaultConfig::default()
            },
            extra: &[],
            expect: &["ListExecutions", "transient"],
        },
        Phase {
            name: "5xx-on-redrive",
            faults: FaultConfig {
                server_error_rate: 1.0,
                only_apis: vec!["RedriveExecution".into()],
                ..FaultConfig::default()
            },
            extra: &[],
            expect: &["RedriveExecution"],
        },
        Phase {
            name: "connection-resets",
            faults: FaultConfig {
                drop_rate: 1.0,
                only_apis: vec!["RedriveExecution".into()],
                ..FaultConfig::default()
            },
            extra: &[],
            expect: &["RedriveExecution"],
        },
        Phase {
            name: "malformed-bodies",
            faults: FaultConfig {
                malformed_rate: 1.0,
                ..FaultConfig::default()
            },
            extra: &[],
            expect: &["ListExecutions"],
        },
        Phase {
            name: "timeouts",
            // Each RedriveExecution takes 1.5 s; the operator gives a call 400 ms.
            faults: FaultConfig {
                latency: Some(Duration::from_millis(1500)),
                latency_rate: 1.0,
                only_apis: vec!["RedriveExecution".into()],
                ..FaultConfig::default()
            },
            extra: &["--aws-timeout", "400ms"],
            expect: &["RedriveExecution", "timed out"],
        },
    ];
    let mut figures_out: Vec<(String, String)> = Vec::new();
    for (i, p) in phases.iter().enumerate() {
        let prefix = format!("p{i}-");
        h.seed(fault_batch(&prefix, 6)).unwrap();
        let fresh: Vec<String> = MAIN
            .iter()
            .chain([&OTHER])
            .flat_map(|m| executions_with_prefix(h, m, &prefix))
            .collect();
        let stats_before = h.stats();
        let ledger_before = h.ledger().len();
        h.set_faults(p.faults.clone());
        let mut extra: Vec<&str> = vec!["--aws-max-attempts", &attempts_flag];
        extra.extend(p.extra);
        let t = Instant::now();
        let run = f.once(&extra).await;
        let took = t.elapsed();
        h.set_faults(FaultConfig::default());
        assert_eq!(
            run.code,
            Some(1),
            "{}: a faulted poll exits 1:\n{}",
            p.name,
            run.stderr
        );
        // What the operator says: `error:` lines for lists and describes, one `redrive
        // failed` warning (policy, execution, attempt, token, category, error) per failed
        // RedriveExecution, and the poll summary's `N Failed`.
        let errors = problem_lines(&run.stderr);
        assert!(
            !errors.is_empty(),
            "{}: nothing reported:\n{}\n{}",
            p.name,
            run.stdout,
            run.stderr
        );
        let joined = errors.join("\n");
        for needle in p.expect {
            assert!(
                joined.contains(needle),
                "{}: the reports lack {needle:?}:\n{joined}",
                p.name
            );
        }
        for line in &errors {
            assert!(
                line.starts_with("error: policy main")
                    || line.starts_with("error: policy other")
                    || line.contains("policy=main")
                    || line.contains("policy=other"),
                "{}: every report names its policy: {line}",
                p.name
            );
        }
        if p.expect.contains(&"RedriveExecution") {
            assert!(
                run.stdout.contains(" Failed; "),
                "{}: the summary counts failed redrives:\n{}",
                p.name,
                run.stdout
            );
        }
        // Bounded retries: no logical call was attempted more than --aws-max-attempts times.
        let stats = h.stats();
        let lists = stats.calls("ListExecutions") - stats_before.calls("ListExecutions");
        assert!(
            lists <= 3 * max_attempts,
            "{}: {lists} ListExecutions attempts for 3 lists",
            p.name
        );
        let mut per_token: BTreeMap<String, u64> = BTreeMap::new();
        for e in &h.ledger()[ledger_before..] {
            *per_token
                .entry(e.client_token.clone().unwrap_or_default())
                .or_insert(0) += 1;
        }
        let worst = per_token.values().copied().max().unwrap_or(0);
        assert!(
            worst <= max_attempts,
            "{}: a redrive was attempted {worst} times",
            p.name
        );
        assert!(duplicates(h).is_empty(), "{}: {:?}", p.name, duplicates(h));

        // Late arrivals of timed-out calls land (or not) before the clean poll.
        sleep_ms(1700).await;
        let clean = f.once(&[]).await;
        assert!(
            clean.ok(),
            "{}: the clean poll after the fault:\n{}",
            p.name,
            clean.stderr
        );
        redriven_once(h, &fresh).unwrap_or_else(|e| panic!("{}: {e}", p.name));
        figures_out.push((
            p.name.to_string(),
            format!(
                "faulted_poll_{}ms_errors_{}_worst_attempts_{}",
                took.as_millis(),
                errors.len(),
                worst
            ),
        ));
    }

    // AccessDenied on one state machine: the other machine of the same policy and the other
    // policy are unaffected; once the permission is fixed nothing is lost.
    let prefix = "denied-";
    h.seed(fault_batch(prefix, 6)).unwrap();
    let denied_sm = sm_arn("fault-2");
    h.set_faults(FaultConfig {
        access_denied_state_machines: vec![denied_sm.clone()],
        ..FaultConfig::default()
    });
    let run = f.once(&["--aws-max-attempts", &attempts_flag]).await;
    assert_eq!(run.code, Some(1));
    let errors = run.error_lines();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].contains("policy main")
            && errors[0].contains("fault-2")
            && errors[0].contains("AccessDenied"),
        "{}",
        errors[0]
    );
    let ok_now: Vec<String> = ["fault-1", OTHER]
        .iter()
        .flat_map(|m| executions_with_prefix(h, m, prefix))
        .collect();
    redriven_once(h, &ok_now).unwrap();
    let denied_execs = executions_with_prefix(h, "fault-2", prefix);
    assert!(
        denied_execs
            .iter()
            .all(|a| !redriven_executions(h).contains(a)),
        "nothing redriven through a denied machine"
    );
    assert_eq!(
        h.stats().errors("ListExecutions", "AccessDeniedException"),
        1,
        "AccessDenied is not retried"
    );
    h.set_faults(FaultConfig::default());
    assert!(f.once(&[]).await.ok());
    redriven_once(h, &denied_execs).unwrap();

    assert!(duplicates(h).is_empty());
    let injected = h.stats().faults_injected;
    figures(
        "aws_faults",
        &[
            ("faults_injected", format!("{injected:?}").replace(' ', "")),
            (
                "phases",
                figures_out
                    .iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("duplicates", "0".into()),
        ],
    );
}

/// Sustained throttling in the long-running loop (`run`, not `--once`): retried with the SDK's
/// adaptive backoff, drained in the end, reported, no duplicate.
#[tokio::test(flavor = "multi_thread")]
async fn sustained_throttling_in_the_running_loop_drains_without_duplicates() {
    // 15 % of the "other regions" quotas: RedriveExecution 120 burst then 22.5/s,
    // ListExecutions 15 burst then 3 every 10 s (exactly what the 3 machines need per poll).
    let f = Faults::new(EmulatorConfig {
        quota: QuotaPreset::OtherRegions,
        quota_scale: 0.15,
        ..EmulatorConfig::default()
    })
    .await;
    let h = &f.h;
    h.seed(fault_batch("t-", scale(100, 500) as u32)).unwrap();
    let all: Vec<String> = MAIN
        .iter()
        .chain([&OTHER])
        .flat_map(|m| executions_with_prefix(h, m, ""))
        .collect();
    let mut args: Vec<&str> = vec!["--admin-addr", "off", "--endpoint-url", &h.endpoint];
    for file in &f.files {
        args.extend(["-f", file.as_str()]);
    }
    let mut op = OperatorProcess::spawn_local("throttled", f.dir.path(), &args);
    let deadline = Instant::now() + Duration::from_secs(90);
    while redriven_once(h, &all).is_err() {
        assert!(op.alive(), "{}", op.logs());
        assert!(duplicates(h).is_empty());
        assert!(
            Instant::now() < deadline,
            "not drained: {}",
            redriven_once(h, &all).unwrap_err()
        );
        sleep_ms(500).await;
    }
    let throttled = h.stats().throttled("RedriveExecution") + h.stats().throttled("ListExecutions");
    assert!(throttled > 0, "the quotas were hit");
    assert!(op.terminate(Duration::from_secs(20)).is_some());
    let logs = op.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    figures(
        "sustained_throttling",
        &[
            ("executions", all.len().to_string()),
            ("throttled_answers", throttled.to_string()),
            (
                "redrive_calls",
                h.stats().calls("RedriveExecution").to_string(),
            ),
            ("duplicates", "0".into()),
        ],
    );
}

/// Assumed-role credentials that AWS considers expired while the SDK still caches them
/// (clock skew, revoked session): calls fail with ExpiredToken and are reported; the process
/// keeps going, re-assumes the role when its cache refreshes, and loses nothing.
#[tokio::test(flavor = "multi_thread")]
async fn expired_assumed_credentials_recover_without_losing_work() {
    let role = "arn:aws:iam::123456789012:role/local-redriver";
    let scenario = fault_batch("before-", 3).with_role(
        RoleSpec::new(role)
            .external_id("local")
            .credential_ttl(Duration::from_secs(25)),
    );
    let h = emulator::start(EmulatorConfig::default(), scenario)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = policy_yaml("roled", &MAIN, "  maxRedrives: 1\n  pollInterval: 10s\n").replace(
        "    region: us-east-1\n",
        &format!("    region: us-east-1\n    roleArn: {role}\n"),
    );
    let file = write(dir.path(), "roled.yaml", &text);
    let mut op = OperatorProcess::spawn_local(
        "expiring",
        dir.path(),
        &[
            "-f",
            file.to_str().unwrap(),
            "--endpoint-url",
            &h.endpoint,
            "--admin-addr",
            "off",
        ],
    );
    let first: Vec<String> = MAIN
        .iter()
        .flat_map(|m| executions_with_prefix(&h, m, "before-"))
        .collect();
    operator::wait_until(
        Duration::from_secs(30),
        "first redrives",
        || op.logs(),
        || async { redriven_once(&h, &first).is_ok().then_some(()) },
    )
    .await;
    // AWS's clock jumps an hour: every cached key is now expired for AWS, not for the SDK.
    h.advance_clock(Duration::from_secs(3600));
    // Stopped before the operator's (real) now, although AWS's clock is an hour ahead.
    h.seed(fault_batch_started(
        "after-",
        3,
        Duration::from_secs(3600 + 1200),
    ))
    .unwrap();
    let second: Vec<String> = MAIN
        .iter()
        .flat_map(|m| executions_with_prefix(&h, m, "after-"))
        .collect();
    operator::wait_until(
        Duration::from_secs(60),
        "redrives after the credentials were refreshed",
        || format!("{}\nsts: {:?}", op.logs(), h.sts_ledger()),
        || async { redriven_once(&h, &second).is_ok().then_some(()) },
    )
    .await;
    assert!(op.alive(), "{}", op.logs());
    let logs = op.logs();
    let expired = h
        .stats()
        .by_api
        .values()
        .map(|a| a.errors.get("ExpiredTokenException").copied().unwrap_or(0))
        .sum::<u64>();
    assert!(
        expired > 0,
        "calls were made with expired credentials: {:?}",
        h.stats()
    );
    assert!(
        logs.contains("ExpiredToken"),
        "the operator reported the expired credentials:\n{logs}"
    );
    let issued = h
        .sts_ledger()
        .iter()
        .filter(|e| e.outcome.is_issued())
        .count();
    assert!(issued >= 2, "the role was assumed again: {issued}");
    assert!(duplicates(&h).is_empty());
    figures(
        "expired_credentials",
        &[
            ("expired_token_answers", expired.to_string()),
            ("assume_role_calls", issued.to_string()),
            ("duplicates", "0".into()),
        ],
    );
}
