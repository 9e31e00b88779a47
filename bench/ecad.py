"""ECAD on the tiny PixArt digits test bed: the learned caching schedules against FORA and T-GATE.

Trains (once, cached) the test bed, searches caching schedules with NSGA-II seeded by the named
schedules (objectives: PSNR vs full compute, MAC speed-up), then prints
  1. the learned front against FORA N=2/3/4 and T-GATE, on PSNR, MACs and measured wall-clock speed-up,
  2. the distribution metric (Fréchet distance in a digits classifier's features, class consistency),
  3. generations against the best MAC speed-up at FORA N=2's PSNR,
  4. how a schedule found at 20 steps / 8x8 holds at 10 and 40 steps and at 16x16,
and writes bench/results/ecad.{md,json} and ecad_front.png, ecad_samples.png, ecad_generations.png.

    .venv/bin/python bench/ecad.py --budget 960 --pop 48 --refine 480   # ~20 min on a 2-core machine
    .venv/bin/python bench/ecad.py --budget 120 --pop 24  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import tradeoff as to
from tradeoff.core.pareto import nondominated_mask
from tradeoff.spaces.cache import PARAM, bits, is_full_compute, resample_steps, schedule_of
from tradeoff.spaces.cache_hooks import cached
from tradeoff.spaces.cache_named import named_schedules
from tradeoff.workloads.tiny_pixart import BedSpec, DigitsPipe, digits, load_test_bed

OUT = Path(__file__).parent / "results"
REFINED = False
BASELINES = ("fora_2", "fora_3", "fora_4", "tgate_10")


def timed(pipe, wl, schedules: dict[str, np.ndarray], repeats: int) -> dict[str, float]:
    """Wall-clock speed-up of each schedule: median over interleaved repeats (full compute timed in each round)."""
    times: dict[str, list[float]] = {k: [] for k in ["full", *schedules]}
    prompts = [p for p in range(10) for _ in wl.info_seeds]
    seeds = [s for _ in range(10) for s in wl.info_seeds]
    for _ in range(repeats):
        for k in times:
            t0 = time.perf_counter()
            if k == "full":
                pipe(prompts, seeds, 20)
            else:
                with cached(pipe, schedules[k], wl.layout):
                    pipe(prompts, seeds, 20)
            times[k].append(time.perf_counter() - t0)
    full = statistics.median(times["full"])
    return {k: full / statistics.median(v) for k, v in times.items() if k != "full"}


def _nondominated(rows: list[dict]) -> list[dict]:
    y = np.array([[-r["psnr_db"], -r["mac_speedup"]] for r in rows])
    return [r for r, keep in zip(rows, nondominated_mask(y), strict=True) if keep]


def pick(front_rows: list[dict], mac_at_least: float) -> dict | None:
    ok = [r for r in front_rows if r["mac_speedup"] >= mac_at_least - 1e-9]
    return max(ok, key=lambda r: r["psnr_db"]) if ok else None


def main() -> None:
    global OUT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=240)
    ap.add_argument("--pop", type=int, default=24)
    ap.add_argument("--refine", type=int, default=0,
                    help="after NSGA-II, this many trials of local search around its pooled front (a memetic step)")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per prompt (the 10 digits are the prompts)")
    ap.add_argument("--repeats", type=int, default=5, help="timing repeats for the measured speed-ups")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--layers", type=int, default=6, help="transformer blocks of the test bed (trained once per depth, cached)")
    ap.add_argument("--train-steps", type=int, default=BedSpec().train_steps,
                    help="training steps of the test bed (trained once per setting, cached)")
    ap.add_argument("--out", default=str(OUT), help="where the tables and pictures go")
    args = ap.parse_args()
    OUT = Path(args.out)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    bed = load_test_bed(BedSpec(layers=args.layers, train_steps=args.train_steps))
    real, _ = digits("test")
    seeds = list(range(args.seeds))
    wl = to.caching(bed.pipe, prompts=list(range(10)), seeds=seeds, steps=20, classifier=bed.classifier,
                    real_images=real, timing_repeats=3)
    wl.info_seeds = seeds
    lay = wl.layout
    named = {k: v for k, v in named_schedules(lay, 20).items() if not is_full_compute(v, lay)}
    order = [k for k in named if k.startswith("fora")] + ["tgate_10", "attn_every_2", "attn_every_3", "attn_every_4"] \
        + [k for k in named if k.startswith("l2c")] + [f"even_{r:g}_staggered" for r in (0.5, 0.4, 0.6, 0.3, 0.7, 0.8)]
    order += [k for k in named if k not in order]
    initial = [{PARAM: named[k]} for k in order[: args.pop]]
    print(f"test bed {bed.path.name}; calibration {len(seeds) * 10} images; {len(named)} named schedules "
          f"({len(initial)} seed the population of {args.pop}); budget {args.budget}", flush=True)

    base = {k: wl.evaluate({PARAM: named[k]}) for k in BASELINES}
    t0 = time.perf_counter()
    front = to.search(wl, {"psnr_db": "maximize", "mac_speedup": "maximize"}, budget=args.budget, algorithm="nsga2",
                      initial=initial, tracking=None, algorithm_options={"pop_size": args.pop}, name="ecad",
                      progress=True)
    search_s = time.perf_counter() - t0
    rows = [{"trial": m.number, **{k: float(v) for k, v in m.metrics.items()},
             "schedule": schedule_of(m.config, lay)} for m in front.members]
    print(f"search: {len(front.trials)} trials in {search_s:.0f} s; front of {len(rows)} (pooled over all generations)")
    trials = list(front.trials)
    nsga_rows = rows
    if args.refine:
        # local search from the pooled front: its members are asked again first (deterministic, so
        # the same figures), then one-bit neighbours of the front, which NSGA-II's crossover rarely makes
        t1 = time.perf_counter()
        ref = to.search(wl, {"psnr_db": "maximize", "mac_speedup": "maximize"}, budget=args.refine, algorithm="local",
                        initial=[m.config for m in front.members], tracking=None, name="ecad-refine", progress=True)
        trials += list(ref.trials)
        pooled = {bits(schedule_of(r["schedule"], lay)): r for r in rows}
        for m in ref.members:
            pooled.setdefault(bits(schedule_of(m.config, lay)), {"trial": len(front.trials) + m.number,
                              **{k: float(v) for k, v in m.metrics.items()}, "schedule": schedule_of(m.config, lay)})
        rows = _nondominated(list(pooled.values()))
        search_s += time.perf_counter() - t1
        print(f"local refinement: {len(ref.trials)} trials in {time.perf_counter() - t1:.0f} s; front of {len(rows)}")

    # 1. the learned front at each baseline's MAC speed-up
    picks: dict[str, dict] = {}
    lines = ["| baseline | PSNR dB | MAC x | learned PSNR dB at >= MAC x | its MAC x | gain dB |", "|---|---|---|---|---|---|"]
    if args.refine:
        lines = ["| baseline | PSNR dB | MAC x | learned PSNR dB at >= MAC x | its MAC x | gain dB | NSGA-II alone: gain dB |",
                 "|---|---|---|---|---|---|---|"]
    for k in BASELINES:
        p = pick(rows, base[k]["mac_speedup"])
        if p is not None:
            picks[f"learned@{k}"] = p
        gain = p["psnr_db"] - base[k]["psnr_db"] if p else float("nan")
        line = (f"| {k} | {base[k]['psnr_db']:.2f} | {base[k]['mac_speedup']:.2f} | "
                f"{p['psnr_db'] if p else float('nan'):.2f} | {p['mac_speedup'] if p else float('nan'):.2f} | {gain:+.2f} |")
        if args.refine:
            q = pick(nsga_rows, base[k]["mac_speedup"])
            line += f" {q['psnr_db'] - base[k]['psnr_db'] if q else float('nan'):+.2f} |"
        lines.append(line)
    at_fora2 = [r for r in rows if r["psnr_db"] >= base["fora_2"]["psnr_db"]]
    best = max(at_fora2, key=lambda r: r["mac_speedup"]) if at_fora2 else None
    if best is not None:
        picks["learned@psnr(fora_2)"] = best
    table1 = "\n".join(lines)
    summary = (f"MAC speed-up at FORA N=2's PSNR ({base['fora_2']['psnr_db']:.2f} dB): "
               f"{best['mac_speedup'] if best else float('nan'):.2f}x (FORA N=2: {base['fora_2']['mac_speedup']:.2f}x)")
    print(table1, "\n" + summary, flush=True)

    # measured wall-clock speed-ups, interleaved in one run
    sched = {**{k: named[k] for k in BASELINES}, **{k: v["schedule"] for k, v in picks.items()}}
    speed = timed(bed.pipe, wl, sched, args.repeats)

    # 2. distribution metric per schedule (and full compute)
    from tradeoff.evaluators.image import Distribution

    dist = Distribution(bed.classifier, real)
    labels = [p for p in range(10) for _ in seeds]
    full_dist = dist(wl.reference, labels)
    table2 = ["| schedule | PSNR dB | SSIM | MAC x | measured x | Fréchet | class consistency |", "|---|---|---|---|---|---|---|",
              f"| full compute | inf | 1.000 | 1.00 | 1.00 | {full_dist['frechet']:.3f} | {full_dist['class_consistency']:.3f} |"]
    all_rows = {**base, **{k: {m: v[m] for m in v if m != "schedule"} for k, v in picks.items()}}
    for k, m in all_rows.items():
        table2.append(f"| {k} | {m['psnr_db']:.2f} | {m['ssim']:.3f} | {m['mac_speedup']:.2f} | {speed[k]:.2f} | "
                      f"{m['frechet']:.3f} | {m['class_consistency']:.3f} |")
    table2 = "\n".join(table2)
    print(table2, flush=True)

    # 3. generations vs the best MAC speed-up at FORA N=2's PSNR
    gens = []
    thr = base["fora_2"]["psnr_db"]
    best_so_far = 0.0
    for i, t in enumerate(trials):
        if t.ok and t.metrics["psnr_db"] >= thr:
            best_so_far = max(best_so_far, t.metrics["mac_speedup"])
        if (i + 1) % args.pop == 0 or i + 1 == len(trials):
            gens.append(((i + 1 + args.pop - 1) // args.pop, best_so_far))
    table3 = ("generation (of the population size; after NSGA-II's trials, the local refinement's): "
              "best MAC speed-up at PSNR >= FORA N=2's\n" + ", ".join(f"{g}: {b:.2f}x" for g, b in gens))
    print(table3, flush=True)

    # 4. transfer of the schedule picked at FORA N=2's PSNR (or at FORA N=2's MACs)
    chosen = picks.get("learned@psnr(fora_2)") or picks.get("learned@fora_2")
    table4 = ["| setting | learned, rhythm-kept: PSNR dB / MAC x | learned, nearest step: PSNR dB / MAC x | "
              "FORA N=2 native: PSNR dB / MAC x |", "|---|---|---|---|"]
    if chosen is not None:
        for label, steps, size in (("10 steps, 8x8", 10, 8), ("40 steps, 8x8", 40, 8), ("20 steps, 16x16", 20, 16)):
            pipe = DigitsPipe(bed.pipe.transformer, bed.pipe.captions, size=size)
            w2 = to.caching(pipe, prompts=list(range(10)), seeds=seeds, steps=steps, timing_repeats=1)
            cells = []
            for sched in (resample_steps(chosen["schedule"], steps), resample_steps(chosen["schedule"], steps, "nearest"),
                          named_schedules(lay, steps, "baselines")["fora_2"]):
                if is_full_compute(sched, lay):
                    cells.append("full compute")
                    continue
                m = w2.evaluate({PARAM: sched})
                cells.append(f"{m['psnr_db']:.2f} / {m['mac_speedup']:.2f}")
            table4.append(f"| {label} | {' | '.join(cells)} |")
    table4 = "\n".join(table4)
    print(table4, flush=True)

    global REFINED
    REFINED = bool(args.refine)
    _plots(rows, base, picks, speed, gens, bed, wl, {**{k: named[k] for k in BASELINES}, **{k: v["schedule"] for k, v in picks.items()}})
    total = time.perf_counter() - t_start
    md = (f"# ECAD on the tiny PixArt digits test bed ({args.layers} blocks)\n\nbudget {args.budget}, population {args.pop}, "
          f"local refinement {args.refine} trials, load average at the end {os.getloadavg()[0]:.1f}, "
          f"{len(seeds) * 10} calibration images, {total / 60:.1f} min in all (2-core CPU; the measured speed-ups are noisy)\n\n"
          f"{table1}\n\n{summary}\n\n{table2}\n\n{table3}\n\n{table4}\n")
    (OUT / "ecad.md").write_text(md)
    (OUT / "ecad.json").write_text(json.dumps({
        "baselines": base, "speedups": speed, "front": [{k: v for k, v in r.items() if k != "schedule"} for r in rows],
        "generations": gens, "picks": {k: to_json(v) for k, v in picks.items()}}, indent=1, default=float))
    print(f"wrote {OUT}/ecad.md, ecad.json, ecad_*.png in {total / 60:.1f} min")


def to_json(row: dict) -> dict:
    out = {k: ("".join("1" if b else "0" for b in v.ravel()) if k == "schedule" else v) for k, v in row.items()}
    if "schedule" in row:
        out["blocks"] = int(row["schedule"].shape[1])
    return out


def _plots(rows, base, picks, speed, gens, bed, wl, schedules) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    f = sorted(rows, key=lambda r: r["mac_speedup"])
    ax[0].plot([r["mac_speedup"] for r in f], [r["psnr_db"] for r in f], "o-", label="learned front (NSGA-II" + (" + local)" if REFINED else ")"))
    for k, m in base.items():
        ax[0].plot(m["mac_speedup"], m["psnr_db"], "s", ms=9, label=k)
    ax[0].set(xlabel="MAC speed-up (x)", ylabel="PSNR vs full compute (dB)", title="fidelity vs MACs")
    ax[0].legend(fontsize=8)
    for k, s in speed.items():
        m = base.get(k) or picks[k]
        ax[1].plot(s, m["psnr_db"], "s" if k in base else "o", ms=8, label=k)
    ax[1].set(xlabel="measured wall-clock speed-up (x)", ylabel="PSNR (dB)", title="fidelity vs measured speed-up")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "ecad_front.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([g for g, _ in gens], [b for _, b in gens], "o-")
    ax.set(xlabel="generation", ylabel="best MAC speed-up", title="at PSNR >= FORA N=2's")
    fig.tight_layout()
    fig.savefig(OUT / "ecad_generations.png", dpi=110)
    plt.close(fig)

    names = ["full", *schedules]
    fig, axes = plt.subplots(len(names), 10, figsize=(10, 1.05 * len(names)))
    for i, k in enumerate(names):
        if k == "full":
            imgs = bed.pipe(list(range(10)), [0] * 10, 20)
        else:
            with cached(bed.pipe, schedules[k], wl.layout):
                imgs = bed.pipe(list(range(10)), [0] * 10, 20)
        for j in range(10):
            axes[i, j].imshow(imgs[j, 0].numpy(), cmap="gray", vmin=-1, vmax=1)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[i, 0].set_ylabel(k, rotation=0, ha="right", fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "ecad_samples.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
