//! The `vipcert` command line (clap derive): global options and one enum variant per
//! command. It parses only; `main` dispatches.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "vipcert",
    version,
    about = "Let's Encrypt certificates for grid data-transfer nodes behind one virtual hostname and VIP",
    long_about = "vipcert gets and keeps Let's Encrypt certificates for a group of GridFTP/XRootD/HTTPS \
transfer nodes that share a virtual hostname and IP. Every node runs `vipcert serve` (the HTTP-01 \
challenge server) and shares one directory (NFS); any node runs `vipcert issue`, and every node \
installs the result.\n\nFirst steps: `vipcert config check`, start `vipcert serve` on every node, \
`vipcert preflight`, then `vipcert issue`.",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Configuration file.
    #[arg(long, global = true, env = "VIPCERT_CONFIG", default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Which [[node]] this process is (default: the machine's host name).
    #[arg(long, global = true, env = "VIPCERT_NODE")]
    pub node: Option<String>,
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration and print the resolved plan.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run the node server: HTTP-01 challenges from the shared webroot, health and status.
    ///
    /// Run on every node (and, until a balancer owns it, on the VIP). Routes:
    /// /.well-known/acme-challenge/{token}, /.well-known/vipcert/health,
    /// /.well-known/vipcert/status.
    Serve(ServeArgs),
    /// Prove every name answers HTTP-01 through DNS and on every node, before asking a CA.
    ///
    /// Writes a probe file into the shared webroot, fetches it through DNS (as the CA will),
    /// through the VIP and from every node's address, prints a table and removes the file.
    /// Exits 1 if any probe failed.
    Preflight,
    /// Obtain the certificate(s) of the plan from the CA and publish them to the shared store.
    ///
    /// Takes the issuer lease, runs preflight (the CA is asked nothing if it fails), orders
    /// one certificate per lineage, waits until every node serves every challenge, verifies
    /// the result and publishes it as a new version in store/<lineage>/. Exits 0 without
    /// ordering when another node holds the lease.
    Issue(IssueArgs),
    /// Run the layer-4 balancer on the VIP (ports 80 and 2811 by default).
    ///
    /// One listener per [[balancer.service]] on [balancer] listen_address (default:
    /// virtual_ip, bound with IP_FREEBIND so it may start before the VIP is up), forwarding
    /// to every [[node]] by wlc (default), rr or sh, with tcp/banner/http health checks. A
    /// failed connect is retried on another node. SIGHUP re-reads the file (open
    /// connections stay); SIGTERM stops accepting, drains, exits. Metrics:
    /// http://<admin_listen>/metrics. See docs/balancer.md.
    Balance(BalanceArgs),
    /// Print configs derived from this file: keepalived.conf, arptables lines, GridFTP sysconfig.
    #[command(subcommand)]
    Render(RenderCommand),
}

#[derive(Debug, Args)]
pub struct BalanceArgs {
    /// Proxy worker threads (default: [balancer] threads, else one per CPU).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum RenderCommand {
    /// keepalived.conf for the same cluster: vrrp_instance + one IPVS virtual_server per service.
    ///
    /// For sites that outgrow `vipcert balance`. Check it with `keepalived -t -f FILE`;
    /// [balancer.keepalived] sets interface, virtual_router_id, priority, state, lvs_method.
    Keepalived,
    /// The DR-mode arptables lines for each node (or only --node), from the OSG guide.
    Arptables,
    /// The two export lines for /etc/sysconfig/globus-gridftp-server ([install] cert/key).
    GridftpSysconfig,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the file and print lineages, names in order (CN first) and install paths.
    Check,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (repeatable); default: [serve] listen.
    #[arg(long)]
    pub listen: Vec<SocketAddr>,
    /// Prefix for installed paths read by the status route (default: [install] root).
    #[arg(long)]
    pub root: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Order even when store/<lineage>/current already holds a certificate for the plan.
    #[arg(long)]
    pub force: bool,
}
