# A pkgutil-style namespace: `google.colab` comes from the grader's stand-in, and any other
# `google.*` package installed in the environment stays importable beside it.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
