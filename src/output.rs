//! Human and machine renderings of polls: the `plan` table and JSON, summaries, call counts.

use std::collections::BTreeMap;

use comfy_table::{ContentArrangement, Table, presets::NOTHING};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::aws::{AttemptResult, CallCounter};
use crate::engine::{Decision, PlanEntry, Reason};
use crate::policy::TargetKind;
use crate::reconcile::PollReport;
use crate::targets::WorkflowIssue;

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "3h ago", "in 5m": coarse relative time for tables.
pub fn relative(t: Timestamp, now: Timestamp) -> String {
    let secs = now.duration_since(t).as_secs();
    let (abs, future) = (secs.unsigned_abs(), secs < 0);
    let text = match abs {
        0..=89 => format!("{abs}s"),
        90..=5399 => format!("{}m", abs / 60),
        5400..=172_799 => format!("{}h", abs / 3600),
        _ => format!("{}d", abs / 86_400),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// Last `:`-separated part of an ARN (execution or state machine name).
pub fn short_name(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

/// "redrive", "would redrive", "skip", "wait".
pub fn decision_word(d: &Decision) -> &'static str {
    match d {
        Decision::Redrive { .. } => "redrive",
        Decision::Skip {
            reason: Reason::DryRun,
        } => "would redrive",
        Decision::Skip { .. } => "skip",
        Decision::Wait { .. } => "wait",
    }
}

fn reason_text(d: &Decision, now: Timestamp) -> String {
    match d {
        Decision::Redrive { .. } => String::new(),
        Decision::Skip { reason } => reason.to_string(),
        Decision::Wait { until, reason } => format!(
            "{reason} until {} ({})",
            until.strftime("%Y-%m-%d %H:%M:%SZ"),
            relative(*until, now)
        ),
    }
}

/// The `plan` table.
pub fn plan_table(report: &PollReport, now: Timestamp) -> String {
    let mut table = Table::new();
    table
        .load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(vec![
            "EXECUTION",
            "STATE MACHINE",
            "STATUS",
            "STOPPED",
            "REDRIVES",
            "DECISION",
            "REASON",
        ]);
    for e in &report.plan.entries {
        let c = &e.candidate;
        table.add_row(vec![
            short_name(&c.id).to_string(),
            short_name(&c.workflow).to_string(),
            c.status.as_str().to_string(),
            c.stopped
                .map(|s| relative(s, now))
                .unwrap_or_else(|| "-".into()),
            c.attempts.to_string(),
            decision_word(&e.decision).to_string(),
            reason_text(&e.decision, now),
        ]);
    }
    table.to_string()
}

/// One line: "412 executions in 4 state machines: 180 redrive, 20 OutsideWindow, ...".
pub fn plan_summary(report: &PollReport) -> String {
    let counts = report.plan.counts();
    let mut parts: Vec<(u64, &str)> = counts.iter().map(|(k, v)| (*v, *k)).collect();
    parts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let detail: Vec<String> = parts
        .iter()
        .map(|(n, code)| format!("{} {code}", thousands(*n)))
        .collect();
    format!(
        "{}: {} {} in {} {}s{}{}",
        report.policy,
        thousands(report.plan.entries.len() as u64),
        report.target.runs_noun(),
        report.workflows.len(),
        report.target.workflow_noun(),
        if detail.is_empty() { "" } else { ": " },
        detail.join(", ")
    )
}

/// Lines for workflows that were skipped or failed.
pub fn issue_lines(report: &PollReport) -> Vec<String> {
    let mut out = Vec::new();
    for (wf, issue) in &report.issues {
        match issue {
            WorkflowIssue::Skipped(r) => out.push(format!(
                "{}: {} {} skipped: {r}",
                report.policy,
                report.target.workflow_noun(),
                short_name(wf)
            )),
            WorkflowIssue::Failed(e) => out.push(format!(
                "error: policy {}: {} {wf}: {e}",
                report.policy,
                report.target.workflow_noun()
            )),
        }
    }
    for (exec, e) in &report.describe_errors {
        out.push(format!(
            "error: policy {}: execution {exec}: {e}",
            report.policy
        ));
    }
    if let Some(e) = &report.budget_error {
        out.push(format!(
            "error: policy {}: counting running redriven executions: {e}",
            report.policy
        ));
    }
    out
}

fn entry_json(target: TargetKind, e: &PlanEntry) -> Value {
    let c = &e.candidate;
    let (reason, detail, until) = match &e.decision {
        Decision::Redrive { .. } => (Value::Null, Value::Null, Value::Null),
        Decision::Skip { reason } => (json!(reason.code()), detail_of(reason), Value::Null),
        Decision::Wait { until, reason } => (
            json!(reason.code()),
            detail_of(reason),
            json!(until.to_string()),
        ),
    };
    let mut v = json!({
        "run": c.id,
        "workflow": c.workflow,
        "status": c.status.as_str(),
        "startDate": c.started.to_string(),
        "stopDate": c.stopped.map(|t| t.to_string()),
        "attempts": c.attempts,
        "decision": match &e.decision { Decision::Redrive { .. } => "Redrive", Decision::Skip { .. } => "Skip", Decision::Wait { .. } => "Wait" },
        "reason": reason,
        "reasonDetail": detail,
        "until": until,
        "error": c.details.as_ref().and_then(|d| d.error.clone()),
    });
    // Service-specific ids, as extra fields (docs/plan-json.md).
    let extra = match target {
        TargetKind::StepFunctions => json!({
            "executionArn": c.id,
            "stateMachineArn": c.workflow,
            "redriveCount": c.attempts,
            "clientToken": e.client_token,
        }),
        TargetKind::CodePipeline => {
            let mut parts = c.id.splitn(3, '/');
            json!({
                "pipelineName": parts.next(),
                "stageName": parts.next(),
                "pipelineExecutionId": parts.next(),
                "manualStageRetryAttempt": c.attempts,
            })
        }
        TargetKind::FlowService => json!({
            "runId": c.id,
            "flowId": c.workflow,
            "rootRunId": c.root.as_deref().unwrap_or(&c.id),
            "reTriggers": c.attempts,
        }),
    };
    if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    v
}

fn detail_of(r: &Reason) -> Value {
    match r {
        Reason::NotRedrivable(why) => json!(why),
        _ => Value::Null,
    }
}

/// `plan -o json` for one policy.
pub fn plan_json(report: &PollReport) -> Value {
    let counts: BTreeMap<&str, u64> = report.plan.counts();
    json!({
        "policy": report.policy.to_string(),
        "target": report.target.as_str(),
        "workflows": report.workflows,
        "runs": report.plan.entries.iter().map(|e| entry_json(report.target, e)).collect::<Vec<_>>(),
        "summary": counts,
        "issues": report.issues.iter().map(|(wf, i)| match i {
            WorkflowIssue::Skipped(r) => json!({"workflow": wf, "reason": r.code()}),
            WorkflowIssue::Failed(e) => json!({"workflow": wf, "error": e.to_string(), "category": e.category.as_str()}),
        }).collect::<Vec<_>>(),
    })
}

/// "2,000 redriven with 2,021 AWS calls: 21 ListExecutions, 0 DescribeExecution, 2,000 RedriveExecution".
pub fn calls_line(redriven: u64, calls: &CallCounter) -> String {
    let by_api = calls.by_api();
    let get = |api: &str| by_api.get(api).copied().unwrap_or(0);
    let mut parts = vec![
        format!("{} ListExecutions", thousands(get("ListExecutions"))),
        format!("{} DescribeExecution", thousands(get("DescribeExecution"))),
        format!("{} RedriveExecution", thousands(get("RedriveExecution"))),
    ];
    for (api, n) in &by_api {
        if !matches!(
            api.as_str(),
            "ListExecutions" | "DescribeExecution" | "RedriveExecution"
        ) {
            parts.push(format!("{} {api}", thousands(*n)));
        }
    }
    let throttled: u64 = calls
        .snapshot()
        .iter()
        .filter(|((_, r), _)| *r == AttemptResult::Throttled)
        .map(|(_, n)| n)
        .sum();
    let per = if redriven > 0 {
        format!(
            " ({:.3} calls per redrive)",
            calls.total() as f64 / redriven as f64
        )
    } else {
        String::new()
    };
    let throttle = if throttled > 0 {
        format!("; {} throttled and retried", thousands(throttled))
    } else {
        String::new()
    };
    format!(
        "{} redriven with {} AWS calls: {}{per}{throttle}",
        thousands(redriven),
        thousands(calls.total()),
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(2000), "2,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn relative_times() {
        let now: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        assert_eq!(
            relative("2026-01-01T21:00:00Z".parse().unwrap(), now),
            "3h ago"
        );
        assert_eq!(
            relative("2026-01-02T00:05:00Z".parse().unwrap(), now),
            "in 5m"
        );
        assert_eq!(
            relative("2025-12-20T00:00:00Z".parse().unwrap(), now),
            "13d ago"
        );
    }
}
