//! `redrive-bench --quick`: every phase runs, the correctness checks hold, and the JSON and PNG
//! are written. Asserts behaviour only, never speed.

use std::process::Command;

#[test]
fn quick_benchmark_runs_every_phase_and_checks_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_redrive-bench"))
        .args(["--quick", "--out"])
        .arg(dir.path())
        .env("RUST_LOG", "error")
        .output()
        .expect("run redrive-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("wanted"), "the targets table: {stdout}");
    assert!(
        stdout.contains("operator, CodePipeline stages"),
        "the CodePipeline drain row: {stdout}"
    );
    assert!(
        stdout.contains("0 duplicate redrives, 0 eligible left behind, 0 ineligible redriven: ok"),
        "{stdout}"
    );

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("redrive-bench.json")).unwrap())
            .unwrap();
    assert_eq!(json["errors"], serde_json::json!([]), "{json:#}");
    let c = &json["correctness"];
    assert_eq!(c["ok"], true);
    assert_eq!(c["duplicates"], 0);
    assert_eq!(c["left_behind"], 0);
    assert_eq!(c["ineligible_redriven"], 0);
    assert!(c["eligible"].as_u64().unwrap() > 0);

    // Every phase ran and reported.
    let drains = json["drains"].as_array().unwrap();
    let runners: Vec<(&str, bool)> = drains
        .iter()
        .map(|d| {
            (
                d["runner"].as_str().unwrap(),
                d["error_filter"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        runners,
        [("operator", false), ("operator", true), ("baseline", true)]
    );
    for d in drains {
        assert_eq!(d["correctness"]["ok"], true, "{d:#}");
        assert!(
            d["calls"]["by_api"]["RedriveExecution"].as_u64().unwrap() >= d["n"].as_u64().unwrap()
        );
        assert!(d["bound"]["time_min_s"].as_f64().unwrap() >= 0.0, "{d:#}");
        assert!(d["series"].as_array().unwrap().len() > 1);
        // With a filter the bound counts one details read per eligible failure, from either
        // bucket (the --quick sizes fit in their bursts, so it may be 0 there).
        if d["error_filter"] == true {
            let needs = d["bound"]["needs"].as_array().unwrap();
            assert!(
                needs
                    .iter()
                    .any(|n| n["api"] == "DescribeExecution+GetExecutionHistory"
                        && n["calls"] == d["n"]),
                "{d:#}"
            );
        }
    }
    // The no-filter drain is bound by RedriveExecution even at --quick sizes.
    assert!(drains[0]["bound"]["time_min_s"].as_f64().unwrap() > 0.0);
    // Without an error filter the operator never reads details.
    assert!(
        drains[0]["calls"]["by_api"]
            .get("DescribeExecution")
            .is_none()
            && drains[0]["calls"]["by_api"]
                .get("GetExecutionHistory")
                .is_none()
    );
    // With one, every eligible failure's details are read, from either API.
    let reads = |api: &str| drains[1]["calls"]["by_api"][api].as_u64().unwrap_or(0);
    assert!(
        reads("DescribeExecution") + reads("GetExecutionHistory")
            >= drains[1]["n"].as_u64().unwrap(),
        "{:#}",
        drains[1]
    );

    // The first-redrive run stops at its first redrive, which it did, without a duplicate or
    // an ineligible one.
    let first = &json["first_redrive"];
    assert_eq!(first["timed_out"], false, "{first:#}");
    assert_eq!(first["correctness"]["ok"], true, "{first:#}");
    assert!(first["redriven"].as_u64().unwrap() >= 1, "{first:#}");
    assert!(
        first["first_redrive_s"].as_f64().unwrap() >= 0.0,
        "{first:#}"
    );
    assert_eq!(first["data"]["eligible"], 360, "{first:#}");

    // CodePipeline: every eligible stage retried once through the attempt ledger, nothing in
    // the unselected stage or the succeeded pipelines, and the calls the protocol implies: every
    // pipeline's state read, and one re-read per retry after its claim.
    let p = &json["pipeline"];
    let pd = &p["drain"];
    assert_eq!(pd["correctness"]["ok"], true, "{p:#}");
    assert_eq!(pd["timed_out"], false, "{p:#}");
    let stages = pd["n"].as_u64().unwrap();
    assert_eq!(stages, 40, "{p:#}");
    assert_eq!(pd["data"]["pipelines"], 80, "{p:#}");
    let cp = |api: &str| pd["calls"]["by_api"][api].as_u64().unwrap_or(0);
    assert!(cp("codepipeline:RetryStageExecution") >= stages, "{p:#}");
    assert!(
        cp("codepipeline:GetPipelineState") >= 80 + stages,
        "one read per pipeline and one re-read per claim: {p:#}"
    );
    assert!(
        p["protocol_bound"]["time_min_s"].as_f64().unwrap()
            >= pd["bound"]["time_min_s"].as_f64().unwrap(),
        "{p:#}"
    );

    let idle = &json["idle"];
    assert_eq!(idle["other_calls"], 0, "{idle:#}");
    assert!(
        idle["list_per_machine_status_per_interval"]
            .as_f64()
            .unwrap()
            <= 1.0
    );

    let scale = &json["scale"];
    assert_eq!(scale["emulator"], "separate process");
    assert_eq!(scale["timed_out"], false);
    assert!(scale["peak_rss_kib"].as_u64().unwrap() > 0);
    assert!(scale["cpu_s"].as_f64().unwrap() > 0.0);

    // Fleet: a quota share of 0.5, a cycle longer than pollInterval. Every API stayed within
    // half its bucket, AWS never throttled (the emulator's buckets are twice the cap), the cycle
    // was bound by ListExecutions at half rate, and no policy polled thrice before all had one.
    let fleet = &json["fleet"];
    assert_eq!(fleet["timed_out"], false, "{fleet:#}");
    assert_eq!(fleet["quota_share"], 0.5);
    assert_eq!(fleet["correctness"]["ok"], true, "{fleet:#}");
    assert_eq!(fleet["within_share"], true, "{fleet:#}");
    assert_eq!(fleet["calls"]["throttled"], 0, "{fleet:#}");
    assert_eq!(fleet["bound"]["binding_api"], "ListExecutions", "{fleet:#}");
    let fleet_bound = fleet["bound"]["time_min_s"].as_f64().unwrap();
    assert!(fleet_bound > 0.0, "{fleet:#}");
    assert!(
        fleet["cycle_s"].as_f64().unwrap() >= 0.98 * fleet_bound,
        "nothing finishes under the bound: {fleet:#}"
    );
    assert!(fleet["cycle_s"].as_f64().unwrap() > fleet["poll_interval_s"].as_f64().unwrap());
    assert!(
        fleet["max_polls_of_one_policy"].as_u64().unwrap() <= 2,
        "{fleet:#}"
    );
    let list = fleet["rates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["api"] == "ListExecutions")
        .expect("ListExecutions rate");
    assert!(list["calls"].as_u64().unwrap() >= 250, "{list:#}");

    let latency = &json["latency"];
    assert_eq!(latency["correctness"]["ok"], true);
    assert!(latency["p99_s"].as_f64().unwrap() >= latency["p50_s"].as_f64().unwrap());

    // Events: both runs, every eligible failure redriven once, nothing excluded acted on, and
    // the faulty run really lost events (the sweep caught them).
    let events = json["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{json:#}");
    for e in events {
        assert_eq!(e["correctness"]["ok"], true, "{e:#}");
        assert!(e["excluded"].as_u64().unwrap() > 0, "{e:#}");
        assert!(e["events_published"].as_u64().unwrap() > 0, "{e:#}");
    }
    assert_eq!(events[0]["events_dropped"], 0);
    assert!(
        events[1]["events_dropped"].as_u64().unwrap() > 0,
        "{:#}",
        events[1]
    );

    let png = std::fs::read(dir.path().join("backlog.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 10_000);
}
