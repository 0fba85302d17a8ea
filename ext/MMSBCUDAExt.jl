# MMSBCUDAExt: device views of GPU-store pages as CUDA.jl arrays.
#
# Loaded by Julia (1.9+) when both MMSB and CUDA.jl are loaded: CUDA.jl is a
# weak dependency (Project.toml [weakdeps]/[extensions]), so MMSB never needs
# it. Adds the method of `MMSB.device_view` for a GpuStore page: the page's
# device address (`MMSB.device_pointer`, over `mmsb_gpu_page_device_ptr`)
# wrapped with `unsafe_wrap(CuArray, ...)`, no copy. The store allocates in
# device 0's primary context, which is the context CUDA.jl uses for device 0.
module MMSBCUDAExt

using CUDA: CUDA, CuArray, CuPtr
using MMSB: MMSB, GpuStore, InvalidArgumentError, PageRef

function MMSB.device_view(gs::GpuStore, page::PageRef; T::Type = UInt8)
    isbitstype(T) && sizeof(T) > 0 ||
        throw(InvalidArgumentError("device_view: element type $T is not a non-empty bits type"))
    ptr, len = MMSB.device_pointer(gs, page)  # mmsb_gpu_page_device_ptr; throws on a non-device page
    len % sizeof(T) == 0 ||
        throw(InvalidArgumentError("device_view: page of $len bytes is not a whole number of " *
                                   "$T ($(sizeof(T)) bytes each)"))
    return unsafe_wrap(CuArray, CuPtr{T}(ptr), len ÷ sizeof(T); own = false)
end

end # module
