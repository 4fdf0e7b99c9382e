//! `layout`: one certificate for the cluster, or one per node — the top-level key that the
//! CA limits and `[install]`'s default paths depend on.
//!
//! Owns the `Layout` type and how the key is spelt. It does not decide which names go in
//! which certificate: that is `plan`.

/// `layout`: one certificate for the cluster, or one per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One certificate, CN = virtual hostname, installed on every node.
    Shared,
    /// One certificate per node, CN = node hostname.
    PerHost,
}

/// The spellings `layout` accepts.
pub(super) const LAYOUTS: &[(&str, Layout)] =
    &[("shared", Layout::Shared), ("per-host", Layout::PerHost)];
