//! The Rust side of the realtime interop tests (`tests/interop/rust_*.test.mjs`): a small
//! process that opens the live feeds of `livechat::live` and talks JSON lines.
//!
//! Environment: `SUPABASE_URL`, `SUPABASE_ANON_KEY`, optionally `PEER_TOKEN` (a user access
//! token; RLS applies) and `PEER_VSN` (`1.0.0` or `2.0.0`, default `2.0.0`).
//!
//! Commands, one JSON object per line on stdin, with an optional `id` echoed in the answer
//! (`{"ev":"ok","cmd":…,"id":…}` or `{"ev":"error","cmd":…,"id":…,"error":…}`):
//!
//! | command | effect |
//! |---|---|
//! | `{"cmd":"chat","conversation":ID,"snapshot":false}` | opens the message feed of a conversation |
//! | `{"cmd":"typing_start","senderId":S,"senderName":N}` / `{"cmd":"typing_stop","senderId":S}` | sends typing on it |
//! | `{"cmd":"conversations","site":ID}` | opens the conversation feed of a site |
//! | `{"cmd":"presence","site":ID,"agent":A,"status":"online"}` | joins the site's presence as agent A |
//! | `{"cmd":"status","status":"away"}` | updates this agent's status |
//! | `{"cmd":"leave"}` | leaves the presence (untrack + unsubscribe) |
//! | `{"cmd":"exit"}` | exits normally |
//! | `{"cmd":"abort"}` | dies at once: no close frame, no leave (as a crashed process) |
//!
//! Output, one JSON object per line on stdout: `{"ev":"message","kind":"new"|"updated",…}`,
//! `{"ev":"typing_start",…}`, `{"ev":"typing_stop",…}`, `{"ev":"conversation",…}`,
//! `{"ev":"online","agents":[…]}` (after every change of the online list),
//! `{"ev":"presence","change":"joined"|"left"|"updated","key":…}`, `{"ev":"recovered",…}`,
//! `{"ev":"interrupted",…}`, `{"ev":"problem",…}`.

use anyhow::{anyhow, Context, Result};
use futures::{Stream, StreamExt};
use livechat::chat::models::AgentStatus;
use livechat::live::{
    AgentPresence, ConversationEvent, ConversationFeed, Live, MessageEvent, MessageFeed,
    OnlineAgent, PresenceChange, Typing,
};
use livechat::realtime::{Backoff, Protocol};
use livechat::{Client, Config};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

fn emit(v: Value) {
    println!("{v}");
}

async fn next_opt<S: Stream + Unpin>(s: &mut Option<S>) -> Option<S::Item> {
    match s {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

async fn changed_opt(w: &mut Option<watch::Receiver<Vec<OnlineAgent>>>) -> Vec<OnlineAgent> {
    match w {
        Some(rx) => match rx.changed().await {
            Ok(()) => rx.borrow_and_update().clone(),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

fn agent_json(a: &OnlineAgent) -> Value {
    json!({
        "key": a.key,
        "agentId": a.agent_id,
        "status": a.status.as_str(),
        "currentChats": a.current_chats,
        "connections": a.connections,
    })
}

fn message_json(kind: &str, m: &livechat::chat::models::Message, late: bool) -> Value {
    json!({
        "ev": "message",
        "kind": kind,
        "id": m.id,
        "content": m.content,
        "status": m.status.map(|s| s.as_str()),
        "created_at": m.created_at,
        "late": late,
    })
}

struct Peer {
    live: Live,
    chat: Option<MessageFeed>,
    typing: Option<Typing>,
    convs: Option<ConversationFeed>,
    presence: Option<AgentPresence>,
    online: Option<watch::Receiver<Vec<OnlineAgent>>>,
}

fn str_field<'a>(cmd: &'a Value, field: &str) -> Result<&'a str> {
    cmd.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("missing string field {field:?}"))
}

impl Peer {
    async fn command(&mut self, cmd: &Value) -> Result<()> {
        match str_field(cmd, "cmd")? {
            "chat" => {
                let conversation = str_field(cmd, "conversation")?.parse()?;
                let snapshot = cmd
                    .get("snapshot")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let feed = self
                    .live
                    .messages(conversation)
                    .snapshot(snapshot)
                    .subscribe()
                    .await?;
                self.typing = Some(feed.typing());
                self.chat = Some(feed);
            }
            "typing_start" => {
                let typing = self.typing.as_ref().context("no chat open")?;
                typing
                    .start(str_field(cmd, "senderId")?, str_field(cmd, "senderName")?)
                    .await?;
            }
            "typing_stop" => {
                let typing = self.typing.as_ref().context("no chat open")?;
                typing.stop(str_field(cmd, "senderId")?).await?;
            }
            "conversations" => {
                let site = str_field(cmd, "site")?.parse()?;
                self.convs = Some(self.live.conversations(site).subscribe().await?);
            }
            "presence" => {
                let site = str_field(cmd, "site")?.parse()?;
                let status: AgentStatus = str_field(cmd, "status")?.parse()?;
                let p = self
                    .live
                    .agent_presence(site, str_field(cmd, "agent")?, status)
                    .join()
                    .await?;
                self.online = Some(p.online_watch());
                self.presence = Some(p);
            }
            "status" => {
                let status: AgentStatus = str_field(cmd, "status")?.parse()?;
                let p = self.presence.as_ref().context("no presence")?;
                p.update_status(status).await?;
            }
            "leave" => {
                self.online = None;
                let p = self.presence.take().context("no presence")?;
                p.leave().await?;
            }
            "exit" => std::process::exit(0),
            "abort" => std::process::abort(),
            other => return Err(anyhow!("unknown command {other:?}")),
        }
        Ok(())
    }
}

fn on_message(ev: MessageEvent) {
    match ev {
        MessageEvent::New { message, late } => emit(message_json("new", &message, late)),
        MessageEvent::Updated(m) => emit(message_json("updated", &m, false)),
        MessageEvent::TypingStarted {
            sender_id,
            sender_name,
        } => emit(json!({"ev": "typing_start", "senderId": sender_id, "senderName": sender_name})),
        MessageEvent::TypingStopped { sender_id } => {
            emit(json!({"ev": "typing_stop", "senderId": sender_id}))
        }
        MessageEvent::Recovered(r) => emit(json!({
            "ev": "recovered", "feed": "chat", "reason": format!("{:?}", r.reason),
            "caughtUp": r.caught_up, "updated": r.updated,
        })),
        MessageEvent::Interrupted { reason } => {
            emit(json!({"ev": "interrupted", "feed": "chat", "reason": reason}))
        }
        other => emit(json!({"ev": "problem", "feed": "chat", "detail": format!("{other:?}")})),
    }
}

fn on_conversation(ev: ConversationEvent) {
    match ev {
        ConversationEvent::New(c) => emit(
            json!({"ev": "conversation", "kind": "new", "id": c.id, "status": c.status.as_str()}),
        ),
        ConversationEvent::Updated(c) => emit(
            json!({"ev": "conversation", "kind": "updated", "id": c.id, "status": c.status.as_str()}),
        ),
        ConversationEvent::Deleted { id, .. } => {
            emit(json!({"ev": "conversation", "kind": "deleted", "id": id}))
        }
        ConversationEvent::Recovered(r) => emit(json!({
            "ev": "recovered", "feed": "conversations", "reason": format!("{:?}", r.reason),
            "caughtUp": r.caught_up,
        })),
        other => {
            emit(json!({"ev": "problem", "feed": "conversations", "detail": format!("{other:?}")}))
        }
    }
}

fn on_presence(ev: PresenceChange) {
    let (change, key) = match &ev {
        PresenceChange::Joined(a) => ("joined", a.key.clone()),
        PresenceChange::Left(a) => ("left", a.key.clone()),
        PresenceChange::Updated(a) => ("updated", a.key.clone()),
        other => {
            emit(json!({"ev": "presence", "change": "other", "detail": format!("{other:?}")}));
            return;
        }
    };
    emit(json!({"ev": "presence", "change": change, "key": key}));
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PEER_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let url = std::env::var("SUPABASE_URL").context("SUPABASE_URL")?;
    let key = std::env::var("SUPABASE_ANON_KEY").context("SUPABASE_ANON_KEY")?;
    let mut client = Client::new(Config::new(url, key)?)?;
    if let Ok(token) = std::env::var("PEER_TOKEN") {
        client = client.with_access_token(token);
    }
    let protocol = match std::env::var("PEER_VSN").as_deref() {
        Ok("1.0.0") => Protocol::V1,
        _ => Protocol::V2,
    };
    let quick = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
    let realtime = client
        .realtime_options()
        .protocol(protocol)
        .reconnect_backoff(quick)
        .rejoin_backoff(quick)
        .build()?;
    let mut peer = Peer {
        live: Live::with_realtime(&client, realtime),
        chat: None,
        typing: None,
        convs: None,
        presence: None,
        online: None,
    };
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    emit(json!({"ev": "started"}));
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                None => break,
                Some(line) if line.trim().is_empty() => {}
                Some(line) => {
                    let cmd: Value = match serde_json::from_str(&line) {
                        Ok(v) => v,
                        Err(e) => {
                            emit(json!({"ev": "error", "error": format!("bad command line: {e}")}));
                            continue;
                        }
                    };
                    let name = cmd.get("cmd").cloned().unwrap_or(Value::Null);
                    let id = cmd.get("id").cloned().unwrap_or(Value::Null);
                    match peer.command(&cmd).await {
                        Ok(()) => emit(json!({"ev": "ok", "cmd": name, "id": id})),
                        Err(e) => emit(json!({"ev": "error", "cmd": name, "id": id, "error": format!("{e:#}")})),
                    }
                }
            },
            Some(ev) = next_opt(&mut peer.chat) => on_message(ev),
            Some(ev) = next_opt(&mut peer.convs) => on_conversation(ev),
            Some(ev) = next_opt(&mut peer.presence) => on_presence(ev),
            agents = changed_opt(&mut peer.online) => {
                emit(json!({"ev": "online", "agents": agents.iter().map(agent_json).collect::<Vec<_>>()}));
            }
        }
    }
    Ok(())
}
