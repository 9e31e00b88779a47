"""Model-family figure: accuracy against ORT CPU latency across timm families, each candidate trained
under a step-budget ladder (25/50/100 steps), optionally stopped early, searched by ``algorithm: auto``.

Prints which algorithm ``auto`` picked and why, the trials per family (early-stopped, failed), the
front, and the training seconds spent against training every candidate to the top rung. Latency is
one ONNX Runtime CPU thread, batch 1, median; on a shared machine read the ratios, not the digits.

    .venv/bin/python bench/model_family.py                 # 24 trials, a few minutes on one thread
    .venv/bin/python bench/model_family.py --early-stop 0.5   # stop the ones far behind at a rung

Writes bench/results/model_family.{md,png}.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = {"test_resnet": {"drop_rate": [0.0, 0.1, 0.2]},
          "test_efficientnet": {"drop_rate": [0.0, 0.1, 0.2]},
          "test_vit": {"img_size": 16, "patch_size": [4, 8], "depth": [1, 2], "embed_dim": [32, 64]}}
STEPS = [25, 50, 100]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--early-stop", type=float, default=None,
                    help="stop a candidate below this fraction of the best accuracy at a rung (default: never)")
    args = ap.parse_args()

    import torch

    import tradeoff as to

    torch.set_num_threads(1)
    wl = to.timm_family(models=MODELS, steps=STEPS, early_stop=args.early_stop)
    alg = to.make_algorithm("auto")
    t0 = time.perf_counter()
    front = to.search(wl, {"accuracy": "maximize", "latency_ms": "minimize"},
                      targets={"cpu": {"runtime": "ort", "threads": 1}}, budget=args.budget, algorithm=alg,
                      tracking=None, seed=args.seed, name="bench-model-family", progress=True)
    search_s = time.perf_counter() - t0
    ok = [t for t in front.trials if t.ok]
    members = {t.number for t in front.members}
    lines = [f"auto picked **{alg.decision['algorithm']}**: {alg.decision['why']}", "",
             f"{len(front.trials)} trials, {len(front.failed)} failed, search {search_s / 60:.1f} min "
             f"(one CPU thread, shared machine); early stop {args.early_stop}", "",
             "| trial | model | ctor args | accuracy (ONNX) | latency ms | train steps | early stopped | on front |",
             "|---|---|---|---|---|---|---|---|"]
    for t in ok:
        m, c = t.metrics, t.config
        args_ = ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in c.items() if k.startswith(c["model"] + "."))
        lines.append(f"| {t.number} | {c['model']} | {args_} | {m['accuracy']:.4f} | {m['latency_ms']:.4f} | "
                     f"{int(m['train_steps'])} | {'yes' if m['early_stopped'] else 'no'} | "
                     f"{'yes' if t.number in members else ''} |")
    spent = sum(t.metrics.get("train_steps", 0) for t in ok)
    lines += ["", f"training steps spent: {spent:.0f} of {len(ok) * STEPS[-1]} had every candidate run "
                  f"to {STEPS[-1]} ({spent / max(1, len(ok) * STEPS[-1]):.0%})"]
    text = "\n".join(lines)
    print(text)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "model_family.md").write_text(text + "\n")
    plot(front, ok, members, out / "model_family.png")
    print(f"wrote {out / 'model_family.md'} and {out / 'model_family.png'}")


def plot(front, ok, members, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    colors = dict(zip(MODELS, ["#1f6fb4", "#d9822b", "#3a9d5d"]))
    for name, color in colors.items():
        for stopped, marker in ((0, "o"), (1, "x")):
            pts = [t for t in ok if t.config["model"] == name and int(t.metrics["early_stopped"]) == stopped]
            if pts:
                ax.scatter([t.metrics["latency_ms"] for t in pts], [t.metrics["accuracy"] for t in pts], s=36,
                           marker=marker, color=color,
                           label=f"{name}{' (early-stopped)' if stopped else ''}")
    fr = sorted((t for t in ok if t.number in members), key=lambda t: t.metrics["latency_ms"])
    ax.step([t.metrics["latency_ms"] for t in fr], [t.metrics["accuracy"] for t in fr], where="post", color="black",
            lw=1, label="front")
    ax.set_xlabel("latency ms (ONNX Runtime CPU, 1 thread, batch 1)")
    ax.set_ylabel("held-out accuracy (ONNX)")
    ax.set_title(f"timm families on digits 16x16, steps {STEPS}")
    ax.legend(fontsize=7, loc="lower right")
    fig.savefig(path, dpi=130)


if __name__ == "__main__":
    main()
