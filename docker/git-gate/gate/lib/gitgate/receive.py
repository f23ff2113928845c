"""The pre-receive decision: which ref updates are allowed, the secret scan, the upstream push.

Runs inside `git receive-pack` (objects still in quarantine, refs not yet updated, so the
gate's refs are the upstream's as fetched by the access hook just before). It must refuse
the whole push when anything is wrong, and succeed only after the upstream accepted it, so
the agent never sees a push as landed when it did not land.
"""

import subprocess
import sys
from typing import List, TextIO, Tuple

from . import scan
from .upstream import ZERO, UpstreamError, fetch, push, repo_lock
from .config import Repo

MAX_FINDINGS_SHOWN = 20


def object_type(oid: str) -> str:
    return subprocess.run(["git", "cat-file", "-t", oid], capture_output=True,
                          check=False).stdout.decode().strip()


def is_ancestor(old: str, new: str) -> bool:
    return subprocess.run(["git", "merge-base", "--is-ancestor", old, new],
                          capture_output=True, check=False).returncode == 0


def check_updates(repo: Repo, updates: List[Tuple[str, str, str]]) -> List[str]:
    """Refusals for the ref updates themselves (before any scan)."""
    problems = []
    for old, new, ref in updates:
        if not (ref.startswith("refs/heads/") or ref.startswith("refs/tags/")):
            problems.append(f"{ref}: only branches (refs/heads/) and tags (refs/tags/) can be pushed")
            continue
        if new == ZERO:
            if not repo.allow_force:
                problems.append(f"{ref}: deleting a ref is refused (allow_force is false for "
                                f"{repo.name})")
            continue
        kind = object_type(new)
        if ref.startswith("refs/heads/") and kind != "commit":
            problems.append(f"{ref}: a branch must point to a commit, not a {kind or 'missing object'}")
            continue
        if ref.startswith("refs/tags/") and kind not in ("commit", "tag"):
            problems.append(f"{ref}: a tag must point to a commit or an annotated tag, not a {kind}")
            continue
        if old != ZERO and not repo.allow_force:
            if ref.startswith("refs/tags/"):
                problems.append(f"{ref}: moving an existing tag is refused (allow_force is false "
                                f"for {repo.name})")
            elif not is_ancestor(old, new):
                problems.append(f"{ref}: non-fast-forward update (force push) is refused "
                                f"(allow_force is false for {repo.name}); fetch and rebase or merge")
    return problems


def new_tag_objects(updates: List[Tuple[str, str, str]]) -> Tuple[List[str], List[str], List[str]]:
    """(commit tips, tag objects, problems): peel annotated tags, collecting every tag object."""
    tips, tags, problems = [], [], []
    for _old, new, ref in updates:
        if new == ZERO:
            continue
        oid = new
        for _ in range(16):  # tags of tags: bounded
            if object_type(oid) != "tag":
                break
            tags.append(oid)
            raw = subprocess.run(["git", "cat-file", "tag", oid], capture_output=True,
                                 check=False).stdout.decode("utf-8", "replace")
            target = next((l[7:] for l in raw.splitlines() if l.startswith("object ")), "")
            oid = target.strip()
        else:
            problems.append(f"{ref}: tag chain too deep")
            continue
        if object_type(oid) != "commit":
            problems.append(f"{ref}: tags must point (through annotated tags) to a commit")
            continue
        tips.append(oid)
    return tips, tags, problems


def pre_receive(repo: Repo, stdin: TextIO, out: TextIO) -> int:
    updates = []
    for line in stdin:
        parts = line.split()
        if len(parts) == 3:
            updates.append((parts[0], parts[1], parts[2]))
    if not updates:
        return 0

    def refuse(title: str, lines: List[str]) -> int:
        out.write(f"git-gate: push to {repo.name} REFUSED: {title}\n")
        for l in lines:
            out.write(f"git-gate:   {l}\n")
        out.write("git-gate: nothing was pushed to the upstream.\n")
        out.flush()
        return 1

    problems = check_updates(repo, updates)
    if problems:
        return refuse("ref update not allowed", problems)
    tips, tags, problems = new_tag_objects(updates)
    if problems:
        return refuse("bad tag", problems)
    try:
        findings = list(scan.scan_push(tips, tags))
    except Exception as e:  # the scan failing must refuse the push, never pass it
        # Only the type: a parser's message could quote the pushed content.
        return refuse("the secret scan failed", [f"{type(e).__name__}; report this to "
                                                 "the bottle's owner"])
    if findings:
        shown = [f.describe() for f in findings[:MAX_FINDINGS_SHOWN]]
        if len(findings) > MAX_FINDINGS_SHOWN:
            shown.append(f"... and {len(findings) - MAX_FINDINGS_SHOWN} more")
        shown.append("remove the secret from every commit (e.g. git rebase -i / git commit "
                      "--amend), rotate it if it was real, and push again")
        return refuse(f"{len(findings)} possible secret(s) found", shown)
    force = repo.allow_force and any(
        new == ZERO or (old != ZERO and (ref.startswith("refs/tags/") or not is_ancestor(old, new)))
        for old, new, ref in updates)
    try:
        push(repo, updates, force)
    except UpstreamError as e:
        return refuse("the upstream push failed", [str(e)])
    out.write(f"git-gate: scanned and pushed to the upstream of {repo.name}.\n")
    out.flush()
    return 0


def main(repo: Repo) -> int:
    # One push decision per repo at a time, and no access-hook fetch rewriting the refs
    # while a push is being scanned and sent upstream.
    with repo_lock(repo):
        return pre_receive(repo, sys.stdin, sys.stderr)


def access_hook(repo: Repo) -> int:
    """Before every upload-pack and receive-pack: refresh the gate's mirror of the upstream."""
    try:
        fetch(repo)
    except UpstreamError as e:
        # git daemon sends this one line to the client as the reason it declined.
        print(f"git-gate: {e}")
        print(f"git-gate: access to {repo.name} declined: {e}", file=sys.stderr)
        return 1
    return 0
