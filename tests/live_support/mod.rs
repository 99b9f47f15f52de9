//! Helpers of the live-feed tests: seeded ids, a REST client acting as a seeded user, a
//! realtime client with quick reconnects, direct SQL, and collectors that record every event a
//! feed delivers so the test can wait for conditions with a deadline (never a fixed sleep).
#![allow(dead_code)]

use futures::{Stream, StreamExt};
use livechat::live::Live;
use livechat::realtime::Backoff;
use livechat::{Client, Config};
use livechat_stack::Stack;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

pub const SITE_STORE: &str = "b0000000-0000-4000-8000-000000000001";
pub const CONV_STORE_ACTIVE: &str = "20000000-0000-4000-8000-000000000102";
pub const CONV_STORE_PENDING: &str = "20000000-0000-4000-8000-000000000101";
pub const VISITOR_MIA: &str = "10000000-0000-4000-8000-000000000101";
pub const ALICE: &str = "c0000000-0000-4000-8000-000000000001";
pub const BOB: &str = "c0000000-0000-4000-8000-000000000002";
pub const AGENT_ALICE: &str = "e0000000-0000-4000-8000-000000000101";
pub const AGENT_BOB: &str = "e0000000-0000-4000-8000-000000000102";
pub const AGENT_CAROL: &str = "e0000000-0000-4000-8000-000000000103";

/// Every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(15);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "livechat=info".into()),
        )
        .with_test_writer()
        .try_init();
}

pub fn uuid(s: &str) -> uuid::Uuid {
    s.parse().expect("a uuid literal")
}

/// A REST client acting as a seeded user (row-level security applies).
pub fn user_client(stack: &Stack, user: &str) -> Client {
    Client::new(Config::new(stack.url(), stack.anon_key()).expect("config"))
        .expect("client")
        .with_access_token(stack.user_token(user, None))
}

/// A [`Live`] for `client` whose realtime client reconnects and rejoins quickly.
pub fn live(client: &Client) -> Live {
    let quick = Backoff::new(Duration::from_millis(50), Duration::from_millis(400));
    let realtime = client
        .realtime_options()
        .reconnect_backoff(quick)
        .rejoin_backoff(quick)
        .build()
        .expect("realtime client");
    Live::with_realtime(client, realtime)
}

pub async fn db(stack: &Stack) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(&stack.db_url(), tokio_postgres::NoTls)
        .await
        .expect("database connection");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

/// Records every item of a stream (read by a background task, so the feed is always
/// drained unless the test pauses it).
pub struct Collector<T> {
    items: Arc<Mutex<Vec<T>>>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl<T: Clone + Send + 'static> Collector<T> {
    pub fn start<S>(mut stream: S) -> Self
    where
        S: Stream<Item = T> + Send + Unpin + 'static,
    {
        let items = Arc::new(Mutex::new(Vec::new()));
        let changed = Arc::new(Notify::new());
        let (i, c) = (items.clone(), changed.clone());
        let task = tokio::spawn(async move {
            while let Some(ev) = stream.next().await {
                i.lock().expect("lock").push(ev);
                c.notify_waiters();
            }
        });
        Collector {
            items,
            changed,
            task,
        }
    }

    pub fn items(&self) -> Vec<T> {
        self.items.lock().expect("lock").clone()
    }

    /// Waits until `pred` holds for the items received so far; panics after `within`.
    pub async fn wait_until(&self, what: &str, within: Duration, pred: impl Fn(&[T]) -> bool) {
        if !self.try_wait_until(within, pred).await {
            panic!(
                "{what}: not within {within:?} ({} events received)",
                self.items().len()
            );
        }
    }

    /// Waits until `pred` holds for the items received so far; `false` after `within`.
    pub async fn try_wait_until(&self, within: Duration, pred: impl Fn(&[T]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            if pred(&self.items()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return pred(&self.items());
            }
        }
    }

    pub fn stop(self) {
        self.task.abort();
    }
}
