//! Tunable parameters of the trends, with their documented defaults (docs/TRENDS.md); defined
//! with the configuration (`[inference.trends.params]`).

pub use vigil_core::config::TrendParams;
