"""Secret scan of the objects a push adds: file contents, file paths, and every commit and tag
object whole (headers such as author, committer, tagger and extra headers, and the message).

It owns the diff walk (which lines are new in each commit) and the detect-secrets call. A
line is scanned when it is added by a commit the upstream does not have, compared with the
commit's first parent (a root commit: with the empty tree). By induction over the new
commits this covers every line of every new blob, the same way gitleaks scans `git log -p`.
It must never return or print a whole secret: findings carry a short redacted preview only.
"""

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

RULES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rules.py")
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

# Stock detect-secrets plugins used (all of 1.5.0's) plus our rules in rules.py.
STOCK_PLUGINS = [
    "ArtifactoryDetector", "AWSKeyDetector", "AzureStorageKeyDetector",
    "Base64HighEntropyString", "BasicAuthDetector", "CloudantDetector",
    "DiscordBotTokenDetector", "GitHubTokenDetector", "GitLabTokenDetector",
    "HexHighEntropyString", "IbmCloudIamDetector", "IbmCosHmacDetector",
    "JwtTokenDetector", "KeywordDetector", "MailchimpDetector", "NpmDetector",
    "OpenAIDetector", "PrivateKeyDetector", "PypiTokenDetector", "SendGridDetector",
    "SlackDetector", "SoftlayerDetector", "SquareOAuthDetector", "StripeDetector",
    "TelegramBotTokenDetector", "TwilioKeyDetector",
]
CUSTOM_PLUGINS = [
    "AnthropicKeyDetector", "GitHubFineGrainedTokenDetector", "AWSSecretKeyAssignmentDetector",
    "OpenAIProjectKeyDetector", "GoogleApiKeyDetector", "PrivateKeyArmorDetector",
]
# Filters that only cut false positives of the entropy and keyword plugins. Left out on
# purpose: is_line_allowlisted (a `pragma: allowlist secret` comment written by the agent
# would switch the gate off), is_lock_file and is_swagger_file (skip whole files by name),
# the verification policy (network calls), and the built-in is_non_text_file (skips files
# by extension, e.g. a key committed as `notes.png`).
FILTERS = [
    "detect_secrets.filters.heuristic.is_indirect_reference",
    "detect_secrets.filters.heuristic.is_likely_id_string",
    "detect_secrets.filters.heuristic.is_not_alphanumeric_string",
    "detect_secrets.filters.heuristic.is_potential_uuid",
    "detect_secrets.filters.heuristic.is_prefixed_with_dollar_sign",
    "detect_secrets.filters.heuristic.is_sequential_string",
    "detect_secrets.filters.heuristic.is_templated_secret",
]


# Entropy findings are dropped in these files: they are full of quoted checksums, and a
# pinned-shape secret (AWS, private key, tokens) in them is still caught by its own rule.
LOCK_FILES = {
    "Cargo.lock", "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml",
    "poetry.lock", "Pipfile.lock", "uv.lock", "composer.lock", "Gemfile.lock", "go.sum",
    "flake.lock", "packages.lock.json", "mix.lock", "pubspec.lock", "Podfile.lock",
}
ENTROPY_RULES = {"Hex High Entropy String", "Base64 High Entropy String"}
# A hex string on a line that names a digest and no credential word is a checksum.
DIGEST_WORDS = re.compile(r"(?i)sha[0-9]*|checksum|digest|hash|integrity|commit|\brev\b")
CREDENTIAL_WORDS = re.compile(r"(?i)secret|token|key|pass|auth|cred|private|session|cookie")


def keep(rule: str, basename: str, line: str) -> bool:
    """False for entropy-only noise: checksums in lock files, hex digests named as such."""
    if rule in ENTROPY_RULES and basename in LOCK_FILES:
        return False
    if rule == "Hex High Entropy String" and DIGEST_WORDS.search(line) \
            and not CREDENTIAL_WORDS.search(line):
        return False
    return True


@dataclass(frozen=True)
class Finding:
    commit: str      # full object id of the commit or tag
    kind: str        # "file", "path", "commit header", "commit message", "tag header", "tag message"
    path: str        # file path ("" for messages)
    line: int        # 1-based line in the new file or the message
    rule: str        # detect-secrets secret type
    preview: str     # redacted: a few leading characters and the length

    def describe(self) -> str:
        where = f"file {self.path} line {self.line}" if self.kind == "file" else (
            f"file name {self.path}" if self.kind == "path" else f"{self.kind} line {self.line}")
        return f"commit {self.commit[:12]}: {where}: {self.rule} ({self.preview})"


def redact(value: str) -> str:
    """A preview that identifies a finding without revealing it: at most 4 characters."""
    value = value.strip()
    shown = value[: min(4, max(0, len(value) // 4))]
    return f"{shown}... {len(value)} chars"


class Scanner:
    """Runs detect-secrets over sparse files that keep the original line numbers."""

    def __init__(self, workdir: str):
        from detect_secrets.settings import transient_settings, get_settings

        self._workdir = workdir
        self._ctx = transient_settings({
            "plugins_used": [{"name": n} for n in STOCK_PLUGINS]
            + [{"name": n, "path": "file://" + RULES_FILE} for n in CUSTOM_PLUGINS],
            "filters_used": [{"path": p} for p in FILTERS],
        })
        self._ctx.__enter__()
        get_settings().disable_filters(
            "detect_secrets.filters.heuristic.is_non_text_file",
            "detect_secrets.filters.common.is_invalid_file",
        )
        from detect_secrets.settings import get_plugins

        loaded = {type(p).__name__ for p in get_plugins()}
        missing = set(STOCK_PLUGINS + CUSTOM_PLUGINS) - loaded
        if missing:
            raise RuntimeError(f"secret scanner plugins failed to load: {sorted(missing)}")
        self._n = 0

    def close(self) -> None:
        self._ctx.__exit__(None, None, None)

    def scan_lines(self, name: str, lines: Dict[int, str]) -> List[Tuple[int, str, str]]:
        """Scan `lines` (line number -> text) as if they were lines of a file called `name`.

        Returns (line, rule, redacted preview), one per secret and line, sorted.
        """
        if not lines:
            return []
        from detect_secrets.core.scan import scan_file

        self._n += 1
        # Keep the extension: the keyword plugin picks its patterns by file type.
        base = os.path.basename(name) or "message"
        ext = os.path.splitext(base)[1][:16]
        safe_ext = ext if re.fullmatch(r"\.[A-Za-z0-9_+-]*", ext or ".") else ""
        path = os.path.join(self._workdir, f"scan{self._n}{safe_ext}")
        last = max(lines)
        with open(path, "w", encoding="utf-8", errors="replace") as f:
            for n in range(1, last + 1):
                f.write(lines.get(n, "").replace("\r", " ") + "\n")
        by_line: Dict[int, Tuple[List[str], str]] = {}
        for secret in scan_file(path):
            if not keep(secret.type, base, lines.get(secret.line_number, "")):
                continue
            rules, preview = by_line.setdefault(secret.line_number,
                                                ([], redact(secret.secret_value or "")))
            if secret.type not in rules:
                rules.append(secret.type)
        os.unlink(path)
        # One finding per line; several rules firing on one line are listed together.
        return [(n, ", ".join(sorted(r)), p) for n, (r, p) in sorted(by_line.items())]


def git(*args: str, input_bytes: Optional[bytes] = None) -> bytes:
    proc = subprocess.run(["git", *args], input=input_bytes, capture_output=True, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"git {args[0]} failed: {err[-1] if err else proc.returncode}")
    return proc.stdout


def unquote_path(raw: bytes) -> str:
    """Undo git's C-style quoting of a path in a diff header ("a\\tb", octal bytes)."""
    if not (raw.startswith(b'"') and raw.endswith(b'"')):
        return raw.decode("utf-8", "replace")
    out = bytearray()
    body = raw[1:-1]
    i = 0
    escapes = {ord("n"): 10, ord("t"): 9, ord("r"): 13, ord("a"): 7, ord("b"): 8,
               ord("f"): 12, ord("v"): 11, ord('"'): 34, ord("\\"): 92}
    while i < len(body):
        c = body[i]
        if c == 92 and i + 1 < len(body):
            nxt = body[i + 1]
            if 48 <= nxt <= 55 and i + 4 <= len(body):
                out.append(int(body[i + 1:i + 4], 8) & 0xFF)
                i += 4
                continue
            out.append(escapes.get(nxt, nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return out.decode("utf-8", "replace")


HUNK = re.compile(rb"^@@ -[0-9]+(?:,[0-9]+)? \+([0-9]+)(?:,[0-9]+)? @@")


def parse_added_lines(patch: bytes) -> Dict[str, Dict[int, str]]:
    """Map each file of a `git diff -U0` patch to its added lines (new line number -> text)."""
    files: Dict[str, Dict[int, str]] = {}
    current: Optional[Dict[int, str]] = None
    next_line = 0
    in_hunk = False
    for raw in patch.split(b"\n"):
        if raw.startswith(b"diff --git "):
            current, in_hunk = None, False
        elif not in_hunk and raw.startswith(b"+++ "):
            # git appends a tab after a name holding a space (for GNU patch); a name with a
            # real tab in it is always C-quoted, so the tab can go.
            target = raw[4:].removesuffix(b"\t")
            if target == b"/dev/null":
                current = None
            else:
                name = unquote_path(target)
                name = name[2:] if name.startswith("b/") else name
                current = files.setdefault(name, {})
        elif raw.startswith(b"@@ "):
            m = HUNK.match(raw)
            if m:
                next_line, in_hunk = int(m.group(1)), True
        elif in_hunk and raw.startswith(b"+"):
            if current is not None:
                current[next_line] = raw[1:].decode("utf-8", "replace")
            next_line += 1
        elif in_hunk and raw.startswith(b" "):
            next_line += 1
    return files


def new_commits(tips: Iterable[str]) -> List[str]:
    """Commits reachable from `tips` that no ref of the gate (= the upstream's refs) has."""
    tips = list(tips)
    if not tips:
        return []
    out = git("rev-list", "--topo-order", "--reverse", "--stdin", "--not", "--all",
              input_bytes=("\n".join(tips) + "\n").encode())
    return [c for c in out.decode().split() if c]


def scan_object(scanner: Scanner, oid: str, kind: str) -> List[Finding]:
    """Scan a commit or tag object whole, as `git cat-file` gives it raw: every header
    (tree/object, parents, author, committer, tagger, and any extra header, multi-line
    continuations included: fsck accepts unknown headers of any length) and the message.
    Header lines are numbered in the object, message lines in the message."""
    raw = git("cat-file", kind, oid).decode("utf-8", "replace")
    header, _sep, _body = raw.partition("\n\n")
    n_header = len(header.split("\n"))
    lines = {i: t for i, t in enumerate(raw.split("\n"), start=1)}
    name = "COMMIT_EDITMSG" if kind == "commit" else "TAG_EDITMSG"
    findings = []
    for line, rule, preview in scanner.scan_lines(name, lines):
        if line <= n_header:
            findings.append(Finding(oid, f"{kind} header", "", line, rule, preview))
        else:
            findings.append(Finding(oid, f"{kind} message", "", line - n_header - 1, rule,
                                    preview))
    return findings


def scan_commit(scanner: Scanner, commit: str) -> List[Finding]:
    findings = scan_object(scanner, commit, "commit")

    parents = git("rev-list", "--parents", "-n", "1", commit).decode().split()[1:]
    base = parents[0] if parents else EMPTY_TREE
    patch = git("-c", "core.quotePath=true", "diff-tree", "-p", "-U0", "-a", "--no-renames",
                "--no-color", "--no-ext-diff", "--no-textconv", "--ignore-submodules=none",
                base, commit)
    added = parse_added_lines(patch)
    for path, lines in sorted(added.items()):
        for line, rule, preview in scanner.scan_lines(path, lines):
            findings.append(Finding(commit, "file", path, line, rule, preview))
    # Paths: a file may be named after a secret.
    names = git("diff-tree", "-r", "-z", "--name-only", "--no-renames", "--diff-filter=AMT",
                base, commit).split(b"\0")
    paths = sorted({n.decode("utf-8", "replace") for n in names if n})
    path_lines = {i: p for i, p in enumerate(paths, start=1)}
    for line, rule, preview in scanner.scan_lines("paths", path_lines):
        findings.append(Finding(commit, "path", path_lines[line], line, rule, preview))
    return findings


def scan_tag(scanner: Scanner, tag: str) -> List[Finding]:
    """Scan an annotated tag object whole: its headers (name, tagger, ...) and message."""
    return scan_object(scanner, tag, "tag")


def scan_push(tips: Iterable[str], tags: Iterable[str]) -> Iterator[Finding]:
    """Scan everything the pushed `tips` add over the gate's refs, and the new tag objects."""
    with tempfile.TemporaryDirectory(prefix="git-gate-scan-") as workdir:
        scanner = Scanner(workdir)
        try:
            for tag in tags:
                yield from scan_tag(scanner, tag)
            for commit in new_commits(tips):
                yield from scan_commit(scanner, commit)
        finally:
            scanner.close()
