//! One control plane shared by the tests of a test binary, stopped by the last test to finish.
//!
//! A plain `static` would never be dropped and leave ~120 MB of etcd data in the temp dir per
//! run. "Last" is the `tests`-th test in a full run; in a filtered run (`cargo test --test X
//! NAME`) it is whichever test leaves no other user behind, so a filtered run may start a
//! second control plane, never leak one. Include with `#[path = "support/shared_cluster.rs"]`
//! next to `#[path = "support/cluster.rs"] mod cluster;`.
#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::cluster::Cluster;

struct State {
    cluster: Option<Arc<Cluster>>,
    users: usize,
    finished: usize,
}

/// The shared control plane of one test binary.
pub struct SharedCluster {
    tests: usize,
    state: Mutex<State>,
    starting: tokio::sync::Mutex<()>,
}

impl SharedCluster {
    /// `tests`: how many tests of the binary use it (each test should check it, see
    /// [`count_tests`]).
    pub const fn new(tests: usize) -> Self {
        Self {
            tests,
            state: Mutex::new(State {
                cluster: None,
                users: 0,
                finished: 0,
            }),
            starting: tokio::sync::Mutex::const_new(()),
        }
    }

    /// The control plane, started with `setup` by the first test that asks.
    pub async fn get<F, Fut>(&'static self, setup: F) -> ClusterGuard
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Cluster>,
    {
        let _starting = self.starting.lock().await;
        let existing = self.state.lock().unwrap().cluster.clone();
        let cluster = match existing {
            Some(c) => c,
            None => {
                let c = Arc::new(setup().await);
                self.state.lock().unwrap().cluster = Some(c.clone());
                c
            }
        };
        self.state.lock().unwrap().users += 1;
        ClusterGuard {
            cluster: Some(cluster),
            shared: self,
        }
    }
}

/// A test's handle on the shared control plane.
pub struct ClusterGuard {
    cluster: Option<Arc<Cluster>>,
    shared: &'static SharedCluster,
}

impl std::ops::Deref for ClusterGuard {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        self.cluster.as_deref().expect("held until drop")
    }
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        drop(self.cluster.take());
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.users -= 1;
        state.finished += 1;
        let filtered = std::env::args().skip(1).any(|a| !a.starts_with('-'));
        let last = if filtered {
            state.users == 0
        } else {
            state.finished >= self.shared.tests
        };
        if last {
            let cluster = state.cluster.take();
            drop(state);
            drop(cluster);
        }
    }
}

/// How many `#[tokio::test]` functions `source` has (for the self-check that the count given to
/// [`SharedCluster::new`] is right).
pub fn count_tests(source: &str) -> usize {
    source.matches(concat!("#[tokio", "::test")).count()
}
