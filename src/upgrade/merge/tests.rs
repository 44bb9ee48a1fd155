//! The decision table, then the executor on genuine overlayfs uppers.

use super::*;

fn id(n: u32) -> Identity {
    Identity {
        squashfs: true,
        size: 4096,
        time: n,
        sb: n,
        tables: n,
        shipped: None,
    }
}

fn lower(n: u32) -> Lower {
    Lower { id: id(n), raw: None }
}

fn facts() -> Facts {
    Facts {
        state: Ok(Some(State {
            lowers: vec![lower(1)],
            changed: false,
        })),
        pending: Ok(None),
        upper_empty: false,
        reset_done: 0,
        reset_pending: false,
    }
}

fn upgrade(old: Vec<Lower>, policy: Policy, resume: bool) -> Decision {
    Decision::Upgrade(Upgrade {
        old,
        new: vec![id(2)],
        policy,
        resume,
        note: None,
    })
}

#[test]
fn a_normal_boot_decides_nothing() {
    assert_eq!(decide(&facts(), &[id(1)], Policy::Merge), Decision::None);
    assert_eq!(decide(&facts(), &[id(1)], Policy::Reset), Decision::None);
}

#[test]
fn a_new_image_is_an_upgrade_of_the_configured_policy() {
    for p in [Policy::Merge, Policy::Keep] {
        assert_eq!(decide(&facts(), &[id(2)], p), upgrade(vec![lower(1)], p, false));
    }
    let Decision::Reset { up, request } = decide(&facts(), &[id(2)], Policy::Reset) else {
        panic!()
    };
    assert!(request);
    assert_eq!(up.old, vec![lower(1)]);
    // A reset request already pending (written before a cut) is not doubled.
    let mut f = facts();
    f.reset_pending = true;
    assert!(matches!(
        decide(&f, &[id(2)], Policy::Reset),
        Decision::Reset { request: false, .. }
    ));
    // More lowers than before, or the image check's verdict: an upgrade too.
    assert!(matches!(decide(&facts(), &[id(1), id(3)], Policy::Merge), Decision::Upgrade(_)));
    let mut f = facts();
    if let Ok(Some(s)) = &mut f.state {
        s.changed = true;
    }
    let Decision::Upgrade(up) = decide(&f, &[id(1)], Policy::Merge) else {
        panic!()
    };
    assert_eq!(up.old, vec![lower(1)]);
}

#[test]
fn a_pending_upgrade_is_resumed_with_its_own_policy() {
    let mut f = facts();
    f.pending = Ok(Some(Report {
        old: vec![lower(1)],
        new: vec![id(2)],
        policy: Policy::Keep,
        ..Report::default()
    }));
    // Whatever the policy now, and even if yet another image is there.
    assert_eq!(
        decide(&f, &[id(2)], Policy::Merge),
        upgrade(vec![lower(1)], Policy::Keep, true)
    );
    let Decision::Upgrade(up) = decide(&f, &[id(3)], Policy::Reset) else {
        panic!()
    };
    assert!(up.resume && up.new == vec![id(3)]);
    // A pending reset: requested again only if no reset happened since.
    f.pending = Ok(Some(Report {
        old: vec![lower(1)],
        new: vec![id(2)],
        policy: Policy::Reset,
        reset_after: 4,
        ..Report::default()
    }));
    f.reset_done = 4;
    assert!(matches!(
        decide(&f, &[id(2)], Policy::Merge),
        Decision::Reset { request: true, up } if up.resume
    ));
    f.reset_done = 5;
    assert!(matches!(
        decide(&f, &[id(2)], Policy::Merge),
        Decision::Reset { request: false, .. }
    ));
    f.reset_done = 4;
    f.reset_pending = true;
    assert!(matches!(
        decide(&f, &[id(2)], Policy::Merge),
        Decision::Reset { request: false, .. }
    ));
}

#[test]
fn no_record_and_bad_records_never_remove_or_reset() {
    let mut f = facts();
    f.state = Ok(None);
    f.upper_empty = true;
    assert_eq!(decide(&f, &[id(1)], Policy::Reset), Decision::Record);
    f.upper_empty = false;
    for p in [Policy::Merge, Policy::Keep, Policy::Reset] {
        let Decision::Upgrade(up) = decide(&f, &[id(1)], p) else {
            panic!()
        };
        assert!(up.old.is_empty(), "no old manifest: nothing can be removed");
        assert_ne!(up.policy, Policy::Reset);
        assert!(up.note.is_some());
    }
    let mut f = facts();
    f.state = Err(RecordError::Magic);
    let Decision::Upgrade(up) = decide(&f, &[id(1)], Policy::Reset) else {
        panic!()
    };
    assert_eq!((up.policy, up.old.len()), (Policy::Keep, 0));
    assert!(up.note.unwrap().contains("unusable"));
    let mut f = facts();
    f.pending = Err(RecordError::Truncated);
    let Decision::Upgrade(up) = decide(&f, &[id(2)], Policy::Merge) else {
        panic!()
    };
    assert_eq!((up.policy, up.old.len(), up.resume), (Policy::Keep, 0, false));
}
