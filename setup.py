"""Build script for the optional native extension ``ftengine._C``.

Everything else (package metadata, dependencies) lives in pyproject.toml. The extension is built from
``csrc/``: the C++ CPU kernels always, the CUDA kernels too when torch is a CUDA build and a CUDA toolkit
is found. Environment switches, read at build time:

* ``FTENGINE_DISABLE_NATIVE=1``: build no extension at all (pure-PyTorch install).
* ``FTENGINE_DISABLE_CUDA=1``: build the CPU kernels only, even when a CUDA toolkit is present.
* ``FTENGINE_REQUIRE_NATIVE=1``: fail instead of falling back when no C++ compiler exists (CI uses this).
* ``CUDA_HOME`` / ``CUDA_PATH``: the CUDA toolkit root (checked: must hold bin/nvcc and lib64/libcudart.so).
* ``TORCH_CUDA_ARCH_LIST``: GPU architectures; defaults to the visible GPUs, or "8.0;9.0" without one.
* ``MAX_JOBS``: parallel compile jobs (ninja).

A machine without a C++ compiler gets a pure-Python install and a loud warning; the package then runs every
op on its PyTorch reference and ``ftengine info`` says why native is unavailable. A compiler that is present
but fails on our sources is a bug and fails the build (set ``FTENGINE_DISABLE_NATIVE=1`` to install anyway).
"""

from __future__ import annotations

import glob
import os
import shutil
import site
import sys
import sysconfig
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _warn(message: str) -> None:
    bar = "=" * 100
    print(f"\n{bar}\nftengine setup: {message}\n{bar}\n", file=sys.stderr)


def _valid_cuda_root(path: str | None) -> bool:
    # A root counts only if it holds both the compiler and the runtime: an nvcc on PATH may be a
    # wrapper script in /usr/local/bin, whose parent is not a toolkit root.
    if not path:
        return False
    root = Path(path)
    return (root / "bin" / "nvcc").is_file() and any((root / "lib64").glob("libcudart.so*"))


def find_cuda_home() -> str | None:
    """The CUDA toolkit root: $CUDA_HOME/$CUDA_PATH if valid, else /usr/local/cuda, else /usr/local/cuda-*."""
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if _valid_cuda_root(os.environ.get(env)):
            return os.environ[env]
    candidates = ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]
    nvcc = shutil.which("nvcc")
    if nvcc:  # resolve symlinks (not wrapper scripts) as a last guess
        candidates.append(str(Path(nvcc).resolve().parent.parent))
    return next((c for c in candidates if _valid_cuda_root(c)), None)


def nvidia_include_dirs() -> list[str]:
    """Headers of the pip ``nvidia-*`` packages (cusparse.h, cublas_v2.h, ...) that torch's CUDA headers include."""
    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    try:
        import torch

        roots.add(str(Path(torch.__file__).resolve().parent.parent))
    except ImportError:
        pass
    dirs = {d for r in roots for d in glob.glob(os.path.join(r, "nvidia", "*", "include"))}
    return sorted(dirs)


def _has_cxx_compiler() -> bool:
    cxx = os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "c++"
    return shutil.which(cxx.split()[0]) is not None or shutil.which("c++") is not None


def native_extensions() -> tuple[list, dict]:
    """The extension list and cmdclass for setup(); empty when native is disabled or impossible."""
    if _flag("FTENGINE_DISABLE_NATIVE"):
        print("ftengine setup: FTENGINE_DISABLE_NATIVE=1, building no native extension", file=sys.stderr)
        return [], {}
    if not _has_cxx_compiler():
        if _flag("FTENGINE_REQUIRE_NATIVE"):
            raise SystemExit("ftengine setup: no C++ compiler found and FTENGINE_REQUIRE_NATIVE=1; install g++/clang++")
        _warn("no C++ compiler found: installing without the native extension; every op runs on its "
              "PyTorch reference. Install a C++ compiler (g++ or clang++) and reinstall for the native kernels.")
        return [], {}

    try:
        import torch  # noqa: F401  (needed to build; pyproject's build requirements provide it)
    except ImportError:
        if _flag("FTENGINE_REQUIRE_NATIVE"):
            raise
        _warn("torch is not importable at build time: installing without the native extension. Install torch "
              "first (or build with build isolation) and reinstall for the native kernels.")
        return [], {}
    cuda_home = find_cuda_home()
    if cuda_home:  # must be set before torch.utils.cpp_extension is imported: it reads CUDA_HOME once
        os.environ["CUDA_HOME"] = cuda_home
    import torch
    from torch.utils import cpp_extension

    cpp_extension.CUDA_HOME = cuda_home  # in case it was imported earlier with a worse guess
    with_cuda = torch.version.cuda is not None and cuda_home is not None and not _flag("FTENGINE_DISABLE_CUDA")
    if torch.version.cuda is not None and cuda_home is None and not _flag("FTENGINE_DISABLE_CUDA"):
        _warn("torch is a CUDA build but no CUDA toolkit (bin/nvcc + lib64/libcudart.so) was found in $CUDA_HOME, "
              "/usr/local/cuda or /usr/local/cuda-*: building the CPU kernels only. Set CUDA_HOME to build CUDA.")
    if with_cuda and not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"  # no GPU to ask: a small list keeps CI compiles short

    sources = sorted(str(p.relative_to(ROOT)) for p in CSRC.glob("*.cpp"))
    sources += sorted(str(p.relative_to(ROOT)) for p in (CSRC / "cpu").glob("*.cpp"))
    # -fno-math-errno lets sqrt vectorize; the hot CPU loops pick AVX-512/AVX2 at run time (target_clones).
    cxx_flags = ["-O3", "-fno-math-errno", "-fopenmp"]
    macros = [("FTENGINE_VERSION", f'"{_version()}"')]
    kwargs: dict = dict(include_dirs=[str(CSRC / "include")], extra_link_args=["-fopenmp"])
    if with_cuda:
        sources += sorted(str(p.relative_to(ROOT)) for p in (CSRC / "cuda").glob("*.cu"))
        macros.append(("FTENGINE_WITH_CUDA", "1"))
        kwargs["include_dirs"] += nvidia_include_dirs()
        nvcc_flags = ["-O3", "-lineinfo", "--expt-relaxed-constexpr"]
        ext = cpp_extension.CUDAExtension(
            "ftengine._C", sources, define_macros=macros,
            extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags}, **kwargs)
    else:
        ext = cpp_extension.CppExtension(
            "ftengine._C", sources, define_macros=macros, extra_compile_args={"cxx": cxx_flags}, **kwargs)
    print(f"ftengine setup: building ftengine._C ({'CPU + CUDA, CUDA_HOME=' + cuda_home if with_cuda else 'CPU only'})",
          file=sys.stderr)
    build_ext = cpp_extension.BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)
    return [ext], {"build_ext": build_ext}


def _version() -> str:
    text = (ROOT / "ftengine" / "__init__.py").read_text()
    return next(line.split('"')[1] for line in text.splitlines() if line.startswith("__version__"))


ext_modules, cmdclass = native_extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
