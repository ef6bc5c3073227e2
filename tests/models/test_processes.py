"""processes: children stay in the server's group and die with the parent."""

import os
import signal
import time

import pytest

from helpers import Server, expect_eof, group_pids, recv_exactly, wait_group_gone

pytestmark = pytest.mark.timeout(60)


def test_children_die_with_a_killed_parent():
    with Server("processes", protocol="echo") as server:
        clients = [server.connect() for _ in range(3)]
        for sock in clients:
            sock.sendall(b"hi")
            assert recv_exactly(sock, 2) == b"hi"
        assert len(group_pids(server.pid)) == 4  # the parent and one child per connection
        os.kill(server.pid, signal.SIGKILL)  # no chance to clean up: PR_SET_PDEATHSIG must
        server.proc.wait(5)
        assert wait_group_gone(server.pid, timeout=5) == []
        for sock in clients:
            assert expect_eof(sock, timeout=5)
            sock.close()


def test_one_child_per_connection_and_reaped():
    with Server("processes", protocol="echo") as server:
        for _ in range(5):
            assert server.exchange(b"x") == b"x"
        # Finished children are reaped (SIGCHLD -> waitpid): only the parent
        # remains, and no zombie child.  A child that has just exited is a
        # zombie until the parent's handler runs, so wait for it, bounded.
        end = time.monotonic() + 5
        while (len(group_pids(server.pid)) > 1 or zombie_children(server.pid)) and time.monotonic() < end:
            time.sleep(0.05)
        assert group_pids(server.pid) == [server.pid]
        assert zombie_children(server.pid) == []


def zombie_children(parent: int) -> list[int]:
    zombies = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    after = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(after[1]) == parent and after[0] == "Z":
                zombies.append(int(entry))
    return zombies
