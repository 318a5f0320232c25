//! Layering, unknown keys, range checks and the example config, for [`super::VigilConfig`].

use super::*;
use figment::Jail;

#[test]
fn layers_apply_in_order_defaults_file_env() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "vigil.toml",
            r#"
            [bus]
            url = "kafka://file:9092"
            partitions = 6
            [telemetry]
            log_format = "json"
            "#,
        )?;
        jail.set_env("VIGIL__BUS__URL", "kafka://env:9092");
        let config = VigilConfig::load(Some(Path::new("vigil.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(config.bus.url, "kafka://env:9092", "env beats file");
        assert_eq!(config.bus.partitions, 6, "file beats default");
        assert_eq!(config.telemetry.log_format, LogFormat::Json);
        assert_eq!(
            config.bus.max_record_bytes, DEFAULT_MAX_RECORD_BYTES,
            "default kept"
        );
        Ok(())
    });
}

#[test]
fn kafka_properties_from_env_keep_their_dots() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "vigil.toml",
            "[bus.kafka]\n\"security.protocol\" = \"SASL_SSL\"\n",
        )?;
        jail.set_env("VIGIL__BUS__KAFKA__SASL.PASSWORD", "from-env");
        jail.set_env("VIGIL__BUS__KAFKA__fetch.wait.max.ms", "100");
        jail.set_env("VIGIL__BUS__PARTITIONS", "4");
        let config = VigilConfig::load(Some(Path::new("vigil.toml"))).map_err(|e| e.to_string())?;
        let kafka: Vec<(&str, &str)> = config
            .bus
            .kafka
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            kafka,
            [
                ("fetch.wait.max.ms", "100"),
                ("sasl.password", "from-env"),
                ("security.protocol", "SASL_SSL"),
            ],
            "env properties join the file's"
        );
        assert_eq!(config.bus.partitions, 4, "other env keys still apply");
        Ok(())
    });
}

#[test]
fn unknown_keys_are_refused() {
    Jail::expect_with(|jail| {
        jail.create_file("vigil.toml", "[bus]\nurll = \"memory://\"\n")?;
        let err =
            VigilConfig::load(Some(Path::new("vigil.toml"))).expect_err("typo must be refused");
        assert!(err.to_string().contains("urll"), "{err}");
        Ok(())
    });
}

#[test]
fn out_of_range_values_are_refused() {
    Jail::expect_with(|jail| {
        jail.set_env("VIGIL__BUS__PARTITIONS", "0");
        let err = VigilConfig::load(None).expect_err("0 partitions must be refused");
        assert!(err.to_string().contains("bus.partitions"), "{err}");
        Ok(())
    });
}

#[test]
fn seq_window_must_be_within_its_bounds() {
    let with = |seq_window| VigilConfig {
        ingest: IngestConfig {
            seq_window,
            ..IngestConfig::default()
        },
        ..VigilConfig::default()
    };
    for bad in [0, MAX_SEQ_WINDOW + 1] {
        let err = with(bad).check().expect_err("out of range");
        assert!(err.to_string().contains("ingest.seq_window"), "{err}");
    }
    for good in [1, MAX_SEQ_WINDOW] {
        with(good).check().expect("in range");
    }
}

#[test]
fn missing_explicit_file_is_an_error() {
    let err =
        VigilConfig::load(Some(Path::new("/nonexistent/vigil.toml"))).expect_err("missing file");
    assert!(matches!(err, ConfigError::MissingFile(_)));
}

#[test]
fn example_config_parses_and_equals_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vigil.example.toml");
    let text = std::fs::read_to_string(&path).expect("vigil.example.toml exists");
    let parsed: VigilConfig = toml::from_str(&text).expect("example parses");
    assert_eq!(
        parsed,
        VigilConfig::default(),
        "vigil.example.toml documents the built-in defaults"
    );
}
