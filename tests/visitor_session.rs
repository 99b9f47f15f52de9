//! `livechat::visitor::VisitorSession` against the local stack (seeded), acting with the anon
//! key plus a visitor token minted with the stack's JWT secret:
//!
//! - starting a conversation, sending, the history (equal to what SQL holds minus internal
//!   notes; a note added by the service role is absent), resuming, listing;
//! - another visitor's session can neither read the conversation (empty) nor send into it
//!   (Forbidden), and resumes nothing;
//! - the live feed receives an agent's typing indicator and reply (sent with the service-role
//!   client), and the agent's feed sees the visitor's typing and message;
//! - blank text and non-visitor tokens are refused before any request.
//! - the session's column lists are exactly the columns `anon` may select (migration 000700),
//!   and the visitor's own row reads without what agents wrote about it.
//!
//! Every wait has a deadline; no sleeps.

use std::time::Duration;

use futures::StreamExt;
use livechat::chat::messages::NewMessage;
use livechat::chat::models::{Channel, ConversationStatus, SenderType};
use livechat::chat::visitors::VisitorInput;
use livechat::chat::Chat;
use livechat::live::{Live, MessageEvent, MessageFeed};
use livechat::visitor::VisitorSession;
use livechat::visitor_token::mint_visitor_token;
use livechat::{Client, Config, ErrorKind};
use livechat_stack::Stack;
use uuid::Uuid;

const SITE_STORE: Uuid = Uuid::from_u128(0xb0000000_0000_4000_8000_000000000001);
const WAIT: Duration = Duration::from_secs(20);

fn anon(stack: &Stack) -> Client {
    Client::new(Config::new(stack.url(), stack.anon_key()).expect("config")).expect("client")
}

fn service(stack: &Stack) -> Chat {
    Chat::new(
        Client::new(Config::new(stack.url(), stack.service_role_key()).expect("config"))
            .expect("client"),
    )
}

/// A new visitor of the Acme Store (service role) and a session for it (anon key + token).
async fn new_visitor(stack: &Stack, name: &str) -> VisitorSession {
    let visitor = service(stack)
        .visitors()
        .create_or_update(VisitorInput::new(SITE_STORE, Channel::Widget).name(name))
        .await
        .expect("create visitor");
    let token = mint_visitor_token(
        stack.jwt_secret(),
        visitor.id,
        SITE_STORE,
        Duration::from_secs(600),
    )
    .expect("mint");
    VisitorSession::new(&anon(stack), token)
        .expect("session")
        .with_name(name)
}

async fn db(stack: &Stack) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(&stack.db_url(), tokio_postgres::NoTls)
        .await
        .expect("database connection");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

/// The next event of `feed` matching `pred`, within [`WAIT`].
async fn next_matching(
    feed: &mut MessageFeed,
    what: &str,
    pred: impl Fn(&MessageEvent) -> bool,
) -> MessageEvent {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(event) = feed.next().await {
            if pred(&event) {
                return Some(event);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(event)) => event,
        Ok(None) => panic!("the feed stopped before {what}"),
        Err(_) => panic!("no {what} within {WAIT:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_send_history_resume_and_isolation() {
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let vera = new_visitor(&stack, "Vera Visitor").await;
    let chat = service(&stack);

    // Nothing open yet.
    assert_eq!(vera.resume().await.expect("resume"), None);

    let conv = vera
        .start_conversation(Some("Where is my order?"), None)
        .await
        .expect("start");
    assert_eq!(conv.status, ConversationStatus::Pending);
    assert_eq!(
        (conv.visitor_id, conv.site_id),
        (vera.visitor_id(), SITE_STORE)
    );
    assert_eq!(conv.assigned_agent_id, None);
    assert_eq!(conv.subject.as_deref(), Some("Where is my order?"));
    assert_eq!(conv.channel, Channel::Widget);

    let sent = vera
        .send(conv.id, "Hello, is anyone there?")
        .await
        .expect("send");
    assert_eq!(sent.sender_type, SenderType::Visitor);
    assert_eq!(sent.sender_id, Some(vera.visitor_id().to_string()));
    assert_eq!(sent.sender_name.as_deref(), Some("Vera Visitor"));
    assert_eq!(sent.conversation_id, conv.id);

    // The agent answers and leaves an internal note (service role).
    let reply = chat
        .messages()
        .send(
            NewMessage::text(conv.id, SenderType::Agent, "Hi Vera, checking now.")
                .sender("agent-1", "Sky Support"),
        )
        .await
        .expect("agent reply");
    let note = chat
        .messages()
        .send(NewMessage::note(conv.id, "customer sounds upset"))
        .await
        .expect("note");
    vera.send(conv.id, "Thanks!").await.expect("send 2");

    // History = SQL minus internal notes, oldest first.
    let history = vera.history(conv.id).await.expect("history");
    let c = db(&stack).await;
    let expected: Vec<Uuid> = c
        .query(
            "select id::text from public.mod_chat_messages \
             where conversation_id = $1::text::uuid \
               and is_internal_note is not true and content_type is distinct from 'note' \
             order by created_at, id",
            &[&conv.id.to_string()],
        )
        .await
        .expect("sql")
        .iter()
        .map(|r| r.get::<_, String>(0).parse().expect("uuid"))
        .collect();
    let all: i64 = c
        .query_one(
            "select count(*) from public.mod_chat_messages where conversation_id = $1::text::uuid",
            &[&conv.id.to_string()],
        )
        .await
        .expect("sql")
        .get(0);
    let got: Vec<Uuid> = history.iter().map(|m| m.id).collect();
    assert_eq!(got, expected);
    assert_eq!(
        all,
        i64::try_from(expected.len()).expect("len") + 1,
        "one note"
    );
    assert!(got.contains(&sent.id) && got.contains(&reply.id));
    assert!(!got.contains(&note.id), "the internal note is invisible");
    assert!(history
        .iter()
        .all(|m| m.content.as_deref() != Some("customer sounds upset")));

    // Resume finds it (the agent's reply made it active: still open); the list has it.
    let resumed = vera.resume().await.expect("resume").expect("an open one");
    assert_eq!(resumed.id, conv.id);
    assert!(resumed.status.holds_agent_slot());
    let listed = vera.conversations().await.expect("list");
    assert_eq!(listed.iter().map(|c| c.id).collect::<Vec<_>>(), [conv.id]);
    assert_eq!(vera.visitor().await.expect("own row").id, vera.visitor_id());

    // Another visitor: reads nothing of it, cannot send into it, resumes nothing.
    let mallory = new_visitor(&stack, "Mallory Other").await;
    assert!(mallory.history(conv.id).await.expect("history").is_empty());
    let e = mallory
        .send(conv.id, "let me in")
        .await
        .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e:?}");
    assert_eq!(mallory.resume().await.expect("resume"), None);
    assert!(mallory.conversations().await.expect("list").is_empty());
    let after: i64 = c
        .query_one(
            "select count(*) from public.mod_chat_messages where conversation_id = $1::text::uuid",
            &[&conv.id.to_string()],
        )
        .await
        .expect("sql")
        .get(0);
    assert_eq!(after, all, "nothing was inserted by the other visitor");

    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_receives_agent_typing_and_reply_and_sends_visitor_typing() {
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let vera = new_visitor(&stack, "Vera Visitor").await;
    let conv = vera
        .start_conversation(None, None)
        .await
        .expect("start conversation");
    let chat = service(&stack);

    let mut visitor_feed = vera.feed(conv.id).await.expect("visitor feed");
    let agent_live = Live::new(chat.client()).expect("agent live");
    let mut agent_feed = agent_live
        .messages(conv.id)
        .subscribe()
        .await
        .expect("agent feed");

    // Visitor → agent: typing and a message.
    let me = vera.visitor_id().to_string();
    visitor_feed
        .send_typing_start(&me, "Vera Visitor")
        .await
        .expect("typing");
    next_matching(
        &mut agent_feed,
        "the visitor's typing",
        |e| matches!(e, MessageEvent::TypingStarted { sender_id, .. } if *sender_id == me),
    )
    .await;
    let sent = vera.send(conv.id, "Anyone?").await.expect("send");
    next_matching(
        &mut agent_feed,
        "the visitor's message",
        |e| matches!(e, MessageEvent::New { message, .. } if message.id == sent.id),
    )
    .await;

    // Agent → visitor: typing, a reply, and a note the visitor never receives.
    agent_feed
        .send_typing_start("agent-1", "Sky Support")
        .await
        .expect("agent typing");
    let typing = next_matching(&mut visitor_feed, "the agent's typing", |e| {
        matches!(e, MessageEvent::TypingStarted { .. })
    })
    .await;
    assert!(
        matches!(&typing, MessageEvent::TypingStarted { sender_name, .. } if sender_name == "Sky Support"),
        "{typing:?}"
    );
    let note = chat
        .messages()
        .send(NewMessage::note(conv.id, "internal only"))
        .await
        .expect("note");
    let reply = chat
        .messages()
        .send(
            NewMessage::text(conv.id, SenderType::Agent, "Hi! How can I help?")
                .sender("agent-1", "Sky Support"),
        )
        .await
        .expect("reply");
    let got = next_matching(&mut visitor_feed, "the agent's reply", |e| {
        matches!(e, MessageEvent::New { message, .. } if message.sender_type == SenderType::Agent)
    })
    .await;
    match got {
        MessageEvent::New { message, .. } => {
            assert_eq!(message.id, reply.id, "the note came first: {:?}", note.id);
            assert_eq!(message.content.as_deref(), Some("Hi! How can I help?"));
        }
        other => panic!("{other:?}"),
    }

    drop(visitor_feed);
    vera.close().await;
    let _ = agent_live.realtime().disconnect().await;
    stack.shutdown().await;
}

/// A session on an address nothing listens on: any request would fail with `Transport`, so
/// `InvalidInput` proves the refusal happened before any request.
#[tokio::test]
async fn blank_text_and_non_visitor_tokens_are_refused_before_any_request() {
    let nowhere = Client::new(Config::new("http://127.0.0.1:9", "anon-key").expect("config"))
        .expect("client");
    let token = mint_visitor_token(
        "super-secret-jwt-token-with-at-least-32-characters-long",
        Uuid::new_v4(),
        SITE_STORE,
        Duration::from_secs(60),
    )
    .expect("mint");
    let session = VisitorSession::new(&nowhere, token).expect("session");
    for text in ["", "   ", "\n\t"] {
        let e = session.send(Uuid::new_v4(), text).await.expect_err("blank");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:?}");
    }
    let huge = "x".repeat(livechat::chat::conversations::MAX_TEXT_BYTES + 1);
    let e = session.send(Uuid::new_v4(), &huge).await.expect_err("huge");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:?}");
    let e = session
        .start_conversation(Some("  "), None)
        .await
        .expect_err("blank subject");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:?}");
    // And the control: a real request there is a transport error.
    let e = session.resume().await.expect_err("nothing listens");
    assert_eq!(e.kind(), ErrorKind::Transport, "{e:?}");

    // A dashboard user's token is not a visitor token.
    let e = VisitorSession::new(&nowhere, "header.eyJyb2xlIjoiYXV0aGVudGljYXRlZCJ9.sig")
        .expect_err("not a visitor token");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn the_visitor_column_lists_are_exactly_what_anon_may_select() {
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let db = db(&stack).await;
    for (table, list) in [
        (
            "mod_chat_conversations",
            livechat::visitor::VISITOR_CONVERSATION_COLUMNS,
        ),
        ("mod_chat_visitors", livechat::visitor::VISITOR_ROW_COLUMNS),
    ] {
        let rows = db
            .query(
                "select a.attname::text from pg_attribute a \
                 where a.attrelid = ('public.' || $1)::regclass and a.attnum > 0 \
                   and not a.attisdropped \
                   and has_column_privilege('anon', a.attrelid, a.attnum, 'SELECT') \
                 order by a.attnum",
                &[&table],
            )
            .await
            .expect("column privileges");
        let selectable: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let ours: Vec<&str> = list.split(',').collect();
        assert_eq!(selectable, ours, "{table}");
    }
    // And the session reads through them: its own row without the hidden fields.
    let vera = new_visitor(&stack, "Vera Visitor").await;
    db.execute(
        "update public.mod_chat_visitors set notes = 'chargeback risk', tags = '{fraud}' where id = $1",
        &[&vera.visitor_id()],
    )
    .await
    .expect("agent notes");
    let me = vera.visitor().await.expect("own row");
    assert_eq!(me.name.as_deref(), Some("Vera Visitor"));
    assert_eq!((me.notes, me.tags), (None, None));
}
