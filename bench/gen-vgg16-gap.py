#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Write a VGG16-GAP benchmark model (random, deterministic weights) as ONNX, for
bench/bench-e2e.py. Not a trained model: it only has VGG16's cost and shapes.

Architecture: the 13 3x3 convolutions of VGG16 (configuration D), padding 1, each followed by
ReLU, with 2x2 max-pools after blocks 1-4; the fifth pool is removed (as in the CAM paper's
VGG-GAP), so a 224x224 tile gives 512x14x14 features (stride 16). Then global average pooling,
one dense layer to 4 classes and softmax:

    conv 64,64,M,128,128,M,256,256,256,M,512,512,512,M,512,512,512 -> GAP -> dense 4 -> softmax

Cost: 15.35 GMAC = 30.7 GFLOP per 224x224 tile (2 * 9 * Cin * Cout * H * W summed over convs).

Weights: torch.manual_seed(--seed); He-normal convolutions (fan-in, ReLU gain), biases
uniform in +-0.01; the dense layer is normal, then scaled and given a bias so that on 16 seeded
pseudo-random calibration images (a flat colour plus noise) its logits are centred with a
standard deviation of about 1.5 per class: the softmax is neither flat nor saturated, so the
percentage check between tileheat and the peer means something.
Metadata: class_names c0..c3, input_size 224, mpp 0.5, ImageNet mean/std, input_scale 1/255.

  /usr/bin/python3 bench/gen-vgg16-gap.py -o DIR/vgg16-gap.onnx [--seed 1]

The file is ~59 MB: write it into a cache directory (the build dir or $TMPDIR), never the repo.
It is rewritten only if missing or if --force is given.
"""
import argparse
import importlib.util
import os
import sys

import onnx
import torch
import torch.nn as nn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
CLASSES = ["c0", "c1", "c2", "c3"]


class VGG16GAP(nn.Module):
    def __init__(self, n_classes):
        super().__init__()
        layers, cin = [], 3
        for v in CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, n_classes)

    def forward(self, x):
        x = self.pool(self.features(x)).flatten(1)
        return torch.softmax(self.fc(x), dim=1)


def make(seed):
    torch.manual_seed(seed)
    net = VGG16GAP(len(CLASSES)).eval()
    with torch.no_grad():
        for m in net.features:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.uniform_(m.bias, -0.01, 0.01)
        nn.init.normal_(net.fc.weight)
        # Calibration images: a random flat colour each, plus noise of a random strength.
        base = torch.rand((16, 3, 1, 1)) * 4 - 2
        amp = torch.rand((16, 1, 1, 1)) * 2
        x = base + amp * torch.randn((16, 3, 224, 224))
        logits = net.fc.weight @ net.pool(net.features(x)).flatten(1).t()  # (4, 16)
        scale = 1.5 / float(logits.std(dim=1).mean())
        net.fc.weight.mul_(scale)
        net.fc.bias.copy_(-logits.mean(dim=1) * scale)
    return net


def set_metadata(model):
    spec = importlib.util.spec_from_file_location(
        "onnx_metadata", os.path.join(REPO, "tools", "onnx-metadata.py"))
    meta = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(meta)
    meta.set_metadata(model, [
        ("class_names", ",".join(CLASSES)),
        ("input_scale", "0.00392156862745098"),
        ("input_mean", "0.485,0.456,0.406"),
        ("input_std", "0.229,0.224,0.225"),
        ("mpp", "0.5"),
        ("input_size", "224"),
        ("source", "bench/gen-vgg16-gap.py: VGG16 trunk (last pool removed) + GAP + dense 4, "
                   "random weights, benchmark only"),
    ])
    return meta


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Write the VGG16-GAP benchmark model (random weights).")
    ap.add_argument("-o", "--output", required=True, help="output .onnx file")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--force", action="store_true", help="rewrite even if the file exists")
    args = ap.parse_args(argv)
    if os.path.exists(args.output) and not args.force:
        return 0
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    net = make(args.seed)
    tmp = args.output + ".tmp"
    torch.onnx.export(net, torch.zeros((1, 3, 224, 224)), tmp, input_names=["input"],
                      output_names=["probabilities"], opset_version=13, do_constant_folding=True)
    model = onnx.load(tmp)
    meta = set_metadata(model)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    meta.save_atomic(model, args.output)
    os.unlink(tmp)
    print("wrote %s (%d bytes)" % (args.output, os.path.getsize(args.output)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
