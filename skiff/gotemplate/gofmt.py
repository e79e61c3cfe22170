"""Go's ``fmt`` printing for Python values: ``Sprint``, ``Sprintln``, ``Sprintf``.

A template prints every value through fmt (``{{.Size}}`` is ``fmt.Fprint``),
and podman users write ``printf "%-20s %5.1f"``: the output must be Go's to
the character — shortest float forms (``1e+06``), ``map[a:b]`` and ``[x y]``
for containers, ``%!d(string=x)`` for a wrong verb, ``%!d(MISSING)`` and
``%!(EXTRA int=2)`` for argument count mistakes, zero padding after the sign.

Not supported: ``%p``, ``%b`` of floats, the ``#`` flag of ``%e/%f/%g``, and
complex numbers; they print as a bad verb.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from skiff.gotemplate.values import (
    NO_VALUE,
    has_own_str,
    is_struct,
    sorted_items,
    struct_fields,
    type_name,
)

# --- strconv -------------------------------------------------------------------

_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def _escape_rune(ch: str, q: str, ascii_only: bool) -> str:
    if ch in (q, "\\"):
        return "\\" + ch
    c = ord(ch)
    if ascii_only:
        if c < 0x80 and ch.isprintable():
            return ch
    elif ch.isprintable():
        return ch
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if c < 0x20 or c == 0x7F:
        return f"\\x{c:02x}"
    if 0xD800 <= c <= 0xDFFF:
        c = 0xFFFD
    if c < 0x10000:
        return f"\\u{c:04x}"
    return f"\\U{c:08x}"


def quote(s: str, ascii_only: bool = False) -> str:
    """strconv.Quote (or QuoteToASCII)."""
    return '"' + "".join(_escape_rune(ch, '"', ascii_only) for ch in s) + '"'


def quote_rune(code: int, ascii_only: bool = False) -> str:
    """strconv.QuoteRune."""
    if code > 0x10FFFF or code < 0 or 0xD800 <= code <= 0xDFFF:
        code = 0xFFFD
    return "'" + _escape_rune(chr(code), "'", ascii_only) + "'"


def can_backquote(s: str) -> bool:
    return all(
        not (ch in {"`", "\ufeff"} or (ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F)
        for ch in s
    )


def _shortest_digits(x: float) -> tuple[str, int]:
    """Shortest round-trip digits of ``abs(x)`` and the decimal point position.

    ``0.00123`` is ("123", -2): the value is 0.<digits> * 10**dp.
    """
    r = repr(abs(x))
    mantissa, _, exp = r.partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = int_part + frac_part
    stripped = digits.lstrip("0")
    dp = len(int_part) + (int(exp) if exp else 0) - (len(digits) - len(stripped))
    stripped = stripped.rstrip("0")
    if not stripped:
        return "0", 1
    return stripped, dp


def _exp_form(digits: str, dp: int, upper: bool) -> str:
    exp = dp - 1
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    sign = "-" if exp < 0 else "+"
    return f"{mant}{'E' if upper else 'e'}{sign}{abs(exp):02d}"


def _fixed_form(digits: str, dp: int) -> str:
    if dp <= 0:
        return "0." + "0" * (-dp) + digits
    if dp >= len(digits):
        return digits + "0" * (dp - len(digits))
    return digits[:dp] + "." + digits[dp:]


def format_float(x: float, fmt: str = "g", prec: int = -1) -> str:
    """strconv.FormatFloat(x, fmt, prec, 64) for fmt in e E f F g G."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    ax = abs(x)
    if prec < 0:
        digits, dp = _shortest_digits(ax)
        if fmt in "eE":
            return sign + _exp_form(digits, dp, fmt == "E")
        if fmt in "fF":
            return sign + _fixed_form(digits, dp)
        exp = dp - 1
        if exp < -4 or exp >= 6:
            return sign + _exp_form(digits, dp, fmt == "G")
        return sign + _fixed_form(digits, dp)
    return sign + format(ax, f".{prec}{fmt}")


def format_float_json(x: float) -> str:
    """encoding/json's float64 form: fixed unless tiny or huge, short exponents."""
    ax = abs(x)
    if ax != 0 and (ax < 1e-6 or ax >= 1e21):
        s = format_float(x, "e")
        if len(s) >= 4 and s[-4] == "e" and s[-3] == "-" and s[-2] == "0":
            s = s[:-2] + s[-1]
        return s
    return format_float(x, "f")


# --- time ----------------------------------------------------------------------


def format_time(t: _dt.datetime) -> str:
    """time.Time.String(): ``2006-01-02 15:04:05.999999999 -0700 MST``."""
    if t.tzinfo is None:
        t = t.astimezone()
    s = t.strftime("%Y-%m-%d %H:%M:%S")
    if t.microsecond:
        s += f".{t.microsecond:06d}".rstrip("0")
    offset = t.utcoffset() or _dt.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    numeric = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    zone = t.tzname() or ""
    if not zone.isalpha():
        zone = numeric
    return f"{s} {numeric} {zone}"


def format_duration(d: _dt.timedelta) -> str:
    """time.Duration.String(): ``1h2m3.5s``, ``1.5ms``, ``0s``."""
    from skiff.gotemplate.duration import go_duration

    return go_duration((d.days * 86400 + d.seconds) * 1_000_000_000 + d.microseconds * 1000)


# --- the printer -------------------------------------------------------------------


class _Flags:
    __slots__ = ("minus", "plus", "plus_v", "prec", "sharp", "sharp_v", "space", "wid", "zero")

    def __init__(self) -> None:
        self.minus = self.plus = self.sharp = self.space = self.zero = False
        self.plus_v = self.sharp_v = False
        self.wid: int | None = None
        self.prec: int | None = None


def _is_stringer(value: object) -> bool:
    """Go's fmt.Stringer (and error): a type with its own ``__str__``."""
    if isinstance(value, BaseException):
        return True
    if isinstance(value, (Mapping, list, tuple, Enum)):
        return False
    return has_own_str(value)


class _Printer:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.f = _Flags()
        self.arg_num = 0
        self.reordered = False
        self.good_arg_num = True

    def write(self, s: str) -> None:
        self.out.append(s)

    def padding(self, n: int) -> None:
        if n > 0:
            self.out.append(("0" if self.f.zero else " ") * n)

    def pad(self, s: str) -> None:
        f = self.f
        if f.wid is None or f.wid <= len(s):
            self.out.append(s)
        elif f.minus:
            self.out.append(s + " " * (f.wid - len(s)))
        else:
            self.out.append(("0" if f.zero else " ") * (f.wid - len(s)) + s)

    # --- verbs by kind ----------------------------------------------------------

    def bad_verb(self, verb: str, arg: object) -> None:
        self.write("%!" + verb + "(")
        if arg is None:
            self.write("<nil>")
        else:
            self.write(type_name(arg) + "=")
            self.print_arg(arg, "v", 0)
        self.write(")")

    def fmt_bool(self, v: bool, verb: str) -> None:
        if verb in "tv":
            self.pad("true" if v else "false")
        else:
            self.bad_verb(verb, v)

    def fmt_integer(self, v: int, verb: str) -> None:
        f = self.f
        if verb in "vd":
            if f.sharp_v:
                self.pad(str(v))
                return
            self.integer(v, 10, verb, False)
        elif verb == "b":
            self.integer(v, 2, verb, False)
        elif verb in "oO":
            self.integer(v, 8, verb, False)
        elif verb == "x":
            self.integer(v, 16, verb, False)
        elif verb == "X":
            self.integer(v, 16, verb, True)
        elif verb == "c":
            self.pad(_rune(v))
        elif verb == "q":
            self.pad(quote_rune(v, f.plus))
        elif verb == "U":
            code = v if 0 <= v <= 0x10FFFF else 0xFFFD
            digits = f"{code:04X}"
            if f.prec is not None and len(digits) < f.prec:
                digits = "0" * (f.prec - len(digits)) + digits
            s = "U+" + digits
            if f.sharp and chr(code).isprintable():
                s += " '" + chr(code) + "'"
            zero, f.zero = f.zero, False
            self.pad(s)
            f.zero = zero
        else:
            self.bad_verb(verb, v)

    def integer(self, v: int, base: int, verb: str, upper: bool) -> None:
        f = self.f
        negative = v < 0
        u = -v if negative else v
        digits = format(u, {2: "b", 8: "o", 10: "d", 16: "X" if upper else "x"}[base])
        prec = 0
        if f.prec is not None:
            prec = f.prec
            if prec == 0 and u == 0:
                zero, f.zero = f.zero, False
                self.padding(f.wid or 0)
                f.zero = zero
                return
        elif f.zero and f.wid is not None:
            prec = f.wid
            if negative or f.plus or f.space:
                prec -= 1
        if len(digits) < prec:
            digits = "0" * (prec - len(digits)) + digits
        if f.sharp:
            if base == 2:
                digits = "0b" + digits
            elif base == 8 and not digits.startswith("0"):
                digits = "0" + digits
            elif base == 16:
                digits = ("0X" if upper else "0x") + digits
        if verb == "O":
            digits = "0o" + digits
        if negative:
            digits = "-" + digits
        elif f.plus:
            digits = "+" + digits
        elif f.space:
            digits = " " + digits
        zero, f.zero = f.zero, False
        self.pad(digits)
        f.zero = zero

    def fmt_float(self, v: float, verb: str) -> None:
        f = self.f
        if verb == "v":
            num = format_float(v, "g", -1 if f.prec is None else f.prec)
        elif verb in "gG":
            num = format_float(v, verb, -1 if f.prec is None else f.prec)
        elif verb in "eEfF":
            num = format_float(v, verb if verb != "F" else "f", 6 if f.prec is None else f.prec)
        elif verb in "xX":
            num = _hex_float(v, verb == "X", f.prec)
        else:
            self.bad_verb(verb, v)
            return
        if num[0] not in "+-":
            num = "+" + num
        if f.space and num[0] == "+" and not f.plus:
            num = " " + num[1:]
        if num[1:2] in ("I", "N"):
            if num[1] == "N" and not f.space and not f.plus:
                num = num[1:]
            zero, f.zero = f.zero, False
            self.pad(num)
            f.zero = zero
            return
        if f.plus or num[0] != "+":
            if f.zero and f.wid is not None and f.wid > len(num):
                self.write(num[0])
                self.padding(f.wid - len(num))
                self.write(num[1:])
                return
            self.pad(num)
            return
        self.pad(num[1:])

    def fmt_string(self, s: str, verb: str) -> None:
        f = self.f
        if verb == "v":
            if f.sharp_v:
                self.pad(quote(s))
            else:
                self.pad(self.truncate(s))
        elif verb == "s":
            self.pad(self.truncate(s))
        elif verb in "xX":
            self.hex_bytes(s.encode("utf-8", "replace"), verb == "X")
        elif verb == "q":
            s = self.truncate(s)
            if f.sharp and can_backquote(s):
                self.pad("`" + s + "`")
            else:
                self.pad(quote(s, f.plus))
        else:
            self.bad_verb(verb, s)

    def truncate(self, s: str) -> str:
        if self.f.prec is not None and len(s) > self.f.prec:
            return s[: self.f.prec]
        return s

    def hex_bytes(self, b: bytes, upper: bool) -> None:
        f = self.f
        length = len(b)
        if f.prec is not None and f.prec < length:
            length = f.prec
        width = 2 * length
        if width <= 0:
            if f.wid is not None:
                self.padding(f.wid)
            return
        if f.space:
            if f.sharp:
                width *= 2
            width += length - 1
        elif f.sharp:
            width += 2
        if f.wid is not None and f.wid > width and not f.minus:
            self.padding(f.wid - width)
        prefix = "0X" if upper else "0x"
        parts = []
        if f.sharp:
            parts.append(prefix)
        for i in range(length):
            if f.space and i > 0:
                parts.append(" ")
                if f.sharp:
                    parts.append(prefix)
            parts.append(f"{b[i]:02X}" if upper else f"{b[i]:02x}")
        self.write("".join(parts))
        if f.wid is not None and f.wid > width and f.minus:
            self.padding(f.wid - width)

    def fmt_bytes(self, b: bytes, verb: str) -> None:
        if verb in "vd":
            self.write("[")
            for i, byte in enumerate(b):
                if i:
                    self.write(" ")
                self.fmt_integer(byte, verb)
            self.write("]")
        elif verb == "s":
            self.pad(self.truncate(b.decode("utf-8", "replace")))
        elif verb in "xX":
            self.hex_bytes(b, verb == "X")
        elif verb == "q":
            self.fmt_string(b.decode("utf-8", "replace"), "q")
        else:
            self.bad_verb(verb, b)

    # --- dispatch -----------------------------------------------------------------

    def print_arg(self, arg: object, verb: str, depth: int) -> None:
        if arg is None or arg is NO_VALUE:
            if verb in "Tv":
                self.pad("<nil>")
            else:
                self.bad_verb(verb, None)
            return
        if verb == "T":
            self.pad(type_name(arg))
            return
        if isinstance(arg, bool):
            self.fmt_bool(arg, verb)
        elif isinstance(arg, int) and not isinstance(arg, Enum):
            self.fmt_integer(int(arg), verb)
        elif isinstance(arg, float):
            self.fmt_float(arg, verb)
        elif isinstance(arg, str) and not isinstance(arg, Enum):
            self.fmt_string(str(arg), verb)
        elif isinstance(arg, (bytes, bytearray)):
            self.fmt_bytes(bytes(arg), verb)
        elif isinstance(arg, Enum):
            self.print_arg(arg.value, verb, depth)
        elif isinstance(arg, _dt.datetime) and verb in "vsxXq":
            self.fmt_string(format_time(arg), "s" if verb == "v" else verb)
        elif isinstance(arg, _dt.timedelta):
            if verb in "vsxXq":
                self.fmt_string(format_duration(arg), "s" if verb == "v" else verb)
            else:
                self.fmt_integer(arg // _dt.timedelta(microseconds=1) * 1000, verb)
        elif _is_stringer(arg) and verb in "vsxXq" and not self.f.sharp_v:
            self.fmt_string(str(arg), "s" if verb == "v" else verb)
        else:
            self.print_value(arg, verb, depth)

    def print_value(self, value: Any, verb: str, depth: int) -> None:
        f = self.f
        if isinstance(value, Mapping) and not is_struct(value):
            if f.sharp_v:
                self.write(type_name(value) + "{")
            else:
                self.write("map[")
            for i, (k, v) in enumerate(sorted_items(value)):
                if i:
                    self.write(", " if f.sharp_v else " ")
                self.print_arg(k, verb, depth + 1)
                self.write(":")
                self.print_arg(v, verb, depth + 1)
            self.write("}" if f.sharp_v else "]")
        elif is_struct(value):
            if f.sharp_v:
                self.write(type_name(value))
            self.write("{")
            for i, (name, v) in enumerate(struct_fields(value)):
                if i:
                    self.write(", " if f.sharp_v else " ")
                if f.plus_v or f.sharp_v:
                    self.write(name + ":")
                self.print_arg(v, verb, depth + 1)
            self.write("}")
        elif isinstance(value, (list, tuple)):
            if f.sharp_v:
                self.write(type_name(value) + "{")
            else:
                self.write("[")
            for i, v in enumerate(value):
                if i:
                    self.write(", " if f.sharp_v else " ")
                self.print_arg(v, verb, depth + 1)
            self.write("}" if f.sharp_v else "]")
        elif hasattr(value, "__dict__"):
            public = {k: v for k, v in vars(value).items() if not k.startswith("_")}
            self.write("{")
            for i, (name, v) in enumerate(public.items()):
                if i:
                    self.write(" ")
                if f.plus_v or f.sharp_v:
                    self.write(name + ":")
                self.print_arg(v, verb, depth + 1)
            self.write("}")
        elif verb in "vsxXq":
            self.fmt_string(str(value), "s" if verb == "v" else verb)
        else:
            self.bad_verb(verb, value)

    # --- Sprintf ------------------------------------------------------------------

    def do_printf(self, fmt: str, args: Sequence[Any]) -> str:
        """fmt.Sprintf's loop, flag for flag (see Go's fmt/print.go doPrintf)."""
        end = len(fmt)
        self.arg_num = 0
        self.reordered = False
        i = 0
        while i < end:
            self.good_arg_num = True
            j = fmt.find("%", i)
            if j < 0:
                self.write(fmt[i:])
                break
            if j > i:
                self.write(fmt[i:j])
            i = j + 1
            f = self.f = _Flags()
            while i < end:
                c = fmt[i]
                if c == "#":
                    f.sharp = True
                elif c == "0":
                    f.zero = not f.minus
                elif c == "+":
                    f.plus = True
                elif c == "-":
                    f.minus = True
                    f.zero = False
                elif c == " ":
                    f.space = True
                else:
                    break
                i += 1
            i, after_index = self._arg_number(fmt, i, len(args))
            if i < end and fmt[i] == "*":
                i += 1
                f.wid = self._int_from_arg(args)
                if f.wid is None:
                    self.write("%!(BADWIDTH)")
                elif f.wid < 0:
                    f.wid = -f.wid
                    f.minus = True
                    f.zero = False
                after_index = False
            else:
                f.wid, i = _parse_num(fmt, i)
                if after_index and f.wid is not None:
                    self.good_arg_num = False
            if i + 1 < end and fmt[i] == ".":
                i += 1
                if after_index:
                    self.good_arg_num = False
                i, after_index = self._arg_number(fmt, i, len(args))
                if i < end and fmt[i] == "*":
                    i += 1
                    f.prec = self._int_from_arg(args)
                    if f.prec is not None and f.prec < 0:
                        f.prec = None
                    if f.prec is None:
                        self.write("%!(BADPREC)")
                    after_index = False
                else:
                    f.prec, i = _parse_num(fmt, i)
                    if f.prec is None:
                        f.prec = 0
            if not after_index:
                i, after_index = self._arg_number(fmt, i, len(args))
            if i >= end:
                self.write("%!(NOVERB)")
                break
            verb = fmt[i]
            i += 1
            if verb == "%":
                self.write("%")
            elif not self.good_arg_num:
                self.write("%!" + verb + "(BADINDEX)")
            elif self.arg_num >= len(args):
                self.write("%!" + verb + "(MISSING)")
            else:
                if verb == "v":
                    f.sharp_v, f.sharp = f.sharp, False
                    f.plus_v, f.plus = f.plus, False
                self.print_arg(args[self.arg_num], verb, 0)
                self.arg_num += 1
        if not self.reordered and self.arg_num < len(args):
            self.f = _Flags()
            self.write("%!(EXTRA ")
            for k, arg in enumerate(args[self.arg_num :]):
                if k:
                    self.write(", ")
                if arg is None:
                    self.write("<nil>")
                else:
                    self.write(type_name(arg) + "=")
                    self.print_arg(arg, "v", 0)
            self.write(")")
        return "".join(self.out)

    def _arg_number(self, fmt: str, i: int, nargs: int) -> tuple[int, bool]:
        """An explicit ``[n]`` argument index at ``i``: (new i, found)."""
        if i >= len(fmt) or fmt[i] != "[":
            return i, False
        self.reordered = True
        close = fmt.find("]", i + 1)
        if len(fmt) - i < 3 or close < 0:
            self.good_arg_num = False
            return i + 1, False
        num, after = _parse_num(fmt, i + 1, close)
        if num is None or after != close:
            self.good_arg_num = False
            return close + 1, False
        if 0 <= num - 1 < nargs:
            self.arg_num = num - 1
            return close + 1, True
        self.good_arg_num = False
        return close + 1, True

    def _int_from_arg(self, args: Sequence[Any]) -> int | None:
        if self.arg_num >= len(args):
            return None
        arg = args[self.arg_num]
        self.arg_num += 1
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) <= 1_000_000:
            return arg
        return None


def _parse_num(s: str, start: int, end: int | None = None) -> tuple[int | None, int]:
    """Decimal digits at ``start``: (value or None, index after them)."""
    stop = len(s) if end is None else end
    i = start
    while i < stop and "0" <= s[i] <= "9":
        i += 1
    if i == start:
        return None, start
    value = int(s[start:i])
    if value > 1_000_000:
        return None, stop
    return value, i


def _rune(code: int) -> str:
    if code < 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    return chr(code)


def _hex_float(v: float, upper: bool, prec: int | None) -> str:
    if math.isnan(v) or math.isinf(v):
        return format_float(v)
    h = float.hex(v)  # -0x1.8000000000000p+1
    sign = "-" if h.startswith("-") else ""
    mant, _, exp = h.lstrip("-").partition("p")
    head, _, frac = mant[2:].partition(".")
    frac = frac.rstrip("0") if prec is None else (frac + "0" * prec)[:prec]
    e = int(exp)
    out = f"{sign}0x{head}" + (f".{frac}" if frac else "") + f"p{'-' if e < 0 else '+'}{abs(e):02d}"
    return out.upper() if upper else out


# --- public entry points ---------------------------------------------------------------


def sprintf(fmt: str, args: Sequence[Any]) -> str:
    return _Printer().do_printf(fmt, args)


def sprint(args: Sequence[Any]) -> str:
    """fmt.Sprint: spaces between operands when neither side is a string."""
    p = _Printer()
    prev_string = False
    for n, arg in enumerate(args):
        is_string = isinstance(arg, str)
        if n > 0 and not is_string and not prev_string:
            p.write(" ")
        p.print_arg(arg, "v", 0)
        prev_string = is_string
    return "".join(p.out)


def sprintln(args: Sequence[Any]) -> str:
    """fmt.Sprintln: spaces between all operands, and a newline."""
    p = _Printer()
    for n, arg in enumerate(args):
        if n > 0:
            p.write(" ")
        p.print_arg(arg, "v", 0)
    p.write("\n")
    return "".join(p.out)


def format_value(value: object) -> str:
    """How ``{{pipeline}}`` prints a value (fmt.Fprint of one operand)."""
    if isinstance(value, str):
        return value
    p = _Printer()
    p.print_arg(value, "v", 0)
    return "".join(p.out)
