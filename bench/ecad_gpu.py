"""Measured GPU latency of caching schedules on a PixArt-α-sized transformer, against FORA.

A random-initialised PixArt-α config (28 blocks, 1152 wide, fp16), 256 px images = a 32x32
latent, batch 2 ([unconditional, conditional]), DDIM 20 steps, eager PyTorch, timed with CUDA
events after a warm-up. Prints the full-compute latency and, for each schedule, its latency,
its measured speed-up and its MAC speed-up. Needs torch and diffusers; on a machine without a
CUDA device it prints "no CUDA device" and exits 0 (``--device cpu --tiny`` runs the same path
on a 2-block model, as a check of the script).

    python bench/ecad_gpu.py                                      # FORA N=2/3/4, T-GATE, even sparsity
    python bench/ecad_gpu.py --schedule fora_2 --schedule learned.json   # ECAD JSON (true = recompute)
    python bench/ecad_gpu.py --bits bench/results/ecad.json        # the tiny test bed's picks, resampled to 28 blocks
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tradeoff.spaces.cache import component_macs, from_ecad_json, layout_of, mac_fraction  # noqa: E402
from tradeoff.spaces.cache_hooks import cached  # noqa: E402
from tradeoff.spaces.cache_named import named_schedules  # noqa: E402

DEFAULT = ("fora_2", "fora_3", "fora_4", "tgate_10", "even_0.5_staggered", "l2c_both_from_0.5")


def build(tiny: bool, device: str, dtype: torch.dtype):
    from diffusers import PixArtTransformer2DModel

    torch.manual_seed(0)
    cfg = dict(num_attention_heads=16, attention_head_dim=72, num_layers=28, caption_channels=4096, sample_size=32)
    if tiny:
        cfg = dict(num_attention_heads=2, attention_head_dim=8, num_layers=2, caption_channels=32, sample_size=8)
    model = PixArtTransformer2DModel(in_channels=4, out_channels=8, patch_size=2, use_additional_conditions=False,
                                     cross_attention_dim=cfg["num_attention_heads"] * cfg["attention_head_dim"], **cfg)
    return model.to(device, dtype).eval(), cfg


def resample_blocks(s: np.ndarray, blocks: int) -> np.ndarray:
    """A schedule found for another depth: block i takes the bits of the block at the same relative depth."""
    idx = np.clip(np.rint(np.arange(blocks) * (s.shape[1] - 1) / max(blocks - 1, 1)).astype(int), 0, s.shape[1] - 1)
    return s[:, idx]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schedule", action="append", help="a named schedule, or an ECAD JSON file (true = recompute)")
    ap.add_argument("--bits", help="bench/results/ecad.json: its learned picks, resampled to this model's blocks")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="a 2-block model (a check of the script, not a figure)")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device")
        return 0
    from diffusers import DDIMScheduler

    dtype = torch.float16 if args.device == "cuda" else torch.float32
    model, cfg = build(args.tiny, args.device, dtype)
    layout, steps = layout_of(model), args.steps
    sched = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    side = cfg["sample_size"]
    g = torch.Generator(device="cpu").manual_seed(0)
    latents = torch.randn(1, 4, side, side, generator=g).to(args.device, dtype)
    captions = torch.randn(2, 120, cfg["caption_channels"], generator=g).to(args.device, dtype)
    extra = {"resolution": None, "aspect_ratio": None}

    @torch.no_grad()
    def sample():
        x = latents
        sched.set_timesteps(steps)
        for t in sched.timesteps:
            inp = torch.cat([x, x])
            out = model(inp, encoder_hidden_states=captions, timestep=t.expand(2).to(args.device),
                        added_cond_kwargs=extra).sample
            eps = out[:, :4]
            u, c = eps.chunk(2)
            x = sched.step(u + 4.5 * (c - u), t, x).prev_sample
        return x

    def timed(schedule=None) -> float:
        runs = []
        for i in range(args.repeats + 1):
            if args.device == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                start.record()
            else:
                import time
                t0 = time.perf_counter()
            if schedule is None:
                sample()
            else:
                with cached(model, schedule, layout, scheduler=sched):
                    sample()
            if args.device == "cuda":
                end.record()
                torch.cuda.synchronize()
                ms = start.elapsed_time(end)
            else:
                ms = (time.perf_counter() - t0) * 1000
            if i:  # the first run warms up
                runs.append(ms)
        return statistics.median(runs)

    named = named_schedules(layout, steps)
    todo: dict[str, np.ndarray] = {}
    for s in args.schedule or (DEFAULT if not args.bits else ("fora_2", "fora_3", "fora_4")):
        if s in named:
            todo[s] = named[s]
        elif Path(s).exists():
            todo[Path(s).stem] = from_ecad_json(Path(s).read_text(), layout, steps)
        else:
            ap.error(f"--schedule {s}: not a named schedule ({', '.join(sorted(named))}) nor a file")
    if args.bits:
        for k, v in json.loads(Path(args.bits).read_text())["picks"].items():
            bits = np.frombuffer(v["schedule"].encode(), dtype=np.uint8) == ord("1")
            small = bits.reshape(-1, v.get("blocks", 6), 3)
            if small.shape[0] == steps:
                todo[k] = resample_blocks(small, layout.n_blocks)

    x = torch.randn(2, 4, side, side, generator=g).to(args.device, dtype)
    per, other = component_macs(model, layout, lambda: model(x, encoder_hidden_states=captions,
                                                             timestep=torch.tensor([500, 500], device=args.device),
                                                             added_cond_kwargs=extra))
    print(f"device {torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}; "
          f"{layout.n_blocks} blocks, {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params, "
          f"{side}x{side} latent, batch 2, {steps} steps, {dtype}; median of {args.repeats}")
    full = timed()
    print(f"{'schedule':<28} {'ms':>8} {'speed-up':>9} {'MAC x':>7}")
    print(f"{'full compute':<28} {full:8.1f} {1.0:9.2f} {1.0:7.2f}")
    for k, s in todo.items():
        ms = timed(s)
        print(f"{k:<28} {ms:8.1f} {full / ms:9.2f} {1 / mac_fraction(s, per, other):7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
