//! Event-driven redrive in local mode, through a real third-party EventBridge and SQS (moto):
//! emulator status change → moto EventBridge rule → moto SQS → the operator's consumer → one
//! DescribeExecution → the engine → RedriveExecution. Events are hints: forged, duplicated or
//! dropped ones never make the operator act where its policy says no, or twice, and the sweep
//! still catches what events miss. moto comes from scripts/moto.sh; without it these fail.

#[path = "support/operator.rs"]
mod operator;
mod support;

use std::path::Path;
use std::time::Duration;

use redrive_emulator::{
    self as emulator, EmulatorConfig, EmulatorHandle, EventFaults, EventsConfig, ExecutionSpec,
    StateMachineSpec,
};
use support::events;
use support::pipelines::wait_for;

use operator::OperatorProcess;

const ACCOUNT: &str = "123456789012";
/// A queue fed by the documented rule on the default bus of `region` (in moto).
async fn queue(region: &str) -> String {
    events::queue(
        region,
        &format!("redrive-events-{region}"),
        events::SFN_PATTERN,
    )
    .await
}

fn sm_arn(region: &str, name: &str) -> String {
    format!("arn:aws:states:{region}:{ACCOUNT}:stateMachine:{name}")
}

fn exec_arn(region: &str, sm: &str, name: &str) -> String {
    format!("arn:aws:states:{region}:{ACCOUNT}:execution:{sm}:{name}")
}

async fn start(region: &str, faults: EventFaults) -> EmulatorHandle {
    let config = EmulatorConfig {
        region: region.to_string(),
        events: EventsConfig {
            eventbridge_endpoint: Some(redrive_emulator::moto::endpoint().to_string()),
            faults,
            ..EventsConfig::default()
        },
        ..EmulatorConfig::default()
    };
    let scenario = emulator::Scenario::new()
        .with(
            StateMachineSpec::standard("orders")
                .redrive_run_time(Duration::from_millis(300))
                .execution(ExecutionSpec::running("r1"))
                .execution(ExecutionSpec::running("r2")),
        )
        .with(StateMachineSpec::standard("payments").execution(ExecutionSpec::running("p1")));
    emulator::start(config, scenario).await.expect("emulator")
}

fn policy(dir: &Path, region: &str) -> String {
    let yaml = format!(
        "apiVersion: redrive.dev/v1alpha1
kind: RedrivePolicy
metadata:
  name: orders
spec:
  stepFunctions:
    region: {region}
    stateMachines: [\"{}\"]
  maxRedrives: 3
  pollInterval: 10s
",
        sm_arn(region, "orders")
    );
    support::write(dir, "orders.yaml", &yaml)
        .display()
        .to_string()
}

fn spawn(
    dir: &Path,
    emu: &EmulatorHandle,
    region: &str,
    queue: &str,
    sweep: &str,
    admin: &str,
) -> OperatorProcess {
    let file = policy(dir, region);
    let args = [
        "-f",
        &file,
        "--endpoint-url",
        &emu.endpoint,
        "--event-queue-url",
        queue,
        "--event-queue-region",
        region,
        "--sqs-endpoint-url",
        redrive_emulator::moto::endpoint(),
        "--sweep-interval",
        sweep,
        "--event-visibility-timeout",
        "10s",
        "--admin-addr",
        admin,
    ];
    OperatorProcess::spawn_local(&format!("op-{region}"), dir, &args)
}

fn redrives_of(emu: &EmulatorHandle, arn: &str) -> usize {
    emu.ledger()
        .iter()
        .filter(|e| e.execution_arn == arn && e.outcome.is_redriven())
        .count()
}

/// Waits for the operator's first poll (the sweep): both statuses listed.
async fn first_sweep(emu: &EmulatorHandle) {
    let ok = wait_for(Duration::from_secs(30), || async {
        (emu.stats().calls("ListExecutions") >= 2).then_some(())
    })
    .await;
    assert!(ok.is_some(), "the operator never polled");
}

/// A failure after the first sweep is redriven from its event, long before the next sweep
/// (1 h away): no listing happens in between. Duplicated and reordered events (every event
/// delivered twice, half of them late) redrive once: a late FAILED finds the run running again.
#[tokio::test(flavor = "multi_thread")]
async fn a_failure_is_redriven_from_its_event_without_waiting_for_the_sweep() {
    let region = "us-west-2";
    let url = queue(region).await;
    let emu = start(
        region,
        // Every event twice, half of them out of order: a FAILED may arrive after the RUNNING
        // of the redrive it caused.
        EventFaults {
            duplicate_rate: 1.0,
            reorder_rate: 0.5,
            ..EventFaults::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut op = spawn(dir.path(), &emu, region, &url, "1h", "off");
    first_sweep(&emu).await;
    let lists = emu.stats().calls("ListExecutions");
    let r1 = exec_arn(region, "orders", "r1");
    assert!(emu.fail_execution(&r1, "Lambda.ServiceException", "boom"));
    let redriven = wait_for(Duration::from_secs(60), || async {
        (redrives_of(&emu, &r1) >= 1).then_some(())
    })
    .await;
    assert!(
        redriven.is_some(),
        "not redriven from the event:\n{}",
        op.logs()
    );
    // Duplicates and the RUNNING event after the redrive: nothing more.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(redrives_of(&emu, &r1), 1, "{:#?}", emu.ledger());
    assert_eq!(
        emu.stats().calls("ListExecutions"),
        lists,
        "an event, not a sweep, redrove it"
    );
    op.kill9();
}

/// Forged messages written straight to the queue: a FAILED event for an execution that is
/// RUNNING, for a machine the policy does not cover, for a machine/execution pair that does
/// not match, and garbage. None of them leads to a redrive.
#[tokio::test(flavor = "multi_thread")]
async fn forged_and_malformed_messages_never_lead_to_a_redrive() {
    let region = "eu-west-1";
    let url = queue(region).await;
    let emu = start(region, EventFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut op = spawn(dir.path(), &emu, region, &url, "1h", "127.0.0.1:0");
    first_sweep(&emu).await;
    // payments/p1 really failed, but no policy covers payments.
    assert!(emu.fail_execution(&exec_arn(region, "payments", "p1"), "X", "y"));
    let forge = |exec: &str, machine: &str| {
        serde_json::json!({
            "version": "0", "id": "forged", "source": "aws.states",
            "detail-type": "Step Functions Execution Status Change",
            "account": ACCOUNT, "region": region, "time": "2026-12-01T00:00:00Z",
            "resources": [exec],
            "detail": {"executionArn": exec, "stateMachineArn": machine, "status": "FAILED"}
        })
        .to_string()
    };
    let bodies = [
        forge(&exec_arn(region, "orders", "r2"), &sm_arn(region, "orders")),
        forge(
            &exec_arn(region, "payments", "p1"),
            &sm_arn(region, "payments"),
        ),
        forge(
            &exec_arn(region, "payments", "p1"),
            &sm_arn(region, "orders"),
        ),
        forge(
            &exec_arn(region, "orders", "does-not-exist"),
            &sm_arn(region, "orders"),
        ),
        "{\"source\": 7".to_string(),
        "x".repeat(200_000),
    ];
    for b in &bodies {
        events::send(region, &url, b).await;
    }
    // Then a real failure of the covered machine: it is redriven, so the queue was read.
    let r1 = exec_arn(region, "orders", "r1");
    assert!(emu.fail_execution(&r1, "Lambda.ServiceException", "boom"));
    let redriven = wait_for(Duration::from_secs(60), || async {
        (redrives_of(&emu, &r1) == 1).then_some(())
    })
    .await;
    assert!(redriven.is_some(), "{}", op.logs());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let others: Vec<_> = emu
        .ledger()
        .into_iter()
        .filter(|e| e.execution_arn != r1)
        .collect();
    assert!(others.is_empty(), "acted on a forged hint: {others:#?}");
    // Every message is accounted for in the metrics, by why it went where it went.
    let addr = operator::admin_addr_in(&op.logs()).expect("admin address in the logs");
    let (code, metrics) = operator::http_get(&addr, "/metrics")
        .await
        .expect("/metrics");
    assert_eq!(code, 200);
    let count = |outcome: &str| {
        operator::metric_sum(
            &metrics,
            "redrive_event_messages_total",
            &[("outcome", outcome)],
        )
    };
    // The truncated document and the 200 kB of "x" (SQS's own limit is 256 KiB).
    assert!(count("not_json") >= 2.0, "{metrics}");
    // The execution that does not belong to the machine it names.
    assert!(count("bad_identifier") >= 1.0, "{metrics}");
    assert!(count("not_covered") >= 1.0, "{metrics}");
    assert!(count("routed") >= 3.0, "{metrics}");
    assert!(
        operator::metric_sum(&metrics, "redrive_event_lag_seconds_count", &[]) >= 1.0,
        "{metrics}"
    );
    assert!(
        operator::metric_sum(
            &metrics,
            "redrive_event_last_receive_timestamp_seconds",
            &[]
        ) > 1.7e9,
        "{metrics}"
    );
    let (live, why) = operator::http_get(&addr, "/livez").await.expect("/livez");
    assert_eq!(live, 200, "{why}");
    op.kill9();
}

/// Every event dropped on the way: the sweep (15 s here) still redrives the failure.
#[tokio::test(flavor = "multi_thread")]
async fn lost_events_are_caught_by_the_sweep() {
    let region = "ap-south-1";
    let url = queue(region).await;
    let emu = start(
        region,
        EventFaults {
            drop_rate: 1.0,
            ..EventFaults::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut op = spawn(dir.path(), &emu, region, &url, "15s", "off");
    first_sweep(&emu).await;
    let r1 = exec_arn(region, "orders", "r1");
    assert!(emu.fail_execution(&r1, "Lambda.ServiceException", "boom"));
    let redriven = wait_for(Duration::from_secs(60), || async {
        (redrives_of(&emu, &r1) == 1).then_some(())
    })
    .await;
    assert!(redriven.is_some(), "{}", op.logs());
    assert!(emu.event_stats().dropped >= 1);
    op.kill9();
}

/// The queue does not exist when the operator starts (deleted, wrong permissions, an outage):
/// the policy polls on its own pollInterval meanwhile, so failures are still redriven; once the
/// queue is there, hints flow and the polls stop until the sweep (1 h) is due.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_queue_falls_back_to_polling_and_recovers() {
    let region = "sa-east-1";
    let name = format!("redrive-events-{region}");
    events::rule_to_queue(region, "redrive-late-queue", events::SFN_PATTERN, &name).await;
    let url = format!("{}/{ACCOUNT}/{name}", redrive_emulator::moto::endpoint());
    let emu = start(region, EventFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut op = spawn(dir.path(), &emu, region, &url, "1h", "127.0.0.1:0");
    first_sweep(&emu).await;
    // No queue: the failure is found by a poll (pollInterval 10 s), not an event.
    let r1 = exec_arn(region, "orders", "r1");
    assert!(emu.fail_execution(&r1, "Lambda.ServiceException", "boom"));
    let redriven = wait_for(Duration::from_secs(60), || async {
        (redrives_of(&emu, &r1) == 1).then_some(())
    })
    .await;
    assert!(
        redriven.is_some(),
        "not redriven while the queue was missing:\n{}",
        op.logs()
    );
    let addr = operator::admin_addr_in(&op.logs()).expect("admin address in the logs");
    let metric = |name: &'static str| {
        let addr = addr.clone();
        async move {
            let (_, m) = operator::http_get(&addr, "/metrics")
                .await
                .expect("/metrics");
            operator::metric_sum(&m, name, &[])
        }
    };
    assert!(metric("redrive_event_receive_errors_total").await >= 1.0);
    // Failing receives are not a wedge: the consumer keeps turning.
    let (live, why) = operator::http_get(&addr, "/livez").await.expect("/livez");
    assert_eq!(live, 200, "{why}");

    // The queue appears: hints flow again, and the policy stops polling (the sweep is 1 h away).
    events::create_queue(region, &name).await;
    let receiving = wait_for(Duration::from_secs(60), || async {
        (metric("redrive_event_last_receive_timestamp_seconds").await > 0.0).then_some(())
    })
    .await;
    assert!(
        receiving.is_some(),
        "never received from the new queue:\n{}",
        op.logs()
    );
    // A poll already asleep when the queue came back may still run once.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let lists = emu.stats().calls("ListExecutions");
    let r2 = exec_arn(region, "orders", "r2");
    assert!(emu.fail_execution(&r2, "Lambda.ServiceException", "boom"));
    let redriven = wait_for(Duration::from_secs(60), || async {
        (redrives_of(&emu, &r2) == 1).then_some(())
    })
    .await;
    assert!(
        redriven.is_some(),
        "not redriven from its event:\n{}",
        op.logs()
    );
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        emu.stats().calls("ListExecutions"),
        lists,
        "polls went on although hints flow again"
    );
    op.kill9();
}
