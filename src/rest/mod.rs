//! Typed PostgREST access on top of the [`postgrest`] crate.
//!
//! [`Client::from`](crate::Client::from) and [`Client::rpc`](crate::Client::rpc) start a
//! [`Query`]. The `postgrest` crate builds the request (path, `select`, the common filters,
//! schema headers, method and body); this module adds what it lacks, on the request it builds:
//!
//! * both the `apikey` and `Authorization: Bearer` headers, the token resolved per request;
//! * one combined `Prefer` header (`return`, `count`, `resolution`, `missing`, extras), where
//!   the crate would overwrite one value with the next;
//! * `limit` / `offset` as query parameters, which work for every method (the crate uses a
//!   `Range` header, ignored by PostgREST outside GET, and panics on `limit(0)`);
//! * totals parsed from `Content-Range` ([`Page`], [`Query::count_rows`]);
//! * single and maybe-single results, RPC with typed arguments and results, serde decoding of
//!   rows;
//! * PostgREST's error body kept in a typed [`Error`];
//! * literal-safe encoding of every user value ([`encode`]), including operators the crate has
//!   no method for (`match`, `imatch`, `isdistinct`) and `or`/`and` trees ([`Condition`]).
//!
//! ```no_run
//! use livechat::{Client, Count};
//! use serde::Deserialize;
//!
//! #[derive(Debug, Deserialize)]
//! struct Conversation {
//!     id: String,
//!     status: String,
//!     visitor: Option<Visitor>,
//! }
//! #[derive(Debug, Deserialize)]
//! struct Visitor { name: Option<String> }
//!
//! # async fn demo(client: Client) -> livechat::Result<()> {
//! let page = client
//!     .from("mod_chat_conversations")
//!     .select("id,status,visitor:mod_chat_visitors(name)")
//!     .eq("site_id", "b0000000-0000-4000-8000-000000000001")
//!     .in_("status", ["pending", "active", "waiting"])
//!     .order_desc("last_message_at")
//!     .range(0, 19)
//!     .fetch_page::<Conversation>()
//!     .await?;
//! println!("{} of {:?}", page.rows.len(), page.total);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod encode;
mod filter;

pub use filter::{Condition, Is};

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::Client;
use crate::error::{Error, ErrorKind, Result};

/// How PostgREST counts the rows a request matches (`Prefer: count=…`).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// `SELECT count(*)` over the filtered rows: exact, can be slow on large tables.
    Exact,
    /// The planner's estimate: fast, approximate.
    Planned,
    /// Exact up to the server's `max-rows`, the planner's estimate above.
    Estimated,
}

impl Count {
    fn as_str(self) -> &'static str {
        match self {
            Count::Exact => "count=exact",
            Count::Planned => "count=planned",
            Count::Estimated => "count=estimated",
        }
    }
}

/// Where NULLs sort.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nulls {
    /// NULLs before other values.
    First,
    /// NULLs after other values.
    Last,
}

/// The `Content-Range` header of a PostgREST response: `first-last/total`, where `first-last` is
/// `*` when no rows came back and `total` is `*` unless a count was asked for.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContentRange {
    /// Offset of the first row returned.
    pub first: Option<u64>,
    /// Offset of the last row returned.
    pub last: Option<u64>,
    /// Total number of matching rows, when counted.
    pub total: Option<u64>,
}

impl ContentRange {
    /// Parses `0-24/3573458`, `*/0`, `*/*` (and an optional `items ` unit prefix).
    ///
    /// ```
    /// use livechat::rest::ContentRange;
    /// let r = ContentRange::parse("0-24/100").unwrap();
    /// assert_eq!((r.first, r.last, r.total), (Some(0), Some(24), Some(100)));
    /// assert_eq!(ContentRange::parse("*/*").unwrap().total, None);
    /// ```
    pub fn parse(header: &str) -> Option<ContentRange> {
        let h = header.trim();
        let h = h.strip_prefix("items ").unwrap_or(h).trim();
        let (range, total) = h.split_once('/')?;
        let total = match total.trim() {
            "*" => None,
            t => Some(t.parse().ok()?),
        };
        let (first, last) = match range.trim() {
            "*" => (None, None),
            r => {
                let (a, b) = r.split_once('-')?;
                (Some(a.trim().parse().ok()?), Some(b.trim().parse().ok()?))
            }
        };
        Some(ContentRange { first, last, total })
    }
}

/// One page of rows and, when counted, the total number of matching rows.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The rows of this page.
    pub rows: Vec<T>,
    /// All rows matching the filters, ignoring `limit` / `offset` (from `Content-Range`).
    pub total: Option<u64>,
    /// The offset of the first row of this page.
    pub offset: u64,
}

impl<T> Page<T> {
    /// Whether rows beyond this page exist (false when the total is unknown).
    pub fn has_more(&self) -> bool {
        self.total
            .is_some_and(|t| self.offset + (self.rows.len() as u64) < t)
    }
}

/// What a request without a decoded body ([`Query::execute`]) returned.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The HTTP status (201 created, 204 no content, 200 …).
    pub status: u16,
    /// The counted rows (affected rows for writes) when [`Query::count`] was set.
    pub count: Option<u64>,
}

/// A raw PostgREST response ([`Query::fetch_raw`]).
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The parsed `Content-Range` header.
    pub content_range: Option<ContentRange>,
    /// The body as sent.
    pub body: Bytes,
    headers: HeaderMap,
}

impl Response {
    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Decodes the body as JSON (an empty body reads as `null`).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        decode(&self.body, "response")
    }
}

fn decode<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| Error::decode(format!("could not decode the {what}"), e))
}

enum Op {
    Read,
    Insert(String),
    Upsert { body: String, ignore: bool },
    Update(String),
    Delete,
    Rpc,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// An array of rows (`return=representation` for writes).
    Rows,
    /// One object (`Accept: application/vnd.pgrst.object+json`).
    Single,
    /// No body (`return=minimal` for writes).
    Minimal,
    /// HEAD with a count.
    Head,
}

/// A PostgREST request being built: a read, a write or an RPC call.
///
/// Filter methods take column names as given (they may hold a JSON path like `metadata->>key`,
/// or an embedded resource prefix like `mod_chat_agents.status`) and user **values**, which are
/// always encoded to match literally ([`encode`]). Finish the request with one of:
///
/// | method | returns | for |
/// |---|---|---|
/// | [`fetch`](Query::fetch) | `Vec<T>` | reads, RPC returning rows, writes (the affected rows) |
/// | [`fetch_page`](Query::fetch_page) | [`Page<T>`] with the total | paginated reads |
/// | [`single`](Query::single) | `T`; [`ErrorKind::NotFound`] for 0 rows, [`ErrorKind::MultipleRows`] for more than one | |
/// | [`maybe_single`](Query::maybe_single) | `Option<T>`; [`ErrorKind::MultipleRows`] for more than one | |
/// | [`count_rows`](Query::count_rows) | the number of matching rows (HEAD, no body) | reads |
/// | [`execute`](Query::execute) | [`Outcome`] (status, count), no body | writes, `void` functions |
/// | [`call`](Query::call) | any `R: Deserialize` from the whole body | RPC |
/// | [`fetch_raw`](Query::fetch_raw) | the raw [`Response`] | anything |
///
/// A single-row write that matches other than one row fails and is rolled back by PostgREST.
#[must_use = "a query does nothing until it is sent with fetch, single, execute, …"]
pub struct Query {
    client: Client,
    target: String,
    builder: postgrest::Builder,
    op: Op,
    select: Option<String>,
    order: Vec<(String, String)>,
    params: Vec<(String, String)>,
    limit: Option<u64>,
    offset: Option<u64>,
    count: Option<Count>,
    on_conflict: Option<String>,
    missing_default: bool,
    prefer: Vec<String>,
    headers: HeaderMap,
    timeout: Option<Duration>,
    error: Option<Error>,
}

impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("target", &self.target)
            .field("select", &self.select)
            .field("order", &self.order)
            .field("params", &self.params)
            .field("limit", &self.limit)
            .field("offset", &self.offset)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Query {
    pub(crate) fn new(
        client: Client,
        target: String,
        url: String,
        rpc_body: Option<Result<String>>,
    ) -> Query {
        let mut base = HeaderMap::new();
        base.insert("apikey", client.shared.api_key_header.clone());
        let builder = postgrest::Builder::new(
            url,
            client.schema.as_deref().map(str::to_string),
            base,
            client.shared.http.clone(),
        );
        let (builder, op, error) = match rpc_body {
            None => (builder, Op::Read, None),
            Some(Ok(body)) => (builder.rpc(body), Op::Rpc, None),
            Some(Err(e)) => (builder, Op::Rpc, Some(e)),
        };
        Query {
            client,
            target,
            builder,
            op,
            select: None,
            order: Vec::new(),
            params: Vec::new(),
            limit: None,
            offset: None,
            count: None,
            on_conflict: None,
            missing_default: false,
            prefer: Vec::new(),
            headers: HeaderMap::new(),
            timeout: None,
            error,
        }
    }

    fn fail(mut self, e: Error) -> Self {
        if self.error.is_none() {
            self.error = Some(e);
        }
        self
    }

    fn body<B: Serialize + ?Sized>(&self, body: &B) -> Result<String> {
        serde_json::to_string(body).map_err(|e| {
            Error::invalid_input(format!("could not serialize the body for {}", self.target))
                .with_source(e)
        })
    }

    fn write(mut self, op: impl FnOnce(String) -> Op, body: Result<String>) -> Self {
        if !matches!(self.op, Op::Read) {
            let target = self.target.clone();
            return self.fail(Error::invalid_input(format!(
                "{target}: a request can do only one of read, insert, upsert, update, delete, rpc"
            )));
        }
        match body {
            Ok(b) => {
                self.op = op(b);
                self
            }
            Err(e) => self.fail(e),
        }
    }

    // ----------------------------------------------------------------------------------------
    // Shape
    // ----------------------------------------------------------------------------------------

    /// The columns and embedded resources to return, in PostgREST syntax, e.g.
    /// `"id,status,mod_chat_visitors(name,email)"` or `"*,agent:mod_chat_agents!inner(*)"`.
    /// Default `*`. On writes it shapes the returned rows.
    pub fn select(mut self, columns: impl Into<String>) -> Self {
        self.select = Some(columns.into());
        self
    }

    // ----------------------------------------------------------------------------------------
    // Writes
    // ----------------------------------------------------------------------------------------

    /// Inserts a row (a serializable struct or map) or rows (a slice or `Vec` of them):
    /// `POST`. Finish with [`execute`](Query::execute), or [`fetch`](Query::fetch) /
    /// [`single`](Query::single) to get the inserted rows back.
    ///
    /// ```no_run
    /// # async fn demo(client: livechat::Client) -> livechat::Result<()> {
    /// #[derive(serde::Serialize)]
    /// struct NewCanned<'a> { site_id: &'a str, title: &'a str, content: &'a str }
    /// let row: serde_json::Value = client
    ///     .from("mod_chat_canned_responses")
    ///     .insert(&NewCanned { site_id: "b0000000-0000-4000-8000-000000000001",
    ///                          title: "Hi", content: "Hello! How can I help?" })
    ///     .single()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn insert<B: Serialize + ?Sized>(self, rows: &B) -> Self {
        let body = self.body(rows);
        self.write(Op::Insert, body)
    }

    /// Inserts, or on a conflict with the primary key (or the [`on_conflict`](Query::on_conflict)
    /// columns) updates, the row(s): `POST` with `Prefer: resolution=merge-duplicates`.
    pub fn upsert<B: Serialize + ?Sized>(self, rows: &B) -> Self {
        let body = self.body(rows);
        self.write(
            |body| Op::Upsert {
                body,
                ignore: false,
            },
            body,
        )
    }

    /// For an upsert: skip conflicting rows instead of updating them
    /// (`resolution=ignore-duplicates`).
    pub fn ignore_duplicates(mut self) -> Self {
        if let Op::Upsert { ignore, .. } = &mut self.op {
            *ignore = true;
            self
        } else {
            let t = self.target.clone();
            self.fail(Error::invalid_input(format!(
                "{t}: ignore_duplicates applies to upsert only"
            )))
        }
    }

    /// For an upsert: the unique columns that detect a conflict (comma-separated), instead of
    /// the primary key.
    pub fn on_conflict(mut self, columns: impl Into<String>) -> Self {
        self.on_conflict = Some(columns.into());
        self
    }

    /// For inserts and upserts of several rows: columns missing from a row take their default
    /// instead of NULL (`Prefer: missing=default`, with `columns=` set to `columns`).
    pub fn missing_default(mut self, columns: impl Into<String>) -> Self {
        self.missing_default = true;
        self.params.push(("columns".into(), columns.into()));
        self
    }

    /// Updates the rows matching the filters with the given columns: `PATCH`.
    ///
    /// **Without filters every row is updated** (subject to row-level security).
    pub fn update<B: Serialize + ?Sized>(self, changes: &B) -> Self {
        let body = self.body(changes);
        self.write(Op::Update, body)
    }

    /// Deletes the rows matching the filters: `DELETE`.
    ///
    /// **Without filters every row is deleted** (subject to row-level security).
    pub fn delete(self) -> Self {
        self.write(|_| Op::Delete, Ok(String::new()))
    }

    // ----------------------------------------------------------------------------------------
    // Filters (values are encoded to match literally)
    // ----------------------------------------------------------------------------------------

    /// `column = value`.
    ///
    /// ```
    /// # let client = livechat::Client::new(livechat::Config::new("http://x", "k")?)?;
    /// let q = client.from("mod_chat_visitors").eq("email", "o'brien+tag@example.com");
    /// # Ok::<(), livechat::Error>(())
    /// ```
    pub fn eq(mut self, column: impl AsRef<str>, value: impl ToString) -> Self {
        self.builder = self.builder.eq(column, value.to_string());
        self
    }

    /// `column <> value`.
    pub fn neq(mut self, column: impl AsRef<str>, value: impl ToString) -> Self {
        self.builder = self.builder.neq(column, value.to_string());
        self
    }

    /// `column > value`.
    pub fn gt(mut self, column: impl AsRef<str>, value: impl ToString) -> Self {
        self.builder = self.builder.gt(column, value.to_string());
        self
    }

    /// `column >= value`.
    pub fn gte(mut self, column: impl AsRef<str>, value: impl ToString) -> Self {
        self.builder = self.builder.gte(column, value.to_string());
        self
    }

    /// `column < value`.
    pub fn lt(mut self, column: impl AsRef<str>, value: impl ToString) -> Self {
        self.builder = self.builder.lt(column, value.to_string());
        self
    }

    /// `column <= value`.
    pub fn lte(mut self, column: impl AsRef<str>, value: impl ToString) -> Self {
        self.builder = self.builder.lte(column, value.to_string());
        self
    }

    /// `column = ANY(values)`, every value quoted. An empty list matches nothing.
    pub fn in_<I, V>(mut self, column: impl AsRef<str>, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: ToString,
    {
        let quoted = encode::in_elements(values.into_iter().map(|v| v.to_string()));
        self.builder = self.builder.in_(column, quoted);
        self
    }

    /// `NOT (column = ANY(values))`. An empty list matches everything.
    pub fn not_in<I, V>(mut self, column: impl AsRef<str>, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: ToString,
    {
        let list = encode::in_list(values.into_iter().map(|v| v.to_string()));
        self.builder = self.builder.not("in", column, list);
        self
    }

    /// `column IS NULL / TRUE / FALSE / UNKNOWN`.
    pub fn is(mut self, column: impl AsRef<str>, value: Is) -> Self {
        let (k, v) = Condition::is(column.as_ref(), value).to_param("");
        self.params.push((k, v));
        self
    }

    /// `column IS NULL`.
    pub fn is_null(mut self, column: impl AsRef<str>) -> Self {
        self.builder = self.builder.is(column, "null");
        self
    }

    /// `column IS NOT NULL`.
    pub fn not_null(mut self, column: impl AsRef<str>) -> Self {
        self.builder = self.builder.not("is", column, "null");
        self
    }

    /// The text column contains `needle` literally and case-sensitively, whatever characters it
    /// holds (`*`, `%`, `_`, quotes, commas, unicode): exactly `strpos(column, needle) > 0`.
    ///
    /// Sent as `column=match.***=needle`: PostgreSQL reads a regex starting with `***=` as a
    /// literal string, and PostgREST does not rewrite `match` values (see [`encode`] for why
    /// `like` cannot do this).
    pub fn text_contains(self, column: impl AsRef<str>, needle: impl Into<String>) -> Self {
        self.filter(Condition::text_contains(column.as_ref(), needle))
    }

    /// The text column contains `needle` literally, ignoring case (`~*` with a literal regex).
    ///
    /// ```
    /// # let client = livechat::Client::new(livechat::Config::new("http://x", "k")?)?;
    /// let q = client.from("mod_chat_canned_responses").text_icontains("title", "50% off*");
    /// # Ok::<(), livechat::Error>(())
    /// ```
    pub fn text_icontains(self, column: impl AsRef<str>, needle: impl Into<String>) -> Self {
        self.filter(Condition::text_icontains(column.as_ref(), needle))
    }

    /// The text column starts with `prefix`, literally and case-sensitively.
    pub fn text_starts_with(self, column: impl AsRef<str>, prefix: impl AsRef<str>) -> Self {
        self.filter(Condition::text_starts_with(column.as_ref(), prefix))
    }

    /// The text column starts with `prefix` literally, ignoring case.
    pub fn text_istarts_with(self, column: impl AsRef<str>, prefix: impl AsRef<str>) -> Self {
        self.filter(Condition::text_istarts_with(column.as_ref(), prefix))
    }

    /// `column LIKE pattern` with the pattern sent as given (`%`/`*` any characters, `_` one
    /// character, `\` escapes). For a literal match build the pattern with
    /// [`encode::like_contains`] and friends, or use [`Query::like_contains`].
    pub fn like(mut self, column: impl AsRef<str>, pattern: impl Into<String>) -> Self {
        self.builder = self.builder.like(column, pattern.into());
        self
    }

    /// `column ILIKE pattern` (see [`Query::like`]).
    pub fn ilike(mut self, column: impl AsRef<str>, pattern: impl Into<String>) -> Self {
        self.builder = self.builder.ilike(column, pattern.into());
        self
    }

    /// `column LIKE '%value%'` with `value` escaped to match literally.
    ///
    /// A value containing `*` fails the request with [`ErrorKind::InvalidInput`]: PostgREST
    /// turns every `*` of a pattern into `%`. Use [`Query::text_contains`] for arbitrary input.
    pub fn like_contains(self, column: impl AsRef<str>, value: &str) -> Self {
        match encode::like_contains(value) {
            Ok(p) => self.like(column, p),
            Err(e) => self.fail(Error::invalid_input(e.to_string()).with_source(e)),
        }
    }

    /// `column ILIKE '%value%'` with `value` escaped to match literally (see
    /// [`Query::like_contains`] for the `*` restriction).
    pub fn ilike_contains(self, column: impl AsRef<str>, value: &str) -> Self {
        match encode::like_contains(value) {
            Ok(p) => self.ilike(column, p),
            Err(e) => self.fail(Error::invalid_input(e.to_string()).with_source(e)),
        }
    }

    /// The array column contains all of `values` (`cs`, `@>`).
    pub fn array_contains<I, V>(mut self, column: impl AsRef<str>, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: ToString,
    {
        let lit = encode::array_literal(values.into_iter().map(|v| v.to_string()));
        self.builder = self.builder.cs(column, lit);
        self
    }

    /// The array column is contained in `values` (`cd`, `<@`).
    pub fn array_contained_by<I, V>(mut self, column: impl AsRef<str>, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: ToString,
    {
        let lit = encode::array_literal(values.into_iter().map(|v| v.to_string()));
        self.builder = self.builder.cd(column.as_ref(), lit);
        self
    }

    /// The array column shares an element with `values` (`ov`, `&&`).
    pub fn array_overlaps<I, V>(mut self, column: impl AsRef<str>, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: ToString,
    {
        let lit = encode::array_literal(values.into_iter().map(|v| v.to_string()));
        self.builder = self.builder.ov(column.as_ref(), lit);
        self
    }

    /// Adds a [`Condition`]: a single filter, or an `or` / `and` group (with every value
    /// quoted).
    ///
    /// ```
    /// use livechat::rest::Condition;
    /// # let client = livechat::Client::new(livechat::Config::new("http://x", "k")?)?;
    /// let q = client.from("mod_chat_conversations").filter(Condition::or([
    ///     Condition::eq("status", "pending"),
    ///     Condition::and([Condition::eq("status", "active"), Condition::is_null("assigned_agent_id")]),
    /// ]));
    /// # Ok::<(), livechat::Error>(())
    /// ```
    pub fn filter(mut self, condition: Condition) -> Self {
        self.params.push(condition.to_param(""));
        self
    }

    /// Adds a [`Condition`] on an embedded resource (by alias or name): it filters the embedded
    /// rows (and, with `!inner` in `select`, the parent rows).
    pub fn filter_in(mut self, embed: &str, condition: Condition) -> Self {
        self.params.push(condition.to_param(embed));
        self
    }

    /// Rows matching any of `conditions` (`or=(…)`).
    pub fn or(self, conditions: impl IntoIterator<Item = Condition>) -> Self {
        self.filter(Condition::or(conditions))
    }

    /// Adds a query parameter as given, e.g. `("created_at", "gte.2026-01-01")`. Nothing is
    /// encoded beyond URL encoding: use [`encode`] for user values.
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((key.into(), value.into()));
        self
    }

    // ----------------------------------------------------------------------------------------
    // Order and paging
    // ----------------------------------------------------------------------------------------

    fn push_order(mut self, key: String, term: String) -> Self {
        self.order.push((key, term));
        self
    }

    /// Orders by `column` ascending (further calls add tie-breakers).
    pub fn order_asc(self, column: impl AsRef<str>) -> Self {
        let t = format!("{}.asc", column.as_ref());
        self.push_order("order".into(), t)
    }

    /// Orders by `column` descending (further calls add tie-breakers).
    pub fn order_desc(self, column: impl AsRef<str>) -> Self {
        let t = format!("{}.desc", column.as_ref());
        self.push_order("order".into(), t)
    }

    /// Orders by `column` with a direction and a NULL placement.
    pub fn order_by(self, column: impl AsRef<str>, ascending: bool, nulls: Nulls) -> Self {
        let t = format!(
            "{}.{}.{}",
            column.as_ref(),
            if ascending { "asc" } else { "desc" },
            match nulls {
                Nulls::First => "nullsfirst",
                Nulls::Last => "nullslast",
            }
        );
        self.push_order("order".into(), t)
    }

    /// Orders the rows of an embedded resource (`embed.order=column.asc|desc`).
    pub fn order_in(self, embed: &str, column: impl AsRef<str>, ascending: bool) -> Self {
        let t = format!(
            "{}.{}",
            column.as_ref(),
            if ascending { "asc" } else { "desc" }
        );
        self.push_order(format!("{embed}.order"), t)
    }

    /// At most `n` rows (`limit=n`, a query parameter, so it works for every method; `0` is
    /// allowed).
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// Skips the first `n` rows (`offset=n`).
    pub fn offset(mut self, n: u64) -> Self {
        self.offset = Some(n);
        self
    }

    /// Rows `from` to `to`, inclusive, zero-based: `offset=from&limit=to-from+1`, as
    /// postgrest-js does. `to < from` gives no rows.
    pub fn range(self, from: u64, to: u64) -> Self {
        let n = if to >= from { to - from + 1 } else { 0 };
        self.offset(from).limit(n)
    }

    /// At most `n` rows of an embedded resource (`embed.limit=n`).
    pub fn limit_in(mut self, embed: &str, n: u64) -> Self {
        self.params.push((format!("{embed}.limit"), n.to_string()));
        self
    }

    /// Asks for the total number of matching rows (`Prefer: count=…`), reported by
    /// [`fetch_page`](Query::fetch_page), [`count_rows`](Query::count_rows) and
    /// [`execute`](Query::execute) (affected rows for writes).
    pub fn count(mut self, count: Count) -> Self {
        self.count = Some(count);
        self
    }

    // ----------------------------------------------------------------------------------------
    // Request options
    // ----------------------------------------------------------------------------------------

    /// Adds a value to the `Prefer` header, e.g. `"tx=rollback"` or `"timezone=Africa/Lusaka"`.
    /// The library's own values come first, so PostgREST (first value of a kind wins) keeps them.
    pub fn prefer(mut self, value: impl Into<String>) -> Self {
        self.prefer.push(value.into());
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => {
                self.headers.insert(n, v);
                self
            }
            _ => {
                let msg = format!("invalid header {name:?}");
                self.fail(Error::invalid_input(msg))
            }
        }
    }

    /// A timeout for this request, overriding the client's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    // ----------------------------------------------------------------------------------------
    // Sending
    // ----------------------------------------------------------------------------------------

    /// Sends the request and decodes the rows.
    ///
    /// For writes the affected rows are returned (`Prefer: return=representation`), shaped by
    /// [`select`](Query::select).
    pub async fn fetch<T: DeserializeOwned>(self) -> Result<Vec<T>> {
        let target = self.target.clone();
        let resp = self.send(Mode::Rows).await?;
        decode(&resp.body, &format!("rows of {target}"))
    }

    /// Sends the request with a count (exact unless [`count`](Query::count) chose another) and
    /// returns the rows with the total.
    ///
    /// PostgREST answers an offset beyond the total with HTTP 416 (`PGRST103`,
    /// [`ErrorKind::InvalidInput`]; its details say how many rows there are).
    ///
    /// ```no_run
    /// # async fn demo(client: livechat::Client) -> livechat::Result<()> {
    /// let page = client.from("mod_chat_messages")
    ///     .eq("conversation_id", "20000000-0000-4000-8000-000000000102")
    ///     .order_asc("created_at")
    ///     .range(0, 49)
    ///     .fetch_page::<serde_json::Value>()
    ///     .await?;
    /// if page.has_more() { /* fetch the next 50 */ }
    /// # Ok(()) }
    /// ```
    pub async fn fetch_page<T: DeserializeOwned>(mut self) -> Result<Page<T>> {
        if self.count.is_none() {
            self.count = Some(Count::Exact);
        }
        let target = self.target.clone();
        let offset = self.offset.unwrap_or(0);
        let resp = self.send(Mode::Rows).await?;
        let rows: Vec<T> = decode(&resp.body, &format!("rows of {target}"))?;
        let range = resp.content_range;
        Ok(Page {
            rows,
            total: range.and_then(|r| r.total),
            offset: range.and_then(|r| r.first).unwrap_or(offset),
        })
    }

    /// Sends the request and decodes exactly one row.
    ///
    /// Fails with [`ErrorKind::NotFound`] when no row matched and [`ErrorKind::MultipleRows`]
    /// when several did (PostgREST `PGRST116`; a write is rolled back in both cases).
    pub async fn single<T: DeserializeOwned>(self) -> Result<T> {
        let target = self.target.clone();
        let resp = self.send(Mode::Single).await?;
        decode(&resp.body, &format!("row of {target}"))
    }

    /// Like [`single`](Query::single), but no matching row is `Ok(None)`.
    pub async fn maybe_single<T: DeserializeOwned>(self) -> Result<Option<T>> {
        let target = self.target.clone();
        match self.send(Mode::Single).await {
            Ok(resp) => decode(&resp.body, &format!("row of {target}")).map(Some),
            Err(e) if e.kind() == ErrorKind::NotFound && e.code() == Some("PGRST116") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Counts the matching rows without fetching them (`HEAD` with `Prefer: count=exact`, or the
    /// count chosen with [`count`](Query::count)). Reads only.
    pub async fn count_rows(mut self) -> Result<u64> {
        if !matches!(self.op, Op::Read) {
            return Err(Error::invalid_input(format!(
                "{}: count_rows applies to reads only; use count() with execute() for writes",
                self.target
            )));
        }
        if self.count.is_none() {
            self.count = Some(Count::Exact);
        }
        let resp = self.send(Mode::Head).await?;
        resp.content_range.and_then(|r| r.total).ok_or_else(|| {
            Error::new(
                ErrorKind::Decode,
                "the response has no total in its Content-Range header",
            )
        })
    }

    /// Sends the request without asking for a body (`Prefer: return=minimal` for writes) and
    /// returns the status and, with [`count`](Query::count), the number of rows.
    pub async fn execute(self) -> Result<Outcome> {
        let resp = self.send(Mode::Minimal).await?;
        Ok(Outcome {
            status: resp.status,
            count: resp.content_range.and_then(|r| r.total),
        })
    }

    /// Sends the request and decodes the whole body as `R`: the natural ending of an RPC call,
    /// whatever the function returns (a scalar, an object, an array, or nothing: a `void`
    /// function's empty body decodes as `null`, so as `()` or `Option<_>`).
    ///
    /// ```no_run
    /// # async fn demo(client: livechat::Client) -> livechat::Result<()> {
    /// let n: Option<i64> = client
    ///     .rpc("count_open", &serde_json::json!({ "site": "b0000000-0000-4000-8000-000000000001" }))
    ///     .call()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn call<R: DeserializeOwned>(self) -> Result<R> {
        let target = self.target.clone();
        let resp = self.send(Mode::Rows).await?;
        decode(&resp.body, &format!("result of {target}"))
    }

    /// Sends the request and returns the raw response (any 2xx status).
    pub async fn fetch_raw(self) -> Result<Response> {
        self.send(Mode::Rows).await
    }

    fn prefer_header(&self, mode: Mode) -> String {
        let mut parts: Vec<String> = Vec::new();
        let is_write = matches!(
            self.op,
            Op::Insert(_) | Op::Upsert { .. } | Op::Update(_) | Op::Delete
        );
        if is_write {
            parts.push(
                match mode {
                    Mode::Minimal | Mode::Head => "return=minimal",
                    Mode::Rows | Mode::Single => "return=representation",
                }
                .into(),
            );
        }
        if let Op::Upsert { ignore, .. } = &self.op {
            parts.push(if *ignore {
                "resolution=ignore-duplicates".into()
            } else {
                "resolution=merge-duplicates".into()
            });
        }
        if self.missing_default {
            parts.push("missing=default".into());
        }
        if let Some(c) = self.count {
            parts.push(c.as_str().into());
        }
        parts.extend(self.prefer.iter().cloned());
        parts.join(",")
    }

    async fn send(mut self, mode: Mode) -> Result<Response> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let prefer = self.prefer_header(mode);
        let auth = self.client.auth_headers().await?;

        let Query {
            client,
            target,
            mut builder,
            op,
            select,
            order,
            params,
            limit,
            offset,
            on_conflict,
            headers,
            timeout,
            ..
        } = self;

        builder = match op {
            Op::Read | Op::Rpc => builder,
            Op::Insert(body) => builder.insert(body),
            Op::Upsert { body, .. } => builder.upsert(body),
            Op::Update(body) => builder.update(body),
            Op::Delete => builder.delete(),
        };
        if let Some(s) = select {
            builder = builder.select(s);
        }
        if let Some(c) = on_conflict {
            builder = builder.on_conflict(c);
        }
        if mode == Mode::Single {
            builder = builder.single();
        }

        let mut rb = builder.build();
        if let Some(t) = timeout {
            rb = rb.timeout(t);
        }
        let mut req = rb.build().map_err(|e| {
            Error::invalid_input(format!("could not build the request for {target}")).with_source(e)
        })?;
        if mode == Mode::Head {
            *req.method_mut() = Method::HEAD;
        }

        // Query parameters the crate does not produce (or produces wrongly).
        let mut extra: Vec<(String, String)> = Vec::new();
        let mut merged_order: Vec<(String, String)> = Vec::new();
        for (k, t) in order {
            match merged_order.iter_mut().find(|(mk, _)| *mk == k) {
                Some((_, v)) => {
                    v.push(',');
                    v.push_str(&t);
                }
                None => merged_order.push((k, t)),
            }
        }
        extra.extend(merged_order);
        extra.extend(params);
        if let Some(n) = limit {
            extra.push(("limit".into(), n.to_string()));
        }
        if let Some(n) = offset {
            extra.push(("offset".into(), n.to_string()));
        }
        if !extra.is_empty() {
            let mut pairs = req.url_mut().query_pairs_mut();
            for (k, v) in &extra {
                pairs.append_pair(k, v);
            }
        }

        let h = req.headers_mut();
        h.remove("Range");
        h.remove("Range-Unit");
        if prefer.is_empty() {
            h.remove("Prefer");
        } else {
            let v = HeaderValue::from_str(&prefer)
                .map_err(|e| Error::invalid_input("invalid Prefer value").with_source(e))?;
            h.insert("Prefer", v);
        }
        for (name, value) in auth.iter() {
            h.insert(name.clone(), value.clone());
        }
        for (name, value) in headers.iter() {
            h.insert(name.clone(), value.clone());
        }

        let method = req.method().clone();
        let idempotent = matches!(method, Method::GET | Method::HEAD | Method::DELETE);
        let started = Instant::now();
        tracing::trace!(target: "livechat::rest", %method, url = %req.url(), "sending");
        let resp = client
            .shared
            .http
            .execute(req)
            .await
            .map_err(|e| {
                tracing::debug!(target: "livechat::rest", %method, %target, error = %e, "request failed");
                Error::from_reqwest(e, idempotent)
            })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| Error::from_reqwest(e, idempotent))?;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::debug!(
            target: "livechat::rest",
            %method,
            %target,
            status = status.as_u16(),
            elapsed_ms,
            "response"
        );
        if !status.is_success() {
            let retry_after = headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(Error::from_response(status, &body, retry_after, idempotent));
        }
        let content_range = headers
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(ContentRange::parse);
        Ok(Response {
            status: status.as_u16(),
            content_range,
            body,
            headers,
        })
    }
}

/// For a counted read whose offset is past the last row (HTTP 416, `PGRST103`): the number of
/// rows PostgREST reports in the details, `"An offset of N was requested, but there are only M
/// rows."` (the first integer after "only", as [`Error::row_count`] reads `PGRST116`).
/// `None` for any other error, or details in another form.
pub(crate) fn total_past_the_end(e: &Error) -> Option<u64> {
    let p = e.postgrest()?;
    if p.code.as_deref() != Some("PGRST103") {
        return None;
    }
    let details = p.details_text()?;
    let (_, after) = details.split_once(" only ")?;
    let start = after.find(|c: char| c.is_ascii_digit())?;
    let digits: String = after[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(status: u16, body: &str) -> Error {
        let status = reqwest::StatusCode::from_u16(status).expect("a status");
        Error::from_response(status, body.as_bytes(), None, true)
    }

    #[test]
    fn the_total_of_a_page_past_the_end_is_read_from_the_details() {
        let past = |details: &str| {
            error(
                416,
                &serde_json::json!({
                    "code": "PGRST103",
                    "message": "Requested range not satisfiable",
                    "details": details,
                    "hint": null
                })
                .to_string(),
            )
        };
        let e = past("An offset of 10 was requested, but there are only 5 rows.");
        assert_eq!(total_past_the_end(&e), Some(5));
        let e = past("An offset of 1000 was requested, but there are only 0 rows.");
        assert_eq!(total_past_the_end(&e), Some(0));
        // Other PGRST103 details carry no total.
        let e = past("Limit should be greater than or equal to zero.");
        assert_eq!(total_past_the_end(&e), None);
        let e = past(
            "The lower boundary must be lower than or equal to the upper boundary in the Range header.",
        );
        assert_eq!(total_past_the_end(&e), None);
        // Nor do other codes, or a 416 without a PostgREST body.
        let e = error(
            406,
            r#"{"code":"PGRST116","message":"m","details":"The result contains 5 rows","hint":null}"#,
        );
        assert_eq!(total_past_the_end(&e), None);
        assert_eq!(total_past_the_end(&error(416, "")), None);
    }

    #[test]
    fn content_range_forms() {
        let p = |s| ContentRange::parse(s).unwrap();
        assert_eq!(
            p("0-14/*"),
            ContentRange {
                first: Some(0),
                last: Some(14),
                total: None
            }
        );
        assert_eq!(p("*/0").total, Some(0));
        assert_eq!(p("*/0").first, None);
        assert_eq!(p("2-4/10").first, Some(2));
        assert!(ContentRange::parse("bogus").is_none());
        assert!(ContentRange::parse("a-b/c").is_none());
    }

    #[test]
    fn page_has_more() {
        let page = Page {
            rows: vec![1, 2],
            total: Some(5),
            offset: 2,
        };
        assert!(page.has_more());
        let last = Page {
            rows: vec![5],
            total: Some(5),
            offset: 4,
        };
        assert!(!last.has_more());
    }
}
