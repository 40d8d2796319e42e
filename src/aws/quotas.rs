//! AWS's published API throttling quotas: the one table the operator uses (the quota share caps
//! each API at a share of these).
//!
//! Step Functions: api-facts §1.9 (Developer Guide `service-quotas.html`), per account and
//! region, token buckets that start full. CodePipeline publishes none (api-facts §2.6): its APIs
//! have no entry, so a quota share cannot cap them; the pacer still finds their rate from
//! throttles. AWS may raise a quota for an account: these are the defaults, and the pacer alone
//! (without a share) follows whatever the bucket really is.
//!
//! The emulator keeps its own copy (`redrive_emulator::QuotaPreset::bucket`: the operator must
//! not share code with the system that checks it); a test below keeps the two equal.

use super::pacer::Rate;
use crate::policy::TargetKind;

/// Regions with the larger column of the Step Functions table.
const LARGE_REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

/// `(burst, refill per second)`.
type Bucket = (f64, f64);

/// `(API, large regions, other regions)`.
const STEP_FUNCTIONS: [(&str, Bucket, Bucket); 9] = [
    ("ListExecutions", (200.0, 5.0), (100.0, 2.0)),
    ("DescribeExecution", (300.0, 15.0), (250.0, 10.0)),
    ("GetExecutionHistory", (400.0, 20.0), (400.0, 20.0)),
    ("RedriveExecution", (1300.0, 300.0), (800.0, 150.0)),
    ("ListStateMachines", (100.0, 5.0), (100.0, 5.0)),
    ("DescribeStateMachine", (200.0, 20.0), (200.0, 20.0)),
    ("ListTagsForResource", (100.0, 1.0), (100.0, 1.0)),
    ("DescribeMapRun", (200.0, 1.0), (200.0, 1.0)),
    ("StartExecution", (1300.0, 300.0), (800.0, 150.0)),
];

/// The published bucket of `api` of `service` in `region`; `None` when none is published.
pub fn published(service: TargetKind, region: &str, api: &str) -> Option<Rate> {
    if service != TargetKind::StepFunctions {
        return None;
    }
    let large = LARGE_REGIONS.contains(&region);
    STEP_FUNCTIONS
        .iter()
        .find(|(name, _, _)| *name == api)
        .map(|&(_, big, other)| {
            let (burst, per_second) = if large { big } else { other };
            Rate { per_second, burst }
        })
}

/// Every Step Functions API of the table (for tests and the benchmark).
pub fn step_functions_apis() -> impl Iterator<Item = &'static str> {
    STEP_FUNCTIONS.iter().map(|(name, _, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_the_published_one() {
        let d = published(TargetKind::StepFunctions, "us-east-1", "DescribeExecution").unwrap();
        assert_eq!((d.burst, d.per_second), (300.0, 15.0));
        let d = published(TargetKind::StepFunctions, "ap-south-1", "DescribeExecution").unwrap();
        assert_eq!((d.burst, d.per_second), (250.0, 10.0));
        let h = published(
            TargetKind::StepFunctions,
            "eu-west-1",
            "GetExecutionHistory",
        )
        .unwrap();
        assert_eq!((h.burst, h.per_second), (400.0, 20.0));
        assert_eq!(
            published(TargetKind::StepFunctions, "us-east-1", "Unknown"),
            None
        );
        assert_eq!(
            published(TargetKind::CodePipeline, "us-east-1", "GetPipelineState"),
            None
        );
    }

    /// The emulator's copy says the same for every API and both region classes.
    #[test]
    fn the_emulator_throttles_with_the_same_table() {
        use redrive_emulator::QuotaPreset;
        for api in step_functions_apis() {
            for region in [
                "us-east-1",
                "us-west-2",
                "eu-west-1",
                "eu-central-1",
                "sa-east-1",
            ] {
                let ours = published(TargetKind::StepFunctions, region, api).unwrap();
                let theirs = QuotaPreset::for_region(region).bucket(api).unwrap();
                assert_eq!((ours.burst, ours.per_second), theirs, "{api} in {region}");
            }
        }
    }
}
