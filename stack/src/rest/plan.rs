//! Read plans (select + embeds + filters + order + paging) and their SQL (§7 of the spec):
//! embeds are correlated `LATERAL` subqueries, to-one embeds are `row_to_json(...)::jsonb`,
//! to-many embeds are `json_agg(...)::jsonb`.

use super::error::ApiError;
use super::parse::{
    Dir, Field, Filter, JoinType, JsonKey, Logic, Nulls, Operation, OrderTerm, Quant, SelectItem,
};
use super::query::QueryParams;
use super::schema::{Relationship, SchemaCache, Table};
use super::sql::{array_literal, ident, qualified, valid_cast, Sql};

/// Supabase's `max_rows`: caps every read node (not the RETURNING of writes).
pub const MAX_ROWS: i64 = 1000;

/// One level of a read: a table (or a CTE standing for one) with what to select from it.
#[derive(Debug, Clone)]
pub struct Node<'c> {
    /// Schema of the relation.
    pub schema: String,
    /// Relation name (for relationships and aliases).
    pub table: String,
    /// Schema-cache entry, when the relation is a known table or view.
    pub meta: Option<&'c Table>,
    /// Columns, `*`, casts and JSON paths, in select order.
    pub items: Vec<SelectItem>,
    /// Embedded resources.
    pub embeds: Vec<Embed<'c>>,
    /// Filters (ANDed).
    pub filters: Vec<Filter>,
    /// Logic trees (ANDed).
    pub logic: Vec<Logic>,
    /// Ordering.
    pub order: Vec<OrderTerm>,
    /// LIMIT.
    pub limit: Option<i64>,
    /// OFFSET.
    pub offset: Option<i64>,
}

/// An embedded resource.
#[derive(Debug, Clone)]
pub struct Embed<'c> {
    /// Output key (alias or the name as written).
    pub key: String,
    /// The name as written in `select`.
    pub name: String,
    /// The relationship used.
    pub rel: Relationship,
    /// `!inner`.
    pub inner: bool,
    /// `...rel(...)`.
    pub spread: bool,
    /// `rel()`: used only for filtering, no output key.
    pub empty: bool,
    /// The child read.
    pub node: Node<'c>,
}

impl<'c> Node<'c> {
    fn new(schema: &str, table: &str, meta: Option<&'c Table>) -> Self {
        Node {
            schema: schema.to_string(),
            table: table.to_string(),
            meta,
            items: Vec::new(),
            embeds: Vec::new(),
            filters: Vec::new(),
            logic: Vec::new(),
            order: Vec::new(),
            limit: None,
            offset: None,
        }
    }

    fn embed_index(&self, name: &str) -> Option<usize> {
        self.embeds
            .iter()
            .position(|e| e.key == name)
            .or_else(|| self.embeds.iter().position(|e| e.name == name))
    }

    fn has_column(&self, name: &str) -> bool {
        self.meta.is_some_and(|t| t.column(name).is_some())
    }
}

/// Builds the node tree of `select` over `schema.table`.
pub fn build_node<'c>(
    cache: &'c SchemaCache,
    schema: &str,
    table: &str,
    meta: Option<&'c Table>,
    items: &[SelectItem],
) -> Result<Node<'c>, ApiError> {
    let mut node = Node::new(schema, table, meta);
    for item in items {
        match item {
            SelectItem::Embed(e) => {
                let rel = cache.find_rel(schema, table, &e.name, e.hint.as_deref())?;
                let child_meta = cache.table(schema, &rel.target);
                let child = build_node(cache, schema, &rel.target, child_meta, &e.items)?;
                if e.spread && !rel.to_one() {
                    return Err(ApiError::new(
                        400,
                        "PGRST119",
                        format!("A spread operation on '{}' is not possible", e.name),
                    )
                    .details("'*' is not allowed in a spread of a to-many relationship"));
                }
                node.embeds.push(Embed {
                    key: e.alias.clone().unwrap_or_else(|| e.name.clone()),
                    name: e.name.clone(),
                    rel,
                    inner: e.join == Some(JoinType::Inner),
                    spread: e.spread,
                    empty: e.items.is_empty(),
                    node: child,
                });
            }
            other => node.items.push(other.clone()),
        }
    }
    Ok(node)
}

fn not_embedded(name: &str) -> ApiError {
    ApiError::new(
        400,
        "PGRST108",
        format!("'{name}' is not an embedded resource in this request"),
    )
    .hint(format!(
        "Verify that '{name}' is included in the 'select' query parameter."
    ))
}

fn node_at<'a, 'c>(root: &'a mut Node<'c>, path: &[String]) -> Result<&'a mut Node<'c>, ApiError> {
    let mut cur = root;
    for seg in path {
        let Some(i) = cur.embed_index(seg) else {
            return Err(not_embedded(seg));
        };
        cur = &mut cur.embeds[i].node;
    }
    Ok(cur)
}

/// Distributes the filters, logic trees, ordering and paging of the query string over the tree.
/// `root_paging` says whether root `limit`/`offset` apply here (the caller handles them for the
/// top level of reads, where they combine with the Range header).
pub fn attach(root: &mut Node, q: &QueryParams, root_paging: bool) -> Result<(), ApiError> {
    for (path, f) in &q.filters {
        node_at(root, path)?.filters.push(f.clone());
    }
    for (path, l) in &q.logic {
        node_at(root, path)?.logic.push(l.clone());
    }
    for (path, o) in &q.order {
        node_at(root, path)?.order = o.clone();
    }
    for (path, n) in &q.limit {
        if path.is_empty() && !root_paging {
            continue;
        }
        node_at(root, path)?.limit = Some(*n);
    }
    for (path, n) in &q.offset {
        if path.is_empty() && !root_paging {
            continue;
        }
        node_at(root, path)?.offset = Some(*n);
    }
    check_tree(root)
}

/// Validates embed null filters and related orders.
fn check_tree(node: &Node) -> Result<(), ApiError> {
    for f in &node.filters {
        check_embed_filter(node, f)?;
    }
    for t in &node.order {
        if let Some(rel) = &t.relation {
            let Some(i) = node.embed_index(rel) else {
                return Err(not_embedded(rel));
            };
            if !node.embeds[i].rel.to_one() {
                return Err(ApiError::new(
                    400,
                    "PGRST118",
                    format!("A related order on '{rel}' is not possible"),
                ));
            }
        }
    }
    for e in &node.embeds {
        check_tree(&e.node)?;
    }
    Ok(())
}

fn embed_null_test(node: &Node, f: &Filter) -> Option<usize> {
    if !f.field.path.is_empty() || node.has_column(&f.field.name) {
        return None;
    }
    node.embed_index(&f.field.name)
}

fn check_embed_filter(node: &Node, f: &Filter) -> Result<(), ApiError> {
    if embed_null_test(node, f).is_some() {
        match f.op {
            Operation::Is(parse::IsVal::Null) | Operation::Is(parse::IsVal::NotNull) => {}
            _ => {
                return Err(ApiError::new(
                    400,
                    "PGRST120",
                    format!("Bad operator on the '{}' embedded resource", f.field.name),
                )
                .details("Only is null or not is null filters are allowed on embedded resources"));
            }
        }
    }
    Ok(())
}

use super::parse;

// ------------------------------------------------------------------------------------------
// SQL generation
// ------------------------------------------------------------------------------------------

/// How `*` is written for a node's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Star {
    /// `qual.*`
    Native,
    /// One column per schema-cache column (for CTE sources with extra columns).
    Expanded,
}

/// Where a node reads from.
#[derive(Debug, Clone)]
pub struct Source {
    /// FROM item text (e.g. `"public"."t"` or `"public"."t" AS "t_1"` or `pgrst_source`).
    pub from: String,
    /// Column qualifier (e.g. `"public"."t"`, `"t_1"`, `"pgrst_source"`).
    pub qual: String,
    /// How to write `*`.
    pub star: Star,
}

/// Generates SQL for a node tree; holds the parameter list and an alias counter.
pub struct Gen<'s> {
    /// Parameters.
    pub sql: &'s mut Sql,
    counter: usize,
}

struct Joined {
    lat: String,
    sql: String,
}

fn json_expr(g: &mut Gen, node: &Node, qual: &str, field: &Field) -> String {
    let col = format!("{}.{}", qual, ident(&field.name));
    if field.path.is_empty() {
        return col;
    }
    let composite = node
        .meta
        .and_then(|t| t.column(&field.name))
        .is_some_and(|c| c.category == "A" || c.category == "C");
    let mut e = if composite {
        format!("to_jsonb({col})")
    } else {
        col
    };
    for step in &field.path {
        let op = if step.text { "->>" } else { "->" };
        match &step.key {
            JsonKey::Key(k) => {
                let p = g.sql.param(k.clone());
                e = format!("{e}{op}{p}");
            }
            JsonKey::Idx(i) => e = format!("{e}{op}{i}"),
        }
    }
    e
}

fn like_pattern(op: parse::SimpleOp, v: &str) -> String {
    match op {
        parse::SimpleOp::Like | parse::SimpleOp::Ilike => v.replace('*', "%"),
        _ => v.to_string(),
    }
}

impl<'s> Gen<'s> {
    /// A generator adding parameters to `sql`.
    pub fn new(sql: &'s mut Sql) -> Self {
        Gen { sql, counter: 0 }
    }

    fn filter_sql(&mut self, node: &Node, qual: &str, joined: &[Joined], f: &Filter) -> String {
        if let Some(i) = embed_null_test(node, f) {
            let e = &node.embeds[i];
            let lat = &joined[i].lat;
            let is_null = matches!(f.op, Operation::Is(parse::IsVal::Null));
            let is_null = is_null != f.negated;
            return if e.rel.to_one() {
                if is_null {
                    format!("{lat} IS NOT DISTINCT FROM NULL")
                } else {
                    format!("{lat} IS DISTINCT FROM NULL")
                }
            } else if is_null {
                format!("{lat}.{lat} IS NULL")
            } else {
                format!("{lat}.{lat} IS NOT NULL")
            };
        }
        let expr = json_expr(self, node, qual, &f.field);
        let cond = match &f.op {
            Operation::Simple(op, None, v) => {
                let p = self.sql.param(like_pattern(*op, v));
                format!("{expr} {} {p}", op.sql())
            }
            Operation::Simple(op, Some(q), v) => {
                let p = self.sql.param(like_pattern(*op, v));
                let qs = match q {
                    Quant::Any => "ANY",
                    Quant::All => "ALL",
                };
                format!("{expr} {} {qs}({p})", op.sql())
            }
            Operation::In(items) => {
                let p = self.sql.param(array_literal(items));
                format!("{expr} = ANY ({p})")
            }
            Operation::Is(v) => format!("{expr} IS {}", v.sql()),
            Operation::Fts(op, lang, v) => {
                let is_tsvector = f.field.path.is_empty()
                    && node
                        .meta
                        .and_then(|t| t.column(&f.field.name))
                        .is_some_and(|c| c.typname == "tsvector");
                let lang_p = lang.as_ref().map(|l| self.sql.param(l.clone()));
                let target = if is_tsvector {
                    expr
                } else {
                    match &lang_p {
                        Some(l) => format!("to_tsvector({l}, {expr})"),
                        None => format!("to_tsvector({expr})"),
                    }
                };
                let vp = self.sql.param(v.clone());
                match &lang_p {
                    Some(l) => format!("{target} @@ {}({l}, {vp})", op.function()),
                    None => format!("{target} @@ {}({vp})", op.function()),
                }
            }
        };
        if f.negated {
            format!("NOT {cond}")
        } else {
            cond
        }
    }

    fn logic_sql(&mut self, node: &Node, qual: &str, joined: &[Joined], l: &Logic) -> String {
        match l {
            Logic::Stmt(f) => self.filter_sql(node, qual, joined, f),
            Logic::Expr {
                negated,
                or,
                children,
            } => {
                let sep = if *or { " OR " } else { " AND " };
                let parts: Vec<String> = children
                    .iter()
                    .map(|c| self.logic_sql(node, qual, joined, c))
                    .collect();
                let inner = format!("({})", parts.join(sep));
                if *negated {
                    format!("NOT {inner}")
                } else {
                    inner
                }
            }
        }
    }

    fn next_alias(&mut self, base: &str) -> String {
        self.counter += 1;
        let base: String = base.chars().take(40).collect();
        format!("{}_{}", base, self.counter)
    }

    /// The LATERAL join of one embed, returning its alias and join text.
    fn embed_join(&mut self, parent_qual: &str, e: &Embed, depth: usize) -> Joined {
        let lat = ident(&self.next_alias(&format!("{}_{}", e.node.table, e.key)));
        let tbl_alias = ident(&format!("{}_{}", e.node.table, depth));
        let mut conds = Vec::new();
        let mut from = format!(
            "{} AS {}",
            qualified(&e.node.schema, &e.node.table),
            tbl_alias
        );
        match &e.rel.junction {
            Some(j) => {
                let jal = ident(&self.next_alias(&j.table));
                from = format!("{from}, {} AS {jal}", qualified(&e.node.schema, &j.table));
                for (c, fc) in j.fk_target.cols.iter().zip(&j.fk_target.fcols) {
                    conds.push(format!("{jal}.{} = {tbl_alias}.{}", ident(c), ident(fc)));
                }
                for (c, fc) in j.fk_origin.cols.iter().zip(&j.fk_origin.fcols) {
                    conds.push(format!("{jal}.{} = {parent_qual}.{}", ident(c), ident(fc)));
                }
            }
            None => {
                for (oc, tc) in &e.rel.pairs {
                    conds.push(format!(
                        "{tbl_alias}.{} = {parent_qual}.{}",
                        ident(tc),
                        ident(oc)
                    ));
                }
            }
        }
        let src = Source {
            from,
            qual: tbl_alias,
            star: Star::Native,
        };
        let to_one = e.rel.to_one();
        let mut child = e.node.clone();
        if !to_one {
            child.limit = Some(child.limit.map_or(MAX_ROWS, |l| l.min(MAX_ROWS)));
        }
        let body = self.select_sql(&child, &src, conds, depth, true);
        let kind = if e.inner { "INNER" } else { "LEFT" };
        let sql = if to_one {
            format!("{kind} JOIN LATERAL ({body}) AS {lat} ON TRUE")
        } else {
            let on = if e.inner {
                format!("{lat}.{lat} IS NOT NULL")
            } else {
                "TRUE".to_string()
            };
            format!(
                "{kind} JOIN LATERAL (SELECT json_agg({lat})::jsonb AS {lat} FROM ({body}) AS {lat}) AS {lat} ON {on}"
            )
        };
        Joined { lat, sql }
    }

    fn projection(&mut self, node: &Node, src: &Source, joined: &[Joined]) -> Vec<String> {
        let mut cols = Vec::new();
        let qual = &src.qual;
        for item in &node.items {
            match item {
                SelectItem::Star => match (src.star, node.meta) {
                    (Star::Expanded, Some(t)) => {
                        for c in &t.columns {
                            cols.push(format!("{qual}.{}", ident(&c.name)));
                        }
                    }
                    _ => cols.push(format!("{qual}.*")),
                },
                SelectItem::Field { field, alias, cast } => {
                    let mut e = json_expr(self, node, qual, field);
                    if let Some(t) = cast.as_ref().filter(|t| valid_cast(t)) {
                        e = format!("CAST({e} AS {t})");
                    }
                    let name = alias.clone().unwrap_or_else(|| field.output_name());
                    cols.push(format!("{e} AS {}", ident(&name)));
                }
                SelectItem::Embed(_) => {}
            }
        }
        for (e, j) in node.embeds.iter().zip(joined) {
            if e.empty {
                continue;
            }
            let lat = &j.lat;
            if e.spread {
                for name in output_names(&e.node) {
                    cols.push(format!("{lat}.{}", ident(&name)));
                }
            } else if e.rel.to_one() {
                cols.push(format!("row_to_json({lat}.*)::jsonb AS {}", ident(&e.key)));
            } else {
                cols.push(format!("COALESCE({lat}.{lat}, '[]') AS {}", ident(&e.key)));
            }
        }
        cols
    }

    fn order_sql(&mut self, node: &Node, qual: &str, joined: &[Joined]) -> Vec<String> {
        let mut out = Vec::new();
        for t in &node.order {
            let expr = match &t.relation {
                Some(rel) => {
                    let Some(i) = node.embed_index(rel) else {
                        continue;
                    };
                    let lat = joined[i].lat.clone();
                    let child = node.embeds[i].node.clone();
                    json_expr(self, &child, &lat, &t.field)
                }
                None => json_expr(self, node, qual, &t.field),
            };
            let mut s = expr;
            match t.dir {
                Some(Dir::Asc) => s.push_str(" ASC"),
                Some(Dir::Desc) => s.push_str(" DESC"),
                None => {}
            }
            match t.nulls {
                Some(Nulls::First) => s.push_str(" NULLS FIRST"),
                Some(Nulls::Last) => s.push_str(" NULLS LAST"),
                None => {}
            }
            out.push(s);
        }
        out
    }

    /// `SELECT ... FROM src LATERAL-joins WHERE ... ORDER BY ... LIMIT ... OFFSET ...`.
    pub fn select_sql(
        &mut self,
        node: &Node,
        src: &Source,
        mut conds: Vec<String>,
        depth: usize,
        with_paging: bool,
    ) -> String {
        let joined: Vec<Joined> = node
            .embeds
            .iter()
            .map(|e| self.embed_join(&src.qual, e, depth + 1))
            .collect();
        let cols = self.projection(node, src, &joined);
        self.conditions(node, &src.qual, &joined, &mut conds);
        let order = self.order_sql(node, &src.qual, &joined);
        let mut s = format!("SELECT {} FROM {}", cols.join(", "), src.from);
        for j in &joined {
            s.push(' ');
            s.push_str(&j.sql);
        }
        if !conds.is_empty() {
            s.push_str(" WHERE ");
            s.push_str(&conds.join(" AND "));
        }
        if !order.is_empty() {
            s.push_str(" ORDER BY ");
            s.push_str(&order.join(", "));
        }
        if with_paging {
            if let Some(l) = node.limit {
                s.push_str(&format!(" LIMIT {}", l.max(0)));
            }
            if let Some(o) = node.offset.filter(|o| *o > 0) {
                s.push_str(&format!(" OFFSET {o}"));
            }
        }
        s
    }

    fn conditions(&mut self, node: &Node, qual: &str, joined: &[Joined], conds: &mut Vec<String>) {
        for f in &node.filters {
            let c = self.filter_sql(node, qual, joined, f);
            conds.push(c);
        }
        for l in &node.logic {
            let c = self.logic_sql(node, qual, joined, l);
            conds.push(c);
        }
    }

    /// The conditions of a node without embeds (the root filters of a write).
    pub fn flat_conditions(&mut self, node: &Node, qual: &str) -> Vec<String> {
        let mut conds = Vec::new();
        if node.embeds.is_empty() {
            self.conditions(node, qual, &[], &mut conds);
        }
        conds
    }

    /// `SELECT 1 FROM src [joins of !inner and null-tested embeds] WHERE ...`: the count query.
    pub fn count_sql(&mut self, node: &Node, src: &Source) -> String {
        let needed: Vec<bool> = node
            .embeds
            .iter()
            .enumerate()
            .map(|(i, e)| e.inner || references_embed(node, i))
            .collect();
        let joined: Vec<Joined> = node
            .embeds
            .iter()
            .zip(&needed)
            .map(|(e, n)| {
                if *n {
                    self.embed_join(&src.qual, e, 1)
                } else {
                    Joined {
                        lat: String::new(),
                        sql: String::new(),
                    }
                }
            })
            .collect();
        let mut conds = Vec::new();
        self.conditions(node, &src.qual, &joined, &mut conds);
        let mut s = format!("SELECT 1 FROM {}", src.from);
        for j in joined.iter().filter(|j| !j.sql.is_empty()) {
            s.push(' ');
            s.push_str(&j.sql);
        }
        if !conds.is_empty() {
            s.push_str(" WHERE ");
            s.push_str(&conds.join(" AND "));
        }
        s
    }
}

fn references_embed(node: &Node, i: usize) -> bool {
    fn in_logic(node: &Node, i: usize, l: &Logic) -> bool {
        match l {
            Logic::Stmt(f) => embed_null_test(node, f) == Some(i),
            Logic::Expr { children, .. } => children.iter().any(|c| in_logic(node, i, c)),
        }
    }
    node.filters
        .iter()
        .any(|f| embed_null_test(node, f) == Some(i))
        || node.logic.iter().any(|l| in_logic(node, i, l))
}

/// Output keys of a node's plain items (for to-one spreads).
fn output_names(node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    for item in &node.items {
        match item {
            SelectItem::Star => {
                if let Some(t) = node.meta {
                    out.extend(t.columns.iter().map(|c| c.name.clone()));
                }
            }
            SelectItem::Field { field, alias, .. } => {
                out.push(alias.clone().unwrap_or_else(|| field.output_name()))
            }
            SelectItem::Embed(_) => {}
        }
    }
    for e in &node.embeds {
        if !e.empty {
            if e.spread {
                out.extend(output_names(&e.node));
            } else {
                out.push(e.key.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::query::parse_query;
    use super::super::schema::tests::sample;
    use super::*;

    fn plan_sql(qs: &str) -> (String, Vec<String>) {
        let cache = sample();
        let q = parse_query(qs, false).unwrap();
        let items = q.select.clone().unwrap_or(vec![SelectItem::Star]);
        let meta = cache.table("public", "conversations");
        let mut node = build_node(&cache, "public", "conversations", meta, &items).unwrap();
        attach(&mut node, &q, true).unwrap();
        let mut sql = Sql::default();
        let mut g = Gen::new(&mut sql);
        let src = Source {
            from: qualified("public", "conversations"),
            qual: qualified("public", "conversations"),
            star: Star::Native,
        };
        let s = g.select_sql(&node, &src, vec![], 0, true);
        let params = sql.params.iter().filter_map(|p| p.0.clone()).collect();
        (s, params)
    }

    #[test]
    fn values_are_parameters_never_text() {
        let (s, p) = plan_sql("select=id&id=eq.1'; drop table x; --&visitor_id=in.(a,\"b,c\")");
        assert!(!s.contains("drop table"));
        assert!(s.contains("\"public\".\"conversations\".\"id\" = $1"));
        assert!(s.contains("= ANY ($2)"));
        assert_eq!(p, vec!["1'; drop table x; --", "{\"a\",\"b,c\"}"]);
    }

    #[test]
    fn to_one_and_to_many_embeds() {
        let (s, _) = plan_sql("select=id,visitors!inner(name),details(*)");
        assert!(s.contains("row_to_json("), "{s}");
        assert!(s.contains("INNER JOIN LATERAL (SELECT \"visitors_1\".\"name\" AS \"name\" FROM \"public\".\"visitors\" AS \"visitors_1\" WHERE \"visitors_1\".\"id\" = \"public\".\"conversations\".\"visitor_id\")"), "{s}");
        let cache = sample();
        let q = parse_query(
            "select=id,conversations(id)&conversations.order=id.desc&conversations.limit=2",
            false,
        )
        .unwrap();
        let items = q.select.clone().unwrap_or_default();
        let mut node = build_node(
            &cache,
            "public",
            "visitors",
            cache.table("public", "visitors"),
            &items,
        )
        .unwrap();
        attach(&mut node, &q, true).unwrap();
        let mut sql = Sql::default();
        let mut g = Gen::new(&mut sql);
        let src = Source {
            from: "\"public\".\"visitors\"".into(),
            qual: "\"public\".\"visitors\"".into(),
            star: Star::Native,
        };
        let s = g.select_sql(&node, &src, vec![], 0, true);
        assert!(s.contains("json_agg("), "{s}");
        assert!(
            s.contains("ORDER BY \"conversations_1\".\"id\" DESC LIMIT 2"),
            "{s}"
        );
        assert!(s.contains("COALESCE("), "{s}");
    }

    #[test]
    fn unknown_embed_in_filter_is_pgrst108() {
        let cache = sample();
        let q = parse_query("select=id&visitors.name=eq.x", false).unwrap();
        let items = q.select.clone().unwrap_or_default();
        let mut node = build_node(&cache, "public", "conversations", None, &items).unwrap();
        let e = attach(&mut node, &q, true).unwrap_err();
        assert_eq!(e.code, "PGRST108");
        assert_eq!(
            e.message,
            "'visitors' is not an embedded resource in this request"
        );
    }

    #[test]
    fn related_order_needs_to_one() {
        let cache = sample();
        let q = parse_query("select=id,conversations(id)&order=conversations(id)", false).unwrap();
        let items = q.select.clone().unwrap_or_default();
        let mut node = build_node(&cache, "public", "visitors", None, &items).unwrap();
        assert_eq!(attach(&mut node, &q, true).unwrap_err().code, "PGRST118");
    }

    #[test]
    fn embed_null_filters_and_bad_operators() {
        let (s, _) = plan_sql("select=id,visitors(name)&visitors=not.is.null");
        assert!(s.contains("IS DISTINCT FROM NULL"), "{s}");
        let cache = sample();
        let q = parse_query("select=id,visitors(name)&visitors=eq.1", false).unwrap();
        let items = q.select.clone().unwrap_or_default();
        let mut node = build_node(
            &cache,
            "public",
            "conversations",
            cache.table("public", "conversations"),
            &items,
        )
        .unwrap();
        assert_eq!(attach(&mut node, &q, true).unwrap_err().code, "PGRST120");
    }
}
