//! The SQS event consumer against a real third-party SQS (moto, scripts/moto.sh): hints are
//! handled and then deleted in batches; poison messages (malformed, forged, huge) are deleted
//! and counted, never redelivered forever; a hint that could not be decided stays and comes
//! back after the visibility timeout; the consumer stops cleanly.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use futures::FutureExt;
use redrive_operator::events::consumer::{self, ConsumerStats, Handled, QueueSettings};
use redrive_operator::events::message::{Hint, Rejected};

fn sqs(region: &str) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(redrive_emulator::moto::endpoint())
            .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
            .build(),
    )
}

fn sfn_event(execution: &str, status: &str) -> String {
    serde_json::json!({
        "version": "0", "id": "e", "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states", "time": "2026-12-01T10:00:00Z", "region": "us-east-1",
        "detail": {
            "executionArn": format!("arn:aws:states:us-east-1:123456789012:execution:orders:{execution}"),
            "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:orders",
            "status": status, "startDate": 1, "stopDate": 2
        }
    })
    .to_string()
}

async fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}

#[tokio::test(flavor = "multi_thread")]
async fn hints_are_handled_then_deleted_and_poison_is_dropped_and_counted() {
    let client = sqs("us-east-1");
    let url = client
        .create_queue()
        .queue_name("redrive-events-consumer")
        .send()
        .await
        .expect("moto SQS")
        .queue_url
        .unwrap();
    let bodies = [
        sfn_event("run-1", "FAILED"),
        sfn_event("run-2", "RUNNING"),
        "not json".to_string(),
        sfn_event("run-3", "FAILED").replace("aws.states", "evil.source"),
        // An execution of another state machine than the one named: forged.
        sfn_event("run-4", "FAILED").replace("execution:orders:", "execution:payments:"),
        sfn_event("retry-me", "FAILED"),
    ];
    for b in &bodies {
        client
            .send_message()
            .queue_url(&url)
            .message_body(b)
            .send()
            .await
            .unwrap();
    }
    let seen: Arc<Mutex<Vec<Hint>>> = Arc::default();
    let retried_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handler: consumer::Handler = {
        let seen = seen.clone();
        let retried_once = retried_once.clone();
        Arc::new(move |r| {
            let seen = seen.clone();
            let retried_once = retried_once.clone();
            async move {
                let retry = matches!(&r.hint, Hint::StepFunctions { execution_arn, .. } if execution_arn.ends_with("retry-me"))
                    && !retried_once.swap(true, Ordering::SeqCst);
                seen.lock().unwrap().push(r.hint);
                if retry { Handled::Retry } else { Handled::Done }
            }
            .boxed()
        })
    };
    let stats = Arc::new(ConsumerStats::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(consumer::run(
        client.clone(),
        QueueSettings {
            url: url.clone(),
            visibility_timeout: Duration::from_secs(1),
            concurrency: 4,
        },
        handler,
        stats.clone(),
        stop_rx,
    ));
    // Three valid hints, one of them handled twice (Retry, then redelivered after 1 s).
    let ok = wait_for(Duration::from_secs(30), || seen.lock().unwrap().len() >= 4).await;
    assert!(ok, "hints seen: {:?}", seen.lock().unwrap());
    let ok = wait_for(Duration::from_secs(10), || {
        stats.deleted.load(Ordering::Relaxed) >= 6
    })
    .await;
    assert!(ok, "deleted: {}", stats.deleted.load(Ordering::Relaxed));
    assert_eq!(stats.rejected(Rejected::NotJson), 1);
    assert_eq!(stats.rejected(Rejected::UnknownSource), 1);
    assert_eq!(stats.rejected(Rejected::BadIdentifier), 1);
    assert_eq!(stats.retried.load(Ordering::Relaxed), 1);
    assert_eq!(stats.handled.load(Ordering::Relaxed), 3);
    // The queue is empty: nothing is redelivered forever.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let attrs = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let left = attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .cloned()
        .unwrap_or_default();
    assert_eq!(left, "0", "{attrs:?}");
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the consumer stops on request")
        .unwrap();
    assert!(stats.last_receive.load(Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_queue_is_retried_with_backoff_and_counted() {
    let client = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(format!(
                "http://127.0.0.1:{}",
                redrive_emulator::moto::free_port()
            ))
            .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
            .retry_config(aws_sdk_sqs::config::retry::RetryConfig::standard().with_max_attempts(1))
            .build(),
    );
    let stats = Arc::new(ConsumerStats::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let handler: consumer::Handler = Arc::new(|_| async { Handled::Done }.boxed());
    let task = tokio::spawn(consumer::run(
        client,
        QueueSettings {
            url: "http://127.0.0.1:1/123456789012/nowhere".into(),
            visibility_timeout: Duration::from_secs(30),
            concurrency: 1,
        },
        handler,
        stats.clone(),
        stop_rx,
    ));
    let ok = wait_for(Duration::from_secs(10), || {
        stats.receive_errors.load(Ordering::Relaxed) >= 2
    })
    .await;
    assert!(ok, "receive errors are counted and retried");
    assert_eq!(stats.last_receive.load(Ordering::Relaxed), 0);
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops while backing off")
        .unwrap();
}
