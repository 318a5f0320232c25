//! Users, API tokens, patient assignments and who may read which patient.

use super::*;

impl Store {
    // ---- users -------------------------------------------------------------------------

    /// Creates a user with an argon2id password hash.
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<User, StorageError> {
        auth::check_identifier("username", username)?;
        auth::check_password(password)?;
        let password = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))??;
        let now = vigil_core::time::now_ns();
        let sql =
            "INSERT INTO users (username, password_hash, role, created_ns) VALUES (?, ?, ?, ?)";
        let result = on_pool!(&self.pool, |p| sqlx::query(sql)
            .bind(username)
            .bind(&hash)
            .bind(role.as_str())
            .bind(now)
            .execute(p)
            .await
            .map(|_| ()));
        match result {
            Ok(()) => {}
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                return Err(StorageError::UserExists(username.to_owned()))
            }
            Err(err) => return Err(err.into()),
        }
        self.user_row_by_name(username)
            .await?
            .ok_or_else(|| StorageError::UnknownUser(username.to_owned()))?
            .into_user()
    }

    async fn user_row_by_name(&self, username: &str) -> Result<Option<UserRow>, StorageError> {
        let sql = "SELECT id, username, role, password_hash FROM users WHERE username = ?";
        Ok(on_pool!(&self.pool, |p| sqlx::query_as::<_, UserRow>(sql)
            .bind(username)
            .fetch_optional(p)
            .await)?)
    }

    /// The user with `username`, if any.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, StorageError> {
        self.user_row_by_name(username)
            .await?
            .map(UserRow::into_user)
            .transpose()
    }

    /// The user if `password` is theirs; `None` for an unknown user or a wrong password.
    /// An unknown user is checked against a dummy hash, so both cases take the same time.
    pub async fn verify_login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<User>, StorageError> {
        let row = if auth::check_identifier("username", username).is_ok() {
            self.user_row_by_name(username).await?
        } else {
            None
        };
        let hash = row.as_ref().map_or_else(
            || auth::dummy_hash().to_owned(),
            |r| r.password_hash.clone(),
        );
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || auth::verify_password(&hash, &password))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))?;
        match row {
            Some(row) if matches => Ok(Some(row.into_user()?)),
            _ => Ok(None),
        }
    }

    /// The user with id `user_id`, if any.
    pub async fn user(&self, user_id: i64) -> Result<Option<User>, StorageError> {
        let sql = "SELECT id, username, role, password_hash FROM users WHERE id = ?";
        on_pool!(&self.pool, |p| sqlx::query_as::<_, UserRow>(sql)
            .bind(user_id)
            .fetch_optional(p)
            .await)?
        .map(UserRow::into_user)
        .transpose()
    }

    /// Creates an API token for the user and returns it; only its SHA-256 is stored, so it
    /// can be shown once.
    pub async fn create_api_token(&self, user_id: i64) -> Result<String, StorageError> {
        if self.user(user_id).await?.is_none() {
            return Err(StorageError::UnknownUser(format!("id {user_id}")));
        }
        let token = auth::new_api_token();
        let sql = "INSERT INTO api_tokens (token_sha256, user_id, created_ns) VALUES (?, ?, ?)";
        on_pool!(&self.pool, |p| sqlx::query(sql)
            .bind(auth::token_sha256(&token))
            .bind(user_id)
            .bind(vigil_core::time::now_ns())
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(token)
    }

    /// The user holding the (not revoked) API token.
    pub async fn authenticate_token(&self, token: &str) -> Result<Option<User>, StorageError> {
        let sql = "SELECT u.id, u.username, u.role, u.password_hash FROM api_tokens t \
                   JOIN users u ON u.id = t.user_id \
                   WHERE t.token_sha256 = ? AND t.revoked_ns IS NULL";
        on_pool!(&self.pool, |p| sqlx::query_as::<_, UserRow>(sql)
            .bind(auth::token_sha256(token))
            .fetch_optional(p)
            .await)?
        .map(UserRow::into_user)
        .transpose()
    }

    /// Revokes every API token of the user; returns how many were active.
    pub async fn revoke_api_tokens(&self, user_id: i64) -> Result<u64, StorageError> {
        let sql = "UPDATE api_tokens SET revoked_ns = ? WHERE user_id = ? AND revoked_ns IS NULL";
        Ok(on_pool!(&self.pool, |p| sqlx::query(sql)
            .bind(vigil_core::time::now_ns())
            .bind(user_id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?)
    }

    /// Assigns a patient to a user (idempotent).
    pub async fn assign(&self, user_id: i64, patient_id: &str) -> Result<(), StorageError> {
        auth::check_identifier("patient_id", patient_id)?;
        if self.user(user_id).await?.is_none() {
            return Err(StorageError::UnknownUser(format!("id {user_id}")));
        }
        let sql = format!(
            "INSERT INTO patient_assignments (user_id, patient_id, created_ns) VALUES (?, ?, ?){}",
            self.dialect().ignore_duplicates("user_id")
        );
        on_pool!(&self.pool, |p| sqlx::query(&sql)
            .bind(user_id)
            .bind(patient_id)
            .bind(vigil_core::time::now_ns())
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Patients assigned to the user, sorted.
    pub async fn assigned_patients(&self, user_id: i64) -> Result<Vec<String>, StorageError> {
        let sql =
            "SELECT patient_id FROM patient_assignments WHERE user_id = ? ORDER BY patient_id";
        Ok(on_pool!(&self.pool, |p| sqlx::query_scalar::<_, String>(
            sql
        )
        .bind(user_id)
        .fetch_all(p)
        .await)?)
    }

    /// Whether the user may read the patient's data: researchers and admins always,
    /// clinicians only for assigned patients.
    pub async fn may_read(&self, user: &User, patient_id: &str) -> Result<bool, StorageError> {
        if user.role.sees_all_patients() {
            return Ok(true);
        }
        let sql = "SELECT COUNT(*) FROM patient_assignments WHERE user_id = ? AND patient_id = ?";
        let n: i64 = on_pool!(&self.pool, |p| sqlx::query_scalar(sql)
            .bind(user.id)
            .bind(patient_id)
            .fetch_one(p)
            .await)?;
        Ok(n > 0)
    }

    /// Patients visible to the user (all known patients for researchers and admins), by id.
    pub async fn patients(&self, user: &User) -> Result<Vec<PatientSummary>, StorageError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            patient_id: String,
            first_seen_ns: i64,
        }
        let rows: Vec<Row> = if user.role.sees_all_patients() {
            let sql = "SELECT patient_id, created_ns AS first_seen_ns FROM patients \
                       ORDER BY patient_id";
            on_pool!(&self.pool, |p| sqlx::query_as(sql).fetch_all(p).await)?
        } else {
            // Assigned patients, also those without data yet.
            let sql = "SELECT a.patient_id AS patient_id, \
                       COALESCE(p.created_ns, a.created_ns) AS first_seen_ns \
                       FROM patient_assignments a \
                       LEFT JOIN patients p ON p.patient_id = a.patient_id \
                       WHERE a.user_id = ? ORDER BY a.patient_id";
            on_pool!(&self.pool, |p| sqlx::query_as(sql)
                .bind(user.id)
                .fetch_all(p)
                .await)?
        };
        Ok(rows
            .into_iter()
            .map(|r| PatientSummary {
                patient_id: r.patient_id,
                first_seen_ns: r.first_seen_ns,
            })
            .collect())
    }
}
