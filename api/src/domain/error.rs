//! The one error type of the domain. Each variant documents the `extensions.code` it becomes.

use sea_orm::{DbErr, RuntimeErr};

use crate::error_code::ErrorCode;

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `UNAUTHENTICATED`: no valid caller token came with the request.
    #[error(
        "sign in first: send `Authorization: Bearer <token>` (`consentry token --msp ID --role admin` prints one)"
    )]
    Unauthenticated,
    /// `FORBIDDEN`: the caller's roles do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// `NOT_FOUND`: nothing with that id is visible to the caller. Another MSP's objects are
    /// reported exactly like objects that do not exist.
    #[error("no {what} with this id")]
    NotFound { what: &'static str, id: String },
    /// `BAD_USER_INPUT`: an argument is invalid, or names something this server does not
    /// allow (an `appId` outside `CONSENTRY_MS_REPAIRABLE_APP_IDS`); `field` names it and the
    /// message says what to do.
    #[error("{message}")]
    BadUserInput { field: String, message: String },
    /// `CONFLICT`: the change collides with existing data.
    #[error("{message}")]
    Conflict { field: String, message: String },
    /// `UNAVAILABLE`: the database cannot be reached; nothing was changed, retry shortly.
    #[error("the database is unavailable; nothing was changed, retry shortly")]
    Unavailable,
    /// `NOT_CONFIGURED`: this needs a server setting that is not set; the message names it.
    #[error("{0}")]
    NotConfigured(String),
    /// `MICROSOFT_UNAVAILABLE`: Microsoft could not be asked, or refused Consentry's own
    /// credentials; nothing was changed.
    #[error("{0}")]
    MicrosoftUnavailable(String),
    /// `INTERNAL`: anything unexpected. The details go to the log, never to the caller.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl Error {
    pub fn bad_input(field: &str, message: impl Into<String>) -> Self {
        Self::BadUserInput {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    pub fn not_found(what: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            what,
            id: id.into(),
        }
    }

    /// The stable `extensions.code` of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unauthenticated => ErrorCode::Unauthenticated,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::BadUserInput { .. } => ErrorCode::BadUserInput,
            Self::Conflict { .. } => ErrorCode::Conflict,
            Self::Unavailable => ErrorCode::Unavailable,
            Self::NotConfigured(_) => ErrorCode::NotConfigured,
            Self::MicrosoftUnavailable(_) => ErrorCode::MicrosoftUnavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<DbErr> for Error {
    fn from(error: DbErr) -> Self {
        if is_unavailable(&error) {
            tracing::warn!(%error, "database unavailable");
            Self::Unavailable
        } else {
            Self::Internal(error.into())
        }
    }
}

/// Connection-level failures (as opposed to a bad statement): the database is down or
/// unreachable, or the pool is exhausted.
fn is_unavailable(error: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e)) => {
            matches!(
                &**e,
                Sqlx::Io(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::WorkerCrashed
            )
        }
        _ => false,
    }
}
