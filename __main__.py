"""The ha-ai-stack Pulumi program: stack config -> HaAiStack -> exports."""

import pulumi

from ha_ai_stack import HaAiStack, load_stack_config

config = load_stack_config()
stack = HaAiStack(pulumi.get_stack(), config)

pulumi.export("tier", config.tier)
pulumi.export("namespace", config.namespace)
pulumi.export("services", sorted(stack.services))
pulumi.export("endpoints", stack.endpoints)
if stack.redis:
    connection = stack.redis.connection
    pulumi.export("redis", {"service": f"redis.{config.namespace}.svc.cluster.local:{connection.port}",
                            "seed_nodes": connection.seed_nodes(),
                            "password_secret": connection.password_secret_name})
