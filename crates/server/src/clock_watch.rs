//! Shared database mode: this node's clock against the database server's.
//!
//! A TOTP code is checked against this node's clock, so a node whose clock
//! is off rejects valid codes — silently, as wrong codes, on that node
//! only. The database server is the one clock every node talks to, so each
//! node compares itself with it: on every new pool connection (the store
//! measures those) and every [`CLOCK_CHECK_INTERVAL`]. The offset is the
//! gauge `tessera_database_clock_offset_seconds`; above
//! [`WARN_OFFSET_MS`] it is logged as a warning; beyond the policy's skew
//! window the node is degraded (`/readyz`), until it is back within.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_core::store::ClockSample;
use tokio::sync::watch;

use crate::health::{self, Degradation};
use crate::node::Node;

/// How often the clock is measured (besides every new connection).
pub const CLOCK_CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// How often the store's per-connection samples are looked at.
const POLL: Duration = Duration::from_secs(1);
/// Offsets above this are logged as a warning: NTP keeps clocks well within it.
pub const WARN_OFFSET_MS: i64 = 2_000;
/// While the offset stays above the warning level, it is logged again this often.
const WARN_AGAIN: Duration = Duration::from_secs(300);

/// What one sample means under the policy's skew window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// Worth a warning in the log.
    pub warn: bool,
    /// The degradation reason, when the offset is beyond the window.
    pub degraded: Option<String>,
}

/// Judges a sample. The window is the policy's `skew_seconds` (at least
/// 1 s: with a zero window, milliseconds of difference are not worth an
/// alarm); the measurement's own uncertainty (half the round trip) is
/// given to the node, so a slow round trip alone never degrades it.
pub fn assess(sample: &ClockSample, skew_seconds: u32) -> Assessment {
    let window_ms = i64::from(skew_seconds.max(1)) * 1000;
    let provable = sample.offset_ms.abs().saturating_sub(sample.round_trip_ms / 2);
    let degraded = (provable > window_ms).then(|| {
        format!(
            "clock: this node's clock is {:.1} s {} the database server's, beyond the skew window of {} s; valid \
             codes are rejected here (run NTP)",
            sample.offset_ms.abs() as f64 / 1e3,
            if sample.offset_ms > 0 { "ahead of" } else { "behind" },
            skew_seconds
        )
    });
    Assessment { warn: sample.offset_ms.abs() > WARN_OFFSET_MS, degraded }
}

pub async fn watch(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let mut next_measure = Instant::now();
    let mut last_seen = None;
    let mut warned_at: Option<Instant> = None;
    loop {
        let sample = if Instant::now() >= next_measure {
            next_measure = Instant::now() + CLOCK_CHECK_INTERVAL;
            match node.ctx.store.measure_database_clock().await {
                Ok(Some(s)) => Some(s),
                // No database server (embedded): nothing to compare with.
                Ok(None) => return,
                // The store being down is `/readyz`'s business already.
                Err(e) => {
                    tracing::debug!(error = %e, "clock check: database unavailable");
                    None
                }
            }
        } else {
            node.ctx.store.connection_clock_sample().filter(|s| Some(s.at) != last_seen)
        };
        if let Some(s) = sample {
            last_seen = Some(s.at);
            handle(&node, &s, &mut warned_at).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn handle(node: &Node, sample: &ClockSample, warned_at: &mut Option<Instant>) {
    crate::metrics::set_database_clock_offset(sample.offset_ms);
    let skew = match node.ctx.store.policy().await {
        Ok(p) => p.skew_seconds,
        Err(_) => return,
    };
    let a = assess(sample, skew);
    if a.warn {
        if warned_at.is_none_or(|t| t.elapsed() >= WARN_AGAIN) {
            tracing::warn!(
                offset_seconds = sample.offset_ms as f64 / 1e3,
                round_trip_ms = sample.round_trip_ms,
                "this node's clock is off from the database server's (positive: this node is ahead); TOTP codes \
                 depend on agreeing clocks: run NTP"
            );
            *warned_at = Some(Instant::now());
        }
    } else if warned_at.take().is_some() {
        tracing::info!(offset_seconds = sample.offset_ms as f64 / 1e3, "clock back in line with the database server's");
    }
    health::set(Degradation::ClockOffset, a.degraded);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::clock::Timestamp;

    fn s(offset_ms: i64, round_trip_ms: i64) -> ClockSample {
        ClockSample { offset_ms, round_trip_ms, at: Timestamp(0) }
    }

    #[test]
    fn warning_and_degradation_thresholds() {
        assert_eq!(assess(&s(150, 2), 30), Assessment { warn: false, degraded: None });
        assert_eq!(assess(&s(-2_500, 2), 30), Assessment { warn: true, degraded: None });
        let ahead = assess(&s(120_000, 4), 30);
        assert!(ahead.warn);
        let why = ahead.degraded.unwrap();
        assert!(why.starts_with("clock:") && why.contains("120.0 s ahead of") && why.contains("30 s"), "{why}");
        assert!(assess(&s(-31_000, 2), 30).degraded.unwrap().contains("behind"));
        // The measurement's uncertainty counts for the node.
        assert_eq!(assess(&s(31_000, 2_400), 30).degraded, None);
        // A zero window still tolerates a second.
        assert_eq!(assess(&s(800, 2), 0).degraded, None);
        assert!(assess(&s(1_500, 2), 0).degraded.is_some());
    }
}
