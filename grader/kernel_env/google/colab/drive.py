"""``google.colab.drive``: Google Drive is not available in the grader."""
from google.colab._note import note


def mount(mountpoint: str = "/content/drive", force_remount: bool = False,
          timeout_ms: int = 120000, readonly: bool = False) -> None:
    note(f"drive.mount({mountpoint!r}) does nothing here: Google Drive is not available to the grader")


def flush_and_unmount(timeout_ms: int = 86400000) -> None:
    note("drive.flush_and_unmount() does nothing here")
