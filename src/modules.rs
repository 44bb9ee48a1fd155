//! Kernel modules from the initramfs: dependency order from `modules.dep`
//! (pure), built-ins and loaded modules skipped, `finit_module` for the rest.

use crate::paths::{SysRoot, MODULES_DIR, SYS_MODULE};
use crate::sys::Sys;
use std::path::PathBuf;

/// `modules.dep`: (module name, path relative to the modules dir,
/// dependencies), in the file's order. A name listed twice means its last
/// line. Looked up by a scan: a boot visits a few modules, and a vector
/// keeps the binary free of a B-tree's code (issue 14's size budget).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DepTable(Vec<(String, String, Vec<String>)>);

/// The module name of a path: basename without `.ko[.xz|.zst|.gz]`, `-` → `_`
/// (the kernel treats both as the same character in module names).
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    // Up to the first ".ko" (a byte search: no substring searcher).
    let stem = base
        .as_bytes()
        .windows(3)
        .position(|w| w == b".ko")
        .and_then(|at| base.get(..at))
        .unwrap_or(base);
    normalize(stem)
}

pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Parses `modules.dep` lines `kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko ...`.
pub fn parse_modules_dep(text: &str) -> DepTable {
    let mut t = Vec::new();
    for line in text.lines() {
        let Some((path, deps)) = line.split_once(':') else {
            continue;
        };
        let path = path.trim();
        if path.is_empty() {
            continue;
        }
        let deps = deps.split_whitespace().map(module_name).collect();
        t.push((module_name(path), path.to_string(), deps));
    }
    DepTable(t)
}

/// Names of built-in modules from `modules.builtin` (`kernel/.../x.ko` lines).
pub fn parse_builtin(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(module_name)
        .collect()
}

/// Why a module cannot be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleError {
    /// Not in modules.dep and not built in.
    NotFound(String),
}

impl DepTable {
    /// The load order for `wanted`: each module after its dependencies, each
    /// once, skipping those `skip` says are present. Modules missing from the
    /// table are reported, and their dependants are still attempted.
    pub fn load_order(
        &self,
        wanted: &[String],
        skip: &dyn Fn(&str) -> bool,
    ) -> (Vec<String>, Vec<ModuleError>) {
        let mut order = Vec::new();
        let mut seen = Vec::new();
        let mut errors = Vec::new();
        for w in wanted {
            self.visit(&normalize(w), skip, &mut seen, &mut order, &mut errors);
        }
        (order, errors)
    }

    fn visit(
        &self,
        m: &str,
        skip: &dyn Fn(&str) -> bool,
        seen: &mut Vec<String>,
        order: &mut Vec<String>,
        errors: &mut Vec<ModuleError>,
    ) {
        if seen.iter().any(|s| s == m) {
            return;
        }
        seen.push(m.to_string());
        if skip(m) {
            return;
        }
        match self.0.iter().rev().find(|(name, ..)| name == m) {
            None => errors.push(ModuleError::NotFound(m.to_string())),
            Some((_, path, deps)) => {
                // modules.dep lists the deepest dependency last: load from the end.
                for d in deps.iter().rev() {
                    self.visit(d, skip, seen, order, errors);
                }
                order.push(path.clone());
            }
        }
    }
}

/// Loads modules, dependencies first, from `/lib/modules/<release>`.
pub struct ModuleLoader {
    dir: PathBuf,
    table: DepTable,
    builtin: Vec<String>,
    root: SysRoot,
}

impl ModuleLoader {
    /// Reads the module tables for the running kernel. Missing tables give an
    /// empty loader (a kernel with everything built in needs none).
    pub fn read(root: &SysRoot, release: &str) -> ModuleLoader {
        let dir = root.path(&format!("{MODULES_DIR}/{release}"));
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        ModuleLoader {
            table: parse_modules_dep(&read("modules.dep")),
            builtin: parse_builtin(&read("modules.builtin")),
            dir,
            root: root.clone(),
        }
    }

    /// Built in, or already loaded: `/sys/module/NAME` exists for loaded modules
    /// and for built-ins that have parameters.
    fn present(&self, m: &str) -> bool {
        self.builtin.iter().any(|b| b == m) || self.root.path(&format!("{SYS_MODULE}/{m}")).exists()
    }

    /// Loads `wanted` and their dependencies; returns one message per failure.
    pub fn load(&self, sys: &dyn Sys, wanted: &[String]) -> Vec<String> {
        let (order, errors) = self.table.load_order(wanted, &|m| self.present(m));
        let mut problems: Vec<String> = errors
            .into_iter()
            .map(|ModuleError::NotFound(m)| {
                format!("module {m}: not in the initramfs and not built in")
            })
            .collect();
        for rel in order {
            let path = self.dir.join(&rel);
            crate::debug!("insmod {}", path.display());
            if let Err(e) = sys.load_module(&path) {
                problems.push(format!("module {}: {e}", module_name(&rel)));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str =
        "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko kernel/lib/crc16.ko\n\
kernel/fs/jbd2/jbd2.ko:\n\
kernel/fs/mbcache.ko:\n\
kernel/lib/crc16.ko:\n\
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio-mmio.ko.xz\n\
kernel/drivers/virtio/virtio-mmio.ko.xz:\n\
kernel/fs/overlay/overlay.ko:\n";

    fn order(wanted: &[&str], skip: &dyn Fn(&str) -> bool) -> (Vec<String>, Vec<ModuleError>) {
        let w: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
        parse_modules_dep(DEP).load_order(&w, skip)
    }

    #[test]
    fn names() {
        assert_eq!(
            module_name("kernel/drivers/virtio/virtio-mmio.ko.xz"),
            "virtio_mmio"
        );
        assert_eq!(module_name("ext4.ko"), "ext4");
        assert_eq!(normalize("crc32c-generic"), "crc32c_generic");
    }

    #[test]
    fn deps_come_first_deepest_last_in_list_loaded_first() {
        let (o, e) = order(&["ext4"], &|_| false);
        assert!(e.is_empty());
        assert_eq!(
            o,
            [
                "kernel/lib/crc16.ko",
                "kernel/fs/mbcache.ko",
                "kernel/fs/jbd2/jbd2.ko",
                "kernel/fs/ext4/ext4.ko"
            ]
        );
    }

    #[test]
    fn each_module_once_and_dash_names() {
        let (o, _) = order(&["virtio-blk", "virtio_mmio", "virtio_blk"], &|_| false);
        assert_eq!(
            o,
            [
                "kernel/drivers/virtio/virtio-mmio.ko.xz",
                "kernel/drivers/block/virtio_blk.ko"
            ]
        );
    }

    #[test]
    fn present_modules_are_skipped_missing_reported() {
        let (o, e) = order(&["ext4", "nosuch", "overlay"], &|m| {
            m == "jbd2" || m == "overlay"
        });
        assert_eq!(
            o,
            [
                "kernel/lib/crc16.ko",
                "kernel/fs/mbcache.ko",
                "kernel/fs/ext4/ext4.ko"
            ]
        );
        assert_eq!(e, [ModuleError::NotFound("nosuch".into())]);
    }

    #[test]
    fn malformed_lines_are_ignored() {
        let t = parse_modules_dep("garbage\n: x.ko\nkernel/a.ko: kernel/b.ko\n");
        assert_eq!(t.0.len(), 1);
    }

    #[test]
    fn loader_reads_tables_and_skips_builtins_and_loaded() {
        let dir = crate::testutil::TempDir::new("modules");
        dir.write("lib/modules/6.1.0/modules.dep", DEP);
        dir.write("lib/modules/6.1.0/modules.builtin", "kernel/lib/crc16.ko\n");
        std::fs::create_dir_all(dir.path().join("sys/module/mbcache")).unwrap();
        let loader = ModuleLoader::read(&SysRoot::new(dir.path()), "6.1.0");
        let sys = crate::sys::fake::FakeSys::default();
        sys.fail_when(
            22,
            |c| matches!(c, crate::sys::fake::Call::LoadModule(p) if p.ends_with("ext4.ko")),
        );
        let problems = loader.load(&sys, &["ext4".into()]);
        let loaded: Vec<_> = sys
            .calls()
            .into_iter()
            .map(|c| match c {
                crate::sys::fake::Call::LoadModule(p) => {
                    p.strip_prefix(dir.path()).unwrap().display().to_string()
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            loaded,
            [
                "lib/modules/6.1.0/kernel/fs/jbd2/jbd2.ko",
                "lib/modules/6.1.0/kernel/fs/ext4/ext4.ko"
            ]
        );
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("module ext4:"), "{problems:?}");
    }
}
