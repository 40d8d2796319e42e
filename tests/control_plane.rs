//! Against a real kube-apiserver (tests/support/cluster.rs, built by scripts/control-plane.sh):
//! the checked-in CRD installs, and the API server itself enforces its CEL rules, which also
//! proves they pass the API server's CEL cost estimation. Also checks the properties of the test
//! control plane that later tests rely on: PodSecurity admission, the TokenRequest API, and an
//! API server that can be cut and restored without losing data.

#[path = "support/cluster.rs"]
mod cluster;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, PostParams};
use kube::core::{ApiResource, DynamicObject};
use redrive_operator::crd::RedrivePolicy;
use redrive_operator::policy::Policy;
use serde_json::{Value, json};

const CRD_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/redrivepolicies.redrive.dev.yaml"
);

/// An invalid policy: name, how to spoil the valid spec, the CEL message expected.
type Case = (&'static str, fn(&mut Value), &'static str);

/// A policy the API server must accept: name, how to change the valid spec.
type Accepted = (&'static str, fn(&mut Value));

const SM: &str = "arn:aws:states:eu-west-1:123456789012:stateMachine:orders";

/// Turns the (Step Functions) valid spec into a CodePipeline one, with `extra` fields.
fn code_pipeline(s: &mut Value, extra: Value) {
    s.as_object_mut().unwrap().remove("stepFunctions");
    s["codePipeline"] = json!({"region": "eu-west-1", "pipelines": ["web"]});
    for (k, v) in extra.as_object().unwrap() {
        s["codePipeline"][k] = v.clone();
    }
}

/// Turns the valid spec into a Flow Service one, with `extra` fields.
fn flow_service(s: &mut Value, extra: Value) {
    s.as_object_mut().unwrap().remove("stepFunctions");
    s["flowService"] = json!({"credentialsSecretRef": {"name": "aep"}, "flows": ["f1"]});
    for (k, v) in extra.as_object().unwrap() {
        s["flowService"][k] = v.clone();
    }
}

/// Local mode's verdict on a document (no API server: serde defaults, then `policy.rs`).
fn local_verdict(doc: &Value) -> Result<(), String> {
    let obj: RedrivePolicy = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    Policy::from_resource(&obj)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn policy(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "redrive.dev/v1alpha1",
        "kind": "RedrivePolicy",
        "metadata": {"name": name, "namespace": "payments"},
        "spec": spec,
    })
}

fn valid_spec() -> Value {
    json!({
        "stepFunctions": {
            "region": "eu-west-1",
            "stateMachines": ["arn:aws:states:eu-west-1:123456789012:stateMachine:orders"]
        },
        "window": {"minAge": "2m", "maxAge": "7d"},
        "backoff": {"initial": "1m", "factor": 2.0, "max": "1h", "jitter": 0.2}
    })
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
}

/// Creates `doc` as an untyped object (so invalid specs reach the server exactly as written) and
/// returns the server's error message, or None if it was accepted.
async fn create_policy(api: &Api<DynamicObject>, doc: Value) -> Option<String> {
    let obj: DynamicObject = serde_json::from_value(doc).expect("a DynamicObject");
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => None,
        Err(kube::Error::Api(status)) => Some(status.message.clone()),
        Err(e) => panic!("unexpected client error: {e}"),
    }
}

#[tokio::test]
async fn crd_installs_and_the_api_server_enforces_its_cel_rules() {
    let cluster = cluster::start().await;
    let client = cluster.client().await;

    // The kube client works against the real server.
    create_namespace(&client, "payments").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "payments");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "settings"},
        "data": {"region": "eu-west-1"}
    }))
    .unwrap();
    config_maps
        .create(&PostParams::default(), &cm)
        .await
        .expect("create ConfigMap");
    let back = config_maps.get("settings").await.expect("get ConfigMap");
    assert_eq!(
        back.data
            .unwrap_or_default()
            .get("region")
            .map(String::as_str),
        Some("eu-west-1")
    );

    // The checked-in CRD, applied as a user would. The API server rejects a CRD whose CEL rules
    // exceed its cost budget, so this succeeding is the cost-estimation check.
    cluster.kubectl_ok([
        "apply",
        "--server-side",
        "--field-manager=redrive-tests",
        "-f",
        CRD_PATH,
    ]);
    cluster.kubectl_ok([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/redrivepolicies.redrive.dev",
    ]);

    let resource = ApiResource::erase::<RedrivePolicy>(&());
    let dynamic: Api<DynamicObject> = Api::namespaced_with(client.clone(), "payments", &resource);

    // A valid policy is accepted, and reads back through the typed API.
    assert_eq!(
        create_policy(&dynamic, policy("orders", valid_spec())).await,
        None
    );
    let typed: Api<RedrivePolicy> = Api::namespaced(client.clone(), "payments");
    let orders = typed
        .get("orders")
        .await
        .expect("get the typed RedrivePolicy");
    assert_eq!(
        orders.spec.step_functions.as_ref().unwrap().region,
        "eu-west-1"
    );
    // A selector instead of explicit state machines is fine too.
    let mut selector_only = valid_spec();
    selector_only["stepFunctions"] =
        json!({"region": "eu-west-1", "selector": {"nameRegex": "^orders-"}});
    assert_eq!(
        create_policy(&dynamic, policy("by-name", selector_only)).await,
        None
    );

    // Invalid policies are rejected by the server with the rule's message, and by local mode
    // (policy.rs on the same document): both paths refuse the same documents.
    let cases: &[Case] = &[
        (
            "max-age-15d",
            |s| s["window"]["maxAge"] = json!("15d"),
            "window.maxAge must be at most 14d",
        ),
        (
            "max-age-337h",
            |s| s["window"]["maxAge"] = json!("337h"),
            "window.maxAge must be at most 14d",
        ),
        (
            "no-targets",
            |s| s["stepFunctions"] = json!({"region": "eu-west-1"}),
            "set at least one of stepFunctions.stateMachines or stepFunctions.selector",
        ),
        (
            "empty-selector",
            |s| s["stepFunctions"] = json!({"region": "eu-west-1", "selector": {}}),
            "stepFunctions.selector needs nameRegex or tags",
        ),
        (
            "min-not-below-max",
            |s| s["window"] = json!({"minAge": "2d", "maxAge": "1d"}),
            "window.minAge must be shorter than window.maxAge",
        ),
        (
            "wrong-region",
            |s| {
                s["stepFunctions"]["stateMachines"] =
                    json!(["arn:aws:states:us-east-1:123456789012:stateMachine:orders"])
            },
            "must be in stepFunctions.region",
        ),
        (
            "repeated-status",
            |s| s["statuses"] = json!(["FAILED", "FAILED"]),
            "statuses must not repeat a value",
        ),
        (
            "poll-too-fast",
            |s| s["pollInterval"] = json!("5s"),
            "pollInterval must be at least 10s",
        ),
        (
            "backoff-inverted",
            |s| s["backoff"] = json!({"initial": "2h", "max": "1h"}),
            "backoff.initial must not exceed backoff.max",
        ),
        // pollInterval is bounded, for every target.
        (
            "poll-400d",
            |s| s["pollInterval"] = json!("400d"),
            "pollInterval must be at most 24h",
        ),
        (
            "poll-24h1s",
            |s| s["pollInterval"] = json!("24h0m1s"),
            "pollInterval must be at most 24h",
        ),
        (
            "poll-2d-codepipeline",
            |s| {
                code_pipeline(s, json!({}));
                s["pollInterval"] = json!("2d");
            },
            "pollInterval must be at most 24h",
        ),
        (
            "poll-2d-flowservice",
            |s| {
                flow_service(s, json!({}));
                s["pollInterval"] = json!("2d");
            },
            "pollInterval must be at most 24h",
        ),
        // Lists that must not repeat.
        (
            "repeated-state-machine",
            |s| {
                s["stepFunctions"]["stateMachines"] = json!([
                    SM,
                    "arn:aws:states:eu-west-1:123456789012:stateMachine:billing",
                    SM
                ])
            },
            "stepFunctions.stateMachines must not repeat an ARN",
        ),
        (
            "repeated-pipeline",
            |s| code_pipeline(s, json!({"pipelines": ["web", "api", "web"]})),
            "codePipeline.pipelines must not repeat a name",
        ),
        (
            "repeated-stage",
            |s| code_pipeline(s, json!({"stages": ["Deploy*", "Deploy*"]})),
            "codePipeline.stages must not repeat a glob",
        ),
        (
            "repeated-flow",
            |s| flow_service(s, json!({"flows": ["f1", "f2", "f1"]})),
            "flowService.flows must not repeat a flow id",
        ),
        (
            "repeated-include",
            |s| s["errors"] = json!({"include": ["Lambda.*", "Lambda.*"]}),
            "errors.include must not repeat a glob",
        ),
        (
            "repeated-exclude",
            |s| s["errors"] = json!({"exclude": ["ValidationError", "ValidationError"]}),
            "errors.exclude must not repeat a glob",
        ),
        // A role or state machine in another partition than the region.
        (
            "role-in-aws-cn",
            |s| s["stepFunctions"]["roleArn"] = json!("arn:aws-cn:iam::123456789012:role/r"),
            "spec.stepFunctions.roleArn: Invalid value: \"object\": stepFunctions.roleArn must be in the AWS partition of stepFunctions.region and of stepFunctions.stateMachines",
        ),
        (
            "role-in-aws-for-gov",
            |s| {
                s["stepFunctions"] = json!({
                    "region": "us-gov-west-1",
                    "roleArn": "arn:aws:iam::123456789012:role/r",
                    "stateMachines": ["arn:aws-us-gov:states:us-gov-west-1:123456789012:stateMachine:orders"]
                })
            },
            "stepFunctions.roleArn must be in the AWS partition of stepFunctions.region",
        ),
        (
            "state-machine-in-aws-cn",
            |s| {
                s["stepFunctions"]["stateMachines"] =
                    json!(["arn:aws-cn:states:eu-west-1:123456789012:stateMachine:orders"])
            },
            "spec.stepFunctions.stateMachines: Invalid value: \"object\": every ARN in stepFunctions.stateMachines must be in the AWS partition of stepFunctions.region",
        ),
        (
            "pipeline-role-in-aws-for-cn",
            |s| {
                code_pipeline(
                    s,
                    json!({"region": "cn-north-1", "roleArn": "arn:aws:iam::123456789012:role/r"}),
                )
            },
            "spec.codePipeline.roleArn: Invalid value: \"object\": codePipeline.roleArn must be in the AWS partition of codePipeline.region",
        ),
        (
            "pipeline-role-in-gov",
            |s| {
                code_pipeline(
                    s,
                    json!({"roleArn": "arn:aws-us-gov:iam::123456789012:role/r"}),
                )
            },
            "spec.codePipeline.roleArn: Invalid value: \"object\": codePipeline.roleArn must be in the AWS partition of codePipeline.region",
        ),
        // Compound durations mean the same in the CEL rules.
        (
            "compound-min-not-below-max",
            |s| s["window"] = json!({"minAge": "1h30m", "maxAge": "1h"}),
            "window.minAge must be shorter than window.maxAge",
        ),
        (
            "compound-min-equal-max",
            |s| s["window"] = json!({"minAge": "90m", "maxAge": "1h30m"}),
            "window.minAge must be shorter than window.maxAge",
        ),
        (
            "compound-max-age-over-14d",
            |s| s["window"] = json!({"maxAge": "14d0h0m1s"}),
            "window.maxAge must be at most 14d",
        ),
        (
            "compound-max-age-336h1s",
            |s| s["window"] = json!({"maxAge": "336h1s"}),
            "window.maxAge must be at most 14d",
        ),
        (
            "compound-max-age-over-365d",
            |s| {
                code_pipeline(s, json!({}));
                s["window"] = json!({"maxAge": "365d0h0m1s"});
            },
            "window.maxAge must be at most 365d",
        ),
        (
            "compound-backoff-inverted",
            |s| s["backoff"] = json!({"initial": "1h0m1s", "max": "1h"}),
            "backoff.initial must not exceed backoff.max",
        ),
        (
            "compound-poll-9s",
            |s| s["pollInterval"] = json!("0m9s"),
            "pollInterval must be at least 10s",
        ),
        (
            "compound-max-run-time",
            |s| s["stepFunctions"]["maxRunTime"] = json!("365d1s"),
            "stepFunctions.maxRunTime must be at most 365d",
        ),
        // Malformed durations: one message, showing the accepted forms.
        (
            "duration-out-of-order",
            |s| s["pollInterval"] = json!("1m1h"),
            "pollInterval must be a duration: whole numbers with the units d, h, m and s, each at most once and in that order, e.g. 90s, 15m, 1h30m, 2d12h",
        ),
        (
            "duration-unit-twice",
            |s| s["window"]["minAge"] = json!("1h1h"),
            "window.minAge must be a duration",
        ),
        (
            "duration-fraction",
            |s| s["backoff"]["initial"] = json!("1.5h"),
            "backoff.initial must be a duration",
        ),
        (
            "duration-milliseconds",
            |s| s["backoff"]["max"] = json!("500ms"),
            "backoff.max must be a duration",
        ),
        (
            "duration-no-unit",
            |s| s["window"]["maxAge"] = json!("90"),
            "window.maxAge must be a duration",
        ),
        (
            "duration-empty",
            |s| s["stepFunctions"]["maxRunTime"] = json!(""),
            "stepFunctions.maxRunTime must be a duration",
        ),
        // Invalid regular expressions, caught by the API server's own RE2.
        (
            "bad-state-machine-regex",
            |s| {
                s["stepFunctions"] =
                    json!({"region": "eu-west-1", "selector": {"nameRegex": "(unclosed"}})
            },
            "stepFunctions.selector.nameRegex must be a valid regular expression",
        ),
        (
            "bad-pipeline-regex",
            |s| code_pipeline(s, json!({"selector": {"nameRegex": "[z-a]"}})),
            "codePipeline.selector.nameRegex must be a valid regular expression",
        ),
        (
            "bad-flow-regex",
            |s| flow_service(s, json!({"flows": [], "selector": {"nameRegex": "*crm"}})),
            "flowService.selector.nameRegex must be a valid regular expression",
        ),
        (
            "bad-cause-regex",
            |s| s["errors"] = json!({"causeRegex": "(?i)throttl|(timed out"}),
            "errors.causeRegex must be a valid regular expression",
        ),
    ];
    for (name, patch, expected) in cases {
        let mut spec = valid_spec();
        patch(&mut spec);
        let doc = policy(name, spec);
        let err = create_policy(&dynamic, doc.clone())
            .await
            .unwrap_or_else(|| panic!("{name}: the API server accepted an invalid policy"));
        eprintln!("{name}: {err}");
        assert!(
            err.contains(expected),
            "{name}: expected {expected:?} in the API server's error, got: {err}"
        );
        assert!(
            !err.contains("evaluating rule") || expected.contains("regular expression"),
            "{name}: a CEL rule failed to evaluate instead of rejecting cleanly: {err}"
        );
        let local = local_verdict(&doc);
        eprintln!("{name} (local): {local:?}");
        assert!(
            local.is_err(),
            "{name}: the API server refused it but local mode accepts it"
        );
    }

    // Valid policies, compound durations included, are accepted by both paths. Local mode reads
    // them back as the API server stored them (defaults applied).
    let accepted: &[Accepted] = &[
        ("compound-durations", |s| {
            s["pollInterval"] = json!("1m30s");
            s["window"] = json!({"minAge": "1h30m", "maxAge": "2d12h"});
            s["backoff"] =
                json!({"initial": "90s", "factor": 2.0, "max": "1h30m0s", "jitter": 0.2});
            s["stepFunctions"]["maxRunTime"] = json!("1d12h");
        }),
        ("max-age-just-under-14d", |s| {
            s["window"] = json!({"maxAge": "13d23h59m59s"})
        }),
        ("max-age-exactly-14d", |s| {
            s["window"] = json!({"minAge": "1h", "maxAge": "336h"})
        }),
        ("poll-24h", |s| s["pollInterval"] = json!("24h")),
        ("poll-1d-flowservice", |s| {
            flow_service(s, json!({}));
            s["pollInterval"] = json!("1d");
        }),
        ("aws-cn-consistent", |s| {
            s["stepFunctions"] = json!({
                "region": "cn-north-1",
                "roleArn": "arn:aws-cn:iam::123456789012:role/r",
                "stateMachines": ["arn:aws-cn:states:cn-north-1:123456789012:stateMachine:orders"]
            })
        }),
        ("aws-role", |s| {
            s["stepFunctions"]["roleArn"] = json!("arn:aws:iam::123456789012:role/r")
        }),
        ("pipeline-aws-cn-role", |s| {
            code_pipeline(
                s,
                json!({"region": "cn-north-1", "roleArn": "arn:aws-cn:iam::123456789012:role/r"}),
            )
        }),
        ("distinct-lists", |s| {
            s["stepFunctions"]["stateMachines"] = json!([
                SM,
                "arn:aws:states:eu-west-1:123456789012:stateMachine:orders:prod"
            ]);
            s["errors"] = json!({"include": ["Lambda.*", "States.*"], "exclude": ["X"], "causeRegex": "(?i)throttl|timed out"});
        }),
        ("pipeline-selector", |s| {
            code_pipeline(
                s,
                json!({"pipelines": [], "selector": {"nameRegex": "^web-[a-z]+$"}, "stages": ["Deploy*", "Test"]}),
            )
        }),
    ];
    for (name, patch) in accepted {
        let mut spec = valid_spec();
        patch(&mut spec);
        let doc = policy(name, spec);
        assert_eq!(
            create_policy(&dynamic, doc.clone()).await,
            None,
            "{name}: the API server refused a valid policy"
        );
        assert_eq!(local_verdict(&doc), Ok(()), "{name}: local mode refuses it");
        let stored = typed.get(name).await.expect("read back the stored policy");
        Policy::from_resource(&stored)
            .unwrap_or_else(|e| panic!("{name}: the stored policy is refused: {e}"));
    }
    let stored = typed.get("compound-durations").await.unwrap();
    let p = Policy::from_resource(&stored).unwrap();
    assert_eq!(p.min_age, std::time::Duration::from_secs(5400));
    assert_eq!(p.max_age, std::time::Duration::from_secs(60 * 3600));
    assert_eq!(p.poll_interval, std::time::Duration::from_secs(90));

    // kubectl users see the same message.
    let mut spec = valid_spec();
    spec["window"]["maxAge"] = json!("15d");
    let out = cluster.kubectl_with_stdin(
        ["apply", "--server-side", "-f", "-"],
        &policy("via-kubectl", spec).to_string(),
    );
    assert!(!out.status.success(), "kubectl accepted maxAge: 15d");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("window.maxAge must be at most 14d"),
        "kubectl stderr: {stderr}"
    );

    // Only the valid policies exist.
    let names = cluster.kubectl_ok([
        "get",
        "redrivepolicies",
        "-n",
        "payments",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    let mut names: Vec<&str> = names.split_whitespace().collect();
    names.sort();
    let mut expected: Vec<&str> = accepted.iter().map(|(name, _)| *name).collect();
    expected.extend(["by-name", "orders"]);
    expected.sort();
    assert_eq!(names, expected);
}

#[tokio::test]
async fn the_control_plane_has_pod_security_token_requests_and_survives_an_api_server_restart() {
    let cluster = cluster::start().await;
    let client = cluster.client().await;

    // PodSecurity admission is on: a restricted namespace rejects a privileged Pod and accepts a
    // compliant one (which stays Pending: there is no scheduler or kubelet).
    create_namespace(&client, "locked").await;
    cluster.kubectl_ok([
        "label",
        "namespace",
        "locked",
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    let pod = |name: &str, container_security: Value| {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "locked"},
            "spec": {
                "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "main",
                    "image": "registry.invalid/never-pulled:1",
                    "securityContext": container_security
                }]
            }
        })
        .to_string()
    };
    let out = cluster.kubectl_with_stdin(
        ["create", "-f", "-"],
        &pod("privileged", json!({"privileged": true})),
    );
    assert!(!out.status.success(), "a privileged Pod was admitted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("violates PodSecurity"), "{stderr}");
    let out = cluster.kubectl_with_stdin(
        ["create", "-f", "-"],
        &pod(
            "restricted",
            json!({
                "allowPrivilegeEscalation": false,
                "runAsUser": 1000,
                "capabilities": {"drop": ["ALL"]}
            }),
        ),
    );
    assert!(
        out.status.success(),
        "a compliant Pod was rejected: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The TokenRequest API issues service-account tokens, and the server accepts them.
    cluster.kubectl_ok(["create", "serviceaccount", "robot", "-n", "locked"]);
    let token = cluster.kubectl_ok(["create", "token", "robot", "-n", "locked"]);
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    let whoami = cluster.kubectl_ok([
        &format!("--token={token}"),
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(whoami, "system:serviceaccount:locked:robot");

    // Cut the API server and restore it: data in etcd survives, the old client reconnects.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "locked");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "kept"}, "data": {"k": "v"}})).unwrap();
    config_maps
        .create(&PostParams::default(), &cm)
        .await
        .expect("create ConfigMap");
    cluster.stop_apiserver();
    assert!(!cluster.apiserver_running());
    assert!(
        config_maps.get("kept").await.is_err(),
        "the API server answered while stopped"
    );
    assert!(!cluster.kubectl(["get", "namespaces"]).status.success());
    cluster.start_apiserver().await;
    let back = config_maps.get("kept").await.expect("get after restart");
    assert_eq!(
        back.data.unwrap_or_default().get("k").map(String::as_str),
        Some("v")
    );
    config_maps
        .delete("kept", &DeleteParams::default())
        .await
        .expect("delete after restart");
}
