//! Slots per client address: how many connections one address (an IPv6 client's /64) may hold
//! at once on a listener.
//!
//! Two kinds of holder use them:
//! - the device endpoint, for connections that have not yet proven themselves (no `pair` or
//!   `resume` answered). At an address's cap a new connection takes the slot of the address's
//!   *oldest* unproven connection, which is closed (4004). A device that resumes right after
//!   its handshake is never the oldest for long, so connections left idle from the same
//!   address (or from the same NAT) cannot keep it out; and one address can never hold more than
//!   the cap of unproven connections, whatever it sends.
//! - the admin listener, whose connections are refused at the cap (a new connection is closed at
//!   once), so that one address cannot take the admin side's whole connection budget.
//!
//! Entries exist only while an address holds a slot, so the memory is bounded by the
//! listener's own connection ceiling.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

/// The slots of one listener.
#[derive(Debug)]
pub(crate) struct AddressSlots {
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    /// Per address key, the holders by age (ids grow), each with the token that evicts it.
    holders: HashMap<IpAddr, BTreeMap<u64, CancellationToken>>,
}

/// One connection's slot, given back when dropped (or by [`Slot::release`]).
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<AddressSlots>,
    key: IpAddr,
    id: u64,
    evicted: CancellationToken,
    released: bool,
}

impl AddressSlots {
    /// `cap`: most slots one address holds; 0 means no cap.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(AddressSlots {
            cap,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot for `address`; at the cap, evicts the address's oldest holder to make room.
    /// Without a cap nothing is kept: the slot is given back from the start.
    pub fn take_evicting_oldest(self: &Arc<Self>, address: IpAddr) -> Slot {
        let key = engine::limiter::address_key(address);
        let evicted = CancellationToken::new();
        if self.cap == 0 {
            return self.uncounted(key, evicted);
        }
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        let holders = inner.holders.entry(key).or_default();
        if self.cap > 0
            && holders.len() >= self.cap
            && let Some((_, oldest)) = holders.pop_first()
        {
            oldest.cancel();
        }
        holders.insert(id, evicted.clone());
        drop(inner);
        Slot {
            slots: Arc::clone(self),
            key,
            id,
            evicted,
            released: false,
        }
    }

    /// Takes a slot for `address` unless it holds the cap already.
    pub fn try_take(self: &Arc<Self>, address: IpAddr) -> Option<Slot> {
        let key = engine::limiter::address_key(address);
        if self.cap == 0 {
            return Some(self.uncounted(key, CancellationToken::new()));
        }
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        let holders = inner.holders.entry(key).or_default();
        if self.cap > 0 && holders.len() >= self.cap {
            return None;
        }
        let evicted = CancellationToken::new();
        holders.insert(id, evicted.clone());
        drop(inner);
        Some(Slot {
            slots: Arc::clone(self),
            key,
            id,
            evicted,
            released: false,
        })
    }

    /// A slot of a listener without a cap: held by no one, never evicted.
    fn uncounted(self: &Arc<Self>, key: IpAddr, evicted: CancellationToken) -> Slot {
        Slot {
            slots: Arc::clone(self),
            key,
            id: 0,
            evicted,
            released: true,
        }
    }

    /// Addresses holding slots now.
    #[cfg(test)]
    pub fn addresses(&self) -> usize {
        self.lock().holders.len()
    }

    fn give_back(&self, key: IpAddr, id: u64) {
        let mut inner = self.lock();
        if let Some(holders) = inner.holders.get_mut(&key) {
            holders.remove(&id);
            if holders.is_empty() {
                inner.holders.remove(&key);
            }
        }
    }
}

impl Slot {
    /// Completes when another connection from the same address took this slot.
    pub async fn evicted(&self) {
        self.evicted.cancelled().await;
    }

    /// Gives the slot back now (the connection proved itself); later calls do nothing.
    pub fn release(&mut self) {
        if !self.released {
            self.released = true;
            self.slots.give_back(self.key, self.id);
        }
    }

    /// True once [`Slot::release`] ran.
    pub fn is_released(&self) -> bool {
        self.released
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn at_the_cap_the_oldest_holder_of_that_address_is_evicted() {
        let slots = AddressSlots::new(2);
        let first = slots.take_evicting_oldest(v4(1));
        let second = slots.take_evicting_oldest(v4(1));
        let other = slots.take_evicting_oldest(v4(2));
        assert!(!first.evicted.is_cancelled());
        let third = slots.take_evicting_oldest(v4(1));
        assert!(first.evicted.is_cancelled(), "the oldest gives way");
        assert!(!second.evicted.is_cancelled());
        assert!(!third.evicted.is_cancelled());
        assert!(
            !other.evicted.is_cancelled(),
            "another address is untouched"
        );
    }

    #[test]
    fn without_a_cap_nothing_is_kept() {
        let slots = AddressSlots::new(0);
        let held: Vec<Slot> = (0..1000)
            .map(|_| slots.take_evicting_oldest(v4(1)))
            .chain((0..1000).filter_map(|_| slots.try_take(v4(1))))
            .collect();
        assert_eq!(held.len(), 2000, "none refused");
        assert!(
            held.iter()
                .all(|slot| slot.is_released() && !slot.evicted.is_cancelled())
        );
        assert_eq!(slots.addresses(), 0, "no entry was made");
    }

    #[test]
    fn a_released_slot_is_not_evicted_and_frees_room() {
        let slots = AddressSlots::new(1);
        let mut proven = slots.take_evicting_oldest(v4(1));
        proven.release();
        let next = slots.take_evicting_oldest(v4(1));
        assert!(!proven.evicted.is_cancelled());
        assert!(!next.evicted.is_cancelled());
        drop(next);
        drop(proven);
        assert_eq!(slots.addresses(), 0, "no entry is left behind");
    }

    #[test]
    fn try_take_refuses_at_the_cap_and_an_ipv6_slash_64_is_one_address() {
        let slots = AddressSlots::new(2);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let c: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let _one = slots.try_take(a).expect("room");
        let two = slots.try_take(b).expect("room");
        assert!(slots.try_take(a).is_none(), "the /64 holds its cap");
        assert!(slots.try_take(c).is_some(), "another /64 has room");
        drop(two);
        assert!(slots.try_take(b).is_some(), "a dropped slot frees room");
    }

    #[test]
    fn no_cap_means_no_eviction() {
        let slots = AddressSlots::new(0);
        let held: Vec<Slot> = (0..100)
            .map(|_| slots.take_evicting_oldest(v4(1)))
            .collect();
        assert!(held.iter().all(|slot| !slot.evicted.is_cancelled()));
    }
}
