//! One error type for the library. `kind` tells the CLI which exit code to use.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The user's input is wrong: a missing or malformed file, a bad shape, an unknown layer or
    /// class, an op we do not support. The CLI exits with code 2.
    BadInput,
    /// No usable GPU adapter, or the device failed.
    Device,
    /// A bug or an unexpected condition inside netlens.
    Internal,
}

#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn bad_input(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::BadInput,
            message: message.into(),
        }
    }
    pub fn device(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Device,
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Internal,
            message: message.into(),
        }
    }
    /// Prefixes the message with context, keeping the kind.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Error {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Creates a bad-input error from a format string.
#[macro_export]
macro_rules! bad_input {
    ($($arg:tt)*) => { $crate::error::Error::bad_input(format!($($arg)*)) };
}
