//! Agent presence (`useAgentPresence` in Rust):
//!
//! - against the real stack: three agents (three realtime clients) see each other join, a
//!   status update, an explicit leave, an agent whose connection dies without a goodbye
//!   (no close frame, no `phx_leave`), and a rejoin after the server drops every connection;
//! - against the fake server with paused time: presence calls never exceed the throttle (the
//!   server's limit is 5 per 30 s per channel) however fast the status changes, and the newest
//!   wanted state is the one that ends up tracked.

use crate::live_support;
use crate::realtime_support;

use futures::StreamExt;
use live_support::*;
use livechat::chat::models::AgentStatus;
use livechat::live::{AgentPresence, Live, OnlineAgent, PresenceChange, RecoveryReason};
use livechat::realtime::{Backoff, Protocol, Transport};
use livechat_stack::Stack;
use realtime_support::{payload, FakeServer};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn status_of(agents: &[OnlineAgent], key: &str) -> Option<AgentStatus> {
    agents.iter().find(|a| a.key == key).map(|a| a.status)
}

async fn wait_online(p: &AgentPresence, what: &str, pred: impl Fn(&[OnlineAgent]) -> bool) {
    let mut w = p.online_watch();
    tokio::time::timeout(WAIT, w.wait_for(|list| pred(list)))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{what}: not within {WAIT:?}; online: {:?}",
                p.online_agents()
            )
        })
        .expect("presence stopped");
}

async fn join(live: &Live, agent: &str, status: AgentStatus) -> AgentPresence {
    live.agent_presence(uuid(SITE_STORE), agent, status)
        .join()
        .await
        .expect("join presence")
}

/// TCP connections that the test can cut (shutdown both ways, no WebSocket close frame, no
/// `phx_leave`), after which new connections fail: to the server, the process is gone.
#[derive(Clone, Default)]
struct Cutter {
    dead: Arc<AtomicBool>,
    sockets: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Cutter {
    fn cut(&self) {
        self.dead.store(true, Ordering::SeqCst);
        for s in self.sockets.lock().expect("lock").drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn cuttable_live(stack: &Stack, user: &str, cutter: &Cutter) -> Live {
    let client = user_client(stack, user);
    let port = stack.port();
    let c = cutter.clone();
    let quick = Backoff::new(Duration::from_millis(50), Duration::from_millis(400));
    let realtime = client
        .realtime_options()
        .reconnect_backoff(quick)
        .rejoin_backoff(quick)
        .transport(move |_url| {
            let c = c.clone();
            async move {
                if c.dead.load(Ordering::SeqCst) {
                    return Err(std::io::Error::other("the process is gone"));
                }
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                let std = tcp.into_std()?;
                c.sockets.lock().expect("lock").push(std.try_clone()?);
                Ok(Box::new(tokio::net::TcpStream::from_std(std)?) as Box<dyn Transport>)
            }
        })
        .build()
        .expect("realtime");
    Live::with_realtime(&client, realtime)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_see_each_other_join_update_leave_and_die() {
    init_tracing();
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let (alice, bob) = (
        live(&user_client(&stack, ALICE)),
        live(&user_client(&stack, BOB)),
    );
    let cutter = Cutter::default();
    let carol = cuttable_live(&stack, "c0000000-0000-4000-8000-000000000003", &cutter);

    let a = join(&alice, AGENT_ALICE, AgentStatus::Online).await;
    let mut b = join(&bob, AGENT_BOB, AgentStatus::Busy).await;
    let c = join(&carol, AGENT_CAROL, AgentStatus::Away).await;
    for p in [&a, &b, &c] {
        wait_online(p, "all three online", |l| l.len() == 3).await;
    }
    let list = a.online_agents();
    assert_eq!(status_of(&list, AGENT_BOB), Some(AgentStatus::Busy));
    let carol_seen = list.iter().find(|x| x.key == AGENT_CAROL).expect("carol");
    assert_eq!(carol_seen.agent_id, AGENT_CAROL);
    assert_eq!(carol_seen.current_chats, 0);
    assert!(carol_seen.last_seen.is_some());

    // A status update reaches the others.
    a.update_status(AgentStatus::Away).await.expect("update");
    a.set_current_chats(2).await.expect("update");
    wait_online(&b, "alice away with 2 chats", |l| {
        l.iter()
            .any(|x| x.key == AGENT_ALICE && x.status == AgentStatus::Away && x.current_chats == 2)
    })
    .await;

    // Carol's connection dies without a goodbye: the others see her leave.
    cutter.cut();
    wait_online(&a, "carol gone (seen by alice)", |l| {
        status_of(l, AGENT_CAROL).is_none()
    })
    .await;
    wait_online(&b, "carol gone (seen by bob)", |l| {
        status_of(l, AGENT_CAROL).is_none()
    })
    .await;

    // Alice leaves explicitly.
    a.leave().await.expect("leave");
    wait_online(&b, "alice gone", |l| status_of(l, AGENT_ALICE).is_none()).await;

    // Bob's stream told the story.
    let mut changes = Vec::new();
    while let Ok(Some(ch)) = tokio::time::timeout(Duration::from_millis(200), b.next()).await {
        changes.push(ch);
    }
    let left: Vec<&str> = changes
        .iter()
        .filter_map(|c| match c {
            PresenceChange::Left(x) => Some(x.key.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        left.contains(&AGENT_CAROL) && left.contains(&AGENT_ALICE),
        "{changes:?}"
    );
    assert!(changes.iter().any(
        |c| matches!(c, PresenceChange::Updated(x) if x.key == AGENT_ALICE && x.status == AgentStatus::Away)
    ));
    drop(c);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_comes_back_after_the_server_drops_every_connection() {
    init_tracing();
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let rt = stack.realtime().expect("realtime handle").clone();
    let (alice, bob) = (
        live(&user_client(&stack, ALICE)),
        live(&user_client(&stack, BOB)),
    );
    let mut a = alice
        .agent_presence(uuid(SITE_STORE), AGENT_ALICE, AgentStatus::Online)
        .snapshot(true)
        .join()
        .await
        .expect("join");
    let b = join(&bob, AGENT_BOB, AgentStatus::Online).await;
    wait_online(&a, "both", |l| l.len() == 2).await;
    rt.refuse_connections_for(Duration::from_millis(500));
    rt.drop_all_connections();
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(ch) = a.next().await {
            let done = matches!(
                ch,
                PresenceChange::Recovered {
                    reason: RecoveryReason::Resubscribed,
                    ..
                }
            );
            seen.push(ch);
            if done {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no recovery: {seen:?}"));
    assert!(seen
        .iter()
        .any(|c| matches!(c, PresenceChange::Interrupted { .. })));
    // The snapshot came first.
    assert!(matches!(
        seen.iter()
            .find(|c| matches!(c, PresenceChange::Recovered { .. })),
        Some(PresenceChange::Recovered {
            reason: RecoveryReason::Initial,
            ..
        })
    ));
    // Both re-tracked by themselves after the rejoin.
    wait_online(&a, "both again", |l| l.len() == 2).await;
    wait_online(&b, "both again", |l| l.len() == 2).await;
    stack.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn presence_updates_are_throttled_and_the_newest_wins() {
    init_tracing();
    let mut server = FakeServer::start(Protocol::V2).await;
    let realtime = server.options().build().expect("realtime");
    let rest =
        livechat::Client::new(livechat::Config::new(server.url(), "anon-key").expect("config"))
            .expect("client");
    // The fake server has no REST API: no access check.
    let live = Live::with_realtime(&rest, realtime).check_access(false);
    let joining = tokio::spawn(async move {
        live.agent_presence(uuid(SITE_STORE), "agent-1", AgentStatus::Online)
            .join()
            .await
    });
    let mut conn = server.accept().await;
    let j = conn.recv_event("phx_join").await;
    assert_eq!(j.topic, format!("realtime:presence:chat:{SITE_STORE}"));
    assert_eq!(
        payload(&j)["config"]["presence"],
        json!({"key": "agent-1", "enabled": true})
    );
    conn.accept_join(&j);
    let presence = joining.await.expect("task").expect("join");

    let t0 = tokio::time::Instant::now();
    let mut tracks: Vec<(tokio::time::Instant, serde_json::Value)> = Vec::new();
    let statuses = [
        AgentStatus::Away,
        AgentStatus::Busy,
        AgentStatus::Online,
        AgentStatus::Away,
        AgentStatus::Busy,
        AgentStatus::Online,
        AgentStatus::Away,
        AgentStatus::Busy,
    ];
    for s in statuses {
        presence.update_status(s).await.expect("update");
    }
    // Read every presence push for two minutes of (paused) time.
    while let Ok(f) =
        tokio::time::timeout(Duration::from_secs(120), conn.recv_event("presence")).await
    {
        conn.reply(&f, "ok", json!({}));
        tracks.push((tokio::time::Instant::now(), payload(&f).clone()));
    }
    let window = Duration::from_secs(30);
    for (i, (t, _)) in tracks.iter().enumerate() {
        let n = tracks[i..].iter().filter(|(u, _)| *u < *t + window).count();
        assert!(n <= 4, "{n} presence calls within 30 s from {:?}", *t - t0);
    }
    let last = &tracks.last().expect("tracks").1;
    assert_eq!(last["event"], "track");
    assert_eq!(last["payload"]["status"], "busy", "the newest status wins");
    assert_eq!(last["payload"]["agentId"], "agent-1");
    assert!(
        tracks.len() < statuses.len() + 1,
        "quick updates collapse: {} calls",
        tracks.len()
    );
    // Leaving untracks when the budget allows, then leaves.
    let leaving = tokio::spawn(presence.leave());
    loop {
        let f = conn.recv().await;
        match f.event.as_str() {
            "presence" => conn.reply(&f, "ok", json!({})),
            "phx_leave" => {
                conn.reply(&f, "ok", json!({}));
                break;
            }
            _ => {}
        }
    }
    leaving.await.expect("task").expect("leave");
}
