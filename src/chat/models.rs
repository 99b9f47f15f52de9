//! Typed rows of the `mod_chat_*` tables, column for column as in the platform's database
//! contract, and the enums of their CHECK lists.
//!
//! Decoding is strict where it matters: a value outside a CHECK list is an error that names the
//! value (serde's "unknown variant `x`, expected one of …"), never a silent default. Columns the
//! platform may add later are ignored.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

macro_rules! check_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value of the CHECK list, in the contract's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The database text of this value.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownValue { kind: stringify!($name), value: other.to_string() }),
                }
            }
        }
    };
}

/// A text that is not one of an enum's allowed values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} value {value:?}")]
pub struct UnknownValue {
    /// The enum's name, e.g. `ConversationStatus`.
    pub kind: &'static str,
    /// The value that was refused.
    pub value: String,
}

check_enum! {
    /// `mod_chat_agents.role`.
    AgentRole { /** agent */ Agent = "agent", /** supervisor */ Supervisor = "supervisor", /** admin */ Admin = "admin" }
}
check_enum! {
    /// `mod_chat_agents.status`.
    AgentStatus { /** online */ Online = "online", /** away */ Away = "away", /** busy */ Busy = "busy", /** offline */ Offline = "offline" }
}
check_enum! {
    /// `mod_chat_widget_settings.position`.
    WidgetPosition { /** bottom-right */ BottomRight = "bottom-right", /** bottom-left */ BottomLeft = "bottom-left" }
}
check_enum! {
    /// `channel` of visitors and conversations.
    Channel { /** the website widget */ Widget = "widget", /** WhatsApp */ Whatsapp = "whatsapp", /** the API */ Api = "api" }
}
check_enum! {
    /// `mod_chat_conversations.status`.
    ConversationStatus {
        /** waiting for an agent */ Pending = "pending",
        /** an agent is on it */ Active = "active",
        /** waiting for the visitor */ Waiting = "waiting",
        /** resolved */ Resolved = "resolved",
        /** closed */ Closed = "closed",
        /** nobody answered */ Missed = "missed",
    }
}
check_enum! {
    /// `mod_chat_conversations.priority`.
    Priority { /** low */ Low = "low", /** normal */ Normal = "normal", /** high */ High = "high", /** urgent */ Urgent = "urgent" }
}
check_enum! {
    /// `sender_type` of messages and `last_message_by` of conversations.
    SenderType { /** the visitor */ Visitor = "visitor", /** an agent */ Agent = "agent", /** the system */ System = "system", /** an AI responder */ Ai = "ai" }
}
check_enum! {
    /// `mod_chat_messages.content_type`.
    ContentType {
        /** text */ Text = "text", /** image */ Image = "image", /** file */ File = "file",
        /** audio */ Audio = "audio", /** video */ Video = "video", /** location */ Location = "location",
        /** system */ System = "system", /** internal note */ Note = "note",
        /** WhatsApp template */ WhatsappTemplate = "whatsapp_template",
    }
}
check_enum! {
    /// `mod_chat_messages.status`.
    MessageStatus { /** sending */ Sending = "sending", /** sent */ Sent = "sent", /** delivered */ Delivered = "delivered", /** read */ Read = "read", /** failed */ Failed = "failed" }
}

impl ContentType {
    /// Image, file, audio and video messages carry a file (sent with
    /// [`Messages::send_file`](super::messages::Messages::send_file)).
    ///
    /// ```
    /// use livechat::chat::models::ContentType;
    /// assert!(ContentType::Audio.is_file());
    /// assert!(!ContentType::Note.is_file());
    /// ```
    pub fn is_file(&self) -> bool {
        matches!(
            self,
            ContentType::Image | ContentType::File | ContentType::Audio | ContentType::Video
        )
    }
}

impl ConversationStatus {
    /// Pending, active and waiting conversations hold a slot of their agent
    /// (`current_chat_count`).
    pub fn holds_agent_slot(&self) -> bool {
        matches!(
            self,
            ConversationStatus::Pending | ConversationStatus::Active | ConversationStatus::Waiting
        )
    }
}

/// A row of `mod_chat_departments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Department {
    /// Primary key.
    pub id: Uuid,
    /// The site.
    pub site_id: Uuid,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// The site's default department.
    pub is_default: Option<bool>,
    /// Active.
    pub is_active: Option<bool>,
    /// New conversations of this department are assigned automatically.
    pub auto_assign: Option<bool>,
    /// Default capacity of its agents.
    pub max_concurrent_chats: Option<i32>,
    /// Display order.
    pub sort_order: Option<i32>,
    /// Created.
    pub created_at: Option<DateTime<Utc>>,
    /// Last updated.
    pub updated_at: Option<DateTime<Utc>>,
}

/// A row of `mod_chat_agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Agent {
    /// Primary key.
    pub id: Uuid,
    /// The site.
    pub site_id: Uuid,
    /// The Supabase auth user.
    pub user_id: Uuid,
    /// Name shown to visitors.
    pub display_name: String,
    /// Avatar.
    pub avatar_url: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Role.
    pub role: AgentRole,
    /// Availability.
    pub status: AgentStatus,
    /// Department.
    pub department_id: Option<Uuid>,
    /// Capacity.
    pub max_concurrent_chats: Option<i32>,
    /// Conversations holding a slot (pending, active, waiting).
    pub current_chat_count: Option<i32>,
    /// Conversations resolved.
    pub total_chats_handled: Option<i32>,
    /// Average response time.
    pub avg_response_time_seconds: Option<i32>,
    /// Average rating (NUMERIC(3,2)).
    pub avg_rating: Option<f64>,
    /// Number of ratings.
    pub total_ratings: Option<i32>,
    /// Active (false once deleted).
    pub is_active: Option<bool>,
    /// Last activity.
    pub last_active_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: Option<DateTime<Utc>>,
    /// Last updated.
    pub updated_at: Option<DateTime<Utc>>,
}

/// A row of `mod_chat_widget_settings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[allow(missing_docs)]
pub struct WidgetSettings {
    pub id: Uuid,
    pub site_id: Uuid,
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
    pub business_hours: Option<Value>,
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
    pub whatsapp_phone_number_id: Option<String>,
    pub whatsapp_business_account_id: Option<String>,
    pub whatsapp_welcome_template: Option<String>,
    pub allowed_domains: Option<Vec<String>>,
    pub blocked_ips: Option<Vec<String>>,
    pub max_file_size_mb: Option<i32>,
    pub allowed_file_types: Option<Vec<String>>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// A row of `mod_chat_visitors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[allow(missing_docs)]
pub struct Visitor {
    pub id: Uuid,
    pub site_id: Uuid,
    pub external_id: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub avatar_url: Option<String>,
    pub browser: Option<String>,
    pub os: Option<String>,
    pub device: Option<String>,
    /// INET, as PostgreSQL prints it.
    pub ip_address: Option<String>,
    pub country: Option<String>,
    pub city: Option<String>,
    pub current_page_url: Option<String>,
    pub current_page_title: Option<String>,
    pub referrer_url: Option<String>,
    pub landing_page_url: Option<String>,
    pub total_visits: Option<i32>,
    pub total_conversations: Option<i32>,
    pub total_messages: Option<i32>,
    pub first_seen_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub crm_contact_id: Option<Uuid>,
    pub tags: Option<Vec<String>>,
    pub notes: Option<String>,
    pub custom_data: Option<Value>,
    pub channel: Option<Channel>,
    pub whatsapp_phone: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// A row of `mod_chat_conversations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[allow(missing_docs)]
pub struct Conversation {
    pub id: Uuid,
    pub site_id: Uuid,
    pub visitor_id: Uuid,
    pub assigned_agent_id: Option<Uuid>,
    pub department_id: Option<Uuid>,
    pub status: ConversationStatus,
    pub priority: Option<Priority>,
    pub channel: Channel,
    pub subject: Option<String>,
    pub last_message_text: Option<String>,
    pub last_message_at: Option<DateTime<Utc>>,
    pub last_message_by: Option<SenderType>,
    pub message_count: Option<i32>,
    pub unread_agent_count: Option<i32>,
    pub unread_visitor_count: Option<i32>,
    pub first_response_time_seconds: Option<i32>,
    pub resolution_time_seconds: Option<i32>,
    pub wait_time_seconds: Option<i32>,
    pub rating: Option<i32>,
    pub rating_comment: Option<String>,
    pub rated_at: Option<DateTime<Utc>>,
    pub tags: Option<Vec<String>>,
    pub internal_notes: Option<String>,
    pub metadata: Option<Value>,
    pub whatsapp_conversation_id: Option<String>,
    pub whatsapp_window_expires_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// A row of `mod_chat_messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[allow(missing_docs)]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub site_id: Uuid,
    pub sender_type: SenderType,
    pub sender_id: Option<String>,
    pub sender_name: Option<String>,
    pub sender_avatar: Option<String>,
    pub content: Option<String>,
    pub content_type: Option<ContentType>,
    pub file_url: Option<String>,
    pub file_name: Option<String>,
    pub file_size: Option<i32>,
    pub file_mime_type: Option<String>,
    pub status: Option<MessageStatus>,
    pub is_internal_note: Option<bool>,
    pub whatsapp_message_id: Option<String>,
    pub whatsapp_status: Option<String>,
    pub is_ai_generated: Option<bool>,
    /// NUMERIC(3,2).
    pub ai_confidence: Option<f64>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// A row of `mod_chat_canned_responses`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[allow(missing_docs)]
pub struct CannedResponse {
    pub id: Uuid,
    pub site_id: Uuid,
    pub title: String,
    pub content: String,
    pub shortcut: Option<String>,
    pub category: Option<String>,
    pub tags: Option<Vec<String>>,
    pub usage_count: Option<i32>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_by: Option<Uuid>,
    pub is_shared: Option<bool>,
    pub is_active: Option<bool>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// A row of `mod_chat_knowledge_base`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[allow(missing_docs)]
pub struct KnowledgeBaseArticle {
    pub id: Uuid,
    pub site_id: Uuid,
    pub title: String,
    pub content: String,
    pub category: Option<String>,
    pub tags: Option<Vec<String>>,
    pub is_active: Option<bool>,
    pub usage_count: Option<i32>,
    pub last_matched_at: Option<DateTime<Utc>>,
    pub created_by: Option<Uuid>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// A row of `mod_chat_analytics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[allow(missing_docs)]
pub struct Analytics {
    pub id: Uuid,
    pub site_id: Uuid,
    pub date: NaiveDate,
    pub total_conversations: Option<i32>,
    pub total_messages: Option<i32>,
    pub new_visitors: Option<i32>,
    pub returning_visitors: Option<i32>,
    pub widget_conversations: Option<i32>,
    pub whatsapp_conversations: Option<i32>,
    pub resolved_conversations: Option<i32>,
    pub missed_conversations: Option<i32>,
    pub avg_first_response_seconds: Option<i32>,
    pub avg_resolution_seconds: Option<i32>,
    pub avg_wait_seconds: Option<i32>,
    pub avg_messages_per_conversation: Option<f64>,
    pub avg_rating: Option<f64>,
    pub total_ratings: Option<i32>,
    pub satisfaction_score: Option<f64>,
    pub ai_auto_responses: Option<i32>,
    pub ai_resolved: Option<i32>,
    pub agent_id: Option<Uuid>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_enum_value_is_an_error_naming_it() {
        let e = serde_json::from_value::<ConversationStatus>(json!("archived")).unwrap_err();
        assert!(e.to_string().contains("archived"), "{e}");
        let e = "archived".parse::<ConversationStatus>().unwrap_err();
        assert_eq!(e.value, "archived");
    }

    #[test]
    fn enum_texts_round_trip() {
        for s in ContentType::ALL {
            assert_eq!(s.as_str().parse::<ContentType>().unwrap(), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
        assert_eq!(WidgetPosition::BottomLeft.as_str(), "bottom-left");
    }

    #[test]
    fn a_message_row_with_a_bad_sender_type_does_not_parse() {
        let row = json!({
            "id": "00000000-0000-4000-8000-000000000001",
            "conversation_id": "00000000-0000-4000-8000-000000000002",
            "site_id": "00000000-0000-4000-8000-000000000003",
            "sender_type": "robot", "content": "hi"
        });
        let e = serde_json::from_value::<Message>(row).unwrap_err();
        assert!(e.to_string().contains("robot"), "{e}");
    }
}
