//! Adobe Experience Platform Flow Service (source dataflow runs) and IMS emulator
//! (api-facts §3, §4.3, §5.3), served on the same endpoint, state and clock as Step Functions
//! and CodePipeline.
//!
//! - IMS: `POST /ims/token/v3` (client credentials, form body) issues bearer tokens that
//!   expire on the emulated clock.
//! - Platform: `GET /data/foundation/flowservice/runs[/{id}]`,
//!   `POST /data/foundation/flowservice/runs/{id}/action?op=re-trigger`,
//!   `GET /data/foundation/flowservice/flows[/{id}]`, behind the API gateway's header checks.
//!
//! See `docs/emulator.md` (section "Flow Service") for the scenario format (`flows:`,
//! `imsClients:`) and the choices on UNCONFIRMED points.

mod admin;
mod api;
mod filter;
mod ims;
mod ledger;
mod model;
mod scenario;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post, put};

pub use admin::FlowAdminError;
pub use ims::ImsToken;
pub use ledger::{ReTriggerLedgerEntry, ReTriggerOutcome};
pub(crate) use model::Model;
pub use model::{FlowRunSnapshot, RunTrigger, SCHEDULER_CLIENT};
pub use scenario::{
    BATCH_FLOW_SPEC_ID, DEFAULT_SCOPES, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FlowKind, FlowRunSpec,
    FlowRunStatus, FlowSpec, ImsClientSpec, RunError, RunOutcome, STREAMING_FLOW_SPEC_ID,
    ScheduleSpec, default_run_error_message,
};

use crate::state::EmulatorState;

/// Base path of the Platform API (`https://platform.adobe.io/data/foundation/flowservice`).
pub const BASE_PATH: &str = "/data/foundation/flowservice";
/// Path of the IMS token endpoint (`https://ims-na1.adobelogin.com/ims/token/v3`).
pub const IMS_TOKEN_PATH: &str = "/ims/token/v3";
/// Statistics / `onlyApis` key of the IMS token endpoint.
pub const IMS_TOKEN_KEY: &str = "ims:Token";

/// Platform operations and their statistics / throttling / `onlyApis` keys.
pub const APIS: &[(&str, &str)] = &[
    ("ListRuns", "flowservice:ListRuns"),
    ("GetRun", "flowservice:GetRun"),
    ("ReTriggerRun", "flowservice:ReTriggerRun"),
    ("ListFlows", "flowservice:ListFlows"),
    ("GetFlow", "flowservice:GetFlow"),
];

/// The key of an operation: `flowservice:<Op>`.
pub fn key(op: &str) -> &'static str {
    APIS.iter()
        .find(|(o, _)| *o == op)
        .map_or("flowservice:Unknown", |(_, k)| *k)
}

/// Routes of IMS, the Platform API and the Flow Service admin API.
pub(crate) fn router() -> Router<Arc<EmulatorState>> {
    let p = api::path;
    Router::new()
        .route(IMS_TOKEN_PATH, post(api::ims_token))
        .route(&p("/runs"), get(api::list_runs))
        .route(&p("/runs/{id}"), get(api::get_run))
        .route(&p("/runs/{id}/action"), post(api::run_action))
        .route(&p("/flows"), get(api::list_flows))
        .route(&p("/flows/{id}"), get(api::get_flow))
        .route("/_emulator/flowservice/ledger", get(admin::ledger))
        .route(
            "/_emulator/flowservice/flows/{id}/runs",
            get(admin::flow_runs).post(admin::start_run),
        )
        .route(
            "/_emulator/flowservice/flows/{id}/outcomes",
            put(admin::put_outcomes),
        )
        .route(
            "/_emulator/flowservice/runs/{id}/complete",
            post(admin::complete_run),
        )
        .route(
            "/_emulator/flowservice/ims/clients",
            post(admin::add_client),
        )
        .route(
            "/_emulator/flowservice/ims/clients/{id}/secret",
            post(admin::rotate_secret),
        )
        .route(
            "/_emulator/flowservice/ims/clients/{id}/revoke",
            post(admin::revoke),
        )
        .route("/_emulator/flowservice/throttle", put(admin::throttle))
}
