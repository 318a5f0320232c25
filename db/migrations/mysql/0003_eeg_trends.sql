-- qEEG trends (EegTrends on vigil.eeg.trends, docs/TRENDS.md): one row per patient per 2 s
-- interval. `record` is the record in Vigil's versioned binary codec (docs/ARCHITECTURE.md
-- "Records"), decoded and validated on read; NaN inside it means "not evaluated".
CREATE TABLE IF NOT EXISTS eeg_trends (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    patient_id VARCHAR(64) NOT NULL,
    stream_id CHAR(36) NOT NULL,
    start_ns BIGINT NOT NULL,
    duration_ns BIGINT NOT NULL,
    record BLOB NOT NULL,
    emitted_ns BIGINT NOT NULL,
    stored_ns BIGINT NOT NULL,
    UNIQUE (patient_id, start_ns)
);
