# Builds libmmsb (the Rust engine behind MMSB's C ABI) and records where it is.
#
# Run by `] build MMSB` (Pkg.build). It writes deps/deps.jl (gitignored) with
#
#     const libmmsb = "/absolute/path/to/libmmsb.so"
#
# If the environment variable MMSB_LIB names an existing library, that file is
# used as is and cargo is not run (for prebuilt or system-installed copies).
# Otherwise `cargo build --release -p mmsb-capi` runs in rust/ and the freshly
# built library in rust/target/release/ is recorded. Needs a Rust toolchain
# (https://rustup.rs) on PATH for the cargo path.

using Libdl

const DEPS_DIR = @__DIR__
const REPO_ROOT = normpath(joinpath(DEPS_DIR, ".."))
const RUST_DIR = joinpath(REPO_ROOT, "rust")
const DEPS_FILE = joinpath(DEPS_DIR, "deps.jl")

"The file name of the shared library on this platform."
function library_filename()
    Sys.iswindows() && return "mmsb.$(Libdl.dlext)"
    return "libmmsb.$(Libdl.dlext)"
end

"Builds the library with cargo and returns its absolute path."
function build_with_cargo()
    cargo = Sys.which("cargo")
    cargo === nothing && error("MMSB: `cargo` is not on PATH. Install Rust (https://rustup.rs) " *
                               "or set MMSB_LIB to a prebuilt libmmsb.")
    @info "MMSB: building libmmsb with cargo (release)" RUST_DIR
    cmd = Cmd(`$cargo build --release -p mmsb-capi`; dir = RUST_DIR)
    run(cmd)
    target = get(ENV, "CARGO_TARGET_DIR", joinpath(RUST_DIR, "target"))
    path = abspath(joinpath(target, "release", library_filename()))
    isfile(path) || error("MMSB: cargo finished but $path does not exist")
    return path
end

"Returns the library to record: MMSB_LIB if set, else a cargo build."
function find_or_build_library()
    prebuilt = get(ENV, "MMSB_LIB", "")
    if !isempty(prebuilt)
        isfile(prebuilt) || error("MMSB: MMSB_LIB=$prebuilt does not name a file")
        @info "MMSB: using the prebuilt library from MMSB_LIB" prebuilt
        return abspath(prebuilt)
    end
    return build_with_cargo()
end

"Checks that the library loads and exports the C ABI before recording it."
function verify_library(path::AbstractString)
    handle = Libdl.dlopen(path)
    try
        Libdl.dlsym(handle, :mmsb_version)
    finally
        Libdl.dlclose(handle)
    end
    return path
end

function write_deps_file(path::AbstractString)
    open(DEPS_FILE, "w") do io
        println(io, "# Written by deps/build.jl; do not edit or commit.")
        println(io, "const libmmsb = ", repr(String(path)))
    end
    @info "MMSB: wrote $DEPS_FILE" libmmsb = path
end

write_deps_file(verify_library(find_or_build_library()))
