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

use async_trait::async_trait;
use vigil_core::bus::{Bus, BusError, BusMessage, Topic};
use vigil_core::codec::{self, CodecError, DecodeLimits, ProbabilityRecord};
use vigil_core::record::{
    AlertEvent, EegTrace, EegTrends, HrBatch, ProvisionalProbability, SeizureProbability,
};
use vigil_core::stage::{
    Completions, Decoded, Delivery, Refusals, StageHandler, StageOptions, StageRunner,
};
use vigil_core::telemetry::events::Emit;
use vigil_core::telemetry::Readiness;
use vigil_core::CancellationToken;

use crate::events::UpdateReceived;
use crate::live::{ItemKind, LiveHub};

/// Topics the feed reads.
const FEED_TOPICS: [Topic; 5] = [
    Topic::EegProb,
    Topic::Alerts,
    Topic::HrRaw,
    Topic::EegTrace,
    Topic::EegTrends,
];

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
    /// Joins the group on the shared stage runner; returns once subscribed (so callers know
    /// the feed is live before they publish). Unreadable records are logged, counted and
    /// skipped: storage dead-letters them.
    pub async fn subscribe(&self) -> Result<StageRunner, BusError> {
        StageRunner::subscribe(
            &self.bus,
            "dashboard",
            &self.group,
            &FEED_TOPICS,
            self.readiness.clone(),
            StageOptions::one_at_a_time(Refusals::Skip),
        )
        .await
    }

    /// Consumes until `shutdown`, then leaves the group.
    pub async fn run(self, runner: StageRunner, shutdown: CancellationToken) {
        let handler = FeedHandler {
            topics: Topics::new(&self.bus),
            completions: runner.completions(),
            feed: self,
        };
        if let Err(err) = runner.run(handler, &shutdown).await {
            tracing::warn!(%err, "dashboard feed stopped");
        }
    }
}

/// A decoded update and when the bus got it.
#[derive(Debug)]
enum Update {
    /// An alert event; a stale one is folded without being shown as new.
    Alert {
        event: AlertEvent,
        stale: bool,
    },
    Probability(SeizureProbability),
    Provisional(ProvisionalProbability),
    HeartRate(HrBatch, Option<i64>),
    Trace(EegTrace),
    Trends(EegTrends),
}

struct FeedHandler {
    feed: Feed,
    topics: Topics,
    completions: Completions,
}

#[async_trait]
impl StageHandler for FeedHandler {
    type Record = Update;
    type Error = BusError;

    fn decode(&self, msg: &BusMessage, limits: &DecodeLimits) -> Decoded<Update> {
        let now_ms = vigil_core::time::now_ns() / 1_000_000;
        let window_ms = i64::try_from(self.feed.window.as_millis()).unwrap_or(i64::MAX);
        let stale = msg.timestamp_ms.is_some_and(|t| t < now_ms - window_ms);
        let published_ns = msg.timestamp_ms.map(|t| t.saturating_mul(1_000_000));
        let decoded: Result<Update, CodecError> = match self.topics.kind(&msg.topic) {
            Some(ItemKind::Alert) => {
                codec::decode(&msg.payload, limits).map(|event| Update::Alert { event, stale })
            }
            // Alerts raised long ago may still be open; every other old record is history.
            _ if stale => return Decoded::Skip,
            Some(ItemKind::Probability | ItemKind::Provisional) => {
                codec::decode_probability(&msg.payload, limits).map(|record| match record {
                    ProbabilityRecord::Final(r) => Update::Probability(r),
                    ProbabilityRecord::Provisional(r) => Update::Provisional(r),
                })
            }
            Some(ItemKind::HeartRate) => codec::decode(&msg.payload, limits)
                .map(|batch| Update::HeartRate(batch, published_ns)),
            Some(ItemKind::Trace) => codec::decode(&msg.payload, limits).map(Update::Trace),
            Some(ItemKind::Trends) => codec::decode(&msg.payload, limits).map(Update::Trends),
            None => return Decoded::Skip,
        };
        Decoded::from_result(decoded)
    }

    async fn handle(&mut self, batch: Vec<Delivery<Update>>) -> Result<(), BusError> {
        let now = vigil_core::time::now_ns();
        let hub = &self.feed.hub;
        for delivery in batch {
            let kind = match &delivery.record {
                Update::Alert { event, stale: true } => {
                    hub.fold_alert(event);
                    None
                }
                Update::Alert { event, .. } => {
                    hub.push_alert(event, now);
                    Some(ItemKind::Alert)
                }
                Update::Probability(r) => {
                    hub.push_probability(r, now);
                    Some(ItemKind::Probability)
                }
                Update::Provisional(r) => {
                    hub.push_provisional(r, now);
                    Some(ItemKind::Provisional)
                }
                Update::HeartRate(b, published_ns) => {
                    hub.push_heart_rate(b, *published_ns, now);
                    Some(ItemKind::HeartRate)
                }
                Update::Trace(t) => {
                    hub.push_trace(t, now);
                    Some(ItemKind::Trace)
                }
                Update::Trends(t) => {
                    hub.push_trends(t, now);
                    Some(ItemKind::Trends)
                }
            };
            if let Some(kind) = kind {
                UpdateReceived {
                    record: kind.label(),
                }
                .emit();
            }
            // Nothing here is durable: a record is done once the hub has it.
            self.completions.complete(delivery.ticket);
        }
        Ok(())
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
