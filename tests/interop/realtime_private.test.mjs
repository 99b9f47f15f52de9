// The hooks' channels as PRIVATE channels (`config.private = true`), with realtime-js (through
// supabase-js) speaking vsn 2.0.0 and 1.0.0, authorized by the stack's realtime server through
// row-level security on realtime.messages (migration 20260101000800_realtime_authorization.sql):
//   chat:<conversationId>   members of the conversation's agency, and its visitor's token
//   presence:chat:<siteId>  members of the site's agency
// A member of another agency, the plain anon key and a visitor token outside its own
// conversation are refused at join ("Unauthorized: ..."), so they receive no typing and no
// presence at all. Expected behaviour: shared/spec/realtime.md §3.3.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { closeAll, env, nowSeconds, signJwt, uniq } from './lib/env.mjs';
import { createTenant, insertConversation, insertVisitor } from './lib/fixtures.mjs';
import { Inbox, VSNS, addMember, closeClient, closeRealtime, rtClient, rtUser, subscribe } from './lib/realtime.mjs';

let tA; // agency A: site A
let tB; // agency B: site B
let colleague; // a second member of agency A
let visitorA;
let otherVisitorA;
let convA;
let otherConvA;

const visitorToken = (visitorId, siteId) => {
  const now = nowSeconds();
  return signJwt({ role: 'anon', visitor_id: visitorId, site_id: siteId, iat: now, exp: now + 900, iss: 'livechat' });
};

before(async () => {
  tA = await createTenant({ sites: 1, label: 'rt-private A' });
  tB = await createTenant({ sites: 1, label: 'rt-private B' });
  colleague = await addMember(tA.agencyId);
  visitorA = await insertVisitor(tA.siteId, { name: 'Visitor A' });
  otherVisitorA = await insertVisitor(tA.siteId, { name: 'Other Visitor A' });
  convA = await insertConversation(tA.siteId, visitorA, { status: 'active' });
  otherConvA = await insertConversation(tA.siteId, otherVisitorA, { status: 'active' });
});
after(async () => {
  await closeRealtime();
  await tA?.drop();
  await tB?.drop();
  await closeAll();
});

/** A private `chat:<id>` channel with the hook's typing events, not yet subscribed. */
function privateChat(client, conversationId, suffix = '') {
  const typing = new Inbox(`private chat:${conversationId}${suffix} typing_start`);
  const channel = client
    .channel(`chat:${conversationId}`, { config: { private: true } })
    .on('broadcast', { event: 'typing_start' }, (p) => typing.push(p));
  return { channel, typing };
}

/** Subscribing must fail with the server's authorization error. */
async function refused(channel) {
  await assert.rejects(subscribe(channel), (e) => {
    assert.match(String(e.message), /CHANNEL_ERROR/);
    assert.match(String(e.message), /Unauthorized: You do not have permissions to read from this Channel topic/);
    return true;
  });
}

for (const vsn of VSNS) {
  describe(`private chat channels with vsn ${vsn}`, () => {
    test('members of the agency type to each other; another agency, anon and other visitors are refused', async () => {
      const alice = await rtUser(tA.userId, vsn);
      const bob = await rtUser(colleague, vsn);
      const a = privateChat(alice, convA);
      const b = privateChat(bob, convA);
      await Promise.all([subscribe(a.channel), subscribe(b.channel)]);
      const senderName = `Alice ${uniq()}`;
      const status = await a.channel.send(
        { type: 'broadcast', event: 'typing_start', payload: { senderId: tA.userId, senderName } },
        { timeout: 500 },
      );
      assert.equal(status, 'ok');
      const got = await b.typing.wait((p) => p.payload?.senderName === senderName, { what: 'typing on the private channel' });
      assert.equal(got.payload.senderId, tA.userId);

      // The conversation's visitor joins with its token and sees the agent typing.
      const visitor = await rtClient({ vsn, token: visitorToken(visitorA, tA.siteId) });
      const v = privateChat(visitor, convA, ' (visitor)');
      await subscribe(v.channel);
      const again = `Alice again ${uniq()}`;
      await a.channel.send(
        { type: 'broadcast', event: 'typing_start', payload: { senderId: tA.userId, senderName: again } },
        { timeout: 500 },
      );
      await v.typing.wait((p) => p.payload?.senderName === again, { what: 'typing seen by the visitor' });

      // Refused: a member of agency B, the bare anon key, another visitor's token.
      const eve = await rtUser(tB.userId, vsn);
      await refused(privateChat(eve, convA, ' (eve)').channel);
      const anon = await rtClient({ vsn });
      await refused(privateChat(anon, convA, ' (anon)').channel);
      const other = await rtClient({ vsn, token: visitorToken(otherVisitorA, tA.siteId) });
      await refused(privateChat(other, convA, ' (other visitor)').channel);
      // ...who may join its own conversation's channel.
      await subscribe(privateChat(other, otherConvA, ' (own)').channel);

      for (const c of [alice, bob, visitor, eve, anon, other]) await closeClient(c);
    });

    test('private presence: members of the agency see each other; another agency and visitors are refused', async () => {
      const topic = `presence:chat:${tA.siteId}`;
      const join = (client, key) => {
        const syncs = new Inbox(`${topic} sync (${key})`);
        const channel = client.channel(topic, { config: { private: true, presence: { key } } });
        channel.on('presence', { event: 'sync' }, () => syncs.push(channel.presenceState()));
        return { channel, syncs };
      };
      const alice = await rtUser(tA.userId, vsn);
      const bob = await rtUser(colleague, vsn);
      const a = join(alice, 'agent-a');
      const b = join(bob, 'agent-b');
      await Promise.all([subscribe(a.channel), subscribe(b.channel)]);
      assert.equal(await a.channel.track({ agentId: 'agent-a', status: 'online', currentChats: 0 }), 'ok');
      await b.syncs.wait((state) => 'agent-a' in state, { what: "bob sees alice's agent" });

      const eve = await rtUser(tB.userId, vsn);
      await refused(join(eve, 'agent-e').channel);
      const visitor = await rtClient({ vsn, token: visitorToken(visitorA, tA.siteId) });
      await refused(join(visitor, 'v').channel);
      const anon = await rtClient({ vsn, key: env.anonKey });
      await refused(join(anon, 'x').channel);
      for (const c of [alice, bob, eve, visitor, anon]) await closeClient(c);
    });
  });
}
