//! Synthetic execution history: events are computed from attempt summaries, never stored.

use serde_json::{Map, Value, json};

use super::model::{Attempt, Model, Ms};
use super::scenario::Outcome;

const FILLERS: [&str; 5] = [
    "TaskStateEntered",
    "TaskScheduled",
    "TaskStarted",
    "TaskSucceeded",
    "TaskStateExited",
];

pub(crate) fn epoch(ms: Ms) -> Value {
    serde_json::Number::from_f64(ms as f64 / 1000.0)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// The event with id `id` (1-based) of execution `exec`, or None if out of range.
pub(crate) fn event(model: &Model, exec: u32, id: u32, include_data: bool) -> Option<Value> {
    let e = &model.execs[exec as usize];
    if id == 0 || id > e.history_len {
        return None;
    }
    let idx = e.attempts.partition_point(|a| a.first_id <= id);
    let a = e.attempts.get(idx.checked_sub(1)?)?;
    let k = id - a.first_id;
    let n = a.events;
    let time = event_time(a, k);
    let mut ev = Map::new();
    ev.insert("timestamp".into(), epoch(time));
    ev.insert("id".into(), json!(id));
    ev.insert("previousEventId".into(), json!(id - 1));
    let sm = &model.sms[e.sm as usize];
    let resource = json!({"resourceType": "lambda", "resource": "invoke"});
    let (ty, key, details): (&str, &str, Value) = if k == 0 && a.redrive_count == 0 {
        let mut d = json!({"roleArn": sm.role_arn, "inputDetails": {"truncated": false}});
        if include_data {
            d["input"] = json!(&*e.input);
        }
        ("ExecutionStarted", "executionStartedEventDetails", d)
    } else if k == 0 {
        (
            "ExecutionRedriven",
            "executionRedrivenEventDetails",
            json!({"redriveCount": a.redrive_count}),
        )
    } else if k == 1 && a.map_run.is_some() {
        let mr = &model.map_runs[a.map_run.unwrap_or_default() as usize];
        (
            "MapRunRedriven",
            "mapRunRedrivenEventDetails",
            json!({"mapRunArn": mr.arn, "redriveCount": mr.redrive_count.max(1)}),
        )
    } else if a.stop.is_some() && k + 1 == n {
        terminal(a.end.as_deref(), include_data)
    } else if a.stop.is_some()
        && k + 2 == n
        && a.end.as_deref().is_some_and(|o| o.status() != "SUCCEEDED")
    {
        let o = a.end.as_deref();
        let mut d = resource.clone();
        if let Some(err) = o.and_then(Outcome::error) {
            d["error"] = json!(err);
        }
        if let Some(c) = o.and_then(Outcome::cause) {
            d["cause"] = json!(c);
        }
        ("TaskFailed", "taskFailedEventDetails", d)
    } else {
        let f = FILLERS[((k - 1) % 5) as usize];
        match f {
            "TaskStateEntered" => (
                f,
                "stateEnteredEventDetails",
                json!({"name": "Work", "input": "{}", "inputDetails": {"truncated": false}}),
            ),
            "TaskScheduled" => (
                f,
                "taskScheduledEventDetails",
                json!({"resourceType": "lambda", "resource": "invoke", "region": model.region, "parameters": "{}"}),
            ),
            "TaskStarted" => (f, "taskStartedEventDetails", resource.clone()),
            "TaskSucceeded" => {
                let mut d = resource.clone();
                d["output"] = json!("{}");
                (f, "taskSucceededEventDetails", d)
            }
            _ => (
                f,
                "stateExitedEventDetails",
                json!({"name": "Work", "output": "{}", "outputDetails": {"truncated": false}}),
            ),
        }
    };
    ev.insert("type".into(), json!(ty));
    ev.insert(key.into(), details);
    Some(Value::Object(ev))
}

fn event_time(a: &Attempt, k: u32) -> Ms {
    match a.stop {
        Some(stop) if a.events > 1 => {
            let span = stop.saturating_sub(a.start).max(0);
            a.start + (i128::from(span) * i128::from(k) / i128::from(a.events - 1)) as i64
        }
        Some(stop) => stop,
        None => a.start.saturating_add(i64::from(k) * 10),
    }
}

fn terminal(o: Option<&Outcome>, include_data: bool) -> (&'static str, &'static str, Value) {
    let mut d = json!({});
    if let Some(err) = o.and_then(Outcome::error) {
        d["error"] = json!(err);
    }
    if let Some(c) = o.and_then(Outcome::cause) {
        d["cause"] = json!(c);
    }
    match o {
        Some(Outcome::Succeed { output }) => {
            let mut d = json!({"outputDetails": {"truncated": false}});
            if include_data {
                d["output"] = json!(output.as_deref().unwrap_or("{}"));
            }
            ("ExecutionSucceeded", "executionSucceededEventDetails", d)
        }
        Some(Outcome::TimedOut { .. }) => ("ExecutionTimedOut", "executionTimedOutEventDetails", d),
        Some(Outcome::Aborted { .. }) => ("ExecutionAborted", "executionAbortedEventDetails", d),
        _ => ("ExecutionFailed", "executionFailedEventDetails", d),
    }
}
