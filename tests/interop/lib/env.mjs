// Shared plumbing of the REST interop tests: the stack's environment, supabase-js clients for the
// three kinds of caller (service role, anon, a signed-in user), a `pg` pool for direct SQL as the
// superuser, raw fetch against /rest/v1 (to assert exact statuses, headers and body text), and
// polling with a deadline.
//
// Every test file calls `closeAll()` in its top-level `after()` hook so that node exits.

import { createHmac, randomUUID } from 'node:crypto';
import { createClient } from '@supabase/supabase-js';
import pg from 'pg';
import WebSocket from 'ws';

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

function required(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(
      `${name} is not set. These tests run against a livechat stack: start one with ` +
        '`livechat-stack up --seed --port 0 --db-port 0` and export the variables it prints, ' +
        'or run `cargo test -p livechat-stack --test integration interop::`.',
    );
  }
  return v;
}

export const env = Object.freeze({
  url: required('SUPABASE_URL').replace(/\/+$/, ''),
  anonKey: required('SUPABASE_ANON_KEY'),
  serviceKey: required('SUPABASE_SERVICE_ROLE_KEY'),
  dbUrl: required('SUPABASE_DB_URL'),
  jwtSecret: required('SUPABASE_JWT_SECRET'),
});

export const restUrl = `${env.url}/rest/v1`;

// ---------------------------------------------------------------------------------------------
// JWTs (HS256, node:crypto only)
// ---------------------------------------------------------------------------------------------

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** Signs `claims` as an HS256 JWT with `secret` (default: the stack's JWT secret). */
export function signJwt(claims, secret = env.jwtSecret, header = { alg: 'HS256', typ: 'JWT' }) {
  const head = b64url(JSON.stringify(header));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);

/**
 * A user access token like Supabase Auth issues: sub, role 'authenticated', aud 'authenticated',
 * iat, exp. `expiresIn` may be negative to make an expired token.
 */
export function userToken(sub, { expiresIn = 3600, email, secret, extra = {} } = {}) {
  const iat = nowSeconds();
  const claims = {
    sub,
    role: 'authenticated',
    aud: 'authenticated',
    iat: expiresIn < 0 ? iat + expiresIn - 60 : iat,
    exp: iat + expiresIn,
    ...(email ? { email } : {}),
    ...extra,
  };
  return signJwt(claims, secret);
}

// ---------------------------------------------------------------------------------------------
// supabase-js clients
// ---------------------------------------------------------------------------------------------

const clients = new Set();

function makeClient(key, accessToken) {
  const client = createClient(env.url, key, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    global: accessToken ? { headers: { Authorization: `Bearer ${accessToken}` } } : {},
    // Node 20 has no global WebSocket; supabase-js refuses to construct without a transport.
    realtime: { transport: WebSocket },
  });
  clients.add(client);
  return client;
}

/** The service-role client (bypasses RLS). */
export const serviceClient = () => makeClient(env.serviceKey);
/** The anon-key client (the public widget). */
export const anonClient = () => makeClient(env.anonKey);
/** A client acting as user `sub` (a fresh JWT signed with the stack's secret), or with `token`. */
export const userClient = (sub, opts = {}) =>
  makeClient(env.anonKey, opts.token ?? userToken(sub, opts));

// ---------------------------------------------------------------------------------------------
// Direct SQL (the `postgres` superuser)
// ---------------------------------------------------------------------------------------------

let pool = null;

export function getPool() {
  if (!pool) {
    pool = new pg.Pool({ connectionString: env.dbUrl, max: 4 });
    pool.on('error', () => {}); // an idle client dropped by the server at shutdown
  }
  return pool;
}

/** Runs `text` with `params` and returns the rows (pg's own JS types). */
export async function sql(text, params = []) {
  const res = await getPool().query(text, params);
  return res.rows;
}

/**
 * Runs a query and returns its rows as PostgreSQL's json_agg renders them, parsed: the same
 * representation PostgREST gives (timestamps in the session time zone, numerics as numbers,
 * arrays, jsonb). Order is the query's ORDER BY.
 */
export async function sqlJson(query, params = []) {
  const rows = await sql(
    `select coalesce(json_agg(_t), '[]'::json)::text as j from (${query}) _t`,
    params,
  );
  return JSON.parse(rows[0].j);
}

/** Like sqlJson, but returns the json_agg text itself (for byte-level body comparisons). */
export async function sqlJsonText(query, params = []) {
  const rows = await sql(
    `select coalesce(json_agg(_t), '[]'::json)::text as j from (${query}) _t`,
    params,
  );
  return rows[0].j;
}

/**
 * Runs `statement` inside a transaction that is always rolled back, as `role` (default
 * service_role), and returns the PostgreSQL error it raised as a PostgREST error body
 * ({code, message, details, hint}), or null if it succeeded.
 */
export async function sqlErrorAs(statement, params = [], role = 'service_role') {
  const client = await getPool().connect();
  try {
    await client.query('begin');
    await client.query(`set local role ${role}`);
    try {
      await client.query(statement, params);
      return null;
    } catch (e) {
      return {
        code: e.code,
        message: e.message,
        details: e.detail ?? null,
        hint: e.hint ?? null,
      };
    }
  } finally {
    await client.query('rollback').catch(() => {});
    client.release();
  }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP against /rest/v1
// ---------------------------------------------------------------------------------------------

/**
 * fetch(`${SUPABASE_URL}/rest/v1${path}`).
 *   token:  Bearer token; default the service-role key; `null` sends no Authorization header.
 *   apikey: the apikey header; default the anon key; `null` sends none.
 *   body:   a string is sent as-is; anything else is JSON.stringify'd.
 * Returns { status, headers, text, json } where json is the parsed body (undefined when the body
 * is empty or not JSON).
 */
export async function rest(path, { method = 'GET', headers = {}, body, token, apikey } = {}) {
  const h = new Headers(headers);
  const key = apikey === undefined ? env.anonKey : apikey;
  if (key !== null && !h.has('apikey')) h.set('apikey', key);
  const tok = token === undefined ? env.serviceKey : token;
  if (tok !== null && !h.has('authorization')) h.set('Authorization', `Bearer ${tok}`);
  let payload;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    if (!h.has('content-type')) h.set('Content-Type', 'application/json');
  }
  const res = await fetch(`${restUrl}${path}`, { method, headers: h, body: payload });
  const text = method === 'HEAD' ? '' : await res.text();
  let json;
  if (text !== '') {
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** Builds a query string with URLSearchParams (so values are encoded as supabase-js does). */
export function qs(pairs) {
  const p = new URLSearchParams();
  for (const [k, v] of pairs) p.append(k, v);
  return p.toString();
}

// ---------------------------------------------------------------------------------------------
// Waiting with a deadline (never a fixed sleep)
// ---------------------------------------------------------------------------------------------

/**
 * Calls `probe` until it returns a truthy value, and returns that value. Between attempts it
 * yields for `intervalMs`; after `timeoutMs` it throws, describing the last result or error.
 */
export async function waitFor(probe, { timeoutMs = 15000, intervalMs = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const detail = last instanceof Error ? last.stack : JSON.stringify(last);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${detail}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

// ---------------------------------------------------------------------------------------------
// Misc
// ---------------------------------------------------------------------------------------------

export { randomUUID };

/** A short unique tag for names and emails created by a test. */
export const uniq = () => randomUUID().slice(0, 8);

/** Closes the pool and every client made here, so that node can exit. */
export async function closeAll() {
  for (const c of clients) {
    // Only when channels exist: realtime-js's disconnect() arms a 10 s timer that is not unref'd,
    // which would keep node alive after the tests.
    if (c.getChannels().length > 0) {
      try {
        await c.removeAllChannels();
      } catch {
        /* already closed */
      }
    }
  }
  clients.clear();
  if (pool) {
    const p = pool;
    pool = null;
    await p.end();
  }
}
