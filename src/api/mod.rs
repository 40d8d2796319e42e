//! Kubernetes API types owned by the operator, other than the user-facing `RedrivePolicy`
//! (which lives in [`crate::crd`]).
//!
//! - [`attempt`]: `RedriveAttempt`, the durable attempt ledger for targets without an
//!   idempotency token (CodePipeline, Flow Service). See [`crate::ledger`] for the API that
//!   reads and writes it.

pub mod attempt;
pub mod limits;
