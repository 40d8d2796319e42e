//! Pure status computation: conditions, counts and the bounded recent list.
//!
//! Deterministic on purpose: the same poll on the same old status gives the same status, and a
//! condition's `lastTransitionTime` moves only when its status flips, so the operator's own
//! status writes do not look like changes (design.md invariant 5).

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::crd::{Condition, EventsStatus, RecentRedrive, RedrivePolicyStatus, StatusCounts};
use crate::engine::{Decision, Reason};
use crate::policy::TargetKind;
use crate::reconcile::{PollReport, RECENT_LIMIT};
use crate::targets::{RedriveOutcome, WorkflowIssue};

pub const READY: &str = "Ready";
pub const SUSPENDED: &str = "Suspended";
pub const DEGRADED: &str = "Degraded";
/// Spec combinations that are valid but defeat the policy (see `Policy::warnings`).
pub const WARNING: &str = "Warning";

/// Set (or add) a condition; keep `lastTransitionTime` unless the status flips.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let message: String = message.chars().take(1024).collect();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now.to_string();
            }
            c.status = status;
            c.reason = reason.to_string();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            last_transition_time: now.to_string(),
            observed_generation: generation,
        }),
    }
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

/// Status of a policy whose spec is invalid (or whose object cannot even be read).
pub fn invalid_status(
    old: Option<&RedrivePolicyStatus>,
    generation: Option<i64>,
    message: &str,
    now: Timestamp,
) -> RedrivePolicyStatus {
    denied_status(old, generation, "InvalidSpec", message, now)
}

/// Status of a policy that may not run (e.g. its role is not allowed for its namespace).
pub fn denied_status(
    old: Option<&RedrivePolicyStatus>,
    generation: Option<i64>,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> RedrivePolicyStatus {
    let mut status = old.cloned().unwrap_or_default();
    status.observed_generation = generation;
    set_condition(
        &mut status.conditions,
        READY,
        false,
        reason,
        message,
        generation,
        now,
    );
    set_condition(
        &mut status.conditions,
        DEGRADED,
        true,
        reason,
        message,
        generation,
        now,
    );
    status
}

/// Status of a policy whose whole poll failed (e.g. ListStateMachines denied).
pub fn failed_status(
    old: Option<&RedrivePolicyStatus>,
    generation: Option<i64>,
    suspended: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> RedrivePolicyStatus {
    let mut status = denied_status(old, generation, reason, message, now);
    set_condition(
        &mut status.conditions,
        SUSPENDED,
        suspended,
        if suspended { "Suspended" } else { "Active" },
        "",
        generation,
        now,
    );
    status
}

/// CamelCase condition reason for an error category (`access_denied` → `AccessDenied`).
pub fn reason_of_category(category: &str) -> String {
    category
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Status after a completed poll.
/// Add a report's redrives to `status` (the total and `recent`, newest first); how many.
fn add_actions(status: &mut RedrivePolicyStatus, report: &PollReport) -> u64 {
    let sfn = report.target == TargetKind::StepFunctions;
    let redriven_now = report
        .actions
        .iter()
        .filter(|a| matches!(a.result, Ok(RedriveOutcome::Redriven { .. })))
        .count() as u64;
    status.counts.redriven = status.counts.redriven.saturating_add(redriven_now);
    let mut recent: Vec<RecentRedrive> = report
        .actions
        .iter()
        .map(|a| RecentRedrive {
            run: a.run.clone(),
            attempts: a.attempts,
            execution_arn: sfn.then(|| a.run.clone()),
            redrive_count: sfn.then_some(a.attempts),
            at: a.at.to_string(),
            outcome: a.outcome_code().to_string(),
        })
        .collect();
    // Newest first, deterministic among equal times.
    recent.sort_by(|a, b| b.at.cmp(&a.at).then(a.run.cmp(&b.run)));
    recent.append(&mut status.recent);
    recent.truncate(RECENT_LIMIT);
    status.recent = recent;
    redriven_now
}

/// Status after an event hint's decision acted: its redrives are added; conditions, decision
/// counts and the poll schedule stay those of the last full poll.
pub fn hinted_status(
    old: Option<&RedrivePolicyStatus>,
    report: &PollReport,
) -> RedrivePolicyStatus {
    let mut status = old.cloned().unwrap_or_default();
    let n = add_actions(&mut status, report);
    let events = status.events.get_or_insert_with(EventsStatus::default);
    events.redriven_from_hints = events.redriven_from_hints.saturating_add(n);
    events.last_hint_action = Some(report.finished.to_string());
    status
}

pub fn polled_status(
    old: Option<&RedrivePolicyStatus>,
    generation: Option<i64>,
    suspended: bool,
    report: &PollReport,
    warnings: &[String],
    sweep: Option<std::time::Duration>,
) -> RedrivePolicyStatus {
    let now = report.finished;
    let mut status = old.cloned().unwrap_or_default();
    status.observed_generation = generation;
    status.last_poll = Some(report.finished.to_string());
    status.next_poll = Some(report.next_poll.to_string());
    let workflows = u32::try_from(report.workflows.len()).unwrap_or(u32::MAX);
    status.target = Some(report.target.as_str().to_string());
    status.workflows = workflows;
    status.state_machines = (report.target == TargetKind::StepFunctions).then_some(workflows);

    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    let (mut waiting, mut exhausted) = (0, 0);
    for e in &report.plan.entries {
        *by_reason.entry(e.decision.code().to_string()).or_insert(0) += 1;
        match &e.decision {
            Decision::Wait { .. } => waiting += 1,
            Decision::Skip {
                reason: Reason::MaxRedrivesReached,
            } => exhausted += 1,
            _ => {}
        }
    }
    for (_, issue) in &report.issues {
        if let WorkflowIssue::Skipped(r) = issue {
            *by_reason.entry(r.code().to_string()).or_insert(0) += 1;
        }
    }
    let redriven_now = add_actions(&mut status, report);
    status.counts = StatusCounts {
        redriven: status.counts.redriven,
        waiting,
        exhausted,
        by_reason,
    };
    status.events = sweep.map(|sweep| EventsStatus {
        sweep_interval: humantime::format_duration(sweep).to_string(),
        ..status.events.take().unwrap_or_default()
    });

    let errors = report.errors();
    set_condition(
        &mut status.conditions,
        SUSPENDED,
        suspended,
        if suspended { "Suspended" } else { "Active" },
        if suspended {
            "spec.suspend is true: no AWS calls are made"
        } else {
            ""
        },
        generation,
        now,
    );
    match errors.first() {
        None => {
            let msg = format!(
                "{} state machines polled; {} redriven this poll",
                report.workflows.len(),
                redriven_now
            );
            set_condition(
                &mut status.conditions,
                READY,
                true,
                "Polled",
                &msg,
                generation,
                now,
            );
            set_condition(
                &mut status.conditions,
                DEGRADED,
                false,
                "NoErrors",
                "",
                generation,
                now,
            );
        }
        Some(first) => {
            let reason = reason_of_category(first.category.as_str());
            let msg = format!(
                "{} error(s) in the last poll; first: {}; {}",
                errors.len(),
                first_error_in_context(report),
                first.category.hint()
            );
            // Ready stays true when the poll ran and only some calls failed: the policy works.
            // When it reached none of its workflows (every one failed), it does nothing: not
            // ready, with the error's reason.
            let (ready, ready_reason) = if report.reached_none() {
                (false, reason.as_str())
            } else {
                (true, "PolledWithErrors")
            };
            set_condition(
                &mut status.conditions,
                READY,
                ready,
                ready_reason,
                &msg,
                generation,
                now,
            );
            set_condition(
                &mut status.conditions,
                DEGRADED,
                true,
                &reason,
                &msg,
                generation,
                now,
            );
        }
    }
    // Spec combinations the API server accepts but that defeat the policy's purpose (e.g. a
    // poll interval as long as the window): a condition of their own, never Ready=False.
    set_condition(
        &mut status.conditions,
        WARNING,
        !warnings.is_empty(),
        if warnings.is_empty() {
            "NoWarnings"
        } else {
            "SpecWarning"
        },
        &warnings.join("; "),
        generation,
        now,
    );
    status
}

/// The poll's first error, naming what the operator was doing: the workflow a listing failed
/// for, or the run an action failed on.
pub fn first_error_in_context(report: &PollReport) -> String {
    let noun = report.target.workflow_noun();
    if let Some((wf, e)) = report.issues.iter().find_map(|(wf, i)| match i {
        WorkflowIssue::Failed(e) => Some((wf, e)),
        WorkflowIssue::Skipped(_) => None,
    }) {
        return format!("{noun} {}: {e}", crate::output::short_name(wf));
    }
    if let Some((run, e)) = report.describe_errors.first() {
        return format!("run {}: {e}", crate::output::short_name(run));
    }
    if let Some(e) = &report.budget_error {
        return format!("counting running redriven runs: {e}");
    }
    match report
        .actions
        .iter()
        .find_map(|a| a.result.as_ref().err().map(|e| (&a.run, e)))
    {
        Some((run, e)) => format!("redriving {}: {e}", crate::output::short_name(run)),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_flips() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let mut c = Vec::new();
        set_condition(&mut c, READY, true, "Polled", "a", Some(1), t0);
        set_condition(&mut c, READY, true, "Polled", "b", Some(1), t1);
        assert_eq!(c[0].last_transition_time, t0.to_string());
        assert_eq!(c[0].message, "b");
        set_condition(&mut c, READY, false, "InvalidSpec", "x", Some(2), t1);
        assert_eq!(c[0].last_transition_time, t1.to_string());
        assert_eq!(c[0].observed_generation, Some(2));
    }

    #[test]
    fn category_reasons_are_camel_case() {
        assert_eq!(reason_of_category("access_denied"), "AccessDenied");
        assert_eq!(reason_of_category("throttled"), "Throttled");
    }
}
