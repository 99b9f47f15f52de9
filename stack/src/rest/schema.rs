//! The schema cache: tables, views, columns, keys, foreign-key relationships and functions of
//! the exposed schemas, read from `pg_catalog` in one query, and relationship resolution
//! (`findRel` of PostgREST) for embedding.

use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

use super::error::ApiError;

/// The schemas the API exposes (Supabase's `[api] schemas`).
pub const EXPOSED_SCHEMAS: &[&str] = &["public"];

/// A column.
#[derive(Debug, Clone, Deserialize)]
pub struct Column {
    /// Name.
    pub name: String,
    /// `format_type(atttypid, atttypmod)`, e.g. `character varying(20)`.
    #[serde(rename = "type")]
    pub sql_type: String,
    /// `pg_type.typname` of the column's type.
    pub typname: String,
    /// `pg_type.typcategory` (`A` array, `C` composite, …).
    pub category: String,
    /// Whether NULL is allowed (kept for completeness of the cache).
    #[allow(dead_code)]
    pub nullable: bool,
    /// The DEFAULT expression as PostgreSQL prints it.
    pub default: Option<String>,
}

/// A table, view, materialized view or foreign table.
#[derive(Debug, Clone, Deserialize)]
pub struct Table {
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// `relkind`.
    pub kind: String,
    /// Columns in table order.
    pub columns: Vec<Column>,
    /// Primary-key columns (empty when none).
    pub pk: Vec<String>,
    /// Column sets of unique constraints and unique indexes.
    pub uniques: Vec<Vec<String>>,
}

impl Table {
    /// True for tables (as opposed to views).
    pub fn is_table(&self) -> bool {
        matches!(self.kind.as_str(), "r" | "p" | "f")
    }

    /// Looks up a column.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    fn is_unique_set(&self, cols: &[String]) -> bool {
        let same =
            |set: &Vec<String>| set.len() == cols.len() && set.iter().all(|c| cols.contains(c));
        (!self.pk.is_empty() && same(&self.pk)) || self.uniques.iter().any(same)
    }
}

/// A foreign key.
#[derive(Debug, Clone, Deserialize)]
pub struct ForeignKey {
    /// Constraint name.
    pub name: String,
    /// Schema of the referencing table.
    pub schema: String,
    /// Referencing table.
    pub table: String,
    /// Referencing columns.
    pub cols: Vec<String>,
    /// Schema of the referenced table.
    pub fschema: String,
    /// Referenced table.
    pub ftable: String,
    /// Referenced columns.
    pub fcols: Vec<String>,
}

/// A function argument.
#[derive(Debug, Clone, Deserialize)]
pub struct FuncArg {
    /// Name (`""` when unnamed).
    pub name: String,
    /// `format_type` of the type.
    #[serde(rename = "type")]
    pub sql_type: String,
    /// `i`, `o`, `b`, `v` or `t`.
    pub mode: String,
}

/// A function of an exposed schema.
#[derive(Debug, Clone, Deserialize)]
pub struct Function {
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// All arguments, IN and OUT, in order.
    pub args: Vec<FuncArg>,
    /// How many trailing input arguments have defaults.
    pub ndefaults: i64,
    /// `format_type` of the return type (kept for completeness of the cache).
    #[allow(dead_code)]
    pub rettype: String,
    /// `pg_type.typname` of the return type.
    pub rettypname: String,
    /// `pg_type.typtype` of the return type (`c` composite, `p` pseudo, …).
    pub rettyptype: String,
    /// SETOF.
    pub retset: bool,
    /// The schema of the table whose row type is returned.
    pub retschema: Option<String>,
    /// The table whose row type is returned.
    pub retrel: Option<String>,
    /// `i`, `s` or `v`.
    pub volatility: String,
    /// The function's `SET` clauses (`proconfig`, `name=value`).
    #[serde(default)]
    pub config: Vec<String>,
}

/// Function settings PostgREST applies to the whole transaction (`db-hoisted-tx-settings`).
pub const HOISTED_SETTINGS: [&str; 3] = [
    "statement_timeout",
    "plan_filter.statement_cost_limit",
    "default_transaction_isolation",
];

impl Function {
    /// The function's settings that PostgREST hoists to the transaction, as (name, value).
    pub fn hoisted_settings(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .filter_map(|c| c.split_once('='))
            .filter(|(k, _)| HOISTED_SETTINGS.contains(k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Input arguments (IN, INOUT, VARIADIC).
    pub fn in_args(&self) -> Vec<&FuncArg> {
        self.args
            .iter()
            .filter(|a| matches!(a.mode.as_str(), "i" | "b" | "v"))
            .collect()
    }

    /// Input arguments that must be given (those without defaults).
    pub fn required_args(&self) -> Vec<&FuncArg> {
        let ins = self.in_args();
        let n = ins
            .len()
            .saturating_sub(usize::try_from(self.ndefaults).unwrap_or(0));
        ins.into_iter().take(n).collect()
    }

    /// True when the function returns `void`.
    pub fn is_void(&self) -> bool {
        self.rettypname == "void" && !self.retset
    }

    /// True when the result is a row type (a table type, composite, or OUT parameters).
    pub fn is_composite(&self) -> bool {
        self.rettyptype == "c"
            || (self.rettypname == "record"
                && self
                    .args
                    .iter()
                    .any(|a| matches!(a.mode.as_str(), "o" | "b" | "t")))
    }

    /// True for STABLE or IMMUTABLE functions.
    pub fn is_read_only(&self) -> bool {
        self.volatility != "v"
    }
}

/// Cardinality of a relationship seen from its origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cardinality {
    /// The origin holds the FK.
    ManyToOne,
    /// The target holds the FK.
    OneToMany,
    /// An FK that is also PK/UNIQUE, from either side.
    OneToOne,
    /// Through a junction table.
    ManyToMany,
}

impl Cardinality {
    fn label(self) -> &'static str {
        match self {
            Cardinality::ManyToOne => "many-to-one",
            Cardinality::OneToMany => "one-to-many",
            Cardinality::OneToOne => "one-to-one",
            Cardinality::ManyToMany => "many-to-many",
        }
    }
}

/// A junction table of a many-to-many relationship.
#[derive(Debug, Clone)]
pub struct Junction {
    /// Junction table name.
    pub table: String,
    /// FK from the junction to the origin.
    pub fk_origin: ForeignKey,
    /// FK from the junction to the target.
    pub fk_target: ForeignKey,
}

/// A relationship from `origin` to `target`.
#[derive(Debug, Clone)]
pub struct Relationship {
    /// Origin table.
    pub origin: String,
    /// Target table.
    pub target: String,
    /// Constraint name (of the FK on the origin side for M2M).
    pub constraint: String,
    /// Cardinality.
    pub card: Cardinality,
    /// Pairs (origin column, target column) to join on (empty for M2M).
    pub pairs: Vec<(String, String)>,
    /// True when the origin holds the FK (many-to-one, or the FK side of one-to-one).
    pub origin_holds_fk: bool,
    /// Junction for many-to-many.
    pub junction: Option<Junction>,
}

impl Relationship {
    /// Whether the embed is a JSON object (to-one) rather than an array.
    pub fn to_one(&self) -> bool {
        matches!(self.card, Cardinality::ManyToOne | Cardinality::OneToOne)
    }

    fn origin_cols(&self) -> Vec<String> {
        self.pairs.iter().map(|p| p.0.clone()).collect()
    }

    fn target_cols(&self) -> Vec<String> {
        self.pairs.iter().map(|p| p.1.clone()).collect()
    }

    fn describe(&self, schema: &str) -> Value {
        let rel = match &self.junction {
            Some(j) => format!(
                "{}.{}.{} using {}({}) and {}({})",
                schema,
                j.table,
                self.constraint,
                self.origin,
                j.fk_origin.fcols.join(", "),
                self.target,
                j.fk_target.fcols.join(", ")
            ),
            None => format!(
                "{} using {}({}) and {}({})",
                self.constraint,
                self.origin,
                self.origin_cols().join(", "),
                self.target,
                self.target_cols().join(", ")
            ),
        };
        json!({
            "cardinality": self.card.label(),
            "embedding": format!("{} with {}", self.origin, self.target),
            "relationship": rel,
        })
    }
}

/// Everything the gateway knows about the database.
#[derive(Debug, Default)]
pub struct SchemaCache {
    /// Tables and views by (schema, name).
    pub tables: HashMap<(String, String), Table>,
    /// Foreign keys between exposed tables.
    pub fks: Vec<ForeignKey>,
    /// Functions by (schema, name); overloads share a key.
    pub functions: HashMap<(String, String), Vec<Function>>,
}

#[derive(Deserialize)]
struct Raw {
    tables: Vec<Table>,
    fks: Vec<ForeignKey>,
    functions: Vec<Function>,
}

/// The catalog query. It returns one `text` value holding the whole cache as JSON.
const CACHE_QUERY: &str = r#"
with exposed as (select unnest($1::text[]) as nspname)
select json_build_object(
 'tables', coalesce((
   select json_agg(json_build_object(
     'schema', n.nspname, 'name', c.relname, 'kind', c.relkind,
     'columns', coalesce((
        select json_agg(json_build_object(
          'name', a.attname,
          'type', format_type(a.atttypid, a.atttypmod),
          'typname', t.typname,
          'category', t.typcategory,
          'nullable', not a.attnotnull,
          'default', case
             when a.attidentity in ('a', 'd') then
               format('nextval(%L::regclass)', pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname))
             when a.attgenerated <> '' then null
             else pg_get_expr(d.adbin, d.adrelid) end
        ) order by a.attnum)
        from pg_attribute a
        join pg_type t on t.oid = a.atttypid
        left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), '[]'),
     'pk', coalesce((
        select json_agg(a.attname order by k.ord)
        from pg_constraint co
        cross join lateral unnest(co.conkey) with ordinality k(attnum, ord)
        join pg_attribute a on a.attrelid = co.conrelid and a.attnum = k.attnum
        where co.conrelid = c.oid and co.contype = 'p'), '[]'),
     'uniques', coalesce((
        select json_agg(u.cols)
        from (
          select (select json_agg(a.attname order by k.ord)
                  from unnest(i.indkey::int2[]) with ordinality k(attnum, ord)
                  join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum) as cols
          from pg_index i
          where i.indrelid = c.oid and i.indisunique and i.indpred is null and i.indexprs is null
        ) u where u.cols is not null), '[]')
   ) order by n.nspname, c.relname)
   from pg_class c
   join pg_namespace n on n.oid = c.relnamespace
   where n.nspname in (select nspname from exposed)
     and c.relkind in ('r', 'v', 'm', 'f', 'p')
     and not c.relispartition), '[]'),
 'fks', coalesce((
   select json_agg(json_build_object(
     'name', co.conname,
     'schema', n1.nspname, 'table', c1.relname,
     'cols', (select json_agg(a.attname order by k.ord)
              from unnest(co.conkey) with ordinality k(attnum, ord)
              join pg_attribute a on a.attrelid = co.conrelid and a.attnum = k.attnum),
     'fschema', n2.nspname, 'ftable', c2.relname,
     'fcols', (select json_agg(a.attname order by k.ord)
               from unnest(co.confkey) with ordinality k(attnum, ord)
               join pg_attribute a on a.attrelid = co.confrelid and a.attnum = k.attnum)
   ) order by co.conname)
   from pg_constraint co
   join pg_class c1 on c1.oid = co.conrelid
   join pg_namespace n1 on n1.oid = c1.relnamespace
   join pg_class c2 on c2.oid = co.confrelid
   join pg_namespace n2 on n2.oid = c2.relnamespace
   where co.contype = 'f'
     and n1.nspname in (select nspname from exposed)
     and n2.nspname in (select nspname from exposed)), '[]'),
 'functions', coalesce((
   select json_agg(json_build_object(
     'schema', n.nspname, 'name', p.proname,
     'args', coalesce((
        select json_agg(json_build_object(
          'name', coalesce(p.proargnames[i.ord], ''),
          'type', format_type(i.typ, null),
          'mode', coalesce(p.proargmodes[i.ord]::text, 'i')
        ) order by i.ord)
        from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) with ordinality i(typ, ord)), '[]'),
     'ndefaults', p.pronargdefaults,
     'rettype', format_type(p.prorettype, null),
     'rettypname', t.typname,
     'rettyptype', t.typtype,
     'retset', p.proretset,
     'retschema', rn.nspname,
     'retrel', rc.relname,
     'volatility', p.provolatile,
     'config', coalesce(p.proconfig, '{}')
   ) order by p.proname, p.oid)
   from pg_proc p
   join pg_namespace n on n.oid = p.pronamespace
   join pg_type t on t.oid = p.prorettype
   left join pg_class rc on rc.oid = t.typrelid and rc.relkind in ('r', 'v', 'm', 'f', 'p')
   left join pg_namespace rn on rn.oid = rc.relnamespace
   where n.nspname in (select nspname from exposed)
     and p.prokind = 'f'), '[]')
)::text
"#;

impl SchemaCache {
    /// Reads the cache from the database.
    pub async fn load(client: &tokio_postgres::Client) -> Result<SchemaCache, String> {
        let schemas = format!(
            "{{{}}}",
            EXPOSED_SCHEMAS
                .iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        let sql = CACHE_QUERY.replace("$1::text[]", &format!("'{schemas}'::text[]"));
        let row = client
            .query_one(sql.as_str(), &[])
            .await
            .map_err(|e| e.to_string())?;
        let text: String = row.try_get(0).map_err(|e| e.to_string())?;
        let raw: Raw = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        Ok(SchemaCache::from_parts(raw.tables, raw.fks, raw.functions))
    }

    /// Builds a cache from its parts (also used by unit tests).
    pub fn from_parts(tables: Vec<Table>, fks: Vec<ForeignKey>, functions: Vec<Function>) -> Self {
        let mut cache = SchemaCache::default();
        for t in tables {
            cache.tables.insert((t.schema.clone(), t.name.clone()), t);
        }
        cache.fks = fks;
        for f in functions {
            cache
                .functions
                .entry((f.schema.clone(), f.name.clone()))
                .or_default()
                .push(f);
        }
        cache
    }

    /// Looks up a table or view.
    pub fn table(&self, schema: &str, name: &str) -> Option<&Table> {
        self.tables.get(&(schema.to_string(), name.to_string()))
    }

    /// PGRST205 for a missing table, with a fuzzy suggestion.
    pub fn table_not_found(&self, schema: &str, name: &str) -> ApiError {
        let candidates = self
            .tables
            .keys()
            .filter(|(s, _)| s == schema)
            .map(|(_, n)| n.as_str());
        let hint = best_match(name, candidates)
            .map(|n| format!("Perhaps you meant the table '{schema}.{n}'"));
        ApiError::new(
            404,
            "PGRST205",
            format!("Could not find the table '{schema}.{name}' in the schema cache"),
        )
        .hint_opt(hint)
    }

    /// All relationships whose origin is `schema.origin`.
    pub fn relationships(&self, schema: &str, origin: &str) -> Vec<Relationship> {
        let mut out = Vec::new();
        for fk in &self.fks {
            if fk.schema != schema || fk.fschema != schema {
                continue;
            }
            let pairs: Vec<(String, String)> = fk
                .cols
                .iter()
                .cloned()
                .zip(fk.fcols.iter().cloned())
                .collect();
            let fk_unique = self
                .table(&fk.schema, &fk.table)
                .is_some_and(|t| t.is_unique_set(&fk.cols));
            if fk.table == origin {
                out.push(Relationship {
                    origin: origin.to_string(),
                    target: fk.ftable.clone(),
                    constraint: fk.name.clone(),
                    card: if fk_unique {
                        Cardinality::OneToOne
                    } else {
                        Cardinality::ManyToOne
                    },
                    pairs: pairs.clone(),
                    origin_holds_fk: true,
                    junction: None,
                });
            }
            if fk.ftable == origin {
                out.push(Relationship {
                    origin: origin.to_string(),
                    target: fk.table.clone(),
                    constraint: fk.name.clone(),
                    card: if fk_unique {
                        Cardinality::OneToOne
                    } else {
                        Cardinality::OneToMany
                    },
                    pairs: pairs.iter().map(|(a, b)| (b.clone(), a.clone())).collect(),
                    origin_holds_fk: false,
                    junction: None,
                });
            }
        }
        // many-to-many: a junction table whose FKs point at the origin and at a target, and
        // whose primary key (or a unique set) holds the columns of both FKs.
        for j in self.tables.values().filter(|t| t.schema == schema) {
            let jfks: Vec<&ForeignKey> = self
                .fks
                .iter()
                .filter(|f| f.schema == schema && f.table == j.name && f.fschema == schema)
                .collect();
            for a in &jfks {
                if a.ftable != origin {
                    continue;
                }
                for b in &jfks {
                    if std::ptr::eq(*a, *b) {
                        continue;
                    }
                    let covers = |set: &Vec<String>| {
                        a.cols.iter().chain(b.cols.iter()).all(|c| set.contains(c))
                    };
                    if !(covers(&j.pk) || j.uniques.iter().any(covers)) {
                        continue;
                    }
                    out.push(Relationship {
                        origin: origin.to_string(),
                        target: b.ftable.clone(),
                        constraint: b.name.clone(),
                        card: Cardinality::ManyToMany,
                        pairs: Vec::new(),
                        origin_holds_fk: false,
                        junction: Some(Junction {
                            table: j.name.clone(),
                            fk_origin: (*a).clone(),
                            fk_target: (*b).clone(),
                        }),
                    });
                }
            }
        }
        out
    }

    /// Resolves `target[!hint]` from `origin` (PostgREST's `findRel`): PGRST200 when nothing
    /// matches, PGRST201 when several do.
    pub fn find_rel(
        &self,
        schema: &str,
        origin: &str,
        target: &str,
        hint: Option<&str>,
    ) -> Result<Relationship, ApiError> {
        let origin_is_view = self.table(schema, origin).is_some_and(|t| !t.is_table());
        let rels = self.relationships(schema, origin);
        let matches_target = |r: &Relationship| {
            let self_rel = r.origin == r.target;
            let by_table =
                r.target == target && (!self_rel || !r.origin_holds_fk || r.junction.is_some());
            let by_constraint = !origin_is_view && r.constraint == target && r.junction.is_none();
            let by_column = !origin_is_view
                && r.origin_holds_fk
                && r.pairs.len() == 1
                && r.pairs[0].0 == target;
            by_table || by_constraint || by_column
        };
        let matches_hint = |r: &Relationship| match hint {
            None => true,
            Some(h) => {
                r.constraint == h
                    || (r.pairs.len() == 1 && (r.pairs[0].0 == h || r.pairs[0].1 == h))
                    || r.junction.as_ref().is_some_and(|j| {
                        j.table == h || j.fk_origin.name == h || j.fk_target.name == h
                    })
            }
        };
        let found: Vec<Relationship> = rels
            .iter()
            .filter(|r| matches_target(r) && matches_hint(r))
            .cloned()
            .collect();
        if found.len() == 1 {
            if let Some(r) = found.into_iter().next() {
                return Ok(r);
            }
            return Err(ApiError::internal("relationship lookup"));
        }
        match found.len() {
            0 => {
                let using = hint
                    .map(|h| format!(" using the hint '{h}'"))
                    .unwrap_or_default();
                let suggestion = if hint.is_none() {
                    let names: Vec<&str> = rels.iter().map(|r| r.target.as_str()).collect();
                    best_match(target, names.into_iter())
                        .map(|n| format!("Perhaps you meant '{n}' instead of '{target}'."))
                } else {
                    None
                };
                Err(ApiError::new(
                    400,
                    "PGRST200",
                    format!(
                        "Could not find a relationship between '{origin}' and '{target}' in the schema cache"
                    ),
                )
                .details(format!(
                    "Searched for a foreign key relationship between '{origin}' and '{target}'{using} in the schema '{schema}', but no matches were found."
                ))
                .hint_opt(suggestion))
            }
            _ => {
                let details: Vec<Value> = found.iter().map(|r| r.describe(schema)).collect();
                let options: Vec<String> = found
                    .iter()
                    .map(|r| {
                        let h = r
                            .junction
                            .as_ref()
                            .map(|j| j.table.clone())
                            .unwrap_or_else(|| r.constraint.clone());
                        format!("'{target}!{h}'")
                    })
                    .collect();
                Err(ApiError::new(
                    300,
                    "PGRST201",
                    format!(
                        "Could not embed because more than one relationship was found for '{origin}' and '{target}'"
                    ),
                )
                .details_json(Value::Array(details))
                .hint(format!(
                    "Try changing '{target}' to one of the following: {}. Find the desired relationship in the 'details' key.",
                    options.join(", ")
                )))
            }
        }
    }
}

/// Similarity in [0, 1] from the Levenshtein distance.
fn similarity(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let max = a.len().max(b.len());
    if max == 0 {
        return 1.0;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    1.0 - prev[b.len()] as f64 / max as f64
}

/// The closest candidate, if it is close enough to be a plausible typo.
pub fn best_match<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let s = similarity(name, c);
        if best.is_none_or(|(b, n)| s > b || (s == b && c < n)) {
            best = Some((s, c));
        }
    }
    best.filter(|(s, _)| *s >= 0.7).map(|(_, n)| n.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn col(name: &str, ty: &str) -> Column {
        Column {
            name: name.into(),
            sql_type: ty.into(),
            typname: ty.into(),
            category: "N".into(),
            nullable: true,
            default: None,
        }
    }

    fn table(name: &str, cols: &[&str], pk: &[&str], uniques: &[&[&str]]) -> Table {
        Table {
            schema: "public".into(),
            name: name.into(),
            kind: "r".into(),
            columns: cols.iter().map(|c| col(c, "integer")).collect(),
            pk: pk.iter().map(|s| s.to_string()).collect(),
            uniques: uniques
                .iter()
                .map(|u| u.iter().map(|s| s.to_string()).collect())
                .collect(),
        }
    }

    fn fk(name: &str, t: &str, cols: &[&str], ft: &str, fcols: &[&str]) -> ForeignKey {
        ForeignKey {
            name: name.into(),
            schema: "public".into(),
            table: t.into(),
            cols: cols.iter().map(|s| s.to_string()).collect(),
            fschema: "public".into(),
            ftable: ft.into(),
            fcols: fcols.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A small chat-like schema for planner tests.
    pub(crate) fn sample() -> SchemaCache {
        SchemaCache::from_parts(
            vec![
                table("visitors", &["id", "name"], &["id"], &[]),
                table("agents", &["id", "name", "user_id"], &["id"], &[]),
                table(
                    "conversations",
                    &["id", "visitor_id", "agent_id", "closed_by"],
                    &["id"],
                    &[],
                ),
                table("details", &["id", "note"], &["id"], &[]),
                table("tree", &["id", "parent_id"], &["id"], &[]),
                table("tags", &["id"], &["id"], &[]),
                table(
                    "conv_tags",
                    &["conv_id", "tag_id"],
                    &["conv_id", "tag_id"],
                    &[],
                ),
            ],
            vec![
                fk(
                    "conversations_visitor_id_fkey",
                    "conversations",
                    &["visitor_id"],
                    "visitors",
                    &["id"],
                ),
                fk(
                    "conversations_agent_id_fkey",
                    "conversations",
                    &["agent_id"],
                    "agents",
                    &["id"],
                ),
                fk(
                    "conversations_closed_by_fkey",
                    "conversations",
                    &["closed_by"],
                    "agents",
                    &["id"],
                ),
                fk(
                    "details_id_fkey",
                    "details",
                    &["id"],
                    "conversations",
                    &["id"],
                ),
                fk(
                    "tree_parent_id_fkey",
                    "tree",
                    &["parent_id"],
                    "tree",
                    &["id"],
                ),
                fk(
                    "conv_tags_conv_id_fkey",
                    "conv_tags",
                    &["conv_id"],
                    "conversations",
                    &["id"],
                ),
                fk(
                    "conv_tags_tag_id_fkey",
                    "conv_tags",
                    &["tag_id"],
                    "tags",
                    &["id"],
                ),
            ],
            vec![],
        )
    }

    #[test]
    fn many_to_one_and_one_to_many() {
        let c = sample();
        let r = c
            .find_rel("public", "conversations", "visitors", None)
            .unwrap();
        assert_eq!(r.card, Cardinality::ManyToOne);
        assert!(r.to_one());
        let r = c
            .find_rel("public", "visitors", "conversations", None)
            .unwrap();
        assert_eq!(r.card, Cardinality::OneToMany);
        assert!(!r.to_one());
    }

    #[test]
    fn fk_that_is_pk_is_one_to_one() {
        let c = sample();
        let r = c
            .find_rel("public", "conversations", "details", None)
            .unwrap();
        assert_eq!(r.card, Cardinality::OneToOne);
        assert!(r.to_one());
    }

    #[test]
    fn ambiguous_embed_is_pgrst201_and_hints_resolve() {
        let c = sample();
        let e = c
            .find_rel("public", "conversations", "agents", None)
            .unwrap_err();
        assert_eq!(e.code, "PGRST201");
        assert_eq!(e.status.as_u16(), 300);
        assert_eq!(e.details.as_array().map(Vec::len), Some(2));
        assert_eq!(
            e.details[0]["relationship"],
            "conversations_agent_id_fkey using conversations(agent_id) and agents(id)"
        );
        let r = c
            .find_rel(
                "public",
                "conversations",
                "agents",
                Some("conversations_closed_by_fkey"),
            )
            .unwrap();
        assert_eq!(r.pairs, vec![("closed_by".to_string(), "id".to_string())]);
        let r = c
            .find_rel("public", "conversations", "agents", Some("agent_id"))
            .unwrap();
        assert_eq!(r.pairs[0].0, "agent_id");
        // by constraint name and by FK column name
        let r = c
            .find_rel(
                "public",
                "conversations",
                "conversations_agent_id_fkey",
                None,
            )
            .unwrap();
        assert_eq!(r.target, "agents");
        let r = c
            .find_rel("public", "conversations", "closed_by", None)
            .unwrap();
        assert_eq!(r.target, "agents");
    }

    #[test]
    fn missing_relationship_is_pgrst200() {
        let c = sample();
        let e = c
            .find_rel("public", "visitors", "agents", None)
            .unwrap_err();
        assert_eq!(e.code, "PGRST200");
        assert_eq!(
            e.message,
            "Could not find a relationship between 'visitors' and 'agents' in the schema cache"
        );
        assert_eq!(
            e.details,
            json!("Searched for a foreign key relationship between 'visitors' and 'agents' in the schema 'public', but no matches were found.")
        );
    }

    #[test]
    fn self_reference_directions() {
        let c = sample();
        let r = c.find_rel("public", "tree", "tree", None).unwrap();
        assert_eq!(r.card, Cardinality::OneToMany);
        let r = c.find_rel("public", "tree", "parent_id", None).unwrap();
        assert_eq!(r.card, Cardinality::ManyToOne);
    }

    #[test]
    fn many_to_many_through_junction() {
        let c = sample();
        let r = c.find_rel("public", "conversations", "tags", None).unwrap();
        assert_eq!(r.card, Cardinality::ManyToMany);
        assert_eq!(
            r.junction.as_ref().map(|j| j.table.as_str()),
            Some("conv_tags")
        );
    }

    #[test]
    fn fuzzy_table_hint() {
        let c = sample();
        let e = c.table_not_found("public", "visitor");
        assert_eq!(
            e.hint,
            json!("Perhaps you meant the table 'public.visitors'")
        );
        let e = c.table_not_found("public", "zzzzzzzzzzzz");
        assert_eq!(e.hint, Value::Null);
    }
}
