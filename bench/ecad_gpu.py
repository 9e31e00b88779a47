"""ECAD on a PixArt-α-sized transformer on a GPU: a schedule search there, and the measured latency of its front against FORA.

A random-initialised PixArt-α config (28 blocks, 1152 wide, 611M params, fp16), 256 px images = a
32x32 latent, DDIM 20 steps with classifier-free guidance 4.5, eager PyTorch.

1. **Search** (``--search-s``): the caching workload of this model (``tradeoff.caching``; the
   calibration set is 2 random caption sets x 2 seeds, each batched with its unconditional row),
   NSGA-II seeded with the named schedules (population 48) for that many seconds, then
   ``--refine-s`` seconds of local search around its pooled front. Fidelity is PSNR of the final
   latents against full compute, scaled so the full-compute latents span [-1, 1].
2. **Picks**: the learned schedule with the best PSNR at each FORA N's MAC speed-up, and the one
   with the highest MAC speed-up at FORA N=2's PSNR; ``--bits bench/results/ecad.json`` adds the tiny
   test bed's picks, resampled from 6 to 28 blocks.
3. **Latency**: one image (batch 2 with its unconditional row), timed with CUDA events in
   interleaved rounds after a warm-up; the median of ``--repeats``. Full compute, FORA N=2/3/4,
   T-GATE and the picks.

Needs torch, diffusers and pymoo. Without a CUDA device it prints "no CUDA device" and exits 0
(``--device cpu --tiny`` runs the same path on a 2-block model, as a check of the script).

    python bench/ecad_gpu.py --search-s 150 --refine-s 60 --bits bench/results/ecad.json --json ecad_gpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import tradeoff as to  # noqa: E402
from tradeoff.spaces.cache import PARAM, is_full_compute, schedule_of  # noqa: E402
from tradeoff.spaces.cache_hooks import cached  # noqa: E402
from tradeoff.spaces.cache_named import named_schedules  # noqa: E402

BASELINES = ("fora_2", "fora_3", "fora_4")
GUIDANCE = 4.5


class RandomPixArt:
    """A sampler ``pipe(prompts, seeds, steps) -> latents`` over a random-initialised PixArt transformer.

    A prompt is the index of a random caption embedding; each row is batched with its unconditional
    row (a separate random "null" caption), as PixArt's pipeline does.
    """

    def __init__(self, tiny: bool, device: str, dtype: torch.dtype, n_prompts: int = 2, side: int | None = None):
        from diffusers import DDIMScheduler, PixArtTransformer2DModel

        torch.manual_seed(0)
        cfg = dict(num_attention_heads=16, attention_head_dim=72, num_layers=28, caption_channels=4096, sample_size=32)
        if tiny:
            cfg = dict(num_attention_heads=2, attention_head_dim=8, num_layers=2, caption_channels=32, sample_size=8)
        cfg["sample_size"] = side or cfg["sample_size"]
        width = cfg["num_attention_heads"] * cfg["attention_head_dim"]
        self.transformer = PixArtTransformer2DModel(in_channels=4, out_channels=8, patch_size=2,
                                                    use_additional_conditions=False, cross_attention_dim=width,
                                                    **cfg).to(device, dtype).eval()
        self.scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
        self.side, self.device, self.dtype = cfg["sample_size"], device, dtype
        g = torch.Generator().manual_seed(0)
        self.captions = torch.randn(n_prompts + 1, 120, cfg["caption_channels"], generator=g).to(device, dtype)
        self.scale = 1.0

    @torch.no_grad()
    def latents(self, prompts, seeds, steps) -> torch.Tensor:
        n = len(prompts)
        x = torch.cat([torch.randn(1, 4, self.side, self.side, generator=torch.Generator().manual_seed(int(s)))
                       for s in seeds]).to(self.device, self.dtype)
        cond = self.captions[[1 + int(p) for p in prompts]]
        text = torch.cat([self.captions[:1].expand(n, -1, -1), cond])
        self.scheduler.set_timesteps(steps)
        for t in self.scheduler.timesteps:
            out = self.transformer(torch.cat([x, x]), encoder_hidden_states=text, timestep=t.expand(2 * n).to(self.device),
                                   added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample
            u, c = out[:, :4].chunk(2)
            x = self.scheduler.step(u + GUIDANCE * (c - u), t, x).prev_sample
        return x.float()

    def __call__(self, prompts, seeds, steps) -> torch.Tensor:
        return (self.latents(prompts, seeds, steps) / self.scale).clamp(-1, 1).cpu()


def time_rounds(pipe: RandomPixArt, schedules: dict[str, np.ndarray | None], layout, steps: int,
                repeats: int) -> dict[str, float]:
    """Median ms of one image per schedule (None = full compute), in interleaved rounds after a warm-up round."""
    cuda = pipe.device == "cuda"
    runs: dict[str, list[float]] = {k: [] for k in schedules}
    for r in range(repeats + 1):
        for k, s in schedules.items():
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                start.record()
            t0 = time.perf_counter()
            if s is None:
                pipe.latents([0], [0], steps)
            else:
                with cached(pipe, s, layout):
                    pipe.latents([0], [0], steps)
            if cuda:
                end.record()
                torch.cuda.synchronize()
                ms = start.elapsed_time(end)
            else:
                ms = (time.perf_counter() - t0) * 1000
            if r:
                runs[k].append(ms)
    return {k: statistics.median(v) for k, v in runs.items()}


def resample_blocks(s: np.ndarray, blocks: int) -> np.ndarray:
    """A schedule found for another depth: block i takes the bits of the block at the same relative depth."""
    idx = np.clip(np.rint(np.arange(blocks) * (s.shape[1] - 1) / max(blocks - 1, 1)).astype(int), 0, s.shape[1] - 1)
    return s[:, idx]


def front_rows(fronts, layout) -> list[dict]:
    """The non-dominated trials pooled over several searches (PSNR and MAC speed-up, both maximised)."""
    from tradeoff.core.pareto import nondominated_mask

    rows = {}
    for f in fronts:
        for m in f.members:
            s = schedule_of(m.config, layout)
            rows.setdefault(s.tobytes(), {**{k: float(v) for k, v in m.metrics.items()}, "schedule": s})
    rows = list(rows.values())
    keep = nondominated_mask(np.array([[-r["psnr_db"], -r["mac_speedup"]] for r in rows]))
    return sorted((r for r, k in zip(rows, keep, strict=True) if k), key=lambda r: r["mac_speedup"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--search-s", type=float, default=150, help="seconds of NSGA-II (0: no search)")
    ap.add_argument("--refine-s", type=float, default=60, help="seconds of local search around its front")
    ap.add_argument("--pop", type=int, default=48)
    ap.add_argument("--bits", help="bench/results/ecad.json: the tiny test bed's picks, resampled to this model's blocks")
    ap.add_argument("--schedules", help="a JSON this script wrote: its picks are evaluated and timed again here")
    ap.add_argument("--side", type=int, help="latent side (32 = 256 px, the default; 64 = 512 px)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="a 2-block model (a check of the script, not a figure)")
    ap.add_argument("--json", help="write every figure here")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device")
        return 0
    t_start = time.perf_counter()
    dtype = torch.float16 if args.device == "cuda" else torch.float32
    pipe = RandomPixArt(args.tiny, args.device, dtype, side=args.side)
    steps = args.steps
    pipe.scale = float(pipe.latents([0, 1], [0, 1], steps).abs().max())  # full compute spans [-1, 1]
    wl = to.caching(pipe, prompts=[0, 1], seeds=[0, 1], steps=steps, timing_repeats=3)
    layout = wl.layout
    n_params = sum(p.numel() for p in pipe.transformer.parameters()) / 1e6
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"device {device}; {layout.n_blocks} blocks, {n_params:.0f}M params, {pipe.side}x{pipe.side} latent, "
          f"{steps} steps, {dtype}; calibration 2 captions x 2 seeds; full compute "
          f"{wl.info['full_compute_s'] * 1000:.0f} ms for the calibration batch", flush=True)

    named = {k: v for k, v in named_schedules(layout, steps).items() if not is_full_compute(v, layout)}
    base_names = [*BASELINES, *([f"tgate_{steps // 2}"] if f"tgate_{steps // 2}" in named else [])]
    base = {k: wl.evaluate({PARAM: named[k]}) for k in base_names}
    picks: dict[str, dict] = {}
    fronts, n_trials = [], 0
    objectives = {"psnr_db": "maximize", "mac_speedup": "maximize"}
    if args.search_s > 0:
        order = [k for k in named if k.startswith("fora")] + [k for k in named if not k.startswith("fora")]
        initial = [{PARAM: named[k]} for k in order[: args.pop]]
        t0 = time.perf_counter()
        f = to.search(wl, objectives, budget=None, time_budget_s=args.search_s, algorithm="nsga2", initial=initial,
                      tracking=None, algorithm_options={"pop_size": args.pop}, name="ecad-gpu", progress=True)
        fronts.append(f)
        n_trials += len(f.trials)
        print(f"NSGA-II: {len(f.trials)} trials in {time.perf_counter() - t0:.0f} s, front of {len(f.members)}", flush=True)
        if args.refine_s > 0:
            t0 = time.perf_counter()
            g = to.search(wl, objectives, budget=None, time_budget_s=args.refine_s, algorithm="local",
                          initial=[m.config for m in f.members], tracking=None, name="ecad-gpu-refine", progress=True)
            fronts.append(g)
            n_trials += len(g.trials)
            print(f"local: {len(g.trials)} trials in {time.perf_counter() - t0:.0f} s", flush=True)
        rows = front_rows(fronts, layout)
        for k in BASELINES:
            ok = [r for r in rows if r["mac_speedup"] >= base[k]["mac_speedup"] - 1e-9]
            if ok:
                picks[f"learned@{k}"] = max(ok, key=lambda r: r["psnr_db"])
        ok = [r for r in rows if r["psnr_db"] >= base["fora_2"]["psnr_db"]]
        if ok:
            picks["learned@psnr(fora_2)"] = max(ok, key=lambda r: r["mac_speedup"])
    else:
        rows = []
    if args.bits:
        for k, v in json.loads(Path(args.bits).read_text())["picks"].items():
            small = (np.frombuffer(v["schedule"].encode(), dtype=np.uint8) == ord("1")).reshape(-1, v.get("blocks", 6), 3)
            if small.shape[0] == steps and small.shape[2] == len(layout.component_names):
                s = resample_blocks(small, layout.n_blocks)
                picks[f"tiny-bed {k}"] = {**wl.evaluate({PARAM: s}), "schedule": s}

    if args.schedules:
        for k, v in json.loads(Path(args.schedules).read_text())["picks"].items():
            s = (np.frombuffer(v.encode(), dtype=np.uint8) == ord("1")).reshape(steps, layout.n_blocks, -1)
            picks[k] = {**wl.evaluate({PARAM: s}), "schedule": s}
    todo = {"full compute": None, **{k: named[k] for k in base_names}, **{k: v["schedule"] for k, v in picks.items()}}
    ms = time_rounds(pipe, todo, layout, steps, args.repeats)
    full = ms["full compute"]
    metrics = {**base, **picks}
    print(f"\none image (batch 2 with guidance), median of {args.repeats} interleaved rounds; "
          f"PSNR on the calibration set; {n_trials} search trials, front of {len(rows)}")
    print("| schedule | PSNR dB | MAC x | ms | measured x |\n|---|---|---|---|---|")
    print(f"| full compute | inf | 1.00 | {full:.1f} | 1.00 |")
    table = {}
    for k in todo:
        if k == "full compute":
            continue
        m = metrics[k]
        table[k] = {"psnr_db": float(m["psnr_db"]), "mac_speedup": float(m["mac_speedup"]), "ms": ms[k],
                    "speedup": full / ms[k]}
        print(f"| {k} | {m['psnr_db']:.2f} | {m['mac_speedup']:.2f} | {ms[k]:.1f} | {full / ms[k]:.2f} |")
    for k in BASELINES:
        p = picks.get(f"learned@{k}")
        if p is not None:
            print(f"at FORA {k[-1]}'s MACs: learned {p['psnr_db'] - base[k]['psnr_db']:+.2f} dB, measured "
                  f"{table[f'learned@{k}']['speedup']:.2f}x vs FORA's {table[k]['speedup']:.2f}x")
    print(f"done in {time.perf_counter() - t_start:.0f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "device": device, "blocks": layout.n_blocks, "params_m": n_params, "steps": steps, "trials": n_trials,
            "full_ms": full, "schedules": table,
            "front": [{k: v for k, v in r.items() if k != "schedule"} for r in rows],
            "picks": {k: "".join("1" if b else "0" for b in v["schedule"].ravel()) for k, v in picks.items()}},
            indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
