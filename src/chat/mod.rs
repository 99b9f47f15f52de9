//! The chat domain: typed models of the `mod_chat_*` tables and the parity actions.

pub mod business_hours;
pub mod models;
