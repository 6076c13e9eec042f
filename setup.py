"""Build script for hpcgan and its native extension ``hpcgan._C``.

The extension is built against the torch that is already installed (its C++ ABI
must match the runtime's), so install torch first and then run::

    pip install --no-build-isolation -e .

CPU kernels are always compiled. CUDA kernels are compiled when a CUDA build of
torch and a CUDA toolkit are found (torch's CUDA_HOME detection), unless
``HPCGAN_CUDA=0``. ``HPCGAN_CUDA=1`` makes a missing toolkit an error instead of a
CPU-only build. ``TORCH_CUDA_ARCH_LIST`` picks the GPU architectures
(default "8.0;9.0"). A compiler error stops the build: there is no silent
fallback to a slower package.
"""

import glob
import os
import sys

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils import cpp_extension
except ImportError:  # pragma: no cover - exercised only on a misconfigured machine
    sys.exit(
        "hpcgan: torch is not importable in this build environment.\n"
        "The native extension must be compiled against the torch you will run with.\n"
        "Install torch first, then build without isolation:\n"
        "    pip install torch==2.14.1 torchvision==0.29.1\n"
        "    pip install --no-build-isolation -e .\n"
        "(or simply run: bash scripts/install.sh)"
    )

HERE = os.path.dirname(os.path.abspath(__file__))


def _want_cuda():
    """Decide whether to compile the CUDA kernels; explain the decision."""
    flag = os.environ.get("HPCGAN_CUDA", "auto").strip().lower()
    if flag not in ("auto", "0", "1"):
        sys.exit(f"hpcgan: HPCGAN_CUDA must be 0, 1 or auto, not {flag!r}")
    if flag == "0":
        print("hpcgan: HPCGAN_CUDA=0, building CPU kernels only")
        return False
    problems = []
    if torch.version.cuda is None:
        problems.append("the installed torch is a CPU-only build")
    if cpp_extension.CUDA_HOME is None:
        problems.append("no CUDA toolkit found (set CUDA_HOME or put nvcc on PATH)")
    if problems:
        if flag == "1":
            sys.exit("hpcgan: HPCGAN_CUDA=1 but " + "; ".join(problems))
        print("hpcgan: building CPU kernels only: " + "; ".join(problems))
        return False
    print(f"hpcgan: building CPU and CUDA kernels (CUDA_HOME={cpp_extension.CUDA_HOME})")
    return True


def _extension():
    cpu_sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    cuda_sources = sorted(glob.glob(os.path.join("csrc", "*.cu")))
    # no-trapping-math lets the compiler if-convert and vectorise the activation
    # selects (lrelu, clamp); results are unchanged (no reassociation, no fast-math).
    cxx_flags = ["-O3", "-std=c++20", "-fopenmp", "-fno-trapping-math", "-fno-math-errno", "-Wall", "-Wno-unused-function"]
    include_dirs = [os.path.join(HERE, "csrc")]
    define_macros = [("TORCH_EXTENSION_NAME", "_C")]
    if _want_cuda():
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        # torch's headers include cusparse.h etc., which pip's CUDA wheels ship
        # under site-packages/nvidia/cu*/include rather than in the toolkit.
        for site in {os.path.dirname(os.path.dirname(torch.__file__))}:
            include_dirs += sorted(glob.glob(os.path.join(site, "nvidia", "cu*", "include")))
        define_macros.append(("HPCGAN_WITH_CUDA", "1"))
        define_macros.append(
            ("HPCGAN_CUDA_ARCHS", '"' + os.environ["TORCH_CUDA_ARCH_LIST"] + '"')
        )
        return cpp_extension.CUDAExtension(
            name="hpcgan._C",
            sources=cpu_sources + cuda_sources,
            include_dirs=include_dirs,
            define_macros=define_macros,
            extra_compile_args={
                "cxx": cxx_flags,
                "nvcc": ["-O3", "-std=c++20", "-lineinfo"],
            },
            extra_link_args=["-fopenmp"],
        )
    return cpp_extension.CppExtension(
        name="hpcgan._C",
        sources=cpu_sources,
        include_dirs=include_dirs,
        define_macros=define_macros,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=["-fopenmp"],
    )


setup(
    name="hpcgan",
    version="0.1.0",
    description="GAN augmentation experiments for chest X-rays on HPC clusters",
    packages=find_packages(include=["hpcgan", "hpcgan.*"]),
    python_requires=">=3.10",
    install_requires=["torch", "numpy", "tqdm", "pyyaml"],
    ext_modules=[_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
    entry_points={"console_scripts": ["hpcgan = hpcgan.cli:main"]},
)
