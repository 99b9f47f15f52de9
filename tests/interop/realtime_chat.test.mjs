// useChatRealtime over the stack's realtime server, with realtime-js (through supabase-js) speaking
// vsn 2.0.0 (its default) and 1.0.0: channel `chat:<conversationId>`, postgres_changes INSERT and
// UPDATE on public.mod_chat_messages filtered `conversation_id=eq.<id>`, broadcast typing_start /
// typing_stop. Expected behaviour: Supabase Realtime (shared/spec/realtime.md §4, §6) and the
// hook configuration of shared/spec/parity.md "Realtime hooks".
//
// Client A (an agency member) writes through /rest/v1; client B (another member of the same
// agency) listens. Rows belong to a tenant created for this file.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { closeAll, sql, sqlJson, uniq } from './lib/env.mjs';
import { createTenant, insertConversation, insertVisitor } from './lib/fixtures.mjs';
import { VSNS, addMember, closeClient, closeRealtime, openChat, rtUser } from './lib/realtime.mjs';

let t;
let userB;
let visitorId;

before(async () => {
  t = await createTenant({ sites: 1, label: 'rt-chat' });
  userB = await addMember(t.agencyId);
  visitorId = await insertVisitor(t.siteId, { name: 'Realtime Visitor' });
});
after(async () => {
  await closeRealtime();
  await t?.drop();
  await closeAll();
});

const noError = (res) => assert.equal(res.error, null, `unexpected error: ${JSON.stringify(res.error)}`);

const newConversation = () => insertConversation(t.siteId, visitorId, { status: 'active' });

/** A message row as the dashboard inserts it. */
const agentMessage = (conversationId, content) => ({
  conversation_id: conversationId,
  site_id: t.siteId,
  sender_type: 'agent',
  sender_id: t.userId,
  sender_name: 'Agent A',
  content,
  content_type: 'text',
});

for (const vsn of VSNS) {
  describe(`chat:<conversationId> with vsn ${vsn}`, () => {
    let a; // writer, and typing peer
    let b; // listener
    let conv;
    let other; // another conversation of the same site
    let chatA;
    let chatB;

    before(async () => {
      conv = await newConversation();
      other = await newConversation();
      a = await rtUser(t.userId, vsn);
      b = await rtUser(userB, vsn);
      chatB = openChat(b, conv);
      chatA = openChat(a, conv);
      await Promise.all([chatA.ready, chatB.ready]);
    });
    after(async () => {
      if (a) await closeClient(a);
      if (b) await closeClient(b);
    });

    test('the socket negotiated the requested serializer', () => {
      for (const c of [a, b]) {
        assert.equal(c.realtime.vsn, vsn);
        assert.ok(c.wire.urls.length >= 1);
        const url = new URL(c.wire.urls[0]);
        assert.equal(url.pathname, '/realtime/v1/websocket');
        assert.equal(url.searchParams.get('vsn'), vsn);
        if (vsn === '1.0.0') {
          assert.ok(c.wire.objects > 0, 'V1 frames are JSON objects');
          assert.equal(c.wire.arrays, 0, 'no V2 array frames on a V1 socket');
          assert.equal(c.wire.binary, 0, 'no binary frames on a V1 socket');
        } else {
          assert.ok(c.wire.arrays > 0, 'V2 frames are JSON arrays');
          assert.equal(c.wire.objects, 0, 'no V1 object frames on a V2 socket');
        }
      }
    });

    test('B receives INSERT of a message A inserts through REST, with the row as stored', async () => {
      const content = `hello ${uniq()}`;
      const res = await a.from('mod_chat_messages').insert(agentMessage(conv, content)).select().single();
      noError(res);
      assert.equal(res.status, 201);
      const ev = await chatB.inserts.wait((p) => p.new?.id === res.data.id, { what: `INSERT of ${res.data.id}` });
      assert.equal(ev.eventType, 'INSERT');
      assert.equal(ev.schema, 'public');
      assert.equal(ev.table, 'mod_chat_messages');
      assert.equal(ev.errors, null);
      assert.match(ev.commit_timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
      assert.deepEqual(ev.old, {});
      const stored = await sqlJson('select * from public.mod_chat_messages where id = $1', [res.data.id]);
      assert.deepEqual(ev.new, stored[0]);
      assert.deepEqual(ev.new, res.data);
      // A listens to the same channel and sees its own write too (postgres_changes are not
      // subject to broadcast self-exclusion).
      await chatA.inserts.wait((p) => p.new?.id === res.data.id, { what: `A's copy of INSERT ${res.data.id}` });
    });

    test('B receives UPDATE with the new row and the full old row (REPLICA IDENTITY FULL)', async () => {
      const ins = await a
        .from('mod_chat_messages')
        .insert(agentMessage(conv, `to be read ${uniq()}`))
        .select()
        .single();
      noError(ins);
      await chatB.inserts.wait((p) => p.new?.id === ins.data.id, { what: `INSERT of ${ins.data.id}` });
      const upd = await a
        .from('mod_chat_messages')
        .update({ status: 'read' })
        .eq('id', ins.data.id)
        .select()
        .single();
      noError(upd);
      const ev = await chatB.updates.wait((p) => p.new?.id === ins.data.id, { what: `UPDATE of ${ins.data.id}` });
      assert.equal(ev.eventType, 'UPDATE');
      assert.equal(ev.new.status, 'read');
      assert.deepEqual(ev.new, upd.data);
      assert.equal(ev.old.id, ins.data.id);
      assert.equal(ev.old.status, 'sent');
      assert.deepEqual(ev.old, ins.data);
      // The UPDATE binding did not also fire for the INSERT, nor the INSERT binding for the UPDATE.
      assert.equal(chatB.updates.filter((p) => p.eventType !== 'UPDATE').length, 0);
      assert.equal(chatB.inserts.filter((p) => p.eventType !== 'INSERT').length, 0);
    });

    test('B receives nothing for messages of another conversation', async () => {
      const foreign = await a
        .from('mod_chat_messages')
        .insert(agentMessage(other, `elsewhere ${uniq()}`))
        .select()
        .single();
      noError(foreign);
      const upd = await a.from('mod_chat_messages').update({ status: 'delivered' }).eq('id', foreign.data.id);
      noError(upd);
      // A later write on B's conversation: once it arrived, the earlier ones were decoded first.
      const marker = await a
        .from('mod_chat_messages')
        .insert(agentMessage(conv, `marker ${uniq()}`))
        .select()
        .single();
      noError(marker);
      await chatB.inserts.wait((p) => p.new?.id === marker.data.id, { what: `marker INSERT ${marker.data.id}` });
      const leaked = [...chatB.inserts.items, ...chatB.updates.items].filter(
        (p) => p.new?.conversation_id === other || p.new?.id === foreign.data.id || p.old?.id === foreign.data.id,
      );
      assert.deepEqual(leaked, [], 'events of another conversation reached chat:<conv>');
      for (const p of [...chatB.inserts.items, ...chatB.updates.items]) assert.equal(p.new.conversation_id, conv);
    });

    test('typing_start / typing_stop from A reach B (and not A itself)', async () => {
      const r1 = await chatA.sendTypingStart(t.userId, 'Agent A');
      assert.equal(r1, 'ok');
      const start = await chatB.typingStart.wait((p) => p.payload?.senderId === t.userId, {
        what: 'typing_start from A',
      });
      assert.equal(start.type, 'broadcast');
      assert.equal(start.event, 'typing_start');
      assert.deepEqual(start.payload, { senderId: t.userId, senderName: 'Agent A' });
      const r2 = await chatA.sendTypingStop(t.userId);
      assert.equal(r2, 'ok');
      const stop = await chatB.typingStop.wait((p) => p.payload?.senderId === t.userId, {
        what: 'typing_stop from A',
      });
      assert.equal(stop.event, 'typing_stop');
      assert.deepEqual(stop.payload, { senderId: t.userId });
      if (vsn === '2.0.0') {
        // realtime-js pushed kind-3 binary user broadcasts; the receiver got kind-4 frames.
        assert.deepEqual([...b.wire.binaryKinds], [4]);
      } else {
        assert.equal(b.wire.binary, 0);
      }
    });

    test('typing_start / typing_stop from B reach A; nobody hears their own', async () => {
      await chatB.sendTypingStart(userB, 'Agent B');
      const start = await chatA.typingStart.wait((p) => p.payload?.senderId === userB, { what: 'typing_start from B' });
      assert.deepEqual(start.payload, { senderId: userB, senderName: 'Agent B' });
      await chatB.sendTypingStop(userB);
      const stop = await chatA.typingStop.wait((p) => p.payload?.senderId === userB, { what: 'typing_stop from B' });
      assert.deepEqual(stop.payload, { senderId: userB });
      // broadcast.self defaults to false: A's own typing events (sent before B's) never came back.
      assert.deepEqual(chatA.typingStart.filter((p) => p.payload?.senderId === t.userId), []);
      assert.deepEqual(chatA.typingStop.filter((p) => p.payload?.senderId === t.userId), []);
      assert.deepEqual(chatB.typingStart.filter((p) => p.payload?.senderId === userB), []);
      assert.deepEqual(chatB.typingStop.filter((p) => p.payload?.senderId === userB), []);
      // Typing never touches the database.
      const n = await sql('select count(*)::int as n from public.mod_chat_messages where conversation_id = $1', [conv]);
      assert.equal(n[0].n, chatB.inserts.items.length);
    });
  });
}

describe('chat:<conversationId> across serializers (a vsn 2.0.0 and a vsn 1.0.0 client)', () => {
  let a;
  let b;
  let conv;
  let chatA;
  let chatB;

  before(async () => {
    conv = await newConversation();
    a = await rtUser(t.userId, '2.0.0');
    b = await rtUser(userB, '1.0.0');
    chatA = openChat(a, conv);
    chatB = openChat(b, conv);
    await Promise.all([chatA.ready, chatB.ready]);
  });
  after(async () => {
    if (a) await closeClient(a);
    if (b) await closeClient(b);
  });

  test('typing both ways between a V2 (binary broadcast) and a V1 (JSON) client', async () => {
    await chatA.sendTypingStart(t.userId, 'Agent A');
    const s1 = await chatB.typingStart.wait((p) => p.payload?.senderId === t.userId, { what: 'V2 -> V1 typing_start' });
    assert.deepEqual(s1.payload, { senderId: t.userId, senderName: 'Agent A' });
    await chatB.sendTypingStart(userB, 'Agent B');
    const s2 = await chatA.typingStart.wait((p) => p.payload?.senderId === userB, { what: 'V1 -> V2 typing_start' });
    assert.deepEqual(s2.payload, { senderId: userB, senderName: 'Agent B' });
    await chatA.sendTypingStop(t.userId);
    await chatB.typingStop.wait((p) => p.payload?.senderId === t.userId, { what: 'V2 -> V1 typing_stop' });
    await chatB.sendTypingStop(userB);
    await chatA.typingStop.wait((p) => p.payload?.senderId === userB, { what: 'V1 -> V2 typing_stop' });
    assert.equal(b.wire.binary, 0, 'the V1 socket never receives binary frames');
  });

  test('both receive the same INSERT', async () => {
    const res = await a.from('mod_chat_messages').insert(agentMessage(conv, `x ${uniq()}`)).select().single();
    noError(res);
    const [ea, eb] = await Promise.all([
      chatA.inserts.wait((p) => p.new?.id === res.data.id, { what: 'INSERT on the V2 client' }),
      chatB.inserts.wait((p) => p.new?.id === res.data.id, { what: 'INSERT on the V1 client' }),
    ]);
    assert.deepEqual(ea.new, res.data);
    assert.deepEqual(eb.new, res.data);
    assert.equal(ea.commit_timestamp, eb.commit_timestamp);
  });
});
