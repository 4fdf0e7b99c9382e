//! The finding vocabulary of the drift checker: what was checked (`Check`, in report order),
//! how bad it is (`Severity`) and the `Finding` itself {node, lineage, check, severity,
//! target, detail}.
//!
//! It does not decide anything (`policy`, `remote` evaluate; `output` renders).

use serde::{Deserialize, Serialize};

/// What was checked, in the fixed order findings are reported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Check {
    /// store/<lineage>/current exists, reads and passes the verification policy.
    Store,
    /// state/<lineage>.json: failed renewals, backoff.
    Renewal,
    /// This node's clock against the shared filesystem's and the CA's.
    Clock,
    /// The node's status route answered (fleet only).
    Status,
    /// The installed cert and key files exist and are readable regular files.
    File,
    /// They parse as PEM certificate(s) and an unencrypted private key.
    Parse,
    /// The key belongs to the certificate.
    Key,
    /// CN and SAN set as planned.
    Names,
    /// Same leaf as store/<lineage>/current (SHA-256 of the DER), not revoked.
    Current,
    /// Each certificate signed by the next up to a trusted root; intermediates as in the store.
    Chain,
    /// Owner, group and mode as configured.
    Permissions,
    /// serverAuth present; clientAuth where the node needs it.
    Eku,
    /// Valid now; time left before notAfter.
    Expiry,
    /// A TLS endpoint on the node serves the store's certificate (fleet only).
    Probe,
}

impl Check {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Check::Store => "store",
            Check::Renewal => "renewal",
            Check::Clock => "clock",
            Check::Status => "status",
            Check::File => "file",
            Check::Parse => "parse",
            Check::Key => "key",
            Check::Names => "names",
            Check::Current => "current",
            Check::Chain => "chain",
            Check::Permissions => "permissions",
            Check::Eku => "eku",
            Check::Expiry => "expiry",
            Check::Probe => "probe",
        }
    }
}

/// Declaration order is the rank used for the overall status: a known breakage (critical)
/// outranks "could not tell" (unknown), which outranks a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Severity {
    Ok,
    Warning,
    Unknown,
    Critical,
}

impl Severity {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Unknown => "unknown",
            Severity::Critical => "critical",
        }
    }
    /// Nagios plugin exit codes, used by every format but prometheus.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Severity::Ok => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
            Severity::Unknown => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Finding {
    /// None for store-wide findings (store, renewal).
    pub(crate) node: Option<String>,
    pub(crate) lineage: String,
    pub(crate) check: Check,
    pub(crate) severity: Severity,
    /// The installed file or probed endpoint the finding is about, if any.
    pub(crate) target: Option<String>,
    pub(crate) detail: String,
}

pub(super) fn finding(
    node: Option<&str>,
    lineage: &str,
    check: Check,
    severity: Severity,
    target: Option<&str>,
    detail: impl Into<String>,
) -> Finding {
    Finding {
        node: node.map(str::to_string),
        lineage: lineage.to_string(),
        check,
        severity,
        target: target.map(str::to_string),
        detail: detail.into(),
    }
}
