//! Parsing and validating endpoints and failover lists.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Endpoint, EndpointError, Endpoints};

fn parse(s: &str) -> Result<Endpoint, EndpointError> {
    s.parse()
}

#[test]
fn address_literals_are_addresses_and_names_are_names() {
    let v4: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let v6: SocketAddr = "[::1]:7000".parse().unwrap();
    assert_eq!(parse("127.0.0.1:7000").unwrap().addr(), Some(v4));
    assert_eq!(parse("[::1]:7000").unwrap().addr(), Some(v6));
    assert_eq!(parse("[fe80::1%2]:7000").map(|e| e.port()), Ok(7000));

    let name = parse("feed.example.com:7000").unwrap();
    assert_eq!(
        (name.host(), name.port(), name.addr()),
        (Some("feed.example.com"), 7000, None)
    );
    let local = parse("localhost:1").unwrap();
    assert_eq!((local.host(), local.port()), (Some("localhost"), 1));
    assert_eq!(
        parse("svc_1.internal.:65535").unwrap().host(),
        Some("svc_1.internal.")
    );

    // Endpoint::new takes a literal as the address it is.
    assert_eq!(Endpoint::new("::1", 7000).unwrap().addr(), Some(v6));
    assert_eq!(Endpoint::new("[::1]", 7000).unwrap().addr(), Some(v6));
    assert_eq!(Endpoint::new("127.0.0.1", 7000).unwrap().addr(), Some(v4));
}

#[test]
fn malformed_text_is_a_typed_error() {
    use EndpointError::*;
    for (text, want) in [
        ("", MissingPort),
        ("localhost", MissingPort),
        ("::1", MissingPort),
        ("::1:7000", MissingPort),
        ("localhost:", BadPort),
        ("localhost:0", BadPort),
        ("localhost:65536", BadPort),
        ("localhost:-1", BadPort),
        ("localhost:70 00", BadPort),
        (":7000", BadHost),
        ("[localhost]:7000", BadHost),
        ("[::1:7000", BadHost),
        ("bad host:7000", BadHost),
        ("a..b:7000", BadHost),
        ("a/b:7000", BadHost),
        ("user@host:7000", BadHost),
        ("héllo:7000", BadHost),
        (".:7000", BadHost),
    ] {
        assert_eq!(parse(text), Err(want), "{text:?}");
    }
    let long_label = format!("{}.com:1", "a".repeat(64));
    assert_eq!(parse(&long_label), Err(BadHost));
    let ok_label = format!("{}.com:1", "a".repeat(63));
    assert!(parse(&ok_label).is_ok());
    let long_name = format!("{}:1", ["abcdefg"; 32].join("."));
    assert!(long_name.len() > 253 + 2);
    assert_eq!(parse(&long_name), Err(BadHost));
    assert_eq!(Endpoint::new("localhost", 0), Err(BadPort));
}

#[test]
fn endpoints_print_as_they_parse() {
    for text in ["feed.example.com:7000", "127.0.0.1:9", "[::1]:7000"] {
        let e = parse(text).unwrap();
        assert_eq!(e.to_string(), text);
        assert_eq!(parse(&e.to_string()), Ok(e));
    }
    let list: Endpoints = "a.example:1, 127.0.0.1:2 ,[::1]:3".parse().unwrap();
    assert_eq!(list.to_string(), "a.example:1,127.0.0.1:2,[::1]:3");
    assert_eq!(list.to_string().parse::<Endpoints>(), Ok(list));
}

#[test]
fn a_failover_list_keeps_its_order_and_is_never_empty() {
    let list: Endpoints = "a.example:1,b.example:2".parse().unwrap();
    let hosts: Vec<_> = list.as_slice().iter().map(|e| e.host().unwrap()).collect();
    assert_eq!(hosts, ["a.example", "b.example"]);
    assert_eq!(list.len(), 2);
    assert_eq!(list.single_addr(), None);

    assert_eq!(
        Endpoints::new(Vec::<Endpoint>::new()),
        Err(EndpointError::Empty)
    );
    assert_eq!(
        "a.example:1,".parse::<Endpoints>(),
        Err(EndpointError::MissingPort)
    );
    assert_eq!("".parse::<Endpoints>(), Err(EndpointError::MissingPort));

    let addr: SocketAddr = "10.0.0.1:7".parse().unwrap();
    let one = Endpoints::new([addr]).unwrap();
    assert_eq!(one, Endpoints::from(addr));
    assert_eq!(one.single_addr(), Some(addr));
    let named = Endpoints::from(parse("a.example:1").unwrap());
    assert_eq!(named.single_addr(), None);
}

#[test]
fn addresses_convert_without_a_lookup() {
    let v4 = Ipv4Addr::LOCALHOST;
    let v6 = Ipv6Addr::LOCALHOST;
    let want4 = SocketAddr::from((v4, 9));
    let want6 = SocketAddr::from((v6, 9));
    assert_eq!(Endpoints::from((v4, 9)).single_addr(), Some(want4));
    assert_eq!(Endpoints::from((v6, 9)).single_addr(), Some(want6));
    assert_eq!(
        Endpoints::from((IpAddr::V4(v4), 9)).single_addr(),
        Some(want4)
    );
    assert_eq!(Endpoint::from(want6).addr(), Some(want6));
    assert_eq!(Endpoint::try_from("127.0.0.1:9"), Ok(Endpoint::from(want4)));
    assert_eq!(
        Endpoint::try_from(String::from("[::1]:9")),
        Ok(Endpoint::from(want6))
    );
}
