//! Literal-safe encoding of user values for PostgREST query strings.
//!
//! PostgREST reads a filter value differently depending on where it stands (spec §1.5; the
//! parser is `QueryParams.hs`):
//!
//! | where | how the value ends | what this module does |
//! |---|---|---|
//! | a top-level filter, `col=eq.VALUE` | at the end of the parameter | nothing: everything after `eq.` is taken literally, quotes included ([`top_level`]) |
//! | an element of `in.(…)` | at `,` or `)`, unless double-quoted | always double-quotes, escaping `\` and `"` ([`quote`], [`in_list`]) |
//! | a value inside `or=(…)` / `and=(…)` | at `,` or `)`, unless double-quoted or `{…}` | always double-quotes ([`logic_value`]) |
//! | an array literal `{…}` (`cs`, `cd`, `ov`) | PostgreSQL's array syntax | quotes every element, escaping `\` and `"` ([`array_literal`]) |
//! | a `like` / `ilike` pattern | — | escapes `\`, `%`, `_`; **cannot** express a literal `*` ([`like_escape`]) |
//! | a `match` / `imatch` regex | — | `***=` literal director ([`regex_literal`]) or escaped punctuation ([`regex_escape`]) |
//!
//! Quoting every element, rather than only those with special characters as postgrest-js does,
//! keeps the rules simple and covers the cases other clients get wrong: elements with `"` or
//! `\` (supabase-js #2669/#2670), leading or trailing spaces (kept by PostgREST in unquoted
//! `in` elements), the word `NULL` (a null in an unquoted array element), empty strings, and
//! `,` `(` `)` `.` `:` `{` `}`.
//!
//! The URL layer (percent-encoding of `&`, `=`, `+`, `#`, `%`, non-ASCII…) is separate and done
//! by the HTTP client when the parameter is added to the URL; this module produces the text of
//! the parameter value.
//!
//! # Where a literal match is impossible: `*` in `like` / `ilike`
//!
//! PostgREST turns **every** `*` of a `like`/`ilike` value into `%` before the value reaches
//! PostgreSQL, including an escaped `\*` (which becomes `\%`, a literal percent sign). So no
//! `like`/`ilike` pattern sent through PostgREST can match a literal asterisk, and
//! [`like_escape`] refuses values containing `*`.
//!
//! For literal substring and prefix search use the regex operators instead, which PostgREST
//! passes through unchanged: [`regex_literal`] prefixes the value with PostgreSQL's `***=`
//! director ("the rest of the regex is a literal string"), so `col=match.***=VALUE` is exactly
//! `strpos(col, VALUE) > 0` and `imatch` is its case-insensitive form; the query builder's
//! [`text_contains`](crate::Query::text_contains) and
//! [`text_icontains`](crate::Query::text_icontains) do this.
//!
//! The other literal path is a SQL function called through RPC
//! ([`Client::rpc`](crate::Client::rpc)): it receives the raw string as a JSON argument, so
//! nothing needs escaping on the way, and tests it with `strpos(...)` (or with `ILIKE` after
//! escaping `\`, `%`, `_` in SQL). The project's migrations provide such functions for its
//! searches (`mod_chat_search_canned_responses`, `mod_chat_search_knowledge_base`, and the
//! `p_search` argument of `mod_chat_list_conversations`).
//!
//! ```
//! use livechat::rest::encode;
//!
//! assert_eq!(encode::in_list(["a,b", "say \"hi\""]), r#"("a,b","say \"hi\"")"#);
//! assert_eq!(encode::array_literal(["NULL", "x}"]), r#"{"NULL","x}"}"#);
//! assert_eq!(encode::like_contains("50%_off")?, r"%50\%\_off%");
//! assert!(encode::like_contains("a*b").is_err());
//! assert_eq!(encode::regex_literal("a*b"), "***=a*b");
//! # Ok::<(), livechat::rest::encode::Unrepresentable>(())
//! ```

use std::fmt;

/// A value that cannot be expressed literally in the requested PostgREST form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unrepresentable {
    value: String,
    reason: &'static str,
}

impl Unrepresentable {
    /// The value that could not be encoded.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Why it could not be encoded.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for Unrepresentable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot encode {:?}: {}", self.value, self.reason)
    }
}

impl std::error::Error for Unrepresentable {}

/// The value of a top-level filter (`col=eq.VALUE`): returned unchanged.
///
/// PostgREST takes everything after the first `op.` literally, so dots, commas, colons,
/// parentheses and double quotes need no escaping there (and must not be quoted: quotes would
/// become part of the value).
pub fn top_level(value: &str) -> &str {
    value
}

/// Double-quotes a value for an `in.(…)` element or an `or`/`and` tree, escaping `\` as `\\` and
/// `"` as `\"`. PostgREST's quoted-value parser reads `\x` as `x`, so every string round-trips.
///
/// ```
/// assert_eq!(livechat::rest::encode::quote(r#"a"b\c"#), r#""a\"b\\c""#);
/// ```
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The value of an `in` filter: `("a","b")`, every element quoted. An empty list gives `()`,
/// which PostgREST treats as matching nothing.
pub fn in_list<I, S>(values: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::from("(");
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&quote(v.as_ref()));
    }
    out.push(')');
    out
}

/// The elements of an `in` list, each quoted, for APIs that join them themselves (such as the
/// `postgrest` crate's `in_`).
pub fn in_elements<I, S>(values: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    values.into_iter().map(|v| quote(v.as_ref())).collect()
}

/// A scalar value inside an `or=(…)` / `and=(…)` tree: always quoted (see [`quote`]).
pub fn logic_value(value: &str) -> String {
    quote(value)
}

/// A PostgreSQL array literal, `{"a","b"}`, with every element double-quoted and `\` and `"`
/// escaped, so `NULL`, empty strings, spaces, commas and braces stay literal text.
///
/// This is the value of `cs`, `cd` and `ov` filters on array columns. Inside an `or`/`and` tree,
/// wrap it with [`logic_value`] (the query builder does).
pub fn array_literal<I, S>(values: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::from("{");
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&quote(v.as_ref()));
    }
    out.push('}');
    out
}

/// Escapes a value for use inside a `LIKE`/`ILIKE` pattern: `\` → `\\`, `%` → `\%`, `_` → `\_`.
///
/// Fails for values containing `*`, which PostgREST turns into the `%` wildcard whatever
/// precedes it (see the [module docs](self)); use [`regex_literal`] for those.
pub fn like_escape(value: &str) -> Result<String, Unrepresentable> {
    if value.contains('*') {
        return Err(Unrepresentable {
            value: value.to_string(),
            reason: "PostgREST turns every `*` of a like/ilike pattern into `%`, so a literal \
                     `*` cannot be matched; use a regex filter (match/imatch with `***=`) instead",
        });
    }
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(out)
}

/// A `LIKE` pattern matching values that contain `value` literally: `%value%`.
pub fn like_contains(value: &str) -> Result<String, Unrepresentable> {
    Ok(format!("%{}%", like_escape(value)?))
}

/// A `LIKE` pattern matching values that start with `value` literally: `value%`.
pub fn like_starts_with(value: &str) -> Result<String, Unrepresentable> {
    Ok(format!("{}%", like_escape(value)?))
}

/// A `LIKE` pattern matching values that end with `value` literally: `%value`.
pub fn like_ends_with(value: &str) -> Result<String, Unrepresentable> {
    Ok(format!("%{}", like_escape(value)?))
}

/// A PostgreSQL regex that matches `value` literally anywhere: `***=value`.
///
/// The `***=` director makes PostgreSQL read the rest of the pattern as a literal string, so
/// `col ~ '***=' || v` is exactly `strpos(col, v) > 0` (and `~*` its case-insensitive form).
/// PostgREST passes `match`/`imatch` values through unchanged, `*` included.
pub fn regex_literal(value: &str) -> String {
    format!("***={value}")
}

/// Escapes every ASCII punctuation character of `value` with `\`, so it matches literally inside
/// a larger PostgreSQL (ARE) regex, e.g. `^` + `regex_escape(prefix)` for a prefix search.
///
/// In PostgreSQL's advanced regexes a backslash before a non-alphanumeric character always
/// stands for that character, and letters, digits, whitespace and non-ASCII characters are never
/// special, so they are left alone.
pub fn regex_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Percent-encodes a table or function name for the URL path.
pub(crate) fn path_segment(name: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'$');
    utf8_percent_encode(name, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgREST's `pQuotedValue`: `"` then (`\` any | not `"\`)* then `"`.
    fn unquote(s: &str) -> Option<String> {
        let inner = s.strip_prefix('"')?.strip_suffix('"')?;
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?),
                '"' => return None,
                c => out.push(c),
            }
        }
        Some(out)
    }

    #[test]
    fn quote_round_trips_through_the_postgrest_parser() {
        for v in [
            "", "a", "a,b", "(x)", "\"", "\\", "\\\"", "a.b:c", " lead", "trail ", "NULL", "日本",
            "*%_",
        ] {
            assert_eq!(unquote(&quote(v)).as_deref(), Some(v), "{v:?}");
        }
    }

    #[test]
    fn in_lists_quote_every_element() {
        assert_eq!(in_list(Vec::<&str>::new()), "()");
        assert_eq!(
            in_list(["Hebdon, John", "Double O Seven(007)"]),
            r#"("Hebdon, John","Double O Seven(007)")"#
        );
        assert_eq!(in_elements(["a", "b\""]), vec![r#""a""#, r#""b\"""#]);
    }

    #[test]
    fn array_literals_quote_every_element() {
        assert_eq!(array_literal(Vec::<String>::new()), "{}");
        assert_eq!(
            array_literal(["NULL", "", "a,b", "{x}", r"back\slash", "q\"uote"]),
            r#"{"NULL","","a,b","{x}","back\\slash","q\"uote"}"#
        );
    }

    #[test]
    fn like_escapes_wildcards_and_refuses_asterisks() {
        assert_eq!(like_escape(r"100%_\").unwrap(), r"100\%\_\\");
        assert_eq!(like_starts_with("a_").unwrap(), r"a\_%");
        assert_eq!(like_ends_with("a%").unwrap(), r"%a\%");
        let err = like_contains("2*3").unwrap_err();
        assert_eq!(err.value(), "2*3");
        assert!(err.to_string().contains('*'));
    }

    #[test]
    fn regex_helpers() {
        assert_eq!(regex_literal("(a|b)*"), "***=(a|b)*");
        assert_eq!(regex_escape("a.b*c (é)"), r"a\.b\*c \(é\)");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(path_segment("mod_chat_messages"), "mod_chat_messages");
        assert_eq!(path_segment("a/b?c"), "a%2Fb%3Fc");
    }
}
