//! The chat domain: typed models of the `mod_chat_*` tables and every action of the original
//! dashboard, grouped by entity.
//!
//! ```no_run
//! # async fn demo() -> livechat::Result<()> {
//! use livechat::{Client, Config};
//! use livechat::chat::Chat;
//!
//! let chat = Chat::new(Client::new(Config::from_env()?)?);
//! let _ = chat.conversations();
//! # Ok(()) }
//! ```

pub mod agents;
pub mod business_hours;
pub mod canned;
pub mod conversations;
pub mod departments;
pub mod entity_views;
pub mod error;
pub mod knowledge_base;
pub mod messages;
pub mod models;
pub mod views;
pub mod visitors;
pub mod widget;

pub use error::ChatError;

use crate::Client;

/// Entry point of the chat domain: a cheap `Clone` handle over a [`Client`].
///
/// With the service-role key every site is reachable; with a user's access token
/// ([`Client::with_access_token`]) row-level security limits every action to the sites of the
/// user's agencies.
#[derive(Debug, Clone)]
pub struct Chat {
    client: Client,
}

impl Chat {
    /// Wraps a client.
    pub fn new(client: Client) -> Chat {
        Chat { client }
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Conversations: list, open, assign, transfer, resolve, close, reopen, …
    pub fn conversations(&self) -> conversations::Conversations<'_> {
        conversations::Conversations { chat: self }
    }

    /// Messages of conversations.
    pub fn messages(&self) -> messages::Messages<'_> {
        messages::Messages { chat: self }
    }

    /// Agents.
    pub fn agents(&self) -> agents::Agents<'_> {
        agents::Agents { chat: self }
    }

    /// Departments.
    pub fn departments(&self) -> departments::Departments<'_> {
        departments::Departments { chat: self }
    }

    /// Canned responses.
    pub fn canned_responses(&self) -> canned::CannedResponses<'_> {
        canned::CannedResponses { chat: self }
    }

    /// The knowledge base.
    pub fn knowledge_base(&self) -> knowledge_base::KnowledgeBase<'_> {
        knowledge_base::KnowledgeBase { chat: self }
    }

    /// Widget settings and business hours.
    pub fn widget(&self) -> widget::Widget<'_> {
        widget::Widget { chat: self }
    }

    /// Visitors.
    pub fn visitors(&self) -> visitors::Visitors<'_> {
        visitors::Visitors { chat: self }
    }
}
