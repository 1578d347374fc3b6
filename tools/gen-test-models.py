#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Generate tileheat's small ONNX test models and their PyTorch reference outputs.

Writes tests/data/models/:
  <name>.onnx  small VGG-GAP classifiers with random weights (fixed seeds): some exported by
               torch.onnx.export, some written with onnx.helper for what PyTorch does not emit
               (BatchNormalization nodes, tf2onnx-style NHWC input + Transposes, ReduceMean with
               axes as attribute or as an opset-18 input, MatMul + Add, Softmax, auto_pad).
  <name>.ref   what tileheat must find in the model (layers, sizes, metadata) and, for a few real
               tiles of CMU-1-Small-Region.svs read with openslide-python, the logits and the CAMs
               computed by PyTorch in float64 from the torch module (never from the ONNX file).
  bad-*.onnx   deliberately broken models the loader must reject.

.ref format: text lines "key values...", then a line "data", then little-endian float32 blocks
in the order of the "block <name> <count>" lines. Blocks: "logits.<t>" (n_classes) and
"cam.<t>" (n_classes, fh, fw) per tile t (CAM_c = sum_k W[c,k] A_k, bias left out),
"dense_w" (n_classes, feat_c) and "dense_b" (n_classes) as the loader must hold them (alpha and
beta applied), and "weight.<i>"/"bias.<i>" for conv layers whose BatchNorm must be folded.

Run: /usr/bin/python3 tools/gen-test-models.py  (needs torch, onnx, openslide, numpy).
Every ONNX graph is also executed by a small torch interpreter below and must match the module.
"""
import io
import os
import sys

import numpy as np
import onnx
import openslide
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reffile  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "tests", "data", "models")
DATA = os.environ.get("TH_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
SLIDE_REL = "slides/CMU-1-Small-Region.svs"

# Level-0 tile corners on CMU-1-Small-Region (2220x2967): tissue, tissue edge, glass.
TILE_SPOTS = [(1000, 1500), (780, 2420), (1450, 2030), (1180, 690), (300, 420), (1600, 2700)]


# --------------------------------------------------------------------------- the torch models

class PadConv(nn.Module):
    """Conv2d with explicit (top, left, bottom, right) zero padding, as ONNX pads allow."""

    def __init__(self, cin, cout, k, stride=1, dilation=1, pads=(0, 0, 0, 0), bias=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, dilation=dilation, bias=bias)
        self.pads = pads

    def forward(self, x):
        t, l, b, r = self.pads
        return self.conv(F.pad(x, (l, r, t, b)))


class Net(nn.Module):
    """trunk -> global average pooling -> dense. feat() is the map that feeds the pooling."""

    def __init__(self, trunk, feat_c, n_classes):
        super().__init__()
        self.trunk = nn.Sequential(*trunk)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(feat_c, n_classes)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.trunk(x))))


def randomize(net, seed):
    """Random weights of a useful scale, and non-trivial BatchNorm statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
                m.running_var.copy_(0.2 + torch.rand(c, generator=g) * 2)
                m.eps = 1e-3
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return net.eval()


# --------------------------------------------------------------------------- helper-built graphs

def conv_node(name, x, conv, pads, inits, auto_pad=None):
    """Conv node from nn.Conv2d weights; pads (t, l, b, r)."""
    w = name + ".w"
    inputs = [x, w]
    inits.append(numpy_helper.from_array(conv.weight.detach().numpy(), w))
    if conv.bias is not None:
        inputs.append(name + ".b")
        inits.append(numpy_helper.from_array(conv.bias.detach().numpy(), name + ".b"))
    attrs = dict(kernel_shape=list(conv.kernel_size), strides=list(conv.stride),
                 dilations=list(conv.dilation), group=1)
    if auto_pad:
        attrs["auto_pad"] = auto_pad
    else:
        attrs["pads"] = [pads[0], pads[1], pads[2], pads[3]]
    return helper.make_node("Conv", inputs, [name + ":0"], name=name, **attrs)


def trunk_nodes(net, x, inits, auto_pads):
    """ONNX nodes for the torch trunk; auto_pads maps a trunk index to an auto_pad string."""
    nodes = []
    for i, m in enumerate(net.trunk):
        name = "t%d" % i
        if isinstance(m, (nn.Conv2d, PadConv)):
            conv = m.conv if isinstance(m, PadConv) else m
            p = m.pads if isinstance(m, PadConv) else (conv.padding * 2)
            nodes.append(conv_node(name, x, conv, p, inits, auto_pads.get(i)))
        elif isinstance(m, nn.BatchNorm2d):
            names = [name + s for s in (".scale", ".bias", ".mean", ".var")]
            for n, t in zip(names, (m.weight, m.bias, m.running_mean, m.running_var)):
                inits.append(numpy_helper.from_array(t.detach().numpy(), n))
            nodes.append(helper.make_node("BatchNormalization", [x] + names, [name + ":0"],
                                          name=name, epsilon=m.eps, momentum=0.9))
        elif isinstance(m, nn.ReLU):
            nodes.append(helper.make_node("Relu", [x], [name + ":0"], name=name))
        elif isinstance(m, nn.Dropout):
            nodes.append(helper.make_node("Dropout", [x], [name + ":0"], name=name))
        elif isinstance(m, nn.MaxPool2d):
            p = m.padding
            nodes.append(helper.make_node("MaxPool", [x], [name + ":0"], name=name,
                                          kernel_shape=[m.kernel_size] * 2, strides=[m.stride] * 2,
                                          pads=[p] * 4, ceil_mode=int(m.ceil_mode)))
        elif isinstance(m, nn.ZeroPad2d) or isinstance(m, nn.Identity):
            continue  # folded into the conv after it (auto_pad) or nothing at all
        else:
            raise ValueError(m)
        x = name + ":0"
    return nodes, x


def helper_model(net, spec):
    """A graph PyTorch would not export: layout, pooling and dense variants from spec."""
    inits, nodes = [], []
    h, w = spec["size"]
    opset = spec.get("opset", 13)
    if spec.get("nhwc"):
        inp = helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["unk__1", h, w, 3])
        nodes.append(helper.make_node("Transpose", ["input_1"], ["nchw"], name="to_nchw",
                                      perm=[0, 3, 1, 2]))
        x = "nchw"
    else:
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, h, w])
        x = "input"
    tn, x = trunk_nodes(net, x, inits, spec.get("auto_pads", {}))
    nodes += tn
    pool = spec["pool"]
    if pool == "gap":
        nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="gap"))
    elif pool == "reducemean-nhwc":  # tf2onnx: back to NHWC, ReduceMean over [1, 2]
        nodes.append(helper.make_node("Transpose", [x], ["nhwc"], name="to_nhwc",
                                      perm=[0, 2, 3, 1]))
        nodes.append(helper.make_node("ReduceMean", ["nhwc"], ["pooled"], name="gap_mean",
                                      axes=[1, 2], keepdims=0))
    elif pool == "reducemean-18":  # axes as an input (opset 18), from a Constant node
        nodes.append(helper.make_node("Constant", [], ["axes"], name="axes_const",
                                      value=numpy_helper.from_array(np.array([-1, -2], np.int64))))
        nodes.append(helper.make_node("ReduceMean", [x, "axes"], ["pooled4"], name="gap_mean",
                                      keepdims=1))
        inits.append(numpy_helper.from_array(np.array([1, -1], np.int64), "flat_shape"))
        nodes.append(helper.make_node("Reshape", ["pooled4", "flat_shape"], ["pooled"],
                                      name="flatten"))
    x = "pooled"
    if pool == "gap":
        nodes.append(helper.make_node("Flatten", [x], ["flat"], name="flatten", axis=1))
        x = "flat"
    wt = net.fc.weight.detach().numpy().astype(np.float32)  # (n_classes, feat_c)
    b = net.fc.bias.detach().numpy().astype(np.float32)
    dense = spec["dense"]
    out = "logits"
    if dense == "matmul":
        inits.append(numpy_helper.from_array(np.ascontiguousarray(wt.T), "fc.w"))
        inits.append(numpy_helper.from_array(b, "fc.b"))
        nodes.append(helper.make_node("MatMul", [x, "fc.w"], ["mm"], name="fc_matmul"))
        nodes.append(helper.make_node("Add", ["mm", "fc.b"], ["dense"], name="fc_add"))
    else:  # gemm with transB, alpha, beta: powers of two keep W/alpha and b/beta exact
        tb, alpha, beta = spec.get("transB", 1), spec.get("alpha", 1.0), spec.get("beta", 1.0)
        bw = wt / alpha if tb else np.ascontiguousarray((wt / alpha).T)
        inits.append(numpy_helper.from_array(bw.astype(np.float32), "fc.w"))
        inits.append(numpy_helper.from_array((b / beta).reshape(1, -1).astype(np.float32), "fc.b"))
        nodes.append(helper.make_node("Gemm", [x, "fc.w", "fc.b"], ["dense"], name="fc",
                                      transB=tb, alpha=alpha, beta=beta))
    x = "dense"
    if spec.get("identity"):
        nodes.append(helper.make_node("Identity", [x], ["dense_id"], name="id"))
        x = "dense_id"
    if spec.get("softmax"):
        nodes.append(helper.make_node("Softmax", [x], ["probs"], name="softmax", axis=-1))
        x = "probs"
    nodes[-1].output[0] = out
    outp = helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, net.fc.out_features])
    graph = helper.make_graph(nodes, spec["name"], [inp], [outp], inits)
    model = helper.make_model(graph, producer_name="tileheat-gen-test-models",
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def torch_export(net, spec):
    h, w = spec["size"]
    f = io.BytesIO()
    dyn = {"input": {2: "height", 3: "width"}} if spec.get("dynamic") else None
    torch.onnx.export(net, torch.zeros(1, 3, h, w), f, input_names=["input"],
                      output_names=["logits"], opset_version=spec.get("opset", 13),
                      dynamic_axes=dyn, do_constant_folding=True)
    return onnx.load_from_string(f.getvalue())


# --------------------------------------------------------------------------- ONNX interpreter
# Executes our graphs with torch.nn.functional, to prove each .onnx means what the torch module
# computes (the C loader is then checked against the torch module, not against this).

def run_onnx(model, x):
    g = model.graph
    env = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()).double()
           for t in g.initializer}
    env[g.input[0].name] = x
    for n in g.node:
        a = {at.name: helper.get_attribute_value(at) for at in n.attribute}
        i = [env[k] if k else None for k in n.input]
        op = n.op_type
        if op == "Constant":
            y = torch.from_numpy(numpy_helper.to_array(a["value"]).copy())
        elif op == "Transpose":
            y = i[0].permute(*a["perm"])
        elif op == "Conv":
            y = conv_eval(i, a)
        elif op == "Relu":
            y = F.relu(i[0])
        elif op in ("Dropout", "Identity"):
            y = i[0]
        elif op == "MaxPool":
            p = a.get("pads", [0, 0, 0, 0])
            assert p[0] == p[2] and p[1] == p[3]
            y = F.max_pool2d(i[0], a["kernel_shape"], a.get("strides", 1), (p[0], p[1]),
                             ceil_mode=bool(a.get("ceil_mode", 0)))
        elif op == "BatchNormalization":
            y = F.batch_norm(i[0], i[3], i[4], i[1], i[2], False, 0.0, a.get("epsilon", 1e-5))
        elif op == "GlobalAveragePool":
            y = i[0].mean(dim=(2, 3), keepdim=True)
        elif op == "ReduceMean":
            axes = a["axes"] if "axes" in a else [int(v) for v in i[1]]
            y = i[0].mean(dim=tuple(axes), keepdim=bool(a.get("keepdims", 1)))
        elif op == "Flatten":
            y = i[0].reshape(i[0].shape[0], -1)
        elif op == "Reshape":
            y = i[0].reshape([int(v) for v in i[1]])
        elif op == "Gemm":
            bm = i[1].T if a.get("transB", 0) else i[1]
            y = a.get("alpha", 1.0) * i[0] @ bm + a.get("beta", 1.0) * i[2]
        elif op == "MatMul":
            y = i[0] @ i[1]
        elif op == "Add":
            y = i[0] + i[1]
        elif op == "Softmax":
            y = torch.softmax(i[0], dim=a.get("axis", -1))
        else:
            raise ValueError(op)
        env[n.output[0]] = y
    return env[g.output[0].name]


def conv_eval(i, a):
    x, w = i[0], i[1]
    k = a.get("kernel_shape", list(w.shape[2:]))
    s, d = a.get("strides", [1, 1]), a.get("dilations", [1, 1])
    ap = a.get("auto_pad", b"NOTSET").decode()
    if ap in ("SAME_UPPER", "SAME_LOWER"):
        p = []
        for dim in range(2):
            n = x.shape[2 + dim]
            out = -(-n // s[dim])
            total = max(0, (out - 1) * s[dim] + (k[dim] - 1) * d[dim] + 1 - n)
            small = total // 2
            p.append((small, total - small) if ap == "SAME_UPPER" else (total - small, small))
        pads = [p[0][0], p[1][0], p[0][1], p[1][1]]
    elif ap == "VALID":
        pads = [0, 0, 0, 0]
    else:
        pads = a.get("pads", [0, 0, 0, 0])
    x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
    return F.conv2d(x, w, i[2] if len(i) > 2 else None, s, 0, d)


# --------------------------------------------------------------------------- model specs

def specs():
    """Each spec: torch trunk, feature channels, classes, input size (h, w), how to write it,
    metadata, and the layers tileheat must end up with."""
    out = []
    # Plain torch export, no metadata (defaults everywhere); also the truncation-sweep model.
    out.append(dict(
        name="vgg-basic", seed=1, size=(32, 32), export="torch", classes=3,
        trunk=lambda: [nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)],
        feat_c=8, meta={}))
    # Stride 2 with a 5x5 kernel, dilation 2 with unequal H/W padding, ceil_mode pooling with
    # padding, a standalone Relu after MaxPool; 6 classes and every metadata key.
    out.append(dict(
        name="vgg-strided", seed=2, size=(48, 48), export="torch", classes=6,
        trunk=lambda: [nn.Conv2d(3, 6, 5, stride=2, padding=2), nn.ReLU(),
                       nn.Conv2d(6, 8, 3, dilation=2, padding=(2, 1)),
                       nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), nn.ReLU(),
                       nn.Conv2d(8, 8, 3, stride=2), nn.ReLU()],
        feat_c=8,
        meta=dict(class_names="tumor, stroma,lymphocytes , mucosa,adipose,background",
                  input_scale="0.00390625", input_mean="0.485,0.456,0.406",
                  input_std="0.229, 0.224, 0.225", mpp="0.5", background_classes="background",
                  author="tileheat tests")))
    # Dynamic H and W; the tile size comes from metadata input_size (W,H, not square).
    out.append(dict(
        name="vgg-dynamic", seed=3, size=(48, 56), export="torch", classes=4, dynamic=True,
        trunk=lambda: [nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU()],
        feat_c=8, meta=dict(input_size="56,48", class_names="a,b,c,d")))
    # BatchNormalization after a conv with bias and after one without (asymmetric pads).
    out.append(dict(
        name="vgg-bn", seed=4, size=(36, 36), export="helper", classes=3, pool="gap",
        dense="gemm", transB=1,
        trunk=lambda: [nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                       nn.MaxPool2d(2),
                       PadConv(6, 8, 3, pads=(0, 1, 1, 2), bias=False), nn.BatchNorm2d(8),
                       nn.ReLU(), nn.MaxPool2d(2)],
        feat_c=8, meta=dict(input_std="0.5,0.5,0.5", input_mean="0.5,0.5,0.5")))
    # tf2onnx style: NHWC input + Transpose, SAME_UPPER stride-2 conv, VALID conv, back to NHWC,
    # ReduceMean axes [1, 2], MatMul + Add, Softmax; inputs scaled to [-1, 1].
    out.append(dict(
        name="vgg-nhwc", seed=5, size=(40, 40), export="helper", classes=5, nhwc=True,
        pool="reducemean-nhwc", dense="matmul", softmax=True, auto_pads={0: "SAME_UPPER",
                                                                         5: "VALID"},
        trunk=lambda: [PadConv(3, 6, 3, stride=2, pads=(0, 0, 1, 1)), nn.ReLU(),
                       nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Conv2d(8, 8, 3), nn.ReLU()],
        feat_c=8,
        meta=dict(class_names="ADI,BACK,LYM,STR,TUM", input_scale="0.00784313725490196",
                  input_mean="1,1,1", background_classes="BACK, ADI")))
    # Opset 18: ReduceMean axes from a Constant node, Reshape, Gemm transB=0 with alpha, beta;
    # a Dropout in the trunk and an Identity after the dense layer.
    out.append(dict(
        name="vgg-reducemean18", seed=6, size=(32, 32), export="helper", classes=3, opset=18,
        pool="reducemean-18", dense="gemm", transB=0, alpha=0.5, beta=2.0, identity=True,
        trunk=lambda: [nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Dropout(0.3),
                       nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(),
                       nn.MaxPool2d(2)],
        feat_c=8, meta=dict(mpp="0.2522")))
    return out


def expected_layers(net):
    """The th_layer list tileheat must build: BN and a Relu right after a conv fold into it."""
    layers = []
    prev_conv = False
    for m in net.trunk:
        if isinstance(m, (nn.Conv2d, PadConv)):
            c = m.conv if isinstance(m, PadConv) else m
            p = m.pads if isinstance(m, PadConv) else (c.padding * 2)
            layers.append(dict(kind="conv", c_in=c.in_channels, c_out=c.out_channels,
                               k=c.kernel_size, s=c.stride, d=c.dilation, p=p, relu=0, ceil=0,
                               conv=c, bn=None))
            prev_conv = True
            continue
        if isinstance(m, nn.BatchNorm2d):
            layers[-1]["bn"] = m
            continue
        if isinstance(m, nn.ReLU) and prev_conv:
            layers[-1]["relu"] = 1
        elif isinstance(m, nn.ReLU):
            layers.append(dict(kind="relu", c_in=0, c_out=0, k=(1, 1), s=(1, 1), d=(1, 1),
                               p=(0, 0, 0, 0), relu=0, ceil=0))
        elif isinstance(m, nn.MaxPool2d):
            layers.append(dict(kind="maxpool", c_in=0, c_out=0, k=(m.kernel_size,) * 2,
                               s=(m.stride,) * 2, d=(1, 1), p=(m.padding,) * 4, relu=0,
                               ceil=int(m.ceil_mode)))
        if not isinstance(m, nn.Dropout):
            prev_conv = False
    return layers


def folded_conv(layer):
    """A conv layer's weights with its BatchNorm folded in, in float64 from the raw tensors."""
    c, bn = layer["conv"], layer["bn"]
    w = c.weight.detach().double().numpy()
    b = c.bias.detach().double().numpy() if c.bias is not None else np.zeros(w.shape[0])
    s = bn.weight.detach().double().numpy() / np.sqrt(
        bn.running_var.detach().double().numpy() + bn.eps)
    return (w * s[:, None, None, None],
            (b - bn.running_mean.detach().double().numpy()) * s + bn.bias.detach().double().numpy())


# --------------------------------------------------------------------------- tiles, reference

def read_tiles(slide, spots, w, h):
    tiles = []
    for (x, y) in spots:
        rgba = np.asarray(slide.read_region((x, y), 0, (w, h)), dtype=np.float64)
        a = rgba[..., 3:4] / 255.0
        rgb = np.round(rgba[..., :3] * a + 255.0 * (1 - a)).astype(np.uint8)  # over white
        assert (rgba[..., 3] == 255).all(), "tile outside the slide"
        tiles.append(rgb)
    return tiles


def reference(net, meta, rgb):
    """Logits and CAMs in float64: x = (pixel*scale - mean)/std, trunk, GAP, dense."""
    scale = float(meta.get("input_scale", 1 / 255))
    mean = [float(v) for v in meta.get("input_mean", "0,0,0").split(",")]
    std = [float(v) for v in meta.get("input_std", "1,1,1").split(",")]
    x = torch.from_numpy(rgb.astype(np.float64)).permute(2, 0, 1)[None]
    x = (x * scale - torch.tensor(mean, dtype=torch.float64)[None, :, None, None]) / \
        torch.tensor(std, dtype=torch.float64)[None, :, None, None]
    net64 = net.double()
    with torch.no_grad():
        feat = net64.trunk(x)                          # (1, C, fh, fw)
        logits = net64.fc(feat.mean(dim=(2, 3)))[0]    # (n_classes)
        cam = torch.einsum("ck,khw->chw", net64.fc.weight, feat[0])
    net.float()
    return x, feat, logits.numpy(), cam.numpy()


def write_ref(path, spec, layers, blocks, spots, fshape):
    meta = spec["meta"]
    h, w = spec["size"]
    n = spec["classes"]
    names = [s.strip() for s in meta["class_names"].split(",")] if "class_names" in meta else \
        ["class%d" % i for i in range(n)]
    lines = ["tileheat-ref 1", "model %s.onnx" % spec["name"], "slide %s" % SLIDE_REL,
             "input_size %d %d" % (w, h), "graph_size %d %d" % ((0, 0) if spec.get("dynamic")
                                                                else (w, h)),
             "input_nhwc %d" % int(bool(spec.get("nhwc"))), "n_classes %d" % n,
             "feat %d %d %d" % fshape, "graph_softmax %d" % int(bool(spec.get("softmax"))),
             "class_names %s" % ",".join(names),
             "background %s" % ",".join(
                 s.strip() for s in meta.get("background_classes", "").split(",") if s.strip()),
             "input_scale %.17g" % float(meta.get("input_scale", 1 / 255)),
             "input_mean %s" % meta.get("input_mean", "0,0,0").replace(" ", ""),
             "input_std %s" % meta.get("input_std", "1,1,1").replace(" ", ""),
             "mpp %s" % meta.get("mpp", "0"), "n_meta %d" % len(meta)]
    reffile.write(path, lines, meta, layers, spots, blocks)


def build(spec, slide, idx):
    net = randomize(Net(spec["trunk"](), spec["feat_c"], spec["classes"]), spec["seed"])
    if spec["export"] == "torch":
        model = torch_export(net, spec)
    else:
        model = helper_model(net, spec)
    for k, v in spec["meta"].items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    h, w = spec["size"]
    spots = [(x + 17 * idx, y + 11 * idx) for (x, y) in TILE_SPOTS[idx % 2:idx % 2 + 4]]
    blocks = []
    fshape = None
    for t, rgb in enumerate(read_tiles(slide, spots, w, h)):
        x, feat, logits, cam = reference(net, spec["meta"], rgb)
        fshape = tuple(feat.shape[1:])
        # The ONNX file must compute what the module computes (catches writer mistakes).
        xin = x.permute(0, 2, 3, 1) if spec.get("nhwc") else x
        got = run_onnx(model, xin)[0].numpy()
        want = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum() \
            if spec.get("softmax") else logits
        assert np.allclose(got, want, rtol=1e-9, atol=1e-9), (spec["name"], got, want)
        blocks += [("logits.%d" % t, logits), ("cam.%d" % t, cam)]
    wt = net.fc.weight.detach().numpy()
    blocks += [("dense_w", wt), ("dense_b", net.fc.bias.detach().numpy())]
    layers = expected_layers(net)
    for li, layer in enumerate(layers):
        if layer["kind"] == "conv" and layer["bn"] is not None:
            fw, fb = folded_conv(layer)
            blocks += [("weight.%d" % li, fw), ("bias.%d" % li, fb)]
    onnx_path = os.path.join(OUT, spec["name"] + ".onnx")
    if spec.get("opset", 13) <= 17:
        onnx.checker.check_model(model)
    onnx.save(model, onnx_path)
    ref_path = os.path.join(OUT, spec["name"] + ".ref")
    write_ref(ref_path, spec, layers, blocks, spots, fshape)
    return [onnx_path, ref_path]


# --------------------------------------------------------------------------- broken models

def tiny_graph(nodes, inits, name, out_c=3, extra_outputs=()):
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
            for o in ("logits",) + tuple(extra_outputs)]
    g = helper.make_graph(nodes, name, [inp], outs, inits)
    m = helper.make_model(g, producer_name="tileheat-gen-test-models",
                          opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def arr(rng, *shape):
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32))


def named(t, name):
    t.name = name
    return t


def head(x, rng, c, inits):
    """GAP -> Flatten -> Gemm(c -> 3) nodes ending in 'logits'."""
    inits += [named(arr(rng, 3, c), "fc.w"), named(arr(rng, 3), "fc.b")]
    return [helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
            helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
            helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1)]


def conv(name, x, out, k=3, **kw):
    return helper.make_node("Conv", [x, name + ".w", name + ".b"], [out], name=name,
                            kernel_shape=[k, k], pads=[1, 1, 1, 1], **kw)


def broken_models():
    rng = np.random.default_rng(7)
    written = []

    def save(model, name):
        path = os.path.join(OUT, name + ".onnx")
        onnx.save(model, path)
        written.append(path)

    # A weight tensor whose float_data does not match its dims.
    w1 = TensorProto(name="w1", data_type=TensorProto.FLOAT, dims=[8, 3, 3, 3])
    w1.float_data.extend(rng.standard_normal(100).astype(np.float32).tolist())
    inits = [w1, named(arr(rng, 8), "b1")]
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1",
                              kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    save(tiny_graph(nodes + head("c1", rng, 8, inits), inits, "bad-dims"), "bad-dims")
    # raw_data two bytes short.
    w1 = TensorProto(name="w1", data_type=TensorProto.FLOAT, dims=[4, 3, 3, 3])
    w1.raw_data = rng.standard_normal(108).astype("<f4").tobytes()[:-2]
    inits = [w1, named(arr(rng, 4), "b1")]
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1",
                              kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    save(tiny_graph(nodes + head("c1", rng, 4, inits), inits, "bad-rawlen"), "bad-rawlen")
    # A Sigmoid in the trunk.
    inits = [named(arr(rng, 4, 3, 3, 3), "conv1.w"), named(arr(rng, 4), "conv1.b")]
    nodes = [conv("conv1", "input", "c1"),
             helper.make_node("Sigmoid", ["c1"], ["s1"], name="sig1")]
    save(tiny_graph(nodes + head("s1", rng, 4, inits), inits, "bad-sigmoid"), "bad-sigmoid")
    # A ConvTranspose (decoder) in the trunk.
    inits = [named(arr(rng, 4, 3, 3, 3), "conv1.w"), named(arr(rng, 4), "conv1.b"),
             named(arr(rng, 4, 4, 2, 2), "up1.w")]
    nodes = [conv("conv1", "input", "c1"),
             helper.make_node("ConvTranspose", ["c1", "up1.w"], ["u1"], name="up1",
                              kernel_shape=[2, 2], strides=[2, 2])]
    save(tiny_graph(nodes + head("u1", rng, 4, inits), inits, "bad-convtranspose"),
         "bad-convtranspose")
    # A residual branch: relu1's output feeds conv2 and the Add.
    inits = [named(arr(rng, 4, 3, 3, 3), "conv1.w"), named(arr(rng, 4), "conv1.b"),
             named(arr(rng, 4, 4, 3, 3), "conv2.w"), named(arr(rng, 4), "conv2.b")]
    nodes = [conv("conv1", "input", "c1"), helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             conv("conv2", "r1", "c2"), helper.make_node("Add", ["c2", "r1"], ["a1"], name="res")]
    save(tiny_graph(nodes + head("a1", rng, 4, inits), inits, "bad-branch"), "bad-branch")
    # A grouped convolution.
    inits = [named(arr(rng, 4, 3, 3, 3), "conv1.w"), named(arr(rng, 4), "conv1.b"),
             named(arr(rng, 8, 2, 3, 3), "conv2.w"), named(arr(rng, 8), "conv2.b")]
    nodes = [conv("conv1", "input", "c1"), conv("conv2", "c1", "c2", group=2)]
    save(tiny_graph(nodes + head("c2", rng, 8, inits), inits, "bad-group"), "bad-group")
    return written


def cli_model():
    """cli-model.onnx: a 224x224 four-class model with random weights for tests/cli.sh, which
    checks the command line's behaviour (outputs, errors, thread invariance), not accuracy."""
    net = Net([nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
               nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
               nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)], 8, 4)
    randomize(net, 7)
    net.eval()
    model = torch_export(net, dict(size=(224, 224)))
    meta = dict(class_names="background,stroma,cellular,fat", background_classes="background",
                mpp="0.5", source="random weights (tools/gen-test-models.py)")
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    path = os.path.join(OUT, "cli-model.onnx")
    onnx.save(model, path)
    return [path]


def main():
    os.makedirs(OUT, exist_ok=True)
    slide = openslide.OpenSlide(os.path.join(DATA, SLIDE_REL))
    torch.set_grad_enabled(False)
    written = []
    for idx, spec in enumerate(specs()):
        written += build(spec, slide, idx)
    written += broken_models()
    written += cli_model()
    reffile.print_written(written, REPO)


if __name__ == "__main__":
    sys.exit(main())
