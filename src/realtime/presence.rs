//! Presence state, kept exactly as Phoenix's `Presence` (the JS client's `syncState` /
//! `syncDiff`): one entry per key holding a list of metas (one per connection or device that
//! tracks under that key); diffs that arrive before the first `presence_state` of the current
//! join are held back and applied after it.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One tracked presence under a key: the server's reference for it and the tracked metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Presence {
    /// The server's `phx_ref` for this presence (realtime-js calls it `presence_ref`).
    pub presence_ref: String,
    /// The tracked payload, without the `phx_ref` / `phx_ref_prev` bookkeeping keys.
    pub meta: Map<String, Value>,
}

/// The presence state of a channel: key → presences (one per tracking connection).
pub type PresenceState = BTreeMap<String, Vec<Presence>>;

/// A change of presence, as realtime-js reports it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum PresenceEvent {
    /// The state was updated (after a full state or a diff).
    Sync,
    /// Presences joined under `key`. `current` is what the key held before.
    Join {
        /// The presence key.
        key: String,
        /// The presences the key held before this join.
        current: Vec<Presence>,
        /// The presences that joined.
        joined: Vec<Presence>,
    },
    /// Presences left `key`. `current` is what the key still holds.
    Leave {
        /// The presence key.
        key: String,
        /// The presences the key still holds.
        current: Vec<Presence>,
        /// The presences that left.
        left: Vec<Presence>,
    },
}

type Meta = Map<String, Value>;
type RawState = BTreeMap<String, Vec<Meta>>;

/// At most this many diffs are held back while waiting for a `presence_state`; the state that
/// ends the wait is authoritative, so dropping the oldest held diffs loses nothing lasting.
const MAX_PENDING_DIFFS: usize = 256;

#[derive(Debug, Default)]
pub(crate) struct PresenceSync {
    state: RawState,
    pending: Vec<(RawState, RawState)>,
    synced_join_ref: Option<String>,
}

fn phx_ref(m: &Meta) -> Option<&Value> {
    m.get("phx_ref")
}

fn refs(metas: &[Meta]) -> Vec<&Value> {
    metas.iter().filter_map(phx_ref).collect()
}

fn has_ref(refs: &[&Value], m: &Meta) -> bool {
    phx_ref(m).is_some_and(|r| refs.contains(&r))
}

fn view(metas: &[Meta]) -> Vec<Presence> {
    metas
        .iter()
        .map(|m| {
            let presence_ref = match m.get("phx_ref") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let mut meta = m.clone();
            meta.remove("phx_ref");
            meta.remove("phx_ref_prev");
            Presence { presence_ref, meta }
        })
        .collect()
}

/// Parses `{"<key>": {"metas": [{...}, ...]}, ...}`; entries of the wrong shape are skipped
/// with a log line.
fn parse_entries(v: Option<&Value>, what: &str) -> RawState {
    let mut out = RawState::new();
    let Some(v) = v else { return out };
    let Some(obj) = v.as_object() else {
        tracing::warn!(what, "presence payload is not an object; ignored");
        return out;
    };
    for (key, entry) in obj {
        let Some(metas) = entry.get("metas").and_then(Value::as_array) else {
            tracing::warn!(what, key, "presence entry without a `metas` list; ignored");
            continue;
        };
        let metas: Vec<Meta> = metas
            .iter()
            .filter_map(|m| {
                let m = m.as_object().cloned();
                if m.is_none() {
                    tracing::warn!(what, key, "presence meta is not an object; ignored");
                }
                m
            })
            .collect();
        out.insert(key.clone(), metas);
    }
    out
}

impl PresenceSync {
    /// The public view of the current state.
    pub(crate) fn view(&self) -> PresenceState {
        self.state
            .iter()
            .map(|(k, metas)| (k.clone(), view(metas)))
            .collect()
    }

    /// A `presence_state` push received while the channel's join reference is `join_ref`.
    pub(crate) fn on_state(&mut self, join_ref: &str, payload: &Value) -> Vec<PresenceEvent> {
        let new_state = parse_entries(Some(payload), "presence_state");
        self.synced_join_ref = Some(join_ref.to_string());
        let mut events = Vec::new();
        self.sync_state(new_state, &mut events);
        for (joins, leaves) in std::mem::take(&mut self.pending) {
            self.sync_diff(joins, leaves, &mut events);
        }
        events.push(PresenceEvent::Sync);
        events
    }

    /// A `presence_diff` received while the channel's join reference is `join_ref`.
    pub(crate) fn on_diff(&mut self, join_ref: &str, payload: &Value) -> Vec<PresenceEvent> {
        let joins = parse_entries(payload.get("joins"), "presence_diff joins");
        let leaves = parse_entries(payload.get("leaves"), "presence_diff leaves");
        if self.synced_join_ref.as_deref() != Some(join_ref) {
            if self.pending.len() >= MAX_PENDING_DIFFS {
                tracing::debug!("too many presence diffs before the first state; oldest dropped");
                self.pending.remove(0);
            }
            self.pending.push((joins, leaves));
            return Vec::new();
        }
        let mut events = Vec::new();
        self.sync_diff(joins, leaves, &mut events);
        events.push(PresenceEvent::Sync);
        events
    }

    fn sync_state(&mut self, new_state: RawState, events: &mut Vec<PresenceEvent>) {
        let mut joins = RawState::new();
        let mut leaves = RawState::new();
        for (key, current) in &self.state {
            if !new_state.contains_key(key) {
                leaves.insert(key.clone(), current.clone());
            }
        }
        for (key, new_metas) in new_state {
            match self.state.get(&key) {
                Some(current) => {
                    let new_refs = refs(&new_metas);
                    let cur_refs = refs(current);
                    let left: Vec<Meta> = current
                        .iter()
                        .filter(|m| !has_ref(&new_refs, m))
                        .cloned()
                        .collect();
                    let joined: Vec<Meta> = new_metas
                        .iter()
                        .filter(|m| !has_ref(&cur_refs, m))
                        .cloned()
                        .collect();
                    if !joined.is_empty() {
                        joins.insert(key.clone(), joined);
                    }
                    if !left.is_empty() {
                        leaves.insert(key, left);
                    }
                }
                None => {
                    joins.insert(key, new_metas);
                }
            }
        }
        self.sync_diff(joins, leaves, events);
    }

    fn sync_diff(&mut self, joins: RawState, leaves: RawState, events: &mut Vec<PresenceEvent>) {
        for (key, joined) in joins {
            let before = self.state.get(&key).cloned();
            let mut merged = Vec::new();
            if let Some(before) = &before {
                let joined_refs = refs(&joined);
                merged.extend(before.iter().filter(|m| !has_ref(&joined_refs, m)).cloned());
            }
            merged.extend(joined.iter().cloned());
            self.state.insert(key.clone(), merged);
            events.push(PresenceEvent::Join {
                key,
                current: before.as_deref().map(view).unwrap_or_default(),
                joined: view(&joined),
            });
        }
        for (key, left) in leaves {
            let Some(current) = self.state.get_mut(&key) else {
                continue;
            };
            let gone = refs(&left);
            current.retain(|m| !has_ref(&gone, m));
            let now_empty = current.is_empty();
            events.push(PresenceEvent::Leave {
                key: key.clone(),
                current: view(current),
                left: view(&left),
            });
            if now_empty {
                self.state.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refs_of(state: &PresenceState, key: &str) -> Vec<String> {
        state
            .get(key)
            .map(|v| v.iter().map(|p| p.presence_ref.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn diffs_wait_for_the_first_state_of_the_join() {
        let mut p = PresenceSync::default();
        let ev = p.on_diff(
            "1",
            &json!({"joins": {"b": {"metas": [{"phx_ref": "b1"}]}}, "leaves": {}}),
        );
        assert!(ev.is_empty());
        assert!(p.view().is_empty());
        let ev = p.on_state(
            "1",
            &json!({"a": {"metas": [{"phx_ref": "a1", "name": "A"}]}}),
        );
        assert_eq!(ev.len(), 3);
        assert!(matches!(&ev[0], PresenceEvent::Join { key, .. } if key == "a"));
        assert!(matches!(&ev[1], PresenceEvent::Join { key, .. } if key == "b"));
        assert_eq!(ev[2], PresenceEvent::Sync);
        let v = p.view();
        assert_eq!(refs_of(&v, "a"), ["a1"]);
        assert_eq!(refs_of(&v, "b"), ["b1"]);
        assert_eq!(v["a"][0].meta.get("name"), Some(&json!("A")));
        assert!(v["a"][0].meta.get("phx_ref").is_none());
    }

    #[test]
    fn an_update_is_a_leave_of_the_old_meta_and_a_join_of_the_new() {
        let mut p = PresenceSync::default();
        p.on_state(
            "1",
            &json!({"u": {"metas": [{"phx_ref": "r1", "status": "away"}]}}),
        );
        let ev = p.on_diff(
            "1",
            &json!({
                "joins": {"u": {"metas": [{"phx_ref": "r2", "phx_ref_prev": "r1", "status": "online"}]}},
                "leaves": {"u": {"metas": [{"phx_ref": "r1", "status": "away"}]}}
            }),
        );
        let PresenceEvent::Join {
            current, joined, ..
        } = &ev[0]
        else {
            panic!("join first: {ev:?}")
        };
        assert_eq!(current[0].presence_ref, "r1");
        assert_eq!(joined[0].presence_ref, "r2");
        assert!(joined[0].meta.get("phx_ref_prev").is_none());
        let PresenceEvent::Leave { current, left, .. } = &ev[1] else {
            panic!("leave second: {ev:?}")
        };
        assert_eq!(current.len(), 1);
        assert_eq!(current[0].presence_ref, "r2");
        assert_eq!(left[0].presence_ref, "r1");
        assert_eq!(ev[2], PresenceEvent::Sync);
        let v = p.view();
        assert_eq!(refs_of(&v, "u"), ["r2"]);
        assert_eq!(v["u"][0].meta.get("status"), Some(&json!("online")));
    }

    #[test]
    fn two_devices_under_one_key_keep_two_metas() {
        let mut p = PresenceSync::default();
        p.on_state("1", &json!({}));
        p.on_diff(
            "1",
            &json!({"joins": {"u": {"metas": [{"phx_ref": "d1"}]}}, "leaves": {}}),
        );
        let ev = p.on_diff(
            "1",
            &json!({"joins": {"u": {"metas": [{"phx_ref": "d2"}]}}, "leaves": {}}),
        );
        let PresenceEvent::Join {
            current, joined, ..
        } = &ev[0]
        else {
            panic!("join: {ev:?}")
        };
        assert_eq!(current.len(), 1);
        assert_eq!(joined.len(), 1);
        assert_eq!(refs_of(&p.view(), "u"), ["d1", "d2"]);
        let ev = p.on_diff(
            "1",
            &json!({"joins": {}, "leaves": {"u": {"metas": [{"phx_ref": "d1"}]}}}),
        );
        let PresenceEvent::Leave { current, .. } = &ev[0] else {
            panic!("leave: {ev:?}")
        };
        assert_eq!(current.len(), 1);
        assert_eq!(refs_of(&p.view(), "u"), ["d2"]);
        p.on_diff(
            "1",
            &json!({"joins": {}, "leaves": {"u": {"metas": [{"phx_ref": "d2"}]}}}),
        );
        assert!(p.view().is_empty());
    }

    #[test]
    fn rejoin_with_stale_state_reconciles_against_the_new_state() {
        let mut p = PresenceSync::default();
        p.on_state(
            "1",
            &json!({
                "gone": {"metas": [{"phx_ref": "g1"}]},
                "kept": {"metas": [{"phx_ref": "k1"}, {"phx_ref": "k2"}]}
            }),
        );
        // After a reconnect the channel joined again with join ref 5: a diff that arrives
        // before the new state is held back, the old state stays visible meanwhile.
        assert!(p
            .on_diff(
                "5",
                &json!({"joins": {"late": {"metas": [{"phx_ref": "l1"}]}}, "leaves": {}})
            )
            .is_empty());
        assert_eq!(p.view().len(), 2);
        let ev = p.on_state(
            "5",
            &json!({
                "kept": {"metas": [{"phx_ref": "k2"}, {"phx_ref": "k3"}]},
                "new": {"metas": [{"phx_ref": "n1"}]}
            }),
        );
        let v = p.view();
        assert!(!v.contains_key("gone"));
        assert_eq!(refs_of(&v, "kept"), ["k2", "k3"]);
        assert_eq!(refs_of(&v, "new"), ["n1"]);
        assert_eq!(refs_of(&v, "late"), ["l1"]);
        let leaves: Vec<&str> = ev
            .iter()
            .filter_map(|e| match e {
                PresenceEvent::Leave { key, .. } => Some(key.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(leaves, ["gone", "kept"]);
        assert_eq!(ev.last(), Some(&PresenceEvent::Sync));
        // Diffs of the old join are no longer held back once the new state is in.
        let ev = p.on_diff(
            "5",
            &json!({"joins": {}, "leaves": {"new": {"metas": [{"phx_ref": "n1"}]}}}),
        );
        assert_eq!(ev.len(), 2);
        assert!(!p.view().contains_key("new"));
    }

    #[test]
    fn malformed_entries_are_skipped() {
        let mut p = PresenceSync::default();
        let ev = p.on_state(
            "1",
            &json!({"a": {"metas": [{"phx_ref": "a1"}, 5]}, "b": {"nometas": []}, "c": 3}),
        );
        assert_eq!(ev.len(), 2);
        assert_eq!(refs_of(&p.view(), "a"), ["a1"]);
        assert!(p
            .on_state("1", &json!([1, 2]))
            .contains(&PresenceEvent::Sync));
        let ev = p.on_diff("1", &json!("nonsense"));
        assert_eq!(ev, vec![PresenceEvent::Sync]);
    }

    #[test]
    fn leave_of_an_unknown_key_is_ignored() {
        let mut p = PresenceSync::default();
        p.on_state("1", &json!({}));
        let ev = p.on_diff(
            "1",
            &json!({"leaves": {"x": {"metas": [{"phx_ref": "x"}]}}}),
        );
        assert_eq!(ev, vec![PresenceEvent::Sync]);
    }

    #[test]
    fn pending_diffs_are_bounded() {
        let mut p = PresenceSync::default();
        for i in 0..(MAX_PENDING_DIFFS + 10) {
            p.on_diff(
                "1",
                &json!({"joins": {format!("k{i}"): {"metas": [{"phx_ref": i}]}}}),
            );
        }
        assert_eq!(p.pending.len(), MAX_PENDING_DIFFS);
        p.on_state("1", &json!({}));
        assert_eq!(p.view().len(), MAX_PENDING_DIFFS);
        assert!(!p.view().contains_key("k0"));
    }
}
