//! AWS STS stand-in on the same `POST /` as Step Functions (awsQuery protocol).
//!
//! Requests with `Content-Type: application/x-www-form-urlencoded` and no `X-Amz-Target` are STS
//! calls. `AssumeRole` checks the configured roles (ExternalId condition, DurationSeconds limits),
//! issues `ASIA…` session credentials whose expiry runs on the emulated clock, and records every
//! call in the STS ledger. Step Functions calls signed with an issued key are then authenticated
//! (expired / unknown session keys are rejected) and limited to the role's state machines.
//! `GetCallerIdentity` is implemented for convenience. See `docs/emulator.md`.

use std::collections::{BTreeMap, HashMap};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::api::RequestMeta;
use super::arn;
use super::model::{HOUR, Ms, SEC, sha2_hex, ts};
use super::scenario::{Dur, ScenarioError};
use super::state::{CallResult, EmulatorState, lock};

/// XML namespace of every STS response.
pub(crate) const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
const STS_VERSION: &str = "2011-06-15";
/// `DurationSeconds` when the request does not give one.
const DEFAULT_DURATION_S: i64 = 3600;
const MIN_DURATION_S: i64 = 900;
const MAX_DURATION_S: i64 = 43_200;
/// A role's `MaxSessionDuration` when the spec does not give one (AWS default).
const DEFAULT_MAX_SESSION: Ms = HOUR;
/// Role chaining (assuming a role with assumed-role credentials) is limited to one hour.
const CHAINING_LIMIT_S: i64 = 3600;

// ------------------------------------------------------------------------------------------
// Public types

/// A role that `AssumeRole` may assume (scenario `roles:` entry, or [`EmulatorState::add_role`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleSpec {
    /// `arn:aws:iam::<12 digits>:role/[path/]name`; AssumeRole must name it exactly.
    pub arn: String,
    /// Trust-policy condition on `sts:ExternalId`: when non-empty, AssumeRole must send one of
    /// these. Empty = no condition (an ExternalId sent anyway is ignored, as in AWS).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_ids: Vec<String>,
    /// State machines the role's sessions may act on: globs (`*` = any run of characters,
    /// `?` = one character) matched against the state machine's name or ARN. Absent = all;
    /// an empty list = none. ListStateMachines is never restricted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_machines: Option<Vec<String>>,
    /// CodePipeline pipelines the role's sessions may act on: globs matched against the
    /// pipeline's name or ARN. Absent = all (so roles written before CodePipeline existed keep
    /// their meaning); an empty list = none. ListPipelines is never restricted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipelines: Option<Vec<String>>,
    /// Lifetime of every credential this role issues, overriding `DurationSeconds` (so tests can
    /// use lifetimes below STS's 900 s minimum). Rounded down to whole seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_ttl: Option<Dur>,
    /// The role's `MaxSessionDuration` (1 h to 12 h, default 1 h): a larger `DurationSeconds` is a
    /// `ValidationError`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_session_duration: Option<Dur>,
}

impl RoleSpec {
    /// A role with no ExternalId condition and access to every state machine.
    pub fn new(arn: &str) -> Self {
        RoleSpec {
            arn: arn.to_string(),
            ..Default::default()
        }
    }
    /// Require this ExternalId (may be called several times: any of them is accepted).
    pub fn external_id(mut self, id: &str) -> Self {
        self.external_ids.push(id.to_string());
        self
    }
    /// Restrict the role to these state machines (globs over names or ARNs).
    pub fn state_machines<S: Into<String>>(mut self, globs: impl IntoIterator<Item = S>) -> Self {
        self.state_machines = Some(globs.into_iter().map(Into::into).collect());
        self
    }
    /// Restrict the role to these CodePipeline pipelines (globs over names or ARNs).
    pub fn pipelines<S: Into<String>>(mut self, globs: impl IntoIterator<Item = S>) -> Self {
        self.pipelines = Some(globs.into_iter().map(Into::into).collect());
        self
    }
    /// Lifetime of the credentials this role issues (overrides `DurationSeconds`).
    pub fn credential_ttl(mut self, d: std::time::Duration) -> Self {
        self.credential_ttl = Some(Dur(d));
        self
    }
    /// The role's `MaxSessionDuration`.
    pub fn max_session_duration(mut self, d: std::time::Duration) -> Self {
        self.max_session_duration = Some(Dur(d));
        self
    }

    /// Check the spec (ARN shape, ExternalId constraints, durations).
    pub fn validate(&self) -> Result<(), String> {
        if RoleArn::parse(&self.arn).is_none() {
            return Err(format!(
                "role arn '{}' is not of the form arn:aws:iam::<12 digits>:role/<name>",
                self.arn
            ));
        }
        for id in &self.external_ids {
            if let Some(e) = external_id_problem(id) {
                return Err(format!("role {}: externalIds: {e}", self.arn));
            }
        }
        if let Some(globs) = &self.state_machines
            && globs.iter().any(String::is_empty)
        {
            return Err(format!("role {}: empty stateMachines entry", self.arn));
        }
        if let Some(globs) = &self.pipelines
            && globs.iter().any(String::is_empty)
        {
            return Err(format!("role {}: empty pipelines entry", self.arn));
        }
        if let Some(d) = self.credential_ttl
            && d.0.as_secs() == 0
        {
            return Err(format!(
                "role {}: credentialTtl must be at least 1s",
                self.arn
            ));
        }
        if let Some(d) = self.max_session_duration
            && !(3600..=43_200).contains(&d.0.as_secs())
        {
            return Err(format!(
                "role {}: maxSessionDuration must be between 1h and 12h",
                self.arn
            ));
        }
        Ok(())
    }

    /// True if the role's sessions may act on the state machine `name` / `arn`.
    pub fn allows(&self, name: &str, arn: &str) -> bool {
        allows(self.state_machines.as_deref(), name, arn)
    }

    /// True if the role's sessions may act on the pipeline `name` / `arn`.
    pub fn allows_pipeline(&self, name: &str, arn: &str) -> bool {
        allows(self.pipelines.as_deref(), name, arn)
    }
}

/// One issued session (`AssumeRole` success).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StsSession {
    /// `ASIA` + 16 characters.
    pub access_key_id: String,
    /// The assumed role.
    pub role_arn: String,
    /// ExternalId sent with AssumeRole.
    pub external_id: Option<String>,
    /// `RoleSessionName`.
    pub role_session_name: String,
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub assumed_role_arn: String,
    /// `AROA…:SESSION`.
    pub assumed_role_id: String,
    /// Emulated time of issue.
    pub issued_at: jiff::Timestamp,
    /// Expiry on the emulated clock (whole seconds); the key is valid while `now < expiration`.
    pub expiration: jiff::Timestamp,
    /// Access key id that called AssumeRole.
    pub caller_access_key_id: Option<String>,
}

/// What happened to one `AssumeRole` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum StsOutcome {
    /// Credentials issued.
    Issued {
        /// The new `ASIA…` key.
        access_key_id: String,
        /// Their expiry (emulated clock).
        expiration: jiff::Timestamp,
    },
    /// 403 `AccessDenied`: unknown role, or ExternalId missing / not accepted.
    AccessDenied {
        /// The message returned.
        message: String,
    },
    /// 400 `ValidationError`: constraint violation or DurationSeconds over a limit.
    ValidationError {
        /// The message returned.
        message: String,
    },
    /// 400 `MissingParameter`: no `RoleArn` or `RoleSessionName`.
    MissingParameter {
        /// The message returned.
        message: String,
    },
    /// 403 caller problem before anything else: `MissingAuthenticationToken`, `ExpiredToken`
    /// (expired session key) or `InvalidClientTokenId` (unknown session key or wrong token).
    InvalidCaller {
        /// Error code.
        code: String,
        /// The message returned.
        message: String,
    },
}

impl StsOutcome {
    /// True if credentials were issued.
    pub fn is_issued(&self) -> bool {
        matches!(self, StsOutcome::Issued { .. })
    }
    /// The STS error code (`AccessDenied`, ...) or `Issued`.
    pub fn code(&self) -> &str {
        match self {
            StsOutcome::Issued { .. } => "Issued",
            StsOutcome::AccessDenied { .. } => "AccessDenied",
            StsOutcome::ValidationError { .. } => "ValidationError",
            StsOutcome::MissingParameter { .. } => "MissingParameter",
            StsOutcome::InvalidCaller { code, .. } => code,
        }
    }
}

/// One `AssumeRole` call, whatever its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StsLedgerEntry {
    /// `RoleArn` as sent (empty if missing).
    pub role_arn: String,
    /// `RoleSessionName` as sent.
    pub role_session_name: Option<String>,
    /// `ExternalId` as sent.
    pub external_id: Option<String>,
    /// `DurationSeconds` as sent (raw text).
    pub duration_seconds: Option<String>,
    /// Access key id of the caller (SigV4 `Credential=`).
    pub caller_access_key_id: Option<String>,
    /// Outcome.
    pub outcome: StsOutcome,
    /// Emulated time of the call.
    pub at: jiff::Timestamp,
}

impl StsLedgerEntry {
    /// The issued access key id, if the call succeeded.
    pub fn issued_key(&self) -> Option<&str> {
        match &self.outcome {
            StsOutcome::Issued { access_key_id, .. } => Some(access_key_id),
            _ => None,
        }
    }
}

// ------------------------------------------------------------------------------------------
// State

struct Session {
    info: StsSession,
    session_token: String,
    expires_ms: Ms,
}

/// Roles, issued sessions and the STS ledger.
pub(crate) struct StsState {
    roles: BTreeMap<String, RoleSpec>,
    sessions: HashMap<String, Session>,
    ledger: Vec<StsLedgerEntry>,
    rng: StdRng,
}

/// An authenticated session as seen by a Step Functions call.
#[derive(Debug, Clone)]
pub(crate) struct SessionView {
    pub assumed_role_arn: String,
    /// Allowed state machine globs (None = all); a role removed since issue allows nothing.
    pub allowed: Option<Vec<String>>,
    /// Allowed pipeline globs (None = all); a role removed since issue allows nothing.
    pub allowed_pipelines: Option<Vec<String>>,
}

impl SessionView {
    pub(crate) fn allows(&self, name: &str, arn: &str) -> bool {
        allows(self.allowed.as_deref(), name, arn)
    }
    pub(crate) fn allows_pipeline(&self, name: &str, arn: &str) -> bool {
        allows(self.allowed_pipelines.as_deref(), name, arn)
    }
}

/// Why a caller's key is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// A known session key past its expiry.
    Expired,
    /// An `ASIA…` key the emulator never issued, or a wrong/missing session token.
    Invalid,
}

pub(crate) enum Caller {
    /// Static (or no) key: full access, as before STS existed.
    Static,
    /// An issued session.
    Session(Box<StsSession>),
}

impl StsState {
    pub(crate) fn new(seed: u64) -> Self {
        let d = sha2_hex(&format!("redrive-emulator-sts:{seed}"));
        let s = u64::from_str_radix(&d[..16], 16).unwrap_or(seed);
        StsState {
            roles: BTreeMap::new(),
            sessions: HashMap::new(),
            ledger: Vec::new(),
            rng: StdRng::seed_from_u64(s),
        }
    }

    /// Add or replace (by ARN) roles that were validated already.
    pub(crate) fn put_roles(&mut self, roles: &[RoleSpec]) {
        for r in roles {
            self.roles.insert(r.arn.clone(), r.clone());
        }
    }

    pub(crate) fn remove_role(&mut self, arn: &str) -> bool {
        self.roles.remove(arn).is_some()
    }

    pub(crate) fn roles(&self) -> Vec<RoleSpec> {
        self.roles.values().cloned().collect()
    }

    pub(crate) fn ledger(&self) -> Vec<StsLedgerEntry> {
        self.ledger.clone()
    }

    pub(crate) fn session(&self, akid: &str) -> Option<StsSession> {
        self.sessions.get(akid).map(|s| s.info.clone())
    }

    pub(crate) fn sessions(&self) -> Vec<StsSession> {
        let mut v: Vec<StsSession> = self.sessions.values().map(|s| s.info.clone()).collect();
        v.sort_by(|a, b| (a.issued_at, &a.access_key_id).cmp(&(b.issued_at, &b.access_key_id)));
        v
    }

    fn resolve(
        &self,
        akid: Option<&str>,
        token: Option<&str>,
        now: Ms,
    ) -> Result<Option<&Session>, AuthFailure> {
        let Some(akid) = akid else { return Ok(None) };
        match self.sessions.get(akid) {
            Some(s) if token != Some(s.session_token.as_str()) => Err(AuthFailure::Invalid),
            Some(s) if now >= s.expires_ms => Err(AuthFailure::Expired),
            Some(s) => Ok(Some(s)),
            None if akid.starts_with("ASIA") => Err(AuthFailure::Invalid),
            None => Ok(None),
        }
    }

    /// Authenticate a Step Functions caller: `Ok(None)` for static keys (full access).
    pub(crate) fn authenticate(
        &self,
        meta: &RequestMeta,
        now: Ms,
    ) -> Result<Option<SessionView>, AuthFailure> {
        let s = self.resolve(
            meta.access_key_id.as_deref(),
            meta.session_token.as_deref(),
            now,
        )?;
        Ok(s.map(|s| {
            let role = self.roles.get(&s.info.role_arn);
            SessionView {
                assumed_role_arn: s.info.assumed_role_arn.clone(),
                allowed: role.map_or(Some(Vec::new()), |r| r.state_machines.clone()),
                allowed_pipelines: role.map_or(Some(Vec::new()), |r| r.pipelines.clone()),
            }
        }))
    }

    fn random(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| alphabet[self.rng.random_range(0..alphabet.len())] as char)
            .collect()
    }
}

/// Validate roles (all or nothing).
pub(crate) fn validate_roles(roles: &[RoleSpec]) -> Result<(), ScenarioError> {
    for r in roles {
        r.validate().map_err(ScenarioError::Invalid)?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Helpers

const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const SECRET_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+";

/// `*` matches any run of characters, `?` exactly one.
pub(crate) fn glob_match(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

fn allows(globs: Option<&[String]>, name: &str, arn: &str) -> bool {
    match globs {
        None => true,
        Some(g) => g.iter().any(|p| glob_match(p, name) || glob_match(p, arn)),
    }
}

/// A parsed role ARN.
struct RoleArn<'a> {
    partition: &'a str,
    account: &'a str,
    name: &'a str,
}

impl<'a> RoleArn<'a> {
    fn parse(s: &'a str) -> Option<Self> {
        let rest = s.strip_prefix("arn:")?;
        let (partition, rest) = rest.split_once(':')?;
        if !matches!(
            partition,
            "aws" | "aws-cn" | "aws-us-gov" | "aws-iso" | "aws-iso-b"
        ) {
            return None;
        }
        let rest = rest.strip_prefix("iam::")?;
        let (account, resource) = rest.split_once(':')?;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let path_name = resource.strip_prefix("role/")?;
        if path_name.is_empty()
            || path_name.ends_with('/')
            || !path_name.chars().all(|c| word(c) || "+=,.@-/".contains(c))
        {
            return None;
        }
        let name = path_name.rsplit('/').next()?;
        if name.is_empty() || name.len() > 64 {
            return None;
        }
        Some(RoleArn {
            partition,
            account,
            name,
        })
    }
}

/// `\w` in AWS's patterns: ASCII letters, digits and `_`.
fn word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn session_name_ok(s: &str) -> bool {
    s.chars().all(|c| word(c) || "+=,.@-".contains(c))
}

fn external_id_ok(s: &str) -> bool {
    s.chars().all(|c| word(c) || "+=,.@:/-".contains(c))
}

fn external_id_problem(id: &str) -> Option<String> {
    let n = id.chars().count();
    if !(2..=1224).contains(&n) {
        Some(format!("'{id}' must be 2 to 1224 characters"))
    } else if !external_id_ok(id) {
        Some(format!("'{id}' must match [\\w+=,.@:/-]*"))
    } else {
        None
    }
}

/// Stable 17-character id suffix (`AROA…`, `AIDA…`).
fn stable_id(prefix: &str, seed: &str) -> String {
    let h = sha2_hex(seed);
    let body: String = h
        .as_bytes()
        .chunks(2)
        .take(17)
        .map(|c| {
            let v = u8::from_str_radix(std::str::from_utf8(c).unwrap_or("00"), 16).unwrap_or(0);
            UPPER_ALNUM[v as usize % UPPER_ALNUM.len()] as char
        })
        .collect();
    format!("{prefix}{body}")
}

/// Decode `application/x-www-form-urlencoded` (later duplicates win).
pub(crate) fn parse_form(body: &[u8]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for pair in body.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        out.insert(form_decode(k), form_decode(v));
    }
    out
}

fn form_decode(s: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escape text for XML element content (quotes need no escaping there).
pub(crate) fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            c => o.push(c),
        }
    }
    o
}

// ------------------------------------------------------------------------------------------
// Request handling

/// An STS response: status, XML body and the request id (also sent as `x-amzn-RequestId`).
pub(crate) struct StsReply {
    pub status: u16,
    pub body: String,
    pub request_id: String,
}

struct StsError {
    status: u16,
    code: &'static str,
    message: String,
}

impl StsError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        StsError {
            status,
            code,
            message: message.into(),
        }
    }
    fn xml(&self, request_id: &str) -> String {
        format!(
            "<ErrorResponse xmlns=\"{STS_NS}\">\n  <Error>\n    <Type>Sender</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
            self.code,
            xml_escape(&self.message)
        )
    }
    fn outcome(&self) -> StsOutcome {
        let message = self.message.clone();
        match self.code {
            "AccessDenied" => StsOutcome::AccessDenied { message },
            "ValidationError" => StsOutcome::ValidationError { message },
            "MissingParameter" => StsOutcome::MissingParameter { message },
            code => StsOutcome::InvalidCaller {
                code: code.to_string(),
                message,
            },
        }
    }
}

fn auth_error(f: AuthFailure) -> StsError {
    match f {
        AuthFailure::Expired => StsError::new(
            403,
            "ExpiredToken",
            "The security token included in the request is expired",
        ),
        AuthFailure::Invalid => StsError::new(
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ),
    }
}

/// Collects coral-style constraint messages.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn len(&mut self, member: &str, v: Option<&str>, min: usize, max: usize) -> bool {
        let Some(v) = v else { return true };
        let n = v.chars().count();
        let bound = if n < min {
            format!("greater than or equal to {min}")
        } else if n > max {
            format!("less than or equal to {max}")
        } else {
            return true;
        };
        self.0.push(format!(
            "Value '{v}' at '{member}' failed to satisfy constraint: Member must have length {bound}"
        ));
        false
    }
    fn pattern(&mut self, member: &str, v: Option<&str>, ok: bool, pattern: &str) {
        if let (Some(v), false) = (v, ok) {
            self.0.push(format!(
                "Value '{v}' at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}"
            ));
        }
    }
    fn finish(self) -> Result<(), StsError> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(StsError::new(
                400,
                "ValidationError",
                format!("1 validation error detected: {}", self.0[0]),
            )),
            n => Err(StsError::new(
                400,
                "ValidationError",
                format!("{n} validation errors detected: {}", self.0.join("; ")),
            )),
        }
    }
}

/// Identity of a caller, for messages and GetCallerIdentity: (arn, user id, account).
fn identity(state: &EmulatorState, caller: &Caller) -> (String, String, String) {
    match caller {
        Caller::Session(s) => {
            let account = RoleArn::parse(&s.role_arn)
                .map_or(state.account.clone(), |r| r.account.to_string());
            (
                s.assumed_role_arn.clone(),
                s.assumed_role_id.clone(),
                account,
            )
        }
        Caller::Static => (
            format!(
                "arn:{}:iam::{}:user/emulator",
                arn::partition(&state.region),
                state.account
            ),
            stable_id("AIDA", &format!("user:{}", state.account)),
            state.account.clone(),
        ),
    }
}

/// Handle one STS request. `signed` = the request carries `Authorization: AWS4-HMAC-SHA256 …`.
pub(crate) fn handle(
    state: &EmulatorState,
    signed: bool,
    meta: &RequestMeta,
    body: &[u8],
) -> StsReply {
    let request_id = uuid::Uuid::new_v4().to_string();
    let params = parse_form(body);
    let now = state.now_ms();
    let action = params.get("Action").map(String::as_str);
    let api = match action {
        Some("AssumeRole") => "AssumeRole",
        Some("GetCallerIdentity") => "GetCallerIdentity",
        _ => "Unknown",
    };
    let result = {
        let mut sts = lock(&state.sts);
        let caller = if signed {
            sts.resolve(
                meta.access_key_id.as_deref(),
                meta.session_token.as_deref(),
                now,
            )
            .map(|s| match s {
                Some(s) => Caller::Session(Box::new(s.info.clone())),
                None => Caller::Static,
            })
            .map_err(auth_error)
        } else {
            Err(StsError::new(
                403,
                "MissingAuthenticationToken",
                "Request is missing Authentication Token",
            ))
        };
        match api {
            "AssumeRole" => assume_role(state, &mut sts, caller, meta, &params, now, &request_id),
            "GetCallerIdentity" => caller.map(|c| {
                let (arn, user_id, account) = identity(state, &c);
                format!(
                    "<GetCallerIdentityResponse xmlns=\"{STS_NS}\">\n  <GetCallerIdentityResult>\n    <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{}</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n",
                    xml_escape(&arn),
                    xml_escape(&user_id),
                    xml_escape(&account)
                )
            }),
            _ => caller.and_then(|_| {
                Err(match action {
                    None | Some("") => StsError::new(400, "MissingAction", "Missing Action"),
                    Some(a) => StsError::new(
                        400,
                        "InvalidAction",
                        format!("Could not find operation {a} for version {STS_VERSION}"),
                    ),
                })
            }),
        }
    };
    if !signed {
        state.record_missing_auth();
    }
    match result {
        Ok(body) => {
            state.record_call(api, CallResult::Ok);
            StsReply {
                status: 200,
                body,
                request_id,
            }
        }
        Err(e) => {
            state.record_call(api, CallResult::Error(e.code.to_string()));
            StsReply {
                status: e.status,
                body: e.xml(&request_id),
                request_id,
            }
        }
    }
}

fn assume_role(
    state: &EmulatorState,
    sts: &mut StsState,
    caller: Result<Caller, StsError>,
    meta: &RequestMeta,
    p: &BTreeMap<String, String>,
    now: Ms,
    request_id: &str,
) -> Result<String, StsError> {
    let role_arn = p.get("RoleArn").map(String::as_str);
    let session_name = p.get("RoleSessionName").map(String::as_str);
    let external_id = p.get("ExternalId").map(String::as_str);
    let duration_raw = p.get("DurationSeconds").map(String::as_str);
    let result = (|| {
        let caller = caller?;
        for (k, v) in [("RoleArn", role_arn), ("RoleSessionName", session_name)] {
            if v.is_none() {
                return Err(StsError::new(
                    400,
                    "MissingParameter",
                    format!("The request must contain the parameter {k}"),
                ));
            }
        }
        let mut c = Checks::default();
        if c.len("roleArn", role_arn, 20, 2048) {
            c.pattern(
                "roleArn",
                role_arn,
                role_arn.and_then(RoleArn::parse).is_some(),
                "arn:aws:iam::\\d{12}:role/[\\w+=,.@/-]+",
            );
        }
        if c.len("roleSessionName", session_name, 2, 64) {
            c.pattern(
                "roleSessionName",
                session_name,
                session_name.is_some_and(session_name_ok),
                "[\\w+=,.@-]*",
            );
        }
        if c.len("externalId", external_id, 2, 1224) {
            c.pattern(
                "externalId",
                external_id,
                external_id.is_some_and(external_id_ok),
                "[\\w+=,.@:/-]*",
            );
        }
        let duration = match duration_raw {
            None => None,
            Some(raw) => match raw.trim().parse::<i64>() {
                Ok(d) if d < MIN_DURATION_S => {
                    c.0.push(format!("Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to {MIN_DURATION_S}"));
                    None
                }
                Ok(d) if d > MAX_DURATION_S => {
                    c.0.push(format!("Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to {MAX_DURATION_S}"));
                    None
                }
                Ok(d) => Some(d),
                Err(_) => {
                    c.0.push(format!(
                        "Value '{raw}' at 'durationSeconds' failed to satisfy constraint: Member must be an integer"
                    ));
                    None
                }
            },
        };
        c.finish()?;
        let (role_arn, session_name) = (role_arn.unwrap_or(""), session_name.unwrap_or(""));
        let (caller_arn, _, _) = identity(state, &caller);
        let denied = || {
            StsError::new(
                403,
                "AccessDenied",
                format!(
                    "User: {caller_arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
                ),
            )
        };
        let role = sts.roles.get(role_arn).cloned().ok_or_else(denied)?;
        if !role.external_ids.is_empty()
            && !external_id.is_some_and(|e| role.external_ids.iter().any(|x| x == e))
        {
            return Err(denied());
        }
        let requested = duration.unwrap_or(DEFAULT_DURATION_S);
        let max_session = role
            .max_session_duration
            .map_or(DEFAULT_MAX_SESSION, Dur::as_ms);
        if requested.saturating_mul(SEC) > max_session {
            return Err(StsError::new(
                400,
                "ValidationError",
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
            ));
        }
        if matches!(caller, Caller::Session(_)) && duration.is_some_and(|d| d > CHAINING_LIMIT_S) {
            return Err(StsError::new(
                400,
                "ValidationError",
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
            ));
        }
        let ttl = role
            .credential_ttl
            .map_or(requested.saturating_mul(SEC), Dur::as_ms);
        let expires_ms = now.saturating_add(ttl) / SEC * SEC;
        let parsed = RoleArn::parse(role_arn).ok_or_else(denied)?;
        let assumed_role_arn = format!(
            "arn:{}:sts::{}:assumed-role/{}/{session_name}",
            parsed.partition, parsed.account, parsed.name
        );
        let assumed_role_id = format!(
            "{}:{session_name}",
            stable_id("AROA", &format!("role:{role_arn}"))
        );
        let access_key_id = loop {
            let k = format!("ASIA{}", sts.random(UPPER_ALNUM, 16));
            if !sts.sessions.contains_key(&k) {
                break k;
            }
        };
        let secret = sts.random(SECRET_CHARS, 40);
        let token = format!("IQoJb3JpZ2luX2VjE{}", sts.random(SECRET_CHARS, 380));
        let info = StsSession {
            access_key_id: access_key_id.clone(),
            role_arn: role_arn.to_string(),
            external_id: external_id.map(str::to_string),
            role_session_name: session_name.to_string(),
            assumed_role_arn: assumed_role_arn.clone(),
            assumed_role_id: assumed_role_id.clone(),
            issued_at: ts(now),
            expiration: ts(expires_ms),
            caller_access_key_id: meta.access_key_id.clone(),
        };
        sts.sessions.insert(
            access_key_id.clone(),
            Session {
                info,
                session_token: token.clone(),
                expires_ms,
            },
        );
        let xml = format!(
            "<AssumeRoleResponse xmlns=\"{STS_NS}\">\n  <AssumeRoleResult>\n    <Credentials>\n      <AccessKeyId>{access_key_id}</AccessKeyId>\n      <SecretAccessKey>{}</SecretAccessKey>\n      <SessionToken>{}</SessionToken>\n      <Expiration>{}</Expiration>\n    </Credentials>\n    <AssumedRoleUser>\n      <AssumedRoleId>{}</AssumedRoleId>\n      <Arn>{}</Arn>\n    </AssumedRoleUser>\n  </AssumeRoleResult>\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n</AssumeRoleResponse>\n",
            xml_escape(&secret),
            xml_escape(&token),
            ts(expires_ms),
            xml_escape(&assumed_role_id),
            xml_escape(&assumed_role_arn),
        );
        Ok((xml, access_key_id, ts(expires_ms)))
    })();
    let outcome = match &result {
        Ok((_, key, expiration)) => StsOutcome::Issued {
            access_key_id: key.clone(),
            expiration: *expiration,
        },
        Err(e) => e.outcome(),
    };
    sts.ledger.push(StsLedgerEntry {
        role_arn: role_arn.unwrap_or_default().to_string(),
        role_session_name: session_name.map(str::to_string),
        external_id: external_id.map(str::to_string),
        duration_seconds: duration_raw.map(str::to_string),
        caller_access_key_id: meta.access_key_id.clone(),
        outcome,
        at: ts(now),
    });
    result.map(|(xml, _, _)| xml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("orders", "orders"));
        assert!(!glob_match("orders", "orders-2"));
        assert!(glob_match("orders*", "orders-2"));
        assert!(glob_match(
            "*:stateMachine:orders-?",
            "arn:aws:states:x:1:stateMachine:orders-2"
        ));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn form_decoding() {
        let p = parse_form(
            b"Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fx&A=b+c&bad=%zz&t=%4",
        );
        assert_eq!(p["Action"], "AssumeRole");
        assert_eq!(p["RoleArn"], "arn:aws:iam::1:role/x");
        assert_eq!(p["A"], "b c");
        assert_eq!(p["bad"], "%zz");
        assert_eq!(p["t"], "%4");
    }

    #[test]
    fn role_arns() {
        let r = RoleArn::parse("arn:aws:iam::123456789012:role/path/to/Name").unwrap();
        assert_eq!(
            (r.partition, r.account, r.name),
            ("aws", "123456789012", "Name")
        );
        assert!(RoleArn::parse("arn:aws:iam::12345678901:role/x").is_none());
        assert!(RoleArn::parse("arn:aws:iam::123456789012:user/x").is_none());
        assert!(RoleArn::parse("arn:aws:iam::123456789012:role/").is_none());
        assert!(RoleArn::parse("arn:aws:iam::123456789012:role/a b").is_none());
    }
}
