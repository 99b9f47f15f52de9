//! `livechat`: a typed Rust client for the live-chat module (`mod_chat_*` tables) of a
//! multi-tenant CMS platform built on Supabase.
//!
//! It reads and writes the chat tables through PostgREST and joins Supabase Realtime channels,
//! so a Rust service can do what the platform's TypeScript dashboard does, against the same
//! database. The sibling crate `livechat-stack` provides a Docker-free local Supabase-compatible
//! stack to try and test it on.
