//! Kernel and layout paths in one place, and [`SysRoot`], the root every file
//! read is joined onto (`/` on a device, a fixture tree in tests).

use std::path::{Path, PathBuf};

/// The root below which /proc, /sys and /dev are read.
#[derive(Clone, Debug)]
pub struct SysRoot(PathBuf);

impl SysRoot {
    #[cfg_attr(not(test), allow(dead_code))] // fixture trees in tests
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SysRoot(root.into())
    }

    /// The real system.
    pub fn host() -> Self {
        SysRoot(PathBuf::from("/"))
    }

    /// `abs` (an absolute guest path) below this root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.0.join(abs.trim_start_matches('/'))
    }

    /// Same as [`SysRoot::path`] for a `Path`.
    pub fn join(&self, abs: &Path) -> PathBuf {
        self.0.join(abs.strip_prefix("/").unwrap_or(abs))
    }
}

pub const PROC_CMDLINE: &str = "/proc/cmdline";
pub const PROC_FILESYSTEMS: &str = "/proc/filesystems";
pub const PROC_PRINTK: &str = "/proc/sys/kernel/printk";
pub const SYS_MODULE: &str = "/sys/module";
pub const DEV_KMSG: &str = "/dev/kmsg";
pub const DEV_CONSOLE: &str = "/dev/console";

/// The board config file carried in the initramfs.
pub const BOARD_CONFIG: &str = "/etc/overlay-init.conf";
/// Where the initramfs keeps kernel modules: `/lib/modules/<release>`.
pub const MODULES_DIR: &str = "/lib/modules";

/// Read-only root layer (the squashfs), as OpenWrt names it.
pub const ROM: &str = "/rom";
/// The upper filesystem: holds `upper/` and `work/`.
pub const OVERLAY: &str = "/overlay";
/// Where the upper filesystem is staged while booting in pivot mode (moved
/// to /overlay by the switch).
pub const STAGED_OVERLAY: &str = "/run/overlay-init/overlay";
/// Where the RAM upper of a protected boot lives (moved into the new root
/// with /run).
pub const PROTECT_RAM: &str = "/run/overlay-init/ram";
/// Where the merged root is assembled before switching into it (initramfs mode).
pub const NEWROOT: &str = "/newroot";
/// Runtime state shared with the booted system (moved into it with /run).
pub const RUN_DIR: &str = "/run/overlay-init";
pub const STATE_FILE: &str = "/run/overlay-init/state";
/// Extra lower layers are mounted at `/run/overlay-init/lower/N`.
pub const LOWER_DIR: &str = "/run/overlay-init/lower";
/// A copy of this binary, so `overlay-status` runs in any rootfs.
pub const RUN_BIN_DIR: &str = "/run/overlay-init/bin";

/// statfs f_type values (linux/magic.h).
pub const RAMFS_MAGIC: u64 = 0x8584_58f6;
pub const TMPFS_MAGIC: u64 = 0x0102_1994;
