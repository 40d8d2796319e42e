//! OAuth server-to-server credentials, read from the policy's Secret **at use**, so a rotated
//! secret takes effect without a restart.
//!
//! Only the policy's own namespace is ever read: the reference has no namespace field and the
//! namespace comes from the policy object. In a cluster the Secret is read with `get` (no list
//! or watch, so the operator never holds every Secret of a namespace); in local mode from a
//! directory laid out like a Secret mounted as a volume (`DIR/<secret name>/<key>`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::targets::{ErrorCategory, TargetError};

/// Keys of the credentials Secret.
pub const KEY_CLIENT_ID: &str = "clientId";
pub const KEY_CLIENT_SECRET: &str = "clientSecret";
pub const KEY_ORG_ID: &str = "orgId";
pub const KEY_SCOPES: &str = "scopes";

const API: &str = "GetSecret";

/// One set of credentials. `Debug` never shows the secret.
#[derive(Clone)]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: SecretString,
    pub org_id: String,
    /// Comma-separated scopes, when the Secret names them (else IMS grants the project's).
    pub scopes: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("org_id", &self.org_id)
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl Credentials {
    /// A digest of everything a token depends on (the secret included), as the token cache key:
    /// a rotated secret gets a new token, and the key reveals nothing.
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::new()
            .chain_update(self.client_id.as_bytes())
            .chain_update(b"\n")
            .chain_update(self.client_secret.expose_secret().as_bytes())
            .chain_update(b"\n")
            .chain_update(self.scopes.as_deref().unwrap_or("").as_bytes())
            .finalize()
            .into()
    }

    /// Credentials from a Secret's key/value pairs; errors name the Secret and the key, never a
    /// value.
    pub fn from_map(secret: &str, map: &BTreeMap<String, String>) -> Result<Self, TargetError> {
        let get = |key: &str| -> Result<String, TargetError> {
            match map.get(key).map(|v| v.trim()) {
                Some(v) if !v.is_empty() => Ok(v.to_string()),
                _ => Err(TargetError {
                    api: API,
                    category: ErrorCategory::Credentials,
                    code: Some("SecretKeyMissing".into()),
                    message: format!(
                        "Secret {secret} has no key {key} (spec.flowService.credentialsSecretRef needs {KEY_CLIENT_ID}, {KEY_CLIENT_SECRET} and {KEY_ORG_ID})"
                    ),
                }),
            }
        };
        let client_id = get(KEY_CLIENT_ID)?;
        let client_secret = SecretString::from(get(KEY_CLIENT_SECRET)?);
        let org_id = get(KEY_ORG_ID)?;
        let scopes = map
            .get(KEY_SCOPES)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        // Header values: a newline in a Secret value must not become a header injection.
        for (key, v) in [(KEY_CLIENT_ID, &client_id), (KEY_ORG_ID, &org_id)] {
            if v.chars().any(|c| c.is_control()) {
                return Err(TargetError {
                    api: API,
                    category: ErrorCategory::Credentials,
                    code: Some("SecretKeyInvalid".into()),
                    message: format!("Secret {secret}: key {key} contains control characters"),
                });
            }
        }
        Ok(Self {
            client_id,
            client_secret,
            org_id,
            scopes,
        })
    }
}

/// Secrets held in memory, by (namespace, name).
type MemorySecrets = Arc<Mutex<HashMap<(String, String), BTreeMap<String, String>>>>;

/// Where Secrets come from.
#[derive(Clone, Default)]
pub enum SecretStore {
    /// No Secrets: Flow Service policies report a Credentials error.
    #[default]
    None,
    /// The Kubernetes API (`get` in the policy's namespace).
    Kube(kube::Client),
    /// Local mode: `DIR/<secret name>/<key>` files.
    Dir(PathBuf),
    /// In memory, by (namespace, name): `demo` and tests.
    Memory(MemorySecrets),
}

impl SecretStore {
    /// A memory store holding one Secret.
    pub fn memory() -> Self {
        SecretStore::Memory(Arc::default())
    }

    /// Put (or replace) a Secret in a memory store; no-op for other stores.
    pub fn put(&self, namespace: &str, name: &str, data: BTreeMap<String, String>) {
        if let SecretStore::Memory(m) = self {
            m.lock()
                .expect("secret store lock")
                .insert((namespace.to_string(), name.to_string()), data);
        }
    }

    /// The credentials in Secret `name` of `namespace`.
    pub async fn credentials(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Credentials, TargetError> {
        let shown = if namespace.is_empty() {
            name.to_string()
        } else {
            format!("{namespace}/{name}")
        };
        let map = match self {
            SecretStore::None => {
                return Err(TargetError {
                    api: API,
                    category: ErrorCategory::Credentials,
                    code: Some("NoSecretStore".into()),
                    message: format!(
                        "cannot read Secret {shown}: in local mode pass --secrets-dir (DIR/{name}/{KEY_CLIENT_ID} ...)"
                    ),
                });
            }
            SecretStore::Memory(m) => m
                .lock()
                .expect("secret store lock")
                .get(&(namespace.to_string(), name.to_string()))
                .cloned()
                .ok_or_else(|| not_found(&shown))?,
            SecretStore::Dir(dir) => read_dir_secret(&dir.join(name), &shown)?,
            SecretStore::Kube(client) => {
                use k8s_openapi::api::core::v1::Secret;
                let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
                let secret = match api.get_opt(name).await {
                    Ok(Some(s)) => s,
                    Ok(None) => return Err(not_found(&shown)),
                    Err(kube::Error::Api(s)) if s.code == 403 => {
                        return Err(TargetError {
                            api: API,
                            category: ErrorCategory::AccessDenied,
                            code: Some("Forbidden".into()),
                            message: format!(
                                "the operator may not read Secret {shown}: enable flowService in the Helm chart (it grants get on Secrets)"
                            ),
                        });
                    }
                    Err(e) => {
                        return Err(TargetError::new(
                            API,
                            ErrorCategory::Transient,
                            format!("reading Secret {shown} failed: {}", kube_error_summary(&e)),
                        ));
                    }
                };
                secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| String::from_utf8(v.0).ok().map(|v| (k, v)))
                    .collect()
            }
        };
        Credentials::from_map(&shown, &map)
    }
}

fn not_found(shown: &str) -> TargetError {
    TargetError {
        api: API,
        category: ErrorCategory::Credentials,
        code: Some("SecretNotFound".into()),
        message: format!(
            "Secret {shown} (spec.flowService.credentialsSecretRef.name) does not exist in the policy's namespace"
        ),
    }
}

/// A kube error without its response body (which could quote the object).
fn kube_error_summary(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("HTTP {} {}", s.code, s.reason),
        _ => "the Kubernetes API could not be reached".to_string(),
    }
}

fn read_dir_secret(
    dir: &std::path::Path,
    shown: &str,
) -> Result<BTreeMap<String, String>, TargetError> {
    let entries = std::fs::read_dir(dir).map_err(|_| not_found(shown))?;
    let mut out = BTreeMap::new();
    for e in entries.flatten() {
        let Some(key) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        // Mounted Secrets also hold `..data` links and dot files: keys never start with a dot.
        if key.starts_with('.') || !e.path().is_file() {
            continue;
        }
        if let Ok(v) = std::fs::read_to_string(e.path()) {
            out.insert(key, v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn debug_and_errors_never_show_the_secret() {
        let c = Credentials::from_map(
            "ns/aep",
            &map(&[
                ("clientId", "id"),
                ("clientSecret", "p@ss-Very-Secret"),
                ("orgId", "ORG@AdobeOrg"),
            ]),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("p@ss-Very-Secret"));
        let e = Credentials::from_map("ns/aep", &map(&[("clientSecret", "p@ss-Very-Secret")]))
            .unwrap_err();
        assert_eq!(e.category, ErrorCategory::Credentials);
        assert!(e.message.contains("clientId"), "{e}");
        assert!(!e.to_string().contains("p@ss-Very-Secret"));
    }

    #[test]
    fn a_rotated_secret_changes_the_fingerprint() {
        let a = Credentials::from_map(
            "s",
            &map(&[("clientId", "id"), ("clientSecret", "one"), ("orgId", "o")]),
        )
        .unwrap();
        let b = Credentials::from_map(
            "s",
            &map(&[("clientId", "id"), ("clientSecret", "two"), ("orgId", "o")]),
        )
        .unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn header_injection_through_a_secret_value_is_refused() {
        let e = Credentials::from_map(
            "s",
            &map(&[
                ("clientId", "id\r\nX-Evil: 1"),
                ("clientSecret", "x"),
                ("orgId", "o"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.code.as_deref(), Some("SecretKeyInvalid"));
    }

    #[test]
    fn a_directory_secret_reads_like_a_mounted_volume() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("aep");
        std::fs::create_dir(&s).unwrap();
        for (k, v) in [
            ("clientId", "id\n"),
            ("clientSecret", "sec"),
            ("orgId", "o"),
            (".hidden", "x"),
        ] {
            std::fs::write(s.join(k), v).unwrap();
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let store = SecretStore::Dir(dir.path().to_path_buf());
        let c = rt.block_on(store.credentials("", "aep")).unwrap();
        assert_eq!(c.client_id, "id");
        let missing = rt.block_on(store.credentials("", "nope")).unwrap_err();
        assert_eq!(missing.code.as_deref(), Some("SecretNotFound"));
    }
}
