#!/usr/bin/env python3
"""Static checks of the Julia package, for machines without Julia.

    python3 scripts/check_julia.py [--lib PATH] [--root DIR]
    python3 scripts/check_julia.py --self-test

Parses every .jl file under src/, ext/ (package extensions), test/, deps/,
benchmark/ and examples/ with tree-sitter-julia and checks:

  parse    every file parses with no ERROR or MISSING node;
  ccall    every `ccall((:sym, lib), Ret, (T1, ...), args...)` (and `@ccall`)
           that targets libmmsb names a symbol the built library exports and
           the header declares; the argument-type tuple has as many entries as
           the C function has parameters, and as many actual arguments follow;
           the return type and each argument type are compatible with the C
           types (table C_SCALARS_COMPAT below);
  libcall  every `LibMMSB.name(...)` call names a function of the header and
           passes as many arguments as it has parameters; every other
           `LibMMSB.NAME` is a constant, typedef or struct of the header;
  struct   a Julia struct named like a C struct has the same fields, in the
           same order, with compatible types (the layout must be identical);
  export   every name in a module's `export` statement is defined in that
           module (function, macro, const/global, struct/abstract/primitive
           type, module, @enum) or bound by using/import;
  include  every `include("...")` target exists (a non-literal include must
           carry the comment `check_julia: allow-dynamic-include`);
  header   every function of the header is exported by the library.

Exit status: 0 clean, 1 problems found (listed as path:line:col: [rule] ...),
2 the check could not run (missing library, header or tree-sitter).
The library is found with --lib, else $MMSB_LIB, else rust/target/release/.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import gen_libmmsb_jl as gen  # noqa: E402  (the header parser is shared with the generator)

CHECKED_DIRS = ("src", "ext", "test", "deps", "benchmark", "examples")
DYNAMIC_INCLUDE_PRAGMA = "check_julia: allow-dynamic-include"

# C scalar type -> the Julia spellings accepted for it (in ccall signatures and struct fields).
C_SCALARS_COMPAT = {
    "bool": {"Bool"},
    "uint8_t": {"UInt8", "Cuchar"},
    "uint16_t": {"UInt16", "Cushort"},
    "uint32_t": {"UInt32", "Cuint"},
    "uint64_t": {"UInt64", "Culonglong"},
    "int8_t": {"Int8"},
    "int16_t": {"Int16", "Cshort"},
    "int32_t": {"Int32", "Cint"},
    "int64_t": {"Int64", "Clonglong"},
    "size_t": {"Csize_t"},
    "double": {"Float64", "Cdouble"},
    "char": {"Cchar", "UInt8", "Int8"},
    "void": {"Cvoid", "Nothing"},
}
# `const char *` (a NUL-terminated input string) may also be passed as:
CSTRING_COMPAT = {"Cstring"}
# Module qualifiers stripped from Julia type names before comparison.
QUALIFIERS = ("LibMMSB.", "MMSB.LibMMSB.", "MMSB.", "Base.", "Core.")


@dataclass
class Problem:
    path: str
    line: int
    col: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: [{self.rule}] {self.message}"


@dataclass
class Scope:
    """A module (or a root file's top level) and the names bound in it."""

    name: str
    path: str
    defined: set[str] = field(default_factory=set)
    exports: list[tuple[str, str, int, int]] = field(default_factory=list)


# --------------------------------------------------------------------------- tree-sitter


def load_parser():
    try:
        import tree_sitter
        import tree_sitter_julia
    except ImportError as e:
        print(f"check_julia: error: {e}. Install the pinned parser:\n"
              f"  python3 -m pip install 'tree-sitter==0.24.0' 'tree-sitter-julia==0.23.1'",
              file=sys.stderr)
        sys.exit(2)
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_julia.language()))


def text(node, src: bytes) -> str:
    return src[node.start_byte:node.end_byte].decode("utf-8", "replace")


def walk(node):
    yield node
    for c in node.children:
        yield from walk(c)


def args_of(node):
    """Named children of an argument list / tuple, without comments."""
    return [c for c in node.named_children if "comment" not in c.type]


# --------------------------------------------------------------------------- Julia types


@dataclass
class JType:
    name: str
    params: list["JType"]

    def __str__(self) -> str:
        return self.name + ("{" + ", ".join(map(str, self.params)) + "}" if self.params else "")


def parse_jtype(s: str) -> JType | None:
    """`Ptr{Ptr{UInt8}}` -> JType; None if it is not a plain (parametric) type name."""
    s = re.sub(r"\s+", "", s)
    pos = 0

    def parse() -> JType | None:
        nonlocal pos
        m = re.compile(r"[A-Za-z_][A-Za-z0-9_.!]*").match(s, pos)
        if not m:
            return None
        name = m.group(0)
        for q in QUALIFIERS:
            if name.startswith(q):
                name = name[len(q):]
        pos = m.end()
        params = []
        if pos < len(s) and s[pos] == "{":
            pos += 1
            while True:
                p = parse()
                if p is None:
                    return None
                params.append(p)
                if pos < len(s) and s[pos] == ",":
                    pos += 1
                    continue
                if pos < len(s) and s[pos] == "}":
                    pos += 1
                    break
                return None
        return JType(name, params)

    t = parse()
    return t if t is not None and pos == len(s) else None


class TypeRules:
    """C <-> Julia type compatibility, knowing the header's typedefs and structs."""

    def __init__(self, header: gen.Header):
        self.typedefs = {n: t.ctype for n, t in header.typedefs.items()}
        self.structs = set(header.structs)

    def resolve_c(self, c: gen.CType) -> gen.CType:
        while c.ptr == 0 and c.base in self.typedefs:
            inner = self.typedefs[c.base]
            c = gen.CType(c.const or inner.const, inner.base, inner.ptr)
        return c

    def compatible(self, c: gen.CType, j: JType) -> bool:
        if c.ptr == 0:
            if c.base in self.typedefs:
                if j.name in self.typedefs:  # two typedef names must be the same typedef
                    return j.name == c.base and not j.params
                return self.compatible(self.resolve_c(c), j)
            if c.base in self.structs:
                return j.name == c.base and not j.params
            if j.name in self.typedefs and not j.params:  # a Julia alias for a scalar typedef
                return self.compatible(c, JType(gen.julia_type(self.typedefs[j.name]), []))
            return not j.params and j.name in C_SCALARS_COMPAT.get(c.base, set())
        if c.ptr == 1 and c.base == "char" and j.name in CSTRING_COMPAT and not j.params:
            return True
        if j.name in ("Ptr", "Ref") and len(j.params) == 1:
            return self.compatible(gen.CType(c.const, c.base, c.ptr - 1), j.params[0])
        return False


# --------------------------------------------------------------------------- the checker


class Checker:
    def __init__(self, root: Path, header: gen.Header, exports: set[str], parser):
        self.root = root
        self.header = header
        self.lib_exports = exports
        self.parser = parser
        self.rules = TypeRules(header)
        self.problems: list[Problem] = []
        self.trees: dict[Path, tuple] = {}
        self.scopes: list[Scope] = []
        self.ccalls_checked = 0
        self.libcalls_checked = 0

    # -- helpers
    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def report(self, path: Path, node, rule: str, message: str):
        line, col = (node.start_point[0] + 1, node.start_point[1] + 1) if node is not None else (1, 1)
        self.problems.append(Problem(self.rel(path), line, col, rule, message))

    def files(self) -> list[Path]:
        out = []
        for d in CHECKED_DIRS:
            base = self.root / d
            if base.is_dir():
                out.extend(sorted(p for p in base.rglob("*.jl") if p.is_file()))
        return out

    def parse(self, path: Path):
        if path not in self.trees:
            src = path.read_bytes()
            self.trees[path] = (self.parser.parse(src), src)
        return self.trees[path]

    # -- run everything
    def run(self) -> list[Problem]:
        files = self.files()
        for path in files:
            self.check_parse(path)
        for path in files:
            tree, src = self.parse(path)
            for node in walk(tree.root_node):
                if node.type == "call_expression":
                    self.check_call(path, src, node)
                elif node.type == "macrocall_expression":
                    self.check_macro_ccall(path, src, node)
                elif node.type == "field_expression":
                    self.check_libmmsb_ref(path, src, node)
                elif node.type == "struct_definition":
                    self.check_struct(path, src, node)
        self.check_exports(files)
        self.check_header_exported()
        return self.problems

    # -- (a) parse errors
    def check_parse(self, path: Path):
        tree, src = self.parse(path)
        for node in walk(tree.root_node):
            if node.type == "ERROR":
                self.report(path, node, "parse", f"syntax error near {text(node, src)[:40]!r}")
            elif node.is_missing:
                self.report(path, node, "parse", f"missing {node.type!r}")

    # -- (b) ccall
    def check_call(self, path: Path, src: bytes, node):
        callee = node.named_children[0] if node.named_children else None
        if callee is None:
            return
        name = text(callee, src)
        arglist = next((c for c in node.named_children if c.type == "argument_list"), None)
        if arglist is None:
            return
        if name == "ccall":
            self.check_ccall(path, src, node, args_of(arglist))
        elif name == "include":
            self.check_include(path, src, node, args_of(arglist))
        elif callee.type == "field_expression" and self.is_libmmsb_qualified(callee, src):
            self.check_libcall(path, src, node, callee, args_of(arglist))

    def check_ccall(self, path: Path, src: bytes, node, args):
        if len(args) < 3:
            self.report(path, node, "ccall", "ccall needs (sym, lib), a return type and an argument-type tuple")
            return
        target, ret, types, actual = args[0], args[1], args[2], args[3:]
        sym, lib = None, None
        if target.type == "tuple_expression":
            parts = args_of(target)
            if len(parts) == 2 and parts[0].type == "quote_expression":
                sym, lib = text(parts[0], src)[1:], text(parts[1], src)
        elif target.type == "quote_expression":
            sym = text(target, src)[1:]
        if sym is None or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", sym):
            self.report(path, target, "ccall", f"cannot check ccall target {text(target, src)!r}: "
                        "write ccall((:symbol, libmmsb), ...) with a literal symbol")
            return
        if lib != "libmmsb" and not sym.startswith("mmsb_"):
            return  # another library (libc, ...): not ours to check
        if lib != "libmmsb":
            self.report(path, target, "ccall", f"{sym} is called without the library `libmmsb`")
        self.ccalls_checked += 1
        if types.type != "tuple_expression":
            self.report(path, types, "ccall", f"argument types of {sym} must be a tuple literal "
                        f"(write (T,) for one argument), got {text(types, src)!r}")
            return
        jtypes = args_of(types)
        for a in actual:
            if a.type in ("splat_expression", "named_argument") or text(a, src).endswith("..."):
                self.report(path, a, "ccall", f"cannot count the arguments of {sym}: splat or keyword")
                return
        self.check_signature(path, src, node, sym, ret, jtypes, len(actual))

    def check_signature(self, path, src, node, sym, ret_node, jtype_nodes, n_actual):
        if sym not in self.lib_exports:
            self.report(path, node, "ccall", f"{sym} is not exported by the library")
        fn = self.header.functions.get(sym)
        if fn is None:
            self.report(path, node, "ccall", f"{sym} is not declared in the header")
            return
        n_c = len(fn.params)
        if len(jtype_nodes) != n_c:
            self.report(path, node, "ccall", f"{sym}: the argument-type tuple has {len(jtype_nodes)} "
                        f"entries, the C function has {n_c} parameters")
        if n_actual != len(jtype_nodes):
            self.report(path, node, "ccall", f"{sym}: {n_actual} arguments passed for "
                        f"{len(jtype_nodes)} argument types")
        rt = parse_jtype(text(ret_node, src))
        if rt is None or not self.rules.compatible(fn.ret, rt):
            self.report(path, ret_node, "ccall", f"{sym}: return type {text(ret_node, src)!r} does not "
                        f"match C {fn.ret}")
        for k, (tn, p) in enumerate(zip(jtype_nodes, fn.params)):
            jt = parse_jtype(text(tn, src))
            if jt is None or not self.rules.compatible(p.ctype, jt):
                self.report(path, tn, "ccall", f"{sym}: argument {k + 1} ({p.name}) has Julia type "
                            f"{text(tn, src)!r}, incompatible with C `{p.ctype}`")

    def check_macro_ccall(self, path: Path, src: bytes, node):
        mac = next((c for c in node.named_children if c.type == "macro_identifier"), None)
        if mac is None or text(mac, src) != "@ccall":
            return
        body = re.sub(r"\s+", " ", text(node, src)[len("@ccall"):]).strip()
        m = re.fullmatch(r"(?:(\w+)\.)?(\w+)\((.*)\)::(.+)", body)
        if not m:
            self.report(path, node, "ccall", f"cannot check @ccall form {body[:60]!r}: "
                        "write @ccall libmmsb.sym(arg::T, ...)::Ret")
            return
        lib, sym, argtext, rettext = m.groups()
        if lib != "libmmsb" and not sym.startswith("mmsb_"):
            return
        self.ccalls_checked += 1
        if lib != "libmmsb":
            self.report(path, node, "ccall", f"{sym} is called without the library `libmmsb`")
        parts = split_top(argtext) if argtext.strip() else []
        fn = self.header.functions.get(sym)
        if sym not in self.lib_exports:
            self.report(path, node, "ccall", f"{sym} is not exported by the library")
        if fn is None:
            self.report(path, node, "ccall", f"{sym} is not declared in the header")
            return
        if len(parts) != len(fn.params):
            self.report(path, node, "ccall", f"{sym}: {len(parts)} arguments, the C function has "
                        f"{len(fn.params)} parameters")
        rt = parse_jtype(rettext)
        if rt is None or not self.rules.compatible(fn.ret, rt):
            self.report(path, node, "ccall", f"{sym}: return type {rettext!r} does not match C {fn.ret}")
        for k, (a, p) in enumerate(zip(parts, fn.params)):
            if "::" not in a:
                self.report(path, node, "ccall", f"{sym}: argument {k + 1} has no ::Type annotation")
                continue
            jt = parse_jtype(a.rsplit("::", 1)[1])
            if jt is None or not self.rules.compatible(p.ctype, jt):
                self.report(path, node, "ccall", f"{sym}: argument {k + 1} ({p.name}) has Julia type "
                            f"{a.rsplit('::', 1)[1]!r}, incompatible with C `{p.ctype}`")

    # -- (b') calls into LibMMSB and references to its names
    @staticmethod
    def is_libmmsb_qualified(field_node, src: bytes) -> bool:
        obj = field_node.named_children[0] if field_node.named_children else None
        return obj is not None and re.fullmatch(r"(\w+\.)*LibMMSB", text(obj, src)) is not None

    def check_libcall(self, path, src, node, callee, args):
        name = text(callee.named_children[-1], src)
        fn = self.header.functions.get(name)
        if fn is None:
            self.report(path, node, "libcall", f"LibMMSB.{name} is not a function of the header")
            return
        self.libcalls_checked += 1
        for a in args:
            if a.type in ("splat_expression", "named_argument") or text(a, src).endswith("..."):
                self.report(path, a, "libcall", f"cannot count the arguments of LibMMSB.{name}")
                return
        if len(args) != len(fn.params):
            self.report(path, node, "libcall", f"LibMMSB.{name} takes {len(fn.params)} arguments "
                        f"({', '.join(p.name for p in fn.params)}), {len(args)} given")

    def check_libmmsb_ref(self, path, src, node):
        if not self.is_libmmsb_qualified(node, src):
            return
        parent = node.parent
        if parent is not None and parent.type == "call_expression" and parent.named_children[0] == node:
            return  # a call: check_libcall handles it
        name = text(node.named_children[-1], src)
        known = (set(self.header.functions) | set(self.header.typedefs) | set(self.header.structs)
                 | {d.name for d in self.header.defines} | {"libmmsb"})
        if name not in known:
            self.report(path, node, "libcall", f"LibMMSB.{name} is not defined by the header")

    # -- struct layouts
    def check_struct(self, path, src, node):
        head = next((c for c in node.named_children if c.type == "type_head"), None)
        if head is None:
            return
        name = self.type_head_name(head, src)
        cs = self.header.structs.get(name or "")
        if cs is None:
            return
        fields = []
        for c in node.named_children:
            if c.type == "typed_expression":
                kids = c.named_children
                fields.append((text(kids[0], src), text(kids[-1], src), c))
            elif c.type == "identifier":
                fields.append((text(c, src), "Any", c))
        if [f[0] for f in fields] != [f.name for f in cs.fields]:
            self.report(path, node, "struct", f"struct {name} has fields {[f[0] for f in fields]}, "
                        f"the C struct has {[f.name for f in cs.fields]} (layout must be identical)")
            return
        for (fname, ftype, fnode), cf in zip(fields, cs.fields):
            jt = parse_jtype(ftype)
            if jt is None or not self.rules.compatible(cf.ctype, jt):
                self.report(path, fnode, "struct", f"{name}.{fname} is {ftype}, incompatible with C `{cf.ctype}`")

    @staticmethod
    def type_head_name(head, src) -> str | None:
        n = head.named_children[0] if head.named_children else None
        while n is not None and n.type in ("binary_expression", "parametrized_type_expression"):
            n = n.named_children[0] if n.named_children else None
        return text(n, src) if n is not None and n.type == "identifier" else None

    # -- (d) include targets
    def include_target(self, path: Path, src: bytes, args) -> Path | None | str:
        """The included file, or 'dynamic' if the argument is not a literal."""
        if len(args) == 1 and args[0].type == "string_literal" and "$" not in text(args[0], src):
            return (path.parent / text(args[0], src)[1:-1]).resolve()
        if len(args) == 1 and args[0].type == "call_expression":
            inner = args[0]
            if text(inner.named_children[0], src) == "joinpath":
                parts = args_of(next(c for c in inner.named_children if c.type == "argument_list"))
                if parts and text(parts[0], src) == "@__DIR__" and all(
                        p.type == "string_literal" and "$" not in text(p, src) for p in parts[1:]):
                    return path.parent.joinpath(*[text(p, src)[1:-1] for p in parts[1:]]).resolve()
        return "dynamic"

    def check_include(self, path, src, node, args):
        target = self.include_target(path, src, args)
        if target == "dynamic":
            line = src.split(b"\n")[node.start_point[0]].decode("utf-8", "replace")
            if DYNAMIC_INCLUDE_PRAGMA not in line:
                self.report(path, node, "include", f"cannot check non-literal {text(node, src)!r} "
                            f"(mark the line `# {DYNAMIC_INCLUDE_PRAGMA}` if intended)")
            return
        if not target.is_file():
            self.report(path, node, "include", f"{text(node, src)} names a missing file {self.rel(target)}")

    # -- (c) exports
    def check_exports(self, files: list[Path]):
        included: set[Path] = set()
        for path in files:
            tree, src = self.parse(path)
            for n in walk(tree.root_node):
                if n.type == "call_expression" and n.named_children and text(n.named_children[0], src) == "include":
                    al = next((c for c in n.named_children if c.type == "argument_list"), None)
                    t = self.include_target(path, src, args_of(al)) if al is not None else None
                    if isinstance(t, Path):
                        included.add(t)
        for path in files:
            if path.resolve() in included:
                continue
            scope = Scope(f"<toplevel of {self.rel(path)}>", self.rel(path))
            self.scopes.append(scope)
            self.bind_file(path, scope, set())
        for scope in self.scopes:
            for name, p, line, col in scope.exports:
                if name not in scope.defined:
                    self.problems.append(Problem(p, line, col, "export",
                                                 f"module {scope.name} exports {name}, which it does not define"))

    def bind_file(self, path: Path, scope: Scope, seen: set[Path]):
        path = path.resolve()
        if path in seen or not path.is_file():
            return
        seen = seen | {path}
        tree, src = self.parse(path)
        for c in tree.root_node.named_children:
            self.bind(c, path, src, scope, seen)

    def bind(self, n, path: Path, src: bytes, scope: Scope, seen: set[Path]):
        t = n.type
        kids = n.named_children
        if t == "module_definition":
            name_node = next((c for c in kids if c.type == "identifier"), None)
            name = text(name_node, src) if name_node is not None else "?"
            scope.defined.add(name)
            inner = Scope(name, self.rel(path), {name})
            self.scopes.append(inner)
            for c in kids:
                if c is not name_node:
                    self.bind(c, path, src, inner, seen)
        elif t in ("export_statement", "public_statement"):
            if t == "export_statement":
                for c in kids:
                    if c.type in ("identifier", "macro_identifier"):
                        scope.exports.append((text(c, src), self.rel(path), c.start_point[0] + 1,
                                              c.start_point[1] + 1))
        elif t in ("function_definition", "macro_definition"):
            sig = next((c for c in kids if c.type == "signature"), None)
            name = self.callable_name(sig.named_children[0] if sig is not None and sig.named_children else None, src)
            if name:
                scope.defined.add(("@" + name) if t == "macro_definition" else name)
        elif t == "assignment":
            self.bind_lhs(kids[0] if kids else None, src, scope)
        elif t == "const_statement" or t == "global_statement":
            for c in kids:
                if c.type == "assignment":
                    self.bind_lhs(c.named_children[0], src, scope)
                elif c.type == "identifier":
                    scope.defined.add(text(c, src))
        elif t in ("struct_definition", "abstract_definition", "primitive_definition"):
            head = next((c for c in kids if c.type == "type_head"), None)
            name = self.type_head_name(head, src) if head is not None else None
            if name:
                scope.defined.add(name)
        elif t in ("using_statement", "import_statement"):
            for c in kids:
                if c.type == "selected_import":
                    for s in c.named_children[1:]:
                        scope.defined.add(self.import_binding(s, src))
                else:
                    scope.defined.add(self.import_binding(c, src))
        elif t == "macrocall_expression":
            mac = next((c for c in kids if c.type == "macro_identifier"), None)
            margs = next((c for c in kids if c.type == "macro_argument_list"), None)
            if mac is not None and text(mac, src) == "@enum" and margs is not None:
                for c in margs.named_children:
                    if c.type == "identifier":
                        scope.defined.add(text(c, src))
                    elif c.type == "compound_statement":
                        scope.defined.update(text(x, src) for x in c.named_children if x.type == "identifier")
            elif margs is not None:  # @inline f(x) = ..., @static if ..., docstring macros
                for c in margs.named_children:
                    self.bind(c, path, src, scope, seen)
        elif t == "call_expression" and kids and text(kids[0], src) == "include":
            al = next((c for c in kids if c.type == "argument_list"), None)
            target = self.include_target(path, src, args_of(al)) if al is not None else None
            if isinstance(target, Path):
                self.bind_file(target, scope, seen)
        elif t in ("if_statement", "elseif_clause", "else_clause", "compound_statement"):
            for c in kids:
                self.bind(c, path, src, scope, seen)

    def bind_lhs(self, lhs, src, scope: Scope):
        if lhs is None:
            return
        if lhs.type == "identifier":
            scope.defined.add(text(lhs, src))
        elif lhs.type in ("tuple_expression", "open_tuple", "bare_tuple"):
            for c in lhs.named_children:
                self.bind_lhs(c, src, scope)
        else:
            name = self.callable_name(lhs, src)
            if name:
                scope.defined.add(name)

    def callable_name(self, n, src) -> str | None:
        """The name a method definition binds (None for Base.f, operators, functors)."""
        while n is not None and n.type in ("where_expression", "typed_expression"):
            n = n.named_children[0] if n.named_children else None
        if n is None:
            return None
        if n.type == "identifier":
            return text(n, src)
        if n.type == "call_expression" and n.named_children:
            callee = n.named_children[0]
            while callee.type == "parametrized_type_expression" and callee.named_children:
                callee = callee.named_children[0]
            if callee.type == "identifier":
                return text(callee, src)
        return None

    @staticmethod
    def import_binding(node, src) -> str:
        s = text(node, src).strip()
        if " as " in s:
            return s.rsplit(" as ", 1)[1].strip()
        return s.rsplit(".", 1)[-1].lstrip(":")

    # -- header vs library
    def check_header_exported(self):
        hpath = self.root / gen.HEADER_REL
        for fn in self.header.functions.values():
            if fn.name not in self.lib_exports:
                self.problems.append(Problem(self.rel(hpath), fn.line, 1, "header",
                                             f"{fn.name} is declared but the library does not export it"))


def split_top(s: str) -> list[str]:
    """Split at commas outside brackets."""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


# --------------------------------------------------------------------------- the library


def default_library(root: Path) -> Path:
    env = os.environ.get("MMSB_LIB")
    if env:
        return Path(env)
    ext = {"Darwin": "dylib", "Windows": "dll"}.get(platform.system(), "so")
    name = "mmsb.dll" if ext == "dll" else f"libmmsb.{ext}"
    target = os.environ.get("CARGO_TARGET_DIR", str(root / "rust" / "target"))
    return Path(target) / "release" / name


def library_exports(lib: Path, wanted: set[str]) -> set[str]:
    """Symbols the library defines: `nm -D --defined-only`, else a dlopen probe."""
    nm = shutil.which("nm")
    if nm:
        r = subprocess.run([nm, "-D", "--defined-only", str(lib)], capture_output=True, text=True)
        if r.returncode == 0:
            syms = set()
            for line in r.stdout.splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[-2] in ("T", "W", "i"):
                    syms.add(parts[-1].split("@")[0])
            return syms
    import ctypes  # macOS nm has no -D; ask the dynamic loader instead
    handle = ctypes.CDLL(str(lib))
    return {s for s in wanted if hasattr(handle, s)}


# --------------------------------------------------------------------------- self-test

SELF_TEST_CASES = [
    # (name, files {relative path: source}, [(rule, substring expected in a message)],
    #  optionally {counter: exact value} so that a clean pass cannot mean "checked nothing")
    ("clean package passes", {
        "src/Good.jl": """
            module Good
            using ..MMSB: libmmsb
            import Base: close
            export ok, Thing, @m, K, Kind, Ka, sub
            const K = Int32(1)
            ok(x) = ccall((:mmsb_store_close, libmmsb), Int32, (UInt64,), x)
            sub(h) = ccall((:mmsb_delta_info, libmmsb), Cint, (Culonglong, Ref{MmsbDeltaInfo}), h, Ref{MmsbDeltaInfo}())
            s(p) = ccall((:mmsb_last_error_message, libmmsb), Int32, (Ptr{Ptr{UInt8}},), p)
            k(d, j) = @ccall libmmsb.mmsb_delta_set_intent(d::UInt64, j::Cstring)::Int32
            struct Thing end
            @enum Kind Ka Kb
            macro m(x) end
            include("other.jl")
            function close(t::Thing) end
            end
        """,
        "src/other.jl": "helper() = LibMMSB.mmsb_store_close(LibMMSB.MMSB_OK)\n",
    }, [], {"ccalls_checked": 4, "libcalls_checked": 1, "exports": 7}),
    ("syntax error", {"src/Bad.jl": "function f(x\n    x +\nend\n"}, [("parse", "")]),
    ("package extensions (ext/) are checked too", {
        "ext/BadExt.jl": "module BadExt\nf() = ccall((:mmsb_does_not_exist, libmmsb), Int32, ())\n"
                         "g(a) = MMSB.LibMMSB.mmsb_store_close(a, a)\nend\n",
    }, [("ccall", "mmsb_does_not_exist is not exported"), ("ccall", "not declared in the header"),
        ("libcall", "takes 1 arguments")]),

    ("ccall to a missing symbol", {
        "src/Bad.jl": "f() = ccall((:mmsb_does_not_exist, libmmsb), Int32, ())\n",
    }, [("ccall", "mmsb_does_not_exist is not exported"), ("ccall", "not declared in the header")]),
    ("wrong argument-type count", {
        "src/Bad.jl": "f(a, b) = ccall((:mmsb_store_close, libmmsb), Int32, (UInt64, UInt64), a, b)\n",
    }, [("ccall", "tuple has 2 entries, the C function has 1")]),
    ("wrong actual argument count", {
        "src/Bad.jl": "f(a, b) = ccall((:mmsb_store_close, libmmsb), Int32, (UInt64,), a, b)\n",
    }, [("ccall", "2 arguments passed for 1 argument types")]),
    ("wrong argument type", {
        "src/Bad.jl": "f(a) = ccall((:mmsb_store_close, libmmsb), Int32, (Float64,), a)\n",
    }, [("ccall", "incompatible with C `MmsbStore`")]),
    ("wrong pointer type", {
        "src/Bad.jl": "f(p) = ccall((:mmsb_live_handles, libmmsb), Int32, (Ptr{UInt32},), p)\n",
    }, [("ccall", "incompatible with C `uint64_t *`")]),
    ("wrong return type", {
        "src/Bad.jl": "f(a) = ccall((:mmsb_store_close, libmmsb), Int64, (UInt64,), a)\n",
    }, [("ccall", "return type 'Int64'")]),
    ("bad @ccall", {
        "src/Bad.jl": "f(a) = @ccall libmmsb.mmsb_store_close(a::UInt64, a::UInt64)::Int32\n",
    }, [("ccall", "2 arguments, the C function has 1")]),
    ("wrong LibMMSB call arity and unknown name", {
        "src/Bad.jl": "f(a) = LibMMSB.mmsb_store_close(a, a)\ng() = LibMMSB.MMSB_ERR_NOPE\n",
    }, [("libcall", "takes 1 arguments"), ("libcall", "MMSB_ERR_NOPE is not defined")]),
    ("exported but undefined", {
        "src/Bad.jl": "module Bad\nexport defined_here, nowhere\ndefined_here() = 1\nend\n",
    }, [("export", "exports nowhere")]),
    ("missing include", {"src/Bad.jl": 'include("gone.jl")\n'}, [("include", "missing file")]),
    ("unmarked dynamic include", {"src/Bad.jl": "include(path)\n"}, [("include", "non-literal")]),
    ("struct layout drift", {
        "src/Bad.jl": "struct MmsbPageInfo\n    epoch::UInt64\n    size::UInt64\n    location::UInt8\n"
                      "    dtype::UInt8\n    view_len::UInt64\nend\n"
                      "struct MmsbStoreStats\n    pages::UInt64\n    page_bytes::UInt32\n"
                      "    deltas_applied::UInt64\n    deltas_noop::UInt64\n    deltas_rejected::UInt64\n"
                      "    bytes_written::UInt64\nend\n",
    }, [("struct", "struct MmsbPageInfo has fields"), ("struct", "MmsbStoreStats.page_bytes is UInt32")]),
]


def self_test(header: gen.Header, exports: set[str], parser) -> int:
    failures = 0
    for name, files, expected, *counts in SELF_TEST_CASES:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for rel, body in files.items():
                p = root / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(textwrap.dedent(body).lstrip("\n"))
            checker = Checker(root, header, exports, parser)
            checker.check_header_exported = lambda: None  # the library is checked for real elsewhere
            problems = checker.run()
            ok = True
            for rule, needle in expected:
                if not any(pr.rule == rule and needle in pr.message for pr in problems):
                    print(f"self-test FAIL [{name}]: no [{rule}] problem containing {needle!r}")
                    ok = False
            if not expected and problems:
                print(f"self-test FAIL [{name}]: false positives:")
                ok = False
            unexpected = [pr for pr in problems if not any(pr.rule == r for r, _ in expected)]
            if unexpected:
                print(f"self-test FAIL [{name}]: unexpected problems:")
                for pr in unexpected:
                    print(f"    {pr}")
                ok = False
            for key, want in (counts[0] if counts else {}).items():
                got = (sum(len(sc.exports) for sc in checker.scopes) if key == "exports"
                       else getattr(checker, key))
                if got != want:
                    print(f"self-test FAIL [{name}]: {key} = {got}, expected {want}")
                    ok = False
            if ok:
                print(f"self-test ok   [{name}]: {len(problems)} problem(s) caught as expected")
            failures += not ok
    print(f"check_julia self-test: {len(SELF_TEST_CASES) - failures}/{len(SELF_TEST_CASES)} cases passed")
    return 1 if failures else 0


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Static checks of the MMSB Julia package.")
    ap.add_argument("--root", type=Path, default=ROOT, help="the package root (default: this repo)")
    ap.add_argument("--lib", type=Path, help="libmmsb to check against (default: $MMSB_LIB or rust/target/release)")
    ap.add_argument("--header", type=Path, help="the C header (default: rust/mmsb-capi/include/mmsb.h)")
    ap.add_argument("--self-test", action="store_true", help="check that the checker catches known-bad snippets")
    args = ap.parse_args(argv)

    parser = load_parser()
    header_path = args.header or (ROOT / gen.HEADER_REL)
    try:
        header = gen.parse_header(header_path.read_text(), str(header_path))
    except (OSError, gen.HeaderError) as e:
        print(f"check_julia: error: cannot read the header: {e}", file=sys.stderr)
        return 2
    lib = args.lib or default_library(ROOT)
    if not lib.is_file():
        print(f"check_julia: error: library {lib} not found; build it (cargo build --release -p mmsb-capi) "
              f"or pass --lib / set MMSB_LIB", file=sys.stderr)
        return 2
    exports = library_exports(lib, set(header.functions))
    if not exports & set(header.functions):
        print(f"check_julia: error: {lib} exports none of the header's functions", file=sys.stderr)
        return 2

    if args.self_test:
        return self_test(header, exports, parser)

    checker = Checker(args.root.resolve(), header, exports, parser)
    problems = checker.run()
    for p in problems:
        print(p)
    files = checker.files()
    n_exports = sum(len(s.exports) for s in checker.scopes)
    summary = (f"check_julia: {len(files)} files parsed, {checker.ccalls_checked} ccalls and "
               f"{checker.libcalls_checked} LibMMSB calls checked against {lib.name} "
               f"({len(header.functions)} C functions), {n_exports} exported names in "
               f"{len(checker.scopes)} scopes: ")
    if problems:
        print(summary + f"{len(problems)} problem(s)")
        return 1
    print(summary + "no problems")
    return 0


if __name__ == "__main__":
    sys.exit(main())
