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
                // Credential provider failures surface as dispatch failures of the user kind.
                let category = if detail.contains("credential") {
                    ErrorCategory::Credentials
                } else {
                    category
                };
                Self::new(api, category, format!("{kind}: {}", clip(&detail)))
            }
            SdkError::ResponseError(ctx) => Self::new(
                api,
                ErrorCategory::Transient,
                format!("unreadable response (HTTP {})", ctx.raw().status().as_u16()),
            ),
            SdkError::ConstructionFailure(_) => {
                let detail = source_chain(err);
                let category = if detail.contains("credential") {
                    ErrorCategory::Credentials
                } else {
                    ErrorCategory::Unexpected
                };
                Self::new(
                    api,
                    category,
                    format!("request could not be built: {}", clip(&detail)),
                )
            }
            other => Self::new(api, ErrorCategory::Unexpected, clip(&other.to_string())),
        }
    }
}

fn category_of_code(code: &str) -> Option<ErrorCategory> {
    Some(match code {
        "ThrottlingException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "Throttling"
        | "KmsThrottlingException" => ErrorCategory::Throttled,
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

/// Keep messages one line and bounded: they end up in status conditions and events.
pub(crate) fn clip(s: &str) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 300 {
        let mut t: String = one_line.chars().take(300).collect();
        t.push('…');
        t
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
