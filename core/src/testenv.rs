//! What tests need from their environment, with one rule for every test: a real component
//! that is not available (a Kafka broker, the model weights, fetched data) skips the test
//! locally with a note on stderr, and fails it when `CI` is set, so CI can never pass
//! without exercising it (`scripts/test` provides everything).

use std::path::PathBuf;

use uuid::Uuid;

use crate::config::BusConfig;

/// Whether `CI` is set (to anything but empty, `false` or `0`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Skips (returns `None`, with `skipped: {what}` on stderr) or, under CI, panics.
///
/// # Panics
/// Under CI: the component must be there.
pub fn unavailable<T>(what: &str) -> Option<T> {
    if in_ci() {
        panic!("CI is set but {what}");
    }
    eprintln!("skipped: {what}");
    None
}

/// A bus config for the Kafka-protocol broker at `VIGIL_TEST_KAFKA=host:port` with a random
/// topic prefix (so runs never see each other's records).
pub fn kafka_bus(partitions: i32) -> Option<BusConfig> {
    match std::env::var("VIGIL_TEST_KAFKA") {
        Ok(servers) if !servers.is_empty() => Some(BusConfig {
            url: format!("kafka://{servers}"),
            topic_prefix: format!("t{}.", Uuid::new_v4().simple()),
            partitions,
            ..BusConfig::default()
        }),
        _ => unavailable(
            "VIGIL_TEST_KAFKA is not set (host:port of a Kafka broker; scripts/test starts tansu)",
        ),
    }
}

/// The reference model's weights in the workspace's `models/` (`vigil models fetch`).
pub fn model_weights() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/modelA_paper.onnx");
    if path.is_file() {
        Some(path)
    } else {
        unavailable(&format!(
            "the model weights {} are missing (run `vigil models fetch`)",
            path.display()
        ))
    }
}

/// CPU time (user + system) this process has used, in seconds, from `/proc/self/stat`
/// (Linux; clock ticks of 10 ms). 0 where it cannot be read.
pub fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields after the command name: utime is the 12th, stime the 13th (0-based 11, 12).
    (ticks(11) + ticks(12)) / 100.0
}
