//! Where a table file goes (SPEC "S3 objects" and "Tables"): the CSV at
//! `<prefix>account=<id>/report_type=<type>/date=<YYYY-MM-DD>/<run id>.csv`
//! becomes `<prefix>tables/<table>/account=<id>/date=<YYYY-MM-DD>/<run id>.parquet`.
//! Pure: the same function names the key in the converter, the backfill and
//! `stripe-reports fetch --format parquet` (where the "prefix" is a folder).

use crate::schema::table_name;

/// The parts of a stored report CSV's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvKey {
    /// `REPORTS_PREFIX` (empty, or ending in `/`).
    pub prefix: String,
    pub account: String,
    pub report_type: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    pub run_id: String,
}

impl CsvKey {
    /// Reads `key` as `<prefix>account=…/report_type=…/date=…/<run>.csv`;
    /// `None` for anything else (another object under the prefix, a table
    /// file, a key of the layout before accounts).
    pub fn parse(prefix: &str, key: &str) -> Option<CsvKey> {
        let rest = key.strip_prefix(prefix)?;
        let mut parts = rest.split('/');
        let account = parts.next()?.strip_prefix("account=")?;
        let report_type = parts.next()?.strip_prefix("report_type=")?;
        let date = parts.next()?.strip_prefix("date=")?;
        let run_id = parts.next()?.strip_suffix(".csv")?;
        let valid = parts.next().is_none()
            && !account.is_empty()
            && !report_type.is_empty()
            && is_date(date)
            && !run_id.is_empty();
        valid.then(|| CsvKey {
            prefix: prefix.to_owned(),
            account: account.to_owned(),
            report_type: report_type.to_owned(),
            date: date.to_owned(),
            run_id: run_id.to_owned(),
        })
    }

    /// `<table>`, the report type made safe (see [`table_name`]).
    pub fn table(&self) -> String {
        table_name(&self.report_type)
    }

    /// The table file's key: `<prefix>tables/<table>/account=<id>/date=<d>/<run>.parquet`.
    pub fn table_key(&self) -> String {
        format!(
            "{}account={}/date={}/{}.parquet",
            table_prefix(&self.prefix, &self.table()),
            self.account,
            self.date,
            self.run_id
        )
    }
}

/// Every file of `table` lies under this prefix: `<prefix>tables/<table>/`.
pub fn table_prefix(prefix: &str, table: &str) -> String {
    format!("{prefix}tables/{table}/")
}

/// `YYYY-MM-DD` with digits where they belong (the calendar itself was
/// checked when the key was written).
fn is_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_key_names_its_table_file() {
        let key = CsvKey::parse(
            "reports/",
            "reports/account=acct_1/report_type=balance_change_from_activity.itemized.3/date=2026-11-02/frr_9.csv",
        )
        .expect("a report key");
        assert_eq!(key.account, "acct_1");
        assert_eq!(key.report_type, "balance_change_from_activity.itemized.3");
        assert_eq!(key.date, "2026-11-02");
        assert_eq!(key.run_id, "frr_9");
        assert_eq!(
            key.table_key(),
            "reports/tables/balance_change_from_activity_itemized_3/account=acct_1/date=2026-11-02/frr_9.parquet"
        );
    }

    #[test]
    fn an_empty_prefix_works() {
        let key =
            CsvKey::parse("", "account=a/report_type=t.1/date=2026-01-31/frr.csv").expect("key");
        assert_eq!(
            key.table_key(),
            "tables/t_1/account=a/date=2026-01-31/frr.parquet"
        );
    }

    #[test]
    fn other_keys_are_not_report_files() {
        for key in [
            "reports/tables/t/account=a/date=2026-01-01/frr.parquet",
            "reports/report_type=t/date=2026-01-01/frr.csv",
            "reports/account=a/report_type=t/date=2026-1-01/frr.csv",
            "reports/account=a/report_type=t/date=2026-01-01/frr.txt",
            "reports/account=a/report_type=t/date=2026-01-01/x/frr.csv",
            "other/account=a/report_type=t/date=2026-01-01/frr.csv",
            "reports/account=/report_type=t/date=2026-01-01/frr.csv",
        ] {
            assert_eq!(CsvKey::parse("reports/", key), None, "{key}");
        }
    }
}
