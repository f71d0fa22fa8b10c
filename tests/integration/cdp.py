#!/usr/bin/env python3
"""A small Chrome DevTools Protocol driver for the web UI tests (python3 + `websockets`).

Usage: cdp.py CHROMIUM SCRIPT.json  — prints one JSON object on stdout:
  {"values": {name: value, ...}, "console": [...], "errors": [...], "failed": null | "message"}

SCRIPT is a list of steps, run in order:
  {"goto": URL}                         navigate and wait for the load event
  {"fill": SELECTOR, "value": TEXT}     set an input's value
  {"click": SELECTOR, "navigates": bool} click (and wait for the next load when it navigates)
  {"wait": JS_EXPR, "timeout": SECS}    poll until the expression is truthy
  {"eval": JS_EXPR, "as": NAME}         store the expression's value
  {"sample": JS_EXPR, "as": NAME, "until": JS_EXPR, "every": SECS, "timeout": SECS}
                                        store a list of values, sampled until `until` holds
  {"screenshot": PATH}                  full-page PNG

`console` holds console messages of level warning or error, `errors` uncaught exceptions
and browser log entries of level error (CSP violations, failed loads).
"""

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets


class Page:
    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.pending = {}
        self.events = []
        self.console = []
        self.errors = []
        self.loads = 0

    async def reader(self):
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg:
                fut = self.pending.pop(msg["id"], None)
                if fut and not fut.done():
                    fut.set_result(msg)
                continue
            method = msg.get("method")
            params = msg.get("params", {})
            if method == "Page.loadEventFired":
                self.loads += 1
            elif method == "Runtime.consoleAPICalled":
                if params.get("type") in ("error", "warning", "assert"):
                    text = " ".join(
                        str(a.get("value", a.get("description", ""))) for a in params.get("args", [])
                    )
                    self.console.append({"type": params.get("type"), "text": text})
            elif method == "Runtime.exceptionThrown":
                d = params.get("exceptionDetails", {})
                self.errors.append(
                    {"source": "exception", "text": d.get("exception", {}).get("description") or d.get("text")}
                )
            elif method == "Log.entryAdded":
                e = params.get("entry", {})
                if e.get("level") == "error":
                    self.errors.append({"source": e.get("source"), "text": e.get("text"), "url": e.get("url")})

    async def call(self, method, params=None, timeout=30):
        self.next_id += 1
        i = self.next_id
        fut = asyncio.get_event_loop().create_future()
        self.pending[i] = fut
        await self.ws.send(json.dumps({"id": i, "method": method, "params": params or {}}))
        msg = await asyncio.wait_for(fut, timeout)
        if "error" in msg:
            raise RuntimeError(f"{method}: {msg['error']}")
        return msg.get("result", {})

    async def eval(self, expr):
        r = await self.call(
            "Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluating {expr!r}: {r['exceptionDetails'].get('text')}")
        return r.get("result", {}).get("value")

    async def wait_load(self, before, timeout=30):
        deadline = time.time() + timeout
        while self.loads <= before:
            if time.time() > deadline:
                raise RuntimeError("the page did not load")
            await asyncio.sleep(0.05)
        # Let deferred scripts run.
        await asyncio.sleep(0.2)


async def run(chromium, script):
    profile = tempfile.mkdtemp(prefix="pipe-cdp-")
    args = [
        chromium,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--metrics-recording-only",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
        "about:blank",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    values = {}
    failed = None
    page = None
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.time() + 30
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(open(port_file).read().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        target = next(t for t in targets if t.get("type") == "page")
        async with websockets.connect(target["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024) as ws:
            page = Page(ws)
            reader = asyncio.create_task(page.reader())
            for domain in ("Page", "Runtime", "Log"):
                await page.call(f"{domain}.enable")
            try:
                for step in script:
                    await do(page, step, values)
            except Exception as e:  # reported, not raised: the test asserts on it
                failed = f"{json.dumps(step)}: {e}"
            reader.cancel()
    except Exception as e:
        failed = f"driver: {e}"
    finally:
        try:
            os.killpg(proc.pid, 9)
        except OSError:
            pass
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
    return {
        "values": values,
        "console": page.console if page else [],
        "errors": page.errors if page else [],
        "failed": failed,
    }


async def do(page, step, values):
    if "goto" in step:
        before = page.loads
        await page.call("Page.navigate", {"url": step["goto"]})
        await page.wait_load(before)
    elif "fill" in step:
        sel = json.dumps(step["fill"])
        val = json.dumps(step["value"])
        ok = await page.eval(f"(() => {{ const e = document.querySelector({sel}); if (!e) return false; e.value = {val}; return true; }})()")
        if not ok:
            raise RuntimeError(f"no element {step['fill']}")
    elif "click" in step:
        sel = json.dumps(step["click"])
        before = page.loads
        ok = await page.eval(f"(() => {{ const e = document.querySelector({sel}); if (!e) return false; e.click(); return true; }})()")
        if not ok:
            raise RuntimeError(f"no element {step['click']}")
        if step.get("navigates"):
            await page.wait_load(before)
    elif "wait" in step:
        deadline = time.time() + step.get("timeout", 30)
        while True:
            if await page.eval(f"!!({step['wait']})"):
                break
            if time.time() > deadline:
                raise RuntimeError(f"timed out waiting for {step['wait']}")
            await asyncio.sleep(0.1)
    elif "eval" in step:
        values[step["as"]] = await page.eval(step["eval"])
    elif "sample" in step:
        out = []
        deadline = time.time() + step.get("timeout", 60)
        while True:
            out.append(await page.eval(step["sample"]))
            if await page.eval(f"!!({step['until']})") or time.time() > deadline:
                break
            await asyncio.sleep(step.get("every", 0.25))
        values[step["as"]] = out
    elif "screenshot" in step:
        m = await page.call("Page.getLayoutMetrics")
        size = m.get("cssContentSize") or m.get("contentSize")
        shot = await page.call(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 4000), "scale": 1},
            },
        )
        with open(step["screenshot"], "wb") as f:
            f.write(base64.b64decode(shot["data"]))
    else:
        raise RuntimeError("unknown step")


def main():
    chromium, script_path = sys.argv[1], sys.argv[2]
    with open(script_path) as f:
        script = json.load(f)
    result = asyncio.run(run(chromium, script))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
