"""Makes the committed disk-image heads that tests/preflight_formats.rs checks format detection
on, so the test runs where qemu-img is not installed.

For each format a real image is made with qemu-img from the same 4 MiB raw disk (an MBR boot
signature, a GPT header, some data), then cut as the preflight reads an object in OBS: the
first 36 KiB (stored without its trailing zero bytes; index.json records the real length)
and the last 512 bytes. The raw disk itself is one of them.

Usage: python3 tests/data/formats/make_heads.py   (needs qemu-img; rewrites this folder)
"""

import json
import os
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
HEAD = 36 * 1024
TAIL = 512

# (name, qemu-img arguments after the output format, what imsreg must detect)
IMAGES = [
    ("qcow", ["-O", "qcow"], "qcow (version 1)"),
    ("qcow2", ["-O", "qcow2"], "qcow2 (version 3)"),
    ("qcow2-compat-0.10", ["-O", "qcow2", "-o", "compat=0.10"], "qcow2 (version 2)"),
    ("qed", ["-O", "qed"], "qed"),
    ("vdi", ["-O", "vdi"], "vdi"),
    ("vpc-dynamic", ["-O", "vpc", "-o", "subformat=dynamic"], "vhd (dynamic)"),
    ("vpc-fixed", ["-O", "vpc", "-o", "subformat=fixed"], "vhd (fixed)"),
    ("vhdx", ["-O", "vhdx"], "vhdx"),
    ("vmdk-monolithicSparse", ["-O", "vmdk", "-o", "subformat=monolithicSparse"],
     "vmdk (monolithicSparse)"),
    ("vmdk-streamOptimized", ["-O", "vmdk", "-o", "subformat=streamOptimized"],
     "vmdk (streamOptimized)"),
]


def source_disk(path):
    """A 4 MiB raw disk: MBR signature, a GPT header, and data at 1 MiB."""
    data = bytearray(4 << 20)
    data[510:512] = b"\x55\xaa"
    data[512:520] = b"EFI PART"
    pattern = bytes(range(256)) * 256
    data[1 << 20:(1 << 20) + len(pattern)] = pattern
    with open(path, "wb") as f:
        f.write(data)


def cut(path):
    with open(path, "rb") as f:
        data = f.read()
    return len(data), data[:HEAD], data[-TAIL:]


def main():
    index = []
    with tempfile.TemporaryDirectory() as work:
        raw = os.path.join(work, "source.raw")
        source_disk(raw)
        made = [("raw", raw, "no known image format")]
        for name, args, expect in IMAGES:
            out = os.path.join(work, name + ".img")
            subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", *args, raw, out], check=True)
            made.append((name, out, expect))
        # A descriptor-only vmdk (its data is in a separate -flat file).
        flat = os.path.join(work, "vmdk-monolithicFlat.vmdk")
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", flat, "4M"],
            check=True,
        )
        made.append(("vmdk-monolithicFlat", flat, "a vmdk descriptor without its data "
                     "(createType monolithicFlat)"))

        for name in os.listdir(HERE):
            if name.endswith((".head", ".tail")):
                os.remove(os.path.join(HERE, name))
        for name, path, expect in made:
            size, head, tail = cut(path)
            with open(os.path.join(HERE, name + ".head"), "wb") as f:
                f.write(head.rstrip(b"\0"))
            with open(os.path.join(HERE, name + ".tail"), "wb") as f:
                f.write(tail)
            index.append({"name": name, "size": size, "head_len": len(head), "expect": expect})

    version = subprocess.run(["qemu-img", "--version"], capture_output=True, text=True).stdout
    document = {
        "made_by": "tests/data/formats/make_heads.py with " + version.splitlines()[0],
        "images": index,
    }
    with open(os.path.join(HERE, "index.json"), "w") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
    print(f"{len(index)} heads written to {HERE}")


if __name__ == "__main__":
    main()
