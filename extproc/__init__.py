"""Envoy ext_proc server translating Anthropic Messages to OpenAI Chat Completions."""

__version__ = "0.1.0"
