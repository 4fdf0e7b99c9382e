//! The fleet page (`check --fleet --format html`) of a real cluster — Pebble, three nodes
//! running `vipcert serve` — loaded by headless Chromium (Debian `chromium`): the DOM holds the
//! lineage × node matrix, one cell per node and lineage coloured by its severity with the
//! version it holds, and the lineage's timeline marking now, the renewal window and the next
//! attempt after a failed renewal; and a screenshot of it is a real PNG.
//!
//! With VIPCERT_FLEET_PAGE_DIR=<dir> the page and its screenshot are copied there: that is how
//! docs/img/fleet-page.png is made.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::net::Block;
use crate::common::pebble::{Lab, LabOptions};
use crate::common::{need, text};

const CHROMIUM: &str = "/usr/bin/chromium";
const LINEAGE: &str = "gridftp.example.org";

fn ok(out: Output) {
    assert!(out.status.success(), "{}", text(&out));
}

/// Headless Chromium with its profile in `dir`, killed after a minute; its stdout.
fn chromium(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .args([
            "60",
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium").display()
        ))
        .args(args)
        .env("HOME", dir)
        // Its own scratch directories too, which it leaves behind when `timeout` kills it.
        .env("TMPDIR", dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium {args:?}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The start tags `<td …>` of `dom` that carry `data-node`, each with its cell's content.
fn node_cells(dom: &str) -> Vec<(&str, &str)> {
    dom.match_indices("<td ")
        .filter_map(|(at, _)| {
            let rest = &dom[at..];
            let tag = &rest[..rest.find('>')?];
            let body = &rest[tag.len()..rest.find("</td>")?];
            tag.contains("data-node=").then_some((tag, body))
        })
        .collect()
}

/// The value of attribute `name` in start tag `tag`.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let from = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&tag[from..from + tag[from..].find('"')?])
}

/// A lab on version 2 where dtn3 still holds version 1, and a failed renewal (dtn3's server
/// down: preflight) left a backoff; every node's server then reports its own root.
fn lab_with_a_lagging_node_and_a_backoff() -> Lab {
    let mut lab = Lab::new(Block::FleetPage, LabOptions::default());
    ok(lab.run_as(0, &["issue"]));
    for i in 1..3 {
        ok(lab.run_as(i, &["install"]));
    }
    ok(lab.run_as(0, &["renew", "--force"]));
    ok(lab.run_as(1, &["install"]));
    lab.stop_serve(2);
    let failed = lab.run_as(0, &["renew", "--force"]);
    assert!(!failed.status.success(), "{}", text(&failed));
    for i in 0..3 {
        lab.serve_own_root(i);
    }
    lab
}

/// The DOM holds one cell per node of the lineage, coloured by its severity, with the
/// version it holds and the days left; and the lineage's timeline with its markers.
fn assert_page(dom: &str, lab: &Lab) {
    let cells = node_cells(dom);
    assert_eq!(
        cells.len(),
        lab.nodes.len(),
        "a cell per node and lineage\n{dom}"
    );
    let want = [("ok", "0002"), ("ok", "0002"), ("warning", "0001")];
    for ((node, _), (sev, version)) in lab.nodes.iter().zip(want) {
        let mine: Vec<_> = cells
            .iter()
            .filter(|(t, _)| {
                attr(t, "data-node") == Some(node) && attr(t, "data-lineage") == Some(LINEAGE)
            })
            .collect();
        assert_eq!(mine.len(), 1, "{node}\n{dom}");
        let (tag, body) = mine[0];
        let class = attr(tag, "class").unwrap();
        assert!(
            class.split(' ').any(|c| c == format!("sev-{sev}")),
            "{node}: {tag}"
        );
        assert!(body.contains(&format!(">{version}<")), "{node}: {body}");
        assert!(body.contains(" d left"), "{node}: {body}");
    }
    assert!(dom.contains("id=\"status\">warning<"), "{dom}");
    assert!(
        dom.contains("holds version 0001; store current is version 0002"),
        "{dom}"
    );
    // The timeline: time used up to now, the renewal window, the next attempt of the backoff.
    let at = dom.find(&format!("class=\"timeline\" data-lineage=\"{LINEAGE}\""));
    let tl = &dom[at.expect(dom)..];
    for part in [
        "class=\"used\"",
        "class=\"renew\"",
        "class=\"mark now\"",
        "class=\"mark next\"",
    ] {
        assert!(tl.contains(part), "{part} in\n{tl}");
    }
    assert!(tl.contains("after 1 failed renewal(s) in a row"), "{tl}");
}

/// `png` is a real screenshot of 1200 × 900 pixels, with more in it than a blank page.
fn assert_screenshot(png: &Path) {
    let bytes = std::fs::read(png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let be32 = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!((be32(16), be32(20)), (1200, 900), "IHDR width × height");
    // A blank 1200 × 900 page is ~5 KB: the matrix, the colours and the text make it more.
    assert!(bytes.len() > 30_000, "{} bytes", bytes.len());
}

#[test]
fn fleet_page_renders_in_chromium_with_a_cell_per_node_and_lineage() {
    need(CHROMIUM, "chromium");
    let lab = lab_with_a_lagging_node_and_a_backoff();
    let out = lab.run(0, &["check", "--fleet", "--format", "html"]);
    // Warnings: dtn3 holds version 1, a renewal failed.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let dir = lab.dir.join("page");
    std::fs::create_dir(&dir).unwrap();
    let page = dir.join("fleet.html");
    std::fs::write(&page, &out.stdout).unwrap();
    let url = format!("file://{}", page.display());

    let dom = chromium(&dir, &["--dump-dom", &url]);
    assert_page(&dom, &lab);
    let png = dir.join("fleet.png");
    let shot = format!("--screenshot={}", png.display());
    chromium(&dir, &[&shot, "--window-size=1200,900", &url]);
    assert_screenshot(&png);

    if let Some(keep) = std::env::var_os("VIPCERT_FLEET_PAGE_DIR") {
        for f in ["fleet.html", "fleet.png"] {
            std::fs::copy(dir.join(f), Path::new(&keep).join(f)).unwrap();
        }
    }
}
