#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Generate tileheat's Keras test models, their ONNX twins and PyTorch reference outputs.

No TensorFlow or Keras is needed: the files are written with h5py and zipfile in the layout Keras
itself writes, followed attribute by attribute from Keras's saving code:

  Keras 2 HDF5 (.h5)  keras/saving/legacy/hdf5_format.py (tf.keras 2.11-2.13: save_model_to_hdf5,
                      save_weights_to_hdf5_group, save_subset_weights_to_hdf5_group,
                      save_attributes_to_hdf5_group), keras/engine/functional.py
                      (get_network_config), keras/engine/node.py (Node.serialize) and the
                      layers' get_config. Root attributes keras_version, backend, model_config
                      (JSON, legacy serialization: class_name + config), optional
                      training_config; group model_weights with attributes layer_names, backend,
                      keras_version; one group per entry of model.layers (created in sorted name
                      order) with attribute weight_names ("conv1/kernel:0", ...) and datasets at
                      those relative paths (so .../conv1/conv1/kernel:0); a nested model's group
                      holds all its layers' weights ("vgg19/block1_conv1/kernel:0"); the 2.13
                      writer adds an empty top_level_model_weights group. (Keras 3's
                      keras/src/legacy/saving/legacy_h5_format.py keeps this structure but names
                      weights by variable path, without ":0".)
  Keras 3 (.keras)    keras/src/saving/saving_lib.py (Keras 3.x before weight sharding:
                      _save_model_to_fileobj, _save_state, _save_container_state, H5IOStore,
                      H5Entry), keras/src/saving/serialization_lib.py and
                      keras/src/models/functional.py (get_config, serialize_node): an
                      uncompressed (ZIP_STORED) zip holding metadata.json, config.json and
                      model.weights.h5. In the weights file every saveable gets "<path>/vars"
                      (the model itself "/vars"), layers are addressed by their *class* in snake
                      case, numbered per container in model.layers order ("layers/conv2d",
                      "layers/conv2d_1", ..., a nested model "layers/functional/layers/..."),
                      never by layer name, and a layer's variables are datasets "0", "1", ... in
                      the order trainable + non-trainable (Conv2D/Dense: kernel, bias;
                      BatchNormalization: gamma, beta, moving_mean, moving_variance, gamma only
                      when scale, beta only when center).

Writes tests/data/keras/:
  vgg19-gap.h5       Keras 2.13 HDF5: Functional(input -> nested Functional "vgg19" called with
                     training=False -> GlobalAveragePooling2D -> Dropout -> Dense softmax), the 16
                     convs of VGG19 (2,2,4,4,4, 'same', relu) at widths 4/4/8/8/8, 5 max pools,
                     96x96 input, 4 classes. Attributes as h5py 3 writes them (vlen strings).
  vgg19-gap.keras    Keras 3 .keras zip with the same weights (so the same outputs).
  seq-bn.h5          Keras 2.13 HDF5 Sequential, 64x64: Conv2D + BatchNormalization + Activation,
                     a stride-2 'same' conv (pads 0,0,1,1) + BatchNormalization(scale=False) + ReLU,
                     'valid' MaxPooling2D, SpatialDropout2D, dilation-2 'same' conv, a (3,1)
                     'valid' conv, a 'same' MaxPooling2D(3, 2) (pads 0,0,1,1), Dropout, a 5x5
                     stride-2 'same' conv (pads 2,1,2,2) + Activation, GAP, Dense linear, 5 classes.
  seq-bn.keras       Keras 3 .keras zip with the same weights; its layer names count from 7
                     ("conv2d_7") while the weights paths start at "layers/conv2d".
  functional.h5      tf.keras 2.4-era HDF5 (TF 2.4 with h5py 2.10: fixed-length string attributes,
                     no top_level_model_weights, a training_config): a single-chain Functional with
                     named layers, non-square 64x48 (W x H) input, Conv2D(use_bias=False) + ReLU
                     layer, GAP, Flatten, Dense softmax, 3 classes.
  functional.json    sidecar metadata for functional.h5 (the model file name with its extension
                     replaced by .json; the keys and string values of the ONNX metadata_props
                     tileheat reads: class_names, background_classes, mpp).
  <name>.onnx        the same weights exported with torch.onnx.export (NCHW, BatchNormalization
                     folded by the exporter); TensorFlow's asymmetric 'same' padding is written into
                     the Conv/MaxPool pads attributes after export. vgg19-gap-caffe.onnx has the
                     first conv's input channels reversed and metadata input_scale 1 and
                     input_mean 123.68,116.779,103.939, which is caffe preprocessing of RGB input.
  <name>.ref         what tileheat must find and compute (format below).
  bad-*.h5, bad-*.keras   malformed or unsupported models a loader must reject (see README.md);
                     the .h5 ones use the HDF5 1.10 object format to stay a few KB.

.ref format: the format of tools/gen-test-models.py (text lines "key values...", a line "data",
then little-endian float32 blocks in the order of the "block <name> <count>" lines), with these
keys, in this order:
  tileheat-ref 1
  model <file>          the Keras file the reference is for (relative to tests/data/keras)
  alt_model <file>      0+ lines: other Keras files with identical weights and outputs
  onnx <file>           ONNX twin that must give the same outputs
  keras_format <f>      keras2-h5 | keras3-zip  (of the "model" file)
  keras_version <v>     as the file records it
  keras_class <c>       Functional | Sequential (the top-level model)
  keras_nested <name>   name of a nested model in the chain, or "-"
  preprocess <p>        unit (RGB, pixel / 255, the default for Keras files) | caffe (RGB -> BGR,
                        minus the ImageNet mean [103.939, 116.779, 123.68] in BGR order, no scale)
  channel_order <o>     rgb | bgr: the channel order the network's first conv expects
  slide, input_size W H, graph_size W H, input_nhwc 1 (Keras is channels_last), n_classes,
  feat C H W, graph_softmax 0|1 (Dense activation softmax), class_names, background,
  input_scale, input_mean, input_std  (what th_model must end with: RGB order, so for caffe the
                        means are reversed and a loader that implements caffe by reversing the
                        first conv's input channels holds exactly these), mpp, n_meta and
                        "meta key=value" lines (the sidecar JSON's entries, in file order),
  n_layers and "layer kind c_in c_out kh kw sh sw dh dw pad_t pad_l pad_b pad_r relu ceil" lines
                        (BatchNormalization folded into the conv before it; a ReLU/Activation relu
                        after a conv, or after its BatchNormalization, fused as relu=1; Dropout,
                        SpatialDropout2D, InputLayer and Flatten leave nothing; TF 'same' pads
                        resolved for the fixed input size, extra pixel at bottom/right),
  tile X Y              level-0 corners of the tiles read with openslide-python,
  block lines: logits.<t> (n_classes, pre-softmax), cam.<t> (n_classes, fh, fw; CAM_c =
                        sum_k W[c,k] A_k, bias left out), dense_w (n_classes, feat_c) = the Keras
                        Dense kernel transposed, dense_b (n_classes), and weight.<i> (c_out, c_in,
                        kh, kw) / bias.<i> (c_out) for each conv layer i with a folded
                        BatchNormalization (c_in in the channel order of the input, i.e. reversed
                        for caffe on the first conv).

References are computed by PyTorch in float64 from a torch module built from the weight arrays
(HWIO -> OIHW, TF padding as explicit F.pad), never from the written files. Every written file is
read back by an independent reader below (h5py/zipfile/json only) and run by a numpy NHWC
implementation of the Keras layers, which must match the torch module; every ONNX twin is run by a
small ONNX interpreter and must match too.

Run: /usr/bin/python3 tools/gen-keras-models.py   (needs torch, onnx, h5py, openslide, numpy).
"""
import importlib.util
import io
import json
import os
import re
import sys
import zipfile

import h5py
import numpy as np
import onnx
import openslide
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reffile  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "tests", "data", "keras")

# Tile reading and the slide's location are shared with the ONNX test-model generator.
_spec = importlib.util.spec_from_file_location(
    "gen_test_models", os.path.join(REPO, "tools", "gen-test-models.py"))
gtm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gtm)

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
ZIP_DATE = (2024, 6, 1, 12, 0, 0)  # fixed zip entry times keep reruns byte-identical


# --------------------------------------------------------------------------- model description
# A model is a chain of layer dicts {"cls": Keras class name, "name": ..., config fields...};
# a nested model is {"cls": "Functional", "name": ..., "chain": [...]}. build() fills in shapes
# ("in_shape"/"out_shape" as (h, w, c)) and weights ("w": {short name: float32 array}, in Keras
# creation order).

def inp(name, h, w):
    return dict(cls="InputLayer", name=name, shape=(h, w, 3))


def conv(name, filters, k, strides=1, padding="valid", dilation=1, activation="linear",
         use_bias=True, **extra):
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    return dict(cls="Conv2D", name=name, filters=filters, kernel_size=pair(k),
                strides=pair(strides), padding=padding, dilation_rate=pair(dilation),
                activation=activation, use_bias=use_bias, data_format="channels_last", **extra)


def bn(name, epsilon=1e-3, center=True, scale=True):
    return dict(cls="BatchNormalization", name=name, epsilon=epsilon, center=center, scale=scale,
                momentum=0.99)


def maxpool(name, pool, strides=None, padding="valid"):
    return dict(cls="MaxPooling2D", name=name, pool_size=(pool, pool),
                strides=(strides or pool,) * 2, padding=padding)


def act(name, activation):
    return dict(cls="Activation", name=name, activation=activation)


def relu(name):
    return dict(cls="ReLU", name=name)


def dropout(name, rate, cls="Dropout"):
    return dict(cls=cls, name=name, rate=rate)


def gap(name, keepdims=None):
    return dict(cls="GlobalAveragePooling2D", name=name, keepdims=keepdims)


def flatten(name):
    return dict(cls="Flatten", name=name)


def dense(name, units, activation="linear", use_bias=True):
    return dict(cls="Dense", name=name, units=units, activation=activation, use_bias=use_bias)


def sub(name, chain, **call_kwargs):
    return dict(cls="Functional", name=name, chain=chain, call_kwargs=call_kwargs)


def tf_pads(n, k, s, d, padding):
    """(before, after, out) along one axis, as keras/TensorFlow compute 'same' and 'valid'."""
    eff = (k - 1) * d + 1
    if padding == "valid":
        return 0, 0, (n - eff) // s + 1
    out = -(-n // s)
    total = max((out - 1) * s + eff - n, 0)
    return total // 2, total - total // 2, out


def build(chain, shape, rng):
    """Shapes and random weights (a useful scale; non-trivial BatchNorm statistics)."""
    for L in chain:
        L["in_shape"] = shape
        h, w, c = ((0, 0) + tuple(shape))[-3:] if shape else (0, 0, 0)
        cls = L["cls"]
        if cls == "InputLayer":
            shape = L["shape"]
        elif cls == "Functional":
            shape = build(L["chain"], shape, rng)
        elif cls in ("Conv2D", "Conv2DTranspose"):
            (kh, kw), (sh, sw) = L["kernel_size"], L["strides"]
            dh, dw = L.get("dilation_rate", (1, 1))
            fan_in = kh * kw * c
            kern = (kh, kw, c, L["filters"]) if cls == "Conv2D" else (kh, kw, L["filters"], c)
            L["w"] = {"kernel": (rng.standard_normal(kern) * (2.0 / fan_in) ** 0.5)
                      .astype(np.float32)}
            if L["use_bias"]:
                L["w"]["bias"] = (rng.standard_normal(L["filters"]) * 0.1).astype(np.float32)
            if cls == "Conv2D":
                t, b, oh = tf_pads(h, kh, sh, dh, L["padding"])
                l, r, ow = tf_pads(w, kw, sw, dw, L["padding"])
                L["pads"] = (t, l, b, r)
                shape = (oh, ow, L["filters"])
            else:
                shape = (h * sh, w * sw, L["filters"])
        elif cls == "BatchNormalization":
            L["w"] = {}
            if L["scale"]:
                L["w"]["gamma"] = (0.5 + rng.random(c)).astype(np.float32)
            if L["center"]:
                L["w"]["beta"] = (rng.standard_normal(c) * 0.2).astype(np.float32)
            L["w"]["moving_mean"] = (rng.standard_normal(c) * 0.3).astype(np.float32)
            L["w"]["moving_variance"] = (0.2 + rng.random(c) * 2).astype(np.float32)
        elif cls == "MaxPooling2D":
            (ph, pw), (sh, sw) = L["pool_size"], L["strides"]
            t, b, oh = tf_pads(h, ph, sh, 1, L["padding"])
            l, r, ow = tf_pads(w, pw, sw, 1, L["padding"])
            L["pads"] = (t, l, b, r)
            shape = (oh, ow, c)
        elif cls == "GlobalAveragePooling2D":
            shape = (1, 1, c) if L.get("keepdims") else (c,)
        elif cls == "Flatten":
            shape = (int(np.prod(shape)),)
        elif cls in ("Add", "Activation", "ReLU", "Dropout"):
            pass
        elif cls == "Dense":
            fan = shape[-1]
            L["w"] = {"kernel": (rng.standard_normal((fan, L["units"])) / fan ** 0.5)
                      .astype(np.float32)}
            if L["use_bias"]:
                L["w"]["bias"] = (rng.standard_normal(L["units"]) * 0.1).astype(np.float32)
            shape = shape[:-1] + (L["units"],)
        L["out_shape"] = shape
    return shape


def flat(chain):
    """The chain with nested models expanded and InputLayers dropped."""
    out = []
    for L in chain:
        if L["cls"] == "Functional":
            out += flat(L["chain"])
        elif L["cls"] != "InputLayer":
            out.append(L)
    return out


# --------------------------------------------------------------------------- torch reference

class NegInfPad(nn.Module):
    """Padding for TF 'same' max pooling: padded cells never win."""

    def __init__(self, pads):
        super().__init__()
        self.pads = pads

    def forward(self, x):
        t, l, b, r = self.pads
        return F.pad(x, (l, r, t, b), value=float("-inf"))


def torch_pad(n, k, s, d, padding):
    """TF padding written the way TensorFlow's conv2d documentation states it."""
    if padding == "valid":
        return 0, 0
    eff = (k - 1) * d + 1
    along = max(eff - s, 0) if n % s == 0 else max(eff - n % s, 0)
    return along // 2, along - along // 2


class TorchNet(nn.Module):
    """trunk -> global average pooling -> dense (-> softmax when asked); NCHW. With
    pads=False, for export, each conv and pool gets the larger of its two pads on both sides (the
    exporter's symmetric padding) and export_onnx writes the real pads afterwards."""

    def __init__(self, chain, pads=True):
        super().__init__()
        mods, self.conv_mods = [], []
        for L in flat(chain):
            h, w, c = L["in_shape"] if len(L["in_shape"]) == 3 else (0, 0, 0)
            cls = L["cls"]
            if cls == "Conv2D":
                (kh, kw), (sh, sw), (dh, dw) = L["kernel_size"], L["strides"], L["dilation_rate"]
                t, b = torch_pad(h, kh, sh, dh, L["padding"])
                l, r = torch_pad(w, kw, sw, dw, L["padding"])
                if pads and (t or b or l or r):
                    mods.append(nn.ZeroPad2d((l, r, t, b)))
                sym = (0, 0) if pads else (max(t, b), max(l, r))
                m = nn.Conv2d(c, L["filters"], (kh, kw), (sh, sw), sym, (dh, dw),
                              bias=L["use_bias"])
                with torch.no_grad():
                    m.weight.copy_(torch.from_numpy(L["w"]["kernel"].transpose(3, 2, 0, 1).copy()))
                    if L["use_bias"]:
                        m.bias.copy_(torch.from_numpy(L["w"]["bias"]))
                mods.append(m)
                self.conv_mods.append(m)
                if L["activation"] == "relu":
                    mods.append(nn.ReLU())
            elif cls == "BatchNormalization":
                m = nn.BatchNorm2d(c, eps=L["epsilon"])
                W = L["w"]
                with torch.no_grad():
                    m.weight.copy_(torch.from_numpy(W.get("gamma", np.ones(c, np.float32))))
                    m.bias.copy_(torch.from_numpy(W.get("beta", np.zeros(c, np.float32))))
                    m.running_mean.copy_(torch.from_numpy(W["moving_mean"]))
                    m.running_var.copy_(torch.from_numpy(W["moving_variance"]))
                mods.append(m)
            elif cls in ("ReLU",) or (cls == "Activation" and L["activation"] == "relu"):
                mods.append(nn.ReLU())
            elif cls == "MaxPooling2D":
                (ph, pw), (sh, sw) = L["pool_size"], L["strides"]
                t, b = torch_pad(h, ph, sh, 1, L["padding"])
                l, r = torch_pad(w, pw, sw, 1, L["padding"])
                if pads and (t or b or l or r):
                    mods.append(NegInfPad((t, l, b, r)))
                sym = (0, 0) if pads else (max(t, b), max(l, r))
                m = nn.MaxPool2d((ph, pw), (sh, sw), sym)
                mods.append(m)
            elif cls == "Dense":
                self.fc = nn.Linear(L["w"]["kernel"].shape[0], L["units"])
                with torch.no_grad():
                    self.fc.weight.copy_(torch.from_numpy(L["w"]["kernel"].T.copy()))
                    self.fc.bias.copy_(torch.from_numpy(L["w"]["bias"]))
                self.softmax = L["activation"] == "softmax"
            elif cls in ("Dropout", "SpatialDropout2D", "GlobalAveragePooling2D", "Flatten"):
                continue
            else:
                raise ValueError(cls)
        self.trunk = nn.Sequential(*mods)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.eval()

    def forward(self, x):
        y = self.fc(self.flat(self.pool(self.trunk(x))))
        return torch.softmax(y, dim=1) if self.softmax else y


def preprocess(rgb, mode):
    """(1, 3, h, w) float64 network input from an (h, w, 3) uint8 tile."""
    x = rgb.astype(np.float64)
    if mode == "caffe":
        x = x[..., ::-1] - np.array(CAFFE_MEAN_BGR)
    else:
        x = x / 255.0
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None]


def reference(net, x):
    """Features, pre-softmax logits and CAMs in float64."""
    net64 = net.double()
    with torch.no_grad():
        feat = net64.trunk(x)                        # (1, C, fh, fw)
        logits = net64.fc(feat.mean(dim=(2, 3)))[0]  # (n_classes)
        cam = torch.einsum("ck,khw->chw", net64.fc.weight, feat[0])
    net.float()
    return feat[0].numpy(), logits.numpy(), cam.numpy()


def expected_layers(chain):
    """The th_layer list a loader must build, with the BN-folded conv weights (float64)."""
    layers = []
    prev = None  # "conv" while a ReLU may still fuse into the last conv
    for L in flat(chain):
        cls = L["cls"]
        if cls == "Conv2D":
            ci, co = L["in_shape"][2], L["filters"]
            layers.append(dict(kind="conv", c_in=ci, c_out=co, k=L["kernel_size"],
                               s=L["strides"], d=L["dilation_rate"], p=L["pads"],
                               relu=int(L["activation"] == "relu"), ceil=0, src=L, bn=None))
            prev = None if L["activation"] == "relu" else "conv"
        elif cls == "BatchNormalization":
            assert prev == "conv", "BatchNormalization must follow a linear conv"
            layers[-1]["bn"] = L
        elif cls == "ReLU" or (cls == "Activation" and L["activation"] == "relu"):
            if prev == "conv":
                layers[-1]["relu"] = 1
            else:
                layers.append(dict(kind="relu", c_in=0, c_out=0, k=(1, 1), s=(1, 1),
                                   d=(1, 1), p=(0, 0, 0, 0), relu=0, ceil=0))
            prev = None
        elif cls == "MaxPooling2D":
            layers.append(dict(kind="maxpool", c_in=0, c_out=0, k=L["pool_size"],
                               s=L["strides"], d=(1, 1), p=L["pads"], relu=0, ceil=0))
            prev = None
        elif cls in ("GlobalAveragePooling2D", "Dense"):
            break
    return layers


def folded(layer, caffe_first):
    """OIHW weight and bias of a conv layer with its BatchNorm folded, float64."""
    L, B = layer["src"], layer["bn"]
    w = L["w"]["kernel"].astype(np.float64).transpose(3, 2, 0, 1)
    b = L["w"]["bias"].astype(np.float64) if "bias" in L["w"] else np.zeros(w.shape[0])
    c = w.shape[0]
    g = B["w"].get("gamma", np.ones(c, np.float32)).astype(np.float64)
    beta = B["w"].get("beta", np.zeros(c, np.float32)).astype(np.float64)
    s = g / np.sqrt(B["w"]["moving_variance"].astype(np.float64) + B["epsilon"])
    w = w * s[:, None, None, None]
    if caffe_first:
        w = w[:, ::-1]
    return w, (b - B["w"]["moving_mean"].astype(np.float64)) * s + beta


# --------------------------------------------------------------------------- Keras 2 HDF5 writer

def k2_init(name, cfg=None):
    return {"class_name": name, "config": cfg if cfg is not None else {}}


def conv_config(L, init):
    """A Conv2D's config, the same in Keras 2 and 3 but for how an initializer is written."""
    return {"filters": L["filters"], "kernel_size": list(L["kernel_size"]),
            "strides": list(L["strides"]), "padding": L["padding"],
            "data_format": L["data_format"], "dilation_rate": list(L["dilation_rate"]),
            "groups": 1, "activation": L["activation"], "use_bias": L["use_bias"],
            "kernel_initializer": init("GlorotUniform", {"seed": None}),
            "bias_initializer": init("Zeros"), "kernel_regularizer": None,
            "bias_regularizer": None, "activity_regularizer": None,
            "kernel_constraint": None, "bias_constraint": None}


def dense_config(L, init):
    """A Dense layer's config, likewise."""
    return {"units": L["units"], "activation": L["activation"], "use_bias": L["use_bias"],
            "kernel_initializer": init("GlorotUniform", {"seed": None}),
            "bias_initializer": init("Zeros"), "kernel_regularizer": None,
            "bias_regularizer": None, "activity_regularizer": None,
            "kernel_constraint": None, "bias_constraint": None}


def k2_layer_config(L, first_shape=None):
    """Layer.get_config() as tf.keras 2.x returns it under use_legacy_config."""
    cls = L["cls"]
    base = {"name": L["name"], "trainable": True}
    if first_shape is not None:
        base["batch_input_shape"] = [None] + list(first_shape)
    base["dtype"] = "float32"
    if cls == "InputLayer":
        return {"batch_input_shape": [None] + list(L["shape"]), "dtype": "float32",
                "sparse": False, "ragged": False, "name": L["name"]}
    if cls in ("Conv2D", "Conv2DTranspose"):
        cfg = conv_config(L, k2_init)
        if cls == "Conv2DTranspose":
            del cfg["groups"]
            cfg["output_padding"] = None
    elif cls == "BatchNormalization":
        cfg = {"axis": [3], "momentum": L["momentum"], "epsilon": L["epsilon"],
               "center": L["center"], "scale": L["scale"],
               "beta_initializer": k2_init("Zeros"), "gamma_initializer": k2_init("Ones"),
               "moving_mean_initializer": k2_init("Zeros"),
               "moving_variance_initializer": k2_init("Ones"), "beta_regularizer": None,
               "gamma_regularizer": None, "beta_constraint": None, "gamma_constraint": None}
    elif cls == "MaxPooling2D":
        cfg = {"pool_size": list(L["pool_size"]), "padding": L["padding"],
               "strides": list(L["strides"]), "data_format": "channels_last"}
    elif cls == "Activation":
        cfg = {"activation": L["activation"]}
    elif cls == "ReLU":
        cfg = {"max_value": None, "negative_slope": 0.0, "threshold": 0.0}
    elif cls in ("Dropout", "SpatialDropout2D"):
        cfg = {"rate": L["rate"], "noise_shape": None, "seed": None}
    elif cls == "GlobalAveragePooling2D":
        cfg = {"data_format": "channels_last"}
        if L.get("keepdims") is not None:
            cfg["keepdims"] = L["keepdims"]
    elif cls == "Flatten":
        cfg = {"data_format": "channels_last"}
    elif cls == "Dense":
        cfg = dense_config(L, k2_init)
    elif cls == "Add":
        cfg = {}
    else:
        raise ValueError(cls)
    return dict(base, **cfg)


def k2_functional_config(name, chain):
    """functional.get_network_config: layers with inbound_nodes, input/output coordinates."""
    layers, prev = [], None
    for L in chain:
        entry = {"class_name": L["cls"]}
        if L["cls"] == "Functional":
            entry["config"] = k2_functional_config(L["name"], L["chain"])
        else:
            entry["config"] = k2_layer_config(L)
        entry["name"] = L["name"]
        nodes = []
        if L["cls"] != "InputLayer":
            srcs = L.get("inbound", [prev["name"]])
            kwargs = L.get("call_kwargs", {})
            # A nested Functional keeps its own first node, so calls to it are node 1.
            node = [[s, 1 if by_name(chain, s)["cls"] == "Functional" else 0, 0, kwargs]
                    for s in srcs]
            nodes = [node]
        entry["inbound_nodes"] = nodes
        layers.append(entry)
        prev = L
    last = chain[-1]
    return {"name": name, "layers": layers,
            "input_layers": [[chain[0]["name"], 0, 0]],
            "output_layers": [[last["name"], 1 if last["cls"] == "Functional" else 0, 0]]}


def by_name(chain, name):
    return next(L for L in chain if L["name"] == name)


def k2_sequential_config(name, chain):
    """Sequential.get_config: the auto InputLayer first, then each layer's config; the first
    real layer carries batch_input_shape (it was given input_shape)."""
    layers = [{"class_name": "InputLayer", "config": k2_layer_config(chain[0])}]
    for i, L in enumerate(chain[1:]):
        cfg = k2_layer_config(L, first_shape=chain[0]["shape"] if i == 0 else None)
        layers.append({"class_name": L["cls"], "config": cfg})
    return {"name": name, "layers": layers}


def weight_list(L):
    """(name, array) in _legacy_weights order: trainable then non-trainable."""
    if L["cls"] == "Functional":
        subs = [S for S in L["chain"] if "w" in S]
        train = [(S, k) for S in subs for k in S["w"] if k not in ("moving_mean",
                                                                   "moving_variance")]
        fixed = [(S, k) for S in subs for k in S["w"] if k in ("moving_mean", "moving_variance")]
        return [("%s/%s:0" % (S["name"], k), S["w"][k]) for S, k in train + fixed]
    return [("%s/%s:0" % (L["name"], k), v) for k, v in L.get("w", {}).items()]


def h5_strings(values, fixed):
    """A list of bytes the way h5py stores it: vlen strings (h5py 3), or a fixed-length 'S'
    array when emulating h5py 2.10 (TF <= 2.4)."""
    if fixed:
        return np.array(values, dtype="S%d" % max([len(v) for v in values] + [1])) \
            if values else np.zeros((0,), np.float64)
    return values


def write_keras2(path, model, style):
    """save_model_to_hdf5 for model = dict(cls, name, chain, ...); style "h5py3" (Keras 2.13)
    or "h5py2" (TF 2.4 with h5py 2.10: fixed-length strings, no top_level_model_weights)."""
    fixed = style == "h5py2"
    chain = model["chain"]
    if model["cls"] == "Sequential":
        cfg = k2_sequential_config(model["model_name"], chain)
        layers = chain[1:]  # Sequential.layers omits the auto-generated InputLayer
    else:
        cfg = k2_functional_config(model["model_name"], chain)
        layers = chain
    meta = {"keras_version": model["keras_version"], "backend": "tensorflow",
            "model_config": {"class_name": model["cls"], "config": cfg}}
    if model.get("training_config"):
        meta["training_config"] = model["training_config"]
    with h5_create(path, model.get("latest")) as f:
        for k, v in meta.items():
            if isinstance(v, (dict, list, tuple)):
                v = json.dumps(v).encode("utf8")
                f.attrs[k] = np.bytes_(v) if fixed else v
            else:
                f.attrs[k] = v
        mw = new_group(f, "model_weights")
        write_weight_groups(mw, layers, fixed, model.get("drop"), top=not fixed)


def write_weight_groups(mw, layers, fixed, drop=None, top=True):
    """save_weights_to_hdf5_group: attributes, then one group per layer in name order."""
    mw.attrs["layer_names"] = h5_strings([L["name"].encode("utf8") for L in layers], fixed)
    mw.attrs["backend"] = np.bytes_(b"tensorflow") if fixed else b"tensorflow"
    ver = mw.file.attrs["keras_version"] if "keras_version" in mw.file.attrs else "2.13.1"
    ver = ver.decode() if isinstance(ver, bytes) else ver
    mw.attrs["keras_version"] = np.bytes_(ver.encode()) if fixed else ver.encode("utf8")
    for L in sorted(layers, key=lambda x: x["name"]):
        write_subset(new_group(mw, L["name"]), weight_list(L), fixed, drop)
    if top:
        write_subset(new_group(mw, "top_level_model_weights"), [], fixed, drop)


def write_subset(g, weights, fixed, drop=None):
    """save_subset_weights_to_hdf5_group (drop: a dataset left out, for a broken file)."""
    g.attrs["weight_names"] = h5_strings([n.encode("utf8") for n, _ in weights], fixed)
    for name, val in weights:
        if name == drop:
            continue
        if g.file.libver[0] == "earliest":  # as Keras does: h5py makes the "conv1/" group
            d = g.create_dataset(name.encode("utf8"), val.shape, dtype=val.dtype,
                                 track_times=False)
        else:
            parent = g
            for part in name.split("/")[:-1]:
                parent = parent[part] if part in parent else new_group(parent, part)
            d = parent.create_dataset(name.split("/")[-1], val.shape, dtype=val.dtype,
                                      track_times=False)
        d[:] = val


def h5_create(path, latest=False):
    """h5py.File(path, "w") as Keras opens it (HDF5 1.8 object format); latest=True writes
    HDF5 1.10+ object headers and compact groups without timestamps, which keeps the broken
    models a few KB and reproducible (libhdf5 reads either format the same way)."""
    if not latest:
        return h5py.File(path, "w", libver="earliest")
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    return h5py.File(h5py.h5f.create(path.encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl))


def new_group(parent, name):
    if parent.file.libver[0] == "earliest":
        return parent.create_group(name)
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    return h5py.Group(h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl))


# --------------------------------------------------------------------------- Keras 3 writer

def snake(name):
    """keras.src.utils.naming.to_snake_case."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def k3_obj(module, cls, cfg, registered=None, **extra):
    return dict({"module": module, "class_name": cls, "config": cfg,
                 "registered_name": registered}, **extra)


K3_DTYPE = k3_obj("keras", "DTypePolicy", {"name": "float32"})


def k3_init(cls, cfg=None):
    return k3_obj("keras.initializers", cls, cfg if cfg is not None else {})


def k3_shape(shape):
    return [None] + list(shape)


def k3_layer(L):
    """serialize_keras_object(layer) for a built-in layer in Keras 3."""
    cls = L["cls"]
    if cls == "InputLayer":
        cfg = {"batch_shape": k3_shape(L["shape"]), "dtype": "float32", "sparse": False,
               "name": L["k3_name"]}
        return k3_obj("keras.layers", cls, cfg)
    base = {"name": L.get("k3_name", L["name"]), "trainable": True, "dtype": K3_DTYPE}
    if cls == "Conv2D":
        cfg = conv_config(L, k3_init)
    elif cls == "BatchNormalization":
        cfg = {"axis": -1, "momentum": L["momentum"], "epsilon": L["epsilon"],
               "center": L["center"], "scale": L["scale"],
               "beta_initializer": k3_init("Zeros"), "gamma_initializer": k3_init("Ones"),
               "moving_mean_initializer": k3_init("Zeros"),
               "moving_variance_initializer": k3_init("Ones"), "beta_regularizer": None,
               "gamma_regularizer": None, "beta_constraint": None, "gamma_constraint": None,
               "synchronized": False}
    elif cls == "MaxPooling2D":
        cfg = {"pool_size": list(L["pool_size"]), "padding": L["padding"],
               "strides": list(L["strides"]), "data_format": "channels_last"}
    elif cls == "Activation":
        cfg = {"activation": L["activation"]}
    elif cls == "ReLU":
        cfg = {"max_value": None, "negative_slope": 0.0, "threshold": 0.0}
    elif cls == "Dropout":
        cfg = {"rate": L["rate"], "seed": None, "noise_shape": None}
    elif cls == "SpatialDropout2D":
        cfg = {"rate": L["rate"], "seed": None, "data_format": "channels_last"}
    elif cls == "GlobalAveragePooling2D":
        cfg = {"data_format": "channels_last", "keepdims": bool(L.get("keepdims"))}
    elif cls == "Flatten":
        cfg = {"data_format": "channels_last"}
    elif cls == "Dense":
        cfg = dense_config(L, k3_init)
    else:
        raise ValueError(cls)
    return k3_obj("keras.layers", cls, dict(base, **cfg),
                  build_config={"input_shape": k3_shape(L["in_shape"])})


def k3_tensor(shape, history):
    return {"class_name": "__keras_tensor__",
            "config": {"shape": k3_shape(shape), "dtype": "float32", "keras_history": history}}


def k3_functional(name, chain):
    """Functional.get_config + serialize_node (single-tensor inputs/outputs are not wrapped in a
    list, as in Keras >= 3.3). A tensor coming out of a nested model is node 0 of it in
    keras_history (serialize_node skips nodes outside the model), but node 1 in output_layers
    (get_config keeps a Functional's own first node)."""
    layers, prev = [], None
    for L in chain:
        if L["cls"] == "Functional":
            entry = k3_obj("keras.src.models.functional", "Functional",
                           k3_functional(L["name"], L["chain"]), "Functional",
                           build_config={"input_shape": k3_shape(L["in_shape"])})
        else:
            entry = k3_layer(L)
        name_l = L.get("k3_name", L["name"])
        entry["name"] = name_l
        nodes = []
        if L["cls"] != "InputLayer":
            src = prev.get("k3_name", prev["name"])
            nodes = [{"args": [k3_tensor(prev["out_shape"], [src, 0, 0])],
                      "kwargs": dict(L.get("call_kwargs", {}))}]
        entry["inbound_nodes"] = nodes
        layers.append(entry)
        prev = L
    last = chain[-1]
    return {"name": name, "trainable": True, "layers": layers,
            "input_layers": [chain[0]["k3_name"], 0, 0],
            "output_layers": [last["name"], 1 if last["cls"] == "Functional" else 0, 0]}


def k3_config(model):
    chain = model["chain"]
    if model["cls"] == "Sequential":
        cfg = {"name": model["model_name"], "trainable": True, "dtype": K3_DTYPE,
               "layers": [k3_layer(L) for L in chain],
               "build_input_shape": k3_shape(chain[0]["shape"])}
        return k3_obj("keras", "Sequential", cfg,
                      build_config={"input_shape": k3_shape(chain[0]["shape"])})
    return k3_obj("keras.src.models.functional", "Functional",
                  k3_functional(model["model_name"], chain), "Functional",
                  build_config={"input_shape": k3_shape(chain[0]["shape"])})


def k3_vars(L):
    """Layer.save_own_variables order: trainable + non-trainable, as built."""
    return [L["w"][k] for k in ("kernel", "bias", "gamma", "beta", "moving_mean",
                                "moving_variance") if k in L.get("w", {})]


def k3_save_state(h5, layers, inner, drop=None):
    """_save_state over model.layers: "<inner>/<snake class>[_n]/vars/<i>"."""
    used = {}
    for L in layers:
        name = snake(L["cls"])
        if name in used:
            used[name] += 1
            name = "%s_%d" % (name, used[name])
        else:
            used[name] = 0
        path = "%s/%s" % (inner, name) if inner else name
        g = h5.create_group(path).create_group("vars")
        for i, v in enumerate(k3_vars(L)):
            if drop == "%s/vars/%d" % (path, i):
                continue
            g.create_dataset(str(i), data=v, track_times=False)
        if L["cls"] == "Functional":
            k3_save_state(h5, L["chain"], path + "/layers", drop)


def k3_name_inputs(chain, count):
    """Keras 3 names Inputs "input_layer", "input_layer_1", ... in creation order (the nested
    application's first)."""
    for L in chain:
        if L["cls"] == "Functional":
            count = k3_name_inputs(L["chain"], count)
    for L in chain:
        if L["cls"] == "InputLayer":
            L["k3_name"] = "input_layer" + ("_%d" % count if count else "")
            count += 1
    return count


def keras3_bytes(model, files=("metadata.json", "config.json", "model.weights.h5"), drop=None):
    """The .keras zip _save_model_to_fileobj writes (metadata.json, config.json, weights)."""
    k3_name_inputs(model["chain"], 0)
    if model.get("k3_name_offset"):
        # Auto names that keep counting from an earlier model in the session ("conv2d_7"),
        # while the weights paths restart at "conv2d": a loader must not look weights up by name.
        used = {}
        for L in model["chain"][1:]:
            n = used[L["cls"]] = used.get(L["cls"], -1) + 1
            L["k3_name"] = "%s_%d" % (snake(L["cls"]), n + model["k3_name_offset"])
    config_json = json.dumps(k3_config(model))
    metadata_json = json.dumps({"keras_version": "3.5.0", "date_saved": "2024-06-01@12:00:00"})
    wbuf = io.BytesIO()
    with h5py.File(wbuf, "w") as h5:
        h5.create_group("vars")  # the model's own (empty) variables
        layers = model["chain"][1:] if model["cls"] == "Sequential" else model["chain"]
        k3_save_state(h5, layers, "layers", drop)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in (("metadata.json", metadata_json.encode()),
                           ("config.json", config_json.encode()),
                           ("model.weights.h5", wbuf.getvalue())):
            if name in files:
                zf.writestr(zipfile.ZipInfo(name, ZIP_DATE), data)
    return out.getvalue()


# --------------------------------------------------------------------------- independent readers
# These use nothing above: they read a file the way a loader would and return a flat list of
# ops ("conv", "bn", "relu", "maxpool", "gap", "dense") with numpy weights.

def attr_str(v):
    return v.decode("utf8") if isinstance(v, bytes) else str(v)


def attr_list(g, name):
    return [attr_str(v) for v in g.attrs[name]] if name in g.attrs else []


def op_from_config(cls, cfg, weights):
    """One Keras layer config (+ {short name: array}) as a generic op, or None if ignored."""
    if cls in ("InputLayer", "Dropout", "SpatialDropout2D", "Flatten"):
        return None
    if cls == "Conv2D":
        assert cfg["data_format"] == "channels_last" and cfg.get("groups", 1) == 1
        return dict(op="conv", k=cfg["kernel_size"], s=cfg["strides"], d=cfg["dilation_rate"],
                    padding=cfg["padding"], act=cfg["activation"], kernel=weights["kernel"],
                    bias=weights.get("bias"))
    if cls == "BatchNormalization":
        return dict(op="bn", eps=cfg["epsilon"], gamma=weights.get("gamma"),
                    beta=weights.get("beta"), mean=weights["moving_mean"],
                    var=weights["moving_variance"])
    if cls == "Activation" and cfg["activation"] == "relu" or cls == "ReLU":
        return dict(op="relu")
    if cls == "MaxPooling2D":
        return dict(op="maxpool", k=cfg["pool_size"], s=cfg["strides"] or cfg["pool_size"],
                    padding=cfg["padding"])
    if cls == "GlobalAveragePooling2D":
        return dict(op="gap")
    if cls == "Dense":
        return dict(op="dense", act=cfg["activation"], kernel=weights["kernel"],
                    bias=weights.get("bias"))
    raise ValueError("unsupported layer " + cls)


def h5_chain(entries, functional):
    """Layer entries of a Keras 2 config in call order, checking a Functional is one chain."""
    if not functional:
        return [(e["class_name"], e["config"]) for e in entries]
    prev = None
    for e in entries:
        nodes = e["inbound_nodes"]
        if e["class_name"] == "InputLayer":
            assert not nodes and prev is None
        else:
            assert len(nodes) == 1 and len(nodes[0]) == 1 and nodes[0][0][0] == prev, e["name"]
        prev = e["name"]
    return [(e["class_name"], e) for e in entries]


def read_keras2(path):
    with h5py.File(path, "r") as f:
        cfg = json.loads(attr_str(f.attrs["model_config"]))
        mw = f["model_weights"]
        ops = []

        def walk(model_cfg, group, names):
            functional = model_cfg["class_name"] != "Sequential"
            for cls, e in h5_chain(model_cfg["config"]["layers"], functional):
                lcfg = e["config"] if functional else e
                name = e["name"]
                if cls == "Functional":
                    g = group[name]
                    walk(e, g, attr_list(g, "weight_names"))
                    continue
                if names is None:  # top level: the layer's own group
                    g = group[name] if name in group else None
                    wn = attr_list(g, "weight_names") if g is not None else []
                    w = {n.split("/")[-1].split(":")[0]: np.array(g[n]) for n in wn}
                else:  # inside a nested model's group
                    w = {n.split("/")[-1].split(":")[0]: np.array(group[n]) for n in names
                         if n.rsplit("/", 1)[0] == name}
                op = op_from_config(cls, lcfg, w)
                if op:
                    ops.append(op)

        walk(cfg, mw, None)
        return ops, cfg


def read_keras3(path):
    with zipfile.ZipFile(path) as zf:
        cfg = json.loads(zf.read("config.json"))
        h5 = h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r")
    ops = []

    def walk(obj, inner):
        seq = obj["class_name"] == "Sequential"
        entries = obj["config"]["layers"]
        used = {}
        prev = None
        for e in entries:
            cls = e["class_name"]
            if not seq:  # one chain: each layer takes the previous one's output
                nodes = e["inbound_nodes"]
                if cls != "InputLayer":
                    hist = nodes[0]["args"][0]["config"]["keras_history"]
                    assert len(nodes) == 1 and hist[0] == prev, e["name"]
                prev = e["name"]
            if seq and cls == "InputLayer":
                continue  # not in Sequential.layers, so no weights path
            key = snake(cls)
            if key in used:
                used[key] += 1
                key = "%s_%d" % (key, used[key])
            else:
                used[key] = 0
            path = "%s/%s" % (inner, key)
            if cls == "Functional":
                walk(e, path + "/layers")
                continue
            vars_ = h5[path]["vars"]
            vals = [np.array(vars_[str(i)]) for i in range(len(vars_))]
            c = e["config"]
            if cls in ("Conv2D", "Dense"):
                names = ["kernel"] + (["bias"] if c["use_bias"] else [])
            elif cls == "BatchNormalization":
                names = (["gamma"] if c["scale"] else []) + (["beta"] if c["center"] else []) + \
                    ["moving_mean", "moving_variance"]
            else:
                names = []
            assert len(names) == len(vals), path
            op = op_from_config(cls, c, dict(zip(names, vals)))
            if op:
                ops.append(op)

    walk(cfg, "layers")
    h5.close()
    return ops, cfg


def np_same(n, k, s, d, padding):
    eff = (k - 1) * d + 1
    if padding == "valid":
        return 0, 0
    out = (n + s - 1) // s
    total = max((out - 1) * s + eff - n, 0)
    return total // 2, total - total // 2


def np_forward(ops, x):
    """Keras semantics in numpy, NHWC float64: returns (feature map (h, w, c), logits)."""
    for o in ops:
        if o["op"] == "conv":
            (kh, kw), (sh, sw), (dh, dw) = o["k"], o["s"], o["d"]
            t, b = np_same(x.shape[0], kh, sh, dh, o["padding"])
            l, r = np_same(x.shape[1], kw, sw, dw, o["padding"])
            xp = np.pad(x, ((t, b), (l, r), (0, 0)))
            oh = (xp.shape[0] - (kh - 1) * dh - 1) // sh + 1
            ow = (xp.shape[1] - (kw - 1) * dw - 1) // sw + 1
            W = o["kernel"].astype(np.float64)  # (kh, kw, c_in, c_out)
            y = np.zeros((oh, ow, W.shape[3]))
            for i in range(kh):
                for j in range(kw):
                    win = xp[i * dh:i * dh + (oh - 1) * sh + 1:sh,
                             j * dw:j * dw + (ow - 1) * sw + 1:sw]
                    y += win @ W[i, j]
            if o["bias"] is not None:
                y += o["bias"]
            x = np.maximum(y, 0) if o["act"] == "relu" else y
            assert o["act"] in ("relu", "linear")
        elif o["op"] == "bn":
            c = x.shape[2]
            g = o["gamma"] if o["gamma"] is not None else np.ones(c)
            be = o["beta"] if o["beta"] is not None else np.zeros(c)
            x = (x - o["mean"]) / np.sqrt(o["var"].astype(np.float64) + o["eps"]) * g + be
        elif o["op"] == "relu":
            x = np.maximum(x, 0)
        elif o["op"] == "maxpool":
            (kh, kw), (sh, sw) = o["k"], o["s"]
            t, b = np_same(x.shape[0], kh, sh, 1, o["padding"])
            l, r = np_same(x.shape[1], kw, sw, 1, o["padding"])
            xp = np.pad(x, ((t, b), (l, r), (0, 0)), constant_values=-np.inf)
            oh = (xp.shape[0] - kh) // sh + 1
            ow = (xp.shape[1] - kw) // sw + 1
            y = np.full((oh, ow, x.shape[2]), -np.inf)
            for i in range(kh):
                for j in range(kw):
                    y = np.maximum(y, xp[i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw])
            x = y
        elif o["op"] == "gap":
            feat = x
            x = x.mean(axis=(0, 1))
        elif o["op"] == "dense":
            x = x @ o["kernel"].astype(np.float64) + o["bias"]
    return feat, x


# --------------------------------------------------------------------------- ONNX twin

def export_onnx(model, caffe=False):
    """torch.onnx.export of the same weights; the exporter cannot write asymmetric pads, so the
    trunk is exported with symmetric pads and each Conv/MaxPool gets its real pads afterwards."""
    chain = model["chain"]
    net = TorchNet(chain, pads=False)
    if caffe:
        with torch.no_grad():
            net.conv_mods[0].weight.copy_(net.conv_mods[0].weight.flip(1))
    h, w, _ = chain[0]["shape"]
    f = io.BytesIO()
    torch.onnx.export(net, torch.zeros(1, 3, h, w), f, input_names=["input"],
                      output_names=["logits"], opset_version=13, do_constant_folding=True)
    m = onnx.load_from_string(f.getvalue())
    del m.graph.value_info[:]  # shapes inferred without the pads
    pads = {"Conv": [L["pads"] for L in flat(chain) if L["cls"] == "Conv2D"],
            "MaxPool": [L["pads"] for L in flat(chain) if L["cls"] == "MaxPooling2D"]}
    for node in m.graph.node:
        if node.op_type in pads:
            t, l, b, r = pads[node.op_type].pop(0)
            for a in node.attribute:
                if a.name == "pads":
                    a.ints[:] = [t, l, b, r]
    assert not pads["Conv"] and not pads["MaxPool"]
    meta = dict(model.get("sidecar", {}))
    if caffe:
        meta.update(input_scale="1", input_mean="123.68,116.779,103.939", input_std="1,1,1")
    for k, v in meta.items():
        m.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(m)
    return m


def run_onnx(m, x):
    """The ops torch exported for these models, with explicit (asymmetric) pads."""
    g = m.graph
    env = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()).double()
           for t in g.initializer}
    env[g.input[0].name] = x
    for n in g.node:
        a = {at.name: helper.get_attribute_value(at) for at in n.attribute}
        i = [env[k] for k in n.input if k]
        op = n.op_type
        if op in ("Conv", "MaxPool"):
            t, l, b, r = a.get("pads", [0, 0, 0, 0])
            fill = 0.0 if op == "Conv" else float("-inf")
            xp = F.pad(i[0], (l, r, t, b), value=fill)
            if op == "Conv":
                y = F.conv2d(xp, i[1], i[2] if len(i) > 2 else None, a["strides"], 0,
                             a["dilations"])
            else:
                assert not a.get("ceil_mode")
                y = F.max_pool2d(xp, a["kernel_shape"], a["strides"])
        elif op == "Relu":
            y = F.relu(i[0])
        elif op == "GlobalAveragePool":
            y = i[0].mean(dim=(2, 3), keepdim=True)
        elif op == "Flatten":
            y = i[0].reshape(i[0].shape[0], -1)
        elif op == "Gemm":
            assert a.get("transB") == 1
            y = i[0] @ i[1].T + i[2]
        elif op == "Softmax":
            y = torch.softmax(i[0], dim=a["axis"])
        else:
            raise ValueError(op)
        env[n.output[0]] = y
    return env[g.output[0].name]


# --------------------------------------------------------------------------- the models

def vgg19_gap():
    """VGG19(include_top=False) at widths 4/4/8/8/8 nested in a GAP classifier."""
    inner = [inp("input_1", 96, 96)]
    for blk, (width, n) in enumerate(zip((4, 4, 8, 8, 8), (2, 2, 4, 4, 4)), 1):
        for i in range(1, n + 1):
            inner.append(conv("block%d_conv%d" % (blk, i), width, 3, padding="same",
                              activation="relu"))
        inner.append(maxpool("block%d_pool" % blk, 2))
    chain = [inp("input_2", 96, 96), sub("vgg19", inner),
             gap("global_average_pooling2d", keepdims=False), dropout("dropout", 0.5),
             dense("dense", 4, "softmax")]
    chain[1]["call_kwargs"] = {"training": False}
    return dict(name="vgg19-gap", cls="Functional", model_name="model", chain=chain, seed=11,
                keras_version="2.13.1", style="h5py3", keras3=True, caffe=True)


def seq_bn():
    chain = [inp("conv2d_input", 64, 64),
             conv("conv2d", 6, 3, padding="same"),
             bn("batch_normalization"),
             act("activation", "relu"),
             conv("conv2d_1", 8, 3, strides=2, padding="same", use_bias=False),
             bn("batch_normalization_1", epsilon=1.001e-5, scale=False),
             relu("re_lu"),
             maxpool("max_pooling2d", 2),
             dropout("spatial_dropout2d", 0.1, "SpatialDropout2D"),
             conv("conv2d_2", 8, 3, padding="same", dilation=2, activation="relu"),
             conv("conv2d_3", 8, (3, 1), padding="valid", activation="relu"),
             maxpool("max_pooling2d_1", 3, 2, padding="same"),
             dropout("dropout", 0.25),
             conv("conv2d_4", 10, 5, strides=2, padding="same"),
             act("activation_1", "relu"),
             gap("global_average_pooling2d", keepdims=False),
             dense("dense", 5)]
    return dict(name="seq-bn", cls="Sequential", model_name="sequential", chain=chain, seed=12,
                keras_version="2.13.1", style="h5py3", keras3=True, k3_name_offset=7)


def functional():
    chain = [inp("input_1", 48, 64),
             conv("conv1", 6, 3, padding="same", use_bias=False),
             relu("relu1"),
             maxpool("pool1", 2),
             conv("conv2", 8, 3, padding="same", activation="relu"),
             maxpool("pool2", 2),
             conv("conv3", 8, 3, padding="same", use_bias=False),
             relu("relu3"),
             gap("gap"),
             flatten("flatten"),
             dense("predictions", 3, "softmax")]
    training = {"loss": "categorical_crossentropy", "metrics": ["accuracy"],
                "weighted_metrics": None, "loss_weights": None,
                "optimizer_config": {"class_name": "Adam", "config": {
                    "name": "Adam", "learning_rate": 0.0010000000474974513, "decay": 0.0,
                    "beta_1": 0.8999999761581421, "beta_2": 0.9990000128746033,
                    "epsilon": 1e-07, "amsgrad": False}}}
    sidecar = {"class_names": "tumor, stroma,background", "background_classes": "background",
               "mpp": "0.5"}
    return dict(name="functional", cls="Functional", model_name="tissue_classifier",
                chain=chain, seed=13, keras_version="2.4.0", style="h5py2",
                training_config=training, sidecar=sidecar)


def write_ref(path, model, pp, layers, blocks, spots, fshape, onnx_name):
    chain = model["chain"]
    h, w, _ = chain[0]["shape"]
    dl = flat(chain)[-1]
    n = dl["units"]
    side = model.get("sidecar", {})
    names = [s.strip() for s in side["class_names"].split(",")] if "class_names" in side else \
        ["class%d" % i for i in range(n)]
    nested = [L["name"] for L in chain if L["cls"] == "Functional"]
    caffe = pp == "caffe"
    lines = ["tileheat-ref 1", "model %s.h5" % model["name"]]
    if model.get("keras3"):
        lines.append("alt_model %s.keras" % model["name"])
    lines += ["onnx %s" % onnx_name, "keras_format keras2-h5",
              "keras_version %s" % model["keras_version"], "keras_class %s" % model["cls"],
              "keras_nested %s" % (nested[0] if nested else "-"), "preprocess %s" % pp,
              "channel_order %s" % ("bgr" if caffe else "rgb"), "slide %s" % gtm.SLIDE_REL,
              "input_size %d %d" % (w, h), "graph_size %d %d" % (w, h), "input_nhwc 1",
              "n_classes %d" % n, "feat %d %d %d" % fshape,
              "graph_softmax %d" % int(dl["activation"] == "softmax"),
              "class_names %s" % ",".join(names),
              "background %s" % ",".join(s.strip() for s in side.get(
                  "background_classes", "").split(",") if s.strip()),
              "input_scale %.17g" % (1.0 if caffe else 1 / 255),
              "input_mean %s" % ("123.68,116.779,103.939" if caffe else "0,0,0"),
              "input_std 1,1,1", "mpp %s" % side.get("mpp", "0"), "n_meta %d" % len(side)]
    reffile.write(path, lines, side, layers, spots, blocks)


def check_close(got, want, what, tol=1e-9):
    scale = max(np.abs(want).max(), 1e-30)
    err = np.abs(np.asarray(got, np.float64) - want).max() / scale
    assert err < tol, "%s: relative error %.3g" % (what, err)


def build_model(model, slide, idx):
    """Write one model's Keras files, ONNX twins and .ref files; check each file read back."""
    rng = np.random.default_rng(model["seed"])
    build(model["chain"], None, rng)
    chain = model["chain"]
    base = os.path.join(OUT, model["name"])
    written = []
    write_keras2(base + ".h5", model, model["style"])
    written.append(base + ".h5")
    readers = [(base + ".h5", read_keras2)]
    if model.get("keras3"):
        with open(base + ".keras", "wb") as f:
            f.write(keras3_bytes(model))
        written.append(base + ".keras")
        readers.append((base + ".keras", read_keras3))
    if "sidecar" in model:
        with open(base + ".json", "w") as f:
            f.write(json.dumps(model["sidecar"], indent=2) + "\n")
        written.append(base + ".json")
    read_ops = [(p, fn(p)[0]) for p, fn in readers]
    net = TorchNet(chain)
    h, w, _ = chain[0]["shape"]
    spots = [(x + 23 * idx, y + 13 * idx) for (x, y) in gtm.TILE_SPOTS[idx % 2:idx % 2 + 4]]
    tiles = gtm.read_tiles(slide, spots, w, h)
    layers = expected_layers(chain)
    for pp in ("unit", "caffe") if model.get("caffe") else ("unit",):
        suffix = "-caffe" if pp == "caffe" else ""
        m = export_onnx(model, caffe=pp == "caffe")
        onnx_name = model["name"] + suffix + ".onnx"
        onnx.save(m, os.path.join(OUT, onnx_name))
        written.append(os.path.join(OUT, onnx_name))
        blocks, fshape = [], None
        for t, rgb in enumerate(tiles):
            x = preprocess(rgb, pp)
            feat, logits, cam = reference(net, x)
            fshape = feat.shape
            # Each Keras file, read back independently, must compute the same.
            for p, ops in read_ops:
                f_np, l_np = np_forward(ops, x[0].permute(1, 2, 0).numpy())
                check_close(l_np, logits, "%s tile %d logits" % (p, t))
                check_close(f_np.transpose(2, 0, 1), feat, "%s tile %d features" % (p, t))
            # ...and so must the ONNX twin (whose input is RGB, normalised by its metadata).
            xo = preprocess(rgb, "unit") if pp == "unit" else \
                torch.from_numpy(rgb.astype(np.float64) - [123.68, 116.779, 103.939]) \
                .permute(2, 0, 1)[None]
            got = run_onnx(m, xo)[0].numpy()
            want = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum() \
                if net.softmax else logits
            # (tolerance: the exporter folds BatchNorm into the conv in float32)
            check_close(got, want, "%s tile %d" % (onnx_name, t), 1e-6)
            assert np.abs(logits).max() > 1e-3 and np.abs(feat).max() > 1e-3, "dead network"
            blocks += [("logits.%d" % t, logits), ("cam.%d" % t, cam)]
        dl = flat(chain)[-1]
        blocks += [("dense_w", dl["w"]["kernel"].T), ("dense_b", dl["w"]["bias"])]
        for li, layer in enumerate(layers):
            if layer["kind"] == "conv" and layer["bn"] is not None:
                fw, fb = folded(layer, pp == "caffe" and li == 0)
                blocks += [("weight.%d" % li, fw), ("bias.%d" % li, fb)]
        ref = os.path.join(OUT, model["name"] + suffix + ".ref")
        write_ref(ref, model, pp, layers, blocks, spots, fshape, onnx_name)
        written.append(ref)
    return written


# --------------------------------------------------------------------------- broken models

def tiny(name, chain, cls="Functional", **kw):
    rng = np.random.default_rng(sum(map(ord, name)))
    build(chain, None, rng)
    return dict(name=name, model_name="model", cls=cls, chain=chain, keras_version="2.13.1",
                latest=True, **kw)


def tiny_chain(*middle, head=None):
    return [inp("input_1", 16, 16), conv("conv2d", 4, 3, padding="same", activation="relu"),
            *middle] + (head or [gap("global_average_pooling2d", keepdims=False),
                                 dense("dense", 2, "softmax")])


def broken_models():
    written = []

    def save_h5(model, style="h5py3"):
        path = os.path.join(OUT, model["name"] + ".h5")
        write_keras2(path, model, style)
        written.append(path)

    def save_bytes(name, data):
        path = os.path.join(OUT, name)
        with open(path, "wb") as f:
            f.write(data)
        written.append(path)

    # The first 2 KiB of a good file: the superblock says the file is longer.
    with open(os.path.join(OUT, "functional.h5"), "rb") as f:
        save_bytes("bad-truncated.h5", f.read(2048))
    # weight_names lists conv2d/bias:0 but the dataset is missing.
    save_h5(tiny("bad-missing-weight", tiny_chain(), drop="conv2d/bias:0"))
    # A kernel whose c_in (4) does not match the RGB input the config implies.
    m = tiny("bad-kernel-shape", tiny_chain())
    m["chain"][1]["w"]["kernel"] = np.zeros((3, 3, 4, 4), np.float32)
    save_h5(m)
    # A decoder layer.
    save_h5(tiny("bad-convtranspose", tiny_chain(
        dict(cls="Conv2DTranspose", name="conv2d_transpose", filters=4, kernel_size=(2, 2),
             strides=(2, 2), padding="valid", dilation_rate=(1, 1), activation="linear",
             use_bias=True, data_format="channels_last"))))
    # A sigmoid in the trunk.
    save_h5(tiny("bad-sigmoid", tiny_chain(act("activation", "sigmoid"))))
    # Two dense layers after the pooling: the CAM needs exactly one.
    save_h5(tiny("bad-two-dense", tiny_chain(head=[
        gap("global_average_pooling2d", keepdims=False), dense("dense", 8, "relu"),
        dense("dense_1", 2, "softmax")])))
    # The classic VGG head: Flatten straight after the conv trunk, no global pooling.
    save_h5(tiny("bad-flatten-dense", tiny_chain(maxpool("max_pooling2d", 2), head=[
        flatten("flatten"), dense("dense", 2, "softmax")])))
    # channels_first convolution.
    m = tiny("bad-channels-first", tiny_chain())
    m["chain"][1]["data_format"] = "channels_first"
    save_h5(m)
    # A residual branch: re_lu feeds conv2d_1 and the Add.
    chain = tiny_chain(relu("re_lu"), conv("conv2d_1", 4, 3, padding="same"),
                       dict(cls="Add", name="add", inbound=["conv2d_1", "re_lu"]))
    chain[1]["activation"] = "linear"
    save_h5(tiny("bad-branch", chain))
    # model.save_weights() output: the weights layout on the root, no model_config.
    m = tiny("bad-weights-only", tiny_chain())
    path = os.path.join(OUT, "bad-weights-only.h5")
    with h5_create(path, latest=True) as f:
        f.attrs["keras_version"] = "2.13.1"
        write_weight_groups(f, m["chain"], False)
    written.append(path)
    # Keras 3: a zip without config.json, a truncated zip, a missing variable.
    m = tiny("bad-noconfig", tiny_chain())
    save_bytes("bad-noconfig.keras", keras3_bytes(m, files=("metadata.json",
                                                            "model.weights.h5")))
    with open(os.path.join(OUT, "seq-bn.keras"), "rb") as f:
        save_bytes("bad-truncated.keras", f.read(1024))
    m = tiny("bad-missing-var", tiny_chain())
    save_bytes("bad-missing-var.keras", keras3_bytes(m, drop="layers/conv2d/vars/1"))
    return written


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_grad_enabled(False)
    slide = openslide.OpenSlide(os.path.join(gtm.DATA, gtm.SLIDE_REL))
    written = []
    for idx, model in enumerate((vgg19_gap(), seq_bn(), functional())):
        written += build_model(model, slide, idx)
    written += broken_models()
    reffile.print_written(written, REPO)


if __name__ == "__main__":
    sys.exit(main())
