# SPDX-License-Identifier: MIT
"""Rebuild a tileheat-style ONNX classifier (conv trunk -> global average pool -> dense ->
softmax) as PyTorch modules, from the ONNX file's own initializers. Used by bench/peer-torch.py.

    m = onnx2torch.load("models/default.onnx")
    m.trunk            nn.Sequential: input (B, 3, H, W) float -> features (B, K, fh, fw)
    m.dense_w          (C, K) float32 tensor, Gemm alpha and transB applied
    m.dense_b          (C,) float32 tensor, Gemm beta applied
    m.scale, m.mean, m.std, m.class_names, m.input_size   from metadata_props

The graph is walked node by node in file order as a single chain. Supported: Conv (pads,
strides, dilations, group; asymmetric pads through ZeroPad2d), Relu, MaxPool, BatchNormalization,
Dropout/Identity (skipped), then GlobalAveragePool or ReduceMean over H and W (ends the trunk),
Flatten/Reshape/Squeeze (no-ops after pooling), Gemm or MatMul (+ Add), Softmax. Anything else
raises ValueError: the peer must compute exactly what the graph says or refuse.
"""
import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper


class Model:
    """What load() returns: the trunk, the dense layer and the preprocessing constants."""

    def __init__(self):
        self.trunk = None
        self.dense_w = None
        self.dense_b = None
        self.scale = 1.0 / 255.0
        self.mean = [0.0, 0.0, 0.0]
        self.std = [1.0, 1.0, 1.0]
        self.class_names = []
        self.input_size = None


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _numbers(text, n):
    values = [float(v) for v in text.split(",")]
    if len(values) == 1:
        values = values * n
    if len(values) != n:
        raise ValueError("expected %d numbers, got '%s'" % (n, text))
    return values


def _conv(node, a, init):
    w = torch.from_numpy(init[node.input[1]].copy())
    b = None
    if len(node.input) > 2 and node.input[2]:
        b = torch.from_numpy(init[node.input[2]].copy())
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ValueError("Conv auto_pad is not supported by this converter")
    kh, kw = w.shape[2], w.shape[3]
    pads = list(a.get("pads", [0, 0, 0, 0]))  # (top, left, bottom, right)
    strides = tuple(a.get("strides", [1, 1]))
    dil = tuple(a.get("dilations", [1, 1]))
    group = int(a.get("group", 1))
    conv = nn.Conv2d(w.shape[1] * group, w.shape[0], (kh, kw), stride=strides, dilation=dil,
                     groups=group, bias=b is not None)
    with torch.no_grad():
        conv.weight.copy_(w)
        if b is not None:
            conv.bias.copy_(b)
    if pads[0] == pads[2] and pads[1] == pads[3]:
        conv.padding = (pads[0], pads[1])
        return [conv]
    return [nn.ZeroPad2d((pads[1], pads[3], pads[0], pads[2])), conv]


def _maxpool(a):
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise ValueError("MaxPool with asymmetric pads is not supported by this converter")
    return nn.MaxPool2d(tuple(a["kernel_shape"]), stride=tuple(a.get("strides", a["kernel_shape"])),
                        padding=(pads[0], pads[1]), dilation=tuple(a.get("dilations", [1, 1])),
                        ceil_mode=bool(a.get("ceil_mode", 0)))


def _batchnorm(node, a, init):
    scale, bias, mean, var = (torch.from_numpy(init[n].copy()) for n in node.input[1:5])
    bn = nn.BatchNorm2d(scale.shape[0], eps=float(a.get("epsilon", 1e-5)))
    with torch.no_grad():
        bn.weight.copy_(scale)
        bn.bias.copy_(bias)
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
    return bn


def _gemm(node, a, init):
    if a.get("transA", 0):
        raise ValueError("Gemm with transA is not supported")
    w = init[node.input[1]].astype(np.float64) * float(a.get("alpha", 1.0))
    if not a.get("transB", 0):
        w = w.T  # B is (K, C)
    # w is (C, K) now
    b = None
    if len(node.input) > 2 and node.input[2]:
        b = init[node.input[2]].astype(np.float64).reshape(-1) * float(a.get("beta", 1.0))
    return w, b


def _metadata(model, out):
    meta = {p.key: p.value for p in model.metadata_props}
    if "input_scale" in meta:
        out.scale = float(meta["input_scale"])
    if "input_mean" in meta:
        out.mean = _numbers(meta["input_mean"], 3)
    if "input_std" in meta:
        out.std = _numbers(meta["input_std"], 3)
    if "class_names" in meta:
        out.class_names = [c.strip() for c in meta["class_names"].split(",")]
    if "input_size" in meta:
        out.input_size = [int(v) for v in meta["input_size"].split(",")]
    return meta


def load(path):
    """Read an ONNX file and return a Model (see the module docstring)."""
    model = onnx.load(path)
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:  # Constant nodes feed shapes/axes only
        if node.op_type == "Constant":
            init[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])
    out = Model()
    _metadata(model, out)
    layers, stage, w, b = [], "trunk", None, None
    for node in model.graph.node:
        op, a = node.op_type, _attrs(node)
        if op in ("Constant", "Dropout", "Identity"):
            continue
        if stage == "trunk":
            if op == "Conv":
                layers += _conv(node, a, init)
            elif op == "Relu":
                layers.append(nn.ReLU())
            elif op == "MaxPool":
                layers.append(_maxpool(a))
            elif op == "BatchNormalization":
                layers.append(_batchnorm(node, a, init))
            elif op == "GlobalAveragePool" or op == "ReduceMean":
                axes = a.get("axes")
                if axes is None and op == "ReduceMean" and len(node.input) > 1:
                    axes = init[node.input[1]].tolist()
                if op == "ReduceMean" and sorted(int(x) % 4 for x in axes) != [2, 3]:
                    raise ValueError("ReduceMean over axes %s is not a global average pool" % axes)
                stage = "pooled"
            else:
                raise ValueError("unsupported trunk op %s (%s)" % (op, node.name))
        elif stage == "pooled":
            if op in ("Flatten", "Reshape", "Squeeze"):
                continue
            if op == "Gemm":
                w, b = _gemm(node, a, init)
                stage = "dense"
            elif op == "MatMul":
                w, b = init[node.input[1]].astype(np.float64).T, None  # (K, C) -> (C, K)
                stage = "dense"
            else:
                raise ValueError("unsupported op %s after pooling" % op)
        elif stage == "dense":
            if op == "Add" and b is None:
                b = init[node.input[1]].astype(np.float64).reshape(-1)
            elif op == "Softmax":
                stage = "softmax"
            else:
                raise ValueError("unsupported op %s after the dense layer" % op)
        else:
            raise ValueError("unsupported op %s after Softmax" % op)
    if w is None:
        raise ValueError("no dense layer after the global average pool")
    out.trunk = nn.Sequential(*layers).eval()
    out.dense_w = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))  # (C, K)
    nc = out.dense_w.shape[0]
    out.dense_b = torch.from_numpy((b if b is not None else np.zeros(nc)).astype(np.float32))
    return out
