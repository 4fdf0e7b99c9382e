//! The HTTPS side of the in-test CA stubs (renew_stub.rs, persist.rs): a TLS listener with a
//! certificate from a fresh test CA, served on its own runtime thread until dropped. Each stub
//! keeps its own protocol; this is only where its requests come from.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};

use crate::common::pki::{Ca, Spec};
use crate::common::site::fast_tempdir;

/// A bound TLS listener not yet served: its address goes into the stub before it serves.
pub struct Listening {
    pub addr: SocketAddr,
    listener: std::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    root_pem: String,
}

/// A CA named `ca_name` and a listener on `ip:0` with a certificate from it for `ip`.
pub fn listen(ip: &str, ca_name: &str) -> (Ca, Listening) {
    let ca = Ca::new(ca_name);
    let leaf = ca.leaf(&Spec::names(&[ip]));
    let acceptor = tokio_rustls::TlsAcceptor::from(leaf.server_config());
    let listener = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let root_pem = ca.root_pem();
    let l = Listening {
        addr,
        listener,
        acceptor,
        root_pem,
    };
    (ca, l)
}

/// A stub being served; stops (and joins its thread) when dropped.
pub struct Serving {
    /// The test CA's certificate, for `ca_roots`.
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Listening {
    /// Answer every request with `handle`, one connection per task, on a thread of its own.
    pub fn serve<H, F>(self, handle: H) -> Serving
    where
        H: Fn(Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
    {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let Listening {
            listener,
            acceptor,
            root_pem,
            ..
        } = self;
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stopped => return,
                        a = listener.accept() => {
                            let Ok((tcp, _)) = a else { continue };
                            let (acceptor, handle) = (acceptor.clone(), handle.clone());
                            tokio::spawn(async move {
                                let Ok(tls) = acceptor.accept(tcp).await else { return };
                                let svc = hyper::service::service_fn(handle);
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                                    .await;
                            });
                        }
                    }
                }
            });
        });
        let dir = fast_tempdir();
        let ca_file = dir.path().join("stub-ca.pem");
        std::fs::write(&ca_file, root_pem).unwrap();
        Serving {
            ca_file,
            _dir: dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}
