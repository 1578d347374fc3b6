#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Show or set the metadata_props (string key/value pairs) of any ONNX model.

tileheat reads these keys from a model (all optional, see models/README.md):
  class_names          comma-separated class names, in output order
  input_scale          x = (pixel * input_scale - input_mean[c]) / input_std[c], e.g. 1/255 =
                       0.00392156862745098
  input_mean           three numbers, R,G,B
  input_std            three numbers, R,G,B
  mpp                  micrometres per pixel the model was trained at (e.g. 0.5)
  input_size           "W" or "W,H" in pixels, for graphs exported with a dynamic input size
  background_classes   comma-separated class names that are not tissue
Any other key (source, license, created_by, ...) is kept and shown by `tileheat info`.

Usage:
  onnx-metadata.py MODEL.onnx --list
  onnx-metadata.py MODEL.onnx key=value [key=value ...] [--delete KEY ...] [-o OUT.onnx]

Without -o the model is rewritten in place (through a temporary file and a rename). Setting a key
that exists replaces its value; the order of the other keys is kept. The graph and the weights
are not touched. Needs only the `onnx` Python package.
"""
import argparse
import os
import sys
import tempfile

import onnx


def get_metadata(model):
    """The metadata_props of a loaded onnx.ModelProto as an ordered list of (key, value)."""
    return [(p.key, p.value) for p in model.metadata_props]


def set_metadata(model, pairs, delete=()):
    """Set (key, value) pairs on an onnx.ModelProto in place and drop the keys in `delete`."""
    props = dict(get_metadata(model))
    order = [k for k, _ in get_metadata(model)]
    for key, value in pairs:
        if key not in props:
            order.append(key)
        props[key] = value
    for key in delete:
        if key in props:
            del props[key]
            order.remove(key)
    del model.metadata_props[:]
    for key in order:
        entry = model.metadata_props.add()
        entry.key = key
        entry.value = props[key]


def save_atomic(model, path):
    """Write the model to `path` through a temporary file in the same directory."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".onnx-metadata-", suffix=".onnx", dir=directory)
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def parse_pair(text):
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected key=value, got '%s'" % text)
    return key, value


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Show or set the metadata_props of an ONNX model.",
        epilog="example: onnx-metadata.py my.onnx class_names=tumour,stroma,background "
        "input_scale=0.00392156862745098 input_mean=0.485,0.456,0.406 "
        "input_std=0.229,0.224,0.225 mpp=0.5 background_classes=background -o my-annotated.onnx")
    ap.add_argument("model", help="input .onnx file")
    ap.add_argument("pairs", nargs="*", type=parse_pair, metavar="key=value",
                    help="metadata entries to set or replace")
    ap.add_argument("--list", action="store_true", help="print the metadata as key=value lines")
    ap.add_argument("--delete", action="append", default=[], metavar="KEY",
                    help="remove KEY (may be repeated)")
    ap.add_argument("-o", "--output", help="write here instead of rewriting MODEL in place")
    args = ap.parse_args(argv)

    try:
        model = onnx.load(args.model, load_external_data=False)
    except Exception as e:  # protobuf raises several types
        print("onnx-metadata.py: %s: cannot load ONNX model: %s" % (args.model, e), file=sys.stderr)
        return 1
    if not args.pairs and not args.delete:
        if args.output:
            print("onnx-metadata.py: nothing to set (give key=value or --delete)", file=sys.stderr)
            return 2
        args.list = True
    if args.pairs or args.delete:
        missing = [k for k in args.delete if k not in dict(get_metadata(model))]
        if missing:
            print("onnx-metadata.py: %s: no such key: %s" % (args.model, ", ".join(missing)),
                  file=sys.stderr)
            return 1
        set_metadata(model, args.pairs, args.delete)
        save_atomic(model, args.output or args.model)
    if args.list:
        for key, value in get_metadata(model):
            print("%s=%s" % (key, value))
    return 0


if __name__ == "__main__":
    sys.exit(main())
