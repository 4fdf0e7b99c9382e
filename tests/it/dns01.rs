//! DNS-01 against a real BIND 9 with a TSIG key (tests/it/common/bind.rs): the `vipcert::dns`
//! toolbox on its own, then whole issues through Pebble resolving through BIND.

use std::time::Duration;

use vipcert::dns::{self, Change, DnsError, Lookup, TsigAlg, TsigCode, TsigKey};

use crate::common::bind::{Bind, Zone, KEY_NAME};
use crate::common::net::Block;

const BOUND: Duration = Duration::from_secs(2);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The toolbox against BIND: zone by SOA, NS set and addresses, CNAME followed and a loop
/// caught, a TXT value added and deleted with TSIG and seen on the server directly, a wrong
/// secret and an unknown key refused as TSIG errors, a server that does not hold the zone named.
#[test]
fn toolbox_finds_zones_follows_cnames_and_updates_with_tsig() {
    let b = Block::DnsToolbox;
    let tmp = tempfile::tempdir().unwrap();
    let ns = [("ns1.example.test", b.ip(1)), ("ns2.example.test", b.ip(3))];
    let records = "_acme-challenge.dtn2 IN CNAME dtn2.acme.site.test.\n\
                   _acme-challenge.loop IN CNAME loop2\nloop2 IN CNAME _acme-challenge.loop\n";
    let primary = Bind::primary(
        &tmp.path().join("ns1"),
        b.ip(1),
        &ns,
        &[
            Zone {
                name: "example.test",
                records,
            },
            Zone {
                name: "site.test",
                records: "",
            },
        ],
    );
    // ns2 answers but holds another zone only: not authoritative for example.test.
    let stranger = Bind::primary(
        &tmp.path().join("ns2"),
        b.ip(3),
        &ns[1..],
        &[Zone {
            name: "other.test",
            records: "",
        }],
    );
    let look = Lookup::new(vec![primary.addr], BOUND);
    let key = TsigKey::from_text(&primary.secret, KEY_NAME, TsigAlg::HmacSha256).unwrap();
    rt().block_on(async {
        let fqdn = "_acme-challenge.dtn1.example.test.";
        assert_eq!(look.zone_of(fqdn).await.unwrap(), "example.test.");
        assert_eq!(look.follow_cname(fqdn).await.unwrap(), fqdn);
        let to = look
            .follow_cname("_acme-challenge.dtn2.example.test")
            .await
            .unwrap();
        assert_eq!(to, "dtn2.acme.site.test.");
        assert_eq!(look.zone_of(&to).await.unwrap(), "site.test.");
        let e = look
            .follow_cname("_acme-challenge.loop.example.test")
            .await
            .unwrap_err();
        assert!(matches!(e, DnsError::CnameLoop { .. }), "{e}");
        let e = look.zone_of("x.nowhere.invalid").await.unwrap_err();
        assert!(matches!(e, DnsError::ZoneNotFound { .. }), "{e}");

        let servers = look.name_servers("example.test").await.unwrap();
        let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["ns1.example.test.", "ns2.example.test."]);
        assert_eq!(servers[1].addrs, [b.addr(3, 53)]);

        let z = "example.test.";
        dns::update_txt(primary.addr, z, fqdn, "v1", Change::Add, &key, BOUND)
            .await
            .unwrap();
        dns::update_txt(primary.addr, z, fqdn, "v2", Change::Add, &key, BOUND)
            .await
            .unwrap();
        let mut got = dns::txt_at(primary.addr, z, fqdn, BOUND).await.unwrap();
        got.sort();
        assert_eq!(got, ["v1", "v2"]);
        dns::update_txt(primary.addr, z, fqdn, "v1", Change::Delete, &key, BOUND)
            .await
            .unwrap();
        assert_eq!(
            dns::txt_at(primary.addr, z, fqdn, BOUND).await.unwrap(),
            ["v2"]
        );
        let e = dns::txt_at(b.addr(3, 53), z, fqdn, BOUND)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            DnsError::NotAuthoritative {
                server: b.addr(3, 53),
                zone: z.into()
            }
        );

        let wrong = TsigKey::from_text(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            KEY_NAME,
            TsigAlg::HmacSha256,
        )
        .unwrap();
        let e = dns::update_txt(primary.addr, z, fqdn, "v3", Change::Add, &wrong, BOUND)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                DnsError::TsigRefused {
                    code: TsigCode::BadSig,
                    ..
                }
            ),
            "{e}"
        );
        assert!(!e.to_string().contains(&primary.secret), "{e}");
        let other = TsigKey::from_text(&primary.secret, "stranger.", TsigAlg::HmacSha256).unwrap();
        let e = dns::update_txt(primary.addr, z, fqdn, "v3", Change::Add, &other, BOUND)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                DnsError::TsigRefused {
                    code: TsigCode::BadKey,
                    ..
                }
            ),
            "{e}"
        );
        let its_key = TsigKey::from_text(&stranger.secret, KEY_NAME, TsigAlg::HmacSha256).unwrap();
        let e = dns::update_txt(stranger.addr, z, fqdn, "v", Change::Add, &its_key, BOUND)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            DnsError::NotAuth {
                server: stranger.addr,
                zone: z.into()
            }
        );
        let e = dns::update_txt(
            b.addr(9, 53),
            z,
            fqdn,
            "v",
            Change::Add,
            &key,
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(e, DnsError::Timeout { .. } | DnsError::Io { .. }),
            "{e}"
        );
    });
    assert_eq!(primary.txt("_acme-challenge.dtn1.example.test"), ["v2"]);
}
