//! Quickstart: the chat domain in one page, with the service-role key.
//!
//! Creates a department, an agent in it (online) and a visitor, opens a conversation in that
//! department (assigned at once to the new agent, the only one of the department), exchanges
//! messages between the visitor and the agent, resolves the conversation and prints the site's
//! statistics. Runs against the local stack or any Supabase project with the migrations:
//!
//! ```sh
//! scripts/stack-up.sh                       # in another terminal; export what it prints
//! cargo run --example quickstart            # SUPABASE_URL, SUPABASE_ANON_KEY, SUPABASE_SERVICE_ROLE_KEY
//! ```
//!
//! `LIVECHAT_SITE_ID` picks the site (default: the seed's Acme Store). Nothing is interactive.

mod common;

use anyhow::Result;
use livechat::chat::conversations::NewConversation;
use livechat::chat::messages::NewMessage;
use livechat::chat::models::{AgentStatus, Channel, SenderType};
use livechat::chat::visitors::VisitorInput;
use livechat::chat::Chat;
use livechat::{ApiKeyKind, Client, Config};
use uuid::Uuid;

use common::Clock;

#[tokio::main]
async fn main() -> Result<()> {
    common::require_env(&["SUPABASE_SERVICE_ROLE_KEY"]);
    common::init_tracing();
    let clock = Clock::new();
    let site = common::site_id()?;
    let chat = Chat::new(Client::new(Config::from_env_with(
        ApiKeyKind::ServiceRole,
    )?)?);
    let run = &Uuid::new_v4().simple().to_string()[..6];

    // A department that routes its conversations automatically.
    let department = chat
        .departments()
        .create(site, format!("Quickstart {run}"))
        .description("Created by the quickstart example")
        .auto_assign(true)
        .await?;
    clock.line(
        "setup",
        format!("department \"{}\" ({})", department.name, department.id),
    );

    // An agent of that department (any user id: the platform's users live in auth.users).
    let agent = chat
        .agents()
        .create(site, Uuid::new_v4(), format!("Quinn {run}"))
        .email(format!("quinn-{run}@example.com"))
        .department(department.id)
        .max_concurrent_chats(3)
        .await?;
    chat.agents()
        .set_status(agent.id, AgentStatus::Online)
        .await?;
    clock.line("setup", format!("agent {} is online", agent.display_name));

    // A visitor, as the widget identifies them.
    let visitor = chat
        .visitors()
        .create_or_update(
            VisitorInput::new(site, Channel::Widget)
                .name("Mia Quickstart")
                .email(format!("mia-{run}@example.com"))
                .current_page("https://acme-store.example/pricing", Some("Pricing")),
        )
        .await?;
    let visitor_name = visitor.name.clone().unwrap_or_else(|| "Visitor".into());
    clock.line("setup", format!("visitor {visitor_name} ({})", visitor.id));

    // A conversation in the department: assigned right away to its least-loaded online agent.
    let conv = chat
        .conversations()
        .create(
            NewConversation::new(site, visitor.id)
                .department(department.id)
                .subject("Which plan do I need?"),
        )
        .await?;
    let assignee = match conv.assigned_agent_id {
        Some(id) if id == agent.id => agent.display_name.clone(),
        Some(id) => id.to_string(),
        None => "nobody yet".to_string(),
    };
    clock.line(
        "open",
        format!(
            "conversation {} is {}, assigned to {assignee}",
            conv.id, conv.status
        ),
    );

    // The exchange.
    let messages = chat.messages();
    let lines = [
        (
            SenderType::Visitor,
            "Hi! Which plan do I need for three shops?",
        ),
        (
            SenderType::Agent,
            "Hello Mia! The Business plan covers up to five shops.",
        ),
        (SenderType::Visitor, "Perfect, thanks!"),
    ];
    for (sender, text) in lines {
        let (id, name) = match sender {
            SenderType::Agent => (agent.id.to_string(), agent.display_name.clone()),
            _ => (visitor.id.to_string(), visitor_name.clone()),
        };
        let sent = messages
            .send(NewMessage::text(conv.id, sender, text).sender(id, name.clone()))
            .await?;
        clock.line(common::first_name(&name), sent.content.unwrap_or_default());
    }

    // Resolve it and look at the numbers.
    let resolved = chat.conversations().resolve(conv.id).await?;
    clock.line(
        "resolved",
        format!(
            "status {}, {} messages, first response {}s",
            resolved.status,
            resolved.message_count.unwrap_or(0),
            resolved.first_response_time_seconds.unwrap_or(0)
        ),
    );
    let stats = chat.conversations().stats(site).send().await?;
    println!();
    println!("Site statistics (today):");
    println!("  conversations today     {}", stats.today_conversations);
    println!("  resolved today          {}", stats.today_resolved);
    println!("  missed today            {}", stats.today_missed);
    println!("  active now              {}", stats.active_conversations);
    println!("  pending now             {}", stats.pending_conversations);
    println!("  agents online           {}", stats.online_agents);
    println!(
        "  avg first response      {}s",
        stats.avg_first_response_seconds
    );
    println!("  satisfaction score      {:.0}", stats.satisfaction_score);

    // Leave the agent offline so the site's routing is as it was.
    chat.agents()
        .set_status(agent.id, AgentStatus::Offline)
        .await?;
    Ok(())
}
