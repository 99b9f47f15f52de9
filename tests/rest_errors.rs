//! Every class of PostgREST error maps to its [`ErrorKind`], with the PostgREST body kept
//! intact and a correct answer to "can a retry help?". Run against the real local stack.

use crate::rest_support;

use livechat::{ErrorKind, Query};
use rest_support::*;
use serde::Serialize;

#[derive(Serialize)]
struct NewCanned<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    site_id: &'a str,
    title: Option<&'a str>,
    content: &'a str,
}

fn canned<'a>(site_id: &'a str, title: &'a str) -> NewCanned<'a> {
    NewCanned {
        id: None,
        site_id,
        title: Some(title),
        content: "c",
    }
}

async fn fails(q: Query) -> livechat::Error {
    match q.fetch::<serde_json::Value>().await {
        Ok(rows) => panic!("expected an error, got {rows:?}"),
        Err(e) => e,
    }
}

fn assert_kind(e: &livechat::Error, kind: ErrorKind, status: u16, code: &str) {
    assert_eq!(e.kind(), kind, "{e}");
    assert_eq!(e.status(), Some(status), "{e}");
    assert_eq!(e.code(), Some(code), "{e}");
    let p = e.postgrest().expect("a PostgREST error body");
    assert!(p.message.as_deref().is_some_and(|m| !m.is_empty()), "{e}");
    assert!(!e.is_retryable(), "{e}");
}

#[tokio::test]
async fn missing_tables_functions_and_rows_are_not_found() {
    let env = seeded().await;
    let e = fails(env.service.from("mod_chat_nope")).await;
    assert_kind(&e, ErrorKind::NotFound, 404, "PGRST205");

    let e = fails(
        env.service
            .rpc("lc_no_such_function", &serde_json::json!({"a": 1})),
    )
    .await;
    assert_kind(&e, ErrorKind::NotFound, 404, "PGRST202");

    let e = env
        .service
        .from("mod_chat_canned_responses")
        .eq("id", "40000000-0000-4000-8000-00000000ffff")
        .single::<serde_json::Value>()
        .await
        .unwrap_err();
    assert_kind(&e, ErrorKind::NotFound, 406, "PGRST116");
}

#[tokio::test]
async fn duplicate_keys_and_foreign_key_violations_are_conflicts() {
    let env = seeded().await;
    let e = env
        .service
        .from("mod_chat_canned_responses")
        .insert(&NewCanned {
            id: Some(CANNED_GREETING_1),
            ..canned(SITE_1, "dup")
        })
        .execute()
        .await
        .unwrap_err();
    assert_kind(&e, ErrorKind::Conflict, 409, "23505");
    let details = e
        .postgrest()
        .and_then(|p| p.details_text())
        .unwrap_or_default();
    assert!(details.contains(CANNED_GREETING_1), "{details}");

    let e = env
        .service
        .from("mod_chat_canned_responses")
        .insert(&canned("b0000000-0000-4000-8000-00000000dead", "orphan"))
        .execute()
        .await
        .unwrap_err();
    assert_kind(&e, ErrorKind::Conflict, 409, "23503");
}

#[tokio::test]
async fn row_level_security_violations_are_forbidden_for_users_and_auth_errors_for_anon() {
    let env = seeded().await;
    let alice = env.user(ALICE);
    let e = alice
        .from("mod_chat_canned_responses")
        .insert(&canned(SITE_3, "into agency B"))
        .execute()
        .await
        .unwrap_err();
    assert_kind(&e, ErrorKind::Forbidden, 403, "42501");

    // anon has no INSERT privilege on canned responses: 42501 while anonymous is 401.
    let e = env
        .anon
        .from("mod_chat_canned_responses")
        .insert(&canned(SITE_1, "anon"))
        .execute()
        .await
        .unwrap_err();
    assert_kind(&e, ErrorKind::Auth, 401, "42501");
}

#[tokio::test]
async fn bad_and_expired_tokens_are_auth_errors() {
    let env = seeded().await;
    let garbage = env.anon.with_access_token("not.a.jwt");
    let e = fails(garbage.from("mod_chat_widget_settings")).await;
    assert_kind(&e, ErrorKind::Auth, 401, "PGRST301");
    assert!(!e.is_token_expired());

    let wrong_secret = livechat_stack::jwt::user_token(
        ALICE.0,
        "authenticated",
        Some(ALICE.1),
        3600,
        "some-other-secret-that-is-at-least-32-chars",
    );
    let e = fails(
        env.anon
            .with_access_token(wrong_secret)
            .from("mod_chat_widget_settings"),
    )
    .await;
    assert_kind(&e, ErrorKind::Auth, 401, "PGRST301");

    let expired = livechat_stack::jwt::user_token(
        ALICE.0,
        "authenticated",
        Some(ALICE.1),
        -3600,
        env.stack.jwt_secret(),
    );
    let e = fails(
        env.anon
            .with_access_token(expired)
            .from("mod_chat_widget_settings"),
    )
    .await;
    assert_kind(&e, ErrorKind::Auth, 401, "PGRST303");
    assert!(e.is_token_expired());
}

#[tokio::test]
async fn malformed_requests_and_invalid_values_are_invalid_input() {
    let env = seeded().await;
    let canned_q = || env.service.from("mod_chat_canned_responses");

    // 22P02: not a uuid.
    let e = fails(canned_q().eq("id", "abc")).await;
    assert_kind(&e, ErrorKind::InvalidInput, 400, "22P02");

    // 42703: unknown column in a filter.
    let e = fails(canned_q().eq("no_such_column", "x")).await;
    assert_kind(&e, ErrorKind::InvalidInput, 400, "42703");

    // PGRST100: unparsable order.
    let e = fails(canned_q().param("order", "id.ac")).await;
    assert_kind(&e, ErrorKind::InvalidInput, 400, "PGRST100");

    // PGRST204: a payload key that is not a column.
    let e = canned_q()
        .insert(
            &serde_json::json!({"site_id": SITE_1, "title": "t", "content": "c", "helicopter": 1}),
        )
        .execute()
        .await
        .unwrap_err();
    assert_kind(&e, ErrorKind::InvalidInput, 400, "PGRST204");

    // 23502: not-null violation.
    let e = canned_q()
        .insert(&NewCanned {
            title: None,
            ..canned(SITE_1, "")
        })
        .execute()
        .await
        .unwrap_err();
    assert_kind(&e, ErrorKind::InvalidInput, 400, "23502");

    // 23514: check violation.
    let e = env
        .service
        .from("mod_chat_agents")
        .update(&serde_json::json!({"status": "sleeping"}))
        .eq("id", "e0000000-0000-4000-8000-000000000101")
        .execute()
        .await
        .unwrap_err();
    assert_kind(&e, ErrorKind::InvalidInput, 400, "23514");

    // P0001: RAISE EXCEPTION in a function, with detail and hint kept.
    env.db
        .batch_execute(
            r#"
            create function public.lc_test_raise() returns integer language plpgsql as $$
            begin
              raise exception 'no capacity' using detail = 'agent is full', hint = 'try later';
            end $$;
            notify pgrst, 'reload schema';
            "#,
        )
        .await
        .unwrap();
    let e = env
        .service
        .rpc("lc_test_raise", &serde_json::json!({}))
        .call::<i32>()
        .await
        .unwrap_err();
    assert_kind(&e, ErrorKind::InvalidInput, 400, "P0001");
    let p = e.postgrest().unwrap();
    assert_eq!(p.message.as_deref(), Some("no capacity"));
    assert_eq!(p.details_text().as_deref(), Some("agent is full"));
    assert_eq!(p.hint.as_deref(), Some("try later"));
}

#[tokio::test]
async fn server_failures_say_whether_a_retry_can_help() {
    let env = seeded().await;
    env.db
        .batch_execute(
            r#"
            create function public.lc_test_internal() returns integer language plpgsql as $$
            begin
              raise exception 'broken invariant' using errcode = 'XX000';
            end $$;
            create function public.lc_test_serialization() returns integer language plpgsql as $$
            begin
              raise exception 'could not serialize access' using errcode = '40001';
            end $$;
            -- Cancels its own statement: SQLSTATE 57014, as a statement timeout does.
            create function public.lc_test_cancelled() returns integer
              language plpgsql security definer as $$
            begin
              perform pg_cancel_backend(pg_backend_pid());
              perform pg_sleep(5);
              return 1;
            end $$;
            notify pgrst, 'reload schema';
            "#,
        )
        .await
        .unwrap();

    let e = env
        .service
        .rpc("lc_test_internal", &serde_json::json!({}))
        .call::<i32>()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server, "{e}");
    assert_eq!(e.status(), Some(500));
    assert_eq!(e.code(), Some("XX000"));
    assert!(!e.is_retryable());

    let e = env
        .service
        .rpc("lc_test_serialization", &serde_json::json!({}))
        .call::<i32>()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server, "{e}");
    assert_eq!(e.status(), Some(500));
    assert_eq!(e.code(), Some("40001"));
    assert!(e.is_retryable(), "the transaction was rolled back");

    let e = env
        .service
        .rpc("lc_test_cancelled", &serde_json::json!({}))
        .call::<i32>()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(e.status(), Some(500));
    assert_eq!(e.code(), Some("57014"));
}

/// PostgREST (v12+) hoists a function's `statement_timeout` setting into the transaction
/// (`db-hoisted-tx-settings`), so a slow function times out with 57014.
#[tokio::test]
async fn a_function_statement_timeout_is_a_timeout() {
    let env = seeded().await;
    env.db
        .batch_execute(
            r#"
            create function public.lc_test_slow() returns integer language plpgsql as $$
            begin
              perform pg_sleep(3);
              return 1;
            end $$;
            alter function public.lc_test_slow() set statement_timeout = '200ms';
            notify pgrst, 'reload schema';
            "#,
        )
        .await
        .unwrap();
    let e = env
        .service
        .rpc("lc_test_slow", &serde_json::json!({}))
        .call::<i32>()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(e.code(), Some("57014"));
}

#[tokio::test]
async fn a_stopped_server_is_a_transport_error_and_a_wrong_shape_a_decode_error() {
    #[derive(Debug, serde::Deserialize)]
    struct WrongShape {
        #[allow(dead_code)]
        title: i64,
    }
    let env = seeded().await;
    let e = env
        .service
        .from("mod_chat_canned_responses")
        .fetch::<WrongShape>()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");

    let service = env.service.clone();
    let env_stack = env.stack;
    env_stack.shutdown().await;
    let e = service
        .from("mod_chat_canned_responses")
        .fetch::<serde_json::Value>()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transport, "{e}");
    assert!(e.is_retryable());
}
