"""Build a small CNN for CUDA on this CPU-only machine and export a library that embeds compiled code.

Why the detour: a GPU machine with only a runtime copy of TVM (no compiler, no NVRTC) needs a
library that holds a fatbin, not CUDA source. In the apache-tvm 0.27 wheel the compiler library
alone makes a "fallback" CUDA module that keeps *source* (compiled by NVRTC when loaded); only
when ``libtvm_runtime_cuda.so`` is loaded does ``target.build.cuda`` find ``ffi.Module.create.cuda``
and compile at build time, through ``tvm_callback_cuda_compile`` (tvm.support.nvcc), which with
TVM_CUDA_COMPILE_MODE=nvcc runs nvcc and returns a fatbin. That library links ``libcuda.so.1``
(the driver), absent here, so on a machine without a driver this script loads a stand-in that only
satisfies the loader (RTLD_LAZY: no driver function is called while building).

    python bench/tvm_cuda_build.py [--arch sm_90] [--model cnn|resnet18] [--out build/cnn_cuda.so]

Prints JSON: ok, the fatbin's size and architectures, and whether any CUDA source is left.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TVM_CUDA_COMPILE_MODE", "nvcc")  # fatbin from nvcc at build time, not NVRTC
FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)


def load_cuda_runtime() -> str:
    """Load TVM's CUDA runtime library so the build makes real CUDA modules; say what stood in for the driver."""
    import tvm

    driver = "libcuda.so.1 (installed)"
    if ctypes.util.find_library("cuda") is None:
        stub_dir = Path(tempfile.mkdtemp(prefix="fake-libcuda-"))
        (stub_dir / "c.c").write_text("int cuInit(unsigned int flags) { (void)flags; return 100; }\n")
        subprocess.run(["cc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(stub_dir / "libcuda.so.1"),
                        str(stub_dir / "c.c")], check=True)
        ctypes.CDLL(str(stub_dir / "libcuda.so.1"), mode=os.RTLD_LAZY | os.RTLD_GLOBAL)
        driver = "a stand-in libcuda.so.1 (no driver on this machine)"
    ctypes.CDLL(str(Path(tvm.__file__).parent / "lib" / "libtvm_runtime_cuda.so"), mode=os.RTLD_LAZY | os.RTLD_GLOBAL)
    if tvm.get_global_func("ffi.Module.create.cuda", allow_missing=True) is None:
        raise RuntimeError("libtvm_runtime_cuda.so loaded but ffi.Module.create.cuda is not registered")
    return driver


def small_cnn():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1, stride=2), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10)).eval()


def build(model_name: str, arch: str, out: Path) -> dict:
    import numpy as np
    import torch
    import tvm
    from tvm.relax.frontend.torch import from_exported_program

    driver = load_cuda_runtime()
    if model_name == "resnet18":
        import torchvision

        model, x = torchvision.models.resnet18(num_classes=10, weights=None).eval(), torch.randn(1, 3, 64, 64)
    else:
        model, x = small_cnn(), torch.randn(1, 3, 32, 32)
    mod = from_exported_program(torch.export.export(model, (x,)))
    target = tvm.target.Target({"kind": "cuda", "arch": arch}, host={"kind": "llvm"})
    t0 = time.perf_counter()
    with target:  # the CUDA default pipeline applies dlight's GPU schedules
        ex = tvm.compile(mod, target=target)
    compile_s = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    ex.export_library(str(out))
    np.save(out.with_suffix(".input.npy"), x.numpy())
    with torch.no_grad():
        np.save(out.with_suffix(".expected.npy"), model(x).numpy())
    return {"model": model_name, "arch": arch, "library": str(out), "bytes": out.stat().st_size,
            "compile_s": round(compile_s, 2), "compile_mode": os.environ["TVM_CUDA_COMPILE_MODE"],
            "cuda_driver": driver, **inspect_library(out)}


def inspect_library(path: Path) -> dict:
    """What device code the library holds: fatbins (with their sm_ architectures) or CUDA source."""
    blob = path.read_bytes()
    fatbins, archs, ptx, i = 0, set(), False, blob.find(FATBIN_MAGIC)
    while i >= 0:
        _, _, header, size = struct.unpack_from("<IHHQ", blob, i)
        body = blob[i:i + header + size]
        fatbins += 1
        archs |= {a.decode() for a in re.findall(rb"sm_\d+a?", body)}
        ptx |= b".target sm_" in body
        i = blob.find(FATBIN_MAGIC, i + header + size)
    source = b"__global__" in blob or b"extern \"C\" __global__" in blob
    return {"fatbins": fatbins, "fatbin_archs": sorted(archs), "fatbin_has_ptx": ptx, "holds_cuda_source": source,
            "embeds_compiled_code": fatbins > 0 and not source}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="sm_90")
    p.add_argument("--model", choices=["cnn", "resnet18"], default="cnn")
    p.add_argument("--out", type=Path, default=Path("build/cnn_cuda.so"))
    args = p.parse_args(argv)
    if shutil.which("nvcc") is None:
        print(json.dumps({"ok": False, "reason": "nvcc is not on PATH"}))
        return 1
    try:
        info = build(args.model, args.arch, args.out)
    except Exception as e:  # noqa: BLE001 - report, do not hide, why the build failed
        print(json.dumps({"ok": False, "reason": f"{type(e).__name__}: {str(e).strip()[:500]}"}))
        return 1
    print(json.dumps({"ok": info["embeds_compiled_code"], **info}, indent=1))
    return 0 if info["embeds_compiled_code"] else 1


if __name__ == "__main__":
    sys.exit(main())
