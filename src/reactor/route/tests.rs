//! A route's choices without a reactor: which endpoint each attempt
//! dials, and the order of a lookup's addresses.

use std::net::SocketAddr;

use super::{interleave, Route, Start};
use crate::endpoint::Endpoints;

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().expect("addr")).collect()
}

fn route(list: &str) -> Route {
    Route::new(list.parse::<Endpoints>().expect("endpoints"))
}

#[test]
fn addresses_alternate_between_families_from_the_first_one_s() {
    let mixed = addrs(&["[::1]:1", "[::2]:1", "[::3]:1", "10.0.0.1:1", "10.0.0.2:1"]);
    assert_eq!(
        interleave(&mixed),
        addrs(&["[::1]:1", "10.0.0.1:1", "[::2]:1", "10.0.0.2:1", "[::3]:1"])
    );
    let v4_first = addrs(&["10.0.0.1:1", "10.0.0.2:1", "[::1]:1", "10.0.0.1:1"]);
    assert_eq!(
        interleave(&v4_first),
        addrs(&["10.0.0.1:1", "[::1]:1", "10.0.0.2:1"]),
        "families alternate, duplicates go"
    );
    assert_eq!(interleave(&[]), Vec::<SocketAddr>::new());
}

#[test]
fn a_failed_attempt_moves_to_the_next_endpoint_and_a_healthy_loss_back_to_the_first() {
    let mut r = route("a.test:1,b.test:2,10.0.0.3:3");
    // The first dial: the preferred endpoint.
    assert_eq!((r.begin(0), r.endpoint()), (Start::Lookup, 0));
    // It fails (never connected): each redial goes on round the list.
    assert_eq!((r.begin(1), r.endpoint()), (Start::Lookup, 1));
    assert_eq!((r.begin(2), r.endpoint()), (Start::Addresses, 2));
    assert_eq!(r.next_addr(), Some((addrs(&["10.0.0.3:3"])[0], 0)));
    assert_eq!(r.next_addr(), None);
    assert_eq!((r.begin(3), r.endpoint()), (Start::Lookup, 0));
    assert_eq!((r.begin(4), r.endpoint()), (Start::Lookup, 1));
    // b connects: not a move (the link had no connection before).
    assert!(r.resolved(&addrs(&["10.0.0.2:2"])));
    assert_eq!(
        r.next_addr().map(|(a, _)| a),
        Some(addrs(&["10.0.0.2:2"])[0])
    );
    assert!(!r.note_connected());
    // Lost after the backoff counted it healthy (attempt 1 again): back
    // to the preferred endpoint.
    assert_eq!((r.begin(1), r.endpoint()), (Start::Lookup, 0));
    assert!(r.resolved(&addrs(&["10.0.0.1:1"])));
    r.next_addr();
    assert!(r.note_connected(), "from b to a: moved");
    // Lost before it was healthy (attempt 2): a failure, on to the next.
    assert_eq!((r.begin(2), r.endpoint()), (Start::Lookup, 1));
}

#[test]
fn a_single_name_always_dials_its_one_endpoint() {
    let mut r = route("only.test:7");
    for attempt in [0, 1, 2, 3, 1, 5] {
        assert_eq!((r.begin(attempt), r.endpoint()), (Start::Lookup, 0));
    }
    assert_eq!(
        r.addr,
        addrs(&["0.0.0.0:7"])[0],
        "unspecified until resolved"
    );
}

#[test]
fn the_address_that_worked_is_tried_first_next_time() {
    let mut r = route("multi.test:1");
    r.begin(0);
    let answer = addrs(&["[::1]:1", "10.0.0.1:1", "10.0.0.2:1"]);
    assert!(r.resolved(&answer));
    let order: Vec<_> = std::iter::from_fn(|| r.next_addr()).collect();
    assert_eq!(
        order,
        vec![(answer[0], 2), (answer[1], 1), (answer[2], 0)],
        "interleaved, with how many remain after each"
    );
    // The last one worked.
    assert!(!r.note_connected());
    r.begin(1);
    assert!(r.resolved(&answer));
    assert_eq!(r.next_addr(), Some((answer[2], 2)));
    assert_eq!(r.next_addr(), Some((answer[0], 1)));
    // A lookup that no longer lists it: the plain order.
    r.begin(2);
    assert!(r.resolved(&answer[..2]));
    assert_eq!(r.next_addr(), Some((answer[0], 1)));
    // A lookup with a great many addresses: the first 16 are tried.
    r.begin(3);
    let many: Vec<SocketAddr> = (0..1000u16)
        .map(|i| SocketAddr::from(([10, 0, 0, 1], i + 1)))
        .collect();
    assert!(r.resolved(&many));
    let tried: Vec<_> = std::iter::from_fn(|| r.next_addr().map(|(a, _)| a)).collect();
    assert_eq!(tried, many[..super::MAX_ADDRESSES]);
    // An empty answer leaves nothing to dial.
    r.begin(3);
    assert!(!r.resolved(&[]));
    assert_eq!(r.next_addr(), None);
}
