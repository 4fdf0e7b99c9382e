//! The `vipcert` binary: parse the command line, set up logging, dispatch, and turn errors
//! into one readable message and an exit code — a bug (a panic) too: `check` keeps its
//! monitoring exit codes (UNKNOWN, 3), every other command exits 1, each with one line.
//!
//! Owns the command line's translation into the library's options (a small `fn` per command:
//! the library never sees a clap type) and printing each command's report. It does not hold a
//! command's steps: `pipeline`, `renew`, `revoke`, `account`, `install`, `drift` and the
//! others do, and return what they did as data.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use vipcert::cli::{
    AccountCommand, CheckArgs, CheckFormat, Cli, Command, ConfigCommand, Global, InstallArgs,
    IssueArgs, LayoutArg, RenderCommand, RenewArgs, RevokeArgs, RevokeReason, RollbackArgs,
    ServeArgs, StatusArgs,
};
use vipcert::config::Config;
use vipcert::issue::IssueOptions;
use vipcert::pipeline::{PipelineOptions, WhenStopped};
use vipcert::plan::Plan;
use vipcert::renew::RenewOptions;
use vipcert::revoke::RevokeOptions;
use vipcert::store::Store;

fn main() -> ExitCode {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    init_tracing(cli.global.verbose);
    install_panic_hook(match &cli.command {
        Command::Check(a) => Some(check_format(a.format)),
        _ => None,
    });
    // The hook has said what happened; unwinding has run the command's drop guards (the
    // lease stops being refreshed, challenge files are removed).
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(cli)))
        .unwrap_or(ExitCode::from(1))
}

/// A bug ends the command the way it documents failure, in one line on stderr. `check`
/// (read-only: nothing to release) also prints UNKNOWN in the format asked for and exits 3 at
/// once, whichever thread panicked. Other commands unwind to `main`, which exits 1 (a panic in
/// a runtime task comes back as an error, also exit 1). `RUST_BACKTRACE` adds the default
/// report.
fn install_panic_hook(check: Option<vipcert::drift::Format>) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = panic_message(info);
        if std::env::var_os("RUST_BACKTRACE").is_some() {
            default(info);
        }
        eprintln!("error: {msg}");
        if let Some(format) = check {
            let (out, code) = vipcert::drift::failed(format, &anyhow::anyhow!("{msg}"));
            let mut stdout = std::io::stdout().lock();
            let _ = std::io::Write::write_all(&mut stdout, out.as_bytes());
            let _ = std::io::Write::flush(&mut stdout);
            std::process::exit(code.into());
        }
    }));
}

/// "internal error …: <the panic's message> at <file>:<line>", on one line.
fn panic_message(info: &std::panic::PanicHookInfo<'_>) -> String {
    let p = info.payload();
    let what = p
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    let at = info
        .location()
        .map(|l| format!(" at {}:{}", l.file(), l.line()))
        .unwrap_or_default();
    format!(
        "internal error (a bug in vipcert; please report it): {}{at}",
        what.escape_debug()
    )
}

/// Failpoint for tests: `VIPCERT_TEST_PANIC=main` panics on the main thread, `=task` in a
/// runtime task, so that tests see what a bug does to a command's output and exit code.
async fn test_panic() -> Result<()> {
    match std::env::var("VIPCERT_TEST_PANIC").as_deref() {
        Ok("main") => panic!("VIPCERT_TEST_PANIC=main"),
        Ok("task") => tokio::spawn(async { panic!("VIPCERT_TEST_PANIC=task") })
            .await
            .map_err(anyhow::Error::from),
        _ => Ok(()),
    }
}

/// Run the command `cli` names; its exit code.
fn dispatch(cli: Cli) -> ExitCode {
    if let Some(res) = without_runtime(&cli) {
        return match res {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // `check` is a monitoring plugin: even "could not run" must be UNKNOWN (3) in its format.
    let check_format = match &cli.command {
        Command::Check(a) => Some(self::check_format(a.format)),
        _ => None,
    };
    match (rt.block_on(run(cli)), check_format) {
        (Ok(code), _) => code,
        (Err(e), Some(format)) => {
            eprintln!("error: {e:#}");
            let (out, code) = vipcert::drift::failed(format, &e);
            print!("{out}");
            ExitCode::from(code)
        }
        (Err(e), None) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The commands that run without the async runtime: those that need no configuration file
/// (init writes the first one), and the balancer, which lays out its own runtimes (one per
/// proxy thread). None for every other command.
fn without_runtime(cli: &Cli) -> Option<Result<()>> {
    match &cli.command {
        Command::Init(a) => Some(cmd_init(&cli.global.config, a)),
        Command::Completions(a) => {
            vipcert::docgen::completions(a.shell, &mut std::io::stdout());
            Some(Ok(()))
        }
        Command::Man(a) => Some(cmd_man(&a.out_dir)),
        Command::Balance(a) => Some(vipcert::balancer::run(&cli.global.config, a.threads)),
        _ => None,
    }
}

fn cmd_init(path: &std::path::Path, a: &vipcert::cli::InitArgs) -> Result<()> {
    let opts = vipcert::init::InitOptions {
        path: path.to_path_buf(),
        virtual_hostname: a.virtual_hostname.clone(),
        virtual_ip: a.virtual_ip,
        shared_dir: a.shared_dir.clone(),
        layout: match a.layout {
            LayoutArg::Shared => vipcert::config::Layout::Shared,
            LayoutArg::PerHost => vipcert::config::Layout::PerHost,
        },
        contacts: a.contact.clone(),
        nodes: a
            .nodes
            .iter()
            .map(|n| vipcert::init::parse_node_spec(n).map_err(|e| anyhow::anyhow!("--node: {e}")))
            .collect::<Result<_>>()?,
        staging: a.staging,
        force: a.force,
    };
    let w = vipcert::init::run(&opts)?;
    print!("{}", vipcert::plan::render(&w.config, &w.plan));
    let verb = if w.replaced { "replaced" } else { "wrote" };
    println!("\n{verb} {} (mode 0644)", path.display());
    print!("{}", vipcert::init::next_steps(&w.config));
    Ok(())
}

fn cmd_man(dir: &std::path::Path) -> Result<()> {
    let files = vipcert::docgen::write_man_pages(dir)
        .map_err(|e| anyhow::anyhow!("cannot write man pages into {}: {e}", dir.display()))?;
    for f in files {
        println!("{}", f.display());
    }
    Ok(())
}

/// The library's format for the command line's.
fn check_format(f: CheckFormat) -> vipcert::drift::Format {
    use vipcert::drift::Format;
    match f {
        CheckFormat::Text => Format::Text,
        CheckFormat::Json => Format::Json,
        CheckFormat::Nagios => Format::Nagios,
        CheckFormat::Prometheus => Format::Prometheus,
        CheckFormat::Html => Format::Html,
    }
}

/// The command line, or the exit code of a usage error: clap's 2, except for `check`, a
/// monitoring plugin, whose "could not run" is UNKNOWN (3) — a typo in a Nagios command
/// definition must not page anyone as CRITICAL.
fn parse_cli() -> Result<Cli, ExitCode> {
    use clap::CommandFactory;
    let err = match Cli::try_parse() {
        Ok(cli) => return Ok(cli),
        Err(e) => e,
    };
    if !err.use_stderr() {
        // --help, --version: printed to stdout, exit 0.
        err.exit();
    }
    // A lenient second parse only to learn which subcommand was meant.
    let is_check = Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(std::env::args_os())
        .is_ok_and(|m| m.subcommand_name() == Some("check"));
    if !is_check {
        err.exit();
    }
    let _ = err.print();
    Err(ExitCode::from(3))
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "vipcert=info",
        1 => "vipcert=debug",
        _ => "vipcert=trace,instant_acme=debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .with_target(false)
        .init();
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Cancelled on SIGINT or SIGTERM.
fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        t.cancel();
    });
    token
}

/// What every command works with once the config is read.
struct Loaded<'a> {
    g: &'a Global,
    cfg: Config,
    plan: Plan,
    store: Store,
}

impl Loaded<'_> {
    /// This node's hostname (`--node`, else the host's name among the configured nodes).
    fn node(&self) -> Result<String> {
        Ok(self.cfg.this_node(self.g.node.as_deref())?.hostname.clone())
    }

    /// The install root: `--root`, else `[install] root`.
    fn root(&self, arg: Option<PathBuf>) -> PathBuf {
        arg.unwrap_or_else(|| self.cfg.install.root.clone())
    }
}

/// Read the config, then run the command: each arm hands over to a function of its own.
async fn run(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    let cfg = Config::load(&g.config)?;
    let plan = Plan::new(&cfg)?;
    let store = Store::new(&cfg.shared_dir);
    test_panic().await?;
    let cx = Loaded {
        g,
        cfg,
        plan,
        store,
    };
    match cli.command {
        Command::Config(ConfigCommand::Check) => config_check(&cx),
        Command::Serve(a) => serve(cx, a).await,
        Command::Preflight => preflight(cx).await,
        Command::Issue(a) => issue(&cx, a).await,
        Command::Install(a) => install(&cx, a),
        Command::Renew(a) => renew(&cx, a).await,
        Command::Rollback(a) => rollback(&cx, a),
        Command::Check(a) => check(cx, a).await,
        Command::Status(a) => status(&cx, a).await,
        Command::Account { ca, command } => account(&cx, ca.as_deref(), command).await,
        Command::Revoke(a) => revoke(&cx, a).await,
        Command::Render(r) => {
            print!("{}", render(&cx, r)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Balance(_) => unreachable!("dispatched before the runtime starts"),
        Command::Init(_) | Command::Completions(_) | Command::Man(_) => {
            unreachable!("dispatched before the config is read")
        }
    }
}

fn config_check(cx: &Loaded<'_>) -> Result<ExitCode> {
    let host = vipcert::hostcheck::run(&cx.g.config, cx.g.node.as_deref())?;
    print!("{}", vipcert::plan::render(&cx.cfg, &cx.plan));
    println!("{host}");
    for w in cx.cfg.warnings() {
        println!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `serve`: the node server (and `--watch`) until SIGINT or SIGTERM.
async fn serve(cx: Loaded<'_>, a: ServeArgs) -> Result<ExitCode> {
    let opts = vipcert::serve::ServeOptions {
        node: cx.node()?,
        root: cx.root(a.root),
        listen: a.listen,
        watch: a.watch,
        config_file: cx.g.config.clone(),
    };
    vipcert::serve::run(&cx.cfg, opts, shutdown_token()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn preflight(cx: Loaded<'_>) -> Result<ExitCode> {
    let Loaded {
        cfg, plan, store, ..
    } = cx;
    let report = vipcert::preflight::run(&cfg, &plan, &store).await?;
    print!("{}", report.table(false));
    let (clock, clock_critical) = vipcert::clock::preflight_lines(&cfg, &store).await;
    print!("{clock}");
    if !report.ok() {
        println!(
            "preflight FAILED: {} probe(s) failed (see above)",
            report.failed()
        );
    }
    if clock_critical {
        println!("preflight FAILED: this node's clock is more than 5 minutes off (see above)");
    }
    if report.ok() && !clock_critical {
        println!("preflight ok: {}", vipcert::preflight::ok_line(&cfg, &plan));
    }
    Ok(exit(report.ok() && !clock_critical))
}

/// `issue`: the issuing pipeline for every lineage (those already issued are skipped unless
/// --force); a failure that stops the run before ordering is the command's error. With
/// --dry-run, the dry run at the staging CA instead (`pipeline::dry_run`).
async fn issue(cx: &Loaded<'_>, a: IssueArgs) -> Result<ExitCode> {
    let node = cx.node()?;
    if a.dry_run {
        let rep = vipcert::pipeline::dry_run(&cx.cfg, &cx.plan, &cx.store, &node, false).await?;
        print!("{rep}");
        return Ok(exit(rep.ok()));
    }
    let opts = PipelineOptions {
        issue: Some(IssueOptions {
            force: a.force,
            node: node.clone(),
            only: None,
            if_current: None,
            mode: vipcert::issue::Mode::Publish,
        }),
        when_stopped: WhenStopped::Return,
        node,
        root: cx.root(a.root),
    };
    let rep = vipcert::pipeline::run(&cx.cfg, &cx.plan, &cx.store, &opts).await?;
    print!("{rep}");
    Ok(exit(rep.into_ok()?))
}

fn install(cx: &Loaded<'_>, a: InstallArgs) -> Result<ExitCode> {
    let node = cx.node()?;
    let root = cx.root(a.root);
    let rep = vipcert::install::run(&cx.cfg, &cx.plan, &cx.store, &node, &root)?;
    print!("{}", rep.summary(&vipcert::plan::targets(&cx.cfg, &root)));
    Ok(exit(rep.ok()))
}

/// `renew`; with --dry-run, every lineage tried at the staging CA (`renew::dry_run`).
async fn renew(cx: &Loaded<'_>, a: RenewArgs) -> Result<ExitCode> {
    let opts = RenewOptions {
        node: cx.node()?,
        force: a.force,
        random_delay: a.random_delay,
        root: cx.root(a.root),
    };
    if a.dry_run {
        let rep = vipcert::renew::dry_run(&cx.cfg, &cx.plan, &cx.store, &opts).await?;
        print!("{rep}");
        return Ok(exit(rep.ok()));
    }
    let rep = vipcert::renew::run(&cx.cfg, &cx.plan, &cx.store, &opts).await?;
    print!("{rep}");
    Ok(exit(rep.ok()))
}

fn rollback(cx: &Loaded<'_>, a: RollbackArgs) -> Result<ExitCode> {
    let node = cx.node()?;
    let root = cx.root(a.root);
    let (cfg, plan, store) = (&cx.cfg, &cx.plan, &cx.store);
    let rep = vipcert::renew::rollback(cfg, plan, store, &node, &root, &a.lineage, a.to)?;
    print!("{rep}");
    Ok(exit(rep.ok()))
}

async fn check(cx: Loaded<'_>, a: CheckArgs) -> Result<ExitCode> {
    let Loaded {
        g,
        cfg,
        plan,
        store,
    } = cx;
    let opts = vipcert::drift::CheckOptions {
        fleet: a.fleet,
        format: check_format(a.format),
        warn: a.warn,
        crit: a.crit,
        root: a.root,
        node: g.node.clone(),
    };
    let (out, code) = vipcert::drift::run(&cfg, &plan, &store, &opts).await?;
    print!("{out}");
    Ok(ExitCode::from(code))
}

/// `status`: the table, or JSON; read only.
async fn status(cx: &Loaded<'_>, a: StatusArgs) -> Result<ExitCode> {
    let opts = vipcert::overview::StatusOptions { fleet: a.fleet };
    let rep = vipcert::overview::run(&cx.cfg, &cx.plan, &cx.store, opts).await?;
    print!("{}", if a.json { rep.json() } else { rep.text() });
    Ok(ExitCode::SUCCESS)
}

async fn account(cx: &Loaded<'_>, ca: Option<&str>, a: AccountCommand) -> Result<ExitCode> {
    let cfg = match ca {
        Some(name) => cx.cfg.with_named_ca(name)?,
        None => cx.cfg.clone(),
    };
    if let AccountCommand::PersistRecord(p) = a {
        return persist_record(cx, &cfg, ca, p).await;
    }
    let action = account_action(a)?;
    // The lease names a node; outside the cluster (an admin host) the host name does.
    let node = cx.node().unwrap_or_else(|_| {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    });
    let rep = vipcert::account::run(&cfg, &cx.store, &node, action).await?;
    print!("{rep}");
    Ok(exit(rep.ok()))
}

/// The library's account action for the command line's.
fn account_action(a: AccountCommand) -> Result<vipcert::account::Action> {
    use vipcert::account::Action;
    Ok(match a {
        AccountCommand::Show => Action::Show,
        AccountCommand::Update { contact } => Action::Update { contact },
        AccountCommand::Rollover => Action::Rollover,
        AccountCommand::Deactivate { yes } => {
            if !yes {
                anyhow::bail!("deactivating an account cannot be undone: add --yes");
            }
            Action::Deactivate
        }
        AccountCommand::PersistRecord(_) => unreachable!("handled by persist_record"),
    })
}

/// `account persist-record`: print the dns-persist-01 records.
async fn persist_record(
    cx: &Loaded<'_>,
    cfg: &vipcert::config::Config,
    ca: Option<&str>,
    a: vipcert::cli::PersistRecordArgs,
) -> Result<ExitCode> {
    let now = vipcert::store::now().max(0) as u64;
    let persist_until = match &a.persist_until {
        Some(d) => Some(
            vipcert::persist::persist_until(d, now)
                .map_err(|e| anyhow::anyhow!("--persist-until {e}"))?,
        ),
        None => None,
    };
    let opts = vipcert::account_persist::PersistOptions {
        lineage: a.lineage,
        names: a.names,
        wildcard: a.policy_wildcard,
        persist_until,
        issuer: a.issuer,
        ca: ca.map(str::to_string),
        apply: a.apply,
    };
    let rep = vipcert::account_persist::run(cfg, &cx.plan, &cx.store, &opts).await?;
    print!("{rep}");
    Ok(ExitCode::SUCCESS)
}

async fn revoke(cx: &Loaded<'_>, a: RevokeArgs) -> Result<ExitCode> {
    let opts = RevokeOptions {
        node: cx.node()?,
        lineage: a.lineage,
        version: a.version,
        reason: revoke_reason(a.reason),
        reissue: a.reissue,
        root: cx.root(a.root),
    };
    let rep = vipcert::revoke::run(&cx.cfg, &cx.plan, &cx.store, &opts).await?;
    print!("{rep}");
    Ok(exit(rep.into_ok()?))
}

/// The library's revocation reason for the command line's.
fn revoke_reason(r: RevokeReason) -> vipcert::revoke::Reason {
    use vipcert::revoke::Reason;
    match r {
        RevokeReason::Unspecified => Reason::Unspecified,
        RevokeReason::KeyCompromise => Reason::KeyCompromise,
        RevokeReason::Superseded => Reason::Superseded,
        RevokeReason::CessationOfOperation => Reason::CessationOfOperation,
    }
}

/// The text `render` prints.
fn render(cx: &Loaded<'_>, r: RenderCommand) -> Result<String> {
    let node = cx.g.node.as_deref();
    Ok(match r {
        RenderCommand::Keepalived(a) => vipcert::render::keepalived(&cx.cfg, &vrrp_role(&a))?,
        RenderCommand::Arptables => vipcert::render::arptables(&cx.cfg, node)?,
        RenderCommand::NodeVip(a) => {
            vipcert::render::node_vip(&cx.cfg, node_vip_format(a.format), node)?
        }
        RenderCommand::GridftpSysconfig => vipcert::render::gridftp_sysconfig(&cx.cfg),
    })
}

/// The library's VRRP role for `render keepalived`'s arguments.
fn vrrp_role(a: &vipcert::cli::KeepalivedArgs) -> vipcert::render::Role {
    use vipcert::cli::VrrpStateArg;
    use vipcert::config::VrrpState;
    vipcert::render::Role {
        state: a.state.map(|s| match s {
            VrrpStateArg::Master => VrrpState::Master,
            VrrpStateArg::Backup => VrrpState::Backup,
        }),
        priority: a.priority,
        unicast_src_ip: a.unicast_src_ip,
    }
}

/// The library's format for `render node-vip --format`.
fn node_vip_format(f: vipcert::cli::NodeVipFormatArg) -> vipcert::render::NodeVipFormat {
    use vipcert::cli::NodeVipFormatArg as A;
    use vipcert::render::NodeVipFormat as F;
    match f {
        A::Ip => F::Ip,
        A::Sysctl => F::Sysctl,
        A::Networkd => F::Networkd,
        A::Nm => F::Nm,
        A::Arptables => F::Arptables,
        A::All => F::All,
    }
}
