"""SessionRunHook and what MonitoredSession hands it: SessionRunArgs, SessionRunContext, SessionRunValues.

A hook sees every run of a MonitoredSession: `begin()` once before the
graph is finalized, `after_create_session(session, coord)` each time a
session is (re)created, `before_run(run_context)` before each run (it may
return SessionRunArgs to add fetches, feeds and options to that run),
`after_run(run_context, run_values)` with the results of its own fetches, and
`end(session)` when the MonitoredSession closes normally.
"""

import collections

__all__ = ["SessionRunHook", "SessionRunArgs", "SessionRunContext", "SessionRunValues"]


class SessionRunHook:
    """Base class of hooks; every method does nothing."""

    def begin(self):
        """Called once before the session is used; the graph may still change here."""

    def after_create_session(self, session, coord):
        """Called when a new session was created (and after each recovery); the graph is finalized."""

    def before_run(self, run_context):
        """Called before each run; may return SessionRunArgs to run along with the caller's fetches."""
        return None

    def after_run(self, run_context, run_values):
        """Called after each run that succeeded, with the results of this hook's own fetches."""

    def end(self, session):
        """Called when the MonitoredSession closes without an error (not when it stops on an exception)."""


class SessionRunArgs(collections.namedtuple("SessionRunArgs", ["fetches", "feed_dict", "options"])):
    """What a hook adds to a run: fetches (any structure Session.run takes), feeds, RunOptions."""

    def __new__(cls, fetches, feed_dict=None, options=None):
        return super().__new__(cls, fetches, feed_dict, options)


class SessionRunValues(collections.namedtuple("SessionRunValues", ["results", "options", "run_metadata"])):
    """What a hook gets after a run: the results of its fetches, the run's options and RunMetadata."""


class SessionRunContext:
    """The run a hook is called around: the caller's arguments, the session, and a way to stop the loop."""

    def __init__(self, original_args, session):
        self._original_args = original_args
        self._session = session
        self._stop_requested = False

    @property
    def original_args(self):
        """The SessionRunArgs the caller passed to MonitoredSession.run."""
        return self._original_args

    @property
    def session(self):
        """The session the run uses (a hook may run its own steps with it)."""
        return self._session

    @property
    def stop_requested(self):
        return self._stop_requested

    def request_stop(self):
        """Makes the MonitoredSession's should_stop() true after this run."""
        self._stop_requested = True
