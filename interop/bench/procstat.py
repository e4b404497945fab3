"""/proc readings: process RSS and CPU, machine CPU, the process listening on a port."""

from __future__ import annotations

import os

CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int | None) -> int | None:
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_s(pid: int | None) -> float | None:
    """user + system CPU seconds of a process (all its threads)"""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_cpu_s(pid: int) -> float:
    """CPU of the process tree below pid (live descendants), for broker wrappers"""
    total = 0.0
    for p in descendants(pid):
        total += cpu_s(p) or 0.0
    return total


def descendants(pid: int) -> list[int]:
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    data = f.read()
                parent[int(d)] = int(data[data.rindex(")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c, pp in parent.items():
            if pp == p:
                out.append(c)
                todo.append(c)
    return out


def tree_rss_kb(pid: int) -> int | None:
    base = rss_kb(pid)
    if base is None:
        return None
    return base + sum(rss_kb(p) or 0 for p in descendants(pid))


def host_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine, all cores"""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(x) for x in parts]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    total = sum(vals[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def listener_pid(port: int) -> int | None:
    """pid of the process with a listening TCP socket on port (needs permission to read fds)"""
    inodes = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, state, inode = parts[1], parts[3], parts[9]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        inodes.add(f"socket:[{inode}]")
        except OSError:
            pass
    if not inodes:
        return None
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{d}/fd"):
                try:
                    if os.readlink(f"/proc/{d}/fd/{fd}") in inodes:
                        return int(d)
                except OSError:
                    pass
        except OSError:
            pass
    return None
