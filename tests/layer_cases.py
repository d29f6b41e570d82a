"""One entry per registry name for the layer contract suite (tests/test_contract.py).

Adding a layer to `keras_norms.registry` without adding a `LayerSpec` here makes
the contract suite fail for it. A spec lists:

- `cases`: small configurations, each with constructor kwargs, an input shape
  and the float64 reference of tests/references.py that the output must match.
  The first case is the primary one (used for training, the saved-model file
  and the generic bad-input checks), so keep it channels last.
- `ranks`: the supported input ranks `(min, max)` (batch axis included; `max`
  None for no limit), or None when any rank is accepted; `follows_rank`: a built
  layer takes another rank where `axis` lands on the same axes from the end.
- `bad`: layer-specific bad arguments; the generic ones (epsilon, axis, rank,
  unknown registry name) are derived by the suite from the constructor's
  signature and `ranks`.

A reference is called as `reference(x, weights)` where `weights` maps weight
names (`gamma`, `beta`, `moving_mean`, `moving_variance`) to float64 arrays,
absent when the layer has no such weight. Epsilons are spelled out: the
documented defaults are part of the contract.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import references as R

Reference = Callable[[np.ndarray, dict], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    kwargs: dict
    input_shape: tuple[int, ...]
    reference: Reference
    # Passed as `training=` to the layer (only batch norm looks at it).
    training: bool = False


@dataclasses.dataclass(frozen=True)
class Bad:
    id: str
    kwargs: dict
    # None: the constructor must raise; otherwise the layer is called on zeros of this shape.
    input_shape: tuple[int, ...] | None
    error: type[Exception]
    # Literal text the message must contain (argument name and received value).
    match: str


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    cases: list[Case]
    ranks: tuple[int, int | None] | None
    bad: list[Bad] = dataclasses.field(default_factory=list)
    # A built layer takes another rank where `axis` lands on the same axes counted from the end
    # (layer and RMS norm, as Keras' do, and DyT and Derf that replace them).
    follows_rank: bool = False

    @property
    def primary(self) -> Case:
        return self.cases[0]


def _gb(w):
    return w.get("gamma"), w.get("beta")


def _batch_train(axis=-1, epsilon=1e-3):
    return lambda x, w: R.batch_norm_train(x, *_gb(w), axis=axis, epsilon=epsilon)


def _batch_infer(axis=-1, epsilon=1e-3):
    return lambda x, w: R.batch_norm(
        x, w["moving_mean"], w["moving_variance"], *_gb(w), axis=axis, epsilon=epsilon
    )


def _layer(axis=-1, epsilon=1e-3):
    return lambda x, w: R.layer_norm(x, *_gb(w), axis=axis, epsilon=epsilon)


def _group(groups, axis=-1, epsilon=1e-3):
    return lambda x, w: R.group_norm(x, groups, *_gb(w), axis=axis, epsilon=epsilon)


def _instance(axis=-1, epsilon=1e-3):
    return lambda x, w: R.instance_norm(x, *_gb(w), axis=axis, epsilon=epsilon)


def _rms(axis=-1, epsilon=1e-6):
    return lambda x, w: R.rms_norm(x, w.get("gamma"), axis=axis, epsilon=epsilon)


def _frn(axis=(1, 2), epsilon=1e-6):
    return lambda x, w: R.filter_response_norm(
        x, w["gamma"], w["beta"], axis=axis, epsilon=epsilon, learned_epsilon=w.get("learned_epsilon")
    )


def _switchable(axis=-1, epsilon=1e-5, training=True):
    return lambda x, w: R.switchable_norm(x, w, axis=axis, epsilon=epsilon, training=training)


def _dyt(axis=-1):
    return lambda x, w: R.dynamic_tanh(x, w["alpha"], *_gb(w), axis=axis)


def _derf(axis=-1):
    return lambda x, w: R.dynamic_erf(x, w["alpha"], w["shift"], *_gb(w), axis=axis)


def _identity(x, w):
    return np.asarray(x, dtype=np.float64)


SPECS: dict[str, LayerSpec] = {
    "batch": LayerSpec(
        cases=[
            Case("batch-train", {"momentum": 0.9}, (2, 4, 4, 8), _batch_train(), training=True),
            Case("batch-infer", {}, (2, 4, 4, 8), _batch_infer()),
            Case("batch-train-nchw", {"axis": 1}, (2, 8, 4, 4), _batch_train(axis=1), training=True),
            Case("batch-infer-nchw", {"axis": 1, "epsilon": 1e-2}, (2, 8, 3, 3),
                 _batch_infer(axis=1, epsilon=1e-2)),
            Case("batch-train-rank2-noaffine", {"center": False, "scale": False, "epsilon": 1e-5},
                 (12, 10), _batch_train(epsilon=1e-5), training=True),
        ],
        ranks=(2, None),
        bad=[
            Bad("momentum=1.5", {"momentum": 1.5}, None, ValueError, "momentum=1.5"),
            Bad("momentum=-0.1", {"momentum": -0.1}, None, ValueError, "momentum=-0.1"),
            Bad("momentum=str", {"momentum": "0.9"}, None, TypeError, "momentum='0.9'"),
            Bad("renorm_momentum=2", {"renorm_momentum": 2}, None, ValueError, "renorm_momentum=2"),
            Bad("renorm_clipping-unknown-key",
                {"renorm": True, "renorm_clipping": {"rmax": 3.0, "rmni": 0.5}},
                None, ValueError, "renorm_clipping={'rmax': 3.0, 'rmni': 0.5}"),
            Bad("virtual_batch_size=0", {"virtual_batch_size": 0}, None, ValueError,
                "virtual_batch_size=0"),
        ],
    ),
    "layer": LayerSpec(
        cases=[
            Case("layer-seq", {}, (3, 5, 8), _layer()),
            Case("layer-axes-1-3", {"axis": [1, 3]}, (2, 4, 3, 6), _layer(axis=[1, 3])),
            Case("layer-axes-last2-nocenter", {"axis": [-2, -1], "center": False, "epsilon": 1e-5},
                 (3, 5, 8), _layer(axis=[-2, -1], epsilon=1e-5)),
            Case("layer-noscale", {"scale": False}, (6, 12), _layer()),
        ],
        ranks=(2, None),
        follows_rank=True,
        bad=[
            Bad("axis=[]", {"axis": []}, None, TypeError, "axis=[]"),
            Bad("axis-duplicate", {"axis": [1, -2]}, (2, 5, 8), ValueError, "axis=[1, -2]"),
            Bad("rms_scaling", {"rms_scaling": True}, None, ValueError, "rms_scaling=True"),
        ],
    ),
    "group": LayerSpec(
        cases=[
            Case("group-nhwc", {"groups": 4}, (2, 4, 4, 8), _group(4)),
            Case("group-nchw", {"groups": 2, "axis": 1}, (2, 8, 3, 3), _group(2, axis=1)),
            Case("group-rank2", {"groups": 2}, (6, 8), _group(2)),
            Case("group-rank5", {"groups": 4}, (2, 3, 3, 2, 8), _group(4)),
            Case("group-1-noaffine", {"groups": 1, "center": False, "scale": False, "epsilon": 1e-5},
                 (3, 5, 8), _group(1, epsilon=1e-5)),
        ],
        ranks=(2, 5),
        bad=[
            Bad("groups-not-dividing", {"groups": 5}, (2, 4, 4, 8), ValueError, "groups=5"),
            Bad("groups>channels", {"groups": 16}, (2, 4, 4, 8), ValueError, "groups=16"),
            Bad("groups=0", {"groups": 0}, None, ValueError, "groups=0"),
            Bad("groups=-2", {"groups": -2}, None, ValueError, "groups=-2"),
            Bad("groups=2.5", {"groups": 2.5}, None, TypeError, "groups=2.5"),
            Bad("groups=str", {"groups": "4"}, None, TypeError, "groups='4'"),
        ],
    ),
    "instance": LayerSpec(
        cases=[
            Case("instance-nhwc", {}, (2, 4, 4, 6), _instance()),
            Case("instance-nchw", {"axis": 1}, (2, 6, 4, 4), _instance(axis=1)),
            Case("instance-seq-nocenter", {"center": False, "epsilon": 1e-5}, (3, 5, 8),
                 _instance(epsilon=1e-5)),
            # As tensorflow-addons: each value alone, so the output is beta (the layer warns).
            Case("instance-rank2", {}, (4, 6), _instance()),
        ],
        ranks=(2, 5),
    ),
    "rms": LayerSpec(
        cases=[
            Case("rms-seq", {}, (3, 5, 8), _rms()),
            Case("rms-axes", {"axis": [1, 2], "epsilon": 1e-3}, (3, 5, 8), _rms(axis=[1, 2], epsilon=1e-3)),
            Case("rms-noscale", {"scale": False}, (6, 12), _rms()),
        ],
        ranks=(2, None),
        follows_rank=True,
        bad=[
            Bad("axis-list-out-of-range", {"axis": [2, 5]}, (2, 5, 8), ValueError, "axis=[2, 5]"),
        ],
    ),
    "frn": LayerSpec(
        cases=[
            Case("frn-nhwc", {}, (2, 4, 4, 8), _frn()),
            Case("frn-learned-epsilon", {"learned_epsilon": True, "epsilon": 1e-4}, (2, 4, 4, 6),
                 _frn(epsilon=1e-4)),
            Case("frn-seq", {"axis": [1]}, (3, 5, 8), _frn(axis=(1,))),
            Case("frn-rank5", {"axis": (1, 2, 3)}, (2, 3, 3, 2, 8), _frn(axis=(1, 2, 3))),
            Case("frn-height-only", {"axis": 1, "epsilon": 1e-3}, (2, 4, 3, 5),
                 _frn(axis=(1,), epsilon=1e-3)),
        ],
        ranks=(3, 5),
        bad=[
            Bad("axis-channel", {"axis": (1, 3)}, (2, 4, 4, 8), ValueError, "axis=(1, 3)"),
            Bad("axis-duplicate", {"axis": (1, -3)}, (2, 4, 4, 8), ValueError, "axis=(1, -3)"),
            Bad("axis=[]", {"axis": []}, None, TypeError, "axis=[]"),
            Bad("axis=str", {"axis": "1"}, None, TypeError, "axis='1'"),
        ],
    ),
    "switchable": LayerSpec(
        cases=[
            Case("switchable-train", {"momentum": 0.9}, (4, 4, 4, 8), _switchable(), training=True),
            Case("switchable-infer", {}, (2, 4, 4, 8), _switchable(training=False)),
            Case("switchable-train-nchw", {"axis": 1}, (3, 6, 3, 3), _switchable(axis=1), training=True),
            Case("switchable-infer-nchw", {"axis": 1, "epsilon": 1e-3}, (2, 6, 3, 3),
                 _switchable(axis=1, epsilon=1e-3, training=False)),
            Case("switchable-train-seq-noaffine", {"center": False, "scale": False}, (3, 5, 8),
                 _switchable(), training=True),
        ],
        ranks=(3, 5),
        bad=[
            Bad("momentum=1.5", {"momentum": 1.5}, None, ValueError, "momentum=1.5"),
            Bad("momentum=str", {"momentum": "0.9"}, None, TypeError, "momentum='0.9'"),
        ],
    ),
    "dyt": LayerSpec(
        cases=[
            Case("dyt-seq-alpha", {"alpha_init_value": 2.0}, (3, 5, 8), _dyt()),
            Case("dyt-nchw", {"axis": 1}, (2, 6, 3, 3), _dyt(axis=1)),
            Case("dyt-axes-noaffine", {"axis": [1, 2], "center": False, "scale": False}, (3, 5, 8),
                 _dyt(axis=[1, 2])),
        ],
        ranks=(2, None),
        follows_rank=True,
        bad=[
            Bad("alpha=str", {"alpha_init_value": "0.5"}, None, TypeError, "alpha_init_value='0.5'"),
            Bad("alpha=inf", {"alpha_init_value": float("inf")}, None, ValueError, "alpha_init_value=inf"),
        ],
    ),
    "derf": LayerSpec(
        cases=[
            Case("derf-seq", {}, (3, 5, 8), _derf()),
            Case("derf-shifted", {"alpha_init_value": 1.5, "shift_init_value": -0.3}, (6, 12), _derf()),
            Case("derf-nchw", {"axis": 1}, (2, 6, 3, 3), _derf(axis=1)),
        ],
        ranks=(2, None),
        follows_rank=True,
        bad=[
            Bad("shift=nan", {"shift_init_value": float("nan")}, None, ValueError, "shift_init_value=nan"),
            Bad("shift=None", {"shift_init_value": None}, None, TypeError, "shift_init_value=None"),
        ],
    ),
    "none": LayerSpec(
        cases=[Case("none", {}, (3, 5, 8), _identity)],
        ranks=None,
        bad=[
            Bad("unknown-argument", {"epsilon": 0}, None, ValueError, "'epsilon': 0"),
        ],
    ),
}


def spec_for(name: str) -> LayerSpec:
    """The spec of registry name `name`; fails the test when there is none."""
    spec = SPECS.get(name)
    if spec is None or not spec.cases:
        pytest.fail(
            f"Registry name {name!r} has no contract case: add a LayerSpec for it to SPECS in "
            "tests/layer_cases.py (constructor kwargs, an input shape and its float64 reference "
            "from tests/references.py).",
            pytrace=False,
        )
    return spec
