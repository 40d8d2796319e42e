//! Reading RedrivePolicy documents from YAML or JSON files (local mode).
//!
//! A file goes through the same checks as an object in the cluster: the API server's CEL rules
//! (evaluated client-side by kube's CEL support) and [`Policy::from_resource`]. Every problem is
//! one line naming the file, the policy and the field.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::crd::RedrivePolicy;
use crate::policy::Policy;

pub const API_VERSION: &str = "redrive.dev/v1alpha1";
pub const KIND: &str = "RedrivePolicy";

/// Largest policy file read (a policy is a few hundred bytes; this bounds hostile input).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// A policy that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    /// Index of the YAML document in the file (from 0).
    pub document: usize,
    pub policy: Option<String>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.policy {
            Some(p) => write!(f, "policy {p} ({}): {}", self.file.display(), self.message),
            None => write!(
                f,
                "{} (document {}): {}",
                self.file.display(),
                self.document + 1,
                self.message
            ),
        }
    }
}

impl std::error::Error for LoadError {}

/// Load every policy document of every file. Valid policies and errors are returned side by side
/// so that one bad policy never stops the others.
pub fn load_files(paths: &[PathBuf]) -> (Vec<Policy>, Vec<LoadError>) {
    let mut policies = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match read_bounded(path) {
            Ok(text) => {
                for result in parse_documents(path, &text) {
                    match result {
                        Ok(p) => policies.push(p),
                        Err(e) => errors.push(e),
                    }
                }
            }
            Err(message) => errors.push(LoadError {
                file: path.clone(),
                document: 0,
                policy: None,
                message,
            }),
        }
    }
    (policies, errors)
}

fn read_bounded(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("file is larger than {MAX_FILE_BYTES} bytes"));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
}

/// Parse and validate the documents of one file.
pub fn parse_documents(path: &Path, text: &str) -> Vec<Result<Policy, LoadError>> {
    let docs: Vec<serde_json::Value> = match serde_saphyr::from_multiple(text) {
        Ok(d) => d,
        Err(e) => {
            return vec![Err(LoadError {
                file: path.to_path_buf(),
                document: 0,
                policy: None,
                message: one_line(&format!("not valid YAML or JSON: {e}")),
            })];
        }
    };
    docs.into_iter()
        .enumerate()
        .filter(|(_, d)| !d.is_null())
        .map(|(i, doc)| {
            parse_policy(doc).map_err(|(policy, message)| LoadError {
                file: path.to_path_buf(),
                document: i,
                policy,
                message,
            })
        })
        .collect()
}

/// Validate one document. The error carries the policy name when one could be read.
pub fn parse_policy(doc: serde_json::Value) -> Result<Policy, (Option<String>, String)> {
    let name = doc
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .map(str::to_string);
    let namespace = doc
        .pointer("/metadata/namespace")
        .and_then(|n| n.as_str())
        .unwrap_or("");
    let display = name.as_ref().map(|n| {
        if namespace.is_empty() {
            n.clone()
        } else {
            format!("{namespace}/{n}")
        }
    });
    // Every rejection goes through `one_line`: several quote the offending value or key
    // (`apiVersion`, `kind`, durations, undeclared fields), which may be kilobytes long.
    let fail = |m: String| Err((display.clone(), one_line(&m)));
    if !doc.is_object() {
        return fail("a RedrivePolicy document must be a mapping".into());
    }
    match doc.get("apiVersion").and_then(|v| v.as_str()) {
        Some(API_VERSION) => {}
        Some(other) => return fail(format!("apiVersion: {other:?} is not {API_VERSION:?}")),
        None => return fail(format!("apiVersion: required ({API_VERSION})")),
    }
    match doc.get("kind").and_then(|v| v.as_str()) {
        Some(KIND) => {}
        Some(other) => return fail(format!("kind: {other:?} is not {KIND:?}")),
        None => return fail(format!("kind: required ({KIND})")),
    }
    if let Some(field) = undeclared_field(&doc) {
        // As the API server answers `kubectl apply --validate=strict`; ignoring a typo such as
        // `rolearn` would silently act with the operator's own identity.
        // Cut the (up to 1,024-character) key, not the reason, when the message is capped.
        let field = shorten(&field, MAX_MESSAGE / 2);
        return fail(format!("{field}: field not declared in schema"));
    }
    let obj: RedrivePolicy = match serde_path_to_error::deserialize(doc) {
        Ok(o) => o,
        Err(e) => {
            let path = e.path().to_string();
            return fail(format!("{path}: {}", one_line(&e.into_inner().to_string())));
        }
    };
    if let Err(errors) = obj.validate_cel() {
        // A rule that cannot evaluate (e.g. `matches` on an invalid regex) is reported by
        // Policy::from_resource below in the operator's own words: keep only real rejections.
        let first = errors
            .into_iter()
            .find(|e| !matches!(e.kind, kube::core::cel::ErrorKind::EvaluationError))
            .map(|e| {
                format!(
                    "{}: {}",
                    if e.field_path.is_empty() {
                        "spec".to_string()
                    } else {
                        e.field_path.clone()
                    },
                    e.message
                )
            });
        if let Some(first) = first {
            return fail(first);
        }
    }
    Policy::from_resource(&obj).map_err(|e| (display.clone(), one_line(&e.to_string())))
}

/// The first field of `doc` that the CRD's schema does not declare (`spec.maxRedrive`).
fn undeclared_field(doc: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    static SPEC_SCHEMA: std::sync::LazyLock<Option<Value>> = std::sync::LazyLock::new(|| {
        let crd = <RedrivePolicy as kube::CustomResourceExt>::crd();
        let schema = crd
            .spec
            .versions
            .first()?
            .schema
            .as_ref()?
            .open_api_v3_schema
            .as_ref()?;
        Some(serde_json::to_value(schema).ok()?["properties"]["spec"].clone())
    });
    fn walk(v: &Value, schema: &Value, path: &str) -> Option<String> {
        let (Some(obj), Some(props)) = (v.as_object(), schema.get("properties")?.as_object())
        else {
            return None;
        };
        obj.iter().find_map(|(k, child)| {
            let p = format!("{path}.{k}");
            match props.get(k) {
                None => Some(p),
                Some(s) => walk(child, s, &p),
            }
        })
    }
    doc.as_object()?.iter().find_map(|(k, v)| match k.as_str() {
        "apiVersion" | "kind" | "metadata" | "status" => None,
        "spec" => walk(v, SPEC_SCHEMA.as_ref()?, "spec"),
        other => Some(other.to_string()),
    })
}

/// Longest rejection message, in characters (an ellipsis marks a cut).
const MAX_MESSAGE: usize = 512;

/// One line of at most `MAX_MESSAGE` characters: serde and YAML errors quote the offending
/// value, which may be a 64 KiB string.
fn one_line(s: &str) -> String {
    shorten(
        &s.split_whitespace().collect::<Vec<_>>().join(" "),
        MAX_MESSAGE,
    )
}

/// `s` cut to `max` characters, an ellipsis marking the cut.
fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found with the message-length property of fuzz/fuzz_targets/policy_document.rs:
    /// rejections quoting an over-long value were not capped, e.g. a 64 KiB `apiVersion` came
    /// back whole.
    #[test]
    fn rejection_messages_are_capped_and_name_the_field() {
        let long = "x".repeat(65_536);
        let valid = "apiVersion: redrive.dev/v1alpha1\nkind: RedrivePolicy\nmetadata: {name: p}\n\
                     spec:\n  stepFunctions: {region: us-east-1, selector: {nameRegex: a}}\n";
        let cases = [
            (
                format!("apiVersion: {long}\nkind: RedrivePolicy\n"),
                "apiVersion: ",
            ),
            (
                format!("apiVersion: redrive.dev/v1alpha1\nkind: {long}\n"),
                "kind: ",
            ),
            (
                format!("{valid}  window: {{minAge: \"1{long}\"}}\n"),
                "spec.window.minAge: ",
            ),
            (
                format!("{valid}  \"{}\": 1\n", "k".repeat(1000)),
                "spec.kkkk",
            ),
            (format!("{valid}\"{}\": 1\n", "t".repeat(1000)), "tttt"),
            (
                format!("{valid}  maxRedrives: \"{long}\"\n"),
                "spec.maxRedrives: ",
            ),
            (format!("{long}: [\n"), "not valid YAML or JSON: "),
        ];
        for (text, head) in cases {
            let results = parse_documents(Path::new("p.yaml"), &text);
            let [Err(e)] = &results[..] else {
                panic!("{head}: expected one rejection, got {results:?}");
            };
            assert!(e.message.starts_with(head), "{head}: {:?}", e.message);
            if head.ends_with("kkkk") || head == "tttt" {
                assert!(
                    e.message.ends_with("…: field not declared in schema"),
                    "{:?}",
                    e.message
                );
            }
            assert!(
                e.message.chars().count() <= MAX_MESSAGE + 1,
                "{head}: message of {} characters",
                e.message.chars().count()
            );
        }
    }
}
