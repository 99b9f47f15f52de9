//! `postgres_changes`: capture from the WAL with `wal2json` (polling a logical replication slot
//! with `pg_logical_slot_get_changes`), filters, RLS checks in the database, and fan-out.

use super::filter::{self, Op};
use super::hub::{Hub, PgTarget};
use super::proto::{Msg, Out};
use super::walstream::{Event, WalStream};
use deadpool_postgres::Pool;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio_postgres::{Client, NoTls};

/// The publication whose tables can be subscribed.
pub const PUBLICATION: &str = "supabase_realtime";

/// A change action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Insert,
    Update,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Insert => "INSERT",
            Action::Update => "UPDATE",
            Action::Delete => "DELETE",
        }
    }
}

/// A filter with its values in record form (`to_jsonb` of the value cast to the column type).
#[derive(Clone, Debug)]
pub struct Filter {
    pub column: String,
    pub op: Op,
    pub values: Vec<Value>,
}

/// One table a subscription covers.
#[derive(Clone, Debug)]
pub struct SubTable {
    pub relid: u32,
    pub schema: String,
    pub table: String,
    pub filter: Option<Filter>,
    pub publishes: [bool; 3], // insert, update, delete
}

/// One `postgres_changes` entry of a channel.
#[derive(Clone, Debug)]
pub struct PgSub {
    /// The id echoed in the join reply and sent in `ids`.
    pub id: u32,
    /// `None` = `*`.
    pub event: Option<Action>,
    pub tables: Vec<SubTable>,
}

/// Why a subscription failed.
#[derive(Debug)]
pub enum SubError {
    /// Bad parameters: reported once, not retried.
    Fatal(String),
    /// The database could not be reached: retried.
    Retry(String),
}

/// `:erlang.phash2`-like id: deterministic, non-negative and below 2^27.
pub fn binding_id(params: &Value) -> u32 {
    let s = params.to_string();
    let mut h: u32 = 0x811c9dc5;
    for b in s.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h & ((1 << 27) - 1)
}

/// The replication slot name of a database: unique per database name, valid as a slot name.
pub fn slot_name(db_name: &str) -> String {
    let mut clean: String = db_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    clean.truncate(36);
    let mut h: u32 = 0x811c9dc5;
    for b in db_name.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    format!("livechat_realtime_{clean}_{h:08x}")
}

/// Quotes an identifier.
pub fn qi(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

struct TypeInfo {
    /// `pg_type.typname` (`int4`, `_text`, …) as Supabase reports it.
    name: String,
    /// A SQL type expression usable in a cast.
    sql: String,
}

/// The capture of one database.
pub struct Capture {
    poll_cfg: tokio_postgres::Config,
    pool: Pool,
    pub slot: String,
    hub: Arc<Hub>,
    pub wake: Notify,
    stop: watch::Sender<bool>,
    /// Commit LSN of the last transaction delivered (survives reconnections).
    delivered_up_to: AtomicU64,
    types: Mutex<HashMap<u32, Arc<TypeInfo>>>,
}

/// Opens a plain connection and drives it in the background.
pub async fn connect(cfg: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = cfg.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("realtime: database connection ended: {e}");
        }
    });
    Ok(client)
}

fn raw_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

#[derive(Debug)]
struct WalCol {
    name: String,
    typeoid: u32,
    value: Value,
}

#[derive(Debug)]
struct WalChange {
    /// The (top-level) transaction id, from `include-xids`.
    xid: Option<u32>,
    action: Action,
    schema: String,
    table: String,
    timestamp: String,
    columns: Vec<WalCol>,
    identity: Vec<WalCol>,
    pk: Vec<String>,
}

fn parse_cols(v: Option<&Value>) -> Vec<WalCol> {
    let Some(Value::Array(a)) = v else {
        return Vec::new();
    };
    a.iter()
        .filter_map(|c| {
            Some(WalCol {
                name: c.get("name")?.as_str()?.to_string(),
                typeoid: c.get("typeoid").and_then(Value::as_u64).unwrap_or(0) as u32,
                value: c.get("value").cloned().unwrap_or(Value::Null),
            })
        })
        .collect()
}

fn parse_change(data: &str) -> Option<WalChange> {
    let v: Value = match serde_json::from_str(data) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("realtime: unparsable wal2json output: {e}");
            return None;
        }
    };
    let action = match v.get("action")?.as_str()? {
        "I" => Action::Insert,
        "U" => Action::Update,
        "D" => Action::Delete,
        _ => return None,
    };
    Some(WalChange {
        xid: v
            .get("xid")
            .and_then(Value::as_u64)
            .and_then(|x| u32::try_from(x).ok()),
        action,
        schema: v.get("schema")?.as_str()?.to_string(),
        table: v.get("table")?.as_str()?.to_string(),
        timestamp: v
            .get("timestamp")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        columns: parse_cols(v.get("columns")),
        identity: parse_cols(v.get("identity")),
        pk: match v.get("pk") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_string))
                .collect(),
            _ => Vec::new(),
        },
    })
}

/// A subscription that may receive a change: (target index, subscription id, table).
type Candidate<'a> = (usize, u32, &'a SubTable);

/// A change with its values in record form.
struct Converted {
    /// Column name, type name, record value (new values for INSERT/UPDATE).
    new: Vec<(String, String, Value)>,
    old: Vec<(String, String, Value)>,
    commit_timestamp: Value,
}

const STREAM_OPTIONS: &[(&str, &str)] = &[
    ("format-version", "2"),
    ("include-timestamp", "true"),
    ("include-type-oids", "true"),
    ("include-pk", "true"),
    ("include-transaction", "true"),
    // The xid of each change: RLS checks wait until its transaction is visible to snapshots.
    ("include-xids", "true"),
    ("filter-msg-prefixes", "livechat_realtime_flush"),
];
const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// How long delivery retries database failures (connection, timeout…) before giving up on a
/// batch of changes (with a warning).
const DELIVERY_RETRY_FOR: Duration = Duration::from_secs(10);
/// How long a batch waits for its transactions to become visible to snapshots.
const VISIBILITY_WAIT: Duration = Duration::from_secs(10);
/// Attempts of one RLS check whose failures may pass.
const RLS_ATTEMPTS: u32 = 4;

/// What the database work before delivery produced ([`Capture::prepare`]).
struct Prepared {
    client: deadpool_postgres::Object,
    converted: Vec<Converted>,
    rls: HashMap<u32, bool>,
    visible: HashSet<(String, u32, String)>,
}

/// Why an RLS check could not be made.
enum RlsError {
    /// May pass on retry (connection lost, timeout, resources…).
    Transient(String),
    /// Will not pass (an error raised by a policy, a missing type…).
    Permanent(String),
}

/// A database error with its SQLSTATE and message (tokio-postgres displays only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Whether a database error may pass on retry: connection and I/O errors, and the SQLSTATE
/// classes 08 (connection), 40 (transaction rollback), 53 (insufficient resources),
/// 57 (operator intervention: cancel, statement timeout, shutdown), 58 (system) and 55P03
/// (lock not available).
fn is_transient(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        None => true,
        Some(db) => {
            let code = db.code().code();
            ["08", "40", "53", "57", "58"]
                .iter()
                .any(|c| code.starts_with(c))
                || code == "55P03"
        }
    }
}

impl Capture {
    pub fn new(poll_cfg: tokio_postgres::Config, pool: Pool, slot: String, hub: Arc<Hub>) -> Self {
        Capture {
            poll_cfg,
            pool,
            slot,
            hub,
            wake: Notify::new(),
            stop: watch::channel(false).0,
            delivered_up_to: AtomicU64::new(0),
            types: Mutex::new(HashMap::new()),
        }
    }

    /// Creates the slot. At start (`fresh`), a stale inactive slot of the same name is replaced.
    pub async fn ensure_slot(&self, client: &Client, fresh: bool) -> anyhow::Result<()> {
        let row = client
            .query_opt(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot],
            )
            .await?;
        if let Some(r) = row {
            let active: bool = r.try_get(0).unwrap_or(false);
            if fresh && !active {
                client
                    .execute("SELECT pg_drop_replication_slot($1)", &[&self.slot])
                    .await?;
            } else {
                return Ok(());
            }
        }
        client
            .execute(
                "SELECT pg_create_logical_replication_slot($1, 'wal2json')",
                &[&self.slot],
            )
            .await?;
        tracing::info!("realtime: created replication slot {}", self.slot);
        Ok(())
    }

    /// Asks the capture loop to stop.
    pub fn stop(&self) {
        self.stop.send_replace(true);
        self.wake.notify_one();
    }

    /// Drops the slot (after the loop stopped), retrying while the old backend lets go of it.
    pub async fn drop_slot(&self) {
        let client = match connect(&self.poll_cfg).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("realtime: cannot connect to drop slot {}: {e}", self.slot);
                return;
            }
        };
        for attempt in 0..60 {
            let r = client
                .execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                     WHERE slot_name = $1",
                    &[&self.slot],
                )
                .await;
            match r {
                Ok(_) => {
                    tracing::info!("realtime: dropped replication slot {}", self.slot);
                    return;
                }
                Err(e) => {
                    tracing::debug!("realtime: dropping slot {}: {e}", self.slot);
                    if attempt == 20 {
                        let _ = client
                            .execute(
                                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                                 WHERE slot_name = $1 AND active_pid IS NOT NULL",
                                &[&self.slot],
                            )
                            .await;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        tracing::warn!("realtime: could not drop replication slot {}", self.slot);
    }

    /// The capture loop: streams the slot, reconnecting with backoff when the database goes
    /// away (the slot is kept, so nothing committed meanwhile is lost).
    pub async fn run(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        let mut backoff = Duration::from_millis(50);
        loop {
            if *stop.borrow() {
                break;
            }
            match self.stream_once(&mut stop, &mut backoff).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!("realtime: change capture interrupted (reconnecting): {e}")
                }
            }
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        tracing::debug!("realtime: capture loop stopped");
    }

    /// With asynchronous commits and a slow WAL writer, commits reach the decoder late. While
    /// changes are subscribed, this checks every 10 ms for WAL that is written but not flushed,
    /// and flushes it by committing a tiny transaction (a logical message) synchronously.
    pub async fn flusher(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        let mut client: Option<Client> = None;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            if *stop.borrow() {
                return;
            }
            if !self.hub.has_pg() {
                continue;
            }
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                client = match connect(&self.poll_cfg).await {
                    Ok(c) => match c.batch_execute("SET synchronous_commit = on").await {
                        Ok(()) => Some(c),
                        Err(_) => None,
                    },
                    Err(_) => None,
                };
            }
            let Some(c) = &client else {
                continue;
            };
            let behind = c
                .query_one(
                    "SELECT pg_current_wal_insert_lsn() > pg_current_wal_flush_lsn()",
                    &[],
                )
                .await
                .and_then(|r| r.try_get::<_, bool>(0));
            match behind {
                Ok(true) => {
                    // A commit that wrote WAL is flushed synchronously (an empty one is not).
                    let nudge =
                        "SELECT pg_logical_emit_message(true, 'livechat_realtime_flush', '')";
                    if let Err(e) = c.batch_execute(nudge).await {
                        tracing::debug!("realtime: WAL flush nudge failed: {e}");
                    }
                }
                Ok(false) => {}
                Err(_) => client = None,
            }
        }
    }

    /// One replication session; `Ok` when asked to stop.
    async fn stream_once(
        &self,
        stop: &mut watch::Receiver<bool>,
        backoff: &mut Duration,
    ) -> anyhow::Result<()> {
        {
            let client = connect(&self.poll_cfg).await?;
            self.ensure_slot(&client, false).await?;
        }
        let mut wal = WalStream::connect(&self.poll_cfg).await?;
        wal.start(&self.slot, STREAM_OPTIONS).await?;
        *backoff = Duration::from_millis(50);
        tracing::debug!("realtime: streaming changes from slot {}", self.slot);
        let mut confirmed: u64 = 0;
        let mut in_tx = false;
        // Changes of the transaction being received, delivered at its commit.
        let mut pending: Vec<WalChange> = Vec::new();
        loop {
            let first = tokio::select! {
                _ = stop.changed() => return Ok(()),
                ev = wal.next() => ev?,
            };
            let mut events = vec![first];
            while wal.has_buffered() && events.len() < 10_000 {
                events.push(wal.next().await?);
            }
            let mut batch = Vec::new();
            let mut to_confirm: Option<u64> = None;
            let mut reply = false;
            for ev in events {
                match ev {
                    Event::Data { lsn, data } => {
                        let text = String::from_utf8_lossy(&data);
                        match serde_json::from_str::<Value>(&text)
                            .ok()
                            .as_ref()
                            .and_then(|v| v.get("action"))
                            .and_then(Value::as_str)
                        {
                            Some("B") => {
                                in_tx = true;
                                pending.clear();
                            }
                            Some("C") => {
                                in_tx = false;
                                to_confirm = Some(to_confirm.map_or(lsn, |c| c.max(lsn)));
                                // PostgreSQL 15 does not persist a logical slot's confirmed
                                // position at shutdown, so after a restart transactions already
                                // delivered may be sent again: skip them.
                                let done = self.delivered_up_to.load(Ordering::SeqCst);
                                if lsn > done {
                                    self.delivered_up_to.store(lsn, Ordering::SeqCst);
                                    batch.append(&mut pending);
                                } else {
                                    tracing::debug!("realtime: skipping replayed transaction");
                                    pending.clear();
                                }
                            }
                            _ => {
                                if let Some(ch) = parse_change(&text) {
                                    pending.push(ch);
                                }
                            }
                        }
                    }
                    Event::Keepalive { wal_end, reply: r } => {
                        reply |= r;
                        if !in_tx {
                            to_confirm = Some(to_confirm.map_or(wal_end, |c| c.max(wal_end)));
                        }
                    }
                }
            }
            if !batch.is_empty() {
                self.dispatch(batch).await;
            }
            match to_confirm {
                Some(l) if l > confirmed => {
                    confirmed = l;
                    wal.confirm(l).await?;
                }
                _ if reply && confirmed > 0 => wal.confirm(confirmed).await?,
                _ => {}
            }
        }
    }

    async fn type_infos(
        &self,
        client: &Client,
        oids: &HashSet<u32>,
    ) -> Result<HashMap<u32, Arc<TypeInfo>>, tokio_postgres::Error> {
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = self.types.lock().unwrap_or_else(|e| e.into_inner());
            for o in oids {
                match cache.get(o) {
                    Some(t) => {
                        out.insert(*o, t.clone());
                    }
                    None => missing.push(*o),
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let rows = client
            .query(
                "SELECT oid, typname::text, format_type(oid, NULL) FROM pg_type WHERE oid = ANY($1)",
                &[&missing],
            )
            .await?;
        let mut cache = self.types.lock().unwrap_or_else(|e| e.into_inner());
        for r in rows {
            let (Ok(oid), Ok(name), Ok(sql)) = (
                r.try_get::<_, u32>(0),
                r.try_get::<_, String>(1),
                r.try_get::<_, String>(2),
            ) else {
                continue;
            };
            let t = Arc::new(TypeInfo { name, sql });
            cache.insert(oid, t.clone());
            out.insert(oid, t);
        }
        Ok(out)
    }

    /// Converts the values of the changes to their JSON record form with `to_jsonb` in the
    /// database (as Supabase does), and commit timestamps to `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    /// A failure that may pass (connection, timeout…) is an error, for the caller to retry;
    /// a value the database rejects keeps its wal2json form (logged).
    async fn convert(
        &self,
        client: &Client,
        changes: &[&WalChange],
    ) -> Result<Vec<Converted>, String> {
        let oids: HashSet<u32> = changes
            .iter()
            .flat_map(|c| c.columns.iter().chain(c.identity.iter()))
            .map(|c| c.typeoid)
            .collect();
        let types = self
            .type_infos(client, &oids)
            .await
            .map_err(|e| format!("type lookup failed: {}", describe(&e)))?;
        let type_name = |oid: u32| {
            types
                .get(&oid)
                .map(|t| t.name.clone())
                .unwrap_or_else(|| "unknown".into())
        };
        // One parameter per value (NULLs and unknown types are not sent); `Some(type)` for a
        // column value, `None` for a commit timestamp.
        let mut exprs: Vec<Option<String>> = Vec::new();
        let mut params: Vec<String> = Vec::new();
        // For each change: (new slots, old slots, ts slot) as indexes into the result array,
        // or the raw value when no conversion is possible.
        enum Slot {
            At(usize),
            Raw(Value),
        }
        let mut plan: Vec<(Vec<Slot>, Vec<Slot>, Slot)> = Vec::new();
        let push_col = |c: &WalCol, exprs: &mut Vec<Option<String>>, params: &mut Vec<String>| {
            let Some(text) = raw_text(&c.value) else {
                return Slot::Raw(Value::Null);
            };
            let Some(t) = types.get(&c.typeoid) else {
                return Slot::Raw(c.value.clone());
            };
            params.push(text);
            exprs.push(Some(t.sql.clone()));
            Slot::At(exprs.len() - 1)
        };
        for ch in changes {
            let new = ch
                .columns
                .iter()
                .map(|c| push_col(c, &mut exprs, &mut params))
                .collect();
            let old = ch
                .identity
                .iter()
                .map(|c| push_col(c, &mut exprs, &mut params))
                .collect();
            let ts = if ch.timestamp.is_empty() {
                Slot::Raw(Value::Null)
            } else {
                params.push(ch.timestamp.clone());
                exprs.push(None);
                Slot::At(exprs.len() - 1)
            };
            plan.push((new, old, ts));
        }
        let mut results: Vec<Option<Value>> = vec![None; exprs.len()];
        // Chunks keep the statements a reasonable size.
        let mut start = 0;
        while start < exprs.len() {
            let end = (start + 500).min(exprs.len());
            let chunk_exprs: Vec<String> = (start..end)
                .map(|i| {
                    let n = i - start + 1;
                    match &exprs[i] {
                        Some(ty) => format!("to_jsonb(${n}::text::{ty})"),
                        None => format!(
                            "to_jsonb(to_char(${n}::text::timestamptz AT TIME ZONE 'utc', \
                             'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))"
                        ),
                    }
                })
                .collect();
            let sql = format!("SELECT ARRAY[{}]::jsonb[]", chunk_exprs.join(", "));
            let chunk_params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params[start..end]
                .iter()
                .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            match client.query_one(&sql, &chunk_params).await {
                Ok(row) => {
                    if let Ok(vals) = row.try_get::<_, Vec<Value>>(0) {
                        for (i, v) in vals.into_iter().enumerate() {
                            if let Some(slot) = results.get_mut(start + i) {
                                *slot = Some(v);
                            }
                        }
                    }
                }
                Err(e) if is_transient(&e) => {
                    return Err(format!("value conversion failed: {}", describe(&e)))
                }
                Err(e) => tracing::warn!(
                    "realtime: value conversion failed, values sent as decoded: {}",
                    describe(&e)
                ),
            }
            start = end;
        }
        let resolve = |s: &Slot, fallback: &Value| match s {
            Slot::At(i) => results
                .get(*i)
                .cloned()
                .flatten()
                .unwrap_or_else(|| fallback.clone()),
            Slot::Raw(v) => v.clone(),
        };
        Ok(changes
            .iter()
            .zip(plan.iter())
            .map(|(ch, (new, old, ts))| Converted {
                new: ch
                    .columns
                    .iter()
                    .zip(new.iter())
                    .map(|(c, s)| (c.name.clone(), type_name(c.typeoid), resolve(s, &c.value)))
                    .collect(),
                old: ch
                    .identity
                    .iter()
                    .zip(old.iter())
                    .map(|(c, s)| (c.name.clone(), type_name(c.typeoid), resolve(s, &c.value)))
                    .collect(),
                commit_timestamp: resolve(ts, &Value::Null),
            })
            .collect())
    }

    /// Sleeps `d` unless the capture is asked to stop; false when stopping.
    async fn pause(&self, d: Duration) -> bool {
        let mut stop = self.stop.subscribe();
        if *stop.borrow_and_update() {
            return false;
        }
        tokio::select! {
            _ = stop.changed() => false,
            _ = tokio::time::sleep(d) => !*self.stop.borrow(),
        }
    }

    /// Waits until the transactions `xids` are visible to new snapshots.
    ///
    /// A commit reaches the WAL (and so the decoder) before the committing backend removes its
    /// transaction from the proc array: in between, the change is streamed here but a snapshot
    /// still sees the transaction as running. An RLS check run then would not find an inserted
    /// row (the change would be dropped for a subscriber who may see it) or would judge an
    /// updated row on its old version. The window is microseconds on an idle machine but
    /// grows to many milliseconds when the committing backend is descheduled (CPU load), and
    /// indefinitely while it waits for synchronous replication.
    ///
    /// Returns `Err` on a database error; `Ok(false)` when still not visible at the deadline.
    async fn wait_visible(
        &self,
        client: &Client,
        xids: &[u32],
    ) -> Result<bool, tokio_postgres::Error> {
        if xids.is_empty() {
            return Ok(true);
        }
        // Visible to the statement's snapshot = precedes its xmax (modulo 2^32, as the xids
        // here are 32-bit) and is not in its list of running transactions.
        const SQL: &str = "WITH s AS (SELECT pg_current_snapshot() AS snap) \
             SELECT x FROM s, unnest($1::int8[]) AS x \
             WHERE ((pg_snapshot_xmax(s.snap)::text::int8 - x) & 4294967295) \
                   NOT BETWEEN 1 AND 2147483647 \
                OR x IN (SELECT xip::text::int8 & 4294967295 FROM pg_snapshot_xip(s.snap) AS xip)";
        let mut pending: Vec<i64> = xids.iter().map(|x| i64::from(*x)).collect();
        pending.sort_unstable();
        pending.dedup();
        let started = Instant::now();
        let mut backoff = Duration::from_millis(1);
        let mut first_unseen: Option<Vec<i64>> = None;
        loop {
            let rows = client.query(SQL, &[&pending]).await?;
            pending = rows
                .iter()
                .filter_map(|r| r.try_get::<_, i64>(0).ok())
                .collect();
            if pending.is_empty() {
                if let Some(x) = first_unseen {
                    tracing::debug!(
                        "realtime: transaction(s) {x:?} were decoded before being visible to \
                         snapshots; waited {:?}",
                        started.elapsed()
                    );
                }
                return Ok(true);
            }
            if first_unseen.is_none() {
                first_unseen = Some(pending.clone());
            }
            if started.elapsed() >= VISIBILITY_WAIT || !self.pause(backoff).await {
                tracing::warn!(
                    "realtime: transaction(s) {pending:?} committed in the WAL are still not \
                     visible to snapshots after {:?}; checking RLS anyway",
                    started.elapsed()
                );
                return Ok(false);
            }
            backoff = (backoff * 2).min(Duration::from_millis(50));
        }
    }

    /// What delivery needs from the database before the per-subscriber checks: the converted
    /// values, the tables' RLS flags, per-role column visibility, and the transactions of the
    /// changes to RLS-check visible to snapshots.
    async fn prepare(
        &self,
        work: &[(&WalChange, Vec<Candidate<'_>>)],
        targets: &[PgTarget],
    ) -> Result<Prepared, String> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| format!("no database connection: {e}"))?;
        let chs: Vec<&WalChange> = work.iter().map(|(c, _)| *c).collect();
        let converted = self.convert(&client, &chs).await?;
        let relids: Vec<u32> = work
            .iter()
            .flat_map(|(_, c)| c.iter().map(|(_, _, st)| st.relid))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let roles: Vec<String> = targets
            .iter()
            .map(|t| t.role.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut rls: HashMap<u32, bool> = HashMap::new();
        let mut visible: HashSet<(String, u32, String)> = HashSet::new();
        let meta = async {
            let rows = client
                .query(
                    "SELECT oid, relrowsecurity FROM pg_class WHERE oid = ANY($1)",
                    &[&relids],
                )
                .await?;
            for r in rows {
                rls.insert(r.try_get(0)?, r.try_get(1)?);
            }
            let rows = client
                .query(
                    "SELECT r.rolname::text, a.attrelid, a.attname::text \
                     FROM pg_roles r JOIN pg_attribute a ON a.attrelid = ANY($2) \
                     WHERE r.rolname = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
                       AND has_column_privilege(r.oid, a.attrelid, a.attnum, 'SELECT')",
                    &[&roles, &relids],
                )
                .await?;
            for r in rows {
                visible.insert((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
            }
            Ok::<(), tokio_postgres::Error>(())
        };
        meta.await
            .map_err(|e| format!("privilege lookup failed: {}", describe(&e)))?;
        // Transactions whose changes will be RLS-checked must be visible first.
        let xids: Vec<u32> = work
            .iter()
            .filter(|(ch, cands)| {
                ch.action != Action::Delete
                    && cands
                        .iter()
                        .any(|(_, _, st)| rls.get(&st.relid).copied().unwrap_or(false))
            })
            .filter_map(|(ch, _)| ch.xid)
            .collect();
        self.wait_visible(&client, &xids)
            .await
            .map_err(|e| format!("transaction visibility check failed: {}", describe(&e)))?;
        Ok(Prepared {
            client,
            converted,
            rls,
            visible,
        })
    }

    /// Matches changes against the subscriptions and delivers them. Database failures are
    /// retried; what cannot be delivered in the end is logged, never dropped silently.
    async fn dispatch(&self, changes: Vec<WalChange>) {
        let targets = self.hub.pg_targets();
        if targets.is_empty() {
            return;
        }
        // Candidate (target, subscription, table) triples per change, before filters.
        let mut work: Vec<(&WalChange, Vec<Candidate>)> = Vec::new();
        for ch in &changes {
            let idx = match ch.action {
                Action::Insert => 0,
                Action::Update => 1,
                Action::Delete => 2,
            };
            let mut cands = Vec::new();
            for (ti, t) in targets.iter().enumerate() {
                for sub in t.subs.iter() {
                    if sub.event.is_some_and(|e| e != ch.action) {
                        continue;
                    }
                    if let Some(st) = sub
                        .tables
                        .iter()
                        .find(|st| st.schema == ch.schema && st.table == ch.table)
                    {
                        if st.publishes[idx] {
                            cands.push((ti, sub.id, st));
                        }
                    }
                }
            }
            if !cands.is_empty() {
                work.push((ch, cands));
            }
        }
        if work.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut backoff = Duration::from_millis(20);
        let Prepared {
            mut client,
            converted,
            rls,
            visible,
        } = loop {
            match self.prepare(&work, &targets).await {
                Ok(p) => break p,
                Err(reason) => {
                    if started.elapsed() >= DELIVERY_RETRY_FOR || !self.pause(backoff).await {
                        tracing::warn!(
                            "realtime: {} change(s) not delivered: {reason} (gave up after {:?})",
                            work.len(),
                            started.elapsed()
                        );
                        return;
                    }
                    tracing::warn!("realtime: delivering changes failed, retrying: {reason}");
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        };

        for ((ch, cands), conv) in work.iter().zip(converted.iter()) {
            let record: Map<String, Value> = {
                let mut m: Map<String, Value> = conv
                    .new
                    .iter()
                    .map(|(n, _, v)| (n.clone(), v.clone()))
                    .collect();
                // Unchanged TOASTed values are missing from the new tuple: take the old ones.
                for (n, _, v) in &conv.old {
                    m.entry(n.clone()).or_insert_with(|| v.clone());
                }
                m
            };
            let mut old_record: Map<String, Value> = conv
                .old
                .iter()
                .map(|(n, _, v)| (n.clone(), v.clone()))
                .collect();
            if old_record.is_empty() && ch.action == Action::Update {
                for k in &ch.pk {
                    if let Some(v) = record.get(k) {
                        old_record.insert(k.clone(), v.clone());
                    }
                }
            }
            let filter_source = if ch.action == Action::Delete {
                &old_record
            } else {
                &record
            };
            // Matching subscription ids per target.
            let mut per_target: Vec<(usize, Vec<u32>)> = Vec::new();
            for (ti, id, st) in cands {
                let ok = match &st.filter {
                    None => true,
                    Some(f) => filter::matches(f.op, &f.values, filter_source.get(&f.column)),
                };
                if !ok {
                    continue;
                }
                match per_target.iter_mut().find(|(t, _)| t == ti) {
                    Some((_, ids)) => {
                        if !ids.contains(id) {
                            ids.push(*id)
                        }
                    }
                    None => per_target.push((*ti, vec![*id])),
                }
            }
            if per_target.is_empty() {
                continue;
            }
            let relid = cands.first().map(|(_, _, st)| st.relid).unwrap_or(0);
            let rls_on = rls.get(&relid).copied().unwrap_or(false);
            let mut rls_cache: HashMap<(String, String), bool> = HashMap::new();
            for (ti, ids) in per_target {
                let t = &targets[ti];
                let can = |col: &str| visible.contains(&(t.role.clone(), relid, col.to_string()));
                let mut errors: Option<Vec<String>> = None;
                if rls_on && ch.action != Action::Delete {
                    if ch.pk.is_empty() {
                        errors = Some(vec!["Error 400: Bad Request, no primary key".into()]);
                    } else if !ch.pk.iter().all(|k| can(k)) {
                        errors = Some(vec!["Error 401: Unauthorized".into()]);
                    } else {
                        let claims_json = Value::Object((*t.claims).clone()).to_string();
                        let key = (t.role.clone(), claims_json.clone());
                        let ok = match rls_cache.get(&key) {
                            Some(v) => *v,
                            None => {
                                let v = self
                                    .rls_visible_retrying(&mut client, t, ch, &claims_json)
                                    .await;
                                rls_cache.insert(key, v);
                                v
                            }
                        };
                        if !ok {
                            tracing::debug!(
                                "realtime: {} on {}.{} (xid {:?}) not visible to {} ({}): not sent",
                                ch.action.as_str(),
                                ch.schema,
                                ch.table,
                                ch.xid,
                                t.topic,
                                t.role
                            );
                            continue;
                        }
                    }
                }
                let data = if let Some(errs) = errors {
                    let mut d = Map::new();
                    d.insert("schema".into(), json!(ch.schema));
                    d.insert("table".into(), json!(ch.table));
                    d.insert("commit_timestamp".into(), Value::Null);
                    d.insert("type".into(), json!(ch.action.as_str()));
                    d.insert("columns".into(), json!([]));
                    if ch.action != Action::Delete {
                        d.insert("record".into(), json!({}));
                    }
                    if ch.action != Action::Insert {
                        d.insert("old_record".into(), json!({}));
                    }
                    d.insert("errors".into(), json!(errs));
                    Value::Object(d)
                } else {
                    build_data(ch, conv, &record, &old_record, rls_on, &can)
                };
                let msg = Msg::new(
                    Value::Null,
                    Value::Null,
                    &t.topic,
                    "postgres_changes",
                    json!({"ids": ids, "data": data}),
                );
                let sent = t.tx.send(Out::Json(Arc::new(msg))).is_ok();
                tracing::debug!(
                    "realtime: {} on {}.{} (xid {:?}) to {} ({}): {}",
                    ch.action.as_str(),
                    ch.schema,
                    ch.table,
                    ch.xid,
                    t.topic,
                    t.role,
                    if sent { "sent" } else { "socket gone" }
                );
            }
        }
    }

    /// [`Self::rls_visible`] with retries of transient failures (on a fresh connection).
    /// Fails closed: a check that cannot be made means the change is not sent, with a warning.
    async fn rls_visible_retrying(
        &self,
        client: &mut deadpool_postgres::Object,
        t: &PgTarget,
        ch: &WalChange,
        claims_json: &str,
    ) -> bool {
        let mut backoff = Duration::from_millis(20);
        let mut attempt = 1;
        loop {
            let reason = match self.rls_visible(client, t, ch, claims_json).await {
                Ok(v) => return v,
                Err(RlsError::Permanent(reason)) => {
                    tracing::warn!(
                        "realtime: {} on {}.{} not sent to {} (role {}): RLS check failed: {reason}",
                        ch.action.as_str(),
                        ch.schema,
                        ch.table,
                        t.topic,
                        t.role
                    );
                    return false;
                }
                Err(RlsError::Transient(reason)) => reason,
            };
            if attempt >= RLS_ATTEMPTS || !self.pause(backoff).await {
                tracing::warn!(
                    "realtime: {} on {}.{} not sent to {} (role {}): RLS check failed \
                     {attempt} time(s): {reason}",
                    ch.action.as_str(),
                    ch.schema,
                    ch.table,
                    t.topic,
                    t.role
                );
                return false;
            }
            tracing::warn!(
                "realtime: RLS check of {} on {}.{} for {} failed, retrying: {reason}",
                ch.action.as_str(),
                ch.schema,
                ch.table,
                t.topic
            );
            attempt += 1;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            if client.is_closed() {
                match self.pool.get().await {
                    Ok(c) => *client = c,
                    Err(e) => {
                        tracing::warn!("realtime: no database connection for RLS checks: {e}")
                    }
                }
            }
        }
    }

    /// Whether the subscriber's role and claims can SELECT the row (RLS), checked in a
    /// transaction that is rolled back.
    async fn rls_visible(
        &self,
        client: &deadpool_postgres::Object,
        t: &PgTarget,
        ch: &WalChange,
        claims_json: &str,
    ) -> Result<bool, RlsError> {
        let types: HashMap<String, u32> = ch
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.typeoid))
            .collect();
        let type_sql = {
            let cache = self.types.lock().unwrap_or_else(|e| e.into_inner());
            ch.pk
                .iter()
                .map(|k| {
                    types
                        .get(k)
                        .and_then(|o| cache.get(o))
                        .map(|ti| ti.sql.clone())
                        .ok_or_else(|| k.clone())
                })
                .collect::<Result<Vec<String>, String>>()
        };
        let type_sql = type_sql.map_err(|k| {
            RlsError::Permanent(format!("no type information for primary key column {k:?}"))
        })?;
        let mut params: Vec<Option<String>> = Vec::new();
        let mut conds = Vec::new();
        for (k, ty) in ch.pk.iter().zip(type_sql.iter()) {
            let v = ch
                .columns
                .iter()
                .find(|c| &c.name == k)
                .and_then(|c| raw_text(&c.value));
            params.push(v);
            conds.push(format!("{} = ${}::text::{}", qi(k), params.len(), ty));
        }
        let sql = format!(
            "SELECT 1 FROM {}.{} WHERE {} LIMIT 1",
            qi(&ch.schema),
            qi(&ch.table),
            conds.join(" AND ")
        );
        let p: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|x| x as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let res = async {
            client.batch_execute("BEGIN READ ONLY").await?;
            client
                .execute(
                    "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)",
                    &[&t.role, &claims_json],
                )
                .await?;
            let rows = client.query(&sql, &p).await?;
            Ok::<bool, tokio_postgres::Error>(!rows.is_empty())
        }
        .await;
        if let Err(e) = client.batch_execute("ROLLBACK").await {
            tracing::warn!(
                "realtime: rollback after RLS check failed: {}",
                describe(&e)
            );
        }
        res.map_err(|e| {
            if is_transient(&e) {
                RlsError::Transient(describe(&e))
            } else {
                RlsError::Permanent(describe(&e))
            }
        })
    }

    /// Validates a channel's `postgres_changes` entries and resolves them to published tables.
    pub async fn subscribe(&self, params: &[Value], role: &str) -> Result<Vec<PgSub>, SubError> {
        let client = self.pool.get().await.map_err(|e| {
            SubError::Retry(format!(
                "Realtime was unable to connect to the project database: {e}"
            ))
        })?;
        let retry = |e: tokio_postgres::Error| SubError::Retry(e.to_string());
        let published = client
            .query(
                "SELECT pt.schemaname::text, pt.tablename::text, \
                        format('%I.%I', pt.schemaname, pt.tablename)::regclass::oid, \
                        p.pubinsert, p.pubupdate, p.pubdelete \
                 FROM pg_publication_tables pt JOIN pg_publication p ON p.pubname = pt.pubname \
                 WHERE pt.pubname = $1",
                &[&PUBLICATION],
            )
            .await
            .map_err(retry)?;
        let role_ok = client
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .await
            .map_err(retry)?
            .is_some();
        let mut subs = Vec::new();
        for p in params {
            let obj = p.as_object();
            let get = |k: &str| obj.and_then(|o| o.get(k)).and_then(Value::as_str);
            let event_raw = get("event").unwrap_or("*");
            let event = match event_raw.to_ascii_uppercase().as_str() {
                "INSERT" => Some(Action::Insert),
                "UPDATE" => Some(Action::Update),
                "DELETE" => Some(Action::Delete),
                _ => None,
            };
            let schema = get("schema").unwrap_or("public");
            let table = get("table").unwrap_or("*");
            let filter_text = get("filter").filter(|f| !f.is_empty());
            let raw = match filter_text.map(filter::parse).transpose() {
                Ok(r) => r,
                Err(e) => return Err(SubError::Fatal(e)),
            };
            let describe = || {
                let filters = match &raw {
                    None => String::new(),
                    Some(f) => f
                        .values
                        .iter()
                        .map(|v| format!("{{\"{}\", \"{}\", \"{}\"}}", f.column, f.op.as_str(), v))
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                format!(
                    "[event: {}, schema: {schema}, table: {table}, filters: [{filters}], select: nil]",
                    event.map(|a| a.as_str()).unwrap_or("*")
                )
            };
            let exception = |detail: String| {
                SubError::Fatal(format!(
                    "Unable to subscribe to changes with given parameters. An exception happened so \
                     please check your connect parameters: {}. Exception: {detail}",
                    describe()
                ))
            };
            if !role_ok {
                return Err(exception(format!(
                    "ERROR 22023 (invalid_parameter_value) role \"{role}\" does not exist"
                )));
            }
            let mut tables = Vec::new();
            for r in &published {
                let (Ok(s), Ok(t), Ok(oid), Ok(i), Ok(u), Ok(d)) = (
                    r.try_get::<_, String>(0),
                    r.try_get::<_, String>(1),
                    r.try_get::<_, u32>(2),
                    r.try_get::<_, bool>(3),
                    r.try_get::<_, bool>(4),
                    r.try_get::<_, bool>(5),
                ) else {
                    continue;
                };
                if (schema == "*" || schema == s) && (table == "*" || table == t) {
                    tables.push(SubTable {
                        relid: oid,
                        schema: s,
                        table: t,
                        filter: None,
                        publishes: [i, u, d],
                    });
                }
            }
            if tables.is_empty() {
                return Err(SubError::Fatal(format!(
                    "Unable to subscribe to changes with given parameters. Please check Realtime is \
                     enabled for the given connect parameters: {}",
                    describe()
                )));
            }
            if let Some(f) = &raw {
                for st in tables.iter_mut() {
                    let col = client
                        .query_opt(
                            "SELECT format_type(a.atttypid, NULL), \
                                    has_column_privilege($3::text, a.attrelid, a.attnum, 'SELECT') \
                             FROM pg_attribute a \
                             WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 \
                               AND NOT a.attisdropped",
                            &[&st.relid, &f.column, &role],
                        )
                        .await
                        .map_err(retry)?;
                    let ty = match col {
                        Some(r) if r.try_get::<_, bool>(1).unwrap_or(false) => {
                            r.try_get::<_, String>(0).unwrap_or_default()
                        }
                        _ => {
                            return Err(exception(format!(
                                "ERROR P0001 (raise_exception) invalid column for filter {}",
                                f.column
                            )));
                        }
                    };
                    let mut values = Vec::new();
                    for v in &f.values {
                        let sql = format!("SELECT to_jsonb($1::text::{ty})");
                        match client.query_one(&sql, &[v]).await {
                            Ok(row) => {
                                values.push(row.try_get::<_, Value>(0).unwrap_or(Value::Null))
                            }
                            Err(e) => {
                                let detail = match e.as_db_error() {
                                    Some(db) => format!(
                                        "ERROR {} ({:?}) {}",
                                        db.code().code(),
                                        db.code(),
                                        db.message()
                                    ),
                                    None => return Err(retry(e)),
                                };
                                return Err(exception(detail));
                            }
                        }
                    }
                    st.filter = Some(Filter {
                        column: f.column.clone(),
                        op: f.op,
                        values,
                    });
                }
            }
            subs.push(PgSub {
                id: binding_id(p),
                event,
                tables,
            });
        }
        Ok(subs)
    }
}

fn build_data(
    ch: &WalChange,
    conv: &Converted,
    record: &Map<String, Value>,
    old_record: &Map<String, Value>,
    rls_on: bool,
    can: &dyn Fn(&str) -> bool,
) -> Value {
    let cols_src = if ch.action == Action::Delete {
        &conv.old
    } else {
        &conv.new
    };
    let columns: Vec<Value> = cols_src
        .iter()
        .filter(|(n, _, _)| can(n))
        .map(|(n, t, _)| json!({"name": n, "type": t}))
        .collect();
    let keep = |m: &Map<String, Value>, pk_only: bool| -> Map<String, Value> {
        m.iter()
            .filter(|(k, _)| can(k) && (!pk_only || ch.pk.contains(k)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let mut errors: Option<Vec<String>> = None;
    let mut rec = keep(record, false);
    let mut old = keep(old_record, ch.action == Action::Delete && rls_on);
    let size =
        Value::Object(rec.clone()).to_string().len() + Value::Object(old.clone()).to_string().len();
    if size > MAX_RECORD_BYTES {
        let small = |m: &mut Map<String, Value>| m.retain(|_, v| v.to_string().len() <= 64);
        small(&mut rec);
        small(&mut old);
        errors = Some(vec!["Error 413: Payload Too Large".into()]);
    }
    let mut d = Map::new();
    d.insert("schema".into(), json!(ch.schema));
    d.insert("table".into(), json!(ch.table));
    d.insert("commit_timestamp".into(), conv.commit_timestamp.clone());
    d.insert("type".into(), json!(ch.action.as_str()));
    d.insert("columns".into(), Value::Array(columns));
    if ch.action != Action::Delete {
        d.insert("record".into(), Value::Object(rec));
    }
    if ch.action != Action::Insert {
        d.insert("old_record".into(), Value::Object(old));
    }
    d.insert("errors".into(), json!(errors));
    Value::Object(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_are_valid_and_unique() {
        let a = slot_name("Test-DB.1");
        let b = slot_name("test_db_1");
        assert_ne!(a, b);
        assert!(a.len() <= 63);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'));
        let long = slot_name(&"x".repeat(200));
        assert!(long.len() <= 63);
    }

    #[test]
    fn binding_ids_are_deterministic() {
        let p = json!({"event":"INSERT","schema":"public"});
        assert_eq!(binding_id(&p), binding_id(&p.clone()));
        assert!(binding_id(&p) < (1 << 27));
        assert_ne!(
            binding_id(&p),
            binding_id(&json!({"event":"DELETE","schema":"public"}))
        );
    }

    #[test]
    fn parses_wal2json_v2() {
        let c = parse_change(r#"{"action":"U","timestamp":"2026-01-01 00:00:00.5+00","schema":"public","table":"t","columns":[{"name":"id","type":"integer","typeoid":23,"value":1}],"identity":[{"name":"id","type":"integer","typeoid":23,"value":1}],"pk":[{"name":"id","type":"integer","typeoid":23}]}"#).unwrap();
        assert_eq!(c.action, Action::Update);
        assert_eq!(c.columns.len(), 1);
        assert_eq!(c.identity[0].typeoid, 23);
        assert_eq!(c.pk, vec!["id".to_string()]);
        assert!(parse_change(r#"{"action":"B"}"#).is_none());
        assert!(parse_change("garbage").is_none());
    }
}
