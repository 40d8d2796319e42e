//! The Helm chart (charts/redrive-operator), from its files to a real API server:
//!
//! 1. metadata, CRD copy, values.yaml and its README table, dashboard JSON are in sync;
//! 2. `helm lint --strict` and `helm template` with the defaults, every optional feature and the
//!    interesting variants render what they should;
//! 3. the all-features rendering is applied server-side to a real kube-apiserver into namespaces
//!    enforcing the `restricted` Pod Security Standard, a Pod made from the Deployment's template
//!    is admitted, and the operator run with the chart's ServiceAccount token (namespaced mode,
//!    credentials from a Secret) reconciles a policy; the API server's audit log shows that the
//!    chart's Role rules are exactly the requests it made;
//! 4. `helm install` (CRD from crds/), the operator with the chart's ServiceAccount token in
//!    cluster-wide mode reconciles end to end against the emulator (status, events, ledger,
//!    metrics named by the alerts and the dashboard), the audit log matches the ClusterRole and
//!    leader-election Role exactly, `helm upgrade` re-renders cleanly and `helm uninstall`
//!    leaves only the CRD, the user's policies and the operator's Lease.
//!
//! Needs the control-plane binaries (helm, kubectl, kube-apiserver, etcd) that
//! scripts/control-plane.sh builds; a missing binary fails the test, it never skips.

#[path = "support/cluster.rs"]
mod cluster;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use redrive_emulator::{
    self as emulator, ActionOutcome, EmulatorConfig, EmulatorHandle, ExecutionSpec, FaultConfig,
    PipelineExecutionSpec, PipelineSpec, RetryOutcome, Scenario, StateMachineSpec,
};
use redrive_operator::api::attempt::{AttemptOutcome, AttemptPhase, RedriveAttemptSpec};
use redrive_operator::ledger::AttemptKey;
use serde_json::{Value, json};
use support::*;

use cluster::Cluster;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const VERSION: &str = env!("CARGO_PKG_VERSION");
const RELEASE: &str = "redrive";
const RELEASE_NS: &str = "redrive-system";
const WAIT: Duration = Duration::from_secs(90);

fn chart() -> PathBuf {
    Path::new(ROOT).join("charts/redrive-operator")
}

fn chart_str() -> String {
    chart().display().to_string()
}

fn all_features_values() -> String {
    chart()
        .join("ci/all-features-values.yaml")
        .display()
        .to_string()
}

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("invalid YAML ({e}):\n{text}"))
}

/// The objects of a multi-document YAML stream (comment-only documents dropped).
fn docs(text: &str) -> Vec<Value> {
    let all: Vec<Value> = serde_saphyr::from_multiple(text)
        .unwrap_or_else(|e| panic!("invalid YAML stream ({e}):\n{text}"));
    all.into_iter().filter(|d| d.is_object()).collect()
}

// ------------------------------------------------------------------------------------------
// helm without a cluster

/// Pinned helm with its own cache/config/data directories and no reachable cluster.
fn helm_local(args: &[&str]) -> Output {
    let home = std::env::temp_dir().join(format!("redrive-helm-test-{}", std::process::id()));
    Command::new(cluster::bin("helm"))
        .args(args)
        .env("KUBECONFIG", home.join("no-kubeconfig"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .stdin(Stdio::null())
        .output()
        .expect("helm runs")
}

fn ok_stdout(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm template RELEASE CHART -n RELEASE_NS EXTRA...` as objects.
fn render(extra: &[&str]) -> Vec<Value> {
    let chart_path = chart_str();
    let mut args = vec!["template", RELEASE, &chart_path, "--namespace", RELEASE_NS];
    args.extend_from_slice(extra);
    docs(&ok_stdout(&format!("helm {args:?}"), helm_local(&args)))
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(objects, kind);
    assert_eq!(found.len(), 1, "exactly one {kind}: {found:#?}");
    found[0]
}

fn kinds(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn args_of(deployment: &Value) -> Vec<String> {
    container(deployment)["args"]
        .as_array()
        .expect("container args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

fn env_of(deployment: &Value) -> BTreeMap<String, Value> {
    container(deployment)["env"]
        .as_array()
        .expect("container env")
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

// ------------------------------------------------------------------------------------------
// 1. files in sync

/// Leaf keys of values.yaml: a key whose value is a scalar, a list or an empty map.
fn leaves(v: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match v.as_object() {
        Some(map) if !map.is_empty() => {
            for (k, x) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(x, &path, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
}

/// Rows of the values table in the chart's README (between the markers): key → (type, default).
fn readme_table(readme: &str) -> BTreeMap<String, (String, String)> {
    let start = readme
        .find("<!-- values-table:begin -->")
        .expect("README.md has <!-- values-table:begin -->");
    let end = readme
        .find("<!-- values-table:end -->")
        .expect("README.md has <!-- values-table:end -->");
    let mut rows = BTreeMap::new();
    for line in readme[start..end].lines() {
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let cells: Vec<&str> = rest.split(" | ").collect();
        assert!(cells.len() >= 4, "malformed values row: {line}");
        let key = cells[0].trim_end_matches('`').to_string();
        let default = cells[2]
            .trim()
            .trim_start_matches('`')
            .trim_end_matches('`')
            .to_string();
        let prev = rows.insert(key.clone(), (cells[1].trim().to_string(), default));
        assert!(prev.is_none(), "{key} appears twice in the values table");
    }
    rows
}

/// Lines of values.yaml that declare a key (outside block lists) without a comment above.
fn undocumented_keys(values: &str) -> Vec<String> {
    let mut missing = Vec::new();
    let mut previous = "";
    let mut list_indent: Option<usize> = None;
    for line in values.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() {
            previous = "";
            continue;
        }
        if let Some(li) = list_indent {
            if indent >= li {
                continue;
            }
            list_indent = None;
        }
        if trimmed.starts_with("- ") {
            list_indent = Some(indent);
            continue;
        }
        if !trimmed.starts_with('#') && trimmed.contains(':') && !previous.starts_with('#') {
            missing.push(line.to_string());
        }
        previous = trimmed;
    }
    missing
}

/// Keys of `overrides` that values.yaml does not define (helm would silently ignore them).
fn unknown_keys(defaults: &Value, overrides: &Value, prefix: &str, out: &mut Vec<String>) {
    let Some(map) = overrides.as_object() else {
        return;
    };
    for (k, v) in map {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match defaults.get(k) {
            None => out.push(path),
            Some(d) if d.as_object().is_some_and(|m| !m.is_empty()) => {
                unknown_keys(d, v, &path, out)
            }
            Some(_) => {}
        }
    }
}

#[test]
fn chart_metadata_crd_values_table_and_dashboard_are_in_sync() {
    // Chart version and appVersion are the crate version.
    let meta = yaml(&read(chart().join("Chart.yaml")));
    assert_eq!(meta["appVersion"], VERSION, "Chart.yaml appVersion");
    assert_eq!(meta["version"], VERSION, "Chart.yaml version");
    assert_eq!(meta["name"], "redrive-operator");

    // The chart's CRDs are byte-for-byte the repository's generated ones, and the only files there.
    const CRDS: [&str; 2] = [
        "redriveattempts.redrive.dev.yaml",
        "redrivepolicies.redrive.dev.yaml",
    ];
    for crd in CRDS {
        let repo_crd = std::fs::read(Path::new(ROOT).join("crds").join(crd)).expect("repo CRD");
        let chart_crd = std::fs::read(chart().join("crds").join(crd)).expect("chart CRD");
        assert!(
            repo_crd == chart_crd,
            "charts/redrive-operator/crds/{crd} differs from crds/: run `cp crds/{crd} charts/redrive-operator/crds/`"
        );
    }
    let mut files: Vec<String> = std::fs::read_dir(chart().join("crds"))
        .expect("chart crds dir")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, CRDS);

    // values.yaml: every key has a comment; the README table lists every leaf with its type and
    // default, and nothing else.
    let values_text = read(chart().join("values.yaml"));
    let undocumented = undocumented_keys(&values_text);
    assert!(
        undocumented.is_empty(),
        "values.yaml keys without a comment line above them:\n{}",
        undocumented.join("\n")
    );
    let values = yaml(&values_text);
    let mut leaf_values = BTreeMap::new();
    leaves(&values, "", &mut leaf_values);
    let table = readme_table(&read(chart().join("README.md")));
    let missing: Vec<String> = leaf_values
        .iter()
        .filter(|(k, _)| !table.contains_key(*k))
        .map(|(k, v)| {
            format!(
                "| `{k}` | {} | `{}` | ... |",
                type_name(v),
                serde_json::to_string(v).unwrap()
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "values.yaml keys missing from the README table (rows to add):\n{}",
        missing.join("\n")
    );
    let stale: Vec<&String> = table
        .keys()
        .filter(|k| !leaf_values.contains_key(*k))
        .collect();
    assert!(
        stale.is_empty(),
        "README table rows for keys values.yaml does not have: {stale:?}"
    );
    for (key, (ty, default)) in &table {
        let value = &leaf_values[key];
        assert_eq!(ty, type_name(value), "type of {key} in the README table");
        let documented: Value = serde_json::from_str(default).unwrap_or_else(|e| {
            panic!("default of {key} in the README is not JSON ({e}): {default}")
        });
        assert_eq!(&documented, value, "default of {key} in the README table");
    }

    // The CI values only use keys values.yaml defines.
    let mut unknown = Vec::new();
    unknown_keys(
        &values,
        &yaml(&read(all_features_values())),
        "",
        &mut unknown,
    );
    assert!(
        unknown.is_empty(),
        "ci/all-features-values.yaml sets unknown keys: {unknown:?}"
    );

    // The dashboard: valid JSON, a datasource variable, every panel queries operator metrics.
    let dashboard: Value =
        serde_json::from_str(&read(chart().join("dashboards/redrive-operator.json")))
            .expect("dashboard JSON");
    assert_eq!(dashboard["uid"], "redrive-operator");
    let vars: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(vars.contains(&"datasource"), "{vars:?}");
    let panels: Vec<&Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] != "row")
        .collect();
    assert!(panels.len() >= 10, "{} panels", panels.len());
    for p in panels {
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "panel {} uses the datasource variable",
            p["title"]
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(expr.contains("redrive_"), "panel {}: {expr}", p["title"]);
            assert_balanced(expr);
        }
    }
}

/// The Dockerfile builds what scripts/build-musl.sh tests and runs the way the chart expects:
/// a static musl release build, a shell-less final image, the numeric user the chart's
/// securityContext names, and `run` as entrypoint (the chart passes only flags).
#[test]
fn dockerfile_matches_the_musl_build_and_the_chart() {
    let dockerfile = read(Path::new(ROOT).join("Dockerfile"));
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let stages: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .copied()
        .collect();
    assert_eq!(stages.len(), 2, "multi-stage: {stages:?}");
    assert!(stages[0].ends_with(" AS build"), "{stages:?}");
    assert!(
        stages[1] == "FROM gcr.io/distroless/static-debian12:nonroot"
            || stages[1] == "FROM scratch",
        "final image without a shell: {stages:?}"
    );
    assert!(dockerfile.contains(
        "cargo build --release --locked --target x86_64-unknown-linux-musl --bin redrive-operator"
    ));
    assert!(dockerfile.contains("rustup target add x86_64-unknown-linux-musl"));
    let script = read(Path::new(ROOT).join("scripts/build-musl.sh"));
    assert!(
        script.contains("TARGET=x86_64-unknown-linux-musl")
            && script.contains("--release --locked")
    );
    let values = yaml(&read(chart().join("values.yaml")));
    let uid = &values["podSecurityContext"]["runAsUser"];
    let gid = &values["podSecurityContext"]["runAsGroup"];
    assert!(
        lines.contains(&format!("USER {uid}:{gid}").as_str()),
        "USER {uid}:{gid} in the Dockerfile"
    );
    assert_eq!(
        lines.last().copied(),
        Some(r#"ENTRYPOINT ["/redrive-operator", "run"]"#)
    );
    assert!(!dockerfile.contains("SHELL") && !dockerfile.contains("CMD"));
    // .dockerignore is an allowlist that lets the COPY sources through.
    let ignore = read(Path::new(ROOT).join(".dockerignore"));
    let allowed: Vec<&str> = ignore.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(allowed.first().copied(), Some("*"));
    for l in lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = l.split_whitespace().collect();
        for src in &words[1..words.len() - 1] {
            assert!(
                allowed.contains(&format!("!{src}").as_str()),
                ".dockerignore lets {src} through"
            );
        }
    }
}

/// Parentheses, brackets and braces of a PromQL expression pair up.
fn assert_balanced(expr: &str) {
    let mut stack = Vec::new();
    let mut in_string = false;
    for c in expr.chars() {
        if c == '"' {
            in_string = !in_string;
            continue;
        }
        if in_string {
            continue;
        }
        match c {
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = stack.pop();
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                assert_eq!(open, Some(want), "unbalanced {c:?} in {expr}");
            }
            _ => {}
        }
    }
    assert!(stack.is_empty() && !in_string, "unbalanced: {expr}");
}

/// Metric names used in PromQL expressions.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("redrive_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

// ------------------------------------------------------------------------------------------
// 2. lint and render

fn assert_hardened(deployment: &Value) {
    let pod = &deployment["spec"]["template"]["spec"];
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["runAsUser"], 65532);
    assert_eq!(psc["runAsGroup"], 65532);
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    let c = container(deployment);
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert!(sc.get("privileged").is_none());
    assert_eq!(
        c["ports"],
        json!([{"name": "admin", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/livez", "port": "admin"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "admin"})
    );
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    let env = env_of(deployment);
    assert_eq!(
        env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert!(pod.get("hostNetwork").is_none() && pod.get("volumes").is_none());
}

/// Every rule of every Role/ClusterRole in a rendering.
fn all_rules(objects: &[Value]) -> Vec<Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
        .flat_map(|o| o["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn helm_lint_strict_and_template_render_defaults_every_feature_and_variants() {
    let chart_path = chart_str();
    let all = all_features_values();
    for extra in [vec![], vec!["-f", all.as_str()]] {
        let mut args = vec!["lint", "--strict", chart_path.as_str()];
        args.extend(extra.iter().copied());
        let out = ok_stdout(&format!("helm {args:?}"), helm_local(&args));
        assert!(out.contains("0 chart(s) failed"), "{out}");
        assert!(
            !out.contains("[WARNING]") && !out.contains("[ERROR]"),
            "{out}"
        );
    }

    // Defaults: the core objects only, cluster-wide RBAC, leader election on.
    let d = render(&[]);
    assert_eq!(
        kinds(&d),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
        .map(String::from)
        .into(),
    );
    let deploy = one(&d, "Deployment");
    assert_hardened(deploy);
    assert_eq!(deploy["spec"]["replicas"], 1);
    assert_eq!(deploy["metadata"]["namespace"], RELEASE_NS);
    assert_eq!(
        container(deploy)["image"],
        format!("redrive-operator:{VERSION}")
    );
    let args = args_of(deploy);
    for want in [
        "--admin-addr=0.0.0.0:8080",
        "--leader-election=true",
        "--lease-name=redrive-redrive-operator",
        "--lease-duration=15s",
        "--lease-grace=5s",
        "--log-format=json",
    ] {
        assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
    }
    assert!(!args.iter().any(|a| a.starts_with("--endpoint-url")));
    assert!(!args.iter().any(|a| a.starts_with("--event-queue-url")));
    let env = env_of(deploy);
    assert!(!env.contains_key("WATCH_NAMESPACE"));
    assert!(!env.contains_key("AWS_ACCESS_KEY_ID"));
    let sa = one(&d, "ServiceAccount");
    assert_eq!(sa["metadata"]["name"], "redrive-redrive-operator");
    assert_eq!(
        deploy["spec"]["template"]["spec"]["serviceAccountName"],
        "redrive-redrive-operator"
    );
    // The ClusterRole is the one deploy/rbac.yaml documents (and tests/e2e_controller.rs uses).
    let reference = docs(&read(Path::new(ROOT).join("deploy/rbac.yaml")));
    assert_eq!(
        one(&d, "ClusterRole")["rules"],
        one(&reference, "ClusterRole")["rules"],
        "chart ClusterRole vs deploy/rbac.yaml"
    );
    let leader = one(&d, "Role");
    assert_eq!(leader["metadata"]["namespace"], RELEASE_NS);
    assert_eq!(
        leader["rules"],
        json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "resourceNames": ["redrive-redrive-operator"], "verbs": ["get", "patch"]},
        ])
    );
    let svc = one(&d, "Service");
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "admin", "port": 8080, "targetPort": "admin", "protocol": "TCP"}])
    );
    assert_eq!(
        svc["spec"]["selector"],
        deploy["spec"]["selector"]["matchLabels"]
    );

    // Every optional feature.
    let a = render(&["-f", &all]);
    assert_eq!(
        kinds(&a),
        [
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "PrometheusRule",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceMonitor"
        ]
        .map(String::from)
        .into(),
        "watchNamespace turns the ClusterRole into a Role"
    );
    let deploy = one(&a, "Deployment");
    assert_hardened(deploy);
    assert_eq!(deploy["spec"]["replicas"], 2);
    let args = args_of(deploy);
    for want in [
        "--endpoint-url=https://states.eu-west-1.amazonaws.com",
        "--selector=shard=a",
        "--allowed-role=tenant-a=arn:aws:iam::123456789012:role/tenant-a-*",
        "--allowed-role=*=arn:aws:iam::123456789012:role/shared-redriver",
        "--require-role",
        "--event-queue-url=https://sqs.eu-west-1.amazonaws.com/123456789012/redrive-events",
        "--sweep-interval=15m",
        "--event-visibility-timeout=60s",
    ] {
        assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
    }
    let env = env_of(deploy);
    assert_eq!(env["WATCH_NAMESPACE"]["value"], "tenant-a");
    for (var, key) in [
        ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
        ("AWS_SESSION_TOKEN", "AWS_SESSION_TOKEN"),
    ] {
        assert_eq!(
            env[var]["valueFrom"]["secretKeyRef"],
            json!({"name": "redrive-aws", "key": key})
        );
    }
    assert_eq!(
        one(&a, "ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/redrive-operator"
    );
    let roles = of_kind(&a, "Role");
    let policy_role = roles
        .iter()
        .find(|r| r["metadata"]["namespace"] == "tenant-a")
        .expect("Role in the watched namespace");
    // The namespaced Role has the default ClusterRole's rules plus the Secret `get` that
    // flowService.enabled adds (checked below).
    let without_secrets: Vec<Value> = policy_role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r.to_string().contains("secrets"))
        .cloned()
        .collect();
    assert_eq!(
        Value::Array(without_secrets),
        one(&reference, "ClusterRole")["rules"]
    );
    assert!(
        roles
            .iter()
            .any(|r| r["metadata"]["namespace"] == RELEASE_NS
                && r["metadata"]["name"] == "redrive-redrive-operator-leader-election")
    );
    let pdb = one(&a, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    let sm = one(&a, "ServiceMonitor");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "admin");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["honorLabels"], true);
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    let cm = one(&a, "ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let embedded: Value =
        serde_json::from_str(cm["data"]["redrive-operator.json"].as_str().unwrap())
            .expect("dashboard JSON in the ConfigMap");
    let file: Value = serde_json::from_str(&read(chart().join("dashboards/redrive-operator.json")))
        .expect("dashboard file");
    assert_eq!(
        embedded, file,
        "the ConfigMap carries dashboards/redrive-operator.json"
    );
    let np = one(&a, "NetworkPolicy");
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(np["spec"]["ingress"].as_array().unwrap().len(), 1);
    assert_eq!(
        np["spec"]["ingress"][0]["ports"],
        json!([{"port": "admin", "protocol": "TCP"}])
    );
    let egress_ports: Vec<Value> = np["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ports"].clone())
        .collect();
    assert_eq!(
        egress_ports,
        vec![
            json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]),
            json!([{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]),
            json!([{"port": 443, "protocol": "TCP"}]),
        ]
    );
    let rule = one(&a, "PrometheusRule");
    let alerts: BTreeMap<String, String> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["alert"].as_str().unwrap().to_string(),
                r["expr"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (alert, needles) in [
        (
            "RedriveExecutionsExhausted",
            &[
                "increase(redrive_executions_exhausted_total{",
                "[15m])) > 0",
            ][..],
        ),
        (
            "RedriveAwsThrottled",
            &[
                "sum(rate(redrive_aws_requests_total{job=\"redrive-redrive-operator\",result=\"throttled\"}[10m]))",
                "/ sum(rate(redrive_aws_requests_total{job=\"redrive-redrive-operator\"}[10m])) > 0.2",
            ][..],
        ),
        ("RedriveErrorRatio", &["outcome=\"Failed\"", "> 0.1"][..]),
        (
            "RedriveNoSuccessfulPoll",
            &[
                "time() - max by (namespace, policy) (redrive_last_successful_poll_timestamp_seconds{",
                "> 600",
            ][..],
        ),
        ("RedrivePollsFailing", &["result=\"error\"", "unless"][..]),
        (
            "RedriveEventQueueUnreadable",
            &[
                "increase(redrive_event_receive_errors_total{",
                "unless sum(changes(redrive_event_last_receive_timestamp_seconds{",
            ][..],
        ),
        (
            "RedriveNoLeader",
            &["(max(redrive_leader{", ") == 0) or absent(redrive_leader{"][..],
        ),
    ] {
        let expr = alerts
            .get(alert)
            .unwrap_or_else(|| panic!("alert {alert} in {alerts:?}"));
        assert_balanced(expr);
        for n in needles {
            assert!(expr.contains(n), "{alert}: {n:?} not in {expr}");
        }
    }
    for r in rule["spec"]["groups"][0]["rules"].as_array().unwrap() {
        assert_eq!(
            r["labels"]["team"], "platform",
            "alertLabels on {}",
            r["alert"]
        );
        assert!(r["labels"]["severity"].is_string());
        assert!(
            r["annotations"]["summary"].is_string() && r["annotations"]["description"].is_string()
        );
    }

    // Variants.
    let no_election = render(&["--set", "leaderElection.enabled=false"]);
    let deploy = one(&no_election, "Deployment");
    assert!(args_of(deploy).contains(&"--leader-election=false".to_string()));
    assert!(!args_of(deploy).iter().any(|a| a.starts_with("--lease-")));
    assert_eq!(deploy["spec"]["strategy"]["type"], "Recreate");
    assert!(
        of_kind(&no_election, "Role").is_empty(),
        "no lease Role without election"
    );
    let refused = helm_local(&[
        "template",
        RELEASE,
        &chart_path,
        "--set",
        "replicaCount=2",
        "--set",
        "leaderElection.enabled=false",
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("replicaCount > 1 requires leaderElection.enabled"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let three = render(&["--set", "replicaCount=3", "--set", "pdb.minAvailable=2"]);
    assert_eq!(
        one(&three, "PodDisruptionBudget")["spec"]["minAvailable"],
        2
    );
    let digest = render(&[
        "--set",
        "image.digest=sha256:0123",
        "--set",
        "image.repository=r.example/op",
    ]);
    assert_eq!(
        container(one(&digest, "Deployment"))["image"],
        "r.example/op@sha256:0123"
    );
    let no_rbac = render(&[
        "--set",
        "rbac.create=false",
        "--set",
        "serviceAccount.create=false",
        "--set",
        "serviceAccount.name=existing",
    ]);
    assert_eq!(
        kinds(&no_rbac),
        ["Deployment", "Service"].map(String::from).into()
    );
    assert_eq!(
        one(&no_rbac, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"],
        "existing"
    );

    // AWS credentials from a Secret need no RBAC: without flowService no rendering grants
    // anything on secrets (or any verb beyond the ones the operator uses).
    let secret_creds = render(&["--set", "aws.credentialsSecret.name=aws"]);
    for objects in [&d, &no_election, &three, &secret_creds] {
        for rule in all_rules(objects) {
            let text = rule.to_string();
            assert!(!text.contains("secrets") && !text.contains('*'), "{text}");
        }
    }
    // flowService.enabled grants exactly `get` on secrets, in watchNamespace when set (the
    // all-features values), cluster-wide otherwise; never list or watch.
    let secret_rules = |objects: &[Value]| -> Vec<(String, Value)> {
        objects
            .iter()
            .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
            .flat_map(|o| {
                let scope = format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["namespace"].as_str().unwrap_or("")
                );
                o["rules"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|r| r.to_string().contains("secrets"))
                    .map(move |r| (scope.clone(), r))
            })
            .collect()
    };
    let expected = json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]});
    assert_eq!(
        secret_rules(&a),
        vec![("Role/tenant-a".to_string(), expected.clone())]
    );
    let cluster_wide = render(&["--set", "flowService.enabled=true"]);
    assert_eq!(
        secret_rules(&cluster_wide),
        vec![("ClusterRole/".to_string(), expected)]
    );
    let fs_args = args_of(one(&cluster_wide, "Deployment"));
    assert!(
        fs_args.contains(&"--adobe-retrigger-op=re-trigger".to_string()),
        "{fs_args:?}"
    );
    assert!(
        !fs_args
            .iter()
            .any(|a| a.starts_with("--adobe-platform-url")),
        "{fs_args:?}"
    );
    assert!(
        !args_of(one(&d, "Deployment"))
            .iter()
            .any(|a| a.starts_with("--adobe"))
    );
}

// ------------------------------------------------------------------------------------------
// Cluster helpers

/// Minimal CRDs for the two monitoring.coreos.com kinds the chart renders, with a structural
/// schema of the fields the chart sets (types, enums and the duration pattern of
/// prometheus-operator's own CRDs) and no `x-kubernetes-preserve-unknown-fields`, so a
/// misspelt or mistyped field is rejected by the API server's strict field validation.
const MONITORING_CRDS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, plural: servicemonitors, singular: servicemonitor, listKind: ServiceMonitorList}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              required: [selector]
              properties:
                jobLabel: {type: string}
                selector:
                  type: object
                  properties:
                    matchLabels: {type: object, additionalProperties: {type: string}}
                namespaceSelector:
                  type: object
                  properties:
                    any: {type: boolean}
                    matchNames: {type: array, items: {type: string}}
                endpoints:
                  type: array
                  items:
                    type: object
                    properties:
                      port: {type: string}
                      path: {type: string}
                      scheme: {type: string, enum: [http, https, HTTP, HTTPS]}
                      interval: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                      scrapeTimeout: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                      honorLabels: {type: boolean}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: prometheusrules.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  names: {kind: PrometheusRule, plural: prometheusrules, singular: prometheusrule, listKind: PrometheusRuleList}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              properties:
                groups:
                  type: array
                  items:
                    type: object
                    required: [name]
                    properties:
                      name: {type: string, minLength: 1}
                      interval: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                      rules:
                        type: array
                        items:
                          type: object
                          required: [expr]
                          properties:
                            alert: {type: string}
                            record: {type: string}
                            expr: {x-kubernetes-int-or-string: true, anyOf: [{type: integer}, {type: string}]}
                            for: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                            labels: {type: object, additionalProperties: {type: string}}
                            annotations: {type: object, additionalProperties: {type: string}}
"#;

fn restricted_namespace(c: &Cluster, name: &str) {
    c.kubectl_ok(["create", "namespace", name]);
    c.kubectl_ok([
        "label",
        "namespace",
        name,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
        "pod-security.kubernetes.io/warn=restricted",
        "pod-security.kubernetes.io/audit=restricted",
    ]);
}

fn wait_established(c: &Cluster, crd: &str) {
    c.kubectl_ok([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        &format!("crd/{crd}"),
    ]);
}

/// A kubeconfig for the cluster authenticating with `token` (a ServiceAccount's).
fn token_kubeconfig(c: &Cluster, dir: &Path, token: &str) -> PathBuf {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: sa\n  context: {{cluster: c, user: sa}}\ncurrent-context: sa\n",
        c.server_url,
        c.ca_cert_path.display()
    );
    let path = dir.join("sa.kubeconfig");
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

/// A ServiceAccount token from the TokenRequest API.
fn sa_token(c: &Cluster, namespace: &str, sa: &str) -> String {
    c.kubectl_ok(["create", "token", sa, "-n", namespace, "--duration=1h"])
        .trim()
        .to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The operator binary run as the chart's Deployment would run it: `run` + the container's
/// args (the admin address moved to loopback), exactly the container's env (downward API
/// fields and secretKeyRefs resolved the way the kubelet would), and a kubeconfig carrying the
/// chart ServiceAccount's token instead of the mounted one. Killed on drop.
struct ChartOperator {
    child: Option<std::process::Child>,
    log: PathBuf,
    admin: String,
}

impl ChartOperator {
    fn spawn(
        c: &Cluster,
        deployment: &Value,
        kubeconfig: &Path,
        pod_name: &str,
        dir: &Path,
    ) -> Self {
        let admin = format!("127.0.0.1:{}", free_port());
        let mut args = args_of(deployment);
        let at = args
            .iter()
            .position(|a| a.starts_with("--admin-addr="))
            .expect("the Deployment sets --admin-addr");
        args[at] = format!("--admin-addr={admin}");
        let pod_ns = deployment["metadata"]["namespace"].as_str().unwrap();
        let mut env: Vec<(String, String)> = Vec::new();
        for (name, e) in env_of(deployment) {
            let value = if let Some(v) = e["value"].as_str() {
                v.to_string()
            } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                match path {
                    "metadata.name" => pod_name.to_string(),
                    "metadata.namespace" => pod_ns.to_string(),
                    other => panic!("unexpected fieldRef {other}"),
                }
            } else if e["valueFrom"]["secretKeyRef"].is_object() {
                let r = &e["valueFrom"]["secretKeyRef"];
                c.kubectl_ok([
                    "get",
                    "secret",
                    r["name"].as_str().unwrap(),
                    "-n",
                    pod_ns,
                    "-o",
                    &format!(
                        "go-template={{{{index .data \"{}\" | base64decode}}}}",
                        r["key"].as_str().unwrap()
                    ),
                ])
            } else {
                panic!("unexpected env entry {e}");
            };
            env.push((name, value));
        }
        let log = dir.join(format!("{pod_name}.log"));
        let file = std::fs::File::create(&log).expect("operator log");
        let child = Command::new(env!("CARGO_BIN_EXE_redrive-operator"))
            .arg("run")
            .args(&args)
            .env_clear()
            .envs(env)
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .expect("redrive-operator starts");
        Self {
            child: Some(child),
            log,
            admin,
        }
    }

    fn logs(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM (as the kubelet does) and the exit code.
    fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ChartOperator {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// GET http://ADDR/PATH (HTTP/1.1, connection close): status and body.
async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}

/// Poll `check` every 500 ms until it returns `Some`, or panic after `limit`.
async fn wait_for<T, F, Fut>(what: &str, diag: impl Fn() -> String, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {WAIT:?} waiting for {what}\n{}", diag());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn policy(ns: &str, name: &str, labels: Value, spec: Value) -> String {
    json!({
        "apiVersion": "redrive.dev/v1alpha1",
        "kind": "RedrivePolicy",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": spec,
    })
    .to_string()
}

fn apply_json(c: &Cluster, doc: &str) {
    let out = c.kubectl_with_stdin(
        ["apply", "--server-side", "--validate=strict", "-f", "-"],
        doc,
    );
    assert!(
        out.status.success(),
        "apply failed: {}\n{doc}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A policy that redrives the `orders` failures once (they fail again at once: maxRedrives 1
/// exhausts them), and one whose every poll is denied (ListTagsForResource on a selected
/// machine): its identical AccessDenied warnings become an event series (PATCH).
fn apply_policies(c: &Cluster, ns: &str, labels: Value) {
    apply_json(
        c,
        &policy(
            ns,
            "orders",
            labels.clone(),
            json!({
                "stepFunctions": {"region": REGION, "stateMachines": [sm_arn("orders")]},
                "maxRedrives": 1,
                "pollInterval": "10s",
            }),
        ),
    );
    apply_json(
        c,
        &policy(
            ns,
            "denied",
            labels.clone(),
            json!({
                "stepFunctions": {"region": REGION, "selector": {"nameRegex": "^secret", "tags": {"team": "x"}}},
                "pollInterval": "10s",
            }),
        ),
    );
    apply_json(
        c,
        &policy(
            ns,
            "pipelines",
            labels,
            json!({
                "codePipeline": {"region": REGION, "pipelines": ["deploys", "claimed"]},
                "maxRedrives": 1,
                "pollInterval": "10s",
            }),
        ),
    );
}

/// Attempt records an operator finds when it starts: one settled two years ago (pruned: `list`
/// and `delete`), and a foreign claim of `claimed`'s first retry (honoured: `get` on
/// AlreadyExists, no RetryStageExecution).
fn seed_attempt_records(c: &Cluster, emu: &EmulatorHandle, ns: &str) {
    let execution = emu
        .pipeline_state("claimed")
        .and_then(|s| {
            s.stage("Deploy")
                .and_then(|d| d.pipeline_execution_id.clone())
        })
        .expect("claimed failed in Deploy");
    let long_ago: jiff::Timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
    let record = |run: String, holder: &str, at: jiff::Timestamp| {
        let key = AttemptKey::new(ns, "codepipeline", run.clone(), 1);
        let spec = RedriveAttemptSpec {
            target: "codepipeline".into(),
            policy: "pipelines".into(),
            workflow: run.split('/').next().unwrap_or_default().into(),
            run: run.clone(),
            root: run,
            attempt: 1,
            phase: AttemptPhase::Acted,
            holder: holder.into(),
            intent_at: at,
            deadline: at,
            settled_at: Some(at),
            outcome: Some(AttemptOutcome {
                code: Some("Redriven".into()),
                message: Some("seeded by the test".into()),
                new_run_id: None,
                etag: None,
            }),
        };
        json!({
            "apiVersion": "redrive.dev/v1alpha1",
            "kind": "RedriveAttempt",
            "metadata": {"name": key.object_name(), "namespace": ns},
            "spec": spec,
        })
    };
    let old = record(
        "retired/Deploy/00000000-0000-4000-8000-000000000000".into(),
        "an-old-replica",
        long_ago,
    );
    let foreign = record(
        format!("claimed/Deploy/{execution}"),
        "another-operator",
        jiff::Timestamp::now(),
    );
    for doc in [&old, &foreign] {
        apply_json(c, &doc.to_string());
    }
}

fn pipeline_failing_once(name: &str) -> PipelineSpec {
    PipelineSpec::source_build_deploy(name)
        .action_duration(Duration::from_millis(300))
        .script(
            "Deploy",
            "Deploy",
            [ActionOutcome::fail("JobFailed"), ActionOutcome::succeed()],
        )
        .execution(PipelineExecutionSpec::failed_ago(Duration::from_secs(60)))
}

fn scenario() -> Scenario {
    let mut orders = StateMachineSpec::standard("orders");
    for i in 0..3 {
        orders = orders.execution(
            ExecutionSpec::failed(&format!("o-{i}"), "Lambda.ServiceException")
                .stopped_ago(Duration::from_secs(60)),
        );
    }
    Scenario {
        state_machines: vec![
            orders,
            StateMachineSpec::standard("secret-orders").tag("team", "x"),
        ],
        ..Scenario::default()
    }
    .with_pipeline(pipeline_failing_once("deploys"))
    .with_pipeline(pipeline_failing_once("claimed"))
    .with_ims_client(redrive_emulator::ImsClientSpec::new(
        flows::CLIENT_ID,
        flows::CLIENT_SECRET,
    ))
    .with_flow(flows::failing_flow("chart-flow", 1))
}

async fn start_emulator() -> EmulatorHandle {
    let config = EmulatorConfig {
        faults: FaultConfig {
            access_denied_state_machines: vec![sm_arn("secret-orders")],
            ..FaultConfig::default()
        },
        ..EmulatorConfig::default()
    };
    emulator::start(config, scenario()).await.expect("emulator")
}

fn events_json(c: &Cluster, ns: &str) -> Value {
    serde_json::from_str(&c.kubectl_ok(["get", "events.events.k8s.io", "-n", ns, "-o", "json"]))
        .expect("events JSON")
}

/// Event reasons in `ns`, and whether some event has become a series (updated with PATCH).
fn event_summary(c: &Cluster, ns: &str) -> (BTreeSet<String>, bool) {
    let events = events_json(c, ns);
    let items = events["items"].as_array().cloned().unwrap_or_default();
    let reasons = items
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect();
    let series = items
        .iter()
        .any(|e| e["series"]["count"].as_u64().unwrap_or(0) >= 2);
    (reasons, series)
}

async fn policy_status(c: &Cluster, ns: &str, name: &str) -> Option<Value> {
    let out = c.kubectl(["get", "rdp", name, "-n", ns, "-o", "json"]);
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get("status").cloned()
}

/// Waits until the operator redrove the three `orders` failures, exhausted them, wrote the
/// status, and published events including a series; checks the emulator's ledger.
async fn assert_reconciled(c: &Cluster, emu: &EmulatorHandle, op: &ChartOperator, ns: &str) {
    let diag = || {
        format!(
            "ledger: {:?}\n--- operator log ---\n{}",
            redrives_per_attempt(&emu.ledger()),
            op.logs()
        )
    };
    wait_for("3 redrives in the ledger", diag, || async {
        (redriven_executions(emu).len() == 3).then_some(())
    })
    .await;
    wait_for("status counts.redriven = 3", diag, || async {
        let s = policy_status(c, ns, "orders").await?;
        (s["counts"]["redriven"] == 3).then_some(())
    })
    .await;
    wait_for(
        "Redriven and Exhausted events, and an event series",
        diag,
        || async {
            let (reasons, series) = event_summary(c, ns);
            (reasons.contains("Redriven")
                && reasons.contains("Exhausted")
                && reasons.contains("AccessDenied")
                && series)
                .then_some(())
        },
    )
    .await;
    let denied = policy_status(c, ns, "denied").await.expect("denied status");
    let ready = denied["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["status"], "False", "{denied}");
    assert_eq!(ready["reason"], "AccessDenied", "{denied}");
    // Each failure redriven exactly once (maxRedrives 1), never twice.
    let per = redrives_per_attempt(&emu.ledger());
    assert_eq!(per.len(), 3, "{per:?}");
    assert!(
        per.iter().all(|((_, before), n)| *before == 0 && *n == 1),
        "{per:?}"
    );
    // CodePipeline through the attempt ledger: `deploys` retried once; `claimed` not at all
    // (another holder's record); the two-year-old record pruned.
    let retried = |p: &str| {
        emu.codepipeline_ledger()
            .iter()
            .filter(|e| e.pipeline_name == p && e.outcome == RetryOutcome::Retried)
            .count()
    };
    wait_for("deploys retried once", diag, || async {
        (retried("deploys") == 1).then_some(())
    })
    .await;
    wait_for("the old attempt record pruned", diag, || async {
        let out = c.kubectl_ok(["get", "redriveattempts", "-n", ns, "-o", "json"]);
        let v: Value = serde_json::from_str(&out).ok()?;
        let items = v["items"].as_array()?.clone();
        let old = items
            .iter()
            .any(|i| i["spec"]["holder"] == "an-old-replica");
        let acted = items
            .iter()
            .any(|i| i["spec"]["workflow"] == "deploys" && i["spec"]["phase"] == "Acted");
        (!old && acted).then_some(())
    })
    .await;
    assert_eq!(retried("claimed"), 0, "a foreign claim is honoured");
}

// ------------------------------------------------------------------------------------------
// RBAC: the rules the chart renders against the requests the audit log recorded

/// One API request, as the authorizer sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Request {
    verb: String,
    group: String,
    /// `resource` or `resource/subresource`.
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
}

/// A rule granted to the ServiceAccount: cluster-wide (`namespace` None) or in one namespace.
#[derive(Clone, Debug)]
struct Grant {
    origin: String,
    namespace: Option<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    names: Vec<String>,
}

impl Grant {
    fn allows(&self, r: &Request) -> bool {
        (self.namespace.is_none() || self.namespace == r.namespace)
            && self.groups.contains(&r.group)
            && self.resources.contains(&r.resource)
            && self.verbs.contains(&r.verb)
            && (self.names.is_empty() || r.name.as_ref().is_some_and(|n| self.names.contains(n)))
    }
}

/// The rules bound to ServiceAccount `ns/sa` by the rendered objects.
fn grants(objects: &[Value], ns: &str, sa: &str) -> Vec<Grant> {
    let mut out = Vec::new();
    for b in objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding")
    {
        let binds_sa = b["subjects"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"] == ns)
        });
        if !binds_sa {
            continue;
        }
        let binding_ns = b["metadata"]["namespace"].as_str().map(str::to_string);
        let role_kind = b["roleRef"]["kind"].as_str().unwrap();
        let role_name = &b["roleRef"]["name"];
        let role = objects
            .iter()
            .find(|o| {
                o["kind"] == role_kind
                    && &o["metadata"]["name"] == role_name
                    && (role_kind == "ClusterRole"
                        || o["metadata"]["namespace"].as_str() == binding_ns.as_deref())
            })
            .unwrap_or_else(|| panic!("{role_kind} {role_name} of {b} is not rendered"));
        for (i, rule) in role["rules"].as_array().unwrap().iter().enumerate() {
            out.push(Grant {
                origin: format!(
                    "{role_kind} {}{} rule {i}",
                    binding_ns
                        .as_ref()
                        .map(|n| format!("{n}/"))
                        .unwrap_or_default(),
                    role_name.as_str().unwrap()
                ),
                namespace: binding_ns.clone(),
                groups: strings(&rule["apiGroups"]),
                resources: strings(&rule["resources"]),
                verbs: strings(&rule["verbs"]),
                names: strings(&rule["resourceNames"]),
            });
        }
    }
    out
}

/// Non-resource URLs every authenticated user may GET (the default `system:discovery` and
/// `system:public-info-viewer` ClusterRoles).
fn default_non_resource(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    [
        "/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi",
    ]
    .iter()
    .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// Compares what `user` did (audit log) with the grants: no request outside them, no request
/// refused, and no (rule, group, resource, verb, name) the operator never used.
fn assert_rbac_exact(c: &Cluster, user: &str, grants: &[Grant]) {
    let mut requests = BTreeSet::new();
    let mut non_resource = BTreeSet::new();
    let mut refused = Vec::new();
    let mut seen = BTreeSet::new();
    for e in c.audit_events() {
        if e["user"]["username"] != user {
            continue;
        }
        if !seen.insert(e["auditID"].as_str().unwrap_or_default().to_string()) {
            continue;
        }
        let code = e["responseStatus"]["code"].as_u64().unwrap_or(0);
        if code == 401 || code == 403 {
            refused.push(format!(
                "{code} {} {}",
                e["verb"],
                e["requestURI"].as_str().unwrap_or_default()
            ));
        }
        let o = &e["objectRef"];
        if !o.is_object() {
            non_resource.insert(e["requestURI"].as_str().unwrap_or_default().to_string());
            continue;
        }
        let resource = match o["subresource"].as_str() {
            Some(sub) => format!("{}/{sub}", o["resource"].as_str().unwrap_or_default()),
            None => o["resource"].as_str().unwrap_or_default().to_string(),
        };
        requests.insert(Request {
            verb: e["verb"].as_str().unwrap_or_default().to_string(),
            group: o["apiGroup"].as_str().unwrap_or_default().to_string(),
            resource,
            namespace: o["namespace"].as_str().map(str::to_string),
            name: o["name"].as_str().map(str::to_string),
        });
    }
    assert!(
        !requests.is_empty(),
        "the audit log has no request of {user}: is auditing on?"
    );
    let distinct: BTreeSet<String> = requests
        .iter()
        .map(|r| {
            format!(
                "{} {}/{} ns={} name={}",
                r.verb,
                r.group,
                r.resource,
                r.namespace.as_deref().unwrap_or("*"),
                match (r.group.as_str(), r.name.as_deref()) {
                    ("events.k8s.io", Some(_)) => "<event>",
                    (_, n) => n.unwrap_or("-"),
                }
            )
        })
        .collect();
    eprintln!(
        "requests of {user} (audit log):\n  {}\nnon-resource: {non_resource:?}",
        distinct.into_iter().collect::<Vec<_>>().join("\n  ")
    );
    assert!(
        refused.is_empty(),
        "refused requests of {user}: {refused:#?}"
    );
    let outside: Vec<&String> = non_resource
        .iter()
        .filter(|p| !default_non_resource(p))
        .collect();
    assert!(
        outside.is_empty(),
        "non-resource requests the default discovery roles do not cover: {outside:?}"
    );
    let missing: Vec<&Request> = requests
        .iter()
        .filter(|r| !grants.iter().any(|g| g.allows(r)))
        .collect();
    assert!(
        missing.is_empty(),
        "requests no chart rule allows (a missing rule):\n{missing:#?}\ngrants: {grants:#?}"
    );
    let mut unused = Vec::new();
    for g in grants {
        for group in &g.groups {
            for resource in &g.resources {
                for verb in &g.verbs {
                    let names: Vec<Option<&String>> = if g.names.is_empty() {
                        vec![None]
                    } else {
                        g.names.iter().map(Some).collect()
                    };
                    for name in names {
                        let used = requests.iter().any(|r| {
                            &r.group == group
                                && &r.resource == resource
                                && &r.verb == verb
                                && (g.namespace.is_none() || g.namespace == r.namespace)
                                && name.is_none_or(|n| r.name.as_ref() == Some(n))
                        });
                        if !used {
                            unused.push(format!(
                                "{}: {verb} {group}/{resource}{}",
                                g.origin,
                                name.map(|n| format!(" {n}")).unwrap_or_default()
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        unused.is_empty(),
        "chart rules the operator never used (an unused rule):\n{}\nrequests made: {requests:#?}",
        unused.join("\n")
    );
}

/// Metric names (sample names) of an OpenMetrics exposition.
fn exposed_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Sum of the samples of `name` with label `key="value"`.
fn sample_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `*` and `?` wildcards, as IAM matches resource ARNs.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn one_or_many(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        other => strings(other),
    }
}

/// Whether an identity-based IAM policy (Allow statements only) allows `action` on `resource`.
fn iam_allows(policy: &Value, action: &str, resource: &str) -> bool {
    policy["Statement"].as_array().unwrap().iter().any(|st| {
        st["Effect"] == "Allow"
            && one_or_many(&st["Action"]).iter().any(|a| a == action)
            && one_or_many(&st["Resource"])
                .iter()
                .any(|r| glob_match(r, resource))
    })
}

/// docs/iam-policy.json allows every Step Functions call the operator made against the
/// emulator, on the ARNs it made it on, and grants no action beyond the documented ones.
fn assert_iam_policy_covers(emu: &EmulatorHandle) {
    let policy: Value = serde_json::from_str(&read(Path::new(ROOT).join("docs/iam-policy.json")))
        .expect("docs/iam-policy.json is JSON");
    let documented = [
        "states:ListExecutions",
        "states:RedriveExecution",
        "states:DescribeExecution",
        "states:GetExecutionHistory",
        "states:ListStateMachines",
        "states:ListTagsForResource",
        "sts:AssumeRole",
        "codepipeline:GetPipelineState",
        "codepipeline:GetPipeline",
        "codepipeline:ListPipelines",
        "codepipeline:ListTagsForResource",
        "codepipeline:RetryStageExecution",
    ];
    for st in policy["Statement"].as_array().unwrap() {
        for a in one_or_many(&st["Action"]) {
            assert!(documented.contains(&a.as_str()), "undocumented action {a}");
        }
    }
    let stats = emu.stats();
    assert!(!stats.by_api.is_empty());
    for api in stats.by_api.keys() {
        let resources: Vec<String> = match api.as_str() {
            "ListExecutions" => vec![sm_arn("orders")],
            "ListStateMachines" => vec!["*".to_string()],
            "ListTagsForResource" => vec![sm_arn("secret-orders")],
            // Details for error filters come from either; the ledger names the executions.
            "RedriveExecution" | "DescribeExecution" | "GetExecutionHistory" => {
                emu.ledger().into_iter().map(|e| e.execution_arn).collect()
            }
            "codepipeline:GetPipelineState" | "codepipeline:GetPipeline" => {
                vec![emu.pipeline_arn("deploys"), emu.pipeline_arn("claimed")]
            }
            "codepipeline:RetryStageExecution" => emu
                .codepipeline_ledger()
                .into_iter()
                .map(|e| format!("{}/{}", emu.pipeline_arn(&e.pipeline_name), e.stage_name))
                .collect(),
            other => panic!(
                "the operator called {other}: document it in docs/iam.md and docs/iam-policy.json"
            ),
        };
        let action = if api.contains(':') {
            api.clone()
        } else {
            format!("states:{api}")
        };
        for r in resources {
            assert!(
                iam_allows(&policy, &action, &r),
                "docs/iam-policy.json does not allow {action} on {r}"
            );
        }
    }
}

// ------------------------------------------------------------------------------------------
// 3. rendered manifests, server-side, restricted namespaces, namespaced RBAC

#[tokio::test(flavor = "multi_thread")]
async fn rendered_chart_applies_server_side_under_restricted_pod_security_and_its_role_rules_are_exactly_what_the_operator_uses()
 {
    let c = cluster::start_with(cluster::Options { audit: true }).await;
    let emu = start_emulator().await;
    let dir = tempfile::tempdir().unwrap();

    // CRDs: the chart's own, and minimal monitoring.coreos.com ones for ServiceMonitor and
    // PrometheusRule (a bare API server has no Prometheus Operator).
    c.kubectl_ok([
        "apply",
        "--server-side",
        "-f",
        &chart().join("crds").display().to_string(),
    ]);
    let out = c.kubectl_with_stdin(["apply", "--server-side", "-f", "-"], MONITORING_CRDS);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for crd in [
        "redrivepolicies.redrive.dev",
        "redriveattempts.redrive.dev",
        "servicemonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
    ] {
        wait_established(&c, crd);
    }
    restricted_namespace(&c, RELEASE_NS);
    restricted_namespace(&c, "tenant-a");

    // Every optional feature, with the emulator as AWS endpoint and no STS role rules (the
    // operator would otherwise have to assume roles).
    let endpoint = format!("aws.endpointUrl={}", emu.endpoint);
    let platform = format!("flowService.platformUrl={}", emu.flowservice_url());
    let ims = format!("flowService.imsUrl={}", emu.ims_token_url());
    let all = all_features_values();
    let objects = render(&[
        "-f",
        &all,
        "--set",
        &endpoint,
        "--set",
        &platform,
        "--set",
        &ims,
        "--set",
        "tenancy.requireRole=false",
        "--set-json",
        "tenancy.allowedRoles=[]",
    ]);
    let stream: String = objects.iter().map(|o| format!("---\n{o}\n")).collect();
    let applied = c.kubectl_with_stdin(
        [
            "apply",
            "--server-side",
            "--field-manager=helm-chart-test",
            "--validate=strict",
            "-f",
            "-",
        ],
        &stream,
    );
    let stderr = String::from_utf8_lossy(&applied.stderr);
    assert!(applied.status.success(), "server-side apply: {stderr}");
    assert!(
        !stderr.contains("violate PodSecurity"),
        "the Deployment would violate the restricted profile: {stderr}"
    );
    for o in &objects {
        let kind = o["kind"].as_str().unwrap();
        let name = o["metadata"]["name"].as_str().unwrap();
        let mut args = vec!["get".to_string(), kind.to_string(), name.to_string()];
        if let Some(ns) = o["metadata"]["namespace"].as_str() {
            args.extend(["-n".to_string(), ns.to_string()]);
        }
        c.kubectl_ok(&args);
    }

    // No kubelet runs the Deployment, so create its Pod directly: PodSecurity admission judges
    // it like the ReplicaSet's pods.
    let deploy = one(&objects, "Deployment");
    let template = &deploy["spec"]["template"];
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "redrive-operator-admission", "namespace": RELEASE_NS,
                     "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    });
    let created = c.kubectl_with_stdin(["create", "-f", "-"], &pod.to_string());
    let stderr = String::from_utf8_lossy(&created.stderr);
    assert!(
        created.status.success(),
        "the chart's pod is rejected: {stderr}"
    );
    assert!(!stderr.contains("PodSecurity"), "warnings: {stderr}");
    // Control: the same pod without the hardened container context is refused, so the
    // namespace really enforces `restricted`.
    let mut weak = pod.clone();
    weak["metadata"]["name"] = json!("weak");
    weak["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("securityContext");
    let refused = c.kubectl_with_stdin(["create", "-f", "-"], &weak.to_string());
    assert!(
        !refused.status.success(),
        "a pod without securityContext was admitted"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("violates PodSecurity \"restricted:latest\""),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // The operator, namespaced (WATCH_NAMESPACE=tenant-a, label selector shard=a), with the
    // chart's ServiceAccount token and AWS credentials from the Secret the values name.
    c.kubectl_ok([
        "create",
        "secret",
        "generic",
        "redrive-aws",
        "-n",
        RELEASE_NS,
        "--from-literal=AWS_ACCESS_KEY_ID=AKIACHARTSECRET0001",
        "--from-literal=AWS_SECRET_ACCESS_KEY=chart-test-secret-key",
        "--from-literal=AWS_SESSION_TOKEN=chart-test-session-token",
    ]);
    apply_policies(&c, "tenant-a", json!({"shard": "a"}));
    seed_attempt_records(&c, &emu, "tenant-a");
    // A Flow Service policy: the operator reads its Secret (`get`, the one rule
    // flowService.enabled adds) and re-triggers the failed run once.
    c.kubectl_ok([
        "create",
        "secret",
        "generic",
        "aep",
        "-n",
        "tenant-a",
        &format!("--from-literal=clientId={}", flows::CLIENT_ID),
        &format!("--from-literal=clientSecret={}", flows::CLIENT_SECRET),
        &format!("--from-literal=orgId={}", flows::ORG_ID),
    ]);
    let flow = emu.flow_id("chart-flow").expect("flow seeded");
    apply_json(
        &c,
        &policy(
            "tenant-a",
            "dataflows",
            json!({"shard": "a"}),
            json!({
                "flowService": {"credentialsSecretRef": {"name": "aep"}, "flows": [flow]},
                "maxRedrives": 1,
                "pollInterval": "10s",
            }),
        ),
    );
    // Not for this release (label selector): never touched.
    apply_json(
        &c,
        &policy(
            "tenant-a",
            "other-shard",
            json!({"shard": "b"}),
            json!({"stepFunctions": {"region": REGION, "stateMachines": [sm_arn("orders")]}}),
        ),
    );
    let sa = one(&objects, "ServiceAccount")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let kubeconfig = token_kubeconfig(&c, dir.path(), &sa_token(&c, RELEASE_NS, &sa));
    let mut op = ChartOperator::spawn(&c, deploy, &kubeconfig, "redrive-op-a", dir.path());
    assert_reconciled(&c, &emu, &op, "tenant-a").await;
    wait_for(
        "the Flow Service run re-triggered",
        || op.logs(),
        || async { (flows::retriggered(&emu) == 1).then_some(()) },
    )
    .await;
    assert!(
        emu.flowservice_ledger()
            .iter()
            .all(|e| e.op == "RE_TRIGGER"),
        "the chart's retriggerOp reached the service"
    );
    assert!(
        !op.logs().contains(flows::CLIENT_SECRET),
        "secret in the logs"
    );
    assert!(
        policy_status(&c, "tenant-a", "other-shard").await.is_none(),
        "a policy outside policySelector got a status"
    );
    let keys: BTreeSet<Option<String>> =
        emu.ledger().into_iter().map(|e| e.access_key_id).collect();
    assert_eq!(
        keys,
        BTreeSet::from([Some("AKIACHARTSECRET0001".to_string())]),
        "redrives signed with the Secret's credentials"
    );
    // Hold the lease long enough to renew it once (15s lease, renewed 5s before expiry).
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(op.alive(), "{}", op.logs());
    assert_eq!(
        op.terminate(),
        Some(0),
        "clean exit on SIGTERM:\n{}",
        op.logs()
    );

    let user = format!("system:serviceaccount:{RELEASE_NS}:{sa}");
    let g = grants(&objects, RELEASE_NS, &sa);
    assert!(
        g.iter().all(|g| g.namespace.is_some()),
        "namespaced mode grants nothing cluster-wide"
    );
    assert_rbac_exact(&c, &user, &g);
}

// ------------------------------------------------------------------------------------------
// 4. helm install / operator / upgrade / uninstall, cluster-wide RBAC

fn helm_ok(c: &Cluster, args: &[&str]) -> String {
    ok_stdout(&format!("helm {args:?}"), c.helm(args))
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_install_reconciles_with_exactly_the_chart_rbac_then_upgrade_and_uninstall_clean_up() {
    let c = cluster::start_with(cluster::Options { audit: true }).await;
    let emu = start_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    restricted_namespace(&c, RELEASE_NS);
    c.kubectl_ok(["create", "namespace", "payments"]);

    // helm install from the repository path; the CRD comes from the chart's crds/.
    let chart_path = chart_str();
    let endpoint = format!("aws.endpointUrl={}", emu.endpoint);
    helm_ok(
        &c,
        &[
            "install",
            RELEASE,
            &chart_path,
            "-n",
            RELEASE_NS,
            "--set",
            &endpoint,
        ],
    );
    wait_established(&c, "redrivepolicies.redrive.dev");
    wait_established(&c, "redriveattempts.redrive.dev");

    // The documented CRD upgrade path: a newer CRD applied server-side. Helm created the CRD
    // (field manager `helm`), so a changed field conflicts until `--force-conflicts`.
    let newer = read(chart().join("crds/redrivepolicies.redrive.dev.yaml")).replacen(
        "When the next poll is due (RFC 3339).",
        "When the next poll is due (RFC 3339, newer CRD).",
        1,
    );
    assert!(newer.contains("newer CRD"), "the CRD text to change moved");
    let conflict = c.kubectl_with_stdin(["apply", "--server-side", "-f", "-"], &newer);
    assert!(!conflict.status.success());
    assert!(
        String::from_utf8_lossy(&conflict.stderr).contains("conflict with \"helm\""),
        "{}",
        String::from_utf8_lossy(&conflict.stderr)
    );
    let forced = c.kubectl_with_stdin(
        ["apply", "--server-side", "--force-conflicts", "-f", "-"],
        &newer,
    );
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let crd_text = || c.kubectl_ok(["get", "crd", "redrivepolicies.redrive.dev", "-o", "yaml"]);
    assert!(crd_text().contains("newer CRD"));
    let manifest = docs(&helm_ok(
        &c,
        &["get", "manifest", RELEASE, "-n", RELEASE_NS],
    ));
    assert_eq!(
        kinds(&manifest),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
        .map(String::from)
        .into()
    );
    let deploy = one(&manifest, "Deployment");
    let sa = one(&manifest, "ServiceAccount")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let lease = "redrive-redrive-operator";

    // The operator as the Deployment runs it, with the chart ServiceAccount's token.
    apply_policies(&c, "payments", json!({}));
    seed_attempt_records(&c, &emu, "payments");
    let kubeconfig = token_kubeconfig(&c, dir.path(), &sa_token(&c, RELEASE_NS, &sa));
    let mut op = ChartOperator::spawn(&c, deploy, &kubeconfig, "redrive-op-0", dir.path());
    assert_reconciled(&c, &emu, &op, "payments").await;
    let holder = c.kubectl_ok([
        "get",
        "lease",
        lease,
        "-n",
        RELEASE_NS,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(
        holder, "redrive-op-0",
        "the pod name (downward API) holds the lease"
    );

    // Health and metrics on the admin port; every metric the alerts and the dashboard use is
    // in a real scrape, and the redrive counter agrees with the emulator's ledger.
    assert_eq!(http_get(&op.admin, "/livez").await.map(|r| r.0), Some(200));
    assert_eq!(http_get(&op.admin, "/readyz").await.map(|r| r.0), Some(200));
    let scrape = wait_for(
        "a scrape with every metric",
        || op.logs(),
        || async {
            let (code, body) = http_get(&op.admin, "/metrics").await?;
            let names = exposed_names(&body);
            (code == 200
                && names.contains("redrive_executions_exhausted_total")
                && names.contains("redrive_reconcile_errors_total"))
            .then_some(body)
        },
    )
    .await;
    let exposed = exposed_names(&scrape);
    let rule_objects = render(&["--set", "prometheusRule.enabled=true"]);
    let mut used = BTreeSet::new();
    for r in one(&rule_objects, "PrometheusRule")["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
    {
        used.extend(metric_names(r["expr"].as_str().unwrap()));
    }
    let dashboard: Value =
        serde_json::from_str(&read(chart().join("dashboards/redrive-operator.json"))).unwrap();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            used.extend(metric_names(t["expr"].as_str().unwrap_or_default()));
        }
    }
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        used.extend(metric_names(v["definition"].as_str().unwrap_or_default()));
    }
    let absent: Vec<&String> = used.iter().filter(|m| !exposed.contains(*m)).collect();
    assert!(
        absent.is_empty(),
        "metrics used by the alerts or the dashboard but not exported: {absent:?}\n{scrape}"
    );
    let redriven = emu
        .ledger()
        .iter()
        .filter(|e| e.outcome.is_redriven())
        .count()
        + emu
            .codepipeline_ledger()
            .iter()
            .filter(|e| e.outcome == RetryOutcome::Retried)
            .count();
    assert_eq!(
        sample_sum(&scrape, "redrive_redrives_total", "outcome=\"Redriven\""),
        redriven as f64,
        "{scrape}"
    );
    assert!(
        scrape.lines().any(|l| l == "redrive_leader 1"),
        "this replica reports itself leader: {scrape}"
    );

    assert_iam_policy_covers(&emu);

    // Renew the lease at least once, then stop like a pod: the lease is released (PATCH).
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(op.alive(), "{}", op.logs());
    assert_eq!(
        op.terminate(),
        Some(0),
        "clean exit on SIGTERM:\n{}",
        op.logs()
    );
    let holder = c.kubectl_ok([
        "get",
        "lease",
        lease,
        "-n",
        RELEASE_NS,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder, "", "lease released on shutdown");

    // RBAC: exactly the requests the operator made.
    let user = format!("system:serviceaccount:{RELEASE_NS}:{sa}");
    let g = grants(&manifest, RELEASE_NS, &sa);
    assert!(
        g.iter().any(|g| g.namespace.is_none()),
        "cluster-wide grants"
    );
    assert_rbac_exact(&c, &user, &g);

    // helm upgrade: two replicas add a PodDisruptionBudget; then watchNamespace swaps the
    // ClusterRole for a Role in that namespace.
    helm_ok(
        &c,
        &[
            "upgrade",
            RELEASE,
            &chart_path,
            "-n",
            RELEASE_NS,
            "--reuse-values",
            "--set",
            "replicaCount=2",
        ],
    );
    let upgraded = docs(&helm_ok(
        &c,
        &["get", "manifest", RELEASE, "-n", RELEASE_NS],
    ));
    assert!(kinds(&upgraded).contains("PodDisruptionBudget"));
    c.kubectl_ok(["get", "pdb", "redrive-redrive-operator", "-n", RELEASE_NS]);
    let replicas = c.kubectl_ok([
        "get",
        "deploy",
        "redrive-redrive-operator",
        "-n",
        RELEASE_NS,
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "2");
    let args = c.kubectl_ok([
        "get",
        "deploy",
        "redrive-redrive-operator",
        "-n",
        RELEASE_NS,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].args}",
    ]);
    assert!(
        args.contains(&emu.endpoint),
        "--reuse-values kept the endpoint: {args}"
    );
    helm_ok(
        &c,
        &[
            "upgrade",
            RELEASE,
            &chart_path,
            "-n",
            RELEASE_NS,
            "--reuse-values",
            "--set",
            "watchNamespace=payments",
        ],
    );
    // Helm never touches crds/ on upgrade: the CRD is still the one applied by hand.
    assert!(
        crd_text().contains("newer CRD"),
        "helm upgrade changed the CRD"
    );
    let gone = c.kubectl(["get", "clusterrole", "redrive-redrive-operator"]);
    assert!(
        !gone.status.success(),
        "the ClusterRole is removed by the upgrade"
    );
    c.kubectl_ok([
        "get",
        "role,rolebinding",
        "redrive-redrive-operator",
        "-n",
        "payments",
    ]);
    let history = helm_ok(&c, &["history", RELEASE, "-n", RELEASE_NS, "-o", "json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&history)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // helm uninstall: nothing of the release is left but the CRD (Helm never deletes crds/),
    // the user's policies and the Lease the operator itself created.
    helm_ok(&c, &["uninstall", RELEASE, "-n", RELEASE_NS]);
    let selector = format!("app.kubernetes.io/instance={RELEASE}");
    let left = c.kubectl_ok([
        "get",
        "deploy,rs,pods,svc,sa,role,rolebinding,pdb,networkpolicy,configmap,secret,lease",
        "-A",
        "-l",
        &selector,
        "-o",
        "name",
    ]);
    assert_eq!(left.trim(), "", "namespaced leftovers of the release");
    let left = c.kubectl_ok([
        "get",
        "clusterrole,clusterrolebinding",
        "-l",
        &selector,
        "-o",
        "name",
    ]);
    assert_eq!(left.trim(), "", "cluster-scoped leftovers of the release");
    for (kind, name) in [
        ("serviceaccount", sa.as_str()),
        ("deployment", "redrive-redrive-operator"),
        ("service", "redrive-redrive-operator"),
        ("role", "redrive-redrive-operator-leader-election"),
    ] {
        assert!(
            !c.kubectl(["get", kind, name, "-n", RELEASE_NS])
                .status
                .success(),
            "{kind} {name} left behind"
        );
    }
    c.kubectl_ok(["get", "crd", "redrivepolicies.redrive.dev"]);
    c.kubectl_ok(["get", "rdp", "orders", "-n", "payments"]);
    c.kubectl_ok(["get", "lease", lease, "-n", RELEASE_NS]);
}
