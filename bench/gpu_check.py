"""Time three models on a CUDA GPU with the project's timing statistics; print a markdown table.

    bench/gpu_check.sh                       # the full matrix (a few minutes on an H100)
    bench/gpu_check.sh --json $OUT/gpu.json  # ... and keep the rows
    bench/gpu_check.sh --device cpu --small --modes eager   # a dry run of this script on a CPU

Rows: {resnet18 224x224, mobilenet_v3_small 224x224, a 4-layer transformer encoder} x {eager,
torch.compile} x {float32, float16} x {batch 1, 32}, each timed with CUDA events around
``number`` calls until the median's 95% CI is within ±2% (or a time cap). After the eager rows
(before any ``torch.compile``, which changes the process's state), the project's ``torch`` target
measures one row again, to check it on a real GPU.

It needs only torch, torchvision and numpy (``tradeoff.hardware`` imports without the search's
libraries, which a bare GPU machine may lack).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tradeoff.hardware.torch import _cuda_timer  # noqa: E402  (CUDA events, the torch target's own timer)


def build(torch, name: str, small: bool):
    """(module, batch-1 input) for one of the three models, random weights."""
    import torchvision

    side = 64 if small else 224
    if name == "resnet18":
        return torchvision.models.resnet18(num_classes=1000), torch.randn(1, 3, side, side)
    if name == "mobilenet_v3_small":
        return torchvision.models.mobilenet_v3_small(num_classes=1000), torch.randn(1, 3, side, side)
    if name == "transformer":
        d, seq = (64, 16) if small else (512, 128)
        layer = torch.nn.TransformerEncoderLayer(d, 8, 4 * d, batch_first=True, dropout=0.0)
        return torch.nn.TransformerEncoder(layer, 4, enable_nested_tensor=False), torch.randn(1, seq, d)
    raise ValueError(name)


def run_row(torch, timing, model: str, mode: str, dtype: str, batch: int, dev, policy, small: bool) -> dict:
    module, x = build(torch, model, small)
    dt = getattr(torch, dtype)
    module = module.eval().to(device=dev, dtype=dt)
    x = x.expand(batch, *x.shape[1:]).contiguous().to(device=dev, dtype=dt)
    t0 = time.perf_counter()
    if mode == "compile":
        torch._dynamo.reset()
        module = torch.compile(module, mode="default")

    def fn():
        with torch.inference_mode():
            return module(x)

    fn()
    prep = time.perf_counter() - t0
    timer = _cuda_timer(dev) if dev.type == "cuda" else None
    s = timing.time_callable(fn, policy, timer)
    return {"model": model, "mode": mode, "dtype": dtype, "batch": batch, "median_ms": s.median_ms,
            "p10_ms": s.p10_ms, "p90_ms": s.p90_ms, "n": s.n, "number": s.number, "ci_rel": s.ci_rel,
            "noisy": s.noisy, "prep_s": prep}


def run_check(torch, dev, small: bool, rows: list[dict]) -> int:
    """Print the torch target's check; 1 if it failed."""
    try:
        from tradeoff.hardware import base
        from tradeoff.hardware import torch as torch_mod

        print("\n" + check_target(base, torch_mod, torch, dev, small, rows) + "\n")
        return 0
    except Exception as e:  # noqa: BLE001
        print(f"\ntorch target FAILED: {type(e).__name__}: {e}\n")
        return 1


def check_target(base, torch_mod, torch, dev, small: bool, rows: list[dict]) -> str:
    """The ``torch`` target on the same row as the matrix's resnet18 eager float32 batch 1."""
    module, x = build(torch, "resnet18", small)
    target = torch_mod.TorchTarget(device=str(dev), cache=False, mode="eager", dtype="float32", batch=1,
                                   timing={"time_cap_s": 2.0})
    s = target.measure(base.Artifact("resnet18", (x,), module=module.eval()))
    ref = next((r for r in rows if (r["model"], r["mode"], r["dtype"], r["batch"]) ==
                ("resnet18", "eager", "float32", 1)), None)
    vs = f"; the matrix's row: {ref['median_ms']:.3f} ms" if ref else ""
    return (f"torch target on {target.device}: resnet18 eager float32 batch 1 = {s.median_ms:.3f} ms "
            f"(p10 {s.p10_ms:.3f}, p90 {s.p90_ms:.3f}, n {s.n}, noisy {s.noisy}){vs}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (a dry run of the script)")
    ap.add_argument("--models", default="resnet18,mobilenet_v3_small,transformer")
    ap.add_argument("--modes", default="eager,compile")
    ap.add_argument("--dtypes", default="float32,float16")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--small", action="store_true", help="64x64 images, a tiny transformer")
    ap.add_argument("--time-cap", type=float, default=1.5, help="seconds of timing per row at most")
    ap.add_argument("--budget-s", type=float, default=420.0, help="rows not started by then are skipped")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--no-target", action="store_true", help="skip the torch target's check")
    args = ap.parse_args(argv)

    try:
        import torch
    except ImportError:
        print(f"no CUDA check: torch is not installed for {sys.executable}")
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"no CUDA device: nothing to time (torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
              f"exiting 0")
        return 0
    from tradeoff.hardware import timing

    dev = torch.device(args.device)
    t_start = time.perf_counter()
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        print(f"GPU: {props.name} ({props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs), "
              f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
              f"Python {platform.python_version()}")
        print(f"TF32: matmul {torch.backends.cuda.matmul.allow_tf32}, cudnn {torch.backends.cudnn.allow_tf32}; "
              f"cudnn.benchmark {torch.backends.cudnn.benchmark}")
    else:
        torch.set_num_threads(1)
        print(f"CPU dry run: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads")
    policy = timing.TimingPolicy(warmup=10, time_cap_s=args.time_cap)
    print(f"timing: warm-up {policy.warmup}, >= {policy.min_repeats} repeats of >= {policy.min_repeat_ms} ms, "
          f"until the median's 95% CI is within ±{policy.rel_ci:.0%} or {policy.time_cap_s} s\n")

    split = lambda s: [v for v in s.split(",") if v]  # noqa: E731
    plan = [(m, mode, dt, int(b)) for mode in split(args.modes) for m in split(args.models)
            for dt in split(args.dtypes) for b in split(args.batches)]
    rows, failed = [], 0
    print("| model | mode | dtype | batch | median ms | p10 | p90 | n | CI% | noisy | prep s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|")
    checked = args.no_target
    for model, mode, dt, b in plan:
        if mode != "eager" and not checked:  # before any torch.compile: the same process state as the eager rows
            failed += run_check(torch, dev, args.small, rows)
            checked = True
        if time.perf_counter() - t_start > args.budget_s:
            print(f"| {model} | {mode} | {dt} | {b} | skipped: over the {args.budget_s:.0f} s budget |||||||")
            continue
        try:
            r = run_row(torch, timing, model, mode, dt, b, dev, policy, args.small)
        except Exception as e:  # noqa: BLE001 - one row failing is reported, the rest still run
            failed += 1
            msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
            print(f"| {model} | {mode} | {dt} | {b} | FAILED: {type(e).__name__}: {msg} |||||||")
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            continue
        rows.append(r)
        print(f"| {model} | {mode} | {dt} | {b} | {r['median_ms']:.3f} | {r['p10_ms']:.3f} | {r['p90_ms']:.3f} | "
              f"{r['n']} | {100 * r['ci_rel']:.1f} | {'yes' if r['noisy'] else 'no'} | {r['prep_s']:.1f} |")

    if not checked:
        failed += run_check(torch, dev, args.small, rows)
    print(f"\n{len(rows)} rows timed, {failed} failed, {time.perf_counter() - t_start:.0f} s in all")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(dev), "torch": torch.__version__,
                                               "cuda": torch.version.cuda, "rows": rows}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
