"""``google.colab.output``: Colab's front-end helpers, which have no front end here."""


def enable_custom_widget_manager() -> None:
    pass


def disable_custom_widget_manager() -> None:
    pass


def clear(wait: bool = False, output_tags: object = ()) -> None:
    try:
        from IPython.display import clear_output
        clear_output(wait=wait)
    except Exception:
        pass


def eval_js(script: str, ignore_result: bool = False, timeout_sec: object = None) -> None:
    return None


def no_vertical_scroll() -> None:
    pass
