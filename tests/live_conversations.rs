//! The conversation feed (`useConversationsRealtime` in Rust) against the real local stack,
//! acting as a seeded agency member:
//!
//! - conversations created, updated (directly and by the message trigger) and deleted
//!   continuously while the server drops every connection and refuses new ones for seconds:
//!   each conversation `New` exactly once and before its updates, versions of a conversation
//!   strictly increasing, no version twice, deletions reported (also those made while the feed
//!   was away), and the consumer's view equal to the database at the end;
//! - a snapshot of the site first, then live changes.

use crate::live_support;

use chrono::{DateTime, Utc};
use live_support::*;
use livechat::chat::models::Conversation;
use livechat::live::{ConversationEvent, RecoveryReason};
use livechat_stack::Stack;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

async fn insert_conversation(db: &tokio_postgres::Client) -> Uuid {
    let row = db
        .query_one(
            "insert into public.mod_chat_conversations (site_id, visitor_id, channel, status) \
             values ($1::text::uuid, $2::text::uuid, 'widget', 'pending') returning id::text",
            &[&SITE_STORE, &VISITOR_MIA],
        )
        .await
        .expect("insert conversation");
    uuid(&row.get::<_, String>(0))
}

fn news_of(events: &[ConversationEvent]) -> HashSet<Uuid> {
    events
        .iter()
        .filter_map(|e| match e {
            ConversationEvent::New(c) => Some(c.id),
            _ => None,
        })
        .collect()
}

/// The consumer's view after applying every event, and the checks on the event sequence.
fn apply(events: &[ConversationEvent]) -> (HashMap<Uuid, Conversation>, HashSet<Uuid>) {
    let mut view: HashMap<Uuid, Conversation> = HashMap::new();
    let mut news = HashSet::new();
    let mut deleted = HashSet::new();
    let mut versions: HashSet<(Uuid, Option<DateTime<Utc>>, String)> = HashSet::new();
    for e in events {
        match e {
            ConversationEvent::New(c) => {
                assert!(news.insert(c.id), "conversation {} new twice", c.id);
                assert!(!view.contains_key(&c.id), "new after an update: {}", c.id);
                assert!(!deleted.contains(&c.id), "new after its deletion: {}", c.id);
                view.insert(c.id, (**c).clone());
            }
            ConversationEvent::Updated(c) => {
                assert!(!deleted.contains(&c.id), "update after deletion: {}", c.id);
                let text = serde_json::to_string(&**c).unwrap_or_default();
                assert!(
                    versions.insert((c.id, c.updated_at, text)),
                    "the same version twice: {} {:?}",
                    c.id,
                    c.updated_at
                );
                if let Some(prev) = view.get(&c.id) {
                    assert!(
                        c.updated_at >= prev.updated_at,
                        "versions of {} went back: {:?} after {:?}",
                        c.id,
                        c.updated_at,
                        prev.updated_at
                    );
                }
                view.insert(c.id, (**c).clone());
            }
            ConversationEvent::Deleted { id, .. } => {
                deleted.insert(*id);
                view.remove(id);
            }
            _ => {}
        }
    }
    (view, deleted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_once_in_order_through_drops_and_refusals() {
    init_tracing();
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let rt = stack.realtime().expect("realtime handle").clone();
    let client = user_client(&stack, ALICE);
    let live = live(&client);
    let feed = live
        .conversations(uuid(SITE_STORE))
        .reorder_window(Duration::from_secs(1))
        .subscribe()
        .await
        .expect("subscribe");
    let events = Collector::start(feed);

    let stop = Arc::new(AtomicBool::new(false));
    // Writer 1: creates conversations, changes their priority, deletes every fifth one.
    let creator = {
        let (stop, db) = (stop.clone(), db(&stack).await);
        tokio::spawn(async move {
            let mut created = Vec::new();
            let mut deleted = Vec::new();
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let id = insert_conversation(&db).await;
                created.push(id);
                if n % 3 == 1 {
                    let target = created[n / 2].to_string();
                    db.execute(
                        "update public.mod_chat_conversations set priority = 'high', tags = array['vip'] \
                         where id = $1::text::uuid",
                        &[&target],
                    )
                    .await
                    .expect("update");
                }
                if n % 5 == 4 {
                    let target = created[n - 2];
                    if !deleted.contains(&target) {
                        db.execute(
                            "delete from public.mod_chat_conversations where id = $1::text::uuid",
                            &[&target.to_string()],
                        )
                        .await
                        .expect("delete");
                        deleted.push(target);
                    }
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            (created, deleted)
        })
    };
    // Writer 2: messages into the seeded active conversation (the trigger updates it).
    let talker = {
        let (stop, db) = (stop.clone(), db(&stack).await);
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                db.execute(
                    "insert into public.mod_chat_messages (conversation_id, site_id, sender_type, content) \
                     values ($1::text::uuid, $2::text::uuid, 'visitor', 'ping')",
                    &[&CONV_STORE_ACTIVE, &SITE_STORE],
                )
                .await
                .expect("message");
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        if round % 2 == 1 {
            rt.refuse_connections_for(Duration::from_secs(2));
        }
        rt.drop_all_connections();
        if round % 2 == 1 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let (created, deleted) = creator.await.expect("creator");
    talker.await.expect("talker");
    assert!(created.len() > 50 && !deleted.is_empty());

    // The database as the same user sees it.
    let rows: Vec<Conversation> = client
        .from("mod_chat_conversations")
        .eq("site_id", SITE_STORE)
        .fetch()
        .await
        .expect("rows");
    let db_rows: HashMap<Uuid, Conversation> = rows.into_iter().map(|c| (c.id, c)).collect();
    let deleted_set: HashSet<Uuid> = deleted.iter().copied().collect();
    let expected: HashMap<Uuid, Conversation> = created
        .iter()
        .chain(std::iter::once(&uuid(CONV_STORE_ACTIVE)))
        .filter(|id| !deleted_set.contains(id))
        .map(|id| (*id, db_rows[id].clone()))
        .collect();
    // A conversation deleted right after its creation may never be seen at all: the server
    // checks RLS on the row as it is when it reads the change (gone by then), as Supabase does,
    // and a catch-up cannot find a deleted row. Every conversation the consumer did get must
    // be reported deleted, though.
    let converged = events
        .try_wait_until(Duration::from_secs(30), |ev| {
            let (view, gone) = apply(ev);
            let news = news_of(ev);
            deleted_set.intersection(&news).all(|id| gone.contains(id))
                && expected.iter().all(|(id, row)| view.get(id) == Some(row))
        })
        .await;
    if !converged {
        let ev = events.items();
        let (view, gone) = apply(&ev);
        let news = news_of(&ev);
        let missing_deletes: Vec<_> = deleted_set
            .intersection(&news)
            .filter(|id| !gone.contains(id))
            .collect();
        let differing: Vec<_> = expected
            .iter()
            .filter(|(id, row)| view.get(id) != Some(row))
            .map(|(id, row)| (id, row, view.get(id)))
            .take(3)
            .collect();
        panic!(
            "the consumer's view differs from the database: deletions not reported {missing_deletes:?}; \
             {} rows differ, e.g. {differing:#?}",
            expected.iter().filter(|(id, row)| view.get(id) != Some(row)).count()
        );
    }
    let ev = events.items();
    let (view, _) = apply(&ev);
    // Nothing but what the test touched (seeded conversations other than the active one were
    // not changed).
    for id in view.keys() {
        assert!(expected.contains_key(id), "unexpected conversation {id}");
    }
    // Every created conversation that still exists was announced as new exactly once
    // (apply() checks "once"), and nothing else was.
    let news = news_of(&ev);
    let created_set: HashSet<Uuid> = created.iter().copied().collect();
    assert!(
        news.is_subset(&created_set),
        "New only for created conversations"
    );
    for id in created_set.difference(&deleted_set) {
        assert!(news.contains(id), "no New for {id}");
    }
    let recoveries: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            ConversationEvent::Recovered(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert!(
        recoveries
            .iter()
            .filter(|r| r.reason == RecoveryReason::Resubscribed)
            .count()
            >= 3,
        "{recoveries:?}"
    );
    assert!(
        recoveries.iter().map(|r| r.caught_up).sum::<usize>() > 0,
        "{recoveries:?}"
    );
    events.stop();
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_while_away_is_found_by_the_catch_up() {
    init_tracing();
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let rt = stack.realtime().expect("realtime handle").clone();
    let client = user_client(&stack, ALICE);
    let live = live(&client);
    let db = db(&stack).await;
    let feed = live
        .conversations(uuid(SITE_STORE))
        .subscribe()
        .await
        .expect("subscribe");
    let events = Collector::start(feed);
    let id = insert_conversation(&db).await;
    events
        .wait_until("the new conversation", WAIT, |ev| {
            ev.iter()
                .any(|e| matches!(e, ConversationEvent::New(c) if c.id == id))
        })
        .await;
    rt.refuse_connections_for(Duration::from_secs(2));
    rt.drop_all_connections();
    events
        .wait_until("the interruption", WAIT, |ev| {
            ev.iter()
                .any(|e| matches!(e, ConversationEvent::Interrupted { .. }))
        })
        .await;
    db.execute(
        "delete from public.mod_chat_conversations where id = $1::text::uuid",
        &[&id.to_string()],
    )
    .await
    .expect("delete");
    events
        .wait_until("the deletion, from the catch-up", WAIT, |ev| {
            ev.iter()
                .any(|e| matches!(e, ConversationEvent::Deleted { id: d, old: None } if *d == id))
        })
        .await;
    events
        .wait_until("the recovery report", WAIT, |ev| {
            ev.iter().any(|e| {
                matches!(e, ConversationEvent::Recovered(r)
                    if r.reason == RecoveryReason::Resubscribed && r.deleted == 1)
            })
        })
        .await;
    events.stop();
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_the_site_then_live_changes() {
    init_tracing();
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let client = user_client(&stack, ALICE);
    let live = live(&client);
    let existing: Vec<Conversation> = client
        .from("mod_chat_conversations")
        .eq("site_id", SITE_STORE)
        .fetch()
        .await
        .expect("rows");
    let feed = live
        .conversations(uuid(SITE_STORE))
        .snapshot(true)
        .page_size(2)
        .subscribe()
        .await
        .expect("subscribe");
    let events = Collector::start(feed);
    events
        .wait_until("the snapshot", WAIT, |ev| {
            ev.iter()
                .any(|e| matches!(e, ConversationEvent::Recovered(_)))
        })
        .await;
    let ev = events.items();
    let snapshot: Vec<&Conversation> = ev
        .iter()
        .take_while(|e| !matches!(e, ConversationEvent::Recovered(_)))
        .filter_map(|e| match e {
            ConversationEvent::New(c) => Some(&**c),
            _ => None,
        })
        .collect();
    assert_eq!(snapshot.len(), existing.len());
    for c in &existing {
        assert!(snapshot.contains(&c), "{} missing or different", c.id);
    }
    assert!(
        snapshot
            .windows(2)
            .all(|w| (w[0].updated_at, w[0].id) < (w[1].updated_at, w[1].id)),
        "the snapshot comes by (updated_at, id)"
    );
    match ev
        .iter()
        .find(|e| matches!(e, ConversationEvent::Recovered(_)))
    {
        Some(ConversationEvent::Recovered(r)) => {
            assert_eq!(r.reason, RecoveryReason::Initial);
            assert_eq!(r.caught_up, existing.len());
        }
        other => panic!("{other:?}"),
    }
    let db = db(&stack).await;
    let id = insert_conversation(&db).await;
    events
        .wait_until("a live conversation", WAIT, |ev| {
            ev.iter()
                .any(|e| matches!(e, ConversationEvent::New(c) if c.id == id))
        })
        .await;
    events.stop();
    stack.shutdown().await;
}
