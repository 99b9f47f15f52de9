//! The PostgREST URL grammar (§1 of the spec): `select`, filters, logic trees, `order`,
//! `limit`/`offset`, `columns`, `on_conflict`. Pure functions, no database access.
//!
//! Parse errors are PGRST100 with PostgREST's Parsec-like shape:
//! message `"failed to parse filter (x)" (line 1, column N)`, details
//! `unexpected "c" expecting ...`.

use super::error::ApiError;

/// One step of a JSON path: `->key`, `->>key`, `->0`, `->>-1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonStep {
    /// `->>` (text) rather than `->` (json).
    pub text: bool,
    /// The key or index.
    pub key: JsonKey,
}

/// A JSON path operand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonKey {
    /// An object key.
    Key(String),
    /// An array index.
    Idx(i64),
}

/// A column with an optional JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Column name.
    pub name: String,
    /// JSON path steps.
    pub path: Vec<JsonStep>,
}

impl Field {
    /// The output key PostgREST gives this field: the last key of the path, else the column.
    pub fn output_name(&self) -> String {
        for step in self.path.iter().rev() {
            if let JsonKey::Key(k) = &step.key {
                return k.clone();
            }
        }
        self.name.clone()
    }
}

/// Join type of an embed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinType {
    /// `!inner`
    Inner,
    /// `!left` (the default)
    Left,
}

/// One item of `select=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectItem {
    /// `*`
    Star,
    /// A column, JSON path, alias and cast.
    Field {
        /// The column.
        field: Field,
        /// `alias:`
        alias: Option<String>,
        /// `::type`
        cast: Option<String>,
    },
    /// An embedded resource.
    Embed(EmbedSelect),
}

/// `alias:rel!hint!inner(...)` or `...rel(...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedSelect {
    /// Table, constraint or FK column name.
    pub name: String,
    /// Output key.
    pub alias: Option<String>,
    /// Disambiguation hint.
    pub hint: Option<String>,
    /// Join type, when given.
    pub join: Option<JoinType>,
    /// `...rel(...)`
    pub spread: bool,
    /// The embedded select list (empty for `rel()`).
    pub items: Vec<SelectItem>,
}

/// Comparison operators taking a single value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimpleOp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    Ilike,
    Match,
    Imatch,
    IsDistinct,
    Cs,
    Cd,
    Ov,
    Sl,
    Sr,
    Nxr,
    Nxl,
    Adj,
}

impl SimpleOp {
    /// The SQL operator.
    pub fn sql(self) -> &'static str {
        match self {
            SimpleOp::Eq => "=",
            SimpleOp::Neq => "<>",
            SimpleOp::Gt => ">",
            SimpleOp::Gte => ">=",
            SimpleOp::Lt => "<",
            SimpleOp::Lte => "<=",
            SimpleOp::Like => "LIKE",
            SimpleOp::Ilike => "ILIKE",
            SimpleOp::Match => "~",
            SimpleOp::Imatch => "~*",
            SimpleOp::IsDistinct => "IS DISTINCT FROM",
            SimpleOp::Cs => "@>",
            SimpleOp::Cd => "<@",
            SimpleOp::Ov => "&&",
            SimpleOp::Sl => "<<",
            SimpleOp::Sr => ">>",
            SimpleOp::Nxr => "&<",
            SimpleOp::Nxl => "&>",
            SimpleOp::Adj => "-|-",
        }
    }

    fn quantifiable(self) -> bool {
        matches!(
            self,
            SimpleOp::Eq
                | SimpleOp::Gt
                | SimpleOp::Gte
                | SimpleOp::Lt
                | SimpleOp::Lte
                | SimpleOp::Like
                | SimpleOp::Ilike
                | SimpleOp::Match
                | SimpleOp::Imatch
        )
    }
}

/// `(any)` / `(all)` modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    Any,
    All,
}

/// Full-text search operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtsOp {
    Fts,
    Plfts,
    Phfts,
    Wfts,
}

impl FtsOp {
    /// The tsquery constructor.
    pub fn function(self) -> &'static str {
        match self {
            FtsOp::Fts => "to_tsquery",
            FtsOp::Plfts => "plainto_tsquery",
            FtsOp::Phfts => "phraseto_tsquery",
            FtsOp::Wfts => "websearch_to_tsquery",
        }
    }
}

/// `is` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsVal {
    Null,
    NotNull,
    True,
    False,
    Unknown,
}

impl IsVal {
    /// The SQL after `IS`.
    pub fn sql(self) -> &'static str {
        match self {
            IsVal::Null => "NULL",
            IsVal::NotNull => "NOT NULL",
            IsVal::True => "TRUE",
            IsVal::False => "FALSE",
            IsVal::Unknown => "UNKNOWN",
        }
    }
}

/// An operation with its value(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// `eq.v`, `like(any).{a,b}`, …
    Simple(SimpleOp, Option<Quant>, String),
    /// `in.(a,b)`
    In(Vec<String>),
    /// `is.null`
    Is(IsVal),
    /// `fts(lang).q`
    Fts(FtsOp, Option<String>, String),
}

/// `[not.]op.value` on a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The column.
    pub field: Field,
    /// `not.`
    pub negated: bool,
    /// The operation.
    pub op: Operation,
}

/// A logic tree of `or=(...)` / `and=(...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logic {
    /// `[not.]and(...)` / `[not.]or(...)`
    Expr {
        /// `not.`
        negated: bool,
        /// true for `or`.
        or: bool,
        /// Children.
        children: Vec<Logic>,
    },
    /// A leaf filter.
    Stmt(Filter),
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Asc,
    Desc,
}

/// NULLS position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nulls {
    First,
    Last,
}

/// One term of `order=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTerm {
    /// `rel(col)`: ordering by a to-one embed.
    pub relation: Option<String>,
    /// The column.
    pub field: Field,
    /// Direction, when given.
    pub dir: Option<Dir>,
    /// NULLS position, when given.
    pub nulls: Option<Nulls>,
}

// ------------------------------------------------------------------------------------------
// Cursor
// ------------------------------------------------------------------------------------------

struct Cur<'a> {
    chars: Vec<char>,
    pos: usize,
    what: &'a str,
    input: &'a str,
}

impl<'a> Cur<'a> {
    fn new(what: &'a str, input: &'a str) -> Self {
        Cur {
            chars: input.chars().collect(),
            pos: 0,
            what,
            input,
        }
    }
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }
    fn eof(&self) -> bool {
        self.pos >= self.chars.len()
    }
    fn rest(&self) -> String {
        self.chars[self.pos.min(self.chars.len())..]
            .iter()
            .collect()
    }
    fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(n, c)| self.chars.get(self.pos + n) == Some(&c))
    }
    fn eat(&mut self, s: &str) -> bool {
        if self.starts_with(s) {
            self.pos += s.chars().count();
            true
        } else {
            false
        }
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(c) if c.is_whitespace()) {
            self.pos += 1;
        }
    }
    fn unexpected(&self) -> String {
        match self.peek() {
            Some(c) => format!("unexpected {}", show_char(c)),
            None => "unexpected end of input".to_string(),
        }
    }
    fn err(&self, expecting: &str) -> ApiError {
        let details = if expecting.is_empty() {
            self.unexpected()
        } else {
            format!("{} expecting {}", self.unexpected(), expecting)
        };
        ApiError::parse(self.what, self.input, self.pos + 1, details)
    }
    fn expect(&mut self, s: &str) -> Result<(), ApiError> {
        if self.eat(s) {
            Ok(())
        } else {
            Err(self.err(&format!("{s:?}")))
        }
    }
}

fn show_char(c: char) -> String {
    format!("{:?}", c.to_string())
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || c == ' '
}

/// A field name: quoted (`"a.b"`, backslash escapes) or letters, digits, `_`, `$`, spaces and
/// inner `-` not followed by `>`.
fn p_name(c: &mut Cur) -> Result<String, ApiError> {
    if c.peek() == Some('"') {
        return p_quoted(c);
    }
    let start = c.pos;
    let mut out = String::new();
    loop {
        match c.peek() {
            Some(ch) if is_name_char(ch) => {
                out.push(ch);
                c.pos += 1;
            }
            Some('-')
                if !out.is_empty()
                    && c.peek_at(1) != Some('>')
                    && c.peek_at(1).is_some_and(is_name_char) =>
            {
                out.push('-');
                c.pos += 1;
            }
            _ => break,
        }
    }
    if c.pos == start {
        return Err(c.err("field name (* or [a..z0..9_$])"));
    }
    Ok(out.trim().to_string())
}

/// `"..."` with `\"` and `\\` escapes (any other `\x` gives `x`).
fn p_quoted(c: &mut Cur) -> Result<String, ApiError> {
    c.expect("\"")?;
    let mut out = String::new();
    loop {
        match c.peek() {
            None => return Err(c.err("\"\\\"\" or \"\\\\\"")),
            Some('\0') => return Err(c.err("any character but NUL")),
            Some('"') => {
                c.pos += 1;
                return Ok(out);
            }
            Some('\\') => {
                c.pos += 1;
                match c.peek() {
                    Some('\0') => return Err(c.err("any character but NUL")),
                    Some(ch) => {
                        out.push(ch);
                        c.pos += 1;
                    }
                    None => return Err(c.err("any character")),
                }
            }
            Some(ch) => {
                out.push(ch);
                c.pos += 1;
            }
        }
    }
}

/// JSON path after a field name.
fn p_json_path(c: &mut Cur) -> Result<Vec<JsonStep>, ApiError> {
    let mut steps = Vec::new();
    loop {
        let text = if c.eat("->>") {
            true
        } else if c.eat("->") {
            false
        } else {
            break;
        };
        // an integer index, optionally negative
        let save = c.pos;
        let mut num = String::new();
        if c.peek() == Some('-') {
            num.push('-');
            c.pos += 1;
        }
        while let Some(d) = c.peek().filter(char::is_ascii_digit) {
            num.push(d);
            c.pos += 1;
        }
        let is_index = num.chars().any(|ch| ch.is_ascii_digit())
            && !matches!(c.peek(), Some(ch) if is_name_char(ch) && ch != ' ');
        if is_index {
            if let Ok(i) = num.parse::<i64>() {
                steps.push(JsonStep {
                    text,
                    key: JsonKey::Idx(i),
                });
                continue;
            }
        }
        c.pos = save;
        let key = p_name(c)?;
        steps.push(JsonStep {
            text,
            key: JsonKey::Key(key),
        });
    }
    Ok(steps)
}

fn p_field(c: &mut Cur) -> Result<Field, ApiError> {
    let name = p_name(c)?;
    let path = p_json_path(c)?;
    Ok(Field { name, path })
}

// ------------------------------------------------------------------------------------------
// select
// ------------------------------------------------------------------------------------------

/// Parses `select=`.
pub fn parse_select(input: &str) -> Result<Vec<SelectItem>, ApiError> {
    if input.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut c = Cur::new("select parameter", input);
    let items = p_select_list(&mut c, false)?;
    if !c.eof() {
        return Err(c.err("\",\" or end of input"));
    }
    Ok(items)
}

fn p_select_list(c: &mut Cur, nested: bool) -> Result<Vec<SelectItem>, ApiError> {
    let mut items = Vec::new();
    c.skip_ws();
    if nested && c.peek() == Some(')') {
        return Ok(items);
    }
    loop {
        c.skip_ws();
        items.push(p_select_item(c)?);
        c.skip_ws();
        if c.peek() == Some(',') {
            c.pos += 1;
            continue;
        }
        break;
    }
    Ok(items)
}

const AGGREGATES: &[&str] = &["count", "sum", "avg", "min", "max"];

fn aggregate_error() -> ApiError {
    ApiError::new(400, "PGRST123", "Use of aggregate functions is not allowed")
}

fn p_select_item(c: &mut Cur) -> Result<SelectItem, ApiError> {
    if c.eat("...") {
        let mut e = p_embed_rest(c, None)?;
        e.spread = true;
        return Ok(SelectItem::Embed(e));
    }
    if c.peek() == Some('*') {
        c.pos += 1;
        return Ok(SelectItem::Star);
    }
    let first = p_name(c)?;
    // alias?
    let mut alias = None;
    let name = if c.peek() == Some(':') && c.peek_at(1) != Some(':') {
        c.pos += 1;
        c.skip_ws();
        alias = Some(first);
        if c.eat("...") {
            return Err(c.err("field name (* or [a..z0..9_$])"));
        }
        p_name(c)?
    } else {
        first
    };
    if name == "count" && c.starts_with("()") {
        return Err(aggregate_error());
    }
    if c.peek() == Some('!') || c.peek() == Some('(') {
        let e = p_embed_after_name(c, name, alias)?;
        return Ok(SelectItem::Embed(e));
    }
    let path = p_json_path(c)?;
    // `col.sum()` and friends
    if c.peek() == Some('.') {
        for agg in AGGREGATES {
            if c.starts_with(&format!(".{agg}(")) {
                return Err(aggregate_error());
            }
        }
    }
    let mut cast = None;
    if c.eat("::") {
        let start = c.pos;
        let mut t = String::new();
        while let Some(ch) = c
            .peek()
            .filter(|ch| ch.is_ascii_alphanumeric() || *ch == '_' || *ch == '$' || *ch == ' ')
        {
            t.push(ch);
            c.pos += 1;
        }
        if c.pos == start {
            return Err(c.err("letter, digit, \"_\", \"$\" or \" \""));
        }
        cast = Some(t.trim().to_string());
    }
    Ok(SelectItem::Field {
        field: Field { name, path },
        alias,
        cast,
    })
}

fn p_embed_rest(c: &mut Cur, alias: Option<String>) -> Result<EmbedSelect, ApiError> {
    let name = p_name(c)?;
    p_embed_after_name(c, name, alias)
}

fn p_embed_after_name(
    c: &mut Cur,
    name: String,
    alias: Option<String>,
) -> Result<EmbedSelect, ApiError> {
    let mut hint = None;
    let mut join = None;
    while c.eat("!") {
        let word = p_name(c)?;
        match word.as_str() {
            "inner" => join = Some(JoinType::Inner),
            "left" => join = Some(JoinType::Left),
            _ => hint = Some(word),
        }
    }
    if c.peek() != Some('(') {
        return Err(c.err("\"!\" or \"(\""));
    }
    c.pos += 1;
    let items = p_select_list(c, true)?;
    c.skip_ws();
    if !c.eat(")") {
        return Err(c.err("\",\" or \")\""));
    }
    Ok(EmbedSelect {
        name,
        alias,
        hint,
        join,
        spread: false,
        items,
    })
}

// ------------------------------------------------------------------------------------------
// filters
// ------------------------------------------------------------------------------------------

const SIMPLE_OPS: &[(&str, SimpleOp)] = &[
    ("isdistinct", SimpleOp::IsDistinct),
    ("imatch", SimpleOp::Imatch),
    ("ilike", SimpleOp::Ilike),
    ("match", SimpleOp::Match),
    ("like", SimpleOp::Like),
    ("neq", SimpleOp::Neq),
    ("gte", SimpleOp::Gte),
    ("lte", SimpleOp::Lte),
    ("nxr", SimpleOp::Nxr),
    ("nxl", SimpleOp::Nxl),
    ("adj", SimpleOp::Adj),
    ("eq", SimpleOp::Eq),
    ("gt", SimpleOp::Gt),
    ("lt", SimpleOp::Lt),
    ("cs", SimpleOp::Cs),
    ("cd", SimpleOp::Cd),
    ("ov", SimpleOp::Ov),
    ("sl", SimpleOp::Sl),
    ("sr", SimpleOp::Sr),
];

const FTS_OPS: &[(&str, FtsOp)] = &[
    ("plfts", FtsOp::Plfts),
    ("phfts", FtsOp::Phfts),
    ("wfts", FtsOp::Wfts),
    ("fts", FtsOp::Fts),
];

const OP_EXPECT: &str = "operator (eq, gt, ...)";

enum OpKind {
    Simple(SimpleOp),
    Fts(FtsOp),
    In,
    Is,
}

/// Reads an operator name followed by `.` or `(`.
fn p_op_name(c: &mut Cur) -> Option<OpKind> {
    let followed = |c: &Cur, n: &str| {
        c.starts_with(n) && matches!(c.peek_at(n.chars().count()), Some('.') | Some('('))
    };
    for (n, op) in SIMPLE_OPS {
        if followed(c, n) {
            c.pos += n.len();
            return Some(OpKind::Simple(*op));
        }
    }
    for (n, op) in FTS_OPS {
        if followed(c, n) {
            c.pos += n.len();
            return Some(OpKind::Fts(*op));
        }
    }
    if followed(c, "in") {
        c.pos += 2;
        return Some(OpKind::In);
    }
    if followed(c, "is") {
        c.pos += 2;
        return Some(OpKind::Is);
    }
    None
}

/// Where an operation's value ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ValueMode {
    /// Top-level: the rest of the string.
    Rest,
    /// Inside a logic tree: up to `,` or `)` unless quoted or a `{...}` literal.
    Logic,
}

fn p_operation(c: &mut Cur, mode: ValueMode) -> Result<(bool, Operation), ApiError> {
    let negated = if c.starts_with("not.") {
        c.pos += 4;
        true
    } else {
        false
    };
    let Some(kind) = p_op_name(c) else {
        return Err(c.err(&if negated {
            OP_EXPECT.to_string()
        } else {
            format!("\"not\" or {OP_EXPECT}")
        }));
    };
    let op = match kind {
        OpKind::Simple(op) => {
            let mut quant = None;
            if op.quantifiable() && c.peek() == Some('(') {
                if c.eat("(any)") {
                    quant = Some(Quant::Any);
                } else if c.eat("(all)") {
                    quant = Some(Quant::All);
                } else {
                    c.pos += 1;
                    return Err(c.err("\"any\" or \"all\""));
                }
            }
            c.expect(".")?;
            let v = p_value(c, mode)?;
            Operation::Simple(op, quant, v)
        }
        OpKind::Fts(op) => {
            let mut lang = None;
            if c.eat("(") {
                let mut l = String::new();
                while let Some(ch) = c.peek().filter(|ch| *ch != ')') {
                    l.push(ch);
                    c.pos += 1;
                }
                c.expect(")")?;
                lang = Some(l);
            }
            c.expect(".")?;
            let v = p_value(c, mode)?;
            Operation::Fts(op, lang, v)
        }
        OpKind::In => {
            c.expect(".")?;
            Operation::In(p_in_list(c)?)
        }
        OpKind::Is => {
            c.expect(".")?;
            let start = c.pos;
            let mut word = String::new();
            while let Some(ch) = c.peek().filter(|ch| ch.is_alphanumeric() || *ch == '_') {
                word.push(ch);
                c.pos += 1;
            }
            let v = match word.to_ascii_lowercase().as_str() {
                "null" => IsVal::Null,
                "not_null" => IsVal::NotNull,
                "true" => IsVal::True,
                "false" => IsVal::False,
                "unknown" => IsVal::Unknown,
                _ => {
                    c.pos = start;
                    return Err(c.err("null or trilean value (unknown, true, false)"));
                }
            };
            Operation::Is(v)
        }
    };
    Ok((negated, op))
}

fn p_value(c: &mut Cur, mode: ValueMode) -> Result<String, ApiError> {
    match mode {
        ValueMode::Rest => {
            let v = c.rest();
            c.pos = c.chars.len();
            Ok(v)
        }
        ValueMode::Logic => {
            let save = c.pos;
            if c.peek() == Some('"') {
                let q = p_quoted(c)?;
                if matches!(c.peek(), None | Some(',') | Some(')')) {
                    return Ok(q);
                }
                c.pos = save;
            }
            if c.peek() == Some('{') {
                let mut v = String::new();
                let mut depth = 0usize;
                let mut in_q = false;
                while let Some(ch) = c.peek() {
                    v.push(ch);
                    c.pos += 1;
                    match ch {
                        '\\' if in_q => {
                            if let Some(n) = c.peek() {
                                v.push(n);
                                c.pos += 1;
                            }
                        }
                        '"' => in_q = !in_q,
                        '{' if !in_q => depth += 1,
                        '}' if !in_q => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                if matches!(c.peek(), None | Some(',') | Some(')')) {
                    return Ok(v);
                }
                c.pos = save;
            }
            let mut v = String::new();
            while let Some(ch) = c.peek().filter(|ch| *ch != ',' && *ch != ')') {
                v.push(ch);
                c.pos += 1;
            }
            Ok(v.trim().to_string())
        }
    }
}

/// `(a,"b,c",d)`.
fn p_in_list(c: &mut Cur) -> Result<Vec<String>, ApiError> {
    c.expect("(")?;
    let mut out = Vec::new();
    if c.eat(")") {
        return Ok(out);
    }
    loop {
        let save = c.pos;
        let mut done = false;
        if c.peek() == Some('"') {
            if let Ok(q) = p_quoted(c) {
                if matches!(c.peek(), Some(',') | Some(')')) {
                    out.push(q);
                    done = true;
                } else {
                    c.pos = save;
                }
            } else {
                c.pos = save;
            }
        }
        if !done {
            let mut v = String::new();
            while let Some(ch) = c.peek().filter(|ch| *ch != ',' && *ch != ')') {
                v.push(ch);
                c.pos += 1;
            }
            out.push(v);
        }
        match c.peek() {
            Some(',') => c.pos += 1,
            Some(')') => {
                c.pos += 1;
                return Ok(out);
            }
            _ => return Err(c.err("\",\" or \")\"")),
        }
    }
}

/// Parses a top-level filter value `[not.]op.value` for the field named by the key.
pub fn parse_filter(field: Field, value: &str) -> Result<Filter, ApiError> {
    let mut c = Cur::new("filter", value);
    let (negated, op) = p_operation(&mut c, ValueMode::Rest)?;
    if !c.eof() {
        return Err(c.err("end of input"));
    }
    Ok(Filter { field, negated, op })
}

/// True when a value parses as `[not.]op.value` (used to tell RPC arguments from filters).
pub fn looks_like_filter(value: &str) -> bool {
    let mut c = Cur::new("filter", value);
    match p_operation(&mut c, ValueMode::Rest) {
        Ok(_) => c.eof(),
        Err(_) => false,
    }
}

/// Parses a filter key `embed.sub.col->x` into the embed path and the field.
pub fn parse_filter_key(key: &str) -> Result<(Vec<String>, Field), ApiError> {
    let mut c = Cur::new("filter", key);
    let mut names = Vec::new();
    loop {
        let f = p_field(&mut c)?;
        if c.peek() == Some('.') && f.path.is_empty() {
            c.pos += 1;
            names.push(f.name);
            continue;
        }
        if !c.eof() {
            return Err(c.err("end of input"));
        }
        return Ok((names, f));
    }
}

/// Parses an embed path key prefix such as `messages.users` (already split off a reserved key).
pub fn parse_embed_path(prefix: &str) -> Result<Vec<String>, ApiError> {
    if prefix.is_empty() {
        return Ok(Vec::new());
    }
    let mut c = Cur::new("embed path", prefix);
    let mut names = Vec::new();
    loop {
        names.push(p_name(&mut c)?);
        if c.eat(".") {
            continue;
        }
        if !c.eof() {
            return Err(c.err("\".\" or end of input"));
        }
        return Ok(names);
    }
}

// ------------------------------------------------------------------------------------------
// logic trees
// ------------------------------------------------------------------------------------------

/// Parses the value of `or=` / `and=` (`(a.eq.1,b.gt.2)`), given whether the key was `or` and
/// negated (`not.or`).
pub fn parse_logic(or: bool, negated: bool, value: &str) -> Result<Logic, ApiError> {
    let prefix = format!(
        "{}{}",
        if negated { "not." } else { "" },
        if or { "or" } else { "and" }
    );
    let full = format!("{prefix}{value}");
    let mut c = Cur::new("logic tree", &full);
    c.pos = prefix.chars().count();
    let children = p_logic_children(&mut c)?;
    c.skip_ws();
    if !c.eof() {
        return Err(c.err("end of input"));
    }
    Ok(Logic::Expr {
        negated,
        or,
        children,
    })
}

fn p_logic_children(c: &mut Cur) -> Result<Vec<Logic>, ApiError> {
    c.skip_ws();
    c.expect("(")?;
    let mut out = Vec::new();
    loop {
        c.skip_ws();
        out.push(p_logic_item(c)?);
        c.skip_ws();
        match c.peek() {
            Some(',') => c.pos += 1,
            Some(')') => {
                c.pos += 1;
                return Ok(out);
            }
            _ => return Err(c.err("\",\" or \")\"")),
        }
    }
}

fn p_logic_item(c: &mut Cur) -> Result<Logic, ApiError> {
    let save = c.pos;
    let negated = c.eat("not.");
    for (kw, or) in [("or(", true), ("and(", false)] {
        if c.starts_with(kw) {
            c.pos += kw.len() - 1;
            let children = p_logic_children(c)?;
            return Ok(Logic::Expr {
                negated,
                or,
                children,
            });
        }
    }
    c.pos = save;
    if c.peek().is_none() || c.peek() == Some(')') {
        return Err(c.err("\"not\", \"and\", \"or\" or field name"));
    }
    let field = p_field(c)?;
    c.expect(".")?;
    let (negated, op) = p_operation(c, ValueMode::Logic)?;
    Ok(Logic::Stmt(Filter { field, negated, op }))
}

// ------------------------------------------------------------------------------------------
// order, columns, on_conflict, limit/offset
// ------------------------------------------------------------------------------------------

/// Parses `order=`.
pub fn parse_order(input: &str) -> Result<Vec<OrderTerm>, ApiError> {
    let mut c = Cur::new("order", input);
    let mut terms = Vec::new();
    loop {
        c.skip_ws();
        let name = p_name(&mut c)?;
        let (relation, field) = if c.eat("(") {
            let f = p_field(&mut c)?;
            c.expect(")")?;
            (Some(name), f)
        } else {
            let path = p_json_path(&mut c)?;
            (None, Field { name, path })
        };
        let mut dir = None;
        let mut nulls = None;
        if c.starts_with(".asc") && !c.peek_at(4).is_some_and(char::is_alphanumeric) {
            c.pos += 4;
            dir = Some(Dir::Asc);
        } else if c.starts_with(".desc") && !c.peek_at(5).is_some_and(char::is_alphanumeric) {
            c.pos += 5;
            dir = Some(Dir::Desc);
        }
        if c.starts_with(".nullsfirst") {
            c.pos += 11;
            nulls = Some(Nulls::First);
        } else if c.starts_with(".nullslast") {
            c.pos += 10;
            nulls = Some(Nulls::Last);
        }
        terms.push(OrderTerm {
            relation,
            field,
            dir,
            nulls,
        });
        c.skip_ws();
        match c.peek() {
            Some(',') => c.pos += 1,
            None => return Ok(terms),
            Some('.') => {
                c.pos += 1;
                return Err(c.err("\"asc\", \"desc\", \"nullsfirst\" or \"nullslast\""));
            }
            _ => return Err(c.err("\",\" or end of input")),
        }
    }
}

/// Parses `columns=` or `on_conflict=`: a comma-separated list of (possibly quoted) names.
pub fn parse_name_list(what: &str, input: &str) -> Result<Vec<String>, ApiError> {
    let mut c = Cur::new(what, input);
    let mut out = Vec::new();
    loop {
        c.skip_ws();
        out.push(p_name(&mut c)?);
        c.skip_ws();
        match c.peek() {
            Some(',') => c.pos += 1,
            None => return Ok(out),
            _ => return Err(c.err("\",\" or end of input")),
        }
    }
}

/// Parses a non-negative or negative integer for `limit` / `offset`.
pub fn parse_int(what: &str, input: &str) -> Result<i64, ApiError> {
    input.trim().parse::<i64>().map_err(|_| {
        let c = Cur::new(what, input);
        c.err("digit")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str) -> Field {
        Field {
            name: name.into(),
            path: vec![],
        }
    }

    #[test]
    fn select_with_alias_cast_json_and_embeds() {
        let items = parse_select(
            "*,n:name::text,data->a->>b,mod_chat_visitors!inner(name,email),a:agents!fk(x),rel()",
        )
        .unwrap();
        assert_eq!(items.len(), 6);
        assert_eq!(items[0], SelectItem::Star);
        assert_eq!(
            items[1],
            SelectItem::Field {
                field: f("name"),
                alias: Some("n".into()),
                cast: Some("text".into())
            }
        );
        match &items[2] {
            SelectItem::Field { field, .. } => {
                assert_eq!(field.output_name(), "b");
                assert_eq!(field.path.len(), 2);
                assert!(field.path[1].text);
            }
            other => panic!("{other:?}"),
        }
        match &items[3] {
            SelectItem::Embed(e) => {
                assert_eq!(e.name, "mod_chat_visitors");
                assert_eq!(e.join, Some(JoinType::Inner));
                assert_eq!(e.items.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        match &items[4] {
            SelectItem::Embed(e) => {
                assert_eq!(e.alias.as_deref(), Some("a"));
                assert_eq!(e.hint.as_deref(), Some("fk"));
            }
            other => panic!("{other:?}"),
        }
        match &items[5] {
            SelectItem::Embed(e) => assert!(e.items.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_index_output_name_falls_back() {
        let items = parse_select("arr->0,data->x->1").unwrap();
        let names: Vec<String> = items
            .iter()
            .map(|i| match i {
                SelectItem::Field { field, .. } => field.output_name(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(names, vec!["arr", "x"]);
    }

    #[test]
    fn quoted_column_names() {
        let items = parse_select(r#""column whitespace","a\"b""#).unwrap();
        assert_eq!(
            items[0],
            SelectItem::Field {
                field: f("column whitespace"),
                alias: None,
                cast: None
            }
        );
        assert_eq!(
            items[1],
            SelectItem::Field {
                field: f("a\"b"),
                alias: None,
                cast: None
            }
        );
    }

    #[test]
    fn bad_select_is_pgrst100() {
        let e = parse_select("id,").unwrap_err();
        assert_eq!(e.code, "PGRST100");
        assert!(e
            .message
            .starts_with("\"failed to parse select parameter (id,)\""));
        assert_eq!(parse_select("count()").unwrap_err().code, "PGRST123");
    }

    #[test]
    fn simple_filters_keep_everything_after_the_operator() {
        let x = parse_filter(f("username"), "eq.ihave.special,c:haracter(s)").unwrap();
        assert_eq!(
            x.op,
            Operation::Simple(SimpleOp::Eq, None, "ihave.special,c:haracter(s)".into())
        );
        let x = parse_filter(f("name"), "eq.\"a,b\"").unwrap();
        assert_eq!(
            x.op,
            Operation::Simple(SimpleOp::Eq, None, "\"a,b\"".into())
        );
        let x = parse_filter(f("tags"), "not.cs.{x}").unwrap();
        assert!(x.negated);
        let x = parse_filter(f("a"), "like(any).{O*,P*}").unwrap();
        assert_eq!(
            x.op,
            Operation::Simple(SimpleOp::Like, Some(Quant::Any), "{O*,P*}".into())
        );
        let x = parse_filter(f("a"), "isdistinct.5").unwrap();
        assert_eq!(
            x.op,
            Operation::Simple(SimpleOp::IsDistinct, None, "5".into())
        );
        let x = parse_filter(f("a"), "fts(english).cat").unwrap();
        assert_eq!(
            x.op,
            Operation::Fts(FtsOp::Fts, Some("english".into()), "cat".into())
        );
    }

    #[test]
    fn in_lists_quote_and_escape() {
        let x = parse_filter(
            f("n"),
            r#"in.("Hebdon, John","Double O Seven(007)",a, b,"q\"x\\y")"#,
        )
        .unwrap();
        assert_eq!(
            x.op,
            Operation::In(vec![
                "Hebdon, John".into(),
                "Double O Seven(007)".into(),
                "a".into(),
                " b".into(),
                "q\"x\\y".into()
            ])
        );
        let x = parse_filter(f("n"), "in.()").unwrap();
        assert_eq!(x.op, Operation::In(vec![]));
        assert_eq!(parse_filter(f("n"), "in.1,2").unwrap_err().code, "PGRST100");
    }

    #[test]
    fn is_values() {
        assert_eq!(
            parse_filter(f("a"), "is.NULL").unwrap().op,
            Operation::Is(IsVal::Null)
        );
        assert_eq!(
            parse_filter(f("a"), "not.is.null").unwrap().op,
            Operation::Is(IsVal::Null)
        );
        assert_eq!(
            parse_filter(f("a"), "is.not_null").unwrap().op,
            Operation::Is(IsVal::NotNull)
        );
        assert_eq!(
            parse_filter(f("a"), "is.nope").unwrap_err().code,
            "PGRST100"
        );
    }

    #[test]
    fn filter_parse_error_shape() {
        let e = parse_filter(f("id"), "0").unwrap_err();
        assert_eq!(
            e.message,
            "\"failed to parse filter (0)\" (line 1, column 1)"
        );
        assert_eq!(
            e.details,
            serde_json::json!("unexpected \"0\" expecting \"not\" or operator (eq, gt, ...)")
        );
        let e = parse_filter(f("id"), "").unwrap_err();
        assert_eq!(
            e.message,
            "\"failed to parse filter ()\" (line 1, column 1)"
        );
    }

    #[test]
    fn filter_keys_with_embeds_and_paths() {
        let (p, fl) = parse_filter_key("messages.users.data->>x").unwrap();
        assert_eq!(p, vec!["messages", "users"]);
        assert_eq!(fl.name, "data");
        assert_eq!(fl.output_name(), "x");
        let (p, fl) = parse_filter_key("\"information.cpe\"").unwrap();
        assert!(p.is_empty());
        assert_eq!(fl.name, "information.cpe");
    }

    #[test]
    fn logic_trees_nest_and_quote() {
        let l = parse_logic(
            true,
            false,
            "(age.lt.18,not.and(a.gte.0,a.lte.100),name.like.\"*ity,4*\",tags.cs.{a,b},id.in.(1,2))",
        )
        .unwrap();
        let Logic::Expr { or, children, .. } = l else {
            panic!()
        };
        assert!(or);
        assert_eq!(children.len(), 5);
        match &children[1] {
            Logic::Expr {
                negated,
                or,
                children,
            } => {
                assert!(*negated);
                assert!(!*or);
                assert_eq!(children.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        match &children[2] {
            Logic::Stmt(fl) => assert_eq!(
                fl.op,
                Operation::Simple(SimpleOp::Like, None, "*ity,4*".into())
            ),
            other => panic!("{other:?}"),
        }
        match &children[3] {
            Logic::Stmt(fl) => {
                assert_eq!(fl.op, Operation::Simple(SimpleOp::Cs, None, "{a,b}".into()))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_logic(true, false, "()").unwrap_err().code, "PGRST100");
        assert_eq!(
            parse_logic(true, false, "(a.eq.1").unwrap_err().code,
            "PGRST100"
        );
    }

    #[test]
    fn order_terms() {
        let t = parse_order("last_message_at.desc.nullslast,id,channels(slug).asc").unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].dir, Some(Dir::Desc));
        assert_eq!(t[0].nulls, Some(Nulls::Last));
        assert_eq!(t[1].dir, None);
        assert_eq!(t[2].relation.as_deref(), Some("channels"));
        let e = parse_order("id.asc.nullslasttt").unwrap_err();
        assert_eq!(
            e.message,
            "\"failed to parse order (id.asc.nullslasttt)\" (line 1, column 17)"
        );
    }

    #[test]
    fn nul_is_refused_in_names() {
        assert_eq!(parse_select("\"a\0b\"").unwrap_err().code, "PGRST100");
        assert_eq!(parse_select("\"a\\\0b\"").unwrap_err().code, "PGRST100");
        assert_eq!(parse_select("a\0b").unwrap_err().code, "PGRST100");
    }

    #[test]
    fn columns_lists() {
        assert_eq!(
            parse_name_list("columns parameter", "\"foo\",\"bar\",baz").unwrap(),
            vec!["foo", "bar", "baz"]
        );
    }
}
