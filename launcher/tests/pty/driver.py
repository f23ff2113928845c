"""Drives a program on a pseudo-terminal for the launcher's e2e tests.

Usage: python3 driver.py < SPEC_JSON. SPEC: {"argv": [...], "env": {...},
"cwd": "...", "rows": R, "cols": C, "steps": [...]}. Steps, in order:

  ["expect", REGEX, TIMEOUT_S]   wait for REGEX in the output after the last match
  ["send", TEXT]                 type TEXT (bytes as latin-1 code points)
  ["resize", ROWS, COLS]         set the window size (the kernel sends SIGWINCH)
  ["kill", "INT"|"TERM"]         signal the program
  ["sleep", SECONDS]             wait, still reading the output
  ["termios", LABEL]             record whether the terminal is canonical and echoes
  ["wait", TIMEOUT_S]            wait for the program to exit

Prints one JSON object: {"ok", "error", "exit", "output", "marks"}; marks
has, per step index, the seconds since the start when it finished, matched
groups of expects and the termios records. On a failed step the program
gets SIGTERM (so it tears its bottle down) and the rest is skipped.
"""

import fcntl
import json
import os
import re
import select
import signal
import struct
import sys
import termios
import time


def winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def main():
    spec = json.loads(sys.stdin.read())
    master, slave = os.openpty()
    winsize(slave, spec["rows"], spec["cols"])
    pid = os.fork()
    if pid == 0:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        os.close(master)
        if slave > 2:
            os.close(slave)
        os.chdir(spec["cwd"])
        os.execve(spec["argv"][0], spec["argv"], spec["env"])
    os.set_blocking(master, False)
    start = time.monotonic()
    out = bytearray()
    pos = 0
    status = None
    marks = {}

    def pump(timeout):
        r, _, _ = select.select([master], [], [], max(timeout, 0))
        if r:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            out.extend(data)

    def reap():
        nonlocal status
        if status is None:
            p, st = os.waitpid(pid, os.WNOHANG)
            if p == pid:
                status = st
        return status is not None

    error = None
    for i, step in enumerate(spec["steps"]):
        kind = step[0]
        if kind == "expect":
            rx = re.compile(step[1].encode())
            deadline = time.monotonic() + step[2]
            while True:
                m = rx.search(out, pos)
                if m:
                    pos = m.end()
                    marks[i] = {"t": time.monotonic() - start,
                                "groups": [g.decode("latin-1") for g in m.groups() if g is not None]}
                    break
                if time.monotonic() > deadline:
                    error = f"step {i}: {step[1]!r} not seen in {step[2]} s"
                    break
                if reap():
                    pump(0.1)
                    if not rx.search(out, pos):
                        error = f"step {i}: the program exited before {step[1]!r}"
                        break
                pump(0.1)
        elif kind == "send":
            # Written as the terminal takes it while its output is read, so a
            # long paste cannot stall both sides.
            data = step[1].encode("latin-1")
            deadline = time.monotonic() + 120
            while data and time.monotonic() < deadline:
                r, w, _ = select.select([master], [master], [], 0.1)
                if r:
                    pump(0)
                if w:
                    try:
                        data = data[os.write(master, data[:1024]):]
                    except BlockingIOError:
                        pass
            if data:
                error = f"step {i}: the terminal took no input for 120 s"
        elif kind == "resize":
            winsize(master, step[1], step[2])
        elif kind == "kill":
            os.kill(pid, getattr(signal, "SIG" + step[1]))
        elif kind == "sleep":
            deadline = time.monotonic() + step[1]
            while time.monotonic() < deadline:
                pump(deadline - time.monotonic())
        elif kind == "termios":
            lflag = termios.tcgetattr(slave)[3]
            marks[i] = {"t": time.monotonic() - start, "label": step[1],
                        "canonical": bool(lflag & termios.ICANON),
                        "echo": bool(lflag & termios.ECHO),
                        "signals": bool(lflag & termios.ISIG)}
            continue
        elif kind == "wait":
            deadline = time.monotonic() + step[1]
            while not reap() and time.monotonic() < deadline:
                pump(0.1)
            if status is None:
                error = f"step {i}: still running after {step[1]} s"
        else:
            error = f"step {i}: unknown step {kind!r}"
        if error:
            break
        marks.setdefault(i, {"t": time.monotonic() - start})
    if error and not reap():
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 120
        while not reap() and time.monotonic() < deadline:
            pump(0.1)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    pump(0.2)
    code = None
    if status is not None:
        code = os.waitstatus_to_exitcode(status)
    print(json.dumps({"ok": error is None, "error": error, "exit": code,
                      "output": out.decode("utf-8", "replace"),
                      "marks": {str(k): v for k, v in marks.items()}}))


main()
