//! The query string of a request, split into reserved keys, filters, logic trees, ordering and
//! paging per embed path (§1.1 of the spec).

use percent_encoding::percent_decode_str;

use super::error::ApiError;
use super::parse::{
    looks_like_filter, parse_embed_path, parse_filter, parse_filter_key, parse_int, parse_logic,
    parse_name_list, parse_order, parse_select, Filter, Logic, OrderTerm, SelectItem,
};

/// Everything the query string says.
#[derive(Debug, Default, Clone)]
pub struct QueryParams {
    /// `select=` (None means `*`).
    pub select: Option<Vec<SelectItem>>,
    /// `columns=`
    pub columns: Option<Vec<String>>,
    /// `on_conflict=`
    pub on_conflict: Option<Vec<String>>,
    /// Filters by embed path.
    pub filters: Vec<(Vec<String>, Filter)>,
    /// Logic trees by embed path.
    pub logic: Vec<(Vec<String>, Logic)>,
    /// `order=` by embed path.
    pub order: Vec<(Vec<String>, Vec<OrderTerm>)>,
    /// `limit=` by embed path.
    pub limit: Vec<(Vec<String>, i64)>,
    /// `offset=` by embed path.
    pub offset: Vec<(Vec<String>, i64)>,
    /// GET RPC arguments: parameters whose value is not a filter.
    pub rpc_args: Vec<(String, String)>,
}

/// Decodes `application/x-www-form-urlencoded` pairs (`+` is a space). Keys without `=` are
/// dropped.
pub fn decode_pairs(raw: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in raw.split('&') {
        if part.is_empty() {
            continue;
        }
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        out.push((decode(k), decode(v)));
    }
    out
}

fn decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_decode_str(&plus).decode_utf8_lossy().into_owned()
}

const LAST_SEGMENT_RESERVED: &[&str] = &["order", "limit", "offset", "and", "or"];

/// Splits `a.b.order` into (`a.b`, `order`) when the last segment is reserved.
fn reserved_suffix(key: &str) -> Option<(&str, &str)> {
    for r in LAST_SEGMENT_RESERVED {
        if key == *r {
            return Some(("", r));
        }
        if let Some(prefix) = key.strip_suffix(&format!(".{r}")) {
            return Some((prefix, r));
        }
    }
    None
}

/// Parses the query string. For GET RPC (`rpc_get`), a parameter that does not parse as a
/// filter is a function argument.
pub fn parse_query(raw: &str, rpc_get: bool) -> Result<QueryParams, ApiError> {
    let pairs = decode_pairs(raw);
    let mut q = QueryParams::default();
    for (k, v) in &pairs {
        match k.as_str() {
            "select" => {
                if q.select.is_none() {
                    q.select = Some(parse_select(v)?);
                }
                continue;
            }
            "columns" => {
                if q.columns.is_none() {
                    q.columns = Some(parse_name_list("columns parameter", v)?);
                }
                continue;
            }
            "on_conflict" => {
                if q.on_conflict.is_none() {
                    q.on_conflict = Some(parse_name_list("on_conflict parameter", v)?);
                }
                continue;
            }
            _ => {}
        }
        if let Some((prefix, r)) = reserved_suffix(k) {
            match r {
                "order" => {
                    let path = parse_embed_path(prefix)?;
                    if !q.order.iter().any(|(p, _)| *p == path) {
                        let terms = parse_order(v)?;
                        q.order.push((path, terms));
                    }
                }
                "limit" => {
                    let path = parse_embed_path(prefix)?;
                    if !q.limit.iter().any(|(p, _)| *p == path) {
                        q.limit.push((path, parse_int("limit parameter", v)?));
                    }
                }
                "offset" => {
                    let path = parse_embed_path(prefix)?;
                    if !q.offset.iter().any(|(p, _)| *p == path) {
                        q.offset.push((path, parse_int("offset parameter", v)?));
                    }
                }
                _ => {
                    let or = r == "or";
                    let (prefix, negated) = if prefix == "not" {
                        ("", true)
                    } else if let Some(p) = prefix.strip_suffix(".not") {
                        (p, true)
                    } else {
                        (prefix, false)
                    };
                    let path = parse_embed_path(prefix)?;
                    q.logic.push((path, parse_logic(or, negated, v)?));
                }
            }
            continue;
        }
        if rpc_get && !looks_like_filter(v) {
            q.rpc_args.push((k.clone(), v.clone()));
            continue;
        }
        let (path, field) = parse_filter_key(k)?;
        q.filters.push((path, parse_filter(field, v)?));
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::parse::{self, Operation};

    #[test]
    fn splits_reserved_keys_and_filters() {
        let q = parse_query(
            "select=*,mod_chat_visitors!inner(name)&order=last_message_at.desc.nullslast&offset=20&limit=10&status=in.(active,pending)&mod_chat_visitors.name=ilike.*bob*&or=(a.eq.1,b.eq.2)&messages.order=id&messages.limit=3&not.or=(x.eq.1)&bare",
            false,
        )
        .unwrap();
        assert!(q.select.is_some());
        assert_eq!(q.order.len(), 2);
        assert_eq!(
            q.limit,
            vec![(vec![], 10), (vec!["messages".to_string()], 3)]
        );
        assert_eq!(q.offset, vec![(vec![], 20)]);
        assert_eq!(q.filters.len(), 2);
        assert_eq!(q.filters[1].0, vec!["mod_chat_visitors".to_string()]);
        assert_eq!(q.logic.len(), 2);
        match &q.logic[1].1 {
            Logic::Expr { negated, or, .. } => {
                assert!(*negated);
                assert!(*or);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plus_is_space_and_percent_decodes() {
        let q = parse_query("name=eq.a+b%2Cc", false).unwrap();
        assert_eq!(
            q.filters[0].1.op,
            Operation::Simple(parse::SimpleOp::Eq, None, "a b,c".into())
        );
    }

    #[test]
    fn empty_filter_value_is_an_error() {
        assert_eq!(parse_query("id=", false).unwrap_err().code, "PGRST100");
    }

    #[test]
    fn rpc_get_arguments() {
        let q = parse_query("name_param=supabot&status=neq.ONLINE", true).unwrap();
        assert_eq!(q.rpc_args, vec![("name_param".into(), "supabot".into())]);
        assert_eq!(q.filters.len(), 1);
    }
}
