//! The README's main command (`scripts/demo.sh`): a whole live-chat exchange on a laptop, with
//! nothing to configure.
//!
//! It starts the embedded, Docker-free stack with the demo seed on free ports, runs the
//! auto-assignment [`Worker`] in-process, and plays a scripted exchange on the seeded site
//! "Acme Store": agents join the site's presence (Carol watches the online list, Bob steps away
//! and signs off), a visitor checks the business hours and opens a conversation from the widget
//! (anon key + visitor token), the worker assigns it to Alice, Alice (signed in with her user
//! JWT) and the visitor chat with typing indicators over the realtime message feed, Alice
//! resolves it, the site's statistics are printed, and everything shuts down cleanly (worker,
//! realtime connections, PostgreSQL and its files). The transcript goes to stdout with times
//! relative to the start; logs (`RUST_LOG`, default `warn`) go to stderr.
//!
//! ```sh
//! scripts/demo.sh                      # installs what is missing, then runs this
//! cargo run --example demo             # the same, when PostgreSQL + wal2json are installed
//! ```

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use livechat::chat::messages::NewMessage;
use livechat::chat::models::{AgentStatus, Channel, Conversation, ConversationStatus, SenderType};
use livechat::chat::visitors::VisitorInput;
use livechat::chat::Chat;
use livechat::live::{AgentPresence, ConversationEvent, Live, MessageEvent};
use livechat::visitor::VisitorSession;
use livechat::visitor_token::mint_visitor_token;
use livechat::worker::{Worker, WorkerConfig};
use livechat::{Client, Config};
use livechat_stack::{Stack, StackOptions};
use tokio::sync::{mpsc, oneshot};

use common::{
    first_name, next_matching, Clock, ACME_STORE as SITE, ALICE_AGENT, ALICE_USER, BOB_AGENT,
    BOB_USER, CAROL_AGENT, CAROL_USER,
};

/// What the feeds report to the script, which waits for the effect of each step.
#[derive(Debug)]
enum Ev {
    Online(BTreeMap<String, AgentStatus>),
    Message { content: String },
    Typing { seen_by: &'static str },
    Conversation(Box<Conversation>),
}

#[tokio::main]
async fn main() -> Result<()> {
    common::init_tracing();
    let clock = Clock::new();
    clock.line(
        "stack",
        "starting the embedded stack (PostgreSQL + REST + Realtime) with the demo seed…",
    );
    let stack = Stack::start(StackOptions {
        seed: true,
        port: 0,
        db_port: 0,
        ..StackOptions::ephemeral()
    })
    .await
    .context("could not start the local stack (scripts/setup.sh installs PostgreSQL + wal2json)")?;
    clock.line("stack", format!("ready at {}", stack.url()));

    let outcome = tokio::select! {
        r = play(&stack, clock) => r,
        _ = tokio::signal::ctrl_c() => {
            clock.line("demo", "interrupted");
            Ok(())
        }
    };
    clock.line(
        "stack",
        "shutting down (PostgreSQL stops, its files are removed)",
    );
    stack.shutdown().await;
    outcome?;
    clock.line("demo", "done");
    Ok(())
}

async fn play(stack: &Stack, clock: Clock) -> Result<()> {
    let anon = Client::new(Config::new(stack.url(), stack.anon_key())?)?;
    let service = Client::new(Config::new(stack.url(), stack.service_role_key())?)?;
    let as_user =
        |user: &str, email: &str| anon.with_access_token(stack.user_token(user, Some(email)));
    let alice = as_user(ALICE_USER, "alice@acme.test");
    let bob = as_user(BOB_USER, "bob@acme.test");
    let carol = as_user(CAROL_USER, "carol@acme.test");
    let backend = Chat::new(service.clone());

    let names: HashMap<String, String> = backend
        .agents()
        .list(SITE)
        .await?
        .into_iter()
        .map(|a| (a.agent.id.to_string(), a.agent.display_name))
        .collect();
    let name_of = move |key: &str| names.get(key).cloned().unwrap_or_else(|| key.to_string());

    let (tx, mut rx) = mpsc::unbounded_channel::<Ev>();
    let mut tasks = Vec::new();

    // The worker, in-process, as `livechat worker` would run next to the stack.
    let worker = Worker::new(
        service.clone(),
        WorkerConfig::new()
            .sites([SITE])
            .sweep_interval(Duration::from_secs(2)),
    )?;
    let (stop_worker, stopped) = oneshot::channel::<()>();
    let worker_task = tokio::spawn(async move {
        worker
            .run(async {
                let _ = stopped.await;
            })
            .await
    });
    clock.line(
        "worker",
        "running: auto-assigns pending conversations of Acme Store",
    );

    // Presence: Carol (away) keeps the team list open; every change of it is printed.
    let carol_live = Live::new(&carol)?;
    let carol_presence = carol_live
        .agent_presence(SITE, CAROL_AGENT.to_string(), AgentStatus::Away)
        .join()
        .await?;
    {
        let mut watch = carol_presence.online_watch();
        let tx = tx.clone();
        let name_of = name_of.clone();
        tasks.push(tokio::spawn(async move {
            let mut prev: BTreeMap<String, AgentStatus> = BTreeMap::new();
            loop {
                let now: BTreeMap<String, AgentStatus> = watch
                    .borrow_and_update()
                    .iter()
                    .map(|a| (a.key.clone(), a.status))
                    .collect();
                if now != prev {
                    for (key, status) in &now {
                        match prev.get(key) {
                            None => clock
                                .line("presence", format!("{} joined ({status})", name_of(key))),
                            Some(old) if old != status => clock.line(
                                "presence",
                                format!("{} is now {status} (was {old})", name_of(key)),
                            ),
                            Some(_) => {}
                        }
                    }
                    for key in prev.keys().filter(|k| !now.contains_key(*k)) {
                        clock.line("presence", format!("{} left", name_of(key)));
                    }
                    let list: Vec<String> = now
                        .iter()
                        .map(|(k, s)| format!("{} ({s})", first_name(&name_of(k))))
                        .collect();
                    clock.line("presence", format!("online now: {}", list.join(", ")));
                    let _ = tx.send(Ev::Online(now.clone()));
                    prev = now;
                }
                if watch.changed().await.is_err() {
                    break;
                }
            }
        }));
    }

    let alice_live = Live::new(&alice)?;
    let alice_presence = alice_live
        .agent_presence(SITE, ALICE_AGENT.to_string(), AgentStatus::Online)
        .join()
        .await?;
    let bob_live = Live::new(&bob)?;
    let bob_presence = bob_live
        .agent_presence(SITE, BOB_AGENT.to_string(), AgentStatus::Online)
        .join()
        .await?;
    let (a, b) = (ALICE_AGENT.to_string(), BOB_AGENT.to_string());
    next_matching(
        &mut rx,
        "Alice and Bob online",
        |e| matches!(e, Ev::Online(list) if list.contains_key(&a) && list.contains_key(&b)),
    )
    .await?;

    // Bob steps away, then signs off: presence and his agent row (so the worker skips him).
    bob_presence.update_status(AgentStatus::Away).await?;
    next_matching(
        &mut rx,
        "Bob away",
        |e| matches!(e, Ev::Online(list) if list.get(&b) == Some(&AgentStatus::Away)),
    )
    .await?;
    Chat::new(bob.clone())
        .agents()
        .set_status(BOB_AGENT, AgentStatus::Offline)
        .await?;
    bob_presence.leave().await?;
    next_matching(
        &mut rx,
        "Bob gone",
        |e| matches!(e, Ev::Online(list) if !list.contains_key(&b)),
    )
    .await?;

    // Alice's dashboard: the site's conversations, live.
    let mut conversations = alice_live.conversations(SITE).subscribe().await?;
    {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(event) = conversations.next().await {
                if let ConversationEvent::New(c) | ConversationEvent::Updated(c) = event {
                    let _ = tx.send(Ev::Conversation(c));
                }
            }
        }));
    }

    // The visitor: the site's backend identifies them and mints a visitor token; the widget
    // (a VisitorSession: anon key + token) checks the business hours and opens a conversation.
    let visitor = backend
        .visitors()
        .create_or_update(
            VisitorInput::new(SITE, Channel::Widget)
                .name("Sam Lungu")
                .email("sam@example.com")
                .current_page(
                    "https://acme-store.example/orders/1042",
                    Some("Order #1042"),
                ),
        )
        .await?;
    let visitor_name = visitor.name.clone().unwrap_or_else(|| "Visitor".into());
    let token = mint_visitor_token(
        stack.jwt_secret(),
        visitor.id,
        SITE,
        Duration::from_secs(15 * 60),
    )?;
    let session = VisitorSession::new(&anon, token)?.with_name(visitor_name.clone());
    let hours = Chat::new(session.client().clone())
        .widget()
        .within_business_hours(SITE)
        .await?;
    clock.line(
        "widget",
        match (hours.open, hours.next_open_at) {
            (true, _) => "Acme Store is within business hours".to_string(),
            (false, Some(t)) => format!(
                "outside business hours (next opening {}); the chat still takes messages",
                t.to_rfc3339()
            ),
            (false, None) => "outside business hours; the chat still takes messages".to_string(),
        },
    );
    let conv = session
        .start_conversation(Some("Where is my order?"), None)
        .await?;
    clock.line(
        "widget",
        format!("{visitor_name} opened a conversation: \"Where is my order?\" (pending)"),
    );

    // The visitor's side of the conversation: messages and Alice's typing.
    let visitor_feed = session.feed(conv.id).await?;
    let visitor_typing = visitor_feed.typing();
    tasks.push(spawn_feed(visitor_feed, "visitor", clock, tx.clone()));

    let first = "Hi! My order #1042 hasn't arrived yet.";
    session.send(conv.id, first).await?;

    // The worker assigns it (Bob is offline, Carol away: Alice is the one online). The
    // assignment may come before or after the first message reaches the feed: wait for both.
    let mut assigned: Option<Box<Conversation>> = None;
    let mut first_seen = false;
    while assigned.is_none() || !first_seen {
        let event = next_matching(
            &mut rx,
            "the visitor's first message and the worker's assignment",
            |e| matches!(e, Ev::Message { .. } | Ev::Conversation(_)),
        )
        .await?;
        match event {
            Ev::Message { content } if content == first => first_seen = true,
            Ev::Conversation(c) if c.id == conv.id && c.assigned_agent_id.is_some() => {
                assigned.get_or_insert(c);
            }
            _ => {}
        }
    }
    let Some(assigned) = assigned else {
        bail!("the conversation was not assigned");
    };
    let agent_id = assigned.assigned_agent_id.unwrap_or(ALICE_AGENT);
    clock.line(
        "worker",
        format!(
            "assigned to {} by the worker after waiting {}s (status {})",
            name_of(&agent_id.to_string()),
            assigned.wait_time_seconds.unwrap_or(0),
            assigned.status
        ),
    );
    if agent_id != ALICE_AGENT {
        bail!("expected the worker to pick Alice, it picked {agent_id}");
    }

    // Alice opens the conversation: its history, then live, with the visitor's typing.
    let alice_feed = alice_live
        .messages(conv.id)
        .snapshot(true)
        .subscribe()
        .await?;
    let alice_typing = alice_feed.typing();
    tasks.push(spawn_feed(alice_feed, "Alice", clock, tx.clone()));
    let alice_chat = Chat::new(alice.clone());
    let alice_id = ALICE_AGENT.to_string();
    let visitor_id = session.visitor_id().to_string();

    let script: [(bool, &str); 4] = [
        (
            true,
            "Hi Sam, I'm Alice. Let me look up order #1042 for you.",
        ),
        (false, "Thanks! It was supposed to arrive on Monday."),
        (
            true,
            "It's out for delivery and will be with you tomorrow before noon. Anything else?",
        ),
        (false, "No, that's all. Thank you!"),
    ];
    // A short pause while "typing" keeps the transcript readable (LIVECHAT_DEMO_FAST=1: none).
    let typing_pause = if std::env::var_os("LIVECHAT_DEMO_FAST").is_some() {
        Duration::ZERO
    } else {
        Duration::from_millis(400)
    };
    for (by_agent, text) in script {
        if by_agent {
            alice_typing.start(&alice_id, "Alice Anderson").await?;
            next_matching(&mut rx, "Alice's typing, seen by the visitor", |e| {
                matches!(e, Ev::Typing { seen_by: "visitor" })
            })
            .await?;
            tokio::time::sleep(typing_pause).await;
            alice_chat
                .messages()
                .send(
                    NewMessage::text(conv.id, SenderType::Agent, text)
                        .sender(alice_id.clone(), "Alice Anderson"),
                )
                .await?;
            alice_typing.stop(&alice_id).await?;
        } else {
            visitor_typing.start(&visitor_id, &visitor_name).await?;
            next_matching(&mut rx, "the visitor's typing, seen by Alice", |e| {
                matches!(e, Ev::Typing { seen_by: "Alice" })
            })
            .await?;
            tokio::time::sleep(typing_pause).await;
            session.send(conv.id, text).await?;
            visitor_typing.stop(&visitor_id).await?;
        }
        next_matching(
            &mut rx,
            "the message in the feed",
            |e| matches!(e, Ev::Message { content, .. } if content == text),
        )
        .await?;
    }

    // Alice resolves it.
    alice_chat.conversations().resolve(conv.id).await?;
    let resolved = next_matching(&mut rx, "the resolution", |e| {
        matches!(e, Ev::Conversation(c) if c.id == conv.id && c.status == ConversationStatus::Resolved)
    })
    .await?;
    if let Ev::Conversation(c) = resolved {
        clock.line(
            "dashboard",
            format!(
                "Alice resolved the conversation: {} messages, first response {}s, resolution {}s",
                c.message_count.unwrap_or(0),
                c.first_response_time_seconds.unwrap_or(0),
                c.resolution_time_seconds.unwrap_or(0),
            ),
        );
    }
    let stats = backend.conversations().stats(SITE).send().await?;
    clock.line(
        "stats",
        format!(
            "Acme Store today: {} conversations, {} resolved, {} active, {} pending, {} agents online, avg first response {}s",
            stats.today_conversations,
            stats.today_resolved,
            stats.active_conversations,
            stats.pending_conversations,
            stats.online_agents,
            stats.avg_first_response_seconds,
        ),
    );

    // Alice signs off.
    alice_presence.update_status(AgentStatus::Away).await?;
    next_matching(
        &mut rx,
        "Alice away",
        |e| matches!(e, Ev::Online(list) if list.get(&a) == Some(&AgentStatus::Away)),
    )
    .await?;
    leave(alice_presence).await?;
    next_matching(
        &mut rx,
        "Alice gone",
        |e| matches!(e, Ev::Online(list) if !list.contains_key(&a)),
    )
    .await?;

    // Shut down: the worker finishes its batch, feeds and connections close.
    let _ = stop_worker.send(());
    match tokio::time::timeout(common::WAIT, worker_task).await {
        Ok(Ok(result)) => result?,
        Ok(Err(e)) => bail!("the worker task failed: {e}"),
        Err(_) => bail!("the worker did not stop within {:?}", common::WAIT),
    }
    clock.line("worker", "stopped");
    leave(carol_presence).await?;
    for task in tasks {
        task.abort();
    }
    for live in [&alice_live, &bob_live, &carol_live] {
        let _ = live.realtime().disconnect().await;
    }
    session.close().await;
    Ok(())
}

async fn leave(presence: AgentPresence) -> Result<()> {
    tokio::time::timeout(common::WAIT, presence.leave())
        .await
        .context("leaving presence took too long")??;
    Ok(())
}

/// Prints what one side of the conversation sees and reports it to the script: messages from
/// the visitor's feed (the visitor sees every visible message), typing from both.
fn spawn_feed(
    mut feed: livechat::live::MessageFeed,
    side: &'static str,
    clock: Clock,
    tx: mpsc::UnboundedSender<Ev>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = feed.next().await {
            match event {
                MessageEvent::New { message, .. } if side == "visitor" => {
                    let content = message.content.clone().unwrap_or_default();
                    let who = match (&message.sender_name, message.sender_type) {
                        (Some(name), _) => first_name(name).to_string(),
                        (None, t) => t.to_string(),
                    };
                    clock.line(&who, &content);
                    let _ = tx.send(Ev::Message { content });
                }
                MessageEvent::TypingStarted { sender_name, .. } => {
                    clock.line(
                        "typing",
                        format!("{} is typing… (seen by {side})", first_name(&sender_name)),
                    );
                    let _ = tx.send(Ev::Typing { seen_by: side });
                }
                _ => {}
            }
        }
    })
}
