//! The bridge: one inlet thread and one gateway client per configured stream.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use vigil_core::config::VigilConfig;
use vigil_core::CancellationToken;
use vigil_ingest::client::{ClientConfig, IngestClient};

use crate::error::LslError;
use crate::inlet::{self, lock, Event, InletSpec, Outgoing, Record, SharedStats};
use crate::StreamStats;

/// Latencies kept per stream for [`StreamStats::latencies_s`] (the newest).
const MAX_LATENCIES: usize = 100_000;

#[derive(Debug, Clone)]
struct Forward {
    spec: InletSpec,
    client: ClientConfig,
}

/// A configured bridge, not yet running.
#[derive(Debug, Clone)]
pub struct LslBridge {
    streams: Vec<Forward>,
    drain: Duration,
}

fn read_token(key: &str, stream: &vigil_core::config::LslStreamConfig) -> Result<String, LslError> {
    let token = if stream.token_env.is_empty() {
        let text = std::fs::read_to_string(&stream.token_file).map_err(|e| {
            LslError::Config(format!(
                "streams.{key}: cannot read token_file {}: {e}",
                stream.token_file.display()
            ))
        })?;
        text.lines().next().unwrap_or_default().trim().to_owned()
    } else {
        std::env::var(&stream.token_env)
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    if token.is_empty() {
        let from = if stream.token_env.is_empty() {
            format!("token_file {}", stream.token_file.display())
        } else {
            format!("environment variable {}", stream.token_env)
        };
        return Err(LslError::Config(format!(
            "streams.{key}: no device token in {from} (`vigil device register` prints it)"
        )));
    }
    Ok(token)
}

impl LslBridge {
    /// Checks `config.lsl` and reads every stream's token.
    pub fn build(config: &VigilConfig) -> Result<Self, LslError> {
        let lsl = &config.lsl;
        if lsl.streams.is_empty() {
            return Err(LslError::Config(
                "no [lsl.streams.<name>] configured: nothing to forward (docs/LSL.md)".to_owned(),
            ));
        }
        let url = if lsl.url.is_empty() {
            format!("ws://{}/v1/stream", config.ingest.listen)
        } else {
            lsl.url.clone()
        };
        let mut streams = Vec::new();
        for (key, stream) in &lsl.streams {
            inlet::predicate(stream)?;
            let mut client = ClientConfig::new(url.clone(), read_token(key, stream)?);
            client.max_in_flight = lsl.max_in_flight;
            streams.push(Forward {
                spec: InletSpec {
                    key: key.clone(),
                    stream: stream.clone(),
                    chunk_ms: lsl.chunk_ms,
                    resolve_wait: Duration::from_millis(lsl.resolve_wait_ms),
                    buffer_s: i32::try_from(lsl.buffer_s).unwrap_or(i32::MAX),
                    tolerance_ns: i64::try_from(lsl.gap_tolerance_ms).unwrap_or(i64::MAX / 2)
                        * 1_000_000,
                    max_gap_ns: (config.inference.max_gap_s * 1e9) as i64,
                    correction_interval: Duration::from_millis(lsl.correction_interval_ms),
                },
                client,
            });
        }
        Ok(Self {
            streams,
            drain: Duration::from_millis(lsl.drain_timeout_ms),
        })
    }

    /// Starts every stream (inside a Tokio runtime). `shutdown` stops the bridge: each inlet
    /// sends what it pulled, and the bridge waits up to `lsl.drain_timeout_ms` for the
    /// gateway's acknowledgements.
    pub fn start(self, shutdown: CancellationToken) -> Result<RunningBridge, LslError> {
        // One refused stream stops the others: the configuration needs fixing.
        let stop = shutdown.child_token();
        let mut tasks = Vec::new();
        let mut stats = Vec::new();
        for forward in self.streams {
            let shared: SharedStats = Arc::new(Mutex::new(StreamStats {
                key: forward.spec.key.clone(),
                ..StreamStats::default()
            }));
            let (tx, rx) = mpsc::channel(4);
            let thread = {
                let (spec, shared, stop) = (forward.spec.clone(), shared.clone(), stop.clone());
                std::thread::Builder::new()
                    .name(format!("lsl-{}", forward.spec.key))
                    .spawn(move || inlet::run(spec, tx, shared, stop))
                    .map_err(|e| LslError::Thread(e.to_string()))?
            };
            let (key, shared_task, stop_task, drain) = (
                forward.spec.key.clone(),
                shared.clone(),
                stop.clone(),
                self.drain,
            );
            tasks.push(tokio::spawn(async move {
                let result =
                    forward_records(&key, forward.client, rx, &shared_task, &stop_task, drain)
                        .await;
                if result.is_err() {
                    stop_task.cancel();
                }
                let joined = tokio::task::spawn_blocking(move || thread.join()).await;
                if !matches!(joined, Ok(Ok(()))) {
                    return Err(LslError::Thread(format!("inlet thread of {key} panicked")));
                }
                result
            }));
            stats.push(shared);
        }
        Ok(RunningBridge { tasks, stats })
    }
}

/// A running bridge.
pub struct RunningBridge {
    tasks: Vec<JoinHandle<Result<(), LslError>>>,
    stats: Vec<SharedStats>,
}

impl RunningBridge {
    /// Each stream's counters now.
    pub fn stats(&self) -> Vec<StreamStats> {
        self.stats.iter().map(|s| lock(s).clone()).collect()
    }

    /// Waits until every stream stopped; the first error, or every stream's final counters.
    pub async fn wait(self) -> Result<Vec<StreamStats>, LslError> {
        let mut first_error = None;
        for task in self.tasks {
            let result = task
                .await
                .map_err(|e| LslError::Thread(format!("forwarder task: {e}")))
                .and_then(|r| r);
            if let Err(err) = result {
                first_error.get_or_insert(err);
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(self.stats.iter().map(|s| lock(s).clone()).collect()),
        }
    }
}

async fn send(
    client: &IngestClient,
    record: &Record,
) -> Result<(), vigil_ingest::client::ClientError> {
    match record {
        Record::Eeg(chunk) => client.send(chunk).await,
        Record::Hr(batch) => client.send(batch).await,
    }
}

/// Sends the inlet's records through one client; times push -> acknowledgement.
async fn forward_records(
    key: &str,
    config: ClientConfig,
    mut rx: mpsc::Receiver<Event>,
    stats: &SharedStats,
    stop: &CancellationToken,
    drain: Duration,
) -> Result<(), LslError> {
    let client_error = |source| LslError::Client {
        stream: key.to_owned(),
        source,
    };
    let client = IngestClient::start(config);
    let (timed_tx, timed_rx) = mpsc::unbounded_channel();
    let timer = tokio::spawn(time_acks(client.watch_stats(), timed_rx, stats.clone()));
    let mut sent = 0u64;
    let mut failure = None;
    while let Some(event) = rx.recv().await {
        let Outgoing {
            record,
            pushed_local_s,
        } = match event {
            Event::Send(outgoing) => outgoing,
            Event::Fatal(err) => {
                failure = Some(err);
                break;
            }
        };
        let sending = send(&client, &record);
        tokio::pin!(sending);
        // After a stop, a gateway that stays down must not hold the bridge forever.
        let result = tokio::select! {
            result = &mut sending => result,
            () = stop.cancelled() => match tokio::time::timeout(drain, &mut sending).await {
                Ok(result) => result,
                Err(_) => break,
            },
        };
        if let Err(err) = result {
            failure = Some(client_error(err));
            break;
        }
        sent += 1;
        lock(stats).records_sent = sent;
        if let Some(pushed) = pushed_local_s {
            let _ = timed_tx.send((sent, pushed));
        }
    }
    // Stop the inlet (it may still be pulling) before waiting for the last acks.
    rx.close();
    drop(timed_tx);
    let flushed = client.flush(drain).await;
    let final_stats = client.stats();
    let closed = client.close(Duration::from_secs(1)).await;
    timer.abort();
    {
        let mut stats = lock(stats);
        stats.unacknowledged = sent.saturating_sub(final_stats.resolved());
        stats.client = final_stats;
    }
    if let Some(err) = failure {
        // A client that ended on its own (a refused token) says why in its result.
        let own = matches!(err, LslError::Client { .. })
            .then(|| closed.err())
            .flatten();
        return Err(own.map_or(err, client_error));
    }
    flushed.map_err(client_error)?;
    closed.map(|_| ()).map_err(client_error)
}

/// Records the time from each record's last LSL push to its acknowledgement.
async fn time_acks(
    mut acks: tokio::sync::watch::Receiver<vigil_ingest::client::ClientStats>,
    mut timed: mpsc::UnboundedReceiver<(u64, f64)>,
    stats: SharedStats,
) {
    let mut waiting: VecDeque<(u64, f64)> = VecDeque::new();
    loop {
        tokio::select! {
            next = timed.recv() => match next {
                Some(entry) => waiting.push_back(entry),
                None => return,
            },
            changed = acks.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        // The ack may have come before its entry: resolve against the latest counters.
        let client = acks.borrow_and_update().clone();
        let now = lsl::local_clock();
        let mut stats = lock(&stats);
        while let Some(&(n, pushed)) = waiting.front() {
            if n > client.resolved() {
                break;
            }
            waiting.pop_front();
            let latency = now - pushed;
            metrics::histogram!("vigil_lsl_push_to_ack_seconds").record(latency);
            if stats.latencies_s.len() >= MAX_LATENCIES {
                stats.latencies_s.pop_front();
            }
            stats.latencies_s.push_back(latency);
        }
        stats.client = client;
    }
}
