//! Firmware upgrades on the real ARM kernel, both boards (issue 12).
//!
//! Each test builds its own images from the board's rootfs staging tree
//! (`qemu/out/BOARD-test-hooks/rootfs.d`, left there by qemu/build.sh):
//! v1 adds the files of [`V1_FILES`] under `/etc/upg` (and a filler file),
//! v2 changes some of them and adds others ([`v2_changes`]), built **at
//! the same mkfs time and padded to the same size** (squashfs
//! `bytes_used`, hence the same file size: [`Images::same_size`] adjusts
//! the incompressible filler until the sizes agree), so that neither the
//! size nor the time can tell the images apart.
//!
//! Storage, per board:
//! - qemu-armv7: a GPT disk with a 16 MiB `rootfs` partition (the image,
//!   swapped between boots by writing the next one over it) and a blank
//!   64 MiB `rootfs_data` (ext4 upper);
//! - qemu-armv7-nor: the pflash image, the squashfs in mtd1 `rootfs`
//!   (swapped the same way), JFFS2 on the erased mtd2 `rootfs_data`, or
//!   UBIFS (`ubi.mtd=rootfs_data` at the first boot).
//!
//! The user's changes at v1 ([`CHANGES`]) are one of each class: an edited
//! config file, a new file, a deleted lower file, files copied up
//! unchanged, a directory removed with `rm -rf` and made again (opaque),
//! a chmod. Each comes out of the upgrade as the issue says, and is listed
//! by `overlay-status --upgrade` ([`expect_merged`]).

use crate::harness::{
    boot, boot_nor, cut_by_test_hook, flash_partition, out_dir_for, partition, read_bytes,
    write_bytes, Boot, Work, BOARD, NOR_BOARD,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The mkfs time of every image (and of every file in it): reproducible
/// builds, so the time cannot tell two images apart.
const MKFS_TIME: &str = "1700000000";

/// What v1 adds to the board's rootfs, under /etc/upg.
const V1_FILES: &[(&str, &str)] = &[
    ("etc/upg/config", "option a 1\n"),
    ("etc/upg/conflict", "option b 1\n"),
    ("etc/upg/stale", "stale v1\n"),
    ("etc/upg/stale2", "stale2 same in v1 and v2\n"),
    ("etc/upg/sub/only", "only\n"),
    ("etc/upg/deleted", "deleted by the user\n"),
    ("etc/upg/deleted2", "deleted by the user, changed by v2\n"),
    ("etc/upg/mode", "mode changed by the user\n"),
    ("etc/upg/opaque/a", "a\n"),
    ("etc/upg/opaque/b", "b\n"),
];

/// The user's changes at v1, one of each kind.
pub const CHANGES: &str = r#"
U=/etc/upg
echo "option a 2 # by the user" >> $U/config
echo "option b 2 # by the user" >> $U/conflict
touch $U/stale $U/sub/only
cat $U/stale2 > /tmp/s2; cat /tmp/s2 > $U/stale2
rm $U/deleted $U/deleted2
echo mine > /root/added
rm -rf $U/opaque && mkdir $U/opaque && echo mine > $U/opaque/mine
chmod 600 $U/mode
sync
"#;

/// Waits (up to 60 s) until the background job has recorded this image's
/// manifest, then says the first line of `overlay-status --upgrade`.
pub const WAIT_MANIFEST: &str = r#"
i=0
while [ $i -lt 120 ]; do
  overlay-status --upgrade 2>/dev/null | head -1 | grep -q '^manifest: recorded' && break
  sleep 0.5; i=$((i+1))
done
fact manifest "$(overlay-status --upgrade 2>&1 | head -1)"
"#;

/// Facts of the view after an upgrade: what each of the user's files is,
/// and the lines of `overlay-status --upgrade` (`T:up=`).
pub const VIEW: &str = r#"
U=/etc/upg
show() { if [ -e "$1" ]; then tr '\n' '|' < "$1"; else echo absent; fi; }
fact config "$(show $U/config)"
fact conflict "$(show $U/conflict)"
fact conflict_rom "$(show /rom$U/conflict)"
fact stale "$(show $U/stale)"
fact stale2 "$(show $U/stale2)"
fact only "$(show $U/sub/only)"
fact deleted "$(show $U/deleted)"
fact deleted2 "$(show $U/deleted2)"
fact added "$(show /root/added)"
fact opaque "$(ls $U/opaque | tr '\n' ' ')"
fact mode "$(stat -c %a $U/mode)"
fact new "$(show $U/new-in-v2)"
fact pending "$(ls /overlay/.upgrade/pending 2>/dev/null | wc -l)"
overlay-status --upgrade > /tmp/up 2>&1; fact up_exit $?
sed 's/^/T:up=/' /tmp/up
"#;

/// The two boards, as the upgrade tests use them: the block board (ext4
/// upper), the NOR board with a JFFS2 or a UBIFS upper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Board {
    Block,
    NorJffs2,
    NorUbifs,
}

impl Board {
    fn name(self) -> &'static str {
        match self {
            Board::Block => BOARD,
            Board::NorJffs2 | Board::NorUbifs => NOR_BOARD,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Board::Block => "block",
            Board::NorJffs2 => "jffs2",
            Board::NorUbifs => "ubifs",
        }
    }

    /// The upper's filesystem type, as /proc/mounts shows it.
    fn fstype(self) -> &'static str {
        match self {
            Board::Block => "ext4",
            Board::NorJffs2 => "jffs2",
            Board::NorUbifs => "ubifs",
        }
    }

    /// overlayfs on JFFS2 cannot remove a directory the lower has (no
    /// RENAME_EXCHANGE, no RENAME_WHITEOUT: `rm -rf` fails with EINVAL),
    /// so no opaque directory can be made there.
    fn makes_opaque(self) -> bool {
        self != Board::NorJffs2
    }

    /// What the first boot on blank storage appends (UBI: attach the
    /// partition, which UBI formats; overlay-init attaches it afterwards).
    fn first_append(self) -> &'static str {
        match self {
            Board::NorUbifs => "ubi.mtd=rootfs_data",
            _ => "",
        }
    }

    /// A new storage image holding `img` as the root and a blank data area.
    pub fn storage(self, w: &Work, img: &Path) -> PathBuf {
        match self {
            Board::Block => w.disk(
                "disk.img",
                &[
                    format!("rootfs:16:{}", img.display()),
                    "rootfs_data:64".into(),
                ],
            ),
            _ => w.flash("flash.img", &[("rootfs", img)]),
        }
    }

    /// Replaces the root image of `storage` with `img` (an upgrade).
    pub fn put(self, storage: &Path, img: &Path) {
        let bytes = std::fs::read(img).unwrap();
        let (off, len) = match self {
            Board::Block => partition(storage, "rootfs"),
            _ => flash_partition("rootfs"),
        };
        assert!(bytes.len() as u64 <= len, "the image fits its partition");
        write_bytes(storage, off, &bytes);
    }

    /// Boots and expects a clean run (the console is kept in the work dir).
    pub fn boot(self, w: &Work, storage: &Path, append: &str, script: &str) -> Boot {
        let b = self.boot_fn()(w, storage, append, script);
        save_console(w, &b);
        b.expect_clean_run();
        b
    }

    fn boot_fn(self) -> fn(&Work, &Path, &str, &str) -> Boot {
        match self {
            Board::Block => boot,
            _ => boot_nor,
        }
    }
}

/// Keeps each boot's console in the work directory (kept when a test
/// fails): `console-N.log`.
pub fn save_console(w: &Work, b: &Boot) {
    let n = (0..)
        .find(|n| !w.path(&format!("console-{n}.log")).exists())
        .unwrap();
    std::fs::write(w.path(&format!("console-{n}.log")), &b.console).unwrap();
}

/// Building image variants of a board's rootfs.
pub struct Images<'a> {
    w: &'a Work,
    board: Board,
    /// Data blocks and fragments stored uncompressed (`-noD -noF`): a
    /// changed byte then changes no compressed size, and the squashfs
    /// metadata of two images differing in one byte is identical.
    pub raw: bool,
    /// Flip a byte of the shipped manifest after writing it.
    pub corrupt_shipped: bool,
    /// Everything compressed, as a real image is (the figures): not for
    /// [`Images::same_size`].
    pub compressed: bool,
}

/// squashfs `bytes_used` (superblock offset 40).
pub fn bytes_used(img: &Path) -> u64 {
    u64::from_le_bytes(read_bytes(img, 40, 8).try_into().unwrap())
}

/// squashfs mkfs time (superblock offset 8).
pub fn mkfs_time(img: &Path) -> u32 {
    u32::from_le_bytes(read_bytes(img, 8, 4).try_into().unwrap())
}

/// `n` incompressible bytes, the same for the same `n` prefix.
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Where the filler lives in every image.
const FILLER: &str = "usr/share/upg-filler";

impl<'a> Images<'a> {
    pub fn new(w: &'a Work, board: Board) -> Images<'a> {
        Images {
            w,
            board,
            raw: false,
            corrupt_shipped: false,
            compressed: false,
        }
    }

    /// A copy of the board's rootfs tree with v1's files and a filler:
    /// `WORK/NAME.d`.
    pub fn tree(&self, name: &str) -> PathBuf {
        let src = out_dir_for(self.board.name()).join("rootfs.d");
        assert!(
            src.is_dir(),
            "{} missing: run qemu/build.sh --test-hooks",
            src.display()
        );
        let dst = self.w.path(&format!("{name}.d"));
        let _ = std::fs::remove_dir_all(&dst);
        let st = Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(&dst)
            .status()
            .unwrap();
        assert!(st.success());
        for (p, c) in V1_FILES {
            write(&dst, p, c.as_bytes());
        }
        write(&dst, FILLER, &noise(20_000));
        dst
    }

    /// The squashfs of `tree` (with its manifest at /etc/overlay-init.manifest
    /// when `ship`, written by the host's `overlay-init manifest`).
    pub fn build(&self, tree: &Path, name: &str, ship: bool) -> PathBuf {
        let shipped = tree.join("etc/overlay-init.manifest");
        if ship {
            manifest(tree, &shipped);
            if self.corrupt_shipped {
                let mut b = std::fs::read(&shipped).unwrap();
                let i = b.len() / 2;
                b[i] ^= 0x40;
                std::fs::write(&shipped, b).unwrap();
            }
        } else {
            let _ = std::fs::remove_file(&shipped);
        }
        let img = self.w.path(&format!("{name}.sqfs"));
        let mut c = Command::new("mksquashfs");
        c.arg(tree)
            .arg(&img)
            .args([
                "-comp",
                "xz",
                "-all-root",
                "-noappend",
                "-quiet",
                "-no-progress",
            ])
            .args(["-mkfs-time", MKFS_TIME, "-all-time", MKFS_TIME])
            .stdout(Stdio::null());
        // Fragments (where the filler lives) and metadata stored
        // uncompressed: the filler's length then moves `bytes_used` byte for
        // byte, so that `same_size` always reaches its target. Compressed,
        // xz's 4-byte padding made some targets unreachable (a v2 that
        // could not be built once the rootfs's binary changed).
        if !self.compressed {
            c.args(["-noF", "-noI"]);
        }
        if self.raw {
            c.arg("-noD");
        }
        assert!(c.status().unwrap().success(), "mksquashfs failed");
        img
    }

    /// [`Images::build`], the filler's length adjusted until the image has
    /// the same `bytes_used` (so the same file size) as `like`.
    pub fn same_size(&self, tree: &Path, name: &str, ship: bool, like: &Path) -> PathBuf {
        let want = bytes_used(like);
        let filler = tree.join(FILLER);
        let mut len = std::fs::metadata(&filler).unwrap().len() as i64;
        for round in 0..60 {
            let img = self.build(tree, name, ship);
            let now = bytes_used(&img);
            if now == want {
                assert_eq!(
                    std::fs::metadata(&img).unwrap().len(),
                    std::fs::metadata(like).unwrap().len()
                );
                assert_eq!(mkfs_time(&img), mkfs_time(like));
                return img;
            }
            let delta = want as i64 - now as i64;
            // Late rounds creep by one byte: compression may round.
            len += if round < 20 { delta } else { delta.signum() };
            assert!(len > 0, "the filler cannot absorb {delta} bytes");
            write(tree, FILLER, &noise(len as usize));
        }
        panic!("could not build {name} at {want} bytes");
    }
}

/// Writes `content` at `rel` under `root`, parents made.
pub fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// `overlay-init manifest TREE --all-root -o OUT` (the host build, as a
/// firmware build runs it before mksquashfs).
pub fn manifest(tree: &Path, out: &Path) {
    let out_s = out.display().to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_overlay-init"))
        .arg("manifest")
        .arg(tree)
        .args(["--all-root", "-o", &out_s])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "overlay-init manifest: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// v2's changes to v1's tree: two changed files, a changed file the user
/// deleted, a new entry in the directory the user made opaque, a new file.
pub fn v2_changes(tree: &Path) {
    write(tree, "etc/upg/conflict", b"option b 1\noption c 1 # v2\n");
    write(tree, "etc/upg/stale", b"stale v2\n");
    write(tree, "etc/upg/deleted2", b"changed by v2\n");
    write(tree, "etc/upg/opaque/c", b"c from v2\n");
    write(tree, "etc/upg/new-in-v2", b"new in v2\n");
}

/// The `T:up=` lines: `overlay-status --upgrade`, in order.
pub fn status_lines(b: &Boot) -> Vec<String> {
    b.console
        .lines()
        .filter_map(|l| {
            l.trim_end_matches('\r')
                .split_once("T:up=")
                .map(|(_, r)| r.to_string())
        })
        .collect()
}

/// The classified line of `path` in the status (`CLASS (words)`).
pub fn find_line(lines: &[String], path: &str) -> Option<String> {
    lines.iter().find_map(|l| {
        let l = l.strip_prefix("  ")?;
        let (class, rest) = l.split_once(' ')?;
        let (p, words) = rest.trim_start().split_once(" (")?;
        (p == path).then(|| format!("{class} ({words}"))
    })
}

/// [`find_line`], or panics with the whole status.
pub fn line_of(lines: &[String], path: &str) -> String {
    find_line(lines, path).unwrap_or_else(|| panic!("no line for {path} in:\n{}", lines.join("\n")))
}

/// The view and the report of a merged v1 → v2 upgrade. `resumed`: the
/// upgrade was cut short and finished by this boot (copies removed before
/// the cut are not listed again).
pub fn expect_merged(b: &Boot, board: Board, resumed: bool) {
    let f = |k: &str| b.fact(k);
    assert_eq!(
        f("config"),
        "option a 1|option a 2 # by the user|",
        "user change kept"
    );
    assert_eq!(
        f("conflict"),
        "option b 1|option b 2 # by the user|",
        "conflict: the user's version wins"
    );
    assert_eq!(
        f("conflict_rom"),
        "option b 1|option c 1 # v2|",
        "the new version at /rom"
    );
    assert_eq!(
        f("stale"),
        "stale v2|",
        "an unchanged copy gives way to the new version"
    );
    assert_eq!(f("stale2"), "stale2 same in v1 and v2|");
    assert_eq!(f("only"), "only|");
    assert_eq!(f("deleted"), "absent", "a deletion stays");
    assert_eq!(f("deleted2"), "absent", "a deletion in conflict stays");
    assert_eq!(f("added"), "mine|");
    assert_eq!(f("mode"), "600");
    assert_eq!(f("new"), "new in v2|", "a new file of the new image shows");
    assert_eq!(f("pending"), "0", "the upgrade is complete");
    assert_eq!(f("up_exit"), "0");
    let lines = status_lines(b);
    eprintln!("overlay-status --upgrade:\n{}", lines.join("\n"));
    assert!(lines[0].starts_with("manifest: "), "{lines:?}");
    let mut want = vec![
        ("/etc/upg/config", "kept (modified)"),
        (
            "/etc/upg/conflict",
            "conflict (modified; the new image changed it: /rom/etc/upg/conflict)",
        ),
        ("/etc/upg/deleted", "kept (deleted)"),
        (
            "/etc/upg/deleted2",
            "conflict (deleted; the new image changed it: /rom/etc/upg/deleted2)",
        ),
        ("/root/added", "kept (added)"),
        ("/etc/upg/mode", "kept (mode or owner changed)"),
    ];
    for p in ["/etc/upg/stale", "/etc/upg/stale2", "/etc/upg/sub/only"] {
        match (resumed, find_line(&lines, p)) {
            (true, None) => {}
            (_, Some(l)) => assert_eq!(l, "removed (unchanged copy)", "{p}"),
            (false, None) => panic!("no line for {p}:\n{}", lines.join("\n")),
        }
    }
    if board.makes_opaque() {
        assert_eq!(
            f("opaque"),
            "mine ",
            "the opaque directory still hides the image's entries"
        );
        want.push((
            "/etc/upg/opaque",
            "conflict (opaque directory; it hides 1 new entries of the new image)",
        ));
        want.push((
            "/etc/upg/opaque/mine",
            "kept (in a directory of the user's)",
        ));
    } else {
        // `rm -rf` deleted the files one by one, then failed on the
        // directory (so `mkdir` did not run): v2's new entry shows.
        assert_eq!(f("opaque"), "c ");
        want.push(("/etc/upg/opaque/a", "kept (deleted)"));
        want.push(("/etc/upg/opaque/b", "kept (deleted)"));
    }
    for (path, line) in want {
        assert_eq!(line_of(&lines, path), line, "{path}:\n{}", lines.join("\n"));
    }
}

/// Boots v1 on fresh storage, waits for its manifest, makes [`CHANGES`]
/// (plus `extra`); returns the storage.
pub fn prepare(w: &Work, board: Board, v1: &Path, extra: &str) -> PathBuf {
    let storage = board.storage(w, v1);
    let b = board.boot(
        w,
        &storage,
        board.first_append(),
        &format!("{WAIT_MANIFEST}\n{CHANGES}\n{extra}\nfact upper \"$(fstype /overlay)\""),
    );
    assert_eq!(b.fact("upper"), board.fstype(), "{}", b.console);
    assert_eq!(b.fact("manifest"), "manifest: recorded", "{}", b.console);
    storage
}

/// v1 and v2 (same size, same mkfs time), with or without shipped manifests.
pub fn v1_v2(imgs: &Images, ship: bool) -> (PathBuf, PathBuf) {
    let t1 = imgs.tree("v1");
    let v1 = imgs.build(&t1, "v1", ship);
    let t2 = imgs.tree("v2");
    v2_changes(&t2);
    let v2 = imgs.same_size(&t2, "v2", ship, &v1);
    assert_ne!(std::fs::read(&v1).unwrap(), std::fs::read(&v2).unwrap());
    (v1, v2)
}

/// The storage at the upgrade boot: v1 and v2 built ([`v1_v2`]), v1
/// [`prepare`]d (with `extra`), then v2 written over it.
pub fn upgrade_ready(w: &Work, board: Board, ship: bool, extra: &str) -> PathBuf {
    let imgs = Images::new(w, board);
    let (v1, v2) = v1_v2(&imgs, ship);
    let storage = prepare(w, board, &v1, extra);
    board.put(&storage, &v2);
    storage
}

fn merge_on(board: Board, ship: bool) {
    let w = Work::new(&format!("upgrade-{}-{ship}", board.tag()));
    let storage = upgrade_ready(&w, board, ship, "");
    let b2 = board.boot(&w, &storage, "", VIEW);
    b2.expect("firmware upgrade: a new image; classifying the upper (overlay.upgrade=merge)");
    // The removed copies leave the trash at this boot, within its budget.
    b2.expect("factory reset: trash deleted (4 entries");
    expect_merged(&b2, board, false);
    let lines = status_lines(&b2);
    assert!(lines
        .iter()
        .any(|l| l == "last upgrade: policy merge" || l.ends_with(", policy merge")));
    let to = lines.iter().find(|l| l.starts_with("to: ")).unwrap();
    assert_eq!(to.ends_with(" +manifest"), ship, "{to}");
    // Once per image: the next boot of v2 does nothing.
    let b3 = board.boot(&w, &storage, "", &format!("{WAIT_MANIFEST}\n{VIEW}"));
    assert!(!b3.has("firmware upgrade: a new image"), "{}", b3.console);
    expect_merged(&b3, board, false);
    assert_eq!(b3.fact("manifest"), "manifest: recorded");
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn upgrade_merges_the_users_changes_on_the_block_board() {
    merge_on(Board::Block, false);
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn upgrade_merges_the_users_changes_on_the_nor_board_ubifs() {
    merge_on(Board::NorUbifs, false);
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn upgrade_merges_the_users_changes_on_the_nor_board_jffs2() {
    merge_on(Board::NorJffs2, false);
}

/// `overlay-init manifest ROOTDIR` at build time, the manifest at
/// /etc/overlay-init.manifest: the identity is the manifest's header, the
/// device copies the manifest instead of computing one.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn upgrade_with_shipped_manifests_on_the_block_board() {
    merge_on(Board::Block, true);
}

/// The steps of the merge that change the flash, each cut by the test
/// hook (`overlay.test_crash=`, a reboot without sync right after it).
pub const CUT_POINTS: [&str; 7] = [
    "upgrade-pending:1",
    "upgrade-remove:1",
    "upgrade-remove:3",
    "upgrade-dir:1",
    "upgrade-last:1",
    "upgrade-state:1",
    "upgrade-done:1",
];

/// A power cut at each step of the merge: the next boot finishes it, to
/// the same view; no user change is ever lost.
fn cuts_on(board: Board, points: &[&str]) {
    let w = Work::new(&format!("upgrade-cut-{}", board.tag()));
    let storage = upgrade_ready(&w, board, false, "");
    for point in points {
        let img = cut_by_test_hook(&w, &storage, point, board.boot_fn());
        let b = board.boot(&w, &img, "", VIEW);
        let resumed =
            !point.starts_with("upgrade-pending") || b.has("firmware upgrade: a new image");
        expect_merged(&b, board, resumed);
        let _ = std::fs::remove_file(&img);
        eprintln!("cut at {point}: finished by the next boot");
    }
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn a_power_cut_at_each_step_of_the_merge_is_finished_by_the_next_boot() {
    cuts_on(Board::Block, &CUT_POINTS);
}

#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn a_power_cut_during_the_merge_on_the_nor_board() {
    cuts_on(
        Board::NorUbifs,
        &["upgrade-remove:1", "upgrade-dir:1", "upgrade-state:1"],
    );
}

/// `overlay.upgrade=keep`: nothing is removed, everything is reported;
/// then `overlay-reset --path` takes the new image's version of a stale
/// copy and of a conflicting file, and nothing else.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn keep_policy_then_a_per_path_revert() {
    let board = Board::Block;
    let w = Work::new("upgrade-keep");
    let storage = upgrade_ready(&w, board, false, "");
    let b = board.boot(
        &w,
        &storage,
        "overlay.upgrade=keep",
        &format!(
            "{VIEW}
overlay-reset --path /etc/upg/stale --path /etc/upg/conflict --dry-run > /tmp/dry; fact dry_exit $?
fact dry \"$(grep -c '^remove /etc/upg/\\(stale\\|conflict\\)$' /tmp/dry) $(grep -c '^remove' /tmp/dry)\"
overlay-reset --path /etc/upg/stale -y --no-reboot; fact revert_exit $?
overlay-reset --path /etc/upg/conflict -y --no-reboot; fact revert2_exit $?
overlay-reset --path /etc/x --keep /etc/y -y --no-reboot; fact mixed_exit $?
overlay-status | grep PENDING | sed 's/^/T:pending_line=/'"
        ),
    );
    b.expect("firmware upgrade: a new image; classifying the upper (overlay.upgrade=keep)");
    assert_eq!(b.fact("stale"), "stale v1|", "keep: the copy stays");
    assert_eq!(b.fact("config"), "option a 1|option a 2 # by the user|");
    let lines = status_lines(&b);
    eprintln!("{}", lines.join("\n"));
    assert!(
        lines.iter().any(|l| l.ends_with(", policy keep")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("0 removed, ")),
        "{lines:?}"
    );
    assert_eq!(line_of(&lines, "/etc/upg/stale"), "kept (unchanged copy)");
    assert_eq!(
        line_of(&lines, "/etc/upg/conflict"),
        "conflict (modified; the new image changed it: /rom/etc/upg/conflict)"
    );
    assert_eq!(b.fact("dry_exit"), "0");
    assert_eq!(b.fact("dry"), "2 2", "the dry run lists the two paths only");
    assert_eq!(b.fact("revert_exit"), "0");
    assert_eq!(b.fact("revert2_exit"), "0");
    assert_eq!(b.fact("mixed_exit"), "2");
    assert!(
        b.fact("pending_line")
            .contains("PENDING: revert #2 at the next boot: /etc/upg/stale, /etc/upg/conflict"),
        "{}",
        b.fact("pending_line")
    );
    let b2 = board.boot(&w, &storage, "", VIEW);
    b2.expect("revert #2: done in");
    assert!(
        !b2.has("firmware upgrade: a new image"),
        "the upgrade ran once"
    );
    assert_eq!(b2.fact("stale"), "stale v2|", "reverted: the new version");
    assert_eq!(
        b2.fact("conflict"),
        "option b 1|option c 1 # v2|",
        "reverted: the new image's version of the conflict"
    );
    assert_eq!(
        b2.fact("config"),
        "option a 1|option a 2 # by the user|",
        "nothing else"
    );
    assert_eq!(b2.fact("added"), "mine|");
    assert_eq!(b2.fact("deleted"), "absent");
}

/// `overlay.upgrade=reset`: a factory reset with the keep list (OpenWrt's
/// sysupgrade without a backup); on the NOR board (JFFS2).
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn reset_policy_is_a_factory_reset_with_the_keep_list() {
    let board = Board::NorJffs2;
    let w = Work::new("upgrade-reset");
    let storage = upgrade_ready(
        &w,
        board,
        false,
        "echo /etc/upg/config > /etc/overlay-reset.keep; sync",
    );
    let b = board.boot(&w, &storage, "overlay.upgrade=reset", VIEW);
    b.expect("factory reset #1 for the new image (overlay.upgrade=reset)");
    assert_eq!(
        b.fact("config"),
        "option a 1|option a 2 # by the user|",
        "kept"
    );
    assert_eq!(b.fact("conflict"), "option b 1|option c 1 # v2|");
    assert_eq!(b.fact("stale"), "stale v2|");
    assert_eq!(
        b.fact("deleted"),
        "deleted by the user|",
        "the image's again"
    );
    assert_eq!(b.fact("added"), "absent");
    assert_eq!(b.fact("opaque"), "a b c ");
    assert_eq!(b.fact("mode"), "644");
    assert_eq!(b.fact("pending"), "0");
    let lines = status_lines(&b);
    eprintln!("{}", lines.join("\n"));
    assert!(
        lines.iter().any(|l| l.ends_with(", policy reset")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("note: reset #1 done in") && l.contains("/etc/upg/config")),
        "{lines:?}"
    );
    // Once: the next boot resets nothing.
    let b2 = board.boot(
        &w,
        &storage,
        "overlay.upgrade=reset",
        "fact c \"$(cat /etc/upg/config)\"; echo x > /root/after",
    );
    assert!(!b2.has("factory reset #"), "{}", b2.console);
    let b3 = board.boot(
        &w,
        &storage,
        "overlay.upgrade=reset",
        "fact after \"$(cat /root/after)\"",
    );
    assert_eq!(b3.fact("after"), "x");
}

/// The first upgrade from an image whose manifest was never recorded:
/// said; every copy kept; those that shadow the new image's files said.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn without_an_old_manifest_every_copy_is_kept_and_shadows_are_said() {
    let board = Board::Block;
    let w = Work::new("upgrade-nomanifest");
    let storage = upgrade_ready(&w, board, false, "rm /overlay/.upgrade/manifest.0; sync");
    let b = board.boot(&w, &storage, "", &format!("{VIEW}\n{WAIT_MANIFEST}"));
    let lines = status_lines(&b);
    eprintln!("{}", lines.join("\n"));
    assert!(
        lines.iter().any(
            |l| l == "note: no old manifest: none was recorded for lower 0; every copy is kept"
        ),
        "{lines:?}"
    );
    assert_eq!(b.fact("stale"), "stale v1|", "kept");
    assert_eq!(b.fact("config"), "option a 1|option a 2 # by the user|");
    assert_eq!(
        line_of(&lines, "/etc/upg/stale"),
        "kept (no old manifest; it shadows /rom/etc/upg/stale)"
    );
    assert_eq!(
        line_of(&lines, "/etc/upg/conflict"),
        "kept (no old manifest; it shadows /rom/etc/upg/conflict)"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("0 removed, ")),
        "{lines:?}"
    );
    // The new image's manifest is recorded for the next upgrade.
    assert_eq!(b.fact("manifest"), "manifest: recorded");
}

/// A recorded manifest that does not check out (a flipped byte), and an
/// image whose shipped manifest does not: both reported and ignored,
/// never half-trusted; nothing is removed.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn a_corrupt_manifest_is_reported_and_nothing_is_removed() {
    let board = Board::Block;
    let w = Work::new("upgrade-corrupt");
    let mut imgs = Images::new(&w, board);
    let t1 = imgs.tree("v1");
    let v1 = imgs.build(&t1, "v1", false);
    let t2 = imgs.tree("v2");
    v2_changes(&t2);
    imgs.corrupt_shipped = true;
    let v2 = imgs.same_size(&t2, "v2", true, &v1);
    let storage = prepare(
        &w,
        board,
        &v1,
        "printf X | dd of=/overlay/.upgrade/manifest.0 bs=1 seek=200 conv=notrunc 2>/dev/null; sync",
    );
    board.put(&storage, &v2);
    let b = board.boot(&w, &storage, "", &format!("{VIEW}\n{WAIT_MANIFEST}"));
    let lines = status_lines(&b);
    eprintln!("{}", lines.join("\n"));
    assert!(
        lines.iter().any(|l| l.starts_with(
            "note: no old manifest: .upgrade/manifest.0 is unusable (checksum mismatch"
        )),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("0 removed, ")),
        "{lines:?}"
    );
    assert_eq!(b.fact("stale"), "stale v1|", "nothing removed");
    assert_eq!(b.fact("config"), "option a 1|option a 2 # by the user|");
    // v2's own manifest is corrupt: said, and one computed instead.
    b.expect("firmware upgrade: lower 0: the shipped manifest is unusable (checksum mismatch");
    assert_eq!(b.fact("manifest"), "manifest: recorded");
}

/// v1 → v2 → v3 on the NOR board (UBIFS), shipped manifests: each upgrade
/// is classified against the image before it.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn a_chain_of_upgrades_v1_v2_v3() {
    let board = Board::NorUbifs;
    let w = Work::new("upgrade-chain");
    let imgs = Images::new(&w, board);
    let (v1, v2) = v1_v2(&imgs, true);
    let t3 = imgs.tree("v3");
    v2_changes(&t3);
    write(&t3, "etc/upg/stale", b"stale v3\n");
    write(&t3, "etc/upg/config", b"option a 1\noption z 3 # v3\n");
    write(&t3, "etc/upg/conflict", b"option b 1\noption c 3 # v3\n");
    let v3 = imgs.same_size(&t3, "v3", true, &v1);
    let storage = prepare(&w, board, &v1, "");
    board.put(&storage, &v2);
    // On v2: the user copies up the new stale unchanged again.
    let b2 = board.boot(
        &w,
        &storage,
        "",
        &format!("{VIEW}\n{WAIT_MANIFEST}\ntouch /etc/upg/stale; sync"),
    );
    expect_merged(&b2, board, false);
    assert_eq!(b2.fact("manifest"), "manifest: recorded");
    let from_v2 = status_lines(&b2)
        .into_iter()
        .find(|l| l.starts_with("to: "))
        .unwrap();
    board.put(&storage, &v3);
    let b3 = board.boot(&w, &storage, "", VIEW);
    let lines = status_lines(&b3);
    eprintln!("{}", lines.join("\n"));
    assert_eq!(
        lines.iter().find(|l| l.starts_with("from: ")).unwrap()[6..],
        from_v2[4..],
        "v3's upgrade starts from v2"
    );
    assert_eq!(b3.fact("stale"), "stale v3|", "v2's copy went");
    assert_eq!(
        line_of(&lines, "/etc/upg/stale"),
        "removed (unchanged copy)"
    );
    assert_eq!(
        b3.fact("config"),
        "option a 1|option a 2 # by the user|",
        "the user's edit wins"
    );
    assert_eq!(
        line_of(&lines, "/etc/upg/config"),
        "conflict (modified; the new image changed it: /rom/etc/upg/config)"
    );
    assert_eq!(
        line_of(&lines, "/etc/upg/conflict"),
        "conflict (modified; the new image changed it: /rom/etc/upg/conflict)"
    );
    assert_eq!(b3.fact("added"), "mine|");
}

/// A factory reset requested for the same boot as an upgrade: the reset
/// first (keeping its list), then the merge of what is left.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn a_reset_at_the_same_boot_as_an_upgrade() {
    let board = Board::Block;
    let w = Work::new("upgrade-and-reset");
    let storage = upgrade_ready(
        &w,
        board,
        false,
        "overlay-reset -y --no-reboot --keep /etc/upg/config --keep /etc/upg/stale",
    );
    let b = board.boot(&w, &storage, "", VIEW);
    b.expect("factory reset #1: wiping the upper layer (keeping 2 path(s))");
    b.expect("firmware upgrade: a new image; classifying the upper (overlay.upgrade=merge)");
    assert!(
        b.time_of("factory reset #1: done") < b.time_of("firmware upgrade: a new image"),
        "the reset first"
    );
    assert_eq!(b.fact("config"), "option a 1|option a 2 # by the user|");
    assert_eq!(
        b.fact("stale"),
        "stale v2|",
        "kept by the reset, then removed as a copy"
    );
    assert_eq!(b.fact("added"), "absent");
    assert_eq!(b.fact("deleted"), "deleted by the user|");
    let lines = status_lines(&b);
    eprintln!("{}", lines.join("\n"));
    assert_eq!(line_of(&lines, "/etc/upg/config"), "kept (modified)");
    assert_eq!(
        line_of(&lines, "/etc/upg/stale"),
        "removed (unchanged copy)"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("1 removed, 1 kept, 0 conflicts")),
        "{lines:?}"
    );
}

/// The issue's hardest case: v2 differs from v1 in one byte of one file,
/// same size, same mkfs time, every compressed size the same (data stored
/// uncompressed), so the squashfs metadata is identical. With shipped
/// manifests it is an upgrade (the copy of that file goes); without, the
/// identity cannot see it (README: ship a manifest), and the boot says
/// nothing.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn one_changed_byte_is_an_upgrade_with_a_shipped_manifest() {
    let board = Board::Block;
    for ship in [true, false] {
        let w = Work::new(&format!("upgrade-onebyte-{ship}"));
        let mut imgs = Images::new(&w, board);
        imgs.raw = true;
        let t1 = imgs.tree("v1");
        let v1 = imgs.build(&t1, "v1", ship);
        let t2 = imgs.tree("v2");
        write(&t2, "etc/upg/stale", b"stale v2\n");
        let v2 = imgs.build(&t2, "v2", ship);
        let (a, b) = (std::fs::read(&v1).unwrap(), std::fs::read(&v2).unwrap());
        assert_eq!(a.len(), b.len());
        assert_eq!(a[..96], b[..96], "the same superblock");
        let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        eprintln!("ship {ship}: the images differ in {differ} byte(s)");
        if !ship {
            assert_eq!(differ, 1);
        }
        let storage = prepare(&w, board, &v1, "");
        board.put(&storage, &v2);
        let b2 = board.boot(&w, &storage, "", VIEW);
        if ship {
            b2.expect("firmware upgrade: a new image");
            assert_eq!(b2.fact("stale"), "stale v2|");
        } else {
            assert!(!b2.has("firmware upgrade: a new image"));
            assert_eq!(b2.fact("stale"), "stale v1|", "the documented limit");
        }
    }
}

/// A boot on RAM (here `overlayroot=tmpfs`) never runs the merge, whatever
/// the image: the next boot on the flash does.
#[test]
#[ignore = "boots QEMU: run qemu/test.sh"]
fn a_boot_on_ram_never_runs_the_merge() {
    let board = Board::NorJffs2;
    let w = Work::new("upgrade-ram");
    let storage = upgrade_ready(&w, board, false, "");
    let b = board.boot(
        &w,
        &storage,
        "overlayroot=tmpfs",
        "fact upper \"$(fstype /overlay)\"",
    );
    assert_eq!(b.fact("upper"), "tmpfs");
    assert!(!b.has("firmware upgrade"), "{}", b.console);
    let b2 = board.boot(&w, &storage, "", VIEW);
    b2.expect("firmware upgrade: a new image; classifying the upper (overlay.upgrade=merge)");
    // The removed copies leave the trash at this boot, within its budget.
    b2.expect("factory reset: trash deleted (4 entries");
    expect_merged(&b2, board, false);
}

/// The figures of the README's "Firmware upgrades" (not an assertion of
/// speed: printed, `--nocapture`). On the block board, for an upper of N
/// entries (half unchanged copies of the image's files, half the user's
/// own), N = 100, 1,000, 10,000: the boot time the upgrade adds (the
/// pre-init's own log lines: the merge, the trash within its budget, the
/// upper stage against the next, normal, boot), the sectors written to
/// the data partition by the boot (after a sync, against the normal
/// boot), the background manifest's time and memory on the device; then
/// the identity read of a normal boot (`overlay.debug`), and the
/// manifest's size for the demo rootfs and for 3,000 files.
#[test]
#[ignore = "boots QEMU: figures for the README (slow)"]
fn figures_of_the_upgrade() {
    // After a sync, with the trash of the upgrade deleted: the sectors
    // this boot wrote to the data partition.
    const STAT: &str = r#"
while [ -n "$(ls /overlay/.reset/trash 2>/dev/null)" ]; do sleep 1; done
sync
for d in /sys/class/block/*; do grep -q PARTNAME=rootfs_data $d/uevent 2>/dev/null && dev=$d; done
fact written "$(awk '{print $7}' $dev/stat)"
dmesg | grep -E 'manifest recorded|identity of' | sed 's/^/T:dmesg=/'
"#;
    // The background job's manifest, timed without the test competing.
    const QUIET: &str = r#"
while [ ! -e /overlay/.upgrade/manifest.0 ]; do sleep 1; done
"#;
    let board = Board::Block;
    let mut out = Vec::new();
    for n in [100usize, 1000, 10_000] {
        let w = Work::new(&format!("upgrade-fig-{n}"));
        let mut imgs = Images::new(&w, board);
        imgs.compressed = true;
        let half = n / 2;
        let t1 = imgs.tree("v1");
        for i in 0..half {
            write(
                &t1,
                &format!("usr/share/many/f{i}"),
                format!("{i}\n").as_bytes(),
            );
        }
        let v1 = imgs.build(&t1, "v1", false);
        write(&t1, "etc/upg/stale", b"stale v2\n");
        let v2 = imgs.build(&t1, "v2", false);
        let storage = board.storage(&w, &v1);
        let b1 = board.boot(
            &w,
            &storage,
            "",
            &format!(
                "{QUIET}
cd /usr/share/many && ls | xargs touch; cd /
mkdir /root/mine; i=0; while [ $i -lt {half} ]; do : > /root/mine/f$i; i=$((i+1)); done
sync
fact copies \"$(ls /overlay/upper/usr/share/many | wc -l) $(ls /root/mine | wc -l)\"
{STAT}"
            ),
        );
        assert_eq!(b1.fact("copies"), format!("{half} {half}"));
        let bg = b1.fact("dmesg");
        board.put(&storage, &v2);
        let up = board.boot(&w, &storage, "", STAT);
        let normal = board.boot(&w, &storage, "", STAT);
        assert!(!normal.has("firmware upgrade: a new image"));
        let ms = |b: &Boot, a: &str, z: &str| (b.time_of(z) - b.time_of(a)) * 1000.0;
        let merge = ms(
            &up,
            "firmware upgrade: a new image",
            "copies of the old image removed",
        );
        let trash = up
            .console
            .lines()
            .find(|l| {
                l.contains("factory reset: trash deleted")
                    || l.contains("the rest goes in the background")
            })
            .unwrap_or("")
            .to_string();
        let stage = up.preinit_ms(Some("upper")) - normal.preinit_ms(Some("upper"));
        let total = up.preinit_ms(None) - normal.preinit_ms(None);
        let sectors = |b: &Boot| b.fact("written").parse::<u64>().unwrap();
        let line = up
            .console
            .lines()
            .find(|l| l.contains("copies of the old image removed"))
            .unwrap()
            .to_string();
        out.push(format!(
            "N={n}: merge {merge:.0} ms; upper stage +{stage:.0} ms, pre-init +{total:.0} ms; written {} KiB (normal boot {} KiB); {line}; {trash}; v1 background: {bg}",
            sectors(&up) / 2,
            sectors(&normal) / 2
        ));
        eprintln!("{}", out.last().unwrap());
    }
    // The identity read of a normal boot, without and with a manifest.
    for ship in [false, true] {
        let w = Work::new(&format!("upgrade-fig-id-{ship}"));
        let imgs = Images::new(&w, board);
        let t = imgs.tree("v1");
        let v1 = imgs.build(&t, "v1", ship);
        let storage = board.storage(&w, &v1);
        let first = board.boot(&w, &storage, "", &format!("{QUIET}\n{STAT}"));
        out.push(format!(
            "demo image's manifest (shipped: {ship}): {}",
            first.fact("dmesg")
        ));
        let b = board.boot(&w, &storage, "overlay.debug", STAT);
        let id = b
            .console
            .lines()
            .find(|l| l.contains("identity of"))
            .unwrap()
            .to_string();
        out.push(format!(
            "identity (manifest shipped: {ship}): {id}; records: {}",
            b.fact("dmesg")
        ));
        eprintln!("{}", out.last().unwrap());
        // The manifest's size for the demo rootfs.
        let m = w.path("demo.manifest");
        manifest(&t, &m);
        out.push(format!(
            "demo rootfs manifest: {} bytes",
            std::fs::metadata(&m).unwrap().len()
        ));
    }
    // And for an image of 3,000 files: the demo rootfs plus packages.
    let w = Work::new("upgrade-fig-3000");
    let imgs = Images::new(&w, board);
    let t = imgs.tree("big");
    let mut files = walkdir_count(&t);
    let mut i = 0;
    while files < 3000 {
        write(
            &t,
            &format!("usr/lib/pkg-{}/lib-file-{i}.so", i / 40),
            format!("contents {i}\n").repeat(i % 50 + 1).as_bytes(),
        );
        i += 1;
        files += 1 + usize::from(i % 40 == 1);
    }
    let m = w.path("big.manifest");
    manifest(&t, &m);
    out.push(format!(
        "manifest of {files} entries: {} bytes",
        std::fs::metadata(&m).unwrap().len()
    ));
    eprintln!("\nFIGURES\n{}", out.join("\n"));
}

/// Entries under `root` (not itself).
fn walkdir_count(root: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(root).unwrap() {
        let e = e.unwrap();
        n += 1;
        if e.file_type().unwrap().is_dir() {
            n += walkdir_count(&e.path());
        }
    }
    n
}
