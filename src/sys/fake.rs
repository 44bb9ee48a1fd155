//! A recording [`Sys`] for executor tests: every call is appended to a list,
//! and a test may make any call fail with an errno of its choice.

use super::{Command, FlashIo, MountFlags, MtdGeometry, Sys};
use std::cell::{Cell, RefCell};
use std::ffi::{CStr, CString};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One recorded call; mirrors [`Sys`] method by method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: String,
        target: PathBuf,
        fstype: String,
        flags: MountFlags,
        data: String,
    },
    MountBind {
        from: PathBuf,
        to: PathBuf,
    },
    MountMove {
        from: PathBuf,
        to: PathBuf,
    },
    Remount(PathBuf),
    Unmount(PathBuf),
    Mkdir(PathBuf),
    LoadModule(PathBuf),
    Run(Command),
    Chdir(PathBuf),
    Chroot(PathBuf),
    PivotRoot(PathBuf, PathBuf),
    RemoveTree(PathBuf),
    Background,
    Exec {
        path: Vec<u8>,
        argv: Vec<Vec<u8>>,
        envp: Vec<Vec<u8>>,
    },
    ReapChildren,
    ResetSignals,
    CloexecStrayFds,
    ConsoleStdio,
    Sleep(Duration),
    Sync,
    Reboot,
    MtdGeometry(PathBuf),
    MtdIsBad {
        dev: PathBuf,
        offset: u64,
    },
    MtdErase {
        dev: PathBuf,
        offset: u64,
        len: u64,
    },
    MtdWrite {
        dev: PathBuf,
        offset: u64,
        data: Vec<u8>,
    },
    UbiAttach {
        ctrl: PathBuf,
        mtd: u32,
    },
    UbiMkvol {
        dev: PathBuf,
        name: String,
        bytes: u64,
    },
    UbiRename {
        dev: PathBuf,
        vol_id: u32,
        name: String,
    },
    UbiLebUnmap {
        vol: PathBuf,
        lnum: u32,
    },
}

type Rule = Box<dyn Fn(&Call) -> Option<i32>>;
type Hook = Box<dyn Fn(&Call)>;

/// The fake. `fs_magic` answers `root_magic`; `is_readonly` answers from `readonly`.
pub struct FakeSys {
    pub calls: RefCell<Vec<Call>>,
    rules: RefCell<Vec<Rule>>,
    /// Exit codes `run` returns, in order (0 once empty).
    pub run_results: RefCell<Vec<i32>>,
    pub root_magic: Cell<u64>,
    pub readonly: RefCell<Vec<PathBuf>>,
    clock: Cell<Duration>,
    /// Side effects of successful calls (a test plays the kernel: creates
    /// /dev/ubi0 when UbiAttach is called, ...).
    hooks: RefCell<Vec<Hook>>,
    /// What `mtd_geometry` answers, per device node (ENOENT for others).
    pub mtd_geometry: RefCell<Vec<(PathBuf, MtdGeometry)>>,
    /// Erase blocks `mtd_is_bad` reports bad: (device node, offset).
    pub bad_blocks: RefCell<Vec<(PathBuf, u64)>>,
    /// The UBI device number `ubi_attach` returns.
    pub ubi_num: Cell<u32>,
    /// The volume id `ubi_mkvol` returns.
    pub ubi_vol_id: Cell<u32>,
    /// What `fs_space` answers: (free, total) bytes.
    pub space: Cell<(u64, u64)>,
    /// How long each `mtd_erase` takes on the fake clock (a slow chip).
    pub erase_time: Cell<Duration>,
}

impl Default for FakeSys {
    fn default() -> Self {
        FakeSys {
            calls: RefCell::new(Vec::new()),
            rules: RefCell::new(Vec::new()),
            run_results: RefCell::new(Vec::new()),
            root_magic: Cell::new(0x0102_1994), // TMPFS_MAGIC: started from an initramfs
            readonly: RefCell::new(Vec::new()),
            clock: Cell::new(Duration::ZERO),
            hooks: RefCell::new(Vec::new()),
            mtd_geometry: RefCell::new(Vec::new()),
            bad_blocks: RefCell::new(Vec::new()),
            ubi_num: Cell::new(0),
            ubi_vol_id: Cell::new(0),
            space: Cell::new((32 << 20, 64 << 20)),
            erase_time: Cell::new(Duration::ZERO),
        }
    }
}

impl FakeSys {
    /// Makes every call matching `pred` fail with `errno`.
    pub fn fail_when(&self, errno: i32, pred: impl Fn(&Call) -> bool + 'static) {
        self.rules
            .borrow_mut()
            .push(Box::new(move |c| pred(c).then_some(errno)));
    }

    /// Runs `f` after every call that succeeds.
    pub fn on_call(&self, f: impl Fn(&Call) + 'static) {
        self.hooks.borrow_mut().push(Box::new(f));
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    fn record(&self, call: Call) -> io::Result<()> {
        let failed = self.rules.borrow().iter().find_map(|r| r(&call));
        if failed.is_none() {
            for h in self.hooks.borrow().iter() {
                h(&call);
            }
        }
        self.calls.borrow_mut().push(call);
        match failed {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }
}

impl Sys for FakeSys {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()> {
        self.record(Call::Mount {
            source: source.into(),
            target: target.into(),
            fstype: fstype.into(),
            flags,
            data: data.into(),
        })
    }
    fn mount_bind(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.record(Call::MountBind {
            from: from.into(),
            to: to.into(),
        })
    }
    fn mount_move(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.record(Call::MountMove {
            from: from.into(),
            to: to.into(),
        })
    }
    fn remount(&self, target: &Path, _flags: MountFlags) -> io::Result<()> {
        self.record(Call::Remount(target.into()))
    }
    fn unmount(&self, target: &Path, _detach: bool) -> io::Result<()> {
        self.record(Call::Unmount(target.into()))
    }
    fn mkdir(&self, path: &Path, _mode: u32) -> io::Result<()> {
        self.record(Call::Mkdir(path.into()))
    }
    fn load_module(&self, path: &Path) -> io::Result<()> {
        self.record(Call::LoadModule(path.into()))
    }
    fn run(&self, cmd: &Command) -> io::Result<i32> {
        self.record(Call::Run(cmd.clone()))?;
        let mut results = self.run_results.borrow_mut();
        Ok(if results.is_empty() {
            0
        } else {
            results.remove(0)
        })
    }
    fn is_readonly(&self, path: &Path) -> io::Result<bool> {
        Ok(self.readonly.borrow().iter().any(|p| p == path))
    }
    fn fs_space(&self, _path: &Path) -> io::Result<(u64, u64)> {
        Ok(self.space.get())
    }
    fn fs_magic(&self, _path: &Path) -> io::Result<u64> {
        Ok(self.root_magic.get())
    }
    fn chdir(&self, path: &Path) -> io::Result<()> {
        self.record(Call::Chdir(path.into()))
    }
    fn chroot(&self, path: &Path) -> io::Result<()> {
        self.record(Call::Chroot(path.into()))
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        self.record(Call::PivotRoot(new_root.into(), put_old.into()))
    }
    fn remove_tree_same_fs(&self, dir: &Path) -> io::Result<()> {
        self.record(Call::RemoveTree(dir.into()))
    }
    /// Runs the job inline, so tests see its effect.
    fn background(&self, job: &mut dyn FnMut()) -> io::Result<()> {
        self.record(Call::Background)?;
        job();
        Ok(())
    }
    fn exec(&self, path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
        let bytes = |v: &[CString]| v.iter().map(|c| c.as_bytes().to_vec()).collect();
        let call = Call::Exec {
            path: path.to_bytes().to_vec(),
            argv: bytes(argv),
            envp: bytes(envp),
        };
        match self.record(call) {
            Err(e) => e,
            Ok(()) => io::Error::from_raw_os_error(libc_enoexec()),
        }
    }
    fn reap_children(&self) {
        let _ = self.record(Call::ReapChildren);
    }
    fn reset_signals(&self) {
        let _ = self.record(Call::ResetSignals);
    }
    fn cloexec_stray_fds(&self) {
        let _ = self.record(Call::CloexecStrayFds);
    }
    fn console_stdio(&self) {
        let _ = self.record(Call::ConsoleStdio);
    }
    fn kernel_release(&self) -> String {
        "6.1.0-test".into()
    }
    fn now(&self) -> Duration {
        let t = self.clock.get() + Duration::from_millis(1);
        self.clock.set(t);
        t
    }
    fn sleep(&self, d: Duration) {
        self.clock.set(self.clock.get() + d);
        let _ = self.record(Call::Sleep(d));
    }
    fn sync(&self) {
        let _ = self.record(Call::Sync);
    }
    fn reboot(&self) -> io::Error {
        match self.record(Call::Reboot) {
            Err(e) => e,
            Ok(()) => io::Error::other("fake reboot"),
        }
    }
}

impl FlashIo for FakeSys {
    fn mtd_geometry(&self, dev: &Path) -> io::Result<MtdGeometry> {
        self.record(Call::MtdGeometry(dev.into()))?;
        self.mtd_geometry
            .borrow()
            .iter()
            .find(|(p, _)| p == dev)
            .map(|(_, g)| *g)
            .ok_or_else(|| io::Error::from_raw_os_error(2))
    }
    fn mtd_is_bad(&self, dev: &Path, offset: u64) -> io::Result<bool> {
        self.record(Call::MtdIsBad {
            dev: dev.into(),
            offset,
        })?;
        Ok(self
            .bad_blocks
            .borrow()
            .iter()
            .any(|(p, o)| p == dev && *o == offset))
    }
    fn mtd_erase(&self, dev: &Path, offset: u64, len: u64) -> io::Result<()> {
        self.clock.set(self.clock.get() + self.erase_time.get());
        self.record(Call::MtdErase {
            dev: dev.into(),
            offset,
            len,
        })
    }
    fn mtd_write(&self, dev: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        self.record(Call::MtdWrite {
            dev: dev.into(),
            offset,
            data: data.to_vec(),
        })
    }
    fn ubi_attach(&self, ctrl: &Path, mtd: u32) -> io::Result<u32> {
        self.record(Call::UbiAttach {
            ctrl: ctrl.into(),
            mtd,
        })?;
        Ok(self.ubi_num.get())
    }
    fn ubi_mkvol(&self, dev: &Path, name: &str, bytes: u64) -> io::Result<u32> {
        self.record(Call::UbiMkvol {
            dev: dev.into(),
            name: name.into(),
            bytes,
        })?;
        Ok(self.ubi_vol_id.get())
    }
    fn ubi_rename(&self, dev: &Path, vol_id: u32, name: &str) -> io::Result<()> {
        self.record(Call::UbiRename {
            dev: dev.into(),
            vol_id,
            name: name.into(),
        })
    }
    fn ubi_leb_unmap(&self, vol: &Path, lnum: u32) -> io::Result<()> {
        self.record(Call::UbiLebUnmap {
            vol: vol.into(),
            lnum,
        })
    }
}

/// The fake's exec "returns" (a real one would not): report it as ENOEXEC.
fn libc_enoexec() -> i32 {
    8
}
