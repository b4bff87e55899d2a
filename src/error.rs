//! One error type for the library. `kind` tells the CLI which exit code to use.

use std::fmt;

/// What went wrong, coarsely: enough for the CLI to pick an exit code and for callers to decide
/// whether falling back (for instance from the GPU to the CPU) makes sense.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The user's input is wrong: a missing or malformed file, a bad shape, an unknown layer or
    /// class, an op we do not support. The CLI exits with code 2.
    BadInput,
    /// No usable GPU adapter, or the device failed. The CLI exits with code 1.
    Device,
    /// A bug or an unexpected condition inside netlens. The CLI exits with code 1.
    Internal,
    /// Writing a result failed: a full disk, a folder that cannot be created or written, a
    /// closed output. The input was fine, so this is not exit 2; the CLI exits with code 1.
    Output,
}

/// A netlens error: a kind plus a human-readable message that already carries its context.
#[derive(Debug)]
pub struct Error {
    /// The category, which decides the CLI's exit code.
    pub kind: ErrorKind,
    /// The full message, outermost context first (`context: ...: cause`).
    pub message: String,
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`ErrorKind::BadInput`] error: the user's files or arguments are wrong.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::BadInput,
            message: message.into(),
        }
    }
    /// An [`ErrorKind::Device`] error: no adapter, or the GPU failed.
    pub fn device(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Device,
            message: message.into(),
        }
    }
    /// An [`ErrorKind::Internal`] error: a broken invariant inside netlens.
    pub fn internal(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Internal,
            message: message.into(),
        }
    }
    /// An [`ErrorKind::Output`] error: a result could not be written (the message names the
    /// path and the reason).
    pub fn output(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Output,
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
