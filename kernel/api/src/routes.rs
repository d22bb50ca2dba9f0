//! Public plugin routes: `/hooks/<tenant>/<plugin>/<path>` for tracking
//! pixels, web forms and inbound webhooks. No kernel credentials reach the
//! plugin (authorization and cookie headers are dropped); bodies are capped
//! and each tenant's plugin has its own request-rate bucket.

use axum::body::{Body, to_bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use crm_core::{ErrorKind, TenantId};
use crm_core::plugin::RouteRequest;

use crate::http::{AppState, error_response, kernel_error_response, rate_limited_response};
use crate::rate_limit::{RateLimit, TokenBuckets, retry_after_seconds};

/// Largest request body a plugin route accepts.
pub const MAX_ROUTE_BODY: usize = 256 * 1024;
/// Sustained requests per second per tenant and plugin, and the burst.
pub const ROUTE_RATE: f64 = 50.0;
pub const ROUTE_BURST: f64 = 200.0;

const DROPPED_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];
const ALLOWED_RESPONSE_HEADERS: &[&str] =
    &["content-type", "cache-control", "location", "allow", "etag", "last-modified", "content-disposition", "retry-after"];

/// Token buckets per (tenant, plugin).
pub struct RouteLimiter(TokenBuckets<(TenantId, String)>);

impl Default for RouteLimiter {
    fn default() -> Self {
        RouteLimiter(TokenBuckets::new(RateLimit::new(ROUTE_RATE, ROUTE_BURST)))
    }
}

impl RouteLimiter {
    /// Takes one token; the error is the seconds until one is available.
    fn take(&self, tenant: &TenantId, plugin: &str) -> Result<(), u64> {
        self.0.take((tenant.clone(), plugin.to_string())).map_err(retry_after_seconds)
    }
}

pub async fn plugin_route(
    State(state): State<AppState>,
    Path((tenant, plugin, rest)): Path<(String, String, String)>,
    request: Request<Body>,
) -> Response {
    let kernel = state.kernel().clone();
    let tenant = match kernel.system().find_tenant(&tenant) {
        Ok(info) => info.id,
        Err(_) => return error_response(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route"),
    };
    if let Err(wait) = state.route_limiter().take(&tenant, &plugin) {
        return rate_limited_response("too many requests to this plugin route", wait);
    }
    let (parts, body) = request.into_parts();
    let body = match to_bytes(body, MAX_ROUTE_BODY).await {
        Ok(bytes) => bytes.to_vec(),
        Err(_) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "VALIDATION",
                &format!("plugin routes accept at most {MAX_ROUTE_BODY} bytes"),
            );
        }
    };
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| !DROPPED_HEADERS.contains(&name.as_str()))
        .filter_map(|(name, value)| value.to_str().ok().map(|value| (name.as_str().to_string(), value.to_string())))
        .collect();
    let route = RouteRequest {
        method: parts.method.as_str().to_string(),
        path: format!("/{rest}"),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers,
        body,
    };
    let runtime = match kernel.runtime() {
        Ok(runtime) => runtime.clone(),
        Err(error) => return kernel_error_response(error),
    };
    let plugin_id = plugin.clone();
    let outcome = tokio::task::spawn_blocking(move || runtime.http(&tenant, &plugin_id, route)).await;
    let response = match outcome {
        Ok(Ok(response)) => response,
        Ok(Err(error)) if error.kind == ErrorKind::NotFound => {
            return error_response(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route");
        }
        Ok(Err(error)) if error.kind == ErrorKind::PluginFailed => {
            tracing::warn!(plugin = %plugin, error = %error.message, "plugin route failed");
            return error_response(StatusCode::BAD_GATEWAY, "PLUGIN_FAILED", "the plugin failed to answer");
        }
        Ok(Err(error)) => return kernel_error_response(error),
        Err(_) => return error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error"),
    };
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = (status, response.body).into_response();
    for (name, value) in response.headers {
        let lower = name.to_ascii_lowercase();
        if !ALLOWED_RESPONSE_HEADERS.contains(&lower.as_str()) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(lower.as_bytes()), HeaderValue::from_str(&value)) {
            out.headers_mut().insert(name, value);
        }
    }
    out
}
