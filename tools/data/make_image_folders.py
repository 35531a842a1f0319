#!/usr/bin/python3
"""Fashion-MNIST written out as image folders, so that Shrink's folder loader, its tests and its
benchmarks read real image files: the ImageFolder layout (OUT/train/<class>/<n>.<ext>,
OUT/test/<class>/<n>.<ext>, class folders named after Fashion-MNIST's classes, numbered so that
sorting gives the dataset's label order) and a list file per split (OUT/train.txt: `path label`
lines, paths relative to OUT).

  tools/data/make_image_folders.py OUT [--format png|jpeg] [--size 28] [--rgb] [--limit N]
                                       [--quality 90] [--source /usr/share/datasets/fashion-mnist]

--size resizes (bilinear) to a square side; --rgb writes three channels (the gray value
replicated: decoding and augmenting RGB costs what real photos cost); --limit writes the first N
images of each split (tests make small folders at test time). Nothing is written over: OUT must
not exist yet.
"""
import argparse
import gzip
import os
import struct
import sys

from PIL import Image

CLASSES = ["0_tshirt", "1_trouser", "2_pullover", "3_dress", "4_coat",
           "5_sandal", "6_shirt", "7_sneaker", "8_bag", "9_ankle_boot"]


def read_idx(path):
    """The array of an IDX file (gzip or not) as (shape, bytes)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, dims = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        sys.exit(f"{path}: not an IDX file of unsigned bytes")
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    body = data[4 + 4 * dims:]
    count = 1
    for d in shape:
        count *= d
    if len(body) != count:
        sys.exit(f"{path}: {len(body)} bytes of data, the header says {count}")
    return shape, body


def find(source, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(source, name)
        if os.path.exists(path):
            return path
    sys.exit(f"{source}: no {stem}[.gz]")


def write_split(args, split, stem):
    (n, h, w), images = read_idx(find(args.source, f"{stem}-images-idx3-ubyte"))
    (m,), labels = read_idx(find(args.source, f"{stem}-labels-idx1-ubyte"))
    if m != n:
        sys.exit(f"{args.source}: {n} {stem} images but {m} labels")
    count = n if args.limit is None else min(n, args.limit)
    ext = "png" if args.format == "png" else "jpg"
    for c in CLASSES:
        os.makedirs(os.path.join(args.out, split, c))
    lines = []
    for i in range(count):
        image = Image.frombytes("L", (w, h), images[i * h * w:(i + 1) * h * w])
        if args.size != h:
            image = image.resize((args.size, args.size), Image.BILINEAR)
        if args.rgb:
            image = image.convert("RGB")
        rel = os.path.join(split, CLASSES[labels[i]], f"{i:05d}.{ext}")
        if args.format == "png":
            image.save(os.path.join(args.out, rel))
        else:
            image.save(os.path.join(args.out, rel), quality=args.quality)
        lines.append(f"{rel} {labels[i]}\n")
    with open(os.path.join(args.out, f"{split}.txt"), "w") as f:
        f.writelines(lines)
    return count


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--format", choices=["png", "jpeg"], default="png")
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--rgb", action="store_true")
    p.add_argument("--limit", type=int)
    p.add_argument("--quality", type=int, default=90)
    p.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    args = p.parse_args()
    if not 1 <= args.size <= 4096:
        sys.exit(f"--size {args.size}: expected 1 to 4096")
    if args.limit is not None and args.limit < 1:
        sys.exit(f"--limit {args.limit}: expected at least 1")
    if os.path.exists(args.out):
        sys.exit(f"{args.out}: exists already; choose a new folder")
    os.makedirs(args.out)
    written = {split: write_split(args, split, stem) for split, stem in (("train", "train"), ("test", "t10k"))}
    mode = "RGB" if args.rgb else "gray"
    print(f"{args.out}: {written['train']} training and {written['test']} test images, "
          f"{args.size}x{args.size} {mode} {args.format}")


if __name__ == "__main__":
    main()
