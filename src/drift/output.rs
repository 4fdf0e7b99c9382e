//! The outputs monitoring reads: the text table, the JSON document, the Nagios plugin line
//! with perfdata, the Prometheus textfile, and the exit code of each.
//!
//! It does not gather or judge anything: it renders a `CheckReport` as it is.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::finding::{Check, Finding, Severity};
use super::policy::DAY;
use super::report::{CheckMode, CheckReport, Format};
use crate::escape::escape;

/// Exit code of a report in `format`: the Nagios codes, except prometheus, which exits 0
/// whenever it wrote metrics (the drift is in the metrics; a cron `… > f.tmp && mv` must
/// still move the file).
pub(crate) fn exit_code(report: &CheckReport, format: Format) -> u8 {
    match format {
        Format::Prometheus => 0,
        _ => report.status().exit_code(),
    }
}

/// What `check` prints when it could not run at all (bad config, …): UNKNOWN, exit 3.
pub fn failed(format: Format, err: &anyhow::Error) -> (String, u8) {
    let msg = format!("{err:#}");
    let out = match format {
        Format::Nagios => format!("VIPCERT UNKNOWN - {}\n", escape(&msg.replace('\n', " "))),
        Format::Json => {
            let v = serde_json::json!({"schema": SCHEMA, "status": "unknown", "exit_code": 3, "error": msg});
            format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
        }
        Format::Prometheus => {
            let mut page = crate::metrics::Exposition::default();
            page.family(&family::CHECK_SUCCESS).sample(&[], 0);
            page.finish()
        }
        Format::Html => super::html::failed_page(&msg),
        Format::Text => String::new(),
    };
    (out, 3)
}

/// Version of the JSON document; bumped only on incompatible changes.
pub(crate) const SCHEMA: u32 = 1;

pub(crate) fn json(r: &CheckReport) -> String {
    let v = serde_json::json!({
        "schema": SCHEMA,
        "mode": r.mode,
        "checked_at": r.checked_at,
        "status": r.status(),
        "exit_code": r.status().exit_code(),
        "summary": {
            "ok": r.count(Severity::Ok),
            "warning": r.count(Severity::Warning),
            "critical": r.count(Severity::Critical),
            "unknown": r.count(Severity::Unknown),
        },
        "findings": r.findings,
        "certificates": r.certificates,
    });
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}

fn paint(s: &str, sev: Severity, color: bool) -> String {
    if !color {
        return s.to_string();
    }
    let code = match sev {
        Severity::Ok => "32",
        Severity::Warning => "33",
        Severity::Unknown => "35",
        Severity::Critical => "1;31",
    };
    format!("\x1b[{code}m{s}\x1b[0m")
}

/// One row of the text table.
struct Row {
    severity: Severity,
    node: String,
    lineage: String,
    check: String,
    detail: String,
}

/// The readable table: a node's lineage whose checks all passed is one row (with its expiry),
/// so a healthy cluster of 20 nodes is 20 lines; one with a problem shows every check, so the
/// problem is seen in its context. Node, lineage and detail may hold text from shared files or
/// remote nodes: escaped, so that no row can forge another.
pub(crate) fn text(r: &CheckReport, color: bool) -> String {
    let rows: Vec<Row> = groups(r)
        .iter()
        .flat_map(|group| group_rows(group))
        .collect();
    let mut s = table(&rows, color);
    let st = r.status();
    let _ = writeln!(
        s,
        "\n{}: {} critical, {} unknown, {} warning, {} ok ({} check, exit {})",
        paint(&st.as_str().to_uppercase(), st, color),
        r.count(Severity::Critical),
        r.count(Severity::Unknown),
        r.count(Severity::Warning),
        r.count(Severity::Ok),
        r.mode,
        st.exit_code()
    );
    s
}

/// The findings grouped by (node, lineage), groups in first-seen order; none is empty.
fn groups(r: &CheckReport) -> Vec<Vec<&Finding>> {
    let mut order: Vec<(Option<String>, String)> = Vec::new();
    for f in &r.findings {
        let k = (f.node.clone(), f.lineage.clone());
        if !order.contains(&k) {
            order.push(k);
        }
    }
    order
        .iter()
        .map(|(node, lineage)| {
            r.findings
                .iter()
                .filter(|f| &f.node == node && &f.lineage == lineage)
                .collect()
        })
        .collect()
}

/// The rows of one (node, lineage) group: one when every check passed, else one per check.
fn group_rows(group: &[&Finding]) -> Vec<Row> {
    let node_of = |f: &Finding| escape(f.node.as_deref().unwrap_or("(store)")).into_owned();
    let ok = group.iter().filter(|f| f.severity == Severity::Ok).count();
    if ok < group.len() {
        return group
            .iter()
            .map(|f| Row {
                severity: f.severity,
                node: node_of(f),
                lineage: escape(&f.lineage).into_owned(),
                check: f.check.as_str().to_string(),
                detail: escape(&f.detail).into_owned(),
            })
            .collect();
    }
    // The most useful detail of a healthy group: its expiry, or the store's version.
    let exp = group
        .iter()
        .find(|f| f.check == Check::Expiry || f.check == Check::Store)
        .map(|f| format!("; {}", escape(&f.detail)))
        .unwrap_or_default();
    let checks: Vec<&str> = group.iter().map(|f| f.check.as_str()).collect();
    vec![Row {
        severity: Severity::Ok,
        node: node_of(group[0]),
        lineage: escape(&group[0].lineage).into_owned(),
        check: format!("all {ok}"),
        detail: format!("{}{exp}", checks.join(" ")),
    }]
}

/// The rows under a header, columns as wide as their widest cell.
fn table(rows: &[Row], color: bool) -> String {
    let w = |cell: fn(&Row) -> &str| rows.iter().map(|r| cell(r).len()).max().unwrap_or(0);
    let w1 = w(|r| &r.node).max(4);
    let w2 = w(|r| &r.lineage).max(7);
    let w3 = w(|r| &r.check).max(5);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<8}  {:<w1$}  {:<w2$}  {:<w3$}  DETAIL",
        "SEVERITY", "NODE", "LINEAGE", "CHECK"
    );
    for r in rows {
        let sv = paint(&format!("{:<8}", r.severity.as_str()), r.severity, color);
        let _ = writeln!(
            s,
            "{sv}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            r.node, r.lineage, r.check, r.detail
        );
    }
    s
}

/// Smallest time left per lineage over the installed certificates that could be read, with
/// the warn/crit thresholds of that certificate, in days.
fn days_left(r: &CheckReport) -> Vec<(String, f64, f64, f64)> {
    let mut out: BTreeMap<String, (f64, f64, f64)> = BTreeMap::new();
    for c in &r.certificates {
        let (w, cr) = r.thresholds.for_lifetime(c.not_after - c.not_before);
        let d = |x: i64| x as f64 / DAY as f64;
        let left = d(c.not_after - r.checked_at);
        let e = out
            .entry(c.lineage.clone())
            .or_insert((f64::INFINITY, d(w), d(cr)));
        if left < e.0 {
            *e = (left, d(w), d(cr));
        }
    }
    out.into_iter().map(|(l, (a, b, c))| (l, a, b, c)).collect()
}

/// One line for Nagios/Icinga (status, summary, perfdata), then one line per problem.
pub(crate) fn nagios(r: &CheckReport) -> String {
    let st = r.status();
    let problems = r.problems();
    let summary = nagios_summary(r, problems.first().copied()).replace('|', "/");
    let perf: Vec<String> = days_left(r)
        .iter()
        .map(|(l, left, w, c)| {
            format!(
                "'{}'={left:.2};{w:.2};{c:.2};;",
                escape(l).replace('\'', "")
            )
        })
        .collect();
    let mut s = format!("VIPCERT {} - {summary}", st.as_str().to_uppercase());
    if !perf.is_empty() {
        let _ = write!(s, " | {}", perf.join(" "));
    }
    s.push('\n');
    for f in problems.iter().skip(1) {
        let _ = writeln!(
            s,
            "{} {} {} {}: {}",
            f.severity.as_str().to_uppercase(),
            escape(f.node.as_deref().unwrap_or("store")),
            escape(&f.lineage),
            f.check.as_str(),
            escape(&f.detail).replace('|', "/")
        );
    }
    s
}

/// The status line's text: what is as planned, or the counts and the worst problem.
fn nagios_summary(r: &CheckReport, worst: Option<&Finding>) -> String {
    let Some(first) = worst else {
        let nodes: std::collections::BTreeSet<&str> = r
            .findings
            .iter()
            .filter_map(|f| f.node.as_deref())
            .collect();
        return format!(
            "{} lineage(s) on {} node(s) as planned",
            r.store.len(),
            nodes.len()
        );
    };
    format!(
        "{} critical, {} unknown, {} warning; {} {} {}: {}",
        r.count(Severity::Critical),
        r.count(Severity::Unknown),
        r.count(Severity::Warning),
        escape(first.node.as_deref().unwrap_or("store")),
        escape(&first.lineage),
        first.check.as_str(),
        escape(&first.detail)
    )
}

/// The families `check --format prometheus` writes, in this order
/// (docs/monitoring.md lists them).
mod family {
    use crate::metrics::Family;

    pub(super) const CHECK_SUCCESS: Family = Family::gauge(
        "vipcert_check_success",
        "1 when vipcert check ran; 0 when it could not (see its stderr).",
    );
    pub(super) const CHECK_TIMESTAMP: Family = Family::gauge(
        "vipcert_check_timestamp_seconds",
        "When the check ran, unix seconds.",
    );
    pub(super) const CHECK_STATUS: Family = Family::gauge(
        "vipcert_check_status",
        "Overall result as a Nagios code: 0 ok, 1 warning, 2 critical, 3 unknown.",
    );
    pub(super) const CHECK_FINDINGS: Family = Family::gauge(
        "vipcert_check_findings",
        "Findings of the check by severity.",
    );
    pub(super) const CERT_NOT_AFTER: Family = Family::gauge(
        "vipcert_cert_not_after_seconds",
        "notAfter of the certificate installed on a node (earliest of its install targets), unix seconds.",
    );
    pub(super) const STORE_NOT_AFTER: Family = Family::gauge(
        "vipcert_store_not_after_seconds",
        "notAfter of store/<lineage>/current, unix seconds.",
    );
    pub(super) const STORE_VERSION: Family = Family::gauge(
        "vipcert_store_version",
        "Version number store/<lineage>/current points at.",
    );
    pub(super) const NODE_STATUS_UP: Family = Family::gauge(
        "vipcert_node_status_up",
        "1 when the node's /.well-known/vipcert/status answered.",
    );
    pub(super) const DRIFT: Family = Family::gauge(
        "vipcert_drift",
        "1 when the worst finding of (node, lineage, check) has this severity, else 0; node=\"\" is the shared store.",
    );
}

/// Text for node_exporter's textfile collector.
pub(crate) fn prometheus(r: &CheckReport, success: bool) -> String {
    let mut page = crate::metrics::Exposition::default();
    page.family(&family::CHECK_SUCCESS)
        .sample(&[], u8::from(success));
    page.family(&family::CHECK_TIMESTAMP)
        .sample(&[], r.checked_at);
    page.family(&family::CHECK_STATUS)
        .sample(&[], r.status().exit_code());
    let mut f = page.family(&family::CHECK_FINDINGS);
    for sev in [
        Severity::Ok,
        Severity::Warning,
        Severity::Critical,
        Severity::Unknown,
    ] {
        f.sample(&[("severity", sev.as_str())], r.count(sev));
    }
    let mut f = page.family(&family::CERT_NOT_AFTER);
    for ((lineage, node), t) in &earliest_not_after(&r.certificates) {
        f.sample(&[("lineage", lineage), ("node", node)], t);
    }
    let current = || {
        r.store
            .iter()
            .filter_map(|(l, cur)| Some((l, cur.as_ref()?)))
    };
    let mut f = page.family(&family::STORE_NOT_AFTER);
    for (lineage, (_, t)) in current() {
        f.sample(&[("lineage", lineage)], t);
    }
    let mut f = page.family(&family::STORE_VERSION);
    for (lineage, (n, _)) in current() {
        f.sample(&[("lineage", lineage)], n);
    }
    if r.mode == CheckMode::Fleet {
        let mut f = page.family(&family::NODE_STATUS_UP);
        for (node, up) in &r.nodes_up {
            f.sample(&[("node", node)], u8::from(*up));
        }
    }
    let mut f = page.family(&family::DRIFT);
    for ((node, lineage, check), worst) in worst_findings(&r.findings) {
        for sev in [Severity::Warning, Severity::Critical, Severity::Unknown] {
            let labels = [
                ("node", node.as_str()),
                ("lineage", lineage.as_str()),
                ("check", check.as_str()),
                ("severity", sev.as_str()),
            ];
            f.sample(&labels, u8::from(worst == sev));
        }
    }
    page.finish()
}

/// The earliest notAfter per (lineage, node) over the node's install targets.
fn earliest_not_after(certificates: &[super::report::Installed]) -> BTreeMap<(&str, &str), i64> {
    let mut na: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for c in certificates {
        let e = na.entry((&c.lineage, &c.node)).or_insert(c.not_after);
        *e = (*e).min(c.not_after);
    }
    na
}

/// The worst severity per (node, lineage, check), in the order first found; node "" is the
/// shared store.
fn worst_findings(findings: &[Finding]) -> Vec<((String, String, Check), Severity)> {
    let mut worst: BTreeMap<(String, String, Check), Severity> = BTreeMap::new();
    let mut order = Vec::new();
    for f in findings {
        let k = (
            f.node.clone().unwrap_or_default(),
            f.lineage.clone(),
            f.check,
        );
        if !worst.contains_key(&k) {
            order.push(k.clone());
        }
        let e = worst.entry(k).or_insert(f.severity);
        *e = (*e).max(f.severity);
    }
    order
        .into_iter()
        .map(|k| {
            let sev = worst[&k];
            (k, sev)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::finding::finding;
    use super::super::policy::tests::{eval, good_obs, view, NOW};
    use super::super::policy::{store_findings, Thresholds};
    use super::super::report::{new_report, CheckMode, Installed};
    use super::*;

    fn report(findings: Vec<Finding>) -> CheckReport {
        let mut r = new_report(CheckMode::Local, Thresholds::default(), NOW);
        r.findings = findings;
        r.store = vec![("vip.example.org".into(), Some((2, NOW + 60 * DAY)))];
        r.certificates = vec![Installed {
            node: "dtn1.example.org".into(),
            lineage: "vip.example.org".into(),
            path: "/etc/c.pem".into(),
            sha256: "aa".into(),
            serial: "01".into(),
            not_before: NOW - 30 * DAY,
            not_after: NOW + 60 * DAY,
        }];
        r
    }

    /// Text from a shared file (meta.json's `ca`, state's `last_error`) cannot add a line.
    #[test]
    fn text_and_nagios_escape_control_characters() {
        let mut f = store_findings(&view(), NOW);
        f.push(finding(
            Some("dtn1\r\x1b[2K"),
            "vip.example.org",
            Check::Renewal,
            Severity::Warning,
            None,
            "last: boom\nOK: forged",
        ));
        let r = report(f);
        for out in [text(&r, false), nagios(&r)] {
            assert!(!out.lines().any(|l| l.starts_with("OK: ")), "{out}");
            assert!(!out.contains('\x1b') && !out.contains('\r'), "{out:?}");
            assert!(out.contains("boom\\nOK: forged"), "{out}");
            assert!(out.contains("dtn1\\r\\u{1b}[2K"), "{out}");
        }
    }

    #[test]
    fn formats_and_exit_codes() {
        let mut o = good_obs();
        o.key_matches = Some(false);
        let mut f = store_findings(&view(), NOW);
        f.extend(eval(&o, &view(), false, Thresholds::default()));
        let r = report(f);
        assert_eq!(r.status(), Severity::Critical);
        assert_eq!(exit_code(&r, Format::Nagios), 2);
        assert_eq!(exit_code(&r, Format::Prometheus), 0);
        let n = nagios(&r);
        assert!(n.starts_with("VIPCERT CRITICAL - 1 critical, 0 unknown, 0 warning; dtn1.example.org vip.example.org key: "), "{n}");
        assert!(n.contains("| 'vip.example.org'=60.00;30.00;15.00;;"), "{n}");
        let p = prometheus(&r, true);
        assert!(p.contains("vipcert_drift{node=\"dtn1.example.org\",lineage=\"vip.example.org\",check=\"key\",severity=\"critical\"} 1"), "{p}");
        assert!(p.contains("vipcert_cert_not_after_seconds{lineage=\"vip.example.org\",node=\"dtn1.example.org\"} "), "{p}");
        let j: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(j["status"], "critical");
        assert_eq!(j["exit_code"], 2);
        let t = text(&r, false);
        assert!(t.contains("critical  dtn1.example.org"), "{t}");
        // Unknown outranks warning, critical outranks unknown.
        let mut g = vec![finding(
            None,
            "l",
            Check::Renewal,
            Severity::Warning,
            None,
            "",
        )];
        g.push(finding(
            Some("n"),
            "l",
            Check::Status,
            Severity::Unknown,
            None,
            "",
        ));
        assert_eq!(report(g.clone()).status().exit_code(), 3);
        g.push(finding(
            Some("n"),
            "l",
            Check::Key,
            Severity::Critical,
            None,
            "",
        ));
        assert_eq!(report(g).status().exit_code(), 2);
        assert_eq!(report(vec![]).status().exit_code(), 0);
    }
}
