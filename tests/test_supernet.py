"""The digits supernet: extraction is faithful and smaller, leaves the supernet alone; bad input is refused."""

import numpy as np
import pytest
import torch

import tradeoff as to
from tradeoff.evaluators.complexity import count_graph
from tradeoff.hardware.base import export_onnx
from tradeoff.spaces.space import SpaceError
from tradeoff.workloads import make_workload
from tradeoff.workloads.supernet import SPEC, active_slots, extreme, load_supernet

STEPS = 30   # what the shipped-recipe test trains with, so the session trains the supernet once


@pytest.fixture(scope="module")
def sup():
    torch.set_num_threads(1)
    return load_supernet(STEPS)


def test_extracted_subnets_match_supernet_and_shrink(sup):
    net, info = sup
    data = info["data"]
    before = {k: v.clone() for k, v in net.net.state_dict().items()}
    big, small = extreme("max"), extreme("min")
    x = torch.from_numpy(data[20]["x_val"][:16])
    with torch.no_grad():
        assert torch.allclose(net.subnet(big)(x), net.forward(x, big), atol=1e-5)
        mid = dict(big, **{"depth1": 2, "s0b0.kernel": 3, "s2b1.expand": 2})
        assert torch.allclose(net.subnet(mid)(x), net.forward(x, mid), atol=1e-5)
    # BatchNorm recalibration changes the statistics of the copy only
    net.subnet(small, bn_data=data[12]["x"])
    after = net.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    sizes = []
    for cfg in (big, mid, small):
        sub = net.subnet(cfg)
        blob = export_onnx(sub, (torch.zeros(1, 1, cfg["res"], cfg["res"]),))
        sizes.append((sum(p.numel() for p in sub.parameters()), count_graph(blob).macs, len(blob)))
    assert sizes[0][0] > sizes[1][0] > sizes[2][0] and sizes[0][1] > sizes[1][1] > sizes[2][1]
    assert sizes[0][2] > sizes[2][2]
    assert len(active_slots(mid)) == 8


def test_bn_recalibration_rescues_the_smallest_subnet(sup):
    net, info = sup
    d = info["data"][12]
    small = extreme("min")
    acc = lambda m: float((m(torch.from_numpy(d["x_val"])).argmax(1).numpy() == d["y_val"]).mean())
    with torch.no_grad():
        raw, recal = acc(net.subnet(small)), acc(net.subnet(small, bn_data=d["x"]))
    assert recal > raw and recal > 0.3


def test_joint_workload_ignores_absent_slots_and_refuses_bad_input(sup, tmp_path, monkeypatch):
    wl = to.supernet(train_steps=STEPS, bits=[8, 32], keep=[0.5, 1.0], finetune_steps=2)
    assert {n.split(".")[0] for n in wl.space.names} == {"arch", "quant", "prune"}
    cfg = dict(wl.baselines["smallest"], **{"prune.s0b0": 0.5, "quant.s0b0": 8, "prune.s2b2": 0.5})
    out = wl.evaluate(cfg)
    assert 0 <= out["accuracy"] <= 1 and out["n_int8"] >= 3 and out["params_kept"] < 1
    assert out["slots_ignored"] == 2 * (9 - len(active_slots(extreme("min"))))
    with pytest.raises(SpaceError, match="arch.s1b0.kernel"):
        wl.space.validate(dict(cfg, **{"arch.s1b0.kernel": 7}))
    with pytest.raises(ValueError, match="keep: 0.01 leaves 0 of the"):
        make_workload("supernet", train_steps=STEPS, keep=[0.01, 1.0])
    with monkeypatch.context() as m, pytest.raises(ValueError, match=r"bits: \[3\] not supported"):
        m.setenv("TRADEOFF_MODELS", str(tmp_path / "models"))
        make_workload("supernet", train_steps=STEPS + 1, bits=[3, 8])
    assert not (tmp_path / "models").exists()   # refused before any training
    arch = make_workload("supernet", train_steps=STEPS)
    assert set(arch.space.names) == set(extreme("max")) and len(SPEC["resolutions"]) == 3
    assert np.isfinite(arch.evaluate(arch.baselines["largest"])["accuracy"])


def test_configs_of_one_subnet_share_a_key_and_are_evaluated_once(sup):
    import pickle

    wl = to.supernet(train_steps=STEPS, bits=[8, 32], keep=[0.5, 1.0], finetune_steps=0)
    small = dict(wl.baselines["smallest"])                        # depth 1 everywhere: b1, b2 run nothing
    ghost = dict(small, **{"arch.s0b1.kernel": 5, "arch.s1b2.expand": 4, "quant.s2b1": 8, "prune.s0b2": 0.5})
    assert wl.space.key(ghost) == wl.space.key(small)
    for live in ({"arch.s0b0.kernel": 5}, {"quant.s0b0": 8}, {"prune.s1b0": 0.5}, {"quant.head": 8},
                 {"arch.depth0": 2}):
        assert wl.space.key(dict(small, **live)) != wl.space.key(small), live
    deeper = dict(small, **{"arch.depth0": 2})                    # s0b1 runs now: its settings count
    assert wl.space.key(dict(deeper, **{"arch.s0b1.kernel": 5})) != wl.space.key(deeper)
    restored = pickle.loads(pickle.dumps(wl.space))               # checkpoints and workers keep the rule
    assert restored.key(ghost) == restored.key(small)
    arch = to.supernet(train_steps=STEPS)
    a = dict(arch.baselines["smallest"])
    assert arch.space.key(dict(a, **{"s2b2.kernel": 5})) == arch.space.key(a)

    # a local search's one-gene moves mostly touch slots that run nothing here; none is evaluated twice
    front = to.search(wl.space, {"accuracy": "maximize", "n_int8": "minimize"}, wl.evaluate, budget=12,
                      algorithm="local", seed=0, tracking=None, initial=[small])
    def subnet(c):  # what the evaluation builds: resolution, depths, and the settings of the slots that run
        a = {k[5:]: v for k, v in c.items() if k.startswith("arch.")}
        run = set(active_slots(a)) | {"stem", "head"}
        return tuple(sorted((k, v) for k, v in c.items() if "b" not in k.split(".")[1] or k.split(".")[1] in run))

    assert len(front.trials) == 12 and len({subnet(t.config) for t in front.trials}) == 12


def test_the_predictors_see_each_subnets_cost_and_it_follows_the_deployed_size(sup):
    from scipy.stats import kendalltau

    from tradeoff.predictors.encodings import structured_features

    wl = to.supernet(train_steps=STEPS, bits=[8, 32], keep=[0.5, 1.0], finetune_steps=0)
    costs = wl.space.extra_features
    big = dict(wl.baselines["largest"])                            # 32 bits, every channel kept
    assert np.allclose(costs([big])[0, :3], 1.0)                   # weights, bytes, MACs: the largest's
    small = dict(wl.baselines["smallest"])
    ghost = dict(small, **{"arch.s0b1.kernel": 5, "quant.s2b1": 8, "prune.s0b2": 0.5})  # slots it does not run
    assert np.array_equal(structured_features(wl.space, [ghost]), structured_features(wl.space, [small]))
    fewer_bits, fewer_channels = dict(big, **{"quant.s1b0": 8}), dict(big, **{"prune.s1b0": 0.5})
    f = costs([big, fewer_bits, fewer_channels])
    assert f[1, 1] < f[0, 1] and f[1, 0] == f[0, 0]                 # bits cut the bytes, not the weights
    assert f[2, 0] < f[0, 0] and f[2, 2] < f[0, 2]                  # pruning cuts weights and MACs
    # a plain linear fit on three of them (bytes, blocks run, layers at 8 bits) ranks the deployed ONNX
    # files of subnets it never saw
    front = to.search(wl, {"accuracy": "maximize", "size_mb": "minimize"}, budget=20, algorithm="random", seed=0,
                      tracking=None)
    trials = [t for t in front.trials if t.ok][:20]
    size = np.array([t.metrics["size_bytes"] for t in trials])
    F = costs([t.config for t in trials])
    X = np.c_[np.ones(len(trials)), F[:, 1], F[:, -2], F[:, -1]]
    coef = np.linalg.lstsq(X[:12], size[:12], rcond=None)[0]
    tau = kendalltau(X[12:] @ coef, size[12:])[0]
    assert tau >= 0.7, tau
