//! Visitors: the people chatting with a site, through the widget, WhatsApp or the API.
//!
//! | original action | here |
//! |---|---|
//! | `getVisitors(siteId, page, pageSize)` | [`Visitors::list`] (+ [`ListVisitors::page`], [`ListVisitors::page_size`]) |
//! | `getVisitor(id)` | [`Visitors::get`] |
//! | `createOrUpdateVisitor({…})` | [`Visitors::create_or_update`] with a [`VisitorInput`] (one transaction) |
//! | `updateVisitorInfo(id, partial)` | [`Visitors::update_info`] with a [`VisitorInfoPatch`] |
//! | `updateVisitorPageTracking(id, {…})` | [`Visitors::track_page`] |
//! | `linkVisitorToCrm(id, crmContactId)` | [`Visitors::link_crm`] |
//! | `getVisitorConversations(visitorId)` | [`Visitors::conversations`] |
//!
//! ```no_run
//! # async fn demo(chat: livechat::chat::Chat) -> livechat::Result<()> {
//! use livechat::chat::models::Channel;
//! use livechat::chat::visitors::{VisitorInfoPatch, VisitorInput};
//! use uuid::Uuid;
//!
//! let site = Uuid::parse_str("b0000000-0000-4000-8000-000000000001").expect("a uuid");
//! let visitor = chat
//!     .visitors()
//!     .create_or_update(
//!         VisitorInput::new(site, Channel::Widget)
//!             .name("Mia Mwale")
//!             .email("mia@example.com")
//!             .current_page("https://acme-store.example/shipping", Some("Shipping")),
//!     )
//!     .await?;
//! chat.visitors()
//!     .update_info(visitor.id, VisitorInfoPatch::default().tags(["vip"]))
//!     .await?;
//! let page = chat.visitors().list(site).page(1).page_size(50).await?;
//! println!("{} of {}", page.items.len(), page.total);
//! # Ok(()) }
//! ```

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::entity_views::{
    into_future, non_blank, non_blank_opt, not_empty_patch, patch_setters, update_by_id,
};
use super::models::{Channel, Conversation, Visitor};
use super::views::{fetch_list_page, ListPage};
use super::Chat;
use crate::rest::Nulls;
use crate::{Error, Result};

const TABLE: &str = "mod_chat_visitors";

/// The largest page [`Visitors::list`] accepts (the one of every list action).
pub use super::views::MAX_PAGE_SIZE;

/// The visitors actions; get it from [`Chat::visitors`].
#[derive(Debug, Clone, Copy)]
pub struct Visitors<'a> {
    pub(crate) chat: &'a Chat,
}

/// What is known about a visitor arriving, for [`Visitors::create_or_update`]. Every field but
/// the site and channel is optional; fields left `None` keep their stored value when an
/// existing visitor is updated.
///
/// ```
/// use livechat::chat::models::Channel;
/// use livechat::chat::visitors::VisitorInput;
///
/// let site = uuid::Uuid::nil();
/// let input = VisitorInput::new(site, Channel::Whatsapp)
///     .name("Peter Zulu")
///     .whatsapp_phone("+260971234567")
///     .ip_address("102.145.10.11".parse().unwrap());
/// assert_eq!(input.whatsapp_phone.as_deref(), Some("+260971234567"));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub struct VisitorInput {
    /// The site.
    pub site_id: Uuid,
    /// Where the visitor comes from.
    pub channel: Channel,
    /// Not blank when given.
    pub name: Option<String>,
    /// Matched case-insensitively (after trimming) against the site's visitors.
    pub email: Option<String>,
    pub phone: Option<String>,
    pub browser: Option<String>,
    pub os: Option<String>,
    pub device: Option<String>,
    pub ip_address: Option<IpAddr>,
    pub country: Option<String>,
    pub city: Option<String>,
    pub current_page_url: Option<String>,
    pub current_page_title: Option<String>,
    pub referrer_url: Option<String>,
    pub landing_page_url: Option<String>,
    /// Matched exactly (after trimming) when no e-mail matched.
    pub whatsapp_phone: Option<String>,
    pub external_id: Option<String>,
}

macro_rules! input_setters {
    ($($field:ident),* $(,)?) => {
        impl VisitorInput {
            $(
                #[doc = concat!("Sets `", stringify!($field), "`.")]
                pub fn $field(mut self, value: impl Into<String>) -> Self {
                    self.$field = Some(value.into());
                    self
                }
            )*
        }
    };
}

input_setters!(
    name,
    email,
    phone,
    browser,
    os,
    device,
    country,
    city,
    referrer_url,
    landing_page_url,
    whatsapp_phone,
    external_id,
);

impl VisitorInput {
    /// A visitor of `site_id` arriving through `channel`, with nothing else known yet.
    pub fn new(site_id: Uuid, channel: Channel) -> VisitorInput {
        VisitorInput {
            site_id,
            channel,
            name: None,
            email: None,
            phone: None,
            browser: None,
            os: None,
            device: None,
            ip_address: None,
            country: None,
            city: None,
            current_page_url: None,
            current_page_title: None,
            referrer_url: None,
            landing_page_url: None,
            whatsapp_phone: None,
            external_id: None,
        }
    }

    /// Sets `ip_address`.
    pub fn ip_address(mut self, ip: IpAddr) -> Self {
        self.ip_address = Some(ip);
        self
    }

    /// Sets `current_page_url` and `current_page_title`.
    pub fn current_page(mut self, url: impl Into<String>, title: Option<&str>) -> Self {
        self.current_page_url = Some(url.into());
        self.current_page_title = title.map(str::to_string);
        self
    }
}

/// The columns [`Visitors::update_info`] may change; unset fields are left alone.
///
/// ```
/// use livechat::chat::visitors::VisitorInfoPatch;
/// let patch = VisitorInfoPatch::default()
///     .name("Mia M.")
///     .clear_phone()
///     .custom_data(serde_json::json!({"plan": "gold"}));
/// assert_eq!(
///     serde_json::to_value(&patch).unwrap(),
///     serde_json::json!({"name": "Mia M.", "phone": null, "custom_data": {"plan": "gold"}})
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VisitorInfoPatch {
    /// `name` (not blank); `Some(None)` clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Option<String>>,
    /// `email`; `Some(None)` clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<Option<String>>,
    /// `phone`; `Some(None)` clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<Option<String>>,
    /// `tags` (replaces the list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// `notes`; `Some(None)` clears them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<Option<String>>,
    /// `custom_data`, a JSON object (replaces the stored object).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_data: Option<Value>,
}

patch_setters!(VisitorInfoPatch {
    custom_data: Value,
} nullable {
    name, clear_name: String,
    email, clear_email: String,
    phone, clear_phone: String,
    notes, clear_notes: String,
});

impl VisitorInfoPatch {
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
        not_empty_patch("visitor patch", self)?;
        non_blank_opt("name", self.name.as_ref().and_then(|n| n.as_deref()))?;
        if let Some(d) = &self.custom_data {
            if !d.is_object() {
                return Err(Error::invalid_input("custom_data must be a JSON object"));
            }
        }
        Ok(())
    }
}

impl<'a> Visitors<'a> {
    /// Starts listing the site's visitors, most recently seen first (then by id), one page at a
    /// time with the exact total. Pages are 1-based; the defaults are page 1 of 20. `.await`
    /// the builder.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid) -> livechat::Result<()> {
    /// let first = chat.visitors().list(site).await?;
    /// let third = chat.visitors().list(site).page(3).page_size(50).await?;
    /// # Ok(()) }
    /// ```
    pub fn list(&self, site_id: Uuid) -> ListVisitors<'a> {
        ListVisitors {
            chat: self.chat,
            site_id,
            page: 1,
            page_size: 20,
        }
    }

    /// One visitor; `None` when it does not exist or is not visible.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// let v = chat.visitors().get(id).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "visitors.get", level = "debug", skip(self))]
    pub async fn get(self, id: Uuid) -> Result<Option<Visitor>> {
        self.chat
            .client()
            .from(TABLE)
            .eq("id", id)
            .maybe_single()
            .await
    }

    /// Updates the site's visitor with the same e-mail (case-insensitive), else the same
    /// WhatsApp phone (`last_seen_at` now, `total_visits` + 1, the given fields), or creates a
    /// new visitor; one transaction (`mod_chat_create_or_update_visitor`), so concurrent calls
    /// for one e-mail create one visitor. A blank name is refused before any request.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid) -> livechat::Result<()> {
    /// use livechat::chat::models::Channel;
    /// use livechat::chat::visitors::VisitorInput;
    /// let v = chat
    ///     .visitors()
    ///     .create_or_update(VisitorInput::new(site, Channel::Api).email("ops@example.com"))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "visitors.create_or_update", level = "debug", skip_all, fields(site_id = %input.site_id))]
    pub async fn create_or_update(self, input: VisitorInput) -> Result<Visitor> {
        non_blank_opt("name", input.name.as_deref())?;
        #[derive(Serialize)]
        struct Args<'i> {
            p_site_id: Uuid,
            p_channel: Channel,
            p_name: Option<&'i str>,
            p_email: Option<&'i str>,
            p_phone: Option<&'i str>,
            p_browser: Option<&'i str>,
            p_os: Option<&'i str>,
            p_device: Option<&'i str>,
            p_ip_address: Option<String>,
            p_country: Option<&'i str>,
            p_city: Option<&'i str>,
            p_current_page_url: Option<&'i str>,
            p_current_page_title: Option<&'i str>,
            p_referrer_url: Option<&'i str>,
            p_landing_page_url: Option<&'i str>,
            p_whatsapp_phone: Option<&'i str>,
            p_external_id: Option<&'i str>,
        }
        let i = &input;
        let args = Args {
            p_site_id: i.site_id,
            p_channel: i.channel,
            p_name: i.name.as_deref(),
            p_email: i.email.as_deref(),
            p_phone: i.phone.as_deref(),
            p_browser: i.browser.as_deref(),
            p_os: i.os.as_deref(),
            p_device: i.device.as_deref(),
            p_ip_address: i.ip_address.map(|ip| ip.to_string()),
            p_country: i.country.as_deref(),
            p_city: i.city.as_deref(),
            p_current_page_url: i.current_page_url.as_deref(),
            p_current_page_title: i.current_page_title.as_deref(),
            p_referrer_url: i.referrer_url.as_deref(),
            p_landing_page_url: i.landing_page_url.as_deref(),
            p_whatsapp_phone: i.whatsapp_phone.as_deref(),
            p_external_id: i.external_id.as_deref(),
        };
        self.chat
            .client()
            .rpc("mod_chat_create_or_update_visitor", &args)
            .call()
            .await
    }

    /// Changes the contact fields set in `patch` (name, e-mail, phone, tags, notes,
    /// custom data) and returns the updated visitor. A visitor that does not exist or is not
    /// visible is [`ErrorKind::NotFound`](crate::ErrorKind::NotFound); an empty patch, a blank
    /// name or non-object custom data is refused before any request.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// use livechat::chat::visitors::VisitorInfoPatch;
    /// chat.visitors().update_info(id, VisitorInfoPatch::default().notes("Prefers e-mail")).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "visitors.update_info", level = "debug", skip(self))]
    pub async fn update_info(self, id: Uuid, patch: VisitorInfoPatch) -> Result<Visitor> {
        patch.validate()?;
        update_by_id(self.chat.client(), TABLE, id, &patch).await
    }

    /// Records the page the visitor is on: `current_page_url`, `current_page_title` (cleared
    /// when `None`) and `last_seen_at` now (this machine's clock). A blank URL is refused.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// chat.visitors()
    ///     .track_page(id, "https://acme-store.example/cart", Some("Your cart"))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "visitors.track_page", level = "debug", skip(self))]
    pub async fn track_page(self, id: Uuid, url: &str, title: Option<&str>) -> Result<Visitor> {
        non_blank("current_page_url", url)?;
        #[derive(Serialize)]
        struct Change<'s> {
            current_page_url: &'s str,
            current_page_title: Option<&'s str>,
            last_seen_at: DateTime<Utc>,
        }
        let change = Change {
            current_page_url: url,
            current_page_title: title,
            last_seen_at: Utc::now(),
        };
        update_by_id(self.chat.client(), TABLE, id, &change).await
    }

    /// Links the visitor to a CRM contact (`crm_contact_id`).
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid, contact: uuid::Uuid) -> livechat::Result<()> {
    /// let v = chat.visitors().link_crm(id, contact).await?;
    /// assert_eq!(v.crm_contact_id, Some(contact));
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "visitors.link_crm", level = "debug", skip(self))]
    pub async fn link_crm(self, id: Uuid, crm_contact_id: Uuid) -> Result<Visitor> {
        #[derive(Serialize)]
        struct Change {
            crm_contact_id: Uuid,
        }
        let change = Change { crm_contact_id };
        update_by_id(self.chat.client(), TABLE, id, &change).await
    }

    /// The visitor's conversations, newest first (by `created_at`, then id). Empty when the
    /// visitor does not exist or is not visible.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, id: uuid::Uuid) -> livechat::Result<()> {
    /// for c in chat.visitors().conversations(id).await? {
    ///     println!("{} {}", c.id, c.status);
    /// }
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "visitors.conversations", level = "debug", skip(self))]
    pub async fn conversations(self, visitor_id: Uuid) -> Result<Vec<Conversation>> {
        self.chat
            .client()
            .from("mod_chat_conversations")
            .eq("visitor_id", visitor_id)
            .order_desc("created_at")
            .order_desc("id")
            .fetch()
            .await
    }
}

/// A page of visitors being built by [`Visitors::list`]; `.await` it or call
/// [`ListVisitors::send`].
#[derive(Debug, Clone)]
#[must_use = "nothing is fetched until the builder is awaited"]
pub struct ListVisitors<'a> {
    chat: &'a Chat,
    site_id: Uuid,
    page: u32,
    page_size: u32,
}

impl<'a> ListVisitors<'a> {
    /// The page, 1-based (default 1).
    pub fn page(mut self, page: u32) -> Self {
        self.page = page;
        self
    }

    /// Visitors per page, 1 to [`MAX_PAGE_SIZE`] (default 20).
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size;
        self
    }

    /// Validates the paging, then fetches the page and the total. A page past the end is empty
    /// (with the total).
    #[tracing::instrument(name = "visitors.list", level = "debug", skip(self), fields(site_id = %self.site_id, page = self.page, page_size = self.page_size))]
    pub async fn send(self) -> Result<ListPage<Visitor>> {
        fetch_list_page(
            || self.chat.client().from(TABLE).eq("site_id", self.site_id),
            |q| {
                q.order_by("last_seen_at", false, Nulls::Last)
                    .order_asc("id")
            },
            self.page,
            self.page_size,
        )
        .await
    }
}

into_future!(ListVisitors, ListPage<Visitor>);
