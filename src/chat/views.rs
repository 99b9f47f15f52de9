//! Composite results of the conversation and message actions: list items with their joined
//! names, a conversation with its visitor, agent and department, the dashboard statistics, and
//! pages with their exact total (of conversations, messages and visitors).
//!
//! ```no_run
//! use livechat::chat::models::ConversationStatus;
//! use livechat::chat::views::ListPage;
//! use livechat::chat::views::ConversationListItem;
//!
//! # async fn demo(chat: livechat::chat::Chat, site_id: uuid::Uuid) -> livechat::Result<()> {
//! let page: ListPage<ConversationListItem> = chat
//!     .conversations()
//!     .list(site_id)
//!     .status(ConversationStatus::Pending)
//!     .send()
//!     .await?;
//! for item in &page.items {
//!     println!("{} {:?}", item.conversation.id, item.visitor_name);
//! }
//! println!("page {} of {}", page.page, page.total_pages());
//! # Ok(()) }
//! ```

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::models::{Agent, Conversation, Department, Visitor};
use crate::rest::{total_past_the_end, Query};
use crate::{Error, ErrorKind, Result};

/// The largest page size the list actions accept.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// One page of a paginated action, with the exact number of matching rows.
///
/// ```
/// use livechat::chat::views::ListPage;
/// let page: ListPage<u8> = ListPage::empty(3, 20, 45);
/// assert_eq!(page.total_pages(), 3);
/// assert!(!page.has_next());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ListPage<T> {
    /// The rows of this page, in the action's order.
    pub items: Vec<T>,
    /// Every row matching the filters, ignoring paging (exact, not estimated).
    pub total: u64,
    /// The page number, from 1.
    pub page: u32,
    /// The page size asked for.
    pub page_size: u32,
}

impl<T> ListPage<T> {
    /// A page without rows (for instance a page past the last one), with the total.
    pub fn empty(page: u32, page_size: u32, total: u64) -> ListPage<T> {
        ListPage {
            items: Vec::new(),
            total,
            page,
            page_size,
        }
    }

    pub(crate) fn new(items: Vec<T>, total: u64, page: u32, page_size: u32) -> ListPage<T> {
        ListPage {
            items,
            total,
            page,
            page_size,
        }
    }

    /// How many pages of `page_size` rows the total makes (0 when nothing matched).
    pub fn total_pages(&self) -> u64 {
        if self.page_size == 0 {
            return 0;
        }
        self.total.div_ceil(u64::from(self.page_size))
    }

    /// Whether a later page holds rows.
    pub fn has_next(&self) -> bool {
        u64::from(self.page) < self.total_pages()
    }
}

/// Checks page and page size and returns the offset of the page's first row.
pub(crate) fn check_page(page: u32, page_size: u32) -> Result<u64> {
    if page < 1 {
        return Err(Error::invalid_input("page must be 1 or more"));
    }
    if page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(Error::invalid_input(format!(
            "page size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}"
        )));
    }
    Ok(u64::from(page - 1) * u64::from(page_size))
}

/// Checks the paging, then fetches page `page` of `page_size` rows of the read `base` builds,
/// ordered by `order`, with the exact total, in one request. A page past the last one is empty,
/// with the total: PostgREST answers it with 416 (`PGRST103`) and the total in the details; only
/// if they do not say it are the rows of `base` counted with a second request.
pub(crate) async fn fetch_list_page<T: DeserializeOwned>(
    base: impl Fn() -> Query,
    order: impl FnOnce(Query) -> Query,
    page: u32,
    page_size: u32,
) -> Result<ListPage<T>> {
    let offset = check_page(page, page_size)?;
    let result = order(base())
        .offset(offset)
        .limit(u64::from(page_size))
        .fetch_page::<T>()
        .await;
    match result {
        Ok(rows) => {
            let total = rows.total.ok_or_else(|| {
                Error::new(
                    ErrorKind::Decode,
                    "the response has no total in its Content-Range header",
                )
            })?;
            Ok(ListPage::new(rows.rows, total, page, page_size))
        }
        Err(e) if e.status() == Some(416) || e.code() == Some("PGRST103") => {
            let total = match total_past_the_end(&e) {
                Some(total) => total,
                None => base().count_rows().await?,
            };
            Ok(ListPage::empty(page, page_size, total))
        }
        Err(e) => Err(e),
    }
}

/// A conversation as the dashboard lists it: the row plus its visitor's name, e-mail and avatar,
/// its agent's display name and avatar, and its department's name (`None` when absent or not
/// visible to the caller).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConversationListItem {
    /// The conversation row.
    #[serde(flatten)]
    pub conversation: Conversation,
    /// `mod_chat_visitors.name`.
    pub visitor_name: Option<String>,
    /// `mod_chat_visitors.email`.
    pub visitor_email: Option<String>,
    /// `mod_chat_visitors.avatar_url`.
    pub visitor_avatar_url: Option<String>,
    /// The assigned agent's `display_name`.
    pub agent_display_name: Option<String>,
    /// The assigned agent's `avatar_url`.
    pub agent_avatar_url: Option<String>,
    /// The department's `name`.
    pub department_name: Option<String>,
}

/// One conversation with its visitor, assigned agent and department (each `None` when the
/// conversation has none, or it is not visible to the caller).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConversationDetail {
    /// The conversation row.
    #[serde(flatten)]
    pub conversation: Conversation,
    /// The visitor.
    pub visitor: Option<Visitor>,
    /// The assigned agent.
    pub agent: Option<Agent>,
    /// The department.
    pub department: Option<Department>,
}

/// The dashboard's conversation statistics of one site, computed in one request.
///
/// "Today" is `[today_start, today_end)`: local midnight to the next local midnight in the time
/// zone the caller chose (UTC by default), correct across daylight-saving changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConversationStats {
    /// Conversations whose status is active.
    pub active_conversations: i64,
    /// Conversations whose status is pending.
    pub pending_conversations: i64,
    /// Active agents whose status is online, away or busy.
    pub online_agents: i64,
    /// Conversations created today.
    pub today_conversations: i64,
    /// Conversations resolved today (`resolved_at` today: resolved, or closed the same day).
    pub today_resolved: i64,
    /// Conversations created today whose status is missed.
    pub today_missed: i64,
    /// Average `first_response_time_seconds` of today's conversations, rounded (0 if none).
    pub avg_first_response_seconds: i64,
    /// Average rating of today's conversations × 20 (0–100; 0 if none was rated).
    pub satisfaction_score: f64,
    /// Start of "today" (inclusive).
    pub today_start: DateTime<Utc>,
    /// End of "today" (exclusive).
    pub today_end: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_checked() {
        assert_eq!(check_page(1, 20).unwrap(), 0);
        assert_eq!(check_page(3, 20).unwrap(), 40);
        assert_eq!(
            check_page(0, 20).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            check_page(1, 0).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            check_page(1, 1001).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            check_page(u32::MAX, 1000).unwrap(),
            (u64::from(u32::MAX) - 1) * 1000
        );
    }

    #[test]
    fn page_arithmetic() {
        let p: ListPage<u8> = ListPage::empty(1, 20, 0);
        assert_eq!(p.total_pages(), 0);
        assert!(!p.has_next());
        let p: ListPage<u8> = ListPage::empty(1, 20, 21);
        assert_eq!(p.total_pages(), 2);
        assert!(p.has_next());
        let p: ListPage<u8> = ListPage::empty(2, 20, 40);
        assert!(!p.has_next());
    }

    #[test]
    fn a_list_row_parses_with_its_joined_names_and_ignores_the_total_column() {
        let row = serde_json::json!({
            "id": "20000000-0000-4000-8000-000000000101",
            "site_id": "b0000000-0000-4000-8000-000000000001",
            "visitor_id": "10000000-0000-4000-8000-000000000101",
            "assigned_agent_id": null, "department_id": null,
            "status": "pending", "priority": "normal", "channel": "widget",
            "tags": ["a"], "rating": 5, "metadata": {},
            "created_at": "2026-01-01T10:00:00.123456+00:00",
            "visitor_name": "Mia", "visitor_email": null, "visitor_avatar_url": null,
            "agent_display_name": null, "agent_avatar_url": null, "department_name": "Sales",
            "total_count": 7
        });
        let item: ConversationListItem = serde_json::from_value(row).unwrap();
        assert_eq!(item.visitor_name.as_deref(), Some("Mia"));
        assert_eq!(item.department_name.as_deref(), Some("Sales"));
        assert_eq!(item.conversation.rating, Some(5));
    }
}
