"""The broker process fixes glibc's malloc thresholds (see amqp_broker/server/allocator.py)."""

import subprocess
import sys

import pytest

# In a child process, so this test run's own allocator is untouched: count the chunks glibc serves
# with mmap (mallinfo2().hblks) while a 1 MiB buffer is alive. With the defaults (128 KiB
# threshold) that buffer is one; with the broker's thresholds it comes from the heap.
CHILD = """
import ctypes, sys
from amqp_broker.server.allocator import tune_allocator
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "tuned":
    assert tune_allocator()
before = libc.mallinfo2().hblks
data = bytes(1 << 20)
print(libc.mallinfo2().hblks - before)
"""


def _mmapped_chunks(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True)
    if result.returncode and "mallinfo2" in result.stderr:
        pytest.skip("this C library has no mallinfo2 to observe the allocator with")
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_large_buffers_come_from_the_heap_once_tuned():
    assert _mmapped_chunks("default") == 1  # the behaviour the tuning exists to avoid
    assert _mmapped_chunks("tuned") == 0
