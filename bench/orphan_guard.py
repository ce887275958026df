"""Runs a server as its child and stops it when the bench that started it dies.

`python orphan_guard.py PARENT_PID GRACE_S ARGV...`: the bench's own `stop()` signals the
whole process group (this guard and the server alike), but a bench killed by SIGKILL
or the OOM killer never calls it; without the guard a vLLM server would keep its port,
cores and gigabytes of memory. The guard polls its parent: once it is re-parented (the
bench is gone), it sends SIGTERM to the server, waits `GRACE_S`, then SIGKILLs its own
process group (vLLM's engine core and workers are in it). Standard library only: it
runs under the bench's interpreter, imported by path, never from the `bench` package.
"""
import os
import signal
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    parent, grace_s, command = int(argv[0]), float(argv[1]), argv[2:]
    child = subprocess.Popen(command)
    # A signal to the guard alone (not to the group) still reaches the server.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: child.send_signal(number))
    while child.poll() is None:
        if os.getppid() != parent:
            child.terminate()
            try:
                child.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
            os.killpg(0, signal.SIGKILL)  # also ends this guard
        time.sleep(0.5)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
