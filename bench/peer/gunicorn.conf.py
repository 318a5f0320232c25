# Loaded by ./run. Flags live on its command line; this file only holds the start hook.
import os
import sys


def on_starting(server):
    # Create the table once in the master, before any worker forks, so workers never race.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from app import ensure_schema

    ensure_schema()
