//! Canned responses: reusable answers agents insert into conversations.
//!
//! | original action | here |
//! |---|---|
//! | `getCannedResponses(siteId, category?)` | [`CannedResponses::list`] (+ [`ListCannedResponses::category`]) |
//! | `createCannedResponse({…})` | [`CannedResponses::create`] |
//! | `updateCannedResponse(id, partial)` | [`CannedResponses::update`] with a [`CannedResponsePatch`] |
//! | `deleteCannedResponse(id)` | [`CannedResponses::delete`] |
//! | `incrementCannedResponseUsage(id)` | [`CannedResponses::increment_usage`] (atomic) |
//! | `searchCannedResponses(siteId, query)` | [`CannedResponses::search`] (literal match) |
//!
//! ```no_run
//! # async fn demo(chat: livechat::chat::Chat) -> livechat::Result<()> {
//! use uuid::Uuid;
//!
//! let site = Uuid::parse_str("b0000000-0000-4000-8000-000000000001").expect("a uuid");
//! let created = chat
//!     .canned_responses()
//!     .create(site, "Opening hours", "We're open Monday to Friday, 09:00-17:00.")
//!     .shortcut("/hours")
//!     .category("General")
//!     .tags(["hours"])
//!     .await?;
//! // Whatever the agent typed is matched literally: "50% off (today)" is not a pattern.
//! let hits = chat.canned_responses().search(site, "50% off (today)").await?;
//! chat.canned_responses().increment_usage(created.id).await?;
//! # Ok(()) }
//! ```

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::entity_views::{
    delete_by_id, into_future, non_blank, non_blank_opt, not_empty_patch, patch_setters,
    update_by_id,
};
use super::models::CannedResponse;
use super::Chat;
use crate::rest::{Is, Nulls};
use crate::Result;

const TABLE: &str = "mod_chat_canned_responses";

/// The canned-response actions; get it from [`Chat::canned_responses`].
#[derive(Debug, Clone, Copy)]
pub struct CannedResponses<'a> {
    pub(crate) chat: &'a Chat,
}

/// The columns [`CannedResponses::update`] may change; unset fields are left alone.
///
/// ```
/// use livechat::chat::canned::CannedResponsePatch;
/// let patch = CannedResponsePatch::default().title("Hi").tags(["greeting"]).clear_shortcut();
/// assert_eq!(
///     serde_json::to_value(&patch).unwrap(),
///     serde_json::json!({"title": "Hi", "shortcut": null, "tags": ["greeting"]})
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CannedResponsePatch {
    /// `title` (not blank).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// `content` (not blank).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// `shortcut`; `Some(None)` clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shortcut: Option<Option<String>>,
    /// `category`; `Some(None)` clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Option<String>>,
    /// `tags` (replaces the list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// `is_shared`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_shared: Option<bool>,
    /// `is_active` (inactive responses are left out of lists and searches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
}

patch_setters!(CannedResponsePatch {
    title: String,
    content: String,
    is_shared: bool,
    is_active: bool,
} nullable {
    shortcut, clear_shortcut: String,
    category, clear_category: String,
});

impl CannedResponsePatch {
    /// Sets `tags` (replacing the list).
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    fn validate(&self) -> Result<()> {
        not_empty_patch("canned response patch", self)?;
        non_blank_opt("title", self.title.as_deref())?;
        non_blank_opt("content", self.content.as_deref())
    }
}

impl<'a> CannedResponses<'a> {
    /// Starts listing the site's active canned responses, most used first (then by id);
    /// optionally of one category ([`ListCannedResponses::category`]). `.await` the builder.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid) -> livechat::Result<()> {
    /// let all = chat.canned_responses().list(site).await?;
    /// let billing = chat.canned_responses().list(site).category("Billing").await?;
    /// # Ok(()) }
    /// ```
    pub fn list(&self, site_id: Uuid) -> ListCannedResponses<'a> {
        ListCannedResponses {
            chat: self.chat,
            site_id,
            category: None,
        }
    }

    /// Starts creating a canned response; set the optional columns on the returned builder,
    /// then `.await` it (or call [`CreateCannedResponse::send`]). A blank title or content is
    /// refused before any request.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid) -> livechat::Result<()> {
    /// let r = chat.canned_responses().create(site, "Thanks", "Thanks for your patience!").await?;
    /// # Ok(()) }
    /// ```
    pub fn create(
        &self,
        site_id: Uuid,
        title: impl Into<String>,
        content: impl Into<String>,
    ) -> CreateCannedResponse<'a> {
        CreateCannedResponse {
            chat: self.chat,
            row: NewCannedRow {
                site_id,
                title: title.into(),
                content: content.into(),
                shortcut: None,
                category: None,
                tags: None,
                created_by: None,
                is_shared: None,
                is_active: None,
            },
        }
    }

    /// Changes the columns set in `patch` and returns the updated response.
    ///
    /// A response that does not exist or is not visible is
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound); an empty patch or a blank title or
    /// content is refused before any request.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// use livechat::chat::canned::CannedResponsePatch;
    /// chat.canned_responses().update(id, CannedResponsePatch::default().is_active(false)).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "canned.update", level = "debug", skip(self))]
    pub async fn update(self, id: Uuid, patch: CannedResponsePatch) -> Result<CannedResponse> {
        patch.validate()?;
        update_by_id(self.chat.client(), TABLE, id, &patch).await
    }

    /// Deletes a canned response for good. One that does not exist or is not visible is
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) (nothing is deleted).
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// chat.canned_responses().delete(id).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "canned.delete", level = "debug", skip(self))]
    pub async fn delete(self, id: Uuid) -> Result<()> {
        delete_by_id(self.chat.client(), TABLE, id).await
    }

    /// Adds one to `usage_count` atomically and sets `last_used_at` to now
    /// (`mod_chat_increment_canned_response_usage`); returns the updated response. One that
    /// does not exist or is not visible is
    /// [`ChatError::CannedResponseNotFound`](super::ChatError::CannedResponseNotFound).
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// let r = chat.canned_responses().increment_usage(id).await?;
    /// println!("used {} times", r.usage_count.unwrap_or(0));
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "canned.increment_usage", level = "debug", skip(self))]
    pub async fn increment_usage(self, id: Uuid) -> Result<CannedResponse> {
        self.chat
            .client()
            .rpc(
                "mod_chat_increment_canned_response_usage",
                &json!({ "p_id": id }),
            )
            .call()
            .await
    }

    /// The site's active canned responses whose title, content or shortcut contains `query`,
    /// ignoring case and matching every character literally (`%`, `_`, `*`, quotes, commas,
    /// parentheses, unicode…), most used first (`mod_chat_search_canned_responses`). An empty
    /// query matches every active response.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid) -> livechat::Result<()> {
    /// let hits = chat.canned_responses().search(site, "100%").await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "canned.search", level = "debug", skip(self, query), fields(query_len = query.len()))]
    pub async fn search(self, site_id: Uuid, query: &str) -> Result<Vec<CannedResponse>> {
        self.chat
            .client()
            .rpc(
                "mod_chat_search_canned_responses",
                &json!({ "p_site_id": site_id, "p_query": query }),
            )
            .call()
            .await
    }
}

/// A canned-response listing being built by [`CannedResponses::list`]; `.await` it or call
/// [`ListCannedResponses::send`].
#[derive(Debug, Clone)]
#[must_use = "nothing is fetched until the builder is awaited"]
pub struct ListCannedResponses<'a> {
    chat: &'a Chat,
    site_id: Uuid,
    category: Option<String>,
}

impl<'a> ListCannedResponses<'a> {
    /// Only responses of this category (compared exactly).
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// Sends the request.
    #[tracing::instrument(name = "canned.list", level = "debug", skip(self), fields(site_id = %self.site_id))]
    pub async fn send(self) -> Result<Vec<CannedResponse>> {
        let mut q = self
            .chat
            .client()
            .from(TABLE)
            .eq("site_id", self.site_id)
            .is("is_active", Is::True);
        if let Some(c) = &self.category {
            q = q.eq("category", c);
        }
        q.order_by("usage_count", false, Nulls::Last)
            .order_asc("id")
            .fetch()
            .await
    }
}

into_future!(ListCannedResponses, Vec<CannedResponse>);

#[derive(Debug, Clone, Serialize)]
struct NewCannedRow {
    site_id: Uuid,
    title: String,
    content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    shortcut: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_shared: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_active: Option<bool>,
}

/// A new canned response being built by [`CannedResponses::create`]; `.await` it or call
/// [`CreateCannedResponse::send`]. Unset columns take the table defaults (shared, active, no
/// tags).
#[derive(Debug, Clone)]
#[must_use = "nothing is created until the builder is awaited"]
pub struct CreateCannedResponse<'a> {
    chat: &'a Chat,
    row: NewCannedRow,
}

impl<'a> CreateCannedResponse<'a> {
    /// The shortcut agents type, e.g. `/hi`.
    pub fn shortcut(mut self, shortcut: impl Into<String>) -> Self {
        self.row.shortcut = Some(shortcut.into());
        self
    }

    /// The category.
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.row.category = Some(category.into());
        self
    }

    /// The tags.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.row.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    /// The user who wrote it.
    pub fn created_by(mut self, user_id: Uuid) -> Self {
        self.row.created_by = Some(user_id);
        self
    }

    /// Whether every agent of the site may use it (default true).
    pub fn shared(mut self, shared: bool) -> Self {
        self.row.is_shared = Some(shared);
        self
    }

    /// Whether it is active (default true).
    pub fn active(mut self, active: bool) -> Self {
        self.row.is_active = Some(active);
        self
    }

    /// Validates (non-blank title and content), then inserts the response.
    #[tracing::instrument(name = "canned.create", level = "debug", skip(self), fields(site_id = %self.row.site_id))]
    pub async fn send(self) -> Result<CannedResponse> {
        non_blank("title", &self.row.title)?;
        non_blank("content", &self.row.content)?;
        self.chat
            .client()
            .from(TABLE)
            .insert(&self.row)
            .single()
            .await
    }
}

into_future!(CreateCannedResponse, CannedResponse);
