//! Classified errors from a target's API.

use std::fmt;

use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

/// What kind of failure, for retries, metrics labels, events and status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCategory {
    /// Rate limited by the service: back off and retry later.
    Throttled,
    /// The caller lacks permission (or its credentials are invalid or expired).
    AccessDenied,
    /// The resource (state machine, execution) does not exist.
    NotFound,
    /// The request was rejected as invalid (bad ARN, bad parameter).
    Invalid,
    /// The service cannot do this for this resource type (e.g. EXPRESS state machines).
    Unsupported,
    /// A service-side quota is full (e.g. open executions): retry later.
    LimitExceeded,
    /// Server error, timeout, dropped connection, unreadable response: retry later.
    Transient,
    /// Credentials could not be obtained (e.g. role assumption failed).
    Credentials,
    /// Anything else.
    Unexpected,
}

impl ErrorCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::Throttled => "throttled",
            ErrorCategory::AccessDenied => "access_denied",
            ErrorCategory::NotFound => "not_found",
            ErrorCategory::Invalid => "invalid",
            ErrorCategory::Unsupported => "unsupported",
            ErrorCategory::LimitExceeded => "limit_exceeded",
            ErrorCategory::Transient => "transient",
            ErrorCategory::Credentials => "credentials",
            ErrorCategory::Unexpected => "unexpected",
        }
    }

    /// Whether the same call may succeed later without any change by a human.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCategory::Throttled | ErrorCategory::LimitExceeded | ErrorCategory::Transient
        )
    }
}

impl ErrorCategory {
    /// What a user should check, for status conditions and events.
    pub fn hint(self) -> &'static str {
        match self {
            ErrorCategory::Throttled => "the service is rate limiting; retried automatically",
            ErrorCategory::AccessDenied => {
                "check the permissions of the role or client (docs/iam.md)"
            }
            ErrorCategory::NotFound => "check the names and ids in the policy's spec",
            ErrorCategory::Invalid => "check the policy's spec",
            ErrorCategory::Unsupported => "the service cannot do this for this workflow",
            ErrorCategory::LimitExceeded => "a service quota is full; retried at the next poll",
            ErrorCategory::Transient => "retried at the next poll",
            ErrorCategory::Credentials => {
                "check the role's trust policy (ExternalId = the policy's namespace) or the credentials Secret"
            }
            ErrorCategory::Unexpected => "see the operator's logs at debug level",
        }
    }
}

impl fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from one API call, classified.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{api}: {message} ({category}{})", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
pub struct TargetError {
    pub api: &'static str,
    pub category: ErrorCategory,
    /// The service's error code, when it sent one.
    pub code: Option<String>,
    pub message: String,
}

impl TargetError {
    pub fn new(api: &'static str, category: ErrorCategory, message: impl Into<String>) -> Self {
        Self {
            api,
            category,
            code: None,
            message: message.into(),
        }
    }

    /// Classify an SDK error. Never panics, whatever the response looked like (HTML error pages
    /// from proxies arrive as unhandled errors without a code: classified by HTTP status).
    pub fn from_sdk<E>(api: &'static str, err: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match err {
            SdkError::ServiceError(ctx) => {
                let code = ctx.err().code().map(str::to_string);
                let status = ctx.raw().status().as_u16();
                let message = ctx
                    .err()
                    .message()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("HTTP {status} without an error message"));
                let category = match code.as_deref() {
                    Some(c) => category_of_code(c).unwrap_or_else(|| category_of_status(status)),
                    None => category_of_status(status),
                };
                Self {
                    api,
                    category,
                    code,
                    message: clip(&message),
                }
            }
            SdkError::TimeoutError(_) => Self::new(api, ErrorCategory::Transient, "timed out"),
            SdkError::DispatchFailure(e) => {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_io() {
                    "connection failed"
                } else {
                    "request could not be sent"
                };
                let category = if e.is_user() {
                    ErrorCategory::Unexpected
                } else {
                    ErrorCategory::Transient
                };
                let detail = source_chain(err);
                tracing::debug!(api, error = %detail, "AWS call failed (full error chain)");
                // Credential provider failures surface as dispatch failures of the user kind.
                if detail.contains("credential") {
                    let (code, message) = readable(&detail);
                    return Self {
                        api,
                        category: ErrorCategory::Credentials,
                        code,
                        message: clip(&format!("could not get credentials: {message}")),
                    };
                }
                let (code, message) = readable(&detail);
                Self {
                    api,
                    category,
                    code,
                    message: clip(&format!("{kind}: {message}")),
                }
            }
            SdkError::ResponseError(ctx) => Self::new(
                api,
                ErrorCategory::Transient,
                format!("unreadable response (HTTP {})", ctx.raw().status().as_u16()),
            ),
            SdkError::ConstructionFailure(_) => {
                let detail = source_chain(err);
                tracing::debug!(api, error = %detail, "AWS call failed (full error chain)");
                let (code, message) = readable(&detail);
                if detail.contains("credential") {
                    Self {
                        api,
                        category: ErrorCategory::Credentials,
                        code,
                        message: clip(&format!("could not get credentials: {message}")),
                    }
                } else {
                    Self {
                        api,
                        category: ErrorCategory::Unexpected,
                        code,
                        message: clip(&format!("request could not be built: {message}")),
                    }
                }
            }
            other => Self::new(api, ErrorCategory::Unexpected, clip(&other.to_string())),
        }
    }
}

/// Error codes that mean "rate limited": the operator's pacer retries them, the SDK must not
/// (`crate::aws::NoThrottleRetries`).
pub const THROTTLING_CODES: [&str; 5] = [
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "Throttling",
    "KmsThrottlingException",
];

fn category_of_code(code: &str) -> Option<ErrorCategory> {
    if THROTTLING_CODES.contains(&code) {
        return Some(ErrorCategory::Throttled);
    }
    Some(match code {
        "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "InvalidClientTokenId"
        | "KmsAccessDeniedException"
        | "MissingAuthenticationTokenException" => ErrorCategory::AccessDenied,
        "ExecutionDoesNotExist"
        | "StateMachineDoesNotExist"
        | "ResourceNotFound"
        | "ResourceNotFoundException" => ErrorCategory::NotFound,
        "InvalidArn" | "ValidationException" | "InvalidToken" | "SerializationException" => {
            ErrorCategory::Invalid
        }
        "StateMachineTypeNotSupported" => ErrorCategory::Unsupported,
        "ExecutionLimitExceeded" => ErrorCategory::LimitExceeded,
        "InternalFailure"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException" => ErrorCategory::Transient,
        _ => return None,
    })
}

fn category_of_status(status: u16) -> ErrorCategory {
    match status {
        429 => ErrorCategory::Throttled,
        401 | 403 => ErrorCategory::AccessDenied,
        404 => ErrorCategory::NotFound,
        500..=599 => ErrorCategory::Transient,
        _ => ErrorCategory::Unexpected,
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// Wrapper texts of the SDK's error chain that tell a user nothing.
const NOISE: [&str; 8] = [
    "dispatch failure",
    "other",
    "service error",
    "io error",
    "an error occurred while loading credentials",
    "failed to load credentials",
    "provider error",
    "unexpected credentials error",
];

/// One readable line from an SDK error chain, and the innermost service error code when the
/// chain carries one (e.g. STS `AccessDenied` while assuming a role): the SDK's wrapper texts
/// and Rust `Debug` output (`Error { code: "…", message: "…", … }`) are dropped.
pub(crate) fn readable(chain: &str) -> (Option<String>, String) {
    static INNER: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"code: "([^"]{1,128})", message: "((?:[^"\\]|\\.){0,2000})""#)
            .expect("constant pattern compiles")
    });
    if let Some(m) = INNER.captures(chain) {
        let code = m[1].to_string();
        let message = m[2].replace("\\\"", "\"");
        return (Some(code.clone()), format!("{code}: {message}"));
    }
    let parts: Vec<&str> = chain
        .split(": ")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .filter(|p| !NOISE.contains(&p.to_ascii_lowercase().as_str()))
        .filter(|p| !p.starts_with("unhandled error"))
        .filter(|p| !p.contains(" { "))
        .collect();
    let mut kept: Vec<&str> = Vec::new();
    for p in parts {
        if kept.last() != Some(&p) {
            kept.push(p);
        }
    }
    (None, kept.join(": "))
}

/// Longest message kept in status conditions and events.
const MAX_MESSAGE: usize = 300;

/// Keep messages one line and bounded: they end up in status conditions and events. Cut at a
/// word boundary.
pub(crate) fn clip(s: &str) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX_MESSAGE {
        return one_line;
    }
    let head: String = one_line.chars().take(MAX_MESSAGE).collect();
    let cut = match head.rfind(' ') {
        Some(i) if i > MAX_MESSAGE / 2 => &head[..i],
        _ => head.as_str(),
    };
    format!("{}…", cut.trim_end_matches([',', ';', ':']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_chains_become_one_readable_line() {
        let chain = r#"dispatch failure: other: an error occurred while loading credentials: service error: unhandled error (AccessDenied): Error { code: "AccessDenied", message: "User: arn:aws:sts::123456789012:assumed-role/op/x is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/team-a", aws_request_id: "1" }"#;
        let (code, message) = readable(chain);
        assert_eq!(code.as_deref(), Some("AccessDenied"));
        assert_eq!(
            message,
            "AccessDenied: User: arn:aws:sts::123456789012:assumed-role/op/x is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/team-a"
        );
        let (code, message) =
            readable("dispatch failure: io error: connection refused (os error 111)");
        assert_eq!(code, None);
        assert_eq!(message, "connection refused (os error 111)");
    }

    #[test]
    fn long_messages_are_cut_at_a_word() {
        let long = "word ".repeat(100);
        let c = clip(&long);
        assert!(c.ends_with("word…"), "{c}");
        assert!(c.chars().count() <= MAX_MESSAGE + 1);
        assert_eq!(clip("short  text\nhere"), "short text here");
    }

    #[test]
    fn codes_map_to_categories() {
        assert_eq!(
            category_of_code("ThrottlingException"),
            Some(ErrorCategory::Throttled)
        );
        assert_eq!(
            category_of_code("AccessDeniedException"),
            Some(ErrorCategory::AccessDenied)
        );
        assert_eq!(
            category_of_code("ExecutionDoesNotExist"),
            Some(ErrorCategory::NotFound)
        );
        assert_eq!(
            category_of_code("StateMachineTypeNotSupported"),
            Some(ErrorCategory::Unsupported)
        );
        assert_eq!(
            category_of_code("ExecutionLimitExceeded"),
            Some(ErrorCategory::LimitExceeded)
        );
        assert_eq!(category_of_code("SomethingNew"), None);
        assert_eq!(category_of_status(503), ErrorCategory::Transient);
        assert_eq!(category_of_status(429), ErrorCategory::Throttled);
        assert!(ErrorCategory::Throttled.is_retryable());
        assert!(!ErrorCategory::AccessDenied.is_retryable());
    }
}
