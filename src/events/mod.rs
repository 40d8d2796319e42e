//! Event-driven hints (issue 15): EventBridge rules feed SQS queues with the services' status
//! change events; the operator reads them as hints that a run may need a decision now, while
//! the regular polls stay the safety net (events are best effort: lost, duplicated, reordered).

pub mod consumer;
pub mod message;
pub mod route;
pub mod router;
