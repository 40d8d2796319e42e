//! In-cluster mode: a kube-runtime Controller on RedrivePolicy objects.
//!
//! Each policy is polled on its own pollInterval (requeue); a spec change (a new generation)
//! triggers an immediate poll; any other wake-up before the next poll is due, such as our own
//! status write, is answered without an AWS call. Polls run the same [`reconcile::poll`] as local
//! mode. Status is written with server-side apply under one field manager; events go through one
//! shared Recorder.

pub mod status;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::crd::{RedrivePolicy, RedrivePolicyStatus};
use crate::events::EventSource;
use crate::events::message::Hint;
use crate::events::router::{BACKLOG, Route, Router};
use crate::events::worker::{self, Decided};
use crate::policy::{Policy, PolicyId};
use crate::reconcile::{self, PolicyState, PollReport};
use crate::targets::{ErrorCategory, RedriveOutcome};
use crate::tenancy::RoleAllowlist;

/// Field manager of every status write.
pub const FIELD_MANAGER: &str = "redrive-operator";
/// `reportingController` of events.
pub const REPORTING_CONTROLLER: &str = "redrive.dev/redrive-operator";

/// Settings of the in-cluster controller.
#[derive(Clone, Debug)]
pub struct ControllerSettings {
    /// Watch only this namespace (default: all).
    pub namespace: Option<String>,
    /// Watch only policies with these labels (sharding).
    pub label_selector: Option<String>,
    pub roles: RoleAllowlist,
    /// Reporting instance of events (the pod name).
    pub instance: String,
    /// Policies reconciled at once.
    pub concurrency: u16,
    /// Upper bound of the per-policy error backoff.
    pub max_error_backoff: Duration,
}

/// Errors of a reconcile that are not about the policy itself (they are retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("writing status of {policy}: {source}")]
    Status { policy: String, source: kube::Error },
}

impl ControllerError {
    pub fn category(&self) -> &'static str {
        match self {
            ControllerError::Status { .. } => "kube_api",
        }
    }
}

/// Per-policy memory, keyed by the object's uid (a deleted and re-created policy starts afresh).
#[derive(Default)]
struct Entry {
    state: Mutex<PolicyState>,
    schedule: Mutex<Schedule>,
    /// Polls and event-hint decisions of one policy take turns: budgets and caps stay exact.
    turn: tokio::sync::Mutex<()>,
    /// The status this process last wrote: newer than the watch cache's copy while that lags
    /// (a hint's status write is followed by a poll's).
    last_status: Mutex<Option<RedrivePolicyStatus>>,
    /// Where event hints for this policy are routed, once it polled with events on.
    hints: Mutex<Option<HintLink>>,
}

/// What a policy's hint worker reads: the latest parsed spec and the workflows its last poll
/// resolved (the router's coverage).
struct HintLink {
    policy: Arc<RwLock<Arc<Policy>>>,
    workflows: Arc<RwLock<Vec<String>>>,
}

/// Event hints in cluster mode: the source (sweep interval) and the router its consumers feed.
struct ClusterEvents {
    source: EventSource,
    router: Arc<Router>,
    stop: watch::Receiver<bool>,
}

#[derive(Default)]
struct Schedule {
    generation: Option<i64>,
    /// When the policy's rules ask for the next poll.
    next_poll: Option<Timestamp>,
    /// When the last successful full poll finished (events: the sweep is measured from it).
    last_poll: Option<Timestamp>,
    failures: u32,
}

/// Shared by every reconcile.
pub struct Ctx {
    client: Client,
    recorder: Recorder,
    polls: Arc<reconcile::Context>,
    settings: ControllerSettings,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    /// Policies seen by the last prune, to drop the metrics and health of deleted ones.
    known: Mutex<HashSet<PolicyId>>,
    resource: ApiResource,
    events: Option<ClusterEvents>,
}

impl Ctx {
    pub fn new(
        client: Client,
        settings: ControllerSettings,
        polls: Arc<reconcile::Context>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: REPORTING_CONTROLLER.into(),
                instance: Some(settings.instance.clone()),
            },
        );
        Self {
            polls,
            client,
            recorder,
            settings,
            entries: Mutex::new(HashMap::new()),
            known: Mutex::new(HashSet::new()),
            resource: ApiResource::erase::<RedrivePolicy>(&()),
            events: None,
        }
    }

    /// The sweep interval of `policy` when events are on.
    fn sweep(&self, policy: &Policy) -> Option<Duration> {
        self.events
            .as_ref()
            .map(|e| e.source.sweep_after(policy.poll_interval))
    }

    /// Route event hints to `policy` (after a successful poll): a worker per policy decides
    /// them between polls with the policy's own credentials and rules.
    fn route_hints(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        policy: &Policy,
        reference: &ObjectReference,
        workflows: &[String],
    ) {
        let Some(events) = &self.events else {
            return;
        };
        let mut link = entry.hints.lock().expect("hints lock");
        if let Some(l) = link.as_ref()
            && events.router.routes_to(&policy.id)
        {
            *l.policy.write().expect("policy lock") = Arc::new(policy.clone());
            *l.workflows.write().expect("workflows lock") = workflows.to_vec();
            return;
        }
        let l = HintLink {
            policy: Arc::new(RwLock::new(Arc::new(policy.clone()))),
            workflows: Arc::new(RwLock::new(workflows.to_vec())),
        };
        let (tx, hints) = tokio::sync::mpsc::channel(BACKLOG);
        events.router.upsert(Route {
            policy: policy.id.clone(),
            kind: policy.kind(),
            workflows: l.workflows.clone(),
            tx,
        });
        let (ctx, entry, spec, reference) = (
            self.clone(),
            entry.clone(),
            l.policy.clone(),
            reference.clone(),
        );
        tokio::spawn(worker::run(hints, events.stop.clone(), move |hint| {
            let (ctx, entry, spec, reference) =
                (ctx.clone(), entry.clone(), spec.clone(), reference.clone());
            async move { ctx.decide_hint(&entry, &spec, &reference, &hint).await }
        }));
        *link = Some(l);
    }

    /// Stop routing hints to a policy that no longer polls (suspended, invalid, denied).
    fn unroute_hints(&self, entry: &Entry, policy: &PolicyId) {
        if let Some(events) = &self.events {
            events.router.remove(policy);
            *entry.hints.lock().expect("hints lock") = None;
        }
    }

    async fn decide_hint(
        &self,
        entry: &Entry,
        spec: &RwLock<Arc<Policy>>,
        reference: &ObjectReference,
        hint: &Hint,
    ) -> Decided {
        let _turn = entry.turn.lock().await;
        let policy = spec.read().expect("policy lock").clone();
        let result = self
            .polls
            .decide_hinted(&policy, &entry.state, hint, Timestamp::now)
            .await;
        self.polls.observe_hint(&policy, &result);
        match &result {
            Ok(report) if !report.actions.is_empty() || !report.newly_exhausted.is_empty() => {
                let old = entry.last_status.lock().expect("status lock").clone();
                let status = status::hinted_status(old.as_ref(), report);
                let (ns, name) = (&policy.id.namespace, &policy.id.name);
                match self.write_status(ns, name, old.as_ref(), &status).await {
                    Ok(()) => *entry.last_status.lock().expect("status lock") = Some(status),
                    // The redrives are done and in the metrics; the next poll's status shows
                    // them in the counts it lists.
                    Err(e) => {
                        warn!(policy = %policy.id, error = %e, "writing status after an event hint failed")
                    }
                }
                publish_poll_events(self, reference, &policy, report).await;
            }
            Ok(_) => {}
            Err(e) => {
                warn!(policy = %policy.id, category = e.category().as_str(), error = %e, "deciding an event hint failed")
            }
        }
        Decided::of(&result)
    }

    /// The AWS call counter shared by all policies.
    pub fn calls(&self) -> &crate::aws::CallCounter {
        &self.polls.calls
    }

    fn entry(&self, uid: &str) -> Arc<Entry> {
        self.entries
            .lock()
            .expect("entries lock")
            .entry(uid.to_string())
            .or_default()
            .clone()
    }

    fn forget_except(&self, live: &HashSet<String>, live_ids: &HashSet<PolicyId>) {
        self.entries
            .lock()
            .expect("entries lock")
            .retain(|uid, _| live.contains(uid));
        if let Some(events) = &self.events {
            events.router.retain(live_ids);
        }
        let mut known = self.known.lock().expect("known lock");
        for gone in known.difference(live_ids) {
            self.polls.metrics.forget_policy(gone);
            self.polls.health.forget(gone);
        }
        *known = live_ids.clone();
    }

    /// Write status with server-side apply, unless it is unchanged.
    async fn write_status(
        &self,
        namespace: &str,
        name: &str,
        old: Option<&RedrivePolicyStatus>,
        new: &RedrivePolicyStatus,
    ) -> Result<(), ControllerError> {
        if old == Some(new) {
            return Ok(());
        }
        // Dynamic API: the status of an object that no longer deserializes can still be written.
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &self.resource);
        let patch = serde_json::json!({
            "apiVersion": RedrivePolicy::api_version(&()),
            "kind": RedrivePolicy::kind(&()),
            "status": new,
        });
        api.patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await
        .map(|_| ())
        .map_err(|source| ControllerError::Status {
            policy: format!("{namespace}/{name}"),
            source,
        })
    }

    async fn event(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let note: String = note.chars().take(1000).collect();
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        // Without resourceVersion: every status write changes it, and the Recorder's series cache
        // compares it, so repeats would become new Events instead of one aggregated series.
        let reference = ObjectReference {
            resource_version: None,
            ..reference.clone()
        };
        if let Err(e) = self.recorder.publish(&ev, &reference).await {
            warn!(reason, error = %e, "cannot publish event");
        }
    }
}

fn object_reference(meta: &kube::api::ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(RedrivePolicy::api_version(&()).into_owned()),
        kind: Some(RedrivePolicy::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        ..ObjectReference::default()
    }
}

fn until(now: Timestamp, at: Timestamp) -> Duration {
    at.duration_since(now)
        .unsigned_abs()
        .max(Duration::from_secs(1))
}

/// Per-policy exponential backoff after failures: 5 s doubling, capped.
fn error_backoff(failures: u32, cap: Duration) -> Duration {
    Duration::from_secs(5)
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(cap)
}

/// Reconcile one policy.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<RedrivePolicy>>,
    ctx: Arc<Ctx>,
) -> Result<Action, ControllerError> {
    let now = Timestamp::now();
    let obj = match &guard.0 {
        Ok(obj) => obj,
        Err(invalid) => {
            // The object does not even match the Rust types (e.g. written before a schema
            // change): report it and wait for an edit instead of stalling the watch.
            let meta = &invalid.metadata;
            let (ns, name) = (
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
            );
            let message = format!("the object cannot be read: {}", invalid.error);
            warn!(policy = %format!("{ns}/{name}"), error = %invalid.error, "invalid RedrivePolicy object");
            let status = status::invalid_status(None, meta.generation, &message, now);
            ctx.write_status(&ns, &name, None, &status).await?;
            ctx.event(
                &object_reference(meta),
                EventType::Warning,
                "InvalidSpec",
                "Validate",
                message,
            )
            .await;
            return Ok(Action::await_change());
        }
    };
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let uid = obj.uid().unwrap_or_else(|| format!("{ns}/{name}"));
    let generation = obj.metadata.generation;
    let reference = obj.object_ref(&());
    let entry = ctx.entry(&uid);
    // Our own last write when we made one: the watch cache may not show it yet, and a poll's
    // status must add to it, not to an older copy (event hints write status between polls).
    let cached = entry.last_status.lock().expect("status lock").clone();
    let old = cached.as_ref().or(obj.status.as_ref());

    let policy = match Policy::from_resource(obj) {
        Ok(p) => p,
        Err(e) => {
            let message = e.to_string();
            ctx.unroute_hints(
                &entry,
                &PolicyId {
                    namespace: ns.clone(),
                    name: name.clone(),
                },
            );
            let changed = entry.schedule.lock().expect("schedule lock").generation != generation;
            let status = status::invalid_status(old, generation, &message, now);
            ctx.write_status(&ns, &name, old, &status).await?;
            *entry.last_status.lock().expect("status lock") = Some(status);
            if changed || old.is_none_or(|s| s.observed_generation != generation) {
                ctx.event(
                    &reference,
                    EventType::Warning,
                    "InvalidSpec",
                    "Validate",
                    message,
                )
                .await;
            }
            entry.schedule.lock().expect("schedule lock").generation = generation;
            return Ok(Action::await_change());
        }
    };

    if let Err(message) = ctx.settings.roles.check(&ns, policy.role_arn()) {
        ctx.unroute_hints(&entry, &policy.id);
        let status = status::denied_status(old, generation, "RoleNotAllowed", &message, now);
        let first_time = old.is_none_or(|s| s != &status);
        ctx.write_status(&ns, &name, old, &status).await?;
        *entry.last_status.lock().expect("status lock") = Some(status);
        if first_time {
            ctx.event(
                &reference,
                EventType::Warning,
                "AccessDenied",
                "AssumeRole",
                message,
            )
            .await;
        }
        return Ok(Action::await_change());
    }

    if policy.suspend {
        ctx.unroute_hints(&entry, &policy.id);
        let mut status = old.cloned().unwrap_or_default();
        status.observed_generation = generation;
        status.next_poll = None;
        status::set_condition(
            &mut status.conditions,
            status::SUSPENDED,
            true,
            "Suspended",
            "spec.suspend is true: no AWS calls are made",
            generation,
            now,
        );
        status::set_condition(
            &mut status.conditions,
            status::READY,
            true,
            "Suspended",
            "suspended",
            generation,
            now,
        );
        ctx.write_status(&ns, &name, old, &status).await?;
        *entry.last_status.lock().expect("status lock") = Some(status);
        // Not polled while suspended: no liveness schedule, no stale last-poll series to alert on.
        ctx.polls.health.forget(&policy.id);
        ctx.polls.metrics.forget_policy(&policy.id);
        let mut sched = entry.schedule.lock().expect("schedule lock");
        sched.generation = generation;
        sched.next_poll = None;
        return Ok(Action::await_change());
    }

    // Woken before the next poll is due and the spec did not change (e.g. by our own status
    // write): nothing to do.
    {
        let sched = entry.schedule.lock().expect("schedule lock");
        if sched.generation == generation
            && let Some(next) = sched.next_poll
            && next > now
        {
            return Ok(Action::requeue(until(now, next)));
        }
        // With events the rules' poll is skipped until the sweep is due, unless hints may be
        // lost (a queue that cannot be read): then the policy polls on its own interval.
        if let Some(events) = &ctx.events
            && sched.generation == generation
            && sched.failures == 0
            && let Some(last) = sched.last_poll
        {
            let since = now.duration_since(last).unsigned_abs();
            if !events.source.poll_due(since) {
                let left = events.source.sweep_interval.saturating_sub(since);
                return Ok(Action::requeue(
                    policy.poll_interval.min(left).max(Duration::from_secs(1)),
                ));
            }
        }
    }

    let started = std::time::Instant::now();
    let turn = entry.turn.lock().await;
    // A hint decided while this reconcile waited for its turn wrote a newer status.
    let cached = entry.last_status.lock().expect("status lock").clone();
    let old = cached.as_ref().or(old);
    let result = ctx.polls.poll(&policy, &entry.state, Timestamp::now).await;
    match result {
        Ok(mut report) => {
            let rules_next = report.next_poll;
            let sweep = ctx.sweep(&policy);
            if let Some(sweep) = sweep {
                // With events on the full poll is the sweep (status and liveness expect it
                // then); hints decide failures meanwhile.
                report.next_poll = report.next_poll.max(report.finished + sweep);
            }
            let next_in = until(Timestamp::now(), report.next_poll);
            ctx.polls
                .observe_poll(&policy, &Ok(report.clone()), started.elapsed(), next_in);
            let status =
                status::polled_status(old, generation, false, &report, &policy.warnings(), sweep);
            ctx.write_status(&ns, &name, old, &status).await?;
            *entry.last_status.lock().expect("status lock") = Some(status);
            drop(turn);
            {
                let mut sched = entry.schedule.lock().expect("schedule lock");
                sched.generation = generation;
                sched.next_poll = Some(rules_next);
                sched.last_poll = Some(report.finished);
                sched.failures = 0;
            }
            ctx.route_hints(&entry, &policy, &reference, &report.workflows);
            publish_poll_events(&ctx, &reference, &policy, &report).await;
            Ok(Action::requeue(until(Timestamp::now(), rules_next)))
        }
        Err(e) => {
            let failures = {
                let mut sched = entry.schedule.lock().expect("schedule lock");
                sched.failures += 1;
                sched.generation = generation;
                sched.next_poll = None;
                sched.failures
            };
            let retry_in = error_backoff(
                failures,
                ctx.settings.max_error_backoff.max(policy.poll_interval),
            );
            ctx.polls
                .observe_poll(&policy, &Err(e.clone()), started.elapsed(), retry_in);
            let reason = status::reason_of_category(e.category().as_str());
            let message = e.to_string();
            warn!(policy = %policy.id, category = e.category().as_str(), error = %message, "poll failed");
            let status = status::failed_status(old, generation, false, &reason, &message, now);
            ctx.write_status(&ns, &name, old, &status).await?;
            *entry.last_status.lock().expect("status lock") = Some(status);
            drop(turn);
            let event_reason = match e.category() {
                ErrorCategory::AccessDenied | ErrorCategory::Credentials => "AccessDenied",
                _ => "PollFailed",
            };
            ctx.event(
                &reference,
                EventType::Warning,
                event_reason,
                "Poll",
                message,
            )
            .await;
            Ok(Action::requeue(error_backoff(
                failures,
                ctx.settings.max_error_backoff.max(policy.poll_interval),
            )))
        }
    }
}

async fn publish_poll_events(
    ctx: &Ctx,
    reference: &ObjectReference,
    policy: &Policy,
    report: &PollReport,
) {
    let newly_exhausted = &report.newly_exhausted;
    let redriven: Vec<String> = report
        .actions
        .iter()
        .filter(|a| matches!(a.result, Ok(RedriveOutcome::Redriven { .. })))
        .map(|a| a.run.clone())
        .collect();
    // Events with the same reason become one series that keeps its first note (events.k8s.io
    // series, kube's Recorder), so notes carry no counts or samples: they must stay true for
    // every poll the series counts. Per-poll counts are in status.counts and the metrics.
    let runs = policy.kind().runs_noun();
    if !redriven.is_empty() {
        let note = format!(
            "redrove failed {runs} of this policy; which and how many: status.recent and status.counts.redriven"
        );
        ctx.event(reference, EventType::Normal, "Redriven", "Redrive", note)
            .await;
    }
    if report.actions.iter().any(|a| a.result.is_err()) {
        let note =
            "redrive calls of this policy failed; the latest error is in the Degraded condition"
                .to_string();
        ctx.event(
            reference,
            EventType::Warning,
            "RedriveFailed",
            "Redrive",
            note,
        )
        .await;
    }
    if !newly_exhausted.is_empty() {
        let note = format!(
            "{runs} of this policy reached maxRedrives={} and are left alone; how many: status.counts.exhausted",
            policy.max_redrives
        );
        ctx.event(reference, EventType::Warning, "Exhausted", "Redrive", note)
            .await;
    }
    let denied = report.errors().into_iter().any(|e| {
        matches!(
            e.category,
            ErrorCategory::AccessDenied | ErrorCategory::Credentials
        )
    });
    if denied {
        ctx.event(
            reference,
            EventType::Warning,
            "AccessDenied",
            "Poll",
            "calls of this policy were denied or had no valid credentials; the latest error is in the Degraded condition".to_string(),
        )
        .await;
    }
}

/// Errors writing status: log and retry with backoff.
pub fn error_policy(
    guard: Arc<DeserializeGuard<RedrivePolicy>>,
    error: &ControllerError,
    ctx: Arc<Ctx>,
) -> Action {
    let uid = match &guard.0 {
        Ok(o) => o.uid(),
        Err(i) => i.metadata.uid.clone(),
    }
    .unwrap_or_default();
    let entry = ctx.entry(&uid);
    let failures = {
        let mut sched = entry.schedule.lock().expect("schedule lock");
        sched.failures += 1;
        // Force a real poll next time.
        sched.next_poll = None;
        sched.failures
    };
    warn!(error = %error, category = error.category(), "reconcile failed");
    Action::requeue(error_backoff(failures, ctx.settings.max_error_backoff))
}

/// Fails with a clear message when the CRD is not installed or not readable.
pub async fn probe(api: &Api<DeserializeGuard<RedrivePolicy>>) -> Result<(), String> {
    api.list(&ListParams::default().limit(1)).await.map(|_| ()).map_err(|e| {
        format!(
            "cannot list redrivepolicies.redrive.dev ({e}); is the CRD installed (kubectl apply --server-side -f crds/) and may this identity list it?"
        )
    })
}

/// Run the controller until `shutdown` resolves. In-flight reconciles finish first.
pub async fn run(
    client: Client,
    settings: ControllerSettings,
    polls: Arc<reconcile::Context>,
    events: Option<EventSource>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), String> {
    let api: Api<DeserializeGuard<RedrivePolicy>> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    probe(&api).await?;
    let mut wc = watcher::Config::default().any_semantic();
    if let Some(sel) = &settings.label_selector {
        wc = wc.labels(sel);
    }
    let concurrency = settings.concurrency;
    // Consumers and hint workers stop with the controller (shutdown or lost leadership).
    let (stop_tx, stop) = watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let mut ctx = Ctx::new(client, settings, polls);
    if let Some(source) = events {
        let (router, _consumers) =
            source.start(ctx.polls.metrics.clone(), &ctx.polls.health, stop.clone());
        info!(queues = source.queues.len(), sweep = ?source.sweep_interval, "reading event hints");
        ctx.events = Some(ClusterEvents {
            source,
            router,
            stop,
        });
    }
    let ctx = Arc::new(ctx);
    let controller =
        Controller::new(api, wc).with_config(ControllerConfig::default().concurrency(concurrency));
    let store = controller.store();
    let prune_ctx = ctx.clone();
    // Forget the memory of deleted policies (the controller has no delete hook without a finalizer).
    let pruner = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(15));
        loop {
            tick.tick().await;
            let live: HashSet<String> = store
                .state()
                .iter()
                .filter_map(|g| match &g.0 {
                    Ok(o) => o.uid(),
                    Err(i) => i.metadata.uid.clone(),
                })
                .collect();
            let live_ids: HashSet<PolicyId> = store
                .state()
                .iter()
                .map(|g| {
                    let meta = match &g.0 {
                        Ok(o) => &o.metadata,
                        Err(i) => &i.metadata,
                    };
                    PolicyId {
                        namespace: meta.namespace.clone().unwrap_or_default(),
                        name: meta.name.clone().unwrap_or_default(),
                    }
                })
                .collect();
            prune_ctx.forget_except(&live, &live_ids);
        }
    });
    info!("controller started");
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                match e {
                    kube::runtime::controller::Error::ObjectNotFound(_) => {}
                    other => warn!(error = %other, "controller event"),
                }
            }
        })
        .await;
    pruner.abort();
    info!("controller stopped");
    Ok(())
}
