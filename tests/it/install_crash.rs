//! Crash safety of `vipcert install`: the installer is killed (SIGKILL) after every one of its
//! filesystem steps (failpoint VIPCERT_TEST_CRASH_AFTER=N), then again at random steps of the
//! recovery run, and at random moments by a real `kill -9` from outside. After each kill:
//! every target file is a complete regular file of the old or the new version with its final
//! owner and mode; a mixed pair, or a new pair whose hooks have not run, always has the intent
//! journal; and the next `install` leaves the new pair everywhere, runs the hooks, removes the
//! journal and temporary files, and a run after that changes nothing.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::net::Block;
use crate::common::site::{fast_tempdir, file, id_of, snapshot, under, Site, VIP};
use crate::common::text;

const FILES: [(&str, bool, u32, bool); 4] = [
    // path, is key, mode, owned by nobody
    (
        "/etc/grid-security/gridftp/gridftp-hostcert.pem",
        false,
        0o644,
        false,
    ),
    (
        "/etc/grid-security/gridftp/gridftp-hostkey.pem",
        true,
        0o400,
        false,
    ),
    ("/etc/grid-security/xrd/xrdcert.pem", false, 0o644, true),
    ("/etc/grid-security/xrd/xrdkey.pem", true, 0o400, true),
];
const JOURNAL: &str = "etc/grid-security/gridftp/.vipcert-install.journal";

struct Lab {
    _tmp: tempfile::TempDir,
    s: Site,
    root: PathBuf,
    hooks: PathBuf,
    /// (fullchain, key) of versions 1 and 2.
    v: [(Vec<u8>, Vec<u8>); 2],
}

/// Which version each target file holds (None: missing).
type Seen = Vec<Option<u32>>;

impl Lab {
    fn new() -> Lab {
        let tmp = fast_tempdir();
        let hooks = tmp.path().join("hooks.log");
        let s = Site::new(
            &Block::InstallCrash.net(),
            "shared",
            &format!(
                r#"reload = ["echo reload $VIPCERT_VERSION >> {0}"]
deploy_hook = ["echo deploy $VIPCERT_VERSION >> {0}"]
[[install.copy]]
cert = "/etc/grid-security/xrd/xrdcert.pem"
key = "/etc/grid-security/xrd/xrdkey.pem"
owner = "nobody"
group = "nogroup"
"#,
                hooks.display()
            ),
            "",
        );
        assert_eq!(s.publish_good(VIP), 1);
        assert_eq!(s.publish_good(VIP), 2);
        let v = [1, 2].map(|n| {
            (
                s.version_file(VIP, n, "fullchain.pem"),
                s.version_file(VIP, n, "key.pem"),
            )
        });
        let root = s.root(0);
        Lab {
            _tmp: tmp,
            s,
            root,
            hooks,
            v,
        }
    }

    fn install(&self, crash_after: Option<u64>) -> std::process::Output {
        let mut c = self
            .s
            .cmd(0, &["install", "--root", self.root.to_str().unwrap()]);
        if let Some(n) = crash_after {
            c.env("VIPCERT_TEST_CRASH_AFTER", n.to_string());
        }
        c.output().unwrap()
    }

    /// Targets at version `from` (None: no files at all), `current` at `to`, empty hook log.
    fn prepare(&self, from: Option<u32>, to: u32) {
        match from {
            None => {
                let _ = std::fs::remove_dir_all(&self.root);
            }
            Some(v) => {
                self.s.store.set_current(VIP, v).unwrap();
                let out = self.install(None);
                assert!(out.status.success(), "{}", text(&out));
                assert_eq!(self.seen(), vec![Some(v); 4]);
                assert!(!self.root.join(JOURNAL).exists());
            }
        }
        self.s.store.set_current(VIP, to).unwrap();
        std::fs::write(&self.hooks, "").unwrap();
    }

    /// Check the invariants after a kill; returns what each target holds.
    fn check_after_kill(&self, to: u32, ctx: &str) -> Seen {
        let seen = self.seen();
        let journal = self.root.join(JOURNAL).exists();
        let all_new = seen.iter().all(|v| *v == Some(to));
        let uniform = seen.iter().all(|v| *v == seen[0]);
        if !uniform {
            assert!(journal, "{ctx}: mixed targets {seen:?} without a journal");
        }
        if all_new && !self.hook_ran(to) {
            assert!(
                journal,
                "{ctx}: new pair in place, hooks not run, and no journal: the next run would skip the hooks"
            );
        }
        seen
    }

    /// What each target holds; asserts each is a complete file of a version with final
    /// owner and mode.
    fn seen(&self) -> Seen {
        let (nobody, nogroup) = (id_of("passwd", "nobody"), id_of("group", "nogroup"));
        FILES
            .iter()
            .map(|(p, is_key, mode, other)| {
                let path = under(&self.root, p);
                if std::fs::symlink_metadata(&path).is_err() {
                    return None;
                }
                let (bytes, m, u, g, ..) = file(&path);
                let which = self
                    .v
                    .iter()
                    .position(|(c, k)| if *is_key { *k == bytes } else { *c == bytes })
                    .unwrap_or_else(|| panic!("{p} holds neither version ({} bytes)", bytes.len()));
                let want = if *other { (nobody, nogroup) } else { (0, 0) };
                assert_eq!((m, u, g), (*mode, want.0, want.1), "{p} owner/mode");
                Some(which as u32 + 1)
            })
            .collect()
    }

    fn hook_ran(&self, v: u32) -> bool {
        std::fs::read_to_string(&self.hooks)
            .unwrap_or_default()
            .lines()
            .any(|l| l == format!("deploy {v:04}"))
    }

    /// The run after the kills: new pair everywhere, hooks ran at least once, nothing left
    /// over; and one more run changes nothing.
    fn recover(&self, to: u32, ctx: &str) {
        let out = self.install(None);
        assert!(out.status.success(), "{ctx}: {}", text(&out));
        assert_eq!(self.seen(), vec![Some(to); 4], "{ctx}");
        assert!(self.hook_ran(to), "{ctx}: hooks never ran for {to}");
        assert!(!self.root.join(JOURNAL).exists(), "{ctx}: journal left");
        for d in ["etc/grid-security/gridftp", "etc/grid-security/xrd"] {
            let names: Vec<String> = std::fs::read_dir(self.root.join(d))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names.len(), 2, "{ctx}: leftovers in {d}: {names:?}");
        }
        let snap = snapshot(&self.root);
        let hooks = std::fs::read_to_string(&self.hooks).unwrap();
        let out = self.install(None);
        assert!(text(&out).contains("up to date"), "{ctx}: {}", text(&out));
        assert_eq!(snapshot(&self.root), snap, "{ctx}: third run wrote");
        assert_eq!(std::fs::read_to_string(&self.hooks).unwrap(), hooks);
    }
}

fn killed(o: &std::process::Output) -> bool {
    o.status.signal() == Some(9)
}

/// A small deterministic PRNG (xorshift64*): the seed is printed so a failure can be replayed
/// with VIPCERT_CRASH_SEED.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D) % n
    }
}

pub(crate) fn seed() -> u64 {
    let s = std::env::var("VIPCERT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("VIPCERT_CRASH_SEED={s}");
    s
}

/// The scenarios, as (targets before, version to install): from nothing, forward, back.
const SCENARIOS: [(Option<u32>, u32); 3] = [(None, 1), (Some(1), 2), (Some(2), 1)];

/// Part 1 on `lab`: killed after every step of scenario `i`, each kill recovered. Returns the
/// number of steps an install of that scenario has (one kill each).
fn every_step(lab: &Lab, i: usize) -> u64 {
    let (from, to) = SCENARIOS[i];
    for n in 1..=200u64 {
        lab.prepare(from, to);
        let out = lab.install(Some(n));
        if !killed(&out) {
            assert!(out.status.success(), "{}", text(&out));
            return n - 1;
        }
        let ctx = format!("{from:?}->{to} killed after step {n}");
        lab.check_after_kill(to, &ctx);
        lab.recover(to, &ctx);
    }
    panic!("scenario {i}: still killed after 200 steps");
}

/// Part 2 on `lab`, `runs` times: killed at a random step of a random scenario, then at a
/// random step of the recovery run. Returns the kills.
fn killed_twice(lab: &Lab, rng: &mut Rng, steps: &[u64; 3], runs: u32) -> u32 {
    let mut trials = 0;
    for _ in 0..runs {
        let i = rng.below(3) as usize;
        let (from, to) = SCENARIOS[i];
        let (n, m) = (1 + rng.below(steps[i]), 1 + rng.below(steps[i]));
        lab.prepare(from, to);
        let ctx = format!("{from:?}->{to} killed after step {n}, then after {m}");
        assert!(killed(&lab.install(Some(n))), "{ctx}");
        lab.check_after_kill(to, &ctx);
        let out = lab.install(Some(m));
        trials += 1;
        if killed(&out) {
            trials += 1;
            lab.check_after_kill(to, &ctx);
        }
        lab.recover(to, &ctx);
    }
    trials
}

/// Part 3 on `lab`, `runs` times: a real kill -9 from outside at a random moment of a run
/// (one clean run's length is the span). Returns the kills.
fn killed_from_outside(lab: &Lab, rng: &mut Rng, runs: u32) -> u32 {
    let t0 = Instant::now();
    lab.prepare(Some(1), 2);
    assert!(lab.install(None).status.success());
    let span = t0.elapsed().as_micros() as u64;
    for _ in 0..runs {
        lab.prepare(Some(2), 1);
        let mut c = lab
            .s
            .cmd(0, &["install", "--root", lab.root.to_str().unwrap()]);
        let mut child = c
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(span)));
        let _ = child.kill();
        let _ = child.wait();
        lab.check_after_kill(1, "external kill -9");
        lab.recover(1, "external kill -9");
    }
    runs
}

/// `f(j)` for j = 0, 1, 2 on threads of their own; their results in order. A panic on one
/// reaches the test with its own message.
fn on_three<T: Send>(f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    std::thread::scope(|sc| {
        let f = &f;
        let hs: Vec<_> = (0..3).map(|j| sc.spawn(move || f(j))).collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Three labs (site and root each), each on a thread of its own: an install is mostly
/// process start-up and file-system latency, so three runs overlap well. Each part's runs
/// are spread over the three; each lab draws from its own generator, derived from the seed.
#[test]
fn killed_at_every_step_and_at_random_the_next_install_completes() {
    let labs = on_three(|_| Lab::new());

    // 1. Every step of each scenario, scenario j on lab j.
    let part1 = on_three(|j| every_step(&labs[j], j));
    let steps = [part1[0], part1[1], part1[2]];
    for (i, s) in steps.iter().enumerate() {
        // Journal, 4 × (temp written, chowned), 4 renames, 2 directory fsyncs, read-back
        // verification, 2 hooks, journal removal: 19 (the from-scratch scenario too: its
        // directories are created before the first counted step).
        assert!(*s >= 19, "scenario {i}: only {s} steps seen");
    }
    eprintln!("steps per scenario: {steps:?}");

    // 2. Killed twice: 70 runs in all. 3. A real kill -9 from outside: 40 in all.
    let seed = seed();
    let rest = on_three(|j| {
        let mut rng = Rng(seed.wrapping_add((j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
        let twice = killed_twice(&labs[j], &mut rng, &steps, [24, 23, 23][j]);
        twice + killed_from_outside(&labs[j], &mut rng, [14, 13, 13][j])
    });
    let trials: u32 = steps.iter().map(|&s| s as u32).chain(rest).sum();
    eprintln!("{trials} kills survived");
    assert!(trials >= 200, "{trials}");
}
