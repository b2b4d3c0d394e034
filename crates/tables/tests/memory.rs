//! Peak memory does not grow with the file: a ~200 MiB report, generated as
//! it is read and never held whole, converts within a fixed bound, with the
//! generator's row count and sums.
//!
//! Slow in a debug build; run it with
//! `cargo test --release -p tables --test memory -- --ignored --nocapture`.
//! `examples/convert_rss.rs` measures 10 MiB, 100 MiB and 1 GiB.

mod support;

use std::collections::BTreeMap;

use support::report_csv::ReportCsv;
use tables::{ConvertOptions, convert};

const MIB: u64 = 1024 * 1024;

fn vm_hwm_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib as f64 / 1024.0
}

/// Resets the peak resident set to the current one (Linux `clear_refs` 5).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn peak_converting(mib: u64) -> f64 {
    assert!(reset_peak(), "cannot reset VmHWM on this kernel");
    let before = vm_hwm_mib();
    let mut source = ReportCsv::new(5, mib * MIB, true);
    let (converted, _) = convert(&mut source, std::io::sink(), &ConvertOptions::default()).unwrap();
    let peak = vm_hwm_mib();
    assert_eq!(converted.rows, source.rows());
    for (column, per_currency) in &source.sums {
        let got: BTreeMap<String, i128> = converted.sums[column]
            .iter()
            .map(|(c, a)| (c.clone(), a.units()))
            .collect();
        assert_eq!(&got, per_currency, "{column}");
    }
    println!(
        "{mib} MiB: {} rows, {} row groups, peak RSS {peak:.1} MiB (before {before:.1} MiB)",
        converted.rows, converted.row_groups
    );
    peak
}

#[test]
#[ignore = "generates and converts 250 MiB; run with --release"]
fn peak_memory_stays_bounded_as_the_file_grows() {
    let small = peak_converting(50);
    let large = peak_converting(200);
    // The conversion's own bound is about 65 MiB (ConvertOptions' docs); the
    // test harness adds a little. A fourfold file may not cost much more.
    assert!(large < 100.0, "peak {large:.1} MiB");
    assert!(
        large < small + 24.0,
        "50 MiB: {small:.1}, 200 MiB: {large:.1}"
    );
}
