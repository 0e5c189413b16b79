"""Regions of an exported SSD graph that precision passes treat specially, found from the graph's structure.

- the *tail*: everything after the head concatenation (box decode, softmax, NMS) — kept FP32 in FP16 graphs: fp16
  priors and decode arithmetic cost up to 0.66 px at 300 px, and the softmax scores sit near a 0.01 threshold;
- *L2 norms*: ReduceL2 / ReduceSumSquare / x·x / x² → sum: TensorRT imports ReduceL2 as x·x → sum → sqrt, which
  overflows fp16 once |x| ≥ 256 (VGG16's conv4_3 L2Norm), so these stay FP32;
- *residual Adds*: an Add of two activations at least one of which a Conv produces; the other input (or, for
  [Conv, Conv], the branch with fewer convs back to the fork — ResNet's downsample) is the residual that NVIDIA's
  explicit-quantization guide quantizes so TensorRT fuses the Add into the INT8 conv.

Structure, not node names: the passes work for every preset and export mode.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

#: Ops that only move data: a head's Conv reaches the head Concat through these.
LAYOUT_OPS = frozenset({"Reshape", "Transpose", "Flatten", "Identity", "Squeeze", "Unsqueeze"})
_NORM_REDUCES = frozenset({"ReduceL2", "ReduceSumSquare"})


@dataclass
class GraphIndex:
    """Producers, consumers and constants of a graph (names of tensors → nodes)."""

    nodes: list[onnx.NodeProto]
    producer: dict[str, onnx.NodeProto]
    consumers: dict[str, list[onnx.NodeProto]]
    constants: set[str]
    initializers: dict[str, onnx.TensorProto]

    @classmethod
    def of(cls, proto: onnx.ModelProto) -> GraphIndex:
        g = proto.graph
        producer: dict[str, onnx.NodeProto] = {}
        consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for o in n.output:
                producer[o] = n
            for i in n.input:
                if i:
                    consumers.setdefault(i, []).append(n)
        initializers = {t.name: t for t in g.initializer}
        constants = set(initializers) | {o for n in g.node if n.op_type == "Constant" for o in n.output}
        return cls(list(g.node), producer, consumers, constants, initializers)

    def source_op(self, tensor: str) -> str:
        node = self.producer.get(tensor)
        return node.op_type if node is not None else ""

    def activations(self, node: onnx.NodeProto) -> list[str]:
        """The node's non-constant, non-empty inputs."""
        return [i for i in node.input if i and i not in self.constants]


def head_concats(index: GraphIndex) -> list[onnx.NodeProto]:
    """Concat nodes whose every input is a Conv output seen through layout-only ops (the heads' `locs`/`logits`)."""

    def from_conv(tensor: str) -> bool:
        node = index.producer.get(tensor)
        while node is not None and node.op_type in LAYOUT_OPS:
            node = index.producer.get(node.input[0])
        return node is not None and node.op_type == "Conv"

    return [n for n in index.nodes if n.op_type == "Concat" and n.input and all(from_conv(i) for i in n.input)]


def tail_nodes(index: GraphIndex) -> set[str]:
    """Names of the nodes after the head concatenation, plus the Constant nodes only they read (e.g. the priors)."""
    seen: set[str] = set()
    queue = deque(o for c in head_concats(index) for o in c.output)
    while queue:
        for node in index.consumers.get(queue.popleft(), ()):
            if node.name not in seen:
                seen.add(node.name)
                queue.extend(node.output)
    return seen | _constant_feeders(index, seen)


def _constant_feeders(index: GraphIndex, names: set[str]) -> set[str]:
    out = set()
    for n in index.nodes:
        if n.op_type == "Constant" and n.output:
            users = index.consumers.get(n.output[0], [])
            if users and all(u.name in names for u in users):
                out.add(n.name)
    return out


def is_square(index: GraphIndex, node: onnx.NodeProto) -> bool:
    """x·x (Mul of a tensor with itself) or Pow(x, 2)."""
    if node.op_type == "Mul":
        return len(node.input) == 2 and node.input[0] == node.input[1]
    if node.op_type == "Pow" and len(node.input) == 2:
        exp = _const_value(index, node.input[1])
        return exp is not None and exp.size == 1 and float(exp.reshape(-1)[0]) == 2.0
    return False


def _const_value(index: GraphIndex, name: str):  # noqa: ANN202 - np.ndarray | None, numpy imported lazily
    from onnx import numpy_helper

    if name in index.initializers:
        return numpy_helper.to_array(index.initializers[name])
    node = index.producer.get(name)
    if node is not None and node.op_type == "Constant":
        for a in node.attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t)
    return None


def norm_nodes(index: GraphIndex, *, max_depth: int = 8) -> set[str]:
    """Names of the nodes of every L2 norm: the square/reduce, and what follows it up to and including the node that
    combines the norm with its source tensor again (F.normalize's Div), plus the Constant nodes only they read."""
    out: set[str] = set()
    for node in index.nodes:
        if node.op_type in _NORM_REDUCES or is_square(index, node):
            src = node.input[0]
            out.add(node.name)
            frontier, depth = list(node.output), 0
            while frontier and depth < max_depth:
                nxt = []
                for t in frontier:
                    for user in index.consumers.get(t, ()):
                        if user.name in out:
                            continue
                        out.add(user.name)
                        if src not in user.input:  # the Div(x, norm): the norm is consumed, stop here
                            nxt.extend(user.output)
                frontier, depth = nxt, depth + 1
    return out | _constant_feeders(index, out)


def _conv_distances(index: GraphIndex, tensor: str, limit: int = 64) -> dict[str, int]:
    """Ancestor tensors of `tensor` → fewest Conv nodes on a path to it (a bounded breadth-first walk)."""
    dist = {tensor: 0}
    queue = deque([tensor])
    while queue and len(dist) < limit * 8:
        t = queue.popleft()
        node = index.producer.get(t)
        if node is None:
            continue
        step = dist[t] + (node.op_type == "Conv")
        for i in index.activations(node)[:1] if node.op_type == "Conv" else index.activations(node):
            if i not in dist or dist[i] > step:
                dist[i] = step
                if step <= limit:
                    queue.append(i)
    return dist


def residual_input(index: GraphIndex, add: onnx.NodeProto) -> str | None:
    """The residual input of a conv-fed Add of two activations, or None when the Add is not one.

    One Conv input: the other input is the residual. Two (ResNet's downsample blocks): the input with fewer convs
    back to the nearest common ancestor (the 1-conv downsample, not the 3-conv bottleneck)."""
    acts = index.activations(add)
    if add.op_type != "Add" or len(acts) != 2 or acts[0] == acts[1]:
        return None
    convs = [index.source_op(a) == "Conv" for a in acts]
    if not any(convs):
        return None
    if not all(convs):
        return acts[convs.index(True) ^ 1] if convs.count(True) == 1 else None
    da, db = _conv_distances(index, acts[0]), _conv_distances(index, acts[1])
    common = set(da) & set(db)
    if not common:
        return acts[1]
    fork = min(common, key=lambda t: da[t] + db[t])
    return acts[0] if da[fork] < db[fork] else acts[1]
