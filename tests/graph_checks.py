"""Checks on traced TensorFlow graphs, shared by the layer tests and the exporter tests.

GPU delegates (and several TFLite kernels) reject tensors of rank 5 or more, so a
normalization of a 4D image must never view it as 5D, e.g. as
`(N, H, W, groups, channels // groups)`. These helpers find such tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class OpTensor:
    """One op output: the op's name and type, and the output's static rank (None if unknown)."""

    op_name: str
    op_type: str
    rank: int | None


def _graphs(graph: tf.Graph):
    """`graph` and the graphs of the functions it calls (`tf.cond`, `tf.while_loop`, nested tf.functions)."""
    seen = set()
    pending = [graph]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for function in getattr(current, "_functions", {}).values():
            nested = getattr(function, "graph", None)
            if nested is not None:
                pending.append(nested)


def op_tensors(graph: tf.Graph) -> list[OpTensor]:
    """Every output of every op of `graph` (and of the function graphs it calls)."""
    return [
        OpTensor(op.name, op.type, output.shape.rank)
        for g in _graphs(graph)
        for op in g.get_operations()
        for output in op.outputs
    ]


def tensors_above_rank(graph: tf.Graph, max_rank: int) -> list[OpTensor]:
    """Op outputs whose rank exceeds `max_rank`, or is unknown (it cannot be shown not to)."""
    return [t for t in op_tensors(graph) if t.rank is None or t.rank > max_rank]


def max_rank(graph: tf.Graph) -> int:
    """The highest static rank of any op output of `graph`."""
    return max(t.rank for t in op_tensors(graph) if t.rank is not None)


def trace(fn: Callable, *input_shapes: Sequence[int], dtype=tf.float32) -> tf.Graph:
    """The graph of `fn` traced by `tf.function` for fixed (fully static) input shapes."""
    signature = [tf.TensorSpec(shape, dtype) for shape in input_shapes]
    return tf.function(fn, input_signature=signature).get_concrete_function().graph


def assert_no_rank_growth(graph: tf.Graph, input_rank: int) -> None:
    """Fails, listing the offending ops, if any tensor of `graph` has a rank above `input_rank`."""
    offenders = tensors_above_rank(graph, input_rank)
    assert not offenders, (
        f"{len(offenders)} op output(s) exceed the input rank {input_rank}: "
        + ", ".join(f"{t.op_name} ({t.op_type}, rank {t.rank})" for t in offenders[:10])
    )
