//! Sign-in over HTTP, before there is a bearer token: `POST /auth/login`
//! and `POST /auth/accept-invite`, with throttling of failed attempts per
//! account and per client address.
//!
//! ```text
//! POST /auth/login {"tenant":"acme","email":"ada@acme.test","password":"…","totp":"123456"}
//! 200 {"token":"crms_…","expiresAt":"…","user":{"id":"…","email":"…","role":"sales"}}
//! ```
//!
//! Every failure is a JSON error body with a stable code: `UNAUTHENTICATED`
//! (wrong credentials, missing or wrong second factor), `VALIDATION`
//! (malformed body), `RATE_LIMITED` (too many failures; `retry-after`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use crm_core::identity::SecondFactor;
use crm_core::normalize::format_datetime;
use serde::Deserialize;

use crate::http::{AppState, error_response, kernel_error_response, rate_limited_response};

/// Largest sign-in request body.
const MAX_BODY: usize = 16 * 1024;

/// How many failures within a window lock an account or an address.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    pub per_account: u32,
    pub per_address: u32,
    pub window: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy { per_account: 5, per_address: 20, window: Duration::from_secs(15 * 60) }
    }
}

/// Failure counters per account (`tenant/email`) and per address. A key
/// that reached its limit is refused until its window, started by its
/// first failure, ends; a successful sign-in clears the account's count.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

impl LoginThrottle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        LoginThrottle { policy, failures: Mutex::new(HashMap::new()) }
    }

    /// Seconds to wait if either key is locked.
    fn locked(&self, keys: &[(&str, u32)]) -> Option<u64> {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.retain(|_, (start, _)| now.duration_since(*start) < self.policy.window);
        keys.iter()
            .filter_map(|(key, limit)| {
                let (start, count) = failures.get(*key)?;
                (*count >= *limit).then(|| (self.policy.window - now.duration_since(*start)).as_secs().max(1))
            })
            .max()
    }

    fn fail(&self, keys: &[&str]) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            let entry = failures.entry(key.to_string()).or_insert((now, 0));
            entry.1 += 1;
        }
    }

    fn clear(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LoginBody {
    tenant: String,
    email: String,
    password: String,
    #[serde(default)]
    totp: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InviteBody {
    tenant: String,
    token: String,
    password: String,
}

fn client_address<B>(request: &Request<B>) -> String {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    if body.len() > MAX_BODY {
        return Err(error_response(StatusCode::PAYLOAD_TOO_LARGE, "VALIDATION", "request body too large"));
    }
    serde_json::from_slice(body)
        .map_err(|error| error_response(StatusCode::BAD_REQUEST, "VALIDATION", &format!("malformed request body: {error}")))
}

/// `POST /auth/login`.
pub async fn login(State(state): State<AppState>, request: Request<axum::body::Body>) -> Response {
    let address = format!("address/{}", client_address(&request));
    let body = match axum::body::to_bytes(request.into_body(), MAX_BODY + 1).await {
        Ok(body) => body,
        Err(_) => return error_response(StatusCode::PAYLOAD_TOO_LARGE, "VALIDATION", "request body too large"),
    };
    let body: LoginBody = match parse(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let kernel = state.kernel().clone();
    let throttle = state.login_throttle();
    let policy = throttle.policy;
    let account = format!("account/{}/{}", body.tenant, body.email.trim().to_lowercase());
    if let Some(wait) = throttle.locked(&[(&account, policy.per_account), (&address, policy.per_address)]) {
        return rate_limited_response("too many failed sign-ins; wait before trying again", wait);
    }
    let outcome = tokio::task::spawn_blocking(move || {
        let tenant = kernel
            .system()
            .find_tenant(&body.tenant)
            .map_err(|_| crm_core::Error::unauthenticated("wrong email or password"))?;
        if tenant.suspended_at.is_some() {
            return Err(crm_core::Error::new(crm_core::ErrorKind::Forbidden, format!("tenant '{}' is suspended", tenant.name)));
        }
        let second = SecondFactor { totp: body.totp, recovery_code: body.recovery_code };
        kernel.system().login(&tenant.id, &body.email, &body.password, &second)
    })
    .await;
    match outcome {
        Ok(Ok(outcome)) => {
            throttle.clear(&account);
            Json(serde_json::json!({
                "token": outcome.token,
                "expiresAt": format_datetime(outcome.session.expires_at),
                "user": {
                    "id": outcome.user.id.to_string(),
                    "email": outcome.user.email,
                    "name": outcome.user.name,
                    "role": outcome.user.role,
                    "twoFactor": outcome.user.two_factor_enabled(),
                },
            }))
            .into_response()
        }
        Ok(Err(error)) => {
            if crm_core::identity::is_credential_failure(&error) {
                throttle.fail(&[&account, &address]);
            }
            kernel_error_response(error)
        }
        Err(error) => kernel_error_response(crm_core::Error::internal(error.to_string())),
    }
}

/// `POST /auth/accept-invite`: an invited user sets their password.
pub async fn accept_invite(State(state): State<AppState>, request: Request<axum::body::Body>) -> Response {
    let address = format!("address/{}", client_address(&request));
    let body = match axum::body::to_bytes(request.into_body(), MAX_BODY + 1).await {
        Ok(body) => body,
        Err(_) => return error_response(StatusCode::PAYLOAD_TOO_LARGE, "VALIDATION", "request body too large"),
    };
    let body: InviteBody = match parse(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let throttle = state.login_throttle();
    if let Some(wait) = throttle.locked(&[(&address, throttle.policy.per_address)]) {
        return rate_limited_response("too many failed attempts; wait before trying again", wait);
    }
    let kernel = state.kernel().clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let tenant = kernel.system().find_tenant(&body.tenant).map_err(|_| crm_core::Error::unauthenticated("invalid or expired invitation"))?;
        kernel.system().accept_invite(&tenant.id, &body.token, &body.password)
    })
    .await;
    match outcome {
        Ok(Ok(user)) => Json(serde_json::json!({"user": {"id": user.id.to_string(), "email": user.email, "role": user.role}})).into_response(),
        Ok(Err(error)) => {
            if crm_core::identity::is_credential_failure(&error) {
                throttle.fail(&[&address]);
            }
            kernel_error_response(error)
        }
        Err(error) => kernel_error_response(crm_core::Error::internal(error.to_string())),
    }
}
