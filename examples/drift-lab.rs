//! Build a `check --fleet` lab on disk for scripts/bench-check: a per-host config with N nodes
//! on consecutive loopback addresses, one published certificate per node (from a small rcgen
//! CA) and each node's install root filled the way `vipcert install` fills it.
//!
//! Usage: drift-lab DIR N FIRST_ADDRESS PORT [DOMAIN]
//!        (e.g. drift-lab /tmp/lab 100 127.0.5.1 18080; DOMAIN defaults to bench.test)
//! Prints one line per node: "<hostname> <address> <root>".

// The test support's CA and site, without the rest of tests/it/common (which needs the binary).
// Only part of each is used here (the tests use the rest), hence the allow.
#[path = "../tests/it/common/pki.rs"]
#[allow(dead_code)]
mod pki;
#[path = "../tests/it/common/site.rs"]
#[allow(dead_code)]
mod site;

use std::net::Ipv4Addr;

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        a.len() == 4 || a.len() == 5,
        "usage: drift-lab DIR N FIRST_ADDRESS PORT [DOMAIN]"
    );
    let domain = a.get(4).map(String::as_str).unwrap_or("bench.test");
    let dir = std::path::PathBuf::from(&a[0]);
    let n: u32 = a[1].parse()?;
    let first: Ipv4Addr = a[2].parse()?;
    let port: u16 = a[3].parse()?;
    anyhow::ensure!(first.is_loopback(), "{first} is not a loopback address");
    std::fs::create_dir_all(&dir)?;
    let nodes: Vec<site::SiteNode> = (0..n)
        .map(|i| {
            let addr = Ipv4Addr::from(u32::from(first) + i);
            site::node(&format!("dtn{}.{domain}", i + 1), &addr.to_string())
        })
        .collect();
    let extra = format!("[serve]\nlisten = [\"0.0.0.0:{port}\"]\n[check]\ntimeout = \"3s\"\n");
    let lab = site::Site::in_dir(
        &dir,
        "per-host",
        &format!("gridftp.{domain}"),
        &nodes,
        &extra,
    );
    for nd in &nodes {
        let v = lab.publish_good(&nd.hostname);
        lab.install_version(&nd.hostname, &nd.hostname, v);
        println!(
            "{} {} {}",
            nd.hostname,
            nd.address,
            lab.root_of(&nd.hostname).display()
        );
    }
    Ok(())
}
