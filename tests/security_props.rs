//! Security properties of the library:
//!
//! 1. Secrets: `Debug` / `Display` of the configuration, the clients, their errors and the
//!    visitor-token errors never contain an API key, an access token or the JWT secret, and
//!    neither does anything the library logs (captured at TRACE level while it talks to a real
//!    stack, REST and realtime, successes and failures).
//! 2. Visitor tokens ([`livechat::visitor_token`]): exactly the documented claims, accepted by
//!    the stack's PostgREST-faithful verifier, refused when forged or tampered with, and
//!    scoped to the visitor end to end.
//! 3. Hostile input (proptest): the business-hours parser never panics on arbitrary JSON and
//!    accepts valid `HH:MM` with the right value; the PostgREST value encoder
//!    ([`livechat::rest::encode`]) never panics and its output, read back by a model of
//!    PostgREST's and PostgreSQL's parsers, matches exactly what the literal value matches.
//!
//! `PROPTEST_CASES` overrides the number of cases (default 256; the model checks are cheap).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use futures::StreamExt;
use livechat::chat::business_hours::{BusinessHours, BusinessHoursError, DAY_KEYS};
use livechat::chat::Chat;
use livechat::realtime::{
    ChannelConfig, ChannelEvent, EventFilter, PostgresChangeEvent, PostgresChangesFilter,
    RealtimeOptions,
};
use livechat::rest::encode;
use livechat::visitor_token::{
    mint_visitor_token, mint_visitor_token_at, verify_visitor_token, VerifyError, ISSUER, MAX_TTL,
};
use livechat::{Client, Config, ErrorKind};
use livechat_stack::{jwt, Stack};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{json, Map, Value};
use uuid::Uuid;

const SITE_1: &str = "b0000000-0000-4000-8000-000000000001";
const SITE_3: &str = "b0000000-0000-4000-8000-000000000003";
const ALICE: &str = "c0000000-0000-4000-8000-000000000001";
const NOAH: &str = "10000000-0000-4000-8000-000000000102";
const CONV_MIA: &str = "20000000-0000-4000-8000-000000000101";
const CONV_NOAH: &str = "20000000-0000-4000-8000-000000000102";

fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// =============================================================================================
// 1. Secrets
// =============================================================================================

/// Fails if `text` contains any secret, or a 16-character piece of one (a truncated or
/// partially redacted secret is still a leak).
fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        let chars: Vec<char> = s.chars().collect();
        let window = 16.min(chars.len());
        for start in 0..=(chars.len() - window) {
            let piece: String = chars[start..start + window].iter().collect();
            assert!(
                !text.contains(&piece),
                "{what} leaks a secret (piece {piece:?}): {text}"
            );
        }
    }
}

const KEY: &str = "sb-test-API-KEY-a7f3c91e5d2b4680-never-print-me";
const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.USER-TOKEN-4c8e2f7a19b3d605.signature-part";

#[tokio::test]
async fn debug_of_config_clients_and_options_redacts_keys_and_tokens() {
    let secrets = [KEY, TOKEN];
    let config = Config::new("http://127.0.0.1:9", KEY).expect("config");
    assert_no_secret("Config", &format!("{config:?} {config:#?}"), &secrets);
    let with_token = config.clone().with_access_token(TOKEN);
    assert_no_secret(
        "Config+token",
        &format!("{with_token:?} {with_token:#?}"),
        &secrets,
    );
    let with_provider = config
        .clone()
        .with_access_token_provider(|| async { Ok(Some(TOKEN.to_string())) });
    assert_no_secret("Config+provider", &format!("{with_provider:?}"), &secrets);

    for c in [config, with_token, with_provider] {
        let client = Client::new(c).expect("client");
        let derived = [
            client.clone(),
            client.with_access_token(TOKEN),
            client.with_access_token_provider(|| async { Ok(Some(TOKEN.to_string())) }),
            client.without_access_token(),
            client.schema("other"),
        ];
        for d in derived {
            assert_no_secret("Client", &format!("{d:?} {d:#?}"), &secrets);
            let chat = Chat::new(d.clone());
            assert_no_secret("Chat", &format!("{chat:?}"), &secrets);
            let q = d.from("mod_chat_messages").eq("site_id", SITE_1).limit(1);
            assert_no_secret("Query", &format!("{q:?}"), &secrets);
        }
    }

    let options = RealtimeOptions::new("http://127.0.0.1:9", KEY)
        .access_token(|| async { Some(TOKEN.to_string()) });
    assert_no_secret(
        "RealtimeOptions",
        &format!("{options:?} {options:#?}"),
        &secrets,
    );
    let rt = options.build().expect("realtime client");
    assert_no_secret("RealtimeClient", &format!("{rt:?} {rt:#?}"), &secrets);
    let ch = rt
        .channel("room", ChannelConfig::new())
        .await
        .expect("channel");
    assert_no_secret("Channel", &format!("{ch:?}"), &secrets);
}

#[tokio::test]
async fn errors_never_echo_keys_tokens_or_secrets() {
    let secrets = [KEY, TOKEN];
    // Invalid keys and tokens are refused without being quoted.
    for bad in [
        format!("{KEY} x"),
        format!("{KEY}\u{1}x"),
        format!("{KEY}é"),
    ] {
        let e = Config::new("http://127.0.0.1:9", bad).expect_err("invalid key");
        assert_no_secret("Config error", &format!("{e} {e:?}"), &secrets);
    }
    // A transport failure (nothing listens on port 9) with a key and a token set.
    let client = Client::new(
        Config::new("http://127.0.0.1:9", KEY)
            .expect("config")
            .with_access_token(TOKEN)
            .with_timeout(Duration::from_secs(5)),
    )
    .expect("client");
    let e = client
        .from("mod_chat_messages")
        .fetch::<Value>()
        .await
        .expect_err("nothing listens");
    assert_no_secret("transport error", &format!("{e} {e:?}"), &secrets);
    // A token that cannot go into a header.
    let e = client
        .with_access_token(format!("{TOKEN}\u{7f}"))
        .from("t")
        .fetch::<Value>()
        .await
        .expect_err("bad header");
    assert_no_secret("header error", &format!("{e} {e:?}"), &secrets);
    // Realtime: a refused connection.
    let e = RealtimeOptions::new("http://127.0.0.1:9", KEY)
        .access_token(|| async { Some(TOKEN.to_string()) })
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect_err("nothing listens");
    assert_no_secret("realtime error", &format!("{e} {e:?}"), &secrets);

    // Visitor tokens: errors quote neither the secret nor the token.
    let secret = "a-jwt-secret-for-the-error-test-0123456789";
    let e = mint_visitor_token("short-secret", Uuid::new_v4(), Uuid::new_v4(), MAX_TTL)
        .expect_err("weak secret");
    assert_no_secret("mint error", &format!("{e} {e:?}"), &["short-secret"]);
    let token = mint_visitor_token(
        secret,
        Uuid::new_v4(),
        Uuid::new_v4(),
        Duration::from_secs(60),
    )
    .expect("token");
    for (other_secret, t) in [
        ("another-jwt-secret-for-the-error-test-xyz", token.clone()),
        (secret, format!("{token}x")),
        (secret, token.replacen('.', "", 1)),
    ] {
        let e = verify_visitor_token(other_secret, &t).expect_err("refused");
        let as_error = livechat::Error::from(e.clone());
        assert_no_secret(
            "verify error",
            &format!("{e} {e:?} {as_error} {as_error:?}"),
            &[&token, secret],
        );
    }
}

/// A `MakeWriter` appending every formatted event to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// The library's log lines (targets `livechat::…`), captured at TRACE for this process; the
/// stack's own server logs (`livechat_stack::…`) go to a second buffer.
fn log_capture() -> &'static (Captured, Captured) {
    static CAPTURE: OnceLock<(Captured, Captured)> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        use tracing_subscriber::filter::filter_fn;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::Layer;
        let lib = Captured::default();
        let stack = Captured::default();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(lib.clone())
                    .with_filter(filter_fn(|m| {
                        m.target() == "livechat" || m.target().starts_with("livechat::")
                    })),
            )
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(stack.clone())
                    .with_filter(filter_fn(|m| m.target().starts_with("livechat_stack"))),
            );
        // Only this test installs a subscriber in this binary; if something else did first,
        // the capture stays empty and the test below fails loudly on that.
        let _ = tracing::subscriber::set_global_default(subscriber);
        (lib, stack)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_logs_never_contain_keys_tokens_or_the_jwt_secret() {
    let (lib_log, stack_log) = log_capture();
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let alice_token = stack.user_token(ALICE, Some("alice@acme.test"));
    let visitor = mint_visitor_token(
        stack.jwt_secret(),
        Uuid::parse_str(NOAH).expect("uuid"),
        Uuid::parse_str(SITE_1).expect("uuid"),
        Duration::from_secs(600),
    )
    .expect("visitor token");
    let expired = mint_visitor_token_at(
        stack.jwt_secret(),
        Uuid::parse_str(NOAH).expect("uuid"),
        Uuid::parse_str(SITE_1).expect("uuid"),
        Duration::from_secs(60),
        SystemTime::now() - Duration::from_secs(3600),
    )
    .expect("expired token");

    // REST: successes, refusals and errors, with each kind of credential.
    let anon =
        Client::new(Config::new(stack.url(), stack.anon_key()).expect("config")).expect("client");
    let service = Client::new(Config::new(stack.url(), stack.service_role_key()).expect("config"))
        .expect("client");
    let alice = anon.with_access_token(alice_token.clone());
    let rows: Vec<Value> = alice
        .from("mod_chat_conversations")
        .select("id")
        .fetch()
        .await
        .expect("alice reads");
    assert!(!rows.is_empty());
    let _ = service
        .from("mod_chat_conversations")
        .select("id")
        .fetch::<Value>()
        .await
        .expect("service reads");
    let e = alice
        .from("mod_chat_canned_responses")
        .insert(&json!({"site_id": SITE_3, "title": "t", "content": "c"}))
        .execute()
        .await
        .expect_err("RLS refuses");
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    let _ = alice
        .from("no_such_table")
        .fetch::<Value>()
        .await
        .expect_err("404");
    let e = anon
        .with_access_token(expired.clone())
        .from("mod_chat_conversations")
        .fetch::<Value>()
        .await
        .expect_err("expired");
    assert!(e.is_token_expired(), "{e:?}");
    let as_visitor: Vec<Value> = anon
        .with_access_token(visitor.clone())
        .from("mod_chat_conversations")
        .select("id")
        .fetch()
        .await
        .expect("visitor reads");
    assert_eq!(as_visitor, vec![json!({"id": CONV_NOAH})]);

    // Realtime: a visitor channel on messages (delivers only the own conversation), then a
    // refused connection.
    let db = {
        let (c, conn) = tokio_postgres::connect(&stack.db_url(), tokio_postgres::NoTls)
            .await
            .expect("db");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        c
    };
    let token = visitor.clone();
    let rt = RealtimeOptions::new(stack.url(), stack.anon_key())
        .access_token(move || {
            let t = token.clone();
            async move { Some(t) }
        })
        .connect()
        .await
        .expect("realtime connects");
    let ch = rt
        .channel(
            "widget",
            ChannelConfig::new().postgres_changes(
                PostgresChangesFilter::new(PostgresChangeEvent::Insert, "public")
                    .table("mod_chat_messages"),
            ),
        )
        .await
        .expect("channel");
    let mut changes = ch
        .on(EventFilter::PostgresChanges(None))
        .await
        .expect("listener");
    ch.subscribe().await.expect("subscribed");
    for conv in [CONV_MIA, CONV_NOAH] {
        db.execute(
            "insert into public.mod_chat_messages (conversation_id, site_id, sender_type, content)
             values ($1::text::uuid, $2::text::uuid, 'agent', $3)",
            &[&conv, &SITE_1, &format!("to {conv}")],
        )
        .await
        .expect("insert");
    }
    let first = tokio::time::timeout(Duration::from_secs(20), changes.next())
        .await
        .expect("an event in time")
        .expect("stream open");
    let ChannelEvent::PostgresChange(c) = first else {
        panic!("unexpected event {first:?}");
    };
    let record = c.record.unwrap_or_default();
    assert_eq!(
        record.get("conversation_id"),
        Some(&json!(CONV_NOAH)),
        "{record:?}"
    );
    rt.disconnect().await.expect("disconnect");
    let refused = RealtimeOptions::new(stack.url(), "not-a-jwt-but-a-secret-looking-key")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await;
    assert!(refused.is_err());

    // Give the tasks a moment to flush their last log lines.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lib = lib_log.text();
    assert!(
        lib.contains("livechat::"),
        "the capture must have recorded the library's logs"
    );
    let secrets = [
        stack.anon_key(),
        stack.service_role_key(),
        stack.jwt_secret(),
        alice_token.as_str(),
        visitor.as_str(),
        expired.as_str(),
        "not-a-jwt-but-a-secret-looking-key",
    ];
    assert_no_secret("library logs", &lib, &secrets);
    // The stack's logs are the server side of a test tool; reported, not asserted.
    let server = stack_log.text();
    for s in secrets {
        if server.contains(s) {
            eprintln!("note: the stack's server logs contain a credential");
        }
    }
    stack.shutdown().await;
}

// =============================================================================================
// 2. Visitor tokens
// =============================================================================================

const SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";

fn payload_of(token: &str) -> Map<String, Value> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let part = token.split('.').nth(1).unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(part).unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

fn non_nil_uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>()
        .prop_filter("not nil", |n| *n != 0)
        .prop_map(Uuid::from_u128)
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn minted_tokens_carry_exactly_the_documented_claims(
        visitor in non_nil_uuid(),
        site in non_nil_uuid(),
        ttl in 1u64..=MAX_TTL.as_secs(),
    ) {
        let token = mint_visitor_token(SECRET, visitor, site, Duration::from_secs(ttl))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Accepted by the stack's verifier (PostgREST's rules) with exactly these claims.
        let claims = jwt::verify(&token, SECRET)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut keys: Vec<&str> = claims.keys().map(String::as_str).collect();
        keys.sort_unstable();
        prop_assert_eq!(keys, vec!["exp", "iat", "iss", "role", "site_id", "visitor_id"]);
        prop_assert_eq!(&claims["role"], &json!("anon"));
        prop_assert_eq!(&claims["iss"], &json!(ISSUER));
        prop_assert_eq!(&claims["visitor_id"], &json!(visitor.to_string()));
        prop_assert_eq!(&claims["site_id"], &json!(site.to_string()));
        let (iat, exp) = (claims["iat"].as_i64(), claims["exp"].as_i64());
        prop_assert_eq!(exp.zip(iat).map(|(e, i)| e - i), Some(ttl as i64));
        // The library's own verifier agrees.
        let c = verify_visitor_token(SECRET, &token)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!((c.visitor_id, c.site_id), (visitor, site));
        // Another secret: both refuse.
        let other = "a-different-project-secret-of-32-bytes-or-more";
        prop_assert!(jwt::verify(&token, other).is_err());
        prop_assert!(verify_visitor_token(other, &token).is_err());
    }

    #[test]
    fn tampered_claims_are_refused(
        visitor in non_nil_uuid(),
        site in non_nil_uuid(),
        other in non_nil_uuid(),
        field in prop::sample::select(vec!["visitor_id", "site_id", "role", "exp", "sub"]),
    ) {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let token = mint_visitor_token(SECRET, visitor, site, Duration::from_secs(60))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut claims = payload_of(&token);
        let value = match field {
            "role" => json!("service_role"),
            "exp" => json!(i64::MAX / 2),
            _ => json!(other.to_string()),
        };
        claims.insert(field.to_string(), value);
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string()),
            parts[2]
        );
        prop_assert!(jwt::verify(&forged, SECRET).is_err());
        prop_assert!(verify_visitor_token(SECRET, &forged).is_err());
    }

    #[test]
    fn verifying_garbage_never_panics(s in ".{0,200}", dots in prop::collection::vec(".{0,40}", 0..5)) {
        let _ = verify_visitor_token(SECRET, &s);
        let _ = verify_visitor_token(SECRET, &dots.join("."));
    }
}

#[test]
fn minting_refuses_what_would_be_unsafe() {
    let (v, s) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(
        mint_visitor_token("too-short", v, s, Duration::from_secs(60))
            .expect_err("weak secret")
            .kind(),
        ErrorKind::Config
    );
    for ttl in [Duration::ZERO, MAX_TTL + Duration::from_secs(1)] {
        assert_eq!(
            mint_visitor_token(SECRET, v, s, ttl)
                .expect_err("ttl")
                .kind(),
            ErrorKind::InvalidInput
        );
    }
    assert!(mint_visitor_token(SECRET, Uuid::nil(), s, Duration::from_secs(60)).is_err());
    // Expired tokens are told apart from invalid ones.
    let stale = mint_visitor_token_at(
        SECRET,
        v,
        s,
        Duration::from_secs(60),
        SystemTime::now() - Duration::from_secs(3600),
    )
    .expect("token");
    assert_eq!(
        verify_visitor_token(SECRET, &stale),
        Err(VerifyError::Expired)
    );
}

// =============================================================================================
// 3a. Business hours
// =============================================================================================

/// Any JSON value (bounded).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        time_like().prop_map(Value::String),
        ".{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((day_key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn day_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(DAY_KEYS.to_vec()).prop_map(str::to_string),
        1 => prop::sample::select(vec!["enabled", "start", "end"]).prop_map(str::to_string),
        1 => ".{0,8}",
    ]
}

/// Strings near the time grammar: digits, colons, signs, spaces, unicode digits.
fn time_like() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        6 => prop::char::range('0', '9'),
        3 => Just(':'),
        1 => prop::sample::select(vec![' ', '+', '-', '.', 'T', '\u{661}', '\u{ff11}', '\u{a0}']),
    ];
    prop_oneof![
        2 => prop::collection::vec(c, 0..10).prop_map(|cs| cs.into_iter().collect()),
        1 => (0u32..30, 0u32..70).prop_map(|(h, m)| format!("{h:02}:{m:02}")),
        1 => (0u32..30, 0u32..70, 0u32..70).prop_map(|(h, m, s)| format!("{h:02}:{m:02}:{s:02}")),
    ]
}

fn day_entry() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (time_like(), time_like()).prop_map(|(s, e)| json!({"enabled": true, "start": s, "end": e})),
        1 => (json_value(), json_value(), json_value())
            .prop_map(|(en, s, e)| json!({"enabled": en, "start": s, "end": e})),
        1 => json_value(),
    ]
}

fn schedule_json() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(DAY_KEYS.to_vec()), day_entry()), 0..8)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

/// A valid schedule: each day closed or open between two valid times.
fn valid_schedule() -> impl Strategy<Value = Value> {
    let time = (0u32..24, 0u32..60).prop_map(|(h, m)| format!("{h:02}:{m:02}"));
    let end = prop_oneof![
        5 => (0u32..24, 0u32..60).prop_map(|(h, m)| format!("{h:02}:{m:02}")),
        1 => Just("24:00".to_string()),
    ];
    prop::collection::vec(prop::option::of((time, end)), 7).prop_map(|days| {
        Value::Object(
            DAY_KEYS
                .iter()
                .zip(days)
                .map(|(k, d)| {
                    let v = match d {
                        Some((s, e)) => json!({"enabled": true, "start": s, "end": e}),
                        None => json!({"enabled": false}),
                    };
                    (k.to_string(), v)
                })
                .collect(),
        )
    })
}

const ZONES: &[&str] = &[
    "Africa/Lusaka",
    "UTC",
    "America/New_York",
    "Europe/London",
    "Pacific/Auckland",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "Antarctica/Troll",
];

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    // 1970 … 2200, second resolution.
    (0i64..7_258_118_400).prop_map(|s| Utc.timestamp_opt(s, 0).single().unwrap_or_default())
}

/// The documented grammar: `HH:MM` (or `HH:MM:SS`), hours 00–23, minutes and seconds 00–59;
/// an end time may also be `24:00` (or `24:00:00`).
fn strictly_valid(s: &str, end: bool) -> bool {
    if end && (s == "24:00" || s == "24:00:00") {
        return true;
    }
    let b = s.as_bytes();
    let two = |i: usize, max: u8| {
        b.get(i..i + 2).is_some_and(|d| {
            d.iter().all(u8::is_ascii_digit) && (d[0] - b'0') * 10 + (d[1] - b'0') <= max
        })
    };
    match b.len() {
        5 => two(0, 23) && b[2] == b':' && two(3, 59),
        8 => two(0, 23) && b[2] == b':' && two(3, 59) && b[5] == b':' && two(6, 59),
        _ => false,
    }
}

fn one_day(start: &str, end: &str) -> Value {
    json!({"monday": {"enabled": true, "start": start, "end": end}})
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn business_hours_parser_never_panics(v in json_value(), s in schedule_json()) {
        let _ = BusinessHours::from_json(&v);
        let _ = BusinessHours::from_json(&s);
    }

    #[test]
    fn evaluation_never_panics_and_is_consistent(
        s in prop_oneof![schedule_json(), valid_schedule()],
        now in instant(),
        zone in prop_oneof![prop::sample::select(ZONES.to_vec()).prop_map(str::to_string), ".{0,20}"],
    ) {
        let Ok(hours) = BusinessHours::from_json(&s) else { return Ok(()) };
        match hours.evaluate_in(&zone, now) {
            Err(BusinessHoursError::UnknownTimeZone(z)) => prop_assert_eq!(z, zone.trim().to_string()),
            Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e}"))),
            Ok(a) => {
                if a.open {
                    prop_assert!(a.next_open_at.is_none());
                    prop_assert!(a.closes_at.is_some_and(|c| c > now), "{:?} at {}", a, now);
                } else {
                    prop_assert!(a.closes_at.is_none());
                    if let Some(n) = a.next_open_at {
                        prop_assert!(n > now, "{:?} at {}", a, now);
                    }
                    if hours.days.iter().any(Option::is_some) {
                        prop_assert!(a.next_open_at.is_some(), "an enabled day opens within a week: {:?} at {} in {}", s, now, zone);
                    }
                }
            }
        }
    }

    #[test]
    fn valid_times_are_accepted_with_their_value(h in 0u32..24, m in 0u32..60, sec in 0u32..60, h2 in 0u32..24, m2 in 0u32..60) {
        let start = format!("{h:02}:{m:02}");
        let end = format!("{h2:02}:{m2:02}");
        let hours = BusinessHours::from_json(&one_day(&start, &end))
            .map_err(|e| TestCaseError::fail(format!("{start}-{end} refused: {e}")))?;
        let span = hours.days[0].ok_or_else(|| TestCaseError::fail("monday missing"))?;
        prop_assert_eq!(Some(span.start), NaiveTime::from_hms_opt(h, m, 0));
        prop_assert_eq!(Some(span.end), NaiveTime::from_hms_opt(h2, m2, 0));
        prop_assert!(!span.end_is_midnight);
        let with_secs = format!("{h:02}:{m:02}:{sec:02}");
        let hours = BusinessHours::from_json(&one_day(&with_secs, "24:00"))
            .map_err(|e| TestCaseError::fail(format!("{with_secs} refused: {e}")))?;
        let span = hours.days[0].ok_or_else(|| TestCaseError::fail("monday missing"))?;
        prop_assert_eq!(Some(span.start), NaiveTime::from_hms_opt(h, m, sec));
        prop_assert!(span.end_is_midnight);
    }

    #[test]
    fn out_of_range_and_malformed_times_are_refused(
        h in 24u32..100, m in 60u32..100, ok_h in 0u32..24, ok_m in 0u32..60,
        junk in prop::sample::select(vec!["", ":", "09", "0900", "09-00", "09.00", "9h00", "09:00 ", "09:00x", "x09:00", "+9:00", "-1:00", "09:000", "009:00", "٠٩:٠٠", "09:00:00.5", "24:01", "25:00"]),
    ) {
        for (start, end) in [
            (format!("{h:02}:{ok_m:02}"), "17:00".to_string()),
            (format!("{ok_h:02}:{m:02}"), "17:00".to_string()),
            ("09:00".to_string(), format!("{ok_h:02}:{m:02}")),
            (junk.to_string(), "17:00".to_string()),
            ("09:00".to_string(), junk.to_string()),
        ] {
            let r = BusinessHours::from_json(&one_day(&start, &end));
            prop_assert!(
                matches!(r, Err(BusinessHoursError::BadDay { ref day, .. }) if day == "monday"),
                "{:?}-{:?} accepted: {:?}", start, end, r
            );
        }
        // A start of 24:00 is no time of day.
        prop_assert!(BusinessHours::from_json(&one_day("24:00", "17:00")).is_err());
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Exactly the documented grammar is accepted: no one-digit fields (`9:00`, `09:5`), no
    /// spaces (` 09:00`, `09:  5`), no leap seconds (`09:00:60`).
    #[test]
    fn exactly_the_documented_time_grammar_is_accepted(start in time_like(), end in time_like()) {
        let parsed = BusinessHours::from_json(&one_day(&start, &end));
        let expected = strictly_valid(&start, false) && strictly_valid(&end, true);
        prop_assert_eq!(parsed.is_ok(), expected, "{:?}-{:?}: {:?}", start, end, parsed);
    }
}

// =============================================================================================
// 3b. The PostgREST value encoder
// =============================================================================================

/// Characters with a meaning somewhere on the way (PostgREST's grammar, array literals, LIKE,
/// regexes), plus unicode.
fn tricky_string() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        4 => prop::sample::select(vec![
            '"', '\\', ',', '(', ')', '.', ':', '*', '%', '_', '{', '}', '[', ']', ' ', '\'',
            '^', '$', '|', '?', '+', '~', '=', '&', '\n', '\t', 'é', 'ß', '日', '🎉', '\u{301}',
        ]),
        2 => prop::char::range('a', 'c'),
        1 => any::<char>(),
    ];
    prop_oneof![
        8 => prop::collection::vec(c, 0..12).prop_map(|cs| cs.into_iter().collect()),
        1 => prop::sample::select(vec!["", "NULL", "null", "\"\"", "{}", "()", "*", "\\", "eq.x", "a,b"])
            .prop_map(str::to_string),
    ]
}

/// PostgREST's `pQuotedValue` at the start of `s`: `"` then (`\` any | not `"`)* then `"`.
/// Returns the value and the rest of the input.
fn take_quoted(s: &str) -> Option<(String, &str)> {
    let mut chars = s.strip_prefix('"')?.char_indices();
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '"' => return Some((out, &s[1 + i + 1..])),
            c => out.push(c),
        }
    }
    None
}

/// A value in an `in.(…)` list or a logic tree: quoted, a `{…}` literal (logic trees only), or
/// unquoted up to `,` or `)`.
fn take_value(s: &str, braces: bool) -> Option<(String, &str)> {
    if s.starts_with('"') {
        return take_quoted(s);
    }
    if braces && s.starts_with('{') {
        let end = s.find('}')?;
        return Some((s[..=end].to_string(), &s[end + 1..]));
    }
    let end = s.find([',', ')']).unwrap_or(s.len());
    Some((s[..end].to_string(), &s[end..]))
}

/// The elements of `(a,b,…)` as PostgREST reads an `in` list (`None` if it does not parse as
/// exactly one list).
fn parse_in_list(s: &str) -> Option<Vec<String>> {
    let mut rest = s.strip_prefix('(')?;
    let mut out = Vec::new();
    if let Some(r) = rest.strip_prefix(')') {
        return r.is_empty().then_some(out);
    }
    loop {
        let (v, r) = take_value(rest, false)?;
        out.push(v);
        if let Some(r) = r.strip_prefix(',') {
            rest = r;
        } else {
            let r = r.strip_prefix(')')?;
            return r.is_empty().then_some(out);
        }
    }
}

/// The `(column, operator, value)` items of `(col.op.value,…)` as PostgREST reads an
/// `or=`/`and=` tree of simple filters.
fn parse_logic(s: &str) -> Option<Vec<(String, String, String)>> {
    let mut rest = s.strip_prefix('(')?;
    let mut out = Vec::new();
    loop {
        let dot = rest.find('.')?;
        let col = rest[..dot].to_string();
        rest = &rest[dot + 1..];
        let dot = rest.find('.')?;
        let op = rest[..dot].to_string();
        rest = &rest[dot + 1..];
        let (v, r) = take_value(rest, true)?;
        out.push((col, op, v));
        if let Some(r) = r.strip_prefix(',') {
            rest = r;
        } else {
            let r = r.strip_prefix(')')?;
            return r.is_empty().then_some(out);
        }
    }
}

/// A PostgreSQL array literal whose elements are all double-quoted (`{"a","b"}`), read as
/// PostgreSQL does: inside quotes a backslash escapes any character.
fn parse_quoted_array(s: &str) -> Option<Vec<String>> {
    let mut rest = s.strip_prefix('{')?;
    let mut out = Vec::new();
    if let Some(r) = rest.strip_prefix('}') {
        return r.is_empty().then_some(out);
    }
    loop {
        let (v, r) = take_quoted(rest)?;
        out.push(v);
        if let Some(r) = r.strip_prefix(',') {
            rest = r;
        } else {
            let r = r.strip_prefix('}')?;
            return r.is_empty().then_some(out);
        }
    }
}

/// `value LIKE pattern` with PostgreSQL's default escape character `\`, after PostgREST turned
/// every `*` of the pattern into `%`.
fn like_matches(value: &str, pattern: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Tok {
        Any,
        One,
        Lit(char),
    }
    let pattern = pattern.replace('*', "%");
    let mut toks = Vec::new();
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        toks.push(match c {
            '%' => Tok::Any,
            '_' => Tok::One,
            '\\' => match it.next() {
                Some(e) => Tok::Lit(e),
                // PostgreSQL: "LIKE pattern must not end with escape character" (an error).
                None => return false,
            },
            c => Tok::Lit(c),
        });
    }
    let v: Vec<char> = value.chars().collect();
    // reach[j]: the first i tokens can match v[..j].
    let mut reach = vec![false; v.len() + 1];
    reach[0] = true;
    for t in toks {
        let mut next = vec![false; v.len() + 1];
        for j in 0..=v.len() {
            match t {
                Tok::Any => next[j] = reach[..=j].iter().any(|r| *r),
                Tok::One => next[j] = j > 0 && reach[j - 1],
                Tok::Lit(c) => next[j] = j > 0 && reach[j - 1] && v[j - 1] == c,
            }
        }
        reach = next;
    }
    reach[v.len()]
}

/// Reads a string produced for a PostgreSQL ARE as a sequence of literal characters: `\` before
/// ASCII punctuation is that character; unescaped ASCII punctuation would be an operator, so
/// it is `None`; everything else stands for itself.
fn read_escaped_regex(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => {
                let e = it.next()?;
                if !e.is_ascii_punctuation() {
                    return None;
                }
                out.push(e);
            }
            c if c.is_ascii_punctuation() => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// Strings that differ from `t` in ways a sloppy encoder would ignore.
fn near(t: &str) -> Vec<String> {
    vec![
        t.to_string(),
        format!("\"{t}\""),
        format!(" {t}"),
        format!("{t}x"),
        format!("x{t}"),
        t.to_uppercase(),
        t.replace('%', "x"),
        t.replace('_', "x"),
        t.replace('\\', ""),
        t.chars().skip(1).collect(),
        t.chars().rev().collect(),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn quoted_values_read_back_literally(v in tricky_string()) {
        let q = encode::quote(&v);
        prop_assert_eq!(take_quoted(&q), Some((v.clone(), "")));
        prop_assert_eq!(encode::logic_value(&v), q);
        prop_assert_eq!(encode::top_level(&v), v.as_str());
    }

    #[test]
    fn in_lists_read_back_as_the_same_elements(vs in prop::collection::vec(tricky_string(), 0..6), probe in tricky_string()) {
        let list = encode::in_list(&vs);
        let parsed = parse_in_list(&list);
        prop_assert_eq!(parsed.as_ref(), Some(&vs), "{}", list);
        // Membership through the encoding equals literal membership.
        let parsed = parsed.unwrap_or_default();
        for p in near(&probe).into_iter().chain(vs.iter().cloned()) {
            prop_assert_eq!(parsed.contains(&p), vs.contains(&p));
        }
        prop_assert_eq!(
            encode::in_elements(&vs),
            vs.iter().map(|v| encode::quote(v)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn logic_trees_read_back_as_the_same_values(a in tricky_string(), b in tricky_string(), tags in prop::collection::vec(tricky_string(), 0..4)) {
        let arr = encode::array_literal(&tags);
        let tree = format!(
            "(title.eq.{},content.neq.{},tags.cs.{})",
            encode::logic_value(&a),
            encode::logic_value(&b),
            encode::logic_value(&arr)
        );
        let items = parse_logic(&tree);
        prop_assert_eq!(
            items,
            Some(vec![
                ("title".to_string(), "eq".to_string(), a.clone()),
                ("content".to_string(), "neq".to_string(), b.clone()),
                ("tags".to_string(), "cs".to_string(), arr.clone()),
            ]),
            "{}", tree
        );
    }

    #[test]
    fn array_literals_read_back_as_the_same_elements(vs in prop::collection::vec(tricky_string(), 0..6)) {
        let lit = encode::array_literal(&vs);
        prop_assert_eq!(parse_quoted_array(&lit), Some(vs.clone()), "{}", lit);
    }

    #[test]
    fn like_patterns_match_exactly_what_the_literal_matches(v in tricky_string(), other in tricky_string()) {
        if v.contains('*') {
            for r in [encode::like_escape(&v), encode::like_contains(&v), encode::like_starts_with(&v), encode::like_ends_with(&v)] {
                let e = r.err().ok_or_else(|| TestCaseError::fail("`*` must be refused"))?;
                prop_assert_eq!(e.value(), v.as_str());
            }
            return Ok(());
        }
        let exact = encode::like_escape(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let contains = encode::like_contains(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let starts = encode::like_starts_with(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let ends = encode::like_ends_with(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut candidates = near(&v);
        candidates.extend(near(&other));
        candidates.push(format!("{other}{v}{other}"));
        for s in candidates {
            prop_assert_eq!(like_matches(&s, &exact), s == v, "{:?} LIKE {:?}", s, exact);
            prop_assert_eq!(like_matches(&s, &contains), s.contains(v.as_str()), "{:?} LIKE {:?}", s, contains);
            prop_assert_eq!(like_matches(&s, &starts), s.starts_with(v.as_str()), "{:?} LIKE {:?}", s, starts);
            prop_assert_eq!(like_matches(&s, &ends), s.ends_with(v.as_str()), "{:?} LIKE {:?}", s, ends);
        }
    }

    #[test]
    fn regex_helpers_keep_the_value_literal(v in tricky_string()) {
        prop_assert_eq!(encode::regex_literal(&v), format!("***={v}"));
        prop_assert_eq!(read_escaped_regex(&encode::regex_escape(&v)), Some(v.clone()));
    }

    #[test]
    fn encoders_never_panic_on_any_string(v in any::<String>(), vs in prop::collection::vec(any::<String>(), 0..4)) {
        let q = encode::quote(&v);
        let _ = encode::in_list(&vs);
        let _ = encode::array_literal(&vs);
        let _ = encode::like_contains(&v);
        let _ = encode::regex_escape(&v);
        prop_assert_eq!(take_quoted(&q), Some((v.clone(), "")));
    }
}
