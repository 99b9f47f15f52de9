//! Setup shared by `chat_conversations.rs` and `chat_concurrency.rs`: a fresh seeded local
//! stack per test, a superuser SQL connection to compare against, chat handles for the service
//! role and the seeded users, the agent-count invariant and a snapshot of the chat tables (the
//! seed's common ids and the counting proxy come from `entity`).
#![allow(dead_code)]

use livechat::chat::Chat;
use livechat::Client;
use livechat_stack::Stack;
use serde::de::DeserializeOwned;
use tokio_postgres::types::ToSql;

use crate::entity;
pub use crate::entity::{id, CountingProxy, ALICE, DAVE, SITE_1, SITE_2};

/// Beta Shop (agency B).
pub const SITE_3: &str = "b0000000-0000-4000-8000-000000000003";

/// Acme Store agents: alice (online, max 5, load 1), bob (online, max 3, load 1), carol (away,
/// max 4, load 0).
pub const AGENT_ALICE_1: &str = "e0000000-0000-4000-8000-000000000101";
pub const AGENT_BOB_1: &str = "e0000000-0000-4000-8000-000000000102";
pub const AGENT_CAROL_1: &str = "e0000000-0000-4000-8000-000000000103";
/// Acme Blog carol (online, max 2, load 1), department Editorial (no auto-assign).
pub const AGENT_CAROL_2: &str = "e0000000-0000-4000-8000-000000000203";
/// Beta Shop dave.
pub const AGENT_DAVE_3: &str = "e0000000-0000-4000-8000-000000000301";

pub const DEPT_SALES_1: &str = "d0000000-0000-4000-8000-000000000101";
pub const DEPT_SUPPORT_1: &str = "d0000000-0000-4000-8000-000000000102";
pub const DEPT_EDITORIAL_2: &str = "d0000000-0000-4000-8000-000000000202";

pub const VISITOR_MIA_1: &str = "10000000-0000-4000-8000-000000000101";
pub const VISITOR_NOAH_1: &str = "10000000-0000-4000-8000-000000000102";
pub const VISITOR_QUINN_2: &str = "10000000-0000-4000-8000-000000000201";
pub const VISITOR_RUTH_3: &str = "10000000-0000-4000-8000-000000000301";

/// Acme Store conversations: pending unassigned, active (alice), resolved (bob), closed (alice),
/// waiting (bob, WhatsApp), missed.
pub const CONV_PENDING_101: &str = "20000000-0000-4000-8000-000000000101";
pub const CONV_ACTIVE_102: &str = "20000000-0000-4000-8000-000000000102";
pub const CONV_RESOLVED_103: &str = "20000000-0000-4000-8000-000000000103";
pub const CONV_CLOSED_104: &str = "20000000-0000-4000-8000-000000000104";
pub const CONV_WAITING_105: &str = "20000000-0000-4000-8000-000000000105";
pub const CONV_MISSED_106: &str = "20000000-0000-4000-8000-000000000106";
/// Beta Shop, active, dave.
pub const CONV_BETA_301: &str = "20000000-0000-4000-8000-000000000301";

/// A message of conversation 102 (visitor, status delivered).
pub const MSG_102_LAST: &str = "30000000-0000-4000-8000-000000010205";
/// The image message of conversation 105.
pub const MSG_105_IMAGE: &str = "30000000-0000-4000-8000-000000010502";

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The service-role key (bypasses RLS).
    Service,
    /// alice, owner of agency A (sites 1 and 2).
    Alice,
    /// dave, owner of agency B (site 3).
    Dave,
}

/// The two callers every action is checked with.
pub const CALLERS: [Who; 2] = [Who::Service, Who::Alice];

pub struct Env {
    pub stack: Stack,
    pub db: tokio_postgres::Client,
    pub service: Client,
    pub anon: Client,
}

pub async fn seeded() -> Env {
    let (stack, db) = entity::seeded_stack_and_db().await;
    let service = entity::client(&stack.url(), stack.service_role_key());
    let anon = entity::client(&stack.url(), stack.anon_key());
    Env {
        stack,
        db,
        service,
        anon,
    }
}

impl Env {
    /// A client for `who` on the stack's own URL.
    pub fn client(&self, who: Who) -> Client {
        match who {
            Who::Service => self.service.clone(),
            Who::Alice => self
                .anon
                .with_access_token(self.stack.user_token(ALICE.0, Some(ALICE.1))),
            Who::Dave => self
                .anon
                .with_access_token(self.stack.user_token(DAVE.0, Some(DAVE.1))),
        }
    }

    /// A client for `who` that talks to `base_url` (e.g. a [`CountingProxy`]).
    pub fn client_via(&self, who: Who, base_url: &str) -> Client {
        let key = match who {
            Who::Service => self.stack.service_role_key(),
            Who::Alice | Who::Dave => self.stack.anon_key(),
        };
        let c = entity::client(base_url, key);
        match who {
            Who::Service => c,
            Who::Alice => c.with_access_token(self.stack.user_token(ALICE.0, Some(ALICE.1))),
            Who::Dave => c.with_access_token(self.stack.user_token(DAVE.0, Some(DAVE.1))),
        }
    }

    pub fn chat(&self, who: Who) -> Chat {
        Chat::new(self.client(who))
    }

    /// Runs SQL whose single column is JSON text (`to_jsonb(x)::text`) and decodes every row.
    pub async fn json_rows<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Vec<T> {
        self.db
            .query(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| {
                let text: String = r.get(0);
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{sql}: {e}: {text}"))
            })
            .collect()
    }

    /// Like [`Env::json_rows`], for exactly one row.
    pub async fn json_row<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> T {
        let mut rows = self.json_rows(sql, params).await;
        assert_eq!(rows.len(), 1, "{sql}: expected one row");
        rows.remove(0)
    }

    /// The first column (text) of every row.
    pub async fn texts(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<String> {
        self.db
            .query(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect()
    }

    /// A single bigint.
    pub async fn int(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> i64 {
        self.db
            .query_one(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get::<_, i64>(0)
    }

    pub async fn exec(&self, sql: &str) {
        self.db
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A conversation row as SQL sees it.
    pub async fn conversation<T: DeserializeOwned>(&self, conversation_id: &str) -> T {
        self.json_row(
            "select to_jsonb(c)::text from mod_chat_conversations c where c.id = $1::text::uuid",
            &[&conversation_id],
        )
        .await
    }

    /// A message row as SQL sees it.
    pub async fn message<T: DeserializeOwned>(&self, message_id: &str) -> T {
        self.json_row(
            "select to_jsonb(m)::text from mod_chat_messages m where m.id = $1::text::uuid",
            &[&message_id],
        )
        .await
    }

    /// An agent's `current_chat_count`.
    pub async fn load(&self, agent_id: &str) -> i64 {
        self.int(
            "select coalesce(current_chat_count, 0)::bigint from mod_chat_agents \
             where id = $1::text::uuid",
            &[&agent_id],
        )
        .await
    }

    /// Checks the invariant on every agent: `current_chat_count` equals its pending, active and
    /// waiting conversations, and lies within `0..=max_concurrent_chats`.
    pub async fn assert_agent_counts(&self) {
        let rows = self
            .db
            .query(
                "select a.id::text, a.display_name, coalesce(a.current_chat_count, 0)::bigint,
                        coalesce(a.max_concurrent_chats, 5)::bigint,
                        (select count(*) from mod_chat_conversations c
                          where c.assigned_agent_id = a.id
                            and c.status in ('pending', 'active', 'waiting'))::bigint
                 from mod_chat_agents a order by a.id",
                &[],
            )
            .await
            .unwrap();
        for r in rows {
            let (agent, name, count, max, open): (String, String, i64, i64, i64) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            assert_eq!(
                count, open,
                "agent {name} {agent}: current_chat_count {count} but {open} open conversations"
            );
            assert!(
                (0..=max).contains(&count),
                "agent {name} {agent}: count {count} outside 0..={max}"
            );
        }
    }

    /// A fingerprint of every chat table's content (changes with any write).
    pub async fn snapshot(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in [
            "mod_chat_conversations",
            "mod_chat_messages",
            "mod_chat_agents",
            "mod_chat_visitors",
        ] {
            let sql = format!(
                "select '{t}:' || count(*) || ':' || \
                 coalesce(md5(string_agg(x::text, '|' order by x.id)), '') from {t} x"
            );
            out.extend(self.texts(&sql, &[]).await);
        }
        out
    }
}
