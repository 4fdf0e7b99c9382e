//! The fleet page (`check --format html`), for sites without Grafana: one self-contained HTML
//! document with a lineage × node matrix coloured by severity (the version each node holds and
//! the time left), every finding, and per lineage a timeline from notBefore to notAfter that
//! marks now, the renewal window (renew's own rule: `renew::renews_at`) and the next attempt.
//!
//! Self-contained: inline CSS, no script, no font, image or link from outside, and a
//! Content-Security-Policy that forbids loading anything. Every text that came from the shared
//! directory or a node (names, details, targets) goes through [`esc`], so none of it can add
//! markup. Like `output`, it renders a `CheckReport` as it is and judges nothing.

use std::fmt::Write as _;

use super::finding::{Finding, Severity};
use super::policy::DAY;
use super::report::{CheckMode, CheckReport, Schedule};
use crate::schedule::RenewsAt;

/// The page of report `r`.
pub(crate) fn page(r: &CheckReport) -> String {
    let mut body = header(r);
    body.push_str(&matrix(r));
    body.push_str(&timelines(r));
    body.push_str(&findings(r));
    let _ = writeln!(
        body,
        "<footer>vipcert {} · exit code {} (0 ok, 1 warning, 2 critical, 3 unknown) · docs/monitoring.md, “The fleet page”</footer>",
        env!("CARGO_PKG_VERSION"),
        r.status().exit_code()
    );
    let title = format!(
        "{} · vipcert {} check",
        r.status().as_str().to_uppercase(),
        r.mode
    );
    document(&title, &body)
}

/// The page of a check that could not run at all: UNKNOWN, and why.
pub(crate) fn failed_page(msg: &str) -> String {
    let body = format!(
        "<header>\n<h1>vipcert check</h1>\n<span class=\"badge sev-unknown\" id=\"status\">unknown</span>\n</header>\n<section>\n<h2>The check could not run (exit code 3)</h2>\n<pre class=\"error\">{}</pre>\n</section>\n",
        esc(msg)
    );
    document("UNKNOWN · vipcert check", &body)
}

/// `s` as HTML text or as a quoted attribute's value: `& < > " '` as entities, and control
/// characters and bidirectional overrides shown as escapes (`crate::escape`), so text from a
/// shared file or a node can neither add markup nor reorder what is read. Line breaks stay
/// (a multi-line error reads as lines where the style keeps them; in markup a line break is
/// only white space).
pub(crate) fn esc(s: &str) -> String {
    let shown: Vec<_> = s.split('\n').map(crate::escape::escape).collect();
    let shown = shown.join("\n");
    let mut out = String::with_capacity(shown.len());
    for c in shown.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole document around `body`; `title` is already escaped.
fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n<title>{title}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )
}

/// A time for people: "2026-05-01 10:00 UTC".
fn date(t: i64) -> String {
    let s = crate::unixtime::rfc3339(t);
    match (s.get(..10), s.get(11..16)) {
        (Some(d), Some(hm)) if s.len() == 20 => format!("{d} {hm} UTC"),
        _ => s,
    }
}

/// Time left before notAfter, as a cell says it.
fn left(secs: i64) -> String {
    match secs {
        s if s <= 0 => "expired".to_string(),
        s if s < 2 * DAY => format!("{} h left", s / 3600),
        s => format!("{} d left", s / DAY),
    }
}

/// The nodes, in report order: every node asked (fleet), else those the findings name.
fn nodes(r: &CheckReport) -> Vec<&str> {
    if !r.nodes_up.is_empty() {
        return r.nodes_up.iter().map(|(n, _)| n.as_str()).collect();
    }
    let mut out: Vec<&str> = Vec::new();
    for n in r.findings.iter().filter_map(|f| f.node.as_deref()) {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// Title, overall status, when and what was checked, the counts by severity.
fn header(r: &CheckReport) -> String {
    let st = r.status();
    let nodes = nodes(r);
    let scope = match r.mode {
        CheckMode::Fleet => format!("fleet check of {} node(s)", nodes.len()),
        CheckMode::Local => format!(
            "local check of {}",
            esc(nodes.first().unwrap_or(&"this node"))
        ),
    };
    let mut s = format!(
        "<header>\n<h1>vipcert: certificates by node</h1>\n<span class=\"badge sev-{}\" id=\"status\">{}</span>\n<ul class=\"counts\">",
        st.as_str(),
        st.as_str()
    );
    for sev in [
        Severity::Critical,
        Severity::Unknown,
        Severity::Warning,
        Severity::Ok,
    ] {
        let n = r.count(sev);
        let zero = if n == 0 { " zero" } else { "" };
        let _ = write!(
            s,
            "<li class=\"sev-{0}{zero}\"><b>{n}</b> {0}</li>",
            sev.as_str()
        );
    }
    let _ = write!(
        s,
        "</ul>\n<p class=\"meta\">Checked {} · {scope} · {} lineage(s) · exit code {}</p>\n</header>\n",
        date(r.checked_at),
        r.schedules.len(),
        st.exit_code()
    );
    s
}

/// The lineage × node matrix: a row per lineage, the store's column, then a column per node.
fn matrix(r: &CheckReport) -> String {
    let nodes = nodes(r);
    let mut s = String::from(
        "<section id=\"matrix\">\n<h2>Certificates by node</h2>\n<div class=\"scroll\">\n<table class=\"matrix\">\n<thead><tr><th>lineage</th><th>shared store</th>",
    );
    for n in &nodes {
        let down = r.nodes_up.iter().any(|(m, up)| m == n && !up);
        let note = if down { "<small>no answer</small>" } else { "" };
        let _ = write!(s, "<th data-node=\"{0}\">{0}{note}</th>", esc(n));
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for sc in &r.schedules {
        let _ = write!(s, "<tr><th scope=\"row\">{}</th>", esc(&sc.lineage));
        s.push_str(&store_cell(r, sc));
        for n in &nodes {
            s.push_str(&node_cell(r, sc, n));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody>\n</table>\n</div>\n<p class=\"legend\">Each cell: the version installed (the store's column: <code>current</code>), the time left before notAfter, and the worst check. <span class=\"sev-ok\">ok</span> <span class=\"sev-warning\">warning</span> <span class=\"sev-critical\">critical</span> <span class=\"sev-unknown\">unknown</span> <span class=\"sev-none\">not planned</span></p>\n</section>\n");
    s
}

/// The worst finding about (`node`, `lineage`) — the first of the worst; None when nothing
/// was checked there (`node` None: the store's).
fn worst<'a>(r: &'a CheckReport, node: Option<&str>, lineage: &str) -> Option<&'a Finding> {
    r.findings
        .iter()
        .filter(|f| f.node.as_deref() == node && f.lineage == lineage)
        .reduce(|a, b| if b.severity > a.severity { b } else { a })
}

/// One coloured cell: `what` (version) and `left` are already escaped or fixed text.
fn cell(attrs: &str, w: &Finding, what: &str, left: &str) -> String {
    let sev = w.severity.as_str();
    let why = match w.severity {
        Severity::Ok => String::from("ok"),
        _ => format!("{sev} · {}", w.check.as_str()),
    };
    format!(
        "<td class=\"cell sev-{sev}\" {attrs} data-severity=\"{sev}\" title=\"{}: {}\"><span class=\"ver\">{what}</span><span class=\"left\">{left}</span><span class=\"why\">{why}</span></td>",
        w.check.as_str(),
        esc(&w.detail)
    )
}

/// The store's cell of lineage `sc`: its current version, time left, worst store finding.
fn store_cell(r: &CheckReport, sc: &Schedule) -> String {
    let attrs = format!("data-store=\"\" data-lineage=\"{}\"", esc(&sc.lineage));
    let Some(w) = worst(r, None, &sc.lineage) else {
        return format!("<td class=\"cell sev-none\" {attrs}>–</td>");
    };
    let (what, left_text) = match sc.current {
        Some((n, _, na)) => (format!("{n:04}"), left(na - r.checked_at)),
        None => ("none".to_string(), String::new()),
    };
    cell(&attrs, w, &what, &left_text)
}

/// Node `node`'s cell of lineage `sc`: the version(s) its install targets hold, the least
/// time left among them, its worst finding; "not planned" when nothing was checked there.
fn node_cell(r: &CheckReport, sc: &Schedule, node: &str) -> String {
    let attrs = format!(
        "data-node=\"{}\" data-lineage=\"{}\"",
        esc(node),
        esc(&sc.lineage)
    );
    let Some(w) = worst(r, Some(node), &sc.lineage) else {
        return format!("<td class=\"cell sev-none\" {attrs} data-severity=\"none\" title=\"not planned on this node\"><span class=\"ver\">–</span></td>");
    };
    let certs: Vec<_> = r
        .certificates
        .iter()
        .filter(|c| c.node == node && c.lineage == sc.lineage)
        .collect();
    let mut versions: Vec<String> = Vec::new();
    for c in &certs {
        let v = match sc.versions.iter().find(|(_, sha)| *sha == c.sha256) {
            Some((n, _)) => format!("{n:04}"),
            None => "not in store".to_string(),
        };
        if !versions.contains(&v) {
            versions.push(v);
        }
    }
    let what = if versions.is_empty() {
        "?".to_string()
    } else {
        versions.join(" / ")
    };
    let soonest = certs.iter().map(|c| c.not_after).min();
    let left_text = soonest.map_or(String::new(), |na| left(na - r.checked_at));
    cell(&attrs, w, &what, &left_text)
}

/// A lineage's timeline per row of the matrix.
fn timelines(r: &CheckReport) -> String {
    let mut s = String::from("<section id=\"timelines\">\n<h2>Renewal timeline</h2>\n");
    for sc in &r.schedules {
        s.push_str(&timeline(sc, r.checked_at));
    }
    s.push_str("</section>\n");
    s
}

/// Where `t` lies between `from` and `to`, in percent of the bar (clamped to it).
fn pos(t: i64, from: i64, to: i64) -> f64 {
    let span = (to - from).max(1) as f64;
    ((t - from) as f64 / span * 100.0).clamp(0.0, 100.0)
}

/// A marker on the bar at `p` percent, its label above or below, kept inside the bar.
fn mark(class: &str, p: f64, label: &str, title: &str) -> String {
    let side = match p {
        p if p < 15.0 => "l",
        p if p > 85.0 => "r",
        _ => "c",
    };
    format!("<div class=\"mark {class}\" style=\"left:{p:.2}%\" title=\"{title}\"><span class=\"{side}\">{label}</span></div>")
}

/// The renewal window: (start, end) on the bar and what to say about it.
fn renewal(renews: &RenewsAt, not_after: i64) -> (i64, i64, String) {
    match *renews {
        RenewsAt::Ari {
            start,
            end,
            checked_at,
        } => {
            let fetched = checked_at.map_or(String::new(), |t| format!(", fetched {}", date(t)));
            let say = format!(
                "the CA's renewal window (ARI) {} – {}{fetched}; renew picks a moment inside it",
                date(start),
                date(end)
            );
            (start, end, say)
        }
        RenewsAt::Lifetime { from, short_lived } => {
            let share = if short_lived { "half" } else { "a third" };
            let say = format!(
                "due from {} (lifetime rule: {share} of the lifetime left; the CA offers no ARI window)",
                date(from)
            );
            (from, not_after, say)
        }
    }
}

/// One lineage's timeline: the bar from notBefore to notAfter with the time used, the renewal
/// window, now and the next attempt, and the same in words.
fn timeline(sc: &Schedule, now: i64) -> String {
    let l = esc(&sc.lineage);
    let Some((n, nb, na)) = sc.current else {
        return format!("<div class=\"timeline\" data-lineage=\"{l}\">\n<h3>{l}</h3>\n<p class=\"none\">No current version: nothing to install or renew until `vipcert issue` has run.</p>\n</div>\n");
    };
    let p = |t: i64| pos(t, nb, na);
    let mut bar = format!("<div class=\"used\" style=\"width:{:.2}%\"></div>", p(now));
    let mut facts = Vec::new();
    if let Some(renews) = &sc.renews {
        let (a, b, say) = renewal(renews, na);
        let _ = write!(
            bar,
            "<div class=\"renew\" style=\"left:{:.2}%;width:{:.2}%\" title=\"{say}\"></div>",
            p(a),
            (p(b) - p(a)).max(0.5)
        );
        facts.push(format!(
            "<li><i class=\"key renew\"></i>Renewal: {say}</li>"
        ));
    }
    let now_say = format!("{}, {}", date(now), left(na - now));
    bar.push_str(&mark("now", p(now), "now", &now_say));
    facts.push(format!("<li><i class=\"key now\"></i>Now: {now_say}</li>"));
    facts.push(next_attempt(sc, &mut bar, p));
    format!(
        "<div class=\"timeline\" data-lineage=\"{l}\">\n<h3>{l} <small>version {n:04}</small></h3>\n<div class=\"bar\">{bar}</div>\n<div class=\"ends\"><span>notBefore {}</span><span>notAfter {}</span></div>\n<ul class=\"facts\">{}</ul>\n</div>\n",
        date(nb),
        date(na),
        facts.join("")
    )
}

/// The next attempt's marker (added to `bar`, placed by `p`) and its line in words.
fn next_attempt(sc: &Schedule, bar: &mut String, p: impl Fn(i64) -> f64) -> String {
    let failures = match sc.failures {
        0 => String::new(),
        n => format!(" after {n} failed renewal(s) in a row"),
    };
    match sc.next_attempt {
        Some(t) => {
            let say = format!("not before {}{failures}", date(t));
            bar.push_str(&mark("next", p(t), "next attempt", &say));
            format!("<li><i class=\"key next\"></i>Next attempt: {say}</li>")
        }
        None if sc.failures > 0 => format!(
            "<li><i class=\"key next\"></i>Next attempt: at the next run of `vipcert renew`{failures}</li>"
        ),
        None => "<li><i class=\"key next\"></i>Next attempt: no backoff pending</li>".to_string(),
    }
}

/// The problems (worst first), then every finding in report order, folded.
fn findings(r: &CheckReport) -> String {
    let problems = r.problems();
    let mut s = format!(
        "<section id=\"findings\">\n<h2>Problems ({})</h2>\n",
        problems.len()
    );
    if problems.is_empty() {
        s.push_str("<p class=\"none\">None: every check passed.</p>\n");
    } else {
        s.push_str(&findings_table(&problems));
    }
    let all: Vec<&Finding> = r.findings.iter().collect();
    let _ = write!(
        s,
        "<details>\n<summary>All {} findings</summary>\n{}</details>\n</section>\n",
        all.len(),
        findings_table(&all)
    );
    s
}

/// Findings as table rows: severity, node (or the store), lineage, check, detail and target.
fn findings_table(fs: &[&Finding]) -> String {
    let mut s = String::from("<table class=\"findings\">\n<thead><tr><th>severity</th><th>node</th><th>lineage</th><th>check</th><th>detail</th></tr></thead>\n<tbody>\n");
    for f in fs {
        let sev = f.severity.as_str();
        let node = f
            .node
            .as_deref()
            .map_or("<i>shared store</i>".to_string(), esc);
        let target = f.target.as_deref().map_or(String::new(), |t| {
            format!("<small class=\"target\">{}</small>", esc(t))
        });
        let _ = writeln!(
            s,
            "<tr class=\"sev-{sev}\" data-severity=\"{sev}\"><td><span class=\"badge sev-{sev}\">{sev}</span></td><td>{node}</td><td>{}</td><td>{}</td><td>{}{target}</td></tr>",
            esc(&f.lineage),
            f.check.as_str(),
            esc(&f.detail)
        );
    }
    s.push_str("</tbody>\n</table>\n");
    s
}

/// The page's style sheet: markup only, no url() anywhere.
const STYLE: &str = r#":root { --ok: #1e7a34; --ok-bg: #e7f4ea; --warning: #8f5400; --warning-bg: #fff2d6;
  --critical: #b3261e; --critical-bg: #fce8e6; --unknown: #6b3fa0; --unknown-bg: #f1e9fb;
  --none: #6a717d; --none-bg: #f3f4f6; --line: #d9dde3; --muted: #5f6672; --ink: #1f2328; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px; background: #f5f6f8; color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", "DejaVu Sans", sans-serif; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 14px; margin-bottom: 16px; }
h1 { font-size: 21px; font-weight: 600; margin: 0; }
h2 { font-size: 16px; font-weight: 600; margin: 0 0 12px; }
h3 { font-size: 14px; font-weight: 600; margin: 0 0 24px; }
h3 small { font-weight: normal; color: var(--muted); margin-left: 6px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px; margin-bottom: 16px; }
.meta { flex-basis: 100%; margin: 0; color: var(--muted); }
.sev-ok { --c: var(--ok); --bg: var(--ok-bg); }
.sev-warning { --c: var(--warning); --bg: var(--warning-bg); }
.sev-critical { --c: var(--critical); --bg: var(--critical-bg); }
.sev-unknown { --c: var(--unknown); --bg: var(--unknown-bg); }
.sev-none { --c: var(--none); --bg: var(--none-bg); }
.badge { display: inline-block; padding: 1px 10px; border-radius: 999px; background: var(--c); color: #fff;
  font-size: 12px; font-weight: 600; letter-spacing: .04em; text-transform: uppercase; }
.counts { display: flex; gap: 6px; list-style: none; margin: 0; padding: 0; }
.counts li { padding: 1px 9px; border-radius: 6px; background: var(--bg); color: var(--c); font-size: 13px; }
.counts li.zero { opacity: .5; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; }
th, td { text-align: left; vertical-align: top; }
.matrix th, .matrix td { border: 1px solid var(--line); padding: 7px 12px; }
.matrix thead th { background: #f0f2f5; font-weight: 600; white-space: nowrap; }
.matrix thead th small { display: block; font-weight: normal; color: var(--unknown); }
.matrix tbody th { font-weight: 600; white-space: nowrap; }
.cell { background: var(--bg); box-shadow: inset 4px 0 0 var(--c); min-width: 130px; padding-left: 14px !important; }
.cell span { display: block; white-space: nowrap; }
.cell .ver { font: 600 15px/1.3 ui-monospace, "DejaVu Sans Mono", monospace; }
.cell .left { font-size: 13px; }
.cell .why { font-size: 12px; color: var(--c); font-weight: 600; }
.legend { margin: 10px 0 0; color: var(--muted); font-size: 12px; }
.legend span { display: inline-block; padding: 0 8px; margin-left: 4px; border-radius: 4px; background: var(--bg); color: var(--c); }
.timeline { margin: 0 0 22px; }
.timeline:last-child { margin-bottom: 0; }
.bar { position: relative; height: 14px; background: #e8ebf0; border-radius: 7px; margin: 0 2px; }
.bar .used { position: absolute; left: 0; top: 0; bottom: 0; background: #bfcde0; border-radius: 7px 0 0 7px; }
.bar .renew { position: absolute; top: 0; bottom: 0; background: repeating-linear-gradient(135deg, #e9a23b 0 5px, #f3c878 5px 10px); }
.mark { position: absolute; top: -5px; bottom: -5px; width: 2px; margin-left: -1px; }
.mark span { position: absolute; white-space: nowrap; font-size: 12px; font-weight: 600; }
.mark span.c { transform: translateX(-50%); } .mark span.l { left: 0; } .mark span.r { right: 0; }
.mark.now { background: var(--ink); } .mark.now span { bottom: 100%; }
.mark.next { background: var(--critical); } .mark.next span { top: 100%; color: var(--critical); }
.ends { display: flex; justify-content: space-between; margin-top: 18px; color: var(--muted); font-size: 12px; }
.facts { list-style: none; margin: 6px 0 0; padding: 0; font-size: 13px; }
.key { display: inline-block; width: 10px; height: 10px; margin-right: 7px; border-radius: 2px; }
.key.renew { background: #e9a23b; } .key.now { background: var(--ink); } .key.next { background: var(--critical); }
.findings { width: 100%; }
.findings th { border-bottom: 2px solid var(--line); padding: 6px 10px; font-weight: 600; }
.findings td { border-bottom: 1px solid var(--line); padding: 6px 10px; }
.findings td:nth-child(5) { width: 100%; overflow-wrap: anywhere; white-space: pre-wrap; }
.findings .target { display: block; color: var(--muted); font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
details { margin-top: 14px; } summary { cursor: pointer; color: var(--muted); }
.none { color: var(--muted); margin: 0; }
pre.error { white-space: pre-wrap; background: var(--unknown-bg); padding: 10px; border-radius: 6px; }
footer { color: var(--muted); font-size: 12px; }
"#;

#[cfg(test)]
mod tests {
    use super::super::finding::{finding, Check};
    use super::super::policy::tests::NOW;
    use super::super::policy::Thresholds;
    use super::super::report::{new_report, Installed};
    use super::*;

    const L: &str = "vip.example.org";

    fn schedule() -> Schedule {
        Schedule {
            lineage: L.into(),
            current: Some((2, NOW - 30 * DAY, NOW + 60 * DAY)),
            renews: Some(RenewsAt::Lifetime {
                from: NOW + 30 * DAY,
                short_lived: false,
            }),
            next_attempt: None,
            failures: 0,
            versions: vec![(2, "bb".into()), (1, "aa".into())],
        }
    }

    fn installed(node: &str, sha: &str, not_after: i64) -> Installed {
        Installed {
            node: node.into(),
            lineage: L.into(),
            path: "/etc/c.pem".into(),
            sha256: sha.into(),
            serial: "01".into(),
            not_before: NOW - 30 * DAY,
            not_after,
        }
    }

    /// dtn1 holds current (0002), dtn2 still 0001 (a warning); dtn3 does not answer.
    fn report(detail: &str, node2: &str) -> CheckReport {
        let mut r = new_report(CheckMode::Fleet, Thresholds::default(), NOW);
        r.schedules = vec![schedule()];
        r.nodes_up = vec![
            ("dtn1".into(), true),
            (node2.into(), true),
            ("dtn3".into(), false),
        ];
        let ok = |n: &str, c| finding(Some(n), L, c, Severity::Ok, None, "fine");
        r.findings = vec![
            finding(None, L, Check::Store, Severity::Ok, None, "current is 0002"),
            ok("dtn1", Check::Current),
            ok(node2, Check::Status),
            finding(
                Some(node2),
                L,
                Check::Current,
                Severity::Warning,
                Some("/etc/c.pem"),
                detail,
            ),
            finding(
                Some("dtn3"),
                L,
                Check::Status,
                Severity::Unknown,
                None,
                "connect refused",
            ),
        ];
        r.certificates = vec![
            installed("dtn1", "bb", NOW + 60 * DAY),
            installed(node2, "aa", NOW + 20 * DAY),
        ];
        r
    }

    /// The cell of (node, lineage) in `page`.
    fn cell_of<'a>(page: &'a str, node: &str) -> &'a str {
        let at = page
            .find(&format!("data-node=\"{node}\" data-lineage="))
            .expect("a cell");
        let start = page[..at].rfind("<td").unwrap();
        &page[start..start + page[start..].find("</td>").unwrap()]
    }

    #[test]
    fn matrix_has_a_cell_per_node_and_lineage_with_version_and_days_left() {
        let page = page(&report(
            "holds version 0001; store current is version 0002",
            "dtn2",
        ));
        assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
        let c1 = cell_of(&page, "dtn1");
        assert!(
            c1.contains("sev-ok") && c1.contains(">0002<") && c1.contains("60 d left"),
            "{c1}"
        );
        let c2 = cell_of(&page, "dtn2");
        assert!(
            c2.contains("sev-warning") && c2.contains(">0001<") && c2.contains("20 d left"),
            "{c2}"
        );
        assert!(c2.contains("warning · current"), "{c2}");
        let c3 = cell_of(&page, "dtn3");
        assert!(c3.contains("sev-unknown") && c3.contains(">?<"), "{c3}");
        assert!(page.contains("dtn3<small>no answer</small>"), "{page}");
        // The store's column, the overall status, and the problems worst first.
        assert!(
            page.contains("data-store=\"\" data-lineage=\"vip.example.org\" data-severity=\"ok\"")
        );
        assert!(page.contains("id=\"status\">unknown<"), "{page}");
        let problems = &page[page.find("id=\"findings\"").unwrap()..];
        let at = |s: &str| problems.find(s).unwrap();
        let (u, w) = (at("connect refused"), at("holds version 0001"));
        assert!(u < w, "unknown is listed before warning");
    }

    #[test]
    fn self_contained_no_script_nothing_from_outside() {
        let page = page(&report("d", "dtn2"));
        for banned in [
            "<script", "<link", "<img", "url(", "http://", "https://", "@import", "src=",
        ] {
            assert!(!page.contains(banned), "{banned} in\n{page}");
        }
        assert!(page.contains("Content-Security-Policy\" content=\"default-src 'none'"));
    }

    /// Text from a shared file or a node (a detail, a node's name) cannot add markup: the page
    /// with hostile text has exactly the tags and attribute quotes of the page with harmless
    /// text, and shows the hostile text as text.
    #[test]
    fn text_from_shared_files_and_nodes_cannot_add_markup() {
        let evil = "</td></tr></table><script>alert(1)</script><img src=x onerror=alert(2)> \" onmouseover=\"alert(3)\" ' & \u{202e}";
        let node = "dtn2\"><script>alert(4)</script>";
        let hostile = page(&report(evil, node));
        let harmless = page(&report(&"x".repeat(evil.len()), &"y".repeat(node.len())));
        let count = |s: &str, c: char| s.chars().filter(|&x| x == c).count();
        for c in ['<', '>', '"', '\''] {
            assert_eq!(
                count(&hostile, c),
                count(&harmless, c),
                "{c:?} in\n{hostile}"
            );
        }
        assert!(
            !hostile.contains("<script") && !hostile.contains("<img"),
            "{hostile}"
        );
        assert!(
            hostile.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{hostile}"
        );
        assert!(
            hostile.contains("&quot; onmouseover=&quot;alert(3)&quot; &#39; &amp; \\u{202e}"),
            "{hostile}"
        );
        assert!(
            hostile.contains("data-node=\"dtn2&quot;&gt;&lt;script&gt;alert(4)&lt;/script&gt;\"")
        );
        // A line break stays one (white space in markup), other control characters show.
        assert_eq!(esc("a\nb\r\x1b[2K"), "a\nb\\r\\u{1b}[2K");
        let failed = failed_page("config: <b>bad</b>");
        assert!(
            failed.contains("config: &lt;b&gt;bad&lt;/b&gt;") && !failed.contains("<b>"),
            "{failed}"
        );
    }

    #[test]
    fn timeline_marks_now_the_renewal_window_and_the_next_attempt() {
        let mut sc = schedule();
        let t = timeline(&sc, NOW);
        // 90 days from notBefore: now at 30 days is a third, the lifetime rule at two thirds.
        assert!(t.contains("class=\"used\" style=\"width:33.33%\""), "{t}");
        assert!(
            t.contains("class=\"renew\" style=\"left:66.67%;width:33.33%\""),
            "{t}"
        );
        assert!(
            t.contains("lifetime rule: a third of the lifetime left"),
            "{t}"
        );
        assert!(
            t.contains("no backoff pending") && !t.contains("mark next"),
            "{t}"
        );
        sc.renews = Some(RenewsAt::Ari {
            start: NOW + 45 * DAY,
            end: NOW + 47 * DAY,
            checked_at: Some(NOW - 3600),
        });
        sc.next_attempt = Some(NOW + 600);
        sc.failures = 2;
        let t = timeline(&sc, NOW);
        assert!(
            t.contains("class=\"renew\" style=\"left:83.33%;width:2.22%\""),
            "{t}"
        );
        assert!(t.contains("the CA's renewal window (ARI)"), "{t}");
        assert!(t.contains("fetched 2027-01-15 07:00 UTC"), "{t}");
        assert!(t.contains("class=\"mark next\""), "{t}");
        assert!(t.contains("after 2 failed renewal(s) in a row"), "{t}");
        sc.current = None;
        assert!(timeline(&sc, NOW).contains("No current version"));
    }

    #[test]
    fn dates_and_time_left_read_well() {
        assert_eq!(date(0), "1970-01-01 00:00 UTC");
        assert_eq!(left(-1), "expired");
        assert_eq!(left(36 * 3600), "36 h left");
        assert_eq!(left(45 * DAY + 5), "45 d left");
    }
}
