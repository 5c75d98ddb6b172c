"""``google.colab.files``: there is no browser to upload from or download to."""
from google.colab._note import note


def upload(target_dir: str = "") -> dict:
    """Colab returns {file name: bytes} of what the user picked; here nothing is picked."""
    note("files.upload() uploads nothing here: the grader has no browser, so no file was added")
    return {}


def upload_file(filename: str) -> None:
    note(f"files.upload_file({filename!r}) uploads nothing here")


def download(filename: str) -> None:
    note(f"files.download({filename!r}) does nothing here: there is no browser to download to")


def view(filename: str) -> None:
    note(f"files.view({filename!r}) does nothing here")
