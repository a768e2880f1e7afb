// Build information only: the ops register themselves with the dispatcher (TORCH_LIBRARY_IMPL in cpu/ and cuda/);
// their schemas are defined in Python (ftengine/kernels/_schemas.py).
#include <torch/extension.h>

#ifdef FTENGINE_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace {

pybind11::dict build_info() {
  pybind11::dict info;
  info["version"] = FTENGINE_VERSION;
  info["torch"] = TORCH_VERSION;  // the torch this extension was compiled against
#ifdef FTENGINE_WITH_CUDA
  info["cuda_compiled"] = true;
  info["cuda_runtime"] = std::to_string(CUDART_VERSION / 1000) + "." + std::to_string((CUDART_VERSION % 1000) / 10);
#else
  info["cuda_compiled"] = false;
  info["cuda_runtime"] = pybind11::none();
#endif
#if defined(__clang__)
  info["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  info["compiler"] = std::string("gcc ") + __VERSION__;
#else
  info["compiler"] = "unknown";
#endif
#ifdef _OPENMP
  info["openmp"] = true;
#else
  info["openmp"] = false;
#endif
  return info;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ftengine native kernels (ops are reached through torch.ops.ftengine)";
  m.def("build_info", &build_info, "Versions and options this extension was compiled with.");
}
