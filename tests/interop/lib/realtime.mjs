// Plumbing of the realtime interop tests: supabase-js clients with a chosen serializer version
// (vsn) and a user JWT, replicas of the three original dashboard hooks with their exact channel
// configurations (shared/spec/parity.md "Realtime hooks"), inboxes that record every event with
// its arrival time and can be awaited with a deadline, a child process that holds a presence and
// can be SIGKILLed, and teardown that lets node exit.
//
// Every realtime test file calls `closeRealtime()` (then env.mjs's `closeAll()`) in its top-level
// `after()` hook.

import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';

import { env, randomUUID, sql, userToken } from './env.mjs';

/** The two serializer versions every case runs with: realtime-js's default first. */
export const VSNS = ['2.0.0', '1.0.0'];

/** Default deadline of every wait (generous: the stack may be under load from other tests). */
export const DEADLINE_MS = 15000;

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

const rtClients = new Set();

/**
 * A WebSocket transport (the `ws` package) that records what the server sent, so a test can
 * check the serializer that was negotiated, and keeps the live sockets so a test can kill them.
 */
function recordingTransport(wire) {
  return class RecordingWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      wire.urls.push(String(url));
      wire.sockets.push(this);
      this.on('message', (data, isBinary) => {
        if (isBinary) {
          wire.binary += 1;
          wire.binaryKinds.add(new Uint8Array(data)[0]);
        } else {
          const s = data.toString();
          if (s.startsWith('[')) wire.arrays += 1;
          else if (s.startsWith('{')) wire.objects += 1;
          else wire.other += 1;
        }
      });
    }
  };
}

/**
 * A supabase-js client whose realtime socket speaks `vsn` ('2.0.0' | '1.0.0').
 *   token: a user JWT used for REST and as the realtime access_token (as the dashboard does
 *          after sign-in); without it the client uses `key` (default the anon key) for both.
 * The client has `.wire`: {urls, sockets, arrays, objects, binary, binaryKinds, other}.
 */
export async function rtClient({ vsn = '2.0.0', token, key = env.anonKey } = {}) {
  const wire = { urls: [], sockets: [], arrays: 0, objects: 0, binary: 0, binaryKinds: new Set(), other: 0 };
  const options = {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    // `transport`: Node 20 has no global WebSocket. `vsn`: realtime-js's RealtimeClient option
    // (default '2.0.0'); supabase-js passes `realtime` through to it unchanged.
    realtime: { transport: recordingTransport(wire), vsn },
  };
  if (token) options.accessToken = async () => token;
  const client = createClient(env.url, key, options);
  // supabase-js sets the realtime token asynchronously; make it deterministic before any join.
  if (token) await client.realtime.setAuth(token);
  client.wire = wire;
  rtClients.add(client);
  return client;
}

/** A client acting as user `sub` (fresh HS256 JWT signed with the stack's secret). */
export const rtUser = (sub, vsn) => rtClient({ vsn, token: userToken(sub) });

/** Adds `userId` as a member of `agencyId` (direct SQL) and returns the user id. */
export async function addMember(agencyId, userId = randomUUID(), role = 'member') {
  await sql('insert into public.agency_members (agency_id, user_id, role) values ($1, $2, $3)', [
    agencyId,
    userId,
    role,
  ]);
  return userId;
}

/**
 * Closes one client's realtime side: leaves its channels (phx_leave), then closes the socket.
 * Uses the phoenix socket's disconnect directly: RealtimeClient.disconnect() arms a 10 s timer
 * that is not unref'd and would keep node alive after the tests.
 */
export async function closeClient(client) {
  const rt = client.realtime;
  for (const ch of [...rt.getChannels()]) {
    try {
      await withTimeout(ch.unsubscribe(5000), 6000, 'unsubscribe');
    } catch {
      /* socket already gone */
    }
    ch.teardown();
    rt._remove(ch);
  }
  rt._cancelPendingDisconnect();
  const socket = rt.socketAdapter.getSocket();
  await withTimeout(new Promise((resolve) => socket.disconnect(resolve)), 5000, 'disconnect').catch(() => {});
  rt._cancelPendingDisconnect();
  rtClients.delete(client);
}

/** Closes every client made by rtClient() (call in the file's after() hook). */
export async function closeRealtime() {
  for (const c of [...rtClients]) await closeClient(c);
}

/** Removes one channel the way the hooks do on unmount (supabase.removeChannel). */
export async function removeChannel(client, channel) {
  const status = await client.removeChannel(channel);
  // Leaving the last channel schedules a 50 s disconnect timer; closeClient() cancels it.
  return status;
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------
// Inboxes: recorded events, awaited with a deadline
// ---------------------------------------------------------------------------------------------

const brief = (v) => {
  const s = JSON.stringify(v);
  return s && s.length > 400 ? `${s.slice(0, 400)}…` : s;
};

/** Every event one listener received, in order, each as {at: performance.now(), item}. */
export class Inbox {
  constructor(name) {
    this.name = name;
    this.records = [];
    this.waiters = new Set();
  }

  push(item) {
    const rec = { at: performance.now(), item };
    this.records.push(rec);
    for (const w of [...this.waiters]) {
      if (w.pred(item)) {
        this.waiters.delete(w);
        w.resolve(rec);
      }
    }
  }

  get items() {
    return this.records.map((r) => r.item);
  }

  /** Items received so far that satisfy `pred`. */
  filter(pred) {
    return this.items.filter(pred);
  }

  /**
   * Resolves with the first record (already received or future) whose item satisfies `pred`;
   * rejects after `timeoutMs` with what was received instead.
   */
  waitRecord(pred, { timeoutMs = DEADLINE_MS, what = 'a matching event' } = {}) {
    const hit = this.records.find((r) => pred(r.item));
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (rec) => {
          clearTimeout(w.timer);
          resolve(rec);
        },
      };
      w.timer = setTimeout(() => {
        this.waiters.delete(w);
        const got = this.items.slice(-5).map(brief);
        reject(
          new Error(
            `timed out after ${timeoutMs} ms on ${this.name} waiting for ${what}; ` +
              `received ${this.records.length} event(s)` +
              (got.length ? `, the last: ${got.join(' | ')}` : ''),
          ),
        );
      }, timeoutMs);
      this.waiters.add(w);
    });
  }

  /** Like waitRecord, resolving with the item. */
  async wait(pred, opts) {
    return (await this.waitRecord(pred, opts)).item;
  }
}

// ---------------------------------------------------------------------------------------------
// Subscribing
// ---------------------------------------------------------------------------------------------

/**
 * channel.subscribe() as a promise: resolves on SUBSCRIBED and, when the channel asked for
 * postgres_changes, once the server has also pushed `system` "Subscribed to PostgreSQL" (before
 * that, changes may be missed). Rejects on CHANNEL_ERROR / TIMED_OUT / CLOSED, a `system` error,
 * or after `timeoutMs`. `onSubscribed` runs on every SUBSCRIBED (rejoins included), as a hook's
 * subscribe callback does; the promise waits for its first run. Resolves with {statuses, system}
 * (Inboxes) for later assertions.
 */
export function subscribe(channel, { postgres = false, timeoutMs = DEADLINE_MS, onSubscribed } = {}) {
  const statuses = new Inbox(`${channel.topic} subscribe statuses`);
  const system = new Inbox(`${channel.topic} system`);
  let firstRun = null;
  channel.on('system', {}, (p) => system.push(p));
  channel.subscribe((status, err) => {
    if (status === 'SUBSCRIBED' && onSubscribed) {
      const run = Promise.resolve().then(onSubscribed);
      run.catch(() => {});
      if (!firstRun) firstRun = run;
    }
    statuses.push({ status, err: err ? String(err.message ?? err) : null });
  });
  const ready = (async () => {
    const first = await statuses.wait(() => true, { timeoutMs, what: 'a subscribe status' });
    if (first.status !== 'SUBSCRIBED') throw new Error(`subscribe ${channel.topic}: ${first.status} ${first.err ?? ''}`);
    if (postgres) {
      const sys = await system.wait((p) => p?.extension === 'postgres_changes', {
        timeoutMs,
        what: 'system "Subscribed to PostgreSQL"',
      });
      if (sys.status !== 'ok') throw new Error(`postgres_changes subscription failed: ${brief(sys)}`);
    }
    if (firstRun) await firstRun;
    return { statuses, system };
  })();
  return ready;
}

// ---------------------------------------------------------------------------------------------
// The three hooks, with the original channel configurations
// ---------------------------------------------------------------------------------------------

const SEND_OPTS = { timeout: 500 };

/**
 * useChatRealtime(conversationId): channel `chat:<id>` with postgres_changes INSERT and UPDATE on
 * public.mod_chat_messages filtered `conversation_id=eq.<id>`, and broadcast events typing_start
 * {senderId, senderName} / typing_stop {senderId}.
 * Returns {channel, inserts, updates, typingStart, typingStop, ready, sendTypingStart, sendTypingStop}.
 * Inbox items are the realtime-js callback payloads as received.
 */
export function openChat(client, conversationId) {
  const inserts = new Inbox(`chat:${conversationId} INSERT`);
  const updates = new Inbox(`chat:${conversationId} UPDATE`);
  const typingStart = new Inbox(`chat:${conversationId} typing_start`);
  const typingStop = new Inbox(`chat:${conversationId} typing_stop`);
  const filter = `conversation_id=eq.${conversationId}`;
  const channel = client
    .channel(`chat:${conversationId}`)
    .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'mod_chat_messages', filter }, (p) =>
      inserts.push(p),
    )
    .on('postgres_changes', { event: 'UPDATE', schema: 'public', table: 'mod_chat_messages', filter }, (p) =>
      updates.push(p),
    )
    .on('broadcast', { event: 'typing_start' }, (p) => typingStart.push(p))
    .on('broadcast', { event: 'typing_stop' }, (p) => typingStop.push(p));
  const ready = subscribe(channel, { postgres: true });
  return {
    channel,
    inserts,
    updates,
    typingStart,
    typingStop,
    ready,
    // The hook's send(). `timeout` only bounds the client-side push timer: without broadcast ack
    // the server never replies and send() resolves 'ok' at once, but phoenix still arms a timer
    // for the push (default 10 s, not cleared on leave) that would keep node alive after the tests.
    sendTypingStart: (senderId, senderName) =>
      channel.send({ type: 'broadcast', event: 'typing_start', payload: { senderId, senderName } }, SEND_OPTS),
    sendTypingStop: (senderId) =>
      channel.send({ type: 'broadcast', event: 'typing_stop', payload: { senderId } }, SEND_OPTS),
  };
}

/**
 * useConversationsRealtime(siteId): channel `conversations:<siteId>` with postgres_changes INSERT,
 * UPDATE and DELETE on public.mod_chat_conversations filtered `site_id=eq.<siteId>`.
 * Returns {channel, inserts, updates, deletes, all, ready}.
 */
export function openConversations(client, siteId) {
  const inserts = new Inbox(`conversations:${siteId} INSERT`);
  const updates = new Inbox(`conversations:${siteId} UPDATE`);
  const deletes = new Inbox(`conversations:${siteId} DELETE`);
  const all = new Inbox(`conversations:${siteId} (any)`);
  const filter = `site_id=eq.${siteId}`;
  const base = { schema: 'public', table: 'mod_chat_conversations', filter };
  const channel = client
    .channel(`conversations:${siteId}`)
    .on('postgres_changes', { event: 'INSERT', ...base }, (p) => {
      inserts.push(p);
      all.push(p);
    })
    .on('postgres_changes', { event: 'UPDATE', ...base }, (p) => {
      updates.push(p);
      all.push(p);
    })
    .on('postgres_changes', { event: 'DELETE', ...base }, (p) => {
      deletes.push(p);
      all.push(p);
    });
  const ready = subscribe(channel, { postgres: true });
  return { channel, inserts, updates, deletes, all, ready };
}

/**
 * useAgentPresence(siteId, agentId, initialStatus): channel `presence:chat:<siteId>` with presence
 * key = agentId; on SUBSCRIBED it tracks {agentId, status, currentChats, lastSeen}; the online
 * list follows presence sync; updateStatus re-tracks; leave untracks and unsubscribes.
 * Returns {channel, key, joins, leaves, syncs, tracks, diffs, ready (resolves after the first
 * track's reply), state(), online(), wireState(), updateStatus(status, currentChats?), untrack(),
 * leave()}.
 *   state()/online(): what realtime-js shows the hook (channel.presenceState()).
 *   wireState(): the same view ({key: [{...meta, presence_ref}]}) built independently from the
 *     raw presence_state / presence_diff pushes. realtime-js 2.109.0 corrupts its own state when
 *     one diff both joins and leaves a key (a re-track; supabase/supabase-js#2565: its
 *     presence adapter deletes phx_ref from live metas while building event payloads), so
 *     server behaviour after a re-track is checked on wireState().
 */
export function openPresence(client, siteId, agentId, { status = 'online', currentChats = 0 } = {}) {
  const joins = new Inbox(`presence:chat:${siteId} join`);
  const leaves = new Inbox(`presence:chat:${siteId} leave`);
  const syncs = new Inbox(`presence:chat:${siteId} sync`);
  let meta = { agentId, status, currentChats, lastSeen: new Date().toISOString() };
  const diffs = new Inbox(`presence:chat:${siteId} presence_diff (wire)`);
  const wire = new WireState();
  const channel = client
    .channel(`presence:chat:${siteId}`, { config: { presence: { key: agentId } } })
    .on('presence', { event: 'sync' }, () => syncs.push(channel.presenceState()))
    .on('presence', { event: 'join' }, (p) => joins.push(p))
    .on('presence', { event: 'leave' }, (p) => leaves.push(p))
    // The raw server pushes, next to the hook's listeners (they do not change the join payload).
    .on('presence_state', {}, (st) => wire.reset(st))
    .on('presence_diff', {}, (d) => {
      wire.apply(d);
      diffs.push(structuredClone(d));
    });
  const tracks = new Inbox(`presence:chat:${siteId} track replies`);
  const track = async () => {
    const r = await channel.track(meta);
    tracks.push(r);
    if (r !== 'ok') throw new Error(`track on ${channel.topic} answered ${r}`);
    return r;
  };
  // The hook tracks in its subscribe callback, i.e. again after every rejoin.
  const ready = subscribe(channel, { onSubscribed: track });
  return {
    channel,
    key: agentId,
    joins,
    leaves,
    syncs,
    tracks,
    diffs,
    ready,
    /** The presence state as the server's presence_state / presence_diff pushes define it. */
    wireState: () => wire.view(),
    get meta() {
      return meta;
    },
    state: () => channel.presenceState(),
    /** The online agents as the hook derives them: one entry per key, its latest meta. */
    online: () =>
      Object.fromEntries(
        Object.entries(channel.presenceState()).map(([k, metas]) => [k, metas[metas.length - 1]]),
      ),
    updateStatus: async (newStatus, chats = meta.currentChats) => {
      meta = { ...meta, status: newStatus, currentChats: chats, lastSeen: new Date().toISOString() };
      return track();
    },
    untrack: async () => {
      const r = await channel.untrack();
      if (r !== 'ok') throw new Error(`untrack on ${channel.topic} answered ${r}`);
      return r;
    },
    leave: async () => {
      await channel.untrack();
      return removeChannel(client, channel);
    },
  };
}

/**
 * Presence state from raw presence_state / presence_diff payloads, with Phoenix's semantics
 * (joins add/replace metas by phx_ref, leaves remove metas by phx_ref, empty keys disappear),
 * never mutating what it is given.
 */
class WireState {
  constructor() {
    this.state = {};
  }

  reset(st) {
    this.state = {};
    for (const [k, v] of Object.entries(st ?? {})) this.state[k] = structuredClone(v.metas ?? []);
  }

  apply({ joins = {}, leaves = {} } = {}) {
    for (const [k, v] of Object.entries(joins)) {
      const joined = structuredClone(v.metas ?? []);
      const refs = new Set(joined.map((m) => m.phx_ref));
      this.state[k] = [...(this.state[k] ?? []).filter((m) => !refs.has(m.phx_ref)), ...joined];
    }
    for (const [k, v] of Object.entries(leaves)) {
      if (!this.state[k]) continue;
      const refs = new Set((v.metas ?? []).map((m) => m.phx_ref));
      this.state[k] = this.state[k].filter((m) => !refs.has(m.phx_ref));
      if (this.state[k].length === 0) delete this.state[k];
    }
  }

  view() {
    return Object.fromEntries(
      Object.entries(this.state).map(([k, metas]) => [
        k,
        metas.map(({ phx_ref, phx_ref_prev, ...m }) => ({ ...m, presence_ref: phx_ref })), // eslint-disable-line no-unused-vars
      ]),
    );
  }
}

/** The presence metas without presence_ref (what the agent tracked). */
export const stripRef = ({ presence_ref, ...rest }) => rest; // eslint-disable-line no-unused-vars

// ---------------------------------------------------------------------------------------------
// A presence held by another process (killed without a goodbye)
// ---------------------------------------------------------------------------------------------

/**
 * Starts a node child process that connects with `vsn` as user `sub`, opens the presence
 * channel of `siteId` with key `agentId`, tracks, and prints READY. Returns {child, ready, kill}.
 * `kill()` sends SIGKILL: the process dies without a close frame or phx_leave.
 */
export function spawnPresenceHolder({ vsn, sub, siteId, agentId, status = 'online' }) {
  const code =
    `import { runPresenceHolder } from ${JSON.stringify(import.meta.url)};\n` +
    'await runPresenceHolder(JSON.parse(process.env.RT_PRESENCE_HOLDER));\n';
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
    env: { ...process.env, RT_PRESENCE_HOLDER: JSON.stringify({ vsn, sub, siteId, agentId, status }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => {
    err += d;
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`presence holder not READY after ${DEADLINE_MS} ms; stderr: ${err}`)), DEADLINE_MS);
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('READY')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`presence holder exited early (code ${code}, signal ${signal}); stderr: ${err}`));
    });
  });
  ready.catch(() => {});
  return {
    child,
    ready,
    exited,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      return exited;
    },
  };
}

/** Entry point of the child process started by spawnPresenceHolder. */
export async function runPresenceHolder({ vsn, sub, siteId, agentId, status }) {
  const client = await rtUser(sub, vsn);
  const p = openPresence(client, siteId, agentId, { status });
  await p.ready;
  process.stdout.write('READY\n');
  // Stay connected until killed (the socket and its heartbeat keep the event loop alive).
}

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------

/** Nearest-rank percentile (p in 0..100) of an array of numbers. */
export function percentile(values, p) {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[rank - 1];
}

export const median = (values) => {
  const s = [...values].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
