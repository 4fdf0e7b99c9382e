//! The balancer's own limits (issue 9): running out of descriptors is the balancer's
//! condition, never a backend's failure, and a flood on one service cannot starve another.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::balancer::{config_text, Backend, Balancer, Client};
use crate::common::net::Block;

/// Two echo services on the VIP, both to node n1; `a` capped at 20 clients (below its
/// share of the descriptor budget, so its `max_connections` is what closes its flood).
fn section(vip: &str) -> String {
    format!(
        "[balancer]\nscheduler = \"wlc\"\ndelay_loop = \"500ms\"\nconnect_timeout = \"1s\"\nrise = 2\nfall = 2\nadmin_listen = \"{vip}:9811\"\nthreads = 1\n\
         [[balancer.service]]\nname = \"a\"\nport = 7101\ncheck = \"tcp\"\nmax_connections = 20\n\
         [[balancer.service]]\nname = \"b\"\nport = 7102\ncheck = \"tcp\"\n"
    )
}

/// Open `n` connections to `to` without waiting for anything (a flood of idle clients).
async fn flood(to: SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut v = Vec::new();
    for _ in 0..n {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(to)).await
        {
            v.push(s);
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_meet_the_balancers_limits_not_the_backends() {
    let net = Block::BalancerFds;
    let vip = net.host(10);
    let nodes = [("n1.test.example", net.host(11), 1)];
    let _a = Backend::start("n1", &format!("{}:7101", net.host(11))).await;
    let _b = Backend::start("n1", &format!("{}:7102", net.host(11))).await;
    // 200 descriptors: 64 + 2 per checked backend are kept aside, (200 - 68) / 2 = 66
    // clients in all: 20 for `a` (its max_connections), 46 for `b`.
    let bal = Balancer::start_with_nofile(&format!("{vip}:9811"), Some(200), |sh| {
        config_text(vip, &nodes, sh, &section(vip))
    })
    .await;
    let (a, b) = (
        format!("{vip}:7101").parse().unwrap(),
        format!("{vip}:7102").parse().unwrap(),
    );

    // 150 idle clients on `a`: 20 are proxied, the rest closed at once.
    let _fa = flood(a, 150).await;
    // `b` still serves.
    let mut c = Client::connect(b)
        .await
        .expect("service b answers beside a's flood");
    c.echo("hello").await.unwrap();
    drop(c);
    bal.wait_metric(
        "vipcert_balancer_refused_total",
        &[("service", "a"), ("reason", "limit")],
        |v| v >= 100.0,
        Duration::from_secs(10),
    )
    .await;

    // Now `b` floods too, past the descriptor budget: refused as "descriptors".
    let _fb = flood(b, 100).await;
    bal.wait_metric(
        "vipcert_balancer_refused_total",
        &[("service", "b"), ("reason", "descriptors")],
        |v| v >= 50.0,
        Duration::from_secs(10),
    )
    .await;
    // Through several rounds of checks (fall = 2 at 500 ms), the backends stay up, the admin
    // listener answers, and nothing blames a backend.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for svc in ["a", "b"] {
        let up = bal
            .metric(
                "vipcert_balancer_backend_up",
                &[("service", svc), ("backend", "n1.test.example")],
            )
            .await;
        assert_eq!(up, Some(1.0), "service {svc}:\n{}", bal.proc.log_text());
    }
    let log = bal.proc.log_text();
    assert!(!log.contains("backend DOWN"), "{log}");
    assert!(!log.contains("Too many open files"), "{log}");
}

/// Hundreds of half-sent requests held open on the admin listener (slowloris) take no
/// descriptors the health checks and clients need: /metrics answers, clients are proxied,
/// and a backend that dies is still seen DOWN. Before, the admin listener kept every such
/// connection forever: the process ran out of descriptors, checks were skipped (a dead node
/// stayed UP), /metrics and the VIP stopped answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_slowloris_takes_no_descriptors_from_checks_or_clients() {
    use tokio::io::AsyncWriteExt;
    let net = Block::AtkBalAdmin;
    let vip = net.host(10);
    let nodes = [
        ("n1.test.example", net.host(11), 1),
        ("n2.test.example", net.host(12), 1),
    ];
    let _n1 = Backend::start("n1", &format!("{}:7101", net.host(11))).await;
    let mut n2 = Backend::start("n2", &format!("{}:7101", net.host(12))).await;
    let text = format!(
        "[balancer]\nscheduler = \"rr\"\ndelay_loop = \"500ms\"\nconnect_timeout = \"1s\"\nrise = 2\nfall = 2\nadmin_listen = \"{vip}:9811\"\nthreads = 1\n\
         [[balancer.service]]\nname = \"a\"\nport = 7101\ncheck = \"tcp\"\n"
    );
    let bal = Balancer::start_with_nofile(&format!("{vip}:9811"), Some(300), |sh| {
        config_text(vip, &nodes, sh, &text)
    })
    .await;
    let admin: SocketAddr = format!("{vip}:9811").parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..400 {
        let Ok(Ok(mut s)) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(admin),
        )
        .await
        else {
            continue;
        };
        // Never finish the request.
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await;
        held.push(s);
    }
    // Past any header timeout a slow client may get, the admin listener still answers.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = bal.try_metrics().await;
    assert!(
        m.is_some(),
        "/metrics does not answer beside {} held admin connections:\n{}",
        held.len(),
        bal.proc.log_text()
    );
    let vip_a: SocketAddr = format!("{vip}:7101").parse().unwrap();
    let mut c = Client::connect(vip_a)
        .await
        .unwrap_or_else(|e| panic!("no client proxied: {e}\n{}", bal.proc.log_text()));
    c.echo("hello").await.unwrap();
    drop(c);
    // A node that dies meanwhile is seen DOWN: the checks still get their descriptors.
    n2.kill().await;
    bal.wait_metric(
        "vipcert_balancer_backend_up",
        &[("service", "a"), ("backend", "n2.test.example")],
        |v| v == 0.0,
        Duration::from_secs(10),
    )
    .await;
    let log = bal.proc.log_text();
    assert!(!log.contains("health check skipped"), "{log}");
    drop(held);
}

/// Issue 9's case, scaled down: an open-file limit below what the services'
/// `max_connections` (both at the default 10,000) add up to. A flood on one service takes
/// its share of the descriptor budget and no more: the other is still proxied. Before, the
/// first flood took every place and the other service's clients were closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_on_one_service_leaves_another_its_share_of_descriptors() {
    let net = Block::AtkBalShares;
    let vip = net.host(10);
    let nodes = [("n1.test.example", net.host(11), 1)];
    let _a = Backend::start("n1", &format!("{}:7101", net.host(11))).await;
    let _b = Backend::start("n1", &format!("{}:7102", net.host(11))).await;
    let text = format!(
        "[balancer]\ndelay_loop = \"500ms\"\nconnect_timeout = \"1s\"\nrise = 2\nfall = 2\nadmin_listen = \"{vip}:9811\"\nthreads = 1\n\
         [[balancer.service]]\nname = \"a\"\nport = 7101\ncheck = \"tcp\"\n\
         [[balancer.service]]\nname = \"b\"\nport = 7102\ncheck = \"tcp\"\n"
    );
    // 200 descriptors: (200 - 68) / 2 = 66 clients in all, 33 sure to each service.
    let bal = Balancer::start_with_nofile(&format!("{vip}:9811"), Some(200), |sh| {
        config_text(vip, &nodes, sh, &text)
    })
    .await;
    let (a, b): (SocketAddr, SocketAddr) = (
        format!("{vip}:7101").parse().unwrap(),
        format!("{vip}:7102").parse().unwrap(),
    );
    let _fa = flood(a, 150).await;
    bal.wait_metric(
        "vipcert_balancer_refused_total",
        &[("service", "a"), ("reason", "descriptors")],
        |v| v >= 80.0,
        Duration::from_secs(10),
    )
    .await;
    // `b` gets its 33 places beside a's flood.
    let mut held = Vec::new();
    for i in 0..33 {
        let mut c = Client::connect(b).await.unwrap_or_else(|e| {
            panic!(
                "service b, client {i}: {e} beside a's flood\n{}",
                bal.proc.log_text()
            )
        });
        c.echo("hello").await.unwrap();
        held.push(c);
    }
    let refused_b = bal
        .metric(
            "vipcert_balancer_refused_total",
            &[("service", "b"), ("reason", "descriptors")],
        )
        .await;
    assert_eq!(refused_b, Some(0.0));
    let log = bal.proc.log_text();
    assert!(log.contains("shares=a=33,b=33"), "{log}");
    assert!(!log.contains("backend DOWN"), "{log}");
}
