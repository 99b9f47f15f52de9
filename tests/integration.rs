//! Every integration test of the `livechat` crate but `security_props` (which installs a
//! process-wide log capture), in one test binary.
//!
//! One binary rather than one per file: each test binary links every dependency, and thirty of
//! them filled a CI machine's disk. Each file below is still a module of its own (its tests are
//! named `<file>::<test>`, so `cargo test --test integration live_messages::` runs one file);
//! the shared helpers are declared once here.

#[path = "chat_support/conv.rs"]
mod conv;
#[path = "chat_support/entity.rs"]
mod entity;
mod live_support;
mod realtime_support;
mod rest_support;
mod worker_support;

mod chat_agents_departments;
mod chat_concurrency;
mod chat_content;
mod chat_conversations;
mod chat_widget_visitors;
mod examples_run;
mod live_conversations;
mod live_messages;
mod live_presence;
mod realtime_fake;
mod realtime_stack;
mod rest_encoding_props;
mod rest_errors;
mod rest_requests;
mod rest_rls;
mod rest_stack;
mod tenant_isolation;
mod visitor_session;
mod worker_cli;
mod worker_concurrency;
mod worker_resilience;
mod worker_routing;
