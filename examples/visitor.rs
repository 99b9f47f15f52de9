//! A visitor's side of the chat, as the embeddable widget does it.
//!
//! Pre-chat: reads the site's public widget settings and checks the business hours (anon key).
//! Then the site's backend (service-role key + JWT secret) identifies the visitor and mints a
//! visitor token; with the anon key and that token the widget (a
//! `livechat::visitor::VisitorSession`) starts a conversation (pending, for the worker or an
//! agent to pick up), sends messages, and shows the agents' replies and typing indicators from
//! the realtime message feed. Type a line to send it; Ctrl-D ends.
//!
//! ```sh
//! scripts/stack-up.sh                  # in another terminal; export what it prints
//! cargo run --example visitor          # SUPABASE_URL, SUPABASE_ANON_KEY,
//!                                      # SUPABASE_SERVICE_ROLE_KEY, SUPABASE_JWT_SECRET
//! cargo run --example visitor -- --non-interactive
//! ```
//!
//! With `--non-interactive` (or `LIVECHAT_EXAMPLE_SCRIPTED=1`) it sends one message, a helper
//! playing the agent (service-role key) types and answers, and it exits once the reply arrived.
//! `LIVECHAT_SITE_ID` picks the site (default: the seed's Acme Store).

mod common;

use std::time::Duration;

use anyhow::{bail, Result};
use futures::StreamExt;
use livechat::chat::messages::NewMessage;
use livechat::chat::models::{Channel, SenderType};
use livechat::chat::visitors::VisitorInput;
use livechat::chat::Chat;
use livechat::live::{Live, MessageEvent};
use livechat::visitor::VisitorSession;
use livechat::visitor_token::mint_visitor_token;
use livechat::{ApiKeyKind, Client, Config};
use tokio::io::{AsyncBufReadExt, BufReader};

use common::{first_name, Clock, WAIT};

#[tokio::main]
async fn main() -> Result<()> {
    common::require_env(&["SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_JWT_SECRET"]);
    common::init_tracing();
    let clock = Clock::new();
    let site = common::site_id()?;
    let scripted = common::scripted();
    let anon = Client::new(Config::from_env_with(ApiKeyKind::Anon)?)?;

    // Pre-chat, with the anon key only: the widget's settings and the business hours.
    let public = Chat::new(anon.clone()).widget().public(site).await?;
    let company = public
        .company_name
        .clone()
        .unwrap_or_else(|| "the site".into());
    let hours = Chat::new(anon.clone())
        .widget()
        .within_business_hours(site)
        .await?;
    if hours.open {
        clock.line("widget", format!("{company} is open"));
        if let Some(welcome) = &public.welcome_message {
            clock.line("widget", welcome);
        }
    } else {
        let next = hours
            .next_open_at
            .map(|t| format!(" (next opening {})", t.to_rfc3339()))
            .unwrap_or_default();
        clock.line(
            "widget",
            format!("{company} is outside business hours{next}"),
        );
        if let Some(offline) = &public.offline_message {
            clock.line("widget", offline);
        }
        clock.line(
            "widget",
            "starting the chat anyway: agents answer when they can",
        );
    }

    // The site's backend identifies the visitor and mints a token for the widget.
    let backend = Chat::new(Client::new(Config::from_env_with(
        ApiKeyKind::ServiceRole,
    )?)?);
    let visitor = backend
        .visitors()
        .create_or_update(
            VisitorInput::new(site, Channel::Widget)
                .name("Vera Visitor")
                .current_page("https://acme-store.example/help", Some("Help")),
        )
        .await?;
    let name = visitor.name.clone().unwrap_or_else(|| "Visitor".into());
    let token = mint_visitor_token(
        &common::env("SUPABASE_JWT_SECRET")?,
        visitor.id,
        site,
        Duration::from_secs(30 * 60),
    )?;

    // The widget holds only the anon key and the token: a visitor session.
    let session = VisitorSession::new(&anon, token)?.with_name(name.clone());

    // The widget starts the conversation and follows it live.
    let conv = session.start_conversation(None, None).await?;
    clock.line(
        "widget",
        format!("conversation {} started ({})", conv.id, conv.status),
    );
    let mut feed = session.feed(conv.id).await?;
    let typing = feed.typing();
    let visitor_id = session.visitor_id().to_string();

    // In scripted mode a helper plays the agent: it answers the visitor's first message.
    let helper = if scripted {
        let agent = Chat::new(Client::new(Config::from_env_with(
            ApiKeyKind::ServiceRole,
        )?)?);
        let agent_live = Live::new(agent.client())?;
        let mut agent_feed = agent_live.messages(conv.id).subscribe().await?;
        Some(tokio::spawn(async move {
            while let Some(event) = agent_feed.next().await {
                if let MessageEvent::New { message, .. } = event {
                    if message.sender_type == SenderType::Visitor {
                        agent_feed
                            .send_typing_start("helper-agent", "Sky Support")
                            .await?;
                        agent
                            .messages()
                            .send(
                                NewMessage::text(
                                    conv.id,
                                    SenderType::Agent,
                                    "Hi! Sky from support here. How can I help?",
                                )
                                .sender("helper-agent", "Sky Support"),
                            )
                            .await?;
                        agent_feed.send_typing_stop("helper-agent").await?;
                        break;
                    }
                }
            }
            let _ = agent_live.realtime().disconnect().await;
            anyhow::Ok(())
        }))
    } else {
        println!("Type a message and press Enter to send it; Ctrl-D to leave.");
        None
    };

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let stdin_open = !scripted;
    if scripted {
        typing.start(&visitor_id, &name).await?;
        session.send(conv.id, "Hello, is anyone there?").await?;
        typing.stop(&visitor_id).await?;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        tokio::select! {
            event = feed.next() => match event {
                Some(MessageEvent::New { message, .. }) => {
                    let who = message.sender_name.as_deref().map(first_name).unwrap_or("system").to_string();
                    clock.line(&who, message.content.unwrap_or_default());
                    if scripted && message.sender_type == SenderType::Agent {
                        break;
                    }
                }
                Some(MessageEvent::TypingStarted { sender_name, .. }) => {
                    clock.line("typing", format!("{} is typing…", first_name(&sender_name)));
                }
                Some(_) => {}
                None => bail!("the message feed stopped"),
            },
            line = stdin.next_line(), if stdin_open => match line? {
                Some(text) if !text.trim().is_empty() => {
                    session.send(conv.id, &text).await?;
                }
                Some(_) => {}
                None => break,
            },
            _ = tokio::time::sleep_until(deadline), if scripted => {
                bail!("no agent reply within {WAIT:?}");
            }
        }
    }
    if let Some(helper) = helper {
        helper.await??;
    }
    clock.line("widget", "leaving the chat");
    drop(feed);
    session.close().await;
    Ok(())
}
