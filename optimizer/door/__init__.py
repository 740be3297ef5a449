"""The door: the command line, the one pipeline ``optimize`` and ``run`` share, and the files.

``ppcfin`` starts in :mod:`~optimizer.door.entry`; the typer app, its commands and their views
are the ``cli*`` modules; :mod:`~optimizer.door.run` is the pipeline of a run; the output
folder rule and its atomic writes are :mod:`~optimizer.door.outputs` and
:mod:`~optimizer.door.atomic`. Only this room imports :mod:`reports`.
"""
