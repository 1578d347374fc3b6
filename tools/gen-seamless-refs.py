#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Independent references for seam-free CAMs (tests/test-seamless.c).

PyTorch runs each model's conv trunk once over the whole of CMU-1-Small-Region.svs level 0
(2220 x 2967, read by openslide-python), framed by a white margin wider than any padding reach,
in float64. That is the definition tileheat's seam-free mode must meet: a CAM cell is the
network's value at that place of the slide, not of a tile cut out of it. From the one feature map:

  * each full 224-px tile of the grid from (0, 0) (9 x 13): probabilities = softmax(dense over
    the mean of the tile's own cells + bias);
  * the CAM (dense weights . features, no bias) at each tile's four corner cells and centre cell.

Models: models/default.onnx (the bundled model), and two written here with fixed seeds into
tests/data/models/: seam-bn.onnx (conv-BatchNorm-ReLU blocks) and seam-vgg16.onnx (VGG16's
thirteen 3x3 convolutions and four poolings, narrower channels, GAP after conv5_3).

Output: tests/data/seamless-<model>.ref, text:
  model NAME / classes N / cell C / grid COLS ROWS
  tile COL ROW p0 p1 ...               (probabilities)
  cam COL ROW CX CY v0 v1 ...          (CAM of every class at cell (CX, CY) of that tile)

Run from the repository root: /usr/bin/python3 tools/gen-seamless-refs.py [--data ../shared/data]
"""
import argparse
import os
import sys

import numpy as np
import onnx
import openslide
import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import onnx2torch  # noqa: E402

TILE = 224
MARGIN = 256  # white pixels around the slide: more than any model's padding reach here


class Net(nn.Module):
    def __init__(self, trunk, feat_c, n_classes):
        super().__init__()
        self.trunk = nn.Sequential(*trunk)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(feat_c, n_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.trunk(x)), 1))


def vgg_trunk(cfg, bn):
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        layers.append(nn.Conv2d(c, v, 3, padding=1))
        if bn:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU())
        c = v
    return layers, c


def randomize(net, seed):
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            m.weight.data = torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5
            m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.05
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data = 0.5 + torch.rand(m.weight.shape, generator=g)
            m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
            m.running_mean = torch.randn(m.running_mean.shape, generator=g) * 0.1
            m.running_var = 0.5 + torch.rand(m.running_var.shape, generator=g)
        elif isinstance(m, nn.Linear):
            m.weight.data = torch.randn(m.weight.shape, generator=g) * 0.5
            m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
    return net.eval()


def write_model(net, path, names):
    torch.onnx.export(net, torch.zeros(1, 3, TILE, TILE), path, input_names=["input"],
                      output_names=["logits"], opset_version=13)
    m = onnx.load(path)
    for k, v in {"class_names": ",".join(names), "mpp": "0.5",
                 "input_scale": "0.00392156862745098"}.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(m, path)


def generated_models(out_dir):
    """(name, path) of the two generated models, written with fixed seeds."""
    specs = [
        ("seam-bn", 11, vgg_trunk([8, "M", 16, "M", 32, 32, "M", 48], bn=True), 3),
        ("seam-vgg16", 12, vgg_trunk([8, 8, "M", 16, 16, "M", 24, 24, 24, "M", 32, 32, 32, "M",
                                      32, 32, 32], bn=False), 4),
    ]
    out = []
    for name, seed, (trunk, feat_c), n in specs:
        torch.manual_seed(seed)
        net = randomize(Net(trunk, feat_c, n), seed)
        path = os.path.join(out_dir, name + ".onnx")
        write_model(net, path, ["c%d" % i for i in range(n)])
        out.append((name, path))
    return out


def reference(model_path, rgb, name, out_path):
    m = onnx2torch.load(model_path)
    h, w, _ = rgb.shape
    framed = np.full((h + 2 * MARGIN, w + 2 * MARGIN, 3), 255.0)
    framed[MARGIN:MARGIN + h, MARGIN:MARGIN + w] = rgb
    x = (framed * m.scale - np.array(m.mean)) / np.array(m.std)
    x = torch.from_numpy(x.transpose(2, 0, 1)[None].copy())
    trunk = m.trunk.double()
    with torch.no_grad():
        feat = trunk(x)[0].numpy()  # (K, fh, fw)
    cell = (h + 2 * MARGIN) // feat.shape[1]
    assert cell * feat.shape[1] == h + 2 * MARGIN or MARGIN % cell == 0
    o, per = MARGIN // cell, TILE // cell
    cols, rows = w // TILE, h // TILE
    wd, bd = m.dense_w.double().numpy(), m.dense_b.double().numpy()
    lines = ["model %s" % name, "classes %d" % wd.shape[0], "cell %d" % cell,
             "grid %d %d" % (cols, rows)]
    for r in range(rows):
        for c in range(cols):
            f = feat[:, o + r * per:o + (r + 1) * per, o + c * per:o + (c + 1) * per]
            logits = wd @ f.mean(axis=(1, 2)) + bd
            p = np.exp(logits - logits.max())
            p /= p.sum()
            lines.append("tile %d %d %s" % (c, r, " ".join("%.9g" % v for v in p)))
            for cx, cy in ((0, 0), (per - 1, 0), (0, per - 1), (per - 1, per - 1),
                           (per // 2, per // 2)):
                v = wd @ f[:, cy, cx]
                lines.append("cam %d %d %d %d %s" % (c, r, cx, cy,
                                                    " ".join("%.9g" % x for x in v)))
    with open(out_path, "w") as fo:
        fo.write("\n".join(lines) + "\n")
    print("wrote", out_path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join("..", "shared", "data"))
    args = ap.parse_args()
    slide = openslide.OpenSlide(os.path.join(args.data, "slides", "CMU-1-Small-Region.svs"))
    rgba = np.asarray(slide.read_region((0, 0), 0, slide.dimensions), dtype=np.float64)
    a = rgba[..., 3:4] / 255.0
    rgb = np.round(rgba[..., :3] * a + 255.0 * (1 - a))
    models = [("default", os.path.join("models", "default.onnx"))]
    models += generated_models(os.path.join("tests", "data", "models"))
    for name, path in models:
        reference(path, rgb, name, os.path.join("tests", "data", "seamless-%s.ref" % name))


if __name__ == "__main__":
    main()
