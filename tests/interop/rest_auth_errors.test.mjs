// Row-level security by JWT (users of agency A and B, anon, service role) and PostgREST's error
// responses (statuses, {code,message,details,hint} bodies, WWW-Authenticate). Expected behaviour:
// PostgREST v14 (shared/spec/postgrest.md §5 errors, §6 auth) over this project's RLS migrations.
//
// Seeded rows are only read. Writes (including attempted cross-tenant writes, which must fail)
// target tenants created here, so a gateway that wrongly lets them through cannot corrupt the seed.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  anonClient,
  closeAll,
  env,
  qs,
  randomUUID,
  rest,
  serviceClient,
  signJwt,
  sql,
  sqlErrorAs,
  sqlJson,
  uniq,
  userClient,
  userToken,
  nowSeconds,
} from './lib/env.mjs';
import { createTenant, insertConversation, insertVisitor } from './lib/fixtures.mjs';
import { CHAT_TABLES, SITE_ACME_STORE, USER_ALICE, USER_DAVE } from './lib/seed.mjs';

let db;
let other; // a tenant that neither seeded user belongs to
let otherConversation;

before(async () => {
  db = serviceClient();
  other = await createTenant({ label: 'auth-other' });
  const v = await insertVisitor(other.siteId, { name: 'Other Tenant Visitor' });
  otherConversation = await insertConversation(other.siteId, v, { subject: 'untouchable' });
});
after(async () => {
  await other?.drop();
  await closeAll();
});

const noError = (res) => assert.equal(res.error, null, `unexpected error: ${JSON.stringify(res.error)}`);

/** Rows of `table` that RLS should show to `userId`, computed in SQL. */
const visibleSql = (table) => `
  select id from public.${table}
  where site_id in (
    select s.id from public.sites s
    join public.agency_members am on am.agency_id = s.agency_id
    where am.user_id = $1)
  order by id`;

// ---------------------------------------------------------------------------------------------
// Row-level security
// ---------------------------------------------------------------------------------------------

describe('RLS: a user sees only the rows of their agencies', () => {
  for (const [who, userId] of [
    ['alice (agency A)', USER_ALICE],
    ['dave (agency B)', USER_DAVE],
  ]) {
    for (const table of CHAT_TABLES) {
      test(`${who}: ${table}`, async () => {
        const res = await userClient(userId).from(table).select('id').order('id');
        noError(res);
        assert.equal(res.status, 200);
        const expected = await sqlJson(visibleSql(table), [userId]);
        const total = (await sql(`select count(*)::int as n from public.${table}`))[0].n;
        assert.ok(expected.length > 0, `precondition: ${table} has rows of this user's agencies`);
        assert.ok(expected.length < total, `precondition: ${table} has rows outside this user's agencies`);
        assert.deepEqual(res.data, expected);
      });
    }
  }

  test('agency A and agency B see disjoint, non-empty sets of conversations', async () => {
    const [a, b] = await Promise.all([
      userClient(USER_ALICE).from('mod_chat_conversations').select('id,site_id'),
      userClient(USER_DAVE).from('mod_chat_conversations').select('id,site_id'),
    ]);
    noError(a);
    noError(b);
    assert.ok(a.data.length > 0 && b.data.length > 0);
    const aSites = new Set(a.data.map((r) => r.site_id));
    assert.ok(b.data.every((r) => !aSites.has(r.site_id)), 'no site is visible to both');
  });

  test('a signed-in user of no agency sees [] (200)', async () => {
    const res = await userClient(randomUUID()).from('mod_chat_conversations').select('id');
    noError(res);
    assert.equal(res.status, 200);
    assert.deepEqual(res.data, []);
  });

  test("a member writes in their own site: 201 and the row", async () => {
    const mine = await createTenant({ label: 'auth-mine' });
    try {
      const email = `own-${uniq()}@example.com`;
      const res = await userClient(mine.userId)
        .from('mod_chat_visitors')
        .insert({ site_id: mine.siteId, name: 'Own Site Visitor', email })
        .select()
        .single();
      noError(res);
      assert.equal(res.status, 201);
      assert.deepEqual(res.data, (await sqlJson('select * from public.mod_chat_visitors where email = $1', [email]))[0]);
    } finally {
      await mine.drop();
    }
  });

  test("another agency's conversation: update and delete affect nothing (200, [])", async () => {
    const alice = userClient(USER_ALICE);
    const upd = await alice
      .from('mod_chat_conversations')
      .update({ subject: 'hijacked' })
      .eq('id', otherConversation)
      .select();
    noError(upd);
    assert.equal(upd.status, 200);
    assert.deepEqual(upd.data, []);
    const del = await alice.from('mod_chat_conversations').delete().eq('id', otherConversation).select();
    noError(del);
    assert.equal(del.status, 200);
    assert.deepEqual(del.data, []);
    const stored = await sql('select subject from public.mod_chat_conversations where id = $1', [otherConversation]);
    assert.deepEqual(stored, [{ subject: 'untouchable' }]);
  });

  test("insert into another agency's site: 403, 42501 RLS violation", async () => {
    const email = `intruder-${uniq()}@example.com`;
    const res = await userClient(USER_ALICE)
      .from('mod_chat_visitors')
      .insert({ site_id: other.siteId, name: 'Intruder', email });
    assert.equal(res.status, 403);
    assert.deepEqual(res.error, {
      code: '42501',
      details: null,
      hint: null,
      message: 'new row violates row-level security policy for table "mod_chat_visitors"',
    });
    assert.equal((await sql('select count(*)::int as n from public.mod_chat_visitors where email = $1', [email]))[0].n, 0);
  });
});

describe('RLS: anon (the public widget)', () => {
  test('insert a visitor with return=minimal: 201, no body; the row exists', async () => {
    const email = `anon-${uniq()}@example.com`;
    const res = await anonClient().from('mod_chat_visitors').insert({ site_id: other.siteId, name: 'Widget Visitor', email });
    noError(res);
    assert.equal(res.status, 201);
    assert.equal(res.data, null);
    assert.equal((await sql('select count(*)::int as n from public.mod_chat_visitors where email = $1', [email]))[0].n, 1);
  });

  test('raw anon insert: 201, empty body, Content-Range */*', async () => {
    const email = `anon-raw-${uniq()}@example.com`;
    const r = await rest('/mod_chat_visitors', {
      method: 'POST',
      token: env.anonKey,
      body: { site_id: other.siteId, name: 'Widget Visitor Raw', email },
    });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.text, '');
    assert.equal(r.headers.get('content-range'), '*/*');
  });

  test('anon insert with .select() (RETURNING * needs SELECT on every column): 401 42501, nothing inserted', async () => {
    const email = `anon-sel-${uniq()}@example.com`;
    const res = await anonClient()
      .from('mod_chat_visitors')
      .insert({ site_id: other.siteId, name: 'Widget Visitor Select', email })
      .select();
    assert.equal(res.status, 401);
    assert.deepEqual(res.error, {
      code: '42501',
      details: null,
      hint: null,
      // Migration 20260101000700_visitor_columns.sql: anon may not select notes, tags or
      // crm_contact_id of visitors, so `*` fails on privileges before any row is checked.
      message: 'permission denied for table mod_chat_visitors',
    });
    assert.equal((await sql('select count(*)::int as n from public.mod_chat_visitors where email = $1', [email]))[0].n, 0);
  });

  test('anon insert reading back only an id it may read: RLS refuses the RETURNING, 401 42501', async () => {
    const email = `anon-sel-id-${uniq()}@example.com`;
    const res = await anonClient()
      .from('mod_chat_visitors')
      .insert({ site_id: other.siteId, name: 'Widget Visitor Select Id', email })
      .select('id');
    assert.equal(res.status, 401);
    assert.deepEqual(res.error, {
      code: '42501',
      details: null,
      hint: null,
      message: 'new row violates row-level security policy for table "mod_chat_visitors"',
    });
    assert.equal((await sql('select count(*)::int as n from public.mod_chat_visitors where email = $1', [email]))[0].n, 0);
  });

  test('reading conversations by named columns: 200, [] (no anon SELECT policy matches)', async () => {
    const precondition = (await sql('select count(*)::int as n from public.mod_chat_conversations'))[0].n;
    assert.ok(precondition > 0);
    const res = await anonClient().from('mod_chat_conversations').select('id,status,subject');
    noError(res);
    assert.equal(res.status, 200);
    assert.deepEqual(res.data, []);
  });

  test("reading conversations with '*': 401 42501 (internal_notes and tags are not anon's to select)", async () => {
    const res = await anonClient().from('mod_chat_conversations').select('*');
    assert.equal(res.status, 401);
    assert.deepEqual(res.error, {
      code: '42501',
      details: null,
      hint: null,
      message: 'permission denied for table mod_chat_conversations',
    });
    assert.equal(res.data, null);
  });

  test('raw anon read with count: 200, Content-Range */0, body []', async () => {
    const r = await rest('/mod_chat_conversations?select=id', { token: env.anonKey, headers: { Prefer: 'count=exact' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('content-range'), '*/0');
    assert.equal(r.text, '[]');
  });

  test('no Authorization header at all (apikey only) is anon too: 200, []', async () => {
    const r = await rest('/mod_chat_conversations?select=id', { token: null });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, '[]');
  });

  test('widget settings are public: anon reads every row, as SQL', async () => {
    const res = await anonClient().from('mod_chat_widget_settings').select('id,site_id,primary_color').order('id');
    noError(res);
    assert.equal(res.status, 200);
    const expected = await sqlJson('select id, site_id, primary_color from public.mod_chat_widget_settings order by id');
    assert.ok(expected.length > 0);
    assert.deepEqual(res.data, expected);
  });
});

// ---------------------------------------------------------------------------------------------
// Database errors (SQLSTATE → HTTP, body = the PostgreSQL error)
// ---------------------------------------------------------------------------------------------

describe('database errors', () => {
  test('unique violation: 409, 23505, message and details as PostgreSQL', async () => {
    const res = await db.from('mod_chat_widget_settings').insert({ site_id: SITE_ACME_STORE });
    assert.equal(res.status, 409);
    const expected = {
      code: '23505',
      details: `Key (site_id)=(${SITE_ACME_STORE}) already exists.`,
      hint: null,
      message: 'duplicate key value violates unique constraint "mod_chat_widget_settings_site_id_key"',
    };
    assert.deepEqual(res.error, expected);
    assert.deepEqual(
      await sqlErrorAs('insert into public.mod_chat_widget_settings (site_id) values ($1)', [SITE_ACME_STORE]),
      expected,
      'the same statement run directly as service_role',
    );
  });

  test('unique violation, raw: JSON error Content-Type', async () => {
    const r = await rest('/mod_chat_widget_settings', { method: 'POST', body: { site_id: SITE_ACME_STORE } });
    assert.equal(r.status, 409, r.text);
    assert.equal(r.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.equal(r.json.code, '23505');
  });

  test('foreign key violation: 409, 23503', async () => {
    const missing = randomUUID();
    const res = await db.from('mod_chat_conversations').insert({ site_id: other.siteId, visitor_id: missing });
    assert.equal(res.status, 409);
    assert.deepEqual(res.error, {
      code: '23503',
      details: `Key (visitor_id)=(${missing}) is not present in table "mod_chat_visitors".`,
      hint: null,
      message:
        'insert or update on table "mod_chat_conversations" violates foreign key constraint "mod_chat_conversations_visitor_id_fkey"',
    });
  });

  test('check violation: 400, 23514, details = the failing row as PostgreSQL prints it', async () => {
    const visitor = await insertVisitor(other.siteId, { name: 'Check Visitor' });
    const row = {
      id: randomUUID(),
      site_id: other.siteId,
      visitor_id: visitor,
      rating: 9,
      created_at: '2026-01-02T03:04:05.123456+00:00',
      updated_at: '2026-01-02T03:04:05.123456+00:00',
    };
    const res = await db.from('mod_chat_conversations').insert(row);
    assert.equal(res.status, 400);
    const direct = await sqlErrorAs(
      `insert into public.mod_chat_conversations (id, site_id, visitor_id, rating, created_at, updated_at)
       values ($1, $2, $3, $4, $5, $6)`,
      [row.id, row.site_id, row.visitor_id, row.rating, row.created_at, row.updated_at],
    );
    assert.equal(direct.code, '23514');
    assert.ok(direct.details.startsWith(`Failing row contains (${row.id}, ${row.site_id}, ${visitor}, null, null, pending,`));
    assert.deepEqual(res.error, {
      code: '23514',
      details: direct.details,
      hint: null,
      message: 'new row for relation "mod_chat_conversations" violates check constraint "mod_chat_conversations_rating_check"',
    });
  });

  test('unknown column in select: 400, 42703', async () => {
    const res = await db.from('mod_chat_conversations').select('id,no_such_column');
    assert.equal(res.status, 400);
    assert.deepEqual(res.error, {
      code: '42703',
      details: null,
      hint: null,
      message: 'column mod_chat_conversations.no_such_column does not exist',
    });
  });

  test('unknown table (near miss): 404 PGRST205 with the suggestion', async () => {
    const res = await db.from('mod_chat_conversation').select('*');
    assert.equal(res.status, 404);
    assert.deepEqual(res.error, {
      code: 'PGRST205',
      details: null,
      hint: "Perhaps you meant the table 'public.mod_chat_conversations'",
      message: "Could not find the table 'public.mod_chat_conversation' in the schema cache",
    });
  });

  test('unknown table (no near name): 404 PGRST205', async () => {
    const res = await db.from('zz_interop_no_such_table').select('*');
    assert.equal(res.status, 404);
    const { hint, ...others } = res.error ?? {};
    assert.deepEqual(others, {
      code: 'PGRST205',
      details: null,
      message: "Could not find the table 'public.zz_interop_no_such_table' in the schema cache",
    });
    // PostgREST's fuzzy suggestion: null or "Perhaps you meant the table 'public.…'".
    assert.ok(hint === null || /^Perhaps you meant the table 'public\.[a-z_]+'$/.test(hint), `hint: ${JSON.stringify(hint)}`);
  });
});

// ---------------------------------------------------------------------------------------------
// Request errors (PGRST1xx)
// ---------------------------------------------------------------------------------------------

describe('request errors', () => {
  test('malformed filter (no operator): 400 PGRST100, parser message', async () => {
    const r = await rest(`/mod_chat_conversations?${qs([['select', 'id'], ['status', '0']])}`);
    assert.equal(r.status, 400, r.text);
    assert.equal(r.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.deepEqual(r.json, {
      code: 'PGRST100',
      details: 'unexpected "0" expecting "not" or operator (eq, gt, ...)',
      hint: null,
      message: '"failed to parse filter (0)" (line 1, column 1)',
    });
  });

  test('unknown operator through supabase-js .filter(): 400 PGRST100', async () => {
    const res = await db.from('mod_chat_conversations').select('id').filter('status', 'eqq', 'active');
    assert.equal(res.status, 400);
    assert.equal(res.error?.code, 'PGRST100');
    assert.equal(res.data, null);
  });

  test('invalid JSON body: 400 PGRST102', async () => {
    const r = await rest('/mod_chat_visitors', { method: 'POST', body: '{"site_id": ' });
    assert.equal(r.status, 400, r.text);
    assert.deepEqual(r.json, { code: 'PGRST102', details: null, hint: null, message: 'Empty or invalid json' });
  });
});

// ---------------------------------------------------------------------------------------------
// JWT errors (401, WWW-Authenticate)
// ---------------------------------------------------------------------------------------------

describe('JWT errors', () => {
  const wwwAuth = (m) => `Bearer error="invalid_token", error_description="${m}"`;

  test('token signed with another secret: 401 PGRST301 (supabase-js)', async () => {
    const res = await userClient(USER_ALICE, { secret: 'not-the-stack-secret-but-32-chars-long!!' })
      .from('mod_chat_conversations')
      .select('id');
    assert.equal(res.status, 401);
    assert.equal(res.data, null);
    assert.deepEqual(res.error, {
      code: 'PGRST301',
      details: 'None of the keys was able to decode the JWT',
      hint: null,
      message: 'No suitable key or wrong key type',
    });
  });

  test('token signed with another secret, raw: WWW-Authenticate names the error', async () => {
    const token = userToken(USER_ALICE, { secret: 'not-the-stack-secret-but-32-chars-long!!' });
    const r = await rest('/mod_chat_conversations?select=id', { token });
    assert.equal(r.status, 401, r.text);
    assert.equal(r.headers.get('www-authenticate'), wwwAuth('No suitable key or wrong key type'));
    assert.equal(r.json.code, 'PGRST301');
  });

  test('a value that is not a JWT: 401 PGRST301 "Expected 3 parts in JWT; got 1"', async () => {
    const r = await rest('/mod_chat_conversations?select=id', { token: 'not-a-jwt' });
    assert.equal(r.status, 401, r.text);
    assert.equal(r.headers.get('www-authenticate'), wwwAuth('Expected 3 parts in JWT; got 1'));
    assert.deepEqual(r.json, { code: 'PGRST301', details: null, hint: null, message: 'Expected 3 parts in JWT; got 1' });
  });

  test('expired JWT: 401 PGRST303 "JWT expired" (supabase-js)', async () => {
    const res = await userClient(USER_ALICE, { expiresIn: -600 }).from('mod_chat_conversations').select('id');
    assert.equal(res.status, 401);
    assert.deepEqual(res.error, { code: 'PGRST303', details: null, hint: null, message: 'JWT expired' });
  });

  test('expired JWT, raw: exact body and WWW-Authenticate', async () => {
    const iat = nowSeconds() - 7200;
    const token = signJwt({ sub: USER_ALICE, role: 'authenticated', aud: 'authenticated', iat, exp: iat + 3600 });
    const r = await rest('/mod_chat_conversations?select=id', { token });
    assert.equal(r.status, 401, r.text);
    assert.equal(r.headers.get('www-authenticate'), wwwAuth('JWT expired'));
    assert.deepEqual(r.json, { code: 'PGRST303', details: null, hint: null, message: 'JWT expired' });
  });

  test('a token that expired 10 s ago is still accepted (30 s clock skew)', async () => {
    const res = await userClient(USER_ALICE, { expiresIn: -10 }).from('mod_chat_conversations').select('id').limit(1);
    noError(res);
    assert.equal(res.status, 200);
  });
});

// ---------------------------------------------------------------------------------------------
// Error bodies, byte for byte
// ---------------------------------------------------------------------------------------------

describe('error bodies are byte-identical to PostgREST v14', () => {
  // PostgREST builds error objects with aeson's `object`, whose keys are encoded sorted:
  // {"code":…,"details":…,"hint":…,"message":…} (e.g. the PJS snapshot of 23505, and real
  // responses such as {"code":"PGRST303","details":null,"hint":null,"message":"JWT expired"}).
  const bytes = (code, details, hint, message) => JSON.stringify({ code, details, hint, message });

  test('23505 unique violation', async () => {
    const r = await rest('/mod_chat_widget_settings', { method: 'POST', body: { site_id: SITE_ACME_STORE } });
    assert.equal(r.status, 409);
    assert.equal(
      r.text,
      bytes(
        '23505',
        `Key (site_id)=(${SITE_ACME_STORE}) already exists.`,
        null,
        'duplicate key value violates unique constraint "mod_chat_widget_settings_site_id_key"',
      ),
    );
  });

  test('42703 unknown column', async () => {
    const r = await rest('/mod_chat_conversations?select=id,no_such_column');
    assert.equal(r.status, 400);
    assert.equal(r.text, bytes('42703', null, null, 'column mod_chat_conversations.no_such_column does not exist'));
  });

  test('PGRST205 unknown table', async () => {
    const r = await rest('/mod_chat_conversation');
    assert.equal(r.status, 404);
    assert.equal(
      r.text,
      bytes(
        'PGRST205',
        null,
        "Perhaps you meant the table 'public.mod_chat_conversations'",
        "Could not find the table 'public.mod_chat_conversation' in the schema cache",
      ),
    );
  });

  test('PGRST100 malformed filter', async () => {
    const r = await rest('/mod_chat_conversations?select=id&status=0');
    assert.equal(r.status, 400);
    assert.equal(
      r.text,
      bytes(
        'PGRST100',
        'unexpected "0" expecting "not" or operator (eq, gt, ...)',
        null,
        '"failed to parse filter (0)" (line 1, column 1)',
      ),
    );
  });

  test('PGRST102 invalid JSON', async () => {
    const r = await rest('/mod_chat_visitors', { method: 'POST', body: '{"site_id": ' });
    assert.equal(r.status, 400);
    assert.equal(r.text, bytes('PGRST102', null, null, 'Empty or invalid json'));
  });

  test('PGRST301 wrong signing key', async () => {
    const token = userToken(USER_ALICE, { secret: 'not-the-stack-secret-but-32-chars-long!!' });
    const r = await rest('/mod_chat_conversations?select=id', { token });
    assert.equal(r.status, 401);
    assert.equal(
      r.text,
      bytes('PGRST301', 'None of the keys was able to decode the JWT', null, 'No suitable key or wrong key type'),
    );
  });

  test('PGRST303 JWT expired', async () => {
    const r = await rest('/mod_chat_conversations?select=id', { token: userToken(USER_ALICE, { expiresIn: -600 }) });
    assert.equal(r.status, 401);
    assert.equal(r.text, '{"code":"PGRST303","details":null,"hint":null,"message":"JWT expired"}');
  });
});
