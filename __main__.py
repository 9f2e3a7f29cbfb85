"""The ha-ai-stack Pulumi program: stack config -> HaAiStack -> exports."""

import pulumi

from ha_ai_stack import HaAiStack, cluster_provider, load_stack_config

config = load_stack_config()
# The stack's own cluster, through an explicit provider that every child inherits.
provider = cluster_provider(pulumi.get_stack(), config)
stack = HaAiStack(pulumi.get_stack(), config,
                  opts=pulumi.ResourceOptions(providers=[provider]) if provider else None)

pulumi.export("tier", config.tier)
pulumi.export("namespace", config.namespace)
pulumi.export("services", sorted(stack.services))
pulumi.export("endpoints", stack.endpoints)
if stack.redis:
    connection = stack.redis.connection
    pulumi.export("redis", {"service": f"redis.{config.namespace}.svc.cluster.local:{connection.port}",
                            "seed_nodes": connection.seed_nodes(),
                            "password_secret": connection.password_secret_name})
