//! The free text of the files (descriptions, names, addresses, metadata),
//! chosen to hold what a CSV reader must get right: commas, double quotes,
//! line breaks and non-ASCII letters, quoted as RFC 4180 requires. Each value
//! is escaped once, when the pools are first used.

use std::sync::OnceLock;

/// A field value as written: `inner` is the value with `"` doubled, `quoted`
/// whether it must be enclosed in quotes (it holds `,` `"` CR or LF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    inner: Box<[u8]>,
    quoted: bool,
}

impl Encoded {
    pub fn new(value: &str) -> Self {
        let quoted = value
            .bytes()
            .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
        let inner = if value.contains('"') {
            value.replace('"', "\"\"").into_bytes()
        } else {
            value.as_bytes().to_vec()
        };
        Self {
            inner: inner.into_boxed_slice(),
            quoted,
        }
    }

    /// The field's bytes: the value escaped, followed by `pad` bytes of
    /// plain text (inside the quotes when it is quoted).
    pub fn push(&self, out: &mut Vec<u8>, pad: usize) {
        if self.quoted {
            out.push(b'"');
        }
        out.extend_from_slice(&self.inner);
        push_padding(out, pad);
        if self.quoted {
            out.push(b'"');
        }
    }

    /// Whether the value is written in quotes.
    pub fn is_quoted(&self) -> bool {
        self.quoted
    }

    /// The field in quotes even though it needs none: the same value to a
    /// reader, two bytes longer.
    pub fn push_quoted(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        out.extend_from_slice(&self.inner);
        out.push(b'"');
    }
}

/// Text that makes a field longer without needing quotes or changing how it
/// reads: ASCII letters and spaces only, one byte each.
const PADDING: &[u8] = b" lorem ipsum dolor sit amet consectetur adipiscing elit";

pub fn push_padding(out: &mut Vec<u8>, mut pad: usize) {
    while pad > 0 {
        let take = pad.min(PADDING.len());
        out.extend_from_slice(&PADDING[..take]);
        pad -= take;
    }
}

/// Descriptions of balance transactions.
const DESCRIPTIONS: &[&str] = &[
    "Payment for invoice INV-1042",
    "Subscription renewal",
    "Refund, order #5531",
    "Order \"Deluxe\" – 2 × Café crème",
    "Chargeback: \"product not received\"",
    "Gift card\nwith a note",
    "Zahlung für Bestellung Nr. 77, danke",
    "東京ストア 注文 #88",
    "Ελληνικό κατάστημα",
    "🎉 Anniversary sale",
    "STRIPE PROCESSING FEES",
    "Transfer to connected account",
    "Plain description",
    "Montréal, \"Le Plateau\" branch\r\nsecond line",
];

/// Customer names, each with the ASCII name its e-mail address is made of.
const CUSTOMERS: &[(&str, &str)] = &[
    ("José Álvarez", "jose.alvarez"),
    ("Siobhán O'Brien", "siobhan.obrien"),
    ("Zoë \"ZZ\" Smith", "zoe.smith"),
    ("Müller, Hans", "hans.mueller"),
    ("山田 太郎", "taro.yamada"),
    ("Łukasz Żółć", "lukasz.zolc"),
    ("Ana María da Silva", "ana.silva"),
    ("Renée Dupont", "renee.dupont"),
    ("Nguyễn Văn An", "an.nguyen"),
    ("Олег Петров", "oleg.petrov"),
    ("Smith & Sons, Ltd.", "billing"),
    ("Plain Customer", "plain.customer"),
];

const CUSTOMER_DESCRIPTIONS: &[&str] = &[
    "VIP customer, since 2019",
    "Prefers \"paper\" invoices",
    "Note line 1\nNote line 2",
    "Client fidèle – Montréal",
    "",
    "Wholesale account",
];

const LINE1: &[&str] = &[
    "1 Main St",
    "22 Rue de l'Église, Apt 4",
    "Hauptstraße 5",
    "742 Evergreen Terrace",
    "1-2-3 Marunouchi",
    "Av. Paulista, 1000",
];
const LINE2: &[&str] = &[
    "",
    "Suite 100",
    "c/o \"Acme\"",
    "Floor 3\nBack entrance",
    "Bâtiment B",
    "",
];
const CITIES: &[&str] = &[
    "New York",
    "Zürich",
    "São Paulo",
    "東京",
    "Montréal",
    "Berlin",
];
const STATES: &[&str] = &["NY", "ZH", "SP", "", "QC", "BE"];
const POSTAL_CODES: &[&str] = &["10001", "8001", "01310-100", "100-0005", "H2X 1Y4", "10115"];
const COUNTRIES: &[&str] = &["US", "CH", "BR", "JP", "CA", "DE"];

const STATEMENT_DESCRIPTORS: &[&str] = &[
    "ACME* ORDER 1042",
    "CAFÉ RÖSTI",
    "ACME, INC.",
    "ACME* SUB \"PRO\"",
];

/// Connected accounts: name and country.
const CONNECTED_ACCOUNTS: &[(&str, &str)] = &[
    ("Café Rösti GmbH", "CH"),
    ("Smith & Sons, LLC", "US"),
    ("\"Quoted\" Shop", "GB"),
    ("東京ベーカリー", "JP"),
    ("Plain Seller", "US"),
];

const PAYOUT_DESCRIPTIONS: &[&str] = &[
    "STRIPE PAYOUT",
    "Weekly payout, \"main\" account",
    "Auszahlung – Zürich",
    "payout\nsplit line",
    "",
];

const METADATA: &[&str] = &[
    "gift wrap, \"red\"",
    "line one\nline two",
    "Ünïcödé ✓",
    "12345",
    "plain",
    "",
    "ORD-77",
];

pub const PAYMENT_METHODS: &[&str] = &["card", "link", "us_bank_account", "sepa_debit", "klarna"];
pub const CARD_BRANDS: &[&str] = &["visa", "mastercard", "amex", "jcb"];
pub const CARD_FUNDING: &[&str] = &["credit", "debit", "prepaid"];
pub const CARD_COUNTRIES: &[&str] = &["US", "GB", "DE", "JP", "BR"];
pub const DISPUTE_REASONS: &[&str] = &[
    "fraudulent",
    "product_not_received",
    "duplicate",
    "subscription_canceled",
];
pub const PAYOUT_STATUSES: &[&str] = &["paid", "in_transit", "pending", "failed", "canceled"];
pub const PAYOUT_TYPES: &[&str] = &["bank_account", "card"];

/// Every pool, escaped.
pub struct Pools {
    pub descriptions: Vec<Encoded>,
    pub customer_names: Vec<Encoded>,
    /// ASCII, never quoted.
    pub customer_emails: Vec<&'static str>,
    pub customer_descriptions: Vec<Encoded>,
    pub line1: Vec<Encoded>,
    pub line2: Vec<Encoded>,
    pub cities: Vec<Encoded>,
    pub states: Vec<Encoded>,
    pub postal_codes: Vec<Encoded>,
    pub countries: Vec<Encoded>,
    pub statement_descriptors: Vec<Encoded>,
    pub connected_names: Vec<Encoded>,
    pub connected_countries: Vec<&'static str>,
    pub payout_descriptions: Vec<Encoded>,
    pub metadata: Vec<Encoded>,
}

fn encode_all(values: &[&str]) -> Vec<Encoded> {
    values.iter().map(|value| Encoded::new(value)).collect()
}

pub fn pools() -> &'static Pools {
    static POOLS: OnceLock<Pools> = OnceLock::new();
    POOLS.get_or_init(|| Pools {
        descriptions: encode_all(DESCRIPTIONS),
        customer_names: CUSTOMERS
            .iter()
            .map(|(name, _)| Encoded::new(name))
            .collect(),
        customer_emails: CUSTOMERS.iter().map(|(_, email)| *email).collect(),
        customer_descriptions: encode_all(CUSTOMER_DESCRIPTIONS),
        line1: encode_all(LINE1),
        line2: encode_all(LINE2),
        cities: encode_all(CITIES),
        states: encode_all(STATES),
        postal_codes: encode_all(POSTAL_CODES),
        countries: encode_all(COUNTRIES),
        statement_descriptors: encode_all(STATEMENT_DESCRIPTORS),
        connected_names: CONNECTED_ACCOUNTS
            .iter()
            .map(|(name, _)| Encoded::new(name))
            .collect(),
        connected_countries: CONNECTED_ACCOUNTS.iter().map(|(_, c)| *c).collect(),
        payout_descriptions: encode_all(PAYOUT_DESCRIPTIONS),
        metadata: encode_all(METADATA),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(value: &str, pad: usize) -> String {
        let mut out = Vec::new();
        Encoded::new(value).push(&mut out, pad);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn quoted_only_where_rfc_4180_needs_it() {
        assert_eq!(written("plain", 0), "plain");
        assert_eq!(written("Müller, Hans", 0), "\"Müller, Hans\"");
        assert_eq!(written("Zoë \"ZZ\" Smith", 0), "\"Zoë \"\"ZZ\"\" Smith\"");
        assert_eq!(written("a\nb", 0), "\"a\nb\"");
        assert_eq!(written("a\r\nb", 0), "\"a\r\nb\"");
        assert_eq!(written("", 3), " lo");
        assert_eq!(written("x,y", 4), "\"x,y lor\"");
    }

    #[test]
    fn padding_is_plain_ascii_of_any_length() {
        let mut out = Vec::new();
        push_padding(&mut out, 1000);
        assert_eq!(out.len(), 1000);
        assert!(out.iter().all(|b| b.is_ascii_alphabetic() || *b == b' '));
    }
}
