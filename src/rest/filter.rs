//! Filter conditions that can stand alone or inside `or=(…)` / `and=(…)` trees.
//!
//! A [`Condition`] keeps the user's value unencoded and encodes it for where it ends up: raw
//! after `op.` in a top-level parameter, double-quoted inside a tree (see [`encode`]).
//!
//! ```
//! use livechat::rest::Condition;
//!
//! let c = Condition::or([
//!     Condition::eq("status", "active"),
//!     Condition::text_icontains("subject", "refund, (urgent)"),
//!     Condition::is_null("assigned_agent_id"),
//! ]);
//! assert_eq!(
//!     c.to_tree(),
//!     r#"or(status.eq."active",subject.imatch."***=refund, (urgent)",assigned_agent_id.is.null)"#
//! );
//! ```

use super::encode;

/// The value of an `is` filter.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Is {
    /// `IS NULL`.
    Null,
    /// `IS TRUE`.
    True,
    /// `IS FALSE`.
    False,
    /// `IS UNKNOWN`.
    Unknown,
}

impl Is {
    fn as_str(self) -> &'static str {
        match self {
            Is::Null => "null",
            Is::True => "true",
            Is::False => "false",
            Is::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Value {
    /// A user value, taken literally.
    Scalar(String),
    /// An `in` list.
    List(Vec<String>),
    /// An array literal (`cs`, `cd`, `ov`).
    Array(Vec<String>),
    /// A keyword (`is`): never quoted.
    Keyword(&'static str),
    /// Already encoded by the caller; used as is in both positions.
    Raw(String),
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Leaf {
        column: String,
        negated: bool,
        op: &'static str,
        value: Value,
    },
    Group {
        negated: bool,
        and: bool,
        items: Vec<Condition>,
    },
}

/// One filter condition, or an `and`/`or` group of them.
///
/// Add it to a query with [`Query::filter`](crate::Query::filter), or group several with
/// [`Condition::or`] / [`Condition::and`]. Column names are used as given (they may include a
/// JSON path such as `metadata->>source`); values are always encoded to match literally.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition(Node);

impl Condition {
    fn leaf(column: impl Into<String>, op: &'static str, value: Value) -> Condition {
        Condition(Node::Leaf {
            column: column.into(),
            negated: false,
            op,
            value,
        })
    }

    fn scalar(column: impl Into<String>, op: &'static str, value: impl ToString) -> Condition {
        Condition::leaf(column, op, Value::Scalar(value.to_string()))
    }

    /// `column = value`.
    pub fn eq(column: impl Into<String>, value: impl ToString) -> Condition {
        Condition::scalar(column, "eq", value)
    }

    /// `column <> value`.
    pub fn neq(column: impl Into<String>, value: impl ToString) -> Condition {
        Condition::scalar(column, "neq", value)
    }

    /// `column > value`.
    pub fn gt(column: impl Into<String>, value: impl ToString) -> Condition {
        Condition::scalar(column, "gt", value)
    }

    /// `column >= value`.
    pub fn gte(column: impl Into<String>, value: impl ToString) -> Condition {
        Condition::scalar(column, "gte", value)
    }

    /// `column < value`.
    pub fn lt(column: impl Into<String>, value: impl ToString) -> Condition {
        Condition::scalar(column, "lt", value)
    }

    /// `column <= value`.
    pub fn lte(column: impl Into<String>, value: impl ToString) -> Condition {
        Condition::scalar(column, "lte", value)
    }

    /// `column IS DISTINCT FROM value`.
    pub fn is_distinct(column: impl Into<String>, value: impl ToString) -> Condition {
        Condition::scalar(column, "isdistinct", value)
    }

    /// `column = ANY(values)`. An empty list matches nothing.
    pub fn in_<I, V>(column: impl Into<String>, values: I) -> Condition
    where
        I: IntoIterator<Item = V>,
        V: ToString,
    {
        let values = values.into_iter().map(|v| v.to_string()).collect();
        Condition::leaf(column, "in", Value::List(values))
    }

    /// `column IS NULL / TRUE / FALSE / UNKNOWN`.
    pub fn is(column: impl Into<String>, value: Is) -> Condition {
        Condition::leaf(column, "is", Value::Keyword(value.as_str()))
    }

    /// `column IS NULL`.
    pub fn is_null(column: impl Into<String>) -> Condition {
        Condition::is(column, Is::Null)
    }

    /// `column IS NOT NULL`.
    pub fn not_null(column: impl Into<String>) -> Condition {
        Condition::is(column, Is::Null).not()
    }

    /// The text column contains `needle`, literally and case-sensitively (every character,
    /// `*` `%` `_` included, stands for itself): `strpos(column, needle) > 0`.
    ///
    /// Sent as `match.***=needle` (see [`encode::regex_literal`]).
    pub fn text_contains(column: impl Into<String>, needle: impl Into<String>) -> Condition {
        let v = encode::regex_literal(&needle.into());
        Condition::leaf(column, "match", Value::Scalar(v))
    }

    /// The text column contains `needle` literally, ignoring case (PostgreSQL's
    /// case-insensitive regex matching, `~*`).
    pub fn text_icontains(column: impl Into<String>, needle: impl Into<String>) -> Condition {
        let v = encode::regex_literal(&needle.into());
        Condition::leaf(column, "imatch", Value::Scalar(v))
    }

    /// The text column starts with `prefix`, literally and case-sensitively.
    pub fn text_starts_with(column: impl Into<String>, prefix: impl AsRef<str>) -> Condition {
        let v = format!("^{}", encode::regex_escape(prefix.as_ref()));
        Condition::leaf(column, "match", Value::Scalar(v))
    }

    /// The text column starts with `prefix` literally, ignoring case.
    pub fn text_istarts_with(column: impl Into<String>, prefix: impl AsRef<str>) -> Condition {
        let v = format!("^{}", encode::regex_escape(prefix.as_ref()));
        Condition::leaf(column, "imatch", Value::Scalar(v))
    }

    /// The text column equals `value` ignoring case.
    pub fn text_iequals(column: impl Into<String>, value: impl AsRef<str>) -> Condition {
        let v = format!("^{}$", encode::regex_escape(value.as_ref()));
        Condition::leaf(column, "imatch", Value::Scalar(v))
    }

    /// `column LIKE pattern`, with `pattern` sent as given: `%` and `*` are "any characters",
    /// `_` is "one character", `\` escapes. Build literal patterns with
    /// [`encode::like_contains`] and friends.
    pub fn like(column: impl Into<String>, pattern: impl Into<String>) -> Condition {
        Condition::leaf(column, "like", Value::Scalar(pattern.into()))
    }

    /// `column ILIKE pattern` (see [`Condition::like`]).
    pub fn ilike(column: impl Into<String>, pattern: impl Into<String>) -> Condition {
        Condition::leaf(column, "ilike", Value::Scalar(pattern.into()))
    }

    /// `column ~ regex` (POSIX regex, sent as given).
    pub fn matches(column: impl Into<String>, regex: impl Into<String>) -> Condition {
        Condition::leaf(column, "match", Value::Scalar(regex.into()))
    }

    /// `column ~* regex` (case-insensitive POSIX regex, sent as given).
    pub fn imatches(column: impl Into<String>, regex: impl Into<String>) -> Condition {
        Condition::leaf(column, "imatch", Value::Scalar(regex.into()))
    }

    /// The array column contains all of `values` (`@>`).
    pub fn array_contains<I, V>(column: impl Into<String>, values: I) -> Condition
    where
        I: IntoIterator<Item = V>,
        V: ToString,
    {
        let v = values.into_iter().map(|v| v.to_string()).collect();
        Condition::leaf(column, "cs", Value::Array(v))
    }

    /// The array column is contained in `values` (`<@`).
    pub fn array_contained_by<I, V>(column: impl Into<String>, values: I) -> Condition
    where
        I: IntoIterator<Item = V>,
        V: ToString,
    {
        let v = values.into_iter().map(|v| v.to_string()).collect();
        Condition::leaf(column, "cd", Value::Array(v))
    }

    /// The array column shares at least one element with `values` (`&&`).
    pub fn array_overlaps<I, V>(column: impl Into<String>, values: I) -> Condition
    where
        I: IntoIterator<Item = V>,
        V: ToString,
    {
        let v = values.into_iter().map(|v| v.to_string()).collect();
        Condition::leaf(column, "ov", Value::Array(v))
    }

    /// A condition with an operator and an already-encoded value, e.g.
    /// `Condition::raw("tags", "cs", "{a,b}")`. Nothing is escaped: prefer the typed
    /// constructors for user values.
    pub fn raw(
        column: impl Into<String>,
        operator: &'static str,
        encoded_value: impl Into<String>,
    ) -> Condition {
        Condition::leaf(column, operator, Value::Raw(encoded_value.into()))
    }

    /// True when any of `items` is (`or`). An empty group is rejected by PostgREST (PGRST100).
    pub fn or(items: impl IntoIterator<Item = Condition>) -> Condition {
        Condition(Node::Group {
            negated: false,
            and: false,
            items: items.into_iter().collect(),
        })
    }

    /// True when all of `items` are (`and`).
    pub fn and(items: impl IntoIterator<Item = Condition>) -> Condition {
        Condition(Node::Group {
            negated: false,
            and: true,
            items: items.into_iter().collect(),
        })
    }

    /// The negation of this condition (`not.`).
    #[allow(clippy::should_implement_trait)]
    pub fn not(mut self) -> Condition {
        match &mut self.0 {
            Node::Leaf { negated, .. } | Node::Group { negated, .. } => *negated = !*negated,
        }
        self
    }

    /// The condition as an element of a logic tree, e.g. `status.eq."active"` or
    /// `or(a.eq."1",b.is.null)`: every value quoted.
    pub fn to_tree(&self) -> String {
        let mut out = String::new();
        self.write_tree(&mut out);
        out
    }

    fn write_tree(&self, out: &mut String) {
        match &self.0 {
            Node::Leaf {
                column,
                negated,
                op,
                value,
            } => {
                out.push_str(column);
                out.push('.');
                if *negated {
                    out.push_str("not.");
                }
                out.push_str(op);
                out.push('.');
                match value {
                    Value::Scalar(v) => out.push_str(&encode::logic_value(v)),
                    Value::List(vs) => out.push_str(&encode::in_list(vs)),
                    Value::Array(vs) => {
                        out.push_str(&encode::logic_value(&encode::array_literal(vs)))
                    }
                    Value::Keyword(k) => out.push_str(k),
                    Value::Raw(v) => out.push_str(v),
                }
            }
            Node::Group {
                negated,
                and,
                items,
            } => {
                if *negated {
                    out.push_str("not.");
                }
                out.push_str(if *and { "and" } else { "or" });
                out.push('(');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_tree(out);
                }
                out.push(')');
            }
        }
    }

    /// The condition as a top-level query parameter `(key, value)`, e.g.
    /// `("status", "eq.active")` or `("or", "(a.eq.\"1\",b.is.null)")`; `prefix` is an embedded
    /// resource path (`"messages"`) or empty.
    pub fn to_param(&self, prefix: &str) -> (String, String) {
        let key_prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}.")
        };
        match &self.0 {
            Node::Leaf {
                column,
                negated,
                op,
                value,
            } => {
                let mut v = String::new();
                if *negated {
                    v.push_str("not.");
                }
                v.push_str(op);
                v.push('.');
                match value {
                    Value::Scalar(s) => v.push_str(encode::top_level(s)),
                    Value::List(vs) => v.push_str(&encode::in_list(vs)),
                    Value::Array(vs) => v.push_str(&encode::array_literal(vs)),
                    Value::Keyword(k) => v.push_str(k),
                    Value::Raw(s) => v.push_str(s),
                }
                (format!("{key_prefix}{column}"), v)
            }
            Node::Group {
                negated,
                and,
                items,
            } => {
                let op = if *and { "and" } else { "or" };
                let key = if *negated {
                    format!("{key_prefix}not.{op}")
                } else {
                    format!("{key_prefix}{op}")
                };
                let mut v = String::from("(");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        v.push(',');
                    }
                    item.write_tree(&mut v);
                }
                v.push(')');
                (key, v)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_values_are_raw() {
        assert_eq!(
            Condition::eq("name", "a,b.c:(d) \"e\"").to_param(""),
            ("name".into(), "eq.a,b.c:(d) \"e\"".into())
        );
        assert_eq!(
            Condition::in_("id", ["1", "2,3"]).not().to_param(""),
            ("id".into(), r#"not.in.("1","2,3")"#.into())
        );
        assert_eq!(
            Condition::not_null("x").to_param("messages"),
            ("messages.x".into(), "not.is.null".into())
        );
        assert_eq!(
            Condition::array_contains("tags", ["a b", "c"]).to_param(""),
            ("tags".into(), r#"cs.{"a b","c"}"#.into())
        );
    }

    #[test]
    fn tree_values_are_quoted() {
        let c = Condition::or([
            Condition::eq("a", "x,y)"),
            Condition::and([
                Condition::in_("b", ["1"]),
                Condition::array_overlaps("tags", ["}"]),
            ])
            .not(),
        ]);
        assert_eq!(
            c.to_param(""),
            (
                "or".into(),
                r#"(a.eq."x,y)",not.and(b.in.("1"),tags.ov."{\"}\"}"))"#.into()
            )
        );
        assert_eq!(
            Condition::and([Condition::eq("a", 1)])
                .not()
                .to_param("m")
                .0,
            "m.not.and"
        );
    }
}
