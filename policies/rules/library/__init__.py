"""GENERATED: the ha-ai-stack library helpers the rules use (see tools/codegen.py)."""
