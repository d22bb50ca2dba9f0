//! The single mapping from core errors to GraphQL errors with
//! `extensions.code`. Internal errors are logged with the request id and
//! never shown.

use async_graphql::{ErrorExtensions, ServerError};
use crm_core::{Error, ErrorKind};

use crate::names::camel;

pub fn to_graphql(error: Error, request_id: &str) -> async_graphql::Error {
    let code = error.code();
    if error.kind == ErrorKind::Internal {
        tracing::error!(request_id, error = %error.message, "internal error");
        let message = format!("internal error (request id {request_id})");
        return async_graphql::Error::new(message).extend_with(|_, ext| {
            ext.set("code", code);
            ext.set("requestId", request_id);
        });
    }
    let (message, field) = match &error.field {
        Some(field) => {
            let camel_field = camel(field);
            let message = match error.message.strip_prefix(&format!("{field}: ")) {
                Some(rest) => format!("{camel_field}: {rest}"),
                None => error.message.clone(),
            };
            (message, Some(camel_field))
        }
        None => (error.message.clone(), None),
    };
    async_graphql::Error::new(message).extend_with(|_, ext| {
        ext.set("code", code);
        if let Some(field) = &field {
            ext.set("field", field.as_str());
        }
    })
}

pub fn code_of(error: &ServerError) -> Option<String> {
    let value = error.extensions.as_ref()?.get("code")?;
    match value {
        async_graphql::Value::String(code) => Some(code.clone()),
        _ => None,
    }
}

/// A GraphQL error body for failures outside GraphQL execution (auth, body
/// size, malformed JSON).
pub fn error_body(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "errors": [ { "message": message, "extensions": { "code": code } } ] })
}

/// The error of an operation refused by a rate limit, with the retry hint
/// clients read (`retry-after` carries the same number over HTTP).
pub fn rate_limited(message: &str, retry_after_seconds: u64) -> ServerError {
    let mut error = ServerError::new(message, None);
    let extensions = error.extensions.get_or_insert_with(Default::default);
    extensions.set("code", "RATE_LIMITED");
    extensions.set("retryAfterSeconds", retry_after_seconds);
    error
}

/// [`rate_limited`] as a GraphQL error body for HTTP.
pub fn rate_limited_body(message: &str, retry_after_seconds: u64) -> serde_json::Value {
    serde_json::json!({ "errors": [ {
        "message": message,
        "extensions": { "code": "RATE_LIMITED", "retryAfterSeconds": retry_after_seconds },
    } ] })
}
