//! Report specs: one entry of `REPORTS`, what to request from Stripe and how often.

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use super::account::AccountId;

/// How long one interval of a report spec is, in the spec's timezone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Frequency {
    /// A calendar day, midnight to midnight.
    #[default]
    Daily,
    /// An ISO week, Monday 00:00 to the next Monday 00:00.
    Weekly,
    /// A calendar month, the 1st 00:00 to the next 1st 00:00.
    Monthly,
}

impl Frequency {
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Daily => "daily",
            Frequency::Weekly => "weekly",
            Frequency::Monthly => "monthly",
        }
    }
}

impl std::str::FromStr for Frequency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "daily" => Ok(Frequency::Daily),
            "weekly" => Ok(Frequency::Weekly),
            "monthly" => Ok(Frequency::Monthly),
            other => Err(format!(
                "unknown frequency {other:?} (expected daily, weekly or monthly)"
            )),
        }
    }
}

pub const DEFAULT_TIMEZONE: &str = "Etc/UTC";

fn default_timezone() -> String {
    DEFAULT_TIMEZONE.to_owned()
}

/// One entry of `REPORTS`. Only `report_type` is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    pub report_type: String,
    #[serde(default)]
    pub frequency: Frequency,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_account: Option<String>,
    /// The configured account this spec is for; without it, every account.
    /// Not a parameter of the run: the account is whose key creates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountId>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("report spec {index}: report_type is empty")]
    EmptyReportType { index: usize },
    #[error("report spec {index} ({report_type}): unknown IANA timezone {timezone:?}")]
    UnknownTimezone {
        index: usize,
        report_type: String,
        timezone: String,
    },
    #[error(
        "report spec {index} ({report_type}): columns is an empty list (omit it for Stripe's defaults)"
    )]
    EmptyColumns { index: usize, report_type: String },
    #[error(
        "report spec {index} ({report_type}): currency {currency:?} is not a three-letter ISO code"
    )]
    BadCurrency {
        index: usize,
        report_type: String,
        currency: String,
    },
    #[error(
        "report spec {index} ({report_type}): connected_account {account:?} does not start with acct_"
    )]
    BadConnectedAccount {
        index: usize,
        report_type: String,
        account: String,
    },
    #[error("report specs {first} and {second} are the same request ({report_type})")]
    Duplicate {
        first: usize,
        second: usize,
        report_type: String,
    },
}

impl ReportSpec {
    /// A spec with defaults for everything but the report type.
    pub fn new(report_type: impl Into<String>) -> Self {
        Self {
            report_type: report_type.into(),
            frequency: Frequency::Daily,
            timezone: default_timezone(),
            columns: None,
            currency: None,
            reporting_category: None,
            connected_account: None,
            account: None,
        }
    }

    /// Whether this spec is requested for `account`.
    pub fn applies_to(&self, account: &AccountId) -> bool {
        self.account.as_ref().is_none_or(|only| only == account)
    }

    /// Whether two specs would request the same runs for some account: the
    /// same parameters, and accounts that overlap (one of them for every
    /// account, or both for the same one).
    fn same_request_as(&self, other: &ReportSpec) -> bool {
        let overlap = match (&self.account, &other.account) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        overlap
            && ReportSpec {
                account: None,
                ..self.clone()
            } == ReportSpec {
                account: None,
                ..other.clone()
            }
    }

    /// The spec's timezone. Specs are validated when configuration is read,
    /// so this only falls back to UTC for a spec built by hand with a bad name.
    pub fn time_zone(&self) -> TimeZone {
        TimeZone::get(&self.timezone).unwrap_or(TimeZone::UTC)
    }

    fn validate(&self, index: usize) -> Result<(), SpecError> {
        let report_type = self.report_type.clone();
        if self.report_type.trim().is_empty() {
            return Err(SpecError::EmptyReportType { index });
        }
        if TimeZone::get(&self.timezone).is_err() {
            return Err(SpecError::UnknownTimezone {
                index,
                report_type,
                timezone: self.timezone.clone(),
            });
        }
        if self.columns.as_ref().is_some_and(Vec::is_empty) {
            return Err(SpecError::EmptyColumns { index, report_type });
        }
        if let Some(currency) = &self.currency
            && (currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            return Err(SpecError::BadCurrency {
                index,
                report_type,
                currency: currency.clone(),
            });
        }
        if let Some(account) = &self.connected_account
            && !account.starts_with("acct_")
        {
            return Err(SpecError::BadConnectedAccount {
                index,
                report_type,
                account: account.clone(),
            });
        }
        Ok(())
    }
}

impl ReportSpec {
    /// Writes case-insensitive parameters in the one form Stripe stores and
    /// echoes (currency: lowercase ISO code), so that the request key, the
    /// request sent to Stripe and the comparison with Stripe's runs all see
    /// the same value. Done once, when a spec is read.
    pub fn normalize(&mut self) {
        if let Some(currency) = &mut self.currency {
            currency.make_ascii_lowercase();
        }
    }
}

/// Normalizes every spec read from configuration or the command line, then
/// checks them (so `"USD"` and `"usd"` are one request, and a duplicate).
pub fn read_specs(mut specs: Vec<ReportSpec>) -> Result<Vec<ReportSpec>, SpecError> {
    specs.iter_mut().for_each(ReportSpec::normalize);
    validate_specs(&specs)?;
    Ok(specs)
}

/// Checks every spec, and that no two specs ask for the same thing.
pub fn validate_specs(specs: &[ReportSpec]) -> Result<(), SpecError> {
    for (index, spec) in specs.iter().enumerate() {
        spec.validate(index)?;
        if let Some(first) = specs[..index]
            .iter()
            .position(|other| other.same_request_as(spec))
        {
            return Err(SpecError::Duplicate {
                first,
                second: index,
                report_type: spec.report_type.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_report_type_is_required() {
        let spec: ReportSpec =
            serde_json::from_str(r#"{"report_type":"balance.summary.1"}"#).unwrap();
        assert_eq!(spec, ReportSpec::new("balance.summary.1"));
        assert_eq!(spec.frequency, Frequency::Daily);
        assert_eq!(spec.timezone, "Etc/UTC");
    }

    #[test]
    fn every_field_parses() {
        let spec: ReportSpec = serde_json::from_str(
            r#"{"report_type":"balance_change_from_activity.itemized.3","frequency":"weekly",
                "timezone":"America/New_York","columns":["id","net"],"currency":"usd",
                "reporting_category":"charge","connected_account":"acct_123"}"#,
        )
        .unwrap();
        assert_eq!(spec.frequency, Frequency::Weekly);
        assert!(validate_specs(&[spec]).is_ok());
    }

    #[test]
    fn currency_is_normalized_once_when_specs_are_read() {
        let mut upper = ReportSpec::new("balance.summary.1");
        upper.currency = Some("USD".into());
        let specs = read_specs(vec![upper.clone()]).unwrap();
        assert_eq!(specs[0].currency.as_deref(), Some("usd"));
        let mut lower = upper.clone();
        lower.currency = Some("usd".into());
        assert!(matches!(
            read_specs(vec![upper, lower]),
            Err(SpecError::Duplicate { .. })
        ));
    }

    #[test]
    fn bad_specs_name_the_problem() {
        let mut spec = ReportSpec::new("balance.summary.1");
        spec.timezone = "Mars/Olympus".into();
        let err = validate_specs(&[spec]).unwrap_err().to_string();
        assert!(err.contains("Mars/Olympus"), "{err}");

        let dup = vec![ReportSpec::new("a"), ReportSpec::new("a")];
        assert!(matches!(
            validate_specs(&dup),
            Err(SpecError::Duplicate { .. })
        ));

        // One spec for every account and the same one for a single account
        // ask that account for the same runs twice.
        let mut only_a = ReportSpec::new("a");
        only_a.account = Some(AccountId::parse("acct_A").unwrap());
        let mut only_b = only_a.clone();
        only_b.account = Some(AccountId::parse("acct_B").unwrap());
        assert!(validate_specs(&[only_a.clone(), only_b]).is_ok());
        assert!(matches!(
            validate_specs(&[ReportSpec::new("a"), only_a.clone()]),
            Err(SpecError::Duplicate { .. })
        ));
        assert!(only_a.applies_to(&AccountId::parse("acct_A").unwrap()));
        assert!(!only_a.applies_to(&AccountId::parse("acct_B").unwrap()));

        let unknown: Result<ReportSpec, _> =
            serde_json::from_str(r#"{"report_type":"a","interval":"daily"}"#);
        assert!(unknown.is_err());
        let bad_freq: Result<ReportSpec, _> =
            serde_json::from_str(r#"{"report_type":"a","frequency":"hourly"}"#);
        assert!(bad_freq.is_err());
    }
}
