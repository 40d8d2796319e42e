//! The decision engine: pure, no I/O.
//!
//! `plan(candidates, policy, context)` turns what a target listed into one decision per
//! candidate: [`Decision::Redrive`] with its deterministic client token, [`Decision::Skip`] with a
//! reason, or [`Decision::Wait`] until a time. Service limits (Step Functions' 14-day redrive
//! period, ...) come in as [`TargetLimits`] so the engine knows no service by name.

pub mod backoff;
pub mod budget;
pub mod candidate;
pub mod reason;
pub mod token;

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

pub use backoff::backoff_delay;
pub use budget::RateBucket;
pub use candidate::{Candidate, Details, Idempotency, Redrivability, RunStatus};
pub use reason::Reason;
pub use token::client_token;

use crate::crd::RedriveOrder;
use crate::policy::Policy;

/// Hard limits of the target service, applied before the policy's own rules.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetLimits {
    /// A run can be redriven at most this long after it stopped (reason text when exceeded).
    pub redrive_period: Option<(Duration, &'static str)>,
    /// A run can be open at most this long since it started (reason text when exceeded).
    pub max_open_time: Option<(Duration, &'static str)>,
    /// Runs started before this time can never be redriven (reason text).
    pub not_before: Option<(Timestamp, &'static str)>,
}

impl TargetLimits {
    pub const NONE: TargetLimits = TargetLimits {
        redrive_period: None,
        max_open_time: None,
        not_before: None,
    };
}

/// Budget state at planning time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BudgetState {
    /// Redrives the rate budget allows right now (`None`: no rate cap).
    pub rate_available: Option<u32>,
    /// When the rate budget has its next token (for `Wait` decisions).
    pub rate_next_at: Option<Timestamp>,
    /// Redriven runs currently running (`None`: unknown or no concurrency cap).
    pub running_redriven: Option<u32>,
}

impl BudgetState {
    /// What is left after `redrives` were decided (the next slice of a pipelined poll decides
    /// with it); `capped`: the policy caps running redriven runs.
    pub fn spend(&mut self, redrives: u32, capped: bool) {
        self.rate_available = self.rate_available.map(|r| r.saturating_sub(redrives));
        self.running_redriven = match self.running_redriven {
            Some(r) => Some(r.saturating_add(redrives)),
            // plan() counts an unknown number as 0.
            None if capped => Some(redrives),
            None => None,
        };
    }
}

/// What the engine decided for one candidate.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Redrive { client_token: String },
    Skip { reason: Reason },
    Wait { until: Timestamp, reason: Reason },
}

impl Decision {
    /// The reason code, or `Redrive`.
    pub fn code(&self) -> &'static str {
        match self {
            Decision::Redrive { .. } => "Redrive",
            Decision::Skip { reason } | Decision::Wait { reason, .. } => reason.code(),
        }
    }

    pub fn is_redrive(&self) -> bool {
        matches!(self, Decision::Redrive { .. })
    }
}

/// One candidate and its decision.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanEntry {
    pub candidate: Candidate,
    pub decision: Decision,
    /// The token a redrive of this candidate uses (also shown for dry runs).
    pub client_token: String,
}

/// The decisions for one poll, in the order redrives should be attempted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub entries: Vec<PlanEntry>,
}

impl Plan {
    pub fn redrives(&self) -> impl Iterator<Item = &PlanEntry> {
        self.entries.iter().filter(|e| e.decision.is_redrive())
    }

    /// Count of decisions by code.
    pub fn counts(&self) -> std::collections::BTreeMap<&'static str, u64> {
        let mut m = std::collections::BTreeMap::new();
        for e in &self.entries {
            *m.entry(e.decision.code()).or_insert(0) += 1;
        }
        m
    }
}

fn status_selected(policy: &Policy, status: RunStatus) -> bool {
    policy.statuses.contains(&status)
}

/// `d` as a signed duration, saturating (durations here come from validated policy fields).
pub fn signed_duration(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(signed_duration(d)).unwrap_or(Timestamp::MAX)
}

/// The rules that need no details, in order. `Ok(())` means "eligible so far".
fn list_level(
    c: &Candidate,
    policy: &Policy,
    now: Timestamp,
    limits: &TargetLimits,
) -> Result<(), Decision> {
    let skip = |reason| Err(Decision::Skip { reason });
    if policy.suspend {
        return skip(Reason::Suspended);
    }
    if !status_selected(policy, c.status) {
        return skip(Reason::StatusNotSelected);
    }
    if c.redriven_by_parent {
        return skip(Reason::RedrivableByMapRun);
    }
    if let Some((t, why)) = limits.not_before
        && c.started < t
    {
        return skip(Reason::NotRedrivable(why.to_string()));
    }
    if let Some((d, why)) = limits.max_open_time
        && plus(c.started, d) <= now
    {
        return skip(Reason::NotRedrivable(why.to_string()));
    }
    // A terminal run without a stop date is treated as stopped at its start: the conservative
    // choice for windows that are measured from the stop.
    let stopped = c.stopped.unwrap_or(c.started);
    if let Some((d, why)) = limits.redrive_period
        && plus(stopped, d) <= now
    {
        return skip(Reason::NotRedrivable(why.to_string()));
    }
    match c.details.as_ref().and_then(|d| d.redrivability.as_ref()) {
        Some(Redrivability::NotRedrivable(why)) => return skip(Reason::NotRedrivable(why.clone())),
        Some(Redrivability::ByMapRun) => return skip(Reason::RedrivableByMapRun),
        Some(Redrivability::Superseded(_)) => return skip(Reason::Superseded),
        _ => {}
    }
    if plus(stopped, policy.max_age) <= now {
        return skip(Reason::OutsideWindow);
    }
    if c.attempts >= policy.max_redrives {
        return skip(Reason::MaxRedrivesReached);
    }
    if let Some((reason, until)) = &c.hold
        && *until > now
    {
        return Err(Decision::Wait {
            until: *until,
            reason: reason.clone(),
        });
    }
    let young_until = plus(stopped, policy.min_age);
    if young_until > now {
        return Err(Decision::Wait {
            until: young_until,
            reason: Reason::TooYoung,
        });
    }
    if let Some(b) = &policy.backoff {
        let until = plus(stopped, backoff_delay(b, &c.id, c.attempts));
        if until > now {
            return Err(Decision::Wait {
                until,
                reason: Reason::BackingOff,
            });
        }
    }
    Ok(())
}

/// Whether the target should fetch details (one extra call) before [`plan`] can decide: only
/// for candidates that pass every cheaper rule and only when the policy filters on errors.
pub fn needs_details(
    c: &Candidate,
    policy: &Policy,
    now: Timestamp,
    limits: &TargetLimits,
) -> bool {
    policy.needs_error_details()
        && c.details.is_none()
        && list_level(c, policy, now, limits).is_ok()
}

fn error_filters(c: &Candidate, policy: &Policy, now: Timestamp) -> Result<(), Decision> {
    let Some(filter) = &policy.errors else {
        return Ok(());
    };
    let Some(details) = &c.details else {
        return Err(Decision::Wait {
            until: plus(now, policy.poll_interval),
            reason: Reason::DetailsUnavailable,
        });
    };
    let error = details.error.as_deref().unwrap_or("");
    if let Some(exclude) = &filter.exclude
        && exclude.is_match(error)
    {
        return Err(Decision::Skip {
            reason: Reason::ErrorExcluded,
        });
    }
    if let Some(include) = &filter.include
        && !include.is_match(error)
    {
        return Err(Decision::Skip {
            reason: Reason::ErrorNotIncluded,
        });
    }
    if let Some(re) = &filter.cause_regex
        && !re.is_match(details.cause.as_deref().unwrap_or(""))
    {
        return Err(Decision::Skip {
            reason: Reason::CauseNotMatched,
        });
    }
    Ok(())
}

/// The order redrives are attempted in when the budget cannot cover all: by failure time in the
/// policy's `order` (oldest first by default: closest to the redrive deadline), then id
/// (deterministic either way).
fn by_priority(order: RedriveOrder, a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    let at = |c: &Candidate| c.stopped.unwrap_or(c.started);
    let time = match order {
        RedriveOrder::OldestFirst => at(a).cmp(&at(b)),
        RedriveOrder::NewestFirst => at(b).cmp(&at(a)),
    };
    time.then_with(|| a.id.cmp(&b.id))
}

/// `candidates` in [`plan`]'s priority order for `order`, each (run, observed attempts) once
/// (the first listed): a poll that decides them in slices, in this order, decides as one call
/// would.
pub fn priority_order(mut candidates: Vec<Candidate>, order: RedriveOrder) -> Vec<Candidate> {
    let mut seen = std::collections::HashSet::new();
    candidates.retain(|c| seen.insert((c.id.clone(), c.attempts)));
    candidates.sort_by(|a, b| by_priority(order, a, b));
    candidates
}

/// Decide for every candidate. Eligible candidates are ordered by failure time in the policy's
/// `order` ([`priority_order`]), and budgets are applied in that order. A repeated (id,
/// redrive_count) is planned once, from its first listing.
pub fn plan(
    candidates: &[Candidate],
    policy: &Policy,
    now: Timestamp,
    limits: &TargetLimits,
    budget: &BudgetState,
) -> Plan {
    let mut eligible = Vec::new();
    let mut entries = Vec::with_capacity(candidates.len());
    let mut seen = std::collections::HashSet::new();
    for c in candidates {
        // Paging newest-first while new failures arrive can list a run twice: one decision, one
        // redrive and one share of the budget per (run, observed redrive count).
        if !seen.insert((c.id.as_str(), c.attempts)) {
            continue;
        }
        let token = client_token(&c.id, c.attempts);
        match list_level(c, policy, now, limits).and_then(|()| error_filters(c, policy, now)) {
            Ok(()) => eligible.push((c, token)),
            Err(decision) => entries.push(PlanEntry {
                candidate: c.clone(),
                decision,
                client_token: token,
            }),
        }
    }
    eligible.sort_by(|(a, _), (b, _)| by_priority(policy.order, a, b));

    let mut rate_left = budget.rate_available;
    let mut running = budget.running_redriven.unwrap_or(0);
    let mut redrives = Vec::with_capacity(eligible.len());
    for (c, token) in eligible {
        let decision = if policy.dry_run {
            Decision::Skip {
                reason: Reason::DryRun,
            }
        } else if policy
            .max_running_redriven
            .is_some_and(|cap| running >= cap)
        {
            Decision::Wait {
                until: plus(now, policy.poll_interval),
                reason: Reason::BudgetExhausted,
            }
        } else if rate_left == Some(0) {
            // A stale `rate_next_at` (not after now) must not make a wait that is already over.
            let until = budget
                .rate_next_at
                .filter(|t| *t > now)
                .unwrap_or_else(|| plus(now, policy.poll_interval));
            Decision::Wait {
                until,
                reason: Reason::BudgetExhausted,
            }
        } else {
            rate_left = rate_left.map(|n| n - 1);
            running += 1;
            Decision::Redrive {
                client_token: token.clone(),
            }
        };
        redrives.push(PlanEntry {
            candidate: c.clone(),
            decision,
            client_token: token,
        });
    }
    // Redrives (and dry-run would-be redrives) first, in priority order, then everything else.
    redrives.extend(entries);
    Plan { entries: redrives }
}
