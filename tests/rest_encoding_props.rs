//! Property tests of the literal encoder, end to end: for arbitrary strings (every character
//! PostgREST or PostgreSQL treats specially, keywords, whitespace, unicode), a filter built by
//! the library matches exactly the rows that the direct SQL equality / membership / substring
//! test matches on the same database.
//!
//! Each property inserts a few rows whose `title` (and `tags`) are the generated strings,
//! under a fresh marker in `category`, then compares the ids the REST filter returns with the
//! ids of a SQL query. `PROPTEST_CASES` sets the number of cases (default 40 per property).

use crate::rest_support;

use std::collections::BTreeSet;

use livechat::rest::Condition;
use livechat::{ErrorKind, Query};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rest_support::*;
use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;

const TABLE: &str = "mod_chat_canned_responses";

/// Characters with a meaning somewhere on the way: PostgREST's grammar, URLs, PostgreSQL
/// array literals, LIKE and regex syntax, JSON, whitespace, and some tricky unicode.
const SPECIALS: &[char] = &[
    '"', '\\', ',', '(', ')', '.', ':', '*', '%', '_', '{', '}', '[', ']', ' ', '\'', '+', '&',
    '=', '#', '?', '/', ';', '!', '$', '^', '|', '~', '`', '<', '>', '@', '-', '\n', '\t', '\r',
    'é', 'ß', 'İ', 'ı', 'Σ', 'ς', '日', '🎉', '\u{0301}', '\u{202e}', '\u{00a0}', '\u{feff}',
];

/// Whole values that look like syntax.
const KEYWORDS: &[&str] = &[
    "", " ", "null", "NULL", "not", "true", "eq.x", "is.null", "in.(a,b)", "{}", "{a,b}", "\"\"",
    "\"a\"", "a,b", "()", "*", "%", "_", "\\", "***=", "(?i)a", "a b",
];

fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(SPECIALS),
        2 => prop::char::range('a', 'c'),
        1 => prop::char::range('A', 'C'),
        1 => any::<char>().prop_filter("PostgreSQL text cannot hold NUL", |c| *c != '\0'),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::collection::vec(tricky_char(), 0..8).prop_map(|cs| cs.into_iter().collect()),
        1 => prop::sample::select(KEYWORDS).prop_map(String::from),
    ]
}

/// Strings that differ from `t` in ways a sloppy encoder would ignore.
fn variants(t: &str) -> Vec<String> {
    vec![
        t.to_string(),
        format!("\"{t}\""),
        format!(" {t}"),
        format!("{t} "),
        format!("{t}x"),
        t.to_uppercase(),
        t.to_lowercase(),
        t.replace('*', "%"),
        t.replace('%', "*"),
        t.replace('\\', ""),
        t.replace('"', ""),
    ]
}

/// A substring of `s` chosen by two indexes (char boundaries).
fn slice(s: &str, a: Index, b: Index) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return String::new();
    }
    let (mut i, mut j) = (a.index(chars.len() + 1), b.index(chars.len() + 1));
    if i > j {
        std::mem::swap(&mut i, &mut j);
    }
    chars[i..j].iter().collect()
}

struct Harness {
    rt: Runtime,
    env: Env,
}

impl Harness {
    fn new() -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let env = rt.block_on(seeded());
        Harness { rt, env }
    }

    fn runner() -> TestRunner {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(40);
        TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        })
    }

    /// Inserts one row per title under a fresh marker; `tags` of each row = [title, extra].
    async fn insert(&self, titles: &[String], extra: &str) -> String {
        let marker = uuid::Uuid::new_v4().to_string();
        self.env
            .db
            .execute(
                "insert into public.mod_chat_canned_responses (site_id, title, content, category, tags) \
                 select $1::text::uuid, t, 'p', $2, array[t, $4] from unnest($3::text[]) as t",
                &[&SITE_1, &marker, &titles, &extra],
            )
            .await
            .unwrap_or_else(|e| panic!("insert {titles:?}: {e}"));
        marker
    }

    /// Ids of the marker's rows matching `cond` (SQL; `$1` is the marker).
    async fn sql(
        &self,
        marker: &str,
        cond: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<BTreeSet<String>, TestCaseError> {
        let sql = format!("select id::text from public.{TABLE} where category = $1 and ({cond})");
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![&marker];
        all.extend_from_slice(params);
        let rows = self
            .env
            .db
            .query(&sql, &all)
            .await
            .map_err(|e| TestCaseError::fail(format!("{sql}: {e}")))?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }

    fn base(&self, marker: &str) -> Query {
        self.env
            .service
            .from(TABLE)
            .select("id")
            .eq("category", marker)
    }
}

/// Ids returned by a REST query.
async fn rest(q: Query) -> Result<BTreeSet<String>, TestCaseError> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    let dbg = format!("{q:?}");
    let rows: Vec<Id> = q
        .fetch()
        .await
        .map_err(|e| TestCaseError::fail(format!("REST request failed: {e}\n{dbg}")))?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

fn rows_strategy() -> impl Strategy<Value = (String, Vec<String>)> {
    (value(), prop::collection::vec(value(), 0..4))
}

fn titles(target: &str, others: &[String]) -> Vec<String> {
    let mut t = variants(target);
    t.extend(others.iter().cloned());
    t
}

#[test]
fn eq_and_neq_match_sql_equality() {
    let h = Harness::new();
    Harness::runner()
        .run(&rows_strategy(), |(target, others)| {
            h.rt.block_on(async {
                let marker = h.insert(&titles(&target, &others), "x").await;
                let got = rest(h.base(&marker).eq("title", &target)).await?;
                let want = h.sql(&marker, "title = $2", &[&target]).await?;
                prop_assert!(!want.is_empty());
                prop_assert_eq!(&got, &want, "eq {:?}", target);

                let got = rest(h.base(&marker).neq("title", &target)).await?;
                let want = h.sql(&marker, "title <> $2", &[&target]).await?;
                prop_assert_eq!(&got, &want, "neq {:?}", target);
                Ok(())
            })
        })
        .unwrap();
}

#[test]
fn in_and_not_in_match_sql_membership() {
    let h = Harness::new();
    let strategy = (
        rows_strategy(),
        prop::collection::vec(value(), 0..4),
        any::<bool>(),
    );
    Harness::runner()
        .run(&strategy, |((target, others), mut list, with_target)| {
            h.rt.block_on(async {
                let marker = h.insert(&titles(&target, &others), "x").await;
                if with_target {
                    list.push(target.clone());
                }
                let got = rest(h.base(&marker).in_("title", &list)).await?;
                let want = h.sql(&marker, "title = any($2)", &[&list]).await?;
                prop_assert_eq!(&got, &want, "in {:?}", list);

                let got = rest(h.base(&marker).not_in("title", &list)).await?;
                let want = h.sql(&marker, "not (title = any($2))", &[&list]).await?;
                prop_assert_eq!(&got, &want, "not in {:?}", list);
                Ok(())
            })
        })
        .unwrap();
}

#[test]
fn or_and_trees_match_sql_boolean_logic() {
    let h = Harness::new();
    let strategy = (
        rows_strategy(),
        prop::collection::vec(value(), 1..3),
        value(),
        (any::<Index>(), any::<Index>()),
    );
    Harness::runner()
        .run(&strategy, |((target, others), list, b, (i, j))| {
            h.rt.block_on(async {
                let marker = h.insert(&titles(&target, &others), "x").await;
                let needle = slice(&target, i, j);
                let tree = [
                    Condition::eq("title", &target),
                    Condition::in_("title", &list),
                    Condition::and([
                        Condition::neq("title", &b),
                        Condition::text_contains("title", needle.clone()),
                    ])
                    .not(),
                ];
                let got = rest(h.base(&marker).or(tree.clone())).await?;
                let want = h
                    .sql(
                        &marker,
                        "title = $2 or title = any($3) or not (title <> $4 and strpos(title, $5) > 0)",
                        &[&target, &list, &b, &needle],
                    )
                    .await?;
                prop_assert_eq!(&got, &want, "or tree {:?}", tree);

                // The same tree under `and`, negated at the top level.
                let got = rest(h.base(&marker).filter(Condition::and(tree.clone()).not())).await?;
                let want = h
                    .sql(
                        &marker,
                        "not (title = $2 and title = any($3) and not (title <> $4 and strpos(title, $5) > 0))",
                        &[&target, &list, &b, &needle],
                    )
                    .await?;
                prop_assert_eq!(&got, &want, "not.and tree {:?}", tree);
                Ok(())
            })
        })
        .unwrap();
}

#[test]
fn array_filters_match_sql_array_operators() {
    let h = Harness::new();
    let strategy = (
        rows_strategy(),
        value(),
        prop::collection::vec(value(), 0..3),
        any::<bool>(),
    );
    Harness::runner()
        .run(
            &strategy,
            |((target, others), extra, mut list, with_target)| {
                h.rt.block_on(async {
                    let marker = h.insert(&titles(&target, &others), &extra).await;
                    if with_target {
                        list.push(target.clone());
                    }
                    let got = rest(h.base(&marker).array_contains("tags", &list)).await?;
                    let want = h.sql(&marker, "tags @> $2::text[]", &[&list]).await?;
                    prop_assert_eq!(&got, &want, "cs {:?}", list);

                    let got = rest(h.base(&marker).array_overlaps("tags", &list)).await?;
                    let want = h.sql(&marker, "tags && $2::text[]", &[&list]).await?;
                    prop_assert_eq!(&got, &want, "ov {:?}", list);

                    let got = rest(h.base(&marker).array_contained_by("tags", &list)).await?;
                    let want = h.sql(&marker, "tags <@ $2::text[]", &[&list]).await?;
                    prop_assert_eq!(&got, &want, "cd {:?}", list);

                    // Inside a logic tree the literal is quoted once more.
                    let got = rest(h.base(&marker).or([
                        Condition::array_contains("tags", &list),
                        Condition::eq("title", "\u{1}"),
                    ]))
                    .await?;
                    let want = h.sql(&marker, "tags @> $2::text[]", &[&list]).await?;
                    prop_assert_eq!(&got, &want, "or(cs) {:?}", list);
                    Ok(())
                })
            },
        )
        .unwrap();
}

#[test]
fn literal_text_search_matches_sql_substring_tests() {
    let h = Harness::new();
    let strategy = (
        rows_strategy(),
        (any::<Index>(), any::<Index>()),
        value(),
        any::<bool>(),
    );
    Harness::runner()
        .run(
            &strategy,
            |((target, others), (i, j), random, from_target)| {
                h.rt.block_on(async {
                    let marker = h.insert(&titles(&target, &others), "x").await;
                    let needle = if from_target {
                        slice(&target, i, j)
                    } else {
                        random
                    };

                    let got = rest(h.base(&marker).text_contains("title", needle.clone())).await?;
                    let want = h.sql(&marker, "strpos(title, $2) > 0", &[&needle]).await?;
                    prop_assert_eq!(&got, &want, "contains {:?}", needle);

                    let got = rest(h.base(&marker).text_starts_with("title", &needle)).await?;
                    let want = h.sql(&marker, "starts_with(title, $2)", &[&needle]).await?;
                    prop_assert_eq!(&got, &want, "starts_with {:?}", needle);

                    let got = rest(h.base(&marker).text_icontains("title", needle.clone())).await?;
                    let want = h
                        .sql(&marker, "title ~* ('***=' || $2)", &[&needle])
                        .await?;
                    prop_assert_eq!(&got, &want, "icontains {:?}", needle);
                    Ok(())
                })
            },
        )
        .unwrap();
}

#[test]
fn like_patterns_match_sql_like_or_refuse_asterisks() {
    let h = Harness::new();
    let strategy = (rows_strategy(), (any::<Index>(), any::<Index>()));
    Harness::runner()
        .run(&strategy, |((target, others), (i, j))| {
            h.rt.block_on(async {
                let marker = h.insert(&titles(&target, &others), "x").await;
                let needle = slice(&target, i, j);
                let like = h.base(&marker).like_contains("title", &needle);
                let ilike = h.base(&marker).ilike_contains("title", &needle);
                if needle.contains('*') {
                    for q in [like, ilike] {
                        let e = q.fetch::<serde_json::Value>().await;
                        prop_assert!(
                            matches!(&e, Err(e) if e.kind() == ErrorKind::InvalidInput),
                            "a `*` cannot be matched literally by like: {:?}",
                            e
                        );
                    }
                    return Ok(());
                }
                let got = rest(like).await?;
                let want = h.sql(&marker, "strpos(title, $2) > 0", &[&needle]).await?;
                prop_assert_eq!(&got, &want, "like contains {:?}", needle);

                let got = rest(ilike).await?;
                let want = h
                    .sql(
                        &marker,
                        r"title ilike '%' || replace(replace(replace($2, '\', '\\'), '%', '\%'), '_', '\_') || '%'",
                        &[&needle],
                    )
                    .await?;
                prop_assert_eq!(&got, &want, "ilike contains {:?}", needle);
                Ok(())
            })
        })
        .unwrap();
}
