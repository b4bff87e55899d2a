#!/usr/bin/env python3
"""Writes the fuzz seed corpus in assets/fuzz/seeds/ (stdlib only, deterministic).

Small PNGs of every colour type and the common bit depths, and .npy files of every header form
netlens reads (float32/float64, both byte orders, format versions 1 and 2). The fuzz harness
(tests/fuzz_inputs.rs) mutates these; keep them tiny so that each execution is cheap.
"""
import os
import struct
import sys
import zlib

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(name, w, h, depth, color, samples_per_px, extra=b""):
    bytes_per_sample = 2 if depth == 16 else 1
    rows = b""
    for y in range(h):
        row = bytearray([y % 5])  # every PNG filter type once
        if depth < 8:
            row += bytes(((x * 37 + y * 11) & 0xFF) for x in range((w * depth + 7) // 8))
        else:
            for x in range(w * samples_per_px):
                v = (x * 53 + y * 29) % 256
                row += bytes([v] * bytes_per_sample)
        rows += bytes(row)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra
    data += chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def npy(name, descr, shape, values, version=1, fortran=False):
    fmt = {"<f4": "<f", ">f4": ">f", "<f8": "<d", ">f8": ">d"}[descr]
    shape_txt = "(" + "".join(f"{d}, " for d in shape)[:-2] + ("," if len(shape) == 1 else "") + ")"
    header = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape_txt}, }}"
    len_size = 2 if version == 1 else 4
    total = 6 + 2 + len_size + len(header) + 1
    header += " " * ((64 - total % 64) % 64) + "\n"
    head = b"\x93NUMPY" + bytes([version, 0])
    head += struct.pack("<H" if version == 1 else "<I", len(header)) + header.encode("latin1")
    body = b"".join(struct.pack(fmt, v) for v in values)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(head + body)


def main():
    os.makedirs(OUT, exist_ok=True)
    png("gray8.png", 9, 7, 8, 0, 1)
    png("gray16.png", 6, 5, 16, 0, 1)
    png("gray1.png", 13, 4, 1, 0, 1)
    png("graya8.png", 5, 6, 8, 4, 2)
    png("rgb8.png", 8, 8, 8, 2, 3)
    png("rgb16.png", 5, 4, 16, 2, 3)
    png("rgba8.png", 6, 6, 8, 6, 4)
    palette = chunk(b"PLTE", bytes(range(48))) + chunk(b"tRNS", bytes([255, 0, 128]))
    png("palette4.png", 7, 5, 4, 3, 1, palette)
    vals = [((i * 7) % 17) / 17.0 for i in range(1 * 1 * 4 * 4)]
    npy("f4_le.npy", "<f4", (1, 1, 4, 4), vals)
    npy("f4_be_v2.npy", ">f4", (1, 4, 4), vals, version=2)
    npy("f8_le.npy", "<f8", (16,), vals)
    npy("f4_scalar.npy", "<f4", (), [0.5])


if __name__ == "__main__":
    sys.exit(main())
