//! Leader election with a coordination.k8s.io Lease (kube-lease-manager).
//!
//! Only the leader runs the controller. A replica that loses the lease stops acting at once (the
//! controller future is dropped, abandoning in-flight AWS calls, which deterministic tokens make
//! safe to repeat) and the process exits non-zero so that Kubernetes restarts it as a follower.
//! On shutdown the leader finishes in-flight reconciles and releases the lease, so a standby
//! takes over without waiting for the lease to expire.

use std::future::Future;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::{info, warn};

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
    pub grace: Duration,
}

/// How a leader-elected run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum LeaderOutcome {
    /// Shutdown was requested (before or after becoming leader).
    Shutdown,
    /// The lease was lost while leading: exit non-zero.
    LeadershipLost,
}

/// Wait for the lease, then run `work(stop)` until shutdown or until the lease is lost.
/// `work` receives a future that resolves when it should stop gracefully.
pub async fn run_as_leader<W, F>(
    client: Client,
    settings: LeaseSettings,
    mut shutdown: watch::Receiver<bool>,
    leader_gauge: impl Fn(bool) + Send + Sync,
    work: W,
) -> Result<LeaderOutcome, String>
where
    W: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send + Sync>>) -> F,
    F: Future<Output = Result<(), String>>,
{
    let manager = LeaseManagerBuilder::new(client, &settings.name)
        .with_namespace(&settings.namespace)
        .with_identity(&settings.identity)
        .with_duration(settings.duration.as_secs().max(2))
        .with_grace(settings.grace.as_secs().max(1))
        .build()
        .await
        .map_err(|e| {
            format!(
                "cannot set up the lease {}/{}: {e}",
                settings.namespace, settings.name
            )
        })?;
    let (mut is_leader, lease_task) = manager.watch().await;
    info!(lease = %settings.name, identity = %settings.identity, "waiting for leadership");
    loop {
        if *is_leader.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = is_leader.changed() => {
                if changed.is_err() {
                    return Err(lease_failure(lease_task).await);
                }
            }
            _ = shutdown.wait_for(|s| *s) => {
                drop(is_leader);
                release(lease_task).await;
                return Ok(LeaderOutcome::Shutdown);
            }
        }
    }
    info!(identity = %settings.identity, "became leader");
    leader_gauge(true);

    let mut stop = shutdown.clone();
    let graceful: std::pin::Pin<Box<dyn Future<Output = ()> + Send + Sync>> =
        Box::pin(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
    let mut lost = is_leader.clone();
    let outcome = tokio::select! {
        result = work(graceful) => {
            result?;
            LeaderOutcome::Shutdown
        }
        _ = lost.wait_for(|leader| !*leader) => {
            warn!(identity = %settings.identity, "lost leadership: stopping at once");
            LeaderOutcome::LeadershipLost
        }
    };
    leader_gauge(false);
    drop(lost);
    drop(is_leader);
    if outcome == LeaderOutcome::Shutdown {
        release(lease_task).await;
    } else {
        lease_task.abort();
    }
    Ok(outcome)
}

async fn release(
    task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
) {
    match task.await {
        Ok(Ok(manager)) => match manager.release().await {
            Ok(()) => info!("lease released"),
            Err(e) => warn!(error = %e, "cannot release the lease; it will expire"),
        },
        Ok(Err(e)) => warn!(error = %e, "lease task failed"),
        Err(e) => warn!(error = %e, "lease task panicked"),
    }
}

async fn lease_failure(
    task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
) -> String {
    match task.await {
        Ok(Ok(_)) => "the lease task ended".into(),
        Ok(Err(e)) => format!("leader election failed: {e}"),
        Err(e) => format!("leader election task failed: {e}"),
    }
}
