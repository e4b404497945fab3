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


def _run_child(source: str, mode: str) -> int:
    """Run ``source`` in a fresh interpreter with ``mode`` as its argument; the number it prints."""
    result = subprocess.run([sys.executable, "-c", source, mode], capture_output=True, text=True)
    if result.returncode and "mallinfo2" in result.stderr:
        pytest.skip("this C library has no mallinfo2 to observe the allocator with")
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def _mmapped_chunks(mode: str) -> int:
    return _run_child(CHILD, mode)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_large_buffers_come_from_the_heap_once_tuned():
    assert _mmapped_chunks("default") == 1  # the behaviour the tuning exists to avoid
    assert _mmapped_chunks("tuned") == 0


# A backlog that grows by 3,000 messages and drains again, twenty times over; each message is a
# slotted object, like a queued message, that dies by reference counting. Counts the young
# collections that sets off.
COLLECTOR_CHILD = """
import gc, sys
from amqp_broker.server.allocator import tune_collector
class Entry:
    __slots__ = ("message", "queue")
    def __init__(self, message, queue):
        self.message, self.queue = message, queue
if sys.argv[1] == "tuned":
    tune_collector()
collections = []
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info["generation"]))
gc.collect()
collections.clear()
for _ in range(20):
    backlog = [Entry(b"body", None) for _ in range(3000)]
    del backlog
print(len(collections))
"""


def _young_collections(mode: str) -> int:
    return _run_child(COLLECTOR_CHILD, mode)


def test_a_swinging_backlog_sets_off_no_collections_once_tuned():
    assert _young_collections("default") >= 20  # several per swing with the default threshold
    assert _young_collections("tuned") == 0
