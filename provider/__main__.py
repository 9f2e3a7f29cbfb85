"""Entry point of the ha-ai-stack component provider plugin (see PulumiPlugin.yaml)."""

from ha_ai_stack.provider import serve

if __name__ == "__main__":
    serve()
