"""Notebooks that attack how the grader reads the kernel: what counts as a failed self-check,
the grader's hidden cells, and the size of the messages the grader takes in.

Each case is ``<net_id>.zip`` holding one ``work.ipynb`` for the mini rubric of
``tests/test_hostile_exec.py`` (``nb.f``: ``f`` is a callable, 4 points; ``nb.answer``:
``answer`` is defined, 2 points; the not-executable penalty is 20%), graded by
``tests/test_hostile_protocol.py``. ``status`` is the notebook run's expected status,
``points`` the expected points of ``(nb.f, nb.answer)``, ``penalty`` the expected
not-executable penalty in percent.
"""
from __future__ import annotations

from dataclasses import dataclass

from hostile.exec_cases import ANSWER, F, FULL, NONE


@dataclass(frozen=True)
class ProtocolCase:
    net_id: str
    group: str                      # selfcheck | hidden | messages
    what: str
    cells: tuple[str, ...]
    status: str
    points: tuple[float, float]
    penalty: float
    self_checks: tuple[str | None, ...] = ()   # CellResult.self_check of the failing cells, in order
    message: tuple[str, ...] = ()   # words expected in the run's message
    open_hole: str = ""             # not contained: why (the test is a strict xfail)


# The hand-written backward is wrong (it forgets the factor 3): gradcheck raises GradcheckError.
GRADCHECK = ("import torch\nfrom torch.autograd import gradcheck\n"
             "class Triple(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, x):\n"
             "        return x * 3\n    @staticmethod\n    def backward(ctx, grad):\n        return grad\n"
             "x = torch.randn(4, dtype=torch.double, requires_grad=True)\n"
             "gradcheck(Triple.apply, (x,))")
# Re-raises every error of a later cell as AssertionError, from an AST transformer.
AS_ASSERTION = ("import ast\nclass AsAssertion(ast.NodeTransformer):\n    def visit_Module(self, node):\n"
                "        wrap = ast.parse('try:\\n    pass\\nexcept Exception as _e:\\n"
                "    raise AssertionError(str(_e))').body[0]\n"
                "        wrap.body = node.body\n        node.body = [wrap]\n"
                "        return ast.fix_missing_locations(node)\n"
                "get_ipython().ast_transformers.append(AsAssertion())")
# Rewrite every later cell that is not the notebook's own (marked "# mine"): the grader's
# hidden cells and the probe, were they run as cells.
REWRITE_LINES = ("def rewrite(lines):\n    if any('# mine' in line for line in lines):\n        return lines\n"
                 "    return ['raise RuntimeError(\"rewritten by the notebook\")\\n']\n"
                 "ip = get_ipython()\nip.input_transformers_cleanup.append(rewrite)\n"
                 "ip.input_transformers_post.append(rewrite)\n# mine")
REWRITE_AST = ("import ast\nclass Rewrite(ast.NodeTransformer):\n    def visit_Module(self, node):\n"
               "        return ast.fix_missing_locations(ast.parse('raise RuntimeError(\"rewritten\")'))\n"
               "get_ipython().ast_transformers.append(Rewrite())")
# The notebook's own kernel sends on its sockets directly.
KERNEL = "k = get_ipython().kernel\nparent = k.get_parent()\n"

CASES: list[ProtocolCase] = [
    # ---------------------------------------------------------------- failed self-checks stay excused
    ProtocolCase("pr01", "selfcheck", "a genuine failed assert on a wrong answer",
                 (F, ANSWER, "assert answer == 43, 'answer should be 43'"), "errors", FULL, 0, ("assert",),
                 ("AssertionError",)),
    ProtocolCase("pr02", "selfcheck", "a gradcheck of a wrong hand-written backward",
                 (F, ANSWER, GRADCHECK), "errors", FULL, 0, ("gradcheck",), ("GradcheckError",)),
    ProtocolCase("pr03", "selfcheck", "the template's test function, defined in an earlier cell, fails",
                 (F, "def test_model(v):\n    assert v > 100, 'accuracy too low'", ANSWER + "\ntest_model(answer)"),
                 "errors", FULL, 0, ("assert",)),
    ProtocolCase("pr04", "selfcheck", "a %%time cell whose assert fails",
                 (F, "%%time\n" + ANSWER + "\nassert answer < 0"), "errors", FULL, 0, ("assert",)),
    # ---------------------------------------------------------------- any error passing for one
    ProtocolCase("ta201", "selfcheck", "an AST transformer re-raises every error as AssertionError",
                 (F, AS_ASSERTION, ANSWER, "b = undefined_name"), "errors", FULL, 20, (None,),
                 ("AssertionError",)),
    ProtocolCase("ta202", "selfcheck", "try/except turns a NameError into a failed assert",
                 (F, ANSWER, "try:\n    b = undefined_name\nexcept Exception:\n    assert False, 'it failed'"),
                 "errors", FULL, 20, (None,)),
    ProtocolCase("ta203", "selfcheck", "raises its own class named AssertionError",
                 (F, ANSWER, "class AssertionError(Exception):\n    pass\nraise AssertionError('not a check')"),
                 "errors", FULL, 20, (None,)),
    ProtocolCase("ta204", "selfcheck", "silences showtraceback and sys.excepthook, then raises",
                 (F, ANSWER, "import sys\nip = get_ipython()\nip.showtraceback = lambda *a, **k: None\n"
                             "sys.excepthook = lambda *a: None\nassert True",
                  "raise AssertionError('no traceback')"), "errors", FULL, 20, (None,)),
    ProtocolCase("ta205", "selfcheck", "a forged traceback points at an assert it wrote",
                 (F, ANSWER, "class AssertionError(Exception):\n    pass\nget_ipython().InteractiveTB.structured_traceback = "
                             "lambda *a, **k: ['', 'AssertionError   Traceback (most recent call last)', "
                             "'Cell In[4], line 1\\n----> 1 assert True\\n', 'AssertionError: ']",
                  "assert True\nraise AssertionError('crashed')"), "errors", FULL, 20, (None,)),
    # ---------------------------------------------------------------- transformers and the hidden cells
    ProtocolCase("ta206", "hidden", "input transformers rewrite every later cell it did not write (the probe's too)",
                 (F, ANSWER, REWRITE_LINES), "completed", FULL, 0),
    ProtocolCase("ta207", "hidden", "an AST transformer replaces every later cell with a raise",
                 (F, ANSWER, REWRITE_AST), "completed", FULL, 0),
    # ---------------------------------------------------------------- messages the grader takes in
    ProtocolCase("pr10", "messages", "one display message larger than the limit (40 MB of text)",
                 (F, "from IPython.display import display\ndisplay({'text/plain': 'x' * 40_000_000}, raw=True)",
                  ANSWER), "protocol_violation", NONE, 20, (),
                 ("larger than 32 MB", "iopub", "code cell 2", "stopped the kernel")),
    ProtocolCase("pr11", "messages", "64 frames of 16 MB in one message, all one buffer of the kernel's",
                 (F, KERNEL + "buf = b'x' * (16 << 20)\nfor _ in range(4):\n"
                     "    k.session.send(k.iopub_socket, 'display_data', {'data': {'text/plain': 'hi'}, 'metadata': {}},\n"
                     "                   parent=parent, buffers=[buf] * 64)\nimport time\ntime.sleep(3)", ANSWER),
                 "protocol_violation", NONE, 20, (), ("grader's memory", "code cell 2")),
    ProtocolCase("pr12", "messages", "widget state: 30 comm_open messages of 20 MB",
                 (F, KERNEL + "big = 'z' * (20 << 20)\nfor i in range(30):\n"
                     "    k.session.send(k.iopub_socket, 'comm_open', {'comm_id': f'c{i}', 'target_name': 'jupyter.widget',\n"
                     "                   'data': {'state': {'v': big}, 'buffer_paths': []}}, parent=parent)", ANSWER),
                 "completed", FULL, 0),
    ProtocolCase("pr13", "messages", "40 small displays, each updated to 20 MB of text",
                 (F, "from IPython.display import display, update_display\n"
                     "for i in range(40):\n    display({'text/plain': 'a'}, raw=True, display_id=f'd{i}')\n"
                     "big = 'u' * (20 << 20)\nfor i in range(40):\n"
                     "    update_display({'text/plain': big}, raw=True, display_id=f'd{i}')", ANSWER),
                 "completed", FULL, 0),
    ProtocolCase("pr14", "messages", "outputs whose metadata, stream name and count are 10 MB each",
                 (F, KERNEL + "big = 'm' * (10 << 20)\nfor i in range(20):\n"
                     "    k.session.send(k.iopub_socket, 'display_data', {'data': {'text/plain': 'a'},\n"
                     "                   'metadata': {'m': big}}, parent=parent)\n"
                     "    k.session.send(k.iopub_socket, 'stream', {'name': big, 'text': 'b'}, parent=parent)\n"
                     "    k.session.send(k.iopub_socket, 'execute_result', {'data': {'text/plain': 'c'}, 'metadata': {},\n"
                     "                   'execution_count': big}, parent=parent)", ANSWER),
                 "completed", FULL, 0),
    ProtocolCase("pr15", "messages", "600 error messages with 1 MB tracebacks in one cell",
                 (F, KERNEL + "tb = ['t' * 4900] * 190\nfor i in range(600):\n"
                     "    k.session.send(k.iopub_socket, 'error', {'ename': 'E', 'evalue': 'v', 'traceback': tb},\n"
                     "                   parent=parent)", ANSWER),
                 "completed", FULL, 0),
    ProtocolCase("pr16", "messages", "24 unsolicited 20 MB messages on the stdin channel, which is never read",
                 (F, KERNEL + "big = 'i' * (20 << 20)\nfor i in range(24):\n"
                     "    k.session.send(k.stdin_socket, 'input_request', {'prompt': big, 'password': False},\n"
                     "                   parent=parent, ident=k._parent_ident.get('shell'))", ANSWER),
                 "completed", FULL, 0),
]

# The attacks measured for the grader's peak memory (tests/test_hostile_protocol.py), each
# in a grader process of its own.
BIG_MESSAGE = (F, "from IPython.display import display\ns = 'x' * 150_000_000\n"
                  "display({'text/plain': s, 'text/html': s, 'text/markdown': s, 'text/latex': s}, raw=True)", ANSWER)
MANY_FRAMES = CASES[[c.net_id for c in CASES].index("pr11")].cells
KEPT = (F,) + tuple(c.cells[1] for c in CASES if c.net_id in ("pr12", "pr13", "pr14", "pr15", "pr16")) + (ANSWER,)
