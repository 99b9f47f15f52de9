//! Shared setup of the REST integration tests: a fresh seeded local stack per test, a
//! superuser SQL connection to compare against, and clients for the seeded users.
#![allow(dead_code)]

use livechat::{Client, Config};
use livechat_stack::Stack;

pub const AGENCY_A: &str = "a0000000-0000-4000-8000-000000000001";
pub const AGENCY_B: &str = "a0000000-0000-4000-8000-000000000002";
/// Acme Store (agency A).
pub const SITE_1: &str = "b0000000-0000-4000-8000-000000000001";
/// Acme Blog (agency A).
pub const SITE_2: &str = "b0000000-0000-4000-8000-000000000002";
/// Beta Shop (agency B).
pub const SITE_3: &str = "b0000000-0000-4000-8000-000000000003";
pub const ALICE: (&str, &str) = ("c0000000-0000-4000-8000-000000000001", "alice@acme.test");
pub const DAVE: (&str, &str) = ("c0000000-0000-4000-8000-000000000004", "dave@beta.test");
/// Acme Store, active conversation assigned to alice.
pub const CONVERSATION_102: &str = "20000000-0000-4000-8000-000000000102";
pub const CANNED_GREETING_1: &str = "40000000-0000-4000-8000-000000000101";
pub const CANNED_GREETING_3: &str = "40000000-0000-4000-8000-000000000301";

pub struct Env {
    pub stack: Stack,
    pub db: tokio_postgres::Client,
    /// Service role: bypasses RLS.
    pub service: Client,
    /// The anon key alone.
    pub anon: Client,
}

impl Env {
    /// A client acting as a seeded user (anon key + the user's JWT), sharing the anon pool.
    pub fn user(&self, (sub, email): (&str, &str)) -> Client {
        self.anon
            .with_access_token(self.stack.user_token(sub, Some(email)))
    }

    /// Runs SQL as superuser and returns the first column of every row as text.
    pub async fn texts(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Vec<String> {
        self.db
            .query(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect()
    }

    pub async fn count(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> i64 {
        self.db
            .query_one(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get::<_, i64>(0)
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub async fn seeded() -> Env {
    init_tracing();
    let stack = Stack::for_tests_seeded()
        .await
        .expect("starting a seeded test stack");
    let (db, conn) = tokio_postgres::connect(&stack.db_url(), tokio_postgres::NoTls)
        .await
        .expect("connecting to the test database");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let service =
        Client::new(Config::new(stack.url(), stack.service_role_key()).expect("service config"))
            .expect("service client");
    let anon = Client::new(Config::new(stack.url(), stack.anon_key()).expect("anon config"))
        .expect("anon client");
    Env {
        stack,
        db,
        service,
        anon,
    }
}
