//! The clock check of shared database mode: this node's clock against the
//! database server's. TOTP codes are checked against this node's clock, so
//! a node whose clock is off rejects valid codes (a node 120 s ahead
//! rejects every one at the default skew); the database server is the one
//! clock all nodes talk to, so each compares itself with it.
//!
//! Measured on every new pool connection (a post-create hook) and on
//! request ([`measure`]); what to make of it (metric, warning, readiness)
//! is the server's business.

use std::time::Instant;

use deadpool_postgres::Hook;
use tessera_core::clock::{Clock, SystemClock};
use tessera_core::store::ClockSample;

/// The latest sample, shared by the pool's hook and the store.
#[derive(Debug, Default)]
pub struct Samples {
    latest: parking_lot::Mutex<Option<ClockSample>>,
}

impl Samples {
    pub fn record(&self, sample: ClockSample) {
        *self.latest.lock() = Some(sample);
    }

    pub fn latest(&self) -> Option<ClockSample> {
        *self.latest.lock()
    }
}

/// One measurement: the database's `clock_timestamp()` (the real time at
/// execution, unlike `now()`, which is the transaction's start) against
/// this node's clock read halfway through the round trip.
pub async fn measure(c: &tokio_postgres::Client) -> Result<ClockSample, tokio_postgres::Error> {
    let started = Instant::now();
    let before = SystemClock.now();
    let row = c.query_one("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8", &[]).await?;
    let round_trip = started.elapsed();
    let database_ms: i64 = row.try_get(0)?;
    let round_trip_ms = i64::try_from(round_trip.as_millis()).unwrap_or(i64::MAX);
    Ok(ClockSample { offset_ms: before.0 + round_trip_ms / 2 - database_ms, round_trip_ms, at: before })
}

/// The pool's post-create hook: measures each new connection. A failed
/// measurement does not refuse the connection (logins do not need it).
pub fn hook(samples: std::sync::Arc<Samples>) -> Hook {
    Hook::async_fn(move |client, _| {
        let samples = samples.clone();
        Box::pin(async move {
            match measure(client).await {
                Ok(sample) => samples.record(sample),
                Err(e) => tracing::debug!(error = %e, "clock check on a new database connection failed"),
            }
            Ok(())
        })
    })
}
