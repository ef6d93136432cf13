"""LLM access: providers (live), the offline planner, output schemas, fault injection."""
