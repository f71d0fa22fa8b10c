#!/usr/bin/env python3
"""The Engine API's create+start+wait+remove of a `true` container on the default bridge
network, as pipe's job containers use it (the shared peer, docker_api_bench.py, uses
`--network none`, which skips the veth and iptables set-up). Stdlib only.

Usage: api_bridge.py IMAGE [N=20]   (prints the median c+s+w and total in ms)
       api_bridge.py --jobs IMAGE JOBS STEPS PARALLEL
         the engine's own floor for pipe's job model: JOBS jobs, each a container started on
         the bridge (`tail -f /dev/null`), STEPS execs of `true`, then a forced removal, on
         PARALLEL threads; prints the wall time in seconds
"""
import http.client, json, os, socket, statistics, sys, time

SOCK = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")


class UConn(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("localhost")

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(SOCK)


def call(method, path, body=None):
    c = UConn()
    hdr = {"Content-Type": "application/json"} if body is not None else {}
    c.request(method, "/v1.41" + path, json.dumps(body) if body is not None else None, hdr)
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status >= 300:
        raise RuntimeError(f"{method} {path}: {r.status} {data[:200]!r}")
    ctype = r.getheader("Content-Type", "")
    return json.loads(data) if data and ctype.startswith("application/json") else data


def run_once(image):
    t0 = time.perf_counter()
    cid = call("POST", "/containers/create", {"Image": image, "Cmd": ["true"]})["Id"]
    call("POST", f"/containers/{cid}/start")
    code = call("POST", f"/containers/{cid}/wait")["StatusCode"]
    t1 = time.perf_counter()
    call("DELETE", f"/containers/{cid}")
    t2 = time.perf_counter()
    assert code == 0
    return t1 - t0, t2 - t0


def exec_true(cid):
    eid = call("POST", f"/containers/{cid}/exec",
               {"Cmd": ["true"], "AttachStdout": True, "AttachStderr": True})["Id"]
    call("POST", f"/exec/{eid}/start", {"Detach": False, "Tty": False})
    assert call("GET", f"/exec/{eid}/json")["ExitCode"] == 0


def job(image, steps):
    cid = call("POST", "/containers/create",
               {"Image": image, "Entrypoint": ["tail", "-f", "/dev/null"]})["Id"]
    try:
        call("POST", f"/containers/{cid}/start")
        for _ in range(steps):
            exec_true(cid)
    finally:
        call("DELETE", f"/containers/{cid}?force=true&v=true")


def jobs(image, n, steps, parallel):
    from concurrent.futures import ThreadPoolExecutor
    job(image, 1)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda _: job(image, steps), range(n)))
    print(f"api-jobs{'' if (n, steps, parallel) == (50, 5, 2) else f'-{n}-{steps}-{parallel}'} wall "
          f"{time.perf_counter() - t0:.3f}")


def main():
    if sys.argv[1] == "--jobs":
        image, n, steps, parallel = sys.argv[2], *map(int, sys.argv[3:6])
        jobs(image, n, steps, parallel)
        return
    image = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    run_once(image)
    runs = [run_once(image) for _ in range(n)]
    print(f"api-bridge c+s+w {statistics.median(r[0] for r in runs) * 1e3:.1f}")
    print(f"api-bridge total {statistics.median(r[1] for r in runs) * 1e3:.1f}")


if __name__ == "__main__":
    main()
