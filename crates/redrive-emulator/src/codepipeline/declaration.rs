//! Pipeline declarations: the JSON `PipelineDeclaration` of CreatePipeline / UpdatePipeline /
//! GetPipeline, parsed into the few facts the engine needs.
//!
//! Scenario pipelines are turned into the same JSON and go through the same parser, so a
//! scenario can never hold a pipeline the API would refuse.

use serde_json::{Map, Value, json};

use super::scenario::{
    ActionCategory, ExecutionMode, FailureResult, PipelineSpec, PipelineType, StageRetryMode,
};
use crate::api::{ApiError, Validator};

/// Name pattern shared by pipelines, stages and actions (api-facts §2.2).
pub(crate) const NAME_PATTERN: &str = "[A-Za-z0-9.@\\-_]+";
const ROLE_PATTERN: &str = "arn:aws(-[\\w]+)*:iam::[0-9]{12}:role/.*";
const OWNERS: &[&str] = &["AWS", "ThirdParty", "Custom"];
/// AWS quotas: at most 50 stages per pipeline and 50 actions per stage.
pub(crate) const MAX_STAGES: usize = 50;
pub(crate) const MAX_ACTIONS_PER_STAGE: usize = 50;

/// True if `s` matches `[A-Za-z0-9.@\-_]+`.
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

fn valid_role_arn(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("arn:aws") else {
        return false;
    };
    let Some((partition_suffix, rest)) = rest.split_once(":iam::") else {
        return false;
    };
    let suffix_ok =
        partition_suffix.is_empty()
            || partition_suffix.split('-').skip(1).all(|w| {
                !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            }) && partition_suffix.starts_with('-');
    let Some((account, role)) = rest.split_once(':') else {
        return false;
    };
    suffix_ok
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && role.starts_with("role/")
}

/// One action as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ActionDecl {
    pub name: String,
    pub run_order: u32,
}

/// One stage as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StageDecl {
    pub name: String,
    pub actions: Vec<ActionDecl>,
    pub on_failure: FailureResult,
    pub retry_mode: StageRetryMode,
}

/// A validated declaration (one pipeline version).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Declaration {
    pub name: String,
    pub pipeline_type: PipelineType,
    pub execution_mode: ExecutionMode,
    pub stages: Vec<StageDecl>,
    /// The declaration as sent (what GetPipeline returns, with `version` set on output).
    pub json: Value,
}

impl Declaration {
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// The JSON with `version` (and defaulted `pipelineType` / `executionMode`) filled in.
    pub fn to_json(&self, version: u32) -> Value {
        let mut v = self.json.clone();
        v["version"] = json!(version);
        v["pipelineType"] = json!(self.pipeline_type.as_str());
        v["executionMode"] = json!(self.execution_mode.as_str());
        v
    }
}

fn structure(code: &str, msg: impl Into<String>) -> ApiError {
    ApiError::bare(code, msg)
}

fn field<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    v.get(k).filter(|x| !x.is_null())
}

fn str_field<'a>(v: &'a Value, k: &str, at: &str) -> Result<Option<&'a str>, ApiError> {
    match field(v, k) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::serialization(format!(
            "Unexpected value for field '{at}.{k}': expected a string"
        ))
        .into_bare()),
    }
}

fn list_field<'a>(v: &'a Value, k: &str, at: &str) -> Result<Option<&'a Vec<Value>>, ApiError> {
    match field(v, k) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(ApiError::serialization(format!(
            "Unexpected value for field '{at}.{k}': expected a list"
        ))
        .into_bare()),
    }
}

/// Parse and validate a `PipelineDeclaration`. `default_type` is V1 for the API (as AWS) and
/// V2 for scenarios.
pub(crate) fn parse(v: &Value, default_type: PipelineType) -> Result<Declaration, ApiError> {
    if !v.is_object() {
        return Err(ApiError::serialization(
            "Unexpected value for field 'pipeline': expected a structure",
        )
        .into_bare());
    }
    let mut val = Validator::default();
    let name = str_field(v, "name", "pipeline")?;
    let role = str_field(v, "roleArn", "pipeline")?;
    let ptype = str_field(v, "pipelineType", "pipeline")?;
    let mode = str_field(v, "executionMode", "pipeline")?;
    let name_s = val.required("pipeline.name", name);
    val.len("pipeline.name", name, 1, 100);
    val.pattern("pipeline.name", name, valid_name, NAME_PATTERN);
    val.required("pipeline.roleArn", role);
    val.len("pipeline.roleArn", role, 1, 1024);
    val.pattern("pipeline.roleArn", role, valid_role_arn, ROLE_PATTERN);
    val.one_of("pipeline.pipelineType", ptype, PipelineType::ALL);
    val.one_of("pipeline.executionMode", mode, ExecutionMode::ALL);
    let stages_v = list_field(v, "stages", "pipeline")?;
    if stages_v.is_none() {
        val.required("pipeline.stages", None);
    }
    val.finish().map_err(ApiError::into_bare)?;
    let pipeline_type = ptype.and_then(PipelineType::parse).unwrap_or(default_type);
    let execution_mode = mode
        .and_then(ExecutionMode::parse)
        .unwrap_or(ExecutionMode::Superseded);
    let stages_v = stages_v.map(Vec::as_slice).unwrap_or_default();
    if stages_v.len() < 2 {
        return Err(structure(
            "InvalidStructureException",
            "Pipeline has fewer than two stages: a pipeline must contain at least two stages",
        ));
    }
    if stages_v.len() > MAX_STAGES {
        return Err(structure(
            "LimitExceededException",
            format!("A pipeline can have at most {MAX_STAGES} stages"),
        ));
    }
    let mut stages: Vec<StageDecl> = Vec::with_capacity(stages_v.len());
    for (i, sv) in stages_v.iter().enumerate() {
        let at = format!("pipeline.stages.{}", i + 1);
        let stage = parse_stage(sv, &at, pipeline_type)?;
        if stages.iter().any(|s| s.name == stage.name) {
            return Err(structure(
                "InvalidStructureException",
                format!(
                    "Pipeline has duplicate stage names: stage name '{}' is used more than once",
                    stage.name
                ),
            ));
        }
        stages.push(stage);
    }
    let mut json = v.clone();
    if let Some(m) = json.as_object_mut() {
        m.remove("version");
    }
    Ok(Declaration {
        name: name_s.to_string(),
        pipeline_type,
        execution_mode,
        stages,
        json,
    })
}

fn parse_stage(sv: &Value, at: &str, ptype: PipelineType) -> Result<StageDecl, ApiError> {
    let mut val = Validator::default();
    let name = str_field(sv, "name", at)?;
    let name_s = val.required(&format!("{at}.member.name"), name);
    val.len(&format!("{at}.member.name"), name, 1, 100);
    val.pattern(&format!("{at}.member.name"), name, valid_name, NAME_PATTERN);
    let actions_v = list_field(sv, "actions", at)?;
    if actions_v.is_none() {
        val.required(&format!("{at}.member.actions"), None);
    }
    let on_failure = field(sv, "onFailure");
    let result = on_failure
        .map(|f| str_field(f, "result", &format!("{at}.onFailure")))
        .transpose()?
        .flatten();
    let retry_mode = on_failure
        .and_then(|f| field(f, "retryConfiguration"))
        .map(|r| {
            str_field(
                r,
                "retryMode",
                &format!("{at}.onFailure.retryConfiguration"),
            )
        })
        .transpose()?
        .flatten();
    val.one_of(
        &format!("{at}.member.onFailure.result"),
        result,
        FailureResult::ALL,
    );
    val.one_of(
        &format!("{at}.member.onFailure.retryConfiguration.retryMode"),
        retry_mode,
        StageRetryMode::ALL,
    );
    val.finish().map_err(ApiError::into_bare)?;
    let on_failure = result
        .and_then(FailureResult::parse)
        .unwrap_or(FailureResult::Fail);
    if on_failure == FailureResult::Retry && ptype == PipelineType::V1 {
        return Err(structure(
            "InvalidStructureException",
            format!(
                "Stage '{name_s}': onFailure result RETRY is only supported for pipelines of type V2"
            ),
        ));
    }
    let actions_v = actions_v.map(Vec::as_slice).unwrap_or_default();
    if actions_v.is_empty() {
        return Err(structure(
            "InvalidStageDeclarationException",
            format!("Stage '{name_s}' must contain at least one action"),
        ));
    }
    if actions_v.len() > MAX_ACTIONS_PER_STAGE {
        return Err(structure(
            "LimitExceededException",
            format!("Stage '{name_s}' can have at most {MAX_ACTIONS_PER_STAGE} actions"),
        ));
    }
    let mut actions: Vec<ActionDecl> = Vec::with_capacity(actions_v.len());
    for (j, av) in actions_v.iter().enumerate() {
        let a = parse_action(av, &format!("{at}.member.actions.{}", j + 1))?;
        if actions.iter().any(|x| x.name == a.name) {
            return Err(structure(
                "InvalidStageDeclarationException",
                format!(
                    "Stage '{name_s}' has duplicate action names: '{}' is used more than once",
                    a.name
                ),
            ));
        }
        actions.push(a);
    }
    Ok(StageDecl {
        name: name_s.to_string(),
        actions,
        on_failure,
        retry_mode: retry_mode
            .and_then(StageRetryMode::parse)
            .unwrap_or(StageRetryMode::FailedActions),
    })
}

fn parse_action(av: &Value, at: &str) -> Result<ActionDecl, ApiError> {
    let mut val = Validator::default();
    let name = str_field(av, "name", at)?;
    let name_s = val.required(&format!("{at}.member.name"), name);
    val.len(&format!("{at}.member.name"), name, 1, 100);
    val.pattern(&format!("{at}.member.name"), name, valid_name, NAME_PATTERN);
    let run_order = match field(av, "runOrder") {
        None => None,
        Some(Value::Number(n)) => Some(n.as_i64().unwrap_or(i64::MAX)),
        Some(_) => {
            return Err(ApiError::serialization(format!(
                "Unexpected value for field '{at}.runOrder': expected an integer"
            ))
            .into_bare());
        }
    };
    val.range(&format!("{at}.member.runOrder"), run_order, 1, 999);
    match field(av, "actionTypeId") {
        None => {
            val.required(&format!("{at}.member.actionTypeId"), None);
        }
        Some(t) => {
            let at_t = format!("{at}.member.actionTypeId");
            let category = str_field(t, "category", &at_t)?;
            let owner = str_field(t, "owner", &at_t)?;
            let provider = str_field(t, "provider", &at_t)?;
            let version = str_field(t, "version", &at_t)?;
            val.required(&format!("{at_t}.category"), category);
            val.required(&format!("{at_t}.owner"), owner);
            val.required(&format!("{at_t}.provider"), provider);
            val.required(&format!("{at_t}.version"), version);
            val.one_of(&format!("{at_t}.category"), category, ActionCategory::ALL);
            val.one_of(&format!("{at_t}.owner"), owner, OWNERS);
            val.len(&format!("{at_t}.provider"), provider, 1, 35);
            val.len(&format!("{at_t}.version"), version, 1, 9);
        }
    }
    val.finish().map_err(ApiError::into_bare)?;
    Ok(ActionDecl {
        name: name_s.to_string(),
        run_order: run_order.unwrap_or(1) as u32,
    })
}

/// The `PipelineDeclaration` JSON of a scenario pipeline.
pub(crate) fn spec_json(spec: &PipelineSpec, account: &str, partition: &str) -> Value {
    let role = spec.role_arn.clone().unwrap_or_else(|| {
        format!(
            "arn:{partition}:iam::{account}:role/service-role/AWSCodePipelineServiceRole-{}",
            spec.name
        )
    });
    let stages: Vec<Value> = spec
        .stages
        .iter()
        .map(|s| {
            let actions: Vec<Value> = s
                .actions
                .iter()
                .map(|a| {
                    json!({
                        "name": a.name,
                        "actionTypeId": {
                            "category": a.category.as_str(),
                            "owner": a.owner,
                            "provider": a.provider_name(),
                            "version": "1",
                        },
                        "runOrder": a.run_order,
                    })
                })
                .collect();
            let mut st = Map::new();
            st.insert("name".into(), json!(s.name));
            st.insert("actions".into(), Value::Array(actions));
            if let Some(f) = &s.on_failure {
                st.insert(
                    "onFailure".into(),
                    serde_json::to_value(f).unwrap_or(Value::Null),
                );
            }
            Value::Object(st)
        })
        .collect();
    json!({
        "name": spec.name,
        "roleArn": role,
        "artifactStore": {
            "type": "S3",
            "location": format!("codepipeline-artifacts-{account}"),
        },
        "stages": stages,
        "pipelineType": spec.pipeline_type.as_str(),
        "executionMode": spec.execution_mode.as_str(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(stages: Value) -> Value {
        json!({"name": "p", "roleArn": "arn:aws:iam::123456789012:role/cp", "stages": stages})
    }

    fn action(name: &str) -> Value {
        json!({"name": name, "actionTypeId": {"category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1"}})
    }

    #[test]
    fn names_and_roles() {
        assert!(valid_name("a.b@c-d_e9"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(""));
        assert!(valid_role_arn("arn:aws:iam::123456789012:role/x"));
        assert!(valid_role_arn("arn:aws-cn:iam::123456789012:role/x"));
        assert!(!valid_role_arn("arn:aws:iam::12345678901:role/x"));
        assert!(!valid_role_arn("arn:aws:iam::123456789012:user/x"));
    }

    #[test]
    fn structure_rules() {
        let one = decl(json!([{"name": "A", "actions": [action("a")]}]));
        assert_eq!(
            parse(&one, PipelineType::V1).unwrap_err().code(),
            "InvalidStructureException"
        );
        let dup = decl(json!([
            {"name": "A", "actions": [action("a")]},
            {"name": "A", "actions": [action("b")]}
        ]));
        assert_eq!(
            parse(&dup, PipelineType::V1).unwrap_err().code(),
            "InvalidStructureException"
        );
        let retry_v1 = decl(json!([
            {"name": "A", "actions": [action("a")]},
            {"name": "B", "actions": [action("b")], "onFailure": {"result": "RETRY"}}
        ]));
        assert_eq!(
            parse(&retry_v1, PipelineType::V1).unwrap_err().code(),
            "InvalidStructureException"
        );
        let d = parse(&retry_v1, PipelineType::V2).unwrap();
        assert_eq!(d.stages[1].on_failure, FailureResult::Retry);
        assert_eq!(d.stages[1].retry_mode, StageRetryMode::FailedActions);
        let bad_mode = decl(json!([
            {"name": "A", "actions": [action("a")]},
            {"name": "B", "actions": [action("b")], "onFailure": {"result": "RETRY", "retryConfiguration": {"retryMode": "SOME"}}}
        ]));
        let e = parse(&bad_mode, PipelineType::V2).unwrap_err();
        assert_eq!(e.code(), "ValidationException");
        assert!(e.message.contains("retryMode"), "{}", e.message);
    }
}
