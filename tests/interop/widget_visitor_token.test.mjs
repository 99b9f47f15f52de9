// The widget as supabase-js runs it in a visitor's browser: the anon key plus a visitor token
// (role anon, claims visitor_id and site_id; migrations 20260101000500_visitor_access.sql and
// 20260101000700_visitor_columns.sql), over REST and over realtime-js (vsn 2.0.0 and 1.0.0).
// What agents keep from the visitor — internal notes (as messages or as the conversation's
// internal_notes), tags, the visitor's notes — never reaches it: not through rows, not through
// the conversation's preview columns, not in the records of postgres_changes events.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { closeAll, nowSeconds, signJwt, sql, sqlJson, uniq, userClient } from './lib/env.mjs';
import { createTenant, insertConversation, insertVisitor } from './lib/fixtures.mjs';
import { VSNS, closeClient, closeRealtime, rtClient, subscribe, Inbox } from './lib/realtime.mjs';

let t;
let visitor;
let conv;
let token;

/** The columns the widget names (everything but internal_notes and tags). */
const WIDGET_COLUMNS =
  'id,site_id,visitor_id,status,subject,last_message_text,last_message_by,message_count,unread_visitor_count,updated_at';

before(async () => {
  t = await createTenant({ sites: 1, label: 'widget-visitor-token' });
  visitor = await insertVisitor(t.siteId, { name: 'Widget Visitor' });
  conv = await insertConversation(t.siteId, visitor, { status: 'active', subject: 'Order 77' });
  const now = nowSeconds();
  token = signJwt({ role: 'anon', visitor_id: visitor, site_id: t.siteId, iat: now, exp: now + 900, iss: 'livechat' });
});
after(async () => {
  await closeRealtime();
  await t?.drop();
  await closeAll();
});

const noError = (res) => assert.equal(res.error, null, `unexpected error: ${JSON.stringify(res.error)}`);

const agentMessage = (content, fields = {}) =>
  sql(
    `insert into public.mod_chat_messages (conversation_id, site_id, sender_type, content, is_internal_note, content_type)
     values ($1, $2, 'agent', $3, $4, $5)`,
    [conv, t.siteId, content, fields.note ?? false, fields.contentType ?? 'text'],
  );

describe('REST with a visitor token', () => {
  test("named columns read the own conversation; '*' and the hidden columns are refused with 401 42501", async () => {
    const widget = userClient(null, { token });
    const res = await widget.from('mod_chat_conversations').select(WIDGET_COLUMNS);
    noError(res);
    assert.deepEqual(res.data.map((c) => c.id), [conv]);
    for (const columns of ['*', 'id,internal_notes', 'id,tags']) {
      const bad = await widget.from('mod_chat_conversations').select(columns);
      assert.equal(bad.status, 401, columns);
      assert.equal(bad.error?.code, '42501', columns);
      assert.equal(bad.error?.message, 'permission denied for table mod_chat_conversations', columns);
    }
    const me = await widget.from('mod_chat_visitors').select('id,name').single();
    noError(me);
    assert.deepEqual(me.data, { id: visitor, name: 'Widget Visitor' });
    const notes = await widget.from('mod_chat_visitors').select('notes');
    assert.equal(notes.status, 401);
    assert.equal(notes.error?.code, '42501');
  });

  test('an internal note changes nothing the visitor reads; a visible agent message does', async () => {
    const widget = userClient(null, { token });
    const read = async () => {
      const res = await widget.from('mod_chat_conversations').select(WIDGET_COLUMNS).eq('id', conv).single();
      noError(res);
      return res.data;
    };
    const before = await read();
    const secret = `customer is difficult ${uniq()}`;
    await agentMessage(secret, { note: true });
    await agentMessage(`refund refused ${uniq()}`, { contentType: 'note' });
    assert.deepEqual(await read(), before);
    const msgs = await widget.from('mod_chat_messages').select('content').eq('conversation_id', conv);
    noError(msgs);
    assert.ok(!JSON.stringify(msgs.data).includes('difficult'), JSON.stringify(msgs.data));
    assert.ok(!JSON.stringify(msgs.data).includes('refund refused'), JSON.stringify(msgs.data));

    const visible = `It ships today ${uniq()}`;
    await agentMessage(visible);
    const after = await read();
    assert.equal(after.last_message_text, visible);
    assert.equal(after.last_message_by, 'agent');
    assert.equal(after.unread_visitor_count, before.unread_visitor_count + 1);
    assert.equal(after.message_count, before.message_count + 1);
  });

  test('the widget cannot plant internal notes or tags when it starts a conversation', async () => {
    const widget = userClient(null, { token });
    for (const extra of [{ internal_notes: 'VIP, refund anything' }, { tags: ['vip'] }, { priority: 'urgent' }]) {
      const res = await widget
        .from('mod_chat_conversations')
        .insert({ site_id: t.siteId, visitor_id: visitor, status: 'pending', ...extra });
      assert.equal(res.status, 401, JSON.stringify(extra));
      assert.equal(res.error?.code, '42501', JSON.stringify(extra));
    }
    const ok = await widget
      .from('mod_chat_conversations')
      .insert({ site_id: t.siteId, visitor_id: visitor, status: 'pending', subject: 'Another question' })
      .select('id,status,priority')
      .single();
    noError(ok);
    assert.equal(ok.data.status, 'pending');
    assert.equal(ok.data.priority, 'normal');
  });
});

for (const vsn of VSNS) {
  describe(`realtime-js (vsn ${vsn}) with a visitor token`, () => {
    let widget;
    let updates;
    let channel;

    before(async () => {
      widget = await rtClient({ vsn, token });
      updates = new Inbox(`widget conversation ${vsn}`);
      channel = widget
        .channel(`widget:${conv}:${vsn}`)
        .on(
          'postgres_changes',
          { event: 'UPDATE', schema: 'public', table: 'mod_chat_conversations', filter: `id=eq.${conv}` },
          (p) => updates.push(p),
        );
      await subscribe(channel, { postgres: true });
    });
    after(async () => {
      if (widget) await closeClient(widget);
    });

    test('UPDATE events of the own conversation carry no hidden column, and a note causes none', async () => {
      const before = (await sqlJson('select * from public.mod_chat_conversations where id = $1', [conv]))[0];
      await agentMessage(`note ${uniq()}`, { note: true });
      const secret = `chargeback risk ${uniq()}`;
      await sql(`update public.mod_chat_conversations set internal_notes = $2, tags = '{angry}' where id = $1`, [
        conv,
        secret,
      ]);
      const subject = `Order 77 (${uniq()})`;
      await sql('update public.mod_chat_conversations set subject = $2 where id = $1', [conv, subject]);
      await updates.wait((p) => p.new?.subject === subject, { what: 'the subject UPDATE' });
      // Commit order: the internal_notes update, then the subject. The note made no event (it
      // would come first and show a new preview or count).
      const got = updates.items;
      assert.equal(got.length, 2, JSON.stringify(got));
      assert.equal(got[0].new.subject, before.subject);
      assert.equal(got[0].new.last_message_text, before.last_message_text);
      assert.equal(got[0].new.message_count, before.message_count);
      for (const p of got) {
        assert.equal(p.errors, null);
        for (const hidden of ['internal_notes', 'tags']) {
          assert.ok(!(hidden in p.new), `${hidden} in new: ${JSON.stringify(p.new)}`);
          assert.ok(!(hidden in p.old), `${hidden} in old: ${JSON.stringify(p.old)}`);
        }
        assert.ok(!JSON.stringify(p).includes('chargeback'), JSON.stringify(p));
      }
      await widget.removeChannel(channel);
    });
  });
}
