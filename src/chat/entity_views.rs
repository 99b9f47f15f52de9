//! Composite views returned by the agent, department and widget actions: rows with their
//! related rows, figures computed by the SQL functions of the migrations and the public widget
//! settings (pages of visitors are [`ListPage`](super::views::ListPage)s).
//!
//! Every type decodes strictly (a missing required field or a value outside a CHECK list is an
//! error, never a silent default); extra keys the server may add later are ignored, which for
//! [`PublicWidgetSettings`] also means that nothing but its public fields can ever reach the
//! caller.
//!
//! ```no_run
//! # async fn demo(chat: livechat::chat::Chat) -> livechat::Result<()> {
//! use livechat::chat::entity_views::AgentWithDepartment;
//!
//! let site = uuid::Uuid::parse_str("b0000000-0000-4000-8000-000000000001").expect("a uuid");
//! let agents: Vec<AgentWithDepartment> = chat.agents().list(site).await?;
//! for a in &agents {
//!     let department = a.department.as_ref().map(|d| d.name.as_str()).unwrap_or("-");
//!     println!("{} ({department})", a.agent.display_name);
//! }
//! # Ok(()) }
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::models::{Agent, AgentStatus, Department, WidgetPosition};
use crate::{Client, Error, Result};

/// An agent with its department (`mod_chat_agents` embedding `mod_chat_departments`), as
/// [`Agents::list`](super::agents::Agents::list) and [`Agents::get`](super::agents::Agents::get)
/// return it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgentWithDepartment {
    /// The agent's row.
    #[serde(flatten)]
    pub agent: Agent,
    /// Its department, `None` when it has none.
    pub department: Option<Department>,
}

/// A department with the number of its active agents, as
/// [`Departments::list`](super::departments::Departments::list) returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DepartmentWithAgentCount {
    /// The department's row.
    #[serde(flatten)]
    pub department: Department,
    /// Its agents whose `is_active` is true (soft-deleted agents are not counted).
    pub agent_count: u32,
}

/// One agent's figures over a date range, one element of
/// [`Agents::performance`](super::agents::Agents::performance) (the row shape of the SQL function
/// `mod_chat_agent_performance`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgentPerformance {
    /// The agent.
    pub agent_id: Uuid,
    /// Its display name.
    pub display_name: String,
    /// Its avatar.
    pub avatar_url: Option<String>,
    /// Its availability now.
    pub status: AgentStatus,
    /// Its department.
    pub department_id: Option<Uuid>,
    /// Conversations assigned to it and created in the range.
    pub total_chats: i32,
    /// Of those, the resolved or closed ones.
    pub resolved_chats: i32,
    /// Average first response time of those conversations, seconds (0 when none).
    pub avg_first_response_seconds: i32,
    /// Average rating of those conversations, two decimals (0 when none was rated).
    pub avg_rating: f64,
    /// How many of those conversations were rated.
    pub rating_count: i32,
    /// Conversations holding one of its slots now (`current_chat_count`).
    pub current_load: i32,
    /// Its capacity (`max_concurrent_chats`).
    pub max_load: i32,
}

/// The widget settings an anonymous visitor may see: appearance, branding, pre-chat form,
/// business hours, behaviour, language, the WhatsApp switch and phone number, allowed domains
/// and file limits. No ids, no WhatsApp account ids, no blocked IPs.
///
/// Returned by [`Widget::public`](super::widget::Widget::public), which works with the anon key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[allow(missing_docs)]
pub struct PublicWidgetSettings {
    pub primary_color: Option<String>,
    pub text_color: Option<String>,
    pub position: Option<WidgetPosition>,
    pub launcher_icon: Option<String>,
    pub launcher_size: Option<i32>,
    pub border_radius: Option<i32>,
    pub z_index: Option<i32>,
    pub company_name: Option<String>,
    pub welcome_message: Option<String>,
    pub away_message: Option<String>,
    pub offline_message: Option<String>,
    pub logo_url: Option<String>,
    pub pre_chat_enabled: Option<bool>,
    pub pre_chat_name_required: Option<bool>,
    pub pre_chat_email_required: Option<bool>,
    pub pre_chat_phone_enabled: Option<bool>,
    pub pre_chat_phone_required: Option<bool>,
    pub pre_chat_message_required: Option<bool>,
    pub pre_chat_department_selector: Option<bool>,
    pub business_hours_enabled: Option<bool>,
    /// The weekly schedule JSON (see [`BusinessHours`](super::business_hours::BusinessHours)).
    pub business_hours: Option<Value>,
    /// IANA time zone of the schedule.
    pub timezone: Option<String>,
    pub auto_open_delay_seconds: Option<i32>,
    pub show_agent_avatar: Option<bool>,
    pub show_agent_name: Option<bool>,
    pub show_typing_indicator: Option<bool>,
    pub enable_file_uploads: Option<bool>,
    pub enable_emoji: Option<bool>,
    pub enable_sound_notifications: Option<bool>,
    pub enable_satisfaction_rating: Option<bool>,
    pub language: Option<String>,
    pub custom_translations: Option<Value>,
    pub whatsapp_enabled: Option<bool>,
    pub whatsapp_phone_number: Option<String>,
    pub allowed_domains: Option<Vec<String>>,
    pub max_file_size_mb: Option<i32>,
    pub allowed_file_types: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------------------------
// Shared by the action modules of this crate (not public API).
// ---------------------------------------------------------------------------------------------

/// Implements `IntoFuture` for a request builder with an `async fn send(self)`, so that the
/// builder can be awaited directly.
macro_rules! into_future {
    ($builder:ident, $out:ty) => {
        impl<'a> std::future::IntoFuture for $builder<'a> {
            type Output = $crate::Result<$out>;
            type IntoFuture = futures::future::BoxFuture<'a, $crate::Result<$out>>;

            fn into_future(self) -> Self::IntoFuture {
                Box::pin(self.send())
            }
        }
    };
}
pub(crate) use into_future;

/// Generates the chainable setters of a typed patch: `field(value)` for every listed field, and
/// for nullable columns also `clear_field()`, which sets the column to NULL.
macro_rules! patch_setters {
    (
        $ty:ident {
            $( $field:ident : $t:ty ),* $(,)?
        }
        nullable {
            $( $nfield:ident, $clear:ident : $nt:ty ),* $(,)?
        }
    ) => {
        impl $ty {
            $(
                #[doc = concat!("Sets `", stringify!($field), "`.")]
                pub fn $field(mut self, value: impl Into<$t>) -> Self {
                    self.$field = Some(value.into());
                    self
                }
            )*
            $(
                #[doc = concat!("Sets `", stringify!($nfield), "`.")]
                pub fn $nfield(mut self, value: impl Into<$nt>) -> Self {
                    self.$nfield = Some(Some(value.into()));
                    self
                }

                #[doc = concat!("Sets `", stringify!($nfield), "` to NULL.")]
                pub fn $clear(mut self) -> Self {
                    self.$nfield = Some(None);
                    self
                }
            )*
        }
    };
}
pub(crate) use patch_setters;

/// Updates the row of `table` whose `id` is `id` with `change` and returns it as it is
/// afterwards. No visible row is [`ErrorKind::NotFound`](crate::ErrorKind::NotFound).
pub(crate) async fn update_by_id<B, T>(
    client: &Client,
    table: &str,
    id: Uuid,
    change: &B,
) -> Result<T>
where
    B: Serialize + ?Sized,
    T: DeserializeOwned,
{
    client
        .from(table)
        .eq("id", id)
        .update(change)
        .single()
        .await
}

/// Deletes the row of `table` whose `id` is `id`. No visible row is
/// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) (nothing is deleted).
pub(crate) async fn delete_by_id(client: &Client, table: &str, id: Uuid) -> Result<()> {
    client
        .from(table)
        .eq("id", id)
        .delete()
        .select("id")
        .single::<serde::de::IgnoredAny>()
        .await
        .map(|_| ())
}

/// Refuses an empty or all-whitespace text.
pub(crate) fn non_blank(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid_input(format!("{field} must not be empty")));
    }
    Ok(())
}

/// Refuses an empty text when one is given.
pub(crate) fn non_blank_opt(field: &str, value: Option<&str>) -> Result<()> {
    value.map_or(Ok(()), |v| non_blank(field, v))
}

/// Refuses a value below `min`.
pub(crate) fn at_least(field: &str, value: Option<i32>, min: i32) -> Result<()> {
    match value {
        Some(v) if v < min => Err(Error::invalid_input(format!(
            "{field} must be at least {min}, got {v}"
        ))),
        _ => Ok(()),
    }
}

/// Refuses a patch that sets nothing (its JSON form is `{}`).
pub(crate) fn not_empty_patch<P: Serialize>(what: &str, patch: &P) -> Result<()> {
    let v = serde_json::to_value(patch).map_err(|e| {
        Error::invalid_input(format!("could not serialize the {what}")).with_source(e)
    })?;
    if v.as_object().is_some_and(|o| o.is_empty()) {
        return Err(Error::invalid_input(format!(
            "the {what} changes nothing: set at least one field"
        )));
    }
    Ok(())
}

/// Accepts `#rgb`, `#rgba`, `#rrggbb` and `#rrggbbaa` (hex digits of either case).
pub(crate) fn hex_color(field: &str, value: Option<&str>) -> Result<()> {
    let Some(v) = value else { return Ok(()) };
    let ok = v.strip_prefix('#').is_some_and(|h| {
        matches!(h.len(), 3 | 4 | 6 | 8) && h.chars().all(|c| c.is_ascii_hexdigit())
    });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "{field} must be a hex colour such as #2563eb, got {v:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_colours() {
        for ok in ["#fff", "#FFFF", "#2563eb", "#2563EB80"] {
            assert!(hex_color("c", Some(ok)).is_ok(), "{ok}");
        }
        for bad in ["fff", "#ff", "#12345", "#gggggg", "", "#2563eb ", "red"] {
            let e = hex_color("c", Some(bad)).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{bad}");
        }
        assert!(hex_color("c", None).is_ok());
    }

    #[test]
    fn blank_texts_and_small_numbers_are_refused() {
        assert!(non_blank("name", " \t").is_err());
        assert!(non_blank("name", "x").is_ok());
        assert!(non_blank_opt("name", None).is_ok());
        assert!(at_least("n", Some(0), 1).is_err());
        assert!(at_least("n", Some(1), 1).is_ok());
        assert!(at_least("n", None, 1).is_ok());
        assert!(not_empty_patch("patch", &serde_json::json!({})).is_err());
        assert!(not_empty_patch("patch", &serde_json::json!({"a": null})).is_ok());
    }

    #[test]
    fn an_agent_with_its_department_decodes_from_an_embedded_row() {
        let row = serde_json::json!({
            "id": "e0000000-0000-4000-8000-000000000101",
            "site_id": "b0000000-0000-4000-8000-000000000001",
            "user_id": "c0000000-0000-4000-8000-000000000001",
            "display_name": "Alice", "role": "admin", "status": "online",
            "avg_rating": 4.5, "max_concurrent_chats": 5,
            "department": {
                "id": "d0000000-0000-4000-8000-000000000101",
                "site_id": "b0000000-0000-4000-8000-000000000001",
                "name": "Sales"
            }
        });
        let a: AgentWithDepartment = serde_json::from_value(row).unwrap();
        assert_eq!(a.agent.display_name, "Alice");
        assert_eq!(a.agent.avg_rating, Some(4.5));
        assert_eq!(a.department.unwrap().name, "Sales");
    }

    #[test]
    fn public_settings_never_carry_ids() {
        let v = serde_json::json!({
            "id": "f0000000-0000-4000-8000-000000000001",
            "site_id": "b0000000-0000-4000-8000-000000000001",
            "whatsapp_business_account_id": "secret",
            "primary_color": "#fff"
        });
        let p: PublicWidgetSettings = serde_json::from_value(v).unwrap();
        let back = serde_json::to_value(&p).unwrap();
        let keys: Vec<_> = back.as_object().unwrap().keys().cloned().collect();
        assert!(!keys.iter().any(|k| k.ends_with("id")), "{keys:?}");
    }
}
