-- Vigil clinical schema, SQLite dialect (embedded mode). Keep in step with
-- migrations/mysql/0001_schema.sql: the same tables, columns and keys.
-- Times are UTC ns since the Unix epoch (BIGINT), like every Vigil timestamp.

CREATE TABLE IF NOT EXISTS patients (
    patient_id VARCHAR(64) NOT NULL PRIMARY KEY,
    created_ns BIGINT NOT NULL
);

-- Same DDL as vigil-ingest's DEVICES_DDL, so ingest and storage can share one database.
CREATE TABLE IF NOT EXISTS devices (
    device_id VARCHAR(64) NOT NULL PRIMARY KEY,
    patient_id VARCHAR(64) NOT NULL,
    token_sha256 CHAR(64) NOT NULL UNIQUE,
    sample_rate_hz DOUBLE NULL,
    channels TEXT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT NULL
);

CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username VARCHAR(64) NOT NULL UNIQUE,
    password_hash VARCHAR(255) NOT NULL,
    role VARCHAR(16) NOT NULL CHECK (role IN ('clinician', 'researcher', 'admin')),
    created_ns BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS api_tokens (
    token_sha256 CHAR(64) NOT NULL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    created_ns BIGINT NOT NULL,
    revoked_ns BIGINT NULL
);

CREATE TABLE IF NOT EXISTS patient_assignments (
    user_id BIGINT NOT NULL REFERENCES users (id),
    patient_id VARCHAR(64) NOT NULL,
    created_ns BIGINT NOT NULL,
    PRIMARY KEY (user_id, patient_id)
);

CREATE TABLE IF NOT EXISTS eeg_chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_id VARCHAR(64) NOT NULL,
    device_id VARCHAR(64) NOT NULL,
    stream_id CHAR(36) NOT NULL,
    seq BIGINT NOT NULL,
    start_ns BIGINT NOT NULL,
    end_ns BIGINT NOT NULL,
    received_ns BIGINT NOT NULL,
    sample_rate_hz DOUBLE NOT NULL,
    channels TEXT NOT NULL,
    n_samples INTEGER NOT NULL,
    blob_format VARCHAR(16) NOT NULL,
    samples BLOB NOT NULL,
    archive_part CHAR(36) NULL,
    stored_ns BIGINT NOT NULL,
    UNIQUE (stream_id, seq)
);
CREATE INDEX IF NOT EXISTS eeg_chunks_patient_time ON eeg_chunks (patient_id, start_ns);
CREATE INDEX IF NOT EXISTS eeg_chunks_archive_part ON eeg_chunks (archive_part);

CREATE TABLE IF NOT EXISTS hr_points (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_id VARCHAR(64) NOT NULL,
    device_id VARCHAR(64) NOT NULL,
    stream_id CHAR(36) NOT NULL,
    seq BIGINT NOT NULL,
    idx INTEGER NOT NULL,
    t_ns BIGINT NOT NULL,
    bpm REAL NOT NULL,
    rr_ms REAL NULL,
    source VARCHAR(16) NOT NULL,
    archive_part CHAR(36) NULL,
    stored_ns BIGINT NOT NULL,
    UNIQUE (stream_id, seq, idx)
);
CREATE INDEX IF NOT EXISTS hr_points_patient_time ON hr_points (patient_id, t_ns);
CREATE INDEX IF NOT EXISTS hr_points_archive_part ON hr_points (archive_part);

-- One row per 0.5 s point. p NULL = not evaluated (NaN), never 0.
CREATE TABLE IF NOT EXISTS seizure_prob (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_id VARCHAR(64) NOT NULL,
    t_ns BIGINT NOT NULL,
    step_ns BIGINT NOT NULL,
    p REAL NULL,
    channels TEXT NOT NULL,
    channel_p TEXT NOT NULL,
    model_id VARCHAR(64) NOT NULL,
    model_sha256 VARCHAR(64) NOT NULL,
    emitted_ns BIGINT NOT NULL,
    archive_part CHAR(36) NULL,
    stored_ns BIGINT NOT NULL,
    UNIQUE (patient_id, model_id, t_ns)
);
CREATE INDEX IF NOT EXISTS seizure_prob_patient_time ON seizure_prob (patient_id, t_ns);
CREATE INDEX IF NOT EXISTS seizure_prob_archive_part ON seizure_prob (archive_part);

CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id CHAR(36) NOT NULL UNIQUE,
    patient_id VARCHAR(64) NOT NULL,
    kind VARCHAR(32) NOT NULL,
    onset_ns BIGINT NOT NULL,
    first_at_ns BIGINT NOT NULL,
    last_at_ns BIGINT NOT NULL,
    state VARCHAR(16) NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_patient_onset ON alerts (patient_id, onset_ns);

CREATE TABLE IF NOT EXISTS alert_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id CHAR(36) NOT NULL,
    patient_id VARCHAR(64) NOT NULL,
    kind VARCHAR(32) NOT NULL,
    transition VARCHAR(16) NOT NULL,
    onset_ns BIGINT NOT NULL,
    at_ns BIGINT NOT NULL,
    by_user VARCHAR(64) NULL,
    p REAL NULL,
    burden REAL NULL,
    bpm REAL NULL,
    stored_ns BIGINT NOT NULL,
    UNIQUE (alert_id, transition, at_ns)
);
CREATE INDEX IF NOT EXISTS alert_events_patient_time ON alert_events (patient_id, at_ns);

CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dlq_topic VARCHAR(255) NOT NULL,
    dlq_partition INTEGER NOT NULL,
    dlq_offset BIGINT NOT NULL,
    stage VARCHAR(64) NOT NULL,
    source_topic VARCHAR(255) NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset BIGINT NOT NULL,
    record_key BLOB NOT NULL,
    payload BLOB NOT NULL,
    truncated INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at_ns BIGINT NOT NULL,
    stored_ns BIGINT NOT NULL,
    UNIQUE (dlq_topic, dlq_partition, dlq_offset)
);
CREATE INDEX IF NOT EXISTS dead_letters_time ON dead_letters (at_ns);

CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ns BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    patient_id VARCHAR(64) NOT NULL,
    action VARCHAR(64) NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_patient_time ON audit_log (patient_id, at_ns);
CREATE INDEX IF NOT EXISTS audit_log_time ON audit_log (at_ns);

-- Parquet archive files, planned in the same transaction as their rows (exactly-once).
CREATE TABLE IF NOT EXISTS archive_parts (
    part_id CHAR(36) NOT NULL PRIMARY KEY,
    kind VARCHAR(8) NOT NULL,
    patient_id VARCHAR(64) NOT NULL,
    utc_day CHAR(10) NOT NULL,
    created_ns BIGINT NOT NULL,
    written_ns BIGINT NULL
);
CREATE INDEX IF NOT EXISTS archive_parts_pending ON archive_parts (written_ns);
