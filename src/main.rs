//! The `vipcert` binary: parse the command line, set up logging, dispatch, and turn errors
//! into one readable message and an exit code — a bug (a panic) too: `check` keeps its
//! monitoring exit codes (UNKNOWN, 3), every other command exits 1, each with one line.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Parser;
use tokio_util::sync::CancellationToken;

use vipcert::cli::{
    AccountCommand, CheckFormat, Cli, Command, ConfigCommand, LayoutArg, RenderCommand,
    RevokeReason,
};
use vipcert::config::Config;
use vipcert::plan::Plan;
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
    // Commands that need no configuration file (init writes the first one).
    let early = match &cli.command {
        Command::Init(a) => Some(cmd_init(&cli.global.config, a)),
        Command::Completions(a) => {
            vipcert::docgen::completions(a.shell, &mut std::io::stdout());
            Some(Ok(()))
        }
        Command::Man(a) => Some(cmd_man(&a.out_dir)),
        _ => None,
    };
    if let Some(res) = early {
        return match res {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    if let Command::Balance(a) = &cli.command {
        // The balancer lays out its own runtimes (one per proxy thread).
        return match vipcert::balancer::run(&cli.global.config, a.threads) {
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
        Command::Check(a) => Some(a.format),
        _ => None,
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) if check_format.is_some() => {
            eprintln!("error: {e:#}");
            let (out, code) =
                vipcert::drift::failed(self::check_format(check_format.expect("checked")), &e);
            print!("{out}");
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
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

async fn run(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    let cfg = Config::load(&g.config)?;
    let plan = Plan::new(&cfg)?;
    let store = Store::new(&cfg.shared_dir);
    test_panic().await?;
    match cli.command {
        Command::Config(ConfigCommand::Check) => {
            let host = vipcert::hostcheck::run(&g.config, g.node.as_deref())?;
            print!("{}", vipcert::plan::render(&cfg, &plan));
            println!("{host}");
            for w in cfg.warnings() {
                println!("warning: {w}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(a) => {
            // Handled first: SIGHUP's default action would end the server without a word.
            let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("cannot install the SIGHUP handler")?;
            let started = std::fs::read(&g.config).unwrap_or_default();
            let node = cfg.this_node(g.node.as_deref())?.hostname.clone();
            let root = a.root.unwrap_or_else(|| cfg.install.root.clone());
            let shutdown = shutdown_token();
            let listen = if a.listen.is_empty() {
                cfg.serve.listen.clone()
            } else {
                a.listen
            };
            let nofile = vipcert::limits::raise_nofile();
            let (limits, lowered) =
                vipcert::challenge::ConnectionLimits::of(&cfg.serve).within_nofile(nofile);
            if lowered {
                tracing::warn!(
                    open_file_limit = nofile,
                    max_connections = limits.max_connections(),
                    "[serve] max_connections lowered to fit the open-file limit; raise LimitNOFILE (or the hard `ulimit -n`) to hold more"
                );
            }
            // The node server starts without its share (health answers 503 until it is
            // mounted) and never creates shared_dir itself.
            if let Err(e) = store.init() {
                tracing::warn!(error = %format!("{e:#}"), "shared directory not ready");
            }
            tokio::spawn(vipcert::challenge::sweep_loop(
                store.clone(),
                shutdown.clone(),
            ));
            let listeners = vipcert::challenge::bind(&listen).await?;
            let server = vipcert::challenge::NodeServer::for_node(&cfg, &plan, &node, &root);
            server
                .spawn_status_refresher(shutdown.clone())
                .context("cannot start the status refresher thread")?;
            tokio::spawn(vipcert::challenge::hangup_loop(
                hup,
                server.clone(),
                g.config.clone(),
                started,
                shutdown.clone(),
            ));
            tracing::info!(node = %node, listen = ?listen, webroot = %store.webroot_path().display(), "serving");
            let watcher = a.watch.then(|| {
                let o = vipcert::watch::Options {
                    node: node.clone(),
                    root: root.clone(),
                    mode: cfg.serve.watch,
                    interval: cfg.serve.watch_interval,
                    on_install: None,
                };
                tokio::spawn(vipcert::watch::run(
                    cfg.clone(),
                    plan.clone(),
                    o,
                    shutdown.clone(),
                ))
            });
            vipcert::challenge::run(listeners, &server, limits, shutdown.clone()).await;
            shutdown.cancel();
            if let Some(w) = watcher {
                let _ = w.await;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Preflight => {
            let report = vipcert::preflight::run(&cfg, &plan, &store).await?;
            print!("{}", report.table(false));
            let (clock, clock_critical) = vipcert::clock::preflight_lines(&cfg, &store).await;
            print!("{clock}");
            if !report.ok() {
                println!(
                    "preflight FAILED: {} probe(s) failed (see above)",
                    report.failures().count()
                );
            }
            if clock_critical {
                println!(
                    "preflight FAILED: this node's clock is more than 5 minutes off (see above)"
                );
            }
            if report.ok() && !clock_critical {
                println!(
                    "preflight ok: every name answers HTTP-01 on port {}",
                    cfg.acme.http_port
                );
            }
            Ok(exit(report.ok() && !clock_critical))
        }
        Command::Issue(a) => {
            let node = cfg.this_node(g.node.as_deref())?.hostname.clone();
            let opts = vipcert::issue::Options {
                force: a.force,
                node: node.clone(),
                only: None,
                if_current: None,
            };
            let out = vipcert::issue::run(&cfg, &plan, &store, &opts).await?;
            print!("{}", out.summary());
            // Counted like renew's failures, so `[notify] on_failure` hears of them too.
            print!(
                "{}",
                vipcert::renew::record_failures(&cfg, &plan, &store, &node, &out).await?
            );
            // Install here what is now current (every other node's `serve --watch` does too).
            let root = a.root.unwrap_or_else(|| cfg.install.root.clone());
            let rep = vipcert::install::run(&cfg, &plan, &store, &node, &root)?;
            print!("{}", rep.summary(&vipcert::plan::targets(&cfg, &root)));
            Ok(exit(out.ok() && rep.ok()))
        }
        Command::Install(a) => {
            let node = cfg.this_node(g.node.as_deref())?.hostname.clone();
            let root = a.root.unwrap_or_else(|| cfg.install.root.clone());
            let rep = vipcert::install::run(&cfg, &plan, &store, &node, &root)?;
            print!("{}", rep.summary(&vipcert::plan::targets(&cfg, &root)));
            Ok(exit(rep.ok()))
        }
        Command::Renew(a) => {
            let node = cfg.this_node(g.node.as_deref())?.hostname.clone();
            let opts = vipcert::renew::Options {
                node,
                force: a.force,
                random_delay: a.random_delay,
                root: a.root.unwrap_or_else(|| cfg.install.root.clone()),
            };
            let rep = vipcert::renew::run(&cfg, &plan, &store, &opts).await?;
            print!("{}", rep.text);
            Ok(exit(rep.ok))
        }
        Command::Rollback(a) => {
            let node = cfg.this_node(g.node.as_deref())?.hostname.clone();
            let root = a.root.unwrap_or_else(|| cfg.install.root.clone());
            let rep =
                vipcert::renew::rollback(&cfg, &plan, &store, &node, &root, &a.lineage, a.to)?;
            print!("{}", rep.text);
            Ok(exit(rep.ok))
        }
        Command::Check(a) => {
            let opts = vipcert::drift::Options {
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
        Command::Account(a) => {
            let action = match a {
                AccountCommand::Show => vipcert::account::Action::Show,
                AccountCommand::Update { contact } => vipcert::account::Action::Update { contact },
                AccountCommand::Rollover => vipcert::account::Action::Rollover,
                AccountCommand::Deactivate { yes } => {
                    if !yes {
                        anyhow::bail!("deactivating an account cannot be undone: add --yes");
                    }
                    vipcert::account::Action::Deactivate
                }
            };
            // The lease names a node; outside the cluster (an admin host) the host name does.
            let node = match cfg.this_node(g.node.as_deref()) {
                Ok(n) => n.hostname.clone(),
                Err(_) => rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned(),
            };
            let rep = vipcert::account::run(&cfg, &store, &node, action).await?;
            print!("{}", rep.text);
            Ok(exit(rep.ok))
        }
        Command::Revoke(a) => {
            use vipcert::revoke::Reason;
            let node = cfg.this_node(g.node.as_deref())?.hostname.clone();
            let opts = vipcert::revoke::Options {
                lineage: a.lineage,
                version: a.version,
                reason: match a.reason {
                    RevokeReason::Unspecified => Reason::Unspecified,
                    RevokeReason::KeyCompromise => Reason::KeyCompromise,
                    RevokeReason::Superseded => Reason::Superseded,
                    RevokeReason::CessationOfOperation => Reason::CessationOfOperation,
                },
                reissue: a.reissue,
                node: node.clone(),
            };
            let rep = vipcert::revoke::run(&cfg, &plan, &store, &opts).await?;
            print!("{}", rep.text);
            let mut ok = rep.ok;
            if a.reissue {
                let root = a.root.unwrap_or_else(|| cfg.install.root.clone());
                let inst = vipcert::install::run(&cfg, &plan, &store, &node, &root)?;
                print!("{}", inst.summary(&vipcert::plan::targets(&cfg, &root)));
                ok &= inst.ok();
            }
            Ok(exit(ok))
        }
        Command::Balance(_) => unreachable!("dispatched before the runtime starts"),
        Command::Init(_) | Command::Completions(_) | Command::Man(_) => {
            unreachable!("dispatched before the config is read")
        }
        Command::Render(r) => {
            let text = match r {
                RenderCommand::Keepalived(a) => {
                    use vipcert::cli::VrrpStateArg;
                    use vipcert::config::VrrpState;
                    let role = vipcert::render::Role {
                        state: a.state.map(|s| match s {
                            VrrpStateArg::Master => VrrpState::Master,
                            VrrpStateArg::Backup => VrrpState::Backup,
                        }),
                        priority: a.priority,
                        unicast_src_ip: a.unicast_src_ip,
                    };
                    vipcert::render::keepalived(&cfg, &role)?
                }
                RenderCommand::Arptables => vipcert::render::arptables(&cfg, g.node.as_deref())?,
                RenderCommand::NodeVip(a) => {
                    use vipcert::cli::NodeVipFormatArg as A;
                    use vipcert::render::NodeVipFormat as F;
                    let format = match a.format {
                        A::Ip => F::Ip,
                        A::Sysctl => F::Sysctl,
                        A::Networkd => F::Networkd,
                        A::Nm => F::Nm,
                        A::Arptables => F::Arptables,
                        A::All => F::All,
                    };
                    vipcert::render::node_vip(&cfg, format, g.node.as_deref())?
                }
                RenderCommand::GridftpSysconfig => vipcert::render::gridftp_sysconfig(&cfg),
            };
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
