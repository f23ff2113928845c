"""git-gate: the only way an agent's commits leave a bottle.

The package owns the gate's behaviour inside the `bottle-git-gate` image: reading the
launcher's config (`config`), talking to the upstream over ssh (`upstream`), scanning pushed
objects for secrets (`scan`, `rules`) and deciding a push (`receive`). It must never print a
secret (only a short prefix of a finding), never push anything the scan has not passed, and
never tell the agent a push landed when the upstream refused it.
"""
