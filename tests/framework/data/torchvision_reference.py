#!/usr/bin/python3
"""Reference outputs of torchvision's transforms for the loader's tests (tests/framework/data/
transforms_test.cpp): real Fashion-MNIST images written as files (a gray PNG, and RGB images made of
three of them, non-square, as PNG, RGBA PNG and JPEG), decoded by PIL as torchvision's ImageFolder
does, and each transform's output on them, saved as {name: tensor} with torch.save.

  torchvision_reference.py OUT_DIR [--source /usr/share/datasets/fashion-mnist]
"""
import argparse
import gzip
import os

import numpy as np
import torch
import torchvision.transforms.functional as F
from PIL import Image


def fashion_images(source, count):
    with gzip.open(os.path.join(source, "t10k-images-idx3-ubyte.gz"), "rb") as f:
        data = f.read()
    return np.frombuffer(data[16:16 + count * 784], dtype=np.uint8).reshape(count, 28, 28)


def write_images(out, images):
    gray = Image.fromarray(images[0], "L")
    gray.save(os.path.join(out, "gray.png"))
    rgb = Image.fromarray(np.stack(images[1:4], axis=2), "RGB").resize((64, 48), Image.BILINEAR)
    rgb.save(os.path.join(out, "rgb.png"))
    rgb.save(os.path.join(out, "rgb.jpg"), quality=90)
    alpha = Image.fromarray(np.stack(list(images[1:5]), axis=2), "RGBA")
    alpha.save(os.path.join(out, "rgba.png"))
    gray.convert("RGB").save(os.path.join(out, "gray_as_rgb.jpg"), quality=90)


def cases(name, x):
    """Every transform the loader has, on float image x ([C, H, W] in [0, 1])."""
    out = {name + "/decoded": x}
    out[name + "/resize_24"] = F.resize(x, [24], antialias=True)
    out[name + "/resize_20x30"] = F.resize(x, [20, 30], antialias=True)
    out[name + "/resize_40x40_noaa"] = F.resize(x, [40, 40], antialias=False)
    out[name + "/resize_96_up"] = F.resize(x, [96], antialias=True)
    out[name + "/center_crop_21x17"] = F.center_crop(x, [21, 17])
    out[name + "/center_crop_70x71"] = F.center_crop(x, [70, 71])
    out[name + "/resized_crop_3_5_20_15_to_32"] = F.resized_crop(x, 3, 5, 20, 15, [32, 32],
                                                                 antialias=True)
    out[name + "/pad_4_crop_2_7_28_28"] = F.crop(F.pad(x, [4, 4, 4, 4]), 2, 7, 28, 28)
    out[name + "/hflip"] = F.hflip(x)
    c = x.shape[0]
    out[name + "/normalize"] = F.normalize(x, [0.3, 0.4, 0.5][:c], [0.2, 0.25, 0.3][:c])
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    write_images(a.out, fashion_images(a.source, 5))
    refs = {}
    # ImageFolder's loader: PIL, then convert("RGB"); a gray image kept gray is convert("L").
    for name, mode in [("gray.png", "L"), ("rgb.png", "RGB"), ("rgb.jpg", "RGB"),
                       ("rgba.png", "RGB"), ("gray_as_rgb.jpg", "RGB")]:
        with Image.open(os.path.join(a.out, name)) as im:
            x = F.to_tensor(im.convert(mode)).contiguous()
        refs.update(cases(name, x))
    with Image.open(os.path.join(a.out, "rgb.png")) as im:
        refs["rgb.png/as_gray/decoded"] = F.to_tensor(im.convert("L")).contiguous()
    torch.save({k: v.contiguous() for k, v in refs.items()}, os.path.join(a.out, "refs.pt"))


if __name__ == "__main__":
    main()
