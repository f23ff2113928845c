"""The gate's configuration: /etc/git-gate/config.json, written by the launcher.

Owns parsing and validating the config and the paths derived from it. It must never read
or print the identity file's content; errors name the file, the repo index and the field.
"""

import json
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple
from urllib.parse import urlsplit

CONFIG_PATH = "/etc/git-gate/config.json"
HOME = "/srv/git-gate"
REPOS_DIR = HOME + "/repos"
KEYS_DIR = HOME + "/keys"
KNOWN_HOSTS_DIR = HOME + "/known_hosts"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
KEYS = {"name", "upstream", "identity_file", "known_hosts_file", "allow_force"}


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Repo:
    name: str
    upstream: str
    host: str
    port: int
    identity_file: str
    known_hosts_file: str
    allow_force: bool

    @property
    def git_dir(self) -> str:
        return f"{REPOS_DIR}/{self.name}.git"

    @property
    def key_copy(self) -> str:
        return f"{KEYS_DIR}/{self.name}"

    @property
    def known_hosts_copy(self) -> str:
        return f"{KNOWN_HOSTS_DIR}/{self.name}"

    def host_pattern(self) -> str:
        """How ssh looks the upstream up in known_hosts."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


SCP_LIKE = re.compile(r"(?:[A-Za-z0-9._-]+@)?([A-Za-z0-9._-]+):([^/].*|/.+)")


def parse_upstream(url: str) -> Tuple[str, int]:
    """(host, port) of an ssh URL: ssh://[user@]host[:port]/path or scp-like user@host:path."""
    if "://" not in url:
        m = SCP_LIKE.fullmatch(url)
        if not m or m.group(1).startswith("-") or m.group(2).startswith("-"):
            raise ValueError("must be ssh://[user@]host[:port]/path or user@host:path")
        return m.group(1), 22
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname or not parts.path or parts.path == "/":
        raise ValueError("must be ssh://[user@]host[:port]/path or user@host:path")
    if parts.password is not None:
        raise ValueError("must not carry a password (use identity_file)")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    try:
        port = parts.port or 22
    except ValueError as e:
        raise ValueError(f"has a bad port: {e}") from None
    host = parts.hostname
    if host.startswith("-") or not re.fullmatch(r"[A-Za-z0-9.:\[\]_-]+", host):
        raise ValueError("has a host name ssh would not accept")
    return host, port


def load(path: str = CONFIG_PATH) -> List[Repo]:
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; the launcher must copy it in before start") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not readable JSON: {e}") from None
    if not isinstance(raw, dict) or set(raw) != {"repos"} or not isinstance(raw["repos"], list):
        raise ConfigError(f'{path}: must be an object with exactly one key "repos" (a list)')
    errors: List[str] = []
    repos: List[Repo] = []
    seen = set()
    for i, entry in enumerate(raw["repos"]):
        where = f"{path}: repos[{i}]"
        if not isinstance(entry, dict):
            errors.append(f"{where}: must be an object")
            continue
        unknown = set(entry) - KEYS
        if unknown:
            errors.append(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(KEYS)}")
        missing = {"name", "upstream", "identity_file", "known_hosts_file"} - set(entry)
        if missing:
            errors.append(f"{where}: missing key(s) {sorted(missing)}")
            continue
        name, upstream = entry["name"], entry["upstream"]
        allow_force = entry.get("allow_force", False)
        if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name.endswith(".git"):
            errors.append(f"{where}.name: {name!r} must be 1-64 letters, digits, '.', '_' or '-' "
                          "starting with a letter or digit, without a .git suffix")
            continue
        if name in seen:
            errors.append(f"{where}.name: {name!r} is used twice")
        seen.add(name)
        if not isinstance(allow_force, bool):
            errors.append(f"{where}.allow_force: must be true or false")
        host: Optional[str] = None
        port = 22
        if not isinstance(upstream, str):
            errors.append(f"{where}.upstream: must be a string")
        else:
            try:
                host, port = parse_upstream(upstream)
            except ValueError as e:
                errors.append(f"{where}.upstream: {upstream!r} {e}")
        for key in ("identity_file", "known_hosts_file"):
            if not isinstance(entry[key], str) or not entry[key].startswith("/"):
                errors.append(f"{where}.{key}: must be an absolute path")
        if host is not None and not errors:
            repos.append(Repo(name, upstream, host, port, entry["identity_file"],
                              entry["known_hosts_file"], bool(allow_force)))
    if errors:
        raise ConfigError("\n".join(errors))
    return repos


def repo_by_git_dir(repos: List[Repo], git_dir: str) -> Optional[Repo]:
    for repo in repos:
        if git_dir.rstrip("/") == repo.git_dir:
            return repo
    return None
