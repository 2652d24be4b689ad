"""The web dashboard a master serves on --dashboard-port, and `tensorgrid dashboard --from DIR`.

One static page (static/: HTML, vanilla JavaScript drawing SVG, CSS; nothing
loaded from the internet) fed by server-sent events. Behind it a *view*:
`live.LiveView` builds a snapshot of a running master once a second, and
`history.RecordedView` reads the one a master kept on disk (--history-dir).
Both offer snapshot(), wait(version, timeout), graph_svg(signature) and
trace(signature), which `server.routes` serves.
"""
