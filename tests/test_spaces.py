import math
import re

import numpy as np
import pytest

import tradeoff as to
from tradeoff.spaces.params import param_from_spec


@pytest.fixture
def space():
    return to.Space({
        "act": to.Choice(["relu", "gelu", "silu"]),
        "width": to.Choice([16, 32, 64]),
        "bits": to.Bits([4, 8, 32]),
        "depth": to.Int(2, 8),
        "heads": to.Int(1, 64, log=True),
        "drop": to.Float(0.0, 0.5),
        "lr": to.Float(1e-4, 1e-1, log=True),
        "mask": to.Mask((3, 4)),
    })


def test_sample_validate_roundtrip_json_and_genes(space):
    rng = np.random.default_rng(0)
    for _ in range(50):
        c = space.sample(rng)
        v = space.validate(c)
        assert space.key(v) == space.key(c)
        j = space.to_json(c)
        assert space.key(space.from_json(j)) == space.key(c)
        g = space.to_genes(c)
        assert g.shape == (space.n_genes,)
        back = space.from_genes(g)
        assert space.key(back) == space.key(c)


def test_encode_is_numeric_in_unit_range(space):
    X = space.encode_many([space.sample(np.random.default_rng(i)) for i in range(20)])
    assert X.shape == (20, space.n_features)
    # unordered 3-way choice is one-hot (3), mask is 12 bits
    assert space.n_features == 3 + 1 + 1 + 1 + 1 + 1 + 1 + 12
    assert np.all((X >= 0) & (X <= 1))


def test_encode_many_matches_encode_row_by_row(space):
    configs = [space.sample(np.random.default_rng(i)) for i in range(20)]
    assert np.array_equal(space.encode_many(configs), np.stack([space.encode(c) for c in configs]))
    assert space.encode_many([]).shape == (0, space.n_features)


def test_choice_index_tells_bools_from_numbers_and_accepts_equal_numbers():
    c = to.Choice([1, True, "a", 8, (2, 3)])
    assert [c.index(v) for v in (1, True, "a", 8.0, np.int64(8), (2, 3))] == [0, 1, 2, 3, 3, 4]
    assert c.validate(np.float64(8.0)) == 8 and type(c.validate(8.0)) is int
    for bad in (False, 0, "b", [2, 3]):
        with pytest.raises(ValueError, match="is not one of"):
            c.index(bad)
    # genes round half to even, and out-of-range genes land on the ends
    assert [c.from_genes(np.array([g])) for g in (-3.0, 0.5, 1.5, 2.49, 9.0)] == [1, 1, "a", "a", (2, 3)]


def test_keys_are_stable_and_distinguish_configs(space):
    c = space.default()
    assert space.key(c) == space.key(dict(c))
    c2 = dict(c, depth=3)
    assert space.key(c2) != space.key(c)
    m = c["mask"].copy()
    m[0, 0] = not m[0, 0]
    assert space.key(dict(c, mask=m)) != space.key(c)
    # equal values in another type are the same config
    s = to.Space({"a": to.Int(0, 3)})
    assert s.key({"a": 2}) == s.key({"a": 2.0})


@pytest.mark.parametrize("name,value,needle", [
    ("act", "tanh", "act: 'tanh' is not one of relu, gelu, silu"),
    ("width", 48, "width: 48 is not one of 16, 32, 64"),
    ("depth", 9, "depth: 9 is not in integers 2..8"),
    ("depth", 2.5, "depth: 2.5 is not an integer"),
    ("drop", 0.7, "drop: 0.7 is not in reals 0.0..0.5"),
    ("mask", np.zeros((2, 2)), "mask: mask of shape (2, 2) is not binary masks of shape 3x4"),
])
def test_validate_names_param_and_domain(space, name, value, needle):
    c = space.default()
    c[name] = value
    with pytest.raises(to.SpaceError) as e:
        space.validate(c)
    assert needle in str(e.value)


def test_validate_missing_and_unknown(space):
    c = space.default()
    del c["depth"]
    with pytest.raises(to.SpaceError, match="depth: missing"):
        space.validate(c)
    with pytest.raises(to.SpaceError, match="unknown params nope"):
        space.validate(dict(space.default(), nope=1))


def test_join_prefixes_and_split():
    q = to.Space({"conv1": to.Bits(), "fc": to.Bits()})
    p = to.Space({"conv1": to.Choice([0.5, 1.0])})
    j = to.Space.join(quant=q, prune=p)
    assert j.names == ["quant.conv1", "quant.fc", "prune.conv1"]
    c = j.sample(np.random.default_rng(0))
    assert set(to.Space.split(c, "quant")) == {"conv1", "fc"}
    assert j.subspace("prune").names == ["conv1"]
    assert j.cardinality == 3 * 3 * 2


def test_int_log_sampling_covers_range_and_step():
    p = to.Int(1, 1024, log=True)
    rng = np.random.default_rng(0)
    xs = [p.sample(rng) for _ in range(2000)]
    assert min(xs) == 1 and max(xs) >= 512
    assert np.median(xs) < 100  # log-uniform, not uniform
    s = to.Int(0, 10, step=5)
    assert sorted({s.sample(rng) for _ in range(100)}) == [0, 5, 10]
    with pytest.raises(ValueError):
        s.validate(3)


def test_mask_bitstring_json():
    m = to.Mask((2, 3))
    v = np.array([[1, 0, 1], [0, 0, 1]], dtype=bool)
    assert m.to_json(v) == "101001"
    assert (m.from_json("101001") == v).all()
    with pytest.raises(ValueError):
        m.from_json("10100")


def test_param_specs_from_yaml_forms():
    assert param_from_spec([1, 2, 3]) == to.Choice([1, 2, 3])
    assert param_from_spec({"kind": "int", "low": 1, "high": 4}) == to.Int(1, 4)
    assert param_from_spec({"kind": "float", "low": 1e-3, "high": 1, "log": True}).log
    assert param_from_spec({"kind": "mask", "shape": [20, 28, 3]}).size == 1680
    with pytest.raises(ValueError, match="kind 'real' is not one of choice, bits, int, float, mask"):
        param_from_spec({"kind": "real", "low": 0, "high": 1})
    with pytest.raises(ValueError, match="unknown keys for an int param: hi"):
        param_from_spec({"kind": "int", "low": 0, "high": 1, "hi": 2})
    with pytest.raises(ValueError, match="needs 'high'"):
        param_from_spec({"kind": "float", "low": 0})
    assert param_from_spec({"kind": "float", "low": "1e-3", "high": 1, "log": True}).low == 1e-3  # YAML's 1e-3
    for spec, message in [
        ({"low": 5, "high": 1}, "a mapping with 'kind' (one of choice, bits, int, float, mask), got {'low': 5, "
                                "'high': 1}; with low and high, add kind: int or kind: float"),
        ({"kind": "int", "low": "a", "high": 5}, "low: 'a' is not a whole number"),
        ({"kind": "int", "low": 1.5, "high": 5}, "low: 1.5 is not a whole number"),  # was cut to 1 in silence
        ({"kind": "choice", "values": 3}, "values: a list of values, got 3"),
        ({"kind": "float", "low": 0, "high": 1, "step": 0.1}, "unknown keys for a float param: step; its keys: "
                                                               "low, high, log"),
        ({"kind": "mask", "shape": [2, "x"]}, "shape: 'x' is not a whole number"),
        ({"kind": "float", "low": 0, "high": float("nan")}, "high: nan is not a finite number"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            param_from_spec(spec)
    with pytest.raises(to.SpaceError, match=re.escape("w: values: a list of values, got 3")) as e:
        to.Space({"w": {"kind": "choice", "values": 3}})
    assert e.value.param == "w"


def test_cardinality():
    assert math.isinf(to.Space({"a": to.Float(0, 1)}).cardinality)
    assert to.Space({"m": to.Mask(10)}).cardinality == 1024


def test_a_mask_too_large_for_a_float_is_infinite_and_searchable():
    # a PixArt-α caching schedule: 20 steps x 28 blocks x 3 components = 1,680 bits (2.0 ** 1680 overflows)
    space = to.Space({"m": to.Mask((20, 28, 3))})
    assert math.isinf(space.cardinality)
    front = to.search(space, {"ones": "maximize", "zeros": "maximize"},
                      lambda c: {"ones": float(c["m"].sum()), "zeros": float((~c["m"]).sum())},
                      budget=4, algorithm="random", tracking=None)
    assert len(front.trials) == 4 and all(t.ok for t in front.trials)


def test_configs_of_one_model_share_a_key_and_the_rule_survives_rows_and_pickling():
    import pickle

    import pandas as pd

    from tradeoff.workloads.table import table_workload

    # four configs, three models: (a=1, b=2) and (a=2, b=1) are the same model (say, a symmetric cell)
    frame = pd.DataFrame([{"a": 1, "b": 1, "model": "m11", "acc": 0.5}, {"a": 1, "b": 2, "model": "m12", "acc": 0.7},
                          {"a": 2, "b": 1, "model": "m12", "acc": 0.7}, {"a": 2, "b": 2, "model": "m22", "acc": 0.9}])
    wl = table_workload(frame, params=["a", "b"], metrics=["acc"], directions={"acc": "maximize"}, identity="model")
    sp = wl.space
    assert sp.key({"a": 1, "b": 2}) == sp.key({"a": 2, "b": 1}) != sp.key({"a": 2, "b": 2})
    assert sp.n_configs == 3 and wl.info["models"] == 3
    sparse = table_workload(frame.iloc[1:], params=["a", "b"], metrics=["acc"], identity="model").space
    assert sparse.rows is not None and sparse.n_configs == 2        # rows kept, counted by model
    assert sparse.key({"a": 1, "b": 2}) == sparse.key({"a": 2, "b": 1})
    assert pickle.loads(pickle.dumps(sp)).key({"a": 2, "b": 1}) == sp.key({"a": 1, "b": 2})
    with pytest.raises(ValueError, match="3 is not one of"):
        sp.key({"a": 1, "b": 3})                                    # the rule does not hide bad values
    with pytest.raises(ValueError, match="identity: table has no column .arch.; it has a, b, model, acc"):
        table_workload(frame, params=["a", "b"], metrics=["acc"], identity="arch")
    # every algorithm evaluates each model once, and the space is exhausted at three
    for algorithm in ("random", "local", "predictive", "nsga2"):
        front = to.search(wl.space, {"acc": "maximize"}, wl.evaluate, budget=10, algorithm=algorithm, seed=1,
                          tracking=None)
        assert len(front.trials) == 3, algorithm
        assert len({(t.config["a"], t.config["b"]) for t in front.trials} & {(1, 2), (2, 1)}) == 1, algorithm


def test_a_canonical_rule_keeps_a_buildable_space_buildable():
    from tradeoff.workloads.convnets import convnet_space

    space = convnet_space(n_stages=2)
    c = space.sample(np.random.default_rng(0))
    widest = lambda cfg: dict(cfg, w0=space["w0"].values[-1])  # noqa: E731 - a rule that ignores w0
    ruled = space.with_canonical(widest)
    assert type(ruled) is type(space) and ruled.build(c) is not None
    assert ruled.key(dict(c, w0=space["w0"].values[0])) == ruled.key(dict(c, w0=space["w0"].values[1]))
    assert space.key(dict(c, w0=space["w0"].values[0])) != space.key(dict(c, w0=space["w0"].values[1]))
