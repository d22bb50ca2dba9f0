//! The error type of the SDK: host errors (with a stable code) and the
//! plugin's own errors (a message).

use std::fmt;

/// The stable kinds of error a host call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The plugin was not granted this access.
    Forbidden,
    NotFound,
    Invalid,
    /// A version or uniqueness conflict.
    Conflict,
    /// A budget of the call is exhausted.
    Limit,
    /// The host cannot serve the call right now; retrying later may work.
    Unavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not-found",
            ErrorCode::Invalid => "invalid",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Limit => "limit",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error: from a host call (with a [`code`](Error::code)) or raised by
/// the plugin itself (a message only). Converts from `&str`, `String`,
/// serde_json errors and UTF-8 and number parse errors, so `?` works on
/// those.
///
/// When a hook returns it, the host receives its `Display` text:
/// `"<code>: <message>"` for a host error, the message otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: Option<ErrorCode>,
    message: String,
}

/// `Result<T, crm_plugin_sdk::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A plugin error with this message.
    pub fn msg(message: impl fmt::Display) -> Error {
        Error { code: None, message: message.to_string() }
    }

    /// An error as the host reports it.
    pub fn host(code: ErrorCode, message: impl Into<String>) -> Error {
        Error { code: Some(code), message: message.into() }
    }

    /// What the default `Plugin::invoke` returns.
    pub fn unknown_action(action: &str) -> Error {
        Error::msg(format!("unknown action '{action}'"))
    }

    /// The host's code, for an error a host call returned.
    pub fn code(&self) -> Option<ErrorCode> {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn is(&self, code: ErrorCode) -> bool {
        self.code == Some(code)
    }

    pub fn is_not_found(&self) -> bool {
        self.is(ErrorCode::NotFound)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "{code}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::msg(message)
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error { code: None, message }
    }
}

macro_rules! from_display {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for Error {
            fn from(error: $error) -> Self {
                Error::msg(error)
            }
        }
    )*};
}

from_display!(
    serde_json::Error,
    std::str::Utf8Error,
    std::string::FromUtf8Error,
    std::num::ParseIntError,
    std::num::ParseFloatError,
    std::fmt::Error,
);
