//! Live feeds: the dashboard's three realtime hooks in Rust, with gap recovery.
//!
//! | original hook (TypeScript) | Rust |
//! |---|---|
//! | `useChatRealtime(conversationId, {onNewMessage, onMessageUpdate, onTypingStart, onTypingStop})` → `{sendTypingStart, sendTypingStop}` | [`Live::messages`] → [`MessageFeed`]: a `Stream` of [`MessageEvent`], [`MessageFeed::send_typing_start`] / [`send_typing_stop`](MessageFeed::send_typing_stop) |
//! | `useAgentPresence(siteId, agentId, initialStatus)` → `{onlineAgents, updateStatus}` | [`Live::agent_presence`] → [`AgentPresence`]: [`online_agents`](AgentPresence::online_agents), a `Stream` of [`PresenceChange`], [`update_status`](AgentPresence::update_status), [`leave`](AgentPresence::leave) |
//! | `useConversationsRealtime(siteId, {onNewConversation, onConversationUpdate, onConversationDeleted})` | [`Live::conversations`] → [`ConversationFeed`]: a `Stream` of [`ConversationEvent`] |
//!
//! The feeds join exactly the channels the hooks join (`chat:<conversationId>`,
//! `presence:chat:<siteId>`, `conversations:<siteId>`) with the same `postgres_changes`
//! filters, broadcast event names and payload fields, so a Rust service and the TypeScript
//! dashboard see each other's typing indicators and presence.
//!
//! # Access
//!
//! Before joining, every feed asks through REST, as the caller, whether it may see what it
//! follows (the conversation under row-level security; the site's agency membership through
//! `mod_chat_can_access_site`) and otherwise fails with [`Error::NotVisible`], having joined
//! nothing. The hooks' channels are public, so other clients that know an id can still join
//! them; [`Live::private_channels`] joins them as private channels, which the realtime server
//! authorizes (migration `20260101000800_realtime_authorization.sql`).
//!
//! # What the Rust feeds add: nothing is lost across reconnects
//!
//! The hooks deliver whatever the socket happens to receive: a dropped connection, a rejoin or
//! a slow consumer loses messages silently. The message and conversation feeds here catch up
//! through REST after **every** (re)subscription of their channel (and after the realtime client
//! reports that the feed fell behind, [`ChannelEvent::Lagged`](crate::realtime::ChannelEvent)),
//! then continue live; each catch-up is reported with a `Recovered` event saying how many items
//! it found.
//!
//! ## The delivery guarantee (message feed)
//!
//! Let the *start point* be the newest message when the feed was subscribed (or the beginning
//! of the conversation with [`MessageFeedBuilder::snapshot`], or a cursor given to
//! [`MessageFeedBuilder::resume_after`]). Messages are ordered by the key
//! `(created_at, id)`; `created_at` is the inserting transaction's start time (`now()`).
//!
//! 1. **Exactly once.** Every message after the start point that the feed's role may read is
//!    delivered as [`MessageEvent::New`] exactly once, whether it arrived live, through a
//!    catch-up query, or both. The ids delivered are remembered for the feed's lifetime, so a
//!    duplicate is impossible.
//! 2. **In order.** `New` events come in strictly increasing key order, except those flagged
//!    `late: true`. Live rows are held for the *reorder window* (default 250 ms) after the feed
//!    first sees them and released in key order, and releasing pauses while a catch-up query
//!    runs. A message is `late` only when the feed first sees it after a message with a greater
//!    key was already released — in practice when its transaction committed more than the
//!    reorder window after a transaction that started after it. A late message is delivered
//!    at once instead of being dropped.
//! 3. **No loss.** After a gap, the catch-up query asks for every message of the conversation
//!    updated after `W − lookback`, where `W` is the key of the last message delivered before
//!    the gap and *lookback* defaults to 30 s. A message can therefore be missed only if it was
//!    not received live **and** its transaction committed more than `lookback` after it started
//!    (its `created_at` falls below the window). Both `created_at` and `updated_at` must be set
//!    by the database (the schema's defaults and `updated_at` trigger do so).
//! 4. **Updates.** Changes to a delivered message, or to a message older than the feed, are
//!    delivered as [`MessageEvent::Updated`] when their `updated_at` (or, within one
//!    transaction, their content) is newer than what the consumer has; updates of a message
//!    still held in the reorder window follow its `New` at once. After a gap, the catch-up
//!    delivers the latest
//!    version of every message changed since `W − lookback`: intermediate versions during a gap
//!    collapse into one `Updated`.
//!
//! The conversation feed gives the same guarantee with the key `(updated_at, id)` over
//! *versions* of conversations: each version at most once, versions of one conversation in
//! increasing order, a conversation first seen after the start point delivered as
//! [`ConversationEvent::New`] once. Deletions during a gap are found by checking the ids the
//! consumer has (a conversation deleted while away is reported as
//! [`ConversationEvent::Deleted`] with no old row). Conversations are not flagged `late`.
//!
//! Presence needs no catch-up: after a rejoin the server sends the full presence state, and
//! [`AgentPresence`] reports the difference as joins, leaves and updates, then
//! [`PresenceChange::Recovered`].
//!
//! A consumer that does not keep up slows the feed down (the event queue is bounded); the
//! realtime subscription then falls behind, reports `Lagged`, and the feed catches up through
//! REST, so a slow consumer loses nothing either.
//!
//! # Example
//!
//! ```no_run
//! use futures::StreamExt;
//! use livechat::live::{Live, MessageEvent};
//! use livechat::{Client, Config};
//!
//! # async fn demo(user_jwt: String) -> Result<(), livechat::live::Error> {
//! let client = Client::new(Config::from_env()?)?.with_access_token(user_jwt);
//! let live = Live::new(&client)?;
//! let conversation = "20000000-0000-4000-8000-000000000102".parse().expect("uuid");
//! let mut feed = live.messages(conversation).snapshot(true).subscribe().await?;
//! feed.send_typing_start("agent-7", "Alice").await?;
//! while let Some(event) = feed.next().await {
//!     match event {
//!         MessageEvent::New { message, late } => println!("{:?} (late: {late})", message.content),
//!         MessageEvent::Updated(message) => println!("edited {}", message.id),
//!         MessageEvent::TypingStarted { sender_name, .. } => println!("{sender_name} is typing"),
//!         MessageEvent::Recovered(r) => println!("caught up {} messages", r.caught_up),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod conversations;
mod feed;
mod ledger;
mod messages;
mod presence;

pub use conversations::{
    conversations_channel_config, conversations_channel_name, ConversationEvent, ConversationFeed,
    ConversationFeedBuilder,
};
pub use messages::{
    chat_channel_config, chat_channel_name, MessageCursor, MessageEvent, MessageFeed,
    MessageFeedBuilder, Typing, TYPING_START, TYPING_STOP,
};
pub use presence::{
    presence_channel_name, AgentPresence, AgentPresenceBuilder, OnlineAgent, PresenceChange,
    PresenceThrottle,
};

use crate::chat::models::AgentStatus;
use crate::realtime::{Backoff, RealtimeClient};
use crate::Client;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The error of a live feed operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A REST request (baseline or catch-up query) failed.
    #[error(transparent)]
    Rest(#[from] crate::Error),
    /// The realtime side failed (building the client, joining, sending).
    #[error(transparent)]
    Realtime(#[from] crate::realtime::Error),
    /// The feed has stopped (it was closed, or its task ended).
    #[error("the live feed has stopped")]
    Closed,
    /// The caller cannot see what the feed would follow (the conversation or site does not
    /// exist, or belongs to another tenant): asked through REST as the caller (row-level
    /// security for a conversation, `mod_chat_can_access_site` for a site) before any
    /// channel is joined, so nothing was subscribed.
    #[error("{0} is not visible to this caller: nothing was subscribed")]
    NotVisible(String),
}

/// A handle that opens live feeds: a REST [`Client`] (for catch-up queries, with its API key
/// and user token) and a [`RealtimeClient`] (one WebSocket shared by every feed opened from
/// this handle). Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> Result<(), livechat::live::Error> {
/// use livechat::live::Live;
/// let client = livechat::Client::from_env()?;
/// let live = Live::new(&client)?;
/// # let _ = live;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Live {
    rest: Client,
    realtime: RealtimeClient,
    private: bool,
    check_access: bool,
}

impl Live {
    /// Builds the realtime client from the REST client ([`Client::realtime`]: same URL, API
    /// key and access token). Must be called inside a Tokio runtime.
    pub fn new(client: &Client) -> Result<Live, Error> {
        Ok(Live::with_realtime(client, client.realtime()?))
    }

    /// Uses a realtime client you built (for example from [`Client::realtime_options`] with
    /// other timeouts or backoff).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), livechat::live::Error> {
    /// use livechat::live::Live;
    /// use livechat::realtime::Backoff;
    /// use std::time::Duration;
    ///
    /// let client = livechat::Client::from_env()?;
    /// let realtime = client
    ///     .realtime_options()
    ///     .reconnect_backoff(Backoff::new(Duration::from_millis(200), Duration::from_secs(5)))
    ///     .build()?;
    /// let live = Live::with_realtime(&client, realtime);
    /// # let _ = live;
    /// # Ok(()) }
    /// ```
    pub fn with_realtime(client: &Client, realtime: RealtimeClient) -> Live {
        Live {
            rest: client.clone(),
            realtime,
            private: false,
            check_access: true,
        }
    }

    /// Joins the feeds' channels (`chat:<id>`, `conversations:<siteId>`,
    /// `presence:chat:<siteId>`) as **private** channels, authorized by the realtime server
    /// through row-level security on `realtime.messages` (migration
    /// `20260101000800_realtime_authorization.sql`: members of the site's agency, and a
    /// visitor token for its own conversation's typing). Default: off, i.e. the public
    /// channels of the deployed dashboard hooks.
    ///
    /// Public and private channels of the same name are separate rooms: turn this on only
    /// when the TypeScript dashboard joins with `{ config: { private: true } }` too, or the
    /// two sides stop seeing each other's typing and presence. On public channels anyone who
    /// knows a conversation or site id can join its typing and presence; the feeds of this
    /// library never do so for what the caller cannot see (see [`Error::NotVisible`]), but
    /// only private channels stop other clients.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), livechat::live::Error> {
    /// let client = livechat::Client::from_env()?;
    /// let live = livechat::live::Live::new(&client)?.private_channels(true);
    /// # let _ = live;
    /// # Ok(()) }
    /// ```
    pub fn private_channels(mut self, on: bool) -> Live {
        self.private = on;
        self
    }

    /// Whether the feeds join private channels ([`private_channels`](Self::private_channels)).
    pub fn uses_private_channels(&self) -> bool {
        self.private
    }

    /// Whether each feed first checks, with one REST read as the caller, that the caller can
    /// see its conversation or site (default: on). Off, feeds join their channels without
    /// asking; only for realtime servers that come without the project's REST API, such as
    /// an in-process fake server in tests.
    pub fn check_access(mut self, on: bool) -> Live {
        self.check_access = on;
        self
    }

    /// Fails with [`Error::NotVisible`] unless the caller can read the conversation (one REST
    /// read of its id, under row-level security).
    pub(crate) async fn ensure_conversation_visible(&self, id: Uuid) -> Result<(), Error> {
        if !self.check_access {
            return Ok(());
        }
        let rows: Vec<serde::de::IgnoredAny> = self
            .rest
            .from("mod_chat_conversations")
            .select("id")
            .eq("id", id)
            .limit(1)
            .fetch()
            .await?;
        if rows.is_empty() {
            return Err(Error::NotVisible(format!("conversation {id}")));
        }
        Ok(())
    }

    /// Fails with [`Error::NotVisible`] unless the caller may follow the site: a member of its
    /// agency, or the service role (`mod_chat_can_access_site`, migration
    /// `20260101000800_realtime_authorization.sql`; the same rule the realtime server applies
    /// to the site's private channels).
    pub(crate) async fn ensure_site_visible(&self, id: Uuid) -> Result<(), Error> {
        if !self.check_access {
            return Ok(());
        }
        let answer: crate::Result<bool> = self
            .rest
            .rpc(
                "mod_chat_can_access_site",
                &serde_json::json!({ "p_site_id": id }),
            )
            .call()
            .await;
        let ok = match answer {
            Ok(ok) => ok,
            // anon may not even ask (42501): it follows no site.
            Err(e) if e.code() == Some("42501") => false,
            Err(e) => return Err(e.into()),
        };
        if !ok {
            return Err(Error::NotVisible(format!("site {id}")));
        }
        Ok(())
    }

    /// The REST client used for catch-up queries.
    pub fn client(&self) -> &Client {
        &self.rest
    }

    /// The realtime client the feeds' channels live on.
    pub fn realtime(&self) -> &RealtimeClient {
        &self.realtime
    }

    /// The message feed of a conversation (`useChatRealtime`). Finish with
    /// [`MessageFeedBuilder::subscribe`].
    pub fn messages(&self, conversation_id: Uuid) -> MessageFeedBuilder {
        MessageFeedBuilder::new(self.clone(), conversation_id)
    }

    /// The conversation feed of a site (`useConversationsRealtime`). Finish with
    /// [`ConversationFeedBuilder::subscribe`].
    pub fn conversations(&self, site_id: Uuid) -> ConversationFeedBuilder {
        ConversationFeedBuilder::new(self.clone(), site_id)
    }

    /// Joins the site's agent presence as `agent_id` with `status` (`useAgentPresence`).
    /// Finish with [`AgentPresenceBuilder::join`].
    ///
    /// One realtime client can hold one presence per site (the presence key is part of the
    /// channel's configuration); use another [`Live`] (another realtime client) to act as
    /// several agents of the same site in one process.
    pub fn agent_presence(
        &self,
        site_id: Uuid,
        agent_id: impl Into<String>,
        status: AgentStatus,
    ) -> AgentPresenceBuilder {
        AgentPresenceBuilder::new(self.clone(), site_id, agent_id.into(), status)
    }
}

/// Why a feed caught up through REST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryReason {
    /// The first catch-up after subscribing: the snapshot, or what happened between the
    /// baseline query and the subscription.
    Initial,
    /// The channel was subscribed again after a reconnect or rejoin.
    Resubscribed,
    /// The realtime subscription fell behind and dropped events.
    Lagged,
    /// [`resync`](MessageFeed::resync) was called.
    Requested,
    /// The periodic resync of [`MessageFeedBuilder::resync_every`].
    Periodic,
}

/// A completed catch-up.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Why it ran.
    pub reason: RecoveryReason,
    /// Items the catch-up found that the feed had not received live (delivered as new, before
    /// this event).
    pub caught_up: usize,
    /// Newer versions of items the consumer already had (delivered as updates).
    pub updated: usize,
    /// Items found deleted (conversation feed only).
    pub deleted: usize,
    /// How many attempts the catch-up took (failed ones are reported as
    /// [`FeedProblem::RecoveryFailed`]).
    pub attempts: u32,
}

/// Something a feed could not do by itself; the feed keeps running.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum FeedProblem {
    /// A catch-up query failed; it is retried after `retry_in`.
    RecoveryFailed {
        /// The REST error.
        error: Arc<crate::Error>,
        /// The number of consecutive failures.
        attempt: u32,
        /// When the next attempt starts.
        retry_in: Duration,
    },
    /// A change or broadcast could not be parsed into its typed form; it was skipped (a
    /// catch-up will fetch the row again if it is a row).
    Malformed {
        /// What was wrong.
        detail: String,
    },
    /// The realtime server refused the channel or its `postgres_changes` for good (e.g. not
    /// authorized, table not published): no more live changes until the feed is opened again.
    ChannelFailed {
        /// The server's reason.
        reason: String,
    },
}

/// Tuning shared by the message and conversation feeds.
#[derive(Clone, Debug)]
pub(crate) struct FeedOptions {
    pub(crate) snapshot: bool,
    pub(crate) reorder_window: Duration,
    pub(crate) lookback: Duration,
    pub(crate) page_size: u64,
    pub(crate) resync_every: Option<Duration>,
    pub(crate) buffer: usize,
    pub(crate) retry: Backoff,
}

/// Default reorder window (see the module documentation).
pub const DEFAULT_REORDER_WINDOW: Duration = Duration::from_millis(250);
/// Default catch-up lookback (see the module documentation).
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(30);

impl Default for FeedOptions {
    fn default() -> Self {
        FeedOptions {
            snapshot: false,
            reorder_window: DEFAULT_REORDER_WINDOW,
            lookback: DEFAULT_LOOKBACK,
            page_size: 500,
            resync_every: None,
            buffer: 256,
            retry: Backoff::new(Duration::from_millis(500), Duration::from_secs(10)),
        }
    }
}

/// The tuning setters every feed builder has.
macro_rules! feed_option_setters {
    () => {
        /// Deliver what exists first: every current row (oldest first for messages, by
        /// `updated_at` for conversations), then a [`Recovered`](crate::live::Recovery) event
        /// with reason [`Initial`](crate::live::RecoveryReason::Initial), then live changes,
        /// with no gap or duplicate between them. Default: off (only what happens after
        /// subscribing, as the original hook).
        pub fn snapshot(mut self, on: bool) -> Self {
            self.options.snapshot = on;
            self
        }

        /// How long a live row is held so that rows of transactions that committed slightly
        /// out of order are still delivered in key order (default 250 ms; zero delivers at
        /// once, and any reordering then shows as `late` messages).
        pub fn reorder_window(mut self, window: std::time::Duration) -> Self {
            self.options.reorder_window = window;
            self
        }

        /// How far before the last delivered key a catch-up query starts (default 30 s): the
        /// longest time a transaction may take between its start and its commit without
        /// risking a loss when the feed was disconnected at that moment.
        pub fn lookback(mut self, lookback: std::time::Duration) -> Self {
            self.options.lookback = lookback;
            self
        }

        /// Rows per catch-up request (default 500).
        pub fn page_size(mut self, rows: u64) -> Self {
            self.options.page_size = rows.max(1);
            self
        }

        /// Also catch up every `period`, connected or not (a safety net against changes the
        /// realtime server skips without telling, e.g. over its rate limit). Default: never.
        pub fn resync_every(mut self, period: std::time::Duration) -> Self {
            self.options.resync_every = Some(period.max(std::time::Duration::from_millis(100)));
            self
        }

        /// How many events the feed queues for a consumer before it slows down (default 256).
        pub fn buffer(mut self, events: usize) -> Self {
            self.options.buffer = events.max(1);
            self
        }

        /// The delays between attempts of a failing catch-up query (default 0.5 s doubling to
        /// 10 s, with jitter).
        pub fn retry_backoff(mut self, backoff: crate::realtime::Backoff) -> Self {
            self.options.retry = backoff;
            self
        }
    };
}
pub(crate) use feed_option_setters;
