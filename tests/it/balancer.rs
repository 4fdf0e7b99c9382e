//! `vipcert balance` against real sockets: the real binary as a child process, echo backends
//! on their own loopback addresses, clients through the VIP. Each test has its own address
//! block (VIP .10, nodes .11 and up), so they run in parallel.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common;
use crate::common::balancer::{config_text, tally, Backend, Balancer, Client};
use crate::common::net::Block;

const LONG: Duration = Duration::from_secs(30);

fn balancer_section(vip: &str, scheduler: &str, port: u16) -> String {
    format!(
        "[balancer]\nscheduler = \"{scheduler}\"\ndelay_loop = \"1s\"\nconnect_timeout = \"1s\"\nrise = 2\nfall = 2\nadmin_listen = \"{vip}:9811\"\nthreads = 2\n[[balancer.service]]\nname = \"echo\"\nport = {port}\ncheck = \"tcp\"\n"
    )
}

fn vip_addr(vip: &str, port: u16) -> SocketAddr {
    format!("{vip}:{port}").parse().unwrap()
}

/// A `wlc` balancer for `nodes` on `vip:port`, and one raw client stream through it.
async fn one_stream(
    vip: &str,
    nodes: &[(&str, &str, u32)],
    port: u16,
) -> (Balancer, tokio::net::TcpStream) {
    one_stream_at(vip, nodes, port, 1).await
}

/// `one_stream`, the balancer's clock running `speed` times as fast (1: its own).
async fn one_stream_at(
    vip: &str,
    nodes: &[(&str, &str, u32)],
    port: u16,
    speed: u32,
) -> (Balancer, tokio::net::TcpStream) {
    let text =
        |sh: &std::path::Path| config_text(vip, nodes, sh, &balancer_section(vip, "wlc", port));
    let admin = format!("{vip}:9811");
    let bal = if speed == 1 {
        Balancer::start(&admin, text).await
    } else {
        Balancer::start_faster(&admin, speed, text).await
    };
    let c = tokio::net::TcpStream::connect(vip_addr(vip, port))
        .await
        .unwrap();
    (bal, c)
}

async fn backends(names_addrs: &[(&str, &str)], port: u16) -> Vec<Backend> {
    let mut v = Vec::new();
    for (n, a) in names_addrs {
        v.push(Backend::start(n, &format!("{a}:{port}")).await);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rr_follows_weights_exactly() {
    let net = Block::BalancerRr;
    let (vip, port) = (net.host(10), 7001);
    let nodes = [
        ("n1.test.example", net.host(11), 1),
        ("n2.test.example", net.host(12), 2),
        ("n3.test.example", net.host(13), 3),
    ];
    let _b = backends(
        &[
            ("n1", net.host(11)),
            ("n2", net.host(12)),
            ("n3", net.host(13)),
        ],
        port,
    )
    .await;
    let bal = Balancer::start(&format!("{vip}:9811"), |sh| {
        config_text(vip, &nodes, sh, &balancer_section(vip, "rr", port))
    })
    .await;
    let mut seen = Vec::new();
    for _ in 0..60 {
        seen.push(Client::connect(vip_addr(vip, port)).await.unwrap().backend);
    }
    let t = tally(seen.iter().map(String::as_str));
    assert_eq!(
        t.into_iter().collect::<Vec<_>>(),
        vec![("n1".into(), 10), ("n2".into(), 20), ("n3".into(), 30)],
        "{}",
        bal.proc.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wlc_fills_by_weight_and_refills_the_emptiest() {
    let net = Block::BalancerWlc;
    let (vip, port) = (net.host(10), 7002);
    let nodes = [
        ("n1.test.example", net.host(11), 1),
        ("n2.test.example", net.host(12), 2),
    ];
    let _b = backends(&[("n1", net.host(11)), ("n2", net.host(12))], port).await;
    let bal = Balancer::start(&format!("{vip}:9811"), |sh| {
        config_text(vip, &nodes, sh, &balancer_section(vip, "wlc", port))
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..30 {
        held.push(Client::connect(vip_addr(vip, port)).await.unwrap());
    }
    let t = tally(held.iter().map(|c| c.backend.as_str()));
    assert_eq!(
        (t["n1"], t["n2"]),
        (10, 20),
        "held connections by weight 1:2"
    );
    // Close n1's ten; wlc must send the next ten all to the emptiest (n1: 0/1 < n2: 20/2).
    held.retain(|c| c.backend != "n1");
    bal.wait_metric(
        "vipcert_balancer_connections_active",
        &[("backend", "n1.test.example")],
        |v| v == 0.0,
        LONG,
    )
    .await;
    for _ in 0..10 {
        let c = Client::connect(vip_addr(vip, port)).await.unwrap();
        assert_eq!(c.backend, "n1");
        held.push(c);
    }
    let active = bal
        .metric(
            "vipcert_balancer_connections_active",
            &[("backend", "n2.test.example")],
        )
        .await;
    assert_eq!(active, Some(20.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sh_keeps_each_client_on_its_node_and_moves_only_a_drained_nodes_clients() {
    let net = Block::BalancerSh;
    let (vip, port) = (net.host(10), 7003);
    let nodes = |w2: u32| {
        [
            ("n1.test.example", net.host(11), 1),
            ("n2.test.example", net.host(12), w2),
            ("n3.test.example", net.host(13), 1),
        ]
    };
    let _b = backends(
        &[
            ("n1", net.host(11)),
            ("n2", net.host(12)),
            ("n3", net.host(13)),
        ],
        port,
    )
    .await;
    let bal = Balancer::start(&format!("{vip}:9811"), |sh| {
        config_text(vip, &nodes(1), sh, &balancer_section(vip, "sh", port))
    })
    .await;
    let sources: Vec<String> = (101..=140).map(|i| net.host(i).to_string()).collect();
    let mut first = Vec::new();
    for s in &sources {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(
                Client::connect_from(vip_addr(vip, port), Some(s))
                    .await
                    .unwrap()
                    .backend,
            );
        }
        assert!(
            got.iter().all(|g| *g == got[0]),
            "client {s} moved: {got:?}"
        );
        first.push(got[0].clone());
    }
    let t = tally(first.iter().map(String::as_str));
    assert_eq!(
        t.len(),
        3,
        "40 client addresses should reach all 3 nodes: {t:?}"
    );
    // Drain n2 (weight 0): its clients move, everyone else stays.
    bal.rewrite(|sh| config_text(vip, &nodes(0), sh, &balancer_section(vip, "sh", port)));
    bal.reload(false).await;
    for (s, before) in sources.iter().zip(&first) {
        let now = Client::connect_from(vip_addr(vip, port), Some(s))
            .await
            .unwrap()
            .backend;
        if before == "n2" {
            assert_ne!(now, "n2", "client {s} still sent to drained n2");
        } else {
            assert_eq!(&now, before, "client {s} moved off healthy {before}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_node_costs_clients_nothing_leaves_rotation_and_returns_after_rise() {
    let net = Block::BalancerDeadNode;
    let (vip, port) = (net.host(10), 7004);
    let nodes = [
        ("n1.test.example", net.host(11), 1),
        ("n2.test.example", net.host(12), 1),
        ("n3.test.example", net.host(13), 1),
    ];
    let mut b = backends(
        &[
            ("n1", net.host(11)),
            ("n2", net.host(12)),
            ("n3", net.host(13)),
        ],
        port,
    )
    .await;
    // Checks every 200 ms (not 1 s): each change of state below waits for `fall` or `rise`
    // of them. `fall = 5` keeps dead n2 in rotation for a second, as 2 checks of 1 s did, so
    // a client meets it (and the balancer counts a failure) even on a busy machine.
    let bal = Balancer::start(&format!("{vip}:9811"), |sh| {
        let section = balancer_section(vip, "rr", port)
            .replace("delay_loop = \"1s\"", "delay_loop = \"200ms\"")
            .replace("fall = 2", "fall = 5");
        config_text(vip, &nodes, sh, &section)
    })
    .await;
    let mut seen = Vec::new();
    for _ in 0..30 {
        seen.push(Client::connect(vip_addr(vip, port)).await.unwrap().backend);
    }
    assert_eq!(tally(seen.iter().map(String::as_str)).len(), 3);

    // n2 dies under traffic: every client still gets an answer (connect retried elsewhere).
    b[1].kill().await;
    for i in 0..60 {
        let c = Client::connect(vip_addr(vip, port))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "client {i} failed after n2 died: {e}\n{}",
                    bal.proc.log_text()
                )
            });
        assert_ne!(c.backend, "n2");
    }
    let failures = bal
        .metric(
            "vipcert_balancer_connect_failures_total",
            &[("backend", "n2.test.example")],
        )
        .await
        .unwrap();
    assert!(failures >= 1.0, "the balancer never tried dead n2");
    // Out of rotation (bound: generous multiple of connect_timeout + delay_loop).
    bal.wait_metric(
        "vipcert_balancer_backend_up",
        &[("backend", "n2.test.example")],
        |v| v == 0.0,
        LONG,
    )
    .await;

    // n3 dies with no traffic at all: the checks alone take it out.
    b[2].kill().await;
    bal.wait_metric(
        "vipcert_balancer_backend_up",
        &[("backend", "n3.test.example")],
        |v| v == 0.0,
        LONG,
    )
    .await;
    for _ in 0..10 {
        assert_eq!(
            Client::connect(vip_addr(vip, port)).await.unwrap().backend,
            "n1"
        );
    }

    // n2 comes back: up again after `rise` good checks, and back in rotation.
    b[1] = Backend::start("n2", &net.addr(12, port).to_string()).await;
    bal.wait_metric(
        "vipcert_balancer_backend_up",
        &[("backend", "n2.test.example")],
        |v| v == 1.0,
        LONG,
    )
    .await;
    assert!(bal
        .proc
        .log_text()
        .contains("backend UP after 2 good check(s)"));
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.push(Client::connect(vip_addr(vip, port)).await.unwrap().backend);
    }
    let t = tally(seen.iter().map(String::as_str));
    assert_eq!((t.get("n1"), t.get("n2")), (Some(&10), Some(&10)), "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_drains_weight_zero_adds_nodes_and_keeps_established_streams() {
    let net = Block::BalancerSighup;
    let (vip, port) = (net.host(10), 7005);
    let two = [
        ("n1.test.example", net.host(11), 1),
        ("n2.test.example", net.host(12), 1),
    ];
    let three = [
        ("n1.test.example", net.host(11), 0),
        ("n2.test.example", net.host(12), 1),
        ("n3.test.example", net.host(13), 1),
    ];
    let _b = backends(
        &[
            ("n1", net.host(11)),
            ("n2", net.host(12)),
            ("n3", net.host(13)),
        ],
        port,
    )
    .await;
    let bal = Balancer::start(&format!("{vip}:9811"), |sh| {
        config_text(vip, &two, sh, &balancer_section(vip, "wlc", port))
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(Client::connect(vip_addr(vip, port)).await.unwrap());
    }
    let t = tally(held.iter().map(|c| c.backend.as_str()));
    assert_eq!((t["n1"], t["n2"]), (5, 5));

    // Reload: n1 drained (weight 0), n3 added.
    bal.rewrite(|sh| config_text(vip, &three, sh, &balancer_section(vip, "wlc", port)));
    bal.reload(false).await;
    for (i, c) in held.iter_mut().enumerate() {
        c.echo(&format!("still here {i}"))
            .await
            .unwrap_or_else(|e| panic!("stream {i} to {} broke across SIGHUP: {e}", c.backend));
    }
    assert_eq!(
        bal.metric(
            "vipcert_balancer_backend_weight",
            &[("backend", "n1.test.example")]
        )
        .await,
        Some(0.0)
    );
    let mut fresh = Vec::new();
    for _ in 0..10 {
        fresh.push(Client::connect(vip_addr(vip, port)).await.unwrap());
    }
    let t = tally(fresh.iter().map(|c| c.backend.as_str()));
    assert_eq!(t.get("n1"), None, "drained n1 got new connections: {t:?}");
    // wlc: n3 starts empty, so it takes the first five; then the two alternate.
    let (n2, n3) = (
        t.get("n2").copied().unwrap_or(0),
        t.get("n3").copied().unwrap_or(0),
    );
    assert!(n2 + n3 == 10 && n3 >= 7 && n2 >= 2, "{t:?}");
    assert_eq!(
        bal.metric(
            "vipcert_balancer_connections_active",
            &[("backend", "n1.test.example")]
        )
        .await,
        Some(5.0),
        "n1's established connections continue"
    );

    // An invalid file is refused; the running config stays and streams are untouched.
    std::fs::write(&bal.config, "virtual_hostname = 1\n").unwrap();
    bal.reload(true).await;
    assert!(bal.proc.log_text().contains("reload refused"));
    for c in held.iter_mut().chain(fresh.iter_mut()) {
        c.echo("after a bad reload").await.unwrap();
    }
    assert_ne!(
        Client::connect(vip_addr(vip, port)).await.unwrap().backend,
        "n1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_drains_then_exits() {
    let net = Block::BalancerSigterm;
    let (vip, port) = (net.host(10), 7006);
    let nodes = [("n1.test.example", net.host(11), 1)];
    let _b = backends(&[("n1", net.host(11))], port).await;
    let mut bal = Balancer::start(&format!("{vip}:9811"), |sh| {
        config_text(vip, &nodes, sh, &balancer_section(vip, "wlc", port))
    })
    .await;
    let mut c = Client::connect(vip_addr(vip, port)).await.unwrap();
    bal.proc.signal("TERM");
    // The listener closes: new connections are refused.
    let t = std::time::Instant::now();
    while tokio::net::TcpStream::connect(vip_addr(vip, port))
        .await
        .is_ok()
    {
        assert!(t.elapsed() < LONG, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The established stream keeps working while draining, and the process waits for it.
    c.echo("draining").await.unwrap();
    assert!(
        bal.proc.child.try_wait().unwrap().is_none(),
        "exited before the drain"
    );
    drop(c);
    let status = bal
        .proc
        .wait_exit(LONG)
        .expect("did not exit after the drain");
    assert!(status.success(), "{status:?}\n{}", bal.proc.log_text());
    assert!(bal.proc.log_text().contains("draining open connections"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The fd lock is a std RwLock held across awaits on purpose: its other holders are other tests'
// threads (their own runtimes), never a task of this one, so it cannot deadlock here.
#[allow(clippy::await_holding_lock)]
async fn holds_eight_thousand_concurrent_connections() {
    let net = Block::BalancerCapacity;
    const N: usize = 8000;
    // This test process holds both ends it creates (client + backend side): 16,000 files, and
    // shares its limit with every other test: hold the lock of the socket-hungry ones.
    let _fds = common::many_fds();
    let limit = vipcert::limits::raise_nofile();
    assert!(
        limit >= 2 * N as u64 + 500,
        "the test needs RLIMIT_NOFILE >= {} (hard limit is {limit})",
        2 * N + 500
    );
    let (vip, port) = (net.host(10), 7007);
    let nodes = [
        ("n1.test.example", net.host(11), 1),
        ("n2.test.example", net.host(12), 1),
    ];
    let _b = backends(&[("n1", net.host(11)), ("n2", net.host(12))], port).await;
    let bal = Balancer::start(&format!("{vip}:9811"), |sh| {
        let section = balancer_section(vip, "wlc", port)
            .replace("connect_timeout = \"1s\"", "connect_timeout = \"3s\"");
        config_text(vip, &nodes, sh, &section)
    })
    .await;
    assert!(bal.proc.log_text().contains("open_files="));
    let mut held = Vec::with_capacity(N);
    for _ in 0..N / 500 {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..500 {
            set.spawn(Client::connect(vip_addr(vip, port)));
        }
        while let Some(r) = set.join_next().await {
            match r.unwrap() {
                Ok(c) => held.push(c),
                Err(e) => {
                    let log = bal.proc.log_text();
                    let tail: Vec<&str> = log.lines().filter(|l| !l.contains("DEBUG")).collect();
                    panic!("connection {} failed: {e}\n{}", held.len(), tail.join("\n"));
                }
            }
        }
    }
    let t = tally(held.iter().map(|c| c.backend.as_str()));
    assert_eq!(t["n1"] + t["n2"], N);
    assert!(
        t["n1"].abs_diff(t["n2"]) <= 1000,
        "wlc should split about evenly: {t:?}"
    );
    let text = bal.try_metrics().await.unwrap();
    let active: f64 = ["n1.test.example", "n2.test.example"]
        .iter()
        .map(|n| {
            common::balancer::find_metric(
                &text,
                "vipcert_balancer_connections_active",
                &[("backend", n)],
            )
            .unwrap()
        })
        .sum();
    assert_eq!(active, N as f64);
    // Every one of them still carries data.
    for (i, c) in held.iter_mut().enumerate().step_by(97) {
        c.echo(&format!("ping {i}")).await.unwrap();
    }
    drop(held);
    for n in ["n1.test.example", "n2.test.example"] {
        bal.wait_metric(
            "vipcert_balancer_connections_active",
            &[("backend", n)],
            |v| v == 0.0,
            LONG,
        )
        .await;
    }
}

/// No [[balancer.service]]: http on 80 (http check of the node server's health route) and
/// gridftp on 2811 (banner check), against two real `vipcert serve` nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_services_check_real_node_servers() {
    let net = Block::BalancerDefaults;
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: binding port 80 on the VIP needs root");
        return;
    }
    let vip = net.host(10);
    let nodes = [
        ("n1.test.example", net.host(11), 1),
        ("n2.test.example", net.host(12), 1),
    ];
    let extra = format!(
        "[serve]\nlisten = [\"0.0.0.0:8181\"]\n[balancer]\ndelay_loop = \"1s\"\nconnect_timeout = \"1s\"\nrise = 1\nfall = 1\nadmin_listen = \"{vip}:9811\"\n"
    );
    let bal = Balancer::start(&format!("{vip}:9811"), |sh| {
        std::fs::create_dir_all(sh).unwrap();
        config_text(vip, &nodes, sh, &extra)
    })
    .await;
    let mut serves = Vec::new();
    for (h, a, _) in nodes {
        serves.push(common::Proc::spawn(
            std::process::Command::new(common::BIN)
                .arg("--config")
                .arg(&bal.config)
                .args(["--node", h, "serve", "--listen", &format!("{a}:8181")]),
            &bal.dir.path().join(format!("{h}.log")),
        ));
    }
    for n in ["n1.test.example", "n2.test.example"] {
        bal.wait_metric(
            "vipcert_balancer_backend_up",
            &[("service", "http"), ("backend", n)],
            |v| v == 1.0,
            LONG,
        )
        .await;
        // Nothing speaks GridFTP on the nodes: the banner check fails.
        bal.wait_metric(
            "vipcert_balancer_backend_up",
            &[("service", "gridftp"), ("backend", n)],
            |v| v == 0.0,
            LONG,
        )
        .await;
    }
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(vip_addr(vip, 80))
        .await
        .unwrap();
    s.write_all(b"GET /.well-known/vipcert/health HTTP/1.0\r\nHost: vip.test.example\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(LONG, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
        "{out}"
    );
    // 2811 has no usable backend: the client is closed, and counted.
    let mut g = tokio::net::TcpStream::connect(vip_addr(vip, 2811))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(LONG, g.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    bal.wait_metric(
        "vipcert_balancer_rejected_total",
        &[("service", "gridftp")],
        |v| v >= 1.0,
        LONG,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes_only_silent_connections() {
    let net = Block::BalancerIdle;
    use tokio::io::AsyncReadExt;
    let (vip, port) = (net.host(10), 7009);
    let nodes = [("n1.test.example", net.host(11), 1)];
    let _b = backends(&[("n1", net.host(11))], port).await;
    let bal = Balancer::start(&format!("{vip}:9811"), |sh| {
        let section = format!(
            "{}idle_timeout = \"1s\"\n",
            balancer_section(vip, "wlc", port)
        );
        config_text(vip, &nodes, sh, &section)
    })
    .await;
    let mut talker = Client::connect(vip_addr(vip, port)).await.unwrap();
    let mut silent = Client::connect(vip_addr(vip, port)).await.unwrap();
    // The talker speaks every 100 ms for 2 s (twice the idle timeout): it must survive.
    for i in 0..20 {
        talker.echo(&format!("tick {i}")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The silent one has been closed by the balancer (EOF, bounded wait).
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(LONG, silent.reader.read(&mut buf))
        .await
        .expect("silent connection still open")
        .unwrap_or(0);
    assert_eq!(n, 0);
    bal.wait_metric(
        "vipcert_balancer_connections_active",
        &[("backend", "n1.test.example")],
        |v| v == 1.0,
        LONG,
    )
    .await;
    talker.echo("still alive").await.unwrap();
}

/// Megabytes both ways through the balancer, with a client that lets the data pile up
/// (backpressure: the proxy must hold and resume, never drop or reorder), and a half-close:
/// the client shuts its write side after the upload and still gets the whole answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_both_ways_is_byte_identical_under_backpressure_and_half_close() {
    let net = Block::BalancerBulk;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const UP: usize = 4 << 20;
    const DOWN: usize = 8 << 20;
    fn pattern(i: usize, salt: u32) -> u8 {
        ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(salt) >> 11) as u8
    }
    let (vip, port) = (net.host(10), 7010);
    let nodes = [("n1.test.example", net.host(11), 1)];
    // Backend: read the whole upload (until the client's FIN), check it, answer DOWN bytes.
    let l = common::balancer::bind_retry(net.addr(11, port)).await;
    let server = tokio::spawn(async move {
        let mut got_ok = Vec::new();
        // The first connection is the balancer's tcp check; serve the real one after it.
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            if s.read_to_end(&mut buf).await.is_err() || buf.is_empty() {
                continue;
            }
            let ok = buf.len() == UP && buf.iter().enumerate().all(|(i, &b)| b == pattern(i, 1));
            got_ok.push(ok);
            let data: Vec<u8> = (0..DOWN).map(|i| pattern(i, 2)).collect();
            s.write_all(&data).await.unwrap();
            return got_ok;
        }
    });
    let (bal, mut c) = one_stream(vip, &nodes, port).await;
    let up: Vec<u8> = (0..UP).map(|i| pattern(i, 1)).collect();
    c.write_all(&up).await.unwrap();
    c.shutdown().await.unwrap(); // half-close: "that was all"
                                 // Let the answer pile up in the proxy before reading it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut down = Vec::new();
    tokio::time::timeout(LONG, c.read_to_end(&mut down))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.await.unwrap(), vec![true], "upload arrived damaged");
    assert_eq!(down.len(), DOWN);
    assert!(
        down.iter().enumerate().all(|(i, &b)| b == pattern(i, 2)),
        "download damaged"
    );
    bal.wait_metric(
        "vipcert_balancer_bytes_in_total",
        &[("backend", "n1.test.example")],
        |v| v == UP as f64,
        LONG,
    )
    .await;
    bal.wait_metric(
        "vipcert_balancer_bytes_out_total",
        &[("backend", "n1.test.example")],
        |v| v == DOWN as f64,
        LONG,
    )
    .await;
}

/// A half-close is forwarded both ways: a node that has said all it will say and shuts
/// down its write side (FIN) but still reads, gets what the client sends after that, and
/// the client sees the node's FIN (end of data) without losing its connection. HAProxy
/// (mode tcp) does this; the balancer used to close the client's whole connection at the
/// node's FIN, so the client's later data never arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_half_closes_first_still_gets_the_clients_data() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const UP: usize = 100_000;
    let net = Block::AtkBalNodeHalfClose;
    let (vip, port) = (net.host(10), 7010);
    let nodes = [("n1.test.example", net.host(11), 1)];
    // The node: greet, shut down its write side, then count what the client still sends.
    let l = common::balancer::bind_retry(net.addr(11, port)).await;
    let server = tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            if s.write_all(b"bye\n").await.is_err() || s.shutdown().await.is_err() {
                continue; // the balancer's tcp check, already gone
            }
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf).await;
            if !buf.is_empty() {
                return buf.len();
            }
        }
    });
    let (bal, mut c) = one_stream(vip, &nodes, port).await;
    let mut got = Vec::new();
    tokio::time::timeout(LONG, c.read_to_end(&mut got))
        .await
        .expect("the node's FIN reaches the client")
        .unwrap();
    assert_eq!(got, b"bye\n");
    c.write_all(&vec![b'q'; UP])
        .await
        .expect("the client may still send after the node's FIN");
    c.shutdown().await.unwrap();
    let n = tokio::time::timeout(LONG, server)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the node never got the client's data:\n{}",
                bal.proc.log_text()
            )
        })
        .unwrap();
    assert_eq!(n, UP);
}

/// Passing the node's FIN on leaves the client's side open; a client that then never closes
/// it is held for 30 s (HAProxy's `timeout client-fin`), not for the service's
/// `idle_timeout` (5 min here; 2 h on 2811). The balancer's clock runs `SPEED` times as fast
/// as the test's (libfaketime): every period below is the balancer's, and takes a fifth of
/// it here (its 30 s take 6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_silent_after_the_nodes_fin_is_closed_after_30_s() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SPEED: u32 = 5;
    let net = Block::AtkBalNodeFin;
    let (vip, port) = (net.host(10), 7010);
    let nodes = [("n1.test.example", net.host(11), 1)];
    // The node says a word and closes.
    let l = common::balancer::bind_retry(net.addr(11, port)).await;
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let _ = s.write_all(b"bye\n").await;
        }
    });
    let (bal, mut c) = one_stream_at(vip, &nodes, port, SPEED).await;
    let mut got = Vec::new();
    tokio::time::timeout(LONG, c.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"bye\n");
    // The client keeps its side open and says nothing: still proxied for a while...
    let active = [("service", "echo"), ("backend", "n1.test.example")];
    tokio::time::sleep(Duration::from_secs(10) / SPEED).await;
    assert_eq!(
        bal.metric("vipcert_balancer_connections_active", &active)
            .await,
        Some(1.0)
    );
    // ...and closed about 30 s after the node's FIN.
    bal.wait_metric(
        "vipcert_balancer_connections_active",
        &active,
        |v| v == 0.0,
        Duration::from_secs(30) / SPEED,
    )
    .await;
    drop(c);
}
