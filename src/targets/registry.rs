//! Long-lived target clients, one per (service, region, role, namespace), shared by polls and
//! policies so SDK rate limiting and discovery caches span them.
//!
//! A client is built outside the map's lock (building one may assume a role through STS), so
//! one slow credential source never stalls the policies of other tenants; two policies racing
//! for the same new key may both build one, and the first inserted wins. Entries nobody asked
//! for during [`IDLE_EVICTION`] (and at least twice the poll interval of their last user) are
//! dropped, so clients of deleted namespaces and policies do not accumulate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::codepipeline::{CodePipeline, CodePipelineSettings};
use super::flowservice::credentials::SecretStore;
use super::flowservice::http::Http;
use super::flowservice::platform::Platform;
use super::flowservice::{AdobeSettings, FlowService, FlowServiceSettings};
use super::stepfunctions::StepFunctions;
use crate::aws::paced::{Pacers, Pacing, account_of_role};
use crate::aws::{AwsSettings, CallCounter, codepipeline_client, sdk_config, sfn_client};
use crate::clock::ServiceClock;
use crate::ledger::Ledger;
use crate::policy::{Policy, PolicyId, TargetKind};

/// Idle time after which a client is evicted.
pub const IDLE_EVICTION: Duration = Duration::from_secs(3600);

/// A target of any kind (targets are generic, not object-safe: dispatch is one match).
#[derive(Clone)]
pub enum AnyTarget {
    StepFunctions(Arc<StepFunctions>),
    CodePipeline(Arc<CodePipeline>),
    FlowService(Arc<FlowService>),
}

/// (service, region or sandbox, role ARN or credentials Secret, namespace): what a set of
/// credentials and a ledger scope depend on.
type Key = (TargetKind, String, Option<String>, String);

struct Entry {
    target: AnyTarget,
    last_used: Instant,
    keep_for: Duration,
}

/// What the registry needs to build clients.
#[derive(Clone)]
pub struct RegistrySettings {
    pub aws: AwsSettings,
    pub discovery_ttl: Duration,
    /// This replica's identity in ledger claims.
    pub holder: String,
    /// The attempt ledger for targets without a service token (`None`: those targets refuse to
    /// act, e.g. local mode without `--state-dir`).
    pub ledger: Option<Arc<dyn Ledger>>,
    /// Adobe endpoints and spelling (Flow Service).
    pub adobe: AdobeSettings,
    /// Where Flow Service credentials Secrets are read.
    pub secrets: SecretStore,
    /// The process's pacers: every client of one account and region shares one per API.
    pub pacers: Pacers,
}

/// The clients, by key.
pub struct TargetRegistry {
    settings: RegistrySettings,
    calls: CallCounter,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl TargetRegistry {
    pub fn new(settings: RegistrySettings, calls: CallCounter) -> Self {
        Self {
            settings,
            calls,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Number of live clients (for tests and metrics).
    pub fn len(&self) -> usize {
        self.entries.lock().expect("registry lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The target for a policy: its service and region, assuming its role (ExternalId = the
    /// policy's namespace) when it names one.
    pub async fn target(&self, policy: &Policy) -> AnyTarget {
        let (scope, credentials) = policy.client_scope();
        let key: Key = (
            policy.kind(),
            scope.to_string(),
            credentials.map(str::to_string),
            policy.id.namespace.clone(),
        );
        let keep_for = IDLE_EVICTION.max(policy.poll_interval * 2);
        {
            let mut entries = self.entries.lock().expect("registry lock");
            let now = Instant::now();
            entries.retain(|_, e| now.duration_since(e.last_used) < e.keep_for);
            if let Some(e) = entries.get_mut(&key) {
                e.last_used = now;
                e.keep_for = e.keep_for.max(keep_for);
                return e.target.clone();
            }
        }
        let built = self.build(policy).await;
        let mut entries = self.entries.lock().expect("registry lock");
        let e = entries.entry(key).or_insert(Entry {
            target: built,
            last_used: Instant::now(),
            keep_for,
        });
        e.target.clone()
    }

    async fn build(&self, policy: &Policy) -> AnyTarget {
        let Some(region) = policy.region() else {
            return self.build_flowservice(policy);
        };
        let base = sdk_config(&self.settings.aws, region).await;
        let config = match policy.role_arn() {
            None => base,
            Some(role) => {
                let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                    .external_id(external_id(&policy.id))
                    .session_name("redrive-operator")
                    .configure(&base)
                    .build()
                    .await;
                base.into_builder()
                    .credentials_provider(
                        aws_credential_types::provider::SharedCredentialsProvider::new(provider),
                    )
                    .build()
            }
        };
        // Per account and region (the scope of AWS's buckets): the role, or the default chain.
        let account = policy.role_arn().unwrap_or("default-credentials");
        let pacing = |service| Pacing {
            pacers: self.settings.pacers.clone(),
            service,
            region: region.to_string(),
            // Roles of one account share its buckets; the default chain's account is unknown.
            account: account_of_role(account).to_string(),
            limits: self.settings.aws.call_limits(),
        };
        match policy.kind() {
            TargetKind::StepFunctions => {
                let key = format!("redrive-sfn/{region}/{account}");
                // One estimate of the service's clock per client, fed by all its API clients.
                let clock = ServiceClock::new(&key);
                AnyTarget::StepFunctions(Arc::new(
                    StepFunctions::new(
                        sfn_client(&config, &self.calls, &clock),
                        &key,
                        self.settings.discovery_ttl,
                    )
                    .with_pacing(&pacing(TargetKind::StepFunctions))
                    .with_clock(clock),
                ))
            }
            TargetKind::CodePipeline => {
                let key = format!("redrive-codepipeline/{region}/{account}");
                let clock = ServiceClock::new(&key);
                AnyTarget::CodePipeline(Arc::new(
                    CodePipeline::new(
                        codepipeline_client(&config, &self.calls, &clock),
                        &key,
                        self.codepipeline_settings(policy),
                    )
                    .with_pacing(&pacing(TargetKind::CodePipeline))
                    .with_clock(clock),
                ))
            }
            TargetKind::FlowService => self.build_flowservice(policy),
        }
    }

    fn codepipeline_settings(&self, policy: &Policy) -> CodePipelineSettings {
        CodePipelineSettings {
            discovery_ttl: self.settings.discovery_ttl,
            // Local-mode policies have no namespace; their records are kept under `local`.
            namespace: external_id(&policy.id),
            holder: self.settings.holder.clone(),
            ledger: self.settings.ledger.clone(),
            operation_timeout: self.settings.aws.operation_timeout,
        }
    }

    fn build_flowservice(&self, policy: &Policy) -> AnyTarget {
        let (sandbox, secret) = policy.client_scope();
        // One HTTP client per adapter: a 429's Retry-After is honoured per credentials, and the
        // Platform keeps its own estimate of Adobe's clock (Platform::clock).
        let http = Http::new(self.settings.aws.operation_timeout, self.calls.clone());
        let platform = Platform::new(
            http,
            &self.settings.adobe.platform_url,
            &self.settings.adobe.ims_url,
            self.settings.adobe.retrigger_op,
            self.settings.aws.max_attempts,
        );
        AnyTarget::FlowService(Arc::new(FlowService::new(
            Arc::new(platform),
            self.settings.secrets.clone(),
            FlowServiceSettings {
                discovery_ttl: self.settings.discovery_ttl,
                namespace: external_id(&policy.id),
                secret_namespace: policy.id.namespace.clone(),
                secret_name: secret.unwrap_or_default().to_string(),
                sandbox: sandbox.to_string(),
                holder: self.settings.holder.clone(),
                ledger: self.settings.ledger.clone(),
                operation_timeout: self.settings.aws.operation_timeout,
            },
        )))
    }
}

/// The ExternalId used when assuming a policy's role: its namespace, so that a role's trust policy
/// decides which namespaces may use it. Local-mode policies have no namespace and use `local`.
pub fn external_id(id: &PolicyId) -> String {
    if id.namespace.is_empty() {
        "local".to_string()
    } else {
        id.namespace.clone()
    }
}

/// This process's identity in ledger claims: the pod name in a cluster (`POD_NAME`, else the
/// host name), plus the process id so two local processes on one host differ.
pub fn default_holder() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "redrive-operator".to_string());
    let host: String = host.chars().take(200).collect();
    format!("{host}/{}", std::process::id())
}
