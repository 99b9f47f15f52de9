//! Concurrency of the conversation actions through the library against the real local stack:
//! many tasks assigning, transferring, resolving, closing and reopening at once must leave every
//! agent's `current_chat_count` equal to its pending, active and waiting conversations, within
//! `0..=max_concurrent_chats`, at every committed moment and at the end; refusals are the typed
//! chat errors.

use crate::conv;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use conv::*;
use livechat::chat::conversations::NewConversation;
use livechat::chat::{Chat, ChatError};
use livechat::ErrorKind;
use tokio::sync::Barrier;
use uuid::Uuid;

/// A small deterministic generator (xorshift64*), so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

async fn pending_conversations(chat: &Chat, n: usize) -> Vec<Uuid> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let c = chat
            .conversations()
            .create(NewConversation::new(id(SITE_1), id(VISITOR_MIA_1)).auto_assign(false))
            .await
            .unwrap();
        out.push(c.id);
    }
    out
}

/// The number of agents whose count is wrong or out of range, in one statement (one snapshot).
async fn broken_agents(env: &Env) -> i64 {
    env.int(
        "select count(*) from mod_chat_agents a
         where coalesce(a.current_chat_count, 0) <> (
                 select count(*) from mod_chat_conversations c
                 where c.assigned_agent_id = a.id and c.status in ('pending', 'active', 'waiting'))
            or coalesce(a.current_chat_count, 0) < 0
            or coalesce(a.current_chat_count, 0) > coalesce(a.max_concurrent_chats, 5)",
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_assign_transfer_resolve_close_reopen_keep_every_agent_count_exact() {
    let env = Arc::new(seeded().await);
    let conversations = Arc::new(pending_conversations(&env.chat(Who::Service), 30).await);
    let agents = [id(AGENT_ALICE_1), id(AGENT_BOB_1), id(AGENT_CAROL_1)];
    let tasks = 12;
    let ops_per_task = 40;
    let start = Arc::new(Barrier::new(tasks + 1));
    let done = Arc::new(AtomicBool::new(false));

    // A checker reading the invariant in single statements while the workers run: every
    // committed state must satisfy it, not only the final one.
    let checker = {
        let env = env.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut checks = 0u32;
            loop {
                let finished = done.load(Ordering::SeqCst);
                assert_eq!(broken_agents(&env).await, 0, "invariant broken mid-run");
                checks += 1;
                if finished {
                    return checks;
                }
            }
        })
    };

    let mut workers = Vec::new();
    for t in 0..tasks {
        let env = env.clone();
        let conversations = conversations.clone();
        let start = start.clone();
        workers.push(tokio::spawn(async move {
            // Half the tasks act with the service-role key, half as alice (RLS applies).
            let chat = env.chat(if t % 2 == 0 { Who::Service } else { Who::Alice });
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1).wrapping_mul(0x1000_0001));
            let mut outcomes: BTreeMap<String, u32> = BTreeMap::new();
            start.wait().await;
            for _ in 0..ops_per_task {
                let conv = conversations[rng.below(conversations.len())];
                let agent = agents[rng.below(agents.len())];
                let c = chat.conversations();
                let (op, result) = match rng.below(5) {
                    0 => ("assign", c.assign(conv, agent).await),
                    1 => (
                        "transfer",
                        c.transfer(conv, agent, Some("handing over, (50%) done"))
                            .await,
                    ),
                    2 => ("resolve", c.resolve(conv).await),
                    3 => ("close", c.close(conv).await),
                    _ => ("reopen", c.reopen(conv).await),
                };
                let outcome = match result {
                    Ok(_) => "ok".to_string(),
                    Err(e) => {
                        let kind = ChatError::of(&e);
                        assert!(
                            matches!(
                                kind,
                                Some(
                                    ChatError::AgentAtCapacity
                                        | ChatError::InvalidState
                                        | ChatError::AlreadyAssigned
                                )
                            ),
                            "{op} {conv} {agent}: unexpected error {e:?}"
                        );
                        assert_eq!(e.kind(), ErrorKind::Conflict, "{op}: {e:?}");
                        format!("{kind:?}")
                    }
                };
                *outcomes.entry(format!("{op} {outcome}")).or_default() += 1;
            }
            outcomes
        }));
    }
    start.wait().await;
    let mut totals: BTreeMap<String, u32> = BTreeMap::new();
    for w in workers {
        for (k, n) in w.await.unwrap() {
            *totals.entry(k).or_default() += n;
        }
    }
    done.store(true, Ordering::SeqCst);
    let checks = checker.await.unwrap();

    eprintln!("outcomes: {totals:#?}; invariant checked {checks} times mid-run");
    assert_eq!(totals.values().sum::<u32>() as usize, tasks * ops_per_task);
    for op in ["assign", "transfer", "resolve", "close", "reopen"] {
        assert!(
            totals.get(&format!("{op} ok")).copied().unwrap_or(0) > 0,
            "no {op} succeeded: {totals:?}"
        );
    }
    env.assert_agent_counts().await;
    // Every agent and every conversation is still in a sane state.
    assert_eq!(broken_agents(&env).await, 0);
    let orphans = env
        .int(
            "select count(*) from mod_chat_conversations
             where status = 'active' and assigned_agent_id is null",
            &[],
        )
        .await;
    assert_eq!(orphans, 0, "an active conversation lost its agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_assignments_to_one_agent_stop_exactly_at_capacity() {
    let env = Arc::new(seeded().await);
    // bob: max 3, load 1, so two more fit.
    let conversations = pending_conversations(&env.chat(Who::Service), 20).await;
    let start = Arc::new(Barrier::new(conversations.len()));
    let mut tasks = Vec::new();
    for (i, conv) in conversations.into_iter().enumerate() {
        let env = env.clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            let chat = env.chat(if i % 2 == 0 { Who::Service } else { Who::Alice });
            start.wait().await;
            chat.conversations().assign(conv, id(AGENT_BOB_1)).await
        }));
    }
    let (mut ok, mut full) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(c) => {
                assert_eq!(c.assigned_agent_id, Some(id(AGENT_BOB_1)));
                ok += 1;
            }
            Err(e) => {
                assert_eq!(ChatError::of(&e), Some(ChatError::AgentAtCapacity), "{e:?}");
                full += 1;
            }
        }
    }
    assert_eq!((ok, full), (2, 18));
    assert_eq!(env.load(AGENT_BOB_1).await, 3);
    env.assert_agent_counts().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolving_one_conversation_from_many_tasks_counts_it_once() {
    let env = Arc::new(seeded().await);
    let handled = || {
        let env = env.clone();
        async move {
            env.int(
                "select total_chats_handled::bigint from mod_chat_agents where id = $1::text::uuid",
                &[&AGENT_ALICE_1],
            )
            .await
        }
    };
    let before = handled().await;
    let start = Arc::new(Barrier::new(10));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let env = env.clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            let chat = env.chat(if i % 2 == 0 { Who::Service } else { Who::Alice });
            start.wait().await;
            chat.conversations().resolve(id(CONV_ACTIVE_102)).await
        }));
    }
    for t in tasks {
        let c = t.await.unwrap().unwrap();
        assert_eq!(
            c.status,
            livechat::chat::models::ConversationStatus::Resolved
        );
    }
    assert_eq!(handled().await, before + 1);
    let resolved_messages = env
        .int(
            "select count(*) from mod_chat_messages where conversation_id = $1::text::uuid
               and content = 'Conversation resolved'",
            &[&CONV_ACTIVE_102],
        )
        .await;
    assert_eq!(resolved_messages, 1);
    env.assert_agent_counts().await;
}
