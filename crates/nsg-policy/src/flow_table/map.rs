//! The flow table's hash table: open addressing with linear probing over a flat array of entries,
//! a one-byte tag per slot, deletion by backward shifting (no tombstones), and prefetch hooks for
//! batched lookups.
//!
//! Layout. `slots` holds the entries themselves (key and record together: an IPv4 flow fills one
//! 64-byte cache line), `tags` one byte per slot: 0 for a vacant slot, `0x80 | 7 bits of hash`
//! for an occupied one. A lookup reads the tags from the key's home slot on, eight at a time
//! (SWAR, no SIMD intrinsics), and compares keys only where the tag matches, so a hit usually
//! touches one tag line (1 MB of tags per million slots: mostly cache resident) and one entry
//! line. The first `GROUP` tags are mirrored after the last one so that a group read at the end
//! of the table needs no wrap-around.
//!
//! Sizes are not powers of two: the home slot is `hash × slots / 2⁶⁴` (the high half of a
//! 64×64-bit product), which lets the table grow by half at a time and keeps the load between
//! 0.57 and 0.85 (`MAX_LOAD_PERCENT`) once grown. Because the home slot is monotonic in the hash,
//! growing rehashes in nearly sequential order.

/// How many tags a probe step reads at once.
const GROUP: usize = 8;
/// The smallest table allocated.
const MIN_SLOTS: usize = 16;
/// Growth happens when an insert would take the load above `MAX_LOAD_PERCENT`.
const MAX_LOAD_PERCENT: usize = 85;

const VACANT: u8 = 0;
const LSB: u64 = 0x0101_0101_0101_0101;
const MSB: u64 = 0x8080_8080_8080_8080;

/// An entry of a [`FlowMap`]: a key and whatever goes with it, stored inline.
pub(crate) trait MapEntry: Copy {
    type Key: Copy + Eq;
    /// What fills vacant slots. Never returned as an entry.
    const VACANT: Self;
    fn key(&self) -> &Self::Key;
    /// The key's hash: its high bits choose the home slot, its low 7 bits the tag.
    fn hash(key: &Self::Key) -> u64;
}

/// A hash table of entries `E`; see the module documentation.
#[derive(Clone)]
pub(crate) struct FlowMap<E> {
    /// One per slot, then a mirror of the first `GROUP`.
    tags: Vec<u8>,
    slots: Vec<E>,
    len: usize,
    /// The most entries before the table grows.
    max_len: usize,
}

/// The tag of an occupied slot whose key hashes to `hash`.
#[inline]
fn tag_of(hash: u64) -> u8 {
    0x80 | (hash as u8 & 0x7f)
}

/// The home slot of `hash` in a table of `slots` slots.
#[inline]
fn home(hash: u64, slots: usize) -> usize {
    ((u128::from(hash) * slots as u128) >> 64) as usize
}

/// A high bit for every byte of `group` equal to `tag` (may also flag a byte above a true match,
/// never a vacant one: callers compare keys).
#[inline]
fn matches(group: u64, tag: u8) -> u64 {
    let cmp = group ^ (LSB * u64::from(tag));
    cmp.wrapping_sub(LSB) & !cmp & MSB
}

/// A high bit for every vacant byte of `group`.
#[inline]
fn vacancies(group: u64) -> u64 {
    !group & MSB
}

/// The bits below the lowest set bit of `x` (all bits when `x` is 0).
#[inline]
fn below_lowest(x: u64) -> u64 {
    x.wrapping_sub(1) & !x
}

/// Slot `i` of a table of `n` slots, for `i < 2n`.
#[inline]
fn wrap(i: usize, n: usize) -> usize {
    if i >= n {
        i - n
    } else {
        i
    }
}

/// Asks the CPU to start loading the cache line at `p` (a hint only: it never faults and has no
/// effect on the program's meaning).
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    // SAFETY: `_mm_prefetch` is unsafe to call only because it needs the `sse` target feature,
    // which this `cfg` checks is enabled for the whole build (it is part of the x86_64 baseline).
    // PREFETCHT0 does not access memory in the language's sense: it neither reads nor writes, and
    // never faults, whatever the address, so no pointer validity is needed.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = p;
}

/// Prefetches every cache line of `entry` (one for a 64-byte entry aligned to 64).
#[inline(always)]
fn prefetch_entry<E>(entry: &E) {
    const LINE: usize = 64;
    let start = (entry as *const E).cast::<u8>();
    prefetch(start);
    let end = start as usize + std::mem::size_of::<E>();
    let mut next = (start as usize | (LINE - 1)) + 1;
    while next < end {
        prefetch(start.wrapping_add(next - start as usize));
        next += LINE;
    }
}

impl<E: MapEntry> Default for FlowMap<E> {
    fn default() -> Self {
        FlowMap::new()
    }
}

impl<E: MapEntry> FlowMap<E> {
    /// An empty table; nothing is allocated until the first insert.
    pub(crate) const fn new() -> FlowMap<E> {
        FlowMap {
            tags: Vec::new(),
            slots: Vec::new(),
            len: 0,
            max_len: 0,
        }
    }

    /// An empty table that takes `entries` entries without growing.
    #[cfg(test)]
    pub(crate) fn with_capacity(entries: usize) -> FlowMap<E> {
        let mut map = FlowMap::new();
        if entries > 0 {
            map.reallocate(Self::slots_for(entries));
        }
        map
    }

    /// Enough slots for `entries` entries under the maximum load.
    fn slots_for(entries: usize) -> usize {
        (entries * 100).div_ceil(MAX_LOAD_PERCENT).max(MIN_SLOTS)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// How many entries fit before the table grows.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.max_len
    }

    /// Bytes allocated for slots and tags.
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<E>() + self.tags.capacity()
    }

    #[inline]
    fn group(&self, pos: usize) -> u64 {
        let bytes: [u8; GROUP] = self.tags[pos..pos + GROUP]
            .try_into()
            .expect("a group of tags");
        u64::from_le_bytes(bytes)
    }

    fn set_tag(&mut self, i: usize, tag: u8) {
        self.tags[i] = tag;
        if i < GROUP {
            let n = self.slots.len();
            self.tags[n + i] = tag;
        }
    }

    /// The slot holding `key`, whose hash is `hash`.
    #[inline(always)]
    pub(crate) fn find(&self, key: &E::Key, hash: u64) -> Option<usize> {
        let n = self.slots.len();
        if n == 0 {
            return None;
        }
        let tag = tag_of(hash);
        let mut pos = home(hash, n);
        loop {
            let group = self.group(pos);
            let vacant = vacancies(group);
            // Only the slots before the first vacant one continue the probe sequence.
            let mut hits = matches(group, tag) & below_lowest(vacant);
            while hits != 0 {
                let i = wrap(pos + hits.trailing_zeros() as usize / 8, n);
                if self.slots[i].key() == key {
                    return Some(i);
                }
                hits &= hits - 1;
            }
            if vacant != 0 {
                return None;
            }
            pos = wrap(pos + GROUP, n);
        }
    }

    /// Starts loading the tags a lookup of `hash` reads first.
    #[inline]
    pub(crate) fn prefetch_tags(&self, hash: u64) {
        let n = self.slots.len();
        if n != 0 {
            let pos = home(hash, n);
            let tags = self.tags[pos..pos + GROUP].as_ptr();
            prefetch(tags);
            prefetch(tags.wrapping_add(GROUP - 1));
        }
    }

    /// Starts loading the home slot of `hash`.
    #[inline]
    pub(crate) fn prefetch_home(&self, hash: u64) {
        let n = self.slots.len();
        if n != 0 {
            prefetch_entry(&self.slots[home(hash, n)]);
        }
    }

    /// Starts loading the entry a lookup of `hash` most likely ends at: the first slot with a
    /// matching tag in the probe sequence, else the vacant slot an insert would take. Reads the
    /// tags (best prefetched first, by [`FlowMap::prefetch_tags`]), not the entries.
    #[inline]
    pub(crate) fn prefetch_slot(&self, hash: u64) {
        let n = self.slots.len();
        if n == 0 {
            return;
        }
        let tag = tag_of(hash);
        let pos = home(hash, n);
        let group = self.group(pos);
        let vacant = vacancies(group);
        let hits = matches(group, tag) & below_lowest(vacant);
        let first = if hits != 0 { hits } else { vacant };
        let offset = if first != 0 {
            first.trailing_zeros() as usize / 8
        } else {
            0
        };
        prefetch_entry(&self.slots[wrap(pos + offset, n)]);
    }

    #[inline]
    pub(crate) fn get(&self, i: usize) -> &E {
        &self.slots[i]
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, i: usize) -> &mut E {
        &mut self.slots[i]
    }

    /// The first vacant slot of the probe sequence of `hash`. The table must have one.
    fn vacancy(&self, hash: u64) -> usize {
        let n = self.slots.len();
        let mut pos = home(hash, n);
        loop {
            let vacant = vacancies(self.group(pos));
            if vacant != 0 {
                return wrap(pos + vacant.trailing_zeros() as usize / 8, n);
            }
            pos = wrap(pos + GROUP, n);
        }
    }

    /// Inserts `entry`, whose key hashes to `hash` and must not be in the table yet, and returns
    /// its slot. May grow the table, which moves every entry.
    pub(crate) fn insert_new(&mut self, entry: E, hash: u64) -> usize {
        debug_assert!(self.find(entry.key(), hash).is_none(), "a duplicate key");
        if self.len >= self.max_len {
            self.grow();
        }
        self.place(entry, hash)
    }

    /// Inserts `entry` in the first vacant slot of its probe sequence (the table has room).
    fn place(&mut self, entry: E, hash: u64) -> usize {
        let i = self.vacancy(hash);
        self.set_tag(i, tag_of(hash));
        self.slots[i] = entry;
        self.len += 1;
        i
    }

    /// Inserts or replaces the entry with `entry`'s key; returns the replaced one.
    #[cfg(test)]
    pub(crate) fn insert(&mut self, entry: E) -> Option<E> {
        let hash = E::hash(entry.key());
        match self.find(entry.key(), hash) {
            Some(i) => Some(std::mem::replace(&mut self.slots[i], entry)),
            None => {
                self.insert_new(entry, hash);
                None
            }
        }
    }

    /// Removes and returns the entry in slot `i`, which must be occupied. Entries after it in its
    /// cluster move back to keep every probe sequence free of holes; other slots keep theirs.
    pub(crate) fn remove_at(&mut self, i: usize) -> E {
        assert!(self.tags[i] != VACANT, "removing a vacant slot");
        let n = self.slots.len();
        let removed = self.slots[i];
        let mut hole = i;
        let mut j = wrap(i + 1, n);
        while self.tags[j] != VACANT {
            let home = home(E::hash(self.slots[j].key()), n);
            // The entry at `j` may fill the hole unless its home lies cyclically in (hole, j].
            if wrap(j + n - home, n) >= wrap(j + n - hole, n) {
                self.slots[hole] = self.slots[j];
                self.set_tag(hole, self.tags[j]);
                hole = j;
            }
            j = wrap(j + 1, n);
        }
        self.set_tag(hole, VACANT);
        self.slots[hole] = E::VACANT;
        self.len -= 1;
        removed
    }

    /// The occupied slots with their entries, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &E)> + '_ {
        self.tags
            .iter()
            .zip(&self.slots)
            .enumerate()
            .filter(|(_, (tag, _))| **tag != VACANT)
            .map(|(i, (_, entry))| (i, entry))
    }

    /// Makes room for half as many slots again (at least `MIN_SLOTS`) and rehashes.
    #[cold]
    fn grow(&mut self) {
        let slots = Self::slots_for(self.len + 1).max(self.slots.len() + self.slots.len() / 2);
        self.reallocate(slots);
    }

    /// Moves every entry to a new table of `slots` slots.
    fn reallocate(&mut self, slots: usize) {
        let old_tags = std::mem::take(&mut self.tags);
        let old_slots = std::mem::take(&mut self.slots);
        self.tags = vec![VACANT; slots + GROUP];
        self.slots = vec![E::VACANT; slots];
        self.len = 0;
        self.max_len = slots * MAX_LOAD_PERCENT / 100;
        // In slot order the homes are nearly sorted, so the new table fills nearly in order.
        for (tag, entry) in old_tags.iter().zip(&old_slots) {
            if *tag != VACANT {
                self.place(*entry, E::hash(entry.key()));
            }
        }
    }

    /// Checks the table's invariants (tests only): counts, mirrored tags, tags agreeing with
    /// hashes, and every entry reachable from its home without crossing a vacant slot.
    #[cfg(test)]
    pub(crate) fn check(&self) {
        let n = self.slots.len();
        assert_eq!(self.tags.len(), if n == 0 { 0 } else { n + GROUP });
        assert!(self.len <= self.max_len && (n == 0 || self.max_len < n));
        assert_eq!(self.iter().count(), self.len);
        for i in 0..GROUP.min(n) {
            assert_eq!(self.tags[i], self.tags[n + i], "mirror of tag {i}");
        }
        for (i, entry) in self.iter() {
            let hash = E::hash(entry.key());
            assert_eq!(self.tags[i], tag_of(hash));
            let mut j = home(hash, n);
            while j != i {
                assert!(self.tags[j] != VACANT, "slot {i} unreachable from its home");
                j = wrap(j + 1, n);
            }
            assert_eq!(self.find(entry.key(), hash), Some(i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// A test entry whose hash is good (`CLASH == false`) or sends every key to one of four
    /// homes spread over the table, the last at its very end (so clusters wrap around).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Entry<const CLASH: bool> {
        key: u32,
        value: u64,
    }

    impl<const CLASH: bool> MapEntry for Entry<CLASH> {
        type Key = u32;
        const VACANT: Self = Entry { key: 0, value: 0 };
        fn key(&self) -> &u32 {
            &self.key
        }
        fn hash(key: &u32) -> u64 {
            if CLASH {
                let homes = [0, 1 << 62, 1 << 63, u64::MAX - 0xff];
                homes[*key as usize % 4] ^ u64::from(*key % 3)
            } else {
                let x = u64::from(*key).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                x ^ (x >> 29)
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u32, u64),
        Remove(u32),
        Get(u32),
    }

    fn ops(keys: u32) -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(
            prop_oneof![
                3 => (0..keys, any::<u64>()).prop_map(|(k, v)| Op::Insert(k, v)),
                2 => (0..keys).prop_map(Op::Remove),
                1 => (0..keys).prop_map(Op::Get),
            ],
            0..400,
        )
    }

    /// Runs `ops` on a `FlowMap` and on a `HashMap`, comparing every answer.
    fn differential<const CLASH: bool>(ops: &[Op], initial: usize) {
        let mut map: FlowMap<Entry<CLASH>> = if initial == 0 {
            FlowMap::new()
        } else {
            FlowMap::with_capacity(initial)
        };
        let mut model: HashMap<u32, u64> = HashMap::new();
        for op in ops {
            match *op {
                Op::Insert(key, value) => {
                    let old = map.insert(Entry { key, value }).map(|e| e.value);
                    assert_eq!(old, model.insert(key, value));
                }
                Op::Remove(key) => {
                    let found = map.find(&key, Entry::<CLASH>::hash(&key));
                    let removed = found.map(|i| map.remove_at(i).value);
                    assert_eq!(removed, model.remove(&key));
                }
                Op::Get(key) => {
                    let found = map.find(&key, Entry::<CLASH>::hash(&key));
                    assert_eq!(found.map(|i| map.get(i).value), model.get(&key).copied());
                }
            }
            assert_eq!(map.len(), model.len());
            map.check();
        }
        let mut entries: Vec<(u32, u64)> = map.iter().map(|(_, e)| (e.key, e.value)).collect();
        entries.sort_unstable();
        let mut expected: Vec<(u32, u64)> = model.into_iter().collect();
        expected.sort_unstable();
        assert_eq!(entries, expected);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn behaves_as_a_hash_map(ops in ops(300), initial in prop_oneof![Just(0usize), 1..64usize]) {
            differential::<false>(&ops, initial);
        }

        #[test]
        fn behaves_as_a_hash_map_when_keys_clash(ops in ops(120), initial in prop_oneof![Just(0usize), 1..64usize]) {
            differential::<true>(&ops, initial);
        }

        /// A small key space keeps the table near its maximum load through inserts and removes.
        #[test]
        fn behaves_as_a_hash_map_at_full_load(ops in ops(14)) {
            differential::<false>(&ops, 13);
            differential::<true>(&ops, 13);
        }
    }

    #[test]
    fn grows_exactly_when_full_and_keeps_every_entry() {
        let mut map: FlowMap<Entry<false>> = FlowMap::with_capacity(1000);
        let capacity = map.capacity();
        assert!(capacity >= 1000);
        let bytes = map.allocated_bytes();
        for key in 0..capacity as u32 {
            map.insert(Entry { key, value: 1 });
        }
        assert_eq!(
            map.allocated_bytes(),
            bytes,
            "filling to capacity does not grow"
        );
        assert_eq!(map.len(), capacity);
        map.check();
        map.insert(Entry {
            key: capacity as u32,
            value: 1,
        });
        assert!(map.capacity() >= capacity + capacity / 2);
        map.check();
        for key in 0..=capacity as u32 {
            let i = map.find(&key, Entry::<false>::hash(&key)).expect("kept");
            assert_eq!(map.get(i).key, key);
        }
    }

    #[test]
    fn churn_at_full_load_leaves_no_debris() {
        // Backward shifting leaves no tombstones: a million inserts and removes at full load in
        // a small table neither grow it nor slow it down.
        let mut map: FlowMap<Entry<false>> = FlowMap::with_capacity(100);
        let capacity = map.capacity();
        let bytes = map.allocated_bytes();
        for key in 0..capacity as u32 {
            map.insert(Entry { key, value: 0 });
        }
        for key in capacity as u32..1_000_000 {
            let old = key - capacity as u32;
            let i = map.find(&old, Entry::<false>::hash(&old)).expect("present");
            map.remove_at(i);
            map.insert(Entry { key, value: 0 });
        }
        map.check();
        assert_eq!(map.len(), capacity);
        assert_eq!(map.allocated_bytes(), bytes);
    }

    #[test]
    fn an_empty_map_finds_nothing() {
        let map: FlowMap<Entry<false>> = FlowMap::new();
        assert_eq!(map.find(&1, 1), None);
        map.prefetch_tags(1);
        map.prefetch_slot(1);
        assert_eq!(map.allocated_bytes(), 0);
        map.check();
    }
}
