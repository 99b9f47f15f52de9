//! The message actions: read a conversation's messages page by page or after a cursor, send
//! text and files, set a message's status, and soft-delete.
//!
//! Sending goes through the SQL function `mod_chat_send_message` (one transaction: the message,
//! the conversation's first response time and, for a visible agent message, pending becoming
//! active; the counters of the conversation follow from the database's triggers). Values
//! refused by this library fail with
//! [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) before any request is sent.
//!
//! ```no_run
//! use livechat::chat::messages::{Cursor, NewMessage};
//! use livechat::chat::models::SenderType;
//!
//! # async fn demo(chat: livechat::chat::Chat, conversation: uuid::Uuid) -> livechat::Result<()> {
//! let messages = chat.messages();
//! let sent = messages
//!     .send(NewMessage::text(conversation, SenderType::Agent, "Hello! How can I help?")
//!         .sender("e0000000-0000-4000-8000-000000000101", "Alice"))
//!     .await?;
//!
//! // Later, after a reconnect: everything after the last message seen, in order.
//! if let Some(cursor) = Cursor::of(&sent) {
//!     for m in messages.after(conversation, cursor).send().await? {
//!         println!("{:?}: {:?}", m.sender_type, m.content);
//!     }
//! }
//! # Ok(()) }
//! ```

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::conversations::check_text_size;
use super::entity_views::update_by_id;
use super::models::{ContentType, Message, MessageStatus, SenderType};
use super::views::{fetch_list_page, ListPage, MAX_PAGE_SIZE};
use super::Chat;
use crate::rest::Condition;
use crate::{Error, Result};

const TABLE: &str = "mod_chat_messages";

/// The content a soft-deleted message keeps.
pub const DELETED_CONTENT: &str = "[Message deleted]";

/// A message to send ([`Messages::send`]). For files use [`NewFileMessage`].
///
/// ```
/// use livechat::chat::messages::NewMessage;
/// use livechat::chat::models::{ContentType, SenderType};
/// let conversation = uuid::Uuid::nil();
/// let m = NewMessage::text(conversation, SenderType::Visitor, "Hi").sender("v-1", "Mia");
/// assert_eq!(m.content_type, ContentType::Text);
/// let note = NewMessage::note(conversation, "Customer is a reseller");
/// assert!(note.is_internal_note);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The conversation.
    pub conversation_id: Uuid,
    /// The conversation's site, when known: the message is refused as "conversation not found"
    /// if the conversation belongs to another site.
    pub site_id: Option<Uuid>,
    /// Who sends it.
    pub sender_type: SenderType,
    /// The sender's id (an agent id, a visitor id, …).
    pub sender_id: Option<String>,
    /// The sender's name as shown.
    pub sender_name: Option<String>,
    /// The sender's avatar URL.
    pub sender_avatar: Option<String>,
    /// The text; must not be blank for text messages and notes.
    pub content: String,
    /// The content type (default text); [`ContentType::Note`] makes an internal note. File
    /// types are sent with [`Messages::send_file`].
    pub content_type: ContentType,
    /// An internal note, never shown to the visitor.
    pub is_internal_note: bool,
}

impl NewMessage {
    /// A text message.
    pub fn text(
        conversation_id: Uuid,
        sender_type: SenderType,
        content: impl Into<String>,
    ) -> NewMessage {
        NewMessage {
            conversation_id,
            site_id: None,
            sender_type,
            sender_id: None,
            sender_name: None,
            sender_avatar: None,
            content: content.into(),
            content_type: ContentType::Text,
            is_internal_note: false,
        }
    }

    /// An internal note by an agent.
    pub fn note(conversation_id: Uuid, content: impl Into<String>) -> NewMessage {
        NewMessage {
            content_type: ContentType::Note,
            is_internal_note: true,
            ..NewMessage::text(conversation_id, SenderType::Agent, content)
        }
    }

    /// Sets the site the conversation must belong to.
    pub fn site(mut self, site_id: Uuid) -> Self {
        self.site_id = Some(site_id);
        self
    }

    /// Sets the sender's id and name.
    pub fn sender(mut self, id: impl Into<String>, name: impl Into<String>) -> Self {
        self.sender_id = Some(id.into());
        self.sender_name = Some(name.into());
        self
    }

    /// Sets the sender's avatar URL.
    pub fn sender_avatar(mut self, url: impl Into<String>) -> Self {
        self.sender_avatar = Some(url.into());
        self
    }

    /// Sets the content type.
    pub fn content_type(mut self, content_type: ContentType) -> Self {
        self.content_type = content_type;
        self
    }

    /// Makes it an internal note (or not).
    pub fn internal_note(mut self, is_internal_note: bool) -> Self {
        self.is_internal_note = is_internal_note;
        self
    }
}

/// A file message to send ([`Messages::send_file`]).
///
/// ```
/// use livechat::chat::messages::NewFileMessage;
/// use livechat::chat::models::{ContentType, SenderType};
/// let m = NewFileMessage::new(
///     uuid::Uuid::nil(),
///     SenderType::Visitor,
///     "https://cdn.example/receipt.png",
///     "receipt.png",
///     48_213,
///     "image/png",
/// );
/// assert_eq!(m.content_type, ContentType::Image);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFileMessage {
    /// The conversation.
    pub conversation_id: Uuid,
    /// The conversation's site, when known (see [`NewMessage::site_id`]).
    pub site_id: Option<Uuid>,
    /// Who sends it.
    pub sender_type: SenderType,
    /// The sender's id.
    pub sender_id: Option<String>,
    /// The sender's name as shown.
    pub sender_name: Option<String>,
    /// The sender's avatar URL.
    pub sender_avatar: Option<String>,
    /// Image, file, audio or video.
    pub content_type: ContentType,
    /// Where the file is (an `http` or `https` URL).
    pub file_url: String,
    /// The file's name.
    pub file_name: String,
    /// Size in bytes (at most `i32::MAX`, the column's range).
    pub file_size: u64,
    /// MIME type.
    pub file_mime_type: String,
    /// Text sent with the file; the message's content is the file name when there is none.
    pub caption: Option<String>,
}

impl NewFileMessage {
    /// A file message; the content type follows from the MIME type (`image/*`, `audio/*`,
    /// `video/*`, anything else a file).
    pub fn new(
        conversation_id: Uuid,
        sender_type: SenderType,
        file_url: impl Into<String>,
        file_name: impl Into<String>,
        file_size: u64,
        file_mime_type: impl Into<String>,
    ) -> NewFileMessage {
        let file_mime_type = file_mime_type.into();
        let mime = file_mime_type.trim().to_ascii_lowercase();
        let content_type = if mime.starts_with("image/") {
            ContentType::Image
        } else if mime.starts_with("audio/") {
            ContentType::Audio
        } else if mime.starts_with("video/") {
            ContentType::Video
        } else {
            ContentType::File
        };
        NewFileMessage {
            conversation_id,
            site_id: None,
            sender_type,
            sender_id: None,
            sender_name: None,
            sender_avatar: None,
            content_type,
            file_url: file_url.into(),
            file_name: file_name.into(),
            file_size,
            file_mime_type,
            caption: None,
        }
    }

    /// Sets the site the conversation must belong to.
    pub fn site(mut self, site_id: Uuid) -> Self {
        self.site_id = Some(site_id);
        self
    }

    /// Sets the sender's id and name.
    pub fn sender(mut self, id: impl Into<String>, name: impl Into<String>) -> Self {
        self.sender_id = Some(id.into());
        self.sender_name = Some(name.into());
        self
    }

    /// Sets the content type (image, file, audio or video).
    pub fn content_type(mut self, content_type: ContentType) -> Self {
        self.content_type = content_type;
        self
    }

    /// Sets a caption.
    pub fn caption(mut self, caption: impl Into<String>) -> Self {
        self.caption = Some(caption.into());
        self
    }
}

/// A position in a conversation's messages: the `(created_at, id)` of the last message seen.
///
/// Messages are ordered by `(created_at, id)`; [`Messages::after`] returns those strictly after
/// the cursor. Cursors order like the messages they point at (by `created_at`, then `id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// `created_at` of the last message seen.
    pub created_at: DateTime<Utc>,
    /// `id` of the last message seen.
    pub id: Uuid,
}

impl Cursor {
    /// A cursor at `(created_at, id)`.
    pub fn new(created_at: DateTime<Utc>, id: Uuid) -> Cursor {
        Cursor { created_at, id }
    }

    /// The cursor of a message (`None` if the row has no `created_at`).
    pub fn of(message: &Message) -> Option<Cursor> {
        message.created_at.map(|created_at| Cursor {
            created_at,
            id: message.id,
        })
    }
}

/// The message actions; get it from [`Chat::messages`].
///
/// With a user's access token only messages of the user's agencies' sites are visible: another
/// agency's conversation reads as empty, and writes to its messages fail with
/// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound).
#[derive(Debug, Clone, Copy)]
pub struct Messages<'a> {
    pub(crate) chat: &'a Chat,
}

#[derive(Serialize)]
struct SendArgs<'m> {
    p_conversation_id: Uuid,
    p_sender_type: SenderType,
    p_content: Option<&'m str>,
    p_content_type: ContentType,
    p_sender_id: Option<&'m str>,
    p_sender_name: Option<&'m str>,
    p_sender_avatar: Option<&'m str>,
    p_is_internal_note: bool,
    p_file_url: Option<&'m str>,
    p_file_name: Option<&'m str>,
    p_file_size: Option<i32>,
    p_file_mime_type: Option<&'m str>,
    p_site_id: Option<Uuid>,
}

impl<'a> Messages<'a> {
    /// Starts a page of a conversation's messages (`getMessages`), oldest first
    /// (`created_at`, then `id`), 50 per page by default, with the exact total.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, conversation: uuid::Uuid) -> livechat::Result<()> {
    /// let page = chat.messages().list(conversation).page(2).page_size(25).send().await?;
    /// println!("{} of {}", page.items.len(), page.total);
    /// # Ok(()) }
    /// ```
    pub fn list(&self, conversation_id: Uuid) -> ListMessages<'a> {
        ListMessages {
            chat: self.chat,
            conversation_id,
            page: 1,
            page_size: 50,
        }
    }

    /// Starts a read of the messages strictly after `cursor` in `(created_at, id)` order: how a
    /// live feed catches up after a reconnect. At most [`MAX_PAGE_SIZE`] per call by default;
    /// call again from the last one returned until fewer come back.
    ///
    /// `created_at` is the inserting transaction's start time, so a message committed a moment
    /// after another can still sort before it. A consumer that also receives realtime inserts
    /// should deduplicate by `id`, and may start the catch-up a little before its last cursor to
    /// cover messages that were in flight at the reconnect.
    ///
    /// ```no_run
    /// use livechat::chat::messages::Cursor;
    /// # async fn demo(chat: livechat::chat::Chat, conversation: uuid::Uuid, mut cursor: Cursor) -> livechat::Result<()> {
    /// loop {
    ///     let batch = chat.messages().after(conversation, cursor).limit(200).send().await?;
    ///     let Some(last) = batch.last().and_then(Cursor::of) else { break };
    ///     cursor = last;
    ///     if batch.len() < 200 { break }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn after(&self, conversation_id: Uuid, cursor: Cursor) -> MessagesAfter<'a> {
        MessagesAfter {
            chat: self.chat,
            conversation_id,
            cursor,
            limit: MAX_PAGE_SIZE,
        }
    }

    /// Sends a message through `mod_chat_send_message` (`sendMessage`). A note content type
    /// makes an internal note; the first visible agent or AI message sets the conversation's
    /// `first_response_time_seconds`; a visible agent message makes a pending conversation
    /// active.
    ///
    /// Fails with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) before any
    /// request for blank text or note content, content above
    /// [`MAX_TEXT_BYTES`](super::conversations::MAX_TEXT_BYTES), or a file content type (use
    /// [`send_file`](Messages::send_file)); with
    /// [`ChatError::ConversationNotFound`](super::ChatError::ConversationNotFound) for a missing
    /// or hidden conversation.
    ///
    /// ```no_run
    /// use livechat::chat::messages::NewMessage;
    /// use livechat::chat::models::SenderType;
    /// # async fn demo(chat: livechat::chat::Chat, conversation: uuid::Uuid) -> livechat::Result<()> {
    /// let m = chat.messages()
    ///     .send(NewMessage::text(conversation, SenderType::Visitor, "Where is my order?"))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(level = "debug", skip_all, fields(conversation_id = %new.conversation_id, sender_type = %new.sender_type), err(level = "debug"))]
    pub async fn send(&self, new: NewMessage) -> Result<Message> {
        if new.content_type.is_file() {
            return Err(Error::invalid_input(format!(
                "a {} message needs a file: use send_file",
                new.content_type
            )));
        }
        if matches!(new.content_type, ContentType::Text | ContentType::Note)
            && new.content.trim().is_empty()
        {
            return Err(Error::invalid_input("message content is empty"));
        }
        check_text_size("message content", &new.content)?;
        let args = SendArgs {
            p_conversation_id: new.conversation_id,
            p_sender_type: new.sender_type,
            p_content: Some(&new.content),
            p_content_type: new.content_type,
            p_sender_id: new.sender_id.as_deref(),
            p_sender_name: new.sender_name.as_deref(),
            p_sender_avatar: new.sender_avatar.as_deref(),
            p_is_internal_note: new.is_internal_note || new.content_type == ContentType::Note,
            p_file_url: None,
            p_file_name: None,
            p_file_size: None,
            p_file_mime_type: None,
            p_site_id: new.site_id,
        };
        self.chat
            .client()
            .rpc("mod_chat_send_message", &args)
            .call()
            .await
    }

    /// Sends a file message through `mod_chat_send_message` (`sendFileMessage`).
    ///
    /// Fails with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) before any
    /// request for a content type other than image, file, audio or video, a URL that is not
    /// `http(s)`, a blank file name or MIME type, or a size above `i32::MAX`.
    ///
    /// ```no_run
    /// use livechat::chat::messages::NewFileMessage;
    /// use livechat::chat::models::SenderType;
    /// # async fn demo(chat: livechat::chat::Chat, conversation: uuid::Uuid) -> livechat::Result<()> {
    /// let file = NewFileMessage::new(conversation, SenderType::Agent,
    ///     "https://cdn.example/invoice.pdf", "invoice.pdf", 120_000, "application/pdf");
    /// let m = chat.messages().send_file(file).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(level = "debug", skip_all, fields(conversation_id = %new.conversation_id, content_type = %new.content_type), err(level = "debug"))]
    pub async fn send_file(&self, new: NewFileMessage) -> Result<Message> {
        if !new.content_type.is_file() {
            return Err(Error::invalid_input(format!(
                "a file message must be an image, file, audio or video, not {}",
                new.content_type
            )));
        }
        match url::Url::parse(new.file_url.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                return Err(Error::invalid_input(
                    "the file URL must be an absolute http or https URL",
                ))
            }
        }
        if new.file_name.trim().is_empty() {
            return Err(Error::invalid_input("the file name is empty"));
        }
        if new.file_mime_type.trim().is_empty() {
            return Err(Error::invalid_input("the file MIME type is empty"));
        }
        let file_size = i32::try_from(new.file_size).map_err(|_| {
            Error::invalid_input(format!(
                "a file of {} bytes is too large to record",
                new.file_size
            ))
        })?;
        let content = new.caption.as_deref().unwrap_or(&new.file_name);
        check_text_size("caption", content)?;
        let args = SendArgs {
            p_conversation_id: new.conversation_id,
            p_sender_type: new.sender_type,
            p_content: Some(content),
            p_content_type: new.content_type,
            p_sender_id: new.sender_id.as_deref(),
            p_sender_name: new.sender_name.as_deref(),
            p_sender_avatar: new.sender_avatar.as_deref(),
            p_is_internal_note: false,
            p_file_url: Some(new.file_url.trim()),
            p_file_name: Some(&new.file_name),
            p_file_size: Some(file_size),
            p_file_mime_type: Some(&new.file_mime_type),
            p_site_id: new.site_id,
        };
        self.chat
            .client()
            .rpc("mod_chat_send_message", &args)
            .call()
            .await
    }

    /// Sets a message's status (`updateMessageStatus`).
    ///
    /// Fails with [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when the message does not
    /// exist or is not visible.
    ///
    /// ```no_run
    /// use livechat::chat::models::MessageStatus;
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// chat.messages().set_status(id, MessageStatus::Delivered).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn set_status(&self, id: Uuid, status: MessageStatus) -> Result<Message> {
        #[derive(Serialize)]
        struct Change {
            status: MessageStatus,
        }
        update_by_id(self.chat.client(), TABLE, id, &Change { status }).await
    }

    /// Soft-deletes a message (`deleteMessage`): its content becomes [`DELETED_CONTENT`] and its
    /// file fields are cleared; the row stays, so the conversation's history keeps its shape.
    ///
    /// Fails with [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when the message does not
    /// exist or is not visible.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// let m = chat.messages().delete(id).await?;
    /// assert_eq!(m.content.as_deref(), Some("[Message deleted]"));
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn delete(&self, id: Uuid) -> Result<Message> {
        #[derive(Serialize)]
        struct Change {
            content: &'static str,
            file_url: Option<String>,
            file_name: Option<String>,
            file_size: Option<i32>,
            file_mime_type: Option<String>,
        }
        let change = Change {
            content: DELETED_CONTENT,
            file_url: None,
            file_name: None,
            file_size: None,
            file_mime_type: None,
        };
        update_by_id(self.chat.client(), TABLE, id, &change).await
    }
}

/// A page of messages being asked for; see [`Messages::list`].
#[derive(Debug, Clone)]
#[must_use = "a list does nothing until it is sent"]
pub struct ListMessages<'a> {
    chat: &'a Chat,
    conversation_id: Uuid,
    page: u32,
    page_size: u32,
}

impl<'a> ListMessages<'a> {
    /// The page, from 1 (default 1).
    pub fn page(mut self, page: u32) -> Self {
        self.page = page;
        self
    }

    /// Messages per page, 1 to [`MAX_PAGE_SIZE`] (default 50).
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size;
        self
    }

    /// Sends the request: one request (a page past the last one is empty, with the total).
    ///
    /// Fails with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) before any
    /// request for page 0 or a page size of 0 or above [`MAX_PAGE_SIZE`].
    #[tracing::instrument(level = "debug", skip_all, fields(conversation_id = %self.conversation_id, page = self.page), err(level = "debug"))]
    pub async fn send(self) -> Result<ListPage<Message>> {
        fetch_list_page(
            || {
                self.chat
                    .client()
                    .from(TABLE)
                    .eq("conversation_id", self.conversation_id)
            },
            |q| q.order_asc("created_at").order_asc("id"),
            self.page,
            self.page_size,
        )
        .await
    }
}

/// A catch-up read being built; see [`Messages::after`].
#[derive(Debug, Clone)]
#[must_use = "a read does nothing until it is sent"]
pub struct MessagesAfter<'a> {
    chat: &'a Chat,
    conversation_id: Uuid,
    cursor: Cursor,
    limit: u32,
}

impl<'a> MessagesAfter<'a> {
    /// At most this many messages, 1 to [`MAX_PAGE_SIZE`] (default [`MAX_PAGE_SIZE`]).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Sends the request (one request): the messages strictly after the cursor, in
    /// `(created_at, id)` order.
    ///
    /// Fails with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) before any
    /// request for a limit of 0 or above [`MAX_PAGE_SIZE`].
    #[tracing::instrument(level = "debug", skip_all, fields(conversation_id = %self.conversation_id, after = %self.cursor.created_at), err(level = "debug"))]
    pub async fn send(self) -> Result<Vec<Message>> {
        if self.limit == 0 || self.limit > MAX_PAGE_SIZE {
            return Err(Error::invalid_input(format!(
                "the limit must be between 1 and {MAX_PAGE_SIZE}, got {}",
                self.limit
            )));
        }
        let at = self
            .cursor
            .created_at
            .to_rfc3339_opts(SecondsFormat::Micros, true);
        self.chat
            .client()
            .from(TABLE)
            .eq("conversation_id", self.conversation_id)
            .filter(Condition::or([
                Condition::gt("created_at", &at),
                Condition::and([
                    Condition::eq("created_at", &at),
                    Condition::gt("id", self.cursor.id),
                ]),
            ]))
            .order_asc("created_at")
            .order_asc("id")
            .limit(u64::from(self.limit))
            .fetch()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_content_type_follows_the_mime_type() {
        let f = |mime: &str| {
            NewFileMessage::new(Uuid::nil(), SenderType::Agent, "https://x/y", "y", 1, mime)
                .content_type
        };
        assert_eq!(f("image/png"), ContentType::Image);
        assert_eq!(f("Audio/ogg"), ContentType::Audio);
        assert_eq!(f("video/mp4"), ContentType::Video);
        assert_eq!(f("application/pdf"), ContentType::File);
    }

    #[test]
    fn a_note_is_an_internal_agent_message() {
        let n = NewMessage::note(Uuid::nil(), "x");
        assert_eq!(n.sender_type, SenderType::Agent);
        assert_eq!(n.content_type, ContentType::Note);
        assert!(n.is_internal_note);
    }
}
