"""The plant and the client's request: thermal networks (network), exact discretisation (discretize),
time series specs (series), the domain catalog and its YAML domains (catalog, domains/), the constraint
schema (constraint), canonical JSON and hashes that identify a request and its documents (canonical), Map (mapping) and the KPI definitions every later stage shares (kpis).
"""
