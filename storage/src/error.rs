//! The storage error type. Database failures are split into transient ones (the database is
//! down, a connection was killed, a deadlock: retry the same work later) and permanent ones
//! (the statement itself is refused: retrying cannot help).

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL is neither `sqlite:` nor `mysql:`/`mariadb:`.
    #[error("unsupported database URL {0:?}: use sqlite://path?mode=rwc or mysql://user:pass@host:3306/db")]
    BadUrl(String),
    /// A database call failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the schema failed.
    #[error("schema migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A username, role, password or patient id is unusable.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `create_user` for a username that exists.
    #[error("user {0:?} already exists")]
    UserExists(String),
    /// A user named in a command does not exist.
    #[error("no user {0:?}")]
    UnknownUser(String),
    /// A history query is out of range (bad time range, limit or cursor).
    #[error("bad query: {0}")]
    BadQuery(String),
    /// A record decodes but cannot be stored (e.g. `seq` beyond the signed 64-bit range).
    #[error("record cannot be stored: {0}")]
    Unstorable(String),
    /// A stored row does not decode (corruption or a schema from a newer version).
    #[error("corrupt {table} row {id}: {reason}")]
    CorruptRow {
        /// Table.
        table: &'static str,
        /// Row id.
        id: i64,
        /// What failed.
        reason: String,
    },
    /// Hashing a password failed.
    #[error("password hashing: {0}")]
    PasswordHash(String),
    /// The Parquet archive could not be written.
    #[error("archive {path}: {reason}")]
    Archive {
        /// File or directory.
        path: String,
        /// What failed.
        reason: String,
    },
    /// A blocking task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
}

impl From<vigil_db::DbError> for StorageError {
    fn from(err: vigil_db::DbError) -> Self {
        match err {
            vigil_db::DbError::BadUrl(url) => StorageError::BadUrl(url),
            vigil_db::DbError::Database(e) => StorageError::Database(e),
            vigil_db::DbError::Migrate(e) => StorageError::Migrate(e),
        }
    }
}

impl StorageError {
    /// True when retrying the same work later can succeed: the database is unreachable, a
    /// connection was lost or killed, the pool timed out, a lock wait or deadlock aborted the
    /// transaction, SQLite was busy, or the archive's disk refused a write.
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Database(err) => is_transient_sqlx(err),
            StorageError::Migrate(sqlx::migrate::MigrateError::Execute(err)) => {
                is_transient_sqlx(err)
            }
            StorageError::Archive { .. } => true,
            _ => false,
        }
    }

    /// A short stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            StorageError::BadUrl(_) => "bad_url",
            StorageError::Database(_) if self.is_transient() => "database_unavailable",
            StorageError::Database(_) => "database",
            StorageError::Migrate(_) => "migrate",
            StorageError::Invalid { .. } => "invalid",
            StorageError::UserExists(_) => "user_exists",
            StorageError::UnknownUser(_) => "unknown_user",
            StorageError::BadQuery(_) => "bad_query",
            StorageError::Unstorable(_) => "unstorable",
            StorageError::CorruptRow { .. } => "corrupt_row",
            StorageError::PasswordHash(_) => "password_hash",
            StorageError::Archive { .. } => "archive",
            StorageError::Task(_) => "task",
        }
    }
}

fn is_transient_sqlx(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                // 1205 lock wait timeout, 1213 deadlock, 1053 server shutdown, 1927
                // connection killed, 2006/2013 server gone / connection lost, 1040 too many
                // connections, 1290 read-only (fail-over in progress).
                matches!(
                    mysql.number(),
                    1205 | 1213 | 1053 | 1927 | 2006 | 2013 | 1040 | 1290
                )
            } else {
                // SQLite: primary result codes 5 SQLITE_BUSY, 6 SQLITE_LOCKED.
                let code = db.code().and_then(|c| c.parse::<u32>().ok()).unwrap_or(0);
                matches!(code & 0xff, 5 | 6)
            }
        }
        _ => false,
    }
}
