//! The classic `postgres_changes` filter grammar: `column=op.value` with `eq neq lt lte gt gte in`.

use serde_json::Value;
use std::cmp::Ordering;

/// A filter operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Neq => "neq",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::In => "in",
        }
    }
}

/// A parsed filter whose values are still text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFilter {
    pub column: String,
    pub op: Op,
    pub values: Vec<String>,
}

/// Maximum number of values in an `in` list.
pub const MAX_IN_VALUES: usize = 100;

fn parse_error(filter: &str) -> String {
    format!("Error parsing `filter` params: {filter:?}")
}

/// Parses `column=op.value`.
pub fn parse(filter: &str) -> Result<RawFilter, String> {
    let (column, rest) = filter.split_once('=').ok_or_else(|| parse_error(filter))?;
    let (op, value) = rest.split_once('.').ok_or_else(|| parse_error(filter))?;
    let column = column.trim();
    if column.is_empty() {
        return Err(parse_error(filter));
    }
    let op = match op {
        "eq" => Op::Eq,
        "neq" => Op::Neq,
        "lt" => Op::Lt,
        "lte" => Op::Lte,
        "gt" => Op::Gt,
        "gte" => Op::Gte,
        "in" => Op::In,
        _ => return Err(parse_error(filter)),
    };
    let values = if op == Op::In {
        let inner = value
            .strip_prefix('(')
            .and_then(|v| v.strip_suffix(')'))
            .ok_or_else(|| parse_error(filter))?;
        let vals: Vec<String> = inner
            .split(',')
            .map(|s| {
                let s = s.trim();
                s.strip_prefix('"')
                    .and_then(|x| x.strip_suffix('"'))
                    .unwrap_or(s)
                    .to_string()
            })
            .collect();
        if vals.len() > MAX_IN_VALUES {
            return Err(format!(
                "Error parsing `filter` params: too many values for `in` filter (max {MAX_IN_VALUES})"
            ));
        }
        vals
    } else {
        vec![value.to_string()]
    };
    Ok(RawFilter {
        column: column.to_string(),
        op,
        values,
    })
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ if a == b => Some(Ordering::Equal),
        _ => None,
    }
}

/// Evaluates a filter against a column value. `values` are the filter values in the same JSON
/// form as record values (`to_jsonb` of the value cast to the column type). A missing or NULL
/// column value never matches.
pub fn matches(op: Op, values: &[Value], column_value: Option<&Value>) -> bool {
    let Some(v) = column_value else {
        return false;
    };
    if v.is_null() {
        return false;
    }
    let first = values.first();
    let cmp = |want: &dyn Fn(Ordering) -> bool| -> bool {
        first.and_then(|f| compare(v, f)).map(want).unwrap_or(false)
    };
    match op {
        Op::Eq => cmp(&|o| o == Ordering::Equal),
        Op::Neq => first
            .and_then(|f| compare(v, f))
            .map(|o| o != Ordering::Equal)
            .unwrap_or_else(|| first.is_some_and(|f| !f.is_null())),
        Op::Lt => cmp(&|o| o == Ordering::Less),
        Op::Lte => cmp(&|o| o != Ordering::Greater),
        Op::Gt => cmp(&|o| o == Ordering::Greater),
        Op::Gte => cmp(&|o| o != Ordering::Less),
        Op::In => values
            .iter()
            .any(|f| compare(v, f) == Some(Ordering::Equal)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_classic_grammar() {
        let f = parse("id=eq.5").unwrap();
        assert_eq!(
            (f.column.as_str(), f.op, f.values),
            ("id", Op::Eq, vec!["5".into()])
        );
        let f = parse("body=eq.a.b=c").unwrap();
        assert_eq!(f.values, vec!["a.b=c".to_string()]);
        let f = parse("id=in.(1, 2,3)").unwrap();
        assert_eq!(f.values, vec!["1", "2", "3"]);
        assert!(parse("id=in.1,2").is_err());
        assert!(parse("id=like.x").is_err());
        assert!(parse("id").is_err());
        assert!(parse("id=eq").is_err());
        let many = (0..101)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert!(parse(&format!("id=in.({many})")).is_err());
    }

    #[test]
    fn evaluates() {
        assert!(matches(Op::Eq, &[json!(5)], Some(&json!(5))));
        assert!(matches(Op::Eq, &[json!(1.5)], Some(&json!(1.50))));
        assert!(!matches(Op::Eq, &[json!(5)], Some(&Value::Null)));
        assert!(!matches(Op::Eq, &[json!(5)], None));
        assert!(matches(Op::Neq, &[json!("a")], Some(&json!("b"))));
        assert!(!matches(Op::Neq, &[json!("a")], Some(&Value::Null)));
        assert!(matches(Op::Lt, &[json!(10)], Some(&json!(9))));
        assert!(matches(Op::Lte, &[json!(10)], Some(&json!(10))));
        assert!(matches(
            Op::Gt,
            &[json!("2026-01-01T00:00:00+00:00")],
            Some(&json!("2026-01-02T00:00:00+00:00"))
        ));
        assert!(matches(Op::Gte, &[json!(3)], Some(&json!(3))));
        assert!(matches(Op::In, &[json!(1), json!(2)], Some(&json!(2))));
        assert!(!matches(Op::In, &[json!(1), json!(2)], Some(&json!(3))));
    }
}
