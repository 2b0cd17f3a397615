//! The domain error. Messages are safe to show an administrator: they name
//! the record and the rule, never a secret, code or password.

use crate::keys::KeyError;
use crate::password::PasswordError;
use crate::store::error::StoreError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// Bad input from an administrator or API caller; nothing was changed.
    #[error("invalid {field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    /// The submitted code did not confirm or resync the token.
    #[error("the code does not match (check the device's clock, or that the right token was scanned)")]
    CodeMismatch,
    /// Two resync codes matched, but further from this server's clock than
    /// the policy lets a token drift: after the resync the login window
    /// (capped at `max_drift_steps`) could not reach the device's codes, so
    /// the resync is refused and nothing is changed.
    #[error(
        "token {serial}: these codes are {steps} step(s) ({seconds} s) {direction} this server's clock, more than \
         policy max_drift_steps = {max} lets a token drift, so the token would not work after this resync; nothing \
         was changed. Set the device's clock right (automatic time), or raise the limit (`tessera policy set \
         max_drift_steps={steps}`) and resync again"
    )]
    DriftBeyondPolicy { serial: String, steps: u64, seconds: u64, direction: &'static str, max: u32 },
    #[error("cannot open the secret of token {token}: {source}")]
    Key { token: String, source: KeyError },
    /// A login could not be decided: a secret of the user's tokens does not
    /// open with this node's master key (corrupt, or sealed under a key this
    /// node lacks). Fail closed: answered `unavailable`, never counted.
    #[error("a token secret of this user cannot be opened with this node's master key; the login was not decided")]
    SecretUnreadable,
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Store(StoreError),
    /// A bug or corrupted record; the message is safe to show.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => CoreError::NotFound(what),
            StoreError::Conflict(what) => CoreError::Conflict(what),
            other => CoreError::Store(other),
        }
    }
}

impl CoreError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        CoreError::Invalid { field, message: message.into() }
    }

    /// A resync refused for a drift of `drift` steps of `period_seconds`
    /// (see [`CoreError::DriftBeyondPolicy`]).
    pub fn drift_beyond_policy(serial: &str, drift: i64, period_seconds: u32, max: u32) -> Self {
        let steps = drift.unsigned_abs();
        CoreError::DriftBeyondPolicy {
            serial: serial.to_string(),
            steps,
            seconds: steps.saturating_mul(u64::from(period_seconds)),
            direction: if drift > 0 { "ahead of" } else { "behind" },
            max,
        }
    }

    /// Whether the caller is at fault (bad input, missing or duplicate record)
    /// rather than the server.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            CoreError::Invalid { .. }
                | CoreError::NotFound(_)
                | CoreError::Conflict(_)
                | CoreError::CodeMismatch
                | CoreError::DriftBeyondPolicy { .. }
                | CoreError::Store(StoreError::ReadOnly(_) | StoreError::Fenced(_))
                | CoreError::Password(PasswordError::TooShort | PasswordError::TooLong)
        )
    }
}
