//! The RAM backend, an ordinary member of the table: `overlay.data=tmpfs`
//! asks for it, and every fallback lands on it. Nothing to probe, nothing
//! to write to any flash; its mount is the plan's `MountRam` step, bounded
//! by `overlay.tmpfs_size`.

use super::{Backend, Content, Inventory, Location, MountSpec, PrepareEnv, Prepared, Wanted};
use crate::paths::SysRoot;
use crate::plan::{Action, BackendId};
use crate::reason::{NotFound, Reason};
use crate::sys::FlashIo;

pub struct Tmpfs;

impl Backend for Tmpfs {
    fn id(&self) -> BackendId {
        BackendId::Tmpfs
    }

    fn locate(&self, wanted: &Wanted, _inv: &Inventory) -> Option<Result<Location, NotFound>> {
        (*wanted == Wanted::Ram).then_some(Ok(Location::Ram))
    }

    fn probe(
        &self,
        _io: &dyn FlashIo,
        _root: &SysRoot,
        _loc: &Location,
    ) -> Result<Content, Reason> {
        Ok(Content::Ram)
    }

    fn prepare(
        &self,
        _loc: &Location,
        _content: &Content,
        _env: &PrepareEnv,
    ) -> Result<Prepared, Reason> {
        Ok(Prepared::Ready {
            action: Action::Tmpfs,
            steps: Vec::new(),
            mount: MountSpec {
                source: "tmpfs".into(),
                fstype: "tmpfs",
                quiet_ro: "",
            },
            fresh: true,
        })
    }
}
