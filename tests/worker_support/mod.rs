//! Test helpers for the auto-assignment worker: fixtures written with direct SQL on the stack's
//! database, the consistency checks every worker test ends with, and waiting with deadlines.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use livechat::{Client, Config};
use livechat_stack::Stack;
use tokio_postgres::NoTls;
use uuid::Uuid;

/// Generous: the machine has two cores shared by every test.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "livechat=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A service-role client of the stack, with its own connection pool.
pub fn service_client(stack: &Stack) -> Client {
    Client::new(Config::new(stack.url(), stack.service_role_key()).expect("config"))
        .expect("client")
}

/// A superuser connection to the stack's database.
pub async fn connect(db_url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(db_url, NoTls)
        .await
        .expect("database connection");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Waits until `check` says yes, polling; panics with `what` after `deadline`.
pub async fn wait_until<F, Fut>(deadline: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= until {
            panic!("{what}: not within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn uuid(row: &tokio_postgres::Row, i: usize) -> Uuid {
    row.get::<_, String>(i).parse().expect("uuid")
}

/// Fixture builder over one database connection.
pub struct Db {
    pub client: tokio_postgres::Client,
}

impl Db {
    pub async fn new(stack: &Stack) -> Db {
        Db {
            client: connect(&stack.db_url()).await,
        }
    }

    /// A site (in a new agency) with one visitor; returns (site, visitor).
    pub async fn site(&self, name: &str) -> (Uuid, Uuid) {
        let row = self
            .client
            .query_one(
                "with a as (insert into public.agencies (name) values ($1) returning id),
                      s as (insert into public.sites (agency_id, name) select id, $1 from a returning id),
                      v as (insert into public.mod_chat_visitors (site_id, name) select id, 'Visitor' from s returning id, site_id)
                 select site_id::text, id::text from v",
                &[&name],
            )
            .await
            .expect("site");
        (uuid(&row, 0), uuid(&row, 1))
    }

    pub async fn department(&self, site: Uuid, name: &str, auto_assign: Option<bool>) -> Uuid {
        let row = self
            .client
            .query_one(
                "insert into public.mod_chat_departments (site_id, name, auto_assign)
                 values ($1::text::uuid, $2, $3) returning id::text",
                &[&site.to_string(), &name, &auto_assign],
            )
            .await
            .expect("department");
        uuid(&row, 0)
    }

    /// An agent with `load` active conversations already (so the invariant holds).
    #[allow(clippy::too_many_arguments)]
    pub async fn agent(
        &self,
        site: Uuid,
        visitor: Uuid,
        name: &str,
        department: Option<Uuid>,
        status: &str,
        is_active: bool,
        max: Option<i32>,
        load: i32,
    ) -> Uuid {
        let row = self
            .client
            .query_one(
                "insert into public.mod_chat_agents
                   (site_id, user_id, display_name, department_id, status, is_active,
                    max_concurrent_chats, current_chat_count)
                 values ($1::text::uuid, gen_random_uuid(), $2, $3::text::uuid, $4, $5,
                         coalesce($6, 5), $7)
                 returning id::text",
                &[
                    &site.to_string(),
                    &name,
                    &department.map(|d| d.to_string()),
                    &status,
                    &is_active,
                    &max,
                    &load,
                ],
            )
            .await
            .expect("agent");
        let id = uuid(&row, 0);
        if load > 0 {
            self.client
                .execute(
                    "insert into public.mod_chat_conversations
                       (site_id, visitor_id, department_id, assigned_agent_id, status,
                        wait_time_seconds, subject)
                     select $1::text::uuid, $2::text::uuid, $3::text::uuid, $4::text::uuid, 'active',
                            0, 'preloaded'
                     from generate_series(1, $5)",
                    &[
                        &site.to_string(),
                        &visitor.to_string(),
                        &department.map(|d| d.to_string()),
                        &id.to_string(),
                        &load,
                    ],
                )
                .await
                .expect("agent load");
        }
        id
    }

    /// `n` pending, unassigned conversations, created `age_secs` ago, in one statement.
    pub async fn pending(
        &self,
        site: Uuid,
        visitor: Uuid,
        department: Option<Uuid>,
        n: i32,
        age_secs: f64,
    ) -> Vec<Uuid> {
        self.client
            .query(
                "insert into public.mod_chat_conversations (site_id, visitor_id, department_id, status, created_at)
                 select $1::text::uuid, $2::text::uuid, $3::text::uuid, 'pending',
                        now() - make_interval(secs => $5) + make_interval(secs => g * 0.000001)
                 from generate_series(1, $4) g
                 returning id::text",
                &[
                    &site.to_string(),
                    &visitor.to_string(),
                    &department.map(|d| d.to_string()),
                    &n,
                    &age_secs,
                ],
            )
            .await
            .expect("pending conversations")
            .iter()
            .map(|r| uuid(r, 0))
            .collect()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// Conversations that a worker should still assign: pending, unassigned, routed by
    /// auto-assignment, with an online, active agent with a free slot in their pool.
    pub async fn assignable_left(&self) -> i64 {
        self.count(
            "select count(*) from public.mod_chat_conversations c
             where c.status = 'pending' and c.assigned_agent_id is null
               and (c.department_id is null or exists (
                 select 1 from public.mod_chat_departments d
                 where d.id = c.department_id and coalesce(d.auto_assign, true)))
               and exists (
                 select 1 from public.mod_chat_agents a
                 where a.site_id = c.site_id and a.is_active and a.status = 'online'
                   and coalesce(a.current_chat_count, 0) < coalesce(a.max_concurrent_chats, 5)
                   and (c.department_id is null or a.department_id = c.department_id))",
        )
        .await
    }

    pub async fn assigned_count(&self, ids: &[Uuid]) -> i64 {
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        self.client
            .query_one(
                "select count(*) from public.mod_chat_conversations
                 where id::text = any($1) and assigned_agent_id is not null",
                &[&ids],
            )
            .await
            .expect("assigned count")
            .get(0)
    }

    pub async fn agent_of(&self, conversation: Uuid) -> Option<Uuid> {
        self.client
            .query_one(
                "select assigned_agent_id::text from public.mod_chat_conversations where id = $1::text::uuid",
                &[&conversation.to_string()],
            )
            .await
            .expect("conversation")
            .get::<_, Option<String>>(0)
            .map(|s| s.parse().expect("uuid"))
    }

    /// Everything that must hold after any number of workers, whatever happened to them.
    /// Returns the violations (empty: consistent).
    pub async fn violations(&self) -> Vec<String> {
        let checks = [
            (
                "agent count differs from its open conversations (the invariant)",
                "select a.id::text || ': count ' || coalesce(a.current_chat_count, 0) || ', open ' || count(c.id)
                 from public.mod_chat_agents a
                 left join public.mod_chat_conversations c
                   on c.assigned_agent_id = a.id and c.status in ('pending', 'active', 'waiting')
                 group by a.id
                 having coalesce(a.current_chat_count, 0) <> count(c.id)",
            ),
            (
                "agent above max_concurrent_chats",
                "select id::text || ': ' || current_chat_count || '/' || max_concurrent_chats
                 from public.mod_chat_agents
                 where coalesce(current_chat_count, 0) > coalesce(max_concurrent_chats, 5)",
            ),
            (
                "half-assigned conversation (agent without active status, or the reverse)",
                "select id::text || ': ' || status || ' agent ' || coalesce(assigned_agent_id::text, 'none')
                 from public.mod_chat_conversations
                 where (status = 'pending' and assigned_agent_id is not null)
                    or (status = 'active' and assigned_agent_id is null)
                    or (status = 'active' and wait_time_seconds is null)",
            ),
            (
                "assigned outside its department, or to another site's agent",
                "select c.id::text from public.mod_chat_conversations c
                 join public.mod_chat_agents a on a.id = c.assigned_agent_id
                 where a.site_id <> c.site_id
                    or (c.department_id is not null and a.department_id is distinct from c.department_id)",
            ),
        ];
        let mut out = Vec::new();
        for (what, sql) in checks {
            for row in self
                .client
                .query(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
            {
                out.push(format!("{what}: {}", row.get::<_, String>(0)));
            }
        }
        out
    }
}
