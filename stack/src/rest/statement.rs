//! The one main statement of each request kind (§7): reads, inserts/upserts, updates, deletes and
//! function calls, each wrapped in the same outer SELECT that returns one row:
//! `total_result_set, page_total, body, inserted, location, response_headers, response_status`.

use serde_json::{Map, Value};
use std::collections::BTreeSet;

use super::error::ApiError;
use super::headers::{Media, Prefs, Resolution, Return};
use super::parse::SelectItem;
use super::plan::{attach, build_node, Gen, Node, Source, Star, MAX_ROWS};
use super::query::QueryParams;
use super::schema::{best_match, Function, SchemaCache, Table, EXPOSED_SCHEMAS};
use super::sql::{ident, qualified, Sql};

/// What the response builder needs to know besides the result row.
#[derive(Debug, Clone)]
pub enum Kind {
    /// GET/HEAD on a table or view.
    Read {
        /// The requested offset (first row index).
        offset: i64,
    },
    /// POST on a table.
    Insert {
        /// `resolution=merge-duplicates` on a table with a conflict target.
        merge: bool,
        /// Whether `resolution` is echoed (the table has a PK or on_conflict was given).
        echo_resolution: bool,
        /// Primary key columns (for `Location`).
        pk: Vec<String>,
        /// PUT (204 when minimal).
        put: bool,
    },
    /// PATCH.
    Update,
    /// DELETE.
    Delete,
    /// A function call.
    Call {
        /// The requested offset.
        offset: i64,
        /// `returns void`.
        void: bool,
    },
}

/// A ready-to-run main statement.
#[derive(Debug)]
pub struct Prepared {
    /// The SQL text.
    pub sql: String,
    /// Its parameters.
    pub params: Sql,
    /// READ ONLY transaction.
    pub read_only: bool,
    /// Response kind.
    pub kind: Kind,
    /// Settings applied to the transaction before the main statement (a called function's
    /// hoisted settings, e.g. `statement_timeout`).
    pub tx_settings: Vec<(String, String)>,
}

const OUTER_TAIL: &str = "nullif(current_setting('response.headers', true), '') AS response_headers, nullif(current_setting('response.status', true), '') AS response_status";

fn body_expr(media: Media, agg: &str, wanted: bool) -> String {
    if !wanted {
        return "NULL".into();
    }
    let b = if media.singular {
        format!("coalesce(json_agg({agg})->0, 'null')")
    } else {
        format!("coalesce(json_agg({agg}), '[]')")
    };
    if media.strip_nulls {
        format!("json_strip_nulls({b})")
    } else {
        b
    }
}

fn root_items(q: &QueryParams) -> Vec<SelectItem> {
    q.select.clone().unwrap_or_else(|| vec![SelectItem::Star])
}

/// Combines `limit`/`offset` with the `Range` header (GET only) into (offset, limit).
pub fn top_range(
    q: &QueryParams,
    range: Option<(i64, Option<i64>)>,
) -> Result<(i64, Option<i64>), ApiError> {
    let limit = q.limit.iter().find(|(p, _)| p.is_empty()).map(|(_, n)| *n);
    let offset = q
        .offset
        .iter()
        .find(|(p, _)| p.is_empty())
        .map(|(_, n)| *n)
        .unwrap_or(0)
        .max(0);
    if let Some(l) = limit {
        if l < 0 {
            return Err(
                ApiError::new(416, "PGRST103", "Requested range not satisfiable")
                    .details("Limit should be greater than or equal to zero."),
            );
        }
    }
    let mut lo = offset;
    let mut hi = limit.map(|l| offset.saturating_add(l).saturating_sub(1));
    if let Some((rlo, rhi)) = range {
        if let Some(h) = rhi {
            if rlo > h {
                return Err(ApiError::new(416, "PGRST103", "Requested range not satisfiable")
                    .details("The lower boundary must be lower than or equal to the upper boundary in the Range header."));
            }
        }
        lo = lo.max(rlo.max(0));
        hi = match (hi, rhi) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let lim = hi.map(|h| h.saturating_sub(lo).saturating_add(1).max(0));
    let lim = Some(lim.map_or(MAX_ROWS, |l| l.min(MAX_ROWS)));
    Ok((lo, lim))
}

/// GET/HEAD on a table or view.
pub fn read(
    cache: &SchemaCache,
    table: &Table,
    q: &QueryParams,
    range: Option<(i64, Option<i64>)>,
    prefs: &Prefs,
    media: Media,
    head: bool,
) -> Result<Prepared, ApiError> {
    let items = root_items(q);
    let mut node = build_node(cache, &table.schema, &table.name, Some(table), &items)?;
    attach(&mut node, q, false)?;
    let (offset, limit) = top_range(q, range)?;
    node.offset = Some(offset);
    node.limit = limit;
    let mut sql = Sql::default();
    let mut g = Gen::new(&mut sql);
    let name = qualified(&table.schema, &table.name);
    let src = Source {
        from: name.clone(),
        qual: name,
        star: Star::Native,
    };
    let main = g.select_sql(&node, &src, Vec::new(), 0, true);
    let (count_cte, total) = if prefs.count.is_some() {
        let c = g.count_sql(&node, &src);
        (
            format!(", pgrst_source_count AS ({c})"),
            "(SELECT pg_catalog.count(*) FROM pgrst_source_count)".to_string(),
        )
    } else {
        (String::new(), "NULL".to_string())
    };
    let body = body_expr(media, "_postgrest_t", !head);
    let text = format!(
        "WITH pgrst_source AS ({main}){count_cte} SELECT {total}::bigint AS total_result_set, pg_catalog.count(_postgrest_t)::bigint AS page_total, {body}::text AS body, NULL::bigint AS inserted, NULL::text AS location, {OUTER_TAIL} FROM (SELECT * FROM pgrst_source) _postgrest_t"
    );
    Ok(Prepared {
        sql: text,
        params: sql,
        read_only: true,
        kind: Kind::Read { offset },
        tx_settings: Vec::new(),
    })
}

/// The JSON body of a write, as rows.
pub struct Payload {
    /// The rows (a single object becomes one row).
    pub rows: Vec<Map<String, Value>>,
    /// The columns to write, in payload order.
    pub columns: Vec<String>,
    /// True when `columns=` chose them.
    pub from_columns_param: bool,
    /// The body text as sent: passed to PostgreSQL untouched, so `json` values keep their
    /// formatting and numbers their precision.
    pub raw: String,
    /// True when the body is a single object.
    pub is_object: bool,
}

impl Payload {
    /// The body as a JSON array text (a single object is wrapped).
    pub fn raw_array(&self) -> String {
        if self.is_object {
            format!("[{}]", self.raw)
        } else {
            self.raw.clone()
        }
    }
}

/// Parses a write body (PGRST102 on invalid JSON or mismatched keys).
pub fn parse_payload(body: &[u8], q: &QueryParams, allow_array: bool) -> Result<Payload, ApiError> {
    let invalid = || ApiError::new(400, "PGRST102", "Empty or invalid json");
    let text = std::str::from_utf8(body).map_err(|_| invalid())?;
    let value: Value = if text.trim().is_empty() {
        return Err(invalid());
    } else {
        serde_json::from_str(text).map_err(|_| invalid())?
    };
    let is_object = value.is_object();
    let raw = text.to_string();
    let rows: Vec<Map<String, Value>> = match value {
        Value::Object(m) => vec![m],
        Value::Array(a) if allow_array => {
            let mut rows = Vec::new();
            for v in a {
                match v {
                    Value::Object(m) => rows.push(m),
                    _ => return Err(invalid()),
                }
            }
            rows
        }
        _ => return Err(invalid()),
    };
    if let Some(cols) = &q.columns {
        return Ok(Payload {
            rows,
            columns: cols.clone(),
            from_columns_param: true,
            raw,
            is_object,
        });
    }
    let first: Vec<String> = rows
        .first()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    for r in rows.iter().skip(1) {
        let keys: BTreeSet<&String> = r.keys().collect();
        let want: BTreeSet<&String> = first.iter().collect();
        if keys != want {
            return Err(ApiError::new(400, "PGRST102", "All object keys must match"));
        }
    }
    Ok(Payload {
        rows,
        columns: first,
        from_columns_param: false,
        raw,
        is_object,
    })
}

fn check_columns(table: &Table, cols: &[String]) -> Result<(), ApiError> {
    for c in cols {
        if table.column(c).is_none() {
            return Err(ApiError::new(
                400,
                "PGRST204",
                format!(
                    "Could not find the '{c}' column of '{}' in the schema cache",
                    table.name
                ),
            ));
        }
    }
    Ok(())
}

fn record_def(table: &Table, cols: &[String]) -> String {
    cols.iter()
        .filter_map(|c| table.column(c))
        .map(|c| format!("{} {}", ident(&c.name), c.sql_type))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The read plan of a write's representation: embed filters apply, root filters (already
/// used by the mutation) do not. Built once per write: it decides both the `RETURNING` list
/// and the representation SQL.
fn representation_node<'c>(
    cache: &'c SchemaCache,
    table: &'c Table,
    q: &QueryParams,
) -> Result<Node<'c>, ApiError> {
    let mut rq = q.clone();
    rq.filters.retain(|(p, _)| !p.is_empty());
    rq.logic.retain(|(p, _)| !p.is_empty());
    rq.limit.retain(|(p, _)| !p.is_empty());
    rq.offset.retain(|(p, _)| !p.is_empty());
    let items = root_items(q);
    let mut node = build_node(cache, &table.schema, &table.name, Some(table), &items)?;
    attach(&mut node, &rq, false)?;
    Ok(node)
}

/// The representation read over the `pgrst_source` CTE.
fn representation_sql(node: &Node, g: &mut Gen) -> String {
    let src = Source {
        from: "pgrst_source".into(),
        qual: ident("pgrst_source"),
        star: Star::Expanded,
    };
    g.select_sql(node, &src, Vec::new(), 0, false)
}

/// What a write's `RETURNING` lists: only the columns its representation (`rep`) or the
/// `Location` header (`location`: the primary key) reads, so a role with column-level SELECT
/// privileges can write and read back the columns it may see (as PostgREST does);
/// `target.*` when the representation selects `*`, `1` when nothing is read.
fn returning_list<'a>(table: &'a Table, rep: Option<&'a Node<'_>>, location: bool) -> String {
    let target = qualified(&table.schema, &table.name);
    let mut wanted: Vec<&'a str> = Vec::new();
    if let Some(node) = rep {
        if node.items.iter().any(|i| matches!(i, SelectItem::Star)) {
            return format!("{target}.*");
        }
        for item in &node.items {
            if let SelectItem::Field { field, .. } = item {
                wanted.push(&field.name);
            }
        }
        for e in &node.embeds {
            match &e.rel.junction {
                Some(j) => wanted.extend(j.fk_origin.fcols.iter().map(String::as_str)),
                None => wanted.extend(e.rel.pairs.iter().map(|(oc, _)| oc.as_str())),
            }
        }
        wanted.extend(
            node.order
                .iter()
                .filter(|o| o.relation.is_none())
                .map(|o| o.field.name.as_str()),
        );
    }
    if location {
        wanted.extend(table.pk.iter().map(String::as_str));
    }
    let mut cols: Vec<String> = Vec::new();
    for c in wanted {
        let col = format!("{target}.{}", ident(c));
        if !cols.contains(&col) {
            cols.push(col);
        }
    }
    if cols.is_empty() {
        return "1".to_string();
    }
    cols.join(", ")
}

/// Root filters of a write as SQL conditions on the target table.
fn mutation_conditions(table: &Table, q: &QueryParams, g: &mut Gen) -> String {
    let node = Node {
        schema: table.schema.clone(),
        table: table.name.clone(),
        meta: Some(table),
        items: Vec::new(),
        embeds: Vec::new(),
        filters: q
            .filters
            .iter()
            .filter(|(p, _)| p.is_empty())
            .map(|(_, f)| f.clone())
            .collect(),
        logic: q
            .logic
            .iter()
            .filter(|(p, _)| p.is_empty())
            .map(|(_, l)| l.clone())
            .collect(),
        order: Vec::new(),
        limit: None,
        offset: None,
    };
    let conds = g.flat_conditions(&node, &qualified(&table.schema, &table.name));
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

fn write_outer(
    dml: &str,
    rep: Option<String>,
    media: Media,
    inserted: bool,
    location_pk: Option<&[String]>,
) -> String {
    let body = match rep {
        Some(r) => format!(
            "(SELECT {} FROM ({r}) _postgrest_t)",
            body_expr(media, "_postgrest_t", true)
        ),
        None => "NULL".into(),
    };
    let inserted = if inserted {
        "(SELECT pg_catalog.count(*) FROM pgrst_source WHERE pgrst_source.pgrst_inserted)"
    } else {
        "NULL"
    };
    let location = match location_pk {
        Some(pk) if !pk.is_empty() => {
            let cols: Vec<String> = pk.iter().map(|c| ident(c)).collect();
            format!(
                "(SELECT row_to_json(pgrst_loc) FROM (SELECT {} FROM pgrst_source LIMIT 1) pgrst_loc)",
                cols.join(", ")
            )
        }
        _ => "NULL".into(),
    };
    format!(
        "WITH pgrst_source AS ({dml}) SELECT NULL::bigint AS total_result_set, (SELECT pg_catalog.count(*) FROM pgrst_source)::bigint AS page_total, {body}::text AS body, {inserted}::bigint AS inserted, {location}::text AS location, {OUTER_TAIL}"
    )
}

/// POST on a table: insert or upsert.
pub fn insert(
    cache: &SchemaCache,
    table: &Table,
    q: &QueryParams,
    body: &[u8],
    prefs: &Prefs,
    media: Media,
) -> Result<Prepared, ApiError> {
    let payload = parse_payload(body, q, true)?;
    check_columns(table, &payload.columns)?;
    let ret = prefs.ret.unwrap_or(Return::Minimal);
    let conflict: Option<Vec<String>> = q
        .on_conflict
        .clone()
        .or_else(|| (!table.pk.is_empty()).then(|| table.pk.clone()));
    let echo_resolution = !table.pk.is_empty() || q.on_conflict.is_some();
    let resolution = prefs.resolution.filter(|_| conflict.is_some());
    let merge = resolution == Some(Resolution::MergeDuplicates) && !payload.columns.is_empty();
    let mut sql = Sql::default();
    let mut g = Gen::new(&mut sql);
    let p = g.sql.param(payload.raw_array());
    let target = qualified(&table.schema, &table.name);
    let cols = &payload.columns;
    let mut dml = if cols.is_empty() {
        format!("INSERT INTO {target} SELECT FROM json_array_elements({p})")
    } else {
        let list: Vec<String> = cols.iter().map(|c| ident(c)).collect();
        let def = record_def(table, cols);
        let missing_default = payload.from_columns_param && prefs.missing_default == Some(true);
        if missing_default {
            let mut exprs = Vec::new();
            for c in cols {
                let key = g.sql.param(c.clone());
                let default = table
                    .column(c)
                    .and_then(|col| col.default.clone())
                    .unwrap_or_else(|| "NULL".into());
                exprs.push(format!(
                    "CASE WHEN (pgrst_elem.value)::jsonb ? {key} THEN pgrst_body.{} ELSE {default} END",
                    ident(c)
                ));
            }
            format!(
                "INSERT INTO {target}({}) SELECT {} FROM json_array_elements({p}) AS pgrst_elem CROSS JOIN LATERAL json_to_record(pgrst_elem.value) AS pgrst_body({def})",
                list.join(", "),
                exprs.join(", ")
            )
        } else {
            let sel: Vec<String> = cols
                .iter()
                .map(|c| format!("pgrst_body.{}", ident(c)))
                .collect();
            format!(
                "INSERT INTO {target}({}) SELECT {} FROM json_to_recordset({p}) AS pgrst_body({def})",
                list.join(", "),
                sel.join(", ")
            )
        }
    };
    if let (Some(res), Some(conf)) = (resolution, &conflict) {
        let conf_list: Vec<String> = conf.iter().map(|c| ident(c)).collect();
        match res {
            Resolution::MergeDuplicates if !cols.is_empty() => {
                let sets: Vec<String> = cols
                    .iter()
                    .map(|c| format!("{} = EXCLUDED.{}", ident(c), ident(c)))
                    .collect();
                dml.push_str(&format!(
                    " ON CONFLICT({}) DO UPDATE SET {}",
                    conf_list.join(", "),
                    sets.join(", ")
                ));
            }
            _ => dml.push_str(&format!(
                " ON CONFLICT({}) DO NOTHING",
                conf_list.join(", ")
            )),
        }
    }
    let track_inserted = merge && matches!(table.kind.as_str(), "r" | "p");
    let rep_node = (ret == Return::Representation)
        .then(|| representation_node(cache, table, q))
        .transpose()?;
    let mut returning = returning_list(table, rep_node.as_ref(), ret == Return::HeadersOnly);
    if track_inserted {
        returning.push_str(&format!(", ({target}.xmax = 0) AS pgrst_inserted"));
    }
    dml.push_str(&format!(" RETURNING {returning}"));
    let rep = rep_node.as_ref().map(|n| representation_sql(n, &mut g));
    let location_pk = (ret == Return::HeadersOnly).then_some(table.pk.as_slice());
    let text = write_outer(&dml, rep, media, track_inserted, location_pk);
    Ok(Prepared {
        sql: text,
        params: sql,
        read_only: false,
        kind: Kind::Insert {
            merge: track_inserted,
            echo_resolution,
            pk: table.pk.clone(),
            put: false,
        },
        tx_settings: Vec::new(),
    })
}

/// PATCH on a table.
pub fn update(
    cache: &SchemaCache,
    table: &Table,
    q: &QueryParams,
    body: &[u8],
    prefs: &Prefs,
    media: Media,
) -> Result<Prepared, ApiError> {
    let payload = parse_payload(body, q, false)?;
    check_columns(table, &payload.columns)?;
    let ret = prefs.ret.unwrap_or(Return::Minimal);
    let mut sql = Sql::default();
    let mut g = Gen::new(&mut sql);
    let target = qualified(&table.schema, &table.name);
    let rep_node = (ret == Return::Representation)
        .then(|| representation_node(cache, table, q))
        .transpose()?;
    let returning = returning_list(table, rep_node.as_ref(), false);
    let dml = if payload.columns.is_empty() {
        // `{}` updates nothing.
        format!("SELECT {returning} FROM {target} WHERE false")
    } else {
        let row = payload.rows.into_iter().next().unwrap_or_default();
        let missing_default = payload.from_columns_param && prefs.missing_default == Some(true);
        let sets: Vec<String> = payload
            .columns
            .iter()
            .map(|c| {
                if missing_default && !row.contains_key(c) {
                    format!("{} = DEFAULT", ident(c))
                } else {
                    format!("{} = pgrst_body.{}", ident(c), ident(c))
                }
            })
            .collect();
        let p = g.sql.param(payload.raw.clone());
        let def = record_def(table, &payload.columns);
        let conds = mutation_conditions(table, q, &mut g);
        format!(
            "UPDATE {target} SET {} FROM json_to_record({p}) AS pgrst_body({def}){conds} RETURNING {returning}",
            sets.join(", ")
        )
    };
    let rep = rep_node.as_ref().map(|n| representation_sql(n, &mut g));
    let text = write_outer(&dml, rep, media, false, None);
    Ok(Prepared {
        sql: text,
        params: sql,
        read_only: false,
        kind: Kind::Update,
        tx_settings: Vec::new(),
    })
}

/// DELETE on a table.
pub fn delete(
    cache: &SchemaCache,
    table: &Table,
    q: &QueryParams,
    prefs: &Prefs,
    media: Media,
) -> Result<Prepared, ApiError> {
    let ret = prefs.ret.unwrap_or(Return::Minimal);
    let mut sql = Sql::default();
    let mut g = Gen::new(&mut sql);
    let target = qualified(&table.schema, &table.name);
    let rep_node = (ret == Return::Representation)
        .then(|| representation_node(cache, table, q))
        .transpose()?;
    let returning = returning_list(table, rep_node.as_ref(), false);
    let conds = mutation_conditions(table, q, &mut g);
    let dml = format!("DELETE FROM {target}{conds} RETURNING {returning}");
    let rep = rep_node.as_ref().map(|n| representation_sql(n, &mut g));
    let text = write_outer(&dml, rep, media, false, None);
    Ok(Prepared {
        sql: text,
        params: sql,
        read_only: false,
        kind: Kind::Delete,
        tx_settings: Vec::new(),
    })
}

// ------------------------------------------------------------------------------------------
// RPC
// ------------------------------------------------------------------------------------------

/// How the arguments of a call arrive.
pub enum CallArgs {
    /// POST: a JSON body (object, or any JSON for a single unnamed json parameter), parsed and
    /// as sent.
    Json(Value, String),
    /// GET/HEAD: query-string arguments.
    Query(Vec<(String, String)>),
}

fn arg_list_text(names: &[String]) -> String {
    names.join(", ")
}

fn no_function(
    cache: &SchemaCache,
    schema: &str,
    name: &str,
    keys: &[String],
    json_body: bool,
) -> ApiError {
    let qn = format!("{schema}.{name}");
    let (message, searched) = if keys.is_empty() {
        (
            format!("Could not find the function {qn} without parameters in the schema cache"),
            format!("Searched for the function {qn} without parameters"),
        )
    } else {
        let plural = if keys.len() == 1 {
            "parameter"
        } else {
            "parameters"
        };
        (
            format!(
                "Could not find the function {qn}({}) in the schema cache",
                arg_list_text(keys)
            ),
            format!(
                "Searched for the function {qn} with {plural} {}",
                arg_list_text(keys)
            ),
        )
    };
    let details = if json_body {
        format!("{searched} or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.")
    } else {
        format!("{searched}, but no matches were found in the schema cache.")
    };
    let hint = match cache.functions.get(&(schema.to_string(), name.to_string())) {
        Some(fs) => fs.first().map(|f| {
            let names: Vec<String> = f
                .in_args()
                .iter()
                .map(|a| a.name.clone())
                .filter(|n| !n.is_empty())
                .collect();
            if names.is_empty() {
                format!("Perhaps you meant to call the function {qn}")
            } else {
                let mut sorted = names;
                sorted.sort();
                format!(
                    "Perhaps you meant to call the function {qn}({})",
                    sorted.join(", ")
                )
            }
        }),
        None => {
            let names = cache
                .functions
                .keys()
                .filter(|(s, _)| s == schema)
                .map(|(_, n)| n.as_str());
            best_match(name, names)
                .map(|n| format!("Perhaps you meant to call the function {schema}.{n}"))
        }
    };
    ApiError::new(404, "PGRST202", message)
        .details(details)
        .hint_opt(hint)
}

/// Chooses the function for a set of argument names (PGRST202/PGRST203).
pub fn find_function<'c>(
    cache: &'c SchemaCache,
    schema: &str,
    name: &str,
    keys: &[String],
    json_body: bool,
) -> Result<(&'c Function, bool), ApiError> {
    let cands: &'c [Function] = cache
        .functions
        .get(&(schema.to_string(), name.to_string()))
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let keyset: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
    let matching: Vec<&Function> = cands
        .iter()
        .filter(|f| {
            let ins = f.in_args();
            let names: BTreeSet<&str> = ins.iter().map(|a| a.name.as_str()).collect();
            keyset.iter().all(|k| names.contains(k))
                && f.required_args()
                    .iter()
                    .all(|a| keyset.contains(a.name.as_str()))
        })
        .collect();
    let chosen: Vec<&Function> = if matching.len() > 1 {
        let exact: Vec<&Function> = matching
            .iter()
            .copied()
            .filter(|f| f.in_args().len() == keyset.len())
            .collect();
        if exact.len() == 1 {
            exact
        } else {
            matching
        }
    } else {
        matching
    };
    match chosen.len() {
        1 => return Ok((chosen[0], false)),
        0 => {}
        _ => {
            let descr: Vec<String> = chosen
                .iter()
                .map(|f| {
                    let args: Vec<String> = f
                        .in_args()
                        .iter()
                        .map(|a| format!("{} => {}", a.name, a.sql_type))
                        .collect();
                    format!("{schema}.{name}({})", args.join(", "))
                })
                .collect();
            return Err(ApiError::new(
                300,
                "PGRST203",
                format!(
                    "Could not choose the best candidate function between: {}",
                    descr.join(", ")
                ),
            )
            .hint("Try renaming the parameters or the function itself in the database so function overloading can be resolved"));
        }
    }
    if json_body {
        let single: Vec<&Function> = cands
            .iter()
            .filter(|f| {
                let ins = f.in_args();
                ins.len() == 1
                    && ins[0].name.is_empty()
                    && matches!(ins[0].sql_type.as_str(), "json" | "jsonb")
            })
            .collect();
        if single.len() == 1 {
            return Ok((single[0], true));
        }
    }
    Err(no_function(cache, schema, name, keys, json_body))
}

/// A function call (`/rpc/<fn>`).
#[allow(clippy::too_many_arguments)]
pub fn call(
    cache: &SchemaCache,
    schema: &str,
    name: &str,
    args: CallArgs,
    q: &QueryParams,
    range: Option<(i64, Option<i64>)>,
    prefs: &Prefs,
    media: Media,
    head: bool,
    read_only_method: bool,
) -> Result<Prepared, ApiError> {
    let (keys, json_body): (Vec<String>, bool) = match &args {
        CallArgs::Json(Value::Object(m), _) => {
            let mut k: Vec<String> = m.keys().cloned().collect();
            if let Some(cols) = &q.columns {
                k.retain(|x| cols.contains(x));
            }
            k.sort();
            (k, true)
        }
        CallArgs::Json(..) => (Vec::new(), true),
        CallArgs::Query(a) => {
            let mut k: Vec<String> = a.iter().map(|(k, _)| k.clone()).collect();
            k.sort();
            k.dedup();
            (k, false)
        }
    };
    if let CallArgs::Json(v, _) = &args {
        if !v.is_object() {
            // Only a single unnamed json/jsonb parameter can take a non-object body.
            let (f, whole) = find_function(cache, schema, name, &[], true)?;
            if !whole {
                return Err(ApiError::new(400, "PGRST102", "Empty or invalid json"));
            }
            let _ = f;
        }
    }
    let (func, whole_body) = find_function(cache, schema, name, &keys, json_body)?;
    let mut sql = Sql::default();
    let mut g = Gen::new(&mut sql);
    let fname = qualified(schema, name);
    let mut from_body = String::new();
    let call_args: Vec<String> = if whole_body {
        let body = match &args {
            CallArgs::Json(_, raw) => raw.clone(),
            CallArgs::Query(_) => "{}".into(),
        };
        let ty = func
            .in_args()
            .first()
            .map(|a| a.sql_type.clone())
            .unwrap_or_else(|| "json".into());
        let p = g.sql.param(body);
        vec![format!("{p}::{ty}")]
    } else {
        let ins = func.in_args();
        match &args {
            CallArgs::Json(Value::Object(_), raw) => {
                let used: Vec<&&super::schema::FuncArg> =
                    ins.iter().filter(|a| keys.contains(&a.name)).collect();
                if used.is_empty() {
                    Vec::new()
                } else {
                    // json_to_record reads only the declared keys, so the raw body fits as is.
                    let p = g.sql.param(raw.clone());
                    let def: Vec<String> = used
                        .iter()
                        .map(|a| format!("{} {}", ident(&a.name), a.sql_type))
                        .collect();
                    from_body = format!("json_to_record({p}) AS pgrst_body({})", def.join(", "));
                    used.iter()
                        .map(|a| {
                            let v = if a.mode == "v" { "VARIADIC " } else { "" };
                            format!("{v}{} := pgrst_body.{}", ident(&a.name), ident(&a.name))
                        })
                        .collect()
                }
            }
            CallArgs::Query(pairs) => {
                let mut out = Vec::new();
                for a in ins.iter().filter(|a| keys.contains(&a.name)) {
                    let vals: Vec<&String> = pairs
                        .iter()
                        .filter(|(k, _)| *k == a.name)
                        .map(|(_, v)| v)
                        .collect();
                    if a.mode == "v" {
                        let items: Vec<String> = vals.iter().map(|s| s.to_string()).collect();
                        let p = g.sql.param(super::sql::array_literal(&items));
                        out.push(format!(
                            "VARIADIC {} := {p}::{}",
                            ident(&a.name),
                            a.sql_type
                        ));
                    } else if let Some(v) = vals.last() {
                        let p = g.sql.param(v.to_string());
                        out.push(format!("{} := {p}::{}", ident(&a.name), a.sql_type));
                    }
                }
                out
            }
            CallArgs::Json(..) => Vec::new(),
        }
    };
    let invocation = format!("{fname}({})", call_args.join(", "));
    let composite = func.is_composite();
    let void = func.is_void();
    let source = if composite {
        if from_body.is_empty() {
            format!("SELECT pgrst_call.* FROM {invocation} AS pgrst_call")
        } else {
            format!("SELECT pgrst_call.* FROM {from_body} CROSS JOIN LATERAL {invocation} AS pgrst_call")
        }
    } else if from_body.is_empty() {
        format!("SELECT {invocation} AS pgrst_scalar")
    } else {
        format!("SELECT {invocation} AS pgrst_scalar FROM {from_body}")
    };
    let range = if read_only_method { range } else { None };
    let (offset, limit) = top_range(q, range)?;
    let src = Source {
        from: "pgrst_source".into(),
        qual: ident("pgrst_source"),
        star: Star::Native,
    };
    let (read_sql, body, count_sql) = if composite {
        let meta = match (&func.retschema, &func.retrel) {
            (Some(s), Some(r)) if EXPOSED_SCHEMAS.contains(&s.as_str()) => cache.table(s, r),
            _ => None,
        };
        let rel_name = func.retrel.clone().unwrap_or_else(|| name.to_string());
        let items = root_items(q);
        let mut node = build_node(cache, schema, &rel_name, meta, &items)?;
        attach(&mut node, q, false)?;
        if func.retset {
            node.offset = Some(offset);
            node.limit = limit;
        }
        let read = g.select_sql(&node, &src, Vec::new(), 0, true);
        let count = prefs.count.as_ref().map(|_| g.count_sql(&node, &src));
        let body = if func.retset {
            body_expr(media, "_postgrest_t", !head)
        } else if head {
            "NULL".to_string()
        } else {
            let b = "coalesce(json_agg(_postgrest_t)->0, 'null')".to_string();
            if media.strip_nulls {
                format!("json_strip_nulls({b})")
            } else {
                b
            }
        };
        (read, body, count)
    } else {
        let mut read = "SELECT pgrst_source.pgrst_scalar FROM pgrst_source".to_string();
        if func.retset {
            if let Some(l) = limit {
                read.push_str(&format!(" LIMIT {l}"));
            }
            if offset > 0 {
                read.push_str(&format!(" OFFSET {offset}"));
            }
        }
        let body = if void || head {
            "NULL".to_string()
        } else if func.retset && !media.singular {
            "coalesce(json_agg(_postgrest_t.pgrst_scalar), '[]')".to_string()
        } else {
            "coalesce(json_agg(_postgrest_t.pgrst_scalar)->0, 'null')".to_string()
        };
        let count = prefs
            .count
            .as_ref()
            .map(|_| "SELECT 1 FROM pgrst_source".to_string());
        (read, body, count)
    };
    let (count_cte, total) = match count_sql {
        Some(c) => (
            format!(", pgrst_source_count AS ({c})"),
            "(SELECT pg_catalog.count(*) FROM pgrst_source_count)".to_string(),
        ),
        None => (String::new(), "NULL".to_string()),
    };
    let text = format!(
        "WITH pgrst_source AS ({source}){count_cte} SELECT {total}::bigint AS total_result_set, pg_catalog.count(_postgrest_t)::bigint AS page_total, {body}::text AS body, NULL::bigint AS inserted, NULL::text AS location, {OUTER_TAIL} FROM ({read_sql}) _postgrest_t"
    );
    Ok(Prepared {
        sql: text,
        params: sql,
        read_only: read_only_method || func.is_read_only(),
        kind: Kind::Call {
            offset: if func.retset { offset } else { 0 },
            void,
        },
        tx_settings: func.hoisted_settings(),
    })
}
