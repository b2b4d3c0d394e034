//! What a column holds, from its name as Stripe documents it.

use super::write::splitmix;

/// A timestamp in UTC (`*_utc`) or in the run's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    Utc,
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressGroup {
    CustomerShipping,
    Customer,
    Shipping,
    Card,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPart {
    Line1,
    Line2,
    City,
    State,
    PostalCode,
    Country,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataKind {
    Payment,
    Refund,
    Transfer,
}

/// The amount columns, whose sums a file's totals give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Gross,
    Fee,
    Net,
    CustomerFacing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    BalanceTransactionId,
    Created(Clock),
    AvailableOn(Clock),
    Currency,
    Amount(Amount),
    Count,
    /// `reporting_category`, and `category` of the balance summary.
    Category,
    SourceId,
    Description,
    CustomerFacingCurrency,
    RegulatoryTag,
    AutomaticPayoutId,
    AutomaticPayoutEffectiveAt(Clock),
    CustomerId,
    CustomerEmail,
    CustomerName,
    CustomerDescription,
    Address(AddressGroup, AddressPart),
    ChargeId,
    PaymentIntentId,
    ChargeCreated(Clock),
    InvoiceId,
    InvoiceNumber,
    SubscriptionId,
    OrderId,
    PaymentMethodType,
    IsLink,
    CardBrand,
    CardFunding,
    CardCountry,
    StatementDescriptor,
    DisputeReason,
    ConnectedAccountId,
    ConnectedAccountName,
    ConnectedAccountCountry,
    ConnectedAccountDirectChargeId,
    DestinationPaymentId,
    SourceTransactionId,
    /// The `connected_account` column of the `connected_account_` types.
    ConnectedAccount,
    /// `payment_metadata[<key>]` and the like; the number tells keys apart.
    Metadata(MetadataKind, u64),
    PayoutId,
    EffectiveAt(Clock),
    PayoutExpectedArrivalDate,
    PayoutStatus,
    PayoutReversedAt(Clock),
    PayoutType,
    PayoutDescription,
    PayoutDestinationId,
    /// A name the emulator does not know: always empty (Stripe's answer to
    /// an unknown column is not documented).
    Unknown,
}

/// How a field can be made longer, for the last row of a file to end it at
/// its exact size: free text takes plain words, ids more characters,
/// numbers leading zeros; anything else trailing spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stretch {
    Text,
    Id,
    Number,
    Other,
}

fn key_hash(key: &str) -> u64 {
    key.bytes()
        .fold(0xCBF2_9CE4_8422_2325u64, |h, b| splitmix(h ^ u64::from(b)))
}

impl Field {
    pub fn for_name(name: &str) -> Self {
        use Field::*;
        for (prefix, kind) in [
            ("payment_metadata[", MetadataKind::Payment),
            ("refund_metadata[", MetadataKind::Refund),
            ("transfer_metadata[", MetadataKind::Transfer),
        ] {
            if let Some(key) = name.strip_prefix(prefix).and_then(|k| k.strip_suffix(']')) {
                return Metadata(kind, key_hash(key));
            }
        }
        for (prefix, group) in [
            ("customer_shipping_address_", AddressGroup::CustomerShipping),
            ("customer_address_", AddressGroup::Customer),
            ("shipping_address_", AddressGroup::Shipping),
            ("card_address_", AddressGroup::Card),
        ] {
            if let Some(part) = name.strip_prefix(prefix) {
                let part = match part {
                    "line1" => AddressPart::Line1,
                    "line2" => AddressPart::Line2,
                    "city" => AddressPart::City,
                    "state" => AddressPart::State,
                    "postal_code" => AddressPart::PostalCode,
                    "country" => AddressPart::Country,
                    _ => return Unknown,
                };
                return Address(group, part);
            }
        }
        match name {
            "balance_transaction_id" => BalanceTransactionId,
            "created_utc" => Created(Clock::Utc),
            "created" => Created(Clock::Local),
            "available_on_utc" => AvailableOn(Clock::Utc),
            "available_on" => AvailableOn(Clock::Local),
            "currency" => Currency,
            "gross" => Amount(self::Amount::Gross),
            "fee" => Amount(self::Amount::Fee),
            "net" | "net_amount" => Amount(self::Amount::Net),
            "customer_facing_amount" => Amount(self::Amount::CustomerFacing),
            "count" => Count,
            "reporting_category" | "category" => Category,
            "source_id" => SourceId,
            "description" => Description,
            "customer_facing_currency" => CustomerFacingCurrency,
            "regulatory_tag" => RegulatoryTag,
            "automatic_payout_id" => AutomaticPayoutId,
            "automatic_payout_effective_at_utc" => AutomaticPayoutEffectiveAt(Clock::Utc),
            "automatic_payout_effective_at" => AutomaticPayoutEffectiveAt(Clock::Local),
            "customer_id" => CustomerId,
            "customer_email" => CustomerEmail,
            "customer_name" => CustomerName,
            "customer_description" => CustomerDescription,
            "charge_id" => ChargeId,
            "payment_intent_id" => PaymentIntentId,
            "charge_created_utc" => ChargeCreated(Clock::Utc),
            "charge_created" => ChargeCreated(Clock::Local),
            "invoice_id" => InvoiceId,
            "invoice_number" => InvoiceNumber,
            "subscription_id" => SubscriptionId,
            "order_id" => OrderId,
            "payment_method_type" => PaymentMethodType,
            "is_link" => IsLink,
            "card_brand" => CardBrand,
            "card_funding" => CardFunding,
            "card_country" => CardCountry,
            "statement_descriptor" => StatementDescriptor,
            "dispute_reason" => DisputeReason,
            "connected_account_id" => ConnectedAccountId,
            "connected_account_name" => ConnectedAccountName,
            "connected_account_country" => ConnectedAccountCountry,
            "connected_account_direct_charge_id" => ConnectedAccountDirectChargeId,
            "destination_payment_id" => DestinationPaymentId,
            "source_transaction_id" => SourceTransactionId,
            "connected_account" => ConnectedAccount,
            "payout_id" => PayoutId,
            "effective_at_utc" => EffectiveAt(Clock::Utc),
            "effective_at" => EffectiveAt(Clock::Local),
            "payout_expected_arrival_date" => PayoutExpectedArrivalDate,
            "payout_status" => PayoutStatus,
            "payout_reversed_at_utc" => PayoutReversedAt(Clock::Utc),
            "payout_reversed_at" => PayoutReversedAt(Clock::Local),
            "payout_type" => PayoutType,
            "payout_description" => PayoutDescription,
            "payout_destination_id" => PayoutDestinationId,
            _ => Unknown,
        }
    }

    pub fn stretch(self) -> Stretch {
        use Field::*;
        match self {
            Description | CustomerName | CustomerDescription | StatementDescriptor
            | ConnectedAccountName | PayoutDescription | Metadata(..) => Stretch::Text,
            BalanceTransactionId
            | SourceId
            | AutomaticPayoutId
            | CustomerId
            | ChargeId
            | PaymentIntentId
            | InvoiceId
            | SubscriptionId
            | OrderId
            | ConnectedAccountId
            | ConnectedAccountDirectChargeId
            | DestinationPaymentId
            | SourceTransactionId
            | ConnectedAccount
            | PayoutId
            | PayoutDestinationId => Stretch::Id,
            Amount(_) | Count => Stretch::Number,
            _ => Stretch::Other,
        }
    }
}

/// The column the last row pads: the first free-text column, else the
/// first id, else the first number (one every row has before
/// `customer_facing_amount`), else the first column.
pub fn stretch_column(fields: &[Field]) -> usize {
    (0..fields.len())
        .min_by_key(|&i| {
            let optional = fields[i] == Field::Amount(Amount::CustomerFacing);
            (fields[i].stretch(), optional, i)
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_what_they_hold() {
        assert_eq!(Field::for_name("created"), Field::Created(Clock::Local));
        assert_eq!(Field::for_name("created_utc"), Field::Created(Clock::Utc));
        assert_eq!(
            Field::for_name("card_address_postal_code"),
            Field::Address(AddressGroup::Card, AddressPart::PostalCode)
        );
        assert!(matches!(
            Field::for_name("payment_metadata[order, id]"),
            Field::Metadata(MetadataKind::Payment, _)
        ));
        assert_ne!(
            Field::for_name("payment_metadata[a]"),
            Field::for_name("payment_metadata[b]")
        );
        assert_eq!(Field::for_name("payment_metadata[key"), Field::Unknown);
        assert_eq!(Field::for_name("shipping_address_planet"), Field::Unknown);
        assert_eq!(Field::for_name("id"), Field::Unknown);
    }

    #[test]
    fn the_last_row_pads_text_before_ids_before_numbers() {
        let fields: Vec<Field> = ["currency", "gross", "balance_transaction_id", "description"]
            .iter()
            .map(|n| Field::for_name(n))
            .collect();
        assert_eq!(stretch_column(&fields), 3);
        assert_eq!(stretch_column(&fields[..3]), 2);
        assert_eq!(stretch_column(&fields[..2]), 1);
        assert_eq!(stretch_column(&fields[..1]), 0);
    }
}
