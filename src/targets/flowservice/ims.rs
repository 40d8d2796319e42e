//! IMS OAuth server-to-server tokens (`POST /ims/token/v3`, client credentials, form body),
//! cached per credentials fingerprint and refreshed before they expire. There is no refresh
//! token: a new one is requested. A token is never logged, and lives in a [`SecretString`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::Method;
use secrecy::{ExposeSecret, SecretString};

use super::credentials::Credentials;
use super::http::Http;
use super::run::ImsToken;
use crate::targets::{ErrorCategory, TargetError};

const API: &str = "ImsToken";

/// Used when IMS answers without `expires_in` (it documents ~24 h).
const DEFAULT_TTL: Duration = Duration::from_secs(3600);

struct Cached {
    token: SecretString,
    refresh_at: Instant,
}

/// Tokens by credentials fingerprint.
pub struct Ims {
    http: Http,
    url: String,
    tokens: Mutex<HashMap<[u8; 32], Cached>>,
}

/// When to fetch a new token: at 90 % of its life, and at least a minute before it ends when it
/// lives long enough for that (short-lived tokens are still reused for 90 % of their life).
pub fn refresh_after(expires_in: Duration) -> Duration {
    let ninety = expires_in.mul_f64(0.9);
    if expires_in >= Duration::from_secs(600) {
        ninety.min(expires_in - Duration::from_secs(60))
    } else {
        ninety
    }
}

impl Ims {
    pub fn new(http: Http, url: String) -> Self {
        Self {
            http,
            url,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// A valid token for `creds`, from the cache or IMS.
    pub async fn token(&self, creds: &Credentials) -> Result<SecretString, TargetError> {
        let key = creds.fingerprint();
        {
            let mut tokens = self.tokens.lock().expect("token cache lock");
            // Drop every expired entry: rotated secrets must not pile up.
            let now = Instant::now();
            tokens.retain(|_, c| c.refresh_at > now);
            if let Some(c) = tokens.get(&key) {
                return Ok(c.token.clone());
            }
        }
        // The serializer is not Send: build the body before any await.
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials")
                .append_pair("client_id", &creds.client_id)
                .append_pair("client_secret", creds.client_secret.expose_secret());
            if let Some(scopes) = &creds.scopes {
                form.append_pair("scope", scopes);
            }
            form.finish().into_bytes()
        };
        let resp = self
            .http
            .send(
                API,
                Method::POST,
                &self.url,
                &[("accept", "application/json")],
                Some(("application/x-www-form-urlencoded", body)),
            )
            .await?;
        if !resp.status.is_success() {
            let mut e = resp.error(API);
            e.message = format!(
                "IMS refused client {}: {} (check clientId, clientSecret and scopes in the credentials Secret)",
                creds.client_id, e.message
            );
            return Err(e);
        }
        let parsed: ImsToken = serde_json::from_slice(&resp.body).map_err(|_| {
            TargetError::new(
                API,
                ErrorCategory::Transient,
                "IMS answered without an access_token",
            )
        })?;
        if parsed.access_token.is_empty() {
            return Err(TargetError::new(
                API,
                ErrorCategory::Transient,
                "IMS answered with an empty access_token",
            ));
        }
        let ttl = parsed
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TTL);
        let token = SecretString::from(parsed.access_token);
        self.tokens.lock().expect("token cache lock").insert(
            key,
            Cached {
                token: token.clone(),
                refresh_at: Instant::now() + refresh_after(ttl),
            },
        );
        Ok(token)
    }

    /// Forget the token of `creds` (Platform answered 401013: not valid any more).
    pub fn invalidate(&self, creds: &Credentials) {
        self.tokens
            .lock()
            .expect("token cache lock")
            .remove(&creds.fingerprint());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_refreshed_before_they_expire() {
        assert_eq!(
            refresh_after(Duration::from_secs(86_399)),
            Duration::from_secs_f64(86_399.0 * 0.9)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(600)),
            Duration::from_secs(540)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(3)),
            Duration::from_millis(2700)
        );
    }
}
