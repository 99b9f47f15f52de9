//! The conversation feed of a site (`useConversationsRealtime`).

use super::feed::{self, Command, Handle, Spec, Start};
use super::ledger::{Key, Order};
use super::{feed_option_setters, Error, FeedOptions, FeedProblem, Live, Recovery};
use crate::chat::models::Conversation;
use crate::realtime::{
    Broadcast, Channel, ChannelConfig, PostgresChangeEvent, PostgresChangesFilter,
};
use chrono::{DateTime, Utc};
use futures::Stream;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use uuid::Uuid;

/// What a [`ConversationFeed`] delivers.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ConversationEvent {
    /// A conversation the consumer did not have (`onNewConversation`): created after the feed
    /// started, or part of the snapshot.
    New(Box<Conversation>),
    /// A newer version of a conversation (`onConversationUpdate`).
    Updated(Box<Conversation>),
    /// A conversation was deleted (`onConversationDeleted`). `old` is the old row when the
    /// server sent all of it (Supabase sends only the id for tables with RLS) and `None` for a
    /// deletion found by a catch-up.
    Deleted {
        /// The conversation's id.
        id: Uuid,
        /// The deleted row, when known.
        old: Option<Box<Conversation>>,
    },
    /// The feed caught up through REST; what it found was delivered before this.
    Recovered(Recovery),
    /// The channel is down (reconnecting or rejoining); a `Recovered` follows once it is back.
    Interrupted {
        /// Why.
        reason: String,
    },
    /// Something the feed could not do by itself; it keeps running.
    Problem(FeedProblem),
}

pub(crate) struct ConversationsSpec;

impl Spec for ConversationsSpec {
    type Row = Conversation;
    type Event = ConversationEvent;
    const ORDER: Order = Order::Updated;
    const TABLE: &'static str = "mod_chat_conversations";
    const SCOPE: &'static str = "site_id";
    const CHECK_DELETIONS: bool = true;

    fn preexisting_until(baseline: Key, _lookback: std::time::Duration) -> DateTime<Utc> {
        // A conversation created before the newest change seen at the start existed before
        // the feed: its changes are updates.
        baseline.0
    }

    fn broadcast(&self, _b: &Broadcast) -> Option<ConversationEvent> {
        None
    }

    fn new_event(row: Conversation, _late: bool) -> ConversationEvent {
        ConversationEvent::New(Box::new(row))
    }

    fn updated_event(row: Conversation) -> ConversationEvent {
        ConversationEvent::Updated(Box::new(row))
    }

    fn deleted_event(id: Uuid, old: Option<Conversation>) -> Option<ConversationEvent> {
        Some(ConversationEvent::Deleted {
            id,
            old: old.map(Box::new),
        })
    }

    fn recovered_event(r: Recovery) -> ConversationEvent {
        ConversationEvent::Recovered(r)
    }

    fn interrupted_event(reason: String) -> ConversationEvent {
        ConversationEvent::Interrupted { reason }
    }

    fn problem_event(p: FeedProblem) -> ConversationEvent {
        ConversationEvent::Problem(p)
    }
}

/// The channel name of a site's conversation feed: `conversations:<siteId>`.
pub fn conversations_channel_name(site_id: Uuid) -> String {
    format!("conversations:{site_id}")
}

/// The channel configuration of `useConversationsRealtime`: `postgres_changes` INSERT, UPDATE
/// and DELETE on `public.mod_chat_conversations` filtered `site_id=eq.<siteId>`.
pub fn conversations_channel_config(site_id: Uuid) -> ChannelConfig {
    let filter = format!("site_id=eq.{site_id}");
    let f = |event| {
        PostgresChangesFilter::new(event, "public")
            .table("mod_chat_conversations")
            .filter(filter.clone())
    };
    ChannelConfig::new()
        .postgres_changes(f(PostgresChangeEvent::Insert))
        .postgres_changes(f(PostgresChangeEvent::Update))
        .postgres_changes(f(PostgresChangeEvent::Delete))
}

/// Options for a conversation feed ([`Live::conversations`]).
#[derive(Debug)]
#[must_use = "a builder does nothing until subscribe() is called"]
pub struct ConversationFeedBuilder {
    live: Live,
    site_id: Uuid,
    options: FeedOptions,
}

impl ConversationFeedBuilder {
    pub(crate) fn new(live: Live, site_id: Uuid) -> Self {
        ConversationFeedBuilder {
            live,
            site_id,
            options: FeedOptions::default(),
        }
    }

    feed_option_setters!();

    /// Reads the start point, joins `conversations:<siteId>`, waits until the channel is
    /// subscribed, and starts the feed.
    ///
    /// Fails with [`Error::NotVisible`] before joining anything when the caller cannot read
    /// the site (not a member of its agency).
    pub async fn subscribe(self) -> Result<ConversationFeed, Error> {
        self.live.ensure_site_visible(self.site_id).await?;
        let start = if self.options.snapshot {
            Start::Beginning
        } else {
            Start::Now
        };
        let handle = feed::open(
            &self.live,
            ConversationsSpec,
            self.site_id,
            conversations_channel_name(self.site_id),
            conversations_channel_config(self.site_id),
            self.options,
            start,
        )
        .await?;
        Ok(ConversationFeed {
            site_id: self.site_id,
            handle,
        })
    }
}

/// A site's live conversations: a `Stream` of [`ConversationEvent`] that lives until dropped
/// (dropping it leaves the channel).
///
/// ```no_run
/// use futures::StreamExt;
/// use livechat::live::{ConversationEvent, Live};
///
/// # async fn demo(live: Live, site: uuid::Uuid) -> Result<(), livechat::live::Error> {
/// let mut feed = live.conversations(site).snapshot(true).subscribe().await?;
/// while let Some(ev) = feed.next().await {
///     match ev {
///         ConversationEvent::New(c) | ConversationEvent::Updated(c) => println!("{} {}", c.id, c.status),
///         ConversationEvent::Deleted { id, .. } => println!("{id} deleted"),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ConversationFeed {
    site_id: Uuid,
    handle: Handle<ConversationEvent>,
}

impl ConversationFeed {
    /// The site.
    pub fn site_id(&self) -> Uuid {
        self.site_id
    }

    /// Asks for a catch-up now.
    pub fn resync(&self) {
        if let Err(mpsc::error::TrySendError::Closed(_)) =
            self.handle.commands.try_send(Command::Resync)
        {
            tracing::debug!("resync on a stopped feed");
        }
    }

    /// The realtime channel (`conversations:<siteId>`).
    pub fn channel(&self) -> &Channel {
        &self.handle.channel
    }
}

impl Stream for ConversationFeed {
    type Item = ConversationEvent;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<ConversationEvent>> {
        self.handle.events.poll_recv(cx)
    }
}
