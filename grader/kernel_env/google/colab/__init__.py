"""Stand-in for Colab's ``google.colab`` inside the grader's sandbox.

Notebooks written on Colab import it to mount Google Drive or to upload and download
files. The grader has neither a Drive nor a browser, so these calls do nothing (and say
so on stderr); the grader's feedback explains what that means for the notebook.
"""
from google.colab import drive, files, output  # noqa: F401

__all__ = ["drive", "files", "output"]
