//! `livechat-stack`: a Docker-free, Supabase-compatible local stack on a real PostgreSQL 15.
//!
//! It starts an ephemeral PostgreSQL cluster, creates what Supabase provides (roles, the `auth`
//! schema, the `supabase_realtime` publication), applies the project's `supabase/migrations`, and
//! serves a PostgREST-compatible API at `/rest/v1` and a Realtime-compatible WebSocket server at
//! `/realtime/v1`.

pub mod jwt;
pub mod realtime;
pub mod rest;
