//! `livechat`: a typed Rust client for the live-chat module (`mod_chat_*` tables) of a
//! multi-tenant CMS platform built on Supabase.
//!
//! It reads and writes the chat tables through PostgREST and joins Supabase Realtime channels,
//! so a Rust service can do what the platform's TypeScript dashboard does, against the same
//! database. The sibling crate `livechat-stack` provides a Docker-free local Supabase-compatible
//! stack to try and test it on.
//!
//! # Getting started
//!
//! A [`Client`] is built from a [`Config`]: the project URL and an API key, read from the
//! environment variables `supabase status` prints (`SUPABASE_URL`, `SUPABASE_ANON_KEY`,
//! `SUPABASE_SERVICE_ROLE_KEY`) or given directly. It is cheap to clone, and
//! [`Client::with_access_token`] acts for a signed-in user (row-level security applies) while
//! sharing the same connection pool.
//!
//! ```no_run
//! use livechat::{Client, Config, Count};
//! use livechat::rest::Condition;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Deserialize)]
//! struct Canned { id: String, title: String, content: String, tags: Vec<String> }
//!
//! #[derive(Serialize)]
//! struct NewCanned<'a> { site_id: &'a str, title: &'a str, content: &'a str }
//!
//! # async fn demo(user_jwt: String) -> livechat::Result<()> {
//! let client = Client::new(Config::from_env()?)?;
//! let site = "b0000000-0000-4000-8000-000000000001";
//!
//! // Act as a dashboard user: RLS limits rows to the sites of their agency.
//! let agent = client.with_access_token(user_jwt);
//!
//! // Literal search, whatever the user typed (quotes, commas, `*`, `%`, unicode…).
//! let found: Vec<Canned> = agent
//!     .from("mod_chat_canned_responses")
//!     .eq("site_id", site)
//!     .text_icontains("title", "50% off*")
//!     .order_asc("title")
//!     .limit(20)
//!     .fetch()
//!     .await?;
//!
//! // Create one and get it back.
//! let created: Canned = agent
//!     .from("mod_chat_canned_responses")
//!     .insert(&NewCanned { site_id: site, title: "Greeting", content: "Hello!" })
//!     .single()
//!     .await?;
//!
//! // A page of conversations with their visitor, and the total.
//! let page = agent
//!     .from("mod_chat_conversations")
//!     .select("id,status,visitor:mod_chat_visitors(name)")
//!     .eq("site_id", site)
//!     .or([Condition::eq("status", "pending"), Condition::eq("status", "active")])
//!     .order_desc("created_at")
//!     .range(0, 24)
//!     .fetch_page::<serde_json::Value>()
//!     .await?;
//! println!("{} of {:?}", page.rows.len(), page.total);
//!
//! // Errors say what went wrong and whether to retry.
//! match agent.from("mod_chat_canned_responses").eq("id", &created.id).delete().execute().await {
//!     Ok(_) => {}
//!     Err(e) if e.is_retryable() => { /* back off and try again */ }
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```
//!
//! # Modules
//!
//! * [`config`]: [`Config`], environment variables, [`AccessTokenProvider`].
//! * [`rest`]: the PostgREST layer ([`Query`], [`Page`], [`Condition`](rest::Condition)) and
//!   [`rest::encode`], which makes user values match literally wherever they go in a query
//!   (and documents the one place PostgREST cannot: `*` in `like` patterns).
//! * [`error`]: [`Error`] with [`ErrorKind`], retry predicates and the PostgREST error body.

pub mod client;
pub mod config;
pub mod error;
pub mod rest;

pub use client::Client;
pub use config::{AccessTokenProvider, ApiKeyKind, Config};
pub use error::{BoxError, Error, ErrorKind, PostgrestError, Result};
pub use rest::{Count, Page, Query};

pub mod chat;
pub mod live;
pub mod realtime;
pub mod visitor;
pub mod visitor_token;
pub mod worker;
