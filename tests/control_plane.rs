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
use serde_json::{Value, json};

const CRD_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/redrivepolicies.redrive.dev.yaml"
);

/// An invalid policy: name, how to spoil the valid spec, the CEL message expected.
type Case = (&'static str, fn(&mut Value), &'static str);

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

    // Invalid policies are rejected by the server with the rule's message.
    let cases: [Case; 9] = [
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
    ];
    for (name, patch, expected) in cases {
        let mut spec = valid_spec();
        patch(&mut spec);
        let err = create_policy(&dynamic, policy(name, spec))
            .await
            .unwrap_or_else(|| panic!("{name}: the API server accepted an invalid policy"));
        assert!(
            err.contains(expected),
            "{name}: expected {expected:?} in the API server's error, got: {err}"
        );
    }

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

    // Only the two valid policies exist.
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
    assert_eq!(names, ["by-name", "orders"]);
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
