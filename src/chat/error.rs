//! The chat actions' own failures, read from the stable key the SQL functions put in the
//! PostgREST error's `hint` (`livechat:<key>`; see `supabase/migrations/*_chat_functions.sql`).

use crate::Error;

/// What a chat action refused, when the database said why.
///
/// Get it with [`ChatError::of`]; the HTTP-level class stays available as
/// [`Error::kind`](crate::Error::kind) (`NotFound` for the `*NotFound` variants, `Conflict` for
/// the others, `InvalidInput` for [`ChatError::InvalidInput`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChatError {
    /// A value the action does not accept (empty message text, a bad role, …).
    InvalidInput,
    /// The site does not exist or is not visible to the caller.
    SiteNotFound,
    /// The conversation does not exist or is not visible to the caller.
    ConversationNotFound,
    /// The agent does not exist, is not visible, or belongs to another site.
    AgentNotFound,
    /// The department does not exist, is not visible, or belongs to another site.
    DepartmentNotFound,
    /// The visitor does not exist or is not visible to the caller.
    VisitorNotFound,
    /// The canned response does not exist or is not visible to the caller.
    CannedResponseNotFound,
    /// The agent already holds `max_concurrent_chats` conversations.
    AgentAtCapacity,
    /// The agent is not active (deleted).
    AgentInactive,
    /// The conversation is already assigned to this agent.
    AlreadyAssigned,
    /// The conversation's status does not allow this action.
    InvalidState,
    /// The default department cannot be deleted.
    DefaultDepartment,
    /// The database asked to retry (contention).
    Retry,
}

impl ChatError {
    /// The key after `livechat:` in the hint.
    pub fn key(self) -> &'static str {
        match self {
            ChatError::InvalidInput => "invalid_input",
            ChatError::SiteNotFound => "site_not_found",
            ChatError::ConversationNotFound => "conversation_not_found",
            ChatError::AgentNotFound => "agent_not_found",
            ChatError::DepartmentNotFound => "department_not_found",
            ChatError::VisitorNotFound => "visitor_not_found",
            ChatError::CannedResponseNotFound => "canned_response_not_found",
            ChatError::AgentAtCapacity => "agent_at_capacity",
            ChatError::AgentInactive => "agent_inactive",
            ChatError::AlreadyAssigned => "already_assigned",
            ChatError::InvalidState => "invalid_state",
            ChatError::DefaultDepartment => "default_department",
            ChatError::Retry => "retry",
        }
    }

    const ALL: [ChatError; 13] = [
        ChatError::InvalidInput,
        ChatError::SiteNotFound,
        ChatError::ConversationNotFound,
        ChatError::AgentNotFound,
        ChatError::DepartmentNotFound,
        ChatError::VisitorNotFound,
        ChatError::CannedResponseNotFound,
        ChatError::AgentAtCapacity,
        ChatError::AgentInactive,
        ChatError::AlreadyAssigned,
        ChatError::InvalidState,
        ChatError::DefaultDepartment,
        ChatError::Retry,
    ];

    /// Parses a hint such as `livechat:agent_at_capacity`.
    pub fn from_hint(hint: &str) -> Option<ChatError> {
        let key = hint.trim().strip_prefix("livechat:")?;
        ChatError::ALL.into_iter().find(|e| e.key() == key)
    }

    /// The chat failure behind an error, if the database named one.
    pub fn of(err: &Error) -> Option<ChatError> {
        let hint = err.postgrest()?.hint.as_deref()?;
        ChatError::from_hint(hint)
    }
}

impl std::fmt::Display for ChatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key().replace('_', " "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_round_trips_and_unknown_keys_are_none() {
        for e in ChatError::ALL {
            assert_eq!(
                ChatError::from_hint(&format!("livechat:{}", e.key())),
                Some(e)
            );
        }
        assert_eq!(ChatError::from_hint("livechat:nope"), None);
        assert_eq!(ChatError::from_hint("agent_at_capacity"), None);
    }
}
