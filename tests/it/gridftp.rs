//! Real GridFTP behind `vipcert balance`: two anonymous `globus-gridftp-server` nodes on their
//! own loopback addresses, `globus-url-copy` through VIP:2811 (control channel via the
//! balancer, data channel straight to the node), byte-identical copies, and a killed node
//! costing the next transfers nothing.
//!
//! Needs Debian globus-gridftp-server-progs and globus-gass-copy-progs.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common;
use crate::common::balancer::{config_text, Balancer};
use crate::common::net::Block;
use crate::common::Proc;

const SERVER: &str = "/usr/sbin/globus-gridftp-server";
const COPY: &str = "/usr/bin/globus-url-copy";

fn gridftp_node(addr: &str, log: &Path) -> Proc {
    let mut cmd = Command::new(SERVER);
    // The default mode stays in the foreground (-detach is off) and forks one process per
    // session; killing it stops the node accepting. (-debug would not fork, but a root
    // server that does not fork exits after its first connection: a health check.)
    cmd.args([
        "-aa",
        "-p",
        "2811",
        "-control-interface",
        addr,
        "-data-interface",
        addr,
    ]);
    if rustix::process::geteuid().is_root() {
        // As root, anonymous sessions need an account to become ("No anonymous user set").
        cmd.args(["-anonymous-user", "nobody"]);
    }
    Proc::spawn(&mut cmd, log)
}

/// globus-url-copy with a bound; Ok(()) on exit 0.
fn copy(src: &str, dst: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(dst);
    crate::common::run_bounded(
        Command::new(COPY)
            .arg(src)
            .arg(format!("file://{}", dst.display())),
        Duration::from_secs(60),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn globus_url_copy_through_the_vip_survives_a_dead_node() {
    // The VIP on .10 and the two nodes on .11 and .12 of this test's block.
    let net = Block::Gridftp;
    let vip = net.host(10);
    let node_addrs = [
        ("n1.test.example", net.host(11)),
        ("n2.test.example", net.host(12)),
    ];
    let dir = tempfile::tempdir().unwrap();
    // The anonymous session runs as nobody: the tree must be world-readable.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = dir.path().join("payload.bin");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();

    let mut nodes: Vec<Option<Proc>> = node_addrs
        .iter()
        .map(|(h, a)| Some(gridftp_node(a, &dir.path().join(format!("{h}.log")))))
        .collect();
    for (_, a) in node_addrs {
        common::wait_listening(
            format!("{a}:2811").parse().unwrap(),
            "globus-gridftp-server",
        );
    }
    let section = format!(
        "[balancer]\nscheduler = \"rr\"\ndelay_loop = \"1s\"\nconnect_timeout = \"2s\"\nrise = 2\nfall = 2\nadmin_listen = \"{vip}:9811\"\n[[balancer.service]]\nname = \"gridftp\"\nport = 2811\ncheck = \"banner\"\nexpect = \"220\"\nidle_timeout = \"2h\"\n"
    );
    let node_list: Vec<(&str, &str, u32)> = node_addrs.iter().map(|(h, a)| (*h, *a, 1)).collect();
    let bal = Balancer::start(&format!("{vip}:9811"), |sh| {
        config_text(vip, &node_list, sh, &section)
    })
    .await;
    for (h, _) in node_addrs {
        bal.wait_metric(
            "vipcert_balancer_backend_up",
            &[("backend", h)],
            |v| v == 1.0,
            Duration::from_secs(30),
        )
        .await;
    }

    let url = format!("ftp://{vip}:2811{}", src.display());
    let dst = dir.path().join("copy.bin");
    for i in 0..4 {
        copy(&url, &dst)
            .unwrap_or_else(|e| panic!("transfer {i} failed: {e}\n{}", bal.proc.log_text()));
        assert!(
            std::fs::read(&dst).unwrap() == data,
            "transfer {i} is not byte-identical"
        );
    }
    // rr: both nodes served control channels.
    for (h, _) in node_addrs {
        let n = bal
            .metric("vipcert_balancer_connections_total", &[("backend", h)])
            .await
            .unwrap();
        assert!(n >= 2.0, "{h} served {n} control connections");
    }

    // Kill node 1: the next transfers still succeed (its connects are retried on node 2).
    drop(nodes[0].take());
    for i in 0..4 {
        copy(&url, &dst).unwrap_or_else(|e| {
            panic!(
                "transfer {i} after the kill failed: {e}\n{}",
                bal.proc.log_text()
            )
        });
        assert!(
            std::fs::read(&dst).unwrap() == data,
            "transfer {i} after the kill differs"
        );
    }
    bal.wait_metric(
        "vipcert_balancer_backend_up",
        &[("backend", node_addrs[0].0)],
        |v| v == 0.0,
        Duration::from_secs(30),
    )
    .await;
    let bytes = bal
        .metric(
            "vipcert_balancer_bytes_out_total",
            &[("backend", node_addrs[1].0)],
        )
        .await
        .unwrap();
    assert!(
        bytes > 0.0,
        "control-channel bytes from node 2 were not counted"
    );
}
