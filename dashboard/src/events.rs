//! Typed telemetry events of the dashboard: each `emit()` writes the log line and updates the
//! metric together.

use vigil_core::telemetry::events::Emit;

/// An update reached a browser's socket.
pub struct Pushed {
    /// `prob`, `hr`, `trace`, `alert`.
    pub record: &'static str,
    /// Seconds from the record's reference time (see docs/DASHBOARD.md) to the send.
    pub latency_s: f64,
}

impl Emit for Pushed {
    fn emit(&self) {
        metrics::histogram!("vigil_dashboard_push_latency_seconds", "record" => self.record)
            .record(self.latency_s.max(0.0));
    }
}

/// A browser was disconnected by the server.
pub struct ClientDropped {
    /// `slow` (queue full), `send_timeout`, `session_expired`, `access_revoked`.
    pub reason: &'static str,
}

impl Emit for ClientDropped {
    fn emit(&self) {
        tracing::info!(
            reason = self.reason,
            "browser disconnected by the dashboard"
        );
        metrics::counter!("vigil_dashboard_clients_dropped_total", "reason" => self.reason)
            .increment(1);
    }
}

/// A browser connected (`delta` = 1) or left (-1).
pub struct ClientsChanged {
    /// +1 or -1.
    pub delta: f64,
}

impl Emit for ClientsChanged {
    fn emit(&self) {
        metrics::gauge!("vigil_dashboard_clients").increment(self.delta);
    }
}

/// A record read from the bus went to the hub.
pub struct UpdateReceived {
    /// `prob`, `hr`, `trace`, `alert`.
    pub record: &'static str,
}

impl Emit for UpdateReceived {
    fn emit(&self) {
        metrics::counter!("vigil_dashboard_updates_total", "record" => self.record).increment(1);
    }
}

/// A login attempt.
pub struct LoginAttempt<'a> {
    /// Username given.
    pub username: &'a str,
    /// Whether it succeeded.
    pub ok: bool,
}

impl Emit for LoginAttempt<'_> {
    fn emit(&self) {
        if self.ok {
            tracing::info!(username = self.username, "login");
        } else {
            tracing::warn!(username = self.username, "login refused");
        }
        let outcome = if self.ok { "ok" } else { "refused" };
        metrics::counter!("vigil_dashboard_logins_total", "outcome" => outcome).increment(1);
    }
}

/// A clinician acknowledged an alert (the event is on the bus).
pub struct AlertAcknowledged<'a> {
    /// Patient.
    pub patient_id: &'a str,
    /// Alert.
    pub alert_id: uuid::Uuid,
    /// Username.
    pub by: &'a str,
}

impl Emit for AlertAcknowledged<'_> {
    fn emit(&self) {
        tracing::info!(patient_id = self.patient_id, alert_id = %self.alert_id, by = self.by, "alert acknowledged");
        metrics::counter!("vigil_dashboard_acknowledgements_total").increment(1);
    }
}
