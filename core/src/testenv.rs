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
