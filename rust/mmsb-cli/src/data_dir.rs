//! The one check every data-directory command makes on its DIR argument.
//!
//! A data directory is one a store has written: it holds a `log/` or a
//! `checkpoints/` directory. The commands that open a store (`recover`,
//! `checkpoint create`) would otherwise create a fresh, empty store in any
//! directory they are given, so a mistyped path would "recover" nothing and
//! exit 0; the read-only ones would report an empty log. They all refuse a
//! path that is not a data directory instead, naming it.

use mmsb_core::recovery::{CHECKPOINT_DIR, LOG_DIR};
use std::path::Path;

/// `Ok` if `dir` is a data directory; otherwise an error naming it.
pub fn check(dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!(
            "{} is not a data directory (no such directory)",
            dir.display()
        ));
    }
    if !dir.join(LOG_DIR).is_dir() && !dir.join(CHECKPOINT_DIR).is_dir() {
        return Err(format!(
            "{} is not a data directory (it has neither {LOG_DIR}/ nor {CHECKPOINT_DIR}/)",
            dir.display()
        ));
    }
    Ok(())
}
