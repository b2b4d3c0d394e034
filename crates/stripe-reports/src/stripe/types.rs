//! Stripe's objects as the reporting API returns them
//! (`shared/stripe/stripe-reporting-openapi.json`, API version 2026-07-29.dahlia).
//! Unknown fields are ignored so that newer API versions still parse.

use serde::{Deserialize, Serialize};

use crate::domain::calendar::Interval;
use crate::domain::spec::ReportSpec;

/// `reporting.report_type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportType {
    pub id: String,
    #[serde(default = "report_type_object")]
    pub object: String,
    pub name: String,
    pub data_available_start: i64,
    pub data_available_end: i64,
    #[serde(default)]
    pub default_columns: Option<Vec<String>>,
    pub livemode: bool,
    pub updated: i64,
    pub version: i64,
}

fn report_type_object() -> String {
    "reporting.report_type".to_owned()
}

/// The status of a `reporting.report_run` at Stripe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StripeRunStatus {
    Pending,
    Succeeded,
    Failed,
    /// A status this code does not know yet; treated as not finished.
    #[serde(untagged)]
    Other(String),
}

/// `reporting.report_run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRun {
    pub id: String,
    pub object: String,
    pub created: i64,
    #[serde(default)]
    pub error: Option<String>,
    pub livemode: bool,
    pub parameters: RunParameters,
    pub report_type: String,
    #[serde(default)]
    pub result: Option<File>,
    pub status: StripeRunStatus,
    #[serde(default)]
    pub succeeded_at: Option<i64>,
}

/// `financial_reporting_finance_report_run_run_parameters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RunParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_end: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_start: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// `file`: the result of a report run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    pub id: String,
    pub object: String,
    pub created: i64,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub filename: Option<String>,
    pub purpose: String,
    pub size: u64,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default, rename = "type")]
    pub file_type: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

/// A page of a Stripe list endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct List<T> {
    pub object: String,
    pub data: Vec<T>,
    pub has_more: bool,
    pub url: String,
}

/// `event`: a webhook delivery's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub object: String,
    #[serde(default)]
    pub api_version: Option<String>,
    pub created: i64,
    pub data: EventData,
    pub livemode: bool,
    #[serde(default)]
    pub pending_webhooks: i64,
    #[serde(default)]
    pub request: Option<EventRequest>,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    pub object: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_attributes: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRequest {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// The parameters of `POST /v1/reporting/report_runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateReportRun {
    pub report_type: String,
    pub parameters: RunParameters,
}

impl CreateReportRun {
    /// The run a report spec asks for over one interval.
    pub fn for_spec(spec: &ReportSpec, interval: Interval) -> Self {
        Self {
            report_type: spec.report_type.clone(),
            parameters: RunParameters {
                columns: spec.columns.clone(),
                connected_account: spec.connected_account.clone(),
                currency: spec.currency.clone(),
                interval_end: Some(interval.end),
                interval_start: Some(interval.start),
                payout: None,
                reporting_category: spec.reporting_category.clone(),
                timezone: Some(spec.timezone.clone()),
            },
        }
    }

    /// Stripe's form encoding: `parameters[interval_start]=…`, arrays as `[0]`, `[1]`, ….
    pub fn form_fields(&self) -> Vec<(String, String)> {
        let mut fields = vec![("report_type".to_owned(), self.report_type.clone())];
        let p = &self.parameters;
        let mut put = |name: &str, value: String| {
            fields.push((format!("parameters[{name}]"), value));
        };
        if let Some(v) = p.interval_start {
            put("interval_start", v.to_string());
        }
        if let Some(v) = p.interval_end {
            put("interval_end", v.to_string());
        }
        if let Some(v) = &p.timezone {
            put("timezone", v.clone());
        }
        if let Some(v) = &p.currency {
            put("currency", v.clone());
        }
        if let Some(v) = &p.reporting_category {
            put("reporting_category", v.clone());
        }
        if let Some(v) = &p.connected_account {
            put("connected_account", v.clone());
        }
        if let Some(v) = &p.payout {
            put("payout", v.clone());
        }
        if let Some(columns) = &p.columns {
            for (index, column) in columns.iter().enumerate() {
                put(&format!("columns][{index}"), column.clone());
            }
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_is_form_encoded_the_stripe_way() {
        let mut spec = ReportSpec::new("balance.summary.1");
        spec.columns = Some(vec!["category".into(), "net".into()]);
        let create = CreateReportRun::for_spec(&spec, Interval { start: 10, end: 20 });
        let fields = create.form_fields();
        assert!(fields.contains(&("parameters[interval_start]".into(), "10".into())));
        assert!(fields.contains(&("parameters[interval_end]".into(), "20".into())));
        assert!(fields.contains(&("parameters[columns][1]".into(), "net".into())));
        assert!(fields.contains(&("parameters[timezone]".into(), "Etc/UTC".into())));
    }

    #[test]
    fn unknown_statuses_are_kept() {
        let status: StripeRunStatus = serde_json::from_str("\"queued\"").unwrap();
        assert_eq!(status, StripeRunStatus::Other("queued".into()));
        let status: StripeRunStatus = serde_json::from_str("\"succeeded\"").unwrap();
        assert_eq!(status, StripeRunStatus::Succeeded);
    }
}
