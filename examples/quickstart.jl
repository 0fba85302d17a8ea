# The README's Julia example, extended: an in-memory store, then a durable one
# with a commit, a checkpoint, replay to an earlier LSN and a reopen.
# Run with `julia --project=. examples/quickstart.jl` after `] build MMSB`.
using MMSB

open_store() do store
    page = create_page(store, 4096)
    apply_delta!(store, Delta(page, 0, Vector{UInt8}("hello")))
    @assert read_page(store, page)[1:5] == Vector{UInt8}("hello")
    total = borrow_page(store, page) do bytes   # zero-copy, pinned snapshot
        sum(Int, bytes)
    end
    println("sum of page bytes: ", total)
end

dir = mktempdir()
open_store(dir) do store
    lsn1, created = commit!(store) do c
        create_page!(c, 64)
    end
    page = created[1]
    lsn2, _ = commit!(store, Delta(page, 0, fill(0x2a, 8)))
    checkpoint!(store)
    replay(store; lsn = lsn1) do past
        @assert all(==(0x00), read_page(past, page))   # before the write
    end
    println("committed LSN ", lsn2, "; log: ", log_summary(store))
end
open_store(dir) do store                            # reopen: recovered
    println("recovered at LSN ", store_lsn(store), ": ", recovery_report(store))
end
