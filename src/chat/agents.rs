//! Agents: the people (or bots) who answer conversations on a site.
//!
//! | original action | here |
//! |---|---|
//! | `getAgents(siteId)` | [`Agents::list`] |
//! | `getAgent(id)` | [`Agents::get`] |
//! | `createAgent({…})` | [`Agents::create`] |
//! | `updateAgent(id, partial)` | [`Agents::update`] with an [`AgentPatch`] |
//! | `updateAgentStatus(id, status)` | [`Agents::set_status`] |
//! | `deleteAgent(id)` | [`Agents::delete`] (one transaction: `mod_chat_delete_agent`) |
//! | `getAgentPerformance(siteId, from?, to?)` | [`Agents::performance`] (one request) |
//! | `getOnlineAgents(siteId)` | [`Agents::online`] |
//! | `getAvailableAgent(siteId, departmentId?)` | [`Agents::available`] |
//!
//! ```no_run
//! # async fn demo(chat: livechat::chat::Chat) -> livechat::Result<()> {
//! use livechat::chat::agents::AgentPatch;
//! use livechat::chat::models::{AgentRole, AgentStatus};
//! use uuid::Uuid;
//!
//! let site = Uuid::parse_str("b0000000-0000-4000-8000-000000000001").expect("a uuid");
//! let user = Uuid::new_v4();
//! let agent = chat
//!     .agents()
//!     .create(site, user, "Grace Mumba")
//!     .email("grace@acme.test")
//!     .role(AgentRole::Supervisor)
//!     .max_concurrent_chats(4)
//!     .await?;
//! chat.agents().set_status(agent.id, AgentStatus::Online).await?;
//! chat.agents()
//!     .update(agent.id, AgentPatch::default().display_name("Grace M."))
//!     .await?;
//! if let Some(free) = chat.agents().available(site).await? {
//!     println!("next conversation goes to {}", free.display_name);
//! }
//! # Ok(()) }
//! ```

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::entity_views::{
    at_least, into_future, non_blank, non_blank_opt, not_empty_patch, patch_setters, update_by_id,
    AgentPerformance, AgentWithDepartment,
};
use super::models::{Agent, AgentRole, AgentStatus};
use super::Chat;
use crate::rest::Is;
use crate::{Error, ErrorKind, Result};

const TABLE: &str = "mod_chat_agents";
/// The agent's columns and its department as `department` (many-to-one through
/// `department_id`).
const WITH_DEPARTMENT: &str = "*,department:mod_chat_departments(*)";

/// The agents actions; get it from [`Chat::agents`].
#[derive(Debug, Clone, Copy)]
pub struct Agents<'a> {
    pub(crate) chat: &'a Chat,
}

/// The columns [`Agents::update`] may change; unset fields are left alone.
///
/// ```
/// use livechat::chat::agents::AgentPatch;
/// use livechat::chat::models::AgentRole;
///
/// let patch = AgentPatch::default().role(AgentRole::Admin).max_concurrent_chats(8).clear_email();
/// assert_eq!(
///     serde_json::to_value(&patch).unwrap(),
///     serde_json::json!({"email": null, "role": "admin", "max_concurrent_chats": 8})
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AgentPatch {
    /// `display_name` (not blank; stored trimmed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `email`; `Some(None)` clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<Option<String>>,
    /// `role`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<AgentRole>,
    /// `department_id`; `Some(None)` removes the agent from its department.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department_id: Option<Option<Uuid>>,
    /// `max_concurrent_chats` (at least 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_chats: Option<i32>,
    /// `is_active` (false deactivates without touching the agent's conversations; use
    /// [`Agents::delete`] to release them too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
}

patch_setters!(AgentPatch {
    display_name: String,
    role: AgentRole,
    max_concurrent_chats: i32,
    is_active: bool,
} nullable {
    email, clear_email: String,
    department_id, clear_department_id: Uuid,
});

impl AgentPatch {
    fn validate(&self) -> Result<()> {
        not_empty_patch("agent patch", self)?;
        non_blank_opt("display_name", self.display_name.as_deref())?;
        at_least("max_concurrent_chats", self.max_concurrent_chats, 1)
    }
}

impl<'a> Agents<'a> {
    /// The site's agents (active and deactivated), each with its department, ordered by
    /// `display_name` (then id).
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid) -> livechat::Result<()> {
    /// for a in chat.agents().list(site).await? {
    ///     println!("{} {:?}", a.agent.display_name, a.department.map(|d| d.name));
    /// }
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "agents.list", level = "debug", skip(self))]
    pub async fn list(self, site_id: Uuid) -> Result<Vec<AgentWithDepartment>> {
        self.chat
            .client()
            .from(TABLE)
            .select(WITH_DEPARTMENT)
            .eq("site_id", site_id)
            .order_asc("display_name")
            .order_asc("id")
            .fetch()
            .await
    }

    /// One agent with its department; `None` when it does not exist or is not visible.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// if let Some(a) = chat.agents().get(id).await? {
    ///     println!("{} is {}", a.agent.display_name, a.agent.status);
    /// }
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "agents.get", level = "debug", skip(self))]
    pub async fn get(self, id: Uuid) -> Result<Option<AgentWithDepartment>> {
        self.chat
            .client()
            .from(TABLE)
            .select(WITH_DEPARTMENT)
            .eq("id", id)
            .maybe_single()
            .await
    }

    /// Starts creating an agent for `user_id` on `site_id`; set the optional columns on the
    /// returned builder, then `.await` it (or call [`CreateAgent::send`]).
    ///
    /// A site has at most one agent per user: when one exists already (even a deactivated
    /// one), the result is an [`ErrorKind::Conflict`] error saying so. A blank display name or
    /// a capacity below 1 is refused before any request ([`ErrorKind::InvalidInput`]); the
    /// display name is stored trimmed. A department of another site is refused like a missing
    /// one ([`ErrorKind::Conflict`], 23503; migration `20260101000900_same_site_references.sql`).
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid, user: uuid::Uuid) -> livechat::Result<()> {
    /// match chat.agents().create(site, user, "Grace").await {
    ///     Ok(agent) => println!("created {}", agent.id),
    ///     Err(e) if e.is_conflict() => println!("already an agent: {e}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn create(
        &self,
        site_id: Uuid,
        user_id: Uuid,
        display_name: impl Into<String>,
    ) -> CreateAgent<'a> {
        CreateAgent {
            chat: self.chat,
            row: NewAgentRow {
                site_id,
                user_id,
                display_name: display_name.into(),
                email: None,
                avatar_url: None,
                role: None,
                department_id: None,
                max_concurrent_chats: None,
            },
        }
    }

    /// Changes the columns set in `patch` and returns the updated agent.
    ///
    /// An agent that does not exist or is not visible is [`ErrorKind::NotFound`]; an empty
    /// patch, a blank display name or a capacity below 1 is refused before any request.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// use livechat::chat::agents::AgentPatch;
    /// let agent = chat.agents().update(id, AgentPatch::default().max_concurrent_chats(10)).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "agents.update", level = "debug", skip(self))]
    pub async fn update(self, id: Uuid, mut patch: AgentPatch) -> Result<Agent> {
        patch.validate()?;
        if let Some(name) = &mut patch.display_name {
            *name = name.trim().to_string();
        }
        update_by_id(self.chat.client(), TABLE, id, &patch).await
    }

    /// Sets the agent's status, and `last_active_at` to now (this machine's clock).
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// use livechat::chat::models::AgentStatus;
    /// chat.agents().set_status(id, AgentStatus::Away).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "agents.set_status", level = "debug", skip(self))]
    pub async fn set_status(self, id: Uuid, status: AgentStatus) -> Result<Agent> {
        #[derive(Serialize)]
        struct Change {
            status: AgentStatus,
            last_active_at: DateTime<Utc>,
        }
        let change = Change {
            status,
            last_active_at: Utc::now(),
        };
        update_by_id(self.chat.client(), TABLE, id, &change).await
    }

    /// Soft-deletes an agent in one transaction (`mod_chat_delete_agent`): `is_active` false,
    /// status offline, no load; its pending, active and waiting conversations become pending
    /// and unassigned. Returns the agent as it is afterwards.
    ///
    /// An agent that does not exist or is not visible is [`ErrorKind::NotFound`]
    /// ([`ChatError::AgentNotFound`](super::ChatError::AgentNotFound)).
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// let gone = chat.agents().delete(id).await?;
    /// assert_eq!(gone.is_active, Some(false));
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "agents.delete", level = "debug", skip(self))]
    pub async fn delete(self, id: Uuid) -> Result<Agent> {
        self.chat
            .client()
            .rpc("mod_chat_delete_agent", &json!({ "p_agent_id": id }))
            .call()
            .await
    }

    /// Starts a performance report of the site's active agents: conversations assigned to each
    /// and created in the range (both bounds inclusive, each optional), resolved ones, average
    /// first response, average rating and rating count, current and maximum load. One request
    /// (`mod_chat_agent_performance`), whatever the number of agents.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid) -> livechat::Result<()> {
    /// use chrono::{Duration, Utc};
    /// let week = chat
    ///     .agents()
    ///     .performance(site)
    ///     .from(Utc::now() - Duration::days(7))
    ///     .to(Utc::now())
    ///     .await?;
    /// for p in week {
    ///     println!("{}: {}/{} resolved", p.display_name, p.resolved_chats, p.total_chats);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn performance(&self, site_id: Uuid) -> AgentPerformanceRequest<'a> {
        AgentPerformanceRequest {
            chat: self.chat,
            site_id,
            from: None,
            to: None,
        }
    }

    /// The site's active agents whose status is online, away or busy, ordered by display name.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid) -> livechat::Result<()> {
    /// let online = chat.agents().online(site).await?;
    /// println!("{} agents around", online.len());
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "agents.online", level = "debug", skip(self))]
    pub async fn online(self, site_id: Uuid) -> Result<Vec<Agent>> {
        self.chat
            .client()
            .from(TABLE)
            .eq("site_id", site_id)
            .in_(
                "status",
                [AgentStatus::Online, AgentStatus::Away, AgentStatus::Busy],
            )
            .is("is_active", Is::True)
            .order_asc("display_name")
            .order_asc("id")
            .fetch()
            .await
    }

    /// Starts looking for the agent who should take the next conversation: online, active,
    /// below capacity, least loaded first (ties: lowest id), optionally in one department
    /// ([`AvailableAgentRequest::department`]). `None` when nobody is free.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid, sales: uuid::Uuid) -> livechat::Result<()> {
    /// let anyone = chat.agents().available(site).await?;
    /// let in_sales = chat.agents().available(site).department(sales).await?;
    /// # Ok(()) }
    /// ```
    pub fn available(&self, site_id: Uuid) -> AvailableAgentRequest<'a> {
        AvailableAgentRequest {
            chat: self.chat,
            site_id,
            department_id: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct NewAgentRow {
    site_id: Uuid,
    user_id: Uuid,
    display_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<AgentRole>,
    #[serde(skip_serializing_if = "Option::is_none")]
    department_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrent_chats: Option<i32>,
}

/// A new agent being built by [`Agents::create`]; `.await` it or call [`CreateAgent::send`].
///
/// Columns left unset take the table defaults (role `agent`, status `offline`, capacity 5, no
/// department).
#[derive(Debug, Clone)]
#[must_use = "nothing is created until the builder is awaited"]
pub struct CreateAgent<'a> {
    chat: &'a Chat,
    row: NewAgentRow,
}

impl<'a> CreateAgent<'a> {
    /// The agent's e-mail.
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.row.email = Some(email.into());
        self
    }

    /// The agent's avatar URL.
    pub fn avatar_url(mut self, url: impl Into<String>) -> Self {
        self.row.avatar_url = Some(url.into());
        self
    }

    /// The agent's role (default `agent`).
    pub fn role(mut self, role: AgentRole) -> Self {
        self.row.role = Some(role);
        self
    }

    /// The agent's department.
    pub fn department(mut self, department_id: Uuid) -> Self {
        self.row.department_id = Some(department_id);
        self
    }

    /// How many open conversations the agent may hold (default 5; at least 1).
    pub fn max_concurrent_chats(mut self, n: i32) -> Self {
        self.row.max_concurrent_chats = Some(n);
        self
    }

    /// Validates, then inserts the agent and returns its row.
    #[tracing::instrument(name = "agents.create", level = "debug", skip(self), fields(site_id = %self.row.site_id, user_id = %self.row.user_id))]
    pub async fn send(self) -> Result<Agent> {
        non_blank("display_name", &self.row.display_name)?;
        at_least("max_concurrent_chats", self.row.max_concurrent_chats, 1)?;
        let mut row = self.row;
        row.display_name = row.display_name.trim().to_string();
        let (site, user) = (row.site_id, row.user_id);
        let result = self
            .chat
            .client()
            .from(TABLE)
            .insert(&row)
            .single::<Agent>()
            .await;
        result.map_err(|e| {
            if e.kind() == ErrorKind::Conflict && e.code() == Some("23505") {
                tracing::debug!(%site, %user, "agent exists already");
                Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "user {user} is already an agent of site {site} (perhaps a deactivated \
                         one: reactivate it with update(id, AgentPatch::default().is_active(true)))"
                    ),
                )
                .with_source(e)
            } else {
                e
            }
        })
    }
}

into_future!(CreateAgent, Agent);

/// A performance report being built by [`Agents::performance`]; `.await` it or call
/// [`AgentPerformanceRequest::send`].
#[derive(Debug, Clone)]
#[must_use = "nothing is fetched until the builder is awaited"]
pub struct AgentPerformanceRequest<'a> {
    chat: &'a Chat,
    site_id: Uuid,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

impl<'a> AgentPerformanceRequest<'a> {
    /// Counts conversations created at or after this instant.
    pub fn from(mut self, from: DateTime<Utc>) -> Self {
        self.from = Some(from);
        self
    }

    /// Counts conversations created at or before this instant.
    pub fn to(mut self, to: DateTime<Utc>) -> Self {
        self.to = Some(to);
        self
    }

    /// Sends the one request. A range whose start is after its end is refused before sending.
    #[tracing::instrument(name = "agents.performance", level = "debug", skip(self), fields(site_id = %self.site_id))]
    pub async fn send(self) -> Result<Vec<AgentPerformance>> {
        if let (Some(f), Some(t)) = (self.from, self.to) {
            if f > t {
                return Err(Error::invalid_input(format!(
                    "the performance range starts ({f}) after it ends ({t})"
                )));
            }
        }
        #[derive(Serialize)]
        struct Args {
            p_site_id: Uuid,
            #[serde(skip_serializing_if = "Option::is_none")]
            p_date_from: Option<DateTime<Utc>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            p_date_to: Option<DateTime<Utc>>,
        }
        self.chat
            .client()
            .rpc(
                "mod_chat_agent_performance",
                &Args {
                    p_site_id: self.site_id,
                    p_date_from: self.from,
                    p_date_to: self.to,
                },
            )
            .call()
            .await
    }
}

into_future!(AgentPerformanceRequest, Vec<AgentPerformance>);

/// A search for a free agent being built by [`Agents::available`]; `.await` it or call
/// [`AvailableAgentRequest::send`].
#[derive(Debug, Clone)]
#[must_use = "nothing is fetched until the builder is awaited"]
pub struct AvailableAgentRequest<'a> {
    chat: &'a Chat,
    site_id: Uuid,
    department_id: Option<Uuid>,
}

impl<'a> AvailableAgentRequest<'a> {
    /// Only agents of this department.
    pub fn department(mut self, department_id: Uuid) -> Self {
        self.department_id = Some(department_id);
        self
    }

    /// Sends the request (`mod_chat_get_available_agent`).
    #[tracing::instrument(name = "agents.available", level = "debug", skip(self), fields(site_id = %self.site_id))]
    pub async fn send(self) -> Result<Option<Agent>> {
        let found: Vec<Agent> = self
            .chat
            .client()
            .rpc(
                "mod_chat_get_available_agent",
                &json!({ "p_site_id": self.site_id, "p_department_id": self.department_id }),
            )
            .call()
            .await?;
        Ok(found.into_iter().next())
    }
}

into_future!(AvailableAgentRequest, Option<Agent>);
