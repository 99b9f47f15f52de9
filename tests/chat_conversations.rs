//! The conversation and message actions against the real local stack (seeded), each with the
//! service-role key and with alice's JWT (agency A), results compared with direct SQL on the
//! same database; dave (agency B) reaching nothing of agency A; input refused before any request;
//! hostile search text matched literally; the statistics in exactly one HTTP request.

use crate::conv;

use chrono::{DateTime, Duration, TimeZone, Utc};
use conv::*;
use livechat::chat::conversations::{ListConversations, NewConversation, Reader};
use livechat::chat::messages::{Cursor, NewFileMessage, NewMessage};
use livechat::chat::models::{
    Agent, Channel, ContentType, Conversation, ConversationStatus, Department, Message,
    MessageStatus, Priority, SenderType, Visitor,
};
use livechat::chat::views::ConversationListItem;
use livechat::chat::{Chat, ChatError};
use livechat::ErrorKind;
use uuid::Uuid;

/// The kind and chat error of a failed call.
fn failure<T: std::fmt::Debug>(r: livechat::Result<T>) -> (ErrorKind, Option<ChatError>) {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => (e.kind(), ChatError::of(&e)),
    }
}

async fn messages_of(env: &Env, conversation_id: &str) -> Vec<Message> {
    env.json_rows(
        "select to_jsonb(m)::text from mod_chat_messages m \
         where m.conversation_id = $1::text::uuid order by m.created_at, m.id",
        &[&conversation_id],
    )
    .await
}

fn ids<'a>(items: impl IntoIterator<Item = &'a ConversationListItem>) -> Vec<String> {
    items
        .into_iter()
        .map(|i| i.conversation.id.to_string())
        .collect()
}

// =============================================================================================
// Conversations
// =============================================================================================

type Shape = Box<dyn for<'a> Fn(ListConversations<'a>) -> ListConversations<'a>>;

fn shape<F>(f: F) -> Shape
where
    F: for<'a> Fn(ListConversations<'a>) -> ListConversations<'a> + 'static,
{
    Box::new(f)
}

#[tokio::test]
async fn listing_filters_sorts_and_counts_like_sql() {
    for who in CALLERS {
        let env = seeded().await;
        let chat = env.chat(who);
        let since = Utc::now() - Duration::hours(2);
        let since_sql = since.to_rfc3339();
        let cases: Vec<(&str, String, Shape)> = vec![
            ("no filter", "true".into(), shape(|l| l)),
            (
                "status",
                "c.status = 'active'".into(),
                shape(|l| l.status(ConversationStatus::Active)),
            ),
            (
                "channel",
                "c.channel = 'whatsapp'".into(),
                shape(|l| l.channel(Channel::Whatsapp)),
            ),
            (
                "unassigned",
                "c.assigned_agent_id is null".into(),
                shape(|l| l.unassigned()),
            ),
            (
                "assigned",
                format!("c.assigned_agent_id = '{AGENT_ALICE_1}'"),
                shape(|l| l.assigned_to(id(AGENT_ALICE_1))),
            ),
            (
                "department",
                format!("c.department_id = '{DEPT_SUPPORT_1}'"),
                shape(|l| l.department(id(DEPT_SUPPORT_1))),
            ),
            (
                "priority",
                "c.priority = 'high'".into(),
                shape(|l| l.priority(Priority::High)),
            ),
            (
                "created range",
                format!("c.created_at >= '{since_sql}'::timestamptz and c.created_at <= now()"),
                shape(move |l| l.created_from(since).created_to(Utc::now())),
            ),
            (
                "search, any case",
                "(strpos(lower(coalesce(c.last_message_text, '')), 'mia') > 0 \
                  or strpos(lower(coalesce(v.name, '')), 'mia') > 0 \
                  or strpos(lower(coalesce(v.email, '')), 'mia') > 0)"
                    .into(),
                shape(|l| l.search("MIA")),
            ),
            (
                "search in the last message",
                "strpos(lower(coalesce(c.last_message_text, '')), 'courier') > 0".into(),
                shape(|l| l.search("Courier")),
            ),
            (
                "combined",
                "c.status = 'pending' and c.assigned_agent_id is null".into(),
                shape(|l| l.status(ConversationStatus::Pending).unassigned()),
            ),
        ];
        for (name, cond, shape) in &cases {
            let sql = format!(
                "select c.id::text from mod_chat_conversations c \
                 left join mod_chat_visitors v on v.id = c.visitor_id \
                 where c.site_id = $1::text::uuid and ({cond}) \
                 order by c.last_message_at desc nulls last, c.id"
            );
            let expected = env.texts(&sql, &[&SITE_1]).await;
            let page = shape(chat.conversations().list(id(SITE_1)).page_size(1000))
                .send()
                .await
                .unwrap();
            assert_eq!(ids(&page.items), expected, "{who:?} {name}");
            assert_eq!(page.total, expected.len() as u64, "{who:?} {name}");

            // Paging walks the same order with the same exact total.
            let mut walked = Vec::new();
            for p in 1..=(expected.len() as u32 / 2 + 1) {
                let page = shape(chat.conversations().list(id(SITE_1)).page(p).page_size(2))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(page.total, expected.len() as u64, "{who:?} {name} page {p}");
                walked.extend(ids(&page.items));
            }
            assert_eq!(walked, expected, "{who:?} {name}: pages");
        }

        // A page past the last one is empty but still says how many there are.
        let all = env
            .int(
                "select count(*) from mod_chat_conversations where site_id = $1::text::uuid",
                &[&SITE_1],
            )
            .await;
        let far = chat
            .conversations()
            .list(id(SITE_1))
            .page(50)
            .page_size(20)
            .send()
            .await
            .unwrap();
        assert!(far.items.is_empty());
        assert_eq!(far.total, all as u64);
        assert!(!far.has_next());

        // Every item carries the row and the joined names SQL gives.
        let page = chat
            .conversations()
            .list(id(SITE_1))
            .page_size(100)
            .send()
            .await
            .unwrap();
        for item in &page.items {
            let cid = item.conversation.id.to_string();
            let row: Conversation = env.conversation(&cid).await;
            assert_eq!(item.conversation, row, "{who:?} {cid}");
            let names: Vec<Option<String>> = env
                .json_row(
                    "select jsonb_build_array(v.name, v.email, v.avatar_url, a.display_name, \
                            a.avatar_url, d.name)::text
                     from mod_chat_conversations c
                     left join mod_chat_visitors v on v.id = c.visitor_id
                     left join mod_chat_agents a on a.id = c.assigned_agent_id
                     left join mod_chat_departments d on d.id = c.department_id
                     where c.id = $1::text::uuid",
                    &[&cid],
                )
                .await;
            assert_eq!(
                names,
                vec![
                    item.visitor_name.clone(),
                    item.visitor_email.clone(),
                    item.visitor_avatar_url.clone(),
                    item.agent_display_name.clone(),
                    item.agent_avatar_url.clone(),
                    item.department_name.clone(),
                ],
                "{who:?} {cid}"
            );
        }
    }
}

#[tokio::test]
async fn getting_a_conversation_returns_it_with_its_visitor_agent_and_department() {
    for who in CALLERS {
        let env = seeded().await;
        let chat = env.chat(who);
        let detail = chat
            .conversations()
            .get(id(CONV_ACTIVE_102))
            .await
            .unwrap()
            .expect("visible");
        let row: Conversation = env.conversation(CONV_ACTIVE_102).await;
        assert_eq!(detail.conversation, row);
        let visitor: Visitor = env
            .json_row(
                "select to_jsonb(v)::text from mod_chat_visitors v where v.id = $1::text::uuid",
                &[&VISITOR_NOAH_1],
            )
            .await;
        let agent: Agent = env
            .json_row(
                "select to_jsonb(a)::text from mod_chat_agents a where a.id = $1::text::uuid",
                &[&AGENT_ALICE_1],
            )
            .await;
        let department: Department = env
            .json_row(
                "select to_jsonb(d)::text from mod_chat_departments d where d.id = $1::text::uuid",
                &[&DEPT_SALES_1],
            )
            .await;
        assert_eq!(detail.visitor, Some(visitor), "{who:?}");
        assert_eq!(detail.agent, Some(agent), "{who:?}");
        assert_eq!(detail.department, Some(department), "{who:?}");

        // Unassigned: no agent.
        let pending = chat
            .conversations()
            .get(id(CONV_PENDING_101))
            .await
            .unwrap()
            .expect("visible");
        assert_eq!(pending.agent, None);
        assert_eq!(pending.conversation.status, ConversationStatus::Pending);

        // Absent: none, not an error.
        assert_eq!(
            chat.conversations().get(Uuid::new_v4()).await.unwrap(),
            None
        );
    }
}

#[tokio::test]
async fn creating_a_conversation_routes_it_to_the_least_loaded_online_agent() {
    for who in CALLERS {
        let env = seeded().await;
        let chat = env.chat(who);
        let routed_to = env
            .texts(
                "select id::text from mod_chat_agents
                 where site_id = $1::text::uuid and is_active and status = 'online'
                   and coalesce(current_chat_count, 0) < coalesce(max_concurrent_chats, 5)
                 order by coalesce(current_chat_count, 0), id limit 1",
                &[&SITE_1],
            )
            .await;
        let before_load = env.load(&routed_to[0]).await;
        let visits_before = env
            .int(
                "select total_conversations::bigint from mod_chat_visitors where id = $1::text::uuid",
                &[&VISITOR_MIA_1],
            )
            .await;

        let conv = chat
            .conversations()
            .create(NewConversation::new(id(SITE_1), id(VISITOR_MIA_1)).subject("Gift card, (50%)"))
            .await
            .unwrap();
        let row: Conversation = env.conversation(&conv.id.to_string()).await;
        assert_eq!(conv, row, "{who:?}");
        assert_eq!(conv.status, ConversationStatus::Active);
        assert_eq!(conv.priority, Some(Priority::Normal));
        assert_eq!(conv.channel, Channel::Widget);
        assert_eq!(conv.subject.as_deref(), Some("Gift card, (50%)"));
        assert_eq!(conv.assigned_agent_id, Some(id(&routed_to[0])));
        assert!(conv.wait_time_seconds.is_some());
        assert_eq!(env.load(&routed_to[0]).await, before_load + 1);
        let visits_after = env
            .int(
                "select total_conversations::bigint from mod_chat_visitors where id = $1::text::uuid",
                &[&VISITOR_MIA_1],
            )
            .await;
        assert_eq!(visits_after, visits_before + 1);

        // A department that auto-assigns routes to its own agents only (bob is Support's).
        let support = chat
            .conversations()
            .create(
                NewConversation::new(id(SITE_1), id(VISITOR_NOAH_1))
                    .department(id(DEPT_SUPPORT_1))
                    .channel(Channel::Api),
            )
            .await
            .unwrap();
        assert_eq!(support.assigned_agent_id, Some(id(AGENT_BOB_1)));
        assert_eq!(support.channel, Channel::Api);

        // Without auto-assignment, and in a department that does not auto-assign: pending.
        let manual = chat
            .conversations()
            .create(NewConversation::new(id(SITE_1), id(VISITOR_MIA_1)).auto_assign(false))
            .await
            .unwrap();
        assert_eq!(manual.status, ConversationStatus::Pending);
        assert_eq!(manual.assigned_agent_id, None);
        let editorial = chat
            .conversations()
            .create(
                NewConversation::new(id(SITE_2), id(VISITOR_QUINN_2))
                    .department(id(DEPT_EDITORIAL_2)),
            )
            .await
            .unwrap();
        assert_eq!(editorial.status, ConversationStatus::Pending);
        assert_eq!(editorial.assigned_agent_id, None);

        // A visitor or department of another site is "not found", and nothing is inserted.
        let count_before = env
            .int("select count(*) from mod_chat_conversations", &[])
            .await;
        let (kind, chat_err) = failure(
            chat.conversations()
                .create(NewConversation::new(id(SITE_1), id(VISITOR_QUINN_2)))
                .await,
        );
        assert_eq!(kind, ErrorKind::NotFound);
        assert_eq!(chat_err, Some(ChatError::VisitorNotFound));
        let (_, chat_err) = failure(
            chat.conversations()
                .create(
                    NewConversation::new(id(SITE_1), id(VISITOR_MIA_1))
                        .department(id(DEPT_EDITORIAL_2)),
                )
                .await,
        );
        assert_eq!(chat_err, Some(ChatError::DepartmentNotFound));
        assert_eq!(
            env.int("select count(*) from mod_chat_conversations", &[])
                .await,
            count_before
        );
        env.assert_agent_counts().await;
    }
}

#[tokio::test]
async fn assigning_activates_a_pending_conversation_and_moves_the_slot() {
    for who in CALLERS {
        let env = seeded().await;
        let chat = env.chat(who);
        let (carol, bob) = (env.load(AGENT_CAROL_1).await, env.load(AGENT_BOB_1).await);

        let conv = chat
            .conversations()
            .assign(id(CONV_PENDING_101), id(AGENT_CAROL_1))
            .await
            .unwrap();
        assert_eq!(
            conv,
            env.conversation::<Conversation>(CONV_PENDING_101).await
        );
        assert_eq!(conv.status, ConversationStatus::Active);
        assert_eq!(conv.assigned_agent_id, Some(id(AGENT_CAROL_1)));
        let expected_wait = env
            .int(
                "select floor(extract(epoch from (updated_at - created_at)))::bigint
                 from mod_chat_conversations where id = $1::text::uuid",
                &[&CONV_PENDING_101],
            )
            .await;
        assert_eq!(conv.wait_time_seconds.map(i64::from), Some(expected_wait));
        assert_eq!(env.load(AGENT_CAROL_1).await, carol + 1);

        // Reassigning frees the previous agent's slot.
        let conv = chat
            .conversations()
            .assign(id(CONV_PENDING_101), id(AGENT_BOB_1))
            .await
            .unwrap();
        assert_eq!(conv.assigned_agent_id, Some(id(AGENT_BOB_1)));
        assert_eq!(conv.wait_time_seconds.map(i64::from), Some(expected_wait));
        assert_eq!(env.load(AGENT_CAROL_1).await, carol);
        assert_eq!(env.load(AGENT_BOB_1).await, bob + 1);

        // The same agent again changes no counter.
        chat.conversations()
            .assign(id(CONV_PENDING_101), id(AGENT_BOB_1))
            .await
            .unwrap();
        assert_eq!(env.load(AGENT_BOB_1).await, bob + 1);

        // Only open conversations; only agents of the conversation's site.
        let (kind, e) = failure(
            chat.conversations()
                .assign(id(CONV_RESOLVED_103), id(AGENT_CAROL_1))
                .await,
        );
        assert_eq!(
            (kind, e),
            (ErrorKind::Conflict, Some(ChatError::InvalidState))
        );
        let (kind, e) = failure(
            chat.conversations()
                .assign(id(CONV_PENDING_101), id(AGENT_CAROL_2))
                .await,
        );
        assert_eq!(
            (kind, e),
            (ErrorKind::NotFound, Some(ChatError::AgentNotFound))
        );
        let (_, e) = failure(
            chat.conversations()
                .assign(Uuid::new_v4(), id(AGENT_CAROL_1))
                .await,
        );
        assert_eq!(e, Some(ChatError::ConversationNotFound));
        env.assert_agent_counts().await;
    }
}

#[tokio::test]
async fn assigning_above_capacity_is_refused() {
    for who in CALLERS {
        let env = seeded().await;
        let chat = env.chat(who);
        // bob: max 3, load 1.
        let mut fresh = Vec::new();
        for _ in 0..3 {
            let c = chat
                .conversations()
                .create(NewConversation::new(id(SITE_1), id(VISITOR_MIA_1)).auto_assign(false))
                .await
                .unwrap();
            fresh.push(c.id);
        }
        chat.conversations()
            .assign(fresh[0], id(AGENT_BOB_1))
            .await
            .unwrap();
        chat.conversations()
            .assign(fresh[1], id(AGENT_BOB_1))
            .await
            .unwrap();
        assert_eq!(env.load(AGENT_BOB_1).await, 3);

        let before: Conversation = env.conversation(&fresh[2].to_string()).await;
        let (kind, e) = failure(chat.conversations().assign(fresh[2], id(AGENT_BOB_1)).await);
        assert_eq!(
            (kind, e),
            (ErrorKind::Conflict, Some(ChatError::AgentAtCapacity))
        );
        assert_eq!(env.load(AGENT_BOB_1).await, 3);
        assert_eq!(
            env.conversation::<Conversation>(&fresh[2].to_string())
                .await,
            before
        );

        // A deactivated agent is refused too.
        env.exec(&format!(
            "update mod_chat_agents set is_active = false where id = '{AGENT_CAROL_1}'"
        ))
        .await;
        let (_, e) = failure(
            chat.conversations()
                .assign(fresh[2], id(AGENT_CAROL_1))
                .await,
        );
        assert_eq!(e, Some(ChatError::AgentInactive));
        env.assert_agent_counts().await;
    }
}

#[tokio::test]
async fn transferring_moves_the_slot_and_records_a_system_message_and_the_note() {
    for who in CALLERS {
        let env = seeded().await;
        let chat = env.chat(who);
        let (alice, bob) = (env.load(AGENT_ALICE_1).await, env.load(AGENT_BOB_1).await);
        let before = messages_of(&env, CONV_ACTIVE_102).await.len();
        let note = "VIP, (asked for \"billing\") 100% * O'Brien \\ 😀";

        let conv = chat
            .conversations()
            .transfer(id(CONV_ACTIVE_102), id(AGENT_BOB_1), Some(note))
            .await
            .unwrap();
        assert_eq!(
            conv,
            env.conversation::<Conversation>(CONV_ACTIVE_102).await
        );
        assert_eq!(conv.assigned_agent_id, Some(id(AGENT_BOB_1)));
        assert_eq!(env.load(AGENT_ALICE_1).await, alice - 1);
        assert_eq!(env.load(AGENT_BOB_1).await, bob + 1);
        let msgs = messages_of(&env, CONV_ACTIVE_102).await;
        assert_eq!(msgs.len(), before + 2);
        let system = &msgs[before];
        assert_eq!(system.sender_type, SenderType::System);
        assert_eq!(system.content_type, Some(ContentType::System));
        assert_eq!(
            system.content.as_deref(),
            Some("Conversation transferred to Bob Brown")
        );
        let internal = &msgs[before + 1];
        assert_eq!(internal.content.as_deref(), Some(note));
        assert_eq!(internal.content_type, Some(ContentType::Note));
        assert_eq!(internal.is_internal_note, Some(true));

        // Without a note (or a blank one): only the system message.
        chat.conversations()
            .transfer(id(CONV_ACTIVE_102), id(AGENT_CAROL_1), Some("   "))
            .await
            .unwrap();
        assert_eq!(messages_of(&env, CONV_ACTIVE_102).await.len(), before + 3);
        chat.conversations()
            .transfer(id(CONV_ACTIVE_102), id(AGENT_ALICE_1), None)
            .await
            .unwrap();
        assert_eq!(messages_of(&env, CONV_ACTIVE_102).await.len(), before + 4);

        // To the current agent: refused, nothing written.
        let (kind, e) = failure(
            chat.conversations()
                .transfer(id(CONV_ACTIVE_102), id(AGENT_ALICE_1), None)
                .await,
        );
        assert_eq!(
            (kind, e),
            (ErrorKind::Conflict, Some(ChatError::AlreadyAssigned))
        );
        assert_eq!(messages_of(&env, CONV_ACTIVE_102).await.len(), before + 4);
        assert_eq!(env.load(AGENT_ALICE_1).await, alice);
        env.assert_agent_counts().await;
    }
}

#[tokio::test]
async fn resolving_frees_the_slot_counts_the_chat_and_says_so_once() {
    for who in CALLERS {
        let env = seeded().await;
        let chat = env.chat(who);
        let alice = env.load(AGENT_ALICE_1).await;
        let handled = env
            .int(
                "select total_chats_handled::bigint from mod_chat_agents where id = $1::text::uuid",
                &[&AGENT_ALICE_1],
            )
            .await;
        let before = messages_of(&env, CONV_ACTIVE_102).await.len();

        let conv = chat
            .conversations()
            .resolve(id(CONV_ACTIVE_102))
            .await
            .unwrap();
        let row: Conversation = env.conversation(CONV_ACTIVE_102).await;
        assert_eq!(conv, row);
        assert_eq!(conv.status, ConversationStatus::Resolved);
        assert!(conv.resolved_at.is_some());
        let expected_resolution = env
            .int(
                "select floor(extract(epoch from (resolved_at - created_at)))::bigint
                 from mod_chat_conversations where id = $1::text::uuid",
                &[&CONV_ACTIVE_102],
            )
            .await;
        assert_eq!(
            conv.resolution_time_seconds.map(i64::from),
            Some(expected_resolution)
        );
        assert_eq!(env.load(AGENT_ALICE_1).await, alice - 1);
        let handled_after = env
            .int(
                "select total_chats_handled::bigint from mod_chat_agents where id = $1::text::uuid",
                &[&AGENT_ALICE_1],
            )
            .await;
        assert_eq!(handled_after, handled + 1);
        let msgs = messages_of(&env, CONV_ACTIVE_102).await;
        assert_eq!(msgs.len(), before + 1);
        assert_eq!(
            msgs.last().and_then(|m| m.content.as_deref()),
            Some("Conversation resolved")
        );

        // Again: unchanged, no second message, no second count.
        let again = chat
            .conversations()
            .resolve(id(CONV_ACTIVE_102))
            .await
            .unwrap();
        assert_eq!(again, row);
        assert_eq!(messages_of(&env, CONV_ACTIVE_102).await.len(), before + 1);
        assert_eq!(env.load(AGENT_ALICE_1).await, alice - 1);

        // A closed conversation must be reopened first.
        let (kind, e) = failure(chat.conversations().resolve(id(CONV_CLOSED_104)).await);
        assert_eq!(
            (kind, e),
            (ErrorKind::Conflict, Some(ChatError::InvalidState))
        );
        env.assert_agent_counts().await;
    }
}

#[tokio::test]
async fn closing_frees_the_slot_only_when_the_conversation_held_one() {
    for who in CALLERS {
        let env = seeded().await;
        let chat = env.chat(who);
        let bob = env.load(AGENT_BOB_1).await;

        let conv = chat
            .conversations()
            .close(id(CONV_WAITING_105))
            .await
            .unwrap();
        let row: Conversation = env.conversation(CONV_WAITING_105).await;
        assert_eq!(conv, row);
        assert_eq!(conv.status, ConversationStatus::Closed);
        assert!(conv.closed_at.is_some());
        assert!(conv.resolved_at.is_some());
        assert!(conv.resolution_time_seconds.is_some());
        assert_eq!(env.load(AGENT_BOB_1).await, bob - 1);

        // Again: unchanged.
        assert_eq!(
            chat.conversations()
                .close(id(CONV_WAITING_105))
                .await
                .unwrap(),
            row
        );
        assert_eq!(env.load(AGENT_BOB_1).await, bob - 1);

        // A resolved conversation held no slot: closing it keeps its resolved_at and bob's load.
        let resolved: Conversation = env.conversation(CONV_RESOLVED_103).await;
        let closed = chat
            .conversations()
            .close(id(CONV_RESOLVED_103))
            .await
            .unwrap();
        assert_eq!(closed.status, ConversationStatus::Closed);
        assert_eq!(closed.resolved_at, resolved.resolved_at);
        assert_eq!(env.load(AGENT_BOB_1).await, bob - 1);
        env.assert_agent_counts().await;
    }
}

#[tokio::test]
async fn reopening_takes_the_slot_again_or_returns_to_the_queue() {
    for who in CALLERS {
        let env = seeded().await;
        let chat = env.chat(who);
        let alice = env.load(AGENT_ALICE_1).await;

        let conv = chat
            .conversations()
            .reopen(id(CONV_CLOSED_104))
            .await
            .unwrap();
        assert_eq!(
            conv,
            env.conversation::<Conversation>(CONV_CLOSED_104).await
        );
        assert_eq!(conv.status, ConversationStatus::Active);
        assert_eq!(conv.assigned_agent_id, Some(id(AGENT_ALICE_1)));
        assert_eq!((conv.resolved_at, conv.closed_at), (None, None));
        assert_eq!(env.load(AGENT_ALICE_1).await, alice + 1);

        // Not resolved or closed: refused.
        let (kind, e) = failure(chat.conversations().reopen(id(CONV_CLOSED_104)).await);
        assert_eq!(
            (kind, e),
            (ErrorKind::Conflict, Some(ChatError::InvalidState))
        );
        let (_, e) = failure(chat.conversations().reopen(id(CONV_MISSED_106)).await);
        assert_eq!(e, Some(ChatError::InvalidState));

        // Its agent full: refused, still resolved.
        env.exec(&format!(
            "update mod_chat_agents set max_concurrent_chats = 1 where id = '{AGENT_BOB_1}'"
        ))
        .await;
        let (kind, e) = failure(chat.conversations().reopen(id(CONV_RESOLVED_103)).await);
        assert_eq!(
            (kind, e),
            (ErrorKind::Conflict, Some(ChatError::AgentAtCapacity))
        );
        assert_eq!(
            env.conversation::<Conversation>(CONV_RESOLVED_103)
                .await
                .status,
            ConversationStatus::Resolved
        );

        // Its agent gone: pending and unassigned, back in the queue.
        env.exec(&format!(
            "update mod_chat_agents set is_active = false where id = '{AGENT_BOB_1}'"
        ))
        .await;
        let bob = env.load(AGENT_BOB_1).await;
        let queued = chat
            .conversations()
            .reopen(id(CONV_RESOLVED_103))
            .await
            .unwrap();
        assert_eq!(queued.status, ConversationStatus::Pending);
        assert_eq!(queued.assigned_agent_id, None);
        assert_eq!(env.load(AGENT_BOB_1).await, bob);
        env.assert_agent_counts().await;
    }
}

#[tokio::test]
async fn priority_tags_and_internal_notes_are_stored_as_given() {
    for who in CALLERS {
        let env = seeded().await;
        let chat = env.chat(who);
        let c = id(CONV_PENDING_101);

        let conv = chat
            .conversations()
            .set_priority(c, Priority::Urgent)
            .await
            .unwrap();
        assert_eq!(
            conv,
            env.conversation::<Conversation>(CONV_PENDING_101).await
        );
        assert_eq!(conv.priority, Some(Priority::Urgent));

        let tags = [
            "a,b",
            "(x)",
            "NULL",
            "\"q\"",
            "back\\slash",
            "ünï 😀",
            "*%_",
        ];
        let conv = chat.conversations().set_tags(c, tags).await.unwrap();
        assert_eq!(
            conv,
            env.conversation::<Conversation>(CONV_PENDING_101).await
        );
        let stored = env
            .texts(
                "select unnest(tags) from mod_chat_conversations where id = $1::text::uuid",
                &[&CONV_PENDING_101],
            )
            .await;
        assert_eq!(stored, tags);
        let cleared = chat
            .conversations()
            .set_tags(c, Vec::<String>::new())
            .await
            .unwrap();
        assert_eq!(cleared.tags, Some(vec![]));

        let notes = "Called back; said \"(maybe) tomorrow\" — 50% off? O'Brien \\n";
        let conv = chat
            .conversations()
            .set_internal_notes(c, notes)
            .await
            .unwrap();
        assert_eq!(
            conv,
            env.conversation::<Conversation>(CONV_PENDING_101).await
        );
        assert_eq!(conv.internal_notes.as_deref(), Some(notes));

        // Absent: the same typed error as the SQL functions give.
        let missing = Uuid::new_v4();
        for r in [
            chat.conversations()
                .set_priority(missing, Priority::Low)
                .await,
            chat.conversations().set_tags(missing, ["x"]).await,
            chat.conversations().set_internal_notes(missing, "x").await,
        ] {
            let (kind, e) = failure(r);
            assert_eq!(
                (kind, e),
                (ErrorKind::NotFound, Some(ChatError::ConversationNotFound))
            );
        }
    }
}

#[tokio::test]
async fn marking_read_zeroes_one_side_and_marks_the_other_sides_messages_read() {
    for who in CALLERS {
        let env = seeded().await;
        let chat = env.chat(who);
        let statuses = |sender: &'static str| {
            let env = &env;
            async move {
                env.texts(
                    "select m.id::text || ':' || m.status from mod_chat_messages m
                     where m.conversation_id = $1::text::uuid and m.sender_type = $2
                     order by m.id",
                    &[&CONV_ACTIVE_102, &sender],
                )
                .await
            }
        };
        let agent_before = statuses("agent").await;

        let conv = chat
            .conversations()
            .mark_read(id(CONV_ACTIVE_102), Reader::Agent)
            .await
            .unwrap();
        assert_eq!(
            conv,
            env.conversation::<Conversation>(CONV_ACTIVE_102).await
        );
        assert_eq!(conv.unread_agent_count, Some(0));
        let unread_visitor_msgs = env
            .int(
                "select count(*) from mod_chat_messages where conversation_id = $1::text::uuid
                   and sender_type = 'visitor' and status is distinct from 'read'",
                &[&CONV_ACTIVE_102],
            )
            .await;
        assert_eq!(unread_visitor_msgs, 0);
        assert_eq!(
            statuses("agent").await,
            agent_before,
            "agent messages untouched"
        );

        let visitor_before = statuses("visitor").await;
        let conv = chat
            .conversations()
            .mark_read(id(CONV_ACTIVE_102), Reader::Visitor)
            .await
            .unwrap();
        assert_eq!(
            conv,
            env.conversation::<Conversation>(CONV_ACTIVE_102).await
        );
        assert_eq!(conv.unread_visitor_count, Some(0));
        let unread_agent_msgs = env
            .int(
                "select count(*) from mod_chat_messages where conversation_id = $1::text::uuid
                   and sender_type in ('agent', 'ai') and not is_internal_note
                   and status is distinct from 'read'",
                &[&CONV_ACTIVE_102],
            )
            .await;
        assert_eq!(unread_agent_msgs, 0);
        let note_status = env
            .texts(
                "select status from mod_chat_messages where is_internal_note and \
                 conversation_id = $1::text::uuid",
                &[&CONV_ACTIVE_102],
            )
            .await;
        assert_eq!(
            note_status,
            ["sent"],
            "internal notes are not the visitor's to read"
        );
        assert_eq!(statuses("visitor").await, visitor_before);

        let (_, e) = failure(
            chat.conversations()
                .mark_read(Uuid::new_v4(), Reader::Agent)
                .await,
        );
        assert_eq!(e, Some(ChatError::ConversationNotFound));
    }
}

/// Local midnight to the next, in `tz`, computed with chrono-tz (independently of the SQL).
fn today_in(tz: chrono_tz::Tz, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let day = now.with_timezone(&tz).date_naive();
    let start = |d: chrono::NaiveDate| {
        tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    };
    (start(day), start(day.succ_opt().unwrap()))
}

#[tokio::test]
async fn statistics_match_sql_for_the_callers_day() {
    for who in CALLERS {
        let env = seeded().await;
        let chat = env.chat(who);
        // Give today's conversations ratings and a resolution, so every figure is non-trivial.
        env.exec(&format!(
            "update mod_chat_conversations set rating = 4 where id = '{CONV_ACTIVE_102}';
             update mod_chat_conversations set rating = 3, first_response_time_seconds = 31
               where id = '{CONV_PENDING_101}';"
        ))
        .await;
        chat.conversations()
            .resolve(id(CONV_WAITING_105))
            .await
            .unwrap();

        for zone in [None, Some("Africa/Lusaka"), Some("America/Los_Angeles")] {
            let mut req = chat.conversations().stats(id(SITE_1));
            if let Some(z) = zone {
                req = req.time_zone(z);
            }
            let now = Utc::now();
            let stats = req.send().await.unwrap();
            let tz: chrono_tz::Tz = zone.unwrap_or("UTC").parse().unwrap();
            let (start, end) = today_in(tz, now);
            assert_eq!(
                (stats.today_start, stats.today_end),
                (start, end),
                "{zone:?}"
            );

            let (s, e) = (start.to_rfc3339(), end.to_rfc3339());
            let expected: serde_json::Value = env
                .json_row(
                    "select jsonb_build_object(
                       'active', count(*) filter (where c.status = 'active'),
                       'pending', count(*) filter (where c.status = 'pending'),
                       'today', count(*) filter (where c.created_at >= $2::text::timestamptz
                                                   and c.created_at < $3::text::timestamptz),
                       'resolved', count(*) filter (where c.resolved_at >= $2::text::timestamptz
                                                      and c.resolved_at < $3::text::timestamptz),
                       'missed', count(*) filter (where c.status = 'missed'
                                                    and c.created_at >= $2::text::timestamptz
                                                    and c.created_at < $3::text::timestamptz),
                       'first', coalesce(round(avg(c.first_response_time_seconds) filter (
                                  where c.created_at >= $2::text::timestamptz
                                    and c.created_at < $3::text::timestamptz)), 0),
                       'satisfaction', coalesce(avg(c.rating) filter (
                                  where c.created_at >= $2::text::timestamptz
                                    and c.created_at < $3::text::timestamptz) * 20, 0)::float8,
                       'online', (select count(*) from mod_chat_agents a
                                  where a.site_id = $1::text::uuid and a.is_active
                                    and a.status in ('online', 'away', 'busy'))
                     )::text
                     from mod_chat_conversations c where c.site_id = $1::text::uuid",
                    &[&SITE_1, &s, &e],
                )
                .await;
            let n = |k: &str| expected[k].as_f64().unwrap();
            assert_eq!(stats.active_conversations as f64, n("active"), "{zone:?}");
            assert_eq!(stats.pending_conversations as f64, n("pending"), "{zone:?}");
            assert_eq!(stats.today_conversations as f64, n("today"), "{zone:?}");
            assert_eq!(stats.today_resolved as f64, n("resolved"), "{zone:?}");
            assert_eq!(stats.today_missed as f64, n("missed"), "{zone:?}");
            assert_eq!(
                stats.avg_first_response_seconds as f64,
                n("first"),
                "{zone:?}"
            );
            assert!(
                (stats.satisfaction_score - n("satisfaction")).abs() < 0.01,
                "{zone:?}: {} vs {}",
                stats.satisfaction_score,
                n("satisfaction")
            );
            assert_eq!(stats.online_agents as f64, n("online"), "{zone:?}");
            assert!(stats.today_conversations > 0 && stats.today_resolved > 0);
        }
    }
}

#[tokio::test]
async fn statistics_take_exactly_one_http_request() {
    for who in CALLERS {
        let env = seeded().await;
        let proxy = CountingProxy::start(env.stack.port()).await;
        let chat = Chat::new(env.client_via(who, &proxy.url));
        let stats = chat
            .conversations()
            .stats(id(SITE_1))
            .time_zone("Africa/Lusaka")
            .send()
            .await
            .unwrap();
        assert!(stats.active_conversations > 0);
        assert_eq!(
            proxy.requests(),
            ["POST /rest/v1/rpc/mod_chat_conversation_stats"],
            "{who:?}"
        );
    }
}

// =============================================================================================
// Messages
// =============================================================================================

#[tokio::test]
async fn messages_are_listed_oldest_first_with_the_exact_total() {
    for who in CALLERS {
        let env = seeded().await;
        let chat = env.chat(who);
        let expected = messages_of(&env, CONV_ACTIVE_102).await;
        assert_eq!(expected.len(), 5);

        let all = chat
            .messages()
            .list(id(CONV_ACTIVE_102))
            .send()
            .await
            .unwrap();
        assert_eq!(all.items, expected, "{who:?}");
        assert_eq!((all.total, all.page, all.page_size), (5, 1, 50));

        let mut walked = Vec::new();
        for p in 1..=3 {
            let page = chat
                .messages()
                .list(id(CONV_ACTIVE_102))
                .page(p)
                .page_size(2)
                .send()
                .await
                .unwrap();
            assert_eq!(page.total, 5);
            assert_eq!(page.has_next(), p < 3);
            walked.extend(page.items);
        }
        assert_eq!(walked, expected);

        // Past the end: empty, total still exact.
        let far = chat
            .messages()
            .list(id(CONV_ACTIVE_102))
            .page(9)
            .page_size(2)
            .send()
            .await
            .unwrap();
        assert!(far.items.is_empty());
        assert_eq!(far.total, 5);

        // An unknown conversation has no messages.
        let none = chat.messages().list(Uuid::new_v4()).send().await.unwrap();
        assert_eq!((none.items.len(), none.total), (0, 0));
    }
}

#[tokio::test]
async fn messages_after_a_cursor_are_strictly_later_in_created_at_then_id_order() {
    for who in CALLERS {
        let env = seeded().await;
        let chat = env.chat(who);
        // Three messages sharing one timestamp (one transaction), ids in a known order.
        env.exec(&format!(
            "insert into mod_chat_messages (id, conversation_id, site_id, sender_type, content, created_at)
             select v.id::uuid, '{CONV_ACTIVE_102}', '{SITE_1}', 'visitor', v.content, now() + interval '1 minute'
             from (values ('30000000-0000-4000-8000-0000000102a3', 'tie c'),
                          ('30000000-0000-4000-8000-0000000102a1', 'tie a'),
                          ('30000000-0000-4000-8000-0000000102a2', 'tie b')) v(id, content)"
        ))
        .await;
        let all = messages_of(&env, CONV_ACTIVE_102).await;
        assert_eq!(all.len(), 8);

        for (i, m) in all.iter().enumerate() {
            let cursor = Cursor::of(m).unwrap();
            let after = chat
                .messages()
                .after(id(CONV_ACTIVE_102), cursor)
                .send()
                .await
                .unwrap();
            let sql: Vec<Message> = env
                .json_rows(
                    "select to_jsonb(m)::text from mod_chat_messages m
                     where m.conversation_id = $1::text::uuid
                       and (m.created_at, m.id) > ($2::text::timestamptz, $3::text::uuid)
                     order by m.created_at, m.id",
                    &[
                        &CONV_ACTIVE_102,
                        &cursor
                            .created_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                        &cursor.id.to_string(),
                    ],
                )
                .await;
            assert_eq!(after, sql, "{who:?} after message {i}");
            assert_eq!(after, all[i + 1..].to_vec(), "{who:?} after message {i}");
        }
        let tie_a = all
            .iter()
            .find(|m| m.content.as_deref() == Some("tie a"))
            .unwrap();
        let after_a = chat
            .messages()
            .after(id(CONV_ACTIVE_102), Cursor::of(tie_a).unwrap())
            .send()
            .await
            .unwrap();
        let contents: Vec<_> = after_a.iter().filter_map(|m| m.content.clone()).collect();
        assert_eq!(contents, ["tie b", "tie c"]);

        // A limit cuts the batch; a cursor before everything returns everything.
        let first = chat
            .messages()
            .after(
                id(CONV_ACTIVE_102),
                Cursor::new(
                    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap(),
                    Uuid::nil(),
                ),
            )
            .limit(1)
            .send()
            .await
            .unwrap();
        assert_eq!(first, all[..1].to_vec());
    }
}

#[tokio::test]
async fn sending_a_message_updates_the_conversation_in_the_same_transaction() {
    for who in CALLERS {
        let env = seeded().await;
        let chat = env.chat(who);
        let before: Conversation = env.conversation(CONV_PENDING_101).await;
        assert_eq!(before.first_response_time_seconds, None);

        let text = "Hi Mia! (Shipping) takes 1-2 days, 100% \"sure\" \\ 😀";
        let sent = chat
            .messages()
            .send(
                NewMessage::text(id(CONV_PENDING_101), SenderType::Agent, text)
                    .site(id(SITE_1))
                    .sender(AGENT_CAROL_1, "Carol Chen"),
            )
            .await
            .unwrap();
        assert_eq!(sent, env.message::<Message>(&sent.id.to_string()).await);
        assert_eq!(sent.content.as_deref(), Some(text));
        assert_eq!(sent.sender_name.as_deref(), Some("Carol Chen"));
        assert_eq!(sent.is_internal_note, Some(false));
        let after: Conversation = env.conversation(CONV_PENDING_101).await;
        assert_eq!(after.status, ConversationStatus::Active);
        assert_eq!(after.last_message_text.as_deref(), Some(text));
        assert_eq!(after.last_message_by, Some(SenderType::Agent));
        assert_eq!(after.message_count, before.message_count.map(|n| n + 1));
        assert!(after.first_response_time_seconds.is_some());
        assert!(after.wait_time_seconds.is_some());

        // A visitor message counts as unread for the agents.
        let unread = env
            .conversation::<Conversation>(CONV_ACTIVE_102)
            .await
            .unread_agent_count;
        chat.messages()
            .send(NewMessage::text(
                id(CONV_ACTIVE_102),
                SenderType::Visitor,
                "Still waiting",
            ))
            .await
            .unwrap();
        assert_eq!(
            env.conversation::<Conversation>(CONV_ACTIVE_102)
                .await
                .unread_agent_count,
            unread.map(|n| n + 1)
        );

        // A note is internal and is not a first response.
        let note = chat
            .messages()
            .send(NewMessage::note(id(CONV_MISSED_106), "Try again by e-mail"))
            .await
            .unwrap();
        assert_eq!(note.content_type, Some(ContentType::Note));
        assert_eq!(note.is_internal_note, Some(true));
        assert_eq!(
            env.conversation::<Conversation>(CONV_MISSED_106)
                .await
                .first_response_time_seconds,
            None
        );

        // Another site, or no such conversation: not found, nothing written.
        let count = env.int("select count(*) from mod_chat_messages", &[]).await;
        let (kind, e) = failure(
            chat.messages()
                .send(
                    NewMessage::text(id(CONV_ACTIVE_102), SenderType::Agent, "x").site(id(SITE_2)),
                )
                .await,
        );
        assert_eq!(
            (kind, e),
            (ErrorKind::NotFound, Some(ChatError::ConversationNotFound))
        );
        let (_, e) = failure(
            chat.messages()
                .send(NewMessage::text(Uuid::new_v4(), SenderType::Agent, "x"))
                .await,
        );
        assert_eq!(e, Some(ChatError::ConversationNotFound));
        assert_eq!(
            env.int("select count(*) from mod_chat_messages", &[]).await,
            count
        );
    }
}

#[tokio::test]
async fn sending_a_file_records_its_url_name_size_and_type() {
    for who in CALLERS {
        let env = seeded().await;
        let chat = env.chat(who);
        let with_caption = chat
            .messages()
            .send_file(
                NewFileMessage::new(
                    id(CONV_WAITING_105),
                    SenderType::Agent,
                    "https://cdn.acme.example/blue (1).jpg",
                    "blue (1).jpg",
                    48_213,
                    "image/jpeg",
                )
                .sender(AGENT_BOB_1, "Bob Brown")
                .caption("Here it is"),
            )
            .await
            .unwrap();
        assert_eq!(
            with_caption,
            env.message::<Message>(&with_caption.id.to_string()).await
        );
        assert_eq!(with_caption.content_type, Some(ContentType::Image));
        assert_eq!(
            with_caption.file_url.as_deref(),
            Some("https://cdn.acme.example/blue (1).jpg")
        );
        assert_eq!(with_caption.file_name.as_deref(), Some("blue (1).jpg"));
        assert_eq!(with_caption.file_size, Some(48_213));
        assert_eq!(with_caption.file_mime_type.as_deref(), Some("image/jpeg"));
        assert_eq!(with_caption.content.as_deref(), Some("Here it is"));

        let pdf = chat
            .messages()
            .send_file(
                NewFileMessage::new(
                    id(CONV_WAITING_105),
                    SenderType::Visitor,
                    "https://cdn.acme.example/invoice.pdf",
                    "invoice.pdf",
                    0,
                    "application/pdf",
                )
                .site(id(SITE_1)),
            )
            .await
            .unwrap();
        assert_eq!(pdf, env.message::<Message>(&pdf.id.to_string()).await);
        assert_eq!(pdf.content_type, Some(ContentType::File));
        assert_eq!(pdf.content.as_deref(), Some("invoice.pdf"));
    }
}

#[tokio::test]
async fn a_message_status_is_set() {
    for who in CALLERS {
        let env = seeded().await;
        let chat = env.chat(who);
        for status in [
            MessageStatus::Read,
            MessageStatus::Failed,
            MessageStatus::Delivered,
        ] {
            let m = chat
                .messages()
                .set_status(id(MSG_102_LAST), status)
                .await
                .unwrap();
            assert_eq!(m, env.message::<Message>(MSG_102_LAST).await);
            assert_eq!(m.status, Some(status));
        }
        let (kind, _) = failure(
            chat.messages()
                .set_status(Uuid::new_v4(), MessageStatus::Read)
                .await,
        );
        assert_eq!(kind, ErrorKind::NotFound);
    }
}

#[tokio::test]
async fn deleting_a_message_keeps_the_row_but_clears_its_content_and_file() {
    for who in CALLERS {
        let env = seeded().await;
        let chat = env.chat(who);
        let before: Message = env.message(MSG_105_IMAGE).await;
        let m = chat.messages().delete(id(MSG_105_IMAGE)).await.unwrap();
        let row: Message = env.message(MSG_105_IMAGE).await;
        assert_eq!(m, row);
        assert_eq!(row.content.as_deref(), Some("[Message deleted]"));
        assert_eq!(
            (
                row.file_url,
                row.file_name,
                row.file_size,
                row.file_mime_type
            ),
            (None, None, None, None)
        );
        assert_eq!(row.sender_type, before.sender_type);
        assert_eq!(row.created_at, before.created_at);
        assert_eq!(messages_of(&env, CONV_WAITING_105).await.len(), 2);
        let (kind, _) = failure(chat.messages().delete(Uuid::new_v4()).await);
        assert_eq!(kind, ErrorKind::NotFound);
    }
}

// =============================================================================================
// Isolation, validation, literal search
// =============================================================================================

#[tokio::test]
async fn another_agencys_user_gets_nothing_of_agency_a_and_changes_nothing() {
    let env = seeded().await;
    let dave = env.chat(Who::Dave);
    let snapshot = env.snapshot().await;
    let c = dave.conversations();
    let m = dave.messages();

    // Reads: empty or none.
    let list = c.list(id(SITE_1)).page_size(1000).send().await.unwrap();
    assert_eq!((list.items.len(), list.total), (0, 0));
    let searched = c.list(id(SITE_1)).search("a").send().await.unwrap();
    assert_eq!(searched.total, 0);
    assert_eq!(c.get(id(CONV_ACTIVE_102)).await.unwrap(), None);
    let stats = c.stats(id(SITE_1)).send().await.unwrap();
    assert_eq!(
        (
            stats.active_conversations,
            stats.pending_conversations,
            stats.online_agents,
            stats.today_conversations,
            stats.today_resolved,
            stats.today_missed,
            stats.avg_first_response_seconds,
        ),
        (0, 0, 0, 0, 0, 0, 0)
    );
    assert_eq!(stats.satisfaction_score, 0.0);
    let msgs = m.list(id(CONV_ACTIVE_102)).send().await.unwrap();
    assert_eq!((msgs.items.len(), msgs.total), (0, 0));
    let after = m
        .after(
            id(CONV_ACTIVE_102),
            Cursor::new(
                Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap(),
                Uuid::nil(),
            ),
        )
        .send()
        .await
        .unwrap();
    assert!(after.is_empty());

    // Writes: "not found", never A's data.
    let not_found = |r: livechat::Result<Conversation>| {
        let (kind, e) = failure(r);
        assert_eq!(kind, ErrorKind::NotFound);
        e
    };
    assert_eq!(
        not_found(
            c.create(NewConversation::new(id(SITE_1), id(VISITOR_MIA_1)))
                .await
        ),
        Some(ChatError::VisitorNotFound)
    );
    // Even with dave's own visitor, a conversation on A's site is refused.
    assert_eq!(
        not_found(
            c.create(NewConversation::new(id(SITE_1), id(VISITOR_RUTH_3)))
                .await
        ),
        Some(ChatError::VisitorNotFound)
    );
    let conv = id(CONV_ACTIVE_102);
    let pending = id(CONV_PENDING_101);
    let closed = id(CONV_CLOSED_104);
    for (what, r) in [
        ("assign", c.assign(pending, id(AGENT_CAROL_1)).await),
        (
            "assign to own agent",
            c.assign(pending, id(AGENT_DAVE_3)).await,
        ),
        (
            "transfer",
            c.transfer(conv, id(AGENT_BOB_1), Some("x")).await,
        ),
        ("resolve", c.resolve(conv).await),
        ("close", c.close(conv).await),
        ("reopen", c.reopen(closed).await),
        ("priority", c.set_priority(conv, Priority::Low).await),
        ("tags", c.set_tags(conv, ["pwned"]).await),
        ("notes", c.set_internal_notes(conv, "pwned").await),
        ("read agent", c.mark_read(conv, Reader::Agent).await),
        ("read visitor", c.mark_read(conv, Reader::Visitor).await),
    ] {
        assert_eq!(
            not_found(r),
            Some(ChatError::ConversationNotFound),
            "{what}"
        );
    }
    let (kind, e) = failure(
        m.send(NewMessage::text(conv, SenderType::Agent, "pwned"))
            .await,
    );
    assert_eq!(
        (kind, e),
        (ErrorKind::NotFound, Some(ChatError::ConversationNotFound))
    );
    let (kind, _) = failure(
        m.send_file(NewFileMessage::new(
            conv,
            SenderType::Agent,
            "https://x.example/a.png",
            "a.png",
            1,
            "image/png",
        ))
        .await,
    );
    assert_eq!(kind, ErrorKind::NotFound);
    let (kind, _) = failure(m.set_status(id(MSG_102_LAST), MessageStatus::Failed).await);
    assert_eq!(kind, ErrorKind::NotFound);
    let (kind, _) = failure(m.delete(id(MSG_105_IMAGE)).await);
    assert_eq!(kind, ErrorKind::NotFound);

    assert_eq!(env.snapshot().await, snapshot, "agency A's data changed");

    // The token works: dave sees his own agency's conversations.
    let own = c.list(id(SITE_3)).send().await.unwrap();
    assert_eq!(own.total, 2);
    assert!(c.get(id(CONV_BETA_301)).await.unwrap().is_some());
}

#[tokio::test]
async fn invalid_input_is_refused_before_any_request() {
    let env = seeded().await;
    let proxy = CountingProxy::start(env.stack.port()).await;
    let chat = Chat::new(env.client_via(Who::Service, &proxy.url));
    let snapshot = env.snapshot().await;
    let c = chat.conversations();
    let m = chat.messages();
    let conv = id(CONV_ACTIVE_102);
    let huge = "x".repeat(2 << 20);

    let mut results: Vec<(&str, ErrorKind)> = Vec::new();
    let mut check = |what: &'static str, kind: Option<ErrorKind>| {
        results.push((what, kind.unwrap_or(ErrorKind::Decode)));
    };
    let kind = |e: livechat::Error| Some(e.kind());

    check(
        "page 0",
        c.list(id(SITE_1)).page(0).send().await.err().and_then(kind),
    );
    check(
        "page size 0",
        c.list(id(SITE_1))
            .page_size(0)
            .send()
            .await
            .err()
            .and_then(kind),
    );
    check(
        "page size 1001",
        c.list(id(SITE_1))
            .page_size(1001)
            .send()
            .await
            .err()
            .and_then(kind),
    );
    check(
        "dates reversed",
        c.list(id(SITE_1))
            .created_from(Utc::now())
            .created_to(Utc::now() - Duration::days(1))
            .send()
            .await
            .err()
            .and_then(kind),
    );
    check(
        "search too long",
        c.list(id(SITE_1))
            .search(huge.clone())
            .send()
            .await
            .err()
            .and_then(kind),
    );
    check(
        "blank tag",
        c.set_tags(conv, ["ok", " "]).await.err().and_then(kind),
    );
    check(
        "too many tags",
        c.set_tags(conv, (0..101).map(|i| i.to_string()))
            .await
            .err()
            .and_then(kind),
    );
    check(
        "tag too long",
        c.set_tags(conv, ["t".repeat(101)])
            .await
            .err()
            .and_then(kind),
    );
    check(
        "notes too long",
        c.set_internal_notes(conv, &huge).await.err().and_then(kind),
    );
    check(
        "transfer note too long",
        c.transfer(conv, id(AGENT_BOB_1), Some(&huge))
            .await
            .err()
            .and_then(kind),
    );
    check(
        "subject too long",
        c.create(NewConversation::new(id(SITE_1), id(VISITOR_MIA_1)).subject(huge.clone()))
            .await
            .err()
            .and_then(kind),
    );
    check(
        "unknown time zone",
        c.stats(id(SITE_1))
            .time_zone("Mars/Olympus")
            .send()
            .await
            .err()
            .and_then(kind),
    );
    check(
        "messages page 0",
        m.list(conv).page(0).send().await.err().and_then(kind),
    );
    check(
        "messages page size 1001",
        m.list(conv)
            .page_size(1001)
            .send()
            .await
            .err()
            .and_then(kind),
    );
    check(
        "after limit 0",
        m.after(conv, Cursor::new(Utc::now(), Uuid::nil()))
            .limit(0)
            .send()
            .await
            .err()
            .and_then(kind),
    );
    check(
        "empty text",
        m.send(NewMessage::text(conv, SenderType::Agent, ""))
            .await
            .err()
            .and_then(kind),
    );
    check(
        "blank text",
        m.send(NewMessage::text(conv, SenderType::Visitor, " \n\t "))
            .await
            .err()
            .and_then(kind),
    );
    check(
        "blank note",
        m.send(NewMessage::note(conv, "  "))
            .await
            .err()
            .and_then(kind),
    );
    check(
        "file type through send",
        m.send(NewMessage::text(conv, SenderType::Agent, "x").content_type(ContentType::Image))
            .await
            .err()
            .and_then(kind),
    );
    check(
        "text too long",
        m.send(NewMessage::text(conv, SenderType::Agent, huge.clone()))
            .await
            .err()
            .and_then(kind),
    );
    let file = || {
        NewFileMessage::new(
            conv,
            SenderType::Agent,
            "https://x.example/a.png",
            "a.png",
            1,
            "image/png",
        )
    };
    let mut js = file();
    js.file_url = "javascript:alert(1)".into();
    check("javascript URL", m.send_file(js).await.err().and_then(kind));
    let mut relative = file();
    relative.file_url = "/a.png".into();
    check(
        "relative URL",
        m.send_file(relative).await.err().and_then(kind),
    );
    let mut nameless = file();
    nameless.file_name = " ".into();
    check(
        "blank file name",
        m.send_file(nameless).await.err().and_then(kind),
    );
    let mut no_mime = file();
    no_mime.file_mime_type = String::new();
    check(
        "blank MIME type",
        m.send_file(no_mime).await.err().and_then(kind),
    );
    let mut big = file();
    big.file_size = u64::from(u32::MAX);
    check(
        "file too large",
        m.send_file(big).await.err().and_then(kind),
    );
    check(
        "text type through send_file",
        m.send_file(file().content_type(ContentType::Text))
            .await
            .err()
            .and_then(kind),
    );

    for (what, kind) in &results {
        assert_eq!(*kind, ErrorKind::InvalidInput, "{what}");
    }
    assert_eq!(results.len(), 26);
    assert_eq!(proxy.requests(), Vec::<String>::new(), "a request went out");
    assert_eq!(env.snapshot().await, snapshot);
}

#[tokio::test]
async fn hostile_search_text_matches_literally_and_never_widens() {
    for who in CALLERS {
        let env = seeded().await;
        let chat = env.chat(who);
        // Visitors and last messages full of PostgREST and LIKE syntax.
        let names = [
            ("Ann (VIP), Ltd.", "ann,vip@x.test", "order (a,b).c"),
            (
                "100% *real* user_1",
                "pct%_star*@x.test",
                "50% off* for_you",
            ),
            (
                "O'Brien \"Bob\" \\ back",
                "ob'rien@x.test",
                "say \"hi\" \\ 'there'",
            ),
            ("Zoë 😀 名前", "zoe@x.test", "ÜBER straße 😀"),
            ("status.eq.active", "or=(x)@x.test", "),status.eq.pending,("),
        ];
        for (i, (name, email, last)) in names.iter().enumerate() {
            let vid = Uuid::new_v4();
            env.db
                .execute(
                    "insert into mod_chat_visitors (id, site_id, name, email)
                     values ($1::text::uuid, $2::text::uuid, $3, $4)",
                    &[&vid.to_string(), &SITE_1, name, email],
                )
                .await
                .unwrap();
            let conv = chat
                .conversations()
                .create(NewConversation::new(id(SITE_1), vid).auto_assign(false))
                .await
                .unwrap();
            chat.messages()
                .send(NewMessage::text(conv.id, SenderType::Visitor, *last))
                .await
                .unwrap_or_else(|e| panic!("message {i}: {e}"));
        }
        let long = "x".repeat(10_000);
        let needles: Vec<&str> = vec![
            ",",
            "(",
            ")",
            ".",
            "*",
            "%",
            "_",
            "\"",
            "\\",
            "'",
            "a,b",
            "(vip)",
            "%_",
            "*real*",
            "\\%",
            "' or '1'='1",
            "status.eq.active",
            "),status.eq.pending,(",
            "or=(",
            "ZOË",
            "ë",
            "😀",
            "名前",
            "STRASSE",
            "über",
            &long,
        ];
        let all = env
            .int(
                "select count(*) from mod_chat_conversations where site_id = $1::text::uuid",
                &[&SITE_1],
            )
            .await as u64;
        for needle in needles {
            let expected = env
                .texts(
                    "select c.id::text from mod_chat_conversations c
                     left join mod_chat_visitors v on v.id = c.visitor_id
                     where c.site_id = $1::text::uuid
                       and (strpos(lower(coalesce(c.last_message_text, '')), lower($2)) > 0
                            or strpos(lower(coalesce(v.name, '')), lower($2)) > 0
                            or strpos(lower(coalesce(v.email, '')), lower($2)) > 0)
                     order by c.last_message_at desc nulls last, c.id",
                    &[&SITE_1, &needle],
                )
                .await;
            let page = chat
                .conversations()
                .list(id(SITE_1))
                .search(needle)
                .page_size(1000)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{who:?} {needle:?}: {e}"));
            let shown: String = needle.chars().take(30).collect();
            assert_eq!(ids(&page.items), expected, "{who:?} {shown:?}");
            assert_eq!(page.total, expected.len() as u64, "{who:?} {shown:?}");
            if [",", "(", ")", "*", "%", "_", "\"", "\\", "'"].contains(&needle) || needle == long {
                assert!(page.total < all, "{who:?} {shown:?} matched everything");
            }
        }
        // Literal, so the syntax characters do find the rows that contain them.
        for needle in ["(vip)", "*real*", "%_", "\\", "'", "😀"] {
            let page = chat
                .conversations()
                .list(id(SITE_1))
                .search(needle)
                .send()
                .await
                .unwrap();
            assert!(page.total >= 1, "{who:?} {needle:?} found nothing");
        }
    }
}
