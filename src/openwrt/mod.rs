//! A drop-in for OpenWrt (issue 15): what fstools' `mount_root` and
//! OpenWrt's preinit did for an image, done so that OpenWrt's own tools,
//! names and `sysupgrade` keep working on an overlay-init system.
//!
//! - [`fs_state`]: fstools' `.fs_state` on the data filesystem, kept READY
//!   (stock firmware flashed back later wipes an overlay without it), and
//!   a PENDING left by an interrupted `jffs2reset` taken as a reset request;
//! - [`names`]: `firstboot`, `jffs2reset`, `factoryreset`, `jffs2mark` and
//!   `mount_root` answered by this binary, with fstools' flags;
//! - [`restore`]: the settings `sysupgrade` keeps (`sysupgrade.tgz`),
//!   restored into the new root before the real init starts.
//!
//! The data is mounted where fstools finds it: JFFS2 as `mtd:NAME` (the
//! MTD block device's `31:N` in mountinfo), UBIFS from `/dev/ubiN_M`
//! (backend/ubi.rs).

pub mod fs_state;
pub mod names;
pub mod restore;
