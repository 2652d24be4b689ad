"""tg.keras.utils.Progbar: Keras 3's progress display, character for character.

verbose=1 redraws one line per update (at most every `interval` seconds, and at the end):

    12/12 ━━━━━━━━━━━━━━━━━━━━ 0s 3ms/step - accuracy: 0.9000 - loss: 0.3000

the count in bold, the done part of the 20-wide bar green and the rest white (ANSI colours), then
the ETA while running or the elapsed seconds at the end, the time per step (s, ms or us; after the first
step, which includes tracing, the mean of the later ones) and each value as `name: %.4f` (`%.4e`
below 0.001). A line is redrawn in place with backspaces and a carriage return; the final one ends with
a newline. verbose=2 prints one line at the end only:

    12/12 - 0s - 3ms/step - accuracy: 0.9000 - loss: 0.3000

Values named in `stateful_metrics` (or, with `stateless_metrics`, all the others) are shown as given,
the rest as the mean over the steps since the start, weighted by the steps each update covered.
"""

import math
import sys
import time

import numpy as np

__all__ = ["Progbar"]


def _write(message):
    sys.stdout.write(message)
    sys.stdout.flush()


def _format_time(seconds_per_unit, unit_name):
    if seconds_per_unit >= 1 or seconds_per_unit == 0:
        return f" {seconds_per_unit:.0f}s/{unit_name}"
    if seconds_per_unit >= 1e-3:
        return f" {seconds_per_unit * 1e3:.0f}ms/{unit_name}"
    return f" {seconds_per_unit * 1e6:.0f}us/{unit_name}"


def _format_eta(eta):
    if eta > 3600:
        return "%d:%02d:%02d" % (eta // 3600, (eta % 3600) // 60, eta % 60)
    if eta > 60:
        return "%d:%02d" % (eta // 60, eta % 60)
    return "%ds" % eta


class Progbar:
    """A progress bar over `target` steps (None: unknown), updated with update(current, [(name, value)])."""

    def __init__(self, target, width=20, verbose=1, interval=0.05, stateful_metrics=None, stateless_metrics=None,
                 unit_name="step"):
        if stateful_metrics is not None and stateless_metrics is not None:
            raise ValueError("Only one of `stateful_metrics` or `stateless_metrics` can be provided. "
                             "`stateful_metrics` is used to make metrics stateless by default (with an exclusion "
                             "list), while `stateless_metrics` is used to make metrics stateful by default (with "
                             "an exclusion list).")
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        self.stateful_metrics = set(stateful_metrics) if stateful_metrics is not None else (
            None if stateless_metrics is not None else set())
        self.stateless_metrics = set(stateless_metrics) if stateless_metrics is not None else None
        self._seen_so_far = 0
        self._values = {}           # name -> [sum of value * steps, steps]
        self._values_order = []
        self._start = time.time()
        self._last_update = 0.0
        self._time_after_first_step = None
        self._prev_total_width = 0

    def _is_averaged(self, name):
        if self.stateful_metrics is not None:
            return name not in self.stateful_metrics
        return name in self.stateless_metrics

    def update(self, current, values=None, finalize=None):
        """Shows progress `current` with `values` ([(name, number)]); the last update (finalize) ends the line."""
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        for name, value in values or []:
            if name not in self._values_order:
                self._values_order.append(name)
            if self._is_averaged(name) and not finalize:
                steps = max(current - self._seen_so_far, 1)
                total = self._values.setdefault(name, [0.0, 0])
                total[0] += value * steps
                total[1] += steps
            else:
                self._values[name] = [value, 1]
        self._seen_so_far = current
        now = time.time()
        per_unit = self._seconds_per_unit(current, now)
        if self.verbose == 1:
            if now - self._last_update < self.interval and not finalize:
                return
            self._draw_line(current, now, per_unit, finalize)
        elif self.verbose == 2 and finalize and self.target is not None and self.target > 0:
            digits = int(math.log10(self.target)) + 1
            line = f"%{digits}d/%d - {now - self._start:.0f}s -{_format_time(per_unit, self.unit_name)}" % (
                current, self.target)
            _write(line + self._values_text() + "\n")
        self._last_update = now

    def _draw_line(self, current, now, per_unit, finalize):
        # backspaces over the previous line (Keras treats every POSIX stdout as a live display)
        message = "\b" * self._prev_total_width + "\r"
        hidden = 0      # characters of ANSI escapes, which take no width
        if self.target is not None and self.target > 0:
            digits = int(math.log10(self.target)) + 1
            bar = "\x1b[1m" + f"%{digits}d/%d" % (current, self.target) + "\x1b[0m "
            hidden += 8
            done = int(self.width * float(current) / self.target)
            if done > 0:
                bar += "\x1b[32m" + "━" * done + "\x1b[0m"
                hidden += 9
            bar += "\x1b[37m" + "━" * (self.width - done) + "\x1b[0m"
            hidden += 9
        else:
            bar = "%7d/Unknown" % current
        if self.target is not None and self.target > 0 and not finalize:
            info = " \x1b[1m" + _format_eta(per_unit * (self.target - current)) + "\x1b[0m"
        else:
            info = f" \x1b[1m{now - self._start:.0f}s\x1b[0m"
        hidden += 8
        info += _format_time(per_unit, self.unit_name) + self._values_text(small_by_abs=True)
        total_width = len(bar) + len(info) - hidden
        message += bar + info
        if self._prev_total_width > total_width:
            message += " " * (self._prev_total_width - total_width)
        if finalize:
            message += "\n"
        _write(message)
        self._prev_total_width = total_width

    def _values_text(self, small_by_abs=False):
        text = ""
        for name in self._values_order:
            total, count = self._values[name]
            if not isinstance(total, float):
                total = np.mean(total)
            mean = total / max(1, count)
            small = abs(mean) <= 0.001 if small_by_abs else mean <= 0.001
            text += f" - {name}: {mean:.4e}" if small else f" - {name}: {mean:.4f}"
        return text

    def add(self, n, values=None):
        """Advances by n steps."""
        self.update(self._seen_so_far + n, values)

    def _seconds_per_unit(self, current, now):
        if not current:
            return 0
        if self._time_after_first_step is not None and current > 1:
            per_unit = (now - self._time_after_first_step) / (current - 1)
        else:
            per_unit = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return per_unit
