"""`tensorgrid status --watch`: the status table redrawn in place every few seconds until Ctrl-C."""

import sys
import time

from tensorgrid.framework import errors

# Cursor to the top left, then clear to the end of the screen: the next frame replaces the last.
HOME_AND_CLEAR = "\x1b[H\x1b[J"


def frame_header(status, previous, now):
    """The line above each frame: the time, and the steps per second since the last frame."""
    steps = sum(s.steps_run for s in status.session)
    rate = ""
    if previous is not None and now > previous[0] and steps >= previous[1]:
        rate = f", {(steps - previous[1]) / (now - previous[0]):.1f} steps/s"
    return f"{time.strftime('%H:%M:%S')}{rate} (refreshing; Ctrl-C stops)", (now, steps)


def watch(fetch, render, interval, stop, out=None):
    """Calls fetch() every `interval` seconds and draws render(status) until `stop` is set; returns 0.

    On a terminal each frame replaces the last; otherwise frames follow one
    another, separated by a blank line. A master that does not answer shows
    as a line in the frame, and the watch goes on.
    """
    out = out or sys.stdout
    in_place = out.isatty()
    previous = None
    while not stop.is_set():
        try:
            status = fetch()
            header, previous = frame_header(status, previous, time.monotonic())
            body = render(status)
        except errors.OpError as e:
            header, body = time.strftime("%H:%M:%S"), f"the master does not answer: {e.message.splitlines()[0]}"
        out.write((HOME_AND_CLEAR if in_place else "") + header + "\n" + body + "\n" + ("" if in_place else "\n"))
        out.flush()
        stop.wait(interval)
    return 0
