//! redrive-operator: resumes failed AWS Step Functions executions from the point of failure.
//!
//! Layers (data flows top to bottom; decisions are pure):
//! - [`crd`]: the `RedrivePolicy` API types (source of truth for `crds/`).
//! - [`policy`], [`policy_file`]: validated, typed view of a policy (durations parsed, regexes
//!   compiled), from the cluster or from files.
//! - [`engine`]: pure decision logic: candidates + policy + clock -> plan.
//! - [`targets`]: adapters per workflow service.
//! - [`reconcile`]: one poll of one policy (shared by local mode and the controller).
//! - [`local`], [`controller`], [`leader`]: local mode, in-cluster mode, leader election.
//! - [`aws`], [`tenancy`]: SDK clients and credentials, role allowlist.
//! - [`metrics`], [`admin`], [`telemetry`]: Prometheus metrics, health endpoints, logs.
//! - [`demo`] (feature `demo`, on by default): local mode against the embedded emulator
//!   (crate `redrive-emulator`, also used by the tests and `redrive-bench`).

pub mod admin;
pub mod api;
pub mod aws;
pub mod cli;
pub mod clock;
pub mod controller;
pub mod crd;
#[cfg(feature = "demo")]
pub mod demo;
pub mod engine;
pub mod events;
pub mod leader;
pub mod ledger;
pub mod local;
pub mod metrics;
pub mod output;
pub mod policy;
pub mod policy_file;
pub mod reconcile;
pub mod targets;
pub mod telemetry;
pub mod tenancy;
