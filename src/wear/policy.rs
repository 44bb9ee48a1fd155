//! What the boot does with the upper layer, given how worn the flash is.
//!
//! | device level | policy | upper | notice |
//! | --- | --- | --- | --- |
//! | unknown, ok | any | flash | none |
//! | warn | any | flash | warning |
//! | critical | warn | flash | critical (logged only) |
//! | critical | tmpfs | tmpfs; the flash is not shown | critical |
//! | critical | protect | tmpfs upper over the flash upper mounted read-only as the top lower layer | critical |
//!
//! `protect` (the default) keeps the user's files visible, so the system
//! still has its configuration, but nothing more is written to a flash that
//! is about to fail. `tmpfs` is for boards where a half-dead flash must not
//! even be read. An unknown level (no source could be read) boots normally:
//! not knowing is not a reason to drop the user's data.

use super::config::Policy;
use super::Level;

/// How the upper layer is assembled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpperAction {
    /// The flash upper, read-write, as usual.
    Flash,
    /// A tmpfs upper; the flash upper is not used at all.
    Tmpfs,
    /// The data filesystem mounted read-only, its `upper/` the top lower
    /// layer, under a fresh tmpfs upper and workdir.
    FlashReadOnlyUnderTmpfs,
}

/// What to tell the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    None,
    /// Worn: log a warning (and record it in the state file).
    Warning,
    /// Worn out: log an error, whatever the policy did.
    Critical,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub upper: UpperAction,
    pub notice: Notice,
}

impl Decision {
    /// Whether anything may be written to the flash at this boot (the wear
    /// log included): only with a read-write flash upper.
    pub fn writes_flash(&self) -> bool {
        self.upper == UpperAction::Flash
    }

    /// One line for the boot log and the state file.
    pub fn summary(&self) -> &'static str {
        match (self.upper, self.notice) {
            (UpperAction::Flash, Notice::None) => "flash wear ok",
            (UpperAction::Flash, Notice::Warning) => "flash wear: warning, booting normally",
            (UpperAction::Flash, Notice::Critical) => {
                "flash worn out: booting normally as the policy says (overlay.wear_policy=warn)"
            }
            (UpperAction::Tmpfs, _) => {
                "flash worn out: booting on a tmpfs upper, changes are lost at reboot"
            }
            (UpperAction::FlashReadOnlyUnderTmpfs, _) => {
                "flash worn out: its data is shown read-only under a tmpfs upper, changes are lost at reboot"
            }
        }
    }
}

/// The decision for a device level under a policy (table in the module doc).
pub fn decide(level: Level, policy: Policy) -> Decision {
    let (upper, notice) = match (level, policy) {
        (Level::Unknown | Level::Ok, _) => (UpperAction::Flash, Notice::None),
        (Level::Warn, _) => (UpperAction::Flash, Notice::Warning),
        (Level::Critical, Policy::Warn) => (UpperAction::Flash, Notice::Critical),
        (Level::Critical, Policy::Tmpfs) => (UpperAction::Tmpfs, Notice::Critical),
        (Level::Critical, Policy::Protect) => {
            (UpperAction::FlashReadOnlyUnderTmpfs, Notice::Critical)
        }
    };
    Decision { upper, notice }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Level::*;
    use Notice as N;
    use UpperAction::*;

    #[test]
    fn decision_table() {
        let table = [
            (Unknown, Policy::Protect, Flash, N::None),
            (Unknown, Policy::Tmpfs, Flash, N::None),
            (Ok, Policy::Warn, Flash, N::None),
            (Ok, Policy::Protect, Flash, N::None),
            (Ok, Policy::Tmpfs, Flash, N::None),
            (Warn, Policy::Warn, Flash, N::Warning),
            (Warn, Policy::Protect, Flash, N::Warning),
            (Warn, Policy::Tmpfs, Flash, N::Warning),
            (Critical, Policy::Warn, Flash, N::Critical),
            (Critical, Policy::Tmpfs, Tmpfs, N::Critical),
            (
                Critical,
                Policy::Protect,
                FlashReadOnlyUnderTmpfs,
                N::Critical,
            ),
        ];
        for (level, policy, upper, notice) in table {
            assert_eq!(
                decide(level, policy),
                Decision { upper, notice },
                "{level} {policy}"
            );
        }
    }

    #[test]
    fn only_a_flash_upper_writes_the_flash() {
        assert!(decide(Critical, Policy::Warn).writes_flash());
        assert!(!decide(Critical, Policy::Protect).writes_flash());
        assert!(!decide(Critical, Policy::Tmpfs).writes_flash());
        assert_eq!(
            decide(Critical, Policy::default()).summary(),
            "flash worn out: its data is shown read-only under a tmpfs upper, changes are lost at reboot"
        );
        assert_eq!(decide(Ok, Policy::Warn).summary(), "flash wear ok");
    }
}
