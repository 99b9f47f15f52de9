//! Rooms, members, presence and fan-out, shared by every socket of one realtime server.

use super::cdc::PgSub;
use super::proto::{Msg, Out};
use crate::jwt::Claims;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc::UnboundedSender;

/// The room of a topic: public and private channels with the same name are separate rooms.
pub fn room_key(topic: &str, private: bool) -> String {
    if private {
        format!("private|{topic}")
    } else {
        format!("public|{topic}")
    }
}

struct Presence {
    chan_id: u64,
    /// The user payload as tracked (to detect identical re-tracks).
    user: Map<String, Value>,
    /// The meta as sent to clients (user payload plus `phx_ref`, maybe `phx_ref_prev`).
    meta: Map<String, Value>,
}

#[derive(Default)]
struct Room {
    members: HashMap<u64, bool>, // chan_id -> self broadcast
    presence: BTreeMap<String, Vec<Presence>>,
}

struct ChanEntry {
    room: String,
    topic: String,
    tx: UnboundedSender<Out>,
    presence_key: String,
    role: String,
    claims: Arc<Claims>,
    pg: Option<Arc<Vec<PgSub>>>,
    /// Generation of the latest Postgres subscription request (join, then each new role).
    pg_gen: u64,
}

/// A channel with Postgres subscriptions, as the change capture sees it.
#[derive(Clone)]
pub struct PgTarget {
    pub chan_id: u64,
    pub tx: UnboundedSender<Out>,
    pub topic: String,
    pub role: String,
    pub claims: Arc<Claims>,
    pub subs: Arc<Vec<PgSub>>,
}

/// What a joining channel registers.
pub struct JoinSpec {
    pub chan_id: u64,
    pub topic: String,
    pub private: bool,
    pub tx: UnboundedSender<Out>,
    pub self_broadcast: bool,
    pub presence_key: String,
    pub role: String,
    pub claims: Claims,
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<String, Room>,
    chans: HashMap<u64, ChanEntry>,
    pg_count: usize,
}

/// The shared registry.
#[derive(Default)]
pub struct Hub {
    inner: Mutex<Inner>,
}

fn new_phx_ref() -> String {
    use base64::Engine;
    let id = uuid::Uuid::new_v4();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&id.as_bytes()[..12])
}

fn metas(list: Vec<Value>) -> Value {
    json!({ "metas": list })
}

fn fan_out(inner: &Inner, room: &Room, exclude: Option<u64>, out: &Out) {
    for id in room.members.keys() {
        if Some(*id) == exclude {
            continue;
        }
        if let Some(c) = inner.chans.get(id) {
            // A closed receiver means the socket is going away; its cleanup removes it.
            let _ = c.tx.send(out.clone());
        }
    }
}

fn diff_msg(topic: &str, joins: Map<String, Value>, leaves: Map<String, Value>) -> Out {
    Out::Json(Arc::new(Msg::new(
        Value::Null,
        Value::Null,
        topic,
        "presence_diff",
        json!({"joins": joins, "leaves": leaves}),
    )))
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a joined channel.
    pub fn join(&self, spec: JoinSpec) {
        let mut inner = self.lock();
        let room = room_key(&spec.topic, spec.private);
        inner
            .rooms
            .entry(room.clone())
            .or_default()
            .members
            .insert(spec.chan_id, spec.self_broadcast);
        inner.chans.insert(
            spec.chan_id,
            ChanEntry {
                room,
                topic: spec.topic,
                tx: spec.tx,
                presence_key: spec.presence_key,
                role: spec.role,
                claims: Arc::new(spec.claims),
                pg: None,
                pg_gen: 0,
            },
        );
    }

    /// Removes a channel; its presences leave (diff to the remaining members).
    pub fn leave(&self, chan_id: u64) {
        let mut inner = self.lock();
        let Some(entry) = inner.chans.remove(&chan_id) else {
            return;
        };
        if entry.pg.is_some() {
            inner.pg_count = inner.pg_count.saturating_sub(1);
        }
        let Some(mut room) = inner.rooms.remove(&entry.room) else {
            return;
        };
        room.members.remove(&chan_id);
        let leaves = remove_presence(&mut room, chan_id);
        if !leaves.is_empty() {
            fan_out(
                &inner,
                &room,
                None,
                &diff_msg(&entry.topic, Map::new(), leaves),
            );
        }
        if !room.members.is_empty() {
            inner.rooms.insert(entry.room, room);
        }
    }

    /// Sends `out` to every member of a room except `exclude`.
    pub fn broadcast(&self, room: &str, exclude: Option<u64>, out: Out) -> usize {
        let inner = self.lock();
        let Some(r) = inner.rooms.get(room) else {
            return 0;
        };
        fan_out(&inner, r, exclude, &out);
        r.members.len()
    }

    /// Tracks (or updates) the presence of a channel. Returns false if nothing changed.
    pub fn track(&self, chan_id: u64, user: Map<String, Value>) -> bool {
        let mut inner = self.lock();
        let Some(entry) = inner.chans.get(&chan_id) else {
            return false;
        };
        let (room_name, topic, key) = (
            entry.room.clone(),
            entry.topic.clone(),
            entry.presence_key.clone(),
        );
        let Some(mut room) = inner.rooms.remove(&room_name) else {
            return false;
        };
        let list = room.presence.entry(key.clone()).or_default();
        let existing = list.iter().position(|p| p.chan_id == chan_id);
        if let Some(i) = existing {
            if list[i].user == user {
                inner.rooms.insert(room_name, room);
                return false;
            }
        }
        let mut leaves = Map::new();
        let mut meta = user.clone();
        let new_ref = new_phx_ref();
        meta.insert("phx_ref".into(), json!(new_ref));
        if let Some(i) = existing {
            let old = list.remove(i);
            if let Some(prev) = old.meta.get("phx_ref") {
                meta.insert("phx_ref_prev".into(), prev.clone());
            }
            leaves.insert(key.clone(), metas(vec![Value::Object(old.meta)]));
        }
        list.push(Presence {
            chan_id,
            user,
            meta: meta.clone(),
        });
        let mut joins = Map::new();
        joins.insert(key, metas(vec![Value::Object(meta)]));
        fan_out(&inner, &room, None, &diff_msg(&topic, joins, leaves));
        inner.rooms.insert(room_name, room);
        true
    }

    /// Removes the presence of a channel (leave diff to everyone).
    pub fn untrack(&self, chan_id: u64) {
        let mut inner = self.lock();
        let Some(entry) = inner.chans.get(&chan_id) else {
            return;
        };
        let (room_name, topic) = (entry.room.clone(), entry.topic.clone());
        let Some(mut room) = inner.rooms.remove(&room_name) else {
            return;
        };
        let leaves = remove_presence(&mut room, chan_id);
        if !leaves.is_empty() {
            fan_out(&inner, &room, None, &diff_msg(&topic, Map::new(), leaves));
        }
        inner.rooms.insert(room_name, room);
    }

    /// `presence_state` of a room: `{key: {metas: [...]}}`.
    pub fn presence_state(&self, topic: &str, private: bool) -> Value {
        let inner = self.lock();
        let mut state = Map::new();
        if let Some(room) = inner.rooms.get(&room_key(topic, private)) {
            for (k, list) in &room.presence {
                if list.is_empty() {
                    continue;
                }
                state.insert(
                    k.clone(),
                    metas(list.iter().map(|p| Value::Object(p.meta.clone())).collect()),
                );
            }
        }
        Value::Object(state)
    }

    /// Starts a new Postgres subscription request for a channel and returns its generation;
    /// `None` if the channel is gone. Only the latest request may attach its subscriptions.
    pub fn begin_pg(&self, chan_id: u64) -> Option<u64> {
        let mut inner = self.lock();
        let entry = inner.chans.get_mut(&chan_id)?;
        entry.pg_gen += 1;
        Some(entry.pg_gen)
    }

    /// Whether the channel is still registered and `gen` is its latest subscription request.
    pub fn is_current_pg(&self, chan_id: u64, gen: u64) -> bool {
        self.lock()
            .chans
            .get(&chan_id)
            .is_some_and(|e| e.pg_gen == gen)
    }

    /// Attaches Postgres subscriptions to a channel; false if the channel is gone or a later
    /// request (generation) superseded this one.
    pub fn set_pg(&self, chan_id: u64, gen: u64, subs: Vec<PgSub>) -> bool {
        let mut inner = self.lock();
        let Some(entry) = inner.chans.get_mut(&chan_id) else {
            return false;
        };
        if entry.pg_gen != gen {
            return false;
        }
        let was = entry.pg.is_some();
        entry.pg = Some(Arc::new(subs));
        if !was {
            inner.pg_count += 1;
        }
        true
    }

    /// Replaces a channel's role and claims (after an `access_token`).
    pub fn set_claims(&self, chan_id: u64, role: &str, claims: Claims) {
        let mut inner = self.lock();
        if let Some(entry) = inner.chans.get_mut(&chan_id) {
            entry.role = role.to_string();
            entry.claims = Arc::new(claims);
        }
    }

    /// Whether any channel has Postgres subscriptions.
    pub fn has_pg(&self) -> bool {
        self.lock().pg_count > 0
    }

    /// Every channel with Postgres subscriptions.
    pub fn pg_targets(&self) -> Vec<PgTarget> {
        let inner = self.lock();
        inner
            .chans
            .iter()
            .filter_map(|(id, c)| {
                c.pg.as_ref().map(|subs| PgTarget {
                    chan_id: *id,
                    tx: c.tx.clone(),
                    topic: c.topic.clone(),
                    role: c.role.clone(),
                    claims: c.claims.clone(),
                    subs: subs.clone(),
                })
            })
            .collect()
    }
}

fn remove_presence(room: &mut Room, chan_id: u64) -> Map<String, Value> {
    let mut leaves = Map::new();
    room.presence.retain(|key, list| {
        let mut left = Vec::new();
        list.retain(|p| {
            if p.chan_id == chan_id {
                left.push(Value::Object(p.meta.clone()));
                false
            } else {
                true
            }
        });
        if !left.is_empty() {
            leaves.insert(key.clone(), metas(left));
        }
        !list.is_empty()
    });
    leaves
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::unbounded_channel;

    fn spec(id: u64, tx: UnboundedSender<Out>, key: &str) -> JoinSpec {
        JoinSpec {
            chan_id: id,
            topic: "realtime:r".into(),
            private: false,
            tx,
            self_broadcast: false,
            presence_key: key.into(),
            role: "anon".into(),
            claims: Claims::new(),
        }
    }

    fn payload(o: Out) -> Value {
        match o {
            Out::Json(m) => m.payload.clone(),
            Out::User(_) => Value::Null,
        }
    }

    #[test]
    fn only_the_latest_pg_request_attaches() {
        let hub = Hub::default();
        let (tx, _rx) = unbounded_channel();
        hub.join(spec(1, tx, "k"));
        let first = hub.begin_pg(1).unwrap();
        let second = hub.begin_pg(1).unwrap();
        assert!(!hub.is_current_pg(1, first));
        assert!(hub.is_current_pg(1, second));
        // The superseded request (e.g. the join's, before an access_token) cannot attach.
        assert!(!hub.set_pg(1, first, Vec::new()));
        assert!(!hub.has_pg());
        assert!(hub.set_pg(1, second, Vec::new()));
        assert!(hub.has_pg());
        assert_eq!(hub.pg_targets().len(), 1);
        hub.leave(1);
        assert!(!hub.has_pg());
        assert!(hub.begin_pg(1).is_none());
        assert!(!hub.is_current_pg(1, second));
    }

    #[test]
    fn presence_diffs() {
        let hub = Hub::default();
        let (tx1, mut rx1) = unbounded_channel();
        let (tx2, mut rx2) = unbounded_channel();
        hub.join(spec(1, tx1, "alice"));
        hub.join(spec(2, tx2, "bob"));
        let mut m = Map::new();
        m.insert("s".into(), json!(1));
        assert!(hub.track(1, m.clone()));
        assert!(!hub.track(1, m.clone()));
        let d1 = payload(rx1.try_recv().unwrap());
        let d2 = payload(rx2.try_recv().unwrap());
        assert_eq!(d1, d2);
        let r1 = d1["joins"]["alice"]["metas"][0]["phx_ref"].clone();
        assert!(r1.is_string());
        m.insert("s".into(), json!(2));
        assert!(hub.track(1, m));
        let d = payload(rx2.try_recv().unwrap());
        assert_eq!(d["leaves"]["alice"]["metas"][0]["phx_ref"], r1);
        assert_eq!(d["joins"]["alice"]["metas"][0]["phx_ref_prev"], r1);
        let _ = rx1.try_recv();
        let st = hub.presence_state("realtime:r", false);
        assert_eq!(st["alice"]["metas"][0]["s"], 2);
        hub.leave(1);
        let d = payload(rx2.try_recv().unwrap());
        assert_eq!(d["leaves"]["alice"]["metas"][0]["s"], 2);
        assert_eq!(hub.presence_state("realtime:r", false), json!({}));
    }
}
