//! Step Functions ARN parsing (api-facts §1.8).

/// Resource part of a parsed ARN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource<'a> {
    /// `stateMachine:{name}[/label][:qualifier]`
    StateMachine {
        name: &'a str,
        qualifier: Option<&'a str>,
    },
    /// `execution:{sm}[/label]:{name}`
    Execution { sm: &'a str, name: &'a str },
    /// `express:{sm}[/label]:{name}:{id}`
    Express { sm: &'a str },
    /// `mapRun:{sm}/{label}:{id}`
    MapRun { sm: &'a str, id: &'a str },
    /// `activity:{name}`
    Activity,
}

impl Resource<'_> {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Resource::StateMachine { .. } => "stateMachine",
            Resource::Execution { .. } => "execution",
            Resource::Express { .. } => "express",
            Resource::MapRun { .. } => "mapRun",
            Resource::Activity => "activity",
        }
    }
}

/// A parsed `arn:{partition}:states:{region}:{account}:{resource}` ARN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arn<'a> {
    pub region: &'a str,
    pub account: &'a str,
    pub resource: Resource<'a>,
}

/// Why an ARN is invalid; the text goes into `Invalid Arn: '<text>'`.
pub(crate) fn parse(s: &str) -> Result<Arn<'_>, String> {
    let prefix_err = || format!("Invalid ARN prefix: {s}");
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() < 7
        || parts[0] != "arn"
        || !matches!(
            parts[1],
            "aws" | "aws-cn" | "aws-us-gov" | "aws-iso" | "aws-iso-b"
        )
        || parts[2] != "states"
        || parts[3].is_empty()
        || parts[4].is_empty()
        || !parts[4].bytes().all(|b| b.is_ascii_digit())
    {
        return Err(prefix_err());
    }
    let rest = &parts[6..];
    let nonempty = |v: &[&str]| v.iter().all(|p| !p.is_empty());
    let resource = match (parts[5], rest.len()) {
        ("stateMachine", 1) if nonempty(rest) => Resource::StateMachine {
            name: rest[0],
            qualifier: None,
        },
        ("stateMachine", 2) if nonempty(rest) => Resource::StateMachine {
            name: rest[0],
            qualifier: Some(rest[1]),
        },
        ("execution", 2) if nonempty(rest) => Resource::Execution {
            sm: rest[0],
            name: rest[1],
        },
        ("express", 3) if nonempty(rest) => Resource::Express { sm: rest[0] },
        ("mapRun", 2) if nonempty(rest) && rest[0].contains('/') => Resource::MapRun {
            sm: rest[0],
            id: rest[1],
        },
        ("activity", 1) if nonempty(rest) => Resource::Activity,
        ("stateMachine" | "execution" | "express" | "mapRun" | "activity", _) => {
            return Err(format!("Invalid ARN format: {s}"));
        }
        (other, _) => return Err(format!("Resource type not valid in this context: {other}")),
    };
    Ok(Arn {
        region: parts[3],
        account: parts[4],
        resource,
    })
}

/// Partition for a region.
pub(crate) fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// Name validity for state machines and executions (api-facts §1.8).
pub(crate) fn valid_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=80).contains(&n)
        && !name.chars().any(|c| {
            c.is_whitespace()
                || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c)
                || (c as u32) <= 0x1F
                || (0x7F..=0x9F).contains(&(c as u32))
                || (0xFDD0..=0xFDEF).contains(&(c as u32))
                || (c as u32) & 0xFFFE == 0xFFFE
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kinds() {
        let a = parse("arn:aws:states:us-east-1:123456789012:execution:sm:e1").unwrap();
        assert_eq!(
            a.resource,
            Resource::Execution {
                sm: "sm",
                name: "e1"
            }
        );
        let a = parse("arn:aws:states:us-east-1:123456789012:execution:sm/Map:e1").unwrap();
        assert_eq!(
            a.resource,
            Resource::Execution {
                sm: "sm/Map",
                name: "e1"
            }
        );
        assert!(parse("arn:aws:lambda:us-east-1:123456789012:function:f").is_err());
        assert!(parse("nonsense").is_err());
        assert!(parse("arn:aws:states:us-east-1:123456789012:execution:sm").is_err());
        assert!(valid_name("orders-1"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(""));
        assert!(!valid_name(&"x".repeat(81)));
    }
}
