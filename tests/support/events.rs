//! Event plumbing in moto (a real third-party EventBridge and SQS): queues fed by the
//! documented EventBridge rules, and a client to write forged messages straight to a queue.

use aws_sdk_eventbridge::config::{BehaviorVersion, Credentials, Region};

use super::ACCOUNT;

/// The documented rule pattern for Step Functions failures (docs/events.md).
pub const SFN_PATTERN: &str = r#"{"source":["aws.states"],"detail-type":["Step Functions Execution Status Change"],"detail":{"status":["FAILED","TIMED_OUT","ABORTED"]}}"#;

/// The documented rule pattern for CodePipeline stage failures (docs/events.md).
pub const CODEPIPELINE_PATTERN: &str = r#"{"source":["aws.codepipeline"],"detail-type":["CodePipeline Stage Execution State Change"],"detail":{"state":["FAILED"]}}"#;

fn creds() -> Credentials {
    Credentials::new("AKIDEVENTS", "secret", None, None, "test")
}

/// An SQS client of moto in `region`.
pub fn sqs(region: &str) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new(region.to_string()))
            .endpoint_url(redrive_emulator::moto::endpoint())
            .credentials_provider(creds())
            .build(),
    )
}

/// Create the queue `name` in `region` (moto) and return its URL.
pub async fn create_queue(region: &str, name: &str) -> String {
    sqs(region)
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("moto CreateQueue")
        .queue_url
        .expect("a queue URL")
}

/// A rule on the default bus of `region` (moto) sending events that match `pattern` to the
/// queue `name`, which need not exist yet.
pub async fn rule_to_queue(region: &str, rule: &str, pattern: &str, name: &str) {
    let arn = format!("arn:aws:sqs:{region}:{ACCOUNT}:{name}");
    let eb = aws_sdk_eventbridge::Client::from_conf(
        aws_sdk_eventbridge::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(redrive_emulator::moto::endpoint())
            .credentials_provider(creds())
            .build(),
    );
    eb.put_rule()
        .name(rule)
        .event_pattern(pattern)
        .send()
        .await
        .expect("moto PutRule");
    eb.put_targets()
        .rule(rule)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(arn)
                .build()
                .expect("a target"),
        )
        .send()
        .await
        .expect("moto PutTargets");
}

/// A queue `name` in `region` fed by a rule with `pattern`; its URL.
pub async fn queue(region: &str, name: &str, pattern: &str) -> String {
    let url = create_queue(region, name).await;
    rule_to_queue(region, &format!("{name}-rule"), pattern, name).await;
    url
}

/// Write `body` to the queue as if EventBridge had (an attacker with sqs:SendMessage).
pub async fn send(region: &str, url: &str, body: &str) {
    sqs(region)
        .send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .expect("moto SendMessage");
}
