//! The knowledge base: articles agents (and AI responders) draw answers from.
//!
//! | original action | here |
//! |---|---|
//! | `getKnowledgeBaseArticles(siteId, category?)` | [`KnowledgeBase::list`] (+ [`ListArticles::category`]) |
//! | `createArticle({…})` | [`KnowledgeBase::create`] |
//! | `updateArticle(id, partial)` | [`KnowledgeBase::update`] with an [`ArticlePatch`] |
//! | `deleteArticle(id)` | [`KnowledgeBase::delete`] |
//! | `searchKnowledgeBase(siteId, query)` | [`KnowledgeBase::search`] (literal match) |
//!
//! ```no_run
//! # async fn demo(chat: livechat::chat::Chat) -> livechat::Result<()> {
//! use uuid::Uuid;
//!
//! let site = Uuid::parse_str("b0000000-0000-4000-8000-000000000001").expect("a uuid");
//! chat.knowledge_base()
//!     .create(site, "Gift cards", "Gift cards are valid for 12 months.")
//!     .category("Billing")
//!     .await?;
//! for article in chat.knowledge_base().search(site, "gift card").await? {
//!     println!("{}", article.title);
//! }
//! # Ok(()) }
//! ```

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::entity_views::{
    delete_by_id, into_future, non_blank, non_blank_opt, not_empty_patch, patch_setters,
    update_by_id,
};
use super::models::KnowledgeBaseArticle;
use super::Chat;
use crate::rest::{Is, Nulls};
use crate::Result;

const TABLE: &str = "mod_chat_knowledge_base";

/// The knowledge-base actions; get it from [`Chat::knowledge_base`].
#[derive(Debug, Clone, Copy)]
pub struct KnowledgeBase<'a> {
    pub(crate) chat: &'a Chat,
}

/// The columns [`KnowledgeBase::update`] may change; unset fields are left alone.
///
/// ```
/// use livechat::chat::knowledge_base::ArticlePatch;
/// let patch = ArticlePatch::default().content("Updated text").clear_category();
/// assert_eq!(
///     serde_json::to_value(&patch).unwrap(),
///     serde_json::json!({"content": "Updated text", "category": null})
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ArticlePatch {
    /// `title` (not blank).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// `content` (not blank).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// `category`; `Some(None)` clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Option<String>>,
    /// `tags` (replaces the list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// `is_active` (inactive articles are left out of lists and searches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
}

patch_setters!(ArticlePatch {
    title: String,
    content: String,
    is_active: bool,
} nullable {
    category, clear_category: String,
});

impl ArticlePatch {
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
        not_empty_patch("article patch", self)?;
        non_blank_opt("title", self.title.as_deref())?;
        non_blank_opt("content", self.content.as_deref())
    }
}

impl<'a> KnowledgeBase<'a> {
    /// Starts listing the site's active articles, most used first (then by id); optionally of
    /// one category ([`ListArticles::category`]). `.await` the builder.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid) -> livechat::Result<()> {
    /// let shipping = chat.knowledge_base().list(site).category("Shipping").await?;
    /// # Ok(()) }
    /// ```
    pub fn list(&self, site_id: Uuid) -> ListArticles<'a> {
        ListArticles {
            chat: self.chat,
            site_id,
            category: None,
        }
    }

    /// Starts creating an article; set the optional columns on the returned builder, then
    /// `.await` it (or call [`CreateArticle::send`]). A blank title or content is refused
    /// before any request.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid) -> livechat::Result<()> {
    /// let a = chat.knowledge_base().create(site, "Warranty", "All items carry a 1-year warranty.").await?;
    /// # Ok(()) }
    /// ```
    pub fn create(
        &self,
        site_id: Uuid,
        title: impl Into<String>,
        content: impl Into<String>,
    ) -> CreateArticle<'a> {
        CreateArticle {
            chat: self.chat,
            row: NewArticleRow {
                site_id,
                title: title.into(),
                content: content.into(),
                category: None,
                tags: None,
                is_active: None,
                created_by: None,
            },
        }
    }

    /// Changes the columns set in `patch` and returns the updated article.
    ///
    /// An article that does not exist or is not visible is
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound); an empty patch or a blank title or
    /// content is refused before any request.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// use livechat::chat::knowledge_base::ArticlePatch;
    /// chat.knowledge_base().update(id, ArticlePatch::default().tags(["faq"])).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "knowledge_base.update", level = "debug", skip(self))]
    pub async fn update(self, id: Uuid, patch: ArticlePatch) -> Result<KnowledgeBaseArticle> {
        patch.validate()?;
        update_by_id(self.chat.client(), TABLE, id, &patch).await
    }

    /// Deletes an article for good. One that does not exist or is not visible is
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) (nothing is deleted).
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// chat.knowledge_base().delete(id).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "knowledge_base.delete", level = "debug", skip(self))]
    pub async fn delete(self, id: Uuid) -> Result<()> {
        delete_by_id(self.chat.client(), TABLE, id).await
    }

    /// The site's active articles whose title or content contains `query`, ignoring case and
    /// matching every character literally, most used first (`mod_chat_search_knowledge_base`).
    /// An empty query matches every active article.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid) -> livechat::Result<()> {
    /// let hits = chat.knowledge_base().search(site, "1-2 business days").await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "knowledge_base.search", level = "debug", skip(self, query), fields(query_len = query.len()))]
    pub async fn search(self, site_id: Uuid, query: &str) -> Result<Vec<KnowledgeBaseArticle>> {
        self.chat
            .client()
            .rpc(
                "mod_chat_search_knowledge_base",
                &json!({ "p_site_id": site_id, "p_query": query }),
            )
            .call()
            .await
    }
}

/// An article listing being built by [`KnowledgeBase::list`]; `.await` it or call
/// [`ListArticles::send`].
#[derive(Debug, Clone)]
#[must_use = "nothing is fetched until the builder is awaited"]
pub struct ListArticles<'a> {
    chat: &'a Chat,
    site_id: Uuid,
    category: Option<String>,
}

impl<'a> ListArticles<'a> {
    /// Only articles of this category (compared exactly).
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// Sends the request.
    #[tracing::instrument(name = "knowledge_base.list", level = "debug", skip(self), fields(site_id = %self.site_id))]
    pub async fn send(self) -> Result<Vec<KnowledgeBaseArticle>> {
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

into_future!(ListArticles, Vec<KnowledgeBaseArticle>);

#[derive(Debug, Clone, Serialize)]
struct NewArticleRow {
    site_id: Uuid,
    title: String,
    content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_active: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by: Option<Uuid>,
}

/// A new article being built by [`KnowledgeBase::create`]; `.await` it or call
/// [`CreateArticle::send`]. Unset columns take the table defaults (active, no tags).
#[derive(Debug, Clone)]
#[must_use = "nothing is created until the builder is awaited"]
pub struct CreateArticle<'a> {
    chat: &'a Chat,
    row: NewArticleRow,
}

impl<'a> CreateArticle<'a> {
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

    /// Whether it is active (default true).
    pub fn active(mut self, active: bool) -> Self {
        self.row.is_active = Some(active);
        self
    }

    /// The user who wrote it.
    pub fn created_by(mut self, user_id: Uuid) -> Self {
        self.row.created_by = Some(user_id);
        self
    }

    /// Validates (non-blank title and content), then inserts the article.
    #[tracing::instrument(name = "knowledge_base.create", level = "debug", skip(self), fields(site_id = %self.row.site_id))]
    pub async fn send(self) -> Result<KnowledgeBaseArticle> {
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

into_future!(CreateArticle, KnowledgeBaseArticle);
