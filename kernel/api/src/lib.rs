//! The GraphQL API of the CRM kernel: a schema built per tenant from
//! metadata, and the axum router that serves it over HTTP and WebSocket.
//!
//! ```no_run
//! # async fn demo(kernel: std::sync::Arc<crm_core::Kernel>) {
//! let app = crm_api::router(crm_api::AppState::new(kernel, crm_api::Limits::default()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```

mod admin;
mod auth;
mod identity;
mod batch;
mod context;
mod convert;
mod documents;
mod plan;
mod errors;
mod gdpr;
mod http;
mod rate_limit;
mod resolver;
mod routes;
pub mod names;
pub mod schema;

pub use auth::ThrottlePolicy;
pub use context::{Caller, RequestCtx};
pub use http::{AppState, router};
pub use rate_limit::RateLimit;
pub use schema::Limits;
