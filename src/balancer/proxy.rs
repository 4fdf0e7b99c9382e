//! The data path: listening sockets (IP_FREEBIND, optional SO_REUSEPORT), the accept loop,
//! the connect to a backend with retry on another one, and the byte pump between client and
//! backend.
//!
//! Written on raw non-blocking sockets and tokio's `AsyncFd` rather than `TcpStream` +
//! `copy_bidirectional`, for the syscalls it saves per request (measured against HAProxy,
//! see docs/balancer.md):
//! - one task polls both directions (one wake-up per event, not two);
//! - a short read means the socket is drained, so readiness is cleared without the extra
//!   `recv` that would return EAGAIN (what HAProxy does too);
//! - writes go straight to the socket; readiness is waited for only after EAGAIN;
//! - reads land in one per-thread scratch buffer and are written out at once; a connection
//!   owns a buffer only while the peer is not keeping up, so idle connections cost no buffer.
//!
//! It does not choose backends (`pool`/`scheduler`) or judge their health (`health`).

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use rustix::net::{
    sockopt, AddressFamily, RecvFlags, SendFlags, Shutdown, SocketFlags, SocketType,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::pool::{Backend, Pool, ShardedCounter};
use crate::config::Scheduler;

/// Per-thread read buffer. Measured on the 1 MB transfers: 16 KiB (HAProxy's bufsize) costs
/// about 480-570 us of CPU per MB, 64 KiB 300-340, 256 KiB 265. A connection whose reader
/// lags keeps at most one such chunk, so this is also the per-connection worst case.
const SCRATCH_SIZE: usize = 128 * 1024;
const LISTEN_BACKLOG: i32 = 4096;
/// How long a client may stay silent once the node has closed its side (its FIN passed on):
/// HAProxy's `timeout client-fin`. Shorter than a service's `idle_timeout` only.
const AFTER_NODE_FIN: Duration = Duration::from_secs(30);

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH_SIZE].into_boxed_slice());
}

/// A listening socket on `addr`; IP_FREEBIND lets it bind the VIP before keepalived (or the
/// admin) puts the address on an interface.
pub(crate) fn listen(
    addr: SocketAddr,
    reuseport: bool,
    keepalive: Option<Duration>,
) -> io::Result<OwnedFd> {
    let fd = tcp_socket(addr)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    if addr.is_ipv4() {
        sockopt::set_ip_freebind(&fd, true)?;
    } else {
        sockopt::set_ipv6_freebind(&fd, true)?;
    }
    if reuseport {
        // One listener per worker thread; the kernel spreads new connections among them.
        sockopt::set_socket_reuseport(&fd, true)?;
    }
    // Accepted sockets inherit these from the listener (Linux copies the listener's
    // options into each child): no setsockopt per client.
    sockopt::set_tcp_nodelay(&fd, true)?;
    if let Some(ka) = keepalive {
        set_keepalive(&fd, ka)?;
    }
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, LISTEN_BACKLOG)?;
    Ok(fd)
}

/// Register a socket with this thread's reactor.
// One of the crate's two unsafe calls (Cargo.toml denies unsafe code elsewhere).
#[allow(unsafe_code)]
fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and the same for
    // the AsyncFd's whole life.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(|e| e.into_parts().1)
}

/// Accept clients on `listener` until `stop`, each served in its own task on `tracker`.
/// `all` is every service's pool (for the descriptor shares).
pub(crate) async fn accept_loop(
    listener: OwnedFd,
    pool: Arc<Pool>,
    all: Arc<Vec<Arc<Pool>>>,
    fds: Arc<FdBudget>,
    stop: CancellationToken,
    tracker: TaskTracker,
) -> io::Result<()> {
    let listener = register(listener, Interest::READABLE)?;
    loop {
        let mut guard = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            g = listener.readable() => g?,
        };
        // Only `sh` needs the client's address; skip decoding it otherwise.
        let want_peer = pool.settings().scheduler == Scheduler::Sh;
        loop {
            let r = guard.try_io(|l| {
                let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
                if want_peer {
                    let (fd, peer) = rustix::net::acceptfrom_with(l, flags)?;
                    let ip = peer
                        .and_then(|p| SocketAddr::try_from(p).ok())
                        .map(|p| p.ip());
                    Ok((fd, ip))
                } else {
                    Ok((rustix::net::accept_with(l, flags)?, None))
                }
            });
            match r {
                Ok(Ok((fd, peer))) => match Client::admit(&pool, &fds, &all) {
                    Ok(client) => {
                        tracker.spawn(async move {
                            serve_client(client.0.clone(), fd, peer).await;
                            drop(client);
                        });
                    }
                    Err(why) => {
                        // Closed at once: the client sees a reset, not a hang.
                        drop(fd);
                        pool.refuse(matches!(why, Refused::Descriptors));
                    }
                },
                Ok(Err(e)) if is_fd_exhaustion(&e) => {
                    // Edge-triggered: the pending connection will not wake us again, so
                    // retry after a pause instead of waiting for readiness.
                    tracing::warn!(service = %pool.name, error = %e, "out of file descriptors: accept paused 100 ms");
                    drop(guard);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    break;
                }
                Ok(Err(e)) => {
                    tracing::debug!(service = %pool.name, error = %e, "accept");
                }
                Err(_would_block) => break,
            }
        }
    }
}

/// This process (or the system) is out of descriptors or socket memory: the balancer's own
/// condition, never a backend's failure.
pub(super) fn is_fd_exhaustion(e: &io::Error) -> bool {
    use rustix::io::Errno;
    let code = e.raw_os_error();
    [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM]
        .iter()
        .any(|x| Some(x.raw_os_error()) == code)
}

/// The descriptors proxied clients may use, process-wide: the open-file limit less a
/// reserve for health checks, the admin listener, logs and reloads. Each client holds two
/// (client and backend socket), so the proxy stops at (limit - reserve) / 2 clients and the
/// checks never meet EMFILE because of client traffic.
pub(crate) struct FdBudget {
    clients: u64,
    used: AtomicU64,
}

impl FdBudget {
    /// Descriptors kept for everything but proxied clients: 64, plus two per health-checked
    /// backend (a check and a spare).
    pub(crate) fn reserve(backends: usize) -> u64 {
        64 + 2 * backends as u64
    }

    pub(crate) fn new(nofile: u64, reserve: u64) -> FdBudget {
        FdBudget {
            clients: nofile.saturating_sub(reserve) / 2,
            used: AtomicU64::new(0),
        }
    }

    /// Most clients proxied at once.
    pub(crate) fn clients(&self) -> u64 {
        self.clients
    }

    /// Each service's share of [`FdBudget::clients`] that the others' floods cannot take
    /// (see [`shares`]).
    pub(crate) fn shares(&self, max_connections: &[u64]) -> Vec<u64> {
        shares(self.clients, max_connections)
    }
}

/// The descriptor budget's shares (max-min fair): a service whose `max_connections` is
/// below an equal split keeps all of it, the others split the rest equally. When the
/// services' `max_connections` fit in `budget`, each share is its `max_connections`. A
/// service may go past its share only into descriptors the other services' shares leave
/// unused, so a flood on one never takes another's share (with `LimitNOFILE=20000` and two
/// services at the default 10,000, one flood took all 9,966 places).
pub(crate) fn shares(budget: u64, max_connections: &[u64]) -> Vec<u64> {
    let mut out = vec![0u64; max_connections.len()];
    let mut order: Vec<usize> = (0..max_connections.len()).collect();
    order.sort_by_key(|&i| max_connections[i]);
    let mut left = budget;
    for (k, &i) in order.iter().enumerate() {
        let equal = left / (order.len() - k) as u64;
        out[i] = max_connections[i].min(equal);
        left -= out[i];
    }
    out
}

/// Holds one client's place: in its service's `clients` and in the descriptor budget.
struct Client(Arc<Pool>, Arc<FdBudget>);

impl Client {
    /// A place for a new client of `pool`, or which limit refused it. Past its share of the
    /// descriptor budget, a service takes only places the other services' shares leave
    /// unused (`all` is every service's pool, `pool` among them).
    fn admit(pool: &Arc<Pool>, fds: &Arc<FdBudget>, all: &[Arc<Pool>]) -> Result<Client, Refused> {
        let max = pool.settings().service.max_connections;
        let mine = pool.clients.fetch_add(1, Ordering::Relaxed);
        if mine >= max {
            pool.clients.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::Limit);
        }
        let kept = if mine >= pool.share.load(Ordering::Relaxed) {
            all.iter()
                .filter(|p| !Arc::ptr_eq(p, pool))
                .map(|p| {
                    let (share, used) = (
                        p.share.load(Ordering::Relaxed),
                        p.clients.load(Ordering::Relaxed),
                    );
                    share.saturating_sub(used)
                })
                .sum()
        } else {
            0
        };
        if fds.used.fetch_add(1, Ordering::Relaxed) + kept >= fds.clients {
            fds.used.fetch_sub(1, Ordering::Relaxed);
            pool.clients.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::Descriptors);
        }
        Ok(Client(pool.clone(), fds.clone()))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
        self.1.used.fetch_sub(1, Ordering::Relaxed);
    }
}

enum Refused {
    /// The service has `max_connections` clients.
    Limit,
    /// The process-wide descriptor budget is used up.
    Descriptors,
}

/// Holds one `active` count on a backend for the life of a proxied connection.
struct Active(Arc<Backend>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_client(pool: Arc<Pool>, client: OwnedFd, peer: Option<IpAddr>) {
    let s = pool.settings();
    let list = pool.backends();
    let mut tried: Vec<usize> = Vec::new();
    let (active, server) = loop {
        let Some(i) = pool.pick(&list, s.scheduler, peer, &tried) else {
            pool.reject();
            return;
        };
        let b = &list[i];
        // Counted before the connect, as IPVS counts at SYN: concurrent picks see it.
        b.active.fetch_add(1, Ordering::Relaxed);
        let active = Active(b.clone());
        match connect(b.addr, s.connect_timeout, s.service.tcp_keepalive).await {
            Ok(fd) => break (active, fd),
            Err(e) if is_fd_exhaustion(&e) => {
                // Our own descriptors ran out, not the backend: close this client and
                // leave the backend's record alone.
                pool.refuse(true);
                return;
            }
            Err(e) => {
                drop(active);
                b.connect_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(service = %pool.name, backend = %b.node, error = %e, "connect failed: trying another backend");
                // Have the node checked now. The failed connect itself does not count
                // toward `fall`: an overloaded node that drops a SYN is not dead.
                b.kick.notify_one();
                tried.push(i);
            }
        }
    };
    let b = active.0.clone();
    b.total.fetch_add(1, Ordering::Relaxed);
    let client = match register(client, Interest::READABLE | Interest::WRITABLE) {
        Ok(c) => c,
        Err(_) => return,
    };
    let pump = Pump {
        client,
        server,
        up: Half::default(),
        down: Half::default(),
        idle_timeout: s.service.idle_timeout,
        last: Instant::now(),
        idle: Box::pin(tokio::time::sleep(s.service.idle_timeout)),
        backend: b,
    };
    if let Err(e) = pump.await {
        tracing::debug!(service = %pool.name, error = %e, "connection ended");
    }
    drop(active);
}

fn set_keepalive(fd: &OwnedFd, idle: Duration) -> io::Result<()> {
    sockopt::set_socket_keepalive(fd, true)?;
    sockopt::set_tcp_keepidle(fd, idle)?;
    sockopt::set_tcp_keepintvl(fd, (idle / 4).max(Duration::from_secs(1)))?;
    sockopt::set_tcp_keepcnt(fd, 4)?;
    Ok(())
}

/// A non-blocking, close-on-exec TCP socket of `addr`'s family.
fn tcp_socket(addr: SocketAddr) -> io::Result<OwnedFd> {
    let fam = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    Ok(rustix::net::socket_with(
        fam,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Non-blocking connect with TCP_NODELAY, bounded by `timeout`.
pub(crate) async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    keepalive: Option<Duration>,
) -> io::Result<AsyncFd<OwnedFd>> {
    let fd = tcp_socket(addr)?;
    sockopt::set_tcp_nodelay(&fd, true)?;
    if let Some(ka) = keepalive {
        set_keepalive(&fd, ka)?;
    }
    match rustix::net::connect(&fd, &addr) {
        Ok(()) => return register(fd, Interest::READABLE | Interest::WRITABLE),
        Err(rustix::io::Errno::INPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    let afd = register(fd, Interest::READABLE | Interest::WRITABLE)?;
    let wait = async {
        loop {
            let mut g = afd.writable().await?;
            let r = g.ready();
            if !r.is_error() && !r.is_write_closed() && !r.is_read_closed() {
                // Plain writability means connected: skip the SO_ERROR syscall.
                return Ok(());
            }
            match sockopt::socket_error(afd.get_ref())? {
                Ok(()) => return Ok(()),
                Err(rustix::io::Errno::INPROGRESS) | Err(rustix::io::Errno::AGAIN) => {
                    g.clear_ready()
                }
                Err(e) => return Err(io::Error::from(e)),
            }
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(Ok(())) => Ok(afd),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no connection within {timeout:?}"),
        )),
    }
}

/// One direction of a connection.
#[derive(Default)]
struct Half {
    /// Bytes read but not yet accepted by the writer (allocated only when it lags).
    pending: Vec<u8>,
    pos: usize,
    /// The last write hit EAGAIN: wait for writability before the next one.
    blocked: bool,
    eof: bool,
    done: bool,
    /// The writer's side has been shut down (FIN sent) after `done`.
    fin_sent: bool,
}

struct Pump {
    client: AsyncFd<OwnedFd>,
    server: AsyncFd<OwnedFd>,
    up: Half,
    down: Half,
    idle_timeout: Duration,
    last: Instant,
    idle: Pin<Box<tokio::time::Sleep>>,
    backend: Arc<Backend>,
}

impl Future for Pump {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (a, b, moved) = SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let mut moved = false;
            let a = pump(
                &this.client,
                &this.server,
                &mut this.up,
                cx,
                &mut s,
                &this.backend.bytes_in,
                &mut moved,
            );
            let b = pump(
                &this.server,
                &this.client,
                &mut this.down,
                cx,
                &mut s,
                &this.backend.bytes_out,
                &mut moved,
            );
            (a, b, moved)
        });
        match (a, b) {
            (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => return Poll::Ready(Err(e)),
            (Poll::Ready(Ok(())), Poll::Ready(Ok(()))) => return Poll::Ready(Ok(())),
            _ => {}
        }
        this.pass_fins();
        this.poll_idle(cx, moved)
    }
}

// The hot path: `poll`'s steps are functions for reading only; `inline(always)` keeps the
// code the compiler makes for `poll` what it was when they were one body.
impl Pump {
    /// One direction has ended, the other goes on: pass the half-close on, both ways (as
    /// HAProxy does). The peer sees our FIN and may still answer (client -> node) or still
    /// send (node -> client). When both have ended, the close sends the FINs.
    #[inline(always)]
    fn pass_fins(&mut self) {
        for (h, dst) in [(&mut self.up, &self.server), (&mut self.down, &self.client)] {
            if h.done && !h.fin_sent {
                let _ = rustix::net::shutdown(dst.get_ref(), Shutdown::Write);
                h.fin_sent = true;
            }
        }
    }

    /// The idle timer: Pending while bytes `moved` recently enough, a TimedOut error once
    /// nothing has for the idle timeout.
    #[inline(always)]
    fn poll_idle(&mut self, cx: &mut Context<'_>, moved: bool) -> Poll<io::Result<()>> {
        if moved {
            // The timer is re-armed only when it fires, not per chunk.
            self.last = Instant::now();
        }
        if self.down.done && self.idle_timeout > AFTER_NODE_FIN {
            // The node has closed its side and the client has been told: a client that
            // keeps its side open without a word holds its place for AFTER_NODE_FIN, not
            // for the 2 h that a GridFTP control channel may idle.
            self.idle_timeout = AFTER_NODE_FIN;
            self.idle
                .as_mut()
                .reset((self.last + AFTER_NODE_FIN).into());
        }
        while self.idle.as_mut().poll(cx).is_ready() {
            let deadline = self.last + self.idle_timeout;
            if deadline <= Instant::now() {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")));
            }
            self.idle.as_mut().reset(deadline.into());
        }
        Poll::Pending
    }
}

/// Move bytes `src` -> `dst` until EAGAIN (Pending) or EOF reached and everything before
/// it written (Ready; `Pump` passes the FIN on).
fn pump(
    src: &AsyncFd<OwnedFd>,
    dst: &AsyncFd<OwnedFd>,
    h: &mut Half,
    cx: &mut Context<'_>,
    scratch: &mut [u8],
    counter: &ShardedCounter,
    moved: &mut bool,
) -> Poll<io::Result<()>> {
    if h.done {
        return Poll::Ready(Ok(()));
    }
    loop {
        ready!(flush(dst, h, cx))?;
        if h.eof {
            h.done = true;
            return Poll::Ready(Ok(()));
        }
        let mut guard = ready!(src.poll_read_ready(cx))?;
        let readiness = guard.ready();
        let n = match guard.try_io(|fd| {
            rustix::net::recv(fd.get_ref(), &mut *scratch, RecvFlags::empty())
                .map(|(n, _)| n)
                .map_err(io::Error::from)
        }) {
            Err(_would_block) => continue,
            Ok(Err(e)) => return Poll::Ready(Err(e)),
            Ok(Ok(0)) => {
                h.eof = true;
                continue;
            }
            Ok(Ok(n)) => n,
        };
        if n < scratch.len() && !readiness.is_read_closed() && !readiness.is_error() {
            // A short read emptied the socket: skip the recv that would say EAGAIN. Safe
            // with edge-triggered epoll: data arriving later raises a new event.
            guard.clear_ready();
        }
        *moved = true;
        counter.add(n as u64);
        forward(dst, &scratch[..n], h)?;
    }
}

/// Write what `h` holds back; once caught up, give its buffer back. Part of `pump` (the hot
/// path), inlined into it.
#[inline(always)]
fn flush(dst: &AsyncFd<OwnedFd>, h: &mut Half, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    while h.pos < h.pending.len() {
        let n = ready!(write_some(dst, &h.pending[h.pos..], &mut h.blocked, cx))?;
        h.pos += n;
    }
    if h.pos > 0 {
        // Caught up: give the buffer back. Cleared but kept, it stayed with the connection
        // for its whole life (measured: 150 kB per connection that had once lagged, held
        // through hours of idling on 2811).
        h.pending = Vec::new();
        h.pos = 0;
    }
    Poll::Ready(Ok(()))
}

/// Send `buf`, just read, directly; what the socket does not take waits in `h`. Part of
/// `pump` (the hot path), inlined into it.
#[inline(always)]
fn forward(dst: &AsyncFd<OwnedFd>, buf: &[u8], h: &mut Half) -> io::Result<()> {
    let mut off = 0;
    while off < buf.len() {
        match try_send(dst, &buf[off..], &mut h.blocked)? {
            Some(k) => off += k,
            None => break,
        }
    }
    if off < buf.len() {
        h.pending.extend_from_slice(&buf[off..]);
    }
    Ok(())
}

/// A direct send unless the last one hit EAGAIN; Ok(None) when the socket is full.
fn try_send(dst: &AsyncFd<OwnedFd>, buf: &[u8], blocked: &mut bool) -> io::Result<Option<usize>> {
    if *blocked {
        return Ok(None);
    }
    match rustix::net::send(dst.get_ref(), buf, SendFlags::NOSIGNAL) {
        Ok(n) => Ok(Some(n)),
        Err(rustix::io::Errno::AGAIN) => {
            *blocked = true;
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn write_some(
    dst: &AsyncFd<OwnedFd>,
    buf: &[u8],
    blocked: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if let Some(n) = try_send(dst, buf, blocked)? {
        return Poll::Ready(Ok(n));
    }
    loop {
        let mut g = ready!(dst.poll_write_ready(cx))?;
        match g.try_io(|fd| {
            rustix::net::send(fd.get_ref(), buf, SendFlags::NOSIGNAL).map_err(io::Error::from)
        }) {
            Ok(Ok(n)) => {
                *blocked = false;
                return Poll::Ready(Ok(n));
            }
            Ok(Err(e)) => return Poll::Ready(Err(e)),
            Err(_would_block) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Max-min fair shares: small services keep their whole max_connections, the big
    /// ones split the rest; when everything fits, nothing is cut.
    #[test]
    fn descriptor_shares_are_max_min_fair() {
        // The case: LimitNOFILE=20000, two services at the default 10,000.
        assert_eq!(shares(9966, &[10_000, 10_000]), vec![4983, 4983]);
        assert_eq!(shares(9966, &[100, 10_000]), vec![100, 9866]);
        assert_eq!(shares(66, &[20, 10_000]), vec![20, 46]);
        assert_eq!(shares(66, &[40, 10_000]), vec![33, 33]);
        assert_eq!(shares(32_734, &[10_000, 10_000]), vec![10_000, 10_000]);
        assert_eq!(shares(10, &[10_000, 3, 10_000]), vec![3, 3, 4]);
        assert_eq!(shares(10, &[]), Vec::<u64>::new());
    }

    /// A direction holds a buffer only while its writer lags: once the reader has caught up,
    /// the allocation is given back (a connection that lagged once, then idles for hours on
    /// 2811, holds nothing).
    #[tokio::test]
    async fn a_half_holds_a_buffer_only_while_its_reader_lags() {
        use std::io::{Read, Write};
        use std::os::unix::net::UnixStream;
        const TOTAL: usize = 4 << 20;
        let (src, mut writer) = UnixStream::pair().unwrap();
        let (dst, mut reader) = UnixStream::pair().unwrap();
        src.set_nonblocking(true).unwrap();
        dst.set_nonblocking(true).unwrap();
        let rw = Interest::READABLE | Interest::WRITABLE;
        let src = register(OwnedFd::from(src), rw).unwrap();
        let dst = register(OwnedFd::from(dst), rw).unwrap();
        let w = std::thread::spawn(move || {
            writer.write_all(&vec![7u8; TOTAL]).unwrap();
            writer // kept open: no EOF
        });
        let (mut h, counter) = (Half::default(), ShardedCounter::default());
        let (mut scratch, mut moved) = (vec![0u8; SCRATCH_SIZE], false);
        let mut step = |h: &mut Half| {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let r = pump(&src, &dst, h, &mut cx, &mut scratch, &counter, &mut moved);
            assert!(!matches!(r, Poll::Ready(Err(_))), "pump failed");
        };
        // Nobody reads `dst`: the pump ends up holding what the socket would not take.
        let t = Instant::now();
        while h.pending.is_empty() {
            assert!(t.elapsed() < Duration::from_secs(10), "never lagged");
            step(&mut h);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let r = std::thread::spawn(move || {
            let mut buf = vec![0u8; TOTAL];
            reader.read_exact(&mut buf).unwrap();
        });
        let t = Instant::now();
        while counter.get() < TOTAL as u64 || h.pos < h.pending.len() {
            assert!(t.elapsed() < Duration::from_secs(20), "never caught up");
            step(&mut h);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        r.join().unwrap();
        drop(w.join().unwrap());
        assert_eq!(h.pending.capacity(), 0, "buffer kept after catching up");
    }

    /// The proxy sets no option per client: it relies on accepted sockets inheriting
    /// TCP_NODELAY and the keepalive settings from the listener.
    #[test]
    fn accepted_sockets_inherit_nodelay_and_keepalive() {
        let l = listen(
            "127.0.1.2:0".parse().unwrap(),
            false,
            Some(Duration::from_secs(60)),
        )
        .unwrap();
        let addr = SocketAddr::try_from(rustix::net::getsockname(&l).unwrap()).unwrap();
        let _c = std::net::TcpStream::connect(addr).unwrap();
        let a = loop {
            match rustix::net::accept(&l) {
                Ok(a) => break a,
                Err(rustix::io::Errno::AGAIN) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("accept: {e}"),
            }
        };
        assert!(sockopt::tcp_nodelay(&a).unwrap());
        assert!(sockopt::socket_keepalive(&a).unwrap());
        assert_eq!(sockopt::tcp_keepidle(&a).unwrap(), Duration::from_secs(60));
    }
}
