//! vipcert: Let's Encrypt certificates for grid data-transfer nodes behind one virtual
//! hostname and VIP — issue, install, renew, check drift, balance.
//!
//! Layout:
//! - `cli`       — clap definitions of the `vipcert` command line
//! - `docgen`    — man pages and shell completions generated from `cli`
//! - `init`      — `vipcert init`: the first config file, validated before it is written
//! - `config`    — the TOML file: raw parse, then each section validated into `Config`
//! - `hostcheck` — `config check` on a node: files and users the config names, as used later
//! - `plan`      — lineages, names in order, install targets (pure)
//! - `cert`      — what a certificate and key say (parsed facts)
//! - `verify`    — THE verification policy: "is this cert, chain and key good for this lineage"
//! - `safefs`    — directory-relative, no-follow file primitives
//! - `fs_error`  — an I/O error with its file, its step and what to do
//! - `escape`    — control characters in text from shared files or the CA, shown escaped
//! - `store`     — the shared directory: versions, current, accounts, state
//! - `unixtime`  — times read from outside, clamped into a sane range; the total formatter
//! - `retry`     — when to try again: the CA's Retry-After capped, recorded waits judged
//! - `lease`     — the issuer lease in the shared directory
//! - `clock`     — this node's clock against the shared filesystem's and the CA's
//! - `serve`     — `serve`: the node server (HTTP-01 tokens, health, status), its limits and tasks
//! - `status`    — the status document's wire format (served by `serve`, read by `drift`)
//! - `dns`       — speaking DNS: direct questions, zone/NS/CNAME discovery, RFC 2136 + TSIG updates
//! - `persist`   — the dns-persist-01 record (pure): its value, TXT strings, zone line, parse, judgement
//! - `preflight` — prove every name can be validated, by its method, before asking a CA
//! - `acme`      — RFC 8555 only: bounded client, account, order steps with typed challenges; failures as data
//! - `solve`     — the solvers answering an order's challenges (http-01: webroot files, readiness barrier)
//! - `validation_hook` — `[hooks] pre_validation` / `post_validation` around each order's validation
//! - `program`   — run an operator's program bounded in time and output
//! - `account`   — `account show/update/rollover/deactivate` under the issuer lease
//! - `account_persist` — `account persist-record`: the dns-persist-01 records for this account and CA
//! - `account_object` — the account object as the CA holds it (POST-as-GET), for `account show`
//! - `issue`     — the issue flow: lease → preflight → order → solvers → barrier → publish (a dry run: verify → discard)
//! - `pipeline`  — the issuing pipeline of `issue`, `renew`, `revoke --reissue`: issue → record → install;
//!   `--dry-run`: the issue flow alone at the staging CA
//! - `attempts`  — an attempt's record in state/: failures counted, backoff, `[notify] on_failure`
//! - `install`   — put the current pair at the install targets: verify → journal → place
//!   (files or links) → hooks; `install::watch` runs that for `serve --watch` when `current` moves
//! - `revoke`    — `revoke`: revoke a stored version at the CA, mark it, optionally reissue
//! - `schedule`  — when each lineage renews and why (pure): the due decision, the lifetime rule, backoff
//! - `renew`     — decide when each lineage is due (ARI, lifetime, plan changes; typed reasons), act through `pipeline`; `rollback`
//! - `failure_hook` — `[notify] on_failure`: run the operator's programs when a renewal fails
//! - `drift`     — `check`: findings per node and lineage, fleet status/TLS probes, outputs
//! - `overview`  — `status`: per lineage the version, renewal decision, ARI, backoff, nodes' installs
//! - `progress`  — per-name progress lines for long-running commands
//! - `random`    — random tokens from getrandom(2)
//! - `limits`    — raise the open-file limit for servers
//! - `metrics`   — the Prometheus text format: one family writer, one label escaper
//! - `secret_file` — a root-only secret file (EAB key, TSIG key), checked before it is read
//! - `scrape`    — the bounded `GET /metrics` listener (balancer's admin, serve's metrics_listen)
//! - `textfile`  — the node_exporter textfile issuing runs leave (`[renew] metrics_file`)
//! - `balancer`  — `balance`: the layer-4 balancer on the VIP (scheduler, health, proxy, metrics)
//! - `render`    — keepalived.conf, arptables lines, GridFTP sysconfig from the same config
pub mod account;
mod account_object;
pub mod account_persist;
pub mod acme;
mod attempts;
pub mod balancer;
pub mod cert;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dns;
pub mod docgen;
pub mod drift;
pub mod escape;
mod failure_hook;
pub mod fs_error;
pub mod hostcheck;
pub mod init;
pub mod install;
pub mod issue;
pub mod lease;
pub mod limits;
mod metrics;
pub mod overview;
pub mod persist;
pub mod pipeline;
pub mod plan;
pub mod preflight;
mod program;
mod progress;
mod random;
pub mod render;
pub mod renew;
mod retry;
pub mod revoke;
pub mod safefs;
pub mod schedule;
mod scrape;
mod secret_file;
pub mod serve;
mod solve;
mod status;
pub mod store;
mod textfile;
pub mod unixtime;
mod validation_hook;
mod verify;
