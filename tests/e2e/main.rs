//! End-to-end tests: each test starts the real `crm` binary on port 0 with
//! its own temporary data directory and talks to it over HTTP, WebSocket
//! and the command line, as a client would.

mod support;

mod audit;
mod backup;
mod bad_input;
mod custom_fields;
mod durability;
mod gdpr;
mod graphql;
mod helpdesk;
mod identity;
mod isolation;
mod lead_scoring;
mod marketing;
mod outbound;
mod permissions;
mod plans;
mod plugins;
mod rate_limit;
mod tenants;
mod tls;
mod tour;
mod websocket;
