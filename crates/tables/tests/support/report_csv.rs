//! A deterministic `balance_change_from_activity.itemized.3`-shaped CSV of
//! any size, generated as it is read (never held whole in memory), that
//! knows its own totals: data rows and, per amount column and currency, the
//! sum in thousandths of a major unit, computed from integer minor units
//! (not by parsing what it wrote).
//!
//! Shared by the integration tests and `examples/convert_rss.rs`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;

/// The columns of `balance_change_from_activity.itemized.3` in Stripe's order
/// (shared/stripe/facts.md), with two metadata keys.
pub const COLUMNS: &[&str] = &[
    "balance_transaction_id",
    "created_utc",
    "created",
    "available_on_utc",
    "available_on",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "customer_facing_amount",
    "customer_facing_currency",
    "regulatory_tag",
    "automatic_payout_id",
    "automatic_payout_effective_at_utc",
    "automatic_payout_effective_at",
    "customer_id",
    "customer_email",
    "customer_name",
    "customer_description",
    "customer_shipping_address_line1",
    "customer_shipping_address_line2",
    "customer_shipping_address_city",
    "customer_shipping_address_state",
    "customer_shipping_address_postal_code",
    "customer_shipping_address_country",
    "customer_address_line1",
    "customer_address_line2",
    "customer_address_city",
    "customer_address_state",
    "customer_address_postal_code",
    "customer_address_country",
    "shipping_address_line1",
    "shipping_address_line2",
    "shipping_address_city",
    "shipping_address_state",
    "shipping_address_postal_code",
    "shipping_address_country",
    "card_address_line1",
    "card_address_line2",
    "card_address_city",
    "card_address_state",
    "card_address_postal_code",
    "card_address_country",
    "charge_id",
    "payment_intent_id",
    "charge_created_utc",
    "charge_created",
    "invoice_id",
    "invoice_number",
    "subscription_id",
    "payment_method_type",
    "is_link",
    "card_brand",
    "card_funding",
    "card_country",
    "statement_descriptor",
    "dispute_reason",
    "connected_account_id",
    "connected_account_name",
    "connected_account_country",
    "connected_account_direct_charge_id",
    "payment_metadata[order_id]",
    "refund_metadata[reason, free text]",
];

/// (code, decimals) of the currencies used.
const CURRENCIES: &[(&str, u32)] = &[("usd", 2), ("jpy", 0), ("bhd", 3), ("eur", 2)];
const CATEGORIES: &[&str] = &["charge", "refund", "fee", "payout", "dispute", "adjustment"];
const TEXTS: &[&str] = &[
    "Coffee beans",
    "Order 12, size \"large\"",
    "Line one\nline two",
    "Crème brûlée für Zoë — 東京",
    "Refund, as agreed\r\nthanks",
    "plain",
];

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Sums per amount column name, then currency, in thousandths.
pub type Expected = BTreeMap<String, BTreeMap<String, i128>>;

pub struct ReportCsv {
    seed: u64,
    target: u64,
    crlf: bool,
    produced: u64,
    row: u64,
    buf: Vec<u8>,
    pos: usize,
    pub sums: Expected,
}

impl ReportCsv {
    /// Rows are added until the file has at least `target` bytes.
    pub fn new(seed: u64, target: u64, crlf: bool) -> Self {
        let mut csv = ReportCsv {
            seed,
            target,
            crlf,
            produced: 0,
            row: 0,
            buf: Vec::with_capacity(64 * 1024),
            pos: 0,
            sums: Expected::new(),
        };
        let mut header = String::new();
        for (i, name) in COLUMNS.iter().enumerate() {
            if i > 0 {
                header.push(',');
            }
            quote(&mut header, name);
        }
        csv.buf.extend_from_slice(header.as_bytes());
        csv.end_line();
        csv
    }

    pub fn rows(&self) -> u64 {
        self.row
    }

    fn end_line(&mut self) {
        self.buf
            .extend_from_slice(if self.crlf { b"\r\n" } else { b"\n" });
    }

    fn add(&mut self, column: &str, currency: &str, thousandths: i128) {
        *self
            .sums
            .entry(column.to_owned())
            .or_default()
            .entry(currency.to_owned())
            .or_default() += thousandths;
    }

    fn push_row(&mut self) {
        self.row += 1;
        let h = splitmix(self.seed ^ self.row.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let h2 = splitmix(h);
        let (currency, decimals) = CURRENCIES[(h % CURRENCIES.len() as u64) as usize];
        let (cf_currency, cf_decimals) = CURRENCIES[((h >> 8) % CURRENCIES.len() as u64) as usize];
        let gross_minor = (h2 % 2_000_000) as i64 - 500_000;
        let fee_minor = (h2 >> 32) as i64 % 5_000;
        let net_minor = gross_minor - fee_minor;
        let cf_minor = ((h2 >> 12) % 3_000_000) as i64 - 1_000_000;
        let created = 1_700_000_000 + ((h >> 20) % 50_000_000) as i64;
        let mut line = String::with_capacity(1024);
        for (i, column) in COLUMNS.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            let bits = splitmix(h ^ i as u64);
            let empty = bits.is_multiple_of(11);
            match *column {
                "balance_transaction_id" => write!(line, "txn_{:024x}", h).unwrap(),
                "created_utc" | "charge_created_utc" => line.push_str(&timestamp(created)),
                "created" | "charge_created" => line.push_str(&timestamp(created - 5 * 3600)),
                "available_on_utc" => line.push_str(&timestamp(created + 2 * 86_400)),
                "available_on" => line.push_str(&timestamp(created + 2 * 86_400 - 5 * 3600)),
                "automatic_payout_effective_at_utc" | "automatic_payout_effective_at"
                    if h.is_multiple_of(5) => {}
                "automatic_payout_effective_at_utc" => {
                    line.push_str(&timestamp(created + 3 * 86_400))
                }
                "automatic_payout_effective_at" => {
                    line.push_str(&timestamp(created + 3 * 86_400 - 5 * 3600))
                }
                "currency" => line.push_str(currency),
                "gross" => {
                    line.push_str(&major(gross_minor, decimals));
                    self.add("gross", currency, thousandths(gross_minor, decimals));
                }
                "fee" => {
                    line.push_str(&major(fee_minor, decimals));
                    self.add("fee", currency, thousandths(fee_minor, decimals));
                }
                "net" => {
                    line.push_str(&major(net_minor, decimals));
                    self.add("net", currency, thousandths(net_minor, decimals));
                }
                "customer_facing_amount" | "customer_facing_currency" if h.is_multiple_of(7) => {}
                "customer_facing_amount" => {
                    line.push_str(&major(cf_minor, cf_decimals));
                    self.add(
                        "customer_facing_amount",
                        cf_currency,
                        thousandths(cf_minor, cf_decimals),
                    );
                }
                "customer_facing_currency" => line.push_str(cf_currency),
                "reporting_category" => {
                    line.push_str(CATEGORIES[(bits % CATEGORIES.len() as u64) as usize])
                }
                "is_link" => line.push_str(["true", "false", ""][(bits % 3) as usize]),
                _ if empty => {}
                name if name.ends_with("_id") => write!(line, "id_{bits:016x}").unwrap(),
                "description"
                | "customer_name"
                | "customer_description"
                | "connected_account_name"
                | "refund_metadata[reason, free text]" => {
                    quote(&mut line, TEXTS[(bits % TEXTS.len() as u64) as usize])
                }
                "customer_email" => write!(line, "c{}@example.com", bits % 100_000).unwrap(),
                _ => write!(line, "v{}", bits % 1_000).unwrap(),
            }
        }
        self.buf.extend_from_slice(line.as_bytes());
        self.end_line();
    }
}

impl Read for ReportCsv {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            while self.produced < self.target && self.buf.len() < 60 * 1024 {
                let before = self.buf.len();
                self.push_row();
                self.produced += (self.buf.len() - before) as u64;
            }
            if self.buf.is_empty() {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// RFC 4180: quote when needed, double the quotes.
pub fn quote(out: &mut String, text: &str) {
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

/// `minor` units of a currency with `decimals` decimals, in major units.
pub fn major(minor: i64, decimals: u32) -> String {
    if decimals == 0 {
        return minor.to_string();
    }
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let factor = 10u64.pow(decimals);
    format!(
        "{sign}{}.{:0w$}",
        abs / factor,
        abs % factor,
        w = decimals as usize
    )
}

pub fn thousandths(minor: i64, decimals: u32) -> i128 {
    i128::from(minor) * 10i128.pow(3 - decimals)
}

/// `YYYY-MM-DD HH:MM:SS` of Unix seconds (civil_from_days, Howard Hinnant).
pub fn timestamp(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
