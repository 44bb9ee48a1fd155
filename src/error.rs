//! Errors that stop the boot (everything else becomes a fallback). One
//! variant per failing step, carrying what it acted on and the OS error; the
//! message is one sentence written by hand.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug)]
pub enum BootError {
    /// Started from an initramfs without `root=`.
    NoRootSpec,
    /// The root (or an extra lower) device did not appear in time.
    DeviceNotFound {
        what: &'static str,
        spec: String,
        waited: Duration,
    },
    /// A lower device holds no filesystem we can mount read-only.
    UnknownLowerFs {
        device: PathBuf,
    },
    ProbeLower {
        device: PathBuf,
        err: io::Error,
    },
    MountLower {
        device: PathBuf,
        target: PathBuf,
        fstype: String,
        err: io::Error,
    },
    Mkdir {
        path: PathBuf,
        err: io::Error,
    },
    MountOverlay {
        options: String,
        err: io::Error,
    },
    /// No runnable init in the root we would switch to.
    NoInit {
        init: String,
        why: String,
    },
    MoveMount {
        from: PathBuf,
        to: PathBuf,
        err: io::Error,
    },
    Chdir {
        path: PathBuf,
        err: io::Error,
    },
    /// `mount --move . /` of the new root.
    MoveRoot {
        err: io::Error,
    },
    Chroot {
        path: PathBuf,
        err: io::Error,
    },
    PivotRoot {
        new_root: PathBuf,
        put_old: PathBuf,
        err: io::Error,
    },
    Exec {
        init: String,
        err: io::Error,
    },
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::NoRootSpec => write!(
                f,
                "no root= on the kernel command line: cannot find the root filesystem"
            ),
            BootError::DeviceNotFound { what, spec, waited } => {
                write!(
                    f,
                    "{what} device {spec} did not appear within {} s",
                    waited.as_secs()
                )
            }
            BootError::UnknownLowerFs { device } => {
                write!(
                    f,
                    "{} holds no filesystem overlay-init can mount read-only",
                    device.display()
                )
            }
            BootError::ProbeLower { device, err } => {
                write!(f, "cannot read {}: {err}", device.display())
            }
            BootError::MountLower {
                device,
                target,
                fstype,
                err,
            } => {
                write!(
                    f,
                    "cannot mount {} ({fstype}) read-only at {}: {err}",
                    device.display(),
                    target.display()
                )
            }
            BootError::Mkdir { path, err } => write!(f, "cannot create {}: {err}", path.display()),
            BootError::MountOverlay { options, err } => {
                write!(f, "cannot mount the overlay ({options}): {err}")
            }
            BootError::NoInit { init, why } => write!(f, "no runnable init {init}: {why}"),
            BootError::MoveMount { from, to, err } => {
                write!(
                    f,
                    "cannot move mount {} to {}: {err}",
                    from.display(),
                    to.display()
                )
            }
            BootError::Chdir { path, err } => {
                write!(f, "cannot chdir to {}: {err}", path.display())
            }
            BootError::MoveRoot { err } => write!(f, "cannot move the new root onto /: {err}"),
            BootError::Chroot { path, err } => {
                write!(f, "cannot chroot to {}: {err}", path.display())
            }
            BootError::PivotRoot {
                new_root,
                put_old,
                err,
            } => {
                write!(
                    f,
                    "pivot_root({}, {}) failed: {err}",
                    new_root.display(),
                    put_old.display()
                )
            }
            BootError::Exec { init, err } => write!(f, "cannot execute {init}: {err}"),
        }
    }
}
