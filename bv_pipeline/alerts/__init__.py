"""Alerting: conditions worth waking someone for, deduplicated into incidents and delivered to one webhook.

``model`` (incidents and their transitions, pure), ``delivery`` (message formats and the HTTP sender),
``conditions`` (what is wrong right now, read from Dagster's instance and the stores), ``runs`` (run-failure
incidents kept on the runs themselves), ``sensors`` (the Dagster sensors that tie them together).
"""
