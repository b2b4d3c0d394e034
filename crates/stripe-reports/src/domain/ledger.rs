//! Ledger states of a report run and the transitions allowed between them.
//!
//! `pending → succeeded → stored`, or `pending → failed`; an unfinished run
//! Stripe no longer has (it answers 404) is `retired`. `stored`, `failed` and
//! `retired` are final: nothing moves a run out of them. The DynamoDB adapter enforces
//! the same rules with condition expressions built from [`RunStatus::may_become`].

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Requested from Stripe, not finished yet.
    Pending,
    /// Stripe finished the run; the file is not in S3 yet.
    Succeeded,
    /// The file is in S3, verified. Final.
    Stored,
    /// Stripe could not produce the report. Final (a retry is a new run).
    Failed,
    /// Stripe no longer has the run (404 with the configured key: a switch
    /// from a test key to a live key, deleted test data). Final, with the
    /// reason, so it is counted and alarmed once instead of on every reconcile.
    Retired,
}

impl RunStatus {
    pub const ALL: [RunStatus; 5] = [
        RunStatus::Pending,
        RunStatus::Succeeded,
        RunStatus::Stored,
        RunStatus::Failed,
        RunStatus::Retired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Stored => "stored",
            RunStatus::Failed => "failed",
            RunStatus::Retired => "retired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        RunStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Stored | RunStatus::Failed | RunStatus::Retired
        )
    }

    /// Whether a run in `self` may be moved to `next`. Staying in the same
    /// non-final state is allowed so that a repeated event is a no-op write.
    ///
    /// `pending → stored` is allowed: the downloader re-reads the run from
    /// Stripe, so a run whose `succeeded` webhook never came can still be stored.
    pub fn may_become(self, next: RunStatus) -> bool {
        use RunStatus::*;
        match (self, next) {
            (Pending, Pending | Succeeded | Stored | Failed | Retired) => true,
            (Succeeded, Succeeded | Stored | Retired) => true,
            (Stored, _) | (Failed, _) | (Retired, _) => false,
            (Succeeded, Pending | Failed) => false,
        }
    }

    /// The states from which `next` may be reached (for condition expressions).
    pub fn allowed_sources(next: RunStatus) -> Vec<RunStatus> {
        RunStatus::ALL
            .into_iter()
            .filter(|from| from.may_become(next))
            .collect()
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a stored run's file landed, recorded with the `stored` transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    pub s3_key: String,
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the stored bytes.
    pub sha256: String,
    pub file_id: String,
}

#[cfg(test)]
mod tests {
    use super::RunStatus::*;
    use super::*;

    #[test]
    fn stored_never_goes_back() {
        for next in RunStatus::ALL {
            assert!(!Stored.may_become(next), "stored -> {next}");
        }
    }

    #[test]
    fn failed_is_final_and_never_overwrites_stored() {
        for next in RunStatus::ALL {
            assert!(!Failed.may_become(next), "failed -> {next}");
        }
        assert!(!Stored.may_become(Failed));
        assert!(!Succeeded.may_become(Failed));
    }

    #[test]
    fn only_unfinished_runs_retire_and_retired_is_final() {
        assert_eq!(
            RunStatus::allowed_sources(Retired),
            vec![Pending, Succeeded]
        );
        for next in RunStatus::ALL {
            assert!(!Retired.may_become(next), "retired -> {next}");
        }
        assert!(Retired.is_final());
    }

    #[test]
    fn the_happy_path_is_allowed() {
        assert!(Pending.may_become(Succeeded));
        assert!(Succeeded.may_become(Stored));
        assert!(Pending.may_become(Failed));
        assert!(!Succeeded.may_become(Pending));
        assert_eq!(RunStatus::allowed_sources(Stored), vec![Pending, Succeeded]);
    }

    #[test]
    fn names_round_trip() {
        for status in RunStatus::ALL {
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(RunStatus::parse("done"), None);
    }
}
