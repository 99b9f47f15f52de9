//! SQL text building blocks.
//!
//! Injection safety: no value that comes from a request is ever written into SQL text.
//! * Values (filter operands, JSON keys, the request body, settings) become bind parameters
//!   `$n`, sent in TEXT format with the PostgreSQL type `unknown` (exactly what PostgREST does),
//!   so PostgreSQL infers each parameter's type from its context and parses the text itself.
//! * Identifiers (tables, columns, aliases) are always double-quoted with `"` doubled, see
//!   [`ident`]; an identifier with a NUL byte is refused by the parser.
//! * Cast type names are checked to hold only `[A-Za-z0-9_ $]` before they are written.
//! * Numbers written into the text (LIMIT, OFFSET, JSON array indexes) are Rust integers.
//! * Column types and DEFAULT expressions written into the text come from `pg_catalog`
//!   (`format_type`, `pg_get_expr`), never from the request.

use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, Format, IsNull, ToSql, Type};

/// A parameter sent in text format with an unspecified type (PostgREST's "unknown" params).
#[derive(Debug, Clone)]
pub struct TextParam(pub Option<String>);

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            Some(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// SQL text under construction plus its parameters.
#[derive(Debug, Default, Clone)]
pub struct Sql {
    /// Parameters, `$1` first.
    pub params: Vec<TextParam>,
}

impl Sql {
    /// Adds a parameter and returns its placeholder.
    pub fn param(&mut self, v: impl Into<String>) -> String {
        self.params.push(TextParam(Some(v.into())));
        format!("${}", self.params.len())
    }
}

/// A double-quoted identifier.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// True for a type name PostgREST lets through unquoted: letters, digits, `_`, `$`, spaces.
pub fn valid_cast(t: &str) -> bool {
    !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == ' ')
}

/// A PostgreSQL array literal `{"a","b"}` with `"` and `\` escaped.
pub fn array_literal(items: &[String]) -> String {
    let inner: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_double_quotes() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(qualified("public", "t"), "\"public\".\"t\"");
    }

    #[test]
    fn array_literals_escape() {
        assert_eq!(
            array_literal(&["a".into(), "b,c".into(), "q\"\\".into()]),
            r#"{"a","b,c","q\"\\"}"#
        );
        assert_eq!(array_literal(&[]), "{}");
    }

    #[test]
    fn cast_names() {
        assert!(valid_cast("text"));
        assert!(valid_cast("double precision"));
        assert!(!valid_cast("text; drop table x"));
        assert!(!valid_cast("int[]"));
    }
}
