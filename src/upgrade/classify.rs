//! Classifying one entry of the upper against the old image's manifest and
//! the new image (pure: facts in, verdict out).
//!
//! | upper entry | old image | new image | class |
//! | --- | --- | --- | --- |
//! | equal to the old version | has it | any | removed (unchanged copy; the new version shows) |
//! | equal to the new version | any | has it | removed (same as the new image) |
//! | differs (contents, or only mode/owner) | has it | unchanged | kept (modified / mode, owner) |
//! | differs | has it | changed or removed | conflict (the new version is in the lower) |
//! | anything | has not | has not | kept (added) |
//! | anything | has not | has it, different | conflict (both added it) |
//! | whiteout (char 0/0) | has it | unchanged | kept (deleted) |
//! | whiteout | has it | changed | conflict (deleted; the new image changed it) |
//! | whiteout | any | has not | removed (it hides nothing any more) |
//! | opaque directory | | adds files in it | conflict (it hides them) |
//! | opaque directory | | adds nothing | kept (opaque) |
//! | below an opaque or renamed directory | | | kept (the lowers never show there) |
//! | directory, mode/owner as the old one's | has it | | a container: removed once empty, else given the new mode/owner |
//! | hard link (nlink > 1) | | | kept or conflict, never removed: another name shares it |
//! | metacopy (data still in the lower) | | | compared by mode and owner only |
//! | no old manifest | | | kept; those that shadow a file of the new image are said |
//!
//! Directories, symlinks, devices and FIFOs are compared as what they are
//! (type, mode, owner, target, device number), never by what they contain.

use super::manifest::{Kind, Meta};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Removed,
    Kept,
    Conflict,
}

impl Class {
    pub fn word(self) -> &'static str {
        match self {
            Class::Removed => "removed",
            Class::Kept => "kept",
            Class::Conflict => "conflict",
        }
    }
}

/// What the entry is to the user: the first of the words in parentheses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Equal to the old image's version: a stale copy.
    Unchanged,
    /// Equal to the new image's version.
    SameAsNew,
    /// A whiteout of something no lower has.
    Redundant,
    /// Not in the old image.
    Added,
    /// Contents (or type) differ from the old version.
    Modified,
    /// Only mode or owner differ from the old version.
    ModeOwner,
    /// A whiteout: the user deleted it.
    Deleted,
    /// An opaque directory: the user replaced a directory of the lowers.
    Opaque,
    /// Below an opaque or renamed directory: all the user's.
    Inside,
    /// A directory renamed in the overlay (`trusted.overlay.redirect`).
    Renamed,
    /// A file with other names (nlink > 1).
    HardLink,
    /// No old manifest: unknown whether the user changed it.
    Unknown,
}

impl Why {
    pub fn words(self) -> &'static str {
        match self {
            Why::Unchanged => "unchanged copy",
            Why::SameAsNew => "same as the new image",
            Why::Redundant => "deletion of something no longer there",
            Why::Added => "added",
            Why::Modified => "modified",
            Why::ModeOwner => "mode or owner changed",
            Why::Deleted => "deleted",
            Why::Opaque => "opaque directory",
            Why::Inside => "in a directory of the user's",
            Why::Renamed => "renamed directory",
            Why::HardLink => "hard link",
            Why::Unknown => "no old manifest",
        }
    }
}

/// What the new image did to the path, as far as the verdict needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum News {
    /// Nothing to say (unchanged, or it does not matter).
    None,
    /// The new image changed it; its version is in the lower.
    Changed,
    /// The new image does not have it any more.
    Removed,
    /// The new image adds it (the old one had none); its version is in the lower.
    Added,
    /// Opaque directory: the new image adds this many entries in it.
    AddsInside(u32),
    /// No old manifest: the new image has a different version; this one
    /// shadows it.
    Shadows,
}

/// What the merge does with the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    /// Moved to the trash.
    Remove,
    /// A directory mirroring the old image's: removed if nothing is left in
    /// it once its contents are handled; otherwise it gets the new image's
    /// mode and owner (when the new image has it as a directory).
    Container,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `None`: not listed (a directory that only holds other entries).
    pub class: Option<Class>,
    pub why: Why,
    pub news: News,
    pub action: Action,
}

/// What is known of the upper entry.
#[derive(Clone, Debug)]
pub struct Upper<'a> {
    /// Files: `crc` read when the old or new version has the same size.
    pub meta: &'a Meta,
    pub nlink: u64,
    /// Directory with `trusted.overlay.opaque=y`.
    pub opaque: bool,
    /// `trusted.overlay.redirect`: a renamed directory, or a metacopy file
    /// whose data lives at another path.
    pub redirect: bool,
    /// `trusted.overlay.metacopy`: a metadata-only copy, data in the lower.
    pub metacopy: bool,
}

/// The old image's entry at the path.
#[derive(Clone, Copy, Debug)]
pub enum Old<'a> {
    /// No usable old manifest (say why elsewhere): nothing is known.
    NoManifest,
    Absent,
    Has(&'a Meta),
}

/// Whether the contents of the upper file must be read (its CRC) for the
/// verdict: a regular file, not a metacopy, with an old or new version of
/// the same size. Everything else is decided without reading it.
pub fn needs_crc(u: &Upper, old: Old, new: Option<&Meta>) -> bool {
    let same_size = |m: &Meta| m.kind == Kind::File && m.size == u.meta.size;
    u.meta.kind == Kind::File
        && !u.metacopy
        && u.nlink <= 1
        && (matches!(old, Old::Has(o) if same_size(o)) || new.is_some_and(same_size))
}

fn verdict(class: Class, why: Why, news: News, action: Action) -> Verdict {
    Verdict {
        class: Some(class),
        why,
        news,
        action,
    }
}

/// A user change: kept if the new image left the old version alone,
/// a conflict otherwise.
fn user_change(why: Why, o: &Meta, new: Option<&Meta>) -> Verdict {
    match new {
        Some(n) if n.same(o) => verdict(Class::Kept, why, News::None, Action::None),
        Some(_) => verdict(Class::Conflict, why, News::Changed, Action::None),
        None => verdict(Class::Conflict, why, News::Removed, Action::None),
    }
}

/// The verdict on one upper entry. `inside`: an ancestor directory is
/// opaque or renamed. `new_adds`: for an opaque directory, how many
/// entries the new image has directly in it that the old one had not
/// (without an old manifest: all the new image has there).
pub fn classify(u: &Upper, inside: bool, old: Old, new: Option<&Meta>, new_adds: u32) -> Verdict {
    let m = u.meta;
    if inside {
        return verdict(Class::Kept, Why::Inside, News::None, Action::None);
    }
    if m.is_whiteout() {
        return match (old, new) {
            (_, None) => verdict(Class::Removed, Why::Redundant, News::None, Action::Remove),
            (Old::NoManifest, Some(_)) => {
                verdict(Class::Kept, Why::Deleted, News::None, Action::None)
            }
            (Old::Absent, Some(_)) => {
                verdict(Class::Conflict, Why::Deleted, News::Added, Action::None)
            }
            (Old::Has(o), n) => user_change(Why::Deleted, o, n),
        };
    }
    if m.kind == Kind::Dir {
        if u.redirect {
            return verdict(Class::Kept, Why::Renamed, News::None, Action::None);
        }
        if u.opaque {
            return match (old, new_adds) {
                (_, 0) => verdict(Class::Kept, Why::Opaque, News::None, Action::None),
                (Old::NoManifest, n) => {
                    verdict(Class::Kept, Why::Opaque, News::AddsInside(n), Action::None)
                }
                (_, n) => verdict(
                    Class::Conflict,
                    Why::Opaque,
                    News::AddsInside(n),
                    Action::None,
                ),
            };
        }
        let container = Verdict {
            class: None,
            why: Why::Unchanged,
            news: News::None,
            action: Action::Container,
        };
        return match (old, new) {
            (Old::NoManifest, Some(n)) if n.kind != Kind::Dir => {
                verdict(Class::Kept, Why::Unknown, News::Shadows, Action::None)
            }
            (Old::NoManifest, _) => Verdict {
                action: Action::None,
                ..container
            },
            (Old::Absent, Some(n)) if n.kind != Kind::Dir => {
                verdict(Class::Conflict, Why::Added, News::Added, Action::None)
            }
            // A directory the user made; if the new image makes one too,
            // the two merge in the overlay: not a conflict.
            (Old::Absent, _) => verdict(Class::Kept, Why::Added, News::None, Action::None),
            (Old::Has(o), _) if o.kind == Kind::Dir && m.same_mode_owner(o) => container,
            (Old::Has(_), Some(n)) if n.kind == Kind::Dir && m.same_mode_owner(n) => container,
            (Old::Has(o), n) if o.kind == Kind::Dir => user_change(Why::ModeOwner, o, n),
            (Old::Has(o), n) => user_change(Why::Modified, o, n),
        };
    }
    if m.kind == Kind::File && u.nlink > 1 {
        return match old {
            Old::Has(o) => user_change(Why::HardLink, o, new),
            _ => verdict(Class::Kept, Why::HardLink, News::None, Action::None),
        };
    }
    if u.metacopy {
        return match old {
            Old::Has(o) if !u.redirect && o.kind == Kind::File && m.same_mode_owner(o) => {
                verdict(Class::Removed, Why::Unchanged, News::None, Action::Remove)
            }
            Old::Has(o) => user_change(Why::ModeOwner, o, new),
            _ => verdict(Class::Kept, Why::ModeOwner, News::None, Action::None),
        };
    }
    let same_as_new = new.is_some_and(|n| m.same(n));
    match old {
        Old::NoManifest => {
            let news = if new.is_some() && !same_as_new {
                News::Shadows
            } else {
                News::None
            };
            let why = if same_as_new {
                Why::SameAsNew
            } else {
                Why::Unknown
            };
            verdict(Class::Kept, why, news, Action::None)
        }
        Old::Absent if same_as_new => {
            verdict(Class::Removed, Why::SameAsNew, News::None, Action::Remove)
        }
        Old::Absent if new.is_some() => {
            verdict(Class::Conflict, Why::Added, News::Added, Action::None)
        }
        Old::Absent => verdict(Class::Kept, Why::Added, News::None, Action::None),
        Old::Has(o) if m.same(o) => {
            verdict(Class::Removed, Why::Unchanged, News::None, Action::Remove)
        }
        Old::Has(_) if same_as_new => {
            verdict(Class::Removed, Why::SameAsNew, News::None, Action::Remove)
        }
        Old::Has(o) if m.same_content(o) => user_change(Why::ModeOwner, o, new),
        Old::Has(o) => user_change(Why::Modified, o, new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upgrade::manifest::tests::{dir, file, link};

    fn up(meta: &Meta) -> Upper<'_> {
        Upper {
            meta,
            nlink: 1,
            opaque: false,
            redirect: false,
            metacopy: false,
        }
    }

    fn whiteout() -> Meta {
        let mut m = file("x", b"").meta;
        m.kind = Kind::Char;
        m.mode = 0;
        m.size = 0;
        m.crc = None;
        m
    }

    fn chmod(mut m: Meta, mode: u32) -> Meta {
        m.mode = mode;
        m
    }

    fn v(class: Option<Class>, why: Why, news: News, action: Action) -> Verdict {
        Verdict {
            class,
            why,
            news,
            action,
        }
    }

    use Action as A;
    use Class::*;
    use News as N;

    /// The table of the module doc, row by row, for regular files.
    #[test]
    fn files() {
        let v1 = file("f", b"version 1").meta;
        let v2 = file("f", b"version 2").meta;
        let mine = file("f", b"my edit!!").meta;
        let v1_0600 = chmod(v1.clone(), 0o600);
        #[rustfmt::skip]
        let table: &[(&Meta, Old, Option<&Meta>, Verdict)] = &[
            // stale copies go, whatever the new image did
            (&v1, Old::Has(&v1), Some(&v1), v(Some(Removed), Why::Unchanged, N::None, A::Remove)),
            (&v1, Old::Has(&v1), Some(&v2), v(Some(Removed), Why::Unchanged, N::None, A::Remove)),
            (&v1, Old::Has(&v1), None, v(Some(Removed), Why::Unchanged, N::None, A::Remove)),
            // a user's edit of a file the new image left alone stays
            (&mine, Old::Has(&v1), Some(&v1), v(Some(Kept), Why::Modified, N::None, A::None)),
            // ... of a file the new image changed or removed: conflict
            (&mine, Old::Has(&v1), Some(&v2), v(Some(Conflict), Why::Modified, N::Changed, A::None)),
            (&mine, Old::Has(&v1), None, v(Some(Conflict), Why::Modified, N::Removed, A::None)),
            // the user's version is what the new image has: nothing lost by removing it
            (&v2, Old::Has(&v1), Some(&v2), v(Some(Removed), Why::SameAsNew, N::None, A::Remove)),
            // mode-only copy-up
            (&v1_0600, Old::Has(&v1), Some(&v1), v(Some(Kept), Why::ModeOwner, N::None, A::None)),
            (&v1_0600, Old::Has(&v1), Some(&v2), v(Some(Conflict), Why::ModeOwner, N::Changed, A::None)),
            // files the old image did not have
            (&mine, Old::Absent, None, v(Some(Kept), Why::Added, N::None, A::None)),
            (&mine, Old::Absent, Some(&v2), v(Some(Conflict), Why::Added, N::Added, A::None)),
            (&v2, Old::Absent, Some(&v2), v(Some(Removed), Why::SameAsNew, N::None, A::Remove)),
            // no old manifest: everything stays, shadows are said
            (&v1, Old::NoManifest, Some(&v2), v(Some(Kept), Why::Unknown, N::Shadows, A::None)),
            (&v1, Old::NoManifest, None, v(Some(Kept), Why::Unknown, N::None, A::None)),
            (&v2, Old::NoManifest, Some(&v2), v(Some(Kept), Why::SameAsNew, N::None, A::None)),
        ];
        for (i, (m, old, new, want)) in table.iter().enumerate() {
            assert_eq!(classify(&up(m), false, *old, *new, 0), *want, "row {i}");
        }
    }

    #[test]
    fn unread_contents_are_never_a_stale_copy() {
        let v1 = file("f", b"version 1").meta;
        let mut unread = v1.clone();
        unread.crc = None;
        assert!(needs_crc(&up(&unread), Old::Has(&v1), None));
        let got = classify(&up(&unread), false, Old::Has(&v1), Some(&v1), 0);
        assert_eq!(got.class, Some(Kept), "unread is treated as changed: kept");
        // Different sizes: no need to read.
        let big = file("f", b"a much longer version").meta;
        assert!(!needs_crc(&up(&big), Old::Has(&v1), Some(&v1)));
        assert!(needs_crc(&up(&big), Old::Absent, Some(&big)));
        let d = dir("d").meta;
        assert!(!needs_crc(&up(&d), Old::Has(&d), Some(&d)));
    }

    #[test]
    fn symlinks_devices_and_fifos_are_compared_as_what_they_are() {
        let l1 = link("l", "busybox").meta;
        let l2 = link("l", "toybox").meta;
        let mine = link("l", "/opt/sh").meta;
        let got = |m: &Meta, o: &Meta, n: &Meta| classify(&up(m), false, Old::Has(o), Some(n), 0);
        assert_eq!(got(&l1, &l1, &l2).action, A::Remove);
        assert_eq!(got(&mine, &l1, &l1).class, Some(Kept));
        assert_eq!(got(&mine, &l1, &l2).class, Some(Conflict));
        let mut null = whiteout();
        null.size = 0x103;
        null.mode = 0o666;
        let mut zero = null.clone();
        zero.size = 0x105;
        assert_eq!(got(&null, &null, &null).action, A::Remove);
        assert_eq!(got(&zero, &null, &null).why, Why::Modified);
        let mut fifo = null.clone();
        fifo.kind = Kind::Fifo;
        fifo.size = 0;
        assert_eq!(got(&fifo, &fifo, &fifo).action, A::Remove);
        assert_eq!(
            got(&chmod(fifo.clone(), 0o600), &fifo, &fifo).why,
            Why::ModeOwner
        );
        // A file where the old image had a symlink: modified, not a copy.
        let f = file("l", b"busybox").meta;
        assert_eq!(got(&f, &l1, &l1).why, Why::Modified);
    }

    #[test]
    fn whiteouts() {
        let wh = whiteout();
        let v1 = file("f", b"version 1").meta;
        let v2 = file("f", b"version 2").meta;
        #[rustfmt::skip]
        let table: &[(Old, Option<&Meta>, Verdict)] = &[
            (Old::Has(&v1), Some(&v1), v(Some(Kept), Why::Deleted, N::None, A::None)),
            (Old::Has(&v1), Some(&v2), v(Some(Conflict), Why::Deleted, N::Changed, A::None)),
            (Old::Has(&v1), None, v(Some(Removed), Why::Redundant, N::None, A::Remove)),
            (Old::Absent, None, v(Some(Removed), Why::Redundant, N::None, A::Remove)),
            (Old::Absent, Some(&v2), v(Some(Conflict), Why::Deleted, N::Added, A::None)),
            (Old::NoManifest, Some(&v2), v(Some(Kept), Why::Deleted, N::None, A::None)),
            (Old::NoManifest, None, v(Some(Removed), Why::Redundant, N::None, A::Remove)),
        ];
        for (i, (old, new, want)) in table.iter().enumerate() {
            let mut u = up(&wh);
            u.nlink = 2; // overlayfs shares one whiteout inode: still a whiteout
            assert_eq!(classify(&u, false, *old, *new, 0), *want, "row {i}");
        }
    }

    #[test]
    fn directories() {
        let d = dir("d").meta;
        let d700 = chmod(d.clone(), 0o700);
        let d750 = chmod(d.clone(), 0o750);
        let f = file("d", b"").meta;
        let container = v(None, Why::Unchanged, N::None, A::Container);
        #[rustfmt::skip]
        let table: &[(&Meta, Old, Option<&Meta>, Verdict)] = &[
            (&d, Old::Has(&d), Some(&d), container),
            (&d, Old::Has(&d), Some(&d700), container),
            (&d, Old::Has(&d), None, container),
            // already given the new mode by an earlier, cut-short run
            (&d700, Old::Has(&d), Some(&d700), container),
            (&d700, Old::Has(&d), Some(&d), v(Some(Kept), Why::ModeOwner, N::None, A::None)),
            (&d700, Old::Has(&d), Some(&d750), v(Some(Conflict), Why::ModeOwner, N::Changed, A::None)),
            (&d, Old::Absent, None, v(Some(Kept), Why::Added, N::None, A::None)),
            (&d, Old::Absent, Some(&d), v(Some(Kept), Why::Added, N::None, A::None)),
            (&d, Old::Absent, Some(&f), v(Some(Conflict), Why::Added, N::Added, A::None)),
            (&d, Old::NoManifest, Some(&d), v(None, Why::Unchanged, N::None, A::None)),
            (&d, Old::NoManifest, Some(&f), v(Some(Kept), Why::Unknown, N::Shadows, A::None)),
        ];
        for (i, (m, old, new, want)) in table.iter().enumerate() {
            assert_eq!(classify(&up(m), false, *old, *new, 0), *want, "row {i}");
        }
    }

    #[test]
    fn opaque_and_renamed_directories() {
        let d = dir("d").meta;
        let mut u = up(&d);
        u.opaque = true;
        assert_eq!(
            classify(&u, false, Old::Has(&d), Some(&d), 0),
            v(Some(Kept), Why::Opaque, N::None, A::None)
        );
        assert_eq!(
            classify(&u, false, Old::Has(&d), Some(&d), 2),
            v(Some(Conflict), Why::Opaque, N::AddsInside(2), A::None)
        );
        assert_eq!(
            classify(&u, false, Old::NoManifest, Some(&d), 5),
            v(Some(Kept), Why::Opaque, N::AddsInside(5), A::None)
        );
        u.opaque = false;
        u.redirect = true;
        assert_eq!(
            classify(&u, false, Old::Has(&d), Some(&d), 0).why,
            Why::Renamed
        );
        // Everything inside belongs to the user, even a copy of an old file.
        let v1 = file("f", b"version 1").meta;
        assert_eq!(
            classify(&up(&v1), true, Old::Has(&v1), Some(&v1), 0),
            v(Some(Kept), Why::Inside, N::None, A::None)
        );
        assert_eq!(
            classify(&up(&whiteout()), true, Old::Absent, None, 0).action,
            A::None
        );
    }

    #[test]
    fn hard_links_and_metacopies() {
        let v1 = file("f", b"version 1").meta;
        let v2 = file("f", b"version 2").meta;
        let mut u = up(&v1);
        u.nlink = 2;
        assert!(!needs_crc(&u, Old::Has(&v1), Some(&v1)));
        assert_eq!(
            classify(&u, false, Old::Has(&v1), Some(&v1), 0),
            v(Some(Kept), Why::HardLink, N::None, A::None)
        );
        assert_eq!(
            classify(&u, false, Old::Has(&v1), Some(&v2), 0).class,
            Some(Conflict)
        );
        assert_eq!(classify(&u, false, Old::Absent, None, 0).class, Some(Kept));
        // A metadata-only copy: its data is the lower's, never read.
        let mut meta_only = v1.clone();
        meta_only.crc = None;
        let mut u = up(&meta_only);
        u.metacopy = true;
        assert!(!needs_crc(&u, Old::Has(&v1), Some(&v1)));
        assert_eq!(
            classify(&u, false, Old::Has(&v1), Some(&v2), 0).action,
            A::Remove
        );
        let chmodded = chmod(meta_only.clone(), 0o600);
        let mut u = up(&chmodded);
        u.metacopy = true;
        assert_eq!(
            classify(&u, false, Old::Has(&v1), Some(&v1), 0),
            v(Some(Kept), Why::ModeOwner, N::None, A::None)
        );
        assert_eq!(
            classify(&u, false, Old::Has(&v1), Some(&v2), 0).class,
            Some(Conflict)
        );
        // With a redirect its data comes from elsewhere: never a stale copy.
        let mut u = up(&meta_only);
        u.metacopy = true;
        u.redirect = true;
        assert_eq!(
            classify(&u, false, Old::Has(&v1), Some(&v1), 0).class,
            Some(Kept)
        );
    }
}
