//! Tenant isolation across the whole API: a member of agency A (alice), acting with her own user
//! JWT, gets nothing of agency B (dave's Beta Shop, site 3) — no rows, no events, no writes —
//! from every chat action of the README's Parity table and from the live feeds.
//!
//! How it is proven:
//!
//! - **Every action, self-checked against the README.** The sweep calls each of the 54 original
//!   server actions as alice, aimed at agency B's site and rows (seeded ids). Each call goes
//!   through one helper of [`Sweep`] that runs it, checks its outcome and only then records the
//!   action's original name, so a name cannot be recorded without its call having been made and
//!   checked. At the end the recorded names must equal the names of the README's Parity table
//!   (the three `use…` hooks aside): an action added to the README without a sweep entry fails
//!   the test.
//! - **Reads** return nothing (empty list, zero total, zero statistics, `None`), and each read
//!   is first made as dave (agency B's owner), who must get something: the ids are real and the
//!   call does read them, so alice's empty answer is isolation, not a wrong id. The only reads
//!   that answer alice are the two that are public by design (the anon widget's
//!   `getPublicWidgetSettings` and `isWithinBusinessHours`): they must give alice exactly what
//!   the bare anon key gets.
//! - **Writes** (creates aimed at site 3 included) are refused with the typed error the API
//!   gives (`ErrorKind` and, where the database names it, `ChatError`), never accepted. Pointing
//!   alice's own agent at B's department is refused exactly as an unknown department id is
//!   (migration 000900), so the refusal does not even tell her that B's id exists.
//! - **No writes landed.** Around the sweep, a superuser connection (which bypasses RLS)
//!   snapshots every agency-B row: each `mod_chat_*` table (all of them, found in the catalog;
//!   each must have `site_id`) restricted to agency B's sites, and agency B's `agencies`,
//!   `sites` and `agency_members` rows. The snapshot must be identical afterwards, and so must
//!   a fingerprint of every chat table of every agency.
//! - **Feeds, first layer: refused before any join.** Every feed first reads, as the caller
//!   and through RLS, the conversation or site it follows. Alice's message feed of B's
//!   conversations, conversation feed of site 3 and presence on site 3 each fail with
//!   `live::Error::NotVisible`, and her realtime client is left with no channel and never
//!   connected. So on the default (public) channels she has no feed on which B's rows, typing,
//!   presence or deletions (which the server does not RLS-check) could reach her; on the server
//!   side, B's members (dave and erin, a second member added by the test) see only each other
//!   in site 3's presence. The refusal is about alice: her own agency's feeds on the same handle
//!   subscribe and receive A's changes, and once she is made a member of agency B the very
//!   same subscriptions succeed and deliver B's next change.
//! - **Feeds, second layer: private channels authorized by the server.** With
//!   `Live::private_channels(true)` the feeds join private channels, which the realtime server
//!   authorizes through RLS on `realtime.messages` (migration 000800). Alice, even with the
//!   library's check turned off, is refused the join of B's `chat:`, `conversations:` and
//!   `presence:chat:` channels by the server (a rejected, fatal join: "Unauthorized: You do not
//!   have permissions to read from this Channel topic: …"); her HTTP broadcasts of typing into
//!   B's private room are dropped; and the public room of the same name, which anyone may join
//!   by hand, carries nothing of B's private typing. B's members, A's members (alice and bob) and
//!   a visitor token in its own conversation reach each other on private channels; a visitor
//!   token is refused another visitor's conversation and the site's presence.
//! - **Negatives are proven by a later positive, never by a sleep.** Changes are dispatched in
//!   commit order and broadcasts in the order the server relays them, so once a later event
//!   arrived on a feed, anything that would have leaked was delivered before it; a refused join
//!   is an event in itself. Every wait has a deadline.
//!
//! One surprising behaviour is asserted as observed, within safe bounds: reading the public
//! widget settings of an agency-B site that has none creates its default row (exactly as the
//! anon key does, and nothing else).

use crate::entity;
use crate::live_support;
use entity::{id, ALICE, DAVE, SITE_1};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use live_support::{live, Collector};
use livechat::chat::agents::AgentPatch;
use livechat::chat::canned::CannedResponsePatch;
use livechat::chat::conversations::{NewConversation, Reader};
use livechat::chat::departments::DepartmentPatch;
use livechat::chat::knowledge_base::ArticlePatch;
use livechat::chat::messages::{Cursor, NewFileMessage, NewMessage};
use livechat::chat::models::{
    AgentStatus, Channel, ConversationStatus, MessageStatus, Priority, SenderType,
};
use livechat::chat::views::{ConversationStats, ListPage};
use livechat::chat::visitors::{VisitorInfoPatch, VisitorInput};
use livechat::chat::widget::WidgetSettingsPatch;
use livechat::chat::{Chat, ChatError};
use livechat::live::{
    chat_channel_name, conversations_channel_name, presence_channel_name, AgentPresence,
    ConversationEvent, Error as LiveError, Live, MessageEvent, PresenceChange, RecoveryReason,
    Typing, TYPING_START,
};
use livechat::realtime::{
    ChannelConfig, ConnectionState, ErrorClass, ErrorKind as RealtimeErrorKind,
};
use livechat::visitor_token::mint_visitor_token;
use livechat::{Client, Config, ErrorKind};
use livechat_stack::Stack;
use serde_json::json;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Seeded ids (supabase/seed.sql)
// ---------------------------------------------------------------------------------------------

const AGENCY_B: &str = "a0000000-0000-4000-8000-000000000002";
/// Beta Shop (agency B).
const SITE_3: &str = "b0000000-0000-4000-8000-000000000003";
/// A site of agency B created by the test, without widget settings (the get-or-create paths).
const SITE_B_BARE: &str = "b0000000-0000-4000-8000-00000000b0b0";
/// Agency A's admin.
const BOB: (&str, &str) = ("c0000000-0000-4000-8000-000000000002", "bob@acme.test");
/// A second member of agency B, added by the feed tests ([`Env::add_erin_to_agency_b`]).
const ERIN: (&str, &str) = ("c0000000-0000-4000-8000-000000000b05", "erin@beta.test");
/// Erin's presence key on site 3 (a presence key only: no agent row is needed).
const ERIN_AGENT: &str = "e0000000-0000-4000-8000-000000000b05";
/// The sender id of alice's attempts to type into agency B's conversation.
const ALICE_INTRUDER: &str = "alice-intruder";

/// Acme Store: alice's and bob's agents, the pending unassigned conversation (Mia's) and the
/// active one (another visitor's), Mia.
const AGENT_ALICE_1: &str = "e0000000-0000-4000-8000-000000000101";
const AGENT_BOB_1: &str = "e0000000-0000-4000-8000-000000000102";
const CONV_A_PENDING: &str = "20000000-0000-4000-8000-000000000101";
const CONV_A_ACTIVE: &str = "20000000-0000-4000-8000-000000000102";
const VISITOR_MIA_1: &str = "10000000-0000-4000-8000-000000000101";

/// Beta Shop: dave's agent (online, department Support), Support (default) and Billing,
/// visitor Ruth, the active (Billing) and resolved conversations, two messages of the active
/// one, the active and the inactive canned response, the article.
const AGENT_DAVE_3: &str = "e0000000-0000-4000-8000-000000000301";
const DEPT_B_SUPPORT: &str = "d0000000-0000-4000-8000-000000000301";
const DEPT_B_BILLING: &str = "d0000000-0000-4000-8000-000000000302";
const VISITOR_RUTH_3: &str = "10000000-0000-4000-8000-000000000301";
const RUTH_EMAIL: &str = "ruth@example.com";
const CONV_B_ACTIVE: &str = "20000000-0000-4000-8000-000000000301";
const CONV_B_RESOLVED: &str = "20000000-0000-4000-8000-000000000302";
const MSG_B_VISITOR: &str = "30000000-0000-4000-8000-000000030101";
const MSG_B_AGENT: &str = "30000000-0000-4000-8000-000000030102";
const CANNED_B_GREETING: &str = "40000000-0000-4000-8000-000000000301";
const CANNED_B_INACTIVE: &str = "40000000-0000-4000-8000-000000000302";
const ARTICLE_B: &str = "50000000-0000-4000-8000-000000000301";

/// Every agency-B row the sweep aims at, by table: they must exist, or a refusal would prove
/// nothing.
const B_TARGETS: [(&str, &str); 14] = [
    ("mod_chat_agents", AGENT_DAVE_3),
    ("mod_chat_departments", DEPT_B_SUPPORT),
    ("mod_chat_departments", DEPT_B_BILLING),
    ("mod_chat_visitors", VISITOR_RUTH_3),
    ("mod_chat_conversations", CONV_B_ACTIVE),
    ("mod_chat_conversations", CONV_B_RESOLVED),
    ("mod_chat_messages", MSG_B_VISITOR),
    ("mod_chat_messages", MSG_B_AGENT),
    ("mod_chat_canned_responses", CANNED_B_GREETING),
    ("mod_chat_canned_responses", CANNED_B_INACTIVE),
    ("mod_chat_knowledge_base", ARTICLE_B),
    (
        "mod_chat_widget_settings",
        "f0000000-0000-4000-8000-000000000003",
    ),
    ("mod_chat_analytics", "60000000-0000-4000-8000-000000000301"),
    ("sites", SITE_3),
];

/// Every wait for a live event.
const WAIT: Duration = Duration::from_secs(30);

fn instant(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("a literal instant")
        .with_timezone(&Utc)
}

// ---------------------------------------------------------------------------------------------
// Set-up: the stack, a superuser connection, and the callers
// ---------------------------------------------------------------------------------------------

struct Env {
    stack: Stack,
    db: tokio_postgres::Client,
    anon: Chat,
    alice_client: Client,
    alice: Chat,
    dave_client: Client,
    dave: Chat,
}

impl Env {
    async fn new() -> Env {
        let (stack, db) = entity::seeded_stack_and_db().await;
        let anon_client = Client::new(Config::new(stack.url(), stack.anon_key()).expect("config"))
            .expect("an anon client");
        let alice_client = anon_client.with_access_token(stack.user_token(ALICE.0, Some(ALICE.1)));
        let dave_client = anon_client.with_access_token(stack.user_token(DAVE.0, Some(DAVE.1)));
        Env {
            anon: Chat::new(anon_client),
            alice: Chat::new(alice_client.clone()),
            alice_client,
            dave: Chat::new(dave_client.clone()),
            dave_client,
            db,
            stack,
        }
    }

    async fn shutdown(self) {
        drop(self.db);
        self.stack.shutdown().await;
    }

    async fn exec(&self, sql: &str) {
        self.db
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs an `insert … returning id::text` and returns the id.
    async fn insert_returning_id(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Uuid {
        let row = self
            .db
            .query_one(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        id(&row.get::<_, String>(0))
    }

    /// A message inserted by the superuser (the message trigger updates its conversation).
    async fn insert_message(&self, conversation: &str, site: &str, content: &str) -> Uuid {
        self.insert_returning_id(
            "insert into public.mod_chat_messages (conversation_id, site_id, sender_type, content) \
             values ($1::text::uuid, $2::text::uuid, 'visitor', $3) returning id::text",
            &[&conversation, &site, &content],
        )
        .await
    }

    /// A pending conversation inserted by the superuser.
    async fn insert_conversation(&self, site: &str, visitor: &str, subject: &str) -> Uuid {
        self.insert_returning_id(
            "insert into public.mod_chat_conversations (site_id, visitor_id, channel, status, subject) \
             values ($1::text::uuid, $2::text::uuid, 'widget', 'pending', $3) returning id::text",
            &[&site, &visitor, &subject],
        )
        .await
    }

    /// A client of the anon key acting with `token` (a user JWT or a visitor token).
    fn client_with(&self, token: String) -> Client {
        self.anon.client().with_access_token(token)
    }

    /// Adds erin as a second member of agency B and returns her client.
    async fn add_erin_to_agency_b(&self) -> Client {
        self.exec(&format!(
            "insert into auth.users (id, aud, role, email) \
             values ('{0}', 'authenticated', 'authenticated', '{1}'); \
             insert into public.agency_members (agency_id, user_id, role) \
             values ('{AGENCY_B}', '{0}', 'member')",
            ERIN.0, ERIN.1
        ))
        .await;
        self.client_with(self.stack.user_token(ERIN.0, Some(ERIN.1)))
    }

    /// Makes alice a member of agency B: from now on she may see its rows.
    async fn make_alice_a_member_of_agency_b(&self) {
        self.exec(&format!(
            "insert into public.agency_members (agency_id, user_id, role) \
             values ('{AGENCY_B}', '{}', 'member')",
            ALICE.0
        ))
        .await;
    }

    /// The `mod_chat_*` tables of the database, each checked to have a `site_id` column.
    async fn chat_tables(&self) -> Vec<String> {
        let rows = self
            .db
            .query(
                "select t.table_name::text,
                        exists (select 1 from information_schema.columns c
                                 where c.table_schema = t.table_schema
                                   and c.table_name = t.table_name
                                   and c.column_name = 'site_id')
                   from information_schema.tables t
                  where t.table_schema = 'public' and t.table_type = 'BASE TABLE'
                    and t.table_name like 'mod\\_chat\\_%'
                  order by 1",
                &[],
            )
            .await
            .expect("the chat tables");
        let tables: Vec<String> = rows
            .iter()
            .map(|r| {
                let (table, has_site): (String, bool) = (r.get(0), r.get(1));
                assert!(
                    has_site,
                    "{table} has no site_id: the snapshot cannot scope it"
                );
                table
            })
            .collect();
        assert!(
            tables.len() >= 9,
            "the chat tables were not found: {tables:?}"
        );
        tables
    }

    /// Every row of agency B, as JSON, by table (superuser: RLS does not apply).
    async fn agency_b_snapshot(&self) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        let mut queries: Vec<(String, String)> = self
            .chat_tables()
            .await
            .into_iter()
            .map(|t| {
                let sql = format!(
                    "select to_jsonb(t)::text from public.{t} t \
                     where t.site_id in (select s.id from public.sites s where s.agency_id = $1::text::uuid) \
                     order by t.id"
                );
                (t, sql)
            })
            .collect();
        for (t, column) in [
            ("agencies", "id"),
            ("sites", "agency_id"),
            ("agency_members", "agency_id"),
        ] {
            queries.push((
                t.to_string(),
                format!(
                    "select to_jsonb(t)::text from public.{t} t where t.{column} = $1::text::uuid \
                     order by t.id"
                ),
            ));
        }
        for (table, sql) in queries {
            let rows = self
                .db
                .query(&sql, &[&AGENCY_B])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            out.insert(table, rows.iter().map(|r| r.get::<_, String>(0)).collect());
        }
        out
    }

    /// A fingerprint of every chat table, all agencies (changes with any write anywhere).
    async fn all_chat_rows_fingerprint(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in self.chat_tables().await {
            let sql = format!(
                "select '{t}:' || count(*) || ':' || \
                 coalesce(md5(string_agg(x::text, '|' order by x.id)), '') from public.{t} x"
            );
            let row = self
                .db
                .query_one(&sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            out.push(row.get::<_, String>(0));
        }
        out
    }
}

/// Compares two agency-B snapshots table by table, naming the rows that differ.
fn assert_same_snapshot(
    before: &BTreeMap<String, Vec<String>>,
    after: &BTreeMap<String, Vec<String>>,
    what: &str,
) {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "{what}: the set of tables changed"
    );
    for (table, rows) in before {
        let later = &after[table];
        if rows != later {
            let gone: Vec<&String> = rows.iter().filter(|r| !later.contains(r)).collect();
            let new: Vec<&String> = later.iter().filter(|r| !rows.contains(r)).collect();
            panic!("{what}: agency B's {table} changed\nbefore, not after: {gone:#?}\nafter, not before: {new:#?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The README's Parity table
// ---------------------------------------------------------------------------------------------

/// The first cell of every row of the README's Parity table (between `## Parity` and the next
/// `## ` heading), in order.
fn readme_parity_names() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut in_section = false;
    let mut names = Vec::new();
    for line in readme.lines() {
        if line.trim_end() == "## Parity" {
            in_section = true;
            continue;
        }
        if in_section && line.starts_with("## ") {
            break;
        }
        if !in_section || !line.starts_with('|') {
            continue;
        }
        let first = line.split('|').nth(1).unwrap_or("").trim();
        if first == "original" || first.chars().all(|c| matches!(c, '-' | ':' | ' ')) {
            continue; // the header and the separator row
        }
        assert!(
            !first.is_empty() && first.chars().all(|c| c.is_ascii_alphanumeric()),
            "unexpected first cell {first:?} in the Parity row {line:?}"
        );
        names.push(first.to_string());
    }
    assert!(in_section, "README.md has no `## Parity` section");
    names
}

/// The README's original server actions: the Parity rows except the `use…` hooks.
fn readme_actions() -> BTreeSet<String> {
    let names = readme_parity_names();
    let set: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(
        set.len(),
        names.len(),
        "a Parity row is listed twice: {names:?}"
    );
    set.into_iter().filter(|n| !n.starts_with("use")).collect()
}

#[test]
fn the_readme_parity_table_is_read_as_the_actions_and_the_three_hooks() {
    let names = readme_parity_names();
    let hooks: BTreeSet<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| n.starts_with("use"))
        .collect();
    assert_eq!(
        hooks,
        BTreeSet::from([
            "useAgentPresence",
            "useChatRealtime",
            "useConversationsRealtime"
        ]),
        "the hooks this file's feed tests cover"
    );
    let actions = readme_actions();
    for known in [
        "getConversations",
        "createArticle",
        "getVisitorConversations",
    ] {
        assert!(actions.contains(known), "{known} not read from the README");
    }
    assert_eq!(actions.len() + hooks.len(), names.len());
}

// ---------------------------------------------------------------------------------------------
// The sweep
// ---------------------------------------------------------------------------------------------

/// "Nothing": what a read of another agency's data must return.
trait Nothing {
    fn is_nothing(&self) -> bool;
}

impl<T> Nothing for Vec<T> {
    fn is_nothing(&self) -> bool {
        self.is_empty()
    }
}

impl<T> Nothing for Option<T> {
    fn is_nothing(&self) -> bool {
        self.is_none()
    }
}

impl<T> Nothing for ListPage<T> {
    fn is_nothing(&self) -> bool {
        self.items.is_empty() && self.total == 0
    }
}

impl Nothing for ConversationStats {
    fn is_nothing(&self) -> bool {
        [
            self.active_conversations,
            self.pending_conversations,
            self.online_agents,
            self.today_conversations,
            self.today_resolved,
            self.today_missed,
            self.avg_first_response_seconds,
        ] == [0; 7]
            && self.satisfaction_score == 0.0
    }
}

/// The refusal a call must end with: its error kind and the chat error the database named
/// (`None`: it named none).
#[derive(Debug, Clone, Copy)]
struct Refusal {
    kind: ErrorKind,
    chat: Option<ChatError>,
}

const fn not_found(chat: ChatError) -> Refusal {
    Refusal {
        kind: ErrorKind::NotFound,
        chat: Some(chat),
    }
}

/// A PATCH/DELETE that matched no visible row.
const NO_VISIBLE_ROW: Refusal = Refusal {
    kind: ErrorKind::NotFound,
    chat: None,
};

/// An INSERT refused by row-level security.
const RLS_REFUSED: Refusal = Refusal {
    kind: ErrorKind::Forbidden,
    chat: None,
};

/// A call of the sweep: made with the caller the helper chooses.
type Call<T> = Box<dyn Fn(Chat) -> BoxFuture<'static, livechat::Result<T>> + Send + Sync>;

/// Runs the calls of the sweep, checks each outcome, and records the original action names —
/// only after the call was made and its outcome checked.
struct Sweep {
    anon: Chat,
    alice: Chat,
    dave: Chat,
    covered: BTreeMap<&'static str, usize>,
}

impl Sweep {
    fn record(&mut self, action: &'static str) {
        *self.covered.entry(action).or_default() += 1;
    }

    /// A read: dave (agency B) gets something, so the call reads real rows; alice gets nothing.
    async fn read<T: Nothing + Debug>(&mut self, action: &'static str, what: &str, call: Call<T>) {
        let theirs = call(self.dave.clone())
            .await
            .unwrap_or_else(|e| panic!("{action} ({what}) as dave: {e}"));
        assert!(
            !theirs.is_nothing(),
            "{action} ({what}): agency B's own owner gets nothing either, so alice's answer would \
             prove nothing: {theirs:?}"
        );
        match call(self.alice.clone()).await {
            Ok(ours) => assert!(
                ours.is_nothing(),
                "{action} ({what}): alice got agency B's data: {ours:?}"
            ),
            Err(e) => panic!("{action} ({what}): alice's read failed instead of being empty: {e}"),
        }
        self.record(action);
    }

    /// A read that refuses another agency (get-or-create): dave gets the row, alice the refusal.
    async fn read_refused<T: Debug>(
        &mut self,
        action: &'static str,
        what: &str,
        expected: Refusal,
        call: Call<T>,
    ) {
        call(self.dave.clone())
            .await
            .unwrap_or_else(|e| panic!("{action} ({what}) as dave: {e}"));
        self.refused(action, what, expected, call).await;
    }

    /// A write (or a read of a row nobody may see yet): alice is refused as `expected`.
    async fn refused<T: Debug>(
        &mut self,
        action: &'static str,
        what: &str,
        expected: Refusal,
        call: Call<T>,
    ) {
        match call(self.alice.clone()).await {
            Ok(v) => panic!("{action} ({what}): accepted for alice: {v:?}"),
            Err(e) => {
                let got = (e.kind(), ChatError::of(&e));
                assert_eq!(
                    got,
                    (expected.kind, expected.chat),
                    "{action} ({what}): refused, but not as expected: {e}"
                );
            }
        }
        self.record(action);
    }

    /// A read that is public by design (the anon widget's): alice gets exactly what the bare
    /// anon key gets, nothing more.
    async fn public<T: PartialEq + Debug>(
        &mut self,
        action: &'static str,
        what: &str,
        call: Call<T>,
    ) {
        let public = call(self.anon.clone())
            .await
            .unwrap_or_else(|e| panic!("{action} ({what}) with the anon key: {e}"));
        let ours = call(self.alice.clone())
            .await
            .unwrap_or_else(|e| panic!("{action} ({what}) as alice: {e}"));
        assert_eq!(ours, public, "{action} ({what}): alice got more than anon");
        self.record(action);
    }
}

/// Boxes a call of the sweep: `call!(|c| c.agents().list(site))`.
macro_rules! call {
    (|$c:ident| $body:expr) => {
        Box::new(move |$c: Chat| async move { $body.await }.boxed()) as Call<_>
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_gets_nothing_of_agency_b_from_any_chat_action_and_writes_nothing() {
    let env = Env::new().await;
    // A site of agency B without widget settings: the get-or-create actions must not create
    // them for alice either.
    env.exec(&format!(
        "insert into public.sites (id, agency_id, name) values ('{SITE_B_BARE}', '{AGENCY_B}', 'Beta Bare')"
    ))
    .await;

    let before = env.agency_b_snapshot().await;
    let everything_before = env.all_chat_rows_fingerprint().await;
    for (table, rows) in &before {
        assert!(
            !rows.is_empty(),
            "agency B has no {table} row: the snapshot would be vacuous"
        );
    }
    for (table, target) in B_TARGETS {
        assert!(
            before[table].iter().any(|r| {
                let row: serde_json::Value = serde_json::from_str(r).expect("row JSON");
                row["id"] == json!(target)
            }),
            "the sweep aims at {target}, which is not an agency-B row of {table}"
        );
    }

    let mut s = Sweep {
        anon: env.anon.clone(),
        alice: env.alice.clone(),
        dave: env.dave.clone(),
        covered: BTreeMap::new(),
    };
    let (site3, bare) = (id(SITE_3), id(SITE_B_BARE));
    let (site1, mia) = (id(SITE_1), id(VISITOR_MIA_1));
    let (conv, resolved) = (id(CONV_B_ACTIVE), id(CONV_B_RESOLVED));
    let (dave_agent, alice_agent) = (id(AGENT_DAVE_3), id(AGENT_ALICE_1));
    let (support, billing) = (id(DEPT_B_SUPPORT), id(DEPT_B_BILLING));
    let ruth = id(VISITOR_RUTH_3);
    let (msg, msg2) = (id(MSG_B_VISITOR), id(MSG_B_AGENT));
    let (canned, canned_inactive) = (id(CANNED_B_GREETING), id(CANNED_B_INACTIVE));
    let article = id(ARTICLE_B);
    let (a_pending, a_active) = (id(CONV_A_PENDING), id(CONV_A_ACTIVE));
    let conv_gone = not_found(ChatError::ConversationNotFound);

    // --- Conversations ----------------------------------------------------------------------
    s.read(
        "getConversations",
        "site 3",
        call!(|c| c.conversations().list(site3).page_size(1000).send()),
    )
    .await;
    s.read(
        "getConversations",
        "site 3, search",
        call!(|c| c.conversations().list(site3).search("Ruth").send()),
    )
    .await;
    s.read(
        "getConversations",
        "site 3, filtered to B's agent and department",
        call!(|c| c
            .conversations()
            .list(site3)
            .status(ConversationStatus::Active)
            .assigned_to(dave_agent)
            .department(billing)
            .send()),
    )
    .await;
    s.read(
        "getConversation",
        "B's active",
        call!(|c| c.conversations().get(conv)),
    )
    .await;
    s.read(
        "getConversation",
        "B's resolved",
        call!(|c| c.conversations().get(resolved)),
    )
    .await;
    s.refused(
        "createConversation",
        "site 3, B's visitor",
        not_found(ChatError::VisitorNotFound),
        call!(|c| c.conversations().create(NewConversation::new(site3, ruth))),
    )
    .await;
    s.refused(
        "createConversation",
        "site 3, B's visitor and department, no auto-assign",
        not_found(ChatError::VisitorNotFound),
        call!(|c| c.conversations().create(
            NewConversation::new(site3, ruth)
                .department(support)
                .auto_assign(false)
        )),
    )
    .await;
    s.refused(
        "createConversation",
        "site 3, alice's own visitor",
        not_found(ChatError::VisitorNotFound),
        call!(|c| c.conversations().create(NewConversation::new(site3, mia))),
    )
    .await;
    s.refused(
        "createConversation",
        "alice's site, B's visitor",
        not_found(ChatError::VisitorNotFound),
        call!(|c| c.conversations().create(NewConversation::new(site1, ruth))),
    )
    .await;
    s.refused(
        "createConversation",
        "alice's site and visitor, B's department",
        not_found(ChatError::DepartmentNotFound),
        call!(|c| c
            .conversations()
            .create(NewConversation::new(site1, mia).department(support))),
    )
    .await;
    s.refused(
        "assignConversation",
        "B's conversation to B's agent",
        conv_gone,
        call!(|c| c.conversations().assign(conv, dave_agent)),
    )
    .await;
    s.refused(
        "assignConversation",
        "B's conversation to alice's agent",
        conv_gone,
        call!(|c| c.conversations().assign(conv, alice_agent)),
    )
    .await;
    s.refused(
        "assignConversation",
        "alice's pending conversation to B's agent",
        not_found(ChatError::AgentNotFound),
        call!(|c| c.conversations().assign(a_pending, dave_agent)),
    )
    .await;
    s.refused(
        "transferConversation",
        "B's conversation to alice's agent",
        conv_gone,
        call!(|c| c
            .conversations()
            .transfer(conv, alice_agent, Some("mine now"))),
    )
    .await;
    s.refused(
        "transferConversation",
        "alice's conversation to B's agent",
        not_found(ChatError::AgentNotFound),
        call!(|c| c.conversations().transfer(a_active, dave_agent, None)),
    )
    .await;
    s.refused(
        "resolveConversation",
        "B's active",
        conv_gone,
        call!(|c| c.conversations().resolve(conv)),
    )
    .await;
    s.refused(
        "closeConversation",
        "B's active",
        conv_gone,
        call!(|c| c.conversations().close(conv)),
    )
    .await;
    s.refused(
        "closeConversation",
        "B's resolved",
        conv_gone,
        call!(|c| c.conversations().close(resolved)),
    )
    .await;
    s.refused(
        "reopenConversation",
        "B's resolved",
        conv_gone,
        call!(|c| c.conversations().reopen(resolved)),
    )
    .await;
    s.refused(
        "updateConversationPriority",
        "B's active",
        conv_gone,
        call!(|c| c.conversations().set_priority(conv, Priority::Urgent)),
    )
    .await;
    s.refused(
        "updateConversationTags",
        "B's active",
        conv_gone,
        call!(|c| c.conversations().set_tags(conv, ["pwned"])),
    )
    .await;
    s.refused(
        "updateInternalNotes",
        "B's active",
        conv_gone,
        call!(|c| c.conversations().set_internal_notes(conv, "pwned")),
    )
    .await;
    s.refused(
        "markConversationRead",
        "B's active, by the agents",
        conv_gone,
        call!(|c| c.conversations().mark_read(conv, Reader::Agent)),
    )
    .await;
    s.refused(
        "markConversationRead",
        "B's active, by the visitor",
        conv_gone,
        call!(|c| c.conversations().mark_read(conv, Reader::Visitor)),
    )
    .await;
    s.read(
        "getConversationStats",
        "site 3",
        call!(|c| c.conversations().stats(site3).send()),
    )
    .await;
    s.read(
        "getConversationStats",
        "site 3, Lusaka's day",
        call!(|c| c
            .conversations()
            .stats(site3)
            .time_zone("Africa/Lusaka")
            .send()),
    )
    .await;

    // --- Messages ---------------------------------------------------------------------------
    s.read(
        "getMessages",
        "B's active",
        call!(|c| c.messages().list(conv).page_size(1000).send()),
    )
    .await;
    let long_ago = Cursor::new(
        Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
            .single()
            .expect("an instant"),
        Uuid::nil(),
    );
    s.read(
        "getMessages",
        "B's active, after a cursor",
        call!(|c| c.messages().after(conv, long_ago).send()),
    )
    .await;
    s.refused(
        "sendMessage",
        "agent text into B's conversation",
        conv_gone,
        call!(|c| c
            .messages()
            .send(NewMessage::text(conv, SenderType::Agent, "pwned"))),
    )
    .await;
    s.refused(
        "sendMessage",
        "visitor text into B's conversation",
        conv_gone,
        call!(|c| c
            .messages()
            .send(NewMessage::text(conv, SenderType::Visitor, "pwned").site(site3))),
    )
    .await;
    s.refused(
        "sendMessage",
        "internal note into B's conversation",
        conv_gone,
        call!(|c| c.messages().send(NewMessage::note(conv, "pwned"))),
    )
    .await;
    s.refused(
        "sendFileMessage",
        "into B's conversation",
        conv_gone,
        call!(|c| c.messages().send_file(NewFileMessage::new(
            conv,
            SenderType::Agent,
            "https://evil.example/a.png",
            "a.png",
            1,
            "image/png",
        ))),
    )
    .await;
    s.refused(
        "updateMessageStatus",
        "B's message",
        NO_VISIBLE_ROW,
        call!(|c| c.messages().set_status(msg, MessageStatus::Read)),
    )
    .await;
    s.refused(
        "deleteMessage",
        "B's message",
        NO_VISIBLE_ROW,
        call!(|c| c.messages().delete(msg2)),
    )
    .await;

    // --- Agents -----------------------------------------------------------------------------
    s.read("getAgents", "site 3", call!(|c| c.agents().list(site3)))
        .await;
    s.read(
        "getAgent",
        "B's agent",
        call!(|c| c.agents().get(dave_agent)),
    )
    .await;
    s.refused(
        "createAgent",
        "alice as an agent of site 3",
        RLS_REFUSED,
        call!(|c| c.agents().create(site3, id(ALICE.0), "Alice in Beta")),
    )
    .await;
    s.refused(
        "createAgent",
        "a new user in site 3, B's department",
        RLS_REFUSED,
        call!(|c| c
            .agents()
            .create(site3, Uuid::new_v4(), "Planted")
            .department(support)
            .max_concurrent_chats(50)),
    )
    .await;
    s.refused(
        "updateAgent",
        "B's agent",
        NO_VISIBLE_ROW,
        call!(|c| c
            .agents()
            .update(dave_agent, AgentPatch::default().display_name("Hijacked"))),
    )
    .await;
    s.refused(
        "updateAgentStatus",
        "B's agent",
        NO_VISIBLE_ROW,
        call!(|c| c.agents().set_status(dave_agent, AgentStatus::Offline)),
    )
    .await;
    s.refused(
        "deleteAgent",
        "B's agent",
        not_found(ChatError::AgentNotFound),
        call!(|c| c.agents().delete(dave_agent)),
    )
    .await;
    s.read(
        "getAgentPerformance",
        "site 3",
        call!(|c| c.agents().performance(site3).send()),
    )
    .await;
    s.read(
        "getAgentPerformance",
        "site 3, a range",
        call!(|c| c
            .agents()
            .performance(site3)
            .from(instant("2000-01-01T00:00:00Z"))
            .to(Utc::now() + chrono::Duration::days(1))
            .send()),
    )
    .await;
    s.read(
        "getOnlineAgents",
        "site 3",
        call!(|c| c.agents().online(site3)),
    )
    .await;
    s.read(
        "getAvailableAgent",
        "site 3",
        call!(|c| c.agents().available(site3).send()),
    )
    .await;
    s.read(
        "getAvailableAgent",
        "site 3, B's department",
        call!(|c| c.agents().available(site3).department(support).send()),
    )
    .await;

    // --- Departments ------------------------------------------------------------------------
    s.read(
        "getDepartments",
        "site 3",
        call!(|c| c.departments().list(site3)),
    )
    .await;
    s.refused(
        "createDepartment",
        "in site 3",
        not_found(ChatError::SiteNotFound),
        call!(|c| c.departments().create(site3, "Planted")),
    )
    .await;
    s.refused(
        "createDepartment",
        "in B's site without departments (it would become the default)",
        not_found(ChatError::SiteNotFound),
        call!(|c| c.departments().create(bare, "Planted")),
    )
    .await;
    s.refused(
        "updateDepartment",
        "B's department",
        NO_VISIBLE_ROW,
        call!(|c| c
            .departments()
            .update(billing, DepartmentPatch::default().name("Hijacked"))),
    )
    .await;
    s.refused(
        "deleteDepartment",
        "B's department",
        not_found(ChatError::DepartmentNotFound),
        call!(|c| c.departments().delete(billing)),
    )
    .await;
    // Not `DefaultDepartment`: that answer would tell alice which of B's departments is the
    // default.
    s.refused(
        "deleteDepartment",
        "B's default department",
        not_found(ChatError::DepartmentNotFound),
        call!(|c| c.departments().delete(support)),
    )
    .await;
    s.refused(
        "setDefaultDepartment",
        "site 3, B's department",
        not_found(ChatError::DepartmentNotFound),
        call!(|c| c.departments().set_default(site3, billing)),
    )
    .await;
    s.refused(
        "setDefaultDepartment",
        "alice's site, B's department",
        not_found(ChatError::DepartmentNotFound),
        call!(|c| c.departments().set_default(site1, billing)),
    )
    .await;

    // --- Canned responses -------------------------------------------------------------------
    s.read(
        "getCannedResponses",
        "site 3",
        call!(|c| c.canned_responses().list(site3).send()),
    )
    .await;
    s.read(
        "getCannedResponses",
        "site 3, a category",
        call!(|c| c.canned_responses().list(site3).category("General").send()),
    )
    .await;
    s.refused(
        "createCannedResponse",
        "in site 3",
        RLS_REFUSED,
        call!(|c| c
            .canned_responses()
            .create(site3, "Planted", "Visit evil.example")),
    )
    .await;
    s.refused(
        "updateCannedResponse",
        "B's response",
        NO_VISIBLE_ROW,
        call!(|c| c.canned_responses().update(
            canned,
            CannedResponsePatch::default().content("Visit evil.example")
        )),
    )
    .await;
    s.refused(
        "deleteCannedResponse",
        "B's response",
        NO_VISIBLE_ROW,
        call!(|c| c.canned_responses().delete(canned)),
    )
    .await;
    s.refused(
        "deleteCannedResponse",
        "B's inactive response",
        NO_VISIBLE_ROW,
        call!(|c| c.canned_responses().delete(canned_inactive)),
    )
    .await;
    s.refused(
        "incrementCannedResponseUsage",
        "B's response",
        not_found(ChatError::CannedResponseNotFound),
        call!(|c| c.canned_responses().increment_usage(canned)),
    )
    .await;
    s.read(
        "searchCannedResponses",
        "site 3, everything",
        call!(|c| c.canned_responses().search(site3, "")),
    )
    .await;
    s.read(
        "searchCannedResponses",
        "site 3, a word",
        call!(|c| c.canned_responses().search(site3, "Greeting")),
    )
    .await;

    // --- Knowledge base ---------------------------------------------------------------------
    s.read(
        "getKnowledgeBaseArticles",
        "site 3",
        call!(|c| c.knowledge_base().list(site3).send()),
    )
    .await;
    s.read(
        "getKnowledgeBaseArticles",
        "site 3, a category",
        call!(|c| c.knowledge_base().list(site3).category("Billing").send()),
    )
    .await;
    s.refused(
        "createArticle",
        "in site 3",
        RLS_REFUSED,
        call!(|c| c
            .knowledge_base()
            .create(site3, "Planted", "Pay at evil.example")),
    )
    .await;
    s.refused(
        "updateArticle",
        "B's article",
        NO_VISIBLE_ROW,
        call!(|c| c
            .knowledge_base()
            .update(article, ArticlePatch::default().title("Hijacked"))),
    )
    .await;
    s.refused(
        "deleteArticle",
        "B's article",
        NO_VISIBLE_ROW,
        call!(|c| c.knowledge_base().delete(article)),
    )
    .await;
    s.read(
        "searchKnowledgeBase",
        "site 3, everything",
        call!(|c| c.knowledge_base().search(site3, "")),
    )
    .await;
    s.read(
        "searchKnowledgeBase",
        "site 3, a word",
        call!(|c| c.knowledge_base().search(site3, "payment")),
    )
    .await;

    // --- Widget -----------------------------------------------------------------------------
    s.read_refused(
        "getWidgetSettings",
        "site 3",
        not_found(ChatError::SiteNotFound),
        call!(|c| c.widget().get(site3)),
    )
    .await;
    s.refused(
        "getWidgetSettings",
        "B's site without settings (get-or-create)",
        not_found(ChatError::SiteNotFound),
        call!(|c| c.widget().get(bare)),
    )
    .await;
    s.refused(
        "updateWidgetSettings",
        "site 3",
        RLS_REFUSED,
        call!(|c| c.widget().update(
            site3,
            WidgetSettingsPatch::default().primary_color("#000000")
        )),
    )
    .await;
    s.refused(
        "updateWidgetSettings",
        "B's site without settings (upsert)",
        RLS_REFUSED,
        call!(|c| c.widget().update(
            bare,
            WidgetSettingsPatch::default().primary_color("#000000")
        )),
    )
    .await;
    s.public(
        "getPublicWidgetSettings",
        "site 3",
        call!(|c| c.widget().public(site3)),
    )
    .await;
    let monday_morning = instant("2026-11-30T08:00:00Z");
    s.public(
        "isWithinBusinessHours",
        "site 3",
        call!(|c| c
            .widget()
            .within_business_hours(site3)
            .at(monday_morning)
            .send()),
    )
    .await;

    // --- Visitors ---------------------------------------------------------------------------
    s.read(
        "getVisitors",
        "site 3",
        call!(|c| c.visitors().list(site3).page_size(100).send()),
    )
    .await;
    s.read(
        "getVisitor",
        "B's visitor",
        call!(|c| c.visitors().get(ruth)),
    )
    .await;
    s.refused(
        "createOrUpdateVisitor",
        "B's visitor's e-mail in site 3",
        not_found(ChatError::SiteNotFound),
        call!(|c| c.visitors().create_or_update(
            VisitorInput::new(site3, Channel::Widget)
                .email(RUTH_EMAIL)
                .name("Hijacked")
        )),
    )
    .await;
    s.refused(
        "createOrUpdateVisitor",
        "a new visitor in site 3",
        not_found(ChatError::SiteNotFound),
        call!(|c| c.visitors().create_or_update(
            VisitorInput::new(site3, Channel::Api).email("planted@evil.example")
        )),
    )
    .await;
    s.refused(
        "updateVisitorInfo",
        "B's visitor",
        NO_VISIBLE_ROW,
        call!(|c| c
            .visitors()
            .update_info(ruth, VisitorInfoPatch::default().notes("hijacked"))),
    )
    .await;
    s.refused(
        "updateVisitorPageTracking",
        "B's visitor",
        NO_VISIBLE_ROW,
        call!(|c| c
            .visitors()
            .track_page(ruth, "https://evil.example", Some("Evil"))),
    )
    .await;
    s.refused(
        "linkVisitorToCrm",
        "B's visitor",
        NO_VISIBLE_ROW,
        call!(|c| c.visitors().link_crm(ruth, Uuid::new_v4())),
    )
    .await;
    s.read(
        "getVisitorConversations",
        "B's visitor",
        call!(|c| c.visitors().conversations(ruth)),
    )
    .await;

    // Nothing of agency B changed — nor anything else.
    assert_same_snapshot(&before, &env.agency_b_snapshot().await, "after the sweep");
    assert_eq!(
        env.all_chat_rows_fingerprint().await,
        everything_before,
        "the sweep wrote somewhere (outside agency B)"
    );

    // Every action of the README, and nothing else.
    let covered: BTreeSet<String> = s.covered.keys().map(|k| k.to_string()).collect();
    let readme = readme_actions();
    let missing: Vec<&String> = readme.difference(&covered).collect();
    let unknown: Vec<&String> = covered.difference(&readme).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "the sweep and the README's Parity table disagree: in the README but not swept: \
         {missing:?}; swept but not in the README: {unknown:?}"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_the_public_settings_of_an_agency_b_site_writes_at_most_its_default_row() {
    // getPublicWidgetSettings is public by design (the anon widget calls it) and creates the
    // site's default settings row when it has none. Alice must get exactly what the anon key
    // gets, and her call may write nothing in agency B beyond that default row.
    let env = Env::new().await;
    let bare_for_anon = "b0000000-0000-4000-8000-00000000b0b1";
    env.exec(&format!(
        "insert into public.sites (id, agency_id, name) values \
         ('{SITE_B_BARE}', '{AGENCY_B}', 'Beta Bare'), ('{bare_for_anon}', '{AGENCY_B}', 'Beta Bare 2')"
    ))
    .await;
    let before = env.agency_b_snapshot().await;

    let public = env
        .anon
        .widget()
        .public(id(bare_for_anon))
        .await
        .expect("the anon key reads a bare site's public settings");
    let theirs = env.agency_b_snapshot().await;
    let ours = env
        .alice
        .widget()
        .public(id(SITE_B_BARE))
        .await
        .expect("alice reads a bare site's public settings");
    assert_eq!(ours, public, "alice got more than the anon key");
    let after = env.agency_b_snapshot().await;

    // Whatever alice's call wrote in agency B: the same as the anon key's call, i.e. nothing
    // but one default settings row of that very site.
    let new_rows = |from: &BTreeMap<String, Vec<String>>, to: &BTreeMap<String, Vec<String>>| {
        let mut out: Vec<(String, serde_json::Value)> = Vec::new();
        for (table, rows) in to {
            assert!(
                from[table].iter().all(|r| rows.contains(r)),
                "a row of agency B's {table} changed or went away"
            );
            for r in rows.iter().filter(|r| !from[table].contains(r)) {
                out.push((table.clone(), serde_json::from_str(r).expect("row JSON")));
            }
        }
        out
    };
    let by_anon = new_rows(&before, &theirs);
    let by_alice = new_rows(&theirs, &after);
    assert!(
        by_alice.len() <= 1,
        "alice wrote several rows in agency B: {by_alice:#?}"
    );
    if let Some((table, row)) = by_alice.first() {
        assert_eq!(
            table, "mod_chat_widget_settings",
            "alice wrote in agency B: {row}"
        );
        assert_eq!(row["site_id"], json!(SITE_B_BARE), "{row}");
        let (_, anon_row) = by_anon
            .iter()
            .find(|(t, _)| t == "mod_chat_widget_settings")
            .expect("alice's call created a row that the anon key's call did not");
        let without_identity = |v: &serde_json::Value| {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                for k in ["id", "site_id", "created_at", "updated_at"] {
                    o.remove(k);
                }
            }
            v
        };
        assert_eq!(
            without_identity(row),
            without_identity(anon_row),
            "alice's row is not the default row the anon key's call creates"
        );
    }
    // Alice still cannot read that row through the dashboard actions.
    let e = env
        .alice
        .widget()
        .get(id(SITE_B_BARE))
        .await
        .expect_err("alice reads B's full settings");
    assert_eq!(ChatError::of(&e), Some(ChatError::SiteNotFound), "{e}");
    env.shutdown().await;
}

#[tokio::test]
async fn alice_cannot_point_her_agents_at_a_b_department() {
    // Migration 000900 (same-site references): an agent's department must be of the agent's
    // site. Agency B's department looks absent to alice: creating or updating her agent with it
    // is refused exactly as with a department id that exists nowhere (the same status, SQLSTATE
    // 23503, message and details, which name no key), so the refusal tells her nothing of B.
    let env = Env::new().await;
    let before = env.agency_b_snapshot().await;
    let everything_before = env.all_chat_rows_fingerprint().await;
    let (support, nowhere) = (id(DEPT_B_SUPPORT), Uuid::new_v4());

    fn refusal<T: Debug>(
        outcome: livechat::Result<T>,
        what: &str,
    ) -> (ErrorKind, Option<livechat::PostgrestError>) {
        match outcome {
            Ok(v) => panic!("{what}: accepted: {v:?}"),
            Err(e) => (e.kind(), e.postgrest().cloned()),
        }
    }
    let create = |department: Uuid| {
        env.alice
            .agents()
            .create(id(SITE_1), Uuid::new_v4(), "Pointed at B")
            .department(department)
    };
    let update = |department: Uuid| {
        env.alice.agents().update(
            id(AGENT_ALICE_1),
            AgentPatch::default().department_id(department),
        )
    };
    let create_b = refusal(create(support).await, "create, B's department");
    let create_nowhere = refusal(create(nowhere).await, "create, an unknown department");
    let update_b = refusal(update(support).await, "update, B's department");
    let update_nowhere = refusal(update(nowhere).await, "update, an unknown department");
    assert_eq!(create_b.0, ErrorKind::Conflict, "{create_b:?}");
    assert_eq!(
        create_b.1.as_ref().and_then(|p| p.code.as_deref()),
        Some("23503"),
        "{create_b:?}"
    );
    assert_eq!(
        create_b, create_nowhere,
        "creating: B's department is told apart from an unknown one"
    );
    assert_eq!(
        update_b, update_nowhere,
        "updating: B's department is told apart from an unknown one"
    );
    assert_eq!(update_b, create_b, "update and create refused differently");

    let mine = env
        .alice
        .agents()
        .get(id(AGENT_ALICE_1))
        .await
        .expect("alice reads her agent")
        .expect("alice's agent");
    assert_ne!(mine.agent.department_id, Some(support), "{mine:?}");
    assert_same_snapshot(
        &before,
        &env.agency_b_snapshot().await,
        "after alice pointed her agents at B's department",
    );
    assert_eq!(
        env.all_chat_rows_fingerprint().await,
        everything_before,
        "a refused call wrote somewhere"
    );
    env.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Feeds
// ---------------------------------------------------------------------------------------------

fn is_initial_message_recovery(e: &MessageEvent) -> bool {
    matches!(e, MessageEvent::Recovered(r) if r.reason == RecoveryReason::Initial)
}

fn is_initial_conversation_recovery(e: &ConversationEvent) -> bool {
    matches!(e, ConversationEvent::Recovered(r) if r.reason == RecoveryReason::Initial)
}

/// Row events of a message feed (typing, recoveries and statuses aside).
fn message_rows(events: &[MessageEvent]) -> Vec<&MessageEvent> {
    events
        .iter()
        .filter(|e| matches!(e, MessageEvent::New { .. } | MessageEvent::Updated(_)))
        .collect()
}

/// Row events of a conversation feed.
fn conversation_rows(events: &[ConversationEvent]) -> Vec<&ConversationEvent> {
    events
        .iter()
        .filter(|e| {
            matches!(
                e,
                ConversationEvent::New(_)
                    | ConversationEvent::Updated(_)
                    | ConversationEvent::Deleted { .. }
            )
        })
        .collect()
}

/// The senders of the typing indicators a message feed delivered, in order.
fn typing_senders(events: &[MessageEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            MessageEvent::TypingStarted { sender_id, .. }
            | MessageEvent::TypingStopped { sender_id } => Some(sender_id.clone()),
            _ => None,
        })
        .collect()
}

/// Whether a message feed delivered `sender`'s typing indicator.
fn has_typing_of(events: &[MessageEvent], sender: &str) -> bool {
    typing_senders(events).iter().any(|s| s == sender)
}

/// Whether a conversation feed delivered the deletion of `conversation`.
fn has_deletion_of(events: &[ConversationEvent], conversation: Uuid) -> bool {
    events
        .iter()
        .any(|e| matches!(e, ConversationEvent::Deleted { id, .. } if *id == conversation))
}

/// Whether a conversation feed delivered `conversation` as new.
fn has_new_conversation(events: &[ConversationEvent], conversation: Uuid) -> bool {
    events
        .iter()
        .any(|e| matches!(e, ConversationEvent::New(c) if c.id == conversation))
}

/// Waits until a message feed has delivered its initial catch-up.
async fn message_feed_ready(feed: &Collector<MessageEvent>, what: &str) {
    feed.wait_until(what, WAIT, |ev| ev.iter().any(is_initial_message_recovery))
        .await;
}

/// Waits until a conversation feed has delivered its initial catch-up.
async fn conversation_feed_ready(feed: &Collector<ConversationEvent>, what: &str) {
    feed.wait_until(what, WAIT, |ev| {
        ev.iter().any(is_initial_conversation_recovery)
    })
    .await;
}

/// Subscribes a message feed, records its events and waits for its initial catch-up.
async fn message_feed(live: &Live, conversation: &str, what: &str) -> Collector<MessageEvent> {
    let feed = live
        .messages(id(conversation))
        .subscribe()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
    let events = Collector::start(feed);
    message_feed_ready(&events, what).await;
    events
}

/// Like [`message_feed`], keeping a handle to send typing indicators on the feed's channel.
async fn message_feed_typing(
    live: &Live,
    conversation: &str,
    what: &str,
) -> (Collector<MessageEvent>, Typing) {
    let feed = live
        .messages(id(conversation))
        .subscribe()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
    let typing = feed.typing();
    let events = Collector::start(feed);
    message_feed_ready(&events, what).await;
    (events, typing)
}

/// Subscribes a conversation feed, records its events and waits for its initial catch-up.
async fn conversation_feed(live: &Live, site: &str, what: &str) -> Collector<ConversationEvent> {
    let feed = live
        .conversations(id(site))
        .subscribe()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
    let events = Collector::start(feed);
    conversation_feed_ready(&events, what).await;
    events
}

/// The library refused the feed before joining anything: [`LiveError::NotVisible`].
fn assert_not_visible<T: Debug>(outcome: Result<T, LiveError>, what: &str) {
    match outcome {
        Err(LiveError::NotVisible(_)) => {}
        Err(e) => panic!("{what}: failed, but not as NotVisible: {e:?}"),
        Ok(joined) => panic!("{what}: subscribed: {joined:?}"),
    }
}

/// The realtime server refused to join the private channel `topic`: a rejected join, final
/// (not retried), with the server's "Unauthorized" reason naming the topic.
fn assert_refused_by_server<T: Debug>(outcome: Result<T, LiveError>, topic: &str, what: &str) {
    match outcome {
        Err(LiveError::Realtime(e)) => {
            assert_eq!(e.kind(), RealtimeErrorKind::JoinRejected, "{what}: {e:?}");
            assert_eq!(e.class(), ErrorClass::Fatal, "{what}: {e:?}");
            assert_eq!(
                e.message(),
                format!(
                    "Unauthorized: You do not have permissions to read from this Channel topic: {topic}"
                ),
                "{what}: {e:?}"
            );
        }
        Err(e) => panic!("{what}: failed, but not refused by the realtime server: {e:?}"),
        Ok(joined) => panic!("{what}: joined: {joined:?}"),
    }
}

/// A handle whose feeds were all refused has joined nothing: no channel, never connected.
async fn assert_joined_nothing(live: &Live, what: &str) {
    let channels = live
        .realtime()
        .channels()
        .await
        .expect("the realtime client's channels");
    assert!(
        channels.is_empty(),
        "{what}: channels were created: {channels:?}"
    );
    assert_eq!(
        live.realtime().connection_state(),
        ConnectionState::Disconnected,
        "{what}: the realtime client connected"
    );
}

/// A presence and every change it delivered so far (joined with a snapshot: the agents
/// already online come as `Joined` too).
struct PresenceLog {
    presence: AgentPresence,
    seen: Vec<PresenceChange>,
    what: String,
}

impl PresenceLog {
    async fn join(live: &Live, site: &str, agent: &str, what: &str) -> PresenceLog {
        let presence = live
            .agent_presence(id(site), agent, AgentStatus::Online)
            .snapshot(true)
            .join()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let mut log = PresenceLog {
            presence,
            seen: Vec::new(),
            what: what.to_string(),
        };
        log.until_online(agent).await;
        log
    }

    /// Reads changes until `key` is online (joined or updated), then waits until the online
    /// list shows it too (the list is updated just after the changes are sent).
    async fn until_online(&mut self, key: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if self.seen.iter().any(|c| {
                matches!(c, PresenceChange::Joined(a) | PresenceChange::Updated(a) if a.key == key)
            }) {
                let mut list = self.presence.online_watch();
                let listed = tokio::time::timeout_at(
                    deadline,
                    list.wait_for(|l| l.iter().any(|a| a.key == key)),
                )
                .await;
                assert!(
                    matches!(listed, Ok(Ok(_))),
                    "{}: {key} joined but is not in the online list: {:?}",
                    self.what,
                    self.online()
                );
                return;
            }
            match tokio::time::timeout_at(deadline, self.presence.next()).await {
                Ok(Some(change)) => self.seen.push(change),
                Ok(None) => panic!("{}: the presence stopped: {:#?}", self.what, self.seen),
                Err(_) => panic!(
                    "{}: {key} not online within {WAIT:?}: {:#?}",
                    self.what, self.seen
                ),
            }
        }
    }

    /// The presence keys of every join, leave and update seen so far.
    fn keys_seen(&self) -> BTreeSet<String> {
        self.seen
            .iter()
            .filter_map(|c| match c {
                PresenceChange::Joined(a)
                | PresenceChange::Left(a)
                | PresenceChange::Updated(a) => Some(a.key.clone()),
                _ => None,
            })
            .collect()
    }

    /// The keys of the online list now.
    fn online(&self) -> BTreeSet<String> {
        self.presence
            .online_agents()
            .into_iter()
            .map(|a| a.key)
            .collect()
    }
}

fn keys(ks: &[&str]) -> BTreeSet<String> {
    ks.iter().map(|k| k.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_gets_no_row_change_of_agency_b_on_the_message_and_conversation_feeds() {
    let env = Env::new().await;
    let live = live(&env.alice_client);

    // Agency B's feeds are refused before any channel is joined.
    for conv in [CONV_B_ACTIVE, CONV_B_RESOLVED] {
        assert_not_visible(
            live.messages(id(conv)).subscribe().await,
            &format!("alice's feed of B's conversation {conv}"),
        );
    }
    assert_not_visible(
        live.conversations(id(SITE_3)).subscribe().await,
        "alice's feed of B's site",
    );
    assert_joined_nothing(&live, "alice's handle after B's feeds were refused").await;

    // The same handle follows agency A (one realtime connection for both feeds).
    let a_messages = message_feed(&live, CONV_A_ACTIVE, "alice's feed of A's conversation").await;
    let a_conversations = conversation_feed(&live, SITE_1, "alice's feed of A's site").await;

    // Agency B's rows change: a message (INSERT, and the trigger's conversation UPDATE), a
    // message's status (UPDATE), the conversation (UPDATE), a new conversation (INSERT), and
    // a conversation's deletion.
    env.insert_message(CONV_B_ACTIVE, SITE_3, "agency B: not for alice")
        .await;
    env.exec(&format!(
        "update public.mod_chat_messages set status = 'read' where id = '{MSG_B_VISITOR}'"
    ))
    .await;
    env.exec(&format!(
        "update public.mod_chat_conversations set priority = 'urgent', tags = '{{beta-only}}' \
         where id = '{CONV_B_ACTIVE}'"
    ))
    .await;
    let gone = env
        .insert_conversation(SITE_3, VISITOR_RUTH_3, "agency B: not for alice")
        .await;
    env.exec(&format!(
        "delete from public.mod_chat_conversations where id = '{gone}'"
    ))
    .await;

    // Then agency A's rows change: alice's feeds get them, and nothing of agency B (changes are
    // dispatched in commit order, so B's had been dispatched before).
    let a_msg = env
        .insert_message(CONV_A_ACTIVE, SITE_1, "agency A: for alice")
        .await;
    let marker = format!("agency A marker {}", Uuid::new_v4());
    env.exec(&format!(
        "update public.mod_chat_conversations set subject = '{marker}' where id = '{CONV_A_ACTIVE}'"
    ))
    .await;
    a_messages
        .wait_until(
            "alice's feed of A's conversation gets A's message",
            WAIT,
            |ev| {
                ev.iter()
                    .any(|e| matches!(e, MessageEvent::New { message, .. } if message.id == a_msg))
            },
        )
        .await;
    a_conversations
        .wait_until(
            "alice's feed of A's site gets A's conversation update",
            WAIT,
            |ev| {
                ev.iter().any(|e| match e {
                    ConversationEvent::New(c) | ConversationEvent::Updated(c) => {
                        c.subject.as_deref() == Some(marker.as_str())
                    }
                    _ => false,
                })
            },
        )
        .await;
    let events = a_messages.items();
    for row in message_rows(&events) {
        match row {
            MessageEvent::New { message, .. } | MessageEvent::Updated(message) => assert_eq!(
                message.conversation_id,
                id(CONV_A_ACTIVE),
                "alice's feed of A's conversation delivered another conversation's row: {events:#?}"
            ),
            _ => unreachable!(),
        }
    }
    let events = a_conversations.items();
    for row in conversation_rows(&events) {
        match row {
            ConversationEvent::New(c) | ConversationEvent::Updated(c) => assert_eq!(
                c.site_id,
                id(SITE_1),
                "alice's feed of A's site delivered another site's row: {events:#?}"
            ),
            ConversationEvent::Deleted { id: deleted, .. } => {
                panic!("alice's feed of A's site delivered the deletion of {deleted}: {events:#?}")
            }
            _ => unreachable!(),
        }
    }

    // The ids were real and the refusal was about alice: once she is a member of agency B, the
    // same handle subscribes to B's feeds, and they deliver B's next change.
    env.make_alice_a_member_of_agency_b().await;
    let b_messages = message_feed(
        &live,
        CONV_B_ACTIVE,
        "alice (now a member) follows B's conversation",
    )
    .await;
    let b_conversations =
        conversation_feed(&live, SITE_3, "alice (now a member) follows B's site").await;
    let content = format!("agency B, alice a member now {}", Uuid::new_v4());
    let b_msg = env.insert_message(CONV_B_ACTIVE, SITE_3, &content).await;
    b_messages
        .wait_until("alice (now a member) gets B's message", WAIT, |ev| {
            ev.iter()
                .any(|e| matches!(e, MessageEvent::New { message, .. } if message.id == b_msg))
        })
        .await;
    b_conversations
        .wait_until(
            "alice (now a member) gets B's conversation update",
            WAIT,
            |ev| {
                ev.iter().any(|e| {
                    matches!(e, ConversationEvent::New(c) | ConversationEvent::Updated(c)
                        if c.id == id(CONV_B_ACTIVE)
                            && c.last_message_text.as_deref() == Some(content.as_str()))
                })
            },
        )
        .await;
    for feed in [b_messages, a_messages] {
        feed.stop();
    }
    for feed in [b_conversations, a_conversations] {
        feed.stop();
    }
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_gets_no_presence_of_agency_b() {
    let env = Env::new().await;
    let erin_client = env.add_erin_to_agency_b().await;
    let site3 = id(SITE_3);

    // --- Public channels (the default): the library refuses before joining. ----------------
    let mut dave = PresenceLog::join(
        &live(&env.dave_client),
        SITE_3,
        AGENT_DAVE_3,
        "dave on his site's presence",
    )
    .await;
    let alice_live = live(&env.alice_client);
    assert_not_visible(
        alice_live
            .agent_presence(site3, AGENT_ALICE_1, AgentStatus::Online)
            .join()
            .await,
        "alice's presence on site 3",
    );
    assert_joined_nothing(&alice_live, "alice's handle after B's presence was refused").await;
    // The later positive: erin comes online after alice's attempt; dave has seen only
    // agency B's agents.
    let erin = PresenceLog::join(&live(&erin_client), SITE_3, ERIN_AGENT, "erin on site 3").await;
    dave.until_online(ERIN_AGENT).await;
    assert_eq!(
        dave.keys_seen(),
        keys(&[AGENT_DAVE_3, ERIN_AGENT]),
        "dave's presence changes"
    );
    assert_eq!(
        dave.online(),
        keys(&[AGENT_DAVE_3, ERIN_AGENT]),
        "dave's online list"
    );
    // Alice's own site works on the same handle.
    let alice_own = PresenceLog::join(&alice_live, SITE_1, AGENT_ALICE_1, "alice on site 1").await;
    assert_eq!(
        alice_own.keys_seen(),
        keys(&[AGENT_ALICE_1]),
        "alice on site 1"
    );
    drop((dave, erin, alice_own));

    // --- Private channels: the server authorizes, and refuses alice. ------------------------
    let mut dave = PresenceLog::join(
        &live(&env.dave_client).private_channels(true),
        SITE_3,
        AGENT_DAVE_3,
        "dave on his site's private presence",
    )
    .await;
    let alice_private = live(&env.alice_client)
        .check_access(false)
        .private_channels(true);
    assert_refused_by_server(
        alice_private
            .agent_presence(site3, AGENT_ALICE_1, AgentStatus::Online)
            .join()
            .await,
        &presence_channel_name(site3),
        "alice's private presence on site 3, without the library's check",
    );
    // The later positive: erin joins the private channel after alice's refusal; dave and erin
    // see each other, and nothing of alice.
    let mut erin = PresenceLog::join(
        &live(&erin_client).private_channels(true),
        SITE_3,
        ERIN_AGENT,
        "erin on site 3's private presence",
    )
    .await;
    dave.until_online(ERIN_AGENT).await;
    erin.until_online(AGENT_DAVE_3).await;
    for (log, who) in [(&dave, "dave"), (&erin, "erin")] {
        let both = keys(&[AGENT_DAVE_3, ERIN_AGENT]);
        assert_eq!(log.keys_seen(), both, "{who}'s private presence changes");
        assert_eq!(log.online(), both, "{who}'s private online list");
    }
    // The refusal is about agency B: the same handle joins alice's own site privately.
    let alice_own = PresenceLog::join(
        &alice_private,
        SITE_1,
        AGENT_ALICE_1,
        "alice on site 1's private presence",
    )
    .await;
    assert_eq!(
        alice_own.keys_seen(),
        keys(&[AGENT_ALICE_1]),
        "alice on site 1 (private)"
    );
    drop((dave, erin, alice_own));
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_gets_no_typing_indicator_of_agency_b() {
    let env = Env::new().await;
    let erin_client = env.add_erin_to_agency_b().await;
    let conv = id(CONV_B_ACTIVE);
    let name = chat_channel_name(conv);

    // --- Public channels (the default): the library refuses before joining. ----------------
    let alice_live = live(&env.alice_client);
    assert_not_visible(
        alice_live.messages(conv).subscribe().await,
        "alice's feed of B's conversation",
    );
    assert_joined_nothing(&alice_live, "alice's handle after B's feed was refused").await;
    // Dave types in his conversation: agency B's other member gets it (the indicator was
    // sent), alice has no feed to get it with.
    let (dave_events, dave_typing) =
        message_feed_typing(&live(&env.dave_client), CONV_B_ACTIVE, "dave's feed").await;
    let erin_events = message_feed(&live(&erin_client), CONV_B_ACTIVE, "erin's feed").await;
    dave_typing
        .start(AGENT_DAVE_3, "Dave Daka")
        .await
        .expect("dave types");
    erin_events
        .wait_until("erin gets dave's typing", WAIT, |ev| {
            has_typing_of(ev, AGENT_DAVE_3)
        })
        .await;
    dave_events.stop();
    erin_events.stop();

    // --- Private channels: the server authorizes. --------------------------------------------
    let (dave_events, dave_typing) = message_feed_typing(
        &live(&env.dave_client).private_channels(true),
        CONV_B_ACTIVE,
        "dave's private feed",
    )
    .await;
    let (erin_events, erin_typing) = message_feed_typing(
        &live(&erin_client).private_channels(true),
        CONV_B_ACTIVE,
        "erin's private feed",
    )
    .await;
    // Alice, even without the library's check, cannot join it…
    assert_refused_by_server(
        live(&env.alice_client)
            .check_access(false)
            .private_channels(true)
            .messages(conv)
            .subscribe()
            .await,
        &name,
        "alice's private feed of B's conversation, without the library's check",
    );
    // …nor type into it: a broadcast over HTTP to the private room (which the write policy
    // must refuse) and one to the public room of the same name (another room).
    // (The server answers 202 and drops what the write policy refuses, as Supabase does;
    // whatever it answers, B's members must not get it.)
    let mut attempts = Vec::new();
    for private in [true, false] {
        let alice_rt = live(&env.alice_client);
        let channel = alice_rt
            .realtime()
            .channel(&name, ChannelConfig::new().private(private))
            .await
            .expect("a channel handle");
        let sent = channel
            .http_send(
                TYPING_START,
                json!({"senderId": ALICE_INTRUDER, "senderName": "Alice"}),
            )
            .await;
        attempts.push((if private { "private" } else { "public" }, sent));
    }
    // …and the public room carries nothing of agency B's private channel: alice joins it by
    // hand (public rooms are open by design), and only sees her own other tab.
    let alice_public = message_feed(
        &live(&env.alice_client).check_access(false),
        CONV_B_ACTIVE,
        "alice's feed of the public room of B's conversation, without the library's check",
    )
    .await;
    // Dave types on the private channel: erin gets it (the positive of B's members)…
    dave_typing
        .start(AGENT_DAVE_3, "Dave Daka")
        .await
        .expect("dave types (private)");
    erin_events
        .wait_until("erin gets dave's typing (private)", WAIT, |ev| {
            has_typing_of(ev, AGENT_DAVE_3)
        })
        .await;
    // …then erin types: the later positive for dave, after alice's attempts to type.
    erin_typing
        .start(ERIN_AGENT, "Erin Ekwueme")
        .await
        .expect("erin types (private)");
    dave_events
        .wait_until("dave gets erin's typing (private)", WAIT, |ev| {
            has_typing_of(ev, ERIN_AGENT)
        })
        .await;
    assert_eq!(
        typing_senders(&dave_events.items()),
        vec![ERIN_AGENT.to_string()],
        "dave's private feed got typing indicators from outside agency B (alice's HTTP \
         attempts: {attempts:?})"
    );
    assert_eq!(
        typing_senders(&erin_events.items()),
        vec![AGENT_DAVE_3.to_string()],
        "erin's private feed got typing indicators from outside agency B"
    );
    // Alice's other tab types on the public room after dave's private indicator was relayed:
    // the first (and only) indicator of alice's public feed must be her own tab's.
    let other_tab = live(&env.alice_client);
    let tab = other_tab
        .realtime()
        .channel(&name, ChannelConfig::new().broadcast_ack(true))
        .await
        .expect("alice's other tab");
    tab.subscribe().await.expect("alice's other tab joins");
    tab.send(
        TYPING_START,
        json!({"senderId": "alice-other-tab", "senderName": "Alice"}),
    )
    .await
    .expect("alice's other tab types");
    alice_public
        .wait_until("alice gets her other tab's typing", WAIT, |ev| {
            has_typing_of(ev, "alice-other-tab")
        })
        .await;
    let seen = typing_senders(&alice_public.items());
    assert_eq!(
        seen,
        vec!["alice-other-tab".to_string()],
        "alice's feed of the public room got agency B's private typing: {seen:?}"
    );
    for feed in [dave_events, erin_events, alice_public] {
        feed.stop();
    }
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_gets_no_conversation_deletion_of_agency_b() {
    let env = Env::new().await;

    // --- Public channels (the default): the library refuses before joining. ----------------
    let alice_live = live(&env.alice_client);
    assert_not_visible(
        alice_live.conversations(id(SITE_3)).subscribe().await,
        "alice's feed of B's site",
    );
    assert_joined_nothing(&alice_live, "alice's handle after B's feed was refused").await;
    let dave_feed =
        conversation_feed(&live(&env.dave_client), SITE_3, "dave's feed of site 3").await;
    let alice_feed = conversation_feed(&alice_live, SITE_1, "alice's feed of site 1").await;
    // Agency B creates and deletes a conversation: dave gets the deletion…
    let gone = env
        .insert_conversation(SITE_3, VISITOR_RUTH_3, "agency B: deleted")
        .await;
    env.exec(&format!(
        "delete from public.mod_chat_conversations where id = '{gone}'"
    ))
    .await;
    dave_feed
        .wait_until("dave gets B's deletion", WAIT, |ev| {
            has_deletion_of(ev, gone)
        })
        .await;
    // …then agency A creates one: alice's feed gets it, and nothing of B.
    let a_conv = env
        .insert_conversation(SITE_1, VISITOR_MIA_1, "agency A: for alice")
        .await;
    alice_feed
        .wait_until("alice gets A's new conversation", WAIT, |ev| {
            has_new_conversation(ev, a_conv)
        })
        .await;
    let events = alice_feed.items();
    assert!(
        !has_deletion_of(&events, gone) && !has_new_conversation(&events, gone),
        "alice's feed of site 1 delivered B's conversation: {events:#?}"
    );
    dave_feed.stop();
    alice_feed.stop();

    // --- Private channels: the server refuses alice B's site feed. ----------------------------
    let dave_feed = conversation_feed(
        &live(&env.dave_client).private_channels(true),
        SITE_3,
        "dave's private feed of site 3",
    )
    .await;
    let alice_private = live(&env.alice_client)
        .check_access(false)
        .private_channels(true);
    assert_refused_by_server(
        alice_private.conversations(id(SITE_3)).subscribe().await,
        &conversations_channel_name(id(SITE_3)),
        "alice's private feed of B's site, without the library's check",
    );
    // The refusal is about agency B: the same handle follows alice's own site privately.
    let alice_feed =
        conversation_feed(&alice_private, SITE_1, "alice's private feed of site 1").await;
    let gone = env
        .insert_conversation(SITE_3, VISITOR_RUTH_3, "agency B: deleted (private)")
        .await;
    env.exec(&format!(
        "delete from public.mod_chat_conversations where id = '{gone}'"
    ))
    .await;
    dave_feed
        .wait_until("dave gets B's deletion (private)", WAIT, |ev| {
            has_deletion_of(ev, gone)
        })
        .await;
    let a_conv = env
        .insert_conversation(SITE_1, VISITOR_MIA_1, "agency A: for alice (private)")
        .await;
    alice_feed
        .wait_until("alice gets A's new conversation (private)", WAIT, |ev| {
            has_new_conversation(ev, a_conv)
        })
        .await;
    dave_feed.stop();
    alice_feed.stop();
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agency_a_members_reach_each_other_on_private_channels() {
    let env = Env::new().await;
    let bob_client = env.client_with(env.stack.user_token(BOB.0, Some(BOB.1)));
    let alice_live = live(&env.alice_client).private_channels(true);
    let bob_live = live(&bob_client).private_channels(true);

    // Presence of site 1: each sees the other.
    let mut alice = PresenceLog::join(&alice_live, SITE_1, AGENT_ALICE_1, "alice (private)").await;
    let mut bob = PresenceLog::join(&bob_live, SITE_1, AGENT_BOB_1, "bob (private)").await;
    alice.until_online(AGENT_BOB_1).await;
    bob.until_online(AGENT_ALICE_1).await;
    let both = keys(&[AGENT_ALICE_1, AGENT_BOB_1]);
    assert_eq!(alice.online(), both);
    assert_eq!(bob.online(), both);

    // Typing and messages of an agency-A conversation.
    let (alice_events, alice_typing) =
        message_feed_typing(&alice_live, CONV_A_ACTIVE, "alice's private feed").await;
    let (bob_events, bob_typing) =
        message_feed_typing(&bob_live, CONV_A_ACTIVE, "bob's private feed").await;
    alice_typing
        .start(AGENT_ALICE_1, "Alice Anderson")
        .await
        .expect("alice types");
    bob_events
        .wait_until("bob gets alice's typing", WAIT, |ev| {
            has_typing_of(ev, AGENT_ALICE_1)
        })
        .await;
    bob_typing
        .start(AGENT_BOB_1, "Bob Brown")
        .await
        .expect("bob types");
    alice_events
        .wait_until("alice gets bob's typing", WAIT, |ev| {
            has_typing_of(ev, AGENT_BOB_1)
        })
        .await;
    let msg = env
        .insert_message(CONV_A_ACTIVE, SITE_1, "agency A: private channels")
        .await;
    for (events, who) in [(&alice_events, "alice"), (&bob_events, "bob")] {
        events
            .wait_until(&format!("{who} gets the new message"), WAIT, |ev| {
                ev.iter()
                    .any(|e| matches!(e, MessageEvent::New { message, .. } if message.id == msg))
            })
            .await;
    }

    // The site's conversation feed.
    let conversations = conversation_feed(&bob_live, SITE_1, "bob's private feed of site 1").await;
    let conv = env
        .insert_conversation(SITE_1, VISITOR_MIA_1, "agency A: private feed")
        .await;
    conversations
        .wait_until("bob gets the new conversation", WAIT, |ev| {
            has_new_conversation(ev, conv)
        })
        .await;
    for feed in [alice_events, bob_events] {
        feed.stop();
    }
    conversations.stop();
    drop((alice, bob));
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_token_joins_only_its_own_conversations_private_channel() {
    let env = Env::new().await;
    let token = mint_visitor_token(
        env.stack.jwt_secret(),
        id(VISITOR_MIA_1),
        id(SITE_1),
        Duration::from_secs(600),
    )
    .expect("a visitor token");
    let mia_client = env.client_with(token);

    // Mia's own conversation: she gets the agent's typing, the agent gets hers.
    let (mia_events, mia_typing) = message_feed_typing(
        &live(&mia_client).private_channels(true),
        CONV_A_PENDING,
        "mia's private feed of her conversation",
    )
    .await;
    let (alice_events, alice_typing) = message_feed_typing(
        &live(&env.alice_client).private_channels(true),
        CONV_A_PENDING,
        "alice's private feed of mia's conversation",
    )
    .await;
    alice_typing
        .start(AGENT_ALICE_1, "Alice Anderson")
        .await
        .expect("alice types");
    mia_events
        .wait_until("mia gets alice's typing", WAIT, |ev| {
            has_typing_of(ev, AGENT_ALICE_1)
        })
        .await;
    mia_typing
        .start(VISITOR_MIA_1, "Mia")
        .await
        .expect("mia types");
    alice_events
        .wait_until("alice gets mia's typing", WAIT, |ev| {
            has_typing_of(ev, VISITOR_MIA_1)
        })
        .await;

    // Another visitor's conversation: not visible to the library's check, refused by the
    // server without it.
    let mia_live = live(&mia_client).private_channels(true);
    assert_not_visible(
        mia_live.messages(id(CONV_A_ACTIVE)).subscribe().await,
        "mia's feed of another visitor's conversation",
    );
    assert_joined_nothing(&mia_live, "mia's handle after the refusal").await;
    let mia_raw = live(&mia_client).check_access(false).private_channels(true);
    assert_refused_by_server(
        mia_raw.messages(id(CONV_A_ACTIVE)).subscribe().await,
        &chat_channel_name(id(CONV_A_ACTIVE)),
        "mia's private feed of another visitor's conversation, without the library's check",
    );
    // The site's presence is for agents only.
    assert_refused_by_server(
        mia_raw
            .agent_presence(id(SITE_1), VISITOR_MIA_1, AgentStatus::Online)
            .join()
            .await,
        &presence_channel_name(id(SITE_1)),
        "mia's private presence on her site, without the library's check",
    );
    // The refusals are about those channels: the same handle joins mia's own conversation.
    let own = message_feed(
        &mia_raw,
        CONV_A_PENDING,
        "mia's own conversation on the same handle",
    )
    .await;
    for feed in [mia_events, alice_events, own] {
        feed.stop();
    }
    env.shutdown().await;
}
