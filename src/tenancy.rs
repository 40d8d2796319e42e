//! Which IAM roles each namespace may use (an operator-level setting).
//!
//! Policies are namespaced and act through their own `roleArn`, assumed with ExternalId = their
//! namespace. On top of that, the operator can pin the role ARNs a namespace may name:
//! `--allowed-role payments=arn:aws:iam::123456789012:role/payments-*` (repeatable; `*` as the
//! namespace means every namespace). With `--require-role`, a policy without `roleArn` (which
//! would act with the operator's own identity) is refused.

use globset::{Glob, GlobMatcher};

/// One `NAMESPACE=ROLE_ARN_GLOB` rule.
#[derive(Clone, Debug)]
pub struct RoleRule {
    pub namespace: String,
    pub pattern: String,
    matcher: GlobMatcher,
}

impl std::str::FromStr for RoleRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ns, pattern) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected NAMESPACE=ROLE_ARN_GLOB"))?;
        if ns.is_empty() || pattern.is_empty() {
            return Err(format!("{s:?}: expected NAMESPACE=ROLE_ARN_GLOB"));
        }
        let glob = Glob::new(pattern).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(Self {
            namespace: ns.to_string(),
            pattern: pattern.to_string(),
            matcher: glob.compile_matcher(),
        })
    }
}

/// The allowlist. Empty means any role may be named.
#[derive(Clone, Debug, Default)]
pub struct RoleAllowlist {
    pub rules: Vec<RoleRule>,
    pub require_role: bool,
}

impl RoleAllowlist {
    /// `Err(message)` when a policy in `namespace` may not use `role_arn`.
    pub fn check(&self, namespace: &str, role_arn: Option<&str>) -> Result<(), String> {
        match role_arn {
            None if self.require_role => Err(format!(
                "spec.stepFunctions.roleArn is required: the operator is configured not to act with its own identity for namespace {namespace:?}"
            )),
            None => Ok(()),
            Some(_) if self.rules.is_empty() => Ok(()),
            Some(role) => {
                let allowed = self.rules.iter().any(|r| {
                    (r.namespace == "*" || r.namespace == namespace) && r.matcher.is_match(role)
                });
                if allowed {
                    Ok(())
                } else {
                    Err(format!(
                        "spec.stepFunctions.roleArn {role:?} is not allowed for namespace {namespace:?} by the operator's --allowed-role rules"
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(rules: &[&str], require_role: bool) -> RoleAllowlist {
        RoleAllowlist {
            rules: rules.iter().map(|r| r.parse().unwrap()).collect(),
            require_role,
        }
    }

    #[test]
    fn rules_restrict_roles_per_namespace() {
        let l = list(
            &[
                "payments=arn:aws:iam::111111111111:role/payments-*",
                "*=arn:aws:iam::111111111111:role/shared",
            ],
            false,
        );
        assert!(
            l.check(
                "payments",
                Some("arn:aws:iam::111111111111:role/payments-redriver")
            )
            .is_ok()
        );
        assert!(
            l.check("data", Some("arn:aws:iam::111111111111:role/shared"))
                .is_ok()
        );
        let err = l
            .check(
                "data",
                Some("arn:aws:iam::111111111111:role/payments-redriver"),
            )
            .unwrap_err();
        assert!(err.contains("not allowed for namespace \"data\""), "{err}");
        assert!(l.check("data", None).is_ok());
    }

    #[test]
    fn require_role_refuses_the_operator_identity() {
        let l = list(&[], true);
        assert!(
            l.check("ns", None)
                .unwrap_err()
                .contains("roleArn is required")
        );
        assert!(l.check("ns", Some("arn:aws:iam::1:role/x")).is_ok());
        assert!("no-equals".parse::<RoleRule>().is_err());
    }
}
