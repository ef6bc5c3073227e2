"""The kernel ABI as abi.py spells it, checked against /usr/include/linux/io_uring.h."""

import os
import shutil
import struct
import subprocess

import pytest

from iomodels import uring
from iomodels.uring import (
    abi,
)


def _c_member(key):
    if key.startswith("sizeof("):
        return f'printf("{key} %zu\\n", sizeof(struct {key[7:-1]}));'
    struct_name, member = key.split(".")
    return f'printf("{key} %zu\\n", offsetof(struct {struct_name}, {member}));'


@pytest.mark.timeout(60)
def test_layout_matches_header(tmp_path):
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        pytest.skip("no C compiler")
    header = "/usr/include/linux/io_uring.h"
    if not os.path.exists(header):
        pytest.skip(f"no {header}")
    src = tmp_path / "layout.c"
    src.write_text(
        "#include <stdio.h>\n#include <stddef.h>\n"
        "#include <linux/io_uring.h>\nint main(void) {\n"
        + "\n".join(_c_member(k) for k in uring.LAYOUT)
        + "\nreturn 0;\n}\n"
    )
    exe = tmp_path / "layout"
    subprocess.run([gcc, "-o", str(exe), str(src)], check=True, capture_output=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    c_layout = {k: int(v) for k, v in (line.rsplit(" ", 1) for line in out.splitlines())}
    assert c_layout == uring.LAYOUT


def test_sqe_struct_writes_fields_at_header_offsets():
    values = {
        "opcode": 0x11,
        "flags": 0x22,
        "ioprio": 0x3344,
        "fd": -5,
        "off": 0x0102030405060708,
        "addr": 0x1112131415161718,
        "len": 0x21222324,
        "op_flags": 0x31323334,
        "user_data": 0x4142434445464748,
        "buf_index": 0x5152,
        "personality": 0x6162,
        "file_index": 0x71727374,
        "addr3": 0x8182838485868788,
        "pad2": 0,
    }
    raw = abi.SQE.pack(*(values[name] for name, _ in uring.SQE_FIELDS))
    for name, code in uring.SQE_FIELDS:
        key = abi.LAYOUT_ALIASES.get("io_uring_sqe." + name, "io_uring_sqe." + name)
        (got,) = struct.unpack_from("<" + code, raw, uring.LAYOUT[key])
        assert got == values[name], name
