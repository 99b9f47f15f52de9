// The Rust live feeds (livechat::live) next to the original hooks in realtime-js (supabase-js),
// on the same channels, with vsn 2.0.0 (realtime-js's default: binary kind 3/4 broadcasts) and
// 1.0.0 on both sides:
//
// - typing from the Rust message feed shows in the JS useChatRealtime replica, and back;
// - both see the same message events (inserts and updates, same ids, contents, order), and the
//   same conversation events (insert, update, delete);
// - a Rust agent's presence shows in a JS presenceState() with the hook's meta, and a JS agent's
//   presence and status in the Rust online list;
// - two Rust agents (two processes) and one JS client: one Rust process is SIGKILLed (no close
//   frame, no leave) and the other two see it leave.
//
// The Rust side is tests/interop_rust/interop_peer.rs (example `interop_peer` of the root
// package), a process driven with JSON lines; this file builds it with cargo first (a no-op
// when it is up to date). PEER_BIN overrides the binary.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { closeAll, env, randomUUID, sql, userToken, waitFor } from './lib/env.mjs';
import { createTenant, insertConversation, insertVisitor } from './lib/fixtures.mjs';
import {
  DEADLINE_MS,
  Inbox,
  VSNS,
  addMember,
  closeClient,
  closeRealtime,
  openChat,
  openConversations,
  openPresence,
  rtUser,
  stripRef,
} from './lib/realtime.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The peer binary, built with cargo unless PEER_BIN names one. */
function peerBinary() {
  if (process.env.PEER_BIN) return process.env.PEER_BIN;
  const targetDir = process.env.CARGO_TARGET_DIR
    ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR)
    : path.join(ROOT, 'target');
  const bin = path.join(targetDir, 'debug', 'examples', 'interop_peer');
  // cargo releases its build lock while tests run, so this works under `cargo test` too.
  const r = spawnSync('cargo', ['build', '--quiet', '-p', 'livechat', '--example', 'interop_peer'], {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
    timeout: 30 * 60 * 1000,
  });
  if (r.status !== 0) {
    if (!existsSync(bin)) throw new Error(`could not build the interop peer (cargo exited ${r.status})`);
    console.log('cargo build of the interop peer failed; using the existing binary');
  }
  return bin;
}

let bin;
const peers = new Set();

/** A running interop_peer: send commands, await its JSON-line events. */
class RustPeer {
  constructor(name, { token, vsn }) {
    this.name = name;
    this.events = new Inbox(`rust peer ${name}`);
    this.stderr = '';
    this.nextId = 1;
    this.child = spawn(bin, [], {
      env: { ...process.env, SUPABASE_URL: env.url, SUPABASE_ANON_KEY: env.anonKey, PEER_TOKEN: token, PEER_VSN: vsn },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })));
    this.child.stderr.on('data', (d) => {
      this.stderr += d;
    });
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      try {
        this.events.push(JSON.parse(line));
      } catch {
        this.events.push({ ev: 'unparsed', line });
      }
    });
    peers.add(this);
  }

  /** Sends a command and waits for its answer; throws on an error answer. */
  async cmd(command) {
    const id = this.nextId++;
    this.child.stdin.write(`${JSON.stringify({ ...command, id })}\n`);
    const answer = await this.events
      .wait((e) => (e.ev === 'ok' || e.ev === 'error') && e.id === id, {
        what: `answer to ${JSON.stringify(command)}`,
      })
      .catch((e) => {
        throw new Error(`${e.message}; stderr: ${this.stderr.slice(-2000)}`);
      });
    if (answer.ev === 'error') throw new Error(`${this.name}: ${command.cmd} failed: ${answer.error}`);
    return answer;
  }

  wait(pred, what) {
    return this.events.wait(pred, { what: `${this.name}: ${what}` });
  }

  /** SIGKILL: the process dies without a close frame or a leave. */
  async kill() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    peers.delete(this);
    return this.exited;
  }
}

let t;
let userB;
let visitorId;

before(async () => {
  bin = peerBinary();
  t = await createTenant({ sites: 1, label: 'rust-live' });
  userB = await addMember(t.agencyId);
  visitorId = await insertVisitor(t.siteId, { name: 'Interop Visitor' });
});
after(async () => {
  for (const p of [...peers]) await p.kill();
  await closeRealtime();
  await t?.drop();
  await closeAll();
});

const noError = (res) => assert.equal(res.error, null, `unexpected error: ${JSON.stringify(res.error)}`);

/** The online agents of a JS presence as the server's pushes define them (see wireState()). */
const wireKeys = (p) => Object.keys(p.wireState()).sort();

for (const vsn of VSNS) {
  describe(`Rust live feeds and realtime-js hooks, vsn ${vsn}`, () => {
    let js;
    let rust;
    let conv;
    let chat;

    before(async () => {
      conv = await insertConversation(t.siteId, visitorId, { status: 'active' });
      js = await rtUser(t.userId, vsn);
      chat = openChat(js, conv);
      await chat.ready;
      rust = new RustPeer(`chat ${vsn}`, { token: userToken(userB), vsn });
      await rust.wait((e) => e.ev === 'started', 'start');
      await rust.cmd({ cmd: 'chat', conversation: conv });
    });
    after(async () => {
      await rust?.kill();
      if (js) await closeClient(js);
    });

    test('typing from Rust shows in the JS hook, and typing from JS in the Rust feed', async () => {
      await rust.cmd({ cmd: 'typing_start', senderId: userB, senderName: 'Rust Agent' });
      const start = await chat.typingStart.wait((p) => p.payload?.senderId === userB, { what: 'Rust typing_start' });
      assert.equal(start.event, 'typing_start');
      assert.deepEqual(start.payload, { senderId: userB, senderName: 'Rust Agent' });
      await rust.cmd({ cmd: 'typing_stop', senderId: userB });
      const stop = await chat.typingStop.wait((p) => p.payload?.senderId === userB, { what: 'Rust typing_stop' });
      assert.deepEqual(stop.payload, { senderId: userB });

      assert.equal(await chat.sendTypingStart(t.userId, 'JS Agent'), 'ok');
      const rs = await rust.wait((e) => e.ev === 'typing_start' && e.senderId === t.userId, 'JS typing_start');
      assert.equal(rs.senderName, 'JS Agent');
      assert.equal(await chat.sendTypingStop(t.userId), 'ok');
      await rust.wait((e) => e.ev === 'typing_stop' && e.senderId === t.userId, 'JS typing_stop');
      // Neither side hears itself.
      assert.equal(rust.events.filter((e) => e.ev === 'typing_start' && e.senderId === userB).length, 0);
      assert.equal(chat.typingStart.filter((p) => p.payload?.senderId === t.userId).length, 0);
    });

    test('both see the same message events', async () => {
      const ids = [];
      for (let i = 0; i < 5; i++) {
        const res = await js
          .from('mod_chat_messages')
          .insert({
            conversation_id: conv,
            site_id: t.siteId,
            sender_type: 'agent',
            sender_id: t.userId,
            sender_name: 'JS Agent',
            content: `hello ${i} from JS`,
            content_type: 'text',
          })
          .select()
          .single();
        noError(res);
        ids.push(res.data.id);
      }
      const upd = await js.from('mod_chat_messages').update({ status: 'read' }).eq('id', ids[2]).select().single();
      noError(upd);
      await rust.wait((e) => e.ev === 'message' && e.kind === 'updated' && e.id === ids[2], 'the update');
      await chat.updates.wait((p) => p.new?.id === ids[2], { what: 'the update in JS' });
      for (const id of ids) {
        await chat.inserts.wait((p) => p.new?.id === id, { what: `INSERT ${id} in JS` });
        await rust.wait((e) => e.ev === 'message' && e.kind === 'new' && e.id === id, `new ${id}`);
      }

      const rustNew = rust.events.filter((e) => e.ev === 'message' && e.kind === 'new');
      assert.deepEqual(
        rustNew.map((e) => e.id),
        ids,
        'the Rust feed delivered each message once, in order',
      );
      const jsInserts = chat.inserts.items.filter((p) => ids.includes(p.new.id));
      assert.deepEqual(
        jsInserts.map((p) => [p.new.id, p.new.content]),
        rustNew.map((e) => [e.id, e.content]),
      );
      assert.ok(rustNew.every((e) => e.late === false));
      const rustUpd = rust.events.filter((e) => e.ev === 'message' && e.kind === 'updated');
      assert.deepEqual(rustUpd.map((e) => [e.id, e.status]), [[ids[2], 'read']]);
      assert.equal(chat.updates.filter((p) => p.new.id === ids[2]).at(-1).new.status, 'read');
    });
  });

  describe(`conversations:<siteId> between Rust and realtime-js, vsn ${vsn}`, () => {
    let js;
    let rust;
    let convs;

    before(async () => {
      js = await rtUser(t.userId, vsn);
      convs = openConversations(js, t.siteId);
      await convs.ready;
      rust = new RustPeer(`conversations ${vsn}`, { token: userToken(userB), vsn });
      await rust.wait((e) => e.ev === 'started', 'start');
      await rust.cmd({ cmd: 'conversations', site: t.siteId });
    });
    after(async () => {
      await rust?.kill();
      if (js) await closeClient(js);
    });

    test('both see the same conversation events: insert, update, delete', async () => {
      // Each change is awaited on both sides before the next: the server checks RLS on the row
      // as it is when it reads the change (a row already deleted is not delivered), as Supabase.
      const id = await insertConversation(t.siteId, visitorId, { status: 'pending' });
      await convs.inserts.wait((p) => p.new?.id === id, { what: 'INSERT in JS' });
      await rust.wait((e) => e.ev === 'conversation' && e.kind === 'new' && e.id === id, 'the new conversation');
      await sql("update public.mod_chat_conversations set status = 'active' where id = $1", [id]);
      await convs.updates.wait((p) => p.new?.id === id, { what: 'UPDATE in JS' });
      await rust.wait((e) => e.ev === 'conversation' && e.kind === 'updated' && e.id === id, 'the update');
      await sql('delete from public.mod_chat_conversations where id = $1', [id]);
      await convs.deletes.wait((p) => p.old?.id === id, { what: 'DELETE in JS' });
      await rust.wait((e) => e.ev === 'conversation' && e.kind === 'deleted' && e.id === id, 'the deletion');
      const jsSeq = convs.all.items
        .filter((p) => (p.new?.id ?? p.old?.id) === id)
        .map((p) => [p.eventType, p.new?.status ?? null]);
      const rustSeq = rust.events
        .filter((e) => e.ev === 'conversation' && e.id === id)
        .map((e) => [{ new: 'INSERT', updated: 'UPDATE', deleted: 'DELETE' }[e.kind], e.status ?? null]);
      assert.deepEqual(jsSeq, [
        ['INSERT', 'pending'],
        ['UPDATE', 'active'],
        ['DELETE', null],
      ]);
      assert.deepEqual(rustSeq, jsSeq);
    });
  });

  describe(`presence:chat:<siteId> between Rust and realtime-js, vsn ${vsn}`, () => {
    let js;
    let jsPresence;
    let r1;
    let r2;
    let siteId;
    const jsAgent = randomUUID();
    const rustAgent1 = randomUUID();
    const rustAgent2 = randomUUID();

    before(async () => {
      siteId = t.siteId;
      js = await rtUser(t.userId, vsn);
      jsPresence = openPresence(js, siteId, jsAgent, { status: 'online' });
      await jsPresence.ready;
      r1 = new RustPeer(`agent 1 ${vsn}`, { token: userToken(userB), vsn });
      r2 = new RustPeer(`agent 2 ${vsn}`, { token: userToken(t.userId), vsn });
      await Promise.all([r1, r2].map((r) => r.wait((e) => e.ev === 'started', 'start')));
      await r1.cmd({ cmd: 'presence', site: siteId, agent: rustAgent1, status: 'online' });
    });
    after(async () => {
      await r1?.kill();
      await r2?.kill();
      if (js) await closeClient(js);
    });

    test("a Rust agent's presence shows in the JS presenceState(), and the JS agent in Rust", async () => {
      await waitFor(() => jsPresence.state()[rustAgent1], {
        timeoutMs: DEADLINE_MS,
        intervalMs: 20,
        what: 'the Rust agent in the JS presence state',
      });
      const [meta] = jsPresence.state()[rustAgent1].map(stripRef);
      assert.deepEqual(Object.keys(meta).sort(), ['agentId', 'currentChats', 'lastSeen', 'status']);
      assert.equal(meta.agentId, rustAgent1);
      assert.equal(meta.status, 'online');
      assert.equal(meta.currentChats, 0);
      assert.match(meta.lastSeen, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

      const online = await r1.wait(
        (e) => e.ev === 'online' && e.agents.some((a) => a.key === jsAgent && a.status === 'online'),
        'the JS agent in the Rust online list',
      );
      const jsSeen = online.agents.find((a) => a.key === jsAgent);
      assert.equal(jsSeen.agentId, jsAgent);

      // Status changes go both ways (re-tracks).
      await r1.cmd({ cmd: 'status', status: 'away' });
      await waitFor(() => jsPresence.wireState()[rustAgent1]?.some((m) => m.status === 'away'), {
        timeoutMs: DEADLINE_MS,
        intervalMs: 20,
        what: 'the Rust agent away in JS',
      });
      await jsPresence.updateStatus('busy', 2);
      await r1.wait(
        (e) => e.ev === 'online' && e.agents.some((a) => a.key === jsAgent && a.status === 'busy' && a.currentChats === 2),
        'the JS agent busy in Rust',
      );
    });

    test('two Rust agents and a JS client: a Rust process killed without a goodbye is seen leaving', async () => {
      await r2.cmd({ cmd: 'presence', site: siteId, agent: rustAgent2, status: 'online' });
      const all = [jsAgent, rustAgent1, rustAgent2].sort();
      await waitFor(() => JSON.stringify(wireKeys(jsPresence)) === JSON.stringify(all), {
        timeoutMs: DEADLINE_MS,
        intervalMs: 20,
        what: 'three agents in JS',
      });
      for (const r of [r1, r2]) {
        await r.wait(
          (e) => e.ev === 'online' && JSON.stringify(e.agents.map((a) => a.key).sort()) === JSON.stringify(all),
          'three agents in Rust',
        );
      }
      const killedAt = Date.now();
      const { signal } = await r2.kill();
      assert.equal(signal, 'SIGKILL');
      const rest = [jsAgent, rustAgent1].sort();
      await waitFor(() => JSON.stringify(wireKeys(jsPresence)) === JSON.stringify(rest), {
        timeoutMs: DEADLINE_MS,
        intervalMs: 20,
        what: 'the killed Rust agent gone from JS',
      });
      await waitFor(() => !jsPresence.state()[rustAgent2], {
        timeoutMs: DEADLINE_MS,
        intervalMs: 20,
        what: 'the killed Rust agent gone from presenceState()',
      });
      await r1.wait((e) => e.ev === 'presence' && e.change === 'left' && e.key === rustAgent2, 'the leave in Rust');
      await r1.wait(
        (e) => e.ev === 'online' && JSON.stringify(e.agents.map((a) => a.key).sort()) === JSON.stringify(rest),
        'two agents left in Rust',
      );
      console.log(`presence (vsn ${vsn}): leave of a SIGKILLed Rust peer seen after ${Date.now() - killedAt} ms`);

      // An explicit leave of the other Rust agent.
      await r1.cmd({ cmd: 'leave' });
      await waitFor(() => JSON.stringify(wireKeys(jsPresence)) === JSON.stringify([jsAgent]), {
        timeoutMs: DEADLINE_MS,
        intervalMs: 20,
        what: 'only the JS agent left',
      });
    });
  });
}
