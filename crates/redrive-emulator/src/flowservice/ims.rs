//! Adobe IMS stand-in: OAuth server-to-server (client credentials) tokens on the emulated clock.

use std::collections::{BTreeMap, HashMap};

use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::scenario::ImsClientSpec;
use crate::model::{Ms, ts};

#[derive(Debug, Clone)]
struct Client {
    secret: String,
    org: String,
    scopes: Vec<String>,
}

/// What the gateway knows about a presented access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImsToken {
    /// Client it was issued to.
    pub client_id: String,
    /// Organization of that client.
    pub org_id: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Emulated issue time.
    pub issued_at: jiff::Timestamp,
    /// Emulated expiry.
    pub expires_at: jiff::Timestamp,
    /// Revoked by a handle helper / admin call.
    pub revoked: bool,
}

#[derive(Debug, Clone)]
struct Token {
    client_id: String,
    scopes: Vec<String>,
    issued: Ms,
    expires: Ms,
    revoked: bool,
}

/// An IMS error: `{"error": ..., "error_description": ...}` with an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImsError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

fn ims_err(status: u16, error: &'static str, description: impl Into<String>) -> ImsError {
    ImsError {
        status,
        error,
        description: description.into(),
    }
}

/// Why a token is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenProblem {
    Unknown,
    Expired,
    Revoked,
}

#[derive(Debug, Default)]
pub(crate) struct Ims {
    clients: BTreeMap<String, Client>,
    tokens: HashMap<String, Token>,
}

impl Ims {
    pub fn put_client(&mut self, c: &ImsClientSpec, default_org: &str) {
        self.clients.insert(
            c.client_id.clone(),
            Client {
                secret: c.client_secret.clone(),
                org: c.org_id.clone().unwrap_or_else(|| default_org.to_string()),
                scopes: c.granted_scopes(),
            },
        );
    }

    pub fn has_client(&self, id: &str) -> bool {
        self.clients.contains_key(id)
    }

    pub fn org_of(&self, id: &str) -> Option<&str> {
        self.clients.get(id).map(|c| c.org.as_str())
    }

    pub fn rotate_secret(&mut self, id: &str, secret: &str) -> bool {
        match self.clients.get_mut(id) {
            Some(c) => {
                c.secret = secret.to_string();
                true
            }
            None => false,
        }
    }

    /// Revoke every live token of a client; returns how many.
    pub fn revoke(&mut self, id: &str) -> usize {
        let mut n = 0;
        for t in self.tokens.values_mut() {
            if t.client_id == id && !t.revoked {
                t.revoked = true;
                n += 1;
            }
        }
        n
    }

    /// `POST /ims/token/v3` with a parsed form body.
    pub fn issue(
        &mut self,
        form: &[(String, String)],
        now: Ms,
        ttl_ms: Ms,
        rng: &mut StdRng,
    ) -> Result<(String, Vec<String>), ImsError> {
        let get = |k: &str| {
            form.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let grant = get("grant_type")
            .ok_or_else(|| ims_err(400, "invalid_request", "missing grant_type parameter"))?;
        if grant != "client_credentials" {
            return Err(ims_err(
                400,
                "unsupported_grant_type",
                format!("unsupported grant_type {grant}"),
            ));
        }
        let id = get("client_id")
            .ok_or_else(|| ims_err(400, "invalid_request", "missing client_id parameter"))?;
        let client = self
            .clients
            .get(id)
            .ok_or_else(|| ims_err(400, "invalid_client", "invalid client_id parameter"))?;
        let secret = get("client_secret")
            .ok_or_else(|| ims_err(400, "invalid_request", "missing client_secret parameter"))?;
        if secret != client.secret {
            return Err(ims_err(
                400,
                "invalid_client",
                "invalid client_secret parameter",
            ));
        }
        let scopes: Vec<String> = match get("scope") {
            None => client.scopes.clone(),
            Some(s) => {
                let asked: Vec<String> = s
                    .split([',', ' '])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                if let Some(bad) = asked.iter().find(|a| !client.scopes.contains(a)) {
                    return Err(ims_err(
                        400,
                        "invalid_scope",
                        format!("Invalid scope ({bad})"),
                    ));
                }
                asked
            }
        };
        let a: u128 = rng.random();
        let b: u128 = rng.random();
        let token = format!("eyJhbGciOiJSUzI1NiJ9.emu-{a:032x}.{b:032x}");
        self.tokens.insert(
            token.clone(),
            Token {
                client_id: id.to_string(),
                scopes: scopes.clone(),
                issued: now,
                expires: now.saturating_add(ttl_ms),
                revoked: false,
            },
        );
        Ok((token, scopes))
    }

    /// The token if valid at `now`.
    pub fn check(&self, token: &str, now: Ms) -> Result<ImsToken, TokenProblem> {
        let t = self.tokens.get(token).ok_or(TokenProblem::Unknown)?;
        if t.revoked {
            return Err(TokenProblem::Revoked);
        }
        if now >= t.expires {
            return Err(TokenProblem::Expired);
        }
        Ok(self.view(t))
    }

    fn view(&self, t: &Token) -> ImsToken {
        ImsToken {
            client_id: t.client_id.clone(),
            org_id: self.org_of(&t.client_id).unwrap_or_default().to_string(),
            scopes: t.scopes.clone(),
            issued_at: ts(t.issued),
            expires_at: ts(t.expires),
            revoked: t.revoked,
        }
    }

    /// Every issued token (whatever its state), for inspection.
    pub fn token(&self, token: &str) -> Option<ImsToken> {
        self.tokens.get(token).map(|t| self.view(t))
    }
}
