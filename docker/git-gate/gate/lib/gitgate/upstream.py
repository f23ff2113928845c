"""Everything the gate does with an upstream: the private key copy, the pinned known_hosts,
the bare repository, `git fetch` from it and `git push` to it over ssh.

It must never connect without StrictHostKeyChecking against the pinned key, never use a key
other than the entry's identity file (no agent, no ~/.ssh), and never put the key's content
in an error or a log line. Errors returned are single sanitized lines meant for the agent.
"""

import fcntl
import os
import subprocess
from contextlib import contextmanager
from typing import Iterator, List, Tuple

from .config import KEYS_DIR, KNOWN_HOSTS_DIR, REPOS_DIR, ConfigError, Repo

HOOKS_DIR = "/opt/git-gate/hooks"
FETCH_TIMEOUT = 180
PUSH_TIMEOUT = 600
ZERO = "0" * 40


class UpstreamError(Exception):
    """A one-line, secret-free description of what went wrong with the upstream."""


def ssh_command(repo: Repo) -> str:
    # Every path here is made by the gate from a validated repo name: no shell quoting needed.
    return " ".join([
        "ssh", "-F", "/dev/null", "-i", repo.key_copy,
        "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={repo.known_hosts_copy}",
        "-o", "GlobalKnownHostsFile=/dev/null", "-o", "UpdateHostKeys=no",
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=20",
        "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4", "-o", "LogLevel=ERROR",
    ])


def git_env(repo: Repo) -> dict:
    env = dict(os.environ)
    env.update({
        "GIT_SSH_COMMAND": ssh_command(repo),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
    })
    env.pop("SSH_AUTH_SOCK", None)
    return env


BOILERPLATE = (
    "fatal: Could not read from remote repository",
    "Please make sure you have the correct access rights",
    "and the repository exists",
)
# ssh failures worth naming plainly, first match wins.
HINTS = (
    ("Host key verification failed", "the upstream's ssh host key does not match the pinned "
     "known_host_key (Host key verification failed)"),
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", "the upstream's ssh host key does not match the "
     "pinned known_host_key (Host key verification failed)"),
    ("Permission denied (publickey", "the upstream refused the identity file "
     "(Permission denied (publickey))"),
)


def one_line(stderr: bytes, limit: int = 400) -> str:
    """The telling part of a git/ssh error on one line, control characters removed."""
    raw = stderr.decode("utf-8", "replace")
    for needle, hint in HINTS:
        if needle in raw:
            return hint
    lines = [l.strip() for l in raw.splitlines()]
    lines = [l for l in lines if l and not set(l) <= {"@"}
             and not any(l.startswith(b) for b in BOILERPLATE)]
    text = " / ".join(lines[-3:]) if lines else "no error output"
    text = "".join(c if c.isprintable() else " " for c in text)
    return text[:limit]


def run_git(repo: Repo, args: List[str], timeout: int) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", f"--git-dir={repo.git_dir}", *args], env=git_env(repo),
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise UpstreamError(f"git {args[0]} to the upstream of {repo.name} timed out after "
                            f"{timeout} s") from None


def prepare(repo: Repo) -> None:
    """Copy the key and known_hosts into the gate's private home, create the bare repo."""
    for d in (REPOS_DIR, KEYS_DIR, KNOWN_HOSTS_DIR):
        os.makedirs(d, mode=0o700, exist_ok=True)
    try:
        with open(repo.identity_file, "rb") as f:
            key = f.read()
    except OSError as e:
        raise ConfigError(f"repo {repo.name}: identity_file {repo.identity_file} is not readable "
                          f"by uid {os.getuid()} ({e.strerror}); copy it in owned by that uid, "
                          "mode 0600") from None
    if b"PRIVATE KEY" not in key:
        raise ConfigError(f"repo {repo.name}: identity_file {repo.identity_file} is not a "
                          "private key in OpenSSH or PEM format")
    tmp = repo.key_copy + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    os.replace(tmp, repo.key_copy)
    check = subprocess.run(["ssh-keygen", "-y", "-P", "", "-f", repo.key_copy],
                           capture_output=True, check=False)
    if check.returncode != 0:
        raise ConfigError(f"repo {repo.name}: identity_file {repo.identity_file} cannot be used "
                          "without a passphrase (or is not a valid key); give the gate a key "
                          "without a passphrase")
    write_known_hosts(repo)
    if not os.path.isdir(repo.git_dir):
        subprocess.run(["git", "init", "--quiet", "--bare", repo.git_dir], check=True)
    settings = [
        ("remote.upstream.url", repo.upstream),
        ("core.hooksPath", HOOKS_DIR),
        ("gitgate.name", repo.name),
        ("gitgate.allowForce", "true" if repo.allow_force else "false"),
        ("receive.fsckObjects", "true"),
        # Bounds one push (pack size); the upstream has the history, pushes are increments.
        ("receive.maxInputSize", "1g"),
        ("receive.denyDeletes", "false"),
        ("receive.denyNonFastForwards", "false"),
        ("receive.advertisePushOptions", "false"),
        ("gc.auto", "0"),
    ]
    for key_name, value in settings:
        subprocess.run(["git", f"--git-dir={repo.git_dir}", "config", key_name, value], check=True)
    open(os.path.join(repo.git_dir, "git-daemon-export-ok"), "a").close()


def write_known_hosts(repo: Repo) -> None:
    """Copy the pinned host key, naming it as ssh will look it up ([host]:port for port != 22).

    The launcher writes the manifest's `known_host_key` ("host keytype base64"); when the
    upstream uses another port, the plain host name would never match, so it is rewritten.
    """
    try:
        with open(repo.known_hosts_file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"repo {repo.name}: known_hosts_file {repo.known_hosts_file} is not "
                          f"readable: {e}") from None
    out, matched = [], False
    want = repo.host_pattern()
    for line in lines:
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0].startswith("@") or fields[0].startswith("|"):
            out.append(line)  # markers and hashed names: ssh decides
            matched = True
            continue
        if len(fields) < 3:
            raise ConfigError(f"repo {repo.name}: known_hosts_file {repo.known_hosts_file}: "
                              f"line {line[:40]!r} is not 'host keytype base64-key'")
        hosts = fields[0].split(",")
        if want in hosts:
            matched = True
        elif repo.host in hosts:
            hosts = [want if h == repo.host else h for h in hosts]
            matched = True
        out.append(" ".join([",".join(hosts), *fields[1:]]))
    if not matched:
        raise ConfigError(f"repo {repo.name}: known_hosts_file {repo.known_hosts_file} has no "
                          f"key for {repo.host} (the upstream's host); known_host_key must start "
                          f"with '{repo.host} '")
    tmp = repo.known_hosts_copy + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    os.replace(tmp, repo.known_hosts_copy)


@contextmanager
def repo_lock(repo: Repo) -> Iterator[None]:
    fd = os.open(os.path.join(repo.git_dir, "gitgate.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def fetch(repo: Repo) -> None:
    """Mirror the upstream's branches and tags into the gate's repo (the gate's refs = upstream)."""
    with repo_lock(repo):
        proc = run_git(repo, ["fetch", "--quiet", "--prune", "--no-write-fetch-head", "upstream",
                              "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
                       FETCH_TIMEOUT)
        if proc.returncode != 0:
            raise UpstreamError(f"cannot fetch {repo.name} from its upstream: "
                                f"{one_line(proc.stderr)}")
        head = subprocess.run(["git", f"--git-dir={repo.git_dir}", "symbolic-ref", "HEAD"],
                              capture_output=True, check=False).stdout.decode().strip()
        has_head = subprocess.run(["git", f"--git-dir={repo.git_dir}", "rev-parse", "--verify",
                                   "--quiet", head or "HEAD"], capture_output=True,
                                  check=False).returncode == 0
        if not has_head:
            ls = run_git(repo, ["ls-remote", "--symref", "upstream", "HEAD"], FETCH_TIMEOUT)
            for line in ls.stdout.decode("utf-8", "replace").splitlines():
                if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
                    target = line[len("ref: "):-len("\tHEAD")]
                    subprocess.run(["git", f"--git-dir={repo.git_dir}", "symbolic-ref", "HEAD",
                                    target], capture_output=True, check=False)


def push(repo: Repo, updates: List[Tuple[str, str, str]], force: bool) -> str:
    """Push (old, new, ref) updates atomically; a lease pins every ref to what the gate saw.

    Returns git's porcelain summary; raises UpstreamError when anything was not accepted.
    """
    args = ["push", "--atomic", "--porcelain", "--no-verify"]
    refspecs = []
    for old, new, ref in updates:
        if force:
            # Only a forced update needs the lease; a plain one is refused upstream unless it
            # fast-forwards whatever the upstream has now.
            args.append(f"--force-with-lease={ref}:{'' if old == ZERO else old}")
        if new == ZERO:
            refspecs.append(f":{ref}")
        else:
            refspecs.append(f"{'+' if force else ''}{new}:{ref}")
    proc = run_git(repo, [*args, "upstream", *refspecs], PUSH_TIMEOUT)
    if proc.returncode != 0:
        rejected = [l for l in proc.stdout.decode("utf-8", "replace").splitlines()
                    if l.startswith("!")]
        detail = "; ".join(r.replace("\t", " ") for r in rejected)[:300]
        raise UpstreamError(f"the upstream of {repo.name} did not accept the push "
                            f"({detail or one_line(proc.stderr)})")
    return proc.stdout.decode("utf-8", "replace")
