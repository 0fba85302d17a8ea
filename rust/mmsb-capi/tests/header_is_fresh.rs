//! The checked-in C header must equal what cbindgen generates from the crate now.
//! Set MMSB_UPDATE_HEADER=1 to rewrite it (scripts/gen-header.sh does).

use std::path::Path;

#[test]
fn header_is_fresh() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen failed to parse the crate");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = dir.join("include").join("mmsb.h");
    if std::env::var_os("MMSB_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write header");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/mmsb.h is stale: run scripts/gen-header.sh (MMSB_UPDATE_HEADER=1 cargo test -p mmsb-capi --test header_is_fresh) and commit it"
    );
}
