# SPDX-License-Identifier: GPL-3.0-or-later
"""Safe evaluation of the `eval` expressions that Flamenco job types carry.

The official add-on hands these strings to Python's built-in evaluator, so
whoever controls a Manager's job-type scripts can run any code in every
artist's Blender. Here an expression is only parsed (`ast.parse`, mode
"eval") and the resulting tree is interpreted by a small walker that knows
an allow-listed subset of Python; everything else is refused with an
`ExpressionError` that names the job setting.

Allowed: literals, f-strings, names from the given namespace, reads of plain
(non-callable, non-private) attributes, simple subscripts, arithmetic,
comparisons, boolean and conditional expressions, tuple/list/set/dict
displays, and calls to a short list of pure functions and str/PurePath
methods. Sizes, nesting and the number of steps are capped so that an
expression cannot exhaust memory or time.
"""

from __future__ import annotations

import ast
import dataclasses
import ntpath
import os
import pathlib
import re
import types
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

__all__ = ["ExpressionError", "evaluate", "last_n_dir_parts", "standard_names"]

MAX_EXPRESSION_CHARS = 10_000
MAX_STEPS = 1_000  # AST nodes visited; the shipped expressions need fewer than 20.
MAX_DEPTH = 64
MAX_STRING = 100_000  # characters in any string or path we build
MAX_ITEMS = 1_000  # elements (counted deeply) in any container we build or iterate
MAX_INT_BITS = 4_096
MAX_ROUND_DIGITS = 1_000

# Builtins the official add-on's expressions can reach and that are pure.
_BUILTINS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "bool": bool,
    "float": float,
    "int": int,
    "len": len,
    "max": max,
    "min": min,
    "round": round,
    "str": str,
}
_PATH_CLASSES = (pathlib.Path, pathlib.PurePath, pathlib.PurePosixPath, pathlib.PureWindowsPath)
_PATH_TYPES = (
    pathlib.PurePath,
    pathlib.PurePosixPath,
    pathlib.PureWindowsPath,
    pathlib.Path,
    pathlib.PosixPath,
    pathlib.WindowsPath,
)

# Pure str methods. Not format/format_map: their templates can read attributes.
_STR_METHODS = frozenset(
    {
        "capitalize", "casefold", "center", "count", "endswith", "find", "index",
        "isalnum", "isalpha", "isdecimal", "isdigit", "islower", "isnumeric",
        "isspace", "istitle", "isupper", "join", "ljust", "lower", "lstrip",
        "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex",
        "rjust", "rpartition", "rsplit", "rstrip", "split", "splitlines",
        "startswith", "strip", "swapcase", "title", "upper", "zfill",
    }
)  # fmt: skip
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})
# Pure PurePath methods: none of them touches the file system.
_PATH_METHODS = frozenset(
    {"as_posix", "is_absolute", "is_relative_to", "joinpath", "relative_to",
     "with_name", "with_stem", "with_suffix"}
)  # fmt: skip

# Roots that mutate Blender or run code; refused by name wherever they appear,
# so that fake objects in tests and the real `bpy` get the same treatment.
_DENIED_ATTRIBUTES = frozenset(
    {"ops", "utils", "msgbus", "handlers", "timers", "props", "types", "driver_namespace",
     # private to the user, never for a job: preferences (holds the auth header), clipboard, UI, texts
     "preferences", "window_manager", "clipboard", "window", "screen", "texts"}
)
# The only attributes readable on a module object (in practice: `bpy`).
_MODULE_ATTRIBUTES = frozenset({"app", "context", "data"})

_PLAIN_TYPES = (bool, int, float, str, list, tuple)
_SCALAR_TYPES = (type(None), bool, int, float, str)
_CONTAINER_TYPES = (list, tuple, set, frozenset, dict)

_BINARY_OPERATORS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
}
_COMPARISONS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.Is: lambda a, b: a is b,
    ast.IsNot: lambda a, b: a is not b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_REFUSED_NODES: dict[type[ast.AST], str] = {
    ast.Lambda: "lambda functions",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "generator expressions",
    ast.NamedExpr: "assignment expressions (:=)",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Starred: "argument unpacking (*)",
}
_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[#0 +\-]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)", re.DOTALL)
_WINDOWS_PATH = re.compile(r"^(?:[A-Za-z]:|\\\\)")
_PURE_MARK = "_flamenco_panel_pure"


class ExpressionError(ValueError):
    """An expression was refused or failed; the message names the job setting."""

    def __init__(self, reason: str, setting_key: str = "") -> None:
        self.reason = reason
        self.setting_key = setting_key
        super().__init__(f'Setting "{setting_key}": {reason}' if setting_key else reason)


@dataclasses.dataclass
class _State:
    names: Mapping[str, Any]
    setting_key: str
    steps: int = 0


def evaluate(expression: str, names: Mapping[str, Any], setting_key: str = "") -> Any:
    """Compute a job setting's `eval` expression without ever running it as code.

    `names` is the namespace (see `standard_names`). Raises `ExpressionError`
    for anything outside the allowed subset and for any failure while computing.
    """
    state = _State(names, setting_key)
    if not isinstance(expression, str):
        _refuse(state, "the expression is not a string")
    if len(expression) > MAX_EXPRESSION_CHARS:
        _refuse(state, f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as ex:
        _refuse(state, f"invalid Python expression: {ex.msg}")
    except (ValueError, RecursionError, MemoryError) as ex:
        _refuse(state, f"invalid Python expression: {type(ex).__name__}")
    if sum(1 for _ in ast.walk(tree)) > MAX_STEPS:
        _refuse(state, "the expression is too complex")
    try:
        result = _walk(tree.body, state, 0)
    except ExpressionError:
        raise
    except RecursionError:
        _refuse(state, "the expression is nested too deeply")
    except Exception as ex:  # Anything the allowed operations raise (KeyError, ZeroDivisionError…).
        raise ExpressionError(_describe_exception(ex), setting_key) from ex
    if _is_code_like(result):
        _refuse(state, "the expression yields a function, class or module instead of a value")
    return result


def last_n_dir_parts(n: int, filepath: str | os.PathLike[str]) -> str:
    """Return the last `n` directory names of `filepath` as a relative path.

    Same semantics as the official add-on's helper, which job types use to
    mirror a blend file's folder layout under the render output root: the
    path is made absolute (collapsing `..`, without following symlinks), its
    directory is taken, and at most the last `n` components are kept, never
    the root or drive, so the result is always relative. `n <= 0`, or a file
    in the root, gives "." (what `str(Path())` is, and which `Path` joins drop).
    Windows paths (drive letter or UNC) are split the Windows way on any OS.

    >>> last_n_dir_parts(2, "/path/to/some/file.blend")
    'to/some'
    """
    if n <= 0:
        return "."
    absolute = _make_absolute(os.fsdecode(filepath))
    flavour = _path_flavour(absolute)
    directory = flavour(absolute).parent
    parts = directory.parts[1:] if directory.anchor else directory.parts
    return str(flavour(*parts[-n:]))


def standard_names(
    context: Any,
    bpy_module: Any,
    jobname: str,
    settings: Mapping[str, Any],
    abspath: Callable[[str], str],
    blendfile: str,
) -> dict[str, Any]:
    """Build the namespace the official add-on gives job-type expressions.

    `abspath` is Blender's `bpy.path.abspath` (resolves `//`), `blendfile`
    is `bpy.data.filepath`, and `settings` becomes a live attribute view
    (`settings.key`) of the job's settings so far.
    """

    def absolute(filepath: str | os.PathLike[str]) -> pathlib.Path:
        """Like the official `abspath()`: resolves `//` and collapses `..`."""
        return pathlib.Path(_make_absolute(abspath(str(filepath))))

    def dir_parts(n: int, filepath: str | os.PathLike[str] | None = None) -> pathlib.Path:
        """Like the official helper: defaults to the blend file, resolves `//`."""
        if filepath is None:
            path: str | os.PathLike[str] = blendfile
        elif isinstance(filepath, str):
            path = abspath(filepath)
        else:
            path = filepath
        return pathlib.Path(last_n_dir_parts(n, path))

    return {
        "C": context,
        "bpy": bpy_module,
        "jobname": jobname,
        "Path": pathlib.Path,
        "abspath": _mark_pure(absolute),
        "last_n_dir_parts": _mark_pure(dir_parts),
        "settings": _SettingsView(settings),
    }


class _SettingsView:
    """Read-only `settings.key` access, like the official add-on's PropertyGroup."""

    __slots__ = ("_mapping",)

    def __init__(self, mapping: Mapping[str, Any]) -> None:
        self._mapping = mapping

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._mapping[key]
        except KeyError:
            raise AttributeError(f"the job has no setting {key!r} (yet)") from None

    def __repr__(self) -> str:
        return f"settings({dict(self._mapping)!r})"


def _mark_pure(function: Callable[..., Any]) -> Callable[..., Any]:
    """Flag a function of ours as callable from expressions."""
    setattr(function, _PURE_MARK, True)
    return function


_mark_pure(last_n_dir_parts)


def _is_pure_function(value: Any) -> bool:
    return isinstance(value, types.FunctionType) and value.__dict__.get(_PURE_MARK) is True


def _make_absolute(path: str) -> str:
    """Absolute, `..`-collapsed path without following symlinks (BAT's make_absolute)."""
    if os.name != "nt" and _WINDOWS_PATH.match(path):
        # A Windows path on another OS is already absolute; don't glue the local cwd on.
        return ntpath.normpath(path)
    return os.path.abspath(path)


def _path_flavour(path: str) -> type[pathlib.PurePath]:
    if os.name == "nt" or _WINDOWS_PATH.match(path):
        return pathlib.PureWindowsPath
    return pathlib.PurePosixPath


# --- the walker -------------------------------------------------------------


def _refuse(state: _State, reason: str) -> NoReturn:
    raise ExpressionError(reason, state.setting_key)


def _describe_exception(ex: Exception) -> str:
    text = str(ex)
    if len(text) > 300:
        text = text[:300] + "…"
    return f"{type(ex).__name__}: {text}" if text else type(ex).__name__


def _source(node: ast.AST) -> str:
    """Short source text of a node, for messages."""
    text = ast.unparse(node)
    return text if len(text) <= 80 else text[:80] + "…"


def _is_code_like(value: Any) -> bool:
    """Functions, classes and modules must never flow through an expression."""
    return callable(value) or isinstance(value, (type, types.ModuleType))


def _walk(node: ast.AST, state: _State, depth: int) -> Any:
    state.steps += 1
    if state.steps > MAX_STEPS:
        _refuse(state, "the expression is too complex")
    if depth > MAX_DEPTH:
        _refuse(state, "the expression is nested too deeply")
    handler = _HANDLERS.get(type(node))
    if handler is None:
        what = _REFUSED_NODES.get(type(node), f"'{type(node).__name__}' expressions")
        _refuse(state, f"{what} are not allowed")
    value = handler(node, state, depth + 1)
    _check_size(value, state)
    return value


def _constant(node: ast.Constant, state: _State, depth: int) -> Any:
    return node.value


def _name(node: ast.Name, state: _State, depth: int) -> Any:
    name = node.id
    if name.startswith("_"):
        _refuse(state, f"name '{name}' is not allowed")
    if name in state.names:
        return state.names[name]
    if name in _BUILTINS:
        return _BUILTINS[name]
    _refuse(state, f"name '{name}' is not defined")


def _attribute(node: ast.Attribute, state: _State, depth: int) -> Any:
    attr = node.attr
    if attr.startswith("_"):
        _refuse(state, f"attribute '{attr}' is not allowed (private names are never read)")
    if attr in _DENIED_ATTRIBUTES:
        _refuse(state, f"access to '{_source(node)}' is not allowed")
    owner = _walk(node.value, state, depth)
    if isinstance(owner, types.ModuleType) and attr not in _MODULE_ATTRIBUTES:
        _refuse(state, f"access to '{_source(node)}' is not allowed")
    if _is_code_like(owner) and not isinstance(owner, types.ModuleType):
        _refuse(state, f"attributes of '{_source(node.value)}' cannot be read")
    value = getattr(owner, attr)
    if _is_code_like(value):
        _refuse(state, f"'{_source(node)}' is a function or module; only values can be read")
    return value


def _subscript(node: ast.Subscript, state: _State, depth: int) -> Any:
    owner = _walk(node.value, state, depth)
    if _is_code_like(owner):
        _refuse(state, f"'{_source(node.value)}' cannot be subscripted")
    index = _index(node.slice, state, depth)
    if isinstance(index, slice) and _sized_length(owner) is not None:
        if len(range(_sized_length(owner) or 0)[index]) > MAX_ITEMS:
            _refuse(state, f"the slice of '{_source(node.value)}' is too long")
    value = owner[index]
    if _is_code_like(value):
        _refuse(state, f"'{_source(node)}' is a function or module; only values can be read")
    return value


def _index(node: ast.AST, state: _State, depth: int) -> Any:
    if isinstance(node, ast.Slice):
        bounds = [None if part is None else _walk(part, state, depth) for part in (node.lower, node.upper, node.step)]
        if not all(bound is None or type(bound) in (int, bool) for bound in bounds):
            _refuse(state, "slice bounds must be integers")
        return slice(*bounds)
    index = _walk(node, state, depth)
    if type(index) not in (int, bool, str):
        _refuse(state, "subscripts must be an integer, a string or a slice")
    return index


def _joined_str(node: ast.JoinedStr, state: _State, depth: int) -> str:
    pieces: list[str] = []
    total = 0
    for part in node.values:
        piece = _walk(part, state, depth)
        if not isinstance(piece, str):
            _refuse(state, "f-string parts must be text")
        total += len(piece)
        if total > MAX_STRING:
            _refuse(state, "the f-string result is too long")
        pieces.append(piece)
    return "".join(pieces)


def _formatted_value(node: ast.FormattedValue, state: _State, depth: int) -> str:
    value = _walk(node.value, state, depth)
    _check_printable(value, state)
    if node.conversion == ord("s"):
        value = str(value)
    elif node.conversion == ord("r"):
        value = repr(value)
    elif node.conversion == ord("a"):
        value = ascii(value)
    spec = "" if node.format_spec is None else _walk(node.format_spec, state, depth)
    if any(int(digits) > MAX_STRING for digits in re.findall(r"\d+", spec)):
        _refuse(state, "the format width or precision is too large")
    return format(value, spec)


def _sequence(node: ast.Tuple | ast.List | ast.Set, state: _State, depth: int) -> Any:
    items = [_walk(item, state, depth) for item in node.elts]
    if any(_is_code_like(item) for item in items):
        _refuse(state, "functions, classes and modules cannot be put in containers")
    kind = {ast.Tuple: tuple, ast.List: list, ast.Set: set}[type(node)]
    return kind(items)


def _dict(node: ast.Dict, state: _State, depth: int) -> dict[Any, Any]:
    if any(key is None for key in node.keys):
        _refuse(state, "dict unpacking (**) is not allowed")
    result = {}
    for key_node, value_node in zip(node.keys, node.values):
        key = _walk(key_node, state, depth)  # type: ignore[arg-type]
        value = _walk(value_node, state, depth)
        if _is_code_like(key) or _is_code_like(value):
            _refuse(state, "functions, classes and modules cannot be put in containers")
        result[key] = value
    return result


def _unary(node: ast.UnaryOp, state: _State, depth: int) -> Any:
    operand = _walk(node.operand, state, depth)
    if isinstance(node.op, ast.Not):
        return not operand
    if type(operand) not in (bool, int, float):
        _refuse(state, f"'{_source(node)}' needs a number")
    if isinstance(node.op, ast.USub):
        return -operand
    if isinstance(node.op, ast.UAdd):
        return +operand
    return ~operand


def _binary(node: ast.BinOp, state: _State, depth: int) -> Any:
    operator = _BINARY_OPERATORS.get(type(node.op))
    if operator is None:
        _refuse(state, f"the operator in '{_source(node)}' is not allowed")
    left = _walk(node.left, state, depth)
    right = _walk(node.right, state, depth)
    is_path = isinstance(left, _PATH_TYPES) or isinstance(right, _PATH_TYPES)
    if isinstance(node.op, ast.Div) and is_path:
        _check_path_operands([left, right], state)
    elif isinstance(node.op, ast.Mod) and type(left) is str:
        _check_printf(left, right, state)
    elif type(left) not in _PLAIN_TYPES or type(right) not in _PLAIN_TYPES:
        _refuse(state, f"'{_source(node)}' only works on numbers, text, paths, lists and tuples")
    elif isinstance(node.op, ast.Mult):
        _check_repeat(left, right, state)
    elif isinstance(node.op, ast.Pow):
        _check_power(left, right, state)
    return operator(left, right)


def _bool_op(node: ast.BoolOp, state: _State, depth: int) -> Any:
    value: Any = None
    for operand in node.values:
        value = _walk(operand, state, depth)
        if isinstance(node.op, ast.And) and not value:
            return value
        if isinstance(node.op, ast.Or) and value:
            return value
    return value


def _compare(node: ast.Compare, state: _State, depth: int) -> bool:
    left = _walk(node.left, state, depth)
    for op, right_node in zip(node.ops, node.comparators):
        right = _walk(right_node, state, depth)
        if isinstance(op, (ast.In, ast.NotIn)) and type(right) is not str:
            _check_iterable_size(right, state)
        if not _COMPARISONS[type(op)](left, right):
            return False
        left = right
    return True


def _if_expression(node: ast.IfExp, state: _State, depth: int) -> Any:
    branch = node.body if _walk(node.test, state, depth) else node.orelse
    return _walk(branch, state, depth)


def _call(node: ast.Call, state: _State, depth: int) -> Any:
    if any(isinstance(arg, ast.Starred) for arg in node.args) or any(kw.arg is None for kw in node.keywords):
        _refuse(state, "argument unpacking (* and **) is not allowed")
    func = node.func
    if isinstance(func, ast.Name):
        function = _callable_name(func.id, state)
        args, kwargs = _arguments(node, state, depth)
        _check_function_call(function, func.id, args, kwargs, state)
        return function(*args, **kwargs)
    if isinstance(func, ast.Attribute) and func.attr in _STR_METHODS | _PATH_METHODS:
        owner = _walk(func.value, state, depth)
        args, kwargs = _arguments(node, state, depth)
        if type(owner) is str and func.attr in _STR_METHODS:
            _check_str_method(owner, func.attr, args, kwargs, state)
        elif type(owner) in _PATH_TYPES and func.attr in _PATH_METHODS:
            _check_path_operands([owner, *args, *kwargs.values()], state)
        else:
            _refuse(state, f"calls to '{_source(func)}' are not allowed")
        return getattr(owner, func.attr)(*args, **kwargs)
    _refuse(state, f"calls to '{_source(func)}' are not allowed")


def _callable_name(name: str, state: _State) -> Callable[..., Any]:
    """Resolve a called name, accepting only allow-listed pure functions."""
    value = state.names[name] if name in state.names else _BUILTINS.get(name)
    allowed = (
        any(value is builtin for builtin in _BUILTINS.values())
        or any(value is cls for cls in _PATH_CLASSES)
        or _is_pure_function(value)
    )
    if not allowed or name.startswith("_"):
        _refuse(state, f"calls to '{name}' are not allowed")
    return value  # type: ignore[return-value]


def _arguments(node: ast.Call, state: _State, depth: int) -> tuple[list[Any], dict[str, Any]]:
    args = [_walk(arg, state, depth) for arg in node.args]
    kwargs = {str(kw.arg): _walk(kw.value, state, depth) for kw in node.keywords}
    if any(_is_code_like(value) for value in [*args, *kwargs.values()]):
        _refuse(state, "functions, classes and modules cannot be passed as arguments")
    return args, kwargs


# --- resource checks --------------------------------------------------------


def _check_function_call(function: Any, name: str, args: list[Any], kwargs: dict[str, Any], state: _State) -> None:
    values = [*args, *kwargs.values()]
    if any(function is cls for cls in _PATH_CLASSES):
        _check_path_operands(values, state)
    elif _is_pure_function(function):
        if not all(type(v) in _SCALAR_TYPES or isinstance(v, _PATH_TYPES) for v in values):
            _refuse(state, f"'{name}' takes only numbers, text and paths")
    elif function is str:
        for value in values:
            _check_printable(value, state)
    elif function is round and len(values) > 1:
        digits = values[1]
        if type(digits) is int and abs(digits) > MAX_ROUND_DIGITS:
            _refuse(state, "round() with that many digits is not allowed")
    elif function in (min, max):
        if "key" in kwargs:
            _refuse(state, f"{name}() with key= is not allowed")
        if len(args) == 1:
            _check_iterable_size(args[0], state)


def _check_str_method(text: str, method: str, args: list[Any], kwargs: dict[str, Any], state: _State) -> None:
    values = [*args, *kwargs.values()]
    if not all(type(v) in _SCALAR_TYPES or type(v) in (list, tuple) for v in values):
        _refuse(state, f"str.{method}() takes only plain values")
    if method in _PADDING_METHODS and values and type(values[0]) is int and values[0] > MAX_STRING:
        _refuse(state, f"str.{method}() result would be too long")
    elif method == "replace" and len(args) >= 2 and type(args[0]) is str and type(args[1]) is str:
        old, new = args[0], args[1]
        count = len(text) + 1 if not old else text.count(old)
        if len(text) + count * max(0, len(new) - len(old)) > MAX_STRING:
            _refuse(state, "str.replace() result would be too long")
    elif method == "join" and args:
        items = args[0]
        if type(items) not in (list, tuple, str) or not all(type(item) is str for item in items):
            _refuse(state, "str.join() takes a list or tuple of text")
        if sum(len(item) for item in items) + len(text) * len(items) > MAX_STRING:
            _refuse(state, "str.join() result would be too long")


def _check_path_operands(values: list[Any], state: _State) -> None:
    if not all(type(v) is str or isinstance(v, _PATH_TYPES) for v in values):
        _refuse(state, "paths can only be built from text and other paths")
    if sum(len(str(v)) for v in values) > MAX_STRING:
        _refuse(state, "the path would be too long")


def _check_printf(template: str, values: Any, state: _State) -> None:
    """Bound `'%5d' % x` formatting: no `*` widths, small widths, small input."""
    total = len(template) + _text_size(values)
    for match in _PRINTF_SPEC.finditer(template):
        for number in match.group(1, 2):
            if number == "*":
                _refuse(state, "'*' widths in % formatting are not allowed")
            if number:
                total += int(number)
    if total > MAX_STRING:
        _refuse(state, "the formatted text would be too long")


def _check_repeat(left: Any, right: Any, state: _State) -> None:
    """Refuse `'a' * 10**10`-style repetition before it allocates."""
    for sequence, count in ((left, right), (right, left)):
        if type(sequence) in (str, list, tuple) and type(count) in (int, bool):
            size = len(sequence) if type(sequence) is str else _weight(sequence)
            limit = MAX_STRING if type(sequence) is str else MAX_ITEMS
            if size * count > limit:
                _refuse(state, "the repeated sequence would be too large")


def _check_power(base: Any, exponent: Any, state: _State) -> None:
    """Refuse integer powers whose result would be huge (`10**10**10`)."""
    if type(base) in (int, bool) and type(exponent) in (int, bool) and exponent > 0 and abs(base) > 1:
        if base.bit_length() * exponent > MAX_INT_BITS:
            _refuse(state, "the power is too large")


def _sized_length(value: Any) -> int | None:
    """len(value), or None for unsized objects (len() only uses the type's slot)."""
    try:
        return len(value)
    except TypeError:
        return None


def _check_iterable_size(value: Any, state: _State) -> None:
    size = _sized_length(value)
    if size is None:
        _refuse(state, "only sized collections can be searched or compared")
    if size > MAX_ITEMS * 100:
        _refuse(state, "the collection is too large to search")


def _check_printable(value: Any, state: _State) -> None:
    if _text_size(value) > MAX_STRING:
        _refuse(state, "the value is too large to turn into text")


def _check_size(value: Any, state: _State) -> None:
    """Cap every intermediate result so nothing can grow without bound."""
    kind = type(value)
    if kind is int and value.bit_length() > MAX_INT_BITS:
        _refuse(state, "the number is too large")
    elif kind in (str, bytes) and len(value) > MAX_STRING:
        _refuse(state, "the text is too long")
    elif kind in _CONTAINER_TYPES and _weight(value) > MAX_ITEMS:
        _refuse(state, "the collection is too large")
    elif isinstance(value, _PATH_TYPES) and len(str(value)) > MAX_STRING:
        _refuse(state, "the path is too long")


def _weight(value: Any) -> int:
    """Deep element count of plain containers, stopping once past the cap."""
    total = 0
    pending = [value]
    while pending and total <= MAX_ITEMS:
        item = pending.pop()
        total += 1
        if type(item) in _CONTAINER_TYPES:
            pending.extend(item.items() if type(item) is dict else item)
    return total + len(pending)


def _text_size(value: Any) -> int:
    """Rough upper bound of len(str(value)), stopping once past the cap."""
    total = 0
    pending = [value]
    while pending and total <= MAX_STRING:
        item = pending.pop()
        kind = type(item)
        if kind in (str, bytes):
            total += len(item) + 3
        elif kind is int:
            total += item.bit_length() // 3 + 3
        elif kind in (bool, float, complex, type(None)):
            total += 50
        elif isinstance(item, _PATH_TYPES):
            total += len(str(item)) + 30
        elif kind in _CONTAINER_TYPES:
            total += 2
            pending.extend(item.items() if kind is dict else item)
        else:
            try:
                total += 256 + 32 * len(item)
            except TypeError:
                total += 256
    return total


_HANDLERS: dict[type[ast.AST], Callable[[Any, _State, int], Any]] = {
    ast.Constant: _constant,
    ast.Name: _name,
    ast.Attribute: _attribute,
    ast.Subscript: _subscript,
    ast.JoinedStr: _joined_str,
    ast.FormattedValue: _formatted_value,
    ast.Tuple: _sequence,
    ast.List: _sequence,
    ast.Set: _sequence,
    ast.Dict: _dict,
    ast.UnaryOp: _unary,
    ast.BinOp: _binary,
    ast.BoolOp: _bool_op,
    ast.Compare: _compare,
    ast.IfExp: _if_expression,
    ast.Call: _call,
}
