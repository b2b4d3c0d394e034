//! The rows of a file: each row is made from the file's seed and its index
//! alone (so any row can be made again, and the same run always gives the
//! same rows), then written column by column.
//!
//! A row is one balance transaction (itemized balance change, payout and
//! ending balance reconciliation), one payout (itemized payouts), one line
//! per reporting category and currency (the `*.summary.1` types by
//! category), or one of the four lines of a balance summary (starting
//! balance, activity, payouts, ending balance, which add up). Amounts are
//! integers in the currency's minor unit until they are written.

use super::fields::{AddressGroup, AddressPart, Amount, Clock as When, Field, MetadataKind};
use super::text::{
    CARD_BRANDS, CARD_COUNTRIES, CARD_FUNDING, DISPUTE_REASONS, Encoded, PAYMENT_METHODS,
    PAYOUT_STATUSES, PAYOUT_TYPES, pools, push_padding,
};
use super::write::{Clock, DAY, Draws, push_decimal, push_id, push_u64, splitmix};

/// What kind of rows a report type has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Activity,
    Payouts,
    CategorySummary,
    BalanceSummary,
}

impl Family {
    pub fn of(report_type: &str) -> Self {
        if report_type.contains("balance.summary") {
            Family::BalanceSummary
        } else if report_type.contains(".summary.") {
            Family::CategorySummary
        } else if report_type.contains("payouts.itemized") {
            Family::Payouts
        } else {
            Family::Activity
        }
    }
}

/// How a reporting category's amounts behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behavior {
    Charge,
    Refund,
    Fee,
    Dispute,
    DisputeReversal,
    Transfer,
    Adjustment,
    PlatformEarning,
    PartialCaptureReversal,
    Payout,
    PayoutReversal,
    /// One of the four lines of a balance summary.
    Balance(u8),
}

/// Reporting categories of balance transactions, with how often they occur.
const ACTIVITY: &[(&str, Behavior, u64)] = &[
    ("charge", Behavior::Charge, 50),
    ("refund", Behavior::Refund, 12),
    ("fee", Behavior::Fee, 6),
    ("dispute", Behavior::Dispute, 3),
    ("dispute_reversal", Behavior::DisputeReversal, 1),
    ("transfer", Behavior::Transfer, 8),
    ("adjustment", Behavior::Adjustment, 4),
    ("platform_earning", Behavior::PlatformEarning, 5),
    (
        "partial_capture_reversal",
        Behavior::PartialCaptureReversal,
        3,
    ),
];
const PAYOUTS: &[(&str, Behavior, u64)] = &[
    ("payout", Behavior::Payout, 95),
    ("payout_reversal", Behavior::PayoutReversal, 5),
];
const BALANCE: &[(&str, Behavior, u64)] = &[
    ("starting_balance", Behavior::Balance(0), 1),
    ("activity", Behavior::Balance(1), 1),
    ("payouts", Behavior::Balance(2), 1),
    ("ending_balance", Behavior::Balance(3), 1),
];

/// Currencies of a run without `currency`, with how often they occur:
/// two, zero (`jpy`) and three (`bhd`) decimals.
const CURRENCIES: &[(&str, u64)] = &[
    ("usd", 50),
    ("eur", 14),
    ("gbp", 10),
    ("jpy", 14),
    ("bhd", 12),
];

/// Decimals of a currency in its major unit, as Stripe's currency list has
/// them (zero-decimal and three-decimal currencies; two for the rest).
pub fn exponent(currency: &str) -> u32 {
    const ZERO: &[&str] = &[
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
        "xaf", "xof", "xpf",
    ];
    const THREE: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];
    let lower = currency.to_ascii_lowercase();
    if ZERO.contains(&lower.as_str()) {
        0
    } else if THREE.contains(&lower.as_str()) {
        3
    } else {
        2
    }
}

pub struct Currency {
    pub code: String,
    pub exponent: u32,
    encoded: Encoded,
}

impl Currency {
    fn new(code: &str) -> Self {
        Self {
            code: code.to_owned(),
            exponent: exponent(code),
            encoded: Encoded::new(code),
        }
    }
}

struct Category {
    name: Encoded,
    behavior: Behavior,
    weight: u64,
}

/// What the rows of one file are made from.
pub struct Model {
    pub family: Family,
    seed: u64,
    pub currencies: Vec<Currency>,
    /// Cumulative weights of `currencies` for a run without `currency`;
    /// empty when the run names one (then every row has `currencies[0]`,
    /// and `currencies[1]` is only a customer-facing currency).
    currency_weights: Vec<u64>,
    categories: Vec<Category>,
    category_total: u64,
    start: i64,
    span: i64,
    /// Rows after which half the interval has passed (timestamps rise with
    /// the row index and never leave the interval).
    half_rows: u64,
    payout: Option<Encoded>,
    connected_account: Option<Encoded>,
}

pub struct ModelParams<'a> {
    pub report_type: &'a str,
    pub seed: u64,
    pub currency: Option<&'a str>,
    pub reporting_category: Option<&'a str>,
    pub interval_start: i64,
    pub interval_end: i64,
    pub payout: Option<&'a str>,
    pub connected_account: Option<&'a str>,
    /// A guess at the number of rows, to spread timestamps over the interval.
    pub expected_rows: u64,
}

impl Model {
    pub fn new(p: &ModelParams<'_>) -> Self {
        let family = Family::of(p.report_type);
        let known = match family {
            Family::Payouts => PAYOUTS,
            Family::BalanceSummary => BALANCE,
            Family::CategorySummary if p.report_type.contains("payouts.") => PAYOUTS,
            Family::CategorySummary | Family::Activity => ACTIVITY,
        };
        let categories: Vec<Category> = match p.reporting_category {
            Some(name) if family != Family::BalanceSummary => {
                let behavior = ACTIVITY
                    .iter()
                    .chain(PAYOUTS)
                    .find(|(known, _, _)| *known == name)
                    .map_or(Behavior::Adjustment, |(_, behavior, _)| *behavior);
                vec![Category {
                    name: Encoded::new(name),
                    behavior,
                    weight: 1,
                }]
            }
            _ => known
                .iter()
                .map(|(name, behavior, weight)| Category {
                    name: Encoded::new(name),
                    behavior: *behavior,
                    weight: *weight,
                })
                .collect(),
        };
        let (currencies, currency_weights) = match p.currency {
            Some(code) => {
                let other = if code.eq_ignore_ascii_case("eur") {
                    "usd"
                } else {
                    "eur"
                };
                (vec![Currency::new(code), Currency::new(other)], Vec::new())
            }
            None => {
                let mut total = 0;
                let weights = CURRENCIES
                    .iter()
                    .map(|(_, weight)| {
                        total += weight;
                        total
                    })
                    .collect();
                (
                    CURRENCIES
                        .iter()
                        .map(|(code, _)| Currency::new(code))
                        .collect(),
                    weights,
                )
            }
        };
        Self {
            family,
            seed: p.seed,
            currencies,
            currency_weights,
            category_total: categories.iter().map(|c| c.weight).sum(),
            categories,
            start: p.interval_start,
            span: (p.interval_end - p.interval_start).max(1),
            half_rows: (p.expected_rows / 2).max(1),
            payout: p.payout.map(Encoded::new),
            connected_account: p.connected_account.map(Encoded::new),
        }
    }

    fn time_at(&self, index: u64) -> i64 {
        let passed = i128::from(self.span) * i128::from(index)
            / (i128::from(index) + i128::from(self.half_rows));
        self.start + passed as i64
    }

    fn pick_category(&self, draws: &mut Draws) -> u8 {
        let mut pick = draws.below(self.category_total.max(1));
        for (at, category) in self.categories.iter().enumerate() {
            if pick < category.weight {
                return at as u8;
            }
            pick -= category.weight;
        }
        0
    }

    fn pick_currency(&self, draws: &mut Draws) -> u8 {
        let Some(total) = self.currency_weights.last() else {
            return 0;
        };
        let pick = draws.below(*total);
        self.currency_weights
            .iter()
            .position(|cumulative| pick < *cumulative)
            .unwrap_or(0) as u8
    }

    /// An amount in minor units: mostly small, sometimes large; yen amounts
    /// a hundred times more units, as prices in yen are.
    fn magnitude(&self, draws: &mut Draws, currency: u8) -> i64 {
        let exponent = self.currencies[currency as usize].exponent;
        let unit = 10i64.pow(exponent);
        let major = match draws.below(100) {
            0..=59 => 1 + draws.below(200),
            60..=89 => 200 + draws.below(2_000),
            _ => 2_000 + draws.below(50_000),
        } as i64;
        let major = if exponent == 0 { major * 100 } else { major };
        major * unit
            + if unit > 1 {
                draws.below(unit as u64) as i64
            } else {
                0
            }
    }

    fn unit(&self, currency: u8) -> i64 {
        10i64.pow(self.currencies[currency as usize].exponent)
    }

    /// Row `index` of the file.
    pub fn row(&self, index: u64) -> Row {
        let mut draws = Draws::new(splitmix(
            self.seed ^ index.wrapping_mul(0x2545_F491_4F6C_DD1D),
        ));
        let mut row = Row {
            index,
            key: draws.next(),
            created: self.time_at(index),
            ..Row::default()
        };
        match self.family {
            Family::Activity => self.activity(&mut row, &mut draws),
            Family::Payouts => self.payout_row(&mut row, &mut draws),
            Family::CategorySummary => self.summary_row(&mut row, &mut draws),
            Family::BalanceSummary => self.balance_row(&mut row),
        }
        row
    }

    fn activity(&self, row: &mut Row, draws: &mut Draws) {
        row.category = self.pick_category(draws);
        row.currency = self.pick_currency(draws);
        let behavior = self.categories[row.category as usize].behavior;
        let amount = self.magnitude(draws, row.currency);
        let unit = self.unit(row.currency);
        let midnight = row.created - row.created.rem_euclid(DAY);
        row.available_on = midnight + 2 * DAY;
        let mut payment = false;
        let (gross, fee) = match behavior {
            Behavior::Charge => {
                payment = true;
                let fee = if unit == 1 {
                    (amount * 36 + 500) / 1000
                } else {
                    (amount * 29 + 500) / 1000 + 30 * unit / 100
                };
                (amount, fee)
            }
            Behavior::Refund => {
                payment = true;
                (-amount, 0)
            }
            Behavior::Fee => {
                row.available_on = row.created;
                (-(amount / 40 + 1), 0)
            }
            Behavior::Dispute => {
                payment = true;
                row.dispute_reason = Some(draws.below(DISPUTE_REASONS.len() as u64) as u8);
                (-amount, 15 * unit)
            }
            Behavior::DisputeReversal => {
                payment = true;
                (amount, -15 * unit)
            }
            Behavior::Transfer => {
                row.connect = Some(draws.below(5) as u8);
                row.destination_payment = true;
                (-amount, 0)
            }
            Behavior::PlatformEarning => {
                row.connect = Some(draws.below(5) as u8);
                (amount / 20 + 1, 0)
            }
            Behavior::PartialCaptureReversal => {
                payment = true;
                (-(amount / 5 + 1), 0)
            }
            _ => {
                let sign = if draws.chance(50) { 1 } else { -1 };
                (sign * (amount / 10 + 1), 0)
            }
        };
        row.set_amounts(gross, fee);
        if payment {
            row.payment = true;
            row.charge_created = Some(match behavior {
                Behavior::Charge => row.created,
                _ => row.created - draws.below(30 * DAY as u64) as i64,
            });
            row.method = Some(match draws.below(100) {
                0..=74 => 0,
                75..=82 => 1,
                83..=89 => 2,
                90..=94 => 3,
                _ => 4,
            });
            if row.method == Some(0) {
                row.card = Some((
                    draws.below(CARD_BRANDS.len() as u64) as u8,
                    draws.below(CARD_FUNDING.len() as u64) as u8,
                    draws.below(CARD_COUNTRIES.len() as u64) as u8,
                ));
                if draws.chance(70) {
                    row.descriptor = Some(draws.below(4) as u8);
                }
            }
            if draws.chance(75) {
                row.customer = Some(draws.below(997) as u16);
                row.addresses = draws.next() as u8 & 0b1111;
            }
            if draws.chance(30) {
                row.invoice = Some(draws.below(100_000) as u32);
                row.subscription = draws.chance(70);
            }
            row.order = draws.chance(3);
            row.customer_facing = Some(if draws.chance(85) || self.currencies.len() < 2 {
                (row.currency, gross)
            } else {
                // Charged in another currency, settled in this one.
                let other = (row.currency as usize
                    + 1
                    + draws.below(self.currencies.len() as u64 - 1) as usize)
                    % self.currencies.len();
                let from = i128::from(self.unit(row.currency));
                let to = i128::from(self.unit(other as u8));
                (
                    other as u8,
                    (i128::from(gross) * 92 * to / (100 * from)) as i64,
                )
            });
        }
        if row.connect.is_none() && draws.chance(15) {
            row.connect = Some(draws.below(5) as u8);
        }
        row.direct_charge = row.connect.is_some() && payment && draws.chance(40);
        // A by-id reconciliation's rows are all in its payout.
        if draws.chance(85) || self.payout.is_some() {
            row.automatic_payout = Some(row.available_on);
        }
        if draws.chance(92) {
            row.description = Some(draws.below(pools().descriptions.len() as u64) as u8);
        }
        row.metadata = draws.next();
    }

    fn payout_row(&self, row: &mut Row, draws: &mut Draws) {
        row.category = self.pick_category(draws);
        row.currency = self.pick_currency(draws);
        let amount = 5 * self.magnitude(draws, row.currency);
        let reversal = self.categories[row.category as usize].behavior == Behavior::PayoutReversal;
        let midnight = row.created - row.created.rem_euclid(DAY);
        row.arrival = Some(midnight + (1 + draws.below(3) as i64) * DAY);
        row.payout_status = if reversal {
            3 + draws.below(2) as u8
        } else {
            match draws.below(100) {
                0..=84 => 0,
                85..=92 => 1,
                93..=97 => 2,
                _ => 3,
            }
        };
        if row.payout_status >= 3 {
            row.reversed_at = Some(row.created + DAY + draws.below(DAY as u64) as i64);
        }
        row.payout_type = if draws.chance(90) { 0 } else { 1 };
        let fee = if !reversal && row.payout_type == 1 {
            amount / 100
        } else {
            0
        };
        let gross = if reversal { amount } else { -amount };
        row.set_amounts(gross, fee);
        if draws.chance(80) {
            row.payout_description =
                Some(draws.below(pools().payout_descriptions.len() as u64) as u8);
        }
        row.description = row.payout_description;
        row.connect = Some(draws.below(5) as u8);
    }

    fn summary_row(&self, row: &mut Row, draws: &mut Draws) {
        let categories = self.categories.len() as u64;
        row.category = (row.index % categories) as u8;
        row.currency = if self.currency_weights.is_empty() {
            0
        } else {
            ((row.index / categories) % self.currencies.len() as u64) as u8
        };
        let count = 1 + draws.below(5_000);
        row.count = Some(count);
        let amount = self.magnitude(draws, row.currency) * (1 + draws.below(50) as i64);
        let unit = self.unit(row.currency);
        let (gross, fee) = match self.categories[row.category as usize].behavior {
            Behavior::Charge => (
                amount,
                (amount * 29 + 500) / 1000 + (count as i64) * 30 * unit / 100,
            ),
            Behavior::Dispute => (-amount, (count as i64) * 15 * unit),
            Behavior::DisputeReversal => (amount, -(count as i64) * 15 * unit),
            Behavior::PlatformEarning | Behavior::PayoutReversal => (amount, 0),
            Behavior::Adjustment if draws.chance(50) => (amount, 0),
            _ => (-amount, 0),
        };
        row.set_amounts(gross, fee);
    }

    fn balance_row(&self, row: &mut Row) {
        let group = row.index / 4;
        let line = (row.index % 4) as u8;
        row.category = line;
        row.currency = if self.currency_weights.is_empty() {
            0
        } else {
            (group % self.currencies.len() as u64) as u8
        };
        // The four lines of a group add up: start + activity + payouts = end.
        let mut draws = Draws::new(splitmix(self.seed ^ 0xBA1A ^ group.wrapping_mul(0x9E37)));
        let start =
            self.magnitude(&mut draws, row.currency) * 10 * if draws.chance(90) { 1 } else { -1 };
        let activity =
            self.magnitude(&mut draws, row.currency) * 5 * if draws.chance(80) { 1 } else { -1 };
        let payouts = -self.magnitude(&mut draws, row.currency) * 4;
        let net = [start, activity, payouts, start + activity + payouts][line as usize];
        row.set_amounts(net, 0);
        row.balance_line = Some(line);
    }
}

/// One row, before it is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct Row {
    pub index: u64,
    /// Every field is empty (see the generator's sizing rules).
    pub empty: bool,
    /// Source of the row's ids.
    key: u64,
    category: u8,
    pub currency: u8,
    amounts: Option<(i64, i64, i64)>,
    count: Option<u64>,
    /// (currency, amount) of `customer_facing_amount`.
    pub customer_facing: Option<(u8, i64)>,
    created: i64,
    available_on: i64,
    charge_created: Option<i64>,
    automatic_payout: Option<i64>,
    arrival: Option<i64>,
    reversed_at: Option<i64>,
    payout_status: u8,
    payout_type: u8,
    payment: bool,
    customer: Option<u16>,
    /// One bit per address group present.
    addresses: u8,
    method: Option<u8>,
    card: Option<(u8, u8, u8)>,
    descriptor: Option<u8>,
    invoice: Option<u32>,
    subscription: bool,
    order: bool,
    connect: Option<u8>,
    direct_charge: bool,
    destination_payment: bool,
    dispute_reason: Option<u8>,
    description: Option<u8>,
    payout_description: Option<u8>,
    balance_line: Option<u8>,
    metadata: u64,
}

impl Row {
    /// A row with every field empty.
    pub fn empty(index: u64) -> Self {
        Self {
            index,
            empty: true,
            ..Self::default()
        }
    }

    fn set_amounts(&mut self, gross: i64, fee: i64) {
        self.amounts = Some((gross, fee, gross - fee));
    }

    /// (currency, minor units) of an amount column, if the row has it.
    pub fn amount(&self, which: Amount) -> Option<(u8, i64)> {
        let (gross, fee, net) = self.amounts?;
        match which {
            Amount::Gross => Some((self.currency, gross)),
            Amount::Fee => Some((self.currency, fee)),
            Amount::Net => Some((self.currency, net)),
            Amount::CustomerFacing => self.customer_facing,
        }
    }
}

const INVOICE_PREFIX: &[u8] = b"A1B2C3D4-";
const EMAIL_DOMAIN: &[u8] = b"@example.com";

fn push_pooled(out: &mut Vec<u8>, pool: &[Encoded], at: Option<usize>, pad: usize) {
    match at {
        Some(at) => pool[at % pool.len()].push(out, pad),
        None => push_padding(out, pad),
    }
}

fn push_plain(out: &mut Vec<u8>, value: &str, pad: usize) {
    out.extend_from_slice(value.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
}

impl Model {
    fn id(&self, out: &mut Vec<u8>, prefix: &[u8], key: Option<u64>, pad: usize) {
        match key {
            Some(key) => push_id(out, prefix, key, pad),
            None => out.extend(std::iter::repeat_n(b'x', pad)),
        }
    }

    fn timestamp(
        &self,
        out: &mut Vec<u8>,
        clock: &mut Clock,
        when: When,
        t: Option<i64>,
        pad: usize,
    ) {
        if let Some(t) = t {
            match when {
                When::Utc => clock.push_datetime(out, t),
                When::Local => {
                    let wall = clock.local(t);
                    clock.push_datetime(out, wall);
                }
            }
        }
        out.extend(std::iter::repeat_n(b' ', pad));
    }

    fn connected_key(&self, connect: u8) -> u64 {
        self.seed ^ 0xACC7 ^ u64::from(connect).wrapping_mul(0x1F3D)
    }

    /// Writes `field` of `row`, `pad` bytes longer than its natural width in
    /// the way its [`super::fields::Stretch`] says (`pad` is 0 except for
    /// the last row's padded column).
    pub fn push_field(
        &self,
        out: &mut Vec<u8>,
        clock: &mut Clock,
        field: Field,
        row: &Row,
        pad: usize,
    ) {
        use Field::*;
        let pools = pools();
        let key = row.key;
        let payment = row.payment.then_some(());
        match field {
            BalanceTransactionId => self.id(out, b"txn_", Some(key ^ 1), pad),
            Created(when) => self.timestamp(out, clock, when, Some(row.created), pad),
            AvailableOn(when) => {
                let available = (self.family == Family::Activity).then_some(row.available_on);
                self.timestamp(out, clock, when, available, pad);
            }
            Currency => {
                self.currencies[row.currency as usize].encoded.push(out, 0);
                out.extend(std::iter::repeat_n(b' ', pad));
            }
            Amount(which) => {
                if let Some((currency, minor)) = row.amount(which) {
                    let exponent = self.currencies[currency as usize].exponent;
                    push_decimal(out, i128::from(minor), exponent, pad);
                } else {
                    out.extend(std::iter::repeat_n(b'0', pad));
                }
            }
            Count => match row.count {
                Some(count) => {
                    out.extend(std::iter::repeat_n(b'0', pad));
                    push_u64(out, count);
                }
                None => out.extend(std::iter::repeat_n(b'0', pad)),
            },
            Category => {
                self.categories[row.category as usize].name.push(out, 0);
                out.extend(std::iter::repeat_n(b' ', pad));
            }
            SourceId => {
                let prefix: &[u8] = match self.categories[row.category as usize].behavior {
                    Behavior::Charge | Behavior::PartialCaptureReversal => b"ch_",
                    Behavior::Refund => b"re_",
                    Behavior::Dispute | Behavior::DisputeReversal => b"du_",
                    Behavior::Transfer => b"tr_",
                    Behavior::Fee | Behavior::PlatformEarning => b"fee_",
                    Behavior::Payout | Behavior::PayoutReversal => b"po_",
                    Behavior::Adjustment | Behavior::Balance(_) => b"adj_",
                };
                self.id(out, prefix, Some(key ^ 2), pad);
            }
            Description => match row.balance_line {
                Some(line) => {
                    let (text, date): (&[u8], Option<i64>) = match line {
                        0 => (b"Starting balance (", Some(self.start)),
                        1 => (b"Activity", None),
                        2 => (b"Total payouts", None),
                        _ => (b"Ending balance (", Some(self.start + self.span - 1)),
                    };
                    out.extend_from_slice(text);
                    if let Some(date) = date {
                        let wall = clock.local(date);
                        clock.push_date(out, wall);
                        out.push(b')');
                    }
                    push_padding(out, pad);
                }
                None => push_pooled(
                    out,
                    &pools.descriptions,
                    row.description.map(usize::from),
                    pad,
                ),
            },
            CustomerFacingCurrency => match row.customer_facing {
                Some((currency, _)) => {
                    self.currencies[currency as usize].encoded.push(out, 0);
                    out.extend(std::iter::repeat_n(b' ', pad));
                }
                None => out.extend(std::iter::repeat_n(b' ', pad)),
            },
            RegulatoryTag | Unknown => out.extend(std::iter::repeat_n(b' ', pad)),
            AutomaticPayoutId => match (&self.payout, row.automatic_payout) {
                (Some(payout), _) if !row.empty => payout.push(out, pad),
                (_, Some(day)) => {
                    let payout_key =
                        self.seed ^ (day as u64).wrapping_mul(31) ^ u64::from(row.currency);
                    push_id(out, b"po_", payout_key, pad);
                }
                _ => self.id(out, b"po_", None, pad),
            },
            AutomaticPayoutEffectiveAt(when) => {
                self.timestamp(out, clock, when, row.automatic_payout, pad)
            }
            CustomerId => {
                let customer = row.customer.map(|c| self.seed ^ 0xC057 ^ u64::from(c));
                self.id(out, b"cus_", customer, pad);
            }
            CustomerEmail => {
                if let Some(customer) = row.customer {
                    let emails = &pools.customer_emails;
                    out.extend_from_slice(emails[customer as usize % emails.len()].as_bytes());
                    out.extend_from_slice(EMAIL_DOMAIN);
                }
                out.extend(std::iter::repeat_n(b' ', pad));
            }
            CustomerName => push_pooled(
                out,
                &pools.customer_names,
                row.customer.map(usize::from),
                pad,
            ),
            CustomerDescription => push_pooled(
                out,
                &pools.customer_descriptions,
                row.customer.map(|c| c as usize / 3),
                pad,
            ),
            Address(group, part) => {
                let bit = match group {
                    AddressGroup::CustomerShipping => 1,
                    AddressGroup::Customer => 2,
                    AddressGroup::Shipping => 4,
                    AddressGroup::Card => 8,
                };
                let present =
                    row.addresses & bit != 0 && (group != AddressGroup::Card || row.card.is_some());
                let at = row
                    .customer
                    .filter(|_| present)
                    .map(|c| c as usize + bit as usize);
                let pool = match part {
                    AddressPart::Line1 => &pools.line1,
                    AddressPart::Line2 => &pools.line2,
                    AddressPart::City => &pools.cities,
                    AddressPart::State => &pools.states,
                    AddressPart::PostalCode => &pools.postal_codes,
                    AddressPart::Country => &pools.countries,
                };
                push_pooled(out, pool, at, pad);
            }
            ChargeId => self.id(out, b"ch_", payment.map(|()| key ^ 3), pad),
            PaymentIntentId => self.id(out, b"pi_", payment.map(|()| key ^ 4), pad),
            ChargeCreated(when) => self.timestamp(out, clock, when, row.charge_created, pad),
            InvoiceId => self.id(
                out,
                b"in_",
                row.invoice.map(|n| self.seed ^ u64::from(n)),
                pad,
            ),
            InvoiceNumber => {
                if let Some(number) = row.invoice {
                    out.extend_from_slice(INVOICE_PREFIX);
                    let number = u64::from(number % 10_000);
                    out.extend(std::iter::repeat_n(b'0', 4 - digits(number)));
                    push_u64(out, number);
                }
                out.extend(std::iter::repeat_n(b' ', pad));
            }
            SubscriptionId => {
                let subscription = row.invoice.filter(|_| row.subscription);
                self.id(
                    out,
                    b"sub_",
                    subscription.map(|n| self.seed ^ 0x5B ^ u64::from(n)),
                    pad,
                );
            }
            OrderId => self.id(out, b"order_", row.order.then_some(key ^ 5), pad),
            PaymentMethodType => push_plain(
                out,
                row.method.map_or("", |m| PAYMENT_METHODS[m as usize]),
                pad,
            ),
            IsLink => {
                let value = match (row.payment, row.method) {
                    (true, Some(1)) => "true",
                    (true, _) => "false",
                    _ => "",
                };
                push_plain(out, value, pad);
            }
            CardBrand => push_plain(out, row.card.map_or("", |c| CARD_BRANDS[c.0 as usize]), pad),
            CardFunding => push_plain(
                out,
                row.card.map_or("", |c| CARD_FUNDING[c.1 as usize]),
                pad,
            ),
            CardCountry => push_plain(
                out,
                row.card.map_or("", |c| CARD_COUNTRIES[c.2 as usize]),
                pad,
            ),
            StatementDescriptor => push_pooled(
                out,
                &pools.statement_descriptors,
                row.descriptor.map(usize::from),
                pad,
            ),
            DisputeReason => push_plain(
                out,
                row.dispute_reason
                    .map_or("", |r| DISPUTE_REASONS[r as usize]),
                pad,
            ),
            ConnectedAccountId => self.id(
                out,
                b"acct_",
                row.connect.map(|c| self.connected_key(c)),
                pad,
            ),
            ConnectedAccountName => push_pooled(
                out,
                &pools.connected_names,
                row.connect.map(usize::from),
                pad,
            ),
            ConnectedAccountCountry => push_plain(
                out,
                row.connect
                    .map_or("", |c| pools.connected_countries[c as usize % 5]),
                pad,
            ),
            ConnectedAccountDirectChargeId => {
                self.id(out, b"py_", row.direct_charge.then_some(key ^ 6), pad)
            }
            DestinationPaymentId => {
                self.id(out, b"py_", row.destination_payment.then_some(key ^ 7), pad)
            }
            SourceTransactionId => {
                let source = (row.connect.is_some() && row.payment).then_some(key ^ 8);
                self.id(out, b"ch_", source, pad);
            }
            ConnectedAccount => match &self.connected_account {
                Some(account) if !row.empty => account.push(out, pad),
                _ if row.empty => self.id(out, b"acct_", None, pad),
                _ => {
                    let connect = row.connect.unwrap_or((key % 5) as u8);
                    push_id(out, b"acct_", self.connected_key(connect), pad);
                }
            },
            Metadata(kind, key_hash) => {
                let mix = splitmix(row.metadata ^ key_hash ^ kind as u64);
                let applies = !row.empty
                    && match kind {
                        MetadataKind::Payment => row.payment,
                        MetadataKind::Refund => {
                            self.categories[row.category as usize].behavior == Behavior::Refund
                        }
                        MetadataKind::Transfer => row.destination_payment,
                    };
                let at = (applies && !mix.is_multiple_of(4)).then_some((mix >> 8) as usize);
                push_pooled(out, &pools.metadata, at, pad);
            }
            PayoutId => {
                let payout = (self.family == Family::Payouts).then_some(key ^ 9);
                self.id(out, b"po_", payout, pad);
            }
            EffectiveAt(when) => {
                let at = (self.family == Family::Payouts && !row.empty).then_some(row.created);
                self.timestamp(out, clock, when, at, pad);
            }
            PayoutExpectedArrivalDate => {
                if let Some(arrival) = row.arrival {
                    clock.push_date(out, arrival);
                }
                out.extend(std::iter::repeat_n(b' ', pad));
            }
            PayoutStatus => push_plain(
                out,
                row.arrival
                    .map_or("", |_| PAYOUT_STATUSES[row.payout_status as usize]),
                pad,
            ),
            PayoutReversedAt(when) => self.timestamp(out, clock, when, row.reversed_at, pad),
            PayoutType => push_plain(
                out,
                row.arrival
                    .map_or("", |_| PAYOUT_TYPES[row.payout_type as usize]),
                pad,
            ),
            PayoutDescription => push_pooled(
                out,
                &pools.payout_descriptions,
                row.payout_description.map(usize::from),
                pad,
            ),
            PayoutDestinationId => {
                let prefix: &[u8] = if row.payout_type == 1 {
                    b"card_"
                } else {
                    b"ba_"
                };
                let destination = row.arrival.map(|_| {
                    self.seed ^ 0xDE57 ^ u64::from(row.payout_type) ^ u64::from(row.currency)
                });
                self.id(out, prefix, destination, pad);
            }
        }
    }
}

fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}
