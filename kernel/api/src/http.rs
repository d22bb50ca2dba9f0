//! The axum router: `/graphql` (POST, GET, WebSocket, GraphiQL), `/healthz`.
//! Handlers are thin: authenticate, attach request data, execute.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_graphql::dynamic::Schema;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource};
use async_graphql::{Data, Executor};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use crm_core::metadata::Metadata;
use crm_core::{ErrorKind, Kernel, TenantId, TenantStore};
use futures::stream::BoxStream;
use futures::StreamExt;
use tracing::Instrument;

use crate::context::{Caller, RequestCtx};
use crate::errors::{code_of, error_body, rate_limited, rate_limited_body};
use crate::plan::{Decision, Lesson, Plans};
use crate::rate_limit::{ApiLimiter, Refused};
use crate::schema::{self, Limits};

/// A tenant's metadata, the schema built from it and its query plans.
type TenantSchema = (Arc<Metadata>, Schema, Arc<Plans>);

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    kernel: Arc<Kernel>,
    limits: Limits,
    /// Schema and query plans per tenant, rebuilt when the tenant's metadata changes.
    by_tenant: Mutex<HashMap<TenantId, TenantSchema>>,
    /// Tenants with identical metadata share one schema.
    by_fingerprint: Mutex<HashMap<String, Schema>>,
    routes: crate::routes::RouteLimiter,
    operations: ApiLimiter,
    logins: crate::auth::LoginThrottle,
    /// Parsed documents of recent queries, shared by every tenant.
    documents: crate::documents::Documents,
    /// Requests a query plan answered, and requests it gave back to the engine.
    planned: AtomicU64,
    plan_fallbacks: AtomicU64,
}

impl AppState {
    pub fn new(kernel: Arc<Kernel>, limits: Limits) -> Self {
        AppState {
            inner: Arc::new(Inner {
                kernel,
                by_tenant: Mutex::new(HashMap::new()),
                by_fingerprint: Mutex::new(HashMap::new()),
                routes: Default::default(),
                operations: ApiLimiter::new(limits.rate_per_key, limits.rate_per_tenant),
                logins: crate::auth::LoginThrottle::new(Default::default()),
                documents: crate::documents::Documents::new(1024),
                planned: AtomicU64::new(0),
                plan_fallbacks: AtomicU64::new(0),
                limits,
            }),
        }
    }

    pub(crate) fn route_limiter(&self) -> &crate::routes::RouteLimiter {
        &self.inner.routes
    }

    pub(crate) fn login_throttle(&self) -> &crate::auth::LoginThrottle {
        &self.inner.logins
    }

    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.inner.kernel
    }

    /// The schema of a tenant, built on first use and cached.
    pub fn schema_for(&self, store: &TenantStore) -> Result<Schema, crm_core::Error> {
        self.tenant_schema(store).map(|(schema, _)| schema)
    }

    /// The schema of a tenant and its query plans.
    fn tenant_schema(&self, store: &TenantStore) -> Result<(Schema, Arc<Plans>), crm_core::Error> {
        let metadata = &store.metadata();
        {
            let cache = self.inner.by_tenant.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((cached, schema, plans)) = cache.get(store.id())
                && Arc::ptr_eq(cached, metadata)
            {
                return Ok((schema.clone(), plans.clone()));
            }
        }
        let fingerprint = metadata.fingerprint();
        let schema = {
            let mut shared = self.inner.by_fingerprint.lock().unwrap_or_else(|p| p.into_inner());
            match shared.get(&fingerprint) {
                Some(schema) => schema.clone(),
                None => {
                    let schema = schema::build(metadata, &self.inner.limits)
                        .map_err(|error| crm_core::Error::internal(format!("schema build failed: {error}")))?;
                    shared.insert(fingerprint, schema.clone());
                    schema
                }
            }
        };
        let plans = Arc::new(Plans::new(metadata.clone(), self.inner.limits.query_plans));
        self.inner
            .by_tenant
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(store.id().clone(), (metadata.clone(), schema.clone(), plans.clone()));
        Ok((schema, plans))
    }

    /// Takes a token for one GraphQL operation of `caller` from its key's
    /// and its tenant's buckets.
    fn admit(&self, caller: &Caller) -> Result<(), Refused> {
        self.inner.operations.check(&caller.actor.0, caller.store.id())
    }

    /// Resolves `Bearer <key>` to a request context.
    fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, crm_core::Error> {
        let key = authorization
            .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| crm_core::Error::unauthenticated("missing API key: send 'Authorization: Bearer <key>'"))?;
        let (identity, access, store) = self.inner.kernel.identify(key)?;
        Ok(Caller {
            kernel: self.inner.kernel.clone(),
            store,
            actor: identity.actor,
            access: Arc::new(access),
            credential: identity.credential,
        })
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(|| async { "ok" }))
        .route("/auth/login", axum::routing::post(crate::auth::login))
        .route("/auth/accept-invite", axum::routing::post(crate::auth::accept_invite))
        .route("/hooks/{tenant}/{plugin}/{*path}", axum::routing::any(crate::routes::plugin_route))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn request_id() -> String {
    crm_core::RecordId::generate().to_string()
}

fn json_response(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(crate) fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::to_vec(&error_body(code, message)).unwrap_or_default();
    json_response(status, "application/json", body)
}

/// 429 with the wait in `retry-after` and in `extensions.retryAfterSeconds`.
pub(crate) fn rate_limited_response(message: &str, retry_after_seconds: u64) -> Response {
    let body = serde_json::to_vec(&rate_limited_body(message, retry_after_seconds)).unwrap_or_default();
    let mut response = json_response(StatusCode::TOO_MANY_REQUESTS, "application/json", body);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
    response
}

pub(crate) fn kernel_error_response(error: crm_core::Error) -> Response {
    let status = match error.kind {
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let message = if error.kind == ErrorKind::Internal { "internal error".to_string() } else { error.message.clone() };
    if error.kind == ErrorKind::Internal {
        tracing::error!(error = %error.message, "internal error before execution");
    }
    error_response(status, error.code(), &message)
}

fn wants_graphql_response(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains(GRAPHQL_RESPONSE))
}

/// Tags errors that have no code (parse, validation and coercion errors
/// raised by the GraphQL engine) as VALIDATION, and chooses the status.
fn finish(mut response: async_graphql::Response, graphql_response: bool) -> Response {
    let request_error = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|error| code_of(error).is_none());
    for error in &mut response.errors {
        if code_of(error).is_none() {
            // The engine's own "internal: …" errors are kernel bugs, not bad input.
            let code = if error.message.starts_with("internal:") { "INTERNAL" } else { "VALIDATION" };
            if code == "INTERNAL" {
                tracing::error!(message = %error.message, "graphql engine error");
            }
            error.extensions.get_or_insert_with(Default::default).set("code", code);
        }
    }
    let body = serde_json::to_vec(&response).unwrap_or_default();
    if graphql_response {
        let status = if request_error { StatusCode::BAD_REQUEST } else { StatusCode::OK };
        json_response(status, GRAPHQL_RESPONSE, body)
    } else {
        json_response(StatusCode::OK, "application/json", body)
    }
}

/// The response to a request a plan answered: its data, written by the
/// plan as JSON text.
fn finish_planned(data: Vec<u8>, graphql_response: bool) -> Response {
    let mut body = Vec::with_capacity(data.len() + 9);
    body.extend_from_slice(br#"{"data":"#);
    body.extend(data);
    body.push(b'}');
    json_response(StatusCode::OK, if graphql_response { GRAPHQL_RESPONSE } else { "application/json" }, body)
}

async fn execute(state: &AppState, headers: &HeaderMap, mut request: async_graphql::Request) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
    let caller = match state.authenticate(authorization) {
        Ok(found) => found,
        Err(error) => return kernel_error_response(error),
    };
    if let Err(refused) = state.admit(&caller) {
        return rate_limited_response(&refused.message(), refused.retry_after_seconds());
    }
    let (schema, plans) = match state.tenant_schema(&caller.store) {
        Ok(found) => found,
        Err(error) => return kernel_error_response(error),
    };
    state.inner.documents.attach(&mut request);
    let id = request_id();
    let span = tracing::info_span!("graphql", tenant = %caller.store.id(), request_id = %id);
    let graphql_response = wants_graphql_response(headers);
    let decision = plans.decide(&request.query, request.operation_name.as_deref());
    // What learning a plan needs once the engine has answered.
    let learner = matches!(decision, Decision::Learn).then(|| {
        let lesson = Lesson {
            query: request.query.clone(),
            operation: request.operation_name.clone(),
            variables: request.variables.clone(),
        };
        (caller.clone(), lesson)
    });
    let rc = RequestCtx::new(caller, id.clone());
    if let Decision::Run(plan) = &decision {
        let planned = span.in_scope(|| plan.run(&rc, &request.variables));
        if let Ok(data) = planned {
            state.inner.planned.fetch_add(1, Ordering::Relaxed);
            return finish_planned(data, graphql_response);
        }
        state.inner.plan_fallbacks.fetch_add(1, Ordering::Relaxed);
    }
    let response = schema.execute(request.data(rc)).instrument(span).await;
    if let Some((caller, lesson)) = learner
        && response.errors.is_empty()
    {
        let document = state.inner.documents.get(&lesson.query);
        let rc = RequestCtx::new(caller, id);
        plans.learn(document.as_deref(), &lesson, &rc, &state.inner.limits, &response.data);
    }
    finish(response, graphql_response)
}

async fn graphql_post(State(state): State<AppState>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/json") && !content_type.starts_with(GRAPHQL_RESPONSE) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "VALIDATION",
            "send the request as 'content-type: application/json'",
        );
    }
    let limit = state.inner.limits.max_body_bytes;
    let bytes: Bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "VALIDATION",
                &format!("request body exceeds the limit of {limit} bytes"),
            );
        }
    };
    let request: async_graphql::Request = match serde_json::from_slice(&bytes) {
        Ok(request) => request,
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "VALIDATION",
                &format!("request body is not a GraphQL request in JSON: {error}"),
            );
        }
    };
    execute(&state, &parts.headers, request).await
}

async fn graphql_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
    request: Request<Body>,
) -> Response {
    let (mut parts, _) = request.into_parts();
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    if is_upgrade {
        return websocket(state, &mut parts).await;
    }
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let Some(query) = params.get("query") else {
        if wants_html {
            return Html(GraphiQLSource::build().endpoint("/graphql").subscription_endpoint("/graphql").finish()).into_response();
        }
        return error_response(StatusCode::BAD_REQUEST, "VALIDATION", "missing 'query' parameter");
    };
    // GET may only read (GraphQL over HTTP): refuse mutations and subscriptions.
    let operation = params.get("operationName").cloned();
    if let Ok(document) = async_graphql::parser::parse_query(query) {
        let is_read = document.operations.iter().all(|(name, operation_def)| {
            operation.as_deref().is_some_and(|wanted| name.map(|n| n.as_str()) != Some(wanted))
                || operation_def.node.ty == async_graphql::parser::types::OperationType::Query
        });
        if !is_read {
            let mut response =
                error_response(StatusCode::METHOD_NOT_ALLOWED, "VALIDATION", "only queries may be sent with GET; use POST");
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
    }
    let mut request = async_graphql::Request::new(query.clone());
    if let Some(name) = operation {
        request = request.operation_name(name);
    }
    if let Some(variables) = params.get("variables") {
        match serde_json::from_str::<serde_json::Value>(variables) {
            Ok(value) => request = request.variables(async_graphql::Variables::from_json(value)),
            Err(error) => {
                return error_response(StatusCode::BAD_REQUEST, "VALIDATION", &format!("'variables' is not JSON: {error}"));
            }
        }
    }
    execute(&state, &headers, request).await
}

/// A WebSocket session's tenant, known after authentication.
struct Session {
    schema: Schema,
    caller: Caller,
}

/// Dispatches a WebSocket session's operations to its tenant's schema.
#[derive(Clone)]
struct SessionExecutor {
    state: AppState,
    session: Arc<OnceLock<Session>>,
}

impl Executor for SessionExecutor {
    async fn execute(&self, mut request: async_graphql::Request) -> async_graphql::Response {
        match self.session.get() {
            Some(session) => {
                if let Err(refused) = self.state.admit(&session.caller) {
                    return refused_response(refused);
                }
                self.state.inner.documents.attach(&mut request);
                let request = request.data(RequestCtx::new(session.caller.clone(), request_id()));
                session.schema.execute(request).await
            }
            None => unauthenticated_response(),
        }
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, async_graphql::Response> {
        match self.session.get() {
            Some(session) => {
                if let Err(refused) = self.state.admit(&session.caller) {
                    return futures::stream::once(async move { refused_response(refused) }).boxed();
                }
                let request = request.data(RequestCtx::new(session.caller.clone(), request_id()));
                session.schema.execute_stream_with_session_data(request, session_data.unwrap_or_default()).boxed()
            }
            None => futures::stream::once(async { unauthenticated_response() }).boxed(),
        }
    }
}

fn refused_response(refused: Refused) -> async_graphql::Response {
    async_graphql::Response::from_errors(vec![rate_limited(&refused.message(), refused.retry_after_seconds())])
}

fn unauthenticated_response() -> async_graphql::Response {
    let error = async_graphql::ServerError::new("missing API key: send {\"Authorization\": \"Bearer <key>\"} in connection_init", None);
    let mut response = async_graphql::Response::from_errors(vec![error]);
    if let Some(error) = response.errors.first_mut() {
        error.extensions.get_or_insert_with(Default::default).set("code", "UNAUTHENTICATED");
    }
    response
}

async fn websocket(state: AppState, parts: &mut axum::http::request::Parts) -> Response {
    let protocol = match GraphQLProtocol::from_request_parts(parts, &state).await {
        Ok(protocol) => protocol,
        Err(rejection) => return rejection.into_response(),
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let session: Arc<OnceLock<Session>> = Arc::new(OnceLock::new());
    if let Some(authorization) = parts.headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()) {
        match open_session(&state, authorization) {
            Ok(opened) => {
                let _ = session.set(opened);
            }
            Err(error) => return kernel_error_response(error),
        }
    }
    let executor = SessionExecutor { state: state.clone(), session: session.clone() };
    upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |stream| {
        GraphQLWebSocket::new(stream, executor, protocol)
            .on_connection_init(move |payload| {
                let state = state.clone();
                let session = session.clone();
                async move {
                    let authorization = payload
                        .get("Authorization")
                        .or_else(|| payload.get("authorization"))
                        .and_then(|value| value.as_str())
                        .map(str::to_string);
                    match authorization {
                        Some(authorization) => {
                            let opened = open_session(&state, &authorization)
                                .map_err(|error| async_graphql::Error::new(error.message))?;
                            let _ = session.set(opened);
                        }
                        None if session.get().is_some() => {}
                        None => {
                            return Err(async_graphql::Error::new(
                                "missing API key: send {\"Authorization\": \"Bearer <key>\"} in connection_init",
                            ));
                        }
                    }
                    Ok(Data::default())
                }
            })
            .serve()
    })
}

fn open_session(state: &AppState, authorization: &str) -> Result<Session, crm_core::Error> {
    let caller = state.authenticate(Some(authorization))?;
    let schema = state.schema_for(&caller.store)?;
    Ok(Session { schema, caller })
}


/// Prometheus text exposition of the kernel's counters.
async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::new();
    let tenants = state.inner.kernel.open_tenants();
    out.push_str("# HELP crm_open_tenants Tenant databases currently open.\n# TYPE crm_open_tenants gauge\n");
    out.push_str(&format!("crm_open_tenants {}\n", tenants.len()));
    out.push_str("# HELP crm_graphql_planned_total GraphQL requests answered by a query plan.\n# TYPE crm_graphql_planned_total counter\n");
    out.push_str(&format!("crm_graphql_planned_total {}\n", state.inner.planned.load(Ordering::Relaxed)));
    out.push_str("# HELP crm_graphql_plan_fallbacks_total Requests a query plan gave back to the engine.\n# TYPE crm_graphql_plan_fallbacks_total counter\n");
    out.push_str(&format!("crm_graphql_plan_fallbacks_total {}\n", state.inner.plan_fallbacks.load(Ordering::Relaxed)));
    out.push_str("# HELP crm_store_reads_total Read snapshots begun per tenant.\n# TYPE crm_store_reads_total counter\n");
    for store in &tenants {
        out.push_str(&format!("crm_store_reads_total{{tenant=\"{}\"}} {}\n", store.id(), store.read_count()));
    }
    if let Ok(runtime) = state.inner.kernel.runtime() {
        let mut calls = String::new();
        let mut errors = String::new();
        let mut fuel = String::new();
        for store in &tenants {
            for enablement in state.inner.kernel.system().enablements(store.id()).unwrap_or_default() {
                let usage = runtime.usage(store.id(), &enablement.plugin);
                let labels = format!("tenant=\"{}\",plugin=\"{}\",version=\"{}\"", store.id(), enablement.plugin, enablement.version);
                calls.push_str(&format!("crm_plugin_calls_total{{{labels}}} {}\n", usage.calls));
                errors.push_str(&format!("crm_plugin_errors_total{{{labels}}} {}\n", usage.errors));
                fuel.push_str(&format!("crm_plugin_fuel_total{{{labels}}} {}\n", usage.fuel));
            }
        }
        out.push_str("# HELP crm_plugin_calls_total Plugin calls per tenant and plugin.\n# TYPE crm_plugin_calls_total counter\n");
        out.push_str(&calls);
        out.push_str("# HELP crm_plugin_errors_total Failed plugin calls.\n# TYPE crm_plugin_errors_total counter\n");
        out.push_str(&errors);
        out.push_str("# HELP crm_plugin_fuel_total Fuel (instructions) plugins used.\n# TYPE crm_plugin_fuel_total counter\n");
        out.push_str(&fuel);
    }
    let mut response = out.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}
