// Row-level security of postgres_changes, with realtime-js (through supabase-js) speaking vsn
// 2.0.0 (its default) and 1.0.0: a dashboard user of agency B subscribes with the original hooks'
// channels to agency A's site and conversation, and must receive no INSERT/UPDATE of them, while
// a user of agency A (control) receives them all. Negatives are proven by a later positive event
// on the same socket (B's own site), never by a sleep. Expected behaviour: Supabase Realtime
// (shared/spec/realtime.md §6.4, §6.6: RLS is applied to INSERT/UPDATE; DELETE is not RLS-checked
// and carries only the primary key on RLS tables).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { closeAll, getPool, sql, uniq } from './lib/env.mjs';
import { createTenant, insertConversation, insertVisitor } from './lib/fixtures.mjs';
import { VSNS, closeClient, closeRealtime, openChat, openConversations, rtUser } from './lib/realtime.mjs';

let tA; // agency A: site A, user alice
let tB; // agency B: site B, user eve
let visitorA;
let visitorB;

before(async () => {
  tA = await createTenant({ sites: 1, label: 'rt-rls A' });
  tB = await createTenant({ sites: 1, label: 'rt-rls B' });
  visitorA = await insertVisitor(tA.siteId, { name: 'Visitor A' });
  visitorB = await insertVisitor(tB.siteId, { name: 'Visitor B' });
});
after(async () => {
  await closeRealtime();
  await tA?.drop();
  await tB?.drop();
  await closeAll();
});

const noError = (res) => assert.equal(res.error, null, `unexpected error: ${JSON.stringify(res.error)}`);

for (const vsn of VSNS) {
  describe(`RLS on postgres_changes with vsn ${vsn}`, () => {
    let alice; // agency A member: writer of A's rows and control listener
    let bob; // agency B member: writer of B's rows
    let eve; // agency B member listening to A's channels
    let convA; // an existing conversation of site A
    let eveSiteA;
    let eveChatA;
    let eveSiteB;
    let aliceSiteA;
    let aliceChatA;

    before(async () => {
      convA = await insertConversation(tA.siteId, visitorA, { status: 'active' });
      alice = await rtUser(tA.userId, vsn);
      bob = await rtUser(tB.userId, vsn);
      eve = await rtUser(tB.userId, vsn);
      eveSiteA = openConversations(eve, tA.siteId);
      eveChatA = openChat(eve, convA);
      eveSiteB = openConversations(eve, tB.siteId);
      aliceSiteA = openConversations(alice, tA.siteId);
      aliceChatA = openChat(alice, convA);
      await Promise.all([eveSiteA.ready, eveChatA.ready, eveSiteB.ready, aliceSiteA.ready, aliceChatA.ready]);
    });
    after(async () => {
      for (const c of [alice, bob, eve]) if (c) await closeClient(c);
    });

    test("agency B's user joins A's channels, but receives no INSERT/UPDATE of A's conversations or messages", async () => {
      // Agency A's activity, through REST as alice.
      const conv = await alice
        .from('mod_chat_conversations')
        .insert({ site_id: tA.siteId, visitor_id: visitorA, status: 'pending' })
        .select()
        .single();
      noError(conv);
      noError(await alice.from('mod_chat_conversations').update({ status: 'active' }).eq('id', conv.data.id));
      const msg = await alice
        .from('mod_chat_messages')
        .insert({ conversation_id: convA, site_id: tA.siteId, sender_type: 'agent', content: `secret ${uniq()}` })
        .select()
        .single();
      noError(msg);
      noError(await alice.from('mod_chat_messages').update({ status: 'read' }).eq('id', msg.data.id));

      // Control: agency A's own user got all of it.
      await aliceSiteA.inserts.wait((p) => p.new?.id === conv.data.id, { what: 'control: INSERT of the conversation' });
      await aliceSiteA.updates.wait((p) => p.new?.id === conv.data.id && p.new.status === 'active', {
        what: 'control: UPDATE of the conversation',
      });
      await aliceSiteA.updates.wait((p) => p.new?.id === convA && p.new.last_message_text === msg.data.content, {
        what: 'control: UPDATE of conversation A by the message trigger',
      });
      await aliceChatA.inserts.wait((p) => p.new?.id === msg.data.id, { what: 'control: INSERT of the message' });
      await aliceChatA.updates.wait((p) => p.new?.id === msg.data.id, { what: 'control: UPDATE of the message' });

      // Later, agency B's own activity on site B (bob through REST): eve receives it...
      const own = await bob
        .from('mod_chat_conversations')
        .insert({ site_id: tB.siteId, visitor_id: visitorB, status: 'pending' })
        .select()
        .single();
      noError(own);
      const ev = await eveSiteB.inserts.wait((p) => p.new?.id === own.data.id, { what: "eve's own site INSERT" });
      assert.deepEqual(ev.new, own.data);

      // ...and, since A's changes were committed (and decoded) before it, nothing of A reached eve.
      assert.deepEqual(eveSiteA.all.items, [], "agency A's conversation changes reached agency B's user");
      assert.deepEqual(eveChatA.inserts.items, [], "agency A's message INSERT reached agency B's user");
      assert.deepEqual(eveChatA.updates.items, [], "agency A's message UPDATE reached agency B's user");
      // eve's site B channel only ever carried site B rows.
      for (const p of eveSiteB.all.items) assert.equal(p.new.site_id, tB.siteId);
    });

    test("typing broadcasts are not RLS-protected: public channels relay them to anyone who joined (Supabase behaviour)", async () => {
      await aliceChatA.sendTypingStart(tA.userId, 'Alice');
      const got = await eveChatA.typingStart.wait((p) => p.payload?.senderId === tA.userId, {
        what: 'typing_start on the public channel chat:<convA>',
      });
      assert.deepEqual(got.payload, { senderId: tA.userId, senderName: 'Alice' });
    });

    test("DELETE of A's conversation reaches B's subscriber with only the primary key (DELETE is not RLS-checked)", async () => {
      const conv = await alice
        .from('mod_chat_conversations')
        .insert({ site_id: tA.siteId, visitor_id: visitorA, status: 'pending' })
        .select()
        .single();
      noError(conv);
      noError(await alice.from('mod_chat_conversations').delete().eq('id', conv.data.id));
      const control = await aliceSiteA.deletes.wait((p) => p.old?.id === conv.data.id, { what: 'control: DELETE' });
      assert.deepEqual(control.old, { id: conv.data.id });
      const ev = await eveSiteA.deletes.wait((p) => p.old?.id === conv.data.id, { what: "DELETE on B's subscriber" });
      assert.deepEqual(ev.old, { id: conv.data.id }, 'only the primary key, no row data');
      assert.deepEqual(ev.new, {});
      // Still no INSERT of it for eve.
      assert.deepEqual(eveSiteA.inserts.items, []);
    });
  });
}

// A commit reaches the WAL, and so the server's change stream, a moment before the committing
// backend makes it visible to other snapshots. An RLS check run in that window does not find the
// new row; the server must wait for the transaction to become visible instead of dropping the
// change. On a loaded machine the window is milliseconds (the committing backend is descheduled);
// here it is held open deterministically: a synchronous-replication wait for a standby that
// never comes happens after the commit record is flushed and before the transaction leaves the
// proc array. (Supabase Realtime polls the slot every ~100 ms, so there the window is rarely hit.)
describe('a change streamed before its transaction is visible to snapshots', () => {
  const SLOT_APP = 'livechat-realtime-wal';
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  test('is RLS-checked once the transaction is visible, and delivered', async () => {
    const eve = await rtUser(tB.userId);
    const siteB = openConversations(eve, tB.siteId);
    await siteB.ready;
    const writer = await getPool().connect();
    let inserted = null;
    try {
      await writer.query('set synchronous_commit = on');
      await sql("alter system set synchronous_standby_names = 'livechat_interop_no_standby'");
      await sql('select pg_reload_conf()');
      // The checkpointer applies the reload asynchronously: insert until a commit is held (its
      // backend waits on SyncRep); a commit that is not held is just delivered as usual.
      const waitsOnSyncRep = async () =>
        (await sql("select count(*)::int as n from pg_stat_activity where pid = $1 and wait_event = 'SyncRep'", [
          writer.processID,
        ]))[0].n > 0;
      let held = null;
      for (let attempt = 0; attempt < 20 && !held; attempt++) {
        let done = false;
        const ins = writer
          .query(
            'insert into public.mod_chat_conversations (site_id, visitor_id, status) ' +
              "values ($1, $2, 'pending') returning id",
            [tB.siteId, visitorB],
          )
          .then((r) => {
            done = true;
            return r.rows[0].id;
          });
        for (let i = 0; i < 100 && !done && !held; i++) {
          if (await waitsOnSyncRep()) held = ins;
          else await sleep(20);
        }
        if (!held) await ins;
      }
      assert.ok(held, 'no commit was held by the synchronous-replication wait');
      // Wait until the walsender has streamed the held commit to the server, then give the server
      // time to act on it while the transaction is still invisible.
      const [{ lsn: target }] = await sql('select pg_current_wal_lsn()::text as lsn');
      let streamed = false;
      for (let i = 0; i < 200 && !streamed; i++) {
        const r = await sql(
          'select coalesce(bool_or(sent_lsn >= $1::pg_lsn), false) as ok from pg_stat_replication ' +
            'where application_name = $2',
          [target, SLOT_APP],
        );
        streamed = r[0].ok;
        if (!streamed) await sleep(50);
      }
      assert.ok(streamed, 'the server was not sent the held commit');
      await sleep(500);
      const count = async () =>
        (await sql('select count(*)::int as n from public.mod_chat_conversations where site_id = $1', [tB.siteId]))[0].n;
      const before = await count();
      // Release the commit.
      await sql('alter system reset synchronous_standby_names');
      await sql('select pg_reload_conf()');
      inserted = await held;
      assert.equal(await count(), before + 1, 'the held row was visible before its release: window not exercised');
    } finally {
      await sql('alter system reset synchronous_standby_names');
      await sql('select pg_reload_conf()');
      writer.release();
    }
    const ev = await siteB.inserts.wait((p) => p.new?.id === inserted, { what: 'INSERT of the held commit' });
    assert.equal(ev.new.site_id, tB.siteId);
    await closeClient(eve);
  });
});
