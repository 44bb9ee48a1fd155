//! PID 1's memory bound (issue 11): whatever the command line and the board
//! file hold, reading them into a config costs far less than 1 MiB of heap.
//! A counting global allocator measures the peak of live heap bytes while
//! `Config::from_bytes` (and the messages it produces) runs on the worst
//! inputs we could think of; README "Robustness" quotes these figures
//! (`cargo test --test memory -- --nocapture` prints them).

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use overlay_init::config::Config;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// One measurement at a time (the test harness runs tests in threads).
static ONE: Mutex<()> = Mutex::new(());

// SAFETY: forwards every call to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(l.size(), Relaxed) + l.size();
        PEAK.fetch_max(live, Relaxed);
        // SAFETY: forwarded as it is.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Relaxed);
        // SAFETY: forwarded as it is.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Peak heap bytes above the start while the board file and command line
/// are read into a config and every error message is formatted as the
/// boot logs it.
fn peak(board: &[u8], line: &[u8]) -> usize {
    let _one = ONE.lock().unwrap();
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    {
        let (cfg, errors) = Config::from_bytes(Some(board), line);
        for e in &errors {
            let _ = overlay_init::kmsg::format_message(format_args!("bad setting {e}"));
            let _ = format!("bad setting {e}");
        }
        std::hint::black_box((cfg, errors));
    }
    PEAK.load(Relaxed) - base
}

const BOUND: usize = 256 << 10;

#[test]
fn the_worst_command_lines_and_board_files_stay_far_under_1_mib() {
    let mib = 1 << 20;
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("1 MiB board file of one long word", vec![b'x'; mib], vec![]),
        (
            "1 MiB board file of `overlay.lower=` one long value",
            [b"overlay.lower=PARTLABEL=".as_slice(), &vec![b'B'; mib]].concat(),
            vec![],
        ),
        (
            "1 MiB board file of 1-byte keys (a a a ...)",
            b"a ".repeat(mib / 2),
            vec![],
        ),
        (
            "1 MiB board file of bad overlay.* keys",
            b"overlay.x=1\n".repeat(mib / 12),
            vec![],
        ),
        (
            "1 MiB board file of distinct overlay.modules.FS= keys",
            (0..mib / 24).flat_map(|i| format!("overlay.modules.f{i}=m\n").into_bytes()).collect(),
            vec![],
        ),
        (
            "1 MiB board file of non-UTF-8 root= values",
            b"root=\xff\xfe\n".repeat(mib / 8),
            vec![],
        ),
        (
            "64 KiB board file of `overlay.modules=a,a,...` (the most items)",
            [b"overlay.modules=".as_slice(), &b"a,".repeat(32 * 1024 - 8)].concat(),
            vec![],
        ),
        (
            "64 KiB board file of `overlay.lower=/dev/a,...`",
            [b"overlay.lower=".as_slice(), &b"/dev/a,".repeat(9000)].concat(),
            vec![],
        ),
        (
            "the most a config can hold: 128 lowers of 480-byte labels, 128 modules, 16 x 128 FS modules",
            [
                format!("overlay.lower={}\n", vec![format!("PARTLABEL={}", "L".repeat(470)); 128].join(",")),
                format!("overlay.modules={}\n", vec!["m"; 128].join(",")),
                (0..16)
                    .map(|i| format!("overlay.modules.f{i}={}\n", vec!["mm"; 128].join(",")))
                    .collect(),
            ]
            .concat()
            .into_bytes(),
            vec![],
        ),
        (
            "4 KiB command line of one key repeated",
            vec![],
            b"overlay.lower=PARTLABEL=abcdefgh ".repeat(4096 / 33),
        ),
        (
            "4 KiB command line of `x` flags",
            vec![],
            b"x ".repeat(2048),
        ),
        (
            "64 KiB command line of bad values (quotes, bytes)",
            vec![],
            b"overlay.fstype=\"\xe9 \x1b[2J\" ".repeat(65536 / 25),
        ),
    ];
    let mut worst = 0;
    for (what, board, line) in &cases {
        let p = peak(board, line);
        eprintln!("heap peak {p:>7} bytes: {what}");
        assert!(p < BOUND, "{what}: {p} bytes");
        worst = worst.max(p);
    }
    eprintln!("worst: {worst} bytes (bound {BOUND})");
}
