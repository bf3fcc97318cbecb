"""agentbot: a Chatwoot Agent Bot that runs conversation flows written in YAML."""

__version__ = "0.1.0"
