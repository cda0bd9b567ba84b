"""A tiny Chrome DevTools Protocol client over --remote-debugging-pipe (no websocket, no browser download).

Chromium reads NUL-terminated JSON commands from fd 3 and writes responses and events to fd 4.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


class Browser:
    """One headless Chromium; `command` sends a CDP command to the page session and returns its result;
    every event seen is kept in `events`."""

    def __init__(self, binary: str, profile_dir: str, width: int, height: int):
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()

        def wire():  # in the child: fd 3 = commands in, fd 4 = responses out
            # via fds >= 10 first: the pipe may itself be fd 3 or 4, and dup2(fd, fd) would keep close-on-exec
            high_in, high_out = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_child, from_child))
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        args = [binary, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                "--no-first-run", "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--disable-default-apps", f"--user-data-dir={profile_dir}",
                f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen(args, preexec_fn=wire, close_fds=False, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self._buffer, self._id, self.events, self.session = b"", 0, [], None
        target = self.command("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.command("Target.attachToTarget", {"targetId": target, "flatten": True},
                                    browser=True)["sessionId"]

    def _message(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no message from chromium")
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the debugging pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def command(self, method: str, params: dict | None = None, browser: bool = False, timeout: float = 60) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if not browser:
            msg["sessionId"] = self.session
        os.write(self._write, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._message(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._message(timeout)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        try:
            self.command("Browser.close", browser=True, timeout=10)
        except Exception:  # noqa: BLE001 - it may already be gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._read)
        os.close(self._write)
