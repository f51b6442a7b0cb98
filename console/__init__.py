"""The operator console: the FastAPI application behind ``industriverse serve``.

Pages (Jinja2 + htmx, live updates by server-sent events) and the REST API under
``/api/v1`` over the same store and bus as the rest of the project. It sits beside
``workers/`` in the layering: it may import ``industriverse``, ``messages`` and ``workers``.
"""
