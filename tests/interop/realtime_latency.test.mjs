// Benchmark-style: the delay from a REST insert's response to the postgres_changes event reaching
// a subscribed realtime-js client (useChatRealtime's channel), over 200 sequential inserts, with
// vsn 2.0.0 and 1.0.0. The figures are PRINTED, not asserted; the test asserts only that every
// event arrived (and exactly once).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';

import { closeAll } from './lib/env.mjs';
import { createTenant, insertConversation, insertVisitor } from './lib/fixtures.mjs';
import { VSNS, addMember, closeClient, closeRealtime, median, openChat, percentile, rtUser } from './lib/realtime.mjs';

const N = 200;

let t;
let listenerUser;
let visitorId;

before(async () => {
  t = await createTenant({ sites: 1, label: 'rt-latency' });
  listenerUser = await addMember(t.agencyId);
  visitorId = await insertVisitor(t.siteId, { name: 'Latency Visitor' });
});
after(async () => {
  await closeRealtime();
  await t?.drop();
  await closeAll();
});

const fmt = (x) => x.toFixed(1);

for (const vsn of VSNS) {
  describe(`realtime latency with vsn ${vsn}`, () => {
    let writer;
    let listener;
    let chat;
    let conv;

    before(async () => {
      conv = await insertConversation(t.siteId, visitorId, { status: 'active' });
      writer = await rtUser(t.userId, vsn);
      listener = await rtUser(listenerUser, vsn);
      chat = openChat(listener, conv);
      await chat.ready;
    });
    after(async () => {
      if (writer) await closeClient(writer);
      if (listener) await closeClient(listener);
    });

    test(`${N} REST inserts: every INSERT event arrives; prints median and p99 from REST response to event`, async () => {
      const fromResponse = [];
      const fromRequest = [];
      for (let i = 0; i < N; i++) {
        const content = `latency ${vsn} #${i}`;
        const sentAt = performance.now();
        const res = await writer
          .from('mod_chat_messages')
          .insert({ conversation_id: conv, site_id: t.siteId, sender_type: 'agent', content })
          .select('id')
          .single();
        const respondedAt = performance.now();
        assert.equal(res.error, null, `insert #${i}: ${JSON.stringify(res.error)}`);
        // The event may even arrive before the response; its arrival time is recorded on receipt.
        const rec = await chat.inserts.waitRecord((p) => p.new?.id === res.data.id, {
          what: `INSERT event of insert #${i} (${res.data.id})`,
        });
        assert.equal(rec.item.new.content, content);
        fromResponse.push(rec.at - respondedAt);
        fromRequest.push(rec.at - sentAt);
      }
      // Every event arrived, exactly once, and nothing else did.
      assert.equal(chat.inserts.items.length, N);
      assert.equal(new Set(chat.inserts.items.map((p) => p.new.id)).size, N);

      console.log(
        `realtime latency: median ${fmt(median(fromResponse))} ms, p99 ${fmt(percentile(fromResponse, 99))} ms ` +
          `over ${N} inserts (vsn ${vsn}; REST insert response -> INSERT event on a chat:<id> subscriber)`,
      );
      console.log(
        `realtime latency (vsn ${vsn}, from REST request start): median ${fmt(median(fromRequest))} ms, ` +
          `p99 ${fmt(percentile(fromRequest, 99))} ms, max ${fmt(Math.max(...fromRequest))} ms over ${N} inserts`,
      );
    });
  });
}
