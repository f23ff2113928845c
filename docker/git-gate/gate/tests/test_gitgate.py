"""Unit and property tests of the gate's parsers and scanner, run inside the image (real git,
real detect-secrets) by launcher/tests/git_gate.rs. Randomized cases use fixed seeds so a
failure is reproducible; each seed is in the assertion message.
"""

import json
import os
import random
import subprocess
import sys
import tempfile
import unittest

sys.path[:0] = ["/opt/git-gate/lib", "/opt/git-gate/vendor"]

from gitgate import config, scan  # noqa: E402

ENV = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t.invalid",
           GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t.invalid", GIT_CONFIG_NOSYSTEM="1")

# Lines that look like diff syntax, to confuse a sloppy patch parser.
TRICKY = ["+", "++ x", "+++ b/evil", "--- a/evil", "@@ -1 +1 @@", "diff --git a/x b/x", "",
          " lead", "\\ No newline", "\tTab", "ünïcödé", "a\x00b", "\x7f\x01"]
NAMES = ["a.txt", "dir/b.py", "sp ace.md", "tab\tname", 'quo"te', "nl\nname", "ünï.txt",
         "back\\slash", "-dash", "deep/er/c.env"]


def sh(cwd, *args, data=None):
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, input=data, capture_output=True,
                          check=True).stdout


def is_subsequence(small, big):
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


class AddedLinesProperty(unittest.TestCase):
    def test_added_lines_agree_with_git(self):
        for seed in range(12):
            rnd = random.Random(seed)
            with tempfile.TemporaryDirectory() as d:
                sh(d, "init", "-q", "-b", "main")
                files = {}
                for step in range(6):
                    old = dict(files)
                    for name in rnd.sample(NAMES, rnd.randint(1, 4)):
                        if name in files and rnd.random() < 0.2:
                            del files[name]
                            continue
                        lines = list(files.get(name, []))
                        for _ in range(rnd.randint(1, 8)):
                            op = rnd.random()
                            pos = rnd.randint(0, len(lines))
                            word = rnd.choice(TRICKY + [f"line {rnd.randint(0, 99)}"])
                            if op < 0.6 or not lines:
                                lines.insert(pos, word)
                            elif op < 0.8:
                                del lines[min(pos, len(lines) - 1)]
                            else:
                                lines[min(pos, len(lines) - 1)] = word
                        files[name] = lines
                    for name in set(old) - set(files):
                        os.unlink(os.path.join(d, name))
                    for name, lines in files.items():
                        path = os.path.join(d, name)
                        os.makedirs(os.path.dirname(path), exist_ok=True)
                        with open(path, "wb") as f:
                            eol = "\n" if lines and rnd.random() < 0.8 else ""
                            f.write(("\n".join(lines) + eol)
                                    .encode("utf-8"))
                    sh(d, "add", "-A")
                    sh(d, "commit", "-q", "--allow-empty", "-m", f"step {step}")
                    parent = "HEAD~1" if step else scan.EMPTY_TREE
                    patch = sh(d, "-c", "core.quotePath=true", "diff-tree", "-p", "-U0", "-a",
                               "--no-renames", parent, "HEAD")
                    added = scan.parse_added_lines(patch)
                    for name, lines in files.items():
                        with open(os.path.join(d, name), "rb") as f:
                            new = f.read().decode("utf-8", "replace")
                        new_lines = new.split("\n")
                        if new.endswith("\n") or not new:
                            new_lines.pop()
                        got = added.get(name, {})
                        msg = f"seed {seed} step {step} file {name!r}"
                        for n, text in got.items():
                            self.assertEqual(new_lines[n - 1], text, msg)
                        kept = [l for i, l in enumerate(new_lines, 1) if i not in got]
                        old_lines = old.get(name, [])
                        self.assertTrue(is_subsequence(kept, old_lines), f"{msg} kept={kept!r} old={old_lines!r} got={got!r}")
                    self.assertLessEqual(set(added), set(files), f"seed {seed}: deleted files")


class UnquoteProperty(unittest.TestCase):
    def test_unquote_inverts_git_quoting(self):
        rnd = random.Random(7)
        alphabet = "ab c\t\"\\é€\x01\x7f\n"
        with tempfile.TemporaryDirectory() as d:
            sh(d, "init", "-q")
            names = {"".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 8))).strip("/")
                     for _ in range(200)}
            names = {n for n in names if n and n not in (".", "..") and "/" not in n}
            for n in names:
                with open(os.path.join(d, n), "w") as f:
                    f.write("x")
            sh(d, "add", "-A")
            listed = sh(d, "-c", "core.quotePath=true", "ls-files").split(b"\n")
            got = {scan.unquote_path(l) for l in listed if l}
            self.assertEqual(got, names)


class ConfigErrors(unittest.TestCase):
    def load(self, raw):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write(raw if isinstance(raw, str) else json.dumps(raw))
        try:
            return config.load(f.name)
        finally:
            os.unlink(f.name)

    def entry(self, **kw):
        e = {"name": "widget", "upstream": "ssh://git@h/r.git", "identity_file": "/k",
             "known_hosts_file": "/kh", "allow_force": False}
        e.update(kw)
        return {"repos": [e]}

    def test_good(self):
        repo, = self.load(self.entry(upstream="ssh://git@host.example:2222/srv/x.git"))
        self.assertEqual((repo.host, repo.port), ("host.example", 2222))
        self.assertEqual(repo.host_pattern(), "[host.example]:2222")
        repo, = self.load(self.entry(upstream="git@github.com:acme/widget.git"))
        self.assertEqual((repo.host, repo.port), ("github.com", 22))

    def test_errors_name_the_field(self):
        cases = [
            ("{", "not readable JSON"),
            ({"repo": []}, 'exactly one key "repos"'),
            (self.entry(extra=1), "repos[0]: unknown key(s) ['extra']"),
            (self.entry(name="../x"), "repos[0].name"),
            (self.entry(name="x.git"), "repos[0].name"),
            (self.entry(upstream="git@-oProxyCommand=x:w.git"), "repos[0].upstream"),
            (self.entry(upstream="git@host:-w.git"), "repos[0].upstream"),
            (self.entry(upstream="file:///srv/w.git"), "must be ssh://"),
            (self.entry(upstream="https://github.com/acme/w.git"), "must be ssh://"),
            (self.entry(upstream="ssh://u:pw@h/r.git"), "password"),
            (self.entry(upstream="ssh://-oProxyCommand=x/r.git"), "repos[0].upstream"),
            (self.entry(identity_file="keys/w"), "repos[0].identity_file"),
            (self.entry(allow_force="yes"), "repos[0].allow_force"),
            ({"repos": [self.entry()["repos"][0]] * 2}, "used twice"),
        ]
        for raw, needle in cases:
            with self.assertRaises(config.ConfigError, msg=needle) as cm:
                self.load(raw)
            self.assertIn(needle, str(cm.exception))

    def test_parse_upstream_never_crashes(self):
        rnd = random.Random(3)
        alphabet = "ssh:/@[]-_.%?#0123456789abc"
        for _ in range(3000):
            url = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 30)))
            try:
                host, port = config.parse_upstream(url)
            except ValueError:
                continue
            self.assertFalse(host.startswith("-"), url)
            self.assertTrue(0 < port < 65536, url)


class Rules(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.scanner = scan.Scanner(cls.dir.name)

    @classmethod
    def tearDownClass(cls):
        cls.scanner.close()
        cls.dir.cleanup()

    def rules(self, line, name="file.txt"):
        return [r for _, r, _ in self.scanner.scan_lines(name, {1: line})]

    def test_caught(self):
        caught = {
            "AKIAQYLPMN5HHHFPZAM2": "AWS Access Key",
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY": "AWS Secret Access Key",
            "-----BEGIN OPENSSH PRIVATE KEY-----": "Private Key",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----": "Private Key Block",
            "PuTTY-User-Key-File-3: ssh-ed25519": "Private Key Block",
            "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789": "GitHub Token",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGH": "GitHub Fine-Grained Token",
            "sk-ant-api03-" + "Ab1" * 30: "Anthropic Key",
            "sk-ant-oat01-" + "Zy9" * 30: "Anthropic Key",
            "sk-proj-" + "Qw2" * 20: "OpenAI Key",
            "AIzaSyA-abcdefghijklmnopqrstuvwxyz01234": "Google API Key",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx": "Slack Token",
            "glpat-abcdefghij0123456789": "GitLab Token",
            'password = "hunter2isnotsafe"': "Secret Keyword",
            "x = 1  # AKIAQYLPMN5HHHFPZAM2 pragma: allowlist secret": "AWS Access Key",
        }
        for line, rule in caught.items():
            self.assertTrue(any(rule in r for r in self.rules(line, "app.py")), f"{rule}: {line}")

    def test_ordinary_code_passes(self):
        clean = [
            "fn main() { println!(\"hello\"); }",
            "This reverts commit 0123456789abcdef0123456789abcdef01234567.",
            "id = 123e4567-e89b-12d3-a456-426614174000",
            "url = https://example.com/path?q=1",
            "let key = std::env::var(\"API_KEY\")?;",
            "import os; token = os.environ['TOKEN']",
            "Signed-off-by: Agent <agent@bottle.invalid>",
        ]
        for line in clean:
            self.assertEqual(self.rules(line, "main.rs"), [], line)

    def test_checksums_pass_but_hex_secrets_do_not(self):
        digest = "c982642fa9e8606056828ee9a8505737230110bb1099153c79efe865c59d12ba"
        self.assertEqual(self.rules(f'checksum = "{digest}"', "Cargo.lock"), [])
        self.assertEqual(self.rules(f'"integrity": "sha512-{"Ab9+" * 20}=="',
                                    "package-lock.json"), [])
        self.assertEqual(self.rules(f'EXPECTED_SHA256 = "{digest}"', "build.py"), [])
        self.assertNotEqual(self.rules(f'api_token = "{digest}"', "app.py"), [])
        self.assertNotEqual(self.rules(f'value = "{digest}"', "app.py"), [])
        # A shaped secret in a lock file is still caught.
        self.assertNotEqual(self.rules("x = AKIAQYLPMN5HHHFPZAM2", "Cargo.lock"), [])

    def test_preview_never_reveals_more_than_four_characters(self):
        rnd = random.Random(11)
        for _ in range(500):
            value = "".join(rnd.choice("abcXYZ0189+/-_") for _ in range(rnd.randint(0, 120)))
            preview = scan.redact(value)
            shown = preview.split("...", 1)[0]
            self.assertLessEqual(len(shown), 4)
            if len(value) >= 8:
                self.assertNotIn(value, preview)


class WholeObjectScan(unittest.TestCase):
    """Commit and tag objects are scanned whole: headers, extra headers, names, message."""

    KEY = "sk-ant-api03-" + "Ab1" * 30
    AWS = "AKIAQYLPMN5HHHFPZAM2"

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.cwd = os.getcwd()
        os.chdir(self.dir.name)
        sh(".", "init", "-q", "-b", "main")
        with open("a.txt", "w") as f:
            f.write("plain\n")
        sh(".", "add", "a.txt")
        sh(".", "commit", "-q", "-m", "one")
        self.scanner = scan.Scanner(tempfile.mkdtemp(dir=self.dir.name))

    def tearDown(self):
        self.scanner.close()
        os.chdir(self.cwd)
        self.dir.cleanup()

    def commit(self, headers, message="plain message\n"):
        tree = sh(".", "rev-parse", "HEAD^{tree}").decode().strip()
        raw = f"tree {tree}\n" + "".join(h + "\n" for h in headers) + "\n" + message
        return sh(".", "hash-object", "-t", "commit", "-w", "--stdin", "--literally",
                  data=raw.encode()).decode().strip()

    def found(self, findings):
        return sorted((f.kind, f.line, f.rule) for f in findings)

    def test_extra_header_continuation_and_author_name(self):
        oid = self.commit([
            f"author Dev {self.AWS} <d@x.invalid> 1700000000 +0000",
            "committer Dev <d@x.invalid> 1700000000 +0000",
            "x-note harmless first line",
            f" {self.KEY}",
        ])
        found = self.found(scan.scan_object(self.scanner, oid, "commit"))
        self.assertIn(("commit header", 2, "AWS Access Key"), found)
        self.assertIn(("commit header", 5, "Anthropic Key"), found)
        # And through scan_commit, as the hook calls it.
        kinds = {f.kind for f in scan.scan_commit(self.scanner, oid)}
        self.assertEqual(kinds, {"commit header"})
        for f in scan.scan_commit(self.scanner, oid):
            self.assertNotIn(self.KEY, f.describe())
            self.assertNotIn(self.AWS, f.describe())

    def test_message_lines_keep_their_numbers(self):
        oid = self.commit(["author A <a@x.invalid> 1 +0000", "committer A <a@x.invalid> 1 +0000"],
                          f"subject\n\nuse {self.KEY}\n")
        self.assertEqual(self.found(scan.scan_object(self.scanner, oid, "commit")),
                         [("commit message", 3, "Anthropic Key")])

    def test_ordinary_and_signed_headers_pass(self):
        sig = ["gpgsig -----BEGIN PGP SIGNATURE-----", " ",
               " iQEzBAABCAAdFiEEq4fbbZk5dVYxYs8bzq0AdvnOY+UFAmV0n1MACgkQzq0AdvnO",
               " Y+VhJQf/Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXhxdXV4cXV1eHE=",
               " =AbCd", " -----END PGP SIGNATURE-----"]
        parent = sh(".", "rev-parse", "HEAD").decode().strip()
        oid = self.commit([f"parent {parent}", "author Alice Example <alice@example.com> "
                           "1700000000 +0100", "committer Bob <bob@example.com> 1700000001 "
                           "-0500", "encoding UTF-8"] + sig,
                          "Fix the parser\n\nSigned-off-by: Alice <alice@example.com>\n")
        self.assertEqual(self.found(scan.scan_object(self.scanner, oid, "commit")), [])

    def test_tagger_line(self):
        head = sh(".", "rev-parse", "HEAD").decode().strip()
        raw = (f"object {head}\ntype commit\ntag v1\n"
               f"tagger Rel {self.AWS} <r@x.invalid> 1 +0000\n\nrelease\n")
        oid = sh(".", "hash-object", "-t", "tag", "-w", "--stdin", data=raw.encode()).decode().strip()
        self.assertEqual(self.found(scan.scan_tag(self.scanner, oid)),
                         [("tag header", 4, "AWS Access Key")])


if __name__ == "__main__":
    unittest.main()
