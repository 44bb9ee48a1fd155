//! The decision table, then the executor on genuine overlayfs uppers.

use super::*;
use crate::upgrade::identity::tests::id;

fn lower(n: u32) -> Lower {
    Lower { id: id(n) }
}

fn facts() -> Facts {
    Facts {
        state: Ok(Some(State {
            lowers: vec![lower(1)],
        })),
        pending: Ok(None),
        upper_empty: false,
        reset_done: 0,
        reset_pending: false,
        manifests: vec![Some(id(1))],
    }
}

fn upgrade(old: Vec<Lower>, policy: Policy, resume: bool) -> Decision {
    Decision::Upgrade(Upgrade {
        old,
        new: vec![id(2)],
        policy,
        resume,
        note: None,
    })
}

#[test]
fn a_normal_boot_decides_nothing() {
    assert_eq!(decide(&facts(), &[id(1)], Policy::Merge), Decision::None);
    assert_eq!(decide(&facts(), &[id(1)], Policy::Reset), Decision::None);
}

#[test]
fn a_new_image_is_an_upgrade_of_the_configured_policy() {
    for p in [Policy::Merge, Policy::Keep] {
        assert_eq!(
            decide(&facts(), &[id(2)], p),
            upgrade(vec![lower(1)], p, false)
        );
    }
    let Decision::Reset { up, request } = decide(&facts(), &[id(2)], Policy::Reset) else {
        panic!()
    };
    assert!(request);
    assert_eq!(up.old, vec![lower(1)]);
    // A reset request already pending (written before a cut) is not doubled.
    let mut f = facts();
    f.reset_pending = true;
    assert!(matches!(
        decide(&f, &[id(2)], Policy::Reset),
        Decision::Reset { request: false, .. }
    ));
    // More lowers than before: an upgrade too.
    assert!(matches!(
        decide(&facts(), &[id(1), id(3)], Policy::Merge),
        Decision::Upgrade(_)
    ));
}

#[test]
fn a_pending_upgrade_is_resumed_with_its_own_policy() {
    let mut f = facts();
    f.pending = Ok(Some(Report {
        old: vec![lower(1)],
        new: vec![id(2)],
        policy: Policy::Keep,
        ..Report::default()
    }));
    // Whatever the policy now, and even if yet another image is there.
    assert_eq!(
        decide(&f, &[id(2)], Policy::Merge),
        upgrade(vec![lower(1)], Policy::Keep, true)
    );
    let Decision::Upgrade(up) = decide(&f, &[id(3)], Policy::Reset) else {
        panic!()
    };
    assert!(up.resume && up.new == vec![id(3)]);
    // A pending reset: requested again only if no reset happened since.
    f.pending = Ok(Some(Report {
        old: vec![lower(1)],
        new: vec![id(2)],
        policy: Policy::Reset,
        reset_after: 4,
        ..Report::default()
    }));
    f.reset_done = 4;
    assert!(matches!(
        decide(&f, &[id(2)], Policy::Merge),
        Decision::Reset { request: true, up } if up.resume
    ));
    f.reset_done = 5;
    assert!(matches!(
        decide(&f, &[id(2)], Policy::Merge),
        Decision::Reset { request: false, .. }
    ));
    f.reset_done = 4;
    f.reset_pending = true;
    assert!(matches!(
        decide(&f, &[id(2)], Policy::Merge),
        Decision::Reset { request: false, .. }
    ));
}

#[test]
fn no_record_and_bad_records_never_remove_or_reset() {
    let mut f = facts();
    f.state = Ok(None);
    f.upper_empty = true;
    assert_eq!(decide(&f, &[id(1)], Policy::Reset), Decision::Record);
    f.upper_empty = false;
    for p in [Policy::Merge, Policy::Keep, Policy::Reset] {
        let Decision::Upgrade(up) = decide(&f, &[id(1)], p) else {
            panic!()
        };
        assert!(up.old.is_empty(), "no old manifest: nothing can be removed");
        assert_ne!(up.policy, Policy::Reset);
        assert!(up.note.is_some());
    }
    let mut f = facts();
    f.state = Err(RecordError::Magic);
    let Decision::Upgrade(up) = decide(&f, &[id(1)], Policy::Reset) else {
        panic!()
    };
    assert_eq!((up.policy, up.old.len()), (Policy::Keep, 0));
    assert!(up.note.unwrap().contains("unusable"));
    let mut f = facts();
    f.pending = Err(RecordError::Truncated);
    let Decision::Upgrade(up) = decide(&f, &[id(2)], Policy::Merge) else {
        panic!()
    };
    assert_eq!(
        (up.policy, up.old.len(), up.resume),
        (Policy::Keep, 0, false)
    );
}

// ---------------------------------------------------------------------
// The executor on genuine overlayfs uppers: a lower directory per image
// version, an upper made by the kernel's overlayfs from real changes.

use crate::testutil::TempDir;
use crate::upgrade::classify::{Class, News, Why};
use std::path::PathBuf;
use std::process::Command;

/// A data filesystem (upper/, work/) and lowers v1, v2, v3 in a temp dir.
struct Bed {
    d: TempDir,
}

impl Bed {
    fn new(tag: &str) -> Bed {
        let d = TempDir::new(tag);
        for (v, profile, system, extra) in [
            (1, "profile v1\n", "system v1\n", None),
            (2, "profile v2\n", "system v2\n", Some("etc/init.d/c")),
            (3, "profile v2\n", "system v3\n", Some("etc/init.d/c")),
        ] {
            let l = format!("v{v}");
            d.write(&format!("{l}/etc/config/network"), "network v1\n");
            d.write(&format!("{l}/etc/config/system"), system);
            d.write(&format!("{l}/etc/profile"), profile);
            d.write(&format!("{l}/etc/banner"), "banner\n");
            d.write(&format!("{l}/etc/hosts"), "127.0.0.1 localhost\n");
            d.write(&format!("{l}/etc/init.d/a"), "a\n");
            d.write(&format!("{l}/etc/init.d/b"), "b\n");
            d.write(&format!("{l}/usr/bin/tool"), vec![v as u8; 5000]);
            std::os::unix::fs::symlink("tool", d.path().join(format!("{l}/usr/bin/alias")))
                .unwrap();
            if let Some(x) = extra {
                d.write(&format!("{l}/{x}"), "new in v2\n");
            }
            if v == 3 {
                d.write(&format!("{l}/etc/config/network"), "network v3\n");
            }
        }
        std::fs::create_dir_all(d.path().join("data/upper")).unwrap();
        std::fs::create_dir_all(d.path().join("data/work")).unwrap();
        std::fs::create_dir_all(d.path().join("mnt")).unwrap();
        Bed { d }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.d.path().join(rel)
    }

    fn data(&self) -> PathBuf {
        self.p("data")
    }

    /// Mounts the overlay of lower `v` and the upper, runs `f` in it, unmounts.
    fn with_overlay(&self, v: u32, f: impl FnOnce(&Path)) {
        let opts = format!(
            "lowerdir={},upperdir={},workdir={},metacopy=off,redirect_dir=off,index=off",
            self.p(&format!("v{v}")).display(),
            self.p("data/upper").display(),
            self.p("data/work").display()
        );
        let st = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(self.p("mnt"))
            .status()
            .unwrap();
        assert!(st.success(), "mount -t overlay needs root");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&self.p("mnt"))));
        assert!(Command::new("umount")
            .arg(self.p("mnt"))
            .status()
            .unwrap()
            .success());
        if let Err(e) = r {
            std::panic::resume_unwind(e);
        }
    }

    fn root(&self, v: u32) -> OwnedFd {
        open_data(&self.p(&format!("v{v}"))).unwrap()
    }

    /// The device's background step for image `v`: the manifest recorded.
    fn background(&self, v: u32) {
        let root = self.root(v);
        let log = background(
            open_data(&self.data()).unwrap().as_fd(),
            &[root.as_fd()],
            &[id(v)],
        )
        .unwrap();
        assert!(
            log.iter().any(|l| l.contains("manifest recorded")),
            "{log:?}"
        );
    }

    /// A boot with image `v`: decide, and run what is decided.
    fn boot(&self, v: u32, policy: Policy, hook: Hook) -> Option<Report> {
        let f = read_facts(&self.data()).unwrap();
        match decide(&f, &[id(v)], policy) {
            Decision::None => None,
            Decision::Record => {
                record(&self.data(), &[id(v)]).unwrap();
                None
            }
            Decision::Upgrade(up) => {
                let root = self.root(v);
                let roots = [root.as_fd()];
                let shown = ["/rom".to_string()];
                let lw = Lowerdirs {
                    roots: &roots,
                    shown_at: &shown,
                };
                match run(&self.data(), &lw, &up, 1_700_000_000, None, hook).unwrap() {
                    Outcome::Done(r) => Some(r),
                    Outcome::Stopped(_) => panic!("no deadline was set"),
                }
            }
            Decision::Reset { .. } => panic!("not in these tests"),
        }
    }

    /// The changes of the issue's scenario, made through the overlay on v1.
    fn user_changes(&self) {
        self.with_overlay(1, |m| {
            std::fs::write(m.join("etc/config/network"), "my network\n").unwrap();
            std::fs::write(m.join("etc/config/system"), "my system\n").unwrap();
            std::fs::create_dir(m.join("root")).unwrap();
            std::fs::write(m.join("root/notes"), "mine\n").unwrap();
            std::fs::remove_file(m.join("etc/banner")).unwrap();
            // Rewritten unchanged: a copy-up of an unchanged file.
            std::fs::write(m.join("etc/profile"), "profile v1\n").unwrap();
            std::fs::write(m.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
            std::fs::remove_dir_all(m.join("etc/init.d")).unwrap();
            std::fs::create_dir(m.join("etc/init.d")).unwrap();
            std::fs::write(m.join("etc/init.d/mine"), "my service\n").unwrap();
            // An unchanged copy of a file inside the user's directory:
            // it belongs to the user, never removed.
            std::fs::write(m.join("etc/init.d/a"), "a\n").unwrap();
            // An unchanged copy two directories down: once it goes, its
            // directories (copies too) are left empty and go as well.
            std::fs::write(m.join("usr/bin/tool"), vec![1u8; 5000]).unwrap();
        });
    }
}

fn lines(r: &Report) -> Vec<(Class, String, Why, News)> {
    let mut v: Vec<_> = r
        .lines
        .iter()
        .map(|l| (l.class, show_path(&l.path), l.why, l.news))
        .collect();
    v.sort_by(|a, b| a.1.cmp(&b.1));
    v
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// The whole upper as `path type contents`, to compare end states.
fn tree(p: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, p: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(base).unwrap().display().to_string();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.push(format!("{rel}/"));
                walk(base, &e.path(), out);
            } else if ft.is_file() {
                out.push(format!("{rel} {}", read(&e.path()).unwrap_or_default()));
            } else {
                out.push(format!("{rel} {ft:?}"));
            }
        }
    }
    walk(p, p, &mut out);
    out.sort();
    out
}

/// The scenario of the issue: v1 → v2 with a recorded manifest.
#[test]
fn v1_to_v2_each_class_comes_out_as_the_issue_says() {
    let b = Bed::new("upg-v1v2");
    assert!(
        b.boot(1, Policy::Merge, &mut |_| {}).is_none(),
        "first boot: record"
    );
    b.background(1);
    assert!(
        b.boot(1, Policy::Merge, &mut |_| {}).is_none(),
        "normal boot: nothing"
    );
    b.user_changes();
    let r = b.boot(2, Policy::Merge, &mut |_| {}).expect("upgrade boot");
    use Class::*;
    assert_eq!(
        lines(&r),
        vec![
            (Kept, "/etc/banner".into(), Why::Deleted, News::None),
            (
                Kept,
                "/etc/config/network".into(),
                Why::Modified,
                News::None
            ),
            (
                Conflict,
                "/etc/config/system".into(),
                Why::Modified,
                News::Changed
            ),
            (Removed, "/etc/hosts".into(), Why::Unchanged, News::None),
            (
                Conflict,
                "/etc/init.d".into(),
                Why::Opaque,
                News::AddsInside(1)
            ),
            (Kept, "/etc/init.d/a".into(), Why::Inside, News::None),
            (Kept, "/etc/init.d/mine".into(), Why::Inside, News::None),
            (Removed, "/etc/profile".into(), Why::Unchanged, News::None),
            (Kept, "/root".into(), Why::Added, News::None),
            // /root was not in the lower: a plain directory, not opaque.
            (Kept, "/root/notes".into(), Why::Added, News::None),
            (Removed, "/usr/bin/tool".into(), Why::Unchanged, News::None),
        ]
    );
    assert_eq!(r.counts, [3, 6, 2]);
    assert!(!b.p("data/upper/usr").exists(), "emptied directories go");
    // What the system sees now: the new versions where nothing was changed.
    b.with_overlay(2, |m| {
        assert_eq!(read(&m.join("etc/profile")).unwrap(), "profile v2\n");
        assert_eq!(read(&m.join("etc/config/network")).unwrap(), "my network\n");
        assert_eq!(read(&m.join("etc/config/system")).unwrap(), "my system\n");
        assert_eq!(read(&m.join("root/notes")).unwrap(), "mine\n");
        assert!(!m.join("etc/banner").exists(), "still deleted");
        assert_eq!(read(&m.join("etc/init.d/mine")).unwrap(), "my service\n");
        assert!(
            !m.join("etc/init.d/c").exists(),
            "hidden by the opaque directory"
        );
    });
    // Recorded: the next boot of v2 does nothing; the report is there.
    assert!(b.boot(2, Policy::Merge, &mut |_| {}).is_none());
    let text = crate::upgrade::report::render_text(&b.data(), None);
    assert!(text.starts_with("manifest: pending\n"), "{text}");
    assert!(
        text.contains("\n  removed  /etc/profile (unchanged copy)\n"),
        "{text}"
    );
    assert!(text.contains(
        "\n  conflict /etc/config/system (modified; the new image changed it: /rom/etc/config/system)\n"
    ), "{text}");
    assert!(text.contains("\n  conflict /etc/init.d (opaque directory; it hides 1 new entries of the new image)\n"), "{text}");
    b.background(2);
    let text = crate::upgrade::report::render_text(&b.data(), None);
    assert!(text.starts_with("manifest: recorded\n"), "{text}");
    let json = crate::upgrade::report::render_json(&b.data(), None);
    assert!(
        json.starts_with(
            r#"{"manifest":"recorded","why":null,"pending":false,"last":{"when":1700000000,"#
        ),
        "{json}"
    );
    assert!(
        json.contains(r#"{"class":"removed","path":"/etc/profile","words":"unchanged copy"}"#),
        "{json}"
    );
}

#[test]
fn v1_v2_v3_chain() {
    let b = Bed::new("upg-chain");
    b.boot(1, Policy::Merge, &mut |_| {});
    b.background(1);
    b.user_changes();
    b.boot(2, Policy::Merge, &mut |_| {}).unwrap();
    b.background(2);
    // On v2 the user rewrites the (new) profile unchanged and edits hosts.
    b.with_overlay(2, |m| {
        std::fs::write(m.join("etc/profile"), "profile v2\n").unwrap();
        std::fs::write(m.join("etc/hosts"), "10.0.0.1 router\n").unwrap();
    });
    let r = b.boot(3, Policy::Merge, &mut |_| {}).unwrap();
    let l = lines(&r);
    let find = |p: &str| l.iter().find(|x| x.1 == p).cloned().unwrap();
    assert_eq!(find("/etc/profile").0, Class::Removed);
    assert_eq!(find("/etc/hosts").0, Class::Kept);
    // v3 changed network, which the user had edited on v1: now a conflict.
    assert_eq!(find("/etc/config/network").0, Class::Conflict);
    // v3 changed system again: still a conflict, still the user's.
    assert_eq!(find("/etc/config/system").0, Class::Conflict);
    b.with_overlay(3, |m| {
        assert_eq!(read(&m.join("etc/config/network")).unwrap(), "my network\n");
        assert_eq!(read(&m.join("etc/hosts")).unwrap(), "10.0.0.1 router\n");
    });
}

#[test]
fn without_an_old_manifest_everything_is_kept_and_shadows_are_said() {
    let b = Bed::new("upg-nomanifest");
    b.boot(1, Policy::Merge, &mut |_| {});
    // No background run: v1's manifest was never recorded.
    b.user_changes();
    let before = tree(&b.p("data/upper"));
    let r = b.boot(2, Policy::Merge, &mut |_| {}).unwrap();
    assert_eq!(r.counts[0], 0, "nothing removed");
    assert!(
        r.notes.iter().any(|n| n.starts_with("no old manifest")),
        "{:?}",
        r.notes
    );
    let profile = r.lines.iter().find(|l| l.path == b"etc/profile").unwrap();
    assert_eq!((profile.class, profile.news), (Class::Kept, News::Shadows));
    let network = r
        .lines
        .iter()
        .find(|l| l.path == b"etc/config/network")
        .unwrap();
    // The user's edit hides the new image's (here unchanged) version.
    assert_eq!((network.class, network.news), (Class::Kept, News::Shadows));
    let notes = r.lines.iter().find(|l| l.path == b"root/notes").unwrap();
    assert_eq!((notes.class, notes.news), (Class::Kept, News::None));
    assert_eq!(tree(&b.p("data/upper")), before);
}

#[test]
fn a_corrupt_manifest_is_reported_and_nothing_is_removed() {
    let b = Bed::new("upg-corrupt");
    b.boot(1, Policy::Merge, &mut |_| {});
    b.background(1);
    b.user_changes();
    let m = b.p("data/.upgrade/manifest.0");
    let mut bytes = std::fs::read(&m).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x40;
    std::fs::write(&m, bytes).unwrap();
    let before = tree(&b.p("data/upper"));
    let r = b.boot(2, Policy::Merge, &mut |_| {}).unwrap();
    assert_eq!(r.counts[0], 0);
    assert!(
        r.notes.iter().any(|n| n.contains("unusable")),
        "{:?}",
        r.notes
    );
    assert_eq!(tree(&b.p("data/upper")), before);
    let text = crate::upgrade::report::render_text(&b.data(), None);
    assert!(
        text.starts_with("manifest: none (unusable manifest.0"),
        "{text}"
    );
}

#[test]
fn a_shipped_manifest_is_used() {
    let b = Bed::new("upg-shipped");
    let m = manifest::compute(b.root(1).as_fd(), None).unwrap();
    b.d.write("v1/etc/overlay-init.manifest", m.shipped_file());
    let v1 = identity::shipped_header(b.root(1).as_fd());
    assert!(v1.is_some());
    b.boot(1, Policy::Merge, &mut |_| {});
    let mut ids = [id(1)];
    ids[0].shipped = v1;
    // The state says id(1) without the manifest: re-record with it.
    record(&b.data(), &ids).unwrap();
    let log = background(
        open_data(&b.data()).unwrap().as_fd(),
        &[b.root(1).as_fd()],
        &ids,
    )
    .unwrap();
    assert_eq!(log, ["lower 0: manifest recorded (14 entries)"]);
    let area = record::open_area(open_data(&b.data()).unwrap().as_fd(), false)
        .unwrap()
        .unwrap();
    let rec = record::load(area.as_fd(), "manifest.0", ManifestRecord::decode)
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(rec.content, Content::Shipped(m));
    b.user_changes();
    let f = read_facts(&b.data()).unwrap();
    let Decision::Upgrade(up) = decide(&f, &[id(2)], Policy::Merge) else {
        panic!()
    };
    assert_eq!(up.old[0].id.shipped, v1);
    let r = b.boot(2, Policy::Merge, &mut |_| {}).unwrap();
    assert_eq!(r.counts, [3, 6, 2]);
}

#[test]
fn keep_policy_removes_nothing_and_reports_the_same() {
    let b = Bed::new("upg-keep");
    b.boot(1, Policy::Merge, &mut |_| {});
    b.background(1);
    b.user_changes();
    let before = tree(&b.p("data/upper"));
    let r = b.boot(2, Policy::Keep, &mut |_| {}).unwrap();
    assert_eq!(r.policy, Policy::Keep);
    assert_eq!(
        r.counts,
        [0, 9, 2],
        "classified as with merge, but nothing is said removed"
    );
    assert!(r
        .lines
        .iter()
        .any(|l| l.class == Class::Kept && l.why == Why::Unchanged));
    assert_eq!(tree(&b.p("data/upper")), before, "nothing moved");
    assert!(
        b.boot(2, Policy::Keep, &mut |_| {}).is_none(),
        "once per image"
    );
}

#[test]
fn reset_policy_is_a_factory_reset_with_the_keep_list() {
    use crate::reset::wipe::{Pending, ResetArea};
    let b = Bed::new("upg-reset");
    b.boot(1, Policy::Reset, &mut |_| {});
    b.background(1);
    b.user_changes();
    let f = read_facts(&b.data()).unwrap();
    let Decision::Reset { up, request } = decide(&f, &[id(2)], Policy::Reset) else {
        panic!()
    };
    assert!(request && !up.resume);
    begin_reset(&b.data(), &up, 1_700_000_000, f.reset_done).unwrap();
    // A cut here: the next boot asks for the request again.
    let f = read_facts(&b.data()).unwrap();
    assert!(matches!(
        decide(&f, &[id(2)], Policy::Merge),
        Decision::Reset { request: true, .. }
    ));
    let area = ResetArea::open(&b.data(), true).unwrap();
    let req = area
        .write_request(vec!["/etc/config/network".into()])
        .unwrap();
    // A cut here: the request is pending; no second one.
    let f = read_facts(&b.data()).unwrap();
    assert!(matches!(
        decide(&f, &[id(2)], Policy::Merge),
        Decision::Reset { request: false, .. }
    ));
    let Pending::Request(req2) = area.pending().unwrap() else {
        panic!()
    };
    assert_eq!(req, req2);
    area.carry_out(&req, &mut |_| {}).unwrap();
    // A cut here: the reset is done, only the finish remains.
    let f = read_facts(&b.data()).unwrap();
    let Decision::Reset { up, request: false } = decide(&f, &[id(2)], Policy::Merge) else {
        panic!()
    };
    let r = finish_reset(&b.data(), &up, "factory reset #1".into(), &mut |_| {}).unwrap();
    assert_eq!(r.policy, Policy::Reset);
    assert_eq!(
        tree(&b.p("data/upper")),
        ["etc/", "etc/config/", "etc/config/network my network\n"]
    );
    assert_eq!(
        decide(&read_facts(&b.data()).unwrap(), &[id(2)], Policy::Reset),
        Decision::None
    );
}

/// A power cut after every single change of the merge: each run stops at
/// its k-th change, the next boot resumes, and the end state is always the
/// same; at no cut is a user change lost.
#[test]
fn a_cut_at_any_change_is_resumed_to_the_same_end_state() {
    let setup = |tag: &str| {
        let b = Bed::new(tag);
        b.boot(1, Policy::Merge, &mut |_| {});
        b.background(1);
        b.user_changes();
        b
    };
    let reference = {
        let b = setup("upg-cut-ref");
        let mut steps = Vec::new();
        b.boot(2, Policy::Merge, &mut |s| steps.push(s.to_string()))
            .unwrap();
        assert_eq!(
            steps,
            ["pending", "remove", "remove", "remove", "dir", "dir", "last", "state", "done"],
            "every kind of change is cut at least once"
        );
        tree(&b.p("data/upper"))
    };
    let mine = [
        ("etc/config/network", "my network\n"),
        ("etc/config/system", "my system\n"),
        ("root/notes", "mine\n"),
        ("etc/init.d/mine", "my service\n"),
        ("etc/init.d/a", "a\n"),
    ];
    let mut k = 1;
    loop {
        let b = setup("upg-cut");
        let mut n = 0;
        let cut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            b.boot(2, Policy::Merge, &mut |_| {
                n += 1;
                if n == k {
                    panic!("power cut");
                }
            })
        }));
        for (p, c) in mine {
            assert_eq!(
                read(&b.p(&format!("data/upper/{p}"))).as_deref(),
                Some(c),
                "cut {k}: {p}"
            );
        }
        // The next boot finishes, whatever the cut left.
        let again = b.boot(2, Policy::Merge, &mut |_| {});
        assert_eq!(tree(&b.p("data/upper")), reference, "cut at change {k}");
        assert!(!b.p("data/.upgrade/pending").exists());
        assert!(
            b.boot(2, Policy::Merge, &mut |_| {}).is_none(),
            "cut {k}: done once"
        );
        if cut.is_ok() {
            assert!(again.is_none());
            assert!(k > 5, "the merge should have several changes");
            break;
        }
        let last = read_report(&b);
        assert!(last.counts[2] == 2, "cut {k}: the conflicts are reported");
        k += 1;
    }
}

fn read_report(b: &Bed) -> Report {
    let area = record::open_area(open_data(&b.data()).unwrap().as_fd(), false)
        .unwrap()
        .unwrap();
    record::load(area.as_fd(), LAST, Report::decode)
        .unwrap()
        .unwrap()
        .unwrap()
}

/// Empty directories that mirrored the old image go; the new image's mode
/// reaches the directories that stay.
#[test]
fn directories_follow_the_new_image() {
    use std::os::unix::fs::PermissionsExt;
    let b = Bed::new("upg-dirs");
    b.boot(1, Policy::Merge, &mut |_| {});
    b.background(1);
    b.with_overlay(1, |m| {
        // Copies up usr/ and usr/bin/ (containers), then the tool unchanged.
        std::fs::write(m.join("usr/bin/tool"), vec![1u8; 5000]).unwrap();
        std::fs::write(m.join("etc/config/mine"), "x").unwrap();
    });
    std::fs::set_permissions(b.p("v2/etc/config"), std::fs::Permissions::from_mode(0o700)).unwrap();
    b.boot(2, Policy::Merge, &mut |_| {}).unwrap();
    assert!(
        !b.p("data/upper/usr").exists(),
        "emptied containers are removed"
    );
    let mode = std::fs::metadata(b.p("data/upper/etc/config"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o7777,
        0o700,
        "a container that stays takes the new mode"
    );
    assert!(b.p("data/upper/etc/config/mine").exists());
}

/// Timing of classification + merge (run with --ignored --nocapture).
#[test]
#[ignore = "a measurement"]
fn timing_of_the_merge() {
    for n in [100usize, 1000, 10_000] {
        let b = Bed::new("upg-time");
        for i in 0..n / 2 {
            b.d.write(&format!("v1/srv/d{}/f{i}", i % 50), format!("file {i}"));
            b.d.write(&format!("v2/srv/d{}/f{i}", i % 50), format!("file {i} v2"));
        }
        b.boot(1, Policy::Merge, &mut |_| {});
        b.background(1);
        // Half unchanged copies, half user files.
        for i in 0..n / 2 {
            b.d.write(
                &format!("data/upper/srv/d{}/f{i}", i % 50),
                format!("file {i}"),
            );
            b.d.write(
                &format!("data/upper/home/d{}/u{i}", i % 50),
                format!("mine {i}"),
            );
        }
        // With UPGRADE_STAT_DEV=loopN and TMPDIR on that device: the
        // sectors the upgrade wrote (after a sync), from /sys/block/N/stat.
        let written = || {
            let dev = std::env::var("UPGRADE_STAT_DEV").ok()?;
            rustix::fs::sync();
            let s = std::fs::read_to_string(format!("/sys/block/{dev}/stat")).ok()?;
            s.split_whitespace().nth(6)?.parse::<u64>().ok()
        };
        let before = written();
        let t = Instant::now();
        let r = b.boot(2, Policy::Merge, &mut |_| {}).unwrap();
        let el = t.elapsed();
        let kib = written().zip(before).map(|(a, b)| (a - b) / 2);
        let last = std::fs::metadata(b.p("data/.upgrade/last")).unwrap().len();
        eprintln!(
            "{n} upper entries: {el:?} ({} removed, {} kept); report {last} B; device writes {kib:?} KiB",
            r.counts[0], r.counts[1]
        );
    }
}

/// The background job runs only when it has something to do, decided
/// from the records' headers: a normal boot forks nothing; a missing,
/// foreign or left-over manifest record, a first boot or an upgrade do.
#[test]
fn the_background_job_runs_only_when_a_manifest_is_missing() {
    let b = Bed::new("upg-bgneed");
    let ids = |v: u32| vec![id(v)];
    let f = read_facts(&b.data()).unwrap();
    assert_eq!(decide(&f, &ids(1), Policy::Merge), Decision::Record);
    assert!(needs_background(&f, &ids(1)), "first boot");
    b.boot(1, Policy::Merge, &mut |_| {});
    let f = read_facts(&b.data()).unwrap();
    assert_eq!(f.manifests, Vec::<Option<Identity>>::new());
    assert!(needs_background(&f, &ids(1)), "no manifest yet");
    b.background(1);
    let f = read_facts(&b.data()).unwrap();
    assert_eq!(f.manifests, vec![Some(id(1))]);
    assert!(
        !needs_background(&f, &ids(1)),
        "a normal boot: nothing to do"
    );
    let bg = |v: u32| {
        background(
            open_data(&b.data()).unwrap().as_fd(),
            &[b.root(v).as_fd()],
            &ids(v),
        )
        .unwrap()
    };
    assert!(bg(1).is_empty(), "recorded: nothing written");
    assert!(needs_background(&f, &ids(2)), "a new image");
    // The image is not known yet (its upgrade has not run): nothing.
    assert!(bg(2).is_empty());
    // A left-over record of a lower that is gone.
    std::fs::copy(
        b.p("data/.upgrade/manifest.0"),
        b.p("data/.upgrade/manifest.1"),
    )
    .unwrap();
    let f = read_facts(&b.data()).unwrap();
    assert_eq!(f.manifests, vec![Some(id(1)), Some(id(1))]);
    assert!(needs_background(&f, &ids(1)));
    assert!(bg(1).is_empty());
    assert!(!b.p("data/.upgrade/manifest.1").exists(), "removed");
    // A record cut short, or not a record: its header does not check out.
    let m = std::fs::read(b.p("data/.upgrade/manifest.0")).unwrap();
    std::fs::write(b.p("data/.upgrade/manifest.0"), &m[..m.len() - 1]).unwrap();
    let f = read_facts(&b.data()).unwrap();
    assert_eq!(f.manifests, vec![None]);
    assert!(needs_background(&f, &ids(1)));
    assert_eq!(bg(1), ["lower 0: manifest recorded (14 entries)"]);
    assert!(!needs_background(&read_facts(&b.data()).unwrap(), &ids(1)));
}

/// A deadline stops the merge with `pending` left; the upper is usable
/// (only unchanged copies went) and the next boot finishes.
#[test]
fn a_deadline_stops_and_the_next_boot_finishes() {
    let b = Bed::new("upg-deadline");
    b.boot(1, Policy::Merge, &mut |_| {});
    b.background(1);
    b.user_changes();
    let f = read_facts(&b.data()).unwrap();
    let Decision::Upgrade(up) = decide(&f, &[id(2)], Policy::Merge) else {
        panic!()
    };
    let root = b.root(2);
    let roots = [root.as_fd()];
    let shown = ["/rom".to_string()];
    let lw = Lowerdirs {
        roots: &roots,
        shown_at: &shown,
    };
    let out = run(&b.data(), &lw, &up, 5, Some(Instant::now()), &mut |_| {}).unwrap();
    assert!(matches!(out, Outcome::Stopped(_)));
    assert!(b.p("data/.upgrade/pending").exists());
    assert_eq!(
        read(&b.p("data/upper/etc/config/network")).unwrap(),
        "my network\n"
    );
    let r = b.boot(2, Policy::Merge, &mut |_| {}).unwrap();
    assert_eq!(r.when, 5, "the upgrade keeps its first time");
    assert_eq!(r.counts, [3, 6, 2]);
    assert!(b.boot(2, Policy::Merge, &mut |_| {}).is_none());
}

/// Whatever the upper holds: FIFOs, device nodes, sockets, symlinks out of
/// it, non-UTF-8 names, an immutable unchanged copy: nothing blocks,
/// nothing is followed, what cannot be removed is kept and said.
#[test]
fn a_hostile_upper() {
    use std::os::unix::ffi::OsStrExt;
    let b = Bed::new("upg-hostile");
    b.boot(1, Policy::Merge, &mut |_| {});
    b.background(1);
    b.d.write("outside/precious", "must stay");
    let up = b.p("data/upper");
    std::fs::create_dir_all(up.join("etc")).unwrap();
    std::fs::write(up.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap(); // unchanged copy
    std::fs::write(up.join("etc/profile"), "profile v1\n").unwrap(); // unchanged copy, made immutable
    let mk = |p: &Path, t: rustix::fs::FileType, dev: u64| {
        rustix::fs::mknodat(rustix::fs::CWD, p, t, Mode::from_raw_mode(0o644), dev).unwrap()
    };
    mk(&up.join("etc/fifo"), rustix::fs::FileType::Fifo, 0);
    mk(
        &up.join("etc/null"),
        rustix::fs::FileType::CharacterDevice,
        0x103,
    );
    std::os::unix::fs::symlink(b.p("outside"), up.join("etc/config")).unwrap(); // where the lower has a dir
    std::fs::write(up.join(std::ffi::OsStr::from_bytes(b"etc/\xff\nname")), "x").unwrap();
    let st = Command::new("chattr")
        .arg("+i")
        .arg(up.join("etc/profile"))
        .status()
        .unwrap();
    assert!(
        st.success(),
        "chattr +i (the test filesystem must support it)"
    );
    let r = b.boot(2, Policy::Merge, &mut |_| {}).unwrap();
    let _ = Command::new("chattr")
        .arg("-i")
        .arg(up.join("etc/profile"))
        .status();
    let l = lines(&r);
    let class = |p: &str| l.iter().find(|x| x.1 == p).map(|x| x.0);
    assert_eq!(class("/etc/hosts"), Some(Class::Removed));
    assert_eq!(class("/etc/profile"), Some(Class::Kept), "immutable: kept");
    assert!(
        r.notes
            .iter()
            .any(|n| n.starts_with("cannot remove /etc/profile")),
        "{:?}",
        r.notes
    );
    assert_eq!(class("/etc/fifo"), Some(Class::Kept));
    assert_eq!(class("/etc/null"), Some(Class::Kept));
    // A symlink where the old image had a directory: the user's change
    // (the new image left that directory alone); never followed.
    assert_eq!(class("/etc/config"), Some(Class::Kept));
    assert_eq!(class("/etc/\\xff\\x0aname"), Some(Class::Kept));
    assert_eq!(read(&b.p("outside/precious")).unwrap(), "must stay");
    let text = crate::upgrade::report::render_text(&b.data(), None);
    assert!(
        text.contains("\n  kept     /etc/\\xff\\x0aname (added)\n"),
        "{text}"
    );
}

#[test]
fn changes_lists_what_a_reset_would_erase() {
    let b = Bed::new("upg-changes");
    b.user_changes();
    let v1 = b.p("v1");
    let t = crate::upgrade::report::changes(&b.p("data/upper"), &[v1.as_path()]).unwrap();
    let mut got: Vec<&str> = t.lines().collect();
    let last = got.pop().unwrap();
    got.sort_unstable();
    assert_eq!(
        got,
        [
            "  added    /etc/init.d/a",
            "  added    /etc/init.d/mine",
            "  added    /root",
            "  added    /root/notes",
            "  deleted  /etc/banner",
            "  modified /etc/config/network",
            "  modified /etc/config/system",
            "  opaque   /etc/init.d",
        ]
    );
    assert_eq!(last, "3 unchanged copies of the lowers' files (not listed)");
}
