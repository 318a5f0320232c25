-- Heart-rate evidence of an alert event (AlertEvidence.baseline_bpm, hr_rise_bpm, rmssd_ms):
-- the ictal-tachycardia rise attached to seizure alerts and the RMSSD at the time. NULL where
-- the event carried none (every event stored before this migration).
ALTER TABLE alert_events ADD COLUMN baseline_bpm REAL NULL;
ALTER TABLE alert_events ADD COLUMN hr_rise_bpm REAL NULL;
ALTER TABLE alert_events ADD COLUMN rmssd_ms REAL NULL;
