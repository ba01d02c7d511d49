//! A generation-checked slab: the table behind every id the core hands out.
//!
//! TDI objects never hold pointers into the core; they hold a [`Key`] — a slot index plus the
//! generation the slot had when the value was inserted. Removing a value bumps the slot's
//! generation and puts the slot on a free list, so every key issued for the old value stops
//! matching: a stale key (a work item for an endpoint that has since been closed) or a forged
//! one (garbage in a file object) looks up as `None`, never as somebody else's value, and never
//! panics.
//!
//! # Generation wrap-around
//!
//! Generations are 32 bits. A slot whose generation would wrap (its value removed while the
//! generation is `u32::MAX`) is *retired*: it stays vacant and off the free list forever, so a
//! key can never match a value it was not issued for, however old it is. The cost is one unused
//! slot per 2³² reuses of that slot.
//!
//! # Complexity
//!
//! `get`, `get_mut`, `contains` and `remove` are O(1); `try_insert` is O(1) amortised (it
//! reuses the most recently freed slot, and otherwise grows the slot vector fallibly).
//! Iteration is O(slots). Memory is never returned to the pool while the slab lives: the slot
//! count is the high-water mark of simultaneous values.
#![forbid(unsafe_code)]

use crate::nt::NtStatus;
use crate::nt::pool::{try_push, try_reserve};
use alloc::vec::Vec;

/// A handle to a value in a [`Slab`]: the slot index and the slot's generation when the value
/// was inserted. Plain data: it may be stored anywhere (file objects, work items) and is
/// validated on every use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub index: u32,
    pub generation: u32,
}

enum Slot<T> {
    Occupied {
        generation: u32,
        value: T,
    },
    /// On the free list; the next value stored here gets `generation`.
    Vacant {
        generation: u32,
        next_free: Option<u32>,
    },
    /// The generation is exhausted: never used again.
    Retired,
}

/// A slab of `T` addressed by generation-checked [`Key`]s. See the module documentation.
pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    /// Head of the LIFO list of vacant slots, threaded through `Slot::Vacant::next_free`.
    free_head: Option<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Slab<T> {
    /// An empty slab; allocates nothing until the first insertion. Any IRQL.
    pub const fn new() -> Self {
        Slab {
            slots: Vec::new(),
            free_head: None,
            len: 0,
        }
    }

    /// Makes room for one more value: the next [`try_insert`](Self::try_insert) then finds a
    /// vacant slot or grows the slot vector without allocating. Any IRQL ≤ DISPATCH_LEVEL.
    pub fn reserve_one(&mut self) -> Result<(), NtStatus> {
        if self.free_head.is_some() || self.slots.len() < self.slots.capacity() {
            return Ok(());
        }
        let more = self.slots.capacity().max(4);
        try_reserve(&mut self.slots, more)
    }

    /// Stores `value` and returns its key. Reuses a vacant slot if there is one, otherwise grows
    /// the slot vector; if that growth fails (or the slab already has 2³² slots), `value` is
    /// dropped and `STATUS_INSUFFICIENT_RESOURCES` is returned. Any IRQL ≤ DISPATCH_LEVEL.
    pub fn try_insert(&mut self, value: T) -> Result<Key, NtStatus> {
        if let Some(index) = self.free_head
            && let Some(slot) = self.slots.get_mut(index as usize)
            && let Slot::Vacant {
                generation,
                next_free,
            } = *slot
        {
            self.free_head = next_free;
            *slot = Slot::Occupied { generation, value };
            self.len = self.len.saturating_add(1);
            return Ok(Key { index, generation });
        }
        // The free list is empty (a corrupt head would also land here: it is dropped rather
        // than followed).
        self.free_head = None;
        let index =
            u32::try_from(self.slots.len()).map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        try_push(
            &mut self.slots,
            Slot::Occupied {
                generation: 0,
                value,
            },
        )?;
        self.len = self.len.saturating_add(1);
        Ok(Key {
            index,
            generation: 0,
        })
    }

    /// The value `key` was issued for, or `None` if it has been removed (or `key` was never
    /// issued by this slab). Any IRQL.
    pub fn get(&self, key: Key) -> Option<&T> {
        match self.slots.get(key.index as usize)? {
            Slot::Occupied { generation, value } if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// Like [`Slab::get`], mutably. Any IRQL.
    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        match self.slots.get_mut(key.index as usize)? {
            Slot::Occupied { generation, value } if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// The key of the value in slot `index`, if the slot is occupied. For holders that keep
    /// only the index of an entry that cannot be freed while they hold it (a file object's
    /// entry lives until its CLOSE). Any IRQL.
    pub fn key_at(&self, index: u32) -> Option<Key> {
        match self.slots.get(index as usize)? {
            Slot::Occupied { generation, .. } => Some(Key {
                index,
                generation: *generation,
            }),
            _ => None,
        }
    }

    /// One past the highest slot index ever used: iterate `0..slot_count()` with
    /// [`Slab::key_at`] to visit every value without borrowing the slab (and without
    /// allocating a list of keys). Any IRQL.
    pub fn slot_count(&self) -> u32 {
        u32::try_from(self.slots.len()).unwrap_or(u32::MAX)
    }

    /// Whether `key` refers to a live value. Any IRQL.
    pub fn contains(&self, key: Key) -> bool {
        self.get(key).is_some()
    }

    /// Takes the value out and invalidates `key` (and every copy of it): the slot's generation
    /// is bumped and the slot goes to the free list, or is retired if its generation is
    /// exhausted. `None` for a stale or forged key. Any IRQL ≤ DISPATCH_LEVEL (dropping the
    /// returned value is the caller's business).
    pub fn remove(&mut self, key: Key) -> Option<T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        match slot {
            Slot::Occupied { generation, .. } if *generation == key.generation => {}
            _ => return None,
        }
        let replacement = match key.generation.checked_add(1) {
            Some(generation) => Slot::Vacant {
                generation,
                next_free: self.free_head,
            },
            None => Slot::Retired,
        };
        let Slot::Occupied { value, .. } = ::core::mem::replace(slot, replacement) else {
            return None;
        };
        if matches!(slot, Slot::Vacant { .. }) {
            self.free_head = Some(key.index);
        }
        self.len = self.len.saturating_sub(1);
        Some(value)
    }

    /// The number of live values. Any IRQL.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no live values. Any IRQL.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The live values with their keys, in slot order. Any IRQL.
    pub fn iter(&self) -> impl Iterator<Item = (Key, &T)> {
        self.slots.iter().enumerate().filter_map(|(index, slot)| {
            let Slot::Occupied { generation, value } = slot else {
                return None;
            };
            let index = u32::try_from(index).ok()?;
            Some((
                Key {
                    index,
                    generation: *generation,
                },
                value,
            ))
        })
    }

    /// The live values with their keys, mutably, in slot order. Any IRQL.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Key, &mut T)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(index, slot)| {
                let Slot::Occupied { generation, value } = slot else {
                    return None;
                };
                let index = u32::try_from(index).ok()?;
                Some((
                    Key {
                        index,
                        generation: *generation,
                    },
                    value,
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn insert_get_remove() {
        let mut slab = Slab::new();
        assert!(slab.is_empty());
        let a = slab.try_insert("a").unwrap();
        let b = slab.try_insert("b").unwrap();
        assert_eq!(slab.len(), 2);
        assert_eq!(slab.get(a), Some(&"a"));
        assert_eq!(slab.get(b), Some(&"b"));
        *slab.get_mut(b).unwrap() = "B";
        assert_eq!(slab.remove(b), Some("B"));
        assert!(!slab.contains(b));
        assert_eq!(slab.get(b), None);
        assert_eq!(slab.get_mut(b), None);
        assert_eq!(slab.remove(b), None, "a second remove is a no-op");
        assert_eq!(slab.len(), 1);
        assert!(slab.contains(a));
    }

    #[test]
    fn reuse_bumps_generation() {
        let mut slab = Slab::new();
        let first = slab.try_insert(1).unwrap();
        slab.remove(first).unwrap();
        let second = slab.try_insert(2).unwrap();
        assert_eq!(second.index, first.index, "the freed slot is reused");
        assert_eq!(second.generation, first.generation + 1);
        assert_eq!(
            slab.get(first),
            None,
            "the stale key does not see the new value"
        );
        assert_eq!(slab.remove(first), None);
        assert_eq!(slab.get(second), Some(&2));
    }

    #[test]
    fn free_list_is_lifo() {
        let mut slab = Slab::new();
        let keys: Vec<Key> = (0..4).map(|v| slab.try_insert(v).unwrap()).collect();
        slab.remove(keys[1]).unwrap();
        slab.remove(keys[3]).unwrap();
        assert_eq!(slab.try_insert(10).unwrap().index, 3);
        assert_eq!(slab.try_insert(11).unwrap().index, 1);
        assert_eq!(slab.try_insert(12).unwrap().index, 4);
    }

    #[test]
    fn forged_keys_are_none() {
        let mut slab = Slab::new();
        let key = slab.try_insert(7u8).unwrap();
        for forged in [
            Key {
                index: key.index,
                generation: key.generation + 1,
            },
            Key {
                index: 1,
                generation: 0,
            },
            Key {
                index: u32::MAX,
                generation: u32::MAX,
            },
        ] {
            assert_eq!(slab.get(forged), None);
            assert_eq!(slab.get_mut(forged), None);
            assert!(!slab.contains(forged));
            assert_eq!(slab.remove(forged), None);
        }
        assert_eq!(slab.len(), 1);
        let empty: Slab<u8> = Slab::default();
        assert_eq!(empty.get(key), None);
    }

    #[test]
    fn exhausted_generation_retires_the_slot() {
        let mut slab = Slab::new();
        let key = slab.try_insert('x').unwrap();
        slab.remove(key).unwrap();
        // Fast-forward the vacant slot to the last generation.
        slab.slots[0] = Slot::Vacant {
            generation: u32::MAX,
            next_free: None,
        };
        let last = slab.try_insert('y').unwrap();
        assert_eq!(
            last,
            Key {
                index: 0,
                generation: u32::MAX
            }
        );
        assert_eq!(slab.remove(last), Some('y'));
        assert!(matches!(slab.slots[0], Slot::Retired));
        let next = slab.try_insert('z').unwrap();
        assert_eq!(next.index, 1, "the retired slot is not reused");
        for generation in [0, 1, u32::MAX] {
            assert_eq!(
                slab.get(Key {
                    index: 0,
                    generation
                }),
                None
            );
        }
        assert_eq!(slab.len(), 1);
        assert_eq!(slab.iter().map(|(k, _)| k).collect::<Vec<_>>(), vec![next]);
    }

    #[test]
    fn iteration_skips_vacant_and_yields_keys() {
        let mut slab = Slab::new();
        let keys: Vec<Key> = (0..5).map(|v| slab.try_insert(v * 10).unwrap()).collect();
        slab.remove(keys[0]).unwrap();
        slab.remove(keys[3]).unwrap();
        let seen: Vec<(Key, i32)> = slab.iter().map(|(k, v)| (k, *v)).collect();
        assert_eq!(seen, vec![(keys[1], 10), (keys[2], 20), (keys[4], 40)]);
        for (_, value) in slab.iter_mut() {
            *value += 1;
        }
        assert_eq!(slab.get(keys[4]), Some(&41));
        assert_eq!(
            slab.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            vec![keys[1], keys[2], keys[4]]
        );
    }

    #[test]
    fn values_are_dropped_exactly_once() {
        use std::rc::Rc;
        let tracker = Rc::new(());
        let mut slab = Slab::new();
        let a = slab.try_insert(Rc::clone(&tracker)).unwrap();
        let _b = slab.try_insert(Rc::clone(&tracker)).unwrap();
        assert_eq!(Rc::strong_count(&tracker), 3);
        drop(slab.remove(a));
        assert_eq!(Rc::strong_count(&tracker), 2);
        drop(slab);
        assert_eq!(Rc::strong_count(&tracker), 1);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u32),
        /// Remove the key at this position in the list of all keys ever issued (live or not).
        Remove(usize),
        Get(usize),
        Set(usize, u32),
        /// A key that was never issued.
        Forged(u32, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => any::<u32>().prop_map(Op::Insert),
            2 => any::<usize>().prop_map(Op::Remove),
            2 => any::<usize>().prop_map(Op::Get),
            1 => (any::<usize>(), any::<u32>()).prop_map(|(i, v)| Op::Set(i, v)),
            1 => (0..64u32, any::<u32>()).prop_map(|(i, g)| Op::Forged(i, g)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn matches_a_map_model(ops in proptest::collection::vec(op(), 0..200)) {
            let mut slab = Slab::new();
            let mut model: HashMap<Key, u32> = HashMap::new();
            let mut issued: Vec<Key> = Vec::new();
            let mut seen: HashSet<Key> = HashSet::new();
            for op in ops {
                let pick = |i: usize| issued.get(i % issued.len().max(1)).copied();
                match op {
                    Op::Insert(value) => {
                        let key = slab.try_insert(value).unwrap();
                        prop_assert!(seen.insert(key), "key {key:?} issued twice");
                        issued.push(key);
                        model.insert(key, value);
                    }
                    Op::Remove(i) => {
                        if let Some(key) = pick(i) {
                            prop_assert_eq!(slab.remove(key), model.remove(&key));
                        }
                    }
                    Op::Get(i) => {
                        if let Some(key) = pick(i) {
                            prop_assert_eq!(slab.get(key), model.get(&key));
                            prop_assert_eq!(slab.contains(key), model.contains_key(&key));
                        }
                    }
                    Op::Set(i, value) => {
                        if let Some(key) = pick(i) {
                            let live = slab.get_mut(key).map(|v| *v = value).is_some();
                            prop_assert_eq!(live, model.contains_key(&key));
                            if let Some(v) = model.get_mut(&key) {
                                *v = value;
                            }
                        }
                    }
                    Op::Forged(index, generation) => {
                        let key = Key { index, generation };
                        prop_assert_eq!(slab.get(key), model.get(&key));
                    }
                }
                prop_assert_eq!(slab.len(), model.len());
                prop_assert_eq!(slab.is_empty(), model.is_empty());
            }
            let mut live: Vec<(Key, u32)> = slab.iter().map(|(k, v)| (k, *v)).collect();
            let mut expected: Vec<(Key, u32)> = model.into_iter().collect();
            expected.sort();
            prop_assert!(live.is_sorted(), "iteration is in slot order");
            live.sort();
            prop_assert_eq!(live, expected);
        }
    }
}
