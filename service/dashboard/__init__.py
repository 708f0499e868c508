"""The dashboard: every pipeline and run at a glance, live, in the browser — served by the
service's own HTTP app at ``/``. Server-rendered HTML (Jinja2 templates), one small script for
live updates (server-sent events) and actions, no build step and no CDN.

- ``figures``: pure helpers — states as colour, icon and word; durations; SLA state; heat.
- ``layout``: pure geometry — the run graph laid out left to right, the Gantt of attempts.
- ``feed``: the live feed — Redis pub/sub of status events, PostgreSQL when Redis is away.
- ``pages``/``run_pages``: the page handlers; ``session``: signing in with an API token.
"""
