//! Starting programs as `std::process::Command` does for our four uses (a
//! tool of the lower root, the real init, the emergency shell, `reboot`),
//! without it: Command keeps environment changes in a `BTreeMap<OsString,
//! OsString>` and brings posix_spawn, stdio plumbing and pidfds we never use,
//! ~10 KiB of the armv7 binary.
//!
//! The child is set up as std sets it up (`do_exec`): SIGPIPE back to its
//! default action (std's runtime ignores it), no signal blocked, the
//! `pre_exec` hook, `environ` switched to the new environment if there is
//! one, then `execvp(program, argv)` (so a name without `/` is searched in
//! the new PATH, as with std). stdio is inherited. An exec that fails in a
//! child comes back as the same `io::Error`, over a close-on-exec pipe, and
//! the child is reaped; the status of one that ran is std's [`ExitStatus`].

use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use std::ffi::{c_char, CString};
use std::io;
use std::process::ExitStatus;

extern "C" {
    /// libc's current environment, which execvp(3) takes PATH from.
    static mut environ: *const *const c_char;
}

/// A program and its arguments, and optionally its whole environment.
pub struct Program {
    program: CString,
    argv: Vec<CString>,
    env: Option<Vec<CString>>,
    /// A NUL in any string: refused when run, as std does.
    saw_nul: bool,
}

fn nul_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "nul byte found in provided data",
    )
}

/// A NULL-terminated array of the strings' pointers (they must outlive it).
fn pointers(v: &[CString]) -> Vec<*const c_char> {
    v.iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

impl Program {
    /// `program` run as `argv[0]` = `program` (`Command::new`).
    pub fn new(program: &str) -> Program {
        let mut p = Program {
            program: CString::default(),
            argv: Vec::new(),
            env: None,
            saw_nul: false,
        };
        p.program = p.cstring(program);
        p.argv.push(p.program.clone());
        p
    }

    fn cstring(&mut self, s: &str) -> CString {
        CString::new(s).unwrap_or_else(|_| {
            self.saw_nul = true;
            CString::default()
        })
    }

    /// Replaces `argv[0]` (`CommandExt::arg0`).
    pub fn arg0(mut self, arg0: &str) -> Program {
        let a = self.cstring(arg0);
        if let Some(first) = self.argv.first_mut() {
            *first = a;
        }
        self
    }

    /// Appends arguments (`Command::args`).
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Program {
        for a in args {
            let a = self.cstring(a.as_ref());
            self.argv.push(a);
        }
        self
    }

    /// The child's whole environment, as `env_clear()` then `env(k, v)` for
    /// each pair: ordered by key (std keeps them in a BTreeMap), a key given
    /// twice with its last value.
    pub fn env<'a>(mut self, vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Program {
        let mut sorted: Vec<(&str, &str)> = Vec::new();
        for (k, v) in vars {
            match sorted.binary_search_by(|(x, _)| x.as_bytes().cmp(k.as_bytes())) {
                Ok(i) => {
                    if let Some(e) = sorted.get_mut(i) {
                        e.1 = v;
                    }
                }
                Err(i) => sorted.insert(i, (k, v)),
            }
        }
        let env = sorted
            .iter()
            .map(|(k, v)| self.cstring(&format!("{k}={v}")))
            .collect();
        self.env = Some(env);
        self
    }

    /// Runs the program in a child and waits for it (`Command::status`),
    /// `pre_exec` run in the child first (`CommandExt::pre_exec`).
    ///
    /// # Safety
    /// As `pre_exec`: the hook runs in the forked child and must only do what
    /// is safe there; the caller must be single-threaded (PID 1 and the
    /// command-line tools are), so that the child can use what it inherits.
    pub unsafe fn status(
        &self,
        pre_exec: Option<&mut dyn FnMut() -> io::Result<()>>,
    ) -> io::Result<ExitStatus> {
        if self.saw_nul {
            return Err(nul_error());
        }
        let argv = pointers(&self.argv);
        let envp = self.env.as_deref().map(pointers);
        let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        // SAFETY: the caller is single-threaded (see above); the child only
        // runs `exec_here` (signal set-up, the hook, execvp) and `_exit`.
        match unsafe { nix::unistd::fork() }? {
            nix::unistd::ForkResult::Child => {
                drop(rd);
                // SAFETY: we are the child, single-threaded; see exec_here.
                let err = unsafe { self.exec_here(&argv, envp.as_deref(), pre_exec) };
                let errno = err.raw_os_error().unwrap_or(nix::libc::EINVAL);
                let _ = rustix::io::write(&wr, &errno.to_be_bytes());
                // SAFETY: _exit ends the child at once, as std's does (no
                // atexit handlers, no stdio flush of the parent's buffers).
                unsafe { nix::libc::_exit(1) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(wr);
                let mut buf = [0u8; 4];
                let got = loop {
                    match rustix::io::read(&rd, &mut buf) {
                        Err(rustix::io::Errno::INTR) => {}
                        r => break r,
                    }
                };
                // Waits feeding the watchdog, if one is open: mkfs and
                // e2fsck can take longer than its timeout.
                let status = crate::recovery::watchdog::with_feeder(|f| {
                    crate::recovery::watchdog::wait_child(child.as_raw(), f)
                })?;
                match got {
                    // The pipe closed on exec: the program ran.
                    Ok(0) => Ok(status),
                    Ok(4) => Err(io::Error::from_raw_os_error(i32::from_be_bytes(buf))),
                    Ok(_) => Err(io::Error::other("short read on the CLOEXEC pipe")),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Replaces this process with the program (`CommandExt::exec`); returns
    /// only on failure, with the environment as it was.
    pub fn exec(&self) -> io::Error {
        if self.saw_nul {
            return nul_error();
        }
        let argv = pointers(&self.argv);
        let envp = self.env.as_deref().map(pointers);
        // SAFETY: PID 1 is single-threaded when it hands over; no hook.
        unsafe { self.exec_here(&argv, envp.as_deref(), None) }
    }

    /// std's `do_exec`, minus what we never ask for (stdio, ids, cwd).
    ///
    /// # Safety
    /// Single-threaded caller: `environ` is switched for the execvp and put
    /// back if it fails; `argv`/`envp` point into `self`.
    unsafe fn exec_here(
        &self,
        argv: &[*const c_char],
        envp: Option<&[*const c_char]>,
        pre_exec: Option<&mut dyn FnMut() -> io::Result<()>>,
    ) -> io::Error {
        // SAFETY: the default action is no handler of ours.
        if let Err(e) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
            return e.into();
        }
        if let Err(e) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None) {
            return e.into();
        }
        if let Some(hook) = pre_exec {
            if let Err(e) = hook() {
                return e;
            }
        }
        // SAFETY: single-threaded (see above), so nothing reads `environ`
        // while it points at `envp`, which outlives the call; the pointers
        // are NUL-terminated strings in NULL-terminated arrays.
        unsafe {
            let saved = environ;
            if let Some(e) = envp {
                environ = e.as_ptr();
            }
            nix::libc::execvp(self.program.as_ptr(), argv.as_ptr());
            let err = io::Error::last_os_error();
            environ = saved;
            err
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn status(p: &Program) -> io::Result<ExitStatus> {
        // SAFETY: the hook-less child only execs; the test harness's other
        // threads are not touched by it.
        unsafe { p.status(None) }
    }

    #[test]
    fn exit_codes_and_signals_as_std_reports_them() {
        let p = Program::new("/bin/sh").args(&["-c", "exit 3"]);
        let st = status(&p).unwrap();
        assert_eq!(st.code(), Some(3));
        let p = Program::new("/bin/sh").args(&["-c", "kill -9 $$"]);
        let st = status(&p).unwrap();
        let std_st = std::process::Command::new("/bin/sh")
            .args(["-c", "kill -9 $$"])
            .status()
            .unwrap();
        assert_eq!((st.code(), st.signal()), (None, Some(9)));
        assert_eq!(st.to_string(), std_st.to_string());
        assert!(status(&Program::new("true")).unwrap().success());
    }

    #[test]
    fn exec_failures_come_back_as_std_reports_them() {
        for prog in ["/nonexistent/prog", "no-such-program-here", "/"] {
            let ours = status(&Program::new(prog)).unwrap_err();
            let std_err = std::process::Command::new(prog).status().unwrap_err();
            assert_eq!(ours.raw_os_error(), std_err.raw_os_error(), "{prog}");
            assert_eq!(ours.to_string(), std_err.to_string(), "{prog}");
        }
        let ours = status(&Program::new("/bin/sh").args(&["a\0b"])).unwrap_err();
        let std_err = std::process::Command::new("/bin/sh")
            .arg("a\0b")
            .status()
            .unwrap_err();
        assert_eq!(ours.kind(), std_err.kind());
        assert_eq!(ours.to_string(), std_err.to_string());
        // (A real exec in place would reset this test process's signals.)
        assert_eq!(
            Program::new("/bin/sh").args(&["\0"]).exec().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn the_environment_is_sorted_deduplicated_and_searched() {
        let dir = crate::testutil::TempDir::new("spawn");
        let out = dir.path().join("env");
        // What sh was given, in the order given (`env` would print dash's order).
        let script = format!("cat /proc/$$/environ > {}", out.display());
        let vars = [
            ("PATH", "/usr/bin:/bin"),
            ("B", "2"),
            ("A", "1"),
            ("B", "3"),
            ("E", "x=y"),
        ];
        // `sh` found through the new PATH.
        let p = Program::new("sh").args(&["-c", &script]).env(vars);
        assert!(status(&p).unwrap().success());
        let ours = std::fs::read_to_string(&out).unwrap();
        let mut c = std::process::Command::new("sh");
        c.args(["-c", &script]).env_clear();
        for (k, v) in vars {
            c.env(k, v);
        }
        assert!(c.status().unwrap().success());
        let theirs = std::fs::read_to_string(&out).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(ours, "A=1\0B=3\0E=x=y\0PATH=/usr/bin:/bin\0");
        // No PATH entry at all: searched in libc's default one, as std would.
        let p = Program::new("no-such-program-here").env([("A", "1")]);
        assert_eq!(status(&p).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn the_hook_runs_in_the_child_and_its_error_comes_back() {
        let mut hook = || Err(io::Error::from_raw_os_error(nix::libc::EPERM));
        // SAFETY: the hook only builds an error value.
        let e = unsafe { Program::new("/bin/true").status(Some(&mut hook)) }.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(nix::libc::EPERM));
        let mut hook = || rustix::process::chdir(c"/").map_err(io::Error::from);
        // SAFETY: chdir is a raw syscall.
        let st = unsafe { Program::new("/bin/true").status(Some(&mut hook)) }.unwrap();
        assert!(st.success());
    }
}
