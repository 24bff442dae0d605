"""Leaderboard of the clustermass benchmark: interpretation diagnostics and the static site.

- :mod:`benchmark.diagnostics`: DeepDream-style ascent, saliency and occlusion diagnostics
  of any model the harness can run (``run_diagnostics``).
- :mod:`leaderboard.render`: the static HTML site and Markdown table (``render_site``).
"""
