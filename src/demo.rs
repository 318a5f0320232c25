//! `vigil demo`: the built stages in one process on the embedded bus, fed by simulated
//! patients through the real ingest gateway, with the seizure probabilities printed as they
//! become final.
//!
//! Each simulated patient is a registered device that streams over the gateway's WebSocket
//! with the ingest client, as a headset app would: synthetic two-channel EEG at 256 Hz in
//! 1 s chunks (see
//! `vigil_inference::synthetic`: noise + alpha rhythm; patient 1 also has a 25 s
//! seizure-like burst every 10 minutes). Synthetic signals demonstrate the pipeline; they say
//! nothing about clinical performance.

use std::sync::Arc;
use std::time::Duration;

use vigil_core::bus::{Bus, Topic};
use vigil_core::codec::{self, DecodeLimits};
use vigil_core::record::{EegChunk, SeizureProbability, SignalUnit};
use vigil_core::CancellationToken;
use vigil_inference::synthetic::SyntheticChannel;
use vigil_ingest::client::{ClientConfig, IngestClient};

const FS: f64 = 256.0;
/// Length of the generated loop per patient; bursts repeat with it.
const LOOP_S: usize = 600;

/// A simulated patient's device identity.
pub fn patient_ids(p: usize) -> (String, String) {
    (
        format!("demo-patient-{}", p + 1),
        format!("demo-headset-{}", p + 1),
    )
}

/// The demo's channel labels.
pub fn channels() -> Vec<String> {
    vec!["C3-P3".into(), "C4-P4".into()]
}

/// Streams every simulated patient's chunks through the gateway at `stream_url` (one device
/// token each) at `speed` x real time until `shutdown`.
pub async fn feed_patients(
    stream_url: String,
    tokens: Vec<String>,
    speed: f64,
    shutdown: CancellationToken,
) {
    let signals: Vec<Arc<[Vec<f32>; 2]>> = (0..tokens.len())
        .map(|p| {
            let burst = (p == 0).then_some((320.0, 345.0));
            let seed = 10 * p as u64;
            Arc::new([
                SyntheticChannel {
                    seed: seed + 1,
                    burst,
                    ..Default::default()
                }
                .generate(FS, LOOP_S as f64),
                SyntheticChannel {
                    seed: seed + 2,
                    burst,
                    ..Default::default()
                }
                .generate(FS, LOOP_S as f64),
            ])
        })
        .collect();
    let clients: Vec<IngestClient> = tokens
        .iter()
        .map(|token| IngestClient::start(ClientConfig::new(stream_url.clone(), token.clone())))
        .collect();
    let start_ns = vigil_core::time::now_ns();
    let stream_ids: Vec<uuid::Uuid> = tokens.iter().map(|_| uuid::Uuid::new_v4()).collect();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / speed));
    'feed: for second in 0u64.. {
        tokio::select! {
            _ = shutdown.cancelled() => break 'feed,
            _ = tick.tick() => {}
        }
        for (p, (signal, client)) in signals.iter().zip(&clients).enumerate() {
            let at = (second as usize % LOOP_S) * FS as usize;
            let (patient_id, device_id) = patient_ids(p);
            let chunk = EegChunk {
                patient_id,
                device_id,
                stream_id: stream_ids[p],
                seq: second,
                start_ns: start_ns + second as i64 * 1_000_000_000,
                received_ns: 0,
                sample_rate_hz: FS,
                channels: channels(),
                unit: SignalUnit::Microvolt,
                samples: signal
                    .iter()
                    .map(|ch| ch[at..at + FS as usize].to_vec())
                    .collect(),
            };
            if let Err(err) = client.send(&chunk).await {
                tracing::warn!(%err, "demo device could not send");
                break 'feed;
            }
        }
    }
    let closing = clients.into_iter().map(|c| c.close(Duration::from_secs(5)));
    for result in futures::future::join_all(closing).await {
        if let Err(err) = result {
            tracing::warn!(%err, "demo device closed with unacknowledged chunks");
        }
    }
}

/// Prints each probability record: per patient, the time span and the highest probability.
pub async fn print_probabilities(bus: Bus, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut consumer = bus
        .subscribe("vigil-demo-printer", &[bus.topic(Topic::EegProb)])
        .await?;
    let started = vigil_core::time::now_ns();
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            msg = consumer.recv() => msg?,
        };
        let record: SeizureProbability = codec::decode(&msg.payload, &DecodeLimits::default())?;
        let evaluated: Vec<f32> = record
            .aggregate_p
            .iter()
            .copied()
            .filter(|p| !p.is_nan())
            .collect();
        let max = evaluated.iter().copied().fold(f32::NAN, f32::max);
        let from_s = (record.start_ns - started) as f64 / 1e9;
        let to_s = from_s + record.aggregate_p.len() as f64 * record.step_ns as f64 / 1e9;
        let verdict = if evaluated.is_empty() {
            "not evaluated".to_owned()
        } else if max >= 0.8 {
            format!("max p = {max:.3}  << SEIZURE-LIKE ACTIVITY")
        } else {
            format!("max p = {max:.3}")
        };
        println!(
            "{:<16} signal {from_s:>7.1}-{to_s:>7.1} s  {:>3} points ({} not evaluated)  {verdict}",
            record.patient_id,
            record.aggregate_p.len(),
            record.aggregate_p.len() - evaluated.len(),
        );
        consumer.ack(&msg)?;
    }
    consumer.close().await?;
    Ok(())
}
