"""The ha-ai-stack CrossGuard pack: `pulumi preview --policy-pack policies [--policy-pack-config ...]`.

Every rule is mandatory by default (prod). The tier files in config/ relax levels and thresholds.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from rules import policies

PolicyPack(name="ha-ai-stack", policies=policies(), enforcement_level=EnforcementLevel.MANDATORY)
