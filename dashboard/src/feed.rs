//! The bus feed: reads `vigil.eeg.prob`, `vigil.alerts`, `vigil.hr.raw`, `vigil.eeg.trace` and
//! `vigil.eeg.trends`
//! and hands every record to the [`LiveHub`].
//!
//! The group is unique per dashboard process (`<group_prefix>-<uuid>`): every instance must
//! see every patient. Nothing is made durable here, so records are acknowledged at once. A
//! new group starts at the oldest retained record: records older than the hub's window (by
//! bus timestamp) are skipped without decoding, except alert events, which are folded so
//! alerts raised long ago and still open show up.

use std::time::Duration;

use vigil_core::bus::{Bus, BusConsumer, BusError, BusMessage, Topic};
use vigil_core::codec::{self, DecodeLimits};
use vigil_core::record::{AlertEvent, EegTrace, EegTrends, HrBatch, SeizureProbability};
use vigil_core::telemetry::events::Emit;
use vigil_core::telemetry::Readiness;
use vigil_core::CancellationToken;

use crate::events::{UnreadableRecord, UpdateReceived};
use crate::live::{ItemKind, LiveHub};

/// The feed's settings.
#[derive(Debug, Clone)]
pub struct Feed {
    /// Bus to read.
    pub bus: Bus,
    /// Full consumer group name.
    pub group: String,
    /// Where updates go.
    pub hub: LiveHub,
    /// Records older than this (bus timestamp) are not shown live.
    pub window: Duration,
    /// `bus` check of `/readyz`.
    pub readiness: Readiness,
}

impl Feed {
    /// Joins the group; returns the consumer once subscribed (so callers know the feed is
    /// live before they publish).
    pub async fn subscribe(&self) -> Result<Box<dyn BusConsumer>, BusError> {
        let topics = [
            Topic::EegProb,
            Topic::Alerts,
            Topic::HrRaw,
            Topic::EegTrace,
            Topic::EegTrends,
        ]
        .map(|t| self.bus.topic(t))
        .to_vec();
        let consumer = self.bus.subscribe(&self.group, &topics).await?;
        self.readiness
            .set("bus", true, format!("consuming as {}", self.group));
        Ok(consumer)
    }

    /// Consumes until `shutdown`, then leaves the group.
    pub async fn run(self, mut consumer: Box<dyn BusConsumer>, shutdown: CancellationToken) {
        let limits = DecodeLimits {
            max_record_bytes: self.bus.max_record_bytes(),
            ..DecodeLimits::default()
        };
        let topics = Topics::new(&self.bus);
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => break,
                msg = consumer.recv() => msg,
            };
            match msg {
                Ok(msg) => {
                    self.handle(&topics, &limits, &msg);
                    if let Err(err) = consumer.ack(&msg) {
                        tracing::debug!(%err, "ack after rebalance (nothing durable to lose)");
                    }
                }
                Err(err) => {
                    self.readiness.set("bus", false, err.to_string());
                    tracing::warn!(%err, "dashboard feed: bus error; retrying in 1 s");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    self.readiness
                        .set("bus", true, format!("consuming as {}", self.group));
                }
            }
        }
        if let Err(err) = consumer.close().await {
            tracing::warn!(%err, "closing the dashboard feed");
        }
    }

    fn handle(&self, topics: &Topics, limits: &DecodeLimits, msg: &BusMessage) {
        let now = vigil_core::time::now_ns();
        let window_ms = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX);
        let stale = msg
            .timestamp_ms
            .is_some_and(|t| t < now / 1_000_000 - window_ms);
        let published_ns = msg.timestamp_ms.map(|t| t.saturating_mul(1_000_000));
        let kind = topics.kind(&msg.topic);
        let result = match kind {
            Some(ItemKind::Alert) => {
                codec::decode::<AlertEvent>(&msg.payload, limits).map(|event| {
                    if stale {
                        self.hub.fold_alert(&event);
                    } else {
                        self.hub.push_alert(&event, now);
                    }
                })
            }
            _ if stale => return,
            Some(ItemKind::Probability) => {
                codec::decode::<SeizureProbability>(&msg.payload, limits).map(|r| {
                    self.hub.push_probability(&r, now);
                })
            }
            Some(ItemKind::HeartRate) => codec::decode::<HrBatch>(&msg.payload, limits).map(|b| {
                self.hub.push_heart_rate(&b, published_ns, now);
            }),
            Some(ItemKind::Trace) => codec::decode::<EegTrace>(&msg.payload, limits).map(|t| {
                self.hub.push_trace(&t, now);
            }),
            Some(ItemKind::Trends) => codec::decode::<EegTrends>(&msg.payload, limits).map(|t| {
                self.hub.push_trends(&t, now);
            }),
            None => return,
        };
        match (result, kind) {
            (Ok(()), Some(kind)) if !stale => UpdateReceived {
                record: kind.label(),
            }
            .emit(),
            (Err(err), _) => UnreadableRecord {
                topic: &msg.topic,
                error: &err,
            }
            .emit(),
            _ => {}
        }
    }
}

struct Topics {
    prob: String,
    alerts: String,
    hr: String,
    trace: String,
    trends: String,
}

impl Topics {
    fn new(bus: &Bus) -> Self {
        Self {
            prob: bus.topic(Topic::EegProb),
            alerts: bus.topic(Topic::Alerts),
            hr: bus.topic(Topic::HrRaw),
            trace: bus.topic(Topic::EegTrace),
            trends: bus.topic(Topic::EegTrends),
        }
    }

    fn kind(&self, topic: &str) -> Option<ItemKind> {
        if topic == self.prob {
            Some(ItemKind::Probability)
        } else if topic == self.alerts {
            Some(ItemKind::Alert)
        } else if topic == self.hr {
            Some(ItemKind::HeartRate)
        } else if topic == self.trace {
            Some(ItemKind::Trace)
        } else if topic == self.trends {
            Some(ItemKind::Trends)
        } else {
            None
        }
    }
}
