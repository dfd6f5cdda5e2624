"""The YAML config: schema (typed frozen dataclasses), loading, cross-field checks, docs, presets."""
