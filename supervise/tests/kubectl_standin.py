#!/usr/bin/env python3
"""A stand-in for kubectl, the API server and kubelet: there is no cluster
on this machine (docs/kubernetes.md says what was and was not verified).

It does only what `bottle supervise --k8s` asks of kubectl, as a cluster
would do it, on local directories under $STANDIN_ROOT:

- `-n NS exec deploy/NAME -- /bottle-supervise --state /state ARGS...` runs
  the real sidecar binary ($STANDIN_SIDECAR) on the sidecar "Pod"'s state
  directory ($STANDIN_ROOT/pod);
- `apply -f -` takes ConfigMaps from stdin and writes each one as kubelet
  writes a ConfigMap volume (key symlinks through `..data`, an update
  swapped in by renaming a new `..data` over the old) at
  $STANDIN_ROOT/configmaps/<name>/;
- `-n NS rollout restart deploy/NAME` is recorded.

Every invocation is appended to $STANDIN_ROOT/kubectl.log (argv only).
"""

import json
import os
import shutil
import sys
import time

import yaml


def publish(d, data):
    os.makedirs(d, exist_ok=True)
    version = os.path.join(d, "..%d" % time.time_ns())
    os.mkdir(version)
    for key, text in data.items():
        with open(os.path.join(version, key), "w") as f:
            f.write(text)
        link = os.path.join(d, key)
        if not os.path.islink(link):
            os.symlink(os.path.join("..data", key), link)
    old = os.path.join(d, "..data")
    previous = os.readlink(old) if os.path.islink(old) else None
    tmp = os.path.join(d, "..data_tmp")
    os.symlink(os.path.basename(version), tmp)
    os.rename(tmp, old)
    for name in os.listdir(d):
        p = os.path.join(d, name)
        if os.path.islink(p) and not name.startswith("..") and name not in data:
            os.unlink(p)
    if previous:
        shutil.rmtree(os.path.join(d, previous))


def main(argv):
    root = os.environ["STANDIN_ROOT"]
    with open(os.path.join(root, "kubectl.log"), "a") as log:
        log.write(json.dumps(argv) + "\n")
    args = list(argv)
    if args[:1] == ["-n"]:
        args = args[2:]
    if args == ["apply", "-f", "-"]:
        for doc in yaml.safe_load_all(sys.stdin):
            if not doc:
                continue
            if doc.get("kind") != "ConfigMap":
                sys.exit("stand-in: applies ConfigMaps only, got %s" % doc.get("kind"))
            name = doc["metadata"]["name"]
            publish(os.path.join(root, "configmaps", name), doc.get("data") or {})
            print("configmap/%s configured" % name)
        return
    if args[:1] == ["exec"] and args[2:3] == ["--"]:
        cmd = args[3:]
        pod = os.path.join(root, "pod")
        cmd = [
            os.environ["STANDIN_SIDECAR"] if c == "/bottle-supervise" else pod if c == "/state" else c
            for c in cmd
        ]
        os.execv(cmd[0], cmd)
    if args[:2] == ["rollout", "restart"]:
        print("%s restarted" % args[2])
        return
    sys.exit("stand-in: unsupported: %s" % " ".join(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
