//! The reactor's timer filing with an injected clock: `Core::file_timer`
//! driven by hand-set instants, no socket and no wait.

use std::time::{Duration, Instant};

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A reactor core holding one socketless server connection; its index.
fn core_with_one_connection() -> (Core, usize) {
    let config = Config::builder()
        .heartbeat(ms(1000), ms(1000))
        .build()
        .expect("valid config");
    let mut core = Core::new(config).expect("core");
    let conn = Connection::server(core.config.clone(), core.now, 1, 1);
    let addr = "127.0.0.1:9".parse().expect("addr");
    let id = core
        .insert(conn, Peer::Addr(addr), None)
        .expect("a free slot");
    (core, id.index())
}

/// The tick the connection's entry is filed at, and the deadline it was
/// filed for.
fn filed(core: &Core, idx: usize) -> Option<(u64, Instant)> {
    let f = core.slots.get(idx)?.timer?;
    Some((
        core.wheel.tick(f.key).expect("live entry"),
        f.filing.deadline,
    ))
}

/// Sets the clock to `now`, files `deadline` as the connection's earliest,
/// and returns what is filed then.
fn file_at(
    core: &mut Core,
    idx: usize,
    now: Instant,
    deadline: Option<Instant>,
) -> Option<(u64, Instant)> {
    core.set_clock(now);
    core.file_timer(idx, deadline);
    filed(core, idx)
}

/// The tick a deadline is filed at, on the connection's grid.
fn grid_tick(core: &Core, idx: usize, at: Instant) -> u64 {
    let grain = core
        .slots
        .get(idx)
        .expect("slot")
        .conn
        .config()
        .timer_grain();
    core.wheel.coarsen_tick(core.wheel.deadline_tick(at), grain)
}

#[test]
fn a_later_deadline_moves_the_entry_first_at_once_then_from_three_quarters_of_the_way() {
    let (mut core, idx) = core_with_one_connection();
    let t0 = core.now;
    let at = |n: u64| t0 + ms(n);

    assert_eq!(
        file_at(&mut core, idx, at(0), Some(at(1000))),
        Some((grid_tick(&core, idx, at(1000)), at(1000)))
    );

    // The first move after a filing (the PONG after our PING, the
    // peer's PING on the quiet side): re-filed on the spot.
    let first = grid_tick(&core, idx, at(1010));
    assert_eq!(
        file_at(&mut core, idx, at(10), Some(at(1010))),
        Some((first, at(1010)))
    );

    // Busy traffic before 3/4 of the way: the entry stays, untouched.
    for now in [20, 300, 700] {
        assert_eq!(
            file_at(&mut core, idx, at(now), Some(at(now + 1000))),
            Some((first, at(1010))),
            "at {now} ms"
        );
    }

    // From 3/4 of the way (10 + 3/4 of the ~1 s to the entry): moved.
    let second = grid_tick(&core, idx, at(1800));
    assert!(second > first);
    assert_eq!(
        file_at(&mut core, idx, at(800), Some(at(1800))),
        Some((second, at(1800)))
    );
    assert_eq!(core.wheel.len(), 1, "one entry per connection");

    // An earlier deadline is filed at once, and the next later one moves
    // the entry at once too.
    for (now, deadline) in [(810, 900), (811, 2000)] {
        assert_eq!(
            file_at(&mut core, idx, at(now), Some(at(deadline))),
            Some((grid_tick(&core, idx, at(deadline)), at(deadline))),
            "at {now} ms"
        );
    }

    // No deadline: the entry goes.
    core.file_timer(idx, None);
    assert_eq!(filed(&core, idx), None);
    assert_eq!(core.wheel.len(), 0);
}

#[test]
fn an_entry_left_in_place_never_fires_after_the_deadline_it_stands_for() {
    // Whatever the moves, the entry's tick is never later than the
    // connection's current deadline on the grid: left in place it fires
    // early (and is re-filed), never late.
    let (mut core, idx) = core_with_one_connection();
    let t0 = core.now;
    let mut rng = crate::rng::Rng::new(9);
    let mut now = 0;
    let mut deadline = 1000;
    for _ in 0..5_000 {
        now += rng.below_inclusive(40);
        deadline = match rng.below_inclusive(9) {
            0 => now + rng.below_inclusive(300),                  // earlier
            1..=7 => deadline.max(now) + rng.below_inclusive(60), // pushed later
            _ => deadline,
        };
        let (tick, _) =
            file_at(&mut core, idx, t0 + ms(now), Some(t0 + ms(deadline))).expect("filed");
        assert!(
            tick <= grid_tick(&core, idx, t0 + ms(deadline)),
            "entry at {tick} ms after a deadline at {deadline} ms (now {now} ms)"
        );
    }
}

#[test]
fn a_stale_id_never_reaches_a_connection_that_reuses_its_slot() {
    let mut core = Core::new(Config::default()).expect("core");
    let addr = Peer::Addr("127.0.0.1:9".parse().expect("addr"));
    let conn = |core: &Core| Connection::server(core.config.clone(), core.now, 1, 1);
    let old = core.insert(conn(&core), addr, None).expect("a free slot");
    let addr = Peer::Addr("127.0.0.1:9".parse().expect("addr"));
    core.slots.remove(old.index());
    // 2^32 more connections came and went elsewhere: the counter as they
    // left it.
    core.generation = 1 << 32;
    let new = core.insert(conn(&core), addr, None).expect("a free slot");
    assert_eq!(new.index(), old.index(), "the slot is reused");
    assert_ne!(new, old);
    assert_ne!(new.as_u64(), old.as_u64());
    assert_eq!(
        core.slot_index(old),
        None,
        "the stale id reaches the new connection"
    );
    assert_eq!(core.slot_index(new), Some(new.index()));
}

#[test]
fn a_dial_beyond_the_slots_an_id_can_name_gives_up_at_once_under_an_id_of_its_own() {
    let mut core = Core::new(Config::default()).expect("core");
    core.slot_limit = 2;
    let addr: std::net::SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let config = core.config.clone();
    let a = core.dial(addr.into(), config.clone());
    let b = core.dial(addr.into(), config.clone());
    assert!(core.slot_index(a).is_some() && core.slot_index(b).is_some());
    core.pending.clear();
    let c = core.dial(addr.into(), config.clone());
    let d = core.dial(addr.into(), config);
    assert_eq!(core.slots.len(), 2, "no slot taken");
    assert!(core.slot_index(c).is_none() && core.slot_index(d).is_none());
    assert_ne!(c, d, "each has an id of its own");
    let ends: Vec<_> = core.pending.drain(..).collect();
    assert_eq!(ends.len(), 2);
    for ((id, event), want) in ends.into_iter().zip([c, d]) {
        assert_eq!(id, want);
        assert!(
            matches!(event, Event::GaveUp { attempts: 0, .. }),
            "{event:?}"
        );
    }
}

/// Sets the clock to `now` and fires what is due: the lag the reactor
/// recorded, if a connection's entry fired.
fn fire_at(core: &mut Core, now: Instant) -> Option<Duration> {
    core.set_clock(now);
    core.stats.lag = Duration::MAX;
    core.fire_timers();
    Some(core.stats.lag).filter(|&lag| lag != Duration::MAX)
}

#[test]
fn a_deadline_set_already_past_counts_its_lag_from_its_filing() {
    // A connection may set a deadline already past (the trim timer counts
    // from the last receipt, which a blackhole leaves far behind): the
    // entry is due at once, and the reactor is late only from then on.
    let (mut core, idx) = core_with_one_connection();
    let t0 = core.now;
    let at = |n: u64| t0 + ms(n);
    file_at(&mut core, idx, at(5000), Some(at(1000))).expect("filed");
    assert_eq!(fire_at(&mut core, at(5003)), Some(ms(3)));
    assert_eq!(core.stats.max_lag, ms(3));
}

#[test]
fn a_deadline_that_passed_while_the_reactor_stalled_counts_the_whole_stall() {
    // Filed at 0 for 1000 ms (1005 ms on the 15 ms grid); the reactor
    // wakes at 3000 ms. Whether a read re-files the same deadline first or
    // not, the entry was due since 1005 ms.
    for refiled_first in [false, true] {
        let (mut core, idx) = core_with_one_connection();
        let t0 = core.now;
        let at = |n: u64| t0 + ms(n);
        file_at(&mut core, idx, at(0), Some(at(1000))).expect("filed");
        if refiled_first {
            file_at(&mut core, idx, at(3000), Some(at(1000))).expect("filed");
        }
        assert_eq!(
            fire_at(&mut core, at(3000)),
            Some(ms(3000 - 1005)),
            "re-filed first: {refiled_first}"
        );
    }
}
