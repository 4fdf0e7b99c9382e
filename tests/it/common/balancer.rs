//! The balancer's test harness (the balancer and gridftp modules): `vipcert balance` as a
//! child with a temp config, its /metrics, small echo backends on their own loopback addresses
//! and clients through the VIP. Not here: the process guard and waits (the parent module).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::{Proc, BIN};

/// `vipcert balance` on a temp config.
pub struct Balancer {
    pub proc: Proc,
    pub admin: SocketAddr,
    pub config: PathBuf,
    pub dir: tempfile::TempDir,
}

/// libfaketime for threaded programs (Debian package libfaketime, which `faketime` pulls in).
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// A config for a VIP and nodes `(hostname, address, weight)`, with `extra` appended (the
/// [balancer] table and services).
pub fn config_text(vip: &str, nodes: &[(&str, &str, u32)], shared: &Path, extra: &str) -> String {
    let mut s = format!(
        "virtual_hostname = \"vip.test.example\"\nvirtual_ip = \"{vip}\"\nshared_dir = \"{}\"\nlayout = \"shared\"\n",
        shared.display()
    );
    for (h, a, w) in nodes {
        s.push_str(&format!(
            "[[node]]\nhostname = \"{h}\"\naddress = \"{a}\"\nweight = {w}\n"
        ));
    }
    s.push_str(extra);
    s
}

impl Balancer {
    pub async fn start(admin: &str, text: impl Fn(&Path) -> String) -> Balancer {
        Self::start_with_nofile(admin, None, text).await
    }

    /// As `start`, with the balancer's open-file limit (soft and hard) set to `nofile` by
    /// prlimit(1), so that a test can run it out of descriptors.
    pub async fn start_with_nofile(
        admin: &str,
        nofile: Option<u64>,
        text: impl Fn(&Path) -> String,
    ) -> Balancer {
        let cmd = match nofile {
            None => Command::new(BIN),
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(BIN);
                c
            }
        };
        Self::start_cmd(admin, cmd, text).await
    }

    /// As `start`, with the balancer's clocks (wall and monotonic, and so its timers) running
    /// `speed` times as fast as the test's, by libfaketime (Debian `faketime`), preloaded into
    /// it alone: for a test of a fixed period of the balancer's, such as the 30 s it holds a
    /// client silent after the node's FIN.
    pub async fn start_faster(admin: &str, speed: u32, text: impl Fn(&Path) -> String) -> Balancer {
        super::need(FAKETIME_LIB, "faketime");
        let mut cmd = Command::new(BIN);
        cmd.env("LD_PRELOAD", FAKETIME_LIB)
            .env("FAKETIME", format!("+0 x{speed}"));
        Self::start_cmd(admin, cmd, text).await
    }

    /// `cmd` (`vipcert` or a wrapper that execs it) run as `vipcert --config <temp> balance`;
    /// returns once its admin endpoint answers.
    async fn start_cmd(admin: &str, mut cmd: Command, text: impl Fn(&Path) -> String) -> Balancer {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("vipcert.toml");
        std::fs::write(&config, text(&dir.path().join("shared"))).unwrap();
        let proc = Proc::spawn(
            cmd.arg("--config")
                .arg(&config)
                .arg("balance")
                .env("RUST_LOG", "vipcert=debug")
                .env("NO_COLOR", "1"),
            &dir.path().join("balance.log"),
        );
        let b = Balancer {
            proc,
            admin: admin.parse().unwrap(),
            config,
            dir,
        };
        let t = Instant::now();
        while b.try_metrics().await.is_none() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "balancer did not come up:\n{}",
                b.proc.log_text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        b
    }

    pub fn rewrite(&self, text: impl Fn(&Path) -> String) {
        std::fs::write(&self.config, text(&self.dir.path().join("shared"))).unwrap();
    }

    /// SIGHUP and wait until the reload counter moves (or the error counter, if `expect_error`).
    pub async fn reload(&self, expect_error: bool) {
        let name = if expect_error {
            "vipcert_balancer_reload_errors_total"
        } else {
            "vipcert_balancer_reloads_total"
        };
        let before = self.metric(name, &[]).await.unwrap_or(0.0);
        self.proc.signal("HUP");
        self.wait_metric(name, &[], |v| v > before, Duration::from_secs(20))
            .await;
    }

    pub async fn try_metrics(&self) -> Option<String> {
        let mut s = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(self.admin))
            .await
            .ok()?
            .ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .await
            .ok()?;
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
            .await
            .ok()?
            .ok()?;
        out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
    }

    /// The value of `name` whose labels include every `labels` pair.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let text = self.try_metrics().await?;
        find_metric(&text, name, labels)
    }

    pub async fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        pred: impl Fn(f64) -> bool,
        bound: Duration,
    ) -> f64 {
        let t = Instant::now();
        loop {
            if let Some(v) = self.metric(name, labels).await {
                if pred(v) {
                    return v;
                }
            }
            if t.elapsed() > bound {
                panic!(
                    "{name}{labels:?} did not reach the expected value within {bound:?}; metrics:\n{}\nlog:\n{}",
                    self.try_metrics().await.unwrap_or_default(),
                    self.proc.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn find_metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, val) = l.rsplit_once(' ')?;
        let (n, rest) = key.split_once('{').unwrap_or((key, ""));
        if n != name {
            return None;
        }
        if labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        {
            val.parse().ok()
        } else {
            None
        }
    })
}

/// An echo backend: says "<name>\n" on connect, then echoes every line. Dropping it (or
/// `kill`) closes the listener and every connection, like a dead process.
pub struct Backend {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Backend {
    pub async fn start(name: &str, addr: &str) -> Backend {
        let addr: SocketAddr = addr.parse().unwrap();
        let l = bind_retry(addr).await;
        let n = name.to_string();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    a = l.accept() => {
                        let Ok((s, _)) = a else { continue };
                        let n = n.clone();
                        conns.spawn(async move {
                            let _ = s.set_nodelay(true);
                            let (r, mut w) = s.into_split();
                            if w.write_all(format!("{n}\n").as_bytes()).await.is_err() {
                                return;
                            }
                            let mut r = BufReader::new(r);
                            let mut line = String::new();
                            while let Ok(k) = r.read_line(&mut line).await {
                                if k == 0 || w.write_all(line.as_bytes()).await.is_err() {
                                    return;
                                }
                                line.clear();
                            }
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Backend { task: Some(task) }
    }
    pub async fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Bind, retrying briefly: a just-closed listener's address may still be settling.
pub async fn bind_retry(addr: SocketAddr) -> TcpListener {
    let t = Instant::now();
    let bind = || -> std::io::Result<TcpListener> {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.set_reuseaddr(true)?;
        s.bind(addr)?;
        // Deep backlog: the capacity test opens 500 connections at once.
        s.listen(4096)
    };
    loop {
        match bind() {
            Ok(l) => return l,
            Err(e) if t.elapsed() > Duration::from_secs(10) => panic!("bind {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A client connection through the balancer: which backend answered, and the stream.
pub struct Client {
    pub backend: String,
    pub reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    pub writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    pub async fn connect(vip: SocketAddr) -> std::io::Result<Client> {
        Self::connect_from(vip, None).await
    }
    pub async fn connect_from(vip: SocketAddr, source: Option<&str>) -> std::io::Result<Client> {
        let sock = tokio::net::TcpSocket::new_v4()?;
        if let Some(src) = source {
            sock.bind(format!("{src}:0").parse().unwrap())?;
        }
        let s = tokio::time::timeout(Duration::from_secs(10), sock.connect(vip))
            .await
            .map_err(|_| std::io::Error::other("connect timed out"))??;
        let (r, writer) = s.into_split();
        let mut reader = BufReader::new(r);
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
            .await
            .map_err(|_| std::io::Error::other("no greeting within 10 s"))??;
        if n == 0 {
            return Err(std::io::Error::other("closed before the greeting"));
        }
        Ok(Client {
            backend: line.trim_end().to_string(),
            reader,
            writer,
        })
    }
    /// Send a line and expect it back.
    pub async fn echo(&mut self, msg: &str) -> std::io::Result<()> {
        self.writer.write_all(format!("{msg}\n").as_bytes()).await?;
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
            .await
            .map_err(|_| std::io::Error::other("no echo within 10 s"))??;
        if line != format!("{msg}\n") {
            return Err(std::io::Error::other(format!("echo was {line:?}")));
        }
        Ok(())
    }
}

/// Count connections per backend name.
pub fn tally<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for n in names {
        *m.entry(n.to_string()).or_insert(0) += 1;
    }
    m
}
