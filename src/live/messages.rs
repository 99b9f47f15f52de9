//! The message feed of a conversation (`useChatRealtime`).

use super::feed::{self, Command, Handle, Spec, Start};
use super::ledger::{Key, Order};
use super::{feed_option_setters, Error, FeedOptions, FeedProblem, Live, Recovery};
use crate::chat::models::Message;
use crate::realtime::{
    Broadcast, BroadcastPayload, Channel, ChannelConfig, PostgresChangeEvent, PostgresChangesFilter,
};
use chrono::{DateTime, Utc};
use futures::Stream;
use serde_json::{json, Value};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use uuid::Uuid;

/// The broadcast event a typing indicator starts with (payload `{senderId, senderName}`).
pub const TYPING_START: &str = "typing_start";
/// The broadcast event a typing indicator stops with (payload `{senderId}`).
pub const TYPING_STOP: &str = "typing_stop";

/// What a [`MessageFeed`] delivers.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum MessageEvent {
    /// A message (the hook's `onNewMessage`). Delivered exactly once; in `(created_at, id)`
    /// order unless `late` (see the [module documentation](crate::live) for the guarantee).
    New {
        /// The message.
        message: Box<Message>,
        /// The message was first seen after a later message had been delivered: it is
        /// delivered now, out of order, rather than never.
        late: bool,
    },
    /// A newer version of a message (`onMessageUpdate`): status changes, soft deletion…
    Updated(Box<Message>),
    /// Someone started typing (`onTypingStart`; broadcast `typing_start`).
    TypingStarted {
        /// `senderId`.
        sender_id: String,
        /// `senderName`.
        sender_name: String,
    },
    /// Someone stopped typing (`onTypingStop`; broadcast `typing_stop`).
    TypingStopped {
        /// `senderId`.
        sender_id: String,
    },
    /// The feed caught up through REST; every message it found was delivered before this.
    Recovered(Recovery),
    /// The channel is down (reconnecting or rejoining); a `Recovered` follows once it is back.
    Interrupted {
        /// Why.
        reason: String,
    },
    /// Something the feed could not do by itself; it keeps running.
    Problem(FeedProblem),
}

/// The position of the last message a feed delivered in order: give it to
/// [`MessageFeedBuilder::resume_after`] to continue a feed later (e.g. after a restart)
/// without gaps or duplicates. The same cursor as [`Messages::after`](crate::chat::messages::Messages::after) takes.
pub use crate::chat::messages::Cursor as MessageCursor;

pub(crate) struct MessagesSpec;

fn text(v: &Value, field: &str) -> Option<String> {
    match v.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl Spec for MessagesSpec {
    type Row = Message;
    type Event = MessageEvent;
    const ORDER: Order = Order::Created;
    const TABLE: &'static str = "mod_chat_messages";
    const SCOPE: &'static str = "conversation_id";
    const CHECK_DELETIONS: bool = false;

    fn preexisting_until(baseline: Key, lookback: std::time::Duration) -> DateTime<Utc> {
        feed::minus_lookback(baseline.0, lookback)
    }

    fn broadcast(&self, b: &Broadcast) -> Option<MessageEvent> {
        let payload = match &b.payload {
            BroadcastPayload::Json(v) => v.clone(),
            BroadcastPayload::Binary(bytes) => serde_json::from_slice(bytes).ok()?,
        };
        let start = b.event.eq_ignore_ascii_case(TYPING_START);
        let stop = b.event.eq_ignore_ascii_case(TYPING_STOP);
        if !start && !stop {
            return None;
        }
        let Some(sender_id) = text(&payload, "senderId") else {
            tracing::warn!(event = %b.event, %payload, "typing broadcast without senderId; ignored");
            return None;
        };
        Some(if start {
            MessageEvent::TypingStarted {
                sender_id,
                sender_name: text(&payload, "senderName").unwrap_or_default(),
            }
        } else {
            MessageEvent::TypingStopped { sender_id }
        })
    }

    fn new_event(row: Message, late: bool) -> MessageEvent {
        MessageEvent::New {
            message: Box::new(row),
            late,
        }
    }

    fn updated_event(row: Message) -> MessageEvent {
        MessageEvent::Updated(Box::new(row))
    }

    fn deleted_event(_id: Uuid, _old: Option<Message>) -> Option<MessageEvent> {
        // The hook does not subscribe to DELETE (messages are soft-deleted by an UPDATE).
        None
    }

    fn recovered_event(r: Recovery) -> MessageEvent {
        MessageEvent::Recovered(r)
    }

    fn interrupted_event(reason: String) -> MessageEvent {
        MessageEvent::Interrupted { reason }
    }

    fn problem_event(p: FeedProblem) -> MessageEvent {
        MessageEvent::Problem(p)
    }
}

/// The channel name of a conversation's message feed: `chat:<conversationId>`.
pub fn chat_channel_name(conversation_id: Uuid) -> String {
    format!("chat:{conversation_id}")
}

/// The channel configuration of `useChatRealtime`: `postgres_changes` INSERT and UPDATE on
/// `public.mod_chat_messages` filtered `conversation_id=eq.<id>`, default broadcast settings.
pub fn chat_channel_config(conversation_id: Uuid) -> ChannelConfig {
    let filter = format!("conversation_id=eq.{conversation_id}");
    ChannelConfig::new()
        .postgres_changes(
            PostgresChangesFilter::new(PostgresChangeEvent::Insert, "public")
                .table("mod_chat_messages")
                .filter(filter.clone()),
        )
        .postgres_changes(
            PostgresChangesFilter::new(PostgresChangeEvent::Update, "public")
                .table("mod_chat_messages")
                .filter(filter),
        )
}

/// Sends typing indicators on a conversation's channel (the hook's `sendTypingStart` /
/// `sendTypingStop`): broadcasts, never database writes. Cheap to clone; it keeps the channel
/// open while it lives.
#[derive(Clone, Debug)]
pub struct Typing {
    channel: Channel,
}

impl Typing {
    /// Broadcasts `typing_start` with `{senderId, senderName}`.
    pub async fn start(&self, sender_id: &str, sender_name: &str) -> Result<(), Error> {
        self.channel
            .send(
                TYPING_START,
                json!({"senderId": sender_id, "senderName": sender_name}),
            )
            .await?;
        Ok(())
    }

    /// Broadcasts `typing_stop` with `{senderId}`.
    pub async fn stop(&self, sender_id: &str) -> Result<(), Error> {
        self.channel
            .send(TYPING_STOP, json!({"senderId": sender_id}))
            .await?;
        Ok(())
    }
}

/// Options for a message feed ([`Live::messages`]).
#[derive(Debug)]
#[must_use = "a builder does nothing until subscribe() is called"]
pub struct MessageFeedBuilder {
    live: Live,
    conversation_id: Uuid,
    options: FeedOptions,
    resume: Option<MessageCursor>,
}

impl MessageFeedBuilder {
    pub(crate) fn new(live: Live, conversation_id: Uuid) -> Self {
        MessageFeedBuilder {
            live,
            conversation_id,
            options: FeedOptions::default(),
            resume: None,
        }
    }

    feed_option_setters!();

    /// Start after this message instead of after the newest one: every message after the
    /// cursor is delivered first (as with a snapshot), then live ones. Overrides
    /// [`snapshot`](Self::snapshot).
    pub fn resume_after(mut self, cursor: MessageCursor) -> Self {
        self.resume = Some(cursor);
        self
    }

    /// Reads the start point, joins `chat:<conversationId>`, waits until the channel is
    /// subscribed, and starts the feed (the first catch-up runs right away).
    ///
    /// Fails with [`Error::NotVisible`] before joining anything when the caller cannot read
    /// the conversation (row-level security: another agency's, another visitor's, or none);
    /// fails if the start point cannot be read or the channel cannot be joined (the realtime
    /// client's connect and join timeouts apply).
    pub async fn subscribe(self) -> Result<MessageFeed, Error> {
        self.live
            .ensure_conversation_visible(self.conversation_id)
            .await?;
        let start = match (self.resume, self.options.snapshot) {
            (Some(c), _) => Start::After((c.created_at, c.id)),
            (None, true) => Start::Beginning,
            (None, false) => Start::Now,
        };
        let handle = feed::open(
            &self.live,
            MessagesSpec,
            self.conversation_id,
            chat_channel_name(self.conversation_id),
            chat_channel_config(self.conversation_id),
            self.options,
            start,
        )
        .await?;
        Ok(MessageFeed {
            conversation_id: self.conversation_id,
            typing: Typing {
                channel: handle.channel.clone(),
            },
            handle,
        })
    }
}

/// A conversation's live messages and typing indicators: a `Stream` of [`MessageEvent`] that
/// lives until dropped. Dropping it stops the feed and leaves the channel (once no other feed
/// or [`Typing`] of the same conversation on the same [`Live`] holds it).
///
/// ```no_run
/// use futures::StreamExt;
/// use livechat::live::{Live, MessageEvent};
///
/// # async fn demo(live: Live, conversation: uuid::Uuid) -> Result<(), livechat::live::Error> {
/// let mut feed = live.messages(conversation).subscribe().await?;
/// let typing = feed.typing();
/// tokio::spawn(async move { typing.start("agent-7", "Alice").await });
/// while let Some(ev) = feed.next().await {
///     if let MessageEvent::New { message, .. } = ev {
///         println!("{}: {:?}", message.sender_type, message.content);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MessageFeed {
    conversation_id: Uuid,
    typing: Typing,
    handle: Handle<MessageEvent>,
}

impl MessageFeed {
    /// The conversation.
    pub fn conversation_id(&self) -> Uuid {
        self.conversation_id
    }

    /// Broadcasts `typing_start` `{senderId, senderName}` (the hook's `sendTypingStart`).
    pub async fn send_typing_start(&self, sender_id: &str, sender_name: &str) -> Result<(), Error> {
        self.typing.start(sender_id, sender_name).await
    }

    /// Broadcasts `typing_stop` `{senderId}` (the hook's `sendTypingStop`).
    pub async fn send_typing_stop(&self, sender_id: &str) -> Result<(), Error> {
        self.typing.stop(sender_id).await
    }

    /// A cloneable sender of typing indicators, usable while the stream is being read.
    pub fn typing(&self) -> Typing {
        self.typing.clone()
    }

    /// Asks for a catch-up now (e.g. after the application itself was suspended).
    pub fn resync(&self) {
        if let Err(mpsc::error::TrySendError::Closed(_)) =
            self.handle.commands.try_send(Command::Resync)
        {
            tracing::debug!("resync on a stopped feed");
        }
    }

    /// The position of the last message delivered in order, to resume from later.
    pub fn cursor(&self) -> Option<MessageCursor> {
        self.handle
            .cursor
            .borrow()
            .map(|(created_at, id)| MessageCursor { created_at, id })
    }

    /// The realtime channel (`chat:<conversationId>`).
    pub fn channel(&self) -> &Channel {
        &self.handle.channel
    }
}

impl Stream for MessageFeed {
    type Item = MessageEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<MessageEvent>> {
        self.handle.events.poll_recv(cx)
    }
}
