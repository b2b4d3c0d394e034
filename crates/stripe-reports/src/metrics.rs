//! CloudWatch metrics as Embedded Metric Format log lines: one JSON object on
//! stdout that CloudWatch turns into metrics, no API call, no extra cost.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "StripeReports";

/// A metric value and its CloudWatch unit (`Count`, `Bytes`, `Seconds`).
pub struct Metric<'a> {
    pub name: &'a str,
    pub value: f64,
    pub unit: &'a str,
}

/// The EMF document for `metrics` with one dimension `Function=<function>`.
pub fn emf_line(function: &str, metrics: &[Metric<'_>]) -> String {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|m| json!({"Name": m.name, "Unit": m.unit}))
        .collect();
    let mut document = Map::new();
    document.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": definitions,
            }],
        }),
    );
    document.insert("Function".into(), json!(function));
    for metric in metrics {
        document.insert(metric.name.into(), json!(metric.value));
    }
    Value::Object(document).to_string()
}

/// Prints the EMF line (Lambda ships stdout to CloudWatch Logs).
pub fn emit(function: &str, metrics: &[Metric<'_>]) {
    println!("{}", emf_line(function, metrics));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_names_every_metric_and_its_value() {
        let line = emf_line(
            "scheduler",
            &[
                Metric {
                    name: "RunsCreated",
                    value: 3.0,
                    unit: "Count",
                },
                Metric {
                    name: "StuckRuns",
                    value: 1.0,
                    unit: "Count",
                },
            ],
        );
        let doc: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(doc["RunsCreated"], 3.0);
        assert_eq!(doc["Function"], "scheduler");
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Name"],
            "StuckRuns"
        );
    }
}
