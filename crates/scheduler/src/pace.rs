//! The shared request pace in the ledger table: one item per account,
//! `pk = pace#<account>`, holding the time of the account's next free
//! request slot (`next_slot_us`, microseconds since the Unix epoch). Every
//! invocation working the account takes its slots from it, so together
//! they keep one pace (docs/design-choices.md, "Stripe's rate limits").
//!
//! Taking slots is one conditional `UpdateItem` while the account is busy
//! (`next_slot_us += count × spacing` when it is not in the past, answering
//! the old value), or, when it is idle, one that moves it to now + count ×
//! spacing; the first tried is the one that worked last. An invocation
//! takes up to 8 slots at once, so a fan-out costs about one write per 8
//! Stripe requests. The item expires by the table's TTL (`expires_at`)
//! a day after its last use, and is in no index (it carries no `unfinished`).

use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use stripe_reports::aws::sdk_message;
use stripe_reports::domain::account::AccountId;
use stripe_reports::rate::{PaceError, SharedPace, SlotFuture};

/// How far ahead of now the next slot may be (slots are handed out ahead
/// of time to the requests waiting for them: seconds, not minutes). One
/// further ahead was set by a process whose clock is far off, and is not
/// followed.
const HORIZON_US: u64 = 60_000_000;
/// How long the item is kept after its last slot.
const KEEP_SECS: u64 = 86_400;

/// The pace item of `account`.
pub fn pace_pk(account: &AccountId) -> String {
    format!("pace#{account}")
}

pub struct DynamoPace {
    client: Client,
    table: String,
    /// Whether the account was idle at the last slot taken (then the idle
    /// update is tried first).
    idle_first: AtomicBool,
}

fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn refused(err: &SdkError<UpdateItemError>) -> bool {
    err.as_service_error()
        .is_some_and(UpdateItemError::is_conditional_check_failed_exception)
}

impl DynamoPace {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            idle_first: AtomicBool::new(false),
        }
    }

    /// The account is busy: its next slot is now or later (and within the
    /// horizon). Takes it and answers it.
    async fn take_next(
        &self,
        account: &AccountId,
        now_us: u64,
        step_us: u64,
    ) -> Result<Option<u64>, PaceError> {
        let answer = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pace_pk(account)))
            .update_expression("SET next_slot_us = next_slot_us + :spacing, expires_at = :expires")
            .condition_expression("next_slot_us >= :now AND next_slot_us <= :horizon")
            .expression_attribute_values(":spacing", number(step_us))
            .expression_attribute_values(":now", number(now_us))
            .expression_attribute_values(":horizon", number(now_us + HORIZON_US))
            .expression_attribute_values(":expires", number(now_us / 1_000_000 + KEEP_SECS))
            .return_values(ReturnValue::UpdatedOld)
            .send()
            .await;
        match answer {
            Ok(output) => old_slot(&output).map(Some),
            Err(err) if refused(&err) => Ok(None),
            Err(err) => Err(PaceError(sdk_message(&err))),
        }
    }

    /// The account is idle: its next slot is in the past (or it has none).
    /// Takes now.
    async fn take_now(
        &self,
        account: &AccountId,
        now_us: u64,
        step_us: u64,
    ) -> Result<Option<u64>, PaceError> {
        let answer = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pace_pk(account)))
            .update_expression("SET next_slot_us = :next, expires_at = :expires")
            .condition_expression("attribute_not_exists(next_slot_us) OR next_slot_us < :now")
            .expression_attribute_values(":next", number(now_us + step_us))
            .expression_attribute_values(":now", number(now_us))
            .expression_attribute_values(":expires", number(now_us / 1_000_000 + KEEP_SECS))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(Some(now_us)),
            Err(err) if refused(&err) => Ok(None),
            Err(err) => Err(PaceError(sdk_message(&err))),
        }
    }

    /// Takes slots spanning `step_us` (their count × the spacing).
    async fn take(&self, account: &AccountId, now_us: u64, step_us: u64) -> Result<u64, PaceError> {
        // Busy and idle exclude each other but for a slot beyond the
        // horizon; a refusal means the other state (or a race into it), so
        // a few alternations settle it.
        let mut idle = self.idle_first.load(Ordering::Relaxed);
        for _ in 0..4 {
            let taken = if idle {
                self.take_now(account, now_us, step_us).await?
            } else {
                self.take_next(account, now_us, step_us).await?
            };
            if let Some(slot) = taken {
                self.idle_first.store(idle, Ordering::Relaxed);
                return Ok(slot);
            }
            idle = !idle;
        }
        Err(PaceError(format!(
            "{account}'s next request slot is more than {} s ahead (set by a process whose clock is off?)",
            HORIZON_US / 1_000_000
        )))
    }
}

/// The slot an update took: the old `next_slot_us` it answered.
fn old_slot(output: &UpdateItemOutput) -> Result<u64, PaceError> {
    output
        .attributes()
        .and_then(|old| old.get("next_slot_us"))
        .and_then(|value| value.as_n().ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| PaceError("the pace item answered no next_slot_us".into()))
}

impl SharedPace for DynamoPace {
    fn take_slots<'a>(
        &'a self,
        account: &'a AccountId,
        now_us: u64,
        spacing_us: u64,
        count: u64,
    ) -> SlotFuture<'a> {
        Box::pin(self.take(account, now_us, spacing_us.saturating_mul(count)))
    }
}
