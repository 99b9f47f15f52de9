//! Integration tests of the PostgREST-compatible API against a real PostgreSQL: each test gets a
//! fresh migrated database ([`Stack::for_tests`]) and checks exact statuses, bodies and headers.

use livechat_stack::Stack;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client (the stack crate has no HTTP client dependency).
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }
    fn content_range(&self) -> Option<&str> {
        self.header("content-range")
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(pos) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_line = String::from_utf8_lossy(&raw[..pos]).to_string();
        let size = usize::from_str_radix(size_line.trim(), 16).unwrap_or(0);
        raw = &raw[pos + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size.min(raw.len())]);
        raw = &raw[(size + 2).min(raw.len())..];
    }
}

struct Api {
    port: u16,
    key: String,
}

impl Api {
    fn new(stack: &Stack, key: &str) -> Api {
        Api {
            port: stack.port(),
            key: key.to_string(),
        }
    }

    async fn req(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Resp {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        let path: String = path
            .chars()
            .map(|c| match c {
                ' ' => "%20".to_string(),
                '"' => "%22".to_string(),
                '{' => "%7B".to_string(),
                '}' => "%7D".to_string(),
                '|' => "%7C".to_string(),
                '<' => "%3C".to_string(),
                '>' => "%3E".to_string(),
                '\\' => "%5C".to_string(),
                c => c.to_string(),
            })
            .collect();
        let mut req = format!(
            "{method} /rest/v1{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\napikey: {}\r\n",
            self.key
        );
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            && !self.key.is_empty()
        {
            req.push_str(&format!("Authorization: Bearer {}\r\n", self.key));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or("");
        if !body.is_empty() || matches!(method, "POST" | "PATCH" | "PUT") {
            req.push_str("Content-Type: application/json\r\n");
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.expect("read");
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header end");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
        {
            body = dechunk(&body);
        }
        Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&body).to_string(),
        }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.req("GET", path, headers, None).await
    }
}

// ---------------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------------

const SITE: &str = "00000000-0000-0000-0000-0000000000b1";
const D1: &str = "00000000-0000-0000-0000-0000000000d1";
const D2: &str = "00000000-0000-0000-0000-0000000000d2";
const G1: &str = "00000000-0000-0000-0000-0000000000a1";
const G2: &str = "00000000-0000-0000-0000-0000000000a2";
const V1: &str = "00000000-0000-0000-0000-0000000000e1";
const V2: &str = "00000000-0000-0000-0000-0000000000e2";
const V3: &str = "00000000-0000-0000-0000-0000000000e3";
const C1: &str = "00000000-0000-0000-0000-0000000000c1";
const C2: &str = "00000000-0000-0000-0000-0000000000c2";
const C3: &str = "00000000-0000-0000-0000-0000000000c3";
const C4: &str = "00000000-0000-0000-0000-0000000000c4";
const USER: &str = "00000000-0000-0000-0000-000000000001";

async fn sql(stack: &Stack, text: &str) {
    let (client, conn) = tokio_postgres::connect(&stack.db_url(), tokio_postgres::NoTls)
        .await
        .expect("connect db");
    let h = tokio::spawn(conn);
    client.batch_execute(text).await.expect("fixture sql");
    drop(client);
    let _ = h.await;
}

async fn fixture() -> Stack {
    let stack = Stack::for_tests().await.expect("stack");
    sql(
        &stack,
        &format!(
            r#"
insert into public.agencies (id, name) values ('00000000-0000-0000-0000-0000000000f1', 'Agency');
insert into public.agency_members (agency_id, user_id) values ('00000000-0000-0000-0000-0000000000f1', '{USER}');
insert into public.sites (id, agency_id, name) values ('{SITE}', '00000000-0000-0000-0000-0000000000f1', 'Site');
insert into public.mod_chat_departments (id, site_id, name, sort_order) values
  ('{D1}', '{SITE}', 'Sales', 1), ('{D2}', '{SITE}', 'Support', 2);
insert into public.mod_chat_agents (id, site_id, user_id, display_name, email, department_id) values
  ('{G1}', '{SITE}', '{USER}', 'Alice', 'alice@x.com', '{D1}'),
  ('{G2}', '{SITE}', '00000000-0000-0000-0000-000000000002', 'Bob', null, null);
insert into public.mod_chat_visitors (id, site_id, name, email, avatar_url) values
  ('{V1}', '{SITE}', 'Vera', 'vera@x.com', null),
  ('{V2}', '{SITE}', 'Walt', 'walt@x.com', 'http://a/w.png'),
  ('{V3}', '{SITE}', 'Xena', null, null);
insert into public.mod_chat_conversations (id, site_id, visitor_id, assigned_agent_id, department_id, status, last_message_at, subject) values
  ('{C1}', '{SITE}', '{V1}', '{G1}', '{D1}', 'active', '2026-01-01 10:00+00', 'Hello'),
  ('{C2}', '{SITE}', '{V2}', null, '{D2}', 'pending', '2026-01-02 10:00+00', 'Price?'),
  ('{C3}', '{SITE}', '{V1}', '{G2}', null, 'resolved', null, 'Bye'),
  ('{C4}', '{SITE}', '{V3}', null, null, 'pending', '2026-01-03 10:00+00', 'Help');
"#
        ),
    )
    .await;
    stack
}

fn error_body(code: &str, message: &str, details: Value, hint: Value) -> Value {
    json!({"code": code, "message": message, "details": details, "hint": hint})
}

// ---------------------------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn dashboard_list_with_inner_embed_count_order_and_paging() {
    let stack = fixture().await;
    let api = Api::new(&stack, stack.service_role_key());
    let r = api
        .get(
            "/mod_chat_conversations?select=id,status,mod_chat_visitors!inner(name,email,avatar_url),mod_chat_agents(display_name),mod_chat_departments(name)&order=last_message_at.desc.nullslast&offset=0&limit=2",
            &[("Prefer", "count=exact")],
        )
        .await;
    assert_eq!(r.status, 206, "{r:?}");
    assert_eq!(r.content_range(), Some("0-1/4"));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.header("preference-applied"), Some("count=exact"));
    assert_eq!(
        r.body,
        format!(
            "[{{\"id\":\"{C4}\",\"status\":\"pending\",\"mod_chat_visitors\":{{\"name\": \"Xena\", \"email\": null, \"avatar_url\": null}},\"mod_chat_agents\":null,\"mod_chat_departments\":null}}, \n {{\"id\":\"{C2}\",\"status\":\"pending\",\"mod_chat_visitors\":{{\"name\": \"Walt\", \"email\": \"walt@x.com\", \"avatar_url\": \"http://a/w.png\"}},\"mod_chat_agents\":null,\"mod_chat_departments\":{{\"name\": \"Support\"}}}}]"
        )
    );
    // the next page, nulls last
    let r = api
        .get(
            "/mod_chat_conversations?select=id,mod_chat_agents(display_name)&order=last_message_at.desc.nullslast&offset=2&limit=2",
            &[("Prefer", "count=exact")],
        )
        .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.content_range(), Some("2-3/4"));
    assert_eq!(
        r.json(),
        json!([
            {"id": C1, "mod_chat_agents": {"display_name": "Alice"}},
            {"id": C3, "mod_chat_agents": {"display_name": "Bob"}}
        ])
    );
    // the full dashboard shape with `*`
    let r = api
        .get(
            "/mod_chat_conversations?select=*,mod_chat_visitors!inner(name,email,avatar_url),mod_chat_agents(display_name),mod_chat_departments(name)&order=last_message_at.desc.nullslast&offset=0&limit=20",
            &[("Prefer", "count=exact")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_range(), Some("0-3/4"));
    let rows = r.json();
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[3]["id"], C3);
    assert_eq!(rows[3]["subject"], "Bye");
    assert_eq!(rows[3]["mod_chat_visitors"]["name"], "Vera");
    assert_eq!(rows[3]["mod_chat_departments"], Value::Null);
    // columns in table order, every embed after them
    assert!(r.body.starts_with(&format!(
        "[{{\"id\":\"{C4}\",\"site_id\":\"{SITE}\",\"visitor_id\":"
    )));
    assert!(r
        .body
        .contains("\"closed_at\":null,\"mod_chat_visitors\":{\"name\": \"Xena\""));
}

#[tokio::test]
async fn inner_embed_filter_filters_parents_and_left_embed_filter_does_not() {
    let stack = fixture().await;
    let api = Api::new(&stack, stack.service_role_key());
    let r = api
        .get(
            "/mod_chat_conversations?select=id,mod_chat_visitors!inner(name)&mod_chat_visitors.email=ilike.*WALT*",
            &[("Prefer", "count=exact")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_range(), Some("0-0/1"));
    assert_eq!(
        r.body,
        format!("[{{\"id\":\"{C2}\",\"mod_chat_visitors\":{{\"name\": \"Walt\"}}}}]")
    );
    let r = api
        .get(
            "/mod_chat_conversations?select=id,mod_chat_visitors(name)&mod_chat_visitors.email=ilike.*WALT*&order=id",
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_range(), Some("0-3/*"));
    assert_eq!(
        r.json(),
        json!([
            {"id": C1, "mod_chat_visitors": null},
            {"id": C2, "mod_chat_visitors": {"name": "Walt"}},
            {"id": C3, "mod_chat_visitors": null},
            {"id": C4, "mod_chat_visitors": null}
        ])
    );
    // to-many embed with embedded order/limit, and `embed=not.is.null`
    let r = api
        .get(
            "/mod_chat_visitors?select=name,mod_chat_conversations(subject)&mod_chat_conversations.order=subject.desc&mod_chat_conversations.limit=1&order=name",
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        "[{\"name\":\"Vera\",\"mod_chat_conversations\":[{\"subject\": \"Hello\"}]}, \n {\"name\":\"Walt\",\"mod_chat_conversations\":[{\"subject\": \"Price?\"}]}, \n {\"name\":\"Xena\",\"mod_chat_conversations\":[{\"subject\": \"Help\"}]}]"
    );
    let r = api
        .get(
            "/mod_chat_conversations?select=id,mod_chat_agents()&mod_chat_agents=not.is.null&order=id",
            &[],
        )
        .await;
    assert_eq!(r.json(), json!([{"id": C1}, {"id": C3}]));
    let r = api
        .get(
            "/mod_chat_conversations?select=id,mod_chat_agents(display_name)&mod_chat_agents.display_name=eq.Bob&or=(mod_chat_agents.is.null,status.eq.active)&order=id",
            &[],
        )
        .await;
    assert_eq!(
        r.json(),
        json!([{"id": C1, "mod_chat_agents": null}, {"id": C2, "mod_chat_agents": null}, {"id": C4, "mod_chat_agents": null}])
    );
}

#[tokio::test]
async fn filters_in_is_not_is_ilike_or() {
    let stack = fixture().await;
    let api = Api::new(&stack, stack.service_role_key());
    let ids = |r: &Resp| -> Vec<String> {
        r.json()
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| v["id"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let r = api
        .get(
            "/mod_chat_conversations?select=id&status=in.(active,resolved)&order=id",
            &[],
        )
        .await;
    assert_eq!(ids(&r), vec![C1, C3]);
    let r = api
        .get(
            "/mod_chat_conversations?select=id&status=not.in.(active,resolved)&order=id",
            &[],
        )
        .await;
    assert_eq!(ids(&r), vec![C2, C4]);
    let r = api
        .get("/mod_chat_conversations?select=id&status=in.()", &[])
        .await;
    assert_eq!(r.body, "[]");
    let r = api
        .get(
            "/mod_chat_conversations?select=id&assigned_agent_id=is.null&order=id",
            &[],
        )
        .await;
    assert_eq!(ids(&r), vec![C2, C4]);
    let r = api
        .get(
            "/mod_chat_conversations?select=id&assigned_agent_id=not.is.null&order=id",
            &[],
        )
        .await;
    assert_eq!(ids(&r), vec![C1, C3]);
    let r = api
        .get(
            "/mod_chat_conversations?select=id&subject=ilike.*EL*&order=id",
            &[],
        )
        .await;
    assert_eq!(ids(&r), vec![C1, C4]);
    let r = api
        .get(
            "/mod_chat_conversations?select=id&subject=like.H*&order=id.desc",
            &[],
        )
        .await;
    assert_eq!(ids(&r), vec![C4, C1]);
    let r = api
        .get(
            "/mod_chat_conversations?select=id&or=(status.eq.resolved,and(status.eq.pending,subject.eq.Help))&order=id",
            &[],
        )
        .await;
    assert_eq!(ids(&r), vec![C3, C4]);
    let r = api
        .get(
            "/mod_chat_conversations?select=id&not.or=(status.eq.resolved,status.eq.pending)",
            &[],
        )
        .await;
    assert_eq!(ids(&r), vec![C1]);
    let r = api
        .get(
            "/mod_chat_conversations?select=id&last_message_at=gte.2026-01-02&last_message_at=lt.2026-01-03&order=id",
            &[],
        )
        .await;
    assert_eq!(ids(&r), vec![C2]);
    let r = api
        .get("/mod_chat_conversations?select=id&subject=fts.hello", &[])
        .await;
    assert_eq!(ids(&r), vec![C1]);
    let r = api
        .get(
            "/mod_chat_conversations?select=id&subject=wfts(english).help&order=id",
            &[],
        )
        .await;
    assert_eq!(ids(&r), vec![C4]);
    let r = api
        .get(
            "/mod_chat_conversations?select=id&subject=imatch.^h&subject=not.match.^Hell&order=id",
            &[],
        )
        .await;
    assert_eq!(ids(&r), vec![C4]);
    let r = api
        .get(
            "/mod_chat_conversations?select=id&assigned_agent_id=isdistinct.{G1}&order=id"
                .replace("{G1}", G1)
                .as_str(),
            &[],
        )
        .await;
    assert_eq!(ids(&r), vec![C2, C3, C4]);
    let r = api
        .get(
            "/mod_chat_conversations?select=id&subject=like(any).{H*,B*}&order=id",
            &[],
        )
        .await;
    assert_eq!(ids(&r), vec![C1, C3, C4]);
    let r = api
        .get(
            "/mod_chat_conversations?select=id&tags=cs.{}&status=eq.resolved",
            &[],
        )
        .await;
    assert_eq!(ids(&r), vec![C3]);
    // quoted `in` values with commas and parentheses, values with dots and commas in eq
    sql(&stack, &format!("update public.mod_chat_visitors set name = 'Hebdon, John' where id = '{V3}'; update public.mod_chat_visitors set name = 'a.b,c:d(e)' where id = '{V2}'")).await;
    let r = api
        .get(
            "/mod_chat_visitors?select=id&name=in.(\"Hebdon, John\",Nobody)",
            &[],
        )
        .await;
    assert_eq!(ids(&r), vec![V3]);
    let r = api
        .get("/mod_chat_visitors?select=id&name=eq.a.b,c:d(e)", &[])
        .await;
    assert_eq!(ids(&r), vec![V2]);
    // JSON path and cast in select, alias
    sql(&stack, &format!("update public.mod_chat_conversations set metadata = '{{\"a\": {{\"b\": 7}}, \"tags\": [\"x\", \"y\"]}}' where id = '{C1}'")).await;
    let r = api
        .get(
            &format!("/mod_chat_conversations?select=ident:id,b:metadata->a->>b,metadata->tags->0,message_count::text&id=eq.{C1}&metadata->a->>b=eq.7"),
            &[],
        )
        .await;
    assert_eq!(
        r.body,
        format!("[{{\"ident\":\"{C1}\",\"b\":\"7\",\"tags\":\"x\",\"message_count\":\"0\"}}]")
    );
}

#[tokio::test]
async fn singular_and_maybe_single_and_head_counts() {
    let stack = fixture().await;
    let api = Api::new(&stack, stack.service_role_key());
    let obj = [("Accept", "application/vnd.pgrst.object+json")];
    let r = api
        .get(
            &format!("/mod_chat_agents?select=display_name,email&id=eq.{G1}"),
            &obj,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.pgrst.object+json; charset=utf-8")
    );
    assert_eq!(
        r.body,
        "{\"display_name\":\"Alice\",\"email\":\"alice@x.com\"}"
    );
    assert_eq!(r.content_range(), Some("0-0/*"));
    let r = api
        .get(
            "/mod_chat_agents?select=id&id=eq.00000000-0000-0000-0000-000000000000",
            &obj,
        )
        .await;
    assert_eq!(r.status, 406);
    assert_eq!(
        r.json(),
        error_body(
            "PGRST116",
            "Cannot coerce the result to a single JSON object",
            json!("The result contains 0 rows"),
            Value::Null
        )
    );
    assert_eq!(r.header("proxy-status"), Some("PostgREST; error=PGRST116"));
    let r = api.get("/mod_chat_agents?select=id", &obj).await;
    assert_eq!(r.json()["details"], "The result contains 2 rows");
    // maybeSingle: a plain array read
    let r = api
        .get(
            "/mod_chat_agents?select=id&id=eq.00000000-0000-0000-0000-000000000000",
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str(), r.content_range()),
        (200, "[]", Some("*/*"))
    );
    // HEAD with a count
    let r = api
        .req(
            "HEAD",
            "/mod_chat_conversations?select=*",
            &[("Prefer", "count=exact")],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_range(), Some("0-3/4"));
    assert_eq!(r.body, "");
    let r = api
        .req(
            "HEAD",
            "/mod_chat_conversations?status=eq.pending&limit=1",
            &[("Prefer", "count=exact")],
            None,
        )
        .await;
    assert_eq!((r.status, r.content_range()), (206, Some("0-0/2")));
    // limit=0 and offset past the end
    let r = api
        .get(
            "/mod_chat_conversations?limit=0",
            &[("Prefer", "count=exact")],
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str(), r.content_range()),
        (206, "[]", Some("*/4"))
    );
    let r = api
        .get(
            "/mod_chat_conversations?offset=10",
            &[("Prefer", "count=exact")],
        )
        .await;
    assert_eq!(r.status, 416);
    assert_eq!(
        r.json(),
        error_body(
            "PGRST103",
            "Requested range not satisfiable",
            json!("An offset of 10 was requested, but there are only 4 rows."),
            Value::Null
        )
    );
    let r = api.get("/mod_chat_conversations?limit=-1", &[]).await;
    assert_eq!(r.status, 416);
    assert_eq!(
        r.json()["details"],
        "Limit should be greater than or equal to zero."
    );
    // Range header on GET, intersected with limit
    let r = api
        .get(
            "/mod_chat_conversations?select=id&order=id&limit=3",
            &[("Range", "1-5")],
        )
        .await;
    assert_eq!(r.content_range(), Some("1-2/*"));
    assert_eq!(r.json(), json!([{"id": C2}, {"id": C3}]));
}

// ---------------------------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn insert_update_delete() {
    let stack = fixture().await;
    let api = Api::new(&stack, stack.service_role_key());
    let d3 = "00000000-0000-0000-0000-0000000000d3";
    let r = api
        .req(
            "POST",
            "/mod_chat_departments?select=id,name,is_default",
            &[("Prefer", "return=representation")],
            Some(&format!(
                "{{\"id\":\"{d3}\",\"site_id\":\"{SITE}\",\"name\":\"Billing\"}}"
            )),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        r.body,
        format!("[{{\"id\":\"{d3}\",\"name\":\"Billing\",\"is_default\":false}}]")
    );
    assert_eq!(r.content_range(), Some("*/*"));
    assert_eq!(
        r.header("preference-applied"),
        Some("return=representation")
    );
    // minimal (the default): no body
    let r = api
        .req("POST", "/mod_chat_departments", &[], Some(&format!("[{{\"site_id\":\"{SITE}\",\"name\":\"A\"}},{{\"site_id\":\"{SITE}\",\"name\":\"B\"}}]")))
        .await;
    assert_eq!(
        (r.status, r.body.as_str(), r.content_range()),
        (201, "", Some("*/*"))
    );
    assert_eq!(r.header("content-type"), None);
    // headers-only gives Location
    let d4 = "00000000-0000-0000-0000-0000000000d4";
    let r = api
        .req(
            "POST",
            "/mod_chat_departments",
            &[("Prefer", "return=headers-only")],
            Some(&format!(
                "{{\"id\":\"{d4}\",\"site_id\":\"{SITE}\",\"name\":\"C\"}}"
            )),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("location"),
        Some(format!("/mod_chat_departments?id=eq.{d4}").as_str())
    );
    // singular insert with count
    let r = api
        .req(
            "POST",
            "/mod_chat_visitors?select=name",
            &[
                ("Prefer", "return=representation,count=exact"),
                ("Accept", "application/vnd.pgrst.object+json"),
            ],
            Some(&format!("{{\"site_id\":\"{SITE}\",\"name\":\"Yuri\"}}")),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str(), r.content_range()),
        (201, "{\"name\":\"Yuri\"}", Some("*/1"))
    );
    // PATCH with filters
    let r = api
        .req(
            "PATCH",
            "/mod_chat_conversations?select=id,status&status=eq.pending&order=id",
            &[("Prefer", "return=representation")],
            Some("{\"status\":\"active\"}"),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!([{"id": C2, "status": "active"}, {"id": C4, "status": "active"}])
    );
    assert_eq!(r.content_range(), Some("0-1/*"));
    let r = api
        .req(
            "PATCH",
            &format!("/mod_chat_conversations?id=eq.{C1}"),
            &[("Prefer", "count=exact")],
            Some("{\"subject\":\"Hi\"}"),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str(), r.content_range()),
        (204, "", Some("0-0/1"))
    );
    let r = api
        .req(
            "PATCH",
            "/mod_chat_conversations?id=eq.00000000-0000-0000-0000-000000000000",
            &[],
            Some("{\"subject\":\"Hi\"}"),
        )
        .await;
    assert_eq!((r.status, r.content_range()), (204, Some("*/*")));
    // singular PATCH matching 4 rows: 406 and nothing changes
    let r = api
        .req(
            "PATCH",
            "/mod_chat_conversations",
            &[
                ("Accept", "application/vnd.pgrst.object+json"),
                ("Prefer", "return=representation"),
            ],
            Some("{\"subject\":\"ALL\"}"),
        )
        .await;
    assert_eq!(r.status, 406);
    assert_eq!(r.json()["details"], "The result contains 4 rows");
    let r = api.get("/mod_chat_conversations?subject=eq.ALL", &[]).await;
    assert_eq!(r.body, "[]");
    // DELETE
    let r = api
        .req(
            "DELETE",
            &format!("/mod_chat_conversations?select=id&id=in.({C3},{C4})&order=id"),
            &[("Prefer", "return=representation")],
            None,
        )
        .await;
    assert_eq!((r.status, r.content_range()), (200, Some("*/*")));
    assert_eq!(r.json(), json!([{"id": C3}, {"id": C4}]));
    let r = api
        .req(
            "DELETE",
            &format!("/mod_chat_conversations?id=eq.{C2}"),
            &[("Prefer", "count=exact")],
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str(), r.content_range()),
        (204, "", Some("*/1"))
    );
    // unknown payload column, invalid JSON, mismatched keys
    let r = api
        .req(
            "POST",
            "/mod_chat_departments",
            &[],
            Some("{\"helicopter\":1}"),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        error_body(
            "PGRST204",
            "Could not find the 'helicopter' column of 'mod_chat_departments' in the schema cache",
            Value::Null,
            Value::Null
        )
    );
    let r = api
        .req("POST", "/mod_chat_departments", &[], Some("{nope"))
        .await;
    assert_eq!(
        r.json(),
        error_body(
            "PGRST102",
            "Empty or invalid json",
            Value::Null,
            Value::Null
        )
    );
    let r = api
        .req(
            "POST",
            "/mod_chat_departments",
            &[],
            Some("[{\"name\":\"a\"},{\"site_id\":null}]"),
        )
        .await;
    assert_eq!(
        r.json(),
        error_body(
            "PGRST102",
            "All object keys must match",
            Value::Null,
            Value::Null
        )
    );
    // columns= lifts the rule; missing=default fills defaults
    let r = api
        .req(
            "POST",
            "/mod_chat_departments?columns=site_id,name,sort_order&select=name,sort_order&order=name",
            &[("Prefer", "return=representation,missing=default")],
            Some(&format!("[{{\"site_id\":\"{SITE}\",\"name\":\"X\"}},{{\"site_id\":\"{SITE}\",\"name\":\"Y\",\"sort_order\":9,\"extra\":1}}]")),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        r.json(),
        json!([{"name": "X", "sort_order": 0}, {"name": "Y", "sort_order": 9}])
    );
    assert_eq!(
        r.header("preference-applied"),
        Some("missing=default, return=representation")
    );
}

#[tokio::test]
async fn upsert_merge_and_ignore_duplicates() {
    let stack = fixture().await;
    let api = Api::new(&stack, stack.service_role_key());
    // merge on the (site_id, user_id) unique key: an existing row gives 200
    let r = api
        .req(
            "POST",
            "/mod_chat_agents?on_conflict=site_id,user_id&select=id,display_name",
            &[(
                "Prefer",
                "resolution=merge-duplicates,return=representation",
            )],
            Some(&format!(
                "{{\"site_id\":\"{SITE}\",\"user_id\":\"{USER}\",\"display_name\":\"Alice B\"}}"
            )),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), json!([{"id": G1, "display_name": "Alice B"}]));
    assert_eq!(
        r.header("preference-applied"),
        Some("resolution=merge-duplicates, return=representation")
    );
    // a new row gives 201
    let r = api
        .req(
            "POST",
            "/mod_chat_agents?on_conflict=site_id,user_id&select=display_name",
            &[("Prefer", "resolution=merge-duplicates,return=representation")],
            Some(&format!("[{{\"site_id\":\"{SITE}\",\"user_id\":\"00000000-0000-0000-0000-000000000009\",\"display_name\":\"Cy\"}},{{\"site_id\":\"{SITE}\",\"user_id\":\"{USER}\",\"display_name\":\"Alice C\"}}]")),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.json(),
        json!([{"display_name": "Cy"}, {"display_name": "Alice C"}])
    );
    // ignore-duplicates: 201 and [] for a pure duplicate
    let r = api
        .req(
            "POST",
            "/mod_chat_departments?select=name",
            &[(
                "Prefer",
                "resolution=ignore-duplicates,return=representation",
            )],
            Some(&format!(
                "{{\"id\":\"{D1}\",\"site_id\":\"{SITE}\",\"name\":\"Other\"}}"
            )),
        )
        .await;
    assert_eq!((r.status, r.body.as_str()), (201, "[]"));
    // merge on the primary key with return=minimal
    let r = api
        .req(
            "POST",
            "/mod_chat_departments",
            &[("Prefer", "resolution=merge-duplicates")],
            Some(&format!(
                "{{\"id\":\"{D1}\",\"site_id\":\"{SITE}\",\"name\":\"Sales 2\"}}"
            )),
        )
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    let r = api
        .get(
            &format!("/mod_chat_departments?select=name&id=eq.{D1}"),
            &[],
        )
        .await;
    assert_eq!(r.body, "[{\"name\":\"Sales 2\"}]");
}

// ---------------------------------------------------------------------------------------------
// Errors and auth
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn database_errors_map_to_postgrest_statuses() {
    let stack = fixture().await;
    let api = Api::new(&stack, stack.service_role_key());
    // 23505 unique violation: 409
    let r = api
        .req(
            "POST",
            "/mod_chat_departments",
            &[],
            Some(&format!(
                "{{\"id\":\"{D1}\",\"site_id\":\"{SITE}\",\"name\":\"Dup\"}}"
            )),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json(),
        error_body(
            "23505",
            "duplicate key value violates unique constraint \"mod_chat_departments_pkey\"",
            json!(format!("Key (id)=({D1}) already exists.")),
            Value::Null
        )
    );
    assert_eq!(r.header("proxy-status"), Some("PostgREST; error=23505"));
    // 23503 foreign key violation: 409
    let r = api
        .req("POST", "/mod_chat_conversations", &[], Some(&format!("{{\"site_id\":\"{SITE}\",\"visitor_id\":\"00000000-0000-0000-0000-000000000000\"}}")))
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["code"], "23503");
    // 23514 check violation: 400
    let r = api
        .req(
            "PATCH",
            &format!("/mod_chat_conversations?id=eq.{C1}"),
            &[],
            Some("{\"status\":\"bogus\"}"),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "23514");
    // 42703 undefined column: 400
    let r = api.get("/mod_chat_conversations?select=nope", &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        error_body(
            "42703",
            "column mod_chat_conversations.nope does not exist",
            Value::Null,
            Value::Null
        )
    );
    // 22P02 bad input: 400
    let r = api
        .get("/mod_chat_conversations?message_count=eq.abc", &[])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "invalid input syntax for type integer: \"abc\""
    );
    // PGRST205 unknown table with a hint
    let r = api.get("/mod_chat_conversation", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        error_body(
            "PGRST205",
            "Could not find the table 'public.mod_chat_conversation' in the schema cache",
            Value::Null,
            json!("Perhaps you meant the table 'public.mod_chat_conversations'")
        )
    );
    // PGRST100 malformed filter
    let r = api.get("/mod_chat_conversations?status=0", &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        error_body(
            "PGRST100",
            "\"failed to parse filter (0)\" (line 1, column 1)",
            json!("unexpected \"0\" expecting \"not\" or operator (eq, gt, ...)"),
            Value::Null
        )
    );
    // PGRST200 unknown relationship, PGRST108 filter on a missing embed
    let r = api
        .get("/mod_chat_visitors?select=id,mod_chat_agents(id)", &[])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        error_body("PGRST200", "Could not find a relationship between 'mod_chat_visitors' and 'mod_chat_agents' in the schema cache", json!("Searched for a foreign key relationship between 'mod_chat_visitors' and 'mod_chat_agents' in the schema 'public', but no matches were found."), Value::Null)
    );
    let r = api
        .get(
            "/mod_chat_visitors?select=id&mod_chat_conversations.id=eq.1",
            &[],
        )
        .await;
    assert_eq!(
        r.json(),
        error_body(
            "PGRST108",
            "'mod_chat_conversations' is not an embedded resource in this request",
            Value::Null,
            json!(
                "Verify that 'mod_chat_conversations' is included in the 'select' query parameter."
            )
        )
    );
    // unsupported methods
    let r = api.req("DELETE", "/rpc/anything", &[], None).await;
    assert_eq!(
        r.json(),
        error_body(
            "PGRST101",
            "Cannot use the DELETE method on RPC",
            Value::Null,
            Value::Null
        )
    );
    assert_eq!(r.status, 405);
    let r = api.req("TRACE", "/mod_chat_visitors", &[], None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["code"], "PGRST117");
    // handling=strict
    let r = api
        .get("/mod_chat_visitors", &[("Prefer", "handling=strict, foo")])
        .await;
    assert_eq!(
        r.json(),
        error_body(
            "PGRST122",
            "Invalid preferences given with handling=strict",
            json!("Invalid preferences: foo"),
            Value::Null
        )
    );
}

#[tokio::test]
async fn jwt_and_row_level_security() {
    let stack = fixture().await;
    // a token signed with another secret
    let bad = livechat_stack::jwt::anon_key("some-other-secret-that-is-long-enough-to-use");
    let api = Api::new(&stack, &bad);
    let r = api.get("/mod_chat_visitors", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        error_body(
            "PGRST301",
            "No suitable key or wrong key type",
            json!("None of the keys was able to decode the JWT"),
            Value::Null
        )
    );
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\", error_description=\"No suitable key or wrong key type\"")
    );
    // expired
    let expired =
        livechat_stack::jwt::sign_role("anon", -3600, Default::default(), stack.jwt_secret());
    let api = Api::new(&stack, &expired);
    let r = api.get("/mod_chat_visitors", &[]).await;
    assert_eq!(
        r.body,
        r#"{"code":"PGRST303","details":null,"hint":null,"message":"JWT expired"}"#
    );
    // anon: RLS hides rows; a write without a policy is 401
    let anon = Api::new(&stack, stack.anon_key());
    let r = anon.get("/mod_chat_conversations?select=id", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "[]"));
    let r = anon
        .req(
            "POST",
            "/mod_chat_departments",
            &[],
            Some(&format!("{{\"site_id\":\"{SITE}\",\"name\":\"x\"}}")),
        )
        .await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.json()["code"], "42501");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    // no Authorization header at all is anonymous too (the apikey header is ignored)
    let none = Api::new(&stack, "");
    let r = none.get("/mod_chat_conversations?select=id", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "[]"));
    // an authenticated member sees its site's rows (auth.uid() reads request.jwt.claims)
    let user = Api::new(&stack, &stack.user_token(USER, Some("u@x.com")));
    let r = user
        .get(
            "/mod_chat_conversations?select=id&order=id",
            &[("Prefer", "count=exact")],
        )
        .await;
    assert_eq!((r.status, r.content_range()), (200, Some("0-3/4")));
    // another user sees nothing and gets 403 on a write
    let other = Api::new(
        &stack,
        &stack.user_token("00000000-0000-0000-0000-000000000099", None),
    );
    let r = other.get("/mod_chat_conversations?select=id", &[]).await;
    assert_eq!(r.body, "[]");
    let r = other
        .req(
            "POST",
            "/mod_chat_departments",
            &[],
            Some(&format!("{{\"site_id\":\"{SITE}\",\"name\":\"x\"}}")),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json()["message"],
        "new row violates row-level security policy for table \"mod_chat_departments\""
    );
}

// ---------------------------------------------------------------------------------------------
// RPC and the schema cache
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn rpc_shapes_and_reload_of_the_schema_cache() {
    let stack = fixture().await;
    let api = Api::new(&stack, stack.service_role_key());
    // created while the stack runs: served without a restart
    sql(
        &stack,
        r#"
create function public.add_them(a integer, b integer default 1) returns integer language sql immutable as $$ select a + b $$;
create function public.visitor_names() returns setof text language sql stable as $$ select name from public.mod_chat_visitors order by name $$;
create function public.touch() returns void language sql as $$ select 1 $$;
create function public.busy_agents(min_count integer default 0) returns setof public.mod_chat_agents language sql stable as $$ select * from public.mod_chat_agents where current_chat_count >= min_count order by display_name $$;
create function public.agent_by_name(n text) returns public.mod_chat_agents language sql stable as $$ select * from public.mod_chat_agents where display_name = n $$;
create function public.fail() returns void language plpgsql as $$ begin raise exception 'nope' using detail = 'd', hint = 'h'; end $$;
create table public.notes (id bigint generated by default as identity primary key, body text not null);
create table public.nums (id int primary key, n numeric, j json);
create function public.pairs() returns table(a int, b text) language sql stable as $$ values (1, 'x'), (2, 'y') $$;
create function public.echo_json(json) returns json language sql immutable as $$ select $1 $$;
create function public.over(a int) returns text language sql immutable as $$ select 'int' $$;
create function public.over(a text) returns text language sql immutable as $$ select 'text' $$;
create function public.writes() returns int language sql volatile as $$ insert into public.notes (body) values ('w') returning id::int $$;
"#,
    )
    .await;
    let r = api
        .req("POST", "/rpc/add_them", &[], Some("{\"a\":2,\"b\":3}"))
        .await;
    assert_eq!(
        (r.status, r.body.as_str(), r.content_range()),
        (200, "5", Some("0-0/*"))
    );
    let r = api
        .req("POST", "/rpc/add_them", &[], Some("{\"a\":2}"))
        .await;
    assert_eq!(r.body, "3");
    let r = api.get("/rpc/add_them?a=40&b=2", &[]).await;
    assert_eq!(r.body, "42");
    let r = api.req("POST", "/rpc/visitor_names", &[], None).await;
    assert_eq!(r.body, "[\"Vera\", \"Walt\", \"Xena\"]");
    let r = api.req("POST", "/rpc/touch", &[], Some("{}")).await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert_eq!(r.header("content-type"), None);
    let r = api
        .req("POST", "/rpc/busy_agents?select=display_name,mod_chat_departments(name)&display_name=neq.Nobody", &[("Prefer", "count=exact")], Some("{\"min_count\":0}"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_range(), Some("0-1/2"));
    assert_eq!(
        r.body,
        "[{\"display_name\":\"Alice\",\"mod_chat_departments\":{\"name\": \"Sales\"}}, \n {\"display_name\":\"Bob\",\"mod_chat_departments\":null}]"
    );
    let r = api
        .get("/rpc/agent_by_name?n=Bob&select=display_name", &[])
        .await;
    assert_eq!(r.body, "{\"display_name\":\"Bob\"}");
    // the body reaches PostgreSQL as sent: numeric precision and json formatting survive
    let r = api
        .req(
            "POST",
            "/nums",
            &[("Prefer", "return=representation")],
            Some("{\"id\":1,\"n\":12345678901234567890.123456789,\"j\":{\"a\":  1}}"),
        )
        .await;
    assert_eq!(
        r.body,
        "[{\"id\":1,\"n\":12345678901234567890.123456789,\"j\":{\"a\":  1}}]"
    );
    let r = api.get("/rpc/pairs?b=neq.x", &[]).await;
    assert_eq!(r.body, "[{\"a\":2,\"b\":\"y\"}]");
    let r = api
        .req("POST", "/rpc/echo_json", &[], Some("{\"any\": [1, 2]}"))
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, "{\"any\": [1, 2]}"));
    let r = api.req("POST", "/rpc/over", &[], Some("{\"a\": 1}")).await;
    assert_eq!(r.status, 300);
    assert_eq!(
        r.json(),
        error_body(
            "PGRST203",
            "Could not choose the best candidate function between: public.over(a => integer), public.over(a => text)",
            Value::Null,
            json!("Try renaming the parameters or the function itself in the database so function overloading can be resolved")
        )
    );
    // a volatile function that writes cannot run under GET (read-only transaction)
    let r = api.get("/rpc/writes", &[]).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (405, Some("25006")));
    let r = api.req("POST", "/rpc/writes", &[], None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "1"));
    // not found
    let r = api
        .req("POST", "/rpc/add_them", &[], Some("{\"x\":1}"))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        error_body(
            "PGRST202",
            "Could not find the function public.add_them(x) in the schema cache",
            json!("Searched for the function public.add_them with parameter x or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache."),
            json!("Perhaps you meant to call the function public.add_them(a, b)")
        )
    );
    let r = api.get("/rpc/nothing_here", &[]).await;
    assert_eq!(
        r.json(),
        error_body(
            "PGRST202",
            "Could not find the function public.nothing_here without parameters in the schema cache",
            json!("Searched for the function public.nothing_here without parameters, but no matches were found in the schema cache."),
            Value::Null
        )
    );
    // RAISE in a function: P0001 400 with detail and hint
    let r = api.req("POST", "/rpc/fail", &[], None).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        error_body("P0001", "nope", json!("d"), json!("h"))
    );
    // a table created at run time
    let r = api
        .req(
            "POST",
            "/notes?select=id,body",
            &[("Prefer", "return=representation")],
            Some("{\"body\":\"hi\"}"),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (201, "[{\"id\":2,\"body\":\"hi\"}]")
    );
}

#[tokio::test]
async fn request_settings_reach_the_database() {
    let stack = fixture().await;
    sql(
        &stack,
        r#"
create function public.whoami() returns json language sql stable as $$
  select json_build_object(
    'role', current_user,
    'claims', current_setting('request.jwt.claims', true)::json,
    'method', current_setting('request.method', true),
    'path', current_setting('request.path', true),
    'header', current_setting('request.headers', true)::json->>'x-test',
    'uid', auth.uid())
$$;
"#,
    )
    .await;
    let user = Api::new(&stack, &stack.user_token(USER, None));
    let r = user.get("/rpc/whoami", &[("X-Test", "yes")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(v["role"], "authenticated");
    assert_eq!(v["claims"]["role"], "authenticated");
    assert_eq!(v["claims"]["sub"], USER);
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/rpc/whoami");
    assert_eq!(v["header"], "yes");
    assert_eq!(v["uid"], USER);
    let anon = Api::new(&stack, "");
    let r = anon.req("POST", "/rpc/whoami", &[], None).await;
    assert_eq!(r.json()["claims"], json!({"role": "anon"}));
}

/// Polls until a GET answers with the given error code (the cache reloads asynchronously).
async fn eventually_code(api: &Api, path: &str, code: &str) -> bool {
    for _ in 0..50 {
        let r = api.get(path, &[]).await;
        if r.status != 200 && r.json()["code"] == code {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn ddl_notifications_reload_the_schema_cache() {
    let stack = fixture().await;
    let api = Api::new(&stack, stack.service_role_key());
    sql(&stack, "create table public.scratch (id int primary key)").await;
    let r = api.get("/scratch", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "[]"));
    // Only the NOTIFY sent by the event trigger can turn PostgreSQL's 42P01 into PGRST205.
    sql(&stack, "drop table public.scratch").await;
    assert!(eventually_code(&api, "/scratch", "PGRST205").await);
    // A column added at run time is writable at once.
    sql(
        &stack,
        "alter table public.mod_chat_departments add column color text default 'red'",
    )
    .await;
    let r = api
        .req(
            "PATCH",
            &format!("/mod_chat_departments?id=eq.{D1}&select=color"),
            &[("Prefer", "return=representation")],
            Some("{\"color\":\"blue\"}"),
        )
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, "[{\"color\":\"blue\"}]"));
}

#[tokio::test]
async fn the_pool_and_the_listener_recover_when_postgres_restarts() {
    let stack = livechat_stack::Stack::start(livechat_stack::StackOptions::ephemeral())
        .await
        .expect("own stack");
    let api = Api::new(&stack, stack.service_role_key());
    let r = api.get("/mod_chat_departments?select=id", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "[]"));
    stack.restart_postgres().await.expect("restart");
    let mut ok = false;
    for _ in 0..50 {
        let r = api.get("/mod_chat_departments?select=id", &[]).await;
        if r.status == 200 {
            assert_eq!(r.body, "[]");
            ok = true;
            break;
        }
        assert_eq!(r.status, 503, "{r:?}");
        let code = r.json()["code"].as_str().unwrap_or("").to_string();
        assert!(code == "PGRST000" || code == "PGRST001", "{r:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(ok, "the API did not recover after the restart");
    // the LISTEN connection is back too
    sql(&stack, "create table public.scratch (id int primary key)").await;
    let r = api.get("/scratch", &[]).await;
    assert_eq!(r.status, 200);
    sql(&stack, "drop table public.scratch").await;
    assert!(eventually_code(&api, "/scratch", "PGRST205").await);
    stack.shutdown().await;
}

#[tokio::test]
async fn options_put_spread_embedded_or_and_ambiguous_embeds() {
    let stack = fixture().await;
    let api = Api::new(&stack, stack.service_role_key());
    let r = api.req("OPTIONS", "/mod_chat_agents", &[], None).await;
    assert_eq!(
        (r.status, r.header("allow")),
        (200, Some("OPTIONS,GET,HEAD,POST,PUT,PATCH,DELETE"))
    );
    // PUT: single-row upsert by primary key
    let d9 = "00000000-0000-0000-0000-0000000000d9";
    let r = api
        .req(
            "PUT",
            &format!("/mod_chat_departments?id=eq.{d9}&select=name"),
            &[("Prefer", "return=representation")],
            Some(&format!(
                "{{\"id\":\"{d9}\",\"site_id\":\"{SITE}\",\"name\":\"New\"}}"
            )),
        )
        .await;
    assert_eq!((r.status, r.body.as_str()), (201, "[{\"name\":\"New\"}]"));
    let r = api
        .req(
            "PUT",
            &format!("/mod_chat_departments?id=eq.{d9}"),
            &[],
            Some(&format!(
                "{{\"id\":\"{d9}\",\"site_id\":\"{SITE}\",\"name\":\"Renamed\"}}"
            )),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = api
        .req("PUT", "/mod_chat_departments?name=eq.x", &[], Some("{}"))
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (405, Some("PGRST105"))
    );
    let r = api
        .req(
            "PUT",
            &format!("/mod_chat_departments?id=eq.{d9}"),
            &[],
            Some(&format!(
                "{{\"id\":\"{D1}\",\"site_id\":\"{SITE}\",\"name\":\"x\"}}"
            )),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (400, Some("PGRST115"))
    );
    // to-one spread lifts the columns
    let r = api
        .get(&format!("/mod_chat_conversations?select=id,...mod_chat_visitors(visitor_name:name)&id=eq.{C2}"), &[])
        .await;
    assert_eq!(
        r.body,
        format!("[{{\"id\":\"{C2}\",\"visitor_name\":\"Walt\"}}]")
    );
    // `embed.or` filters only the embedded rows
    let r = api
        .get(
            "/mod_chat_visitors?select=name,mod_chat_conversations(subject)&mod_chat_conversations.or=(status.eq.resolved,subject.eq.Price?)&name=in.(Vera,Walt)&order=name",
            &[],
        )
        .await;
    assert_eq!(
        r.json(),
        json!([
            {"name": "Vera", "mod_chat_conversations": [{"subject": "Bye"}]},
            {"name": "Walt", "mod_chat_conversations": [{"subject": "Price?"}]}
        ])
    );
    // related order on a to-one embed
    let r = api
        .get("/mod_chat_conversations?select=id,mod_chat_visitors(name)&order=mod_chat_visitors(name).desc,id", &[])
        .await;
    let ids: Vec<Value> = r
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|v| v["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(C4), json!(C2), json!(C1), json!(C3)]);
    // two foreign keys to the same table: 300 PGRST201, and a hint resolves it
    sql(
        &stack,
        &format!("create table public.handoffs (id int primary key, from_agent uuid references public.mod_chat_agents(id), to_agent uuid references public.mod_chat_agents(id)); insert into public.handoffs values (1, '{G1}', '{G2}')"),
    )
    .await;
    let r = api
        .get("/handoffs?select=id,mod_chat_agents(display_name)", &[])
        .await;
    assert_eq!(r.status, 300);
    assert_eq!(
        r.json(),
        error_body(
            "PGRST201",
            "Could not embed because more than one relationship was found for 'handoffs' and 'mod_chat_agents'",
            json!([
                {"cardinality": "many-to-one", "embedding": "handoffs with mod_chat_agents", "relationship": "handoffs_from_agent_fkey using handoffs(from_agent) and mod_chat_agents(id)"},
                {"cardinality": "many-to-one", "embedding": "handoffs with mod_chat_agents", "relationship": "handoffs_to_agent_fkey using handoffs(to_agent) and mod_chat_agents(id)"}
            ]),
            json!("Try changing 'mod_chat_agents' to one of the following: 'mod_chat_agents!handoffs_from_agent_fkey', 'mod_chat_agents!handoffs_to_agent_fkey'. Find the desired relationship in the 'details' key.")
        )
    );
    let r = api
        .get("/handoffs?select=id,from:mod_chat_agents!from_agent(display_name),to:to_agent(display_name)", &[])
        .await;
    assert_eq!(
        r.body,
        "[{\"id\":1,\"from\":{\"display_name\": \"Alice\"},\"to\":{\"display_name\": \"Bob\"}}]"
    );
    // Content-Location lists the parameters sorted
    let r = api.get("/handoffs?select=id&id=eq.1", &[]).await;
    assert_eq!(
        r.header("content-location"),
        Some("/handoffs?id=eq.1&select=id")
    );
}
