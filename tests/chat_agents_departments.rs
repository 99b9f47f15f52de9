//! Agents and departments against the real local stack: every action with the service-role key
//! and with a dashboard user's JWT (alice, agency A), compared with direct SQL over the same
//! data; a user of another agency (dave, agency B) gets nothing of agency A and writes nothing;
//! invalid input never leaves the process; the performance report is one HTTP request.

use chrono::{Duration, Utc};
use livechat::chat::agents::AgentPatch;
use livechat::chat::departments::DepartmentPatch;
use livechat::chat::entity_views::{AgentPerformance, AgentWithDepartment};
use livechat::chat::models::{Agent, AgentRole, AgentStatus, Department};
use livechat::chat::ChatError;
use livechat::ErrorKind;
use uuid::Uuid;

use crate::entity;
use entity::{assert_invalid, id, Env, DAVE, SITE_1, SITE_2};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const AGENT_ALICE_1: &str = "e0000000-0000-4000-8000-000000000101";
const AGENT_BOB_1: &str = "e0000000-0000-4000-8000-000000000102";
const DEPT_SALES_1: &str = "d0000000-0000-4000-8000-000000000101";
const DEPT_SUPPORT_1: &str = "d0000000-0000-4000-8000-000000000102";

impl Env {
    /// The invariant every action keeps: current_chat_count = open conversations.
    async fn assert_chat_counts_consistent(&self) {
        let bad: Vec<serde_json::Value> = self
            .json_rows(
                "select jsonb_build_object('agent', a.id, 'count', a.current_chat_count, \
                        'open', (select count(*) from public.mod_chat_conversations c \
                                 where c.assigned_agent_id = a.id \
                                   and c.status in ('pending', 'active', 'waiting')))::text \
                 from public.mod_chat_agents a \
                 where a.current_chat_count <> (select count(*) from public.mod_chat_conversations c \
                        where c.assigned_agent_id = a.id and c.status in ('pending', 'active', 'waiting'))",
                &[],
            )
            .await;
        assert!(bad.is_empty(), "current_chat_count out of step: {bad:?}");
    }
}

fn sql_agents_with_department(filter: &str) -> String {
    format!(
        "select (to_jsonb(a) || jsonb_build_object('department', to_jsonb(d)))::text \
         from public.mod_chat_agents a \
         left join public.mod_chat_departments d on d.id = a.department_id \
         where {filter} order by a.display_name, a.id"
    )
}

// ---------------------------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn agent_reads_return_what_sql_holds_for_the_service_role_and_for_alice() {
    let env = Env::new().await;
    for (who, chat) in env.members() {
        for site in [SITE_1, SITE_2] {
            let want: Vec<AgentWithDepartment> = env
                .json_rows(
                    &sql_agents_with_department("a.site_id = $1::text::uuid"),
                    &[&site],
                )
                .await;
            let got = chat.agents().list(id(site)).await.expect("list");
            assert_eq!(got, want, "{who}: agents of {site}");
            assert!(!got.is_empty());
            for a in &want {
                let one = chat.agents().get(a.agent.id).await.expect("get");
                assert_eq!(one.as_ref(), Some(a), "{who}: agent {}", a.agent.id);
            }

            let want: Vec<Agent> = env
                .json_rows(
                    "select to_jsonb(a)::text from public.mod_chat_agents a \
                     where a.site_id = $1::text::uuid and a.is_active \
                       and a.status in ('online', 'away', 'busy') \
                     order by a.display_name, a.id",
                    &[&site],
                )
                .await;
            let got = chat.agents().online(id(site)).await.expect("online");
            assert_eq!(got, want, "{who}: online agents of {site}");

            let free_sql = "select to_jsonb(a)::text from public.mod_chat_agents a \
                 where a.site_id = $1::text::uuid and a.is_active and a.status = 'online' \
                   and a.current_chat_count < a.max_concurrent_chats \
                   and ($2::text is null or a.department_id = $2::text::uuid) \
                 order by a.current_chat_count, a.id limit 1";
            let want: Vec<Agent> = env.json_rows(free_sql, &[&site, &None::<String>]).await;
            let got = chat.agents().available(id(site)).await.expect("available");
            assert_eq!(
                got.as_ref(),
                want.first(),
                "{who}: available agent of {site}"
            );
        }
        assert_eq!(chat.agents().get(Uuid::new_v4()).await.expect("get"), None);

        // In one department: Support of Acme Store holds only bob.
        let got = chat
            .agents()
            .available(id(SITE_1))
            .department(id(DEPT_SUPPORT_1))
            .await
            .expect("available in a department");
        assert_eq!(got.map(|a| a.id), Some(id(AGENT_BOB_1)), "{who}");
    }
    // Seed facts, independent of SQL: carol is away, so Acme Store has three agents online,
    // away or busy; alice and bob both hold one conversation, and alice has the lower id.
    let online = env
        .service
        .agents()
        .online(id(SITE_1))
        .await
        .expect("online");
    assert_eq!(online.len(), 3);
    let free = env
        .service
        .agents()
        .available(id(SITE_1))
        .await
        .expect("available");
    assert_eq!(free.map(|a| a.id), Some(id(AGENT_ALICE_1)));
}

#[tokio::test]
async fn nobody_available_is_none() {
    let env = Env::new().await;
    env.exec(&format!(
        "update public.mod_chat_agents set status = 'away' where site_id = '{SITE_1}'"
    ))
    .await;
    for (who, chat) in env.members() {
        let got = chat
            .agents()
            .available(id(SITE_1))
            .await
            .expect("available");
        assert_eq!(got, None, "{who}");
    }
}

#[tokio::test]
async fn agent_writes_are_what_sql_reads_back_for_the_service_role_and_for_alice() {
    let env = Env::new().await;
    for (who, chat) in env.members() {
        let user = Uuid::new_v4();
        let created = chat
            .agents()
            .create(id(SITE_1), user, "  Grace Mumba ")
            .email("grace@acme.test")
            .role(AgentRole::Supervisor)
            .department(id(DEPT_SUPPORT_1))
            .max_concurrent_chats(4)
            .avatar_url("https://cdn.example/grace.png")
            .await
            .expect("create");
        let row: Vec<Agent> = env
            .json_rows(
                "select to_jsonb(a)::text from public.mod_chat_agents a where a.id = $1::text::uuid",
                &[&created.id.to_string()],
            )
            .await;
        assert_eq!(row, vec![created.clone()], "{who}: created row");
        assert_eq!(created.display_name, "Grace Mumba", "stored trimmed");
        assert_eq!(created.role, AgentRole::Supervisor);
        assert_eq!(created.status, AgentStatus::Offline);
        assert_eq!(created.max_concurrent_chats, Some(4));
        assert_eq!(created.department_id, Some(id(DEPT_SUPPORT_1)));

        // The same user again on the same site: a conflict that says what happened.
        let e = chat
            .agents()
            .create(id(SITE_1), user, "Grace again")
            .await
            .expect_err("a second agent for one user");
        assert_eq!(e.kind(), ErrorKind::Conflict, "{who}: {e}");
        assert!(e.to_string().contains("already an agent"), "{who}: {e}");
        let n = env
            .scalar_i64(
                "select count(*) from public.mod_chat_agents where site_id = $1::text::uuid \
                 and user_id = $2::text::uuid",
                &[&SITE_1, &user.to_string()],
            )
            .await;
        assert_eq!(n, 1, "{who}");

        let updated = chat
            .agents()
            .update(
                created.id,
                AgentPatch::default()
                    .display_name("Grace M.")
                    .role(AgentRole::Admin)
                    .max_concurrent_chats(6)
                    .clear_email()
                    .clear_department_id(),
            )
            .await
            .expect("update");
        let row: Vec<Agent> = env
            .json_rows(
                "select to_jsonb(a)::text from public.mod_chat_agents a where a.id = $1::text::uuid",
                &[&created.id.to_string()],
            )
            .await;
        assert_eq!(row, vec![updated.clone()], "{who}: updated row");
        assert_eq!(updated.display_name, "Grace M.");
        assert_eq!(updated.email, None);
        assert_eq!(updated.department_id, None);
        assert_eq!(updated.max_concurrent_chats, Some(6));

        let before = Utc::now() - Duration::seconds(5);
        let online = chat
            .agents()
            .set_status(created.id, AgentStatus::Busy)
            .await
            .expect("set status");
        let row: Vec<Agent> = env
            .json_rows(
                "select to_jsonb(a)::text from public.mod_chat_agents a where a.id = $1::text::uuid",
                &[&created.id.to_string()],
            )
            .await;
        assert_eq!(row, vec![online.clone()], "{who}: status row");
        assert_eq!(online.status, AgentStatus::Busy);
        assert!(online.last_active_at.expect("last_active_at") > before);

        let missing = chat
            .agents()
            .update(Uuid::new_v4(), AgentPatch::default().is_active(false))
            .await
            .expect_err("updating a missing agent");
        assert_eq!(missing.kind(), ErrorKind::NotFound, "{who}");
        let missing = chat
            .agents()
            .set_status(Uuid::new_v4(), AgentStatus::Online)
            .await
            .expect_err("a missing agent's status");
        assert_eq!(missing.kind(), ErrorKind::NotFound, "{who}");
    }
}

#[tokio::test]
async fn deleting_an_agent_releases_its_open_conversations_in_one_step() {
    let env = Env::new().await;
    for ((who, chat), agent) in env.members().into_iter().zip([AGENT_BOB_1, AGENT_ALICE_1]) {
        let open_before: Vec<String> = env
            .db
            .query(
                "select id::text from public.mod_chat_conversations \
                 where assigned_agent_id = $1::text::uuid and status in ('pending', 'active', 'waiting')",
                &[&agent],
            )
            .await
            .expect("open conversations")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(!open_before.is_empty(), "the seed gives {agent} open work");

        let gone = chat.agents().delete(id(agent)).await.expect("delete");
        let row: Vec<Agent> = env
            .json_rows(
                "select to_jsonb(a)::text from public.mod_chat_agents a where a.id = $1::text::uuid",
                &[&agent],
            )
            .await;
        assert_eq!(row, vec![gone.clone()], "{who}");
        assert_eq!(gone.is_active, Some(false));
        assert_eq!(gone.status, AgentStatus::Offline);
        assert_eq!(gone.current_chat_count, Some(0));
        let still_theirs = env
            .scalar_i64(
                "select count(*) from public.mod_chat_conversations where id::text = any($1) \
                 and (assigned_agent_id is not null or status <> 'pending')",
                &[&open_before],
            )
            .await;
        assert_eq!(
            still_theirs, 0,
            "{who}: released conversations are pending, unassigned"
        );
        env.assert_chat_counts_consistent().await;

        // A deleted agent is neither online nor available, and leaves the performance report.
        let online = chat.agents().online(id(SITE_1)).await.expect("online");
        assert!(online.iter().all(|a| a.id != id(agent)));
        let report = chat
            .agents()
            .performance(id(SITE_1))
            .await
            .expect("performance");
        assert!(report.iter().all(|p| p.agent_id != id(agent)));

        let e = chat
            .agents()
            .delete(Uuid::new_v4())
            .await
            .expect_err("missing agent");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(ChatError::of(&e), Some(ChatError::AgentNotFound));
    }
}

#[tokio::test]
async fn agent_performance_is_one_request_and_matches_sql() {
    let env = Env::new().await;
    let sql = "select jsonb_build_object(
            'agent_id', a.id, 'display_name', a.display_name, 'avatar_url', a.avatar_url,
            'status', a.status, 'department_id', a.department_id,
            'total_chats', count(c.id),
            'resolved_chats', count(c.id) filter (where c.status in ('resolved', 'closed')),
            'avg_first_response_seconds', coalesce(round(avg(c.first_response_time_seconds)), 0),
            'avg_rating', coalesce(round(avg(c.rating), 2), 0),
            'rating_count', count(c.rating),
            'current_load', a.current_chat_count, 'max_load', a.max_concurrent_chats)::text
        from public.mod_chat_agents a
        left join public.mod_chat_conversations c
          on c.assigned_agent_id = a.id and c.site_id = a.site_id
         and ($2::text is null or c.created_at >= $2::text::timestamptz)
         and ($3::text is null or c.created_at <= $3::text::timestamptz)
        where a.site_id = $1::text::uuid and a.is_active
        group by a.id
        order by a.display_name, a.id";
    let from = Utc::now() - Duration::hours(60);
    let to = Utc::now();
    for who in ["service", "alice"] {
        let (chat, proxy) = env.proxied(who).await;
        for site in [SITE_1, SITE_2] {
            let before = proxy.requests().len();
            let all = chat
                .agents()
                .performance(id(site))
                .await
                .expect("performance");
            let sent = proxy.requests()[before..].to_vec();
            assert_eq!(
                sent,
                vec!["POST /rest/v1/rpc/mod_chat_agent_performance".to_string()],
                "{who}: exactly one request (all: {:?})",
                proxy.requests()
            );
            let want: Vec<AgentPerformance> = env
                .json_rows(sql, &[&site, &None::<String>, &None::<String>])
                .await;
            assert_eq!(all, want, "{who}: performance of {site}");

            let before = proxy.requests().len();
            let ranged = chat
                .agents()
                .performance(id(site))
                .from(from)
                .to(to)
                .await
                .expect("performance in a range");
            assert_eq!(proxy.requests().len() - before, 1, "{who}: one request");
            let want: Vec<AgentPerformance> = env
                .json_rows(
                    sql,
                    &[&site, &Some(from.to_rfc3339()), &Some(to.to_rfc3339())],
                )
                .await;
            assert_eq!(ranged, want, "{who}: performance of {site} in a range");
        }
    }
    // Seed facts: alice handled 102 (active, 90 s) and 104 (closed, 120 s); bob 103 (resolved,
    // 60 s, rated 5) and 105 (waiting, 600 s); carol nothing.
    let report = env
        .service
        .agents()
        .performance(id(SITE_1))
        .await
        .expect("report");
    let by_name = |n: &str| {
        report
            .iter()
            .find(|p| p.display_name == n)
            .unwrap_or_else(|| panic!("{n} in the report"))
            .clone()
    };
    let alice = by_name("Alice Anderson");
    assert_eq!((alice.total_chats, alice.resolved_chats), (2, 1));
    assert_eq!(alice.avg_first_response_seconds, 105);
    assert_eq!((alice.avg_rating, alice.rating_count), (0.0, 0));
    assert_eq!((alice.current_load, alice.max_load), (1, 5));
    let bob = by_name("Bob Brown");
    assert_eq!((bob.total_chats, bob.resolved_chats), (2, 1));
    assert_eq!(bob.avg_first_response_seconds, 330);
    assert_eq!((bob.avg_rating, bob.rating_count), (5.0, 1));
    let carol = by_name("Carol Chen");
    assert_eq!(carol.total_chats, 0);
}

// ---------------------------------------------------------------------------------------------
// Departments
// ---------------------------------------------------------------------------------------------

async fn sql_departments(env: &Env, site: &str) -> Vec<(Department, u32)> {
    let rows = env
        .db
        .query(
            "select to_jsonb(d)::text, \
                    (select count(*) from public.mod_chat_agents a \
                      where a.department_id = d.id and a.is_active) \
             from public.mod_chat_departments d where d.site_id = $1::text::uuid \
             order by d.sort_order nulls last, d.name, d.id",
            &[&site],
        )
        .await
        .expect("departments");
    rows.iter()
        .map(|r| {
            let json: String = r.get(0);
            let n: i64 = r.get(1);
            (
                serde_json::from_str(&json).expect("a department row"),
                u32::try_from(n).expect("a count"),
            )
        })
        .collect()
}

#[tokio::test]
async fn departments_list_in_order_with_agent_counts_as_sql_counts_them() {
    let env = Env::new().await;
    // A deactivated agent is not counted.
    env.exec(
        "update public.mod_chat_agents set is_active = false \
              where id = 'e0000000-0000-4000-8000-000000000103'",
    )
    .await;
    for (who, chat) in env.members() {
        for site in [SITE_1, SITE_2] {
            let got: Vec<(Department, u32)> = chat
                .departments()
                .list(id(site))
                .await
                .expect("list")
                .into_iter()
                .map(|d| (d.department, d.agent_count))
                .collect();
            assert_eq!(got, sql_departments(&env, site).await, "{who}: {site}");
        }
    }
    let sales = env
        .service
        .departments()
        .list(id(SITE_1))
        .await
        .expect("list");
    assert_eq!(sales[0].department.id, id(DEPT_SALES_1));
    assert_eq!(sales[0].agent_count, 1, "alice; carol is deactivated");
    assert_eq!(sales[1].agent_count, 1, "bob");
}

#[tokio::test]
async fn department_lifecycle_keeps_one_default_and_moves_agents_for_service_and_alice() {
    let env = Env::new().await;
    for (who, chat) in env.members() {
        let site = env.new_site(&format!("Lifecycle {who}")).await;
        let first = chat
            .departments()
            .create(site, "  General ")
            .description("Everything")
            .await
            .expect("first department");
        assert_eq!(
            first.is_default,
            Some(true),
            "{who}: the first is the default"
        );
        assert_eq!(first.name, "General");
        let second = chat
            .departments()
            .create(site, "Billing")
            .auto_assign(false)
            .max_concurrent_chats(2)
            .sort_order(7)
            .active(true)
            .await
            .expect("second department");
        assert_eq!(second.is_default, Some(false));
        assert_eq!(second.auto_assign, Some(false));
        assert_eq!(
            (second.max_concurrent_chats, second.sort_order),
            (Some(2), Some(7))
        );
        let listed: Vec<(Department, u32)> = chat
            .departments()
            .list(site)
            .await
            .expect("list")
            .into_iter()
            .map(|d| (d.department, d.agent_count))
            .collect();
        assert_eq!(
            listed,
            sql_departments(&env, &site.to_string()).await,
            "{who}"
        );
        assert_eq!(listed.len(), 2);

        let updated = chat
            .departments()
            .update(
                second.id,
                DepartmentPatch::default()
                    .name("Billing & Refunds")
                    .clear_description()
                    .auto_assign(true)
                    .sort_order(1)
                    .max_concurrent_chats(3)
                    .is_active(true),
            )
            .await
            .expect("update");
        let row: Vec<Department> = env
            .json_rows(
                "select to_jsonb(d)::text from public.mod_chat_departments d where d.id = $1::text::uuid",
                &[&second.id.to_string()],
            )
            .await;
        assert_eq!(row, vec![updated.clone()], "{who}");
        assert_eq!(updated.name, "Billing & Refunds");

        let now_default = chat
            .departments()
            .set_default(site, second.id)
            .await
            .expect("set default");
        assert_eq!(now_default.is_default, Some(true));
        let defaults: Vec<String> = env
            .db
            .query(
                "select id::text from public.mod_chat_departments \
                 where site_id = $1::text::uuid and is_default",
                &[&site.to_string()],
            )
            .await
            .expect("defaults")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            defaults,
            vec![second.id.to_string()],
            "{who}: exactly one default"
        );

        // The default cannot go; another department can, and its agents move to the default.
        let e = chat
            .departments()
            .delete(second.id)
            .await
            .expect_err("deleting the default");
        assert_eq!(
            ChatError::of(&e),
            Some(ChatError::DefaultDepartment),
            "{who}: {e}"
        );
        assert_eq!(e.kind(), ErrorKind::Conflict);
        let agent = chat
            .agents()
            .create(site, Uuid::new_v4(), "Mover")
            .department(first.id)
            .await
            .expect("an agent in the department");
        chat.departments().delete(first.id).await.expect("delete");
        let left = env
            .scalar_i64(
                "select count(*) from public.mod_chat_departments where id = $1::text::uuid",
                &[&first.id.to_string()],
            )
            .await;
        assert_eq!(left, 0, "{who}: deleted");
        let moved = chat
            .agents()
            .get(agent.id)
            .await
            .expect("get")
            .expect("the agent");
        assert_eq!(
            moved.agent.department_id,
            Some(second.id),
            "{who}: moved to the default"
        );
        assert_eq!(moved.department.map(|d| d.id), Some(second.id));

        let e = chat
            .departments()
            .delete(Uuid::new_v4())
            .await
            .expect_err("missing");
        assert_eq!(ChatError::of(&e), Some(ChatError::DepartmentNotFound));
        let e = chat
            .departments()
            .set_default(id(SITE_1), second.id)
            .await
            .expect_err("a department of another site");
        assert_eq!(ChatError::of(&e), Some(ChatError::DepartmentNotFound));
        let e = chat
            .departments()
            .update(Uuid::new_v4(), DepartmentPatch::default().sort_order(1))
            .await
            .expect_err("updating a missing department");
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }
}

#[tokio::test]
async fn concurrent_first_departments_of_a_site_make_exactly_one_default() {
    let env = Env::new().await;
    let site = env.new_site("Race").await;
    let chat = &env.alice;
    let created = futures::future::join_all(
        (0..8).map(|i| async move { chat.departments().create(site, format!("D{i}")).await }),
    )
    .await;
    let defaults = created
        .into_iter()
        .map(|r| r.expect("create"))
        .filter(|d| d.is_default == Some(true))
        .count();
    assert_eq!(defaults, 1);
    let n = env
        .scalar_i64(
            "select count(*) from public.mod_chat_departments where site_id = $1::text::uuid and is_default",
            &[&site.to_string()],
        )
        .await;
    assert_eq!(n, 1);
}

// ---------------------------------------------------------------------------------------------
// Isolation and validation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn dave_gets_nothing_of_agency_a_from_any_agent_or_department_action() {
    let env = Env::new().await;
    let before = env.snapshot().await;
    let dave = &env.dave;
    let site = id(SITE_1);
    let agent = id(AGENT_ALICE_1);
    let dept = id(DEPT_SUPPORT_1);

    assert!(dave.agents().list(site).await.expect("list").is_empty());
    assert_eq!(dave.agents().get(agent).await.expect("get"), None);
    let e = dave
        .agents()
        .create(site, id(DAVE.0), "Dave in A")
        .await
        .expect_err("creating an agent in agency A");
    assert!(
        matches!(e.kind(), ErrorKind::Forbidden | ErrorKind::NotFound),
        "{e}"
    );
    let e = dave
        .agents()
        .update(agent, AgentPatch::default().display_name("Hijacked"))
        .await
        .expect_err("update");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = dave
        .agents()
        .set_status(agent, AgentStatus::Offline)
        .await
        .expect_err("status");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = dave.agents().delete(agent).await.expect_err("delete");
    assert_eq!(ChatError::of(&e), Some(ChatError::AgentNotFound));
    assert!(dave
        .agents()
        .performance(site)
        .await
        .expect("performance")
        .is_empty());
    assert!(dave.agents().online(site).await.expect("online").is_empty());
    assert_eq!(
        dave.agents().available(site).await.expect("available"),
        None
    );
    assert_eq!(
        dave.agents()
            .available(site)
            .department(dept)
            .await
            .expect("available"),
        None
    );

    assert!(dave
        .departments()
        .list(site)
        .await
        .expect("list")
        .is_empty());
    let e = dave
        .departments()
        .create(site, "Dave's")
        .await
        .expect_err("creating a department in agency A");
    assert_eq!(ChatError::of(&e), Some(ChatError::SiteNotFound), "{e}");
    let e = dave
        .departments()
        .update(dept, DepartmentPatch::default().name("Hijacked"))
        .await
        .expect_err("update");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = dave.departments().delete(dept).await.expect_err("delete");
    assert_eq!(ChatError::of(&e), Some(ChatError::DepartmentNotFound));
    let e = dave
        .departments()
        .set_default(site, dept)
        .await
        .expect_err("set default");
    assert_eq!(ChatError::of(&e), Some(ChatError::DepartmentNotFound));

    assert_eq!(env.snapshot().await, before, "dave wrote nothing");
}

#[tokio::test]
async fn invalid_agent_and_department_input_is_refused_before_any_request() {
    let env = Env::new().await;
    let before = env.snapshot().await;
    for who in ["service", "alice"] {
        let (chat, proxy) = env.proxied(who).await;
        let site = id(SITE_1);
        let agent = id(AGENT_ALICE_1);
        let user = Uuid::new_v4();
        assert_invalid(
            chat.agents().create(site, user, "").await,
            "empty display name",
        );
        assert_invalid(
            chat.agents().create(site, user, " \n").await,
            "blank display name",
        );
        assert_invalid(
            chat.agents()
                .create(site, user, "Zero")
                .max_concurrent_chats(0)
                .await,
            "capacity 0",
        );
        assert_invalid(
            chat.agents().update(agent, AgentPatch::default()).await,
            "empty patch",
        );
        assert_invalid(
            chat.agents()
                .update(agent, AgentPatch::default().display_name(""))
                .await,
            "empty display name",
        );
        assert_invalid(
            chat.agents()
                .update(agent, AgentPatch::default().max_concurrent_chats(-1))
                .await,
            "negative capacity",
        );
        assert_invalid(
            chat.agents()
                .performance(site)
                .from(Utc::now())
                .to(Utc::now() - Duration::days(1))
                .await,
            "reversed range",
        );
        assert_invalid(chat.departments().create(site, "").await, "empty name");
        assert_invalid(
            chat.departments()
                .create(site, "X")
                .max_concurrent_chats(0)
                .await,
            "capacity 0",
        );
        assert_invalid(
            chat.departments()
                .update(id(DEPT_SALES_1), DepartmentPatch::default())
                .await,
            "empty patch",
        );
        assert_invalid(
            chat.departments()
                .update(id(DEPT_SALES_1), DepartmentPatch::default().name("  "))
                .await,
            "blank name",
        );
        assert_eq!(
            proxy.requests(),
            Vec::<String>::new(),
            "{who}: nothing was sent"
        );
    }
    assert_eq!(env.snapshot().await, before);
}
