// Writes through /rest/v1 with supabase-js (and raw fetch where headers matter): insert, update,
// delete, upsert and RPC, each compared with direct SQL. Expected behaviour: PostgREST v14
// (shared/spec/postgrest.md §2.2 Content-Range, §3 writes, §4 RPC).
//
// Every row written here belongs to a tenant (agency + sites) created for this file and dropped
// at the end; seeded rows are never touched.

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
  uniq,
  waitFor,
} from './lib/env.mjs';
import { createTenant, insertConversation, insertVisitor } from './lib/fixtures.mjs';

let db;
let t; // tenant with 4 sites

before(async () => {
  db = serviceClient();
  t = await createTenant({ sites: 4, label: 'writes' });
});
after(async () => {
  await t?.drop();
  await closeAll();
});

const noError = (res) => assert.equal(res.error, null, `unexpected error: ${JSON.stringify(res.error)}`);
const byName = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

// ---------------------------------------------------------------------------------------------
// INSERT
// ---------------------------------------------------------------------------------------------

describe('insert', () => {
  test('insert(...).select().single(): 201 and the inserted row, as stored', async () => {
    const email = `w1-${uniq()}@example.com`;
    const res = await db
      .from('mod_chat_visitors')
      .insert({
        site_id: t.siteId,
        name: 'Writer One',
        email,
        tags: ['new', 'vip'],
        custom_data: { source: 'interop', n: 1 },
        ip_address: '10.1.2.3',
      })
      .select()
      .single();
    noError(res);
    assert.equal(res.status, 201);
    assert.equal(typeof res.data?.id, 'string');
    const stored = await sqlJson('select * from public.mod_chat_visitors where email = $1', [email]);
    assert.equal(stored.length, 1);
    assert.deepEqual(res.data, stored[0]);
    // Column defaults applied to the keys that were left out.
    assert.equal(res.data.channel, 'widget');
    assert.equal(res.data.total_visits, 1);
  });

  test('raw POST with return=representation + object Accept: 201, vendor type, Content-Range */*', async () => {
    const email = `w2-${uniq()}@example.com`;
    const r = await rest(`/mod_chat_visitors?select=id,name,email`, {
      method: 'POST',
      headers: { Prefer: 'return=representation', Accept: 'application/vnd.pgrst.object+json' },
      body: { site_id: t.siteId, name: 'Writer Two', email },
    });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.headers.get('content-type'), 'application/vnd.pgrst.object+json; charset=utf-8');
    assert.equal(r.headers.get('content-range'), '*/*');
    const stored = await sqlJson('select id, name, email from public.mod_chat_visitors where email = $1', [email]);
    assert.deepEqual(r.json, stored[0]);
  });

  test('raw POST with the default return=minimal: 201, empty body, Content-Range */*', async () => {
    const email = `w3-${uniq()}@example.com`;
    const r = await rest('/mod_chat_visitors', {
      method: 'POST',
      body: { site_id: t.siteId, name: 'Writer Three', email },
    });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.text, '');
    assert.equal(r.headers.get('content-range'), '*/*');
    assert.equal((await sql('select count(*)::int as n from public.mod_chat_visitors where email = $1', [email]))[0].n, 1);
  });

  test('array insert with .select(): 201, every row; keys missing from an object become NULL', async () => {
    const tag = uniq();
    const res = await db
      .from('mod_chat_visitors')
      .insert([
        { site_id: t.siteId, name: `Arr A ${tag}`, email: `a-${tag}@example.com`, channel: 'api' },
        { site_id: t.siteId, name: `Arr B ${tag}` },
      ])
      .select('id,name,email,channel');
    noError(res);
    assert.equal(res.status, 201);
    const stored = await sqlJson(
      'select id, name, email, channel from public.mod_chat_visitors where name like $1 order by name',
      [`Arr _ ${tag}`],
    );
    assert.equal(stored.length, 2);
    assert.deepEqual([...res.data].sort(byName), stored);
    // supabase-js sends columns=<union of keys>: the absent channel is NULL, not the default.
    assert.equal(stored[1].email, null);
    assert.equal(stored[1].channel, null);
  });

  test('array insert with defaultToNull:false (Prefer missing=default): absent keys take the column default', async () => {
    const tag = uniq();
    const res = await db
      .from('mod_chat_visitors')
      .insert(
        [
          { site_id: t.siteId, name: `Def A ${tag}`, channel: 'api' },
          { site_id: t.siteId, name: `Def B ${tag}` },
        ],
        { defaultToNull: false },
      )
      .select('name,channel');
    noError(res);
    assert.equal(res.status, 201);
    const stored = await sqlJson('select name, channel from public.mod_chat_visitors where name like $1 order by name', [
      `Def _ ${tag}`,
    ]);
    assert.deepEqual(stored, [
      { name: `Def A ${tag}`, channel: 'api' },
      { name: `Def B ${tag}`, channel: 'widget' },
    ]);
    assert.deepEqual([...res.data].sort(byName), stored);
  });

  test('insert with count exact: 201, count 2, no body (raw: Content-Range */2)', async () => {
    const tag = uniq();
    const res = await db.from('mod_chat_visitors').insert(
      [
        { site_id: t.siteId, name: `Cnt A ${tag}` },
        { site_id: t.siteId, name: `Cnt B ${tag}` },
      ],
      { count: 'exact' },
    );
    noError(res);
    assert.equal(res.status, 201);
    assert.equal(res.count, 2);
    assert.equal(res.data, null);

    const r = await rest(`/mod_chat_visitors?${qs([['columns', '"site_id","name"']])}`, {
      method: 'POST',
      headers: { Prefer: 'count=exact' },
      body: [
        { site_id: t.siteId, name: `Cnt C ${tag}` },
        { site_id: t.siteId, name: `Cnt D ${tag}` },
      ],
    });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.headers.get('content-range'), '*/2');
    assert.equal(
      (await sql('select count(*)::int as n from public.mod_chat_visitors where name like $1', [`Cnt _ ${tag}`]))[0].n,
      4,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// UPDATE
// ---------------------------------------------------------------------------------------------

describe('update', () => {
  let site;
  let visitor;
  before(async () => {
    site = t.siteIds[1];
    visitor = await insertVisitor(site, { name: 'Update Target' });
  });

  const convo = (fields) => insertConversation(site, visitor, { subject: `upd-${uniq()}`, ...fields });
  const priorityOf = async (id) =>
    (await sql('select priority from public.mod_chat_conversations where id = $1', [id]))[0].priority;

  test('update().eq().eq().select(): 200 and exactly the matching rows, as stored', async () => {
    const tag = `upd-${uniq()}`;
    const p1 = await convo({ status: 'pending', subject: tag });
    const p2 = await convo({ status: 'pending', subject: tag });
    const a1 = await convo({ status: 'active', subject: tag });
    const res = await db
      .from('mod_chat_conversations')
      .update({ priority: 'high' })
      .eq('subject', tag)
      .eq('status', 'pending')
      .select('id,priority,status')
      .order('id');
    noError(res);
    assert.equal(res.status, 200);
    const stored = await sqlJson(
      'select id, priority, status from public.mod_chat_conversations where id = any($1) order by id',
      [[p1, p2]],
    );
    assert.deepEqual(res.data, stored);
    assert.deepEqual(stored.map((r) => r.priority), ['high', 'high']);
    assert.equal(await priorityOf(a1), 'normal', 'the non-matching row is untouched');
  });

  test('update with no match and .select(): 200, []', async () => {
    const res = await db.from('mod_chat_conversations').update({ priority: 'low' }).eq('id', randomUUID()).select();
    noError(res);
    assert.equal(res.status, 200);
    assert.deepEqual(res.data, []);
  });

  test('update without .select(): 204, no data; the row changed', async () => {
    const id = await convo({});
    const res = await db.from('mod_chat_conversations').update({ priority: 'urgent' }).eq('id', id);
    noError(res);
    assert.equal(res.status, 204);
    assert.equal(res.data, null);
    assert.equal(await priorityOf(id), 'urgent');
  });

  test('raw PATCH: Content-Range 0-(n-1)/* with representation, */* when nothing matched, 204 minimal', async () => {
    const tag = `upd-${uniq()}`;
    await convo({ subject: tag });
    const one = await convo({ subject: tag });
    const rep = await rest(`/mod_chat_conversations?${qs([['subject', `eq.${tag}`], ['select', 'id']])}`, {
      method: 'PATCH',
      headers: { Prefer: 'return=representation' },
      body: { priority: 'low' },
    });
    assert.equal(rep.status, 200, rep.text);
    assert.equal(rep.headers.get('content-range'), '0-1/*');
    assert.equal(rep.json.length, 2);

    const none = await rest(`/mod_chat_conversations?${qs([['id', `eq.${randomUUID()}`], ['select', 'id']])}`, {
      method: 'PATCH',
      headers: { Prefer: 'return=representation' },
      body: { priority: 'low' },
    });
    assert.equal(none.status, 200, none.text);
    assert.equal(none.headers.get('content-range'), '*/*');
    assert.equal(none.text, '[]');

    const min = await rest(`/mod_chat_conversations?${qs([['id', `eq.${one}`]])}`, {
      method: 'PATCH',
      body: { priority: 'high' },
    });
    assert.equal(min.status, 204, min.text);
    assert.equal(min.text, '');
    assert.equal(min.headers.get('content-range'), '0-0/*');
    assert.equal(await priorityOf(one), 'high');
  });

  test('a Range header on PATCH is ignored (only GET honours Range): every matching row is updated', async () => {
    const tag = `upd-${uniq()}`;
    const x = await convo({ subject: tag });
    const y = await convo({ subject: tag });
    const r = await rest(`/mod_chat_conversations?${qs([['subject', `eq.${tag}`]])}`, {
      method: 'PATCH',
      headers: { Range: '0-0' },
      body: { priority: 'low' },
    });
    assert.equal(r.status, 204, r.text);
    assert.equal(r.headers.get('content-range'), '0-1/*');
    assert.equal(await priorityOf(x), 'low');
    assert.equal(await priorityOf(y), 'low');
  });

  test('update(...).select().single() matching 2 rows: 406 PGRST116 and nothing is changed', async () => {
    const tag = `upd-${uniq()}`;
    const x = await convo({ subject: tag });
    const y = await convo({ subject: tag });
    const res = await db
      .from('mod_chat_conversations')
      .update({ priority: 'urgent' })
      .eq('subject', tag)
      .select('id')
      .single();
    assert.equal(res.status, 406);
    assert.deepEqual(res.error, {
      code: 'PGRST116',
      details: 'The result contains 2 rows',
      hint: null,
      message: 'Cannot coerce the result to a single JSON object',
    });
    assert.equal(await priorityOf(x), 'normal');
    assert.equal(await priorityOf(y), 'normal');
  });
});

// ---------------------------------------------------------------------------------------------
// DELETE
// ---------------------------------------------------------------------------------------------

describe('delete', () => {
  let site;
  let visitor;
  before(async () => {
    site = t.siteIds[1];
    visitor = await insertVisitor(site, { name: 'Delete Target' });
  });
  const exists = async (id) =>
    (await sql('select count(*)::int as n from public.mod_chat_conversations where id = $1', [id]))[0].n === 1;

  test('delete().eq() without select: 204, no data; the row is gone', async () => {
    const id = await insertConversation(site, visitor, {});
    const res = await db.from('mod_chat_conversations').delete().eq('id', id);
    noError(res);
    assert.equal(res.status, 204);
    assert.equal(res.data, null);
    assert.equal(await exists(id), false);
  });

  test('delete().eq().eq().select(): 200 and the deleted rows', async () => {
    const tag = `del-${uniq()}`;
    const a = await insertConversation(site, visitor, { subject: tag, status: 'closed' });
    const b = await insertConversation(site, visitor, { subject: tag, status: 'closed' });
    const keep = await insertConversation(site, visitor, { subject: tag, status: 'active' });
    const before = await sqlJson(
      'select id, subject, status from public.mod_chat_conversations where id = any($1) order by id',
      [[a, b]],
    );
    const res = await db
      .from('mod_chat_conversations')
      .delete()
      .eq('subject', tag)
      .eq('status', 'closed')
      .select('id,subject,status')
      .order('id');
    noError(res);
    assert.equal(res.status, 200);
    assert.deepEqual(res.data, before);
    assert.equal(await exists(a), false);
    assert.equal(await exists(b), false);
    assert.equal(await exists(keep), true);
  });

  test('delete with no match and .select(): 200, []', async () => {
    const res = await db.from('mod_chat_conversations').delete().eq('id', randomUUID()).select();
    noError(res);
    assert.equal(res.status, 200);
    assert.deepEqual(res.data, []);
  });

  test('raw DELETE: 204 minimal with Content-Range */*; 200 with representation', async () => {
    const x = await insertConversation(site, visitor, {});
    const min = await rest(`/mod_chat_conversations?id=eq.${x}`, { method: 'DELETE' });
    assert.equal(min.status, 204, min.text);
    assert.equal(min.text, '');
    assert.equal(min.headers.get('content-range'), '*/*');
    assert.equal(await exists(x), false);

    const y = await insertConversation(site, visitor, {});
    const rep = await rest(`/mod_chat_conversations?id=eq.${y}&select=id`, {
      method: 'DELETE',
      headers: { Prefer: 'return=representation' },
    });
    assert.equal(rep.status, 200, rep.text);
    assert.equal(rep.headers.get('content-range'), '*/*');
    assert.deepEqual(rep.json, [{ id: y }]);
  });
});

// ---------------------------------------------------------------------------------------------
// UPSERT (widget settings, unique site_id)
// ---------------------------------------------------------------------------------------------

describe('upsert on mod_chat_widget_settings (onConflict: site_id)', () => {
  const COLS = 'id,site_id,primary_color,position';
  const settingsOf = (site) =>
    sqlJson(`select ${COLS} from public.mod_chat_widget_settings where site_id = $1`, [site]);

  test('new site: 201 and the row; existing site: 200, merged, same id', async () => {
    const site = t.siteIds[0];
    const created = await db
      .from('mod_chat_widget_settings')
      .upsert({ site_id: site, primary_color: '#111111' }, { onConflict: 'site_id' })
      .select(COLS);
    noError(created);
    assert.equal(created.status, 201);
    const stored1 = await settingsOf(site);
    assert.equal(stored1.length, 1);
    assert.deepEqual(created.data, stored1);
    assert.equal(stored1[0].position, 'bottom-right', 'column default on insert');

    const merged = await db
      .from('mod_chat_widget_settings')
      .upsert({ site_id: site, primary_color: '#222222', position: 'bottom-left' }, { onConflict: 'site_id' })
      .select(COLS);
    noError(merged);
    assert.equal(merged.status, 200);
    const stored2 = await settingsOf(site);
    assert.equal(stored2.length, 1);
    assert.deepEqual(merged.data, stored2);
    assert.equal(stored2[0].id, stored1[0].id);
    assert.equal(stored2[0].primary_color, '#222222');
    assert.equal(stored2[0].position, 'bottom-left');
  });

  test('ignoreDuplicates on an existing site: 201, [] and the row is unchanged', async () => {
    const site = t.siteIds[1];
    await sql("insert into public.mod_chat_widget_settings (site_id, primary_color) values ($1, '#444444')", [site]);
    const before = await settingsOf(site);
    assert.equal(before.length, 1, 'precondition');
    const res = await db
      .from('mod_chat_widget_settings')
      .upsert({ site_id: site, primary_color: '#555555' }, { onConflict: 'site_id', ignoreDuplicates: true })
      .select(COLS);
    noError(res);
    assert.equal(res.status, 201);
    assert.deepEqual(res.data, []);
    assert.deepEqual(await settingsOf(site), before);
  });

  test('ignoreDuplicates on a new site: 201 and the row', async () => {
    const site = t.siteIds[2];
    const res = await db
      .from('mod_chat_widget_settings')
      .upsert({ site_id: site, primary_color: '#666666' }, { onConflict: 'site_id', ignoreDuplicates: true })
      .select(COLS);
    noError(res);
    assert.equal(res.status, 201);
    const stored = await settingsOf(site);
    assert.equal(stored.length, 1);
    assert.deepEqual(res.data, stored);
  });

  test('array upsert, one existing + one new: 201, both rows', async () => {
    const existing = t.siteIds[0]; // created by the first upsert test or created here
    await sql(
      `insert into public.mod_chat_widget_settings (site_id) values ($1) on conflict (site_id) do nothing`,
      [existing],
    );
    const fresh = t.siteIds[3];
    const res = await db
      .from('mod_chat_widget_settings')
      .upsert(
        [
          { site_id: existing, primary_color: '#777777' },
          { site_id: fresh, primary_color: '#888888' },
        ],
        { onConflict: 'site_id' },
      )
      .select(COLS)
      .order('primary_color');
    noError(res);
    assert.equal(res.status, 201);
    const stored = await sqlJson(
      `select ${COLS} from public.mod_chat_widget_settings where site_id = any($1) order by primary_color`,
      [[existing, fresh]],
    );
    assert.deepEqual(stored.map((r) => r.primary_color), ['#777777', '#888888']);
    assert.deepEqual(res.data, stored);
  });
});

// ---------------------------------------------------------------------------------------------
// RPC
// ---------------------------------------------------------------------------------------------

describe('rpc', () => {
  let site;
  let visitor;

  before(async () => {
    site = t.siteIds[2];
    visitor = await insertVisitor(site, { name: 'Rpc Visitor' });
    await sql(`create or replace function public.interop_add(a int, b int) returns int
               language sql as 'select a + b'`);
    await sql(`create or replace function public.interop_site_conversations(p_site uuid)
               returns setof public.mod_chat_conversations
               language sql stable
               as 'select * from public.mod_chat_conversations where site_id = p_site'`);
    await sql(`create or replace function public.interop_set_subject(p_id uuid, p_subject text)
               returns void
               language sql
               as 'update public.mod_chat_conversations set subject = p_subject where id = p_id'`);
    await sql(`notify pgrst, 'reload schema'`);
    // The gateway reloads its schema cache asynchronously: poll each function until it is known.
    await waitFor(async () => (await db.rpc('interop_add', { a: 1, b: 2 })).data === 3, {
      timeoutMs: 20000,
      what: 'interop_add(1, 2) to return 3 after the schema reload',
    });
    await waitFor(async () => (await db.rpc('interop_site_conversations', { p_site: randomUUID() })).status === 200, {
      timeoutMs: 20000,
      what: 'interop_site_conversations to be callable',
    });
    await waitFor(
      async () =>
        (await db.rpc('interop_set_subject', { p_id: randomUUID(), p_subject: 'x' })).status === 204,
      { timeoutMs: 20000, what: 'interop_set_subject to be callable' },
    );
  });

  after(async () => {
    await sql(`drop function if exists public.interop_add(int, int);
               drop function if exists public.interop_site_conversations(uuid);
               drop function if exists public.interop_set_subject(uuid, text)`);
  });

  test('scalar function: 200 and 3', async () => {
    const res = await db.rpc('interop_add', { a: 1, b: 2 });
    noError(res);
    assert.equal(res.status, 200);
    assert.equal(res.data, 3);
  });

  test('scalar function, raw POST: body 3, Content-Range 0-0/*', async () => {
    const r = await rest('/rpc/interop_add', { method: 'POST', body: { a: 40, b: 2 } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, '42');
    assert.equal(r.headers.get('content-range'), '0-0/*');
    assert.equal(r.headers.get('content-type'), 'application/json; charset=utf-8');
  });

  test('scalar function with GET (arguments in the query string)', async () => {
    const res = await db.rpc('interop_add', { a: 2, b: 5 }, { get: true });
    noError(res);
    assert.equal(res.status, 200);
    assert.equal(res.data, 7);
  });

  test('setof function with select, filter and order: rows as SQL', async () => {
    const a1 = await insertConversation(site, visitor, { status: 'active' });
    const a2 = await insertConversation(site, visitor, { status: 'active' });
    await insertConversation(site, visitor, { status: 'pending' });
    const res = await db
      .rpc('interop_site_conversations', { p_site: site })
      .select('id,status')
      .eq('status', 'active')
      .order('id');
    noError(res);
    assert.equal(res.status, 200);
    const expected = await sqlJson(
      "select id, status from public.mod_chat_conversations where site_id = $1 and status = 'active' order by id",
      [site],
    );
    assert.ok(expected.some((r) => r.id === a1) && expected.some((r) => r.id === a2));
    assert.deepEqual(res.data, expected);
  });

  test('setof function with count exact and range: 206 and the page', async () => {
    await insertConversation(site, visitor, {});
    await insertConversation(site, visitor, {});
    const all = await sqlJson('select id from public.mod_chat_conversations where site_id = $1 order by id', [site]);
    assert.ok(all.length >= 2, 'precondition');
    const res = await db
      .rpc('interop_site_conversations', { p_site: site }, { count: 'exact' })
      .select('id')
      .order('id')
      .range(0, 0);
    noError(res);
    assert.equal(res.status, 206);
    assert.equal(res.count, all.length);
    assert.deepEqual(res.data, all.slice(0, 1));
  });

  test('void function: 204, no data; its write happened', async () => {
    const id = await insertConversation(site, visitor, { subject: 'before' });
    const res = await db.rpc('interop_set_subject', { p_id: id, p_subject: 'Set by RPC' });
    noError(res);
    assert.equal(res.status, 204);
    assert.equal(res.data, null);
    assert.equal((await sql('select subject from public.mod_chat_conversations where id = $1', [id]))[0].subject, 'Set by RPC');
  });

  test('void function, raw: 204, empty body, no Content-Type', async () => {
    const id = await insertConversation(site, visitor, {});
    const r = await rest('/rpc/interop_set_subject', { method: 'POST', body: { p_id: id, p_subject: 'raw' } });
    assert.equal(r.status, 204, r.text);
    assert.equal(r.text, '');
    assert.equal(r.headers.get('content-type'), null);
  });

  test('unknown function: 404 PGRST202', async () => {
    const res = await db.rpc('zz_interop_missing_fn', { q: 1 });
    assert.equal(res.status, 404);
    assert.equal(res.data, null);
    const { hint, ...others } = res.error ?? {};
    assert.deepEqual(others, {
      code: 'PGRST202',
      message: 'Could not find the function public.zz_interop_missing_fn(q) in the schema cache',
      details:
        'Searched for the function public.zz_interop_missing_fn with parameter q or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.',
    });
    // The hint is PostgREST's fuzzy suggestion: null, or "Perhaps you meant to call the function …".
    assert.ok(
      hint === null || (typeof hint === 'string' && hint.startsWith('Perhaps you meant to call the function public.')),
      `hint: ${JSON.stringify(hint)}`,
    );
  });
});
