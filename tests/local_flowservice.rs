//! Local mode (`run -f --state-dir --secrets-dir`), Adobe Flow Service: lineage in the file
//! ledger keeps "never re-trigger twice" true across kill -9, two processes on one state
//! directory, token expiry and 429 storms. Checked against the emulator's ledger of re-trigger
//! calls (each run re-triggered at most once, at most maxRedrives per root).

#[path = "support/operator.rs"]
mod operator;
mod support;

use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use redrive_emulator::{self as emulator, EmulatorConfig, EmulatorHandle, FaultConfig};
use support::flows::*;

use operator::OperatorProcess;

const SECRET_NAME: &str = "aep-credentials";

fn policy_file(dir: &Path, flows: &[String], max_redrives: u32, extra: &str) -> String {
    let list = flows
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let yaml = format!(
        "apiVersion: redrive.dev/v1alpha1
kind: RedrivePolicy
metadata:
  name: dataflows
spec:
  flowService:
    sandbox: prod
    credentialsSecretRef: {{name: {SECRET_NAME}}}
    flows: [{list}]
{extra}  maxRedrives: {max_redrives}
  backoff: {{initial: 1s, factor: 1, max: 1s, jitter: 0}}
  pollInterval: 10s
"
    );
    support::write(dir, "flows.yaml", &yaml)
        .display()
        .to_string()
}

fn args(emu: &EmulatorHandle, file: &str, state: &Path, secrets: &Path) -> Vec<String> {
    [
        "-f",
        file,
        "--state-dir",
        &state.display().to_string(),
        "--secrets-dir",
        &secrets.display().to_string(),
        "--adobe-platform-url",
        &emu.flowservice_url(),
        "--adobe-ims-url",
        &emu.ims_token_url(),
        "--admin-addr",
        "off",
        "--aws-timeout",
        "2s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn spawn(name: &str, dir: &Path, args: &[String]) -> OperatorProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    OperatorProcess::spawn_local(name, dir, &args)
}

/// 30 kill -9 at random moments (100 with REDRIVE_LONG=1), some while the re-trigger is held in
/// flight: never a second re-trigger of one attempt, every dataflow succeeds in the end, and
/// each lineage took exactly its three re-triggers.
#[tokio::test(flavor = "multi_thread")]
async fn kill9_loop_never_retriggers_twice() {
    let kills = if std::env::var_os("REDRIVE_LONG").is_some() {
        100
    } else {
        30
    };
    let seed: u64 = std::env::var("REDRIVE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xf10e);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (scenario, flows) = fleet("kill", 6, 3);
    let emu = emulator::start(EmulatorConfig::default(), scenario)
        .await
        .unwrap();
    emu.set_faults(FaultConfig {
        latency: Some(Duration::from_millis(400)),
        latency_rate: 0.5,
        only_apis: vec![
            "flowservice:ReTriggerRun".into(),
            "flowservice:GetRun".into(),
        ],
        ..FaultConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let secrets = write_secret_dir(&dir.path().join("secrets"), SECRET_NAME, CLIENT_SECRET);
    let file = policy_file(dir.path(), &flows, 4, "");
    let args = args(&emu, &file, &state, &secrets);
    for i in 0..kills {
        let mut op = spawn(&format!("life-{i}"), dir.path(), &args);
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..2000))).await;
        op.kill9();
        assert_no_duplicate_retriggers(&emu, 4, &format!("after kill {i} (seed {seed})"));
    }
    emu.set_faults(FaultConfig::default());
    let mut last = spawn("survivor", dir.path(), &args);
    let ok = all_succeed(&emu, &flows, Duration::from_secs(180)).await;
    assert!(
        ok,
        "lost work after {kills} kills (seed {seed}): {:#?}\n{}",
        report(&emu, &flows),
        last.logs()
    );
    assert_no_duplicate_retriggers(&emu, 4, "kill loop");
    assert_eq!(
        retriggered(&emu),
        6 * 3,
        "three re-triggers per dataflow, each once: {:#?}",
        report(&emu, &flows)
    );
    eprintln!(
        "FIGURES kill9_loop_never_retriggers_twice: kills={kills} seed={seed} retriggers={} duplicates=0",
        retriggered(&emu)
    );
    last.kill9();
}

/// Two processes on one state directory, tokens that expire every 3 s and a 429 storm
/// (30 % of Platform calls): each attempt is claimed once, throttling is survived, and nothing
/// is left behind once the storm ends.
#[tokio::test(flavor = "multi_thread")]
async fn two_processes_token_expiry_and_429_storms() {
    let (scenario, flows) = fleet("storm", 8, 2);
    let mut config = EmulatorConfig::default();
    config.flowservice.token_ttl = Duration::from_secs(3);
    config.flowservice.retry_after = Duration::from_secs(1);
    let emu = emulator::start(config, scenario).await.unwrap();
    emu.set_flowservice_throttle(0.3, Duration::from_secs(1));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let secrets = write_secret_dir(&dir.path().join("secrets"), SECRET_NAME, CLIENT_SECRET);
    let file = policy_file(dir.path(), &flows, 3, "");
    let args = args(&emu, &file, &state, &secrets);
    let mut a = spawn("a", dir.path(), &args);
    let mut b = spawn("b", dir.path(), &args);
    tokio::time::sleep(Duration::from_secs(15)).await;
    emu.set_flowservice_throttle(0.0, Duration::from_secs(1));
    let ok = all_succeed(&emu, &flows, Duration::from_secs(120)).await;
    assert!(
        ok,
        "{:#?}\na:\n{}\nb:\n{}",
        report(&emu, &flows),
        a.logs(),
        b.logs()
    );
    assert_no_duplicate_retriggers(&emu, 3, "two processes");
    assert_eq!(retriggered(&emu), 8 * 2);
    let throttled = emu
        .flowservice_ledger()
        .iter()
        .filter(|e| e.outcome == redrive_emulator::ReTriggerOutcome::Throttled)
        .count();
    let tokens = emu.stats().calls("ims:Token");
    eprintln!(
        "FIGURES two_processes_token_expiry_and_429_storms: retriggers={} throttled_retriggers={throttled} ims_tokens={tokens}",
        retriggered(&emu)
    );
    assert!(tokens > 2, "tokens expired and were renewed: {tokens}");
    for p in [&mut a, &mut b] {
        assert!(!p.logs().contains(CLIENT_SECRET), "secret in the logs");
    }
    a.kill9();
    b.kill9();
}

/// A crash between the re-trigger and its record: a claim is left in Intent and the run it
/// created exists, unowned. After the claim's deadline the operator adopts that run into the
/// lineage (never re-triggers the root again) and goes on from it.
#[tokio::test(flavor = "multi_thread")]
async fn a_claim_left_after_acting_is_resolved_by_adopting_its_run() {
    use redrive_operator::aws::CallCounter;
    use redrive_operator::ledger::{AttemptKey, FileLedger, Ledger, NewClaim, Phase};
    use redrive_operator::targets::flowservice::credentials::Credentials;
    use redrive_operator::targets::flowservice::http::Http;
    use redrive_operator::targets::flowservice::platform::{
        Platform, ReTriggerOp, ReTriggerResult,
    };
    let (scenario, flows) = fleet("adopt", 1, 2);
    let emu = emulator::start(EmulatorConfig::default(), scenario)
        .await
        .unwrap();
    let flow = &flows[0];
    let root = emu.flow_runs(flow)[0].id.clone();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // The crashed holder: it claimed attempt 1 of the root and re-triggered it, then died.
    let ledger = FileLedger::open(&state).unwrap();
    let now = jiff::Timestamp::now();
    let claim = NewClaim {
        key: AttemptKey::new("local", "flowservice", root.clone(), 1),
        policy: "dataflows".into(),
        workflow: flow.clone(),
        root: root.clone(),
        holder: "crashed/1".into(),
        now,
        deadline: now + jiff::SignedDuration::from_secs(2),
    };
    assert!(ledger.claim(claim).await.unwrap().is_claimed());
    let platform = Platform::new(
        Http::new(Duration::from_secs(5), CallCounter::default()),
        &emu.flowservice_url(),
        &emu.ims_token_url(),
        ReTriggerOp::default(),
        3,
    );
    let creds = Credentials::from_map("test", &secret_data(CLIENT_SECRET)).unwrap();
    let run = platform
        .get_run(&creds, "prod", &root)
        .await
        .unwrap()
        .unwrap();
    let ReTriggerResult::Created(orphan) = platform.retrigger(&creds, "prod", &run).await.unwrap()
    else {
        panic!("the crashed holder's re-trigger was refused");
    };
    tokio::time::sleep(Duration::from_secs(3)).await;

    let secrets = write_secret_dir(&dir.path().join("secrets"), SECRET_NAME, CLIENT_SECRET);
    let file = policy_file(dir.path(), &flows, 4, "");
    let mut op = spawn("survivor", dir.path(), &args(&emu, &file, &state, &secrets));
    let ok = all_succeed(&emu, &flows, Duration::from_secs(60)).await;
    assert!(ok, "{:#?}\n{}", report(&emu, &flows), op.logs());
    assert_no_duplicate_retriggers(&emu, 4, "adoption");
    let per_run = retriggers(&emu);
    assert_eq!(
        per_run.get(&root),
        Some(&1),
        "the root was re-triggered once, by the crashed holder: {per_run:?}"
    );
    assert_eq!(
        per_run.get(&orphan.id),
        Some(&1),
        "attempt 2 acted on the adopted run: {per_run:?}"
    );
    let records = FileLedger::open_read_only(&state)
        .unwrap()
        .list("local", Some(&root))
        .await
        .unwrap();
    let first = records.iter().find(|r| r.key.attempt == 1).unwrap();
    assert_eq!(first.phase, Phase::Acted, "{records:#?}");
    let outcome = first.outcome.as_ref().unwrap();
    assert_eq!(outcome.code.as_deref(), Some("Adopted"), "{records:#?}");
    assert_eq!(outcome.new_run_id.as_deref(), Some(orphan.id.as_str()));
    op.kill9();
}
