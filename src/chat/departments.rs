//! Departments: groups of agents that conversations can be routed to. Every site with
//! departments has exactly one default department.
//!
//! | original action | here |
//! |---|---|
//! | `getDepartments(siteId)` | [`Departments::list`] (with agent counts, one request) |
//! | `createDepartment({…})` | [`Departments::create`] (`mod_chat_create_department`) |
//! | `updateDepartment(id, partial)` | [`Departments::update`] with a [`DepartmentPatch`] |
//! | `deleteDepartment(id)` | [`Departments::delete`] (`mod_chat_delete_department`) |
//! | `setDefaultDepartment(siteId, id)` | [`Departments::set_default`] (`mod_chat_set_default_department`) |
//!
//! ```no_run
//! # async fn demo(chat: livechat::chat::Chat) -> livechat::Result<()> {
//! use livechat::chat::ChatError;
//! use uuid::Uuid;
//!
//! let site = Uuid::parse_str("b0000000-0000-4000-8000-000000000001").expect("a uuid");
//! let vip = chat.departments().create(site, "VIP").auto_assign(false).await?;
//! for d in chat.departments().list(site).await? {
//!     println!("{} ({} agents)", d.department.name, d.agent_count);
//! }
//! match chat.departments().delete(vip.id).await {
//!     Err(e) if ChatError::of(&e) == Some(ChatError::DefaultDepartment) => {
//!         println!("make another department the default first");
//!     }
//!     other => other?,
//! }
//! # Ok(()) }
//! ```

use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::entity_views::{
    at_least, into_future, non_blank, non_blank_opt, not_empty_patch, patch_setters, update_by_id,
    DepartmentWithAgentCount,
};
use super::models::Department;
use super::Chat;
use crate::rest::{Condition, Is, Nulls};
use crate::Result;

const TABLE: &str = "mod_chat_departments";

/// The departments actions; get it from [`Chat::departments`].
#[derive(Debug, Clone, Copy)]
pub struct Departments<'a> {
    pub(crate) chat: &'a Chat,
}

/// The columns [`Departments::update`] may change; unset fields are left alone.
///
/// `is_default` is not among them: use [`Departments::set_default`], which keeps exactly one
/// default per site.
///
/// ```
/// use livechat::chat::departments::DepartmentPatch;
/// let patch = DepartmentPatch::default().name("Billing").sort_order(3).clear_description();
/// assert_eq!(
///     serde_json::to_value(&patch).unwrap(),
///     serde_json::json!({"name": "Billing", "description": null, "sort_order": 3})
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DepartmentPatch {
    /// `name` (not blank).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `description`; `Some(None)` clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Option<String>>,
    /// `is_active`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
    /// `auto_assign`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_assign: Option<bool>,
    /// `max_concurrent_chats` (at least 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_chats: Option<i32>,
    /// `sort_order`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort_order: Option<i32>,
}

patch_setters!(DepartmentPatch {
    name: String,
    is_active: bool,
    auto_assign: bool,
    max_concurrent_chats: i32,
    sort_order: i32,
} nullable {
    description, clear_description: String,
});

impl DepartmentPatch {
    fn validate(&self) -> Result<()> {
        not_empty_patch("department patch", self)?;
        non_blank_opt("name", self.name.as_deref())?;
        at_least("max_concurrent_chats", self.max_concurrent_chats, 1)
    }
}

/// A department row with its embedded active agents' ids, as the list request returns it (the
/// ids are only counted).
#[derive(Deserialize)]
struct ListedDepartment {
    #[serde(flatten)]
    department: Department,
    agents: Vec<serde::de::IgnoredAny>,
}

impl<'a> Departments<'a> {
    /// The site's departments ordered by `sort_order` (then name, then id), each with the number
    /// of its active agents. One request: the agents' ids are embedded and counted here, which
    /// works on any PostgREST (aggregate functions need `db-aggregates-enabled`).
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid) -> livechat::Result<()> {
    /// let departments = chat.departments().list(site).await?;
    /// let default = departments.iter().find(|d| d.department.is_default == Some(true));
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "departments.list", level = "debug", skip(self))]
    pub async fn list(self, site_id: Uuid) -> Result<Vec<DepartmentWithAgentCount>> {
        let rows: Vec<ListedDepartment> = self
            .chat
            .client()
            .from(TABLE)
            .select("*,agents:mod_chat_agents(id)")
            .eq("site_id", site_id)
            .filter_in("agents", Condition::is("is_active", Is::True))
            .order_by("sort_order", true, Nulls::Last)
            .order_asc("name")
            .order_asc("id")
            .fetch()
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| DepartmentWithAgentCount {
                agent_count: u32::try_from(r.agents.len()).unwrap_or(u32::MAX),
                department: r.department,
            })
            .collect())
    }

    /// Starts creating a department; set the optional columns on the returned builder, then
    /// `.await` it (or call [`CreateDepartment::send`]). The site's first department becomes its
    /// default (atomically, even under concurrent creations); `sort_order` defaults to after
    /// the last one.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid) -> livechat::Result<()> {
    /// let d = chat
    ///     .departments()
    ///     .create(site, "Returns")
    ///     .description("Returns and exchanges")
    ///     .max_concurrent_chats(3)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn create(&self, site_id: Uuid, name: impl Into<String>) -> CreateDepartment<'a> {
        CreateDepartment {
            chat: self.chat,
            args: CreateArgs {
                p_site_id: site_id,
                p_name: name.into(),
                p_description: None,
                p_auto_assign: None,
                p_max_concurrent_chats: None,
                p_sort_order: None,
                p_is_active: None,
            },
        }
    }

    /// Changes the columns set in `patch` and returns the updated department.
    ///
    /// A department that does not exist or is not visible is
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound); an empty patch, a blank name or a
    /// capacity below 1 is refused before any request.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// use livechat::chat::departments::DepartmentPatch;
    /// chat.departments().update(id, DepartmentPatch::default().auto_assign(false)).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "departments.update", level = "debug", skip(self))]
    pub async fn update(self, id: Uuid, patch: DepartmentPatch) -> Result<Department> {
        patch.validate()?;
        update_by_id(self.chat.client(), TABLE, id, &patch).await
    }

    /// Deletes a department in one transaction, after moving its agents to the site's default
    /// department. The default department itself is refused
    /// ([`ChatError::DefaultDepartment`](super::ChatError::DefaultDepartment), HTTP 409); a
    /// missing or invisible one is
    /// [`ChatError::DepartmentNotFound`](super::ChatError::DepartmentNotFound).
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// chat.departments().delete(id).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "departments.delete", level = "debug", skip(self))]
    pub async fn delete(self, id: Uuid) -> Result<()> {
        self.chat
            .client()
            .rpc(
                "mod_chat_delete_department",
                &json!({ "p_department_id": id }),
            )
            .execute()
            .await
            .map(|_| ())
    }

    /// Makes `department_id` the only default department of `site_id`, atomically, and returns
    /// it. A department of another site, or an invisible one, is
    /// [`ChatError::DepartmentNotFound`](super::ChatError::DepartmentNotFound).
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid, id: uuid::Uuid) -> livechat::Result<()> {
    /// let d = chat.departments().set_default(site, id).await?;
    /// assert_eq!(d.is_default, Some(true));
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "departments.set_default", level = "debug", skip(self))]
    pub async fn set_default(self, site_id: Uuid, department_id: Uuid) -> Result<Department> {
        self.chat
            .client()
            .rpc(
                "mod_chat_set_default_department",
                &json!({ "p_site_id": site_id, "p_department_id": department_id }),
            )
            .call()
            .await
    }
}

#[derive(Debug, Clone, Serialize)]
struct CreateArgs {
    p_site_id: Uuid,
    p_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    p_description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p_auto_assign: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p_max_concurrent_chats: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p_sort_order: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p_is_active: Option<bool>,
}

/// A new department being built by [`Departments::create`]; `.await` it or call
/// [`CreateDepartment::send`].
#[derive(Debug, Clone)]
#[must_use = "nothing is created until the builder is awaited"]
pub struct CreateDepartment<'a> {
    chat: &'a Chat,
    args: CreateArgs,
}

impl<'a> CreateDepartment<'a> {
    /// A description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.args.p_description = Some(description.into());
        self
    }

    /// Whether its new conversations are assigned automatically (default true).
    pub fn auto_assign(mut self, auto_assign: bool) -> Self {
        self.args.p_auto_assign = Some(auto_assign);
        self
    }

    /// Default capacity of its agents (default 5; at least 1).
    pub fn max_concurrent_chats(mut self, n: i32) -> Self {
        self.args.p_max_concurrent_chats = Some(n);
        self
    }

    /// Display position (default: after the site's last department).
    pub fn sort_order(mut self, sort_order: i32) -> Self {
        self.args.p_sort_order = Some(sort_order);
        self
    }

    /// Whether it is active (default true).
    pub fn active(mut self, active: bool) -> Self {
        self.args.p_is_active = Some(active);
        self
    }

    /// Validates (a non-blank name, a capacity of at least 1), then creates the department.
    #[tracing::instrument(name = "departments.create", level = "debug", skip(self), fields(site_id = %self.args.p_site_id))]
    pub async fn send(self) -> Result<Department> {
        non_blank("name", &self.args.p_name)?;
        at_least("max_concurrent_chats", self.args.p_max_concurrent_chats, 1)?;
        self.chat
            .client()
            .rpc("mod_chat_create_department", &self.args)
            .call()
            .await
    }
}

into_future!(CreateDepartment, Department);
