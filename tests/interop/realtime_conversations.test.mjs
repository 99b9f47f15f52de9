// useConversationsRealtime over the stack's realtime server, with realtime-js (through
// supabase-js) speaking vsn 2.0.0 (its default) and 1.0.0: channel `conversations:<siteId>`,
// postgres_changes INSERT, UPDATE and DELETE on public.mod_chat_conversations filtered
// `site_id=eq.<siteId>`. Expected behaviour: Supabase Realtime (shared/spec/realtime.md §6) and
// shared/spec/parity.md "Realtime hooks".
//
// The listener is an agency member (user JWT); the writer is another member writing through
// /rest/v1, or the widget (role anon with a visitor token). Rows belong to a tenant created for this file.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { closeAll, nowSeconds, randomUUID, rest, signJwt, sqlJson, uniq } from './lib/env.mjs';
import { createTenant, insertVisitor } from './lib/fixtures.mjs';
import { VSNS, addMember, closeClient, closeRealtime, openChat, openConversations, rtUser } from './lib/realtime.mjs';

let t; // agency with two sites
let listenerUser;
let visitor1;
let visitor2;

before(async () => {
  t = await createTenant({ sites: 2, label: 'rt-conversations' });
  listenerUser = await addMember(t.agencyId);
  visitor1 = await insertVisitor(t.siteIds[0], { name: 'Visitor One' });
  visitor2 = await insertVisitor(t.siteIds[1], { name: 'Visitor Two' });
});
after(async () => {
  await closeRealtime();
  await t?.drop();
  await closeAll();
});

const noError = (res) => assert.equal(res.error, null, `unexpected error: ${JSON.stringify(res.error)}`);

for (const vsn of VSNS) {
  describe(`conversations:<siteId> with vsn ${vsn}`, () => {
    let writer;
    let listener;
    let site1;
    let site2;
    let conv1; // the conversation created on site 1 by the INSERT test
    let sub;

    before(async () => {
      [site1, site2] = t.siteIds;
      writer = await rtUser(t.userId, vsn);
      listener = await rtUser(listenerUser, vsn);
      sub = openConversations(listener, site1);
      await sub.ready;
    });
    after(async () => {
      if (writer) await closeClient(writer);
      if (listener) await closeClient(listener);
    });

    test('INSERT through REST arrives with the row as stored', async () => {
      const res = await writer
        .from('mod_chat_conversations')
        .insert({ site_id: site1, visitor_id: visitor1, status: 'pending', subject: `s ${uniq()}` })
        .select()
        .single();
      noError(res);
      conv1 = res.data.id;
      const ev = await sub.inserts.wait((p) => p.new?.id === conv1, { what: `INSERT of ${conv1}` });
      assert.equal(ev.eventType, 'INSERT');
      assert.equal(ev.table, 'mod_chat_conversations');
      assert.equal(ev.errors, null);
      assert.deepEqual(ev.old, {});
      assert.deepEqual(ev.new, res.data);
      const stored = await sqlJson('select * from public.mod_chat_conversations where id = $1', [conv1]);
      assert.deepEqual(ev.new, stored[0]);
    });

    test('UPDATE through REST arrives with the new row and the full old row', async () => {
      const before = (await sqlJson('select * from public.mod_chat_conversations where id = $1', [conv1]))[0];
      const res = await writer
        .from('mod_chat_conversations')
        .update({ status: 'active', priority: 'high', tags: ['vip', 'returning'], metadata: { source: 'interop' } })
        .eq('id', conv1)
        .select()
        .single();
      noError(res);
      const ev = await sub.updates.wait((p) => p.new?.id === conv1 && p.new.status === 'active', {
        what: `UPDATE of ${conv1}`,
      });
      assert.equal(ev.eventType, 'UPDATE');
      assert.deepEqual(ev.new, res.data);
      assert.deepEqual(ev.new.tags, ['vip', 'returning']);
      assert.deepEqual(ev.new.metadata, { source: 'interop' });
      assert.deepEqual(ev.old, before);
    });

    test("a message insert (the counters trigger) arrives as an UPDATE of its conversation", async () => {
      const content = `trigger ${uniq()}`;
      const res = await writer.from('mod_chat_messages').insert({
        conversation_id: conv1,
        site_id: site1,
        sender_type: 'agent',
        sender_name: 'Agent',
        content,
      });
      noError(res);
      const ev = await sub.updates.wait((p) => p.new?.id === conv1 && p.new.last_message_text === content, {
        what: 'UPDATE with the new last_message_text',
      });
      assert.equal(ev.new.last_message_by, 'agent');
      assert.equal(ev.new.message_count, ev.old.message_count + 1);
      const stored = await sqlJson('select * from public.mod_chat_conversations where id = $1', [conv1]);
      assert.deepEqual(ev.new, stored[0]);
    });

    test('DELETE through REST arrives with only the primary key in old (RLS table)', async () => {
      const res = await writer.from('mod_chat_conversations').delete().eq('id', conv1);
      noError(res);
      const ev = await sub.deletes.wait((p) => p.old?.id === conv1, { what: `DELETE of ${conv1}` });
      assert.equal(ev.eventType, 'DELETE');
      assert.deepEqual(ev.new, {});
      // Supabase: DELETEs are not RLS-checked, so on a table with RLS only the PK is sent, even
      // with REPLICA IDENTITY FULL (shared/spec/realtime.md §6.4).
      assert.deepEqual(ev.old, { id: conv1 });
      assert.equal(ev.errors, null);
    });

    test('changes of another site of the same agency never arrive', async () => {
      const other = await writer
        .from('mod_chat_conversations')
        .insert({ site_id: site2, visitor_id: visitor2, status: 'pending' })
        .select()
        .single();
      noError(other);
      noError(await writer.from('mod_chat_conversations').update({ status: 'active' }).eq('id', other.data.id));
      noError(await writer.from('mod_chat_conversations').delete().eq('id', other.data.id));
      // A later change on site 1: once it arrived, the earlier ones had been decoded.
      const marker = await writer
        .from('mod_chat_conversations')
        .insert({ site_id: site1, visitor_id: visitor1, status: 'pending' })
        .select()
        .single();
      noError(marker);
      await sub.inserts.wait((p) => p.new?.id === marker.data.id, { what: 'marker INSERT on site 1' });
      const leaked = sub.all.filter((p) => p.new?.id === other.data.id || p.old?.id === other.data.id);
      assert.deepEqual(leaked, [], 'events of site 2 reached conversations:<site 1>');
      for (const p of sub.all.items) {
        if (p.eventType !== 'DELETE') assert.equal(p.new.site_id, site1);
      }
    });

    test('the widget (anon role, visitor token, REST) starts a conversation and writes: the dashboard sees both', async () => {
      // The widget writes with role anon; since migration 20260101000500_visitor_access.sql only a
      // visitor token (claims visitor_id, site_id) may insert messages. It has no SELECT on other
      // rows, so: return=minimal with ids chosen here.
      const now = nowSeconds();
      const visitorToken = signJwt({
        role: 'anon',
        visitor_id: visitor1,
        site_id: site1,
        iat: now,
        exp: now + 600,
        iss: 'livechat',
      });
      const convId = randomUUID();
      const r1 = await rest('/mod_chat_conversations', {
        method: 'POST',
        token: visitorToken,
        body: { id: convId, site_id: site1, visitor_id: visitor1, status: 'pending', channel: 'widget' },
      });
      assert.equal(r1.status, 201, r1.text);
      const ins = await sub.inserts.wait((p) => p.new?.id === convId, { what: 'INSERT of the widget conversation' });
      assert.equal(ins.new.status, 'pending');
      const chat = openChat(listener, convId);
      await chat.ready;
      const msgId = randomUUID();
      const r2 = await rest('/mod_chat_messages', {
        method: 'POST',
        token: visitorToken,
        body: { id: msgId, conversation_id: convId, site_id: site1, sender_type: 'visitor', content: 'Hi there' },
      });
      assert.equal(r2.status, 201, r2.text);
      const m = await chat.inserts.wait((p) => p.new?.id === msgId, { what: 'INSERT of the widget message' });
      assert.equal(m.new.content, 'Hi there');
      assert.equal(m.new.sender_type, 'visitor');
      const u = await sub.updates.wait((p) => p.new?.id === convId && p.new.unread_agent_count === 1, {
        what: 'UPDATE of the widget conversation (unread_agent_count 1)',
      });
      assert.equal(u.new.last_message_text, 'Hi there');
      assert.equal(u.new.last_message_by, 'visitor');
      await listener.removeChannel(chat.channel);
    });
  });
}
