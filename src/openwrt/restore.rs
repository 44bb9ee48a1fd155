//! `sysupgrade.tgz`: the settings OpenWrt's `sysupgrade` keeps across a
//! firmware upgrade (it leaves the archive at the root of the new image's
//! data filesystem; fstools moves it into `upper/`; OpenWrt's preinit
//! extracts it, `- config restore -`). overlay-init restores it at the
//! first boot that finds it there (or in `upper/`), once the overlay is
//! mounted and before the real init starts:
//!
//! 1. the archive must be a regular file of at most [`MAX_ARCHIVE`];
//! 2. it is copied into a tmpfs of [`STAGING`] mounted on the new root's
//!    `/tmp`, and unpacked there by the image's `gunzip` (chrooted in the new
//!    root): a damaged archive, or one larger than the tmpfs once unpacked
//!    (a gzip bomb), stops there;
//! 3. the tar stream is checked by [`check_tar`] (headers only): device
//!    nodes, FIFOs, pax headers, unknown entry types, `..` in a name, more
//!    than [`MAX_ENTRIES`] entries, sizes that tar implementations read
//!    differently: refused; and its files must fit in half the data
//!    filesystem's free space;
//! 4. the image's `tar` extracts it into the new root, chrooted there: an
//!    absolute name or symlink resolves inside the new root, never into the
//!    pre-init's /dev, /run or the flash (busybox also skips symlinks that
//!    point outside, and strips `/` and `../` prefixes);
//! 5. like OpenWrt's `missing_lines`, the image's users and groups missing
//!    from the restored `/etc/passwd`, `/etc/group`, `/etc/shadow` are
//!    appended (a new image's system users survive an old backup);
//! 6. sync; the archive is removed, the directory fsynced.
//!
//! A power cut before 6 leaves the archive: the next boot restores it again
//! from the start (tar rewrites every file), over a root nobody used since
//! (the real init never ran); after 6 the root is restored and the archive
//! gone. So it is never restored twice over the user's later edits. An
//! archive refused (or whose extraction failed) is renamed
//! `sysupgrade.tgz.failed`, never retried; the boot goes on and the reason
//! is a warning (overlay-status). What is missing from the system (no
//! `/tmp`, no `gunzip` or `tar` in the image) leaves the archive for the
//! next boot, writing nothing.

use crate::reset::boot::PowerCut;
use crate::sys::{Command, MountFlags, Sys};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The archive's name, at the root of the data filesystem or of `upper/`.
pub const ARCHIVE: &str = "sysupgrade.tgz";
/// What an archive that was not restored is renamed to, beside it.
pub const FAILED: &str = "sysupgrade.tgz.failed";
/// The largest archive restored (compressed). Settings are kilobytes.
pub const MAX_ARCHIVE: u64 = 4 << 20;
/// The tmpfs the archive is unpacked in: the archive and its tar stream.
pub const STAGING: &str = "mode=0700,size=16m";
/// The most entries restored.
pub const MAX_ENTRIES: u64 = 10_000;
/// The largest GNU long name (`L`/`K` entries) accepted.
const MAX_LONG_NAME: u64 = 4096;
/// `/etc` files merged as OpenWrt's preinit merges them.
const ACCOUNTS: [&str; 3] = ["/etc/passwd", "/etc/group", "/etc/shadow"];
const MAX_ACCOUNTS: usize = 64 * 1024;
const BLOCK: u64 = 512;

/// Why a tar stream is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TarError {
    /// It ends inside a header or an entry's data.
    Truncated,
    /// A header without the `ustar` magic.
    Magic,
    /// A header whose checksum does not match.
    Checksum,
    /// A number field that is not plain octal (or too large).
    Number,
    /// An entry type not restored: `3` character device, `4` block device,
    /// `6` FIFO, and anything unknown.
    Type(u8),
    /// A pax extended header (`x`, `g`): its fields could rename or resize
    /// entries in ways tar implementations read differently.
    Pax,
    /// A GNU long name over [`MAX_LONG_NAME`] bytes.
    LongName,
    /// A link, a directory or a name ending in `/` with data: tars differ on
    /// whether that data follows.
    Data,
    /// `..` in a name.
    DotDot,
    /// More than [`MAX_ENTRIES`] entries.
    Entries,
    /// A read of the stream failed.
    Read,
}

impl fmt::Display for TarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TarError::Truncated => f.write_str("the tar stream is truncated"),
            TarError::Magic => f.write_str("not a ustar archive"),
            TarError::Checksum => f.write_str("a tar header checksum does not match"),
            TarError::Number => f.write_str("a tar header number is not octal"),
            TarError::Type(t) => match t {
                b'3' | b'4' => f.write_str("it holds a device node"),
                b'6' => f.write_str("it holds a FIFO"),
                t => write!(f, "it holds an entry of unknown type 0x{t:02x}"),
            },
            TarError::Pax => f.write_str("it holds pax extended headers"),
            TarError::LongName => f.write_str("a long name is longer than 4096 bytes"),
            TarError::Data => f.write_str("a link or directory entry carries data"),
            TarError::DotDot => f.write_str("a name holds `..`"),
            TarError::Entries => write!(f, "more than {MAX_ENTRIES} entries"),
            TarError::Read => f.write_str("the tar stream cannot be read"),
        }
    }
}

/// What a checked tar stream holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TarSummary {
    pub entries: u64,
    /// The regular files' bytes.
    pub bytes: u64,
}

/// The bytes of a header field up to its first NUL.
fn cstr(b: &[u8]) -> &[u8] {
    b.split(|&c| c == 0).next().unwrap_or(b)
}

/// A numeric field as busybox reads it (`strtoull(.., 8)`): leading white
/// space, octal digits, then NUL, a space or the field's end. A sign or a
/// base-256 number is refused.
fn octal(f: &[u8]) -> Result<u64, TarError> {
    let mut v: u64 = 0;
    for &b in f.trim_ascii_start() {
        match b {
            b'0'..=b'7' => {
                v = v
                    .checked_mul(8)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    .ok_or(TarError::Number)?
            }
            0 | b' ' => break,
            _ => return Err(TarError::Number),
        }
    }
    Ok(v)
}

fn has_dotdot(name: &[u8]) -> bool {
    name.split(|&c| c == b'/').any(|c| c == b"..")
}

fn field(h: &[u8; 512], at: usize, len: usize) -> &[u8] {
    h.get(at..at + len).unwrap_or_default()
}

/// Checks the tar stream `r` of `len` bytes, header by header (the data is
/// skipped, never read), as busybox's tar will read it: the end is two
/// empty headers or the end of the stream; a GNU long name (`L`, `K`) is
/// the data of its own header. Only regular files, hard and symbolic
/// links and directories pass; see [`TarError`] for the rest.
pub fn check_tar<R: Read + Seek>(r: &mut R, len: u64) -> Result<TarSummary, TarError> {
    let mut sum = TarSummary::default();
    let mut h = [0u8; 512];
    let mut off = 0u64;
    let mut empty = false;
    // A GNU long name read for the next entry: does it end in `/`?
    let mut long: Option<bool> = None;
    loop {
        if off == len {
            return Ok(sum);
        }
        if len - off < BLOCK {
            return Err(TarError::Truncated);
        }
        r.seek(SeekFrom::Start(off))
            .and_then(|_| r.read_exact(&mut h))
            .map_err(|_| TarError::Read)?;
        off += BLOCK;
        let name = cstr(field(&h, 0, 100));
        let prefix = cstr(field(&h, 345, 155));
        if name.is_empty() && prefix.is_empty() && long.is_none() {
            if empty {
                return Ok(sum);
            }
            empty = true;
            continue;
        }
        empty = false;
        if field(&h, 257, 5) != b"ustar" {
            return Err(TarError::Magic);
        }
        let stored = octal(field(&h, 148, 8))?;
        let (mut unsigned, mut signed) = (8 * u64::from(b' '), 8 * i64::from(b' '));
        for (i, &b) in h.iter().enumerate() {
            if !(148..156).contains(&i) {
                unsigned += u64::from(b);
                signed += i64::from(b as i8);
            }
        }
        if stored != unsigned && i64::try_from(stored) != Ok(signed) {
            return Err(TarError::Checksum);
        }
        let size = octal(field(&h, 124, 12))?;
        if has_dotdot(name) || has_dotdot(prefix) {
            return Err(TarError::DotDot);
        }
        let typ = h.get(156).copied().unwrap_or(0);
        let data = match typ {
            b'L' | b'K' => {
                if size > MAX_LONG_NAME {
                    return Err(TarError::LongName);
                }
                let mut n = vec![0u8; size as usize];
                r.read_exact(&mut n).map_err(|_| TarError::Truncated)?;
                let n = cstr(&n);
                if has_dotdot(n) {
                    return Err(TarError::DotDot);
                }
                if typ == b'L' {
                    long = Some(n.ends_with(b"/"));
                }
                size
            }
            0 | b'0' | b'7' => {
                // Old tars (and busybox) take a "file" whose name ends in
                // `/` for a directory, and then no data follows it.
                if long.take().unwrap_or(name.ends_with(b"/")) && size != 0 {
                    return Err(TarError::Data);
                }
                sum.entries += 1;
                sum.bytes += size;
                size
            }
            b'1' | b'2' | b'5' => {
                long = None;
                if size != 0 {
                    return Err(TarError::Data);
                }
                sum.entries += 1;
                0
            }
            b'x' | b'g' => return Err(TarError::Pax),
            t => return Err(TarError::Type(t)),
        };
        if sum.entries > MAX_ENTRIES {
            return Err(TarError::Entries);
        }
        off = data
            .checked_next_multiple_of(BLOCK)
            .and_then(|d| off.checked_add(d))
            .filter(|&o| o <= len)
            .ok_or(TarError::Truncated)?;
    }
}

/// OpenWrt's `missing_lines IMAGE RESTORED`: the lines of `image` whose
/// first `:` field (a user or group name) no line of `restored` has, each
/// ending in a newline (and one before them when `restored` lacks its
/// last).
pub fn missing_lines(image: &str, restored: &str) -> String {
    fn name(l: &str) -> Option<&str> {
        l.split_once(':').map(|(n, _)| n).filter(|n| !n.is_empty())
    }
    let have: Vec<&str> = restored.lines().filter_map(name).collect();
    let mut out = String::new();
    for l in image.lines() {
        if name(l).is_some_and(|n| !have.contains(&n)) {
            out.push_str(l);
            out.push('\n');
        }
    }
    if !out.is_empty() && !restored.is_empty() && !restored.ends_with('\n') {
        out.insert(0, '\n');
    }
    out
}

/// Why an archive is not restored (it is renamed [`FAILED`]).
#[derive(Debug)]
pub enum Why {
    NotRegular,
    TooLarge(u64),
    /// `gunzip` failed with this status.
    Gunzip(i32),
    Tar(TarError),
    NoRoom {
        need: u64,
        free: u64,
    },
    /// `tar -x` failed with this status.
    Extract(i32),
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::NotRegular => f.write_str("not a regular file"),
            Why::TooLarge(n) => write!(f, "{n} bytes, more than {MAX_ARCHIVE}"),
            Why::Gunzip(c) => write!(
                f,
                "gunzip exit {c}: not gzip, damaged, or over 16 MiB unpacked"
            ),
            Why::Tar(e) => e.fmt(f),
            Why::NoRoom { need, free } => write!(
                f,
                "{need} bytes unpacked, over half the {free} bytes free on the flash"
            ),
            Why::Extract(c) => write!(f, "tar exit {c}: the root may be partly restored"),
        }
    }
}

/// What a restore did.
#[derive(Debug)]
pub enum Outcome {
    Restored {
        entries: u64,
        bytes: u64,
        /// Lines of the image's accounts appended.
        merged: usize,
    },
    /// Not restored, never retried: why, and where the archive is now
    /// (`None`: it could not be renamed, and stays).
    Refused { why: Why, kept: Option<String> },
    /// Not restored at this boot (what is missing, and the error); the next
    /// boot tries again.
    Deferred(&'static str, Option<io::Error>),
}

impl Outcome {
    /// Refused or deferred: a warning (console, overlay-status).
    pub fn is_warning(&self) -> bool {
        !matches!(self, Outcome::Restored { .. })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Restored {
                entries,
                bytes,
                merged,
            } => write!(
                f,
                "{ARCHIVE}: settings restored ({entries} entries, {} KiB; {merged} account line(s) of the image added)",
                bytes.div_ceil(1024)
            ),
            Outcome::Refused { why, kept } => {
                write!(f, "{ARCHIVE} not restored: {why}; ")?;
                match kept {
                    Some(k) => write!(f, "it is kept as {k}"),
                    None => f.write_str("it cannot be renamed and stays"),
                }
            }
            Outcome::Deferred(what, err) => {
                write!(f, "{ARCHIVE} not restored at this boot: {what}")?;
                if let Some(e) = err {
                    write!(f, ": {e}")?;
                }
                f.write_str("; the next boot tries again")
            }
        }
    }
}

enum Fail {
    Defer(&'static str, Option<io::Error>),
    Refuse(Why),
}

fn defer(what: &'static str) -> impl FnOnce(io::Error) -> Fail {
    move |e| Fail::Defer(what, Some(e))
}

/// `rename`/`unlink` made durable: the directory fsynced.
fn synced(dir: &Path, r: io::Result<()>) -> io::Result<()> {
    r.and_then(|()| std::fs::File::open(dir)?.sync_all())
}

/// Whether an archive waits to be restored on the data filesystem at
/// `data` (at its root or in its `upper/`): two lstats, read-only.
pub fn waiting(data: &Path) -> bool {
    data.join(ARCHIVE).symlink_metadata().is_ok()
        || data.join("upper").join(ARCHIVE).symlink_metadata().is_ok()
}

/// Restores the archive, if there is one: at the root of the data
/// filesystem mounted read-write at `data`, or in its `upper/`. `newroot`
/// is the overlay (mounted, not yet switched into), `rom` the lower root
/// (its accounts files). `cut` is the power-cut test hook (step
/// `sysupgrade`: #1 after the extraction, #2 after the removal). `None`:
/// no archive (two lstats, nothing written).
pub fn run(
    sys: &dyn Sys,
    data: &Path,
    newroot: &Path,
    rom: &Path,
    cut: &mut PowerCut,
) -> Option<Outcome> {
    // The upper's copy is handled through the overlay (it is `/ARCHIVE`
    // there), never behind its back.
    let (dir, shown) = if data.join(ARCHIVE).symlink_metadata().is_ok() {
        (data, "/overlay/")
    } else if data
        .join("upper")
        .join(ARCHIVE)
        .symlink_metadata()
        .is_ok_and(|m| m.is_file())
    {
        (newroot, "/")
    } else {
        return None;
    };
    crate::info!("{shown}{ARCHIVE}: restoring the settings kept by sysupgrade");
    let archive = dir.join(ARCHIVE);
    let (entries, bytes, merged) = match restore(sys, &archive, data, newroot, rom) {
        Ok(r) => r,
        Err(Fail::Defer(what, err)) => return Some(Outcome::Deferred(what, err)),
        Err(Fail::Refuse(why)) => {
            let kept = synced(dir, std::fs::rename(&archive, dir.join(FAILED)))
                .ok()
                .map(|()| format!("{shown}{FAILED}"));
            return Some(Outcome::Refused { why, kept });
        }
    };
    cut.changed("sysupgrade");
    sys.sync();
    if let Err(e) = synced(dir, std::fs::remove_file(&archive)) {
        return Some(Outcome::Deferred(
            "restored, but it cannot be removed (it would be restored again)",
            Some(e),
        ));
    }
    cut.changed("sysupgrade");
    Some(Outcome::Restored {
        entries,
        bytes,
        merged,
    })
}

/// Steps 1 to 5 (the module doc), the staging tmpfs unmounted after.
fn restore(
    sys: &dyn Sys,
    archive: &Path,
    data: &Path,
    newroot: &Path,
    rom: &Path,
) -> Result<(u64, u64, usize), Fail> {
    // Never opened unless regular: a FIFO would block, a device node's open
    // has side effects.
    let m = archive
        .symlink_metadata()
        .map_err(defer("cannot stat it"))?;
    if !m.is_file() {
        return Err(Fail::Refuse(Why::NotRegular));
    }
    if m.len() > MAX_ARCHIVE {
        return Err(Fail::Refuse(Why::TooLarge(m.len())));
    }
    let src = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
        .open(archive)
        .map_err(defer("cannot open it"))?;
    let tmp = newroot.join("tmp");
    if !tmp.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        return Err(Fail::Defer(
            "the new root has no /tmp directory to unpack it in",
            None,
        ));
    }
    let flags = MountFlags {
        nosuid: true,
        nodev: true,
        noexec: true,
        ..MountFlags::NONE
    };
    sys.mount("tmpfs", &tmp, "tmpfs", flags, STAGING)
        .map_err(defer(
            "cannot mount the staging tmpfs on the new root's /tmp",
        ))?;
    let r = staged(sys, src, data, newroot, &tmp, rom);
    if sys.unmount(&tmp, false).is_err() {
        let _ = sys.unmount(&tmp, true);
    }
    r
}

fn in_root(newroot: &Path, argv: &[&str]) -> Command {
    Command {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        chroot: Some(newroot.to_path_buf()),
    }
}

/// Runs the image's `argv` chrooted in the new root: 0, or why not.
fn run_in(
    sys: &dyn Sys,
    newroot: &Path,
    argv: &[&str],
    failed: fn(i32) -> Why,
) -> Result<(), Fail> {
    match sys.run(&in_root(newroot, argv)) {
        Ok(0) => Ok(()),
        Ok(c) => Err(Fail::Refuse(failed(c))),
        Err(e) => Err(Fail::Defer("cannot run the image's gunzip or tar", Some(e))),
    }
}

fn staged(
    sys: &dyn Sys,
    mut src: std::fs::File,
    data: &Path,
    newroot: &Path,
    tmp: &Path,
    rom: &Path,
) -> Result<(u64, u64, usize), Fail> {
    let mut dst = std::fs::File::create_new(tmp.join("sysupgrade.tar.gz"))
        .map_err(defer("cannot copy it to the staging tmpfs"))?;
    let mut buf = [0u8; 4096];
    loop {
        match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => dst
                .write_all(buf.get(..n).unwrap_or_default())
                .map_err(defer("cannot copy it to the staging tmpfs"))?,
            Err(e) => return Err(Fail::Defer("cannot read it", Some(e))),
        }
    }
    drop(dst);
    run_in(
        sys,
        newroot,
        &["gunzip", "/tmp/sysupgrade.tar.gz"],
        Why::Gunzip,
    )?;
    let mut tar = std::fs::File::open(tmp.join("sysupgrade.tar"))
        .map_err(defer("cannot open the unpacked stream"))?;
    let len = tar.metadata().map(|m| m.len()).unwrap_or(0);
    let sum = check_tar(&mut tar, len).map_err(|e| Fail::Refuse(Why::Tar(e)))?;
    let free = sys.fs_space(data).map(|(free, _)| free).unwrap_or(0);
    if sum.bytes > free / 2 {
        return Err(Fail::Refuse(Why::NoRoom {
            need: sum.bytes,
            free,
        }));
    }
    let images: Vec<Option<Vec<u8>>> = ACCOUNTS
        .iter()
        .map(|f| {
            crate::fsio::read_in_root(rom, f, MAX_ACCOUNTS)
                .ok()
                .flatten()
        })
        .collect();
    run_in(
        sys,
        newroot,
        &["tar", "-x", "-f", "/tmp/sysupgrade.tar", "-C", "/"],
        Why::Extract,
    )?;
    let mut merged = 0;
    for (file, image) in ACCOUNTS.iter().zip(images) {
        let Some(image) = image.and_then(|b| String::from_utf8(b).ok()) else {
            continue;
        };
        let Ok(Some(now)) = crate::fsio::read_in_root(newroot, file, MAX_ACCOUNTS) else {
            continue;
        };
        let add = missing_lines(&image, &String::from_utf8_lossy(&now));
        if add.is_empty() {
            continue;
        }
        // Resolved inside the new root, as the restored system will.
        let appended = rustix::fs::open(
            newroot,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .and_then(|root| {
            rustix::fs::openat2(
                &root,
                file.trim_start_matches('/'),
                OFlags::WRONLY
                    | OFlags::APPEND
                    | OFlags::NOFOLLOW
                    | OFlags::NONBLOCK
                    | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT,
            )
        })
        .map_err(io::Error::from)
        .and_then(|fd| std::fs::File::from(fd).write_all(add.as_bytes()));
        match appended {
            Ok(()) => merged += add.lines().filter(|l| !l.is_empty()).count(),
            Err(e) => crate::warn!("{file}: cannot add the image's accounts: {e}"),
        }
    }
    Ok((sum.entries, sum.bytes, merged))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    /// A ustar header (GNU magic when `gnu`), checksum filled in.
    pub(crate) fn header(name: &[u8], typ: u8, size: u64) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = typ;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        seal(&mut h);
        h
    }

    pub(crate) fn seal(h: &mut [u8; 512]) {
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }

    /// A tar stream: each (name, type, data), then the end marker.
    pub(crate) fn tar(entries: &[(&[u8], u8, &[u8])]) -> Vec<u8> {
        let mut v = Vec::new();
        for (name, typ, data) in entries {
            v.extend_from_slice(&header(name, *typ, data.len() as u64));
            v.extend_from_slice(data);
            v.resize(v.len().next_multiple_of(512), 0);
        }
        v.resize(v.len() + 1024, 0);
        v
    }

    fn check(v: &[u8]) -> Result<TarSummary, TarError> {
        check_tar(&mut Cursor::new(v), v.len() as u64)
    }

    #[test]
    fn a_settings_archive_passes() {
        let v = tar(&[
            (b"etc/", b'5', b""),
            (b"etc/config/network", b'0', b"config interface 'lan'\n"),
            (b"etc/rc.d/S10boot", b'2', b""),
            (b"etc/hard", b'1', b""),
            (b"etc/old-style", 0, b"x"),
        ]);
        assert_eq!(
            check(&v),
            Ok(TarSummary {
                entries: 5,
                bytes: 24
            })
        );
        // The end marker is optional (busybox stops at the stream's end).
        assert_eq!(
            check(&v[..v.len() - 1024]),
            Ok(TarSummary {
                entries: 5,
                bytes: 24
            })
        );
        // What follows the end marker is never read.
        let mut more = v.clone();
        more.extend_from_slice(&header(b"dev/evil", b'4', 0));
        assert_eq!(check(&more).unwrap().entries, 5);
        // One empty header alone is not the end (busybox goes on).
        let mut gap = tar(&[(b"a", b'0', b"1")]);
        gap.truncate(1024);
        gap.extend_from_slice(&[0; 512]);
        gap.extend_from_slice(&tar(&[(b"dev/null", b'3', b"")]));
        assert_eq!(check(&gap), Err(TarError::Type(b'3')));
    }

    #[test]
    fn a_gnu_long_name_is_read() {
        let long = [b'a'; 150];
        let mut name = long.to_vec();
        name.push(0);
        let v = tar(&[(b"././@LongLink", b'L', &name), (b"aaaa", b'0', b"data")]);
        assert_eq!(
            check(&v),
            Ok(TarSummary {
                entries: 1,
                bytes: 4
            })
        );
        let v = tar(&[
            (b"././@LongLink", b'L', b"x/../../etc\0"),
            (b"x", b'0', b""),
        ]);
        assert_eq!(check(&v), Err(TarError::DotDot));
        let v = tar(&[(b"././@LongLink", b'L', &[b'a'; 5000]), (b"x", b'0', b"")]);
        assert_eq!(check(&v), Err(TarError::LongName));
        // A long name ending in / makes a "file" a directory: no data then.
        let v = tar(&[(b"././@LongLink", b'L', b"d/\0"), (b"d", b'0', b"data")]);
        assert_eq!(check(&v), Err(TarError::Data));
    }

    /// Hostile or damaged streams, each refused with its reason.
    #[test]
    fn hostile_streams_are_refused() {
        let cases: Vec<(Vec<u8>, TarError)> = vec![
            (tar(&[(b"dev/sda", b'4', b"")]), TarError::Type(b'4')),
            (tar(&[(b"etc/tty", b'3', b"")]), TarError::Type(b'3')),
            (tar(&[(b"etc/fifo", b'6', b"")]), TarError::Type(b'6')),
            (tar(&[(b"sparse", b'S', b"")]), TarError::Type(b'S')),
            (
                tar(&[(b"PaxHeader", b'x', b"30 path=../../etc/passwd\n")]),
                TarError::Pax,
            ),
            (tar(&[(b"../etc/passwd", b'0', b"x")]), TarError::DotDot),
            (tar(&[(b"etc/../../x", b'0', b"x")]), TarError::DotDot),
            (tar(&[(b"etc/l", b'2', b"hidden header")]), TarError::Data),
            (tar(&[(b"etc/d/", b'0', b"data")]), TarError::Data),
            (
                tar(&[(b"x", b'0', b"data")])[..700].to_vec(),
                TarError::Truncated,
            ),
            (
                tar(&[(b"x", b'0', b"data")])[..300].to_vec(),
                TarError::Truncated,
            ),
            (b"not a tar at all, just text".repeat(40), TarError::Magic),
        ];
        for (v, want) in cases {
            assert_eq!(check(&v), Err(want));
        }
        let mut bad = tar(&[(b"x", b'0', b"data")]);
        bad[0] = b'y';
        assert_eq!(check(&bad), Err(TarError::Checksum));
        // Size fields tars read differently: signs, base-256, garbage.
        for size in [
            &b"-0000000001\0"[..],
            b"\x80\0\0\0\0\0\0\0\0\0\x10\0",
            b"00000000z01\0",
        ] {
            let mut h = header(b"x", b'0', 0);
            h[124..136].copy_from_slice(size);
            seal(&mut h);
            let mut v = h.to_vec();
            v.resize(2048, 0);
            assert_eq!(check(&v), Err(TarError::Number), "{size:?}");
        }
        // A size past the stream's end.
        let mut h = header(b"x", b'0', 0);
        h[124..136].copy_from_slice(b"77777777777\0");
        seal(&mut h);
        assert_eq!(check(&h), Err(TarError::Truncated));
    }

    #[test]
    fn entries_are_bounded() {
        let one = tar(&[(b"f", b'0', b"")]);
        let mut v = Vec::new();
        for _ in 0..=MAX_ENTRIES {
            v.extend_from_slice(&one[..512]);
        }
        assert_eq!(check(&v), Err(TarError::Entries));
        v.truncate(512 * MAX_ENTRIES as usize);
        assert_eq!(check(&v).unwrap().entries, MAX_ENTRIES);
    }

    #[test]
    fn the_images_accounts_are_kept() {
        let image = "root:x:0:0:root:/root:/bin/ash\ndaemon:*:1:1::/var:/bin/false\nntp:x:123:123:ntp:/var/run/ntp:/bin/false\n";
        let restored = "root:$1$abc:0:0:root:/root:/bin/ash\ndaemon:*:1:1::/var:/bin/false";
        assert_eq!(
            missing_lines(image, restored),
            "\nntp:x:123:123:ntp:/var/run/ntp:/bin/false\n"
        );
        assert_eq!(missing_lines(image, image), "");
        assert_eq!(missing_lines("\nnot a line\n:empty\n", ""), "");
        assert_eq!(missing_lines("a:1\n", ""), "a:1\n");
    }

    /// The flow through a recording `Sys`; gunzip and tar are the host's,
    /// run by the fake when the boot asks for them (without the chroot).
    mod flow {
        use super::super::*;
        use super::tar;
        use crate::config::Config;
        use crate::sys::fake::{Call, FakeSys};
        use crate::testutil::TempDir;

        struct T {
            d: TempDir,
            sys: FakeSys,
        }

        impl T {
            fn new(tag: &str) -> T {
                let d = TempDir::new(tag);
                for dir in ["data/upper", "root/tmp", "root/etc", "rom/etc"] {
                    std::fs::create_dir_all(d.path().join(dir)).unwrap();
                }
                d.write(
                    "rom/etc/passwd",
                    "root:x:0:0::/root:/bin/sh\nntp:x:123:123::/:/bin/false\n",
                );
                let sys = FakeSys::default();
                let root = d.path().join("root");
                sys.on_call(move |c| {
                    let Call::Run(cmd) = c else { return };
                    let arg = |i: usize| root.join(cmd.argv[i].trim_start_matches('/'));
                    let host = match cmd.argv[0].as_str() {
                        "gunzip" => std::process::Command::new("gunzip").arg(arg(1)).status(),
                        "tar" => std::process::Command::new("tar")
                            .arg("-xf")
                            .arg(arg(3))
                            .arg("-C")
                            .arg(&root)
                            .status(),
                        _ => return,
                    };
                    assert!(host.unwrap().success());
                });
                T { d, sys }
            }

            fn p(&self, rel: &str) -> std::path::PathBuf {
                self.d.path().join(rel)
            }

            /// Puts `entries` as a gzipped tar at `rel`.
            fn archive(&self, rel: &str, entries: &[(&[u8], u8, &[u8])]) {
                let raw = self.p("raw.tar");
                std::fs::write(&raw, tar(entries)).unwrap();
                let gz = std::process::Command::new("gzip")
                    .arg("-nc")
                    .arg(&raw)
                    .output()
                    .unwrap();
                std::fs::write(self.p(rel), gz.stdout).unwrap();
            }

            fn run(&self) -> Option<Outcome> {
                let cfg = Config::default();
                let mut cut = PowerCut::new(&self.sys, &cfg);
                run(
                    &self.sys,
                    &self.p("data"),
                    &self.p("root"),
                    &self.p("rom"),
                    &mut cut,
                )
            }

            fn ran(&self) -> Vec<String> {
                self.sys
                    .calls()
                    .into_iter()
                    .filter_map(|c| match c {
                        Call::Run(cmd) => Some(cmd.argv.join(" ")),
                        _ => None,
                    })
                    .collect()
            }
        }

        const SETTINGS: [(&[u8], u8, &[u8]); 3] = [
            (b"etc/config/", b'5', b""),
            (b"etc/config/network", b'0', b"config interface 'lan'\n"),
            (b"etc/passwd", b'0', b"root:$1$x:0:0::/root:/bin/sh\n"),
        ];

        #[test]
        fn nothing_to_restore_touches_nothing() {
            let t = T::new("restore-none");
            assert!(t.run().is_none());
            assert_eq!(t.sys.calls(), []);
        }

        #[test]
        fn the_archive_is_restored_then_removed() {
            let t = T::new("restore-ok");
            t.archive("data/sysupgrade.tgz", &SETTINGS);
            let o = t.run().unwrap();
            assert!(!o.is_warning(), "{o}");
            assert_eq!(
                o.to_string(),
                "sysupgrade.tgz: settings restored (3 entries, 1 KiB; 1 account line(s) of the image added)"
            );
            assert_eq!(
                std::fs::read_to_string(t.p("root/etc/config/network")).unwrap(),
                "config interface 'lan'\n"
            );
            assert_eq!(
                std::fs::read_to_string(t.p("root/etc/passwd")).unwrap(),
                "root:$1$x:0:0::/root:/bin/sh\nntp:x:123:123::/:/bin/false\n",
                "the image's new user is kept"
            );
            assert!(!t.p("data/sysupgrade.tgz").exists());
            assert!(!t.p("data/sysupgrade.tgz.failed").exists());
            assert_eq!(
                t.ran(),
                [
                    "gunzip /tmp/sysupgrade.tar.gz",
                    "tar -x -f /tmp/sysupgrade.tar -C /"
                ]
            );
            let calls = t.sys.calls();
            assert!(calls.iter().all(|c| match c {
                Call::Run(cmd) => cmd.chroot.as_deref() == Some(t.p("root").as_path()),
                _ => true,
            }));
            let staging = t.p("root/tmp");
            assert!(matches!(&calls[0], Call::Mount { target, fstype, data, .. }
                if *target == staging && fstype == "tmpfs" && data == STAGING));
            let unmount = calls
                .iter()
                .position(|c| *c == Call::Unmount(staging.clone()));
            let sync = calls.iter().position(|c| *c == Call::Sync);
            assert!(unmount.is_some() && unmount < sync, "{calls:?}");
        }

        #[test]
        fn the_uppers_copy_is_restored_through_the_overlay() {
            let t = T::new("restore-upper");
            t.archive("data/upper/sysupgrade.tgz", &SETTINGS);
            // The overlay shows the upper's file at its root.
            std::fs::copy(t.p("data/upper/sysupgrade.tgz"), t.p("root/sysupgrade.tgz")).unwrap();
            assert!(!t.run().unwrap().is_warning());
            assert!(t.p("root/etc/config/network").exists());
            assert!(
                !t.p("root/sysupgrade.tgz").exists(),
                "removed through the overlay"
            );
        }

        #[test]
        fn a_hostile_archive_is_refused_before_extraction_and_kept_aside() {
            let t = T::new("restore-hostile");
            t.archive(
                "data/sysupgrade.tgz",
                &[
                    (b"etc/config/network", b'0', b"x"),
                    (b"dev/mtdblock2", b'4', b""),
                ],
            );
            let o = t.run().unwrap();
            assert_eq!(
                o.to_string(),
                "sysupgrade.tgz not restored: it holds a device node; it is kept as /overlay/sysupgrade.tgz.failed"
            );
            assert!(o.is_warning());
            assert_eq!(
                t.ran(),
                ["gunzip /tmp/sysupgrade.tar.gz"],
                "never extracted"
            );
            assert!(!t.p("root/etc/config/network").exists());
            assert!(t.p("data/sysupgrade.tgz.failed").is_file());
            assert!(!t.p("data/sysupgrade.tgz").exists());
            // Refused once: the next boot has nothing to do.
            assert!(t.run().is_none());
        }

        #[test]
        fn refusals() {
            // Not gzip (or a bomb: gunzip fails on the full tmpfs).
            // (the host's gunzip runs on a good archive; its status is forced)
            let t = T::new("restore-gunzip");
            t.sys.run_results.borrow_mut().push(1);
            t.archive("data/sysupgrade.tgz", &SETTINGS);
            assert!(t.run().unwrap().to_string().contains("gunzip exit 1: "));
            assert!(t.p("data/sysupgrade.tgz.failed").exists());

            // Too large for the data filesystem's free space.
            let t = T::new("restore-room");
            t.archive("data/sysupgrade.tgz", &SETTINGS);
            t.sys.space.set((40, 1 << 20));
            assert!(t
                .run()
                .unwrap()
                .to_string()
                .contains("over half the 40 bytes free"));
            assert_eq!(t.ran().len(), 1, "not extracted");

            // A symlink, and an archive over the limit.
            let t = T::new("restore-link");
            std::os::unix::fs::symlink("/dev/mtd2", t.p("data/sysupgrade.tgz")).unwrap();
            assert!(t.run().unwrap().to_string().contains("not a regular file"));
            assert!(t
                .p("data/sysupgrade.tgz.failed")
                .symlink_metadata()
                .unwrap()
                .is_symlink());
            let t = T::new("restore-big");
            let f = std::fs::File::create(t.p("data/sysupgrade.tgz")).unwrap();
            f.set_len(MAX_ARCHIVE + 1).unwrap();
            assert!(t
                .run()
                .unwrap()
                .to_string()
                .contains("bytes, more than 4194304"));
            assert_eq!(t.sys.calls(), [], "nothing mounted, nothing run");
        }

        /// What the system lacks is no reason to drop the user's settings:
        /// the archive stays for the next boot, and nothing is written.
        #[test]
        fn a_missing_tmp_or_tool_defers() {
            let t = T::new("restore-notmp");
            t.archive("data/sysupgrade.tgz", &SETTINGS);
            std::fs::remove_dir(t.p("root/tmp")).unwrap();
            std::os::unix::fs::symlink("/run", t.p("root/tmp")).unwrap();
            let o = t.run().unwrap();
            assert_eq!(
                o.to_string(),
                "sysupgrade.tgz not restored at this boot: the new root has no /tmp directory to unpack it in; the next boot tries again"
            );
            assert_eq!(t.sys.calls(), [], "no mount through the symlink");
            assert!(t.p("data/sysupgrade.tgz").exists());

            let t = T::new("restore-notar");
            t.archive("data/sysupgrade.tgz", &SETTINGS);
            t.sys.fail_when(
                2,
                |c| matches!(c, Call::Run(cmd) if cmd.argv[0] == "gunzip"),
            );
            assert!(t.run().unwrap().to_string().starts_with(
                "sysupgrade.tgz not restored at this boot: cannot run the image's gunzip or tar: "
            ));
            assert!(t.p("data/sysupgrade.tgz").exists());
            assert!(
                t.sys.calls().contains(&Call::Unmount(t.p("root/tmp"))),
                "unmounted"
            );
        }
    }
}
