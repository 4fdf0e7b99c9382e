//! The `vipcert` command line (clap derive): global options and one enum variant per
//! command. It parses only; `main` dispatches.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "vipcert",
    version,
    about = "Let's Encrypt certificates for grid data-transfer nodes behind one virtual hostname and VIP",
    long_about = "vipcert gets and keeps Let's Encrypt certificates for a group of GridFTP/XRootD/HTTPS \
transfer nodes that share a virtual hostname and IP. Every node runs `vipcert serve --watch` (the \
HTTP-01 challenge server, which also installs new certificates) and shares one directory (NFS); \
any node runs `vipcert issue`, and every node installs the result.\n\nFirst steps: `vipcert init` \
writes /etc/vipcert/vipcert.toml (see vipcert.toml(5)), `vipcert config check` prints the plan, start `vipcert serve --watch` on every node, `vipcert preflight`, then `vipcert issue`. \
After that, the vipcert-renew.timer runs `vipcert renew` every hour, `vipcert check --fleet` \
belongs in your monitoring, and `vipcert status` shows when each lineage renews and why. Guides: /usr/share/doc/vipcert/ (docs/ in the source).",
    propagate_version = true
)]
/// The whole `vipcert` command line.
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes: config file, node name, verbosity.
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

/// One variant per `vipcert` command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a first, validated configuration file from a few flags.
    ///
    /// Builds /etc/vipcert/vipcert.toml (or the file named by the global --config) from
    /// the virtual hostname and IP, the shared directory, the layout and the nodes, checks it
    /// with the same parser and plan as every other command, and only then writes it: under a
    /// temporary name with mode 0644, renamed into place (the directory is created 0755 if
    /// missing). An existing file is never replaced without --force. Prints the plan, as
    /// `vipcert config check` does, and the next steps.
    ///
    /// Every other key keeps its default (see vipcert.toml(5)); edit the file afterwards for
    /// install paths, reload commands, probes or the balancer. The same file belongs on every
    /// node.
    Init(InitArgs),
    /// Check the configuration and print the resolved plan.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run the node server: HTTP-01 challenges from the shared webroot, health and status.
    ///
    /// Run on every node (and, until a balancer owns it, on the VIP). Routes:
    /// /.well-known/acme-challenge/{token}, /.well-known/vipcert/health,
    /// /.well-known/vipcert/status (rebuilt at most once a second, never per request).
    /// Faces the internet: HTTP/1.1 without exactly one Host, or a Host nginx would refuse,
    /// is 400; hard-linked and non-regular files are never served, no symlink is followed
    /// from shared_dir down to a token; [serve] max_connections /
    /// max_connections_per_address bound the connections (the one idle longest is closed
    /// to make room); list the balancers in front of the node in [serve] proxy_addresses.
    /// Its own routes (status, batch, unknown paths) answer about [serve] monitor_rate
    /// requests/s each, shared fairly between client addresses (more waits, up to
    /// monitor_wait); the challenge and health routes are never limited (health answers a
    /// verdict on the shared directory taken once a second).
    ///
    /// SIGHUP (`systemctl reload vipcert-serve`) takes the status and health verdicts again at
    /// once and logs whether the config file changed since serve started; serve does not
    /// reload its configuration, so a changed file needs `systemctl restart vipcert-serve`.
    ///
    /// Metrics: with [serve] metrics_listen = "ip:port" (off by default; never port 80 nor a
    /// [serve] listen port), a separate small listener answers GET /metrics for Prometheus:
    /// challenge and batch requests by answer, refused, evicted and rationed connections, the
    /// health verdict, --watch's install runs, each install target's notAfter, the version
    /// (docs/monitoring.md lists the families).
    Serve(ServeArgs),
    /// Prove every name can be validated by its method, before asking a CA.
    ///
    /// dns-01 names ([challenge] type or [[node]] challenge): a probe TXT record per name is
    /// placed through [challenge.dns] (RFC 2136 with TSIG, or the exec program), seen on every
    /// authoritative server of its zone, and removed; a TSIG refusal (BADKEY, BADSIG,
    /// BADTIME), NOTAUTH, REFUSED, a missing zone, a CNAME loop or a name server that does not
    /// hold the zone is named (docs/dns-01.md). http-01 names: writes a probe file into the
    /// shared webroot, fetches it through DNS (as the CA will), through the VIP and from every
    /// node's address, prints a table and removes the file.
    /// Then compares this node's clock with the shared filesystem's (the mtime of a file it
    /// writes in locks/) and the CA's (the Date of its directory answer): a warning above
    /// 30 s, critical above 5 minutes. Exits 1 if any probe failed or a clock is critical.
    Preflight,
    /// Obtain the certificate(s) of the plan from the CA and publish them to the shared store.
    ///
    /// Run once, on any one node, after `vipcert preflight` passes and every node runs
    /// `vipcert serve --watch`; renewals afterwards are `vipcert renew`'s job.
    ///
    /// Takes the issuer lease (locks/issuer.lease in the shared directory), runs preflight
    /// (the CA is asked nothing if it fails: Let's Encrypt allows 5 failed validations per
    /// name per hour), orders one certificate per lineage with a CSR built by vipcert (the CN
    /// that GSI matches on is always set), waits until every node and the VIP serve every
    /// challenge (NFS caches lag), verifies the result (key matches, CN and SAN set as
    /// planned, chain), publishes it as a new version in store/<lineage>/ and installs it on
    /// this node. Every node running `serve --watch` installs it within [serve]
    /// watch_interval. Challenge files are removed on every path.
    ///
    /// Exits 0 without ordering when store/<lineage>/current already holds a certificate
    /// for the plan (unless --force) or when another node holds the lease ("renewal in
    /// progress on X"); 1 when an order or the install failed, with the name, the node and
    /// what the CA said. A lineage that fails is counted in state/<lineage>.json (so
    /// `renew` backs off) and runs [notify] on_failure, as in `renew`. Once current points at
    /// the new version the lineage has succeeded: a failed state write after it is a warning
    /// naming the file. With [renew] metrics_file set, it ends by writing that node_exporter
    /// textfile, as `renew` does.
    Issue(IssueArgs),
    /// Install the current certificate and key of this node's lineage(s) at the install paths.
    ///
    /// Verifies store/<lineage>/current with the verification policy (PEM, unencrypted key,
    /// key matches, fullchain = cert + chain, each certificate signed by the next up to a root
    /// trusted by Mozilla's list or [acme] ca_roots, valid now, CN and SAN set as planned,
    /// serverAuth) and refuses, changing nothing, what fails: `vipcert check` calls the same
    /// version critical. Each file is written under a temporary name with its
    /// final owner, group and mode, then renamed over the target; an intent journal
    /// (.vipcert-install.journal next to the certificate) lets the next run finish an
    /// interrupted one. Reload commands and deploy hooks run only when something changed.
    /// A second run with nothing new writes nothing and runs no hook.
    ///
    /// [install] mode = "files" (default) renames each cert then its key back to back;
    /// mode = "links" makes each target a symlink into <dir>/.vipcert/<lineage>/current/ so
    /// one rename switches both (docs/operations.md, "Install modes"). No directory below
    /// [install] root may be a symlink. A missing shared_dir (unmounted share) is refused.
    Install(InstallArgs),
    /// Renew every lineage that is due, then install this node's lineage(s).
    ///
    /// Runs on every node every hour, started by vipcert-renew.timer (at a fixed random minute
    /// of the first quarter of the hour on each node; Persistent=true catches up a run missed
    /// while the node was down). From an hourly cron job, `vipcert renew --random-delay 15m`
    /// spreads the start the same way. A run with nothing due asks the CA nothing: ARI answers
    /// are cached in state/<lineage>.json until the CA's Retry-After (a CA without ARI is asked
    /// again after a day).
    ///
    /// When is a lineage due? (1) If the CA offers ARI (RFC 9773; Let's Encrypt does), at a
    /// random moment inside the certificate's suggested renewal window, which the CA may move
    /// earlier (e.g. before a mass revocation); the window is cached in state/<lineage>.json
    /// until the CA's Retry-After, and the new order carries `replaces`, which Let's Encrypt
    /// exempts from rate limits. (2) Otherwise when less than 1/3 of the certificate's
    /// lifetime remains (1/2 for lifetimes under 10 days): fractions, not days, because
    /// lifetimes are shrinking (90 days, 64 in 2027, 45 in 2028). (3) At once when the planned
    /// names (a [[node]] added or removed) or the key type differ from the current
    /// certificate's, and always when the lineage has no certificate yet. --force makes every
    /// lineage due and overrides the backoff. A store/<lineage>/current that exists but cannot
    /// be read (a dangling or non-numeric link, an oversized or invalid meta.json, a cert.pem
    /// that does not parse) is not "no certificate": the lineage is NOT RENEWED, the file and
    /// the reason are named, nothing is ordered and the exit status is 1 until the admin
    /// fixes it (`vipcert rollback --to NNNN`, or `vipcert issue --force`).
    ///
    /// Due lineages go through the issue flow (issuer lease, preflight, order, readiness
    /// barrier, verify, publish; see vipcert-issue(1)). Only the node that takes the issuer
    /// lease orders; the others print "renewal in progress on <node> (pid N); this node only
    /// installs" and exit 0. A node that gets the lease after another node already renewed
    /// the lineage orders nothing ("already renewed by another node"). Whatever happened, each
    /// node then installs what is current for its own lineages, and `serve --watch` on the
    /// others picks a new version up within [serve] watch_interval.
    ///
    /// Failures back off, recorded in the shared state/<lineage>.json so that every node sees
    /// them: after 1, 2, 3 and more failures in a row the next attempt waits about 1 min,
    /// 10 min, 100 min, then a day, and the first hourly run after that retries (so: 1 h, 1 h,
    /// 2 h, 25 h after the failed run on one node; docs/operations.md). When the CA answers rateLimited with a Retry-After, that
    /// time is used instead, capped at a third of the current certificate's remaining
    /// lifetime (a day without one). A next attempt in the state file further ahead than
    /// vipcert ever waits is ignored (and `check` warns). Each new failure runs the [notify]
    /// on_failure programs (e.g. a mail). Deleting the state file resets the backoff.
    ///
    /// Exit status: 0 when nothing was due or everything due was renewed (or another node is
    /// renewing it); 1 when a due lineage failed or is waiting out a backoff, so that the unit
    /// shows as failed and monitoring notices while the certificate is still valid. A renewal
    /// is done once store/<lineage>/current points at the new version: what fails after that
    /// (recording the success in state/<lineage>.json, pruning old versions) is a warning
    /// naming the file, never a failure, and runs no on_failure program. A bug (a panic)
    /// prints one line "error: internal error …" and exits 1, in every command but `check`.
    ///
    /// Metrics: with [renew] metrics_file = "/var/lib/prometheus/node-exporter/vipcert-renew.prom"
    /// every run (renew, issue, revoke --reissue; never a dry run) ends by writing that
    /// node_exporter textfile, atomically, mode 0644: when it ran and whether it succeeded,
    /// and per lineage the last success, failures in a row, next attempt, notAfter and the
    /// next renewal time (the rule above). A file that cannot be written is a warning, never a
    /// failed run. Alert rules: /usr/share/vipcert/prometheus/vipcert-rules.yml.
    Renew(RenewArgs),
    /// Point store/<lineage>/current at an earlier kept version and install it here.
    ///
    /// Nodes running `vipcert serve --watch` install it within [serve] watch_interval; run
    /// `vipcert install` on the others. Versions kept: [install] keep_versions (default 5).
    Rollback(RollbackArgs),
    /// Check that every node holds the right, current, safe certificate (for monitoring).
    ///
    /// Without --fleet, checks this node's installed files (--node or the host name) against
    /// the plan and the shared store: files exist and read, parse, key matches, CN and SAN set,
    /// same leaf as store/<lineage>/current, chain (signed up to a trusted root),
    /// owner/group/mode, EKU, validity and expiry; plus the store itself (critical when
    /// `vipcert install` would refuse its current version), the renewal state, the issuer
    /// lease (its holder gone from this host, or its times bogus) and this node's clock
    /// against the shared filesystem's and the CA's (warning above 30 s, critical above 5
    /// minutes). The
    /// certificate checks are the one verification policy `install` uses. With --fleet, asks every
    /// node's /.well-known/vipcert/status and TLS-probes each [[check.probe]] on every node.
    ///
    /// Exit codes (text, json, nagios, html): 0 ok, 1 warning, 2 critical, 3 unknown (a node or
    /// endpoint could not be asked, or the check could not run, a bug in vipcert included:
    /// UNKNOWN in the format asked for, one line or the page). --format prometheus exits 0 whenever it
    /// printed metrics: the drift is in them.
    Check(CheckArgs),
    /// Show the renewal machinery: when each lineage renews and why, failures, lease, timer.
    ///
    /// Per lineage: the CA (and the one that issued the current version), the profile and
    /// the account URL; the current version, its serial, names, notBefore/notAfter and the
    /// share of its lifetime left; `renew`'s decision as the next run would take it from what
    /// the store holds (due, not due, backing off) and from when it renews (the CA's ARI
    /// window, with when it was fetched and when the CA is asked again, or the lifetime
    /// rule); the backoff (failures in a row, next attempt, last error); the last success;
    /// revoked versions. Then the holder of locks/issuer.lease and the next run of
    /// vipcert-renew.timer (from systemctl; "unknown" without systemd). With --fleet, each
    /// node's installed version and when it installed it, from its
    /// /.well-known/vipcert/status.
    ///
    /// Reads only: it writes nothing, asks the CA nothing and never reads a key. Run it where
    /// the shared directory is mounted, as root (the store's directories are 0700). Exits 0
    /// when it could report, 1 when it could not run (no config, no shared directory).
    /// --json prints a document of schema 1 (docs/monitoring.md, "vipcert status").
    Status(StatusArgs),
    /// Run the layer-4 balancer on the VIP (ports 80 and 2811 by default).
    ///
    /// One listener per [[balancer.service]] on [balancer] listen_address (default:
    /// virtual_ip, bound with IP_FREEBIND so it may start before the VIP is up), forwarding
    /// to every [[node]] by wlc (default), rr or sh, with tcp/banner/http health checks. A
    /// failed connect is retried on another node. SIGHUP re-reads the file (open
    /// connections stay); SIGTERM stops accepting, drains, exits. Half-closes pass through
    /// both ways. Each service takes at most max_connections clients and, when the open-file
    /// limit is short, is sure of a fair share of it whatever floods another. Metrics:
    /// http://<admin_listen>/metrics (16 connections at once, one request each, 5 s). See
    /// docs/balancer.md.
    Balance(BalanceArgs),
    /// Print configs derived from this file: keepalived.conf, a DR node's VIP and ARP setup,
    /// arptables lines, GridFTP sysconfig.
    #[command(subcommand)]
    Render(RenderCommand),
    /// The ACME account at the configured CA (accounts/<ca-host>/account.json in the shared dir).
    ///
    /// `issue` and `renew` create the account when there is none, and find it again by its
    /// key, or create a new one, when the CA no longer knows it. These commands are for the
    /// rest of its life. update, rollover and deactivate take the issuer lease, so they never
    /// run in the middle of an order. Each CA has its own account: [acme]'s by default, a
    /// named CA's with --ca NAME (accounts/named/<NAME>/<ca-host>/account.json).
    Account {
        /// The [[acme.ca]] whose account this is (default: [acme]'s).
        #[arg(long, value_name = "NAME", global = true)]
        ca: Option<String>,
        /// What to do with the account.
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Revoke a certificate version at the CA and mark it so nothing installs it again.
    ///
    /// Revokes store/<LINEAGE>/<NNNN> (default: current) at the CA that issued it (the directory
    /// in its meta.json: [acme], a fallback or an [[acme.ca]]), with the account there, and writes
    /// store/<LINEAGE>/<NNNN>/revoked.json: install, `serve --watch` and rollback refuse that
    /// version from then on, and `check` calls a node holding it critical. With --reissue, a
    /// new certificate with a new key is ordered at once and every `serve --watch` node
    /// installs it. For a leaked key: `vipcert revoke <LINEAGE> --reason keyCompromise --reissue`.
    // `--version` here is the store version to revoke, not the program's.
    #[command(disable_version_flag = true)]
    Revoke(RevokeArgs),
    /// Print a shell completion script for bash, zsh or fish.
    ///
    /// The packages install these already (bash-completion, zsh's vendor completions, fish's
    /// vendor_completions.d). By hand, e.g.:
    /// `vipcert completions bash > /etc/bash_completion.d/vipcert`.
    Completions(CompletionsArgs),
    /// Write the man pages vipcert(1) and vipcert-COMMAND(1) into a directory (for packaging).
    #[command(hide = true)]
    Man(ManArgs),
}

/// `revoke --reason`: the RFC 5280 reason sent to the CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RevokeReason {
    /// No reason given.
    #[value(name = "unspecified")]
    Unspecified,
    /// The private key leaked (or may have).
    #[value(name = "keyCompromise")]
    KeyCompromise,
    /// Replaced by a newer certificate.
    #[value(name = "superseded")]
    Superseded,
    /// The service or host is gone.
    #[value(name = "cessationOfOperation")]
    CessationOfOperation,
}

/// `vipcert status` options.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON (schema 1, docs/monitoring.md) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also ask every node's status route what it has installed, and since when.
    #[arg(long)]
    pub fleet: bool,
}

/// `vipcert revoke` options.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The lineage (store/<lineage>): the virtual hostname, or a node's hostname (per-host).
    pub lineage: String,
    /// Version to revoke (e.g. 3 or 0003); default: the current one.
    #[arg(long, value_name = "NNNN")]
    pub version: Option<u32>,
    /// RFC 5280 revocation reason sent to the CA.
    #[arg(long, value_enum, default_value = "unspecified")]
    pub reason: RevokeReason,
    /// Order a new certificate with a new key right after, and install it here.
    #[arg(long)]
    pub reissue: bool,
    /// Prefix for install paths of the local install after --reissue (default: [install] root).
    #[arg(long)]
    pub root: Option<std::path::PathBuf>,
}

/// `vipcert account` subcommands.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Print the CA, the account URL, the key thumbprint, whether the CA still knows it, and
    /// the account's status and contacts as the CA holds them.
    ///
    /// Exits 1 when there is no account file, the CA does not know the account, or its
    /// account object could not be read.
    Show,
    /// Replace the account's contact addresses at the CA (RFC 8555 §7.3.2).
    ///
    /// Also change [acme] contact in the config, which is used for new accounts.
    Update {
        /// A contact, "mailto:admin@example.org"; repeat for several.
        #[arg(long = "contact", value_name = "MAILTO", required = true)]
        contact: Vec<String>,
    },
    /// Replace the account's key with a new one (RFC 8555 §7.3.5) and save it.
    ///
    /// For a leaked or old account key: the account, its orders and its rate-limit history
    /// stay; the old key stops working at once.
    Rollover,
    /// Deactivate the account at the CA (RFC 8555 §7.3.6) and move its file aside.
    ///
    /// The CA refuses the account from then on; the next `issue` or `renew` creates a new
    /// one. Certificates already issued stay valid. Needs --yes.
    Deactivate {
        /// Confirm: the account cannot be re-activated.
        #[arg(long)]
        yes: bool,
    },
    /// Print the dns-persist-01 TXT records that bind each name to this account at this CA.
    ///
    /// One persistent record per name, `_validation-persist.<name>` (IETF
    /// draft-ietf-acme-dns-persist, as Let's Encrypt's staging validates it): the CA's issuer
    /// domain name (its directory's meta.caaIdentities), `accounturi=` this account's URL,
    /// optionally `policy=wildcard` and `persistUntil=`. Put them in the zone once; with
    /// [challenge] type = "dns-persist-01" no renewal touches DNS again. Creates the account
    /// when there is none (the records name it). Printed as zone-file lines; --apply also
    /// places them. Pebble 2.4 does not implement dns-persist-01. See docs/dns-persist-01.md.
    PersistRecord(PersistRecordArgs),
}

/// `vipcert account persist-record` options.
#[derive(Debug, Args)]
pub struct PersistRecordArgs {
    /// Only this lineage's names (the virtual hostname, or a node's hostname per-host).
    #[arg(long)]
    pub lineage: Option<String>,
    /// Only this name (repeatable); each must be one vipcert orders.
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// Add policy=wildcard: the record also covers *.<name> and every subdomain of <name>.
    #[arg(long)]
    pub policy_wildcard: bool,
    /// Add persistUntil=: the CA takes the record for no new validation after this time
    /// (a date 2027-06-30, an RFC 3339 time, or Unix seconds).
    #[arg(long, value_name = "DATE")]
    pub persist_until: Option<String>,
    /// The issuer domain name to write, when the CA's directory lists none (meta.caaIdentities)
    /// or the CA says to use another of its names.
    #[arg(long, value_name = "DOMAIN")]
    pub issuer: Option<String>,
    /// Also place them in each name's zone by RFC 2136 ([challenge.dns] method = "rfc2136"),
    /// replacing older records of this CA and leaving other CAs' alone.
    #[arg(long)]
    pub apply: bool,
}

/// `vipcert completions` options.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `vipcert man` options.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
}

/// `--layout` of `vipcert init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LayoutArg {
    /// One certificate for every node: CN = the virtual hostname (GridFTP without XRootD).
    Shared,
    /// One certificate per node: CN = the node's hostname (nodes that also run XRootD).
    PerHost,
}

/// `vipcert init` options: what the first config file says.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The name clients use (fully qualified, lower case).
    #[arg(long, value_name = "NAME", value_parser = crate::init::parse_hostname)]
    pub virtual_hostname: String,
    /// The virtual IP (VIP) the balancer or keepalived owns.
    #[arg(long, value_name = "IP")]
    pub virtual_ip: IpAddr,
    /// Absolute path of the directory every node mounts (NFS, CephFS, Lustre).
    #[arg(long, value_name = "DIR")]
    pub shared_dir: PathBuf,
    /// Which certificates to get.
    #[arg(long, value_enum)]
    pub layout: LayoutArg,
    /// E-mail address for the CA account (repeatable); "mailto:" is added when missing.
    #[arg(long, value_name = "EMAIL", value_parser = crate::init::parse_contact)]
    pub contact: Vec<String>,
    /// A transfer node: its own host name and address (repeatable, at least one).
    // The id is the global --node's: clap then keeps this definition for `init` instead of
    // propagating the global one ("which node is this process" means nothing here). Its
    // values reach `Global` too, so they stay Strings (checked here, parsed by `init`).
    #[arg(id = "node", long = "node", value_name = "NAME=ADDRESS", required = true,
          value_parser = crate::init::check_node_spec)]
    pub nodes: Vec<String>,
    /// Use Let's Encrypt's staging CA (untrusted certificates, generous rate limits) to try
    /// things out; remove `directory` from [acme] afterwards for real certificates.
    #[arg(long)]
    pub staging: bool,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
}

/// `check --format`: how the drift report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    /// A table: one row per problem, one per healthy node and lineage (colour on a terminal).
    Text,
    /// A stable JSON document (schema 1; see docs/monitoring.md).
    Json,
    /// One Nagios/Icinga status line with perfdata (days left per lineage), then the problems.
    Nagios,
    /// Text for node_exporter's textfile collector.
    Prometheus,
    /// One self-contained HTML page (no external assets, no script): a lineage × node matrix
    /// coloured by severity with version and days left, every finding, and per lineage a
    /// renewal timeline. For sites without Grafana: write it into a web server's directory.
    Html,
}

/// `vipcert check` options.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Check every node over the network (status route, TLS probes) instead of this node's files.
    #[arg(long)]
    pub fleet: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    /// Warn when less than this is left before notAfter: days ("20") or a duration ("20d",
    /// "36h"). Default: a third of the certificate's lifetime.
    #[arg(long, value_name = "DUR", value_parser = crate::drift::parse_threshold)]
    pub warn: Option<std::time::Duration>,
    /// Critical when less than this is left. Default: a sixth of the lifetime.
    #[arg(long, value_name = "DUR", value_parser = crate::drift::parse_threshold)]
    pub crit: Option<std::time::Duration>,
    /// Prefix for the installed paths checked locally (default: [install] root). With --fleet
    /// each node's `serve --root` applies instead.
    #[arg(long, value_name = "DIR", conflicts_with = "fleet")]
    pub root: Option<PathBuf>,
}

/// `vipcert balance` options.
#[derive(Debug, Args)]
pub struct BalanceArgs {
    /// Proxy worker threads (default: [balancer] threads, else one per CPU).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// `vipcert render` targets.
#[derive(Debug, Subcommand)]
pub enum RenderCommand {
    /// keepalived.conf for the balancer hosts: IPVS virtual servers, or VRRP only.
    ///
    /// [balancer.keepalived] mode = "ipvs" (default): keepalived itself balances with IPVS
    /// (vrrp_instance + one virtual_server per service, as in the OSG guide); mode = "vrrp":
    /// keepalived only moves the VIP between hosts that run `vipcert balance`, and a track
    /// script (the balancer's /metrics, every second) takes the VIP from a host whose balancer
    /// died. One file serves every host: the host's own address in unicast_peers is found on
    /// its interfaces (or --unicast-src-ip) and left out of its peers; --state and --priority
    /// set the role (default: the first of unicast_peers is MASTER with priority 100, the
    /// next BACKUP with 90, 80, ...). Check the output with `keepalived -t -f FILE`.
    Keepalived(KeepalivedArgs),
    /// The DR-mode arptables lines for each node (or only --node), from the OSG guide.
    Arptables,
    /// What a DR node needs: the VIP held locally and no ARP answers for it.
    ///
    /// --format ip: lines to run now (VIP on lo, ARP sysctls); sysctl: the sysctl.d file
    /// (arp_ignore=1, arp_announce=2); networkd: .netdev + .network (dummy link vipcert0
    /// holding the VIP); nm: a NetworkManager keyfile and the nmcli line (EL9); arptables: the
    /// OSG guide's arptables alternative with `systemctl enable arptables` (--node for one
    /// node); all (default): everything, in the order to apply it. See docs/balancer.md.
    NodeVip(NodeVipArgs),
    /// The two export lines for /etc/sysconfig/globus-gridftp-server ([install] cert/key).
    GridftpSysconfig,
}

/// `vipcert render keepalived` options: this host's VRRP role.
#[derive(Debug, Args)]
pub struct KeepalivedArgs {
    /// This host's VRRP state (overrides [balancer.keepalived] state).
    #[arg(long, value_enum, ignore_case = true)]
    pub state: Option<VrrpStateArg>,
    /// This host's VRRP priority, 1-254 (overrides [balancer.keepalived] priority).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub priority: Option<u8>,
    /// This host's address among [balancer.keepalived] unicast_peers (default: the one
    /// configured on this host's interfaces).
    #[arg(long, value_name = "IP")]
    pub unicast_src_ip: Option<std::net::IpAddr>,
}

/// `--state`: a VRRP instance's initial state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VrrpStateArg {
    /// `MASTER`: holds the VIP unless a peer with a higher priority is up.
    #[value(name = "MASTER")]
    Master,
    /// `BACKUP`: takes the VIP when no MASTER advertises.
    #[value(name = "BACKUP")]
    Backup,
}

/// `render node-vip --format`: which part of a DR node's VIP setup to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NodeVipFormatArg {
    /// Lines to run now: the VIP on lo and the ARP sysctls.
    Ip,
    /// The sysctl.d file (arp_ignore=1, arp_announce=2).
    Sysctl,
    /// systemd-networkd .netdev + .network (a dummy link holding the VIP).
    Networkd,
    /// A NetworkManager keyfile and the nmcli line.
    Nm,
    /// The OSG guide's arptables lines.
    Arptables,
    /// Everything, in the order to apply it.
    All,
}

/// `vipcert render node-vip` options.
#[derive(Debug, Args)]
pub struct NodeVipArgs {
    /// Which part to print.
    #[arg(long, value_enum, default_value_t = NodeVipFormatArg::All)]
    pub format: NodeVipFormatArg,
}

/// `vipcert config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the file and print lineages, names in order (CN first), the CA each orders
    /// from ([acme] and its fallbacks, or the node's [[acme.ca]]) and install paths.
    ///
    /// On a node (its host name is a [[node]], or --node NAME) it also checks what only that
    /// machine can tell, as the commands that use them later do: each ca_roots readable as
    /// PEM roots, each eab_hmac_key_file a regular file only its owner (root) may read, and
    /// the install owners and groups known in /etc/passwd and /etc/group. Errors name the file,
    /// line and key; exit 1. Warnings (e.g. needs_client_auth with Let's Encrypt) do not fail.
    ///
    /// The plan names the challenge that proves each name: [challenge] type (http-01 by
    /// default, dns-01, dns-persist-01) for the virtual hostname and every node, or a node's
    /// own [[node]] challenge; with dns-01, how TXT records are placed ([challenge.dns] method
    /// rfc2136 to a primary with a TSIG key, or exec with a lego-style program), the zone and
    /// the propagation bound.
    Check,
}

/// `vipcert serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (repeatable); default: [serve] listen.
    #[arg(long)]
    pub listen: Vec<SocketAddr>,
    /// Prefix for installed paths read by the status route (default: [install] root).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Also install this node's lineages whenever store/<lineage>/current changes: inotify
    /// when the shared dir is on a local filesystem, polling every [serve] watch_interval when
    /// it is on NFS, CIFS, FUSE, Ceph, Lustre or GPFS (inotify does not see other hosts'
    /// writes there); [serve] watch = "inotify" | "poll" forces one.
    #[arg(long)]
    pub watch: bool,
}

/// `vipcert install` options.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Prefix for every install path (default: [install] root, normally /); labs give each
    /// node its own directory.
    #[arg(long)]
    pub root: Option<PathBuf>,
}

/// `vipcert renew` options.
#[derive(Debug, Args)]
pub struct RenewArgs {
    /// Renew every lineage now, whatever its window or backoff says.
    #[arg(long)]
    pub force: bool,
    /// Sleep a random time up to this long first (e.g. "15m" from an hourly cron job), so the
    /// nodes of a cluster and the clients of a CA do not all ask at the same minute.
    #[arg(long, value_name = "DUR", value_parser = crate::config::parse_duration)]
    pub random_delay: Option<std::time::Duration>,
    /// Prefix for install paths (default: [install] root).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Try the whole renewal of every lineage at the CA's staging directory; publish nothing.
    ///
    /// As certbot's renew --dry-run, every lineage is tried as if it were due (no due decision, backoff or
    /// ARI query): under the issuer lease, through preflight and an order with real
    /// validation at [acme] staging_directory (Let's Encrypt's staging for Let's Encrypt)
    /// with its own account (accounts/staging/<host>/ in the shared dir), the certificate
    /// verified against [acme] staging_ca_roots, then discarded. Nothing is published,
    /// installed, counted in state/ or hooked (no reload, deploy_hook or on_failure); the
    /// production CA hears nothing. Each line starts "dry run"; exit 0 when every lineage
    /// was issued and verified, 1 otherwise.
    #[arg(long)]
    pub dry_run: bool,
}

/// `vipcert rollback` options.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The lineage (store/<lineage>): the virtual hostname, or a node's hostname (per-host).
    pub lineage: String,
    /// Version number to make current (e.g. 3 or 0003); default: the kept version before
    /// the current one.
    #[arg(long, value_name = "NNNN")]
    pub to: Option<u32>,
    /// Prefix for install paths (default: [install] root).
    #[arg(long)]
    pub root: Option<PathBuf>,
}

/// `vipcert issue` options.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Order even when store/<lineage>/current already holds a certificate for the plan.
    #[arg(long)]
    pub force: bool,
    /// Prefix for install paths of the local install after publishing (default: [install] root).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Try the whole issue of every lineage at the CA's staging directory; publish nothing.
    ///
    /// Every lineage is ordered (as with --force), under the issuer lease, through preflight and an order with real validation at [acme]
    /// staging_directory (Let's Encrypt's staging for Let's Encrypt) with its own account
    /// (accounts/staging/<host>/ in the shared dir), the certificate verified against [acme]
    /// staging_ca_roots, then discarded. Nothing is published, installed, counted in state/
    /// or hooked; the production CA hears nothing. Exit 0 when every lineage was issued and
    /// verified, 1 otherwise.
    #[arg(long)]
    pub dry_run: bool,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}

/// Shells `vipcert completions` writes for (the command line owns the choice; `docgen` turns
/// it into a script).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// bash
    Bash,
    /// zsh
    Zsh,
    /// fish
    Fish,
}
