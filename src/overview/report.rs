//! What `vipcert status` reports, as data: the types `--json` serializes (schema 1,
//! docs/monitoring.md, "vipcert status") and the text table is drawn from. Times are unix
//! seconds; a field that cannot be known is `null`, never a made-up value.
//!
//! Owns the shapes and the renewal summary's mapping from `renew`'s typed decision (`Due`)
//! to what is shown; it reads nothing itself (`gather`, `nodes`, `timer` do).

use serde::Serialize;

use crate::schedule::{Due, DueReason, NotDueReason};

/// The JSON schema version of `vipcert status --json`.
pub(crate) const SCHEMA: u32 = 1;

/// Everything `vipcert status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// The JSON schema version (1).
    pub schema: u32,
    /// When the report was made (this node's clock).
    pub generated_at: i64,
    /// Whether each node was asked for its install (`--fleet`).
    pub fleet: bool,
    /// Per lineage of the plan, in plan order.
    pub lineages: Vec<LineageStatus>,
    /// `locks/issuer.lease` now.
    pub lease: LeaseState,
    /// The next run of `vipcert-renew.timer` on this node, as systemd tells it.
    pub timer: TimerNext,
}

/// One lineage.
#[derive(Debug, Clone, Serialize)]
pub struct LineageStatus {
    /// The lineage (store/<lineage>).
    pub lineage: String,
    /// The names planned for it, CN first.
    pub names: Vec<String>,
    /// The CA and the profile.
    pub ca: CaView,
    /// The ACME account at that CA.
    pub account: AccountView,
    /// The version `current` points at; null when there is none or it cannot be read.
    pub current: Option<Current>,
    /// Why `current` cannot be read, when it cannot.
    pub current_error: Option<String>,
    /// When it renews, and why then.
    pub renewal: Renewal,
    /// The CA's renewal window (ARI), as cached.
    pub ari: Ari,
    /// Failures in a row and the next attempt.
    pub backoff: Backoff,
    /// The last successful issue or renewal.
    pub last_success: Option<i64>,
    /// Why `state/<lineage>.json` cannot be read, when it cannot (then the renewal is judged
    /// as if it were empty, as `renew` would not run at all).
    pub state_error: Option<String>,
    /// Kept versions marked revoked, oldest first.
    pub revoked: Vec<RevokedVersion>,
    /// Each node's install (`--fleet` only; absent without).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeInstall>>,
}

/// Which CA, and which profile.
#[derive(Debug, Clone, Serialize)]
pub struct CaView {
    /// `[acme] directory`: where the next order goes first.
    pub directory: String,
    /// The directory URL of the CA that issued the current version (a fallback CA, maybe).
    pub issued_by: Option<String>,
    /// The profile configured for the CA that issued it ("" = the CA's default); null when
    /// that CA is no longer configured.
    pub profile: Option<String>,
    /// The profile the current version was ordered with; null when not recorded.
    pub issued_profile: Option<String>,
}

/// The ACME account file at the CA that issued the current version (else `[acme]`'s).
#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    /// `accounts/<ca-host>/account.json`.
    pub file: String,
    /// The account URL it records; null when there is no file or it cannot be read.
    pub url: Option<String>,
    /// Why the file cannot be read.
    pub error: Option<String>,
}

/// The current version.
#[derive(Debug, Clone, Serialize)]
pub struct Current {
    /// Its number (store/<lineage>/NNNN).
    pub version: u32,
    /// Serial number, hex.
    pub serial: String,
    /// The subject CN.
    pub cn: Option<String>,
    /// The SANs, in the certificate's order.
    pub names: Vec<String>,
    /// Validity.
    pub not_before: i64,
    /// Validity.
    pub not_after: i64,
    /// The share of its lifetime left now, 0.0 to 1.0.
    pub lifetime_left: f64,
    /// When it was issued, and by which node (meta.json).
    pub issued_at: i64,
    /// The node that ordered it.
    pub issued_by: String,
}

/// Where a renewal stands, in `renew`'s terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The next `renew` run orders it.
    Due,
    /// Not due yet.
    NotDue,
    /// Due, but an earlier failure's backoff (or the CA's Retry-After) lasts.
    BackingOff,
    /// `current` cannot be read: `renew` orders nothing until the admin repairs it.
    Unreadable,
}

/// Which rule decides the moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// No certificate yet.
    NoCertificate,
    /// The planned names, CN, key type or profile differ from the certificate's.
    PlanChanged,
    /// The CA's suggested window (ARI).
    AriWindow,
    /// Expired before the CA's window.
    Expired,
    /// A third of the lifetime left (half for lifetimes under 10 days).
    Lifetime,
}

/// When a lineage renews and why.
#[derive(Debug, Clone, Serialize)]
pub struct Renewal {
    /// Due, not due, backing off, or unreadable.
    pub verdict: Verdict,
    /// Which rule; null when unreadable.
    pub rule: Option<Rule>,
    /// From when it renews: the window's start, the lifetime rule's moment, the end of the
    /// backoff, or now when due. Null when unreadable.
    pub at: Option<i64>,
    /// With an ARI window: its end (each run renews at a random moment inside it).
    pub window_end: Option<i64>,
    /// `renew`'s own words for the decision (the line after "<lineage>: ").
    pub reason: String,
}

impl Renewal {
    /// The summary of `renew`'s decision `d`, made at `now` (window end: the cached window's).
    pub(crate) fn of(d: &Due, now: i64, window: Option<(i64, i64)>) -> Renewal {
        let (verdict, rule, at) = match d {
            Due::Yes { reason, .. } => (Verdict::Due, rule_of(reason), now),
            Due::BackingOff { reason, until, .. } => (Verdict::BackingOff, rule_of(reason), *until),
            Due::No(NotDueReason::BeforeAriWindow { start }) => {
                (Verdict::NotDue, Rule::AriWindow, *start)
            }
            Due::No(NotDueReason::Lifetime { renews_from, .. }) => {
                (Verdict::NotDue, Rule::Lifetime, *renews_from)
            }
        };
        let reason = crate::renew::Decision::Judged(d.clone()).to_string();
        Renewal {
            verdict,
            rule: Some(rule),
            at: Some(at),
            window_end: window.filter(|_| rule == Rule::AriWindow).map(|w| w.1),
            reason,
        }
    }

    /// `current` cannot be read (`why`, naming the file).
    pub(crate) fn unreadable(why: &str) -> Renewal {
        let d = crate::renew::Decision::Unreadable(anyhow::anyhow!("{why}"));
        Renewal {
            verdict: Verdict::Unreadable,
            rule: None,
            at: None,
            window_end: None,
            reason: d.to_string(),
        }
    }
}

fn rule_of(r: &DueReason) -> Rule {
    match r {
        // `status` never forces; a forced decision is the plan's own.
        DueReason::Forced | DueReason::NoCertificate => Rule::NoCertificate,
        DueReason::PlanChanged(_) => Rule::PlanChanged,
        DueReason::AriWindow { .. } => Rule::AriWindow,
        DueReason::Expired { .. } => Rule::Expired,
        DueReason::Lifetime { .. } => Rule::Lifetime,
    }
}

/// What is known of the CA's renewal window (ARI).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Ari {
    /// A window for the current certificate, cached in `state/<lineage>.json`.
    Window {
        /// Its start.
        start: i64,
        /// Its end.
        end: i64,
        /// When it was fetched.
        fetched_at: Option<i64>,
        /// The CA is not asked again before this (its Retry-After); past it, the next `renew`
        /// run asks.
        ask_again_after: Option<i64>,
    },
    /// The CA's directory offered no ARI when last fetched (`accounts/<ca-host>/no-ari.json`):
    /// the lifetime rule applies.
    NotOffered {
        /// When the directory was fetched.
        checked_at: i64,
        /// The next `renew` run after this fetches it again.
        ask_again_after: i64,
    },
    /// Not asked yet for this certificate (or no certificate): the next `renew` run asks.
    NotAsked,
}

/// The renewal's failures.
#[derive(Debug, Clone, Serialize)]
pub struct Backoff {
    /// Consecutive failures since the last success.
    pub failures: u32,
    /// Not tried again before this (backoff or the CA's Retry-After); null when none is set.
    pub next_attempt: Option<i64>,
    /// The last attempt, failed or not.
    pub last_attempt: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// A kept version marked revoked.
#[derive(Debug, Clone, Serialize)]
pub struct RevokedVersion {
    /// Its number.
    pub version: u32,
    /// RFC 5280 reason name; null when the mark cannot be read.
    pub reason: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
    /// The node that revoked it.
    pub by: Option<String>,
    /// Why the mark cannot be read (the version counts as revoked).
    pub error: Option<String>,
}

/// What one node has installed for a lineage, from its status route.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInstall {
    /// The node's hostname.
    pub node: String,
    /// The store version whose leaf it holds; null when none (unreachable, or a certificate
    /// the store does not keep).
    pub version: Option<u32>,
    /// Whether that is the current version.
    pub current: bool,
    /// Serial of the installed certificate.
    pub serial: Option<String>,
    /// When the node installed it (the file's time by that node's clock); null when the node
    /// does not say (an older vipcert).
    pub installed_at: Option<i64>,
    /// Why nothing can be said (unreachable, no file, another node answering).
    pub error: Option<String>,
}

/// The issuer lease.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LeaseState {
    /// Nobody holds it.
    Free,
    /// Someone holds it (display only: alive or not is for `renew` to judge).
    Held {
        /// The holder's node.
        node: String,
        /// Its host.
        host: String,
        /// Its pid there.
        pid: u32,
        /// When it was taken (the holder's clock).
        acquired_at: i64,
        /// Its last refresh plus the watch window (the holder's clock).
        expires_at: i64,
    },
    /// The lease file cannot be read.
    Unreadable {
        /// Why.
        error: String,
    },
}

/// The timer's next run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TimerNext {
    /// systemd's next elapse, unix seconds.
    At {
        /// When.
        at: i64,
    },
    /// What systemd said, when it is not a time vipcert reads (an older systemd).
    Said {
        /// Its words.
        text: String,
    },
    /// systemd could not tell (no systemd, the timer not installed or not enabled).
    Unknown {
        /// Why.
        why: String,
    },
}
