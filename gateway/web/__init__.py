"""The gateway's dashboard: a small read-only web page served from a thread of the gateway process.

    server.py   the HTTP server (standard library ThreadingHTTPServer): routes, GET/HEAD only, headers
    auth.py     who may read: localhost without a token, anything else with one (constant-time compare)
    state.py    the live state of boards and database, from the service's public accessors, secrets removed
    data.py     every SQL statement of the page (the chart's readings, the recent board events)
    static/     the page, its script and style: served by the gateway itself, no CDN, works offline

docs/DASHBOARD.md explains what each part shows and why the chart is hand-written SVG.
"""
