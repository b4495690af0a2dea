"""Business logic as plain functions: Dagster assets, sensors and schedules call these, tests call them directly."""
