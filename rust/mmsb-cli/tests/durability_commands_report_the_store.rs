//! The durability commands (`mmsb log inspect|verify`, `mmsb checkpoint
//! create|verify`, `mmsb recover`, `mmsb replay`) run as the built binary on a
//! data directory written through `mmsb_core`, and what they print is checked
//! against what the test itself recorded while writing it: a reference model
//! of every page after every commit, and where each commit's frame landed in
//! which segment file (the segment's size before and after the commit, under
//! immediate durability). Damage is made by hand (a flipped byte, a cut tail)
//! at offsets the test knows, and the commands must name that file and offset
//! and exit non-zero; bad arguments must fail with a clear message.

use mmsb_core::tlog_frame::crc32c;
use mmsb_core::{Delta, Durability, Op, PageId, PageLocation, Store, StoreOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const PAGES: u64 = 3;
const PAGE_SIZE: usize = 512;
/// Small segments, so the log spans several files.
const SEGMENT_BYTES: u64 = 2048;

/// Where one commit's frame is.
#[derive(Clone, Debug)]
struct FrameAt {
    segment: PathBuf,
    start: u64,
    end: u64,
}

/// What the test recorded while writing the store.
struct Written {
    /// `pages[lsn]`: every page's bytes after commit `lsn` (index 0: no pages).
    pages: Vec<Vec<Vec<u8>>>,
    /// `frames[lsn]`: where commit `lsn` is (index 0 unused).
    frames: Vec<Option<FrameAt>>,
    /// `timestamps[lsn]`: commit `lsn`'s timestamp.
    timestamps: Vec<u64>,
}

impl Written {
    fn last_lsn(&self) -> u64 {
        self.pages.len() as u64 - 1
    }
}

fn segments(dir: &Path) -> BTreeMap<PathBuf, u64> {
    std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tlog"))
        .map(|p| {
            let len = std::fs::metadata(&p).unwrap().len();
            (p, len)
        })
        .collect()
}

/// Writes `commits` commits (the first creates the pages, each later one
/// writes one to three random byte ranges) and records the model.
fn write_store(dir: &Path, commits: u64, seed: u64) -> Written {
    // Buffered durability: each frame is appended where the file ends (no
    // zero-filled preallocation or block-padded direct writes, which
    // immediate durability uses), so a segment's size after each commit tells
    // where that commit's frame lies. The log's format is the same.
    let opts = StoreOptions {
        segment_bytes: SEGMENT_BYTES,
        durability: Durability::Buffered {
            max_delay: std::time::Duration::from_millis(5),
        },
        ..StoreOptions::default()
    };
    let s = Store::open(dir, opts).unwrap();
    let mut x = seed | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut w = Written {
        pages: vec![Vec::new()],
        frames: vec![None],
        timestamps: vec![0],
    };
    let mut model: Vec<Vec<u8>> = Vec::new();
    for lsn in 1..=commits {
        let before = segments(dir);
        let ops = if lsn == 1 {
            model = vec![vec![0u8; PAGE_SIZE]; PAGES as usize];
            (0..PAGES)
                .map(|_| Op::CreatePage {
                    size: PAGE_SIZE as u64,
                    location: PageLocation::Cpu,
                })
                .collect()
        } else {
            (0..1 + rnd() % 3)
                .map(|_| {
                    let page = rnd() % PAGES;
                    let len = 1 + (rnd() % 96) as usize;
                    let off = (rnd() as usize) % (PAGE_SIZE - len);
                    let bytes: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
                    model[page as usize][off..off + len].copy_from_slice(&bytes);
                    Op::Delta(Delta::dense(PageId(page + 1), off as u64, bytes))
                })
                .collect()
        };
        let r = s.commit(ops).unwrap();
        assert_eq!(r.lsn, lsn);
        // The frame is in the one segment that grew (or appeared).
        let after = segments(dir);
        let grown: Vec<FrameAt> = after
            .iter()
            .filter(|(p, len)| before.get(*p) != Some(len))
            .map(|(p, len)| FrameAt {
                segment: p.clone(),
                start: before.get(p).copied().unwrap_or(40).max(40),
                end: *len,
            })
            .collect();
        assert_eq!(grown.len(), 1, "commit {lsn} grew one segment: {grown:?}");
        w.frames.push(Some(grown[0].clone()));
        w.pages.push(model.clone());
        w.timestamps.push(r.timestamp_ns);
    }
    s.close().unwrap();
    w
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn mmsb(args: &[&str], dir: &Path) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_mmsb"))
        .args(args)
        .arg(dir)
        .output()
        .expect("the mmsb binary runs");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn must_pass(args: &[&str], dir: &Path) -> String {
    let r = mmsb(args, dir);
    assert!(r.ok, "mmsb {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
    r.stdout
}

fn must_fail(args: &[&str], dir: &Path) -> String {
    let r = mmsb(args, dir);
    assert!(
        !r.ok,
        "mmsb {args:?} should have failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r.stderr
}

fn assert_has(text: &str, needle: &str) {
    assert!(text.contains(needle), "{needle:?} not in:\n{text}");
}

/// The `page#N size=S epoch=E crc32c=C` lines of `mmsb replay`, as (id, size, crc).
fn replayed_pages(out: &str) -> Vec<(u64, usize, String)> {
    out.lines()
        .filter_map(|l| l.strip_prefix("page#"))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[0].parse().unwrap(),
                f[1].strip_prefix("size=").unwrap().parse().unwrap(),
                f[3].strip_prefix("crc32c=").unwrap().to_owned(),
            )
        })
        .collect()
}

fn model_pages(pages: &[Vec<u8>]) -> Vec<(u64, usize, String)> {
    pages
        .iter()
        .enumerate()
        .map(|(i, b)| (i as u64 + 1, b.len(), format!("{:08x}", crc32c(b))))
        .collect()
}

fn flip_byte(path: &Path, at: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[at as usize] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_good_store_verifies_and_every_command_reports_its_commits_and_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let w = write_store(dir, 40, 7);
    let segs = segments(dir);
    assert!(segs.len() >= 3, "the log spans several segments");

    let out = must_pass(&["log", "verify"], dir);
    assert_has(
        &out,
        &format!("ok: 40 commits in {} segments, LSN 1..40", segs.len()),
    );

    let out = must_pass(&["log", "inspect"], dir);
    assert_has(&out, &format!("segments={} commits=40 ", segs.len()));
    assert_has(&out, "lsn=1..40 ");
    assert_has(&out, "end: clean");
    // One line per segment: number, first and last LSN, size.
    for (path, len) in &segs {
        let lsns: Vec<u64> = (1..=40)
            .filter(|&l| w.frames[l as usize].as_ref().unwrap().segment == *path)
            .collect();
        let number = path.file_stem().unwrap().to_str().unwrap();
        let line = out
            .lines()
            .find(|l| l.starts_with(number))
            .unwrap_or_else(|| panic!("no line for segment {number}:\n{out}"));
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            f[1..],
            [
                lsns[0].to_string(),
                lsns[lsns.len() - 1].to_string(),
                len.to_string()
            ],
            "{line}"
        );
    }

    let out = must_pass(&["checkpoint", "verify"], dir);
    assert_has(&out, "no checkpoints in");
    let out = must_pass(&["recover"], dir);
    assert_has(&out, "checkpoint: none");
    assert_has(&out, "replayed: 40 commits");
    assert_has(&out, &format!("recovered: lsn=40 pages={PAGES}"));
    let out = must_pass(&["checkpoint", "create"], dir);
    assert_has(&out, &format!("checkpoint lsn=40 pages={PAGES} "));
    let out = must_pass(&["checkpoint", "verify"], dir);
    assert_has(&out, &format!("ok   lsn=40 pages={PAGES} "));
    let out = must_pass(&["recover"], dir);
    assert_has(&out, "checkpoint: lsn=40 ");
    assert_has(&out, "replayed: 0 commits");
    assert_has(&out, &format!("recovered: lsn=40 pages={PAGES}"));
    let out = must_pass(&["replay", "--to-lsn", "40"], dir);
    assert_eq!(replayed_pages(&out), model_pages(&w.pages[40]));
    // The checkpoint covers the whole log, so the segments before it are
    // gone: earlier states are not retained, by LSN or by time.
    let err = must_fail(&["replay", "--to-lsn", "5"], dir);
    assert_has(&err, "LSN 5 is not retained");
    let err = must_fail(&["replay", "--to-time", &w.timestamps[5].to_string()], dir);
    assert_has(&err, "is not retained");
}

#[test]
fn replay_to_an_lsn_or_a_time_gives_the_reference_model_then() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let w = write_store(dir, 25, 11);
    for lsn in 1..=w.last_lsn() {
        let out = must_pass(&["replay", "--to-lsn", &lsn.to_string()], dir);
        assert_has(
            &out,
            &format!("lsn={lsn} timestamp_ns={}", w.timestamps[lsn as usize]),
        );
        assert_eq!(
            replayed_pages(&out),
            model_pages(&w.pages[lsn as usize]),
            "LSN {lsn}"
        );
    }
    for k in [1, 9, 25] {
        let t = w.timestamps[k];
        // The last commit stamped at or before t (stamps never decrease).
        let lsn = (1..w.timestamps.len())
            .rfind(|&l| w.timestamps[l] <= t)
            .unwrap();
        let out = must_pass(&["replay", "--to-time", &t.to_string()], dir);
        assert_has(&out, &format!("lsn={lsn} "));
        assert_eq!(replayed_pages(&out), model_pages(&w.pages[lsn]));
    }
}

#[test]
fn a_flipped_byte_inside_the_log_fails_with_its_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let w = write_store(dir, 40, 3);
    // A commit in the first segment, well before the end of the log.
    let lsn = 5;
    let f = w.frames[lsn].clone().unwrap();
    assert_ne!(
        f.segment,
        w.frames[40].as_ref().unwrap().segment,
        "not in the last segment"
    );
    flip_byte(&f.segment, (f.start + f.end) / 2);
    let named = format!("{} at byte {}", f.segment.display(), f.start);

    let err = must_fail(&["log", "verify"], dir);
    assert_has(&err, &named);
    let r = mmsb(&["log", "inspect"], dir);
    assert!(!r.ok, "inspect exits non-zero on damage:\n{}", r.stdout);
    assert_has(&r.stdout, "end: ");
    assert_has(&r.stdout, &named);
    assert_has(&r.stdout, &format!("lsn=1..{} ", lsn - 1));
    let err = must_fail(&["recover"], dir);
    assert_has(&err, &named);
    let err = must_fail(&["checkpoint", "create"], dir);
    assert_has(&err, &named);
    // Replay before the damage still works; at or after it, it fails by name.
    let out = must_pass(&["replay", "--to-lsn", &(lsn - 1).to_string()], dir);
    assert_eq!(replayed_pages(&out), model_pages(&w.pages[lsn - 1]));
    let err = must_fail(&["replay", "--to-lsn", &lsn.to_string()], dir);
    assert_has(&err, &named);

    // Accepting the loss keeps the commits before the damage and says so.
    let out = must_pass(&["recover", "--accept-loss"], dir);
    assert_has(&out, &format!("CORRUPTION ACCEPTED: {named}"));
    assert_has(&out, &format!("recovered: lsn={} pages={PAGES}", lsn - 1));
    let out = must_pass(&["log", "verify"], dir);
    assert_has(&out, &format!("ok: {} commits", lsn - 1));
}

#[test]
fn a_cut_tail_is_reported_by_verify_and_cut_by_recover() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let w = write_store(dir, 30, 5);
    let f = w.frames[30].clone().unwrap();
    let cut = (f.start + f.end) / 2;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&f.segment)
        .unwrap();
    file.set_len(cut).unwrap();
    drop(file);

    let err = must_fail(&["log", "verify"], dir);
    assert_has(
        &err,
        &format!("torn tail: {} from byte {}", f.segment.display(), f.start),
    );
    let out = must_pass(&["recover"], dir);
    assert_has(
        &out,
        &format!(
            "torn tail cut: {} at byte {} ({} bytes)",
            f.segment.display(),
            f.start,
            cut - f.start
        ),
    );
    assert_has(&out, &format!("recovered: lsn=29 pages={PAGES}"));
    assert_eq!(std::fs::metadata(&f.segment).unwrap().len(), f.start);
    let out = must_pass(&["log", "verify"], dir);
    assert_has(&out, "ok: 29 commits");
    let out = must_pass(&["replay", "--to-lsn", "29"], dir);
    assert_eq!(replayed_pages(&out), model_pages(&w.pages[29]));
}

#[test]
fn a_log_of_a_newer_format_is_refused_by_file_and_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let w = write_store(dir, 3, 1);
    let seg = w.frames[1].clone().unwrap().segment;
    let mut b = std::fs::read(&seg).unwrap();
    let newer = mmsb_core::tlog_segment::FORMAT_VERSION + 1;
    b[8..12].copy_from_slice(&newer.to_le_bytes());
    let crc = crc32c(&b[0..32]);
    b[32..36].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, &b).unwrap();
    for cmd in [&["log", "verify"][..], &["log", "inspect"], &["recover"]] {
        let err = must_fail(cmd, dir);
        assert_has(&err, &seg.display().to_string());
        assert_has(&err, &format!("format version {newer}"));
    }
    assert_eq!(std::fs::read(&seg).unwrap(), b, "nothing was cut");
}

#[test]
fn bad_arguments_fail_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-dir");
    for cmd in [
        &["log", "inspect"][..],
        &["log", "verify"],
        &["checkpoint", "create"],
        &["checkpoint", "verify"],
        &["recover"],
        &["replay", "--to-lsn", "1"],
    ] {
        let err = must_fail(cmd, &missing);
        assert_has(&err, "mmsb: error: ");
        assert_has(&err, &missing.display().to_string());
        assert!(!missing.exists(), "mmsb {cmd:?} created the directory");
    }
    // A directory that holds no store is not one: nothing is created in it.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for cmd in [
        &["checkpoint", "create"][..],
        &["recover"],
        &["replay", "--to-lsn", "1"],
    ] {
        let err = must_fail(cmd, &empty);
        assert_has(&err, "is not a data directory");
        assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "{cmd:?}");
    }

    let store = tmp.path().join("store");
    let w = write_store(&store, 10, 2);
    assert_eq!(w.last_lsn(), 10);
    let err = must_fail(&["replay", "--to-lsn", "11"], &store);
    assert_has(&err, "LSN 11 is not retained");
    assert_has(&err, "ends at LSN 10");
    // Before the first commit (whose log is all there) the store was empty.
    let out = must_pass(&["replay", "--to-time", "1"], &store);
    assert_has(&out, "lsn=0 ");
    assert!(replayed_pages(&out).is_empty(), "{out}");
    let r = mmsb(&["replay"], &store);
    assert!(!r.ok, "replay needs --to-lsn or --to-time");
    assert_has(&r.stderr, "--to-lsn");
}
