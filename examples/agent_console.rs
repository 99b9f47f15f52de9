//! An agent's live terminal view of one conversation: its messages as they arrive, typing
//! indicators, and who of the site's agents is online. Type a line to send it (the console
//! shows "typing" to the visitor while it sends); `/resolve` resolves the conversation and
//! quits, `/quit` or Ctrl-D quits.
//!
//! ```sh
//! scripts/stack-up.sh                     # in another terminal; export what it prints
//! cargo run --example agent_console -- 20000000-0000-4000-8000-000000000102
//! cargo run --example agent_console -- --non-interactive
//! ```
//!
//! Needs SUPABASE_URL, SUPABASE_ANON_KEY and SUPABASE_SERVICE_ROLE_KEY, or a signed-in user's
//! JWT in `LIVECHAT_ACCESS_TOKEN` (then row-level security applies: e.g. `livechat-stack token
//! --sub c0000000-0000-4000-8000-000000000001` for the seed's Alice). The agent is
//! `LIVECHAT_AGENT_ID` (default: the seed's Alice, or the site's first agent). Without a
//! conversation id a new one is opened with a new visitor. With `--non-interactive` (or
//! `LIVECHAT_EXAMPLE_SCRIPTED=1`) it sends two lines and exits once the feed echoed both.

mod common;

use std::collections::{BTreeMap, HashSet};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use livechat::chat::conversations::NewConversation;
use livechat::chat::messages::NewMessage;
use livechat::chat::models::{AgentStatus, Channel, SenderType};
use livechat::chat::visitors::VisitorInput;
use livechat::chat::Chat;
use livechat::live::{Live, MessageEvent};
use livechat::{Client, Config};
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

use common::{first_name, Clock, WAIT};

#[tokio::main]
async fn main() -> Result<()> {
    common::require_env(&[]);
    common::init_tracing();
    let clock = Clock::new();
    let site = common::site_id()?;
    let scripted = common::scripted();
    let mut client = Client::new(Config::from_env()?)?;
    if let Ok(token) = common::env("LIVECHAT_ACCESS_TOKEN") {
        client = client.with_access_token(token);
    }
    let chat = Chat::new(client.clone());

    let agents = chat.agents().list(site).await?;
    let names: BTreeMap<String, String> = agents
        .iter()
        .map(|a| (a.agent.id.to_string(), a.agent.display_name.clone()))
        .collect();
    let agent = match common::env("LIVECHAT_AGENT_ID") {
        Ok(id) => id
            .parse::<Uuid>()
            .context("LIVECHAT_AGENT_ID is not a uuid")?,
        Err(_) if names.contains_key(&common::ALICE_AGENT.to_string()) => common::ALICE_AGENT,
        Err(_) => match agents.first() {
            Some(a) => a.agent.id,
            None => bail!("the site has no agents; create one first (see the quickstart)"),
        },
    };
    let agent_key = agent.to_string();
    let agent_name = names
        .get(&agent_key)
        .cloned()
        .unwrap_or_else(|| "Agent".into());

    let conversation = match std::env::args().skip(1).find(|a| !a.starts_with("--")) {
        Some(id) => id
            .parse::<Uuid>()
            .context("the conversation id is not a uuid")?,
        None => {
            let visitor = chat
                .visitors()
                .create_or_update(VisitorInput::new(site, Channel::Widget).name("Console Visitor"))
                .await?;
            let conv = chat
                .conversations()
                .create(
                    NewConversation::new(site, visitor.id)
                        .subject("Opened from the agent console")
                        .auto_assign(false),
                )
                .await?;
            clock.line("console", format!("opened conversation {}", conv.id));
            conv.id
        }
    };

    // Who is online: join the site's presence as this agent.
    let live = Live::new(&client)?;
    let presence = live
        .agent_presence(site, agent_key.clone(), AgentStatus::Online)
        .join()
        .await?;
    let mut online = presence.online_watch();
    let show_online = |list: &[livechat::live::OnlineAgent]| {
        let shown: Vec<String> = list
            .iter()
            .map(|a| {
                let n = names.get(&a.key).map_or(a.key.as_str(), |n| first_name(n));
                format!("{n} ({})", a.status)
            })
            .collect();
        clock.line("online", shown.join(", "));
    };

    // The conversation: its history, then live.
    let mut feed = live
        .messages(conversation)
        .snapshot(true)
        .subscribe()
        .await?;
    clock.line(
        "console",
        format!("{agent_name} on conversation {conversation}"),
    );
    if !scripted {
        println!("Type a message and press Enter; /resolve resolves, /quit or Ctrl-D quits.");
    }

    let mut pending: Vec<String> = Vec::new();
    if scripted {
        for text in ["Hello from the agent console.", "Anything else I can do?"] {
            pending.push(text.to_string());
        }
    }
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let deadline = tokio::time::Instant::now() + WAIT;

    let typing = feed.typing();
    let send = |text: String| {
        let chat = chat.clone();
        let typing = typing.clone();
        let (key, name) = (agent_key.clone(), agent_name.clone());
        async move {
            typing.start(&key, &name).await?;
            let sent = chat
                .messages()
                .send(
                    NewMessage::text(conversation, SenderType::Agent, text)
                        .sender(key.clone(), name),
                )
                .await?;
            typing.stop(&key).await?;
            anyhow::Ok(sent.id)
        }
    };
    // The console's own messages not seen in the feed yet (scripted mode waits for them).
    let mut awaiting: HashSet<Uuid> = HashSet::new();
    for text in pending.drain(..) {
        awaiting.insert(send(text).await?);
    }

    loop {
        tokio::select! {
            event = feed.next() => match event {
                Some(MessageEvent::New { message, .. }) => {
                    let who = message
                        .sender_name
                        .as_deref()
                        .map(first_name)
                        .map(str::to_string)
                        .unwrap_or_else(|| message.sender_type.to_string());
                    let note = if message.is_internal_note == Some(true) { " (internal note)" } else { "" };
                    clock.line(&who, format!("{}{note}", message.content.unwrap_or_default()));
                    if awaiting.remove(&message.id) && scripted && awaiting.is_empty() {
                        break;
                    }
                }
                Some(MessageEvent::Updated(message)) => {
                    clock.line("edited", message.content.unwrap_or_default());
                }
                Some(MessageEvent::TypingStarted { sender_name, .. }) => {
                    clock.line("typing", format!("{} is typing…", first_name(&sender_name)));
                }
                Some(_) => {}
                None => bail!("the message feed stopped"),
            },
            changed = online.changed() => {
                if changed.is_err() {
                    bail!("presence stopped");
                }
                let list = online.borrow_and_update().clone();
                show_online(&list);
            }
            line = stdin.next_line(), if !scripted => match line?.as_deref().map(str::trim) {
                None | Some("/quit") => break,
                Some("/resolve") => {
                    let c = chat.conversations().resolve(conversation).await?;
                    clock.line("console", format!("conversation {}", c.status));
                    break;
                }
                Some("") => {}
                Some(text) => {
                    send(text.to_string()).await?;
                }
            },
            _ = tokio::time::sleep_until(deadline), if scripted => {
                bail!("the console's own messages did not come back within {WAIT:?}");
            }
        }
    }

    let _ = tokio::time::timeout(WAIT, presence.leave()).await;
    let _ = live.realtime().disconnect().await;
    clock.line("console", "bye");
    Ok(())
}
