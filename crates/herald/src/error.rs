//! Error types of the library.
//!
//! [`InvalidInput`] is the one error every validation returns; it carries a stable machine-readable
//! `code`, the field at fault and a sentence for humans. [`Error`] wraps it with the errors of the
//! hub's own limits and of the engine. The HTTP layer maps each variant to a status in one place,
//! `http/error.rs`.

use std::borrow::Cow;

use crate::engine::EngineError;

/// A value from outside (a query parameter, a field of a publish body, a library argument) that
/// is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidInput {
    /// Stable error code, e.g. `invalid_field`, `missing_target`.
    pub code: &'static str,
    /// The field or parameter at fault.
    pub field: Cow<'static, str>,
    /// What is wrong, in a sentence.
    pub message: String,
}

impl InvalidInput {
    /// An `invalid_field` error.
    pub fn new(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::with_code("invalid_field", field, message)
    }

    /// An error with a specific code.
    pub fn with_code(
        code: &'static str,
        field: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        InvalidInput {
            code,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Everything the hub's operations can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller gave an unacceptable value.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The hub already holds `max_connections` connections.
    #[error("the hub holds its maximum of {max} connections; try again later")]
    TooManyConnections {
        /// The configured limit.
        max: usize,
    },
    /// This user already holds `max_connections_per_user` connections.
    #[error("this user already holds the maximum of {max} connections")]
    UserConnectionLimit {
        /// The configured limit.
        max: usize,
    },
    /// This client address already holds `max_connections_per_ip` connections.
    #[error("this address already holds the maximum of {max} connections")]
    IpConnectionLimit {
        /// The configured limit.
        max: usize,
    },
    /// The hub is shutting down and accepts no new connections or events.
    #[error("the hub is shutting down")]
    ShuttingDown,
    /// The engine (in-memory or Redis) could not carry out the operation.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
