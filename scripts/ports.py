"""Port checks for scripts/run.sh: `free HOST:PORT` and `wait ADDRESS PID SECONDS`.

`free` exits 1 when something already listens there. `wait` exits 0 once ADDRESS
(HOST:PORT or unix:PATH) accepts connections, 1 if process PID ended first, 2 on timeout.
"""
import os
import socket
import sys
import time


def split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def free(address: str) -> bool:
    host, port = split(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def accepts(address: str) -> bool:
    try:
        if address.startswith("unix:"):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(0.5)
                s.connect(address[5:])
        else:
            socket.create_connection(split(address), timeout=0.5).close()
        return True
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by the shell) has ended too.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait(address: str, pid: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if accepts(address):
            return 0
        if not alive(pid):
            return 1
        time.sleep(0.1)
    return 2


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "free":
        sys.exit(0 if free(args[0]) else 1)
    sys.exit(wait(args[0], int(args[1]), float(args[2])))
