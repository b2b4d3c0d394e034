//! A Stripe event as the webhook reads it, parsed in one pass over the
//! verified body and borrowing from it (SPEC "Webhook endpoint").
//!
//! The envelope (`id`, `object`, `type`, `created`, `livemode`, ...) is read
//! with the types of Stripe's `event`, as before. Of `data.object`, which is
//! most of the body, only the fields a decision reads are kept (`id`,
//! `report_type`, `parameters.interval_start`/`interval_end`, `error`,
//! `data_available_end`); everything else is skipped without building a tree
//! or copying a string. A field is typed only when a decision reads it, so the
//! messages are those serde gives for the old owned structs read from a
//! `serde_json::Value`: "missing field `x`", or a field of the wrong type.
//!
//! What the skipping no longer refuses, all of it bytes no genuine Stripe
//! delivery carries (and the signature says the body is Stripe's): text the
//! decision does not read is checked as JSON but not as UTF-8 (serde_json's
//! `IgnoredAny`), nesting deeper than 128 levels where nothing is read is
//! skipped rather than refused, and a `parameters` field other than the
//! interval may have any type. `parameters` given as an array, which serde
//! read as a struct's fields in order, is now a field of the wrong type.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Stripe's ids and types are short; a longer one is not Stripe's (and could
/// not key the ledger).
const MAX_ID_BYTES: usize = 255;

/// The parts of a Stripe event the webhook reads: borrowed from the body
/// (a string with JSON escapes is the only copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeEvent<'a> {
    pub id: Cow<'a, str>,
    pub event_type: Cow<'a, str>,
    pub livemode: bool,
    /// The connected account a Connect platform's endpoint receives it for.
    pub account: Option<Cow<'a, str>>,
    /// The fields of `data.object` a decision may read.
    pub object: EventObject<'a>,
}

impl StripeEvent<'_> {
    /// The same event owning its text (EventBridge's, read from a `Value`).
    pub fn into_owned(self) -> StripeEvent<'static> {
        StripeEvent {
            id: Cow::Owned(self.id.into_owned()),
            event_type: Cow::Owned(self.event_type.into_owned()),
            livemode: self.livemode,
            account: self.account.map(|account| Cow::Owned(account.into_owned())),
            object: self.object.into_owned(),
        }
    }
}

/// A Stripe event from the bytes of a webhook body: `object` is `"event"`,
/// with `id`, `type`, `created`, `livemode` and an object `data.object`.
/// The reasons never quote the body.
pub fn parse_event(body: &[u8]) -> Result<StripeEvent<'_>, String> {
    // One pass on the happy path; the error path works out what went wrong.
    match serde_json::from_slice::<WireEvent>(body) {
        Ok(event) => check_event(event),
        Err(err) => Err(match serde_json::from_slice::<ObjectProbe>(body) {
            Err(_) => "body is not a JSON object".to_owned(),
            Ok(probe) => not_an_event(probe, &err),
        }),
    }
}

/// The same for an event already parsed as JSON (EventBridge's `detail`),
/// with the same reasons.
pub fn event_from_value(value: &serde_json::Value) -> Result<StripeEvent<'_>, String> {
    if !value.is_object() {
        return Err("body is not a JSON object".to_owned());
    }
    match WireEvent::deserialize(value) {
        Ok(event) => check_event(event),
        Err(err) => Err(not_an_event(
            ObjectProbe::deserialize(value).unwrap_or(ObjectProbe { object: None }),
            &err,
        )),
    }
}

/// The fields of `data.object` a decision may read, each as it was found
/// (a later duplicate key wins, as in a `serde_json::Value`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventObject<'a> {
    id: Scalar<'a>,
    report_type: Scalar<'a>,
    parameters: Parameters,
    error: Scalar<'a>,
    data_available_end: Scalar<'a>,
}

/// The part of a `reporting.report_run` a decision reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRunObject<'o> {
    pub id: &'o str,
    pub report_type: &'o str,
    pub interval_start: Option<i64>,
    pub interval_end: Option<i64>,
    pub error: Option<&'o str>,
}

/// The part of a `reporting.report_type` a decision reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportTypeObject<'o> {
    pub id: &'o str,
    pub data_available_end: i64,
}

/// Why `data.object` is not what the event's type says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    // serde's words for the owned structs this replaces: which field is
    // wrong is not told (a `Value` has no position to give).
    #[error("Data error (a field has the wrong type)")]
    WrongType,
    #[error("missing field `{0}`")]
    MissingField(&'static str),
}

impl<'a> EventObject<'a> {
    /// `data.object` as a report run: `id` and `report_type` strings,
    /// `parameters` (its interval) and `error` optional.
    pub fn report_run(&self) -> Result<ReportRunObject<'_>, ObjectError> {
        match (
            self.id.text("id"),
            self.report_type.text("report_type"),
            self.parameters.interval(),
            self.error.optional_text(),
        ) {
            (Ok(id), Ok(report_type), Ok((interval_start, interval_end)), Ok(error)) => {
                Ok(ReportRunObject {
                    id,
                    report_type,
                    interval_start,
                    interval_end,
                    error,
                })
            }
            (id, report_type, interval, error) => Err(first_error([
                id.err(),
                report_type.err(),
                interval.err(),
                error.err(),
            ])),
        }
    }

    /// `data.object` as a report type: an `id` string and an integer
    /// `data_available_end`.
    pub fn report_type(&self) -> Result<ReportTypeObject<'_>, ObjectError> {
        match (
            self.id.text("id"),
            self.data_available_end.integer("data_available_end"),
        ) {
            (Ok(id), Ok(data_available_end)) => Ok(ReportTypeObject {
                id,
                data_available_end,
            }),
            (id, data_available_end) => Err(first_error([id.err(), data_available_end.err()])),
        }
    }

    fn into_owned(self) -> EventObject<'static> {
        EventObject {
            id: self.id.into_owned(),
            report_type: self.report_type.into_owned(),
            parameters: self.parameters,
            error: self.error.into_owned(),
            data_available_end: self.data_available_end.into_owned(),
        }
    }
}

/// The error serde gives first among the fields' errors: a field of the
/// wrong type is found while the fields are read, a missing one after, in
/// declaration order.
fn first_error<const N: usize>(errors: [Option<ObjectError>; N]) -> ObjectError {
    if errors.contains(&Some(ObjectError::WrongType)) {
        return ObjectError::WrongType;
    }
    errors
        .into_iter()
        .flatten()
        .next()
        .unwrap_or(ObjectError::WrongType)
}

/// One JSON value of `data.object`, as far as a decision can read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Scalar<'a> {
    #[default]
    Absent,
    Null,
    Text(Cow<'a, str>),
    /// An integer an `i64` holds.
    Integer(i64),
    /// Anything else (a boolean, a fraction, an integer beyond `i64`, an
    /// array, an object): never what a read field should be.
    Other,
}

impl Scalar<'_> {
    /// A required string field.
    fn text(&self, name: &'static str) -> Result<&str, ObjectError> {
        match self {
            Scalar::Text(text) => Ok(text),
            Scalar::Absent => Err(ObjectError::MissingField(name)),
            _ => Err(ObjectError::WrongType),
        }
    }

    /// An optional string field (`null` or absent is none).
    fn optional_text(&self) -> Result<Option<&str>, ObjectError> {
        match self {
            Scalar::Text(text) => Ok(Some(text)),
            Scalar::Absent | Scalar::Null => Ok(None),
            _ => Err(ObjectError::WrongType),
        }
    }

    /// A required integer field.
    fn integer(&self, name: &'static str) -> Result<i64, ObjectError> {
        match self {
            Scalar::Integer(value) => Ok(*value),
            Scalar::Absent => Err(ObjectError::MissingField(name)),
            _ => Err(ObjectError::WrongType),
        }
    }

    /// An optional integer field (`null` or absent is none).
    fn optional_integer(&self) -> Result<Option<i64>, ObjectError> {
        match self {
            Scalar::Integer(value) => Ok(Some(*value)),
            Scalar::Absent | Scalar::Null => Ok(None),
            _ => Err(ObjectError::WrongType),
        }
    }

    fn into_owned(self) -> Scalar<'static> {
        match self {
            Scalar::Text(text) => Scalar::Text(Cow::Owned(text.into_owned())),
            other => other.without_text(),
        }
    }

    /// The same where no text is read (an interval bound): a string is just
    /// of the wrong type, so it is not kept.
    fn without_text(self) -> Scalar<'static> {
        match self {
            Scalar::Absent => Scalar::Absent,
            Scalar::Null => Scalar::Null,
            Scalar::Integer(value) => Scalar::Integer(value),
            Scalar::Text(_) | Scalar::Other => Scalar::Other,
        }
    }
}

/// A report run's `parameters`, as far as a decision reads them: the
/// interval (integers, or `null`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Parameters {
    #[default]
    Absent,
    Null,
    Interval {
        start: Scalar<'static>,
        end: Scalar<'static>,
    },
    Other,
}

impl Parameters {
    /// `(interval_start, interval_end)`; absent or `null` parameters have neither.
    fn interval(&self) -> Result<(Option<i64>, Option<i64>), ObjectError> {
        match self {
            Parameters::Absent | Parameters::Null => Ok((None, None)),
            Parameters::Interval { start, end } => {
                Ok((start.optional_integer()?, end.optional_integer()?))
            }
            Parameters::Other => Err(ObjectError::WrongType),
        }
    }
}

/// The event's envelope with the types of Stripe's `event` (the fields
/// nothing reads are still refused when of the wrong type, as before).
#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow)]
    object: Text<'a>,
    #[serde(default, borrow, rename = "api_version")]
    _api_version: Option<Text<'a>>,
    #[serde(rename = "created")]
    _created: i64,
    #[serde(borrow)]
    data: WireData<'a>,
    livemode: bool,
    #[serde(default, rename = "pending_webhooks")]
    _pending_webhooks: i64,
    #[serde(default, borrow, rename = "request")]
    _request: Option<WireRequest<'a>>,
    #[serde(rename = "type", borrow)]
    event_type: Text<'a>,
    #[serde(default, borrow)]
    account: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct WireData<'a> {
    #[serde(borrow)]
    object: DataObject<'a>,
    #[serde(default, rename = "previous_attributes")]
    _previous_attributes: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct WireRequest<'a> {
    #[serde(default, borrow, rename = "id")]
    _id: Option<Text<'a>>,
    #[serde(default, borrow, rename = "idempotency_key")]
    _idempotency_key: Option<Text<'a>>,
}

/// `data.object`: any JSON value is read (so the envelope's own errors come
/// first), and anything but an object is refused after.
enum DataObject<'a> {
    Object(EventObject<'a>),
    NotAnObject,
}

fn check_event(event: WireEvent<'_>) -> Result<StripeEvent<'_>, String> {
    if event.object.0 != "event" {
        return Err("body is not a Stripe event (object is not \"event\")".into());
    }
    let DataObject::Object(object) = event.data.object else {
        return Err("body is not a Stripe event (id, type or data.object missing)".into());
    };
    if event.id.0.is_empty() || event.event_type.0.is_empty() {
        return Err("body is not a Stripe event (id, type or data.object missing)".into());
    }
    if event.id.0.len() > MAX_ID_BYTES || event.event_type.0.len() > MAX_ID_BYTES {
        return Err("body is not a Stripe event (id or type longer than 255 bytes)".into());
    }
    Ok(StripeEvent {
        id: event.id.0,
        event_type: event.event_type.0,
        livemode: event.livemode,
        account: event.account.map(|account| account.0),
        object,
    })
}

#[derive(Deserialize)]
struct ObjectProbe {
    object: Option<String>,
}

fn not_an_event(probe: ObjectProbe, err: &serde_json::Error) -> String {
    if probe.object.as_deref() != Some("event") {
        "body is not a Stripe event (object is not \"event\")".to_owned()
    } else {
        format!("body is not a Stripe event: {}", err_without_input(err))
    }
}

/// serde_json's messages can quote input values ("invalid type: string
/// \"…\""); only "missing field `name`" is kept as is, anything else is reduced
/// to its category and position, so nothing of the body is ever echoed.
fn err_without_input(err: &serde_json::Error) -> String {
    let text = err.to_string();
    if text.starts_with("missing field") {
        text.split(" at line").next().unwrap_or_default().to_owned()
    } else if err.line() == 0 {
        // From a `Value` (EventBridge's detail), where there is no position to give.
        format!("{:?} error (a field has the wrong type)", err.classify())
    } else {
        format!(
            "{:?} error at line {} column {}",
            err.classify(),
            err.line(),
            err.column()
        )
    }
}

/// A JSON string, borrowed from the input unless it holds escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(TextVisitor(PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for DataObject<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for ObjectVisitor<'a> {
            type Value = DataObject<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<DataObject<'a>, M::Error> {
                let mut object = EventObject::default();
                while let Some(key) = map.next_key::<ObjectKey>()? {
                    match key {
                        ObjectKey::Id => object.id = map.next_value()?,
                        ObjectKey::ReportType => object.report_type = map.next_value()?,
                        ObjectKey::Parameters => object.parameters = map.next_value()?,
                        ObjectKey::Error => object.error = map.next_value()?,
                        ObjectKey::DataAvailableEnd => {
                            object.data_available_end = map.next_value()?
                        }
                        ObjectKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(DataObject::Object(object))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<DataObject<'a>, S::Error> {
                skip_seq(seq).map(|()| DataObject::NotAnObject)
            }
            fn visit_unit<E>(self) -> Result<DataObject<'a>, E> {
                Ok(DataObject::NotAnObject)
            }
            fn visit_bool<E>(self, _: bool) -> Result<DataObject<'a>, E> {
                Ok(DataObject::NotAnObject)
            }
            fn visit_i64<E>(self, _: i64) -> Result<DataObject<'a>, E> {
                Ok(DataObject::NotAnObject)
            }
            fn visit_u64<E>(self, _: u64) -> Result<DataObject<'a>, E> {
                Ok(DataObject::NotAnObject)
            }
            fn visit_f64<E>(self, _: f64) -> Result<DataObject<'a>, E> {
                Ok(DataObject::NotAnObject)
            }
            fn visit_str<E>(self, _: &str) -> Result<DataObject<'a>, E> {
                Ok(DataObject::NotAnObject)
            }
        }
        deserializer.deserialize_any(ObjectVisitor(PhantomData))
    }
}

/// The keys of `data.object` a decision reads; any other is skipped.
enum ObjectKey {
    Id,
    ReportType,
    Parameters,
    Error,
    DataAvailableEnd,
    Other,
}

impl<'de> Deserialize<'de> for ObjectKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = ObjectKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_bytes<E>(self, key: &[u8]) -> Result<ObjectKey, E> {
                Ok(match key {
                    b"id" => ObjectKey::Id,
                    b"report_type" => ObjectKey::ReportType,
                    b"parameters" => ObjectKey::Parameters,
                    b"error" => ObjectKey::Error,
                    b"data_available_end" => ObjectKey::DataAvailableEnd,
                    _ => ObjectKey::Other,
                })
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<ObjectKey, E> {
                self.visit_bytes(key.as_bytes())
            }
        }
        // As bytes: a key is only compared with ASCII names, so it need not
        // be checked as UTF-8 first (a few percent of the parse).
        deserializer.deserialize_bytes(KeyVisitor)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Null)
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Text(Cow::Owned(text)))
            }
            fn visit_i64<E>(self, value: i64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Integer(value))
            }
            fn visit_u64<E>(self, value: u64) -> Result<Scalar<'a>, E> {
                Ok(i64::try_from(value).map_or(Scalar::Other, Scalar::Integer))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Other)
            }
            fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Scalar<'a>, S::Error> {
                skip_seq(seq).map(|()| Scalar::Other)
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Scalar<'a>, M::Error> {
                skip_map(map).map(|()| Scalar::Other)
            }
        }
        deserializer.deserialize_any(ScalarVisitor(PhantomData))
    }
}

impl<'de> Deserialize<'de> for Parameters {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParametersVisitor;
        impl<'de> Visitor<'de> for ParametersVisitor {
            type Value = Parameters;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Parameters, M::Error> {
                let (mut start, mut end) = (Scalar::Absent, Scalar::Absent);
                while let Some(key) = map.next_key::<IntervalKey>()? {
                    match key {
                        IntervalKey::Start => start = map.next_value::<Scalar>()?.without_text(),
                        IntervalKey::End => end = map.next_value::<Scalar>()?.without_text(),
                        IntervalKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Parameters::Interval { start, end })
            }
            fn visit_unit<E>(self) -> Result<Parameters, E> {
                Ok(Parameters::Null)
            }
            fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Parameters, S::Error> {
                skip_seq(seq).map(|()| Parameters::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Parameters, E> {
                Ok(Parameters::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Parameters, E> {
                Ok(Parameters::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Parameters, E> {
                Ok(Parameters::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Parameters, E> {
                Ok(Parameters::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Parameters, E> {
                Ok(Parameters::Other)
            }
        }
        deserializer.deserialize_any(ParametersVisitor)
    }
}

/// The keys of `parameters` a decision reads; any other is skipped.
enum IntervalKey {
    Start,
    End,
    Other,
}

impl<'de> Deserialize<'de> for IntervalKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = IntervalKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_bytes<E>(self, key: &[u8]) -> Result<IntervalKey, E> {
                Ok(match key {
                    b"interval_start" => IntervalKey::Start,
                    b"interval_end" => IntervalKey::End,
                    _ => IntervalKey::Other,
                })
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<IntervalKey, E> {
                self.visit_bytes(key.as_bytes())
            }
        }
        deserializer.deserialize_bytes(KeyVisitor)
    }
}

/// Skips the rest of an array nothing reads.
fn skip_seq<'de, S: SeqAccess<'de>>(mut seq: S) -> Result<(), S::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Skips the rest of an object nothing reads.
fn skip_map<'de, M: MapAccess<'de>>(mut map: M) -> Result<(), M::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The parse this module replaced: Stripe's whole `event` with
    /// `data.object` as a `Value`, then the owned structs the decision read
    /// deserialized from it. Every reason and every read value must stay
    /// the same, on bytes and on a `Value`.
    mod reference {
        use super::super::{ObjectProbe, err_without_input, not_an_event};
        use crate::stripe::types::{Event, RunParameters};
        use serde::Deserialize;

        #[derive(Deserialize)]
        struct RunInEvent {
            id: String,
            report_type: String,
            #[serde(default)]
            parameters: Option<RunParameters>,
            #[serde(default)]
            error: Option<String>,
        }

        #[derive(Deserialize)]
        struct TypeInEvent {
            id: String,
            data_available_end: i64,
        }

        fn check(event: Event) -> Result<Event, String> {
            if event.object != "event" {
                return Err("body is not a Stripe event (object is not \"event\")".into());
            }
            if event.id.is_empty() || event.event_type.is_empty() || !event.data.object.is_object()
            {
                return Err("body is not a Stripe event (id, type or data.object missing)".into());
            }
            if event.id.len() > 255 || event.event_type.len() > 255 {
                return Err("body is not a Stripe event (id or type longer than 255 bytes)".into());
            }
            Ok(event)
        }

        pub fn from_bytes(body: &[u8]) -> String {
            outcome(match serde_json::from_slice::<Event>(body) {
                Ok(event) => check(event),
                Err(err) => Err(match serde_json::from_slice::<ObjectProbe>(body) {
                    Err(_) => "body is not a JSON object".to_owned(),
                    Ok(probe) => not_an_event(probe, &err),
                }),
            })
        }

        pub fn from_value(value: &serde_json::Value) -> String {
            outcome(match Event::deserialize(value) {
                Ok(event) => check(event),
                Err(err) => Err(not_an_event(
                    ObjectProbe::deserialize(value).unwrap_or(ObjectProbe { object: None }),
                    &err,
                )),
            })
        }

        fn outcome(event: Result<Event, String>) -> String {
            let event = match event {
                Ok(event) => event,
                Err(reason) => return format!("refused: {reason}"),
            };
            let run = RunInEvent::deserialize(&event.data.object)
                .map(|run| {
                    let parameters = run.parameters.unwrap_or_default();
                    (
                        run.id,
                        run.report_type,
                        parameters.interval_start,
                        parameters.interval_end,
                        run.error,
                    )
                })
                .map_err(|err| err_without_input(&err));
            let kind = TypeInEvent::deserialize(&event.data.object)
                .map(|kind| (kind.id, kind.data_available_end))
                .map_err(|err| err_without_input(&err));
            format!(
                "{} {} {} {:?} run {run:?} type {kind:?}",
                event.id, event.event_type, event.livemode, event.account
            )
        }
    }

    fn outcome(event: Result<StripeEvent<'_>, String>) -> String {
        let event = match event {
            Ok(event) => event,
            Err(reason) => return format!("refused: {reason}"),
        };
        let run = event
            .object
            .report_run()
            .map(|run| {
                (
                    run.id.to_owned(),
                    run.report_type.to_owned(),
                    run.interval_start,
                    run.interval_end,
                    run.error.map(str::to_owned),
                )
            })
            .map_err(|err| err.to_string());
        let kind = event
            .object
            .report_type()
            .map(|kind| (kind.id.to_owned(), kind.data_available_end))
            .map_err(|err| err.to_string());
        format!(
            "{} {} {} {:?} run {run:?} type {kind:?}",
            event.id,
            event.event_type,
            event.livemode,
            event.account.map(Cow::into_owned)
        )
    }

    fn base() -> Value {
        json!({
            "id": "evt_1", "object": "event", "api_version": "2026-07-29.dahlia", "created": 1_796_000_000,
            "livemode": false, "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null},
            "type": "reporting.report_run.succeeded",
            "data": {"object": {
                "id": "frr_1", "object": "reporting.report_run", "report_type": "balance.summary.1",
                "status": "succeeded", "error": null, "data_available_end": 1_795_910_400,
                "parameters": {"interval_start": 1_795_910_400, "interval_end": 1_795_996_800,
                               "timezone": "Etc/UTC", "columns": ["a", "b"]},
                "result": {"id": "file_1", "url": "https://files.stripe.com/v1/files/file_1/contents"}
            }}
        })
    }

    /// The base event with `value` at `path` (`None`: the field removed).
    fn with(path: &[&str], value: Option<Value>) -> Value {
        set(base(), path, value)
    }

    fn set(mut event: Value, path: &[&str], value: Option<Value>) -> Value {
        let (last, parents) = path.split_last().unwrap();
        let mut node = &mut event;
        for key in parents {
            node = &mut node[*key];
        }
        let map = node.as_object_mut().unwrap();
        match value {
            Some(value) => map.insert((*last).to_owned(), value),
            None => map.remove(*last),
        };
        event
    }

    fn cases() -> Vec<Vec<u8>> {
        let object = |field: &str, value: Option<Value>| with(&["data", "object", field], value);
        let parameters = |value: Value| object("parameters", Some(value));
        let mut values = vec![base()];
        for value in [
            None,
            Some(json!(null)),
            Some(json!(42)),
            Some(json!({"a": 1})),
            Some(json!(["frr_1"])),
            Some(json!("")),
        ] {
            values.push(object("id", value.clone()));
            values.push(object("report_type", value.clone()));
            values.push(object("error", value.clone()));
            values.push(object("data_available_end", value.clone()));
            values.push(object("parameters", value));
        }
        for value in [
            json!(1.5),
            json!(-5),
            json!(18_446_744_073_709_551_615_u64),
            json!(9_223_372_036_854_775_807_i64),
            json!(true),
            json!("boom"),
        ] {
            values.push(object("error", Some(value.clone())));
            values.push(object("data_available_end", Some(value.clone())));
            values.push(parameters(json!({"interval_start": value.clone()})));
            values.push(parameters(
                json!({"interval_end": value, "interval_start": null}),
            ));
        }
        values.push(parameters(json!({})));
        // A field of the wrong type is told before a missing one.
        values.push(set(
            object("id", Some(json!(5))),
            &["data", "object", "report_type"],
            None,
        ));
        for field in [
            "id",
            "object",
            "api_version",
            "created",
            "data",
            "livemode",
            "pending_webhooks",
            "request",
            "type",
            "account",
        ] {
            values.push(with(&[field], None));
            values.push(with(&[field], Some(json!(null))));
            values.push(with(&[field], Some(json!(7))));
            values.push(with(&[field], Some(json!("acct_1"))));
            values.push(with(&[field], Some(json!({"id": 5}))));
            values.push(with(&[field], Some(json!([]))));
        }
        for value in [json!(null), json!("x"), json!([]), json!(5), json!({})] {
            values.push(with(&["data", "object"], Some(value)));
        }
        values.push(with(&["data", "object"], None));
        values.push(with(
            &["data", "previous_attributes"],
            Some(json!({"status": "pending"})),
        ));
        values.push(with(&["object"], Some(json!("list"))));
        values.push(with(
            &["type"],
            Some(json!("reporting.report_type.updated")),
        ));
        values.push(with(&["type"], Some(json!(""))));
        values.push(with(&["id"], Some(json!("e".repeat(256)))));
        values.push(with(&["type"], Some(json!("t".repeat(256)))));
        values.push(with(&["id"], Some(json!("e".repeat(255)))));
        let mut bodies: Vec<Vec<u8>> = values
            .iter()
            .map(|value| value.to_string().into_bytes())
            .collect();
        let text = base().to_string();
        for (from, to) in [
            // Escapes: the text is copied, never compared raw.
            ("\"frr_1\"", "\"fr\\u0072_1\""),
            ("\"evt_1\"", "\"evt\\u005f1\""),
            (
                "\"reporting.report_run.succeeded\"",
                "\"reporting.report_run.succ\\u0065eded\"",
            ),
            // A later duplicate key wins inside data.object (as in a Value)...
            ("\"id\":\"frr_1\"", "\"id\":5,\"id\":\"frr_2\""),
            (
                "\"interval_end\":1795996800",
                "\"interval_end\":\"x\",\"interval_end\":7",
            ),
            // ...and is refused in the envelope (serde's derive).
            ("\"id\":\"evt_1\"", "\"id\":\"evt_1\",\"id\":\"evt_2\""),
            ("\"type\":\"reporting", "\"type\":5,\"type\":\"reporting"),
            // Not JSON, or not only JSON.
            ("\"created\":1796000000", "\"created\":1796000000,"),
            ("\"status\":\"succeeded\"", "\"status\":succeeded"),
            ("\"created\":1796000000", "\"created\":1e400"),
        ] {
            assert!(text.contains(from), "{from}");
            bodies.push(text.replacen(from, to, 1).into_bytes());
        }
        bodies.push(format!("{text} trailing").into_bytes());
        bodies.push(b"not json".to_vec());
        bodies.push(b"[\"evt_1\"]".to_vec());
        // The array form serde's derive reads positionally.
        for array in [
            r#"["event"]"#,
            r#"["event","event"]"#,
            r#"["event","event",null,1,{"object":{"id":"frr_1"}},false]"#,
            r#"["event","event",null,1,{"object":{"id":"frr_1"}},false,0,null,"t"]"#,
            r#"["evt_1","event",null,1,{"object":{"id":"frr_1"}},false,0,null,"t","acct_1"]"#,
            r#"["evt_1","event",null,1,{"object":{"id":"frr_1"}},false,0,null,"t",null,5]"#,
            r#"["evt_1","event",5]"#,
        ] {
            bodies.push(array.as_bytes().to_vec());
        }
        bodies.push(b"\"event\"".to_vec());
        bodies.push(b"{}".to_vec());
        bodies.push(br#"{"object":"event"}"#.to_vec());
        bodies
    }

    #[test]
    fn every_reason_and_value_is_the_replaced_parses_on_bytes_and_on_a_value() {
        for body in cases() {
            let shown = String::from_utf8_lossy(&body);
            assert_eq!(
                outcome(parse_event(&body)),
                reference::from_bytes(&body),
                "{shown}"
            );
            if let Ok(value) = serde_json::from_slice::<Value>(&body) {
                let expected = if value.is_object() {
                    reference::from_value(&value)
                } else {
                    "refused: body is not a JSON object".to_owned()
                };
                assert_eq!(outcome(event_from_value(&value)), expected, "{shown}");
            }
        }
    }

    #[test]
    fn text_is_borrowed_from_the_body_unless_escaped() {
        let body = base().to_string();
        let event = parse_event(body.as_bytes()).unwrap();
        assert!(matches!(event.id, Cow::Borrowed(_)));
        assert!(matches!(event.event_type, Cow::Borrowed(_)));
        assert!(matches!(event.object.id, Scalar::Text(Cow::Borrowed(_))));
        let escaped = body.replacen("\"frr_1\"", "\"fr\\u0072_1\"", 1);
        let event = parse_event(escaped.as_bytes()).unwrap();
        assert_eq!(event.object.report_run().unwrap().id, "frr_1");
    }

    /// What the skipping accepts that the replaced parse refused, or the
    /// reverse: nothing a genuine Stripe delivery carries.
    #[test]
    fn what_is_skipped_is_not_typed() {
        let text = base().to_string();
        // Text nothing reads is not checked as UTF-8.
        let mut invalid = text.clone().into_bytes();
        let at = text.find("Etc/UTC").unwrap();
        invalid[at] = 0xff;
        assert!(reference::from_bytes(&invalid).starts_with("refused"));
        assert!(parse_event(&invalid).is_ok());
        // Deep nesting where nothing reads is skipped (without recursion).
        let deep = text.replacen(
            "\"status\":\"succeeded\"",
            &format!("\"status\":{}{}", "[".repeat(1000), "]".repeat(1000)),
            1,
        );
        assert!(reference::from_bytes(deep.as_bytes()).starts_with("refused"));
        assert!(parse_event(deep.as_bytes()).is_ok());
        // A parameter the decision does not read may have any type.
        let timezone = with(
            &["data", "object", "parameters", "timezone"],
            Some(json!(5)),
        );
        assert!(reference::from_bytes(timezone.to_string().as_bytes()).contains("run Err"));
        let event = event_from_value(&timezone).unwrap();
        assert_eq!(
            event.object.report_run().unwrap().interval_end,
            Some(1_795_996_800)
        );
        // Parameters as an array (serde's struct-as-sequence form) are of the wrong type.
        let array = with(&["data", "object", "parameters"], Some(json!([])));
        assert_eq!(
            event_from_value(&array).unwrap().object.report_run(),
            Err(ObjectError::WrongType)
        );
    }
}
