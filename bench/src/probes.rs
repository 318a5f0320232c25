//! What the benchmark observes from outside the stages: consumer-group lag on the broker, a
//! logged-in dashboard client, and seizure alerts on `vigil.alerts`.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use vigil_core::bus::Bus;
use vigil_core::codec::{self, DecodeLimits};
use vigil_core::record::{AlertEvent, AlertKind, AlertTransition};
use vigil_core::CancellationToken;

use crate::histogram::sample_value;
use crate::services::request;

/// Lag of consumer groups: high watermark minus committed offset, summed over partitions.
pub struct LagProbe {
    groups: Vec<(String, Vec<String>, BaseConsumer)>,
    watermarks: BaseConsumer,
    partitions: i32,
}

const KAFKA_TIMEOUT: Duration = Duration::from_secs(5);

fn consumer(brokers: &str, group: &str) -> anyhow::Result<BaseConsumer> {
    // Never subscribes: it only reads the group's committed offsets (OffsetFetch), so it does
    // not join the group or disturb its members.
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?)
}

impl LagProbe {
    /// A probe of `groups` (name, full topic names) on `brokers`.
    pub fn new(
        brokers: &str,
        groups: &[(&str, Vec<String>)],
        partitions: i32,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            groups: groups
                .iter()
                .map(|(g, topics)| Ok(((*g).to_owned(), topics.clone(), consumer(brokers, g)?)))
                .collect::<anyhow::Result<_>>()?,
            watermarks: consumer(brokers, "vigil-loadbench-watermarks")?,
            partitions,
        })
    }

    /// Records a topic holds now (high minus low watermark over its partitions; blocking).
    pub fn topic_records(&self, topic: &str) -> anyhow::Result<u64> {
        let mut n = 0;
        for p in 0..self.partitions {
            let (low, high) = self
                .watermarks
                .fetch_watermarks(topic, p, KAFKA_TIMEOUT)
                .with_context(|| format!("watermarks of {topic}/{p}"))?;
            n += u64::try_from(high - low).unwrap_or(0);
        }
        Ok(n)
    }

    /// Current lag per group (blocking: call from a blocking thread).
    pub fn sample(&self) -> anyhow::Result<Vec<(String, f64)>> {
        let mut marks: HashMap<(String, i32), (i64, i64)> = HashMap::new();
        let mut out = Vec::new();
        for (group, topics, consumer) in &self.groups {
            let mut tpl = TopicPartitionList::new();
            for topic in topics {
                for p in 0..self.partitions {
                    tpl.add_partition(topic, p);
                    if let Entry::Vacant(slot) = marks.entry((topic.clone(), p)) {
                        slot.insert(
                            self.watermarks
                                .fetch_watermarks(topic, p, KAFKA_TIMEOUT)
                                .with_context(|| format!("watermarks of {topic}/{p}"))?,
                        );
                    }
                }
            }
            let committed = consumer
                .committed_offsets(tpl, KAFKA_TIMEOUT)
                .with_context(|| format!("committed offsets of {group}"))?;
            let mut lag = 0i64;
            for e in committed.elements() {
                let (low, high) = marks
                    .get(&(e.topic().to_owned(), e.partition()))
                    .copied()
                    .unwrap_or((0, 0));
                lag += match e.offset() {
                    Offset::Offset(o) => (high - o).max(0),
                    // Nothing committed yet: everything retained is unconsumed.
                    _ => high - low,
                };
            }
            out.push((group.clone(), lag as f64));
        }
        Ok(out)
    }
}

/// Logs a clinician in; returns the session cookie (`name=value`).
pub async fn login(addr: &str, username: &str, password: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({ "username": username, "password": password }).to_string();
    let (status, headers, body) = request(
        addr,
        "POST",
        "/api/login",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await?;
    if status != 200 {
        bail!(
            "dashboard login answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let cookie = headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .and_then(|(_, v)| v.split(';').next())
        .context("login set no cookie")?;
    Ok(cookie.to_owned())
}

/// Where consumer-group lag is read.
pub enum LagSource {
    /// The broker's committed offsets and watermarks.
    Kafka(Arc<LagProbe>),
    /// The embedded broker's `vigil_bus_group_lag_records` on this process's `/metrics`
    /// (`vigil standalone` on memory://).
    Metrics(String),
}

impl LagSource {
    /// Lag of each of `groups` now (0 for a group that has not consumed yet).
    pub async fn sample(&self, groups: &[&str]) -> anyhow::Result<Vec<f64>> {
        match self {
            LagSource::Kafka(probe) => {
                let probe = probe.clone();
                let lags = tokio::task::spawn_blocking(move || probe.sample()).await??;
                let lag_of = |g: &&str| lags.iter().find(|(name, _)| name == g).map(|(_, l)| *l);
                Ok(groups.iter().map(|g| lag_of(g).unwrap_or(0.0)).collect())
            }
            LagSource::Metrics(addr) => {
                let (status, page) = crate::services::get(addr, "/metrics").await?;
                if status != 200 {
                    bail!("{addr}/metrics answered {status}");
                }
                let lag_of =
                    |g: &&str| sample_value(&page, "vigil_bus_group_lag_records", &[("group", g)]);
                Ok(groups.iter().map(|g| lag_of(g).unwrap_or(0.0)).collect())
            }
        }
    }
}

/// A browser-like live view of `patients` (with EEG traces), reading every frame so the
/// dashboard never drops it as slow. Returns the frame counter; stops on `stop`.
///
/// With `alerts`, the raised seizure alerts among the frames are kept there: the way to see
/// them when the bus is inside another process (`--single-process`).
pub async fn live_view(
    addr: &str,
    cookie: &str,
    patients: &[String],
    stop: CancellationToken,
    alerts: Option<AlertLog>,
) -> anyhow::Result<Arc<Mutex<u64>>> {
    let url = format!(
        "ws://{addr}/api/live?patients={}&traces=true",
        patients.join(",")
    );
    let mut req = url.into_client_request()?;
    req.headers_mut().insert("Cookie", cookie.parse()?);
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .context("dashboard live WebSocket")?;
    let frames = Arc::new(Mutex::new(0u64));
    let counter = frames.clone();
    tokio::spawn(async move {
        let (_write, mut read) = ws.split();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                msg = read.next() => match msg {
                    Some(Ok(frame)) => {
                        if let Ok(mut n) = counter.lock() {
                            *n += 1;
                        }
                        if let (Some(log), Message::Text(text)) = (&alerts, &frame) {
                            log.read_live_frame(text.as_str());
                        }
                    }
                    Some(Err(e)) => {
                        eprintln!("dashboard live view ended: {e}");
                        break;
                    }
                    None => {
                        eprintln!("dashboard closed the live view");
                        break;
                    }
                },
            }
        }
    });
    Ok(frames)
}

/// A raised seizure alert seen on `vigil.alerts`.
#[derive(Debug, Clone)]
pub struct SeenAlert {
    /// Patient.
    pub patient_id: String,
    /// When inference raised it (`AlertEvent.at_ns`), UTC ns.
    pub at_ns: i64,
    /// Patients streaming when the benchmark read it.
    pub patients_running: usize,
}

/// The raised seizure alerts seen so far, each with the load it was seen at.
#[derive(Debug, Clone, Default)]
pub struct AlertLog {
    /// Alerts in the order they were read.
    pub seen: Arc<Mutex<Vec<SeenAlert>>>,
    /// Patients streaming now (set by the ramp).
    pub running: Arc<AtomicUsize>,
}

impl AlertLog {
    fn keep(&self, patient_id: String, at_ns: i64) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(SeenAlert {
                patient_id,
                at_ns,
                patients_running: self.running.load(Ordering::SeqCst),
            });
        }
    }

    /// Keeps the alert of a dashboard live frame `{"type":"alert","patient_id":..,"data":
    /// {"kind","transition","at_ms",..}}` if it raises a seizure alert; other frames are
    /// skipped before parsing (most are EEG traces).
    fn read_live_frame(&self, text: &str) {
        if !text.starts_with(r#"{"type":"alert""#) {
            return;
        }
        let Ok(frame) = serde_json::from_str::<serde_json::Value>(text) else {
            return;
        };
        let data = &frame["data"];
        if data["kind"] == "seizure" && data["transition"] == "raised" {
            if let (Some(patient), Some(at_ms)) =
                (frame["patient_id"].as_str(), data["at_ms"].as_f64())
            {
                self.keep(patient.to_owned(), (at_ms * 1e6).round() as i64);
            }
        }
    }
}

/// Reads `vigil.alerts` in its own consumer group and keeps every raised seizure alert.
pub async fn watch_alerts(
    bus: Bus,
    group: String,
    log: AlertLog,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let topic = bus.topic(vigil_core::bus::Topic::Alerts);
    let mut consumer = bus.subscribe(&group, &[topic]).await?;
    tokio::spawn(async move {
        let limits = DecodeLimits::default();
        loop {
            let msg = tokio::select! {
                _ = stop.cancelled() => break,
                msg = consumer.recv() => msg,
            };
            let Ok(msg) = msg else { continue };
            if let Ok(event) = codec::decode::<AlertEvent>(&msg.payload, &limits) {
                if event.kind == AlertKind::Seizure && event.transition == AlertTransition::Raised {
                    log.keep(event.patient_id, event.at_ns);
                }
            }
            let _ = consumer.ack(&msg);
        }
        let _ = consumer.close().await;
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_frames_keep_raised_seizure_alerts_only() {
        let log = AlertLog::default();
        log.running.store(24, Ordering::SeqCst);
        let frame = |kind: &str, transition: &str| {
            format!(
                r#"{{"type":"alert","patient_id":"p1","seq":3,"data":{{"alert_id":"6d1f6b1e-8a4f-4a7e-9d7e-0c8f2b1a3c4d","kind":"{kind}","transition":"{transition}","onset_ms":1700000000000.0,"at_ms":1700000030123.5,"by":null,"evidence":{{}}}}}}"#
            )
        };
        log.read_live_frame(&frame("seizure", "raised"));
        log.read_live_frame(&frame("seizure", "resolved"));
        log.read_live_frame(&frame("tachycardia", "raised"));
        log.read_live_frame(r#"{"type":"trace","patient_id":"p1","seq":4,"data":{}}"#);
        let seen = log.seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].patient_id, "p1");
        // Milliseconds as an f64 keep the time to well under a microsecond.
        assert!(
            (seen[0].at_ns - 1_700_000_030_123_500_000).abs() < 1_000,
            "{seen:?}"
        );
        assert_eq!(seen[0].patients_running, 24);
    }
}
