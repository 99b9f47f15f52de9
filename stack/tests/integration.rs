//! The stack's integration tests in one test binary (each test binary links every dependency;
//! one per file filled a CI machine's disk). Each file is a module of its own: its tests are
//! named `<file>::<test>`, so `cargo test -p livechat-stack --test integration security::`
//! runs one file.

mod interop;
mod realtime;
mod realtime_frames_props;
mod rest;
mod security;
mod sql_functions;
