//! The ordering and exactly-once core shared by the message and conversation feeds, free of I/O
//! so that it can be tested exhaustively.
//!
//! Rows arrive from three places: live `INSERT` and `UPDATE` changes, and REST catch-up queries.
//! The ledger
//!
//! * orders rows by a key `(timestamp, id)` — `created_at` for messages (one key per message),
//!   `updated_at` for conversations (one key per version);
//! * holds every row for a *reorder window* after the feed first saw it, so that a row whose
//!   transaction committed a little after one that started later still comes out in key order;
//! * releases rows in key order and remembers the key of the last one released (the
//!   *watermark*); while a catch-up query is running, releasing is paused, so that rows the query
//!   finds can still be put in front of rows that arrived live meanwhile;
//! * remembers every id it has delivered with its version (`updated_at`) and a hash of its
//!   content, for the feed's lifetime, so nothing is delivered twice as new, and an update is
//!   delivered only when it is newer than what the consumer has;
//! * delivers a never-seen row whose key is at or below the watermark at once, flagged `late`,
//!   instead of dropping it: exactly once wins over order.

use chrono::{DateTime, Utc};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

use crate::chat::models::{Conversation, Message};

/// The position of a row in a feed: its ordering timestamp, then its id.
pub(crate) type Key = (DateTime<Utc>, Uuid);

/// A row a feed delivers.
pub(crate) trait FeedRow: Clone + serde::Serialize + Send + Sync + 'static {
    fn row_id(&self) -> Uuid;
    fn row_created_at(&self) -> Option<DateTime<Utc>>;
    fn row_updated_at(&self) -> Option<DateTime<Utc>>;
}

impl FeedRow for Message {
    fn row_id(&self) -> Uuid {
        self.id
    }
    fn row_created_at(&self) -> Option<DateTime<Utc>> {
        self.created_at
    }
    fn row_updated_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }
}

impl FeedRow for Conversation {
    fn row_id(&self) -> Uuid {
        self.id
    }
    fn row_created_at(&self) -> Option<DateTime<Utc>> {
        self.created_at
    }
    fn row_updated_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }
}

/// Which timestamp orders the feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// `created_at`: one key per row; later versions are updates delivered as they come.
    Created,
    /// `updated_at`: one key per version; versions are released in order too.
    Updated,
}

/// The key of a row in a feed ordered by `order` (`None` without the ordering timestamp).
pub(crate) fn key_of<R: FeedRow>(order: Order, row: &R) -> Option<Key> {
    let ts = match order {
        Order::Created => row.row_created_at(),
        Order::Updated => row.row_updated_at(),
    };
    ts.map(|t| (t, row.row_id()))
}

/// Where a row came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A live `INSERT`.
    Insert,
    /// A live `UPDATE`.
    Update,
    /// A catch-up query.
    Fetched,
}

/// What the consumer is told.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Out<R> {
    /// A row the consumer has not had before.
    New { row: R, late: bool },
    /// A newer version of a row the consumer has (or that existed before the feed started).
    Updated { row: R },
}

/// What [`Ledger::offer`] did with a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Already delivered in this version (or older): dropped.
    Duplicate,
    /// Held for ordered release; `fresh` when the feed had neither delivered nor held it.
    Held { fresh: bool },
    /// Delivered at once (returned outputs).
    Emitted,
    /// The row was deleted earlier: dropped.
    Deleted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    version: Option<DateTime<Utc>>,
    hash: u64,
}

#[derive(Clone, Debug)]
struct Held<R> {
    row: R,
    hash: u64,
    visible: Instant,
    insert: bool,
    /// Later versions of a held message (ordered by `created_at`), delivered as updates right
    /// after it, as the hook would have seen them.
    updates: Vec<(R, u64)>,
}

pub(crate) fn content_hash<R: serde::Serialize>(row: &R) -> u64 {
    let mut h = DefaultHasher::new();
    match serde_json::to_vec(row) {
        Ok(bytes) => bytes.hash(&mut h),
        // Cannot happen for the models (plain data); a constant still dedups by version.
        Err(_) => 0u8.hash(&mut h),
    }
    h.finish()
}

/// Whether a version is newer than the one the consumer has: a later `updated_at`, or the
/// same (or an unknown) `updated_at` with different content (several updates in one
/// transaction share `updated_at`).
fn is_newer(version: Option<DateTime<Utc>>, hash: u64, seen: &Seen) -> bool {
    match (version, seen.version) {
        (Some(v), Some(s)) if v != s => v > s,
        _ => hash != seen.hash,
    }
}

pub(crate) struct Ledger<R> {
    order: Order,
    window: Duration,
    watermark: Option<Key>,
    preexisting_until: Option<DateTime<Utc>>,
    known: HashMap<Uuid, Seen>,
    held: BTreeMap<Key, Held<R>>,
    /// How many entries of `held` each id has (several versions of a conversation can be
    /// held at once).
    held_ids: HashMap<Uuid, u32>,
    tombstones: HashSet<Uuid>,
    paused: bool,
    late: u64,
}

impl<R: FeedRow> Ledger<R> {
    pub(crate) fn new(order: Order, window: Duration) -> Self {
        Ledger {
            order,
            window,
            watermark: None,
            preexisting_until: None,
            known: HashMap::new(),
            held: BTreeMap::new(),
            held_ids: HashMap::new(),
            tombstones: HashSet::new(),
            paused: false,
            late: 0,
        }
    }

    /// Where the feed starts: rows at or below `watermark` are not delivered as new when they
    /// come back through a catch-up query; rows created at or before `preexisting_until` that
    /// the ledger does not know existed before the feed (their changes are updates).
    pub(crate) fn start_at(
        &mut self,
        watermark: Option<Key>,
        preexisting_until: Option<DateTime<Utc>>,
    ) {
        self.watermark = watermark;
        self.preexisting_until = preexisting_until;
    }

    /// Records a row that exists before the feed starts, without delivering it.
    pub(crate) fn seed(&mut self, row: &R) {
        self.known.insert(
            row.row_id(),
            Seen {
                version: row.row_updated_at(),
                hash: content_hash(row),
            },
        );
    }

    pub(crate) fn watermark(&self) -> Option<Key> {
        self.watermark
    }

    pub(crate) fn late_count(&self) -> u64 {
        self.late
    }

    pub(crate) fn known_ids(&self) -> Vec<Uuid> {
        self.known.keys().copied().collect()
    }

    pub(crate) fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    fn above_watermark(&self, key: Key) -> bool {
        self.watermark.is_none_or(|w| key > w)
    }

    fn preexisting(&self, row: &R) -> bool {
        match (self.preexisting_until, row.row_created_at()) {
            (Some(until), Some(created)) => created <= until,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// The first delivery of a row the ledger did not know.
    fn first_sight(&mut self, row: R, hash: u64, insert: bool, late: bool) -> Out<R> {
        self.known.insert(
            row.row_id(),
            Seen {
                version: row.row_updated_at(),
                hash,
            },
        );
        if insert || !self.preexisting(&row) {
            if late {
                self.late += 1;
            }
            Out::New { row, late }
        } else {
            Out::Updated { row }
        }
    }

    fn hold(&mut self, key: Key, row: R, hash: u64, origin: Origin, now: Instant) -> bool {
        let insert = origin == Origin::Insert;
        let order = self.order;
        match self.held.get_mut(&key) {
            Some(h) => {
                h.insert |= insert;
                match order {
                    Order::Created => {
                        // A later version of a held message: kept, to follow it as an update.
                        let (latest, latest_hash) = h
                            .updates
                            .last()
                            .map(|(r, hh)| (r.row_updated_at(), *hh))
                            .unwrap_or((h.row.row_updated_at(), h.hash));
                        let seen = Seen {
                            version: latest,
                            hash: latest_hash,
                        };
                        if is_newer(row.row_updated_at(), hash, &seen) {
                            h.updates.push((row, hash));
                        }
                    }
                    Order::Updated => {
                        // The same version key twice: a later state of the same transaction;
                        // the newest content wins.
                        let newer = match (row.row_updated_at(), h.row.row_updated_at()) {
                            (Some(a), Some(b)) => a >= b,
                            _ => true,
                        };
                        if newer {
                            h.row = row;
                            h.hash = hash;
                        }
                    }
                }
                false
            }
            None => {
                *self.held_ids.entry(key.1).or_insert(0) += 1;
                self.held.insert(
                    key,
                    Held {
                        row,
                        hash,
                        visible: now,
                        insert,
                        updates: Vec::new(),
                    },
                );
                true
            }
        }
    }

    /// Takes a row in; returns what must be delivered at once (a late row, or an update of a
    /// message) and what happened to it.
    pub(crate) fn offer(
        &mut self,
        row: R,
        origin: Origin,
        now: Instant,
    ) -> (Vec<Out<R>>, Disposition) {
        let id = row.row_id();
        if self.tombstones.contains(&id) {
            return (Vec::new(), Disposition::Deleted);
        }
        let hash = content_hash(&row);
        let version = row.row_updated_at();
        let key = key_of(self.order, &row);
        if let Some(seen) = self.known.get(&id).copied() {
            if !is_newer(version, hash, &seen) {
                return (Vec::new(), Disposition::Duplicate);
            }
            return match (self.order, key) {
                (Order::Updated, Some(k)) if self.above_watermark(k) => {
                    self.hold(k, row, hash, origin, now);
                    (Vec::new(), Disposition::Held { fresh: false })
                }
                // An update of a message, or a version at or below the watermark: at once.
                _ => {
                    self.known.insert(id, Seen { version, hash });
                    (vec![Out::Updated { row }], Disposition::Emitted)
                }
            };
        }
        match key {
            Some(k) if self.above_watermark(k) => {
                let fresh = match self.order {
                    Order::Created => self.hold(k, row, hash, origin, now),
                    Order::Updated => {
                        let any_held = self.held_ids.contains_key(&id);
                        self.hold(k, row, hash, origin, now) && !any_held
                    }
                };
                (Vec::new(), Disposition::Held { fresh })
            }
            _ => {
                // At or below the watermark and never delivered: a row whose transaction
                // committed late, or (for an update) a row older than the feed.
                let insert = origin == Origin::Insert;
                let out = self.first_sight(row, hash, insert, true);
                (vec![out], Disposition::Emitted)
            }
        }
    }

    /// Forgets a deleted row: drops held versions and ignores it from now on. Returns whether
    /// the consumer had it (or was about to).
    pub(crate) fn delete(&mut self, id: Uuid) -> bool {
        let was_known = self.known.remove(&id).is_some();
        let was_held = self.held_ids.remove(&id).is_some();
        if was_held {
            self.held.retain(|(_, i), _| *i != id);
        }
        self.tombstones.insert(id);
        was_known || was_held
    }

    /// Whether some held row has a key at or below `key`.
    pub(crate) fn holds_at_or_below(&self, key: Key) -> bool {
        self.held.range(..=key).next().is_some()
    }

    /// When the next held row becomes releasable (none while paused or empty).
    pub(crate) fn next_release_at(&self) -> Option<Instant> {
        if self.paused {
            return None;
        }
        self.held.values().map(|h| h.visible + self.window).min()
    }

    /// Releases, in key order, every held row up to the greatest one whose window has passed.
    pub(crate) fn release(&mut self, now: Instant) -> Vec<Out<R>> {
        if self.paused {
            return Vec::new();
        }
        let Some(max) = self
            .held
            .iter()
            .filter(|(_, h)| h.visible + self.window <= now)
            .map(|(k, _)| *k)
            .next_back()
        else {
            return Vec::new();
        };
        let mut rest = self.held.split_off(&max);
        let top = rest.remove(&max);
        let released = std::mem::replace(&mut self.held, rest);
        let mut out = Vec::new();
        for (key, h) in released.into_iter().chain(top.map(|h| (max, h))) {
            self.unindex_held(key.1);
            self.watermark = Some(key);
            let id = h.row.row_id();
            match self.known.get(&id).copied() {
                Some(_) => self.update_known(h.row, h.hash, &mut out),
                None => out.push(self.first_sight(h.row, h.hash, h.insert, false)),
            }
            for (row, hash) in h.updates {
                self.update_known(row, hash, &mut out);
            }
        }
        out
    }

    /// Counts one entry of `id` out of `held_ids`.
    fn unindex_held(&mut self, id: Uuid) {
        if let Some(n) = self.held_ids.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.held_ids.remove(&id);
            }
        }
    }

    /// Delivers a version of a known row if it is newer than the consumer's.
    fn update_known(&mut self, row: R, hash: u64, out: &mut Vec<Out<R>>) {
        let id = row.row_id();
        let version = row.row_updated_at();
        if self
            .known
            .get(&id)
            .is_some_and(|seen| is_newer(version, hash, seen))
        {
            self.known.insert(id, Seen { version, hash });
            out.push(Out::Updated { row });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use serde::Serialize;

    #[derive(Clone, Debug, PartialEq, Serialize)]
    struct Row {
        id: Uuid,
        created: Option<DateTime<Utc>>,
        updated: Option<DateTime<Utc>>,
        body: u32,
    }

    impl FeedRow for Row {
        fn row_id(&self) -> Uuid {
            self.id
        }
        fn row_created_at(&self) -> Option<DateTime<Utc>> {
            self.created
        }
        fn row_updated_at(&self) -> Option<DateTime<Utc>> {
            self.updated
        }
    }

    fn ts(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_780_000_000_000 + ms)
            .single()
            .unwrap_or_default()
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn row(n: u128, created: i64) -> Row {
        Row {
            id: id(n),
            created: Some(ts(created)),
            updated: Some(ts(created)),
            body: 0,
        }
    }

    fn new_ids(out: &[Out<Row>]) -> Vec<(u128, bool)> {
        out.iter()
            .filter_map(|o| match o {
                Out::New { row, late } => Some((row.id.as_u128(), *late)),
                _ => None,
            })
            .collect()
    }

    const W: Duration = Duration::from_millis(100);

    #[test]
    fn rows_are_released_in_key_order_after_the_window() {
        let t0 = Instant::now();
        let mut l = Ledger::new(Order::Created, W);
        l.offer(row(2, 20), Origin::Insert, t0);
        l.offer(row(1, 10), Origin::Insert, t0 + Duration::from_millis(50));
        assert!(l.release(t0 + Duration::from_millis(99)).is_empty());
        assert_eq!(l.next_release_at(), Some(t0 + W));
        // Row 2's window has passed; row 1 is smaller, so it goes first.
        let out = l.release(t0 + W);
        assert_eq!(new_ids(&out), vec![(1, false), (2, false)]);
        assert_eq!(l.watermark(), Some((ts(20), id(2))));
    }

    #[test]
    fn duplicates_from_catch_up_and_live_are_dropped() {
        let t0 = Instant::now();
        let mut l = Ledger::new(Order::Created, Duration::ZERO);
        l.offer(row(1, 10), Origin::Fetched, t0);
        l.offer(row(1, 10), Origin::Insert, t0);
        assert_eq!(new_ids(&l.release(t0)), vec![(1, false)]);
        let (out, d) = l.offer(row(1, 10), Origin::Insert, t0);
        assert!(out.is_empty());
        assert_eq!(d, Disposition::Duplicate);
    }

    #[test]
    fn a_row_below_the_watermark_is_delivered_late_not_dropped() {
        let t0 = Instant::now();
        let mut l = Ledger::new(Order::Created, Duration::ZERO);
        l.offer(row(2, 20), Origin::Insert, t0);
        l.release(t0);
        let (out, d) = l.offer(row(1, 10), Origin::Insert, t0);
        assert_eq!(d, Disposition::Emitted);
        assert_eq!(new_ids(&out), vec![(1, true)]);
        assert_eq!(l.late_count(), 1);
    }

    #[test]
    fn paused_ledgers_hold_everything() {
        let t0 = Instant::now();
        let mut l = Ledger::new(Order::Created, Duration::ZERO);
        l.set_paused(true);
        l.offer(row(3, 30), Origin::Insert, t0);
        assert!(l.release(t0 + W).is_empty());
        assert_eq!(l.next_release_at(), None);
        l.offer(row(2, 20), Origin::Fetched, t0 + W);
        l.set_paused(false);
        assert_eq!(new_ids(&l.release(t0 + W)), vec![(2, false), (3, false)]);
    }

    #[test]
    fn message_updates_are_delivered_when_newer_only() {
        let t0 = Instant::now();
        let mut l = Ledger::new(Order::Created, Duration::ZERO);
        l.offer(row(1, 10), Origin::Insert, t0);
        l.release(t0);
        let mut v2 = row(1, 10);
        v2.updated = Some(ts(50));
        v2.body = 2;
        let (out, _) = l.offer(v2.clone(), Origin::Update, t0);
        assert_eq!(out, vec![Out::Updated { row: v2.clone() }]);
        // The same version again (from a catch-up query): nothing.
        assert!(l.offer(v2.clone(), Origin::Fetched, t0).0.is_empty());
        // An older version arriving afterwards: nothing.
        assert!(l.offer(row(1, 10), Origin::Fetched, t0).0.is_empty());
        // Same updated_at, different content (two updates in one transaction): delivered.
        let mut v3 = v2.clone();
        v3.body = 3;
        assert_eq!(l.offer(v3, Origin::Update, t0).0.len(), 1);
    }

    #[test]
    fn updates_of_a_held_message_follow_it() {
        let t0 = Instant::now();
        let mut l = Ledger::new(Order::Created, W);
        l.offer(row(1, 10), Origin::Insert, t0);
        let mut v2 = row(1, 10);
        v2.updated = Some(ts(11));
        v2.body = 7;
        let (out, d) = l.offer(v2.clone(), Origin::Update, t0);
        assert!(out.is_empty());
        assert_eq!(d, Disposition::Held { fresh: false });
        // The same version again (a catch-up), and an older one: nothing more.
        l.offer(v2.clone(), Origin::Fetched, t0);
        l.offer(row(1, 10), Origin::Fetched, t0);
        assert_eq!(
            l.release(t0 + W),
            vec![
                Out::New {
                    row: row(1, 10),
                    late: false
                },
                Out::Updated { row: v2 }
            ]
        );
    }

    #[test]
    fn rows_older_than_the_feed_are_updates_not_news() {
        let t0 = Instant::now();
        let mut l = Ledger::new(Order::Created, Duration::ZERO);
        l.start_at(Some((ts(100), id(9))), Some(ts(50)));
        let mut old = row(1, 10);
        old.updated = Some(ts(200));
        let (out, _) = l.offer(old.clone(), Origin::Update, t0);
        assert_eq!(out, vec![Out::Updated { row: old }]);
        // Created after `preexisting_until` but below the watermark and unknown: a late commit.
        let (out, _) = l.offer(row(2, 60), Origin::Fetched, t0);
        assert_eq!(new_ids(&out), vec![(2, true)]);
    }

    #[test]
    fn conversation_versions_are_released_in_order_and_stale_ones_dropped() {
        let t0 = Instant::now();
        let mut l = Ledger::new(Order::Updated, W);
        let mut c = row(1, 10);
        l.offer(c.clone(), Origin::Insert, t0);
        c.updated = Some(ts(30));
        c.body = 1;
        l.offer(c.clone(), Origin::Update, t0);
        let out = l.release(t0 + W);
        assert_eq!(out.len(), 2);
        assert!(matches!(&out[0], Out::New { row, .. } if row.body == 0));
        assert!(matches!(&out[1], Out::Updated { row, .. } if row.body == 1));
        // The first version again, from a catch-up: stale.
        assert_eq!(
            l.offer(row(1, 10), Origin::Fetched, t0).1,
            Disposition::Duplicate
        );
        assert!(l.delete(id(1)));
        assert_eq!(l.offer(c, Origin::Fetched, t0).1, Disposition::Deleted);
    }

    // A random schedule: rows with distinct keys arrive live (in an order that is the key
    // order perturbed by at most `skew` positions), are dropped by "disconnects", or come back
    // through catch-up queries. Whatever happens, each row is delivered at most once as new,
    // non-late rows come in key order, and after a final catch-up every row was delivered.
    proptest! {
        #[test]
        fn exactly_once_and_in_order(
            n in 1usize..60,
            seed in any::<u64>(),
            lost in proptest::collection::vec(any::<bool>(), 60),
            catchups in proptest::collection::vec(0usize..60, 0..5),
        ) {
            let t0 = Instant::now();
            let mut l = Ledger::new(Order::Created, Duration::from_millis(10));
            let rows: Vec<Row> = (0..n).map(|i| row(i as u128 + 1, i as i64 * 10)).collect();
            // Arrival order: key order with neighbours swapped pseudo-randomly.
            let mut order: Vec<usize> = (0..n).collect();
            let mut s = seed;
            for i in 1..n {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if s >> 63 == 1 {
                    order.swap(i - 1, i);
                }
            }
            let mut delivered: Vec<(u128, bool)> = Vec::new();
            let mut now = t0;
            let mut arrived = Vec::new();
            for (step, &i) in order.iter().enumerate() {
                now += Duration::from_millis(1);
                if !lost[i] {
                    delivered.extend(new_ids(&l.offer(rows[i].clone(), Origin::Insert, now).0));
                }
                arrived.push(i);
                if catchups.contains(&step) {
                    // A catch-up sees every row committed so far.
                    l.set_paused(true);
                    for &j in &arrived {
                        delivered.extend(new_ids(&l.offer(rows[j].clone(), Origin::Fetched, now).0));
                    }
                    l.set_paused(false);
                }
                delivered.extend(new_ids(&l.release(now)));
            }
            for r in &rows {
                delivered.extend(new_ids(&l.offer(r.clone(), Origin::Fetched, now).0));
            }
            now += Duration::from_secs(1);
            delivered.extend(new_ids(&l.release(now)));
            let mut ids: Vec<u128> = delivered.iter().map(|(i, _)| *i).collect();
            ids.sort_unstable();
            let expected: Vec<u128> = (1..=n as u128).collect();
            prop_assert_eq!(ids, expected);
            let in_order: Vec<u128> = delivered.iter().filter(|(_, late)| !late).map(|(i, _)| *i).collect();
            prop_assert!(in_order.windows(2).all(|w| w[0] < w[1]), "{:?}", delivered);
        }
    }
}
