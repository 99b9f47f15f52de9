// Reads through /rest/v1 with the official supabase-js client (and raw fetch where headers matter),
// compared with direct SQL over the same rows. Expected behaviour: PostgREST v14 as described in
// shared/spec/postgrest.md (§1 grammar, §2.2 Content-Range and status, §2.4 singular responses).
//
// Seeded rows are only read. Tests that need special rows create their own tenant (agency + site)
// and drop it afterwards.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  closeAll,
  qs,
  randomUUID,
  rest,
  serviceClient,
  sql,
  sqlJson,
  sqlJsonText,
} from './lib/env.mjs';
import { createTenant, insertConversation, insertVisitor } from './lib/fixtures.mjs';
import { SITE_ACME_STORE, CONV_STORE_ACTIVE, VISITOR_MIA } from './lib/seed.mjs';

const S = SITE_ACME_STORE;
let db;

before(() => {
  db = serviceClient();
});
after(closeAll);

/** The columns the filter tests select, in table order. */
const COLS = 'id,status,assigned_agent_id,subject,created_at';

/** Asserts a supabase-js result is a 200 whose rows equal `query`'s rows (json_agg form). */
async function assertRows(res, query, params, { status = 200, nonTrivial = true } = {}) {
  assert.equal(res.error, null, `unexpected error: ${JSON.stringify(res.error)}`);
  assert.equal(res.status, status);
  const expected = await sqlJson(query, params);
  if (nonTrivial) assert.ok(expected.length > 0, 'precondition: the SQL side matches some rows');
  assert.deepEqual(res.data, expected);
  return expected;
}

// ---------------------------------------------------------------------------------------------
// The dashboard's conversation list
// ---------------------------------------------------------------------------------------------

const DASHBOARD_SELECT =
  '*, mod_chat_visitors!inner(name, email, avatar_url), mod_chat_agents(display_name), mod_chat_departments(name)';

/** The same rows in SQL: every conversation column, then the three embeds (objects or null). */
const DASHBOARD_SQL = `
  select c.*,
    (select jsonb_build_object('name', v.name, 'email', v.email, 'avatar_url', v.avatar_url)
       from public.mod_chat_visitors v where v.id = c.visitor_id) as mod_chat_visitors,
    (select jsonb_build_object('display_name', a.display_name)
       from public.mod_chat_agents a where a.id = c.assigned_agent_id) as mod_chat_agents,
    (select jsonb_build_object('name', d.name)
       from public.mod_chat_departments d where d.id = c.department_id) as mod_chat_departments
  from public.mod_chat_conversations c
  where c.site_id = $1
    and exists (select 1 from public.mod_chat_visitors v where v.id = c.visitor_id)
  order by c.last_message_at desc nulls last`;

const countSite = async (site) =>
  (await sql('select count(*)::int as n from public.mod_chat_conversations where site_id = $1', [site]))[0].n;

function dashboardPage(from, to) {
  return db
    .from('mod_chat_conversations')
    .select(DASHBOARD_SELECT, { count: 'exact' })
    .eq('site_id', S)
    .order('last_message_at', { ascending: false, nullsFirst: false })
    .range(from, to);
}

describe('dashboard conversation list (embeds, order, range, exact count)', () => {
  test('page 1: 206, rows/order/embeds as SQL, exact count', async () => {
    const total = await countSite(S);
    assert.ok(total > 2, `precondition: seeded site has more than 2 conversations (has ${total})`);
    const res = await dashboardPage(0, 1);
    assert.equal(res.error, null, JSON.stringify(res.error));
    assert.equal(res.status, 206);
    assert.equal(res.count, total);
    const expected = await sqlJson(`${DASHBOARD_SQL} limit 2 offset 0`, [S]);
    assert.deepEqual(res.data, expected);
    // The embeds' shapes: to-one embeds are objects (or null), never arrays.
    for (const row of res.data) {
      assert.deepEqual(Object.keys(row.mod_chat_visitors).sort(), ['avatar_url', 'email', 'name']);
    }
  });

  test('page 2 and the last page: rows as SQL, count unchanged', async () => {
    const total = await countSite(S);
    const res2 = await dashboardPage(2, 3);
    assert.equal(res2.error, null, JSON.stringify(res2.error));
    assert.equal(res2.status, 206);
    assert.equal(res2.count, total);
    assert.deepEqual(res2.data, await sqlJson(`${DASHBOARD_SQL} limit 2 offset 2`, [S]));

    const lastFrom = total - 2;
    const resLast = await dashboardPage(lastFrom, lastFrom + 1);
    assert.equal(resLast.error, null);
    assert.equal(resLast.status, 206, 'fewer rows than the total came back');
    assert.equal(resLast.count, total);
    assert.deepEqual(resLast.data, await sqlJson(`${DASHBOARD_SQL} limit 2 offset ${lastFrom}`, [S]));
  });

  test('raw request of the same page: 206 and Content-Range 0-1/<total>', async () => {
    const total = await countSite(S);
    const q = qs([
      ['select', DASHBOARD_SELECT.replace(/\s/g, '')],
      ['site_id', `eq.${S}`],
      ['order', 'last_message_at.desc.nullslast'],
      ['offset', '0'],
      ['limit', '2'],
    ]);
    const r = await rest(`/mod_chat_conversations?${q}`, { headers: { Prefer: 'count=exact' } });
    assert.equal(r.status, 206, r.text);
    assert.equal(r.headers.get('content-range'), `0-1/${total}`);
    assert.equal(r.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.deepEqual(r.json, await sqlJson(`${DASHBOARD_SQL} limit 2`, [S]));
  });

  test('raw dashboard page: body byte-identical to PostgreSQL json_agg (embeds rendered as jsonb)', async () => {
    const q = qs([
      ['select', DASHBOARD_SELECT.replace(/\s/g, '')],
      ['site_id', `eq.${S}`],
      ['order', 'last_message_at.desc.nullslast'],
      ['offset', '0'],
      ['limit', '2'],
    ]);
    const r = await rest(`/mod_chat_conversations?${q}`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, await sqlJsonText(`${DASHBOARD_SQL} limit 2`, [S]));
  });

  test('!inner embed filter (mod_chat_visitors.email) restricts the parents and the count', async () => {
    const email = (await sql('select email from public.mod_chat_visitors where id = $1', [VISITOR_MIA]))[0].email;
    const res = await db
      .from('mod_chat_conversations')
      .select(DASHBOARD_SELECT, { count: 'exact' })
      .eq('site_id', S)
      .eq('mod_chat_visitors.email', email)
      .order('last_message_at', { ascending: false, nullsFirst: false });
    const expected = await sqlJson(
      DASHBOARD_SQL.replace(
        'order by',
        'and c.visitor_id in (select id from public.mod_chat_visitors where email = $2) order by',
      ),
      [S, email],
    );
    assert.equal(res.error, null, JSON.stringify(res.error));
    assert.ok(expected.length > 0 && expected.length < (await countSite(S)), 'precondition');
    assert.equal(res.status, 200);
    assert.equal(res.count, expected.length);
    assert.deepEqual(res.data, expected);
  });

  describe('nulls ordering (own rows)', () => {
    let t;
    const ids = {};
    before(async () => {
      t = await createTenant({ label: 'queries-nulls' });
      const v = await insertVisitor(t.siteId, { name: 'Null Order' });
      ids.hour = await insertConversation(t.siteId, v, { last_message_at: new Date(Date.now() - 3600e3) });
      ids.none = await insertConversation(t.siteId, v, { last_message_at: null });
      ids.twoHours = await insertConversation(t.siteId, v, { last_message_at: new Date(Date.now() - 7200e3) });
    });
    after(() => t?.drop());

    test('desc + nullsFirst:false puts the conversation without messages last', async () => {
      const res = await db
        .from('mod_chat_conversations')
        .select('id,last_message_at')
        .eq('site_id', t.siteId)
        .order('last_message_at', { ascending: false, nullsFirst: false });
      assert.equal(res.error, null, JSON.stringify(res.error));
      assert.deepEqual(res.data.map((r) => r.id), [ids.hour, ids.twoHours, ids.none]);
      assert.deepEqual(
        res.data,
        await sqlJson(
          'select id, last_message_at from public.mod_chat_conversations where site_id = $1 order by last_message_at desc nulls last',
          [t.siteId],
        ),
      );
    });

    test('desc without a nulls option follows PostgreSQL (nulls first)', async () => {
      const res = await db
        .from('mod_chat_conversations')
        .select('id')
        .eq('site_id', t.siteId)
        .order('last_message_at', { ascending: false });
      assert.equal(res.error, null, JSON.stringify(res.error));
      assert.deepEqual(res.data.map((r) => r.id), [ids.none, ids.hour, ids.twoHours]);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------------

describe('filters', () => {
  const base = () => db.from('mod_chat_conversations').select(COLS).eq('site_id', S);
  const sqlBase = (where) =>
    `select ${COLS} from public.mod_chat_conversations where site_id = $1 and (${where}) order by id`;

  test('eq on status', async () => {
    const res = await base().eq('status', 'active').order('id');
    await assertRows(res, sqlBase("status = 'active'"), [S]);
  });

  test('is null: .is(assigned_agent_id, null)', async () => {
    const res = await base().is('assigned_agent_id', null).order('id');
    await assertRows(res, sqlBase('assigned_agent_id is null'), [S]);
  });

  test("not is null: .not('assigned_agent_id', 'is', null)", async () => {
    const res = await base().not('assigned_agent_id', 'is', null).order('id');
    await assertRows(res, sqlBase('assigned_agent_id is not null'), [S]);
  });

  test('in on status', async () => {
    const res = await base().in('status', ['pending', 'waiting', 'missed']).order('id');
    const exp = await assertRows(res, sqlBase("status in ('pending', 'waiting', 'missed')"), [S]);
    assert.ok(exp.length < (await countSite(S)), 'precondition: the filter excludes some rows');
  });

  test("ilike on subject ('%order%')", async () => {
    const res = await base().ilike('subject', '%order%').order('id');
    await assertRows(res, sqlBase("subject ilike '%order%'"), [S]);
  });

  test("ilike with PostgREST's * wildcard (raw)", async () => {
    const r = await rest(
      `/mod_chat_conversations?${qs([['select', COLS], ['site_id', `eq.${S}`], ['subject', 'ilike.*ORDER*'], ['order', 'id']])}`,
    );
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, await sqlJson(sqlBase("subject ilike '%order%'"), [S]));
  });

  test("or: .or('status.eq.pending,status.eq.active')", async () => {
    const res = await base().or('status.eq.pending,status.eq.active').order('id');
    await assertRows(res, sqlBase("status = 'pending' or status = 'active'"), [S]);
  });

  test('gte/lte on created_at (inclusive bounds, microsecond timestamps)', async () => {
    // Bounds are two existing rows' exact created_at values, so inclusivity is tested.
    const bounds = await sql(
      `select to_json(created_at) #>> '{}' as ts from public.mod_chat_conversations
       where site_id = $1 order by created_at desc offset 1 limit 3`,
      [S],
    );
    assert.equal(bounds.length, 3, 'precondition: enough seeded conversations');
    const hi = bounds[0].ts;
    const lo = bounds[2].ts;
    const res = await base().gte('created_at', lo).lte('created_at', hi).order('id');
    const exp = await assertRows(res, sqlBase('created_at >= $2 and created_at <= $3'), [S, lo, hi]);
    assert.equal(exp.length, 3);
  });

  describe('in() with commas and double quotes in the values (own rows)', () => {
    let t;
    const subj = {
      comma: 'Refund, please',
      quote: 'He said "hi"',
      both: 'Both, "kinds" (really)',
      bothNoParens: 'Comma, "quote"',
      plain: 'plain',
    };
    const ids = {};
    before(async () => {
      t = await createTenant({ label: 'queries-in' });
      const v = await insertVisitor(t.siteId, { name: 'In Quoting' });
      for (const [k, s] of Object.entries(subj)) ids[k] = await insertConversation(t.siteId, v, { subject: s });
    });
    after(() => t?.drop());

    const inSql = (values) =>
      sqlJson(
        'select id, subject from public.mod_chat_conversations where site_id = $1 and subject = any($2) order by id',
        [t.siteId, values],
      );

    test('supabase-js .in() with a comma value and a quote value matches them literally', async () => {
      const res = await db
        .from('mod_chat_conversations')
        .select('id,subject')
        .eq('site_id', t.siteId)
        .in('subject', [subj.comma, subj.quote])
        .order('id');
      assert.equal(res.error, null, JSON.stringify(res.error));
      assert.equal(res.status, 200);
      const exp = await inSql([subj.comma, subj.quote]);
      assert.equal(exp.length, 2);
      assert.deepEqual(res.data, exp);
    });

    test('raw in.("…\\"…\\"…",plain): backslash-escaped quotes inside a quoted element', async () => {
      const quoted = `"${subj.both.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
      const r = await rest(
        `/mod_chat_conversations?${qs([
          ['select', 'id,subject'],
          ['site_id', `eq.${t.siteId}`],
          ['subject', `in.(${quoted},plain)`],
          ['order', 'id'],
        ])}`,
      );
      assert.equal(r.status, 200, r.text);
      const exp = await inSql([subj.both, subj.plain]);
      assert.equal(exp.length, 2);
      assert.deepEqual(r.json, exp);
    });

    test('supabase-js .in() with comma AND quote: PostgREST parses its unescaped quoting as other values (200, [])', async () => {
      // postgrest-js 2.109 wraps the value in quotes without escaping the inner ones
      // (supabase-js #2669/#2670): in.("Comma, "quote""). PostgREST's list parser then reads
      // the elements `"Comma` and ` "quote""` (no error), and nothing matches.
      const res = await db
        .from('mod_chat_conversations')
        .select('id,subject')
        .eq('site_id', t.siteId)
        .in('subject', [subj.bothNoParens])
        .order('id');
      assert.equal(res.error, null, JSON.stringify(res.error));
      assert.equal(res.status, 200);
      assert.deepEqual(res.data, []);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Singular responses
// ---------------------------------------------------------------------------------------------

describe('single() and maybeSingle()', () => {
  const ONE_SQL = `select ${COLS} from public.mod_chat_conversations where id = $1`;

  test('single() with one row: 200 and the object', async () => {
    const res = await db.from('mod_chat_conversations').select(COLS).eq('id', CONV_STORE_ACTIVE).single();
    assert.equal(res.error, null, JSON.stringify(res.error));
    assert.equal(res.status, 200);
    assert.deepEqual(res.data, (await sqlJson(ONE_SQL, [CONV_STORE_ACTIVE]))[0]);
  });

  test('single() raw: vendor Content-Type, body is the bare object', async () => {
    const r = await rest(
      `/mod_chat_conversations?${qs([['select', COLS], ['id', `eq.${CONV_STORE_ACTIVE}`]])}`,
      { headers: { Accept: 'application/vnd.pgrst.object+json' } },
    );
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('content-type'), 'application/vnd.pgrst.object+json; charset=utf-8');
    assert.deepEqual(r.json, (await sqlJson(ONE_SQL, [CONV_STORE_ACTIVE]))[0]);
  });

  test('single() with zero rows: 406 PGRST116', async () => {
    const res = await db.from('mod_chat_conversations').select(COLS).eq('id', randomUUID()).single();
    assert.equal(res.status, 406);
    assert.equal(res.data, null);
    assert.deepEqual(res.error, {
      code: 'PGRST116',
      details: 'The result contains 0 rows',
      hint: null,
      message: 'Cannot coerce the result to a single JSON object',
    });
  });

  test('single() with zero rows, raw: 406 and the body byte-identical to PostgREST v14', async () => {
    const r = await rest(`/mod_chat_conversations?${qs([['select', 'id'], ['id', `eq.${randomUUID()}`]])}`, {
      headers: { Accept: 'application/vnd.pgrst.object+json' },
    });
    assert.equal(r.status, 406);
    assert.equal(r.headers.get('content-type'), 'application/json; charset=utf-8');
    // PostgREST encodes error objects with aeson, whose keys come out sorted: code, details, hint, message.
    assert.equal(
      r.text,
      '{"code":"PGRST116","details":"The result contains 0 rows","hint":null,"message":"Cannot coerce the result to a single JSON object"}',
    );
  });

  test('single() with several rows: 406 PGRST116 "The result contains N rows"', async () => {
    const n = await countSite(S);
    const res = await db.from('mod_chat_conversations').select('id').eq('site_id', S).single();
    assert.equal(res.status, 406);
    assert.equal(res.data, null);
    assert.deepEqual(res.error, {
      code: 'PGRST116',
      details: `The result contains ${n} rows`,
      hint: null,
      message: 'Cannot coerce the result to a single JSON object',
    });
  });

  test('maybeSingle() with zero rows: 200, data null, no error', async () => {
    const res = await db.from('mod_chat_conversations').select(COLS).eq('id', randomUUID()).maybeSingle();
    assert.equal(res.error, null, JSON.stringify(res.error));
    assert.equal(res.status, 200);
    assert.equal(res.data, null);
  });

  test('maybeSingle() with one row: 200 and the object', async () => {
    const res = await db.from('mod_chat_conversations').select(COLS).eq('id', CONV_STORE_ACTIVE).maybeSingle();
    assert.equal(res.error, null, JSON.stringify(res.error));
    assert.equal(res.status, 200);
    assert.deepEqual(res.data, (await sqlJson(ONE_SQL, [CONV_STORE_ACTIVE]))[0]);
  });
});

// ---------------------------------------------------------------------------------------------
// Counts without rows (HEAD)
// ---------------------------------------------------------------------------------------------

describe('head-only counts', () => {
  test("select('*', {count:'exact', head:true}): 200, count, no data", async () => {
    const total = await countSite(S);
    const res = await db.from('mod_chat_conversations').select('*', { count: 'exact', head: true }).eq('site_id', S);
    assert.equal(res.error, null, JSON.stringify(res.error));
    assert.equal(res.status, 200);
    assert.equal(res.count, total);
    assert.equal(res.data, null);
  });

  test('head count with a filter', async () => {
    const n = (
      await sql(
        "select count(*)::int as n from public.mod_chat_conversations where site_id = $1 and status in ('pending','active','waiting')",
        [S],
      )
    )[0].n;
    assert.ok(n > 0, 'precondition');
    const res = await db
      .from('mod_chat_conversations')
      .select('*', { count: 'exact', head: true })
      .eq('site_id', S)
      .in('status', ['pending', 'active', 'waiting']);
    assert.equal(res.error, null, JSON.stringify(res.error));
    assert.equal(res.status, 200);
    assert.equal(res.count, n);
  });

  test('head count of nothing: 200, count 0', async () => {
    const res = await db
      .from('mod_chat_conversations')
      .select('*', { count: 'exact', head: true })
      .eq('site_id', randomUUID());
    assert.equal(res.error, null, JSON.stringify(res.error));
    assert.equal(res.status, 200);
    assert.equal(res.count, 0);
  });

  test('raw HEAD: 200, Content-Range 0-(n-1)/n, empty body', async () => {
    const total = await countSite(S);
    const r = await rest(`/mod_chat_conversations?${qs([['select', 'id'], ['site_id', `eq.${S}`]])}`, {
      method: 'HEAD',
      headers: { Prefer: 'count=exact' },
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-range'), `0-${total - 1}/${total}`);
    assert.equal(r.text, '');
  });
});

// ---------------------------------------------------------------------------------------------
// Raw paging: Range header, limit/offset, Content-Range and status (§1.8, §2.2)
// ---------------------------------------------------------------------------------------------

describe('raw GET paging and Content-Range', () => {
  const PATH = `/mod_chat_conversations?${qs([['select', 'id'], ['site_id', `eq.${S}`], ['order', 'id']])}`;
  const ID_SQL = 'select id from public.mod_chat_conversations where site_id = $1 order by id';
  let all; // [{id}] in id order
  let n;

  before(async () => {
    all = await sqlJson(ID_SQL, [S]);
    n = all.length;
  });

  const get = (extra = '', headers = {}) => rest(`${PATH}${extra}`, { headers });
  const expectPage = (r, status, contentRange, rows) => {
    assert.equal(r.status, status, `status; body: ${r.text}`);
    assert.equal(r.headers.get('content-range'), contentRange);
    assert.deepEqual(r.json, rows);
  };

  test('precondition: the seeded site has at least 5 conversations', () => {
    assert.ok(n >= 5, `has ${n}`);
  });

  test('no paging, no count: 200, 0-(n-1)/*, body byte-identical to json_agg', async () => {
    const r = await get();
    expectPage(r, 200, `0-${n - 1}/*`, all);
    assert.equal(r.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.equal(r.text, await sqlJsonText(ID_SQL, [S]));
  });

  test('no paging, count=exact: 200, 0-(n-1)/n', async () => {
    expectPage(await get('', { Prefer: 'count=exact' }), 200, `0-${n - 1}/${n}`, all);
  });

  test('Range: 0-1 without count: 200, 0-1/*', async () => {
    expectPage(await get('', { Range: '0-1' }), 200, '0-1/*', all.slice(0, 2));
  });

  test('Range: 0-1 with count=exact: 206, 0-1/n', async () => {
    expectPage(await get('', { Range: '0-1', 'Range-Unit': 'items', Prefer: 'count=exact' }), 206, `0-1/${n}`, all.slice(0, 2));
  });

  test('open-ended Range: 2- with count=exact: 206, 2-(n-1)/n', async () => {
    expectPage(await get('', { Range: '2-', Prefer: 'count=exact' }), 206, `2-${n - 1}/${n}`, all.slice(2));
  });

  test('limit=2&offset=2 with count=exact: 206, 2-3/n', async () => {
    expectPage(await get('&limit=2&offset=2', { Prefer: 'count=exact' }), 206, `2-3/${n}`, all.slice(2, 4));
  });

  test('limit=2 without count: 200, 0-1/*', async () => {
    expectPage(await get('&limit=2'), 200, '0-1/*', all.slice(0, 2));
  });

  test('Range 0-1 intersected with limit=3: two rows', async () => {
    expectPage(await get('&limit=3', { Range: '0-1' }), 200, '0-1/*', all.slice(0, 2));
  });

  test('last page with count: 206 while fewer rows than the total', async () => {
    expectPage(await get(`&offset=${n - 2}`, { Prefer: 'count=exact' }), 206, `${n - 2}-${n - 1}/${n}`, all.slice(n - 2));
  });

  test('offset == total with count: 206, */n, []', async () => {
    expectPage(await get(`&offset=${n}`, { Prefer: 'count=exact' }), 206, `*/${n}`, []);
  });

  test('offset past the end without count: 200, */*, []', async () => {
    expectPage(await get(`&offset=${n + 4}`), 200, '*/*', []);
  });

  test('offset past the end with count: 416 PGRST103, Content-Range */n', async () => {
    const r = await get(`&offset=${n + 4}`, { Prefer: 'count=exact' });
    assert.equal(r.status, 416, r.text);
    assert.equal(r.headers.get('content-range'), `*/${n}`);
    assert.deepEqual(r.json, {
      code: 'PGRST103',
      message: 'Requested range not satisfiable',
      details: `An offset of ${n + 4} was requested, but there are only ${n} rows.`,
      hint: null,
    });
  });

  test('limit=0: 200, */*, []', async () => {
    expectPage(await get('&limit=0'), 200, '*/*', []);
  });

  test('limit=0 with count: 206, */n, []', async () => {
    expectPage(await get('&limit=0', { Prefer: 'count=exact' }), 206, `*/${n}`, []);
  });

  test('Range with lower > upper: 416 PGRST103', async () => {
    const r = await get('', { Range: '3-1' });
    assert.equal(r.status, 416, r.text);
    assert.deepEqual(r.json, {
      code: 'PGRST103',
      message: 'Requested range not satisfiable',
      details: 'The lower boundary must be lower than or equal to the upper boundary in the Range header.',
      hint: null,
    });
  });

  test('negative limit: 416 PGRST103', async () => {
    const r = await get('&limit=-1');
    assert.equal(r.status, 416, r.text);
    assert.deepEqual(r.json, {
      code: 'PGRST103',
      message: 'Requested range not satisfiable',
      details: 'Limit should be greater than or equal to zero.',
      hint: null,
    });
  });

  test('count of an empty result: 200, */0, []', async () => {
    const r = await rest(`/mod_chat_conversations?${qs([['select', 'id'], ['site_id', `eq.${randomUUID()}`]])}`, {
      headers: { Prefer: 'count=exact' },
    });
    expectPage(r, 200, '*/0', []);
  });
});
