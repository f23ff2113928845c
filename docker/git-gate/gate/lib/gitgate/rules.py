"""Extra detect-secrets detectors for credentials the stock 1.5.0 plugins miss.

Loaded by detect-secrets as a custom plugin file (`file://` path). Each class is one rule;
its `secret_type` is the rule name shown in a refusal. The regexes only recognise; they
must never be used to print a match (the caller redacts).

Checked misses of detect-secrets 1.5.0 that these cover: Anthropic keys (sk-ant-...),
GitHub fine-grained tokens (github_pat_...), an AWS secret access key assigned without
quotes, OpenAI project/service keys (sk-proj-...), Google API keys (AIza...), and private
key armour the stock PrivateKeyDetector does not list (ENCRYPTED PRIVATE KEY, PuTTY v3).
"""

import re

from detect_secrets.plugins.base import RegexBasedDetector


class AnthropicKeyDetector(RegexBasedDetector):
    """Anthropic API, admin and OAuth tokens: sk-ant-api03-..., sk-ant-oat01-..."""

    secret_type = "Anthropic Key"
    denylist = [re.compile(r"(sk-ant-[a-z]{2,8}[0-9]{2}-[A-Za-z0-9_\-]{20,})")]


class GitHubFineGrainedTokenDetector(RegexBasedDetector):
    """GitHub fine-grained personal access tokens (the stock plugin knows gh[pousr]_ only)."""

    secret_type = "GitHub Fine-Grained Token"
    denylist = [re.compile(r"(github_pat_[A-Za-z0-9_]{22,})")]


class AWSSecretKeyAssignmentDetector(RegexBasedDetector):
    """A 40-character AWS secret access key assigned to an aws/secret-named key, quoted or not."""

    secret_type = "AWS Secret Access Key"
    denylist = [
        re.compile(
            r"(?i)(?:aws|secret)[A-Za-z0-9_.\-]{0,40}[\"']?\s*(?:=|:|=>|:=)\s*[\"']?"
            r"([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
        )
    ]


class OpenAIProjectKeyDetector(RegexBasedDetector):
    """OpenAI project, service-account and admin keys."""

    secret_type = "OpenAI Key"
    denylist = [re.compile(r"(sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,})")]


class GoogleApiKeyDetector(RegexBasedDetector):
    """Google API keys."""

    secret_type = "Google API Key"
    denylist = [re.compile(r"(AIza[0-9A-Za-z_\-]{35})")]


class PrivateKeyArmorDetector(RegexBasedDetector):
    """Any PEM private key armour line, and PuTTY key files of every version."""

    secret_type = "Private Key Block"
    denylist = [
        re.compile(r"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----)"),
        re.compile(r"(PuTTY-User-Key-File-[0-9]+)"),
    ]
