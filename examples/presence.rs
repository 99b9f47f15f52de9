//! Presence: agents joining a site's presence channel (`presence:chat:<siteId>`, what the
//! dashboard's `useAgentPresence` hook joins), changing status and leaving, with the online list
//! as the first agent sees it after every change.
//!
//! Each agent has its own realtime connection (one presence per site per connection), as
//! separate browser tabs would. The agents are the site's first three agents (presence keys are
//! agent ids; made-up ones fill in on a site with fewer agents).
//!
//! ```sh
//! scripts/stack-up.sh                      # in another terminal; export what it prints
//! cargo run --example presence             # SUPABASE_URL, SUPABASE_ANON_KEY, SUPABASE_SERVICE_ROLE_KEY
//! cargo run --example presence -- --non-interactive   # no pauses between steps (CI)
//! ```
//!
//! `LIVECHAT_SITE_ID` picks the site (default: the seed's Acme Store).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Result};
use livechat::chat::models::AgentStatus;
use livechat::chat::Chat;
use livechat::live::{AgentPresence, Live};
use livechat::{ApiKeyKind, Client, Config};
use tokio::sync::watch;

use common::{first_name, Clock, WAIT};

#[tokio::main]
async fn main() -> Result<()> {
    common::require_env(&["SUPABASE_SERVICE_ROLE_KEY"]);
    common::init_tracing();
    let clock = Clock::new();
    let site = common::site_id()?;
    let pause = if common::scripted() {
        Duration::ZERO
    } else {
        Duration::from_millis(1200)
    };
    let client = Client::new(Config::from_env_with(ApiKeyKind::ServiceRole)?)?;

    let mut agents: Vec<(String, String)> = Chat::new(client.clone())
        .agents()
        .list(site)
        .await?
        .into_iter()
        .filter(|a| a.agent.is_active != Some(false))
        .take(3)
        .map(|a| (a.agent.id.to_string(), a.agent.display_name))
        .collect();
    for n in agents.len()..3 {
        agents.push((format!("example-agent-{n}"), format!("Example Agent {n}")));
    }
    let names: BTreeMap<String, String> = agents.iter().cloned().collect();
    let name = |key: &str| {
        names
            .get(key)
            .map(|n| first_name(n).to_string())
            .unwrap_or_else(|| key.to_string())
    };
    let [(k1, n1), (k2, n2), (k3, n3)] = [&agents[0], &agents[1], &agents[2]];

    // Every agent on a connection of its own.
    let join = |key: &str, status: AgentStatus| {
        let client = client.clone();
        let key = key.to_string();
        async move {
            let live = Live::new(&client)?;
            let presence = live.agent_presence(site, key, status).join().await?;
            anyhow::Ok((live, presence))
        }
    };

    let (live1, first) = join(k1, AgentStatus::Online).await?;
    clock.line("join", format!("{n1} joins as online and watches the list"));
    let mut list = first.online_watch();
    show(&clock, &mut list, &name, |l| l.contains_key(k1)).await?;

    tokio::time::sleep(pause).await;
    let (live2, second) = join(k2, AgentStatus::Online).await?;
    clock.line("join", format!("{n2} joins as online"));
    show(&clock, &mut list, &name, |l| l.contains_key(k2)).await?;

    tokio::time::sleep(pause).await;
    let (live3, third) = join(k3, AgentStatus::Away).await?;
    clock.line("join", format!("{n3} joins as away"));
    show(&clock, &mut list, &name, |l| l.contains_key(k3)).await?;

    tokio::time::sleep(pause).await;
    second.update_status(AgentStatus::Busy).await?;
    clock.line("status", format!("{n2} is busy"));
    show(&clock, &mut list, &name, |l| {
        l.get(k2) == Some(&AgentStatus::Busy)
    })
    .await?;

    tokio::time::sleep(pause).await;
    third.update_status(AgentStatus::Online).await?;
    clock.line("status", format!("{n3} is back online"));
    show(&clock, &mut list, &name, |l| {
        l.get(k3) == Some(&AgentStatus::Online)
    })
    .await?;

    tokio::time::sleep(pause).await;
    leave(second).await?;
    clock.line("leave", format!("{n2} leaves"));
    show(&clock, &mut list, &name, |l| !l.contains_key(k2)).await?;

    tokio::time::sleep(pause).await;
    leave(third).await?;
    clock.line("leave", format!("{n3} leaves"));
    show(&clock, &mut list, &name, |l| !l.contains_key(k3)).await?;

    leave(first).await?;
    clock.line("leave", format!("{n1} leaves; done"));
    for live in [live1, live2, live3] {
        let _ = live.realtime().disconnect().await;
    }
    Ok(())
}

/// Waits until the online list satisfies `want`, then prints it.
async fn show(
    clock: &Clock,
    list: &mut watch::Receiver<Vec<livechat::live::OnlineAgent>>,
    name: &impl Fn(&str) -> String,
    want: impl Fn(&BTreeMap<String, AgentStatus>) -> bool,
) -> Result<()> {
    let of = |agents: &[livechat::live::OnlineAgent]| -> BTreeMap<String, AgentStatus> {
        agents.iter().map(|a| (a.key.clone(), a.status)).collect()
    };
    let now = match tokio::time::timeout(WAIT, list.wait_for(|agents| want(&of(agents)))).await {
        Ok(Ok(agents)) => of(&agents),
        Ok(Err(_)) => bail!("presence stopped"),
        Err(_) => bail!("the online list did not change within {WAIT:?}"),
    };
    let shown: Vec<String> = now
        .iter()
        .map(|(k, s)| format!("{} ({s})", name(k)))
        .collect();
    clock.line("online", format!("[{}]", shown.join(", ")));
    Ok(())
}

async fn leave(presence: AgentPresence) -> Result<()> {
    match tokio::time::timeout(WAIT, presence.leave()).await {
        Ok(r) => Ok(r?),
        Err(_) => bail!("leaving presence took more than {WAIT:?}"),
    }
}
