//! The slab of connection slots, and the one lent run lent out of it.
//!
//! While the handler answers the messages of a read, the output run of
//! the connection being read is out of that connection (see
//! [`LentRun`]). Every way to a slot that could touch a connection's
//! output, state or socket goes through [`Slots::get_mut`] (or `remove`,
//! `drain`, `queue_on`), which returns the run to its connection first:
//! no code can reach a connection with its output lent, so none has to
//! remember to return it. The one exception, [`Slots::take_data`], reaches
//! only the connection's input counters.
//!
//! It never decides anything about a connection: it holds the slots and
//! keeps the lent run whole.

use log::debug;
use slab::Slab;

use super::lent_run::LentRun;
use super::slot::Slot;
use super::ConnId;
use crate::proto::conn::{Connection, ReadInput, SendError};

/// The connections of a reactor, by slab index.
pub(super) struct Slots {
    slab: Slab<Slot>,
    /// The connection whose read is being delivered to the handler.
    reading: Option<ConnId>,
    /// Its output run, lent while the handler answers it.
    lent: Option<LentRun>,
}

impl Slots {
    pub(super) fn new() -> Slots {
        Slots {
            slab: Slab::new(),
            reading: None,
            lent: None,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// A slot, to look at: what it shows of the connection's output does
    /// not include a lent run (see [`lent`](Self::lent)).
    #[inline]
    pub(super) fn get(&self, idx: usize) -> Option<&Slot> {
        self.slab.get(idx)
    }

    /// A slot, to act on: a lent run is back in its connection first.
    #[inline]
    pub(super) fn get_mut(&mut self, idx: usize) -> Option<&mut Slot> {
        self.settle();
        self.slab.get_mut(idx)
    }

    /// The slab index of connection `id`, if it still has its slot.
    #[inline]
    pub(super) fn index_of(&self, id: ConnId) -> Option<usize> {
        let idx = id.index();
        self.slab.get(idx).filter(|slot| slot.id == id).map(|_| idx)
    }

    /// Puts a slot made for its index (`make`) in a free place.
    pub(super) fn insert_with(&mut self, make: impl FnOnce(usize) -> Slot) -> usize {
        let entry = self.slab.vacant_entry();
        let idx = entry.key();
        entry.insert(make(idx));
        idx
    }

    /// Takes slot `idx` out (it must be there), giving back memory once
    /// the slab is mostly empty.
    pub(super) fn remove(&mut self, idx: usize) -> Slot {
        self.settle();
        let slot = self.slab.remove(idx);
        let cap = self.slab.capacity();
        if cap > 1024 && self.slab.len() < cap / 4 {
            self.slab.shrink_to_fit();
        }
        slot
    }

    /// Takes every slot out.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = Slot> + '_ {
        self.settle();
        self.slab.drain()
    }

    /// The indices of the slots in use.
    pub(super) fn indices(&self) -> Vec<usize> {
        self.slab.iter().map(|(idx, _)| idx).collect()
    }

    /// The ids of the connections held.
    pub(super) fn ids(&self) -> Vec<ConnId> {
        self.slab.iter().map(|(_, slot)| slot.id).collect()
    }

    /// Marks slot `idx` as needing a service; true if it was not marked
    /// already (the caller lists it). Touches no connection.
    #[inline]
    pub(super) fn mark_dirty(&mut self, idx: usize) -> bool {
        match self.slab.get_mut(idx) {
            Some(slot) if !slot.dirty => {
                slot.dirty = true;
                true
            }
            _ => false,
        }
    }

    /// The one way to a connection while its run may be lent: counts the
    /// whole DATA frame next in `input` as received (see
    /// [`Connection::take_data`]), which touches the connection's input
    /// accounting only. With the connection's id and the payload length.
    #[inline(always)]
    pub(super) fn take_data(&mut self, idx: usize, input: &ReadInput) -> Option<(ConnId, usize)> {
        let slot = self.slab.get_mut(idx)?;
        let len = slot.conn.take_data(input)?;
        Some((slot.id, len))
    }

    /// Queues output on connection `id` with `queue`: `Ok(true)` when the
    /// slot was newly marked dirty (the caller lists it). When `id` is the
    /// connection being read, its open run is lent for the answers that
    /// follow. (One slab lookup: this runs once per message sent.)
    #[inline]
    pub(super) fn queue_on(
        &mut self,
        id: ConnId,
        queue: impl FnOnce(&mut Connection) -> Result<(), SendError>,
    ) -> Result<bool, SendError> {
        self.settle();
        let idx = id.index();
        let slot = match self.slab.get_mut(idx) {
            Some(slot) if slot.id == id => slot,
            _ => return Err(SendError::NotConnected),
        };
        queue(&mut slot.conn)?;
        let newly_dirty = !slot.dirty;
        slot.dirty = true;
        if self.reading == Some(id) {
            if let Some((run, room, max_payload)) = slot.conn.lend_run() {
                self.lent = Some(LentRun::new(id, idx, run, room, max_payload));
            }
        }
        Ok(newly_dirty)
    }

    /// Starts delivering a read of slot `idx`: answers to its connection
    /// may go into its lent run until [`end_read`](Self::end_read).
    pub(super) fn begin_read(&mut self, idx: usize) {
        self.reading = self.slab.get(idx).map(|slot| slot.id);
    }

    /// Whether connection `id` is the one whose read is being delivered
    /// (the reactor services it when the read ends).
    #[inline]
    pub(super) fn is_reading(&self, id: ConnId) -> bool {
        self.reading == Some(id)
    }

    /// Ends the read begun last: the run goes back to its connection.
    pub(super) fn end_read(&mut self) {
        self.settle();
        self.reading = None;
    }

    /// The lent run for an answer to connection `id`: the lent one, or —
    /// for the first answer of a read, to the connection being read, with
    /// no DATA queued on it — a fresh run from the thread's pool, lent at
    /// once (the queue would pack the answer into the same run and lend it
    /// right after). `None` otherwise: the answer goes the queue's way. A
    /// run lent for another connection takes nothing for `id` (its pushes
    /// check the id). A fresh run marks its slot dirty; the reactor
    /// services the connection being read when its read ends, so it need
    /// not be listed.
    #[inline]
    pub(super) fn lent_run_for(&mut self, id: ConnId) -> Option<&mut LentRun> {
        if self.lent.is_none() && self.reading == Some(id) {
            self.lend_fresh(id);
        }
        self.lent.as_mut()
    }

    #[inline(never)]
    fn lend_fresh(&mut self, id: ConnId) {
        let idx = id.index();
        let Some(slot) = self.slab.get_mut(idx).filter(|slot| slot.id == id) else {
            return;
        };
        let Some((run, room, max_payload)) = slot.conn.lend_fresh_run() else {
            return;
        };
        self.lent = Some(LentRun::new(id, idx, run, room, max_payload));
        slot.dirty = true;
    }

    /// What connection `id` has in the lent run: messages and bytes (for
    /// its stats, which count them as queued).
    pub(super) fn lent(&self, id: ConnId) -> (u64, usize) {
        match &self.lent {
            Some(r) if r.id == id => (r.messages, r.run.len()),
            _ => (0, 0),
        }
    }

    /// Returns the lent run, if any, to its connection.
    #[inline]
    fn settle(&mut self) {
        if self.lent.is_some() {
            self.return_lent();
        }
    }

    #[inline(never)]
    fn return_lent(&mut self) {
        let Some(lent) = self.lent.take() else {
            return;
        };
        match self.slab.get_mut(lent.idx) {
            Some(slot) if slot.id == lent.id => {
                slot.conn.return_run(lent.run, lent.from, lent.messages)
            }
            // Not reachable: a slot is only removed through `remove` or
            // `drain`, which return the run first.
            _ => debug!("{}: lent run of a freed slot dropped", lent.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use bytes::BytesMut;

    use super::*;
    use crate::config::Config;
    use crate::proto::codec::{self, Handshake};

    /// Slots holding one established server connection (no socket); its
    /// index and id.
    fn one_established() -> (Slots, usize, ConnId) {
        let now = Instant::now();
        let mut conn = Connection::server(Arc::new(Config::default()), now, 1, 1);
        let mut hello = BytesMut::new();
        codec::encode_hello(&Handshake::default(), &mut hello);
        conn.handle_input(now, &mut hello, &mut Vec::new());
        let mut slots = Slots::new();
        let addr = "127.0.0.1:9".parse().expect("addr");
        let idx = slots.insert_with(|idx| {
            Slot::new(
                ConnId::new(idx, 1),
                conn,
                crate::reactor::route::Peer::Addr(addr),
                None,
            )
        });
        let id = slots.get(idx).expect("slot").id;
        (slots, idx, id)
    }

    #[test]
    fn a_lent_run_is_back_in_its_connection_before_any_access_that_could_touch_it() {
        let (mut slots, idx, id) = one_established();
        let queued = slots.get(idx).expect("slot").conn.pending_output();
        slots.begin_read(idx);
        let reply = slots.lent_run_for(id);
        assert!(reply.expect("a fresh run lent").push_payload(id, b"abc"));
        assert!(slots.get(idx).expect("slot").dirty, "marked for service");
        assert_eq!(slots.lent(id), (1, 8));
        let slot = slots.get(idx).expect("slot");
        assert_eq!(
            slot.conn.pending_output(),
            queued,
            "the answer is out of it"
        );
        // Any way to act on the slot returns the run first.
        let slot = slots.get_mut(idx).expect("slot");
        assert_eq!(slot.conn.pending_output(), queued + 8);
        assert_eq!(slots.lent(id), (0, 0));
        slots.end_read();
    }

    #[test]
    fn a_queue_on_the_connection_being_read_lends_its_run_and_removing_returns_it() {
        let (mut slots, idx, id) = one_established();
        slots.begin_read(idx);
        let queued = slots.queue_on(id, |conn| conn.send_slice(b"hi"));
        assert_eq!(queued, Ok(true), "newly dirty");
        let reply = slots.lent_run_for(id);
        assert!(reply.expect("the open run lent").push_payload(id, b"there"));
        let other = ConnId::new(idx, 2);
        assert_eq!(
            slots.queue_on(other, |conn| conn.send_slice(b"x")),
            Err(SendError::NotConnected),
            "a stale id"
        );
        assert_eq!(slots.lent(id), (0, 0), "returned by the attempt");
        let slot = slots.remove(idx);
        assert_eq!(slot.conn.stats().messages_sent, 2);
        assert!(slots.is_empty());
        slots.end_read();
    }
}
