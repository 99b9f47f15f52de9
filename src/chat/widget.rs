//! Widget settings: the look and behaviour of a site's embeddable chat widget, and its business
//! hours.
//!
//! | original action | here |
//! |---|---|
//! | `getWidgetSettings(siteId)` | [`Widget::get`] (get-or-create, one row under concurrency) |
//! | `updateWidgetSettings(siteId, partial)` | [`Widget::update`] with a [`WidgetSettingsPatch`] (upsert on `site_id`) |
//! | `getPublicWidgetSettings(siteId)` | [`Widget::public`] (works with the anon key) |
//! | `isWithinBusinessHours(siteId)` | [`Widget::within_business_hours`] |
//!
//! ```no_run
//! # async fn demo(chat: livechat::chat::Chat) -> livechat::Result<()> {
//! use livechat::chat::widget::WidgetSettingsPatch;
//! use uuid::Uuid;
//!
//! let site = Uuid::parse_str("b0000000-0000-4000-8000-000000000001").expect("a uuid");
//! let settings = chat.widget().get(site).await?;
//! chat.widget()
//!     .update(site, WidgetSettingsPatch::default().primary_color("#0f766e").language("fr"))
//!     .await?;
//! let now = chat.widget().within_business_hours(site).await?;
//! if !now.open {
//!     println!("closed; next opening {:?}", now.next_open_at.map(|t| t.to_rfc3339()));
//! }
//! # Ok(()) }
//! ```

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::business_hours::{parse_timezone, Availability, BusinessHours};
use super::entity_views::{
    at_least, hex_color, into_future, non_blank_opt, not_empty_patch, patch_setters,
    PublicWidgetSettings,
};
use super::models::{WidgetPosition, WidgetSettings};
use super::Chat;
use crate::{Error, ErrorKind, Result};

const TABLE: &str = "mod_chat_widget_settings";

/// The widget-settings actions; get it from [`Chat::widget`].
#[derive(Debug, Clone, Copy)]
pub struct Widget<'a> {
    pub(crate) chat: &'a Chat,
}

/// The settings columns [`Widget::update`] may change; unset fields are left alone. Ids,
/// `site_id` and timestamps are not settings and cannot be set.
///
/// Validated before any request ([`ErrorKind::InvalidInput`]):
/// colours are `#rgb`, `#rgba`, `#rrggbb` or `#rrggbbaa`; `launcher_size` and
/// `max_file_size_mb` are at least 1; `border_radius` and `auto_open_delay_seconds` are not
/// negative; `timezone` is an IANA zone name; `business_hours` is a schedule
/// [`BusinessHours::from_json`] accepts; `custom_translations` is a JSON object; `language` is
/// not blank; and the patch sets at least one field.
///
/// ```
/// use livechat::chat::widget::WidgetSettingsPatch;
/// use serde_json::json;
///
/// let patch = WidgetSettingsPatch::default()
///     .business_hours_enabled(true)
///     .business_hours(json!({"monday": {"enabled": true, "start": "08:00", "end": "16:00"}}))
///     .timezone("Europe/Paris")
///     .allowed_domains(["shop.example"])
///     .clear_logo_url();
/// assert_eq!(serde_json::to_value(&patch).unwrap()["logo_url"], json!(null));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[allow(missing_docs)]
pub struct WidgetSettingsPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_color: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_color: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<WidgetPosition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launcher_icon: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launcher_size: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub border_radius: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub z_index: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company_name: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub welcome_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub away_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_chat_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_chat_name_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_chat_email_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_chat_phone_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_chat_phone_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_chat_message_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_chat_department_selector: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_hours_enabled: Option<bool>,
    /// The weekly schedule, `{"monday": {"enabled": true, "start": "09:00", "end": "17:00"}, …}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_hours: Option<Value>,
    /// IANA time zone of the schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_open_delay_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub show_agent_avatar: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub show_agent_name: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub show_typing_indicator: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_file_uploads: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_emoji: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_sound_notifications: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_satisfaction_rating: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_translations: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whatsapp_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whatsapp_phone_number: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whatsapp_phone_number_id: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whatsapp_business_account_id: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whatsapp_welcome_template: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_domains: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_ips: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_file_size_mb: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_file_types: Option<Vec<String>>,
}

patch_setters!(WidgetSettingsPatch {
    primary_color: String,
    text_color: String,
    position: WidgetPosition,
    launcher_icon: String,
    launcher_size: i32,
    border_radius: i32,
    z_index: i32,
    welcome_message: String,
    away_message: String,
    offline_message: String,
    pre_chat_enabled: bool,
    pre_chat_name_required: bool,
    pre_chat_email_required: bool,
    pre_chat_phone_enabled: bool,
    pre_chat_phone_required: bool,
    pre_chat_message_required: bool,
    pre_chat_department_selector: bool,
    business_hours_enabled: bool,
    business_hours: Value,
    timezone: String,
    auto_open_delay_seconds: i32,
    show_agent_avatar: bool,
    show_agent_name: bool,
    show_typing_indicator: bool,
    enable_file_uploads: bool,
    enable_emoji: bool,
    enable_sound_notifications: bool,
    enable_satisfaction_rating: bool,
    language: String,
    custom_translations: Value,
    whatsapp_enabled: bool,
    max_file_size_mb: i32,
} nullable {
    company_name, clear_company_name: String,
    logo_url, clear_logo_url: String,
    whatsapp_phone_number, clear_whatsapp_phone_number: String,
    whatsapp_phone_number_id, clear_whatsapp_phone_number_id: String,
    whatsapp_business_account_id, clear_whatsapp_business_account_id: String,
    whatsapp_welcome_template, clear_whatsapp_welcome_template: String,
});

fn strings<I, S>(values: I) -> Option<Vec<String>>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    Some(values.into_iter().map(Into::into).collect())
}

impl WidgetSettingsPatch {
    /// Sets `allowed_domains` (replacing the list).
    pub fn allowed_domains<I: IntoIterator<Item = S>, S: Into<String>>(mut self, v: I) -> Self {
        self.allowed_domains = strings(v);
        self
    }

    /// Sets `blocked_ips` (replacing the list).
    pub fn blocked_ips<I: IntoIterator<Item = S>, S: Into<String>>(mut self, v: I) -> Self {
        self.blocked_ips = strings(v);
        self
    }

    /// Sets `allowed_file_types` (MIME types, replacing the list).
    pub fn allowed_file_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, v: I) -> Self {
        self.allowed_file_types = strings(v);
        self
    }

    /// Checks the patch as described on [`WidgetSettingsPatch`].
    pub fn validate(&self) -> Result<()> {
        not_empty_patch("widget settings patch", self)?;
        hex_color("primary_color", self.primary_color.as_deref())?;
        hex_color("text_color", self.text_color.as_deref())?;
        at_least("launcher_size", self.launcher_size, 1)?;
        at_least("border_radius", self.border_radius, 0)?;
        at_least("auto_open_delay_seconds", self.auto_open_delay_seconds, 0)?;
        at_least("max_file_size_mb", self.max_file_size_mb, 1)?;
        non_blank_opt("language", self.language.as_deref())?;
        non_blank_opt("timezone", self.timezone.as_deref())?;
        if let Some(tz) = &self.timezone {
            parse_timezone(Some(tz))
                .map_err(|e| Error::invalid_input(format!("timezone: {e}")).with_source(e))?;
        }
        if let Some(hours) = &self.business_hours {
            BusinessHours::from_json(hours)
                .map_err(|e| Error::invalid_input(format!("business_hours: {e}")).with_source(e))?;
        }
        if let Some(t) = &self.custom_translations {
            if !t.is_object() {
                return Err(Error::invalid_input(
                    "custom_translations must be a JSON object",
                ));
            }
        }
        Ok(())
    }
}

impl<'a> Widget<'a> {
    /// The site's settings row, created with the column defaults when the site has none yet
    /// (`mod_chat_get_widget_settings`; concurrent first calls create one row). A site that
    /// does not exist or is not visible is
    /// [`ChatError::SiteNotFound`](super::ChatError::SiteNotFound).
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid) -> livechat::Result<()> {
    /// let s = chat.widget().get(site).await?;
    /// println!("{:?}", s.primary_color);
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "widget.get", level = "debug", skip(self))]
    pub async fn get(self, site_id: Uuid) -> Result<WidgetSettings> {
        self.chat
            .client()
            .rpc(
                "mod_chat_get_widget_settings",
                &json!({ "p_site_id": site_id }),
            )
            .call()
            .await
    }

    /// Writes the fields set in `patch` to the site's settings, creating the row (with the
    /// defaults for every other column) when it does not exist: one upsert on `site_id`.
    /// Returns the row as it is afterwards.
    ///
    /// The patch is validated first (see [`WidgetSettingsPatch`]). A site that does not exist
    /// is [`ErrorKind::NotFound`]; a site of another agency is refused by row-level security
    /// ([`ErrorKind::Forbidden`]) and nothing is written.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid) -> livechat::Result<()> {
    /// use livechat::chat::widget::WidgetSettingsPatch;
    /// use livechat::chat::models::WidgetPosition;
    /// chat.widget()
    ///     .update(site, WidgetSettingsPatch::default().position(WidgetPosition::BottomLeft))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "widget.update", level = "debug", skip(self))]
    pub async fn update(self, site_id: Uuid, patch: WidgetSettingsPatch) -> Result<WidgetSettings> {
        patch.validate()?;
        #[derive(Serialize)]
        struct Row<'p> {
            site_id: Uuid,
            #[serde(flatten)]
            patch: &'p WidgetSettingsPatch,
        }
        let result = self
            .chat
            .client()
            .from(TABLE)
            .upsert(&Row {
                site_id,
                patch: &patch,
            })
            .on_conflict("site_id")
            .single()
            .await;
        result.map_err(|e| {
            if e.kind() == ErrorKind::Conflict && e.code() == Some("23503") {
                Error::new(ErrorKind::NotFound, format!("site {site_id} not found")).with_source(e)
            } else {
                e
            }
        })
    }

    /// The settings an anonymous widget may see ([`PublicWidgetSettings`]: no ids, no WhatsApp
    /// account ids, no blocked IPs), through the `SECURITY DEFINER` function
    /// `mod_chat_get_public_widget_settings`, so it works with the anon key alone. The site's
    /// default settings row is created when missing. A site that does not exist is
    /// [`ChatError::SiteNotFound`](super::ChatError::SiteNotFound).
    ///
    /// ```no_run
    /// # async fn demo(site: uuid::Uuid) -> livechat::Result<()> {
    /// use livechat::{Client, Config, ApiKeyKind};
    /// use livechat::chat::Chat;
    /// let anon = Chat::new(Client::new(Config::from_env_with(ApiKeyKind::Anon)?)?);
    /// let public = anon.widget().public(site).await?;
    /// println!("{:?}", public.welcome_message);
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "widget.public", level = "debug", skip(self))]
    pub async fn public(self, site_id: Uuid) -> Result<PublicWidgetSettings> {
        self.chat
            .client()
            .rpc(
                "mod_chat_get_public_widget_settings",
                &json!({ "p_site_id": site_id }),
            )
            .call()
            .await
    }

    /// Starts checking whether the site is within its business hours, now or at the instant
    /// given with [`BusinessHoursRequest::at`]. `.await` the builder.
    ///
    /// Open when business hours are disabled. Otherwise the weekly schedule is evaluated in the
    /// site's IANA time zone (default `Africa/Lusaka`), daylight-saving correct; when closed,
    /// [`Availability::next_open_at`] is the next opening instant (searched across the
    /// following days; `None` when no day is enabled), and when open
    /// [`Availability::closes_at`] is the closing instant. Reads the public settings with
    /// [`Widget::public`] (one request; works with the anon key, and creates the site's default
    /// settings row when missing, as that does). A stored schedule or time zone that does not
    /// parse is an [`ErrorKind::Decode`] error naming the problem.
    ///
    /// ```no_run
    /// # async fn demo(chat: livechat::chat::Chat, site: uuid::Uuid) -> livechat::Result<()> {
    /// let a = chat.widget().within_business_hours(site).await?;
    /// match (a.open, a.next_open_at) {
    ///     (true, _) => println!("open"),
    ///     (false, Some(t)) => println!("opens at {}", t.to_rfc3339()),
    ///     (false, None) => println!("closed, no opening hours"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn within_business_hours(&self, site_id: Uuid) -> BusinessHoursRequest<'a> {
        BusinessHoursRequest {
            chat: self.chat,
            site_id,
            at: None,
        }
    }
}

/// A business-hours check being built by [`Widget::within_business_hours`]; `.await` it or call
/// [`BusinessHoursRequest::send`].
#[derive(Debug, Clone)]
#[must_use = "nothing is fetched until the builder is awaited"]
pub struct BusinessHoursRequest<'a> {
    chat: &'a Chat,
    site_id: Uuid,
    at: Option<DateTime<Utc>>,
}

impl<'a> BusinessHoursRequest<'a> {
    /// Evaluates at this instant instead of now.
    pub fn at(mut self, instant: DateTime<Utc>) -> Self {
        self.at = Some(instant);
        self
    }

    /// Fetches the public settings and evaluates the schedule.
    #[tracing::instrument(name = "widget.within_business_hours", level = "debug", skip(self), fields(site_id = %self.site_id))]
    pub async fn send(self) -> Result<Availability> {
        let now = self.at.unwrap_or_else(Utc::now);
        let settings = Widget { chat: self.chat }.public(self.site_id).await?;
        evaluate(&settings, now)
    }
}

into_future!(BusinessHoursRequest, Availability);

/// The availability the public settings give at `now`.
fn evaluate(settings: &PublicWidgetSettings, now: DateTime<Utc>) -> Result<Availability> {
    if settings.business_hours_enabled != Some(true) {
        return Ok(Availability {
            open: true,
            closes_at: None,
            next_open_at: None,
        });
    }
    let empty = json!({});
    let hours = BusinessHours::from_json(settings.business_hours.as_ref().unwrap_or(&empty))
        .map_err(|e| Error::decode(format!("the site's business hours: {e}"), e))?;
    let tz = parse_timezone(settings.timezone.as_deref())
        .map_err(|e| Error::decode(format!("the site's time zone: {e}"), e))?;
    Ok(hours.evaluate(tz, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(enabled: bool, hours: Value, tz: Option<&str>) -> PublicWidgetSettings {
        serde_json::from_value(json!({
            "business_hours_enabled": enabled,
            "business_hours": hours,
            "timezone": tz,
        }))
        .unwrap()
    }

    #[test]
    fn disabled_business_hours_are_open() {
        let a = evaluate(&public(false, json!({}), None), Utc::now()).unwrap();
        assert!(a.open);
        assert_eq!(a.next_open_at, None);
    }

    #[test]
    fn enabled_without_a_zone_uses_lusaka() {
        let s = public(
            true,
            json!({"monday": {"enabled": true, "start": "09:00", "end": "17:00"}}),
            None,
        );
        // Monday 2026-11-30 06:00 UTC = 08:00 in Lusaka.
        let now = DateTime::parse_from_rfc3339("2026-11-30T06:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let a = evaluate(&s, now).unwrap();
        assert!(!a.open);
        assert_eq!(
            a.next_open_at.unwrap().to_rfc3339(),
            "2026-11-30T09:00:00+02:00"
        );
    }

    #[test]
    fn a_broken_stored_schedule_is_a_decode_error() {
        let s = public(true, json!({"monday": {"enabled": true}}), None);
        let e = evaluate(&s, Utc::now()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode);
        let s = public(true, json!({}), Some("Mars/Olympus"));
        assert_eq!(
            evaluate(&s, Utc::now()).unwrap_err().kind(),
            ErrorKind::Decode
        );
    }

    #[test]
    fn patches_are_validated() {
        let bad = [
            WidgetSettingsPatch::default(),
            WidgetSettingsPatch::default().primary_color("blue"),
            WidgetSettingsPatch::default().launcher_size(0),
            WidgetSettingsPatch::default().border_radius(-1),
            WidgetSettingsPatch::default().timezone("Mars/Olympus"),
            WidgetSettingsPatch::default().business_hours(json!([1])),
            WidgetSettingsPatch::default().custom_translations(json!("x")),
            WidgetSettingsPatch::default().language(" "),
            WidgetSettingsPatch::default().max_file_size_mb(0),
        ];
        for p in bad {
            assert_eq!(
                p.validate().unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{p:?}"
            );
        }
        assert!(WidgetSettingsPatch::default()
            .text_color("#FFF")
            .timezone("America/New_York")
            .validate()
            .is_ok());
    }
}
