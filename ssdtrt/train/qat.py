"""Quantization-aware fine-tuning with fake quantization exactly where `ssdtrt export --precision int8` puts Q/DQ.

Placement and scales come from the export itself: the checkpoint (BatchNorm folded) is exported and quantized by
`quantize_int8`, and the INT8 graph is read back — per Conv, the input's per-tensor scale; per residual Add, the
residual's scale — and mapped onto the torch Conv2d modules in call order (checked by weight shape). In torch:

- conv input: `torch.fake_quantize_per_tensor_affine(x, s, 0, -128, 127)` (a forward pre-hook; QuantizeLinear
  saturates to [-128, 127], the calibrated scale maps the range to ±127);
- conv weight: per output channel, symmetric, scale = absmax/127 recomputed every step from the current weight, as
  the quantizer computes it at export (`torch.nn.utils.parametrize`, so the checkpoint keeps plain float weights);
- residual input of a conv-fed Add: the same per-tensor fake quantization on the block input (pre-hook on the
  conv's parent block: BasicBlock / Bottleneck) or on the downsample branch output (forward hook).

BatchNorm is folded into the conv weights before training and left as an identity (γ = 1, mean 0, var 1 − eps,
β = folded bias, frozen statistics, γ frozen): the export folds it again to exactly the weights that were fake-
quantized. The result is a plain checkpoint; `ssdtrt export --precision int8` makes the same Q/DQ graph from it
(lint rules unchanged). Why hand-placed and not torch.ao: ao's observers quantize module *outputs* and need the
residual Add rewritten as FloatFunctional — another placement than the one TensorRT fuses and `ssdtrt lint` checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssdtrt.core.errors import SSDTRTError

if TYPE_CHECKING:
    import onnx
    import torch

#: Activation range of QuantizeLinear to int8 (saturation), and the symmetric weight range the quantizer uses.
ACT_QMIN, ACT_QMAX, WEIGHT_QMAX = -128, 127, 127


@dataclass
class QdqPlan:
    """Where the export puts Q/DQ, in torch terms: module name → per-tensor scale."""

    conv_input_scales: dict[str, float]  # Conv2d module → scale of its input
    block_input_scales: dict[str, float]  # residual block module → scale of its input (identity residual)
    block_output_scales: dict[str, float]  # downsample branch module → scale of its output
    onnx_names: dict[str, str]  # Conv2d module → ONNX Conv node name
    tensor_absmax: dict[str, float]  # ONNX tensor → |range| its Q/DQ was calibrated to (scale · 127)


def fold_batchnorm(model: torch.nn.Module) -> int:
    """Fold every BatchNorm2d into the Conv2d before it (in place), leaving the BN an identity plus bias; returns
    the number folded. Parameter names do not change, so the checkpoint format does not either."""
    from torch import nn

    pairs: dict[int, tuple[Any, Any]] = {}
    for parent in model.modules():
        children = list(parent.named_children())
        for (_, conv), (_, bn) in zip(children, children[1:]):  # Sequential(conv, bn, relu) and blocks' conv1, bn1
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                pairs[id(bn)] = (conv, bn)
    for conv, bn in pairs.values():
        _fold_pair(conv, bn)
    return len(pairs)


def _fold_pair(conv: Any, bn: Any) -> None:
    import torch

    with torch.no_grad():
        inv = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight.mul_(inv.view(-1, 1, 1, 1))
        bias = bn.bias - bn.running_mean * inv
        if conv.bias is not None:
            bias = bias + conv.bias * inv
            conv.bias.zero_()
        bn.bias.copy_(bias)
        bn.weight.fill_(1.0)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
    bn.weight.requires_grad_(False)


def plan_from_export(model: torch.nn.Module, calibration: Any) -> tuple[QdqPlan, onnx.ModelProto]:
    """The Q/DQ placement and scales `quantize_int8` gives this (folded) model; also returns the INT8 raw graph."""
    from ssdtrt.export.onnx_export import export_body
    from ssdtrt.export.precision import quantize_int8

    body = export_body(model, mode="raw", dynamic_batch=True)
    int8, _ = quantize_int8(body, model.spec, calibration)
    convs = _conv_modules_in_call_order(model)
    onnx_convs = [n for n in body.graph.node if n.op_type == "Conv"]
    inits = {t.name: tuple(t.dims) for t in body.graph.initializer}
    if len(convs) != len(onnx_convs):
        raise SSDTRTError(f"qat: {len(convs)} Conv2d calls in torch, {len(onnx_convs)} Conv nodes in the export")
    for (name, mod), node in zip(convs, onnx_convs):
        if inits.get(node.input[1]) != tuple(mod.weight.shape):
            raise SSDTRTError(f"qat: torch conv {name} {tuple(mod.weight.shape)} does not match {node.name}")
    return _read_scales(int8, body, convs, onnx_convs), int8


def _conv_modules_in_call_order(model: torch.nn.Module) -> list[tuple[str, Any]]:
    import torch
    from torch import nn

    order: list[tuple[str, Any]] = []
    hooks = [m.register_forward_pre_hook(lambda mod, _inp, name=name: order.append((name, mod)))
             for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    pre = model.spec.preprocess
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, pre.height, pre.width))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return order


def _read_scales(int8: onnx.ModelProto, body: onnx.ModelProto, convs: list, onnx_convs: list) -> QdqPlan:
    from onnx import numpy_helper

    from ssdtrt.export.graph_regions import GraphIndex, residual_input

    index = GraphIndex.of(int8)
    consts = {t.name: numpy_helper.to_array(t) for t in int8.graph.initializer}
    by_node = {n.name: n for n in index.nodes}
    conv_in, names, absmax = {}, {}, {}
    for (name, _), node in zip(convs, onnx_convs):
        dq = index.producer.get(by_node[node.name].input[0])
        if dq is None or dq.op_type != "DequantizeLinear":
            raise SSDTRTError(f"qat: {node.name} is not quantized in the export")
        conv_in[name], names[name] = float(consts[dq.input[1]]), node.name
        absmax[node.input[0]] = conv_in[name] * ACT_QMAX
    module_of_input = {node.input[0]: name for (name, _), node in zip(convs, onnx_convs)}
    module_of_output = {node.output[0]: name for (name, _), node in zip(convs, onnx_convs)}
    blocks_in, blocks_out = {}, {}
    for add in (n for n in index.nodes if n.op_type == "Add"):
        res = residual_input(index, add)
        dq = index.producer.get(res) if res else None
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        tensor, scale = index.producer[dq.input[0]].input[0], float(consts[dq.input[1]])
        absmax[tensor] = scale * ACT_QMAX
        if tensor in module_of_input:  # identity residual: the block's input
            blocks_in[module_of_input[tensor].rsplit(".", 1)[0]] = scale
        elif tensor in module_of_output:  # downsample branch output
            blocks_out[module_of_output[tensor].rsplit(".", 1)[0]] = scale
        else:
            raise SSDTRTError(f"qat: cannot place the residual fake quantization of {add.name}")
    return QdqPlan(conv_in, blocks_in, blocks_out, names, absmax)


def attach_fake_quant(model: torch.nn.Module, plan: QdqPlan) -> list[Any]:
    """Put fake quantization where the plan says (in place); returns the hook handles (weights: parametrizations,
    removed by `detach_fake_quant`)."""
    import torch
    from torch import nn
    from torch.nn.utils import parametrize

    class WeightFQ(nn.Module):
        def forward(self, w: torch.Tensor) -> torch.Tensor:
            scale = (w.detach().abs().amax(dim=(1, 2, 3)) / WEIGHT_QMAX).clamp_min(1e-12)
            zero = torch.zeros_like(scale, dtype=torch.int32)
            return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -WEIGHT_QMAX, WEIGHT_QMAX)

    def act_fq(scale: float):  # noqa: ANN202
        def fq(x: torch.Tensor) -> torch.Tensor:
            return torch.fake_quantize_per_tensor_affine(x, scale, 0, ACT_QMIN, ACT_QMAX)
        return fq

    modules = dict(model.named_modules())
    handles = []
    for name, scale in plan.conv_input_scales.items():
        f = act_fq(scale)
        handles.append(modules[name].register_forward_pre_hook(lambda _m, inp, f=f: (f(inp[0]), *inp[1:])))
        parametrize.register_parametrization(modules[name], "weight", WeightFQ())
    for name, scale in plan.block_input_scales.items():
        f = act_fq(scale)
        handles.append(modules[name].register_forward_pre_hook(lambda _m, inp, f=f: (f(inp[0]), *inp[1:])))
    for name, scale in plan.block_output_scales.items():
        f = act_fq(scale)
        handles.append(modules[name].register_forward_hook(lambda _m, _inp, out, f=f: f(out)))
    return handles


def detach_fake_quant(model: torch.nn.Module, handles: list[Any]) -> None:
    """Remove the hooks and the weight parametrizations, keeping the float (not rounded) weights."""
    from torch.nn.utils import parametrize

    for h in handles:
        h.remove()
    for m in model.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
