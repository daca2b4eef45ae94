"""The home's files: paths resolved so that nothing leads out of the home (``homefs``), the file
tools (``tools``, ``dirs``, ``entries``), files of any size on byte streams (``transfers``), and
watching a path's changes (``watches`` over ``watch_tree`` over ``inotify``)."""
