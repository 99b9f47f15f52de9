//! The conversation actions of the dashboard: list and search, open one, create, assign,
//! transfer, resolve, close, reopen, set priority, tags and internal notes, mark read, and the
//! statistics.
//!
//! Every action that touches more than one row, or reads a counter and writes it back, is one
//! call of a SQL function of `supabase/migrations/*_chat_functions.sql` through PostgREST RPC,
//! so it runs as one transaction and keeps every agent's `current_chat_count` equal to its
//! pending, active and waiting conversations under any concurrency. Failures the database names
//! come back as errors that [`ChatError::of`](super::ChatError::of) reads (for instance
//! [`ChatError::AgentAtCapacity`](super::ChatError::AgentAtCapacity)); values refused by this
//! library itself fail with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) before
//! any request is sent.
//!
//! ```no_run
//! use livechat::chat::{Chat, ChatError};
//! use livechat::chat::models::ConversationStatus;
//!
//! # async fn demo(chat: Chat, site_id: uuid::Uuid, agent_id: uuid::Uuid) -> livechat::Result<()> {
//! let conversations = chat.conversations();
//! let page = conversations
//!     .list(site_id)
//!     .status(ConversationStatus::Pending)
//!     .search("order #12, (urgent)")
//!     .page(1)
//!     .page_size(20)
//!     .send()
//!     .await?;
//! for item in &page.items {
//!     match conversations.assign(item.conversation.id, agent_id).await {
//!         Ok(c) => println!("{} is now {}", c.id, c.status),
//!         Err(e) if ChatError::of(&e) == Some(ChatError::AgentAtCapacity) => break,
//!         Err(e) => return Err(e),
//!     }
//! }
//! # Ok(()) }
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::models::{Channel, Conversation, ConversationStatus, Priority};
use super::views::{
    check_page, ConversationDetail, ConversationListItem, ConversationStats, ListPage,
};
use super::Chat;
use crate::{Error, Result};

/// The most tags [`Conversations::set_tags`] accepts.
pub const MAX_TAGS: usize = 100;
/// The longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 100;
/// The largest text (internal notes, message content, search), in bytes.
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// The columns of the embedded rows [`Conversations::get`] returns.
const DETAIL_SELECT: &str = "*,visitor:mod_chat_visitors(*),agent:mod_chat_agents(*),\
                             department:mod_chat_departments(*)";

/// Which side read a conversation ([`Conversations::mark_read`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reader {
    /// The agents: `unread_agent_count` becomes 0 and the visitor's messages are marked read.
    Agent,
    /// The visitor: `unread_visitor_count` becomes 0 and the agent and AI messages (not the
    /// internal notes) are marked read.
    Visitor,
}

impl Reader {
    /// The role text the SQL function takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Reader::Agent => "agent",
            Reader::Visitor => "visitor",
        }
    }
}

/// A conversation to create ([`Conversations::create`]).
///
/// ```
/// use livechat::chat::conversations::NewConversation;
/// use livechat::chat::models::Channel;
/// let site = uuid::Uuid::nil();
/// let visitor = uuid::Uuid::nil();
/// let new = NewConversation::new(site, visitor).channel(Channel::Whatsapp).subject("Refund");
/// assert!(new.auto_assign);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConversation {
    /// The site.
    pub site_id: Uuid,
    /// The visitor (of the same site).
    pub visitor_id: Uuid,
    /// The channel (default widget).
    pub channel: Channel,
    /// The department (of the same site), if any.
    pub department_id: Option<Uuid>,
    /// The subject, if any.
    pub subject: Option<String>,
    /// Route it to the least-loaded online agent with free capacity right away (default true):
    /// in the department when it auto-assigns, to any agent of the site without a department.
    pub auto_assign: bool,
}

impl NewConversation {
    /// A widget conversation of `visitor_id` on `site_id`, assigned automatically.
    pub fn new(site_id: Uuid, visitor_id: Uuid) -> NewConversation {
        NewConversation {
            site_id,
            visitor_id,
            channel: Channel::Widget,
            department_id: None,
            subject: None,
            auto_assign: true,
        }
    }

    /// Sets the channel.
    pub fn channel(mut self, channel: Channel) -> Self {
        self.channel = channel;
        self
    }

    /// Sets the department.
    pub fn department(mut self, department_id: Uuid) -> Self {
        self.department_id = Some(department_id);
        self
    }

    /// Sets the subject.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Whether to assign it automatically.
    pub fn auto_assign(mut self, auto_assign: bool) -> Self {
        self.auto_assign = auto_assign;
        self
    }
}

/// The conversation actions; get it from [`Chat::conversations`].
///
/// With a user's access token every action sees only the sites of the user's agencies: another
/// agency's conversation is "not found" (`Ok(None)` from [`get`](Conversations::get), an error
/// with [`ChatError::ConversationNotFound`](super::ChatError::ConversationNotFound) from the
/// others), and lists and statistics of another agency's site are empty.
#[derive(Debug, Clone, Copy)]
pub struct Conversations<'a> {
    pub(crate) chat: &'a Chat,
}

#[derive(Serialize)]
struct IdArg {
    p_conversation_id: Uuid,
}

impl<'a> Conversations<'a> {
    /// Starts a list of a site's conversations (`getConversations`): filters, literal search,
    /// paging; newest message first (`last_message_at` descending, never-messaged last).
    ///
    /// ```no_run
    /// use livechat::chat::models::{Channel, Priority};
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid) -> livechat::Result<()> {
    /// let page = chat
    ///     .conversations()
    ///     .list(site)
    ///     .channel(Channel::Whatsapp)
    ///     .priority(Priority::Urgent)
    ///     .unassigned()
    ///     .page_size(50)
    ///     .send()
    ///     .await?;
    /// println!("{} of {}", page.items.len(), page.total);
    /// # Ok(()) }
    /// ```
    pub fn list(&self, site_id: Uuid) -> ListConversations<'a> {
        ListConversations {
            chat: self.chat,
            site_id,
            status: None,
            channel: None,
            assigned: None,
            department_id: None,
            priority: None,
            search: None,
            date_from: None,
            date_to: None,
            page: 1,
            page_size: 20,
        }
    }

    /// One conversation with its visitor, assigned agent and department (`getConversation`);
    /// `None` when it does not exist or is not visible to the caller.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// if let Some(detail) = chat.conversations().get(id).await? {
    ///     let visitor = detail.visitor.as_ref().and_then(|v| v.name.as_deref());
    ///     println!("{} with {:?}", detail.conversation.status, visitor);
    /// }
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn get(&self, id: Uuid) -> Result<Option<ConversationDetail>> {
        self.chat
            .client()
            .from("mod_chat_conversations")
            .select(DETAIL_SELECT)
            .eq("id", id)
            .maybe_single()
            .await
    }

    /// Creates a conversation as pending with normal priority and, unless
    /// [`auto_assign`](NewConversation::auto_assign) is false, assigns it to the least-loaded
    /// online, active agent with free capacity (`createConversation`). One transaction.
    ///
    /// Errors: [`ChatError::VisitorNotFound`](super::ChatError::VisitorNotFound),
    /// [`ChatError::DepartmentNotFound`](super::ChatError::DepartmentNotFound) (not of that
    /// site, or not visible).
    ///
    /// ```no_run
    /// use livechat::chat::conversations::NewConversation;
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid, visitor: uuid::Uuid) -> livechat::Result<()> {
    /// let conv = chat
    ///     .conversations()
    ///     .create(NewConversation::new(site, visitor).subject("Where is my parcel?"))
    ///     .await?;
    /// println!("{} assigned to {:?}", conv.id, conv.assigned_agent_id);
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(level = "debug", skip_all, fields(site_id = %new.site_id, visitor_id = %new.visitor_id), err(level = "debug"))]
    pub async fn create(&self, new: NewConversation) -> Result<Conversation> {
        if let Some(subject) = &new.subject {
            check_text_size("subject", subject)?;
        }
        #[derive(Serialize)]
        struct Args<'s> {
            p_site_id: Uuid,
            p_visitor_id: Uuid,
            p_channel: &'static str,
            p_department_id: Option<Uuid>,
            p_subject: Option<&'s str>,
            p_auto_assign: bool,
        }
        let args = Args {
            p_site_id: new.site_id,
            p_visitor_id: new.visitor_id,
            p_channel: new.channel.as_str(),
            p_department_id: new.department_id,
            p_subject: new.subject.as_deref(),
            p_auto_assign: new.auto_assign,
        };
        self.rpc("mod_chat_create_conversation", &args).await
    }

    /// Assigns an open (pending, active or waiting) conversation to an agent
    /// (`assignConversation`): pending becomes active with `wait_time_seconds`; the agent takes
    /// a slot and a previous agent frees one. Assigning the current agent changes nothing.
    ///
    /// Errors: [`ChatError::ConversationNotFound`](super::ChatError::ConversationNotFound),
    /// [`ChatError::AgentNotFound`](super::ChatError::AgentNotFound),
    /// [`ChatError::InvalidState`](super::ChatError::InvalidState),
    /// [`ChatError::AgentInactive`](super::ChatError::AgentInactive),
    /// [`ChatError::AgentAtCapacity`](super::ChatError::AgentAtCapacity).
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid, agent: uuid::Uuid) -> livechat::Result<()> {
    /// let conv = chat.conversations().assign(id, agent).await?;
    /// assert_eq!(conv.assigned_agent_id, Some(agent));
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn assign(&self, id: Uuid, agent_id: Uuid) -> Result<Conversation> {
        #[derive(Serialize)]
        struct Args {
            p_conversation_id: Uuid,
            p_agent_id: Uuid,
        }
        let args = Args {
            p_conversation_id: id,
            p_agent_id: agent_id,
        };
        self.rpc("mod_chat_assign_conversation", &args).await
    }

    /// Transfers an open conversation to another agent (`transferConversation`): the old agent
    /// frees a slot, the new one takes one, a system message `"Conversation transferred to
    /// <name>"` is added and, when given and not blank, `note` as an internal note.
    ///
    /// Errors: as [`assign`](Conversations::assign), plus
    /// [`ChatError::AlreadyAssigned`](super::ChatError::AlreadyAssigned) when `to_agent_id` is
    /// the current agent.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid, to: uuid::Uuid) -> livechat::Result<()> {
    /// chat.conversations().transfer(id, to, Some("VIP customer, asked for billing")).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(level = "debug", skip(self, note), err(level = "debug"))]
    pub async fn transfer(
        &self,
        id: Uuid,
        to_agent_id: Uuid,
        note: Option<&str>,
    ) -> Result<Conversation> {
        if let Some(n) = note {
            check_text_size("note", n)?;
        }
        #[derive(Serialize)]
        struct Args<'n> {
            p_conversation_id: Uuid,
            p_to_agent_id: Uuid,
            p_note: Option<&'n str>,
        }
        let args = Args {
            p_conversation_id: id,
            p_to_agent_id: to_agent_id,
            p_note: note,
        };
        self.rpc("mod_chat_transfer_conversation", &args).await
    }

    /// Resolves a conversation (`resolveConversation`): `resolved_at`,
    /// `resolution_time_seconds`, system message "Conversation resolved"; the agent frees its
    /// slot and `total_chats_handled` grows by one. An already resolved conversation is
    /// returned unchanged.
    ///
    /// Errors: [`ChatError::ConversationNotFound`](super::ChatError::ConversationNotFound),
    /// [`ChatError::InvalidState`](super::ChatError::InvalidState) when closed (reopen it
    /// first).
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// let conv = chat.conversations().resolve(id).await?;
    /// assert!(conv.resolved_at.is_some());
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn resolve(&self, id: Uuid) -> Result<Conversation> {
        self.rpc(
            "mod_chat_resolve_conversation",
            &IdArg {
                p_conversation_id: id,
            },
        )
        .await
    }

    /// Closes a conversation of any status (`closeConversation`): `closed_at`, `resolved_at` if
    /// empty; the agent frees its slot if the conversation held one. An already closed
    /// conversation is returned unchanged.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// chat.conversations().close(id).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn close(&self, id: Uuid) -> Result<Conversation> {
        self.rpc(
            "mod_chat_close_conversation",
            &IdArg {
                p_conversation_id: id,
            },
        )
        .await
    }

    /// Reopens a resolved or closed conversation (`reopenConversation`): active again with its
    /// agent, who takes the slot again, or pending and unassigned when its agent is gone;
    /// `resolved_at` and `closed_at` are cleared.
    ///
    /// Errors: [`ChatError::ConversationNotFound`](super::ChatError::ConversationNotFound),
    /// [`ChatError::InvalidState`](super::ChatError::InvalidState) (not resolved or closed),
    /// [`ChatError::AgentAtCapacity`](super::ChatError::AgentAtCapacity).
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// let conv = chat.conversations().reopen(id).await?;
    /// assert!(conv.closed_at.is_none());
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn reopen(&self, id: Uuid) -> Result<Conversation> {
        self.rpc(
            "mod_chat_reopen_conversation",
            &IdArg {
                p_conversation_id: id,
            },
        )
        .await
    }

    /// Sets the priority (`updateConversationPriority`).
    ///
    /// Errors: [`ChatError::ConversationNotFound`](super::ChatError::ConversationNotFound).
    ///
    /// ```no_run
    /// use livechat::chat::models::Priority;
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// chat.conversations().set_priority(id, Priority::Urgent).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn set_priority(&self, id: Uuid, priority: Priority) -> Result<Conversation> {
        #[derive(Serialize)]
        struct Change {
            priority: Priority,
        }
        self.update(id, &Change { priority }).await
    }

    /// Replaces the tags (`updateConversationTags`). At most [`MAX_TAGS`] tags of at most
    /// [`MAX_TAG_CHARS`] characters, none blank; an empty list clears them.
    ///
    /// Errors: [`ChatError::ConversationNotFound`](super::ChatError::ConversationNotFound);
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) before any request for
    /// refused tags.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// let conv = chat.conversations().set_tags(id, ["refund", "vip"]).await?;
    /// assert_eq!(conv.tags.as_deref(), Some(&["refund".to_string(), "vip".to_string()][..]));
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(level = "debug", skip(self, tags), err(level = "debug"))]
    pub async fn set_tags<I, S>(&self, id: Uuid, tags: I) -> Result<Conversation>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let tags: Vec<String> = tags.into_iter().map(Into::into).collect();
        check_tags(&tags)?;
        #[derive(Serialize)]
        struct Change {
            tags: Vec<String>,
        }
        self.update(id, &Change { tags }).await
    }

    /// Sets the internal notes (`updateInternalNotes`), at most [`MAX_TEXT_BYTES`] bytes.
    ///
    /// Errors: [`ChatError::ConversationNotFound`](super::ChatError::ConversationNotFound).
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// chat.conversations().set_internal_notes(id, "Called back on Monday").await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(level = "debug", skip(self, notes), err(level = "debug"))]
    pub async fn set_internal_notes(&self, id: Uuid, notes: &str) -> Result<Conversation> {
        check_text_size("internal notes", notes)?;
        #[derive(Serialize)]
        struct Change<'n> {
            internal_notes: &'n str,
        }
        self.update(
            id,
            &Change {
                internal_notes: notes,
            },
        )
        .await
    }

    /// Marks a conversation read by one side (`markConversationRead`): that side's unread
    /// counter becomes 0 and the other side's messages get status read. One transaction.
    ///
    /// Errors: [`ChatError::ConversationNotFound`](super::ChatError::ConversationNotFound).
    ///
    /// ```no_run
    /// use livechat::chat::conversations::Reader;
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// let conv = chat.conversations().mark_read(id, Reader::Agent).await?;
    /// assert_eq!(conv.unread_agent_count, Some(0));
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn mark_read(&self, id: Uuid, reader: Reader) -> Result<Conversation> {
        #[derive(Serialize)]
        struct Args {
            p_conversation_id: Uuid,
            p_role: &'static str,
        }
        let args = Args {
            p_conversation_id: id,
            p_role: reader.as_str(),
        };
        self.rpc("mod_chat_mark_conversation_read", &args).await
    }

    /// Starts the statistics of a site (`getConversationStats`), computed by one request.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid) -> livechat::Result<()> {
    /// let stats = chat.conversations().stats(site).time_zone("Africa/Lusaka").send().await?;
    /// println!("{} active, {} today", stats.active_conversations, stats.today_conversations);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self, site_id: Uuid) -> StatsRequest<'a> {
        StatsRequest {
            chat: self.chat,
            site_id,
            time_zone: None,
        }
    }

    async fn rpc<A: Serialize>(&self, function: &str, args: &A) -> Result<Conversation> {
        self.chat.client().rpc(function, args).call().await
    }

    /// PATCH of one conversation; no visible row is `ConversationNotFound`, like the functions.
    async fn update<B: Serialize>(&self, id: Uuid, change: &B) -> Result<Conversation> {
        self.chat
            .client()
            .from("mod_chat_conversations")
            .eq("id", id)
            .update(change)
            .maybe_single()
            .await?
            .ok_or_else(|| conversation_not_found(id))
    }
}

/// Whom a list is filtered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Assigned {
    Agent(Uuid),
    Nobody,
}

/// A list of conversations being built; see [`Conversations::list`]. Send it with
/// [`send`](ListConversations::send).
#[derive(Debug, Clone)]
#[must_use = "a list does nothing until it is sent"]
pub struct ListConversations<'a> {
    chat: &'a Chat,
    site_id: Uuid,
    status: Option<ConversationStatus>,
    channel: Option<Channel>,
    assigned: Option<Assigned>,
    department_id: Option<Uuid>,
    priority: Option<Priority>,
    search: Option<String>,
    date_from: Option<DateTime<Utc>>,
    date_to: Option<DateTime<Utc>>,
    page: u32,
    page_size: u32,
}

#[derive(Deserialize)]
struct ListRow {
    #[serde(flatten)]
    item: ConversationListItem,
    total_count: i64,
}

impl<'a> ListConversations<'a> {
    /// Only conversations with this status.
    pub fn status(mut self, status: ConversationStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only conversations of this channel.
    pub fn channel(mut self, channel: Channel) -> Self {
        self.channel = Some(channel);
        self
    }

    /// Only conversations assigned to this agent.
    pub fn assigned_to(mut self, agent_id: Uuid) -> Self {
        self.assigned = Some(Assigned::Agent(agent_id));
        self
    }

    /// Only conversations without an agent (the original's `assignedAgentId: "unassigned"`).
    pub fn unassigned(mut self) -> Self {
        self.assigned = Some(Assigned::Nobody);
        self
    }

    /// Only conversations of this department.
    pub fn department(mut self, department_id: Uuid) -> Self {
        self.department_id = Some(department_id);
        self
    }

    /// Only conversations with this priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Only conversations whose last message, visitor name or visitor e-mail contains `text`,
    /// ignoring case. The text matches literally, whatever it holds (`,` `(` `)` `.` `*` `%` `_`
    /// quotes, backslashes, unicode): it is passed to the SQL function as an argument, never
    /// into filter syntax. An empty text does not filter.
    pub fn search(mut self, text: impl Into<String>) -> Self {
        self.search = Some(text.into());
        self
    }

    /// Only conversations created at or after this instant.
    pub fn created_from(mut self, from: DateTime<Utc>) -> Self {
        self.date_from = Some(from);
        self
    }

    /// Only conversations created at or before this instant.
    pub fn created_to(mut self, to: DateTime<Utc>) -> Self {
        self.date_to = Some(to);
        self
    }

    /// The page, from 1 (default 1).
    pub fn page(mut self, page: u32) -> Self {
        self.page = page;
        self
    }

    /// Rows per page, 1 to [`MAX_PAGE_SIZE`](super::views::MAX_PAGE_SIZE) (default 20).
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size;
        self
    }

    /// Sends the list: one request (two when the page is past the last one, to report the
    /// total).
    ///
    /// Fails with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput), before any
    /// request, for page 0, a page size of 0 or above
    /// [`MAX_PAGE_SIZE`](super::views::MAX_PAGE_SIZE), a search text above
    /// [`MAX_TEXT_BYTES`], or `created_from` after `created_to`.
    #[tracing::instrument(level = "debug", skip_all, fields(site_id = %self.site_id, page = self.page), err(level = "debug"))]
    pub async fn send(self) -> Result<ListPage<ConversationListItem>> {
        let offset = check_page(self.page, self.page_size)?;
        if let Some(s) = &self.search {
            check_text_size("search text", s)?;
        }
        if let (Some(from), Some(to)) = (self.date_from, self.date_to) {
            if from > to {
                return Err(Error::invalid_input(format!(
                    "created_from ({from}) is after created_to ({to})"
                )));
            }
        }
        let offset = i32::try_from(offset)
            .map_err(|_| Error::invalid_input("the page is too far to reach"))?;

        #[derive(Serialize)]
        struct Args<'s> {
            p_site_id: Uuid,
            p_status: Option<&'static str>,
            p_channel: Option<&'static str>,
            p_assigned_agent_id: Option<String>,
            p_department_id: Option<Uuid>,
            p_priority: Option<&'static str>,
            p_search: Option<&'s str>,
            p_date_from: Option<DateTime<Utc>>,
            p_date_to: Option<DateTime<Utc>>,
            p_limit: u32,
            p_offset: i32,
        }
        let mut args = Args {
            p_site_id: self.site_id,
            p_status: self.status.as_ref().map(ConversationStatus::as_str),
            p_channel: self.channel.as_ref().map(Channel::as_str),
            p_assigned_agent_id: self.assigned.map(|a| match a {
                Assigned::Agent(id) => id.to_string(),
                Assigned::Nobody => "unassigned".to_string(),
            }),
            p_department_id: self.department_id,
            p_priority: self.priority.as_ref().map(Priority::as_str),
            p_search: self.search.as_deref().filter(|s| !s.is_empty()),
            p_date_from: self.date_from,
            p_date_to: self.date_to,
            p_limit: self.page_size,
            p_offset: offset,
        };
        let client = self.chat.client();
        let rows: Vec<ListRow> = client
            .rpc("mod_chat_list_conversations", &args)
            .call()
            .await?;
        let total = match rows.first() {
            Some(r) => r.total_count,
            None if offset > 0 => {
                // Past the last page: ask for the first row only to learn the total.
                args.p_limit = 1;
                args.p_offset = 0;
                let first: Vec<ListRow> = client
                    .rpc("mod_chat_list_conversations", &args)
                    .call()
                    .await?;
                first.first().map_or(0, |r| r.total_count)
            }
            None => 0,
        };
        let total = u64::try_from(total).unwrap_or(0);
        let items = rows.into_iter().map(|r| r.item).collect();
        Ok(ListPage::new(items, total, self.page, self.page_size))
    }
}

/// The statistics of a site being asked for; see [`Conversations::stats`].
#[derive(Debug, Clone)]
#[must_use = "the statistics are computed only when sent"]
pub struct StatsRequest<'a> {
    chat: &'a Chat,
    site_id: Uuid,
    time_zone: Option<String>,
}

impl<'a> StatsRequest<'a> {
    /// The IANA time zone whose calendar day is "today" (default `UTC`), e.g.
    /// `"Africa/Lusaka"`.
    pub fn time_zone(mut self, time_zone: impl Into<String>) -> Self {
        self.time_zone = Some(time_zone.into());
        self
    }

    /// Computes the statistics in one request (`mod_chat_conversation_stats`). Another
    /// agency's site gives zeros.
    ///
    /// Fails with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput), before any
    /// request, for a time zone that is not an IANA name.
    #[tracing::instrument(level = "debug", skip_all, fields(site_id = %self.site_id, time_zone = ?self.time_zone), err(level = "debug"))]
    pub async fn send(self) -> Result<ConversationStats> {
        let tz = self.time_zone.as_deref().unwrap_or("UTC");
        if tz.parse::<chrono_tz::Tz>().is_err() {
            return Err(Error::invalid_input(format!(
                "unknown time zone {tz:?}; use an IANA name such as Africa/Lusaka"
            )));
        }
        #[derive(Serialize)]
        struct Args<'t> {
            p_site_id: Uuid,
            p_time_zone: &'t str,
        }
        self.chat
            .client()
            .rpc(
                "mod_chat_conversation_stats",
                &Args {
                    p_site_id: self.site_id,
                    p_time_zone: tz,
                },
            )
            .call()
            .await
    }
}

/// The error the SQL functions raise for a missing or hidden conversation, for the actions that
/// update the row directly, so that [`ChatError::of`](super::ChatError::of) reads the same kind
/// from every conversation action.
pub(super) fn conversation_not_found(id: Uuid) -> Error {
    let body = serde_json::json!({
        "code": "PT404",
        "message": "conversation not found",
        "details": format!("No conversation {id} is visible to the current role."),
        "hint": "livechat:conversation_not_found",
    });
    Error::from_response(
        reqwest::StatusCode::NOT_FOUND,
        body.to_string().as_bytes(),
        None,
        false,
    )
}

/// Refuses a text above [`MAX_TEXT_BYTES`].
pub(super) fn check_text_size(what: &str, text: &str) -> Result<()> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(Error::invalid_input(format!(
            "{what} is {} bytes; at most {MAX_TEXT_BYTES} are accepted",
            text.len()
        )));
    }
    Ok(())
}

fn check_tags(tags: &[String]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid_input(format!(
            "{} tags; at most {MAX_TAGS} are accepted",
            tags.len()
        )));
    }
    for t in tags {
        if t.trim().is_empty() {
            return Err(Error::invalid_input("a tag is blank"));
        }
        if t.chars().count() > MAX_TAG_CHARS {
            return Err(Error::invalid_input(format!(
                "a tag is longer than {MAX_TAG_CHARS} characters"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn tags_are_checked() {
        assert!(check_tags(&["a".into(), "b c".into()]).is_ok());
        assert!(check_tags(&[" ".into()]).is_err());
        assert!(check_tags(&["x".repeat(101)]).is_err());
        assert!(check_tags(&vec!["t".to_string(); 101]).is_err());
    }

    #[test]
    fn the_not_found_error_reads_as_the_functions_one() {
        let e = conversation_not_found(Uuid::nil());
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(
            super::super::ChatError::of(&e),
            Some(super::super::ChatError::ConversationNotFound)
        );
    }
}
