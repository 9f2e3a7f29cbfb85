"""Resource-option helpers shared by the components."""

from __future__ import annotations

from typing import Any

import pulumi


def inherited_dependencies(opts: pulumi.ResourceOptions | None) -> list[Any]:
    """The ``depends_on`` a component was given, to hand to its children.

    A component's own ``depends_on`` does not hold back its children's registration, so an ordering
    such as "after the Namespace" must be passed down explicitly.
    """
    depends_on = opts.depends_on if opts else None
    if depends_on is None:
        return []
    return list(depends_on) if isinstance(depends_on, (list, tuple)) else [depends_on]
