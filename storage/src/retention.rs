//! Retention: each table keeps rows for its configured number of days (by the row's signal
//! time, or the time of the read for the audit log); 0 keeps rows forever, the default for
//! every table. A periodic job deletes older rows in bounded chunks so no delete holds locks
//! for long.

use std::time::Duration;

use vigil_core::config::RetentionConfig;
use vigil_core::telemetry::events::Emit;
use vigil_core::CancellationToken;

use crate::error::StorageError;
use crate::events::RetentionApplied;
use crate::store::Store;

const NS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// Rows deleted per table by one run.
pub type RetentionReport = Vec<(&'static str, u64)>;

/// `(table, time column, days)` of every table with a retention rule, except alerts (which
/// are deleted together with their events).
fn rules(config: &RetentionConfig) -> [(&'static str, &'static str, u32); 6] {
    [
        ("eeg_chunks", "start_ns", config.eeg_chunks_days),
        ("hr_points", "t_ns", config.hr_points_days),
        ("seizure_prob", "t_ns", config.seizure_prob_days),
        ("eeg_trends", "start_ns", config.eeg_trends_days),
        ("dead_letters", "at_ns", config.dead_letters_days),
        ("audit_log", "at_ns", config.audit_log_days),
    ]
}

fn cutoff(now_ns: i64, days: u32) -> i64 {
    now_ns.saturating_sub(i64::from(days).saturating_mul(NS_PER_DAY))
}

/// Deletes every row older than its table's retention at time `now_ns`.
pub async fn apply(
    store: &Store,
    config: &RetentionConfig,
    now_ns: i64,
) -> Result<RetentionReport, StorageError> {
    let mut report = Vec::new();
    for (table, column, days) in rules(config) {
        if days == 0 {
            continue;
        }
        let rows = store
            .delete_before(table, column, cutoff(now_ns, days))
            .await?;
        RetentionApplied { table, rows }.emit();
        report.push((table, rows));
    }
    if config.alerts_days > 0 {
        let rows = store
            .delete_alerts_before(cutoff(now_ns, config.alerts_days))
            .await?;
        RetentionApplied {
            table: "alerts",
            rows,
        }
        .emit();
        report.push(("alerts", rows));
    }
    Ok(report)
}

/// Runs [`apply`] every `config.interval_s` until `shutdown`. Failures are logged and retried
/// at the next interval.
pub async fn run(store: Store, config: RetentionConfig, shutdown: CancellationToken) {
    let interval = Duration::from_secs(config.interval_s.max(1));
    loop {
        if let Err(err) = apply(&store, &config, vigil_core::time::now_ns()).await {
            tracing::warn!(%err, "retention run failed; retrying at the next interval");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
