//! The visitor's side of the chat, as the embeddable widget does it: start or resume a
//! conversation, send messages, read the history and follow the conversation live (messages
//! and typing indicators both ways), all with the project's **anon key plus a visitor token**.
//!
//! A [`VisitorSession`] is built from a [`Client`] holding the anon key and a visitor token
//! minted by the trusted side ([`mint_visitor_token`](crate::visitor_token::mint_visitor_token)).
//! Row-level security (migration `20260101000500_visitor_access.sql`) decides what the token
//! may do: read its own visitor row, its own conversations of its site and their messages
//! except internal notes; start pending, unassigned conversations for itself; send messages
//! into its own conversations as `sender_type = 'visitor'`; receive realtime changes of those
//! rows only. Column privileges (migration `20260101000700_visitor_columns.sql`) hide what
//! agents write about the visitor (`internal_notes` and `tags` of conversations; `notes`,
//! `tags` and `crm_contact_id` of the visitor row): the session reads
//! [`VISITOR_CONVERSATION_COLUMNS`] and [`VISITOR_ROW_COLUMNS`], so those fields are `None`.
//! The session never holds the JWT secret and never verifies the token: it only
//! reads the token's `visitor_id` and `site_id` claims to fill in requests. **The server
//! verifies the token** on every request (a forged or expired one is refused with
//! [`ErrorKind::Auth`]).
//!
//! ```no_run
//! use futures::StreamExt;
//! use livechat::live::MessageEvent;
//! use livechat::visitor::VisitorSession;
//! use livechat::{ApiKeyKind, Client, Config};
//!
//! # async fn demo(token_from_backend: String) -> Result<(), Box<dyn std::error::Error>> {
//! let anon = Client::new(Config::from_env_with(ApiKeyKind::Anon)?)?;
//! let session = VisitorSession::new(&anon, token_from_backend)?.with_name("Vera");
//!
//! // Continue the open conversation, or start one.
//! let conversation = match session.resume().await? {
//!     Some(c) => c,
//!     None => session.start_conversation(Some("Order question"), None).await?,
//! };
//! for m in session.history(conversation.id).await? {
//!     println!("{}: {}", m.sender_type, m.content.unwrap_or_default());
//! }
//!
//! let mut feed = session.feed(conversation.id).await?;
//! session.send(conversation.id, "Hello, is anyone there?").await?;
//! while let Some(event) = feed.next().await {
//!     match event {
//!         MessageEvent::New { message, .. } => println!("{:?}", message.content),
//!         MessageEvent::TypingStarted { sender_name, .. } => println!("{sender_name} is typing"),
//!         _ => {}
//!     }
//! }
//! session.close().await;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

use std::fmt;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::chat::conversations::MAX_TEXT_BYTES;
use crate::chat::messages::Cursor;
use crate::chat::models::{Channel, Conversation, ConversationStatus, Message, Visitor};
use crate::chat::views::MAX_PAGE_SIZE;
use crate::chat::Chat;
use crate::live::{Live, MessageFeed};
use crate::visitor_token::{decode_part, jwt_parts};
use crate::{Client, Error, ErrorKind, Result};

/// The statuses [`VisitorSession::resume`] treats as open: pending, active and waiting.
pub const OPEN_STATUSES: &[ConversationStatus] = &[
    ConversationStatus::Pending,
    ConversationStatus::Active,
    ConversationStatus::Waiting,
];

/// The columns of `mod_chat_conversations` the `anon` role (and so a visitor token) may read:
/// every column except `internal_notes` and `tags`, which agents write about the visitor
/// (migration `20260101000700_visitor_columns.sql`). `select=*` is refused for `anon`, so
/// widget code names these; fields outside the list read as `None` in [`Conversation`].
pub const VISITOR_CONVERSATION_COLUMNS: &str = "id,site_id,visitor_id,assigned_agent_id,\
department_id,status,priority,channel,subject,last_message_text,last_message_at,last_message_by,\
message_count,unread_agent_count,unread_visitor_count,first_response_time_seconds,\
resolution_time_seconds,wait_time_seconds,rating,rating_comment,rated_at,metadata,\
whatsapp_conversation_id,whatsapp_window_expires_at,created_at,updated_at,resolved_at,closed_at";

/// The columns of `mod_chat_visitors` the `anon` role (and so a visitor token) may read: every
/// column except `notes`, `tags` and `crm_contact_id` (migration
/// `20260101000700_visitor_columns.sql`); those read as `None` in [`Visitor`].
pub const VISITOR_ROW_COLUMNS: &str = "id,site_id,external_id,name,email,phone,avatar_url,\
browser,os,device,ip_address,country,city,current_page_url,current_page_title,referrer_url,\
landing_page_url,total_visits,total_conversations,total_messages,first_seen_at,last_seen_at,\
custom_data,channel,whatsapp_phone,created_at,updated_at";

/// One widget visitor's chat, acting with the anon key and a visitor token.
///
/// Cheap to clone; clones share the REST connection pool and the realtime connection opened
/// by [`feed`](VisitorSession::feed). See the [module docs](self) for what the token allows.
#[derive(Clone)]
pub struct VisitorSession {
    client: Client,
    visitor_id: Uuid,
    site_id: Uuid,
    name: Option<String>,
    live: Arc<Mutex<Option<Live>>>,
}

impl fmt::Debug for VisitorSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never prints the token.
        f.debug_struct("VisitorSession")
            .field("visitor_id", &self.visitor_id)
            .field("site_id", &self.site_id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The claims the session reads (without verifying: the server does).
#[derive(Deserialize)]
struct UnverifiedClaims {
    role: Option<String>,
    sub: Option<serde_json::Value>,
    visitor_id: Uuid,
    site_id: Uuid,
}

/// The claims of something shaped like a visitor token. Shares the JWT decoding of
/// [`verify_visitor_token`](crate::visitor_token::verify_visitor_token), not its checks: no
/// header, signature, `iss` or time checks (the server makes them), and nil ids are refused.
fn read_claims(token: &str) -> Result<UnverifiedClaims> {
    let not_visitor = || {
        Error::invalid_input(
            "not a visitor token: expected a JWT with role \"anon\", no \"sub\", \
             and uuid \"visitor_id\" and \"site_id\" claims",
        )
    };
    let (_, payload, _) = jwt_parts(token.trim()).ok_or_else(not_visitor)?;
    let claims: UnverifiedClaims = decode_part(payload).ok_or_else(not_visitor)?;
    if claims.role.as_deref() != Some(crate::visitor_token::ROLE)
        || claims.sub.is_some()
        || claims.visitor_id.is_nil()
        || claims.site_id.is_nil()
    {
        return Err(not_visitor());
    }
    Ok(claims)
}

/// An anonymous row-level security violation (SQLSTATE 42501, which PostgREST answers with
/// HTTP 401 for the anon role) means "not yours": report it as [`ErrorKind::Forbidden`].
fn not_yours(e: Error, what: &str) -> Error {
    if e.code() == Some("42501") {
        Error::new(ErrorKind::Forbidden, what.to_string()).with_source(e)
    } else {
        e
    }
}

fn check_text(what: &str, text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Error::invalid_input(format!("{what} is empty")));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(Error::invalid_input(format!(
            "{what} is {} bytes; at most {MAX_TEXT_BYTES} are accepted",
            text.len()
        )));
    }
    Ok(())
}

#[derive(Serialize)]
struct NewConversationRow<'a> {
    site_id: Uuid,
    visitor_id: Uuid,
    status: ConversationStatus,
    channel: Channel,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    department_id: Option<Uuid>,
}

#[derive(Serialize)]
struct NewMessageRow<'a> {
    conversation_id: Uuid,
    site_id: Uuid,
    sender_type: &'static str,
    sender_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sender_name: Option<&'a str>,
    content: &'a str,
    content_type: &'static str,
}

impl VisitorSession {
    /// A session for the visitor of `token`, acting through `anon_client` (a client built with
    /// the project's **anon** key; any access token it holds is replaced by `token`, and it
    /// keeps sharing the client's connection pool).
    ///
    /// The token's `visitor_id` and `site_id` claims are read **without verifying the
    /// signature or the expiry**: the session has no secret, and PostgREST and Realtime verify
    /// the token on every request. Fails with [`ErrorKind::InvalidInput`] (the message never
    /// contains the token) for anything that is not shaped like a visitor token: not a JWT,
    /// role other than `anon`, a `sub` claim, missing or nil `visitor_id` / `site_id`.
    ///
    /// ```no_run
    /// # fn demo(token: String) -> livechat::Result<()> {
    /// use livechat::visitor::VisitorSession;
    /// let anon = livechat::Client::new(livechat::Config::from_env_with(livechat::ApiKeyKind::Anon)?)?;
    /// let session = VisitorSession::new(&anon, token)?;
    /// println!("visitor {} of site {}", session.visitor_id(), session.site_id());
    /// # Ok(()) }
    /// ```
    pub fn new(anon_client: &Client, token: impl Into<String>) -> Result<VisitorSession> {
        let token = token.into();
        let claims = read_claims(&token)?;
        Ok(VisitorSession {
            client: anon_client.with_access_token(token),
            visitor_id: claims.visitor_id,
            site_id: claims.site_id,
            name: None,
            live: Arc::new(Mutex::new(None)),
        })
    }

    /// Sets the name shown as `sender_name` on the messages this session sends (none by
    /// default).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The visitor (the token's `visitor_id` claim).
    pub fn visitor_id(&self) -> Uuid {
        self.visitor_id
    }

    /// The visitor's site (the token's `site_id` claim).
    pub fn site_id(&self) -> Uuid {
        self.site_id
    }

    /// The name set with [`with_name`](Self::with_name).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The REST client acting with the visitor token (row-level security applies).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Reads the visitor's own row.
    ///
    /// Fails with [`ErrorKind::NotFound`] when the row does not exist (or the token's site is
    /// not the visitor's), and with [`ErrorKind::Auth`] for a token the server refuses.
    ///
    /// ```no_run
    /// # async fn demo(session: livechat::visitor::VisitorSession) -> livechat::Result<()> {
    /// let me = session.visitor().await?;
    /// println!("{:?}", me.name);
    /// # Ok(()) }
    /// ```
    pub async fn visitor(&self) -> Result<Visitor> {
        self.client
            .from("mod_chat_visitors")
            .select(VISITOR_ROW_COLUMNS)
            .eq("id", self.visitor_id)
            .eq("site_id", self.site_id)
            .single()
            .await
    }

    /// Starts a conversation for this visitor: pending, unassigned, on the widget channel,
    /// with an optional subject and department; returns the row as stored.
    ///
    /// Fails with [`ErrorKind::InvalidInput`] before any request for a blank or oversized
    /// subject; with [`ErrorKind::Forbidden`] when the server refuses the row (the visitor
    /// does not exist in the token's site); with [`ErrorKind::Auth`] for a refused token.
    ///
    /// ```no_run
    /// # async fn demo(session: livechat::visitor::VisitorSession) -> livechat::Result<()> {
    /// let c = session.start_conversation(Some("Where is my order?"), None).await?;
    /// assert_eq!(c.status, livechat::chat::models::ConversationStatus::Pending);
    /// # Ok(()) }
    /// ```
    pub async fn start_conversation(
        &self,
        subject: Option<&str>,
        department: Option<Uuid>,
    ) -> Result<Conversation> {
        if let Some(subject) = subject {
            check_text("the subject", subject)?;
        }
        let row = NewConversationRow {
            site_id: self.site_id,
            visitor_id: self.visitor_id,
            status: ConversationStatus::Pending,
            channel: Channel::Widget,
            subject,
            department_id: department,
        };
        self.client
            .from("mod_chat_conversations")
            .insert(&row)
            .select(VISITOR_CONVERSATION_COLUMNS)
            .single()
            .await
            .map_err(|e| not_yours(e, "the visitor token may not start this conversation"))
    }

    /// The visitor's newest open conversation (status in [`OPEN_STATUSES`]), if any: what the
    /// widget reopens on a page load.
    ///
    /// ```no_run
    /// # async fn demo(session: livechat::visitor::VisitorSession) -> livechat::Result<()> {
    /// if let Some(c) = session.resume().await? {
    ///     println!("continuing {}", c.id);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn resume(&self) -> Result<Option<Conversation>> {
        self.own_conversations()
            .in_(
                "status",
                OPEN_STATUSES.iter().map(ConversationStatus::as_str),
            )
            .limit(1)
            .maybe_single()
            .await
    }

    /// Every conversation of this visitor in its site, newest first.
    ///
    /// ```no_run
    /// # async fn demo(session: livechat::visitor::VisitorSession) -> livechat::Result<()> {
    /// for c in session.conversations().await? {
    ///     println!("{} {}", c.id, c.status);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn conversations(&self) -> Result<Vec<Conversation>> {
        self.own_conversations().fetch().await
    }

    fn own_conversations(&self) -> crate::Query {
        self.client
            .from("mod_chat_conversations")
            .select(VISITOR_CONVERSATION_COLUMNS)
            .eq("visitor_id", self.visitor_id)
            .eq("site_id", self.site_id)
            .order_desc("created_at")
            .order_desc("id")
    }

    /// Sends a text message into one of this visitor's conversations, as the visitor (with
    /// the name of [`with_name`](Self::with_name)); returns the stored message.
    ///
    /// Fails with [`ErrorKind::InvalidInput`] **before any request** for blank text or text
    /// above [`MAX_TEXT_BYTES`]; with [`ErrorKind::Forbidden`] when the conversation is not
    /// this visitor's (or does not exist); with [`ErrorKind::Auth`] for a refused token.
    ///
    /// ```no_run
    /// # async fn demo(session: livechat::visitor::VisitorSession, conversation: uuid::Uuid) -> livechat::Result<()> {
    /// let m = session.send(conversation, "Where is my order?").await?;
    /// println!("sent {}", m.id);
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, conversation_id: Uuid, text: &str) -> Result<Message> {
        check_text("the message", text)?;
        let row = NewMessageRow {
            conversation_id,
            site_id: self.site_id,
            sender_type: "visitor",
            sender_id: self.visitor_id.to_string(),
            sender_name: self.name.as_deref(),
            content: text,
            content_type: "text",
        };
        self.client
            .from("mod_chat_messages")
            .insert(&row)
            .single()
            .await
            .map_err(|e| {
                not_yours(
                    e,
                    "the conversation is not this visitor's: the message was not sent",
                )
            })
    }

    /// Every message of one of this visitor's conversations that the visitor may see, oldest
    /// first (`created_at`, then `id`). Internal notes are never returned (row-level
    /// security hides them); another visitor's conversation reads as empty.
    ///
    /// Reads in pages of [`MAX_PAGE_SIZE`] until the end.
    ///
    /// ```no_run
    /// # async fn demo(session: livechat::visitor::VisitorSession, conversation: uuid::Uuid) -> livechat::Result<()> {
    /// for m in session.history(conversation).await? {
    ///     println!("{}: {}", m.sender_type, m.content.unwrap_or_default());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn history(&self, conversation_id: Uuid) -> Result<Vec<Message>> {
        let chat = Chat::new(self.client.clone());
        let mut all: Vec<Message> = Vec::new();
        loop {
            let page: Vec<Message> = match all.last() {
                None => {
                    self.client
                        .from("mod_chat_messages")
                        .eq("conversation_id", conversation_id)
                        .order_asc("created_at")
                        .order_asc("id")
                        .limit(u64::from(MAX_PAGE_SIZE))
                        .fetch()
                        .await?
                }
                // A row without `created_at` sorts last: nothing comes after it.
                Some(last) => match Cursor::of(last) {
                    Some(cursor) => {
                        chat.messages()
                            .after(conversation_id, cursor)
                            .send()
                            .await?
                    }
                    None => break,
                },
            };
            // A short page is the last one (as long as the server's `max_rows` is at least
            // MAX_PAGE_SIZE; Supabase's default is equal).
            let full = page.len() == MAX_PAGE_SIZE as usize;
            all.extend(page);
            if !full {
                break;
            }
        }
        Ok(all)
    }

    /// The realtime handle of this session (built on first use, then shared by every feed
    /// and clone): one WebSocket acting with the visitor token. Must be called inside a Tokio
    /// runtime.
    pub fn live(&self) -> std::result::Result<Live, crate::live::Error> {
        let mut slot = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(live) = slot.as_ref() {
            return Ok(live.clone());
        }
        let live = Live::new(&self.client)?;
        *slot = Some(live.clone());
        Ok(live)
    }

    /// Follows one of this visitor's conversations live from now on: new and updated messages
    /// the visitor may see (never internal notes) and the agents' typing indicators, as a
    /// [`MessageFeed`] with the delivery guarantees of [`crate::live`]. Send the visitor's own
    /// typing indicators with [`MessageFeed::send_typing_start`] /
    /// [`send_typing_stop`](MessageFeed::send_typing_stop) (or [`MessageFeed::typing`]), with
    /// [`visitor_id`](Self::visitor_id) as the sender id.
    ///
    /// To show the history and then live messages without a gap, use
    /// `session.live()?.messages(id).snapshot(true).subscribe()` instead of
    /// [`history`](Self::history) followed by this.
    ///
    /// ```no_run
    /// # async fn demo(session: livechat::visitor::VisitorSession, conversation: uuid::Uuid) -> Result<(), livechat::live::Error> {
    /// let feed = session.feed(conversation).await?;
    /// let me = session.visitor_id().to_string();
    /// feed.send_typing_start(&me, session.name().unwrap_or("Visitor")).await?;
    /// session.send(conversation, "Hi!").await?;
    /// feed.send_typing_stop(&me).await?;
    /// # Ok(()) }
    /// ```
    pub async fn feed(
        &self,
        conversation_id: Uuid,
    ) -> std::result::Result<MessageFeed, crate::live::Error> {
        self.live()?.messages(conversation_id).subscribe().await
    }

    /// Closes the realtime connection opened by [`feed`](Self::feed), if any (feeds still
    /// alive stop receiving). REST calls keep working.
    pub async fn close(&self) {
        let live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(live) = live {
            let _ = live.realtime().disconnect().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use std::time::Duration;

    const SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";

    fn client() -> Client {
        Client::new(crate::Config::new("http://127.0.0.1:1", "anon-key").unwrap()).unwrap()
    }

    #[test]
    fn reads_the_claims_of_a_visitor_token() {
        let (v, s) = (Uuid::new_v4(), Uuid::new_v4());
        let token = crate::visitor_token::mint_visitor_token(SECRET, v, s, Duration::from_secs(60))
            .unwrap();
        let session = VisitorSession::new(&client(), token.clone()).unwrap();
        assert_eq!((session.visitor_id(), session.site_id()), (v, s));
        assert!(!format!("{session:?}").contains(&token));
    }

    #[test]
    fn refuses_what_is_not_a_visitor_token() {
        let enc = |claims: serde_json::Value| {
            format!(
                "e30.{}.sig",
                URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
            )
        };
        let v = Uuid::new_v4();
        for token in [
            "not-a-jwt".to_string(),
            "a.b.c".to_string(),
            enc(serde_json::json!({"role": "anon", "visitor_id": v})),
            enc(serde_json::json!({"role": "authenticated", "visitor_id": v, "site_id": v})),
            enc(serde_json::json!({"role": "anon", "sub": "u", "visitor_id": v, "site_id": v})),
            enc(serde_json::json!({"role": "anon", "visitor_id": Uuid::nil(), "site_id": v})),
        ] {
            let e = VisitorSession::new(&client(), token.clone()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{token}");
            assert!(!e.to_string().contains(&token));
        }
    }
}
