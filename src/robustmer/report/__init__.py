"""The report stage: tables, figures and the HTML page (figures embedded; audio read from
media/), computed from a results store alone (``runs.csv`` + ``clips.csv``); it never imports
study/ or train/ and never retrains.
"""

from robustmer.report.html import build_report

__all__ = ["build_report"]
