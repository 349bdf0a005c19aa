#!/usr/bin/env python3
"""ZipNN's compressed size of safetensors files: the reference of mrepo-bench's zipnn section.

NOT RUN IN CI. Run with the Python of a venv that has zipnn (`pip install zipnn`, which brings torch):

    ~/.cache/zipnn-venv/bin/python scripts/zipnn_size.py --json /tmp/zipnn.json FILE.safetensors...

For each file, two ways ZipNN compresses a checkpoint, each as ZipNN's own scripts do it:
- per tensor (scripts/zipnn_compress_safetensors.py, what its Hugging Face and vLLM plugins read):
  every floating-point tensor compressed with its dtype (method HUFFMAN, ZipNN's default there),
  other tensors kept, written as a `.znn.safetensors` file; the size is that file's. It is read back
  through zipnn's safe_open and compared with the original, tensor by tensor.
- whole file (scripts/zipnn_compress_file.py): the file's bytes compressed as one stream with the
  file's floating-point dtype (byte grouping), then decompressed and compared.
Prints one line per file and writes JSON: {"zipnn_version", "files": [{"file", "bytes", "dtype",
"per_tensor_bytes", "per_tensor_seconds", "whole_file_bytes", "whole_file_seconds"}]}.
"""

import argparse
import json
import os
import struct
import sys
import tempfile
import time

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from zipnn import ZipNN
from zipnn.util_header import EnumFormat
from zipnn.util_safetensors import (COMPRESSED_DTYPE, COMPRESSION_METHOD, build_compressed_tensor_info,
                                    set_compressed_tensors_metadata)
from zipnn.util_torch import zipnn_is_floating_point

TORCH_NAMES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}


def file_dtype(path):
    """The dtype of most of the file's bytes (safetensors header), e.g. F32."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    sizes = {}
    for name, info in header.items():
        if name != "__metadata__":
            begin, end = info["data_offsets"]
            sizes[info["dtype"]] = sizes.get(info["dtype"], 0) + end - begin
    return max(sizes, key=sizes.get)


def per_tensor(path, scratch):
    """ZipNN's safetensors compression: (compressed file size, seconds), checked by reading it back."""
    out = os.path.join(scratch, os.path.basename(path)[: -len(".safetensors")] + ".znn.safetensors")
    tensors, infos = {}, {}
    start = time.monotonic()
    with safe_open(path, "pt", "cpu") as f:
        metadata = f.metadata() or {"format": "pt"}
        for name in f.keys():
            tensor = f.get_tensor(name)
            if not zipnn_is_floating_point(EnumFormat.TORCH.value, tensor, tensor.dtype):
                tensors[name] = tensor
                continue
            znn = ZipNN(input_format="torch", bytearray_dtype=tensor.dtype, method=COMPRESSION_METHOD)
            buf = znn.compress(tensor.clone())  # ZipNN reorders its input's bytes in place
            if len(buf) >= tensor.element_size() * tensor.nelement():
                tensors[name] = tensor  # ZipNN keeps a tensor it cannot shrink as it is
                continue
            infos[name] = build_compressed_tensor_info(tensor)
            tensors[name] = torch.frombuffer(bytearray(buf), dtype=COMPRESSED_DTYPE)
    set_compressed_tensors_metadata(infos, metadata)
    save_file(tensors, out, metadata)
    seconds = time.monotonic() - start
    size = os.path.getsize(out)
    # Read back through ZipNN's loader: lossless or the figure means nothing.
    from zipnn.zipnn import SafeOpen

    with safe_open(path, "pt", "cpu") as original, SafeOpen(out, "pt") as packed:
        for name in original.keys():
            a, b = original.get_tensor(name), packed.get_tensor(name)
            if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a.view(torch.uint8), b.contiguous().view(torch.uint8)):
                sys.exit(f"{path}: ZipNN's per-tensor round trip changed {name}")
    os.remove(out)
    return size, seconds


def whole_file(path, dtype):
    """ZipNN on the file's bytes with the file's dtype: (compressed size, seconds), checked by decompressing."""
    with open(path, "rb") as f:
        data = f.read()
    znn = ZipNN(input_format="byte", bytearray_dtype=TORCH_NAMES.get(dtype, "float32"))
    scratch = bytearray(data)  # ZipNN reorders its input's bytes in place
    start = time.monotonic()
    buf = znn.compress(scratch)
    seconds = time.monotonic() - start
    if bytes(znn.decompress(buf)) != data:
        sys.exit(f"{path}: ZipNN's whole-file round trip changed the bytes")
    return len(buf), seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", help="safetensors files")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    try:
        from importlib.metadata import version

        zipnn_version = version("zipnn")
    except Exception:
        zipnn_version = "?"
    results = []
    with tempfile.TemporaryDirectory(prefix="zipnn-size-") as scratch:
        for path in args.files:
            dtype = file_dtype(path)
            pt_bytes, pt_seconds = per_tensor(path, scratch)
            wf_bytes, wf_seconds = whole_file(path, dtype)
            size = os.path.getsize(path)
            results.append({"file": path, "bytes": size, "dtype": dtype, "per_tensor_bytes": pt_bytes,
                            "per_tensor_seconds": round(pt_seconds, 3), "whole_file_bytes": wf_bytes,
                            "whole_file_seconds": round(wf_seconds, 3)})
            print(f"{path}: {size} bytes {dtype}; ZipNN per tensor {pt_bytes} ({pt_bytes / size:.3f}, {pt_seconds:.1f} s), "
                  f"whole file {wf_bytes} ({wf_bytes / size:.3f}, {wf_seconds:.1f} s)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"zipnn_version": zipnn_version, "torch_version": torch.__version__, "files": results}, f, indent=1)


if __name__ == "__main__":
    main()
